"""Reading SiLK's own files: flow records (what rwtuc, rwcat, rwfilter and rwsort write), IP sets
and bags.

A SiLK file (file version 16 and later) starts with a 16-byte header in network byte order:
magic ``DEADBEEF``, flags (bit 0: records are big-endian), file format, file version, compression
method, SiLK version, record size and record version; then header entries (id, length, data),
the last one with id 0.  The records follow, whole or in compressed blocks, each block preceded by
its compressed and uncompressed sizes (network order).

Read here, vectorised with numpy structured dtypes (no Python loop per record):

- ``FT_RWIPV6ROUTING`` versions 1 to 3 (rwtuc's, rwcat's, rwfilter's default in an IPv6-enabled
  SiLK), and ``FT_RWGENERIC`` versions 2 to 5 (IPv4 only; what ``rwcat --ipv4-output`` writes);
- compression none and zlib (what SiLK builds with by default); lzo and snappy files are a
  one-line error naming the method.

IP sets (``FT_IPSET``): record versions 2 (/24 bitmaps), 3 (radix tree, read through its sorted
CIDR leaves) and 4 (CIDR blocks and bitmaps), IPv4 and IPv6; version 5 is a one-line error.  Bags
(``FT_RWBAG``): 1- to 16-byte keys with 4- or 8-byte counters, key types mapped to vlf's bag keys.

Not read yet: the packed hourly formats rwflowpack writes into a repository (``FT_RWAUGMENTED``,
``FT_RWAUGWEB``, ``FT_RWAUGROUTING``, ``FT_RWAUGSNMPOUT``, ``FT_RWIPV6``, ...): each is a one-line
error naming the format.  Field meaning follows SiLK's record: the TCP state byte's attribute bits
become ``attributes`` (0x80 marks IPv6), and initial/session flags are kept only where the state
says they are valid, as libsilk's reader does.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import ATTR_IPV6, FLOW_SCHEMA, IPV6_TYPE, conform
from .sets import array_runs, int_runs, range_cidrs

MAGIC = b"\xde\xad\xbe\xef"
HEADER_START = struct.Struct(">4sBBBBIHH")
ENTRY = struct.Struct(">II")
EXPANDED_HEADERS = 16  # file versions before this have SiLK's legacy headers, not read here

FT_RWIPV6ROUTING = 0x0C
FT_RWGENERIC = 0x16
FT_IPSET = 0x1D
FORMAT_NAMES = {
    0x00: "FT_TCPDUMP", 0x01: "FT_GRAPH", 0x02: "FT_ADDRESSES", 0x03: "FT_PORTMAP", 0x04: "FT_SERVICEMAP",
    0x05: "FT_NIDSMAP", 0x06: "FT_EXPERIMENT1", 0x07: "FT_EXPERIMENT2", 0x08: "FT_TEMPFILE", 0x09: "FT_AGGREGATEBAG",
    0x0A: "FT_IPFIX", 0x0B: "FT_RWIPV6", 0x0C: "FT_RWIPV6ROUTING", 0x0D: "FT_RWAUGSNMPOUT", 0x0E: "FT_RWAUGROUTING",
    0x0F: "FT_RESERVED_0F", 0x10: "FT_RWROUTED", 0x11: "FT_RWNOTROUTED", 0x12: "FT_RWSPLIT", 0x13: "FT_RWFILTER",
    0x14: "FT_RWAUGMENTED", 0x15: "FT_RWAUGWEB", 0x16: "FT_RWGENERIC", 0x17: "FT_RESERVED_17", 0x18: "FT_RWDAILY",
    0x19: "FT_RWSCAN", 0x1A: "FT_RWACL", 0x1B: "FT_RWCOUNT", 0x1C: "FT_FLOWCAP", 0x1D: "FT_IPSET", 0x1E: "FT_TAGTREE",
    0x1F: "FT_RWWWW", 0x20: "FT_SHUFFLE", 0x21: "FT_RWBAG", 0x22: "FT_BLOOM", 0x23: "FT_RWPRINTSTATS",
    0x24: "FT_PDUFILE", 0x25: "FT_PREFIXMAP",
}
COMPRESSION = {0: "none", 1: "zlib", 2: "lzo1x", 3: "snappy"}
MAX_BLOCK_BYTES = 0x100000  # SiLK's SKIOBUF_MAX_BLOCKSIZE: it refuses a longer block, compressed or not

TCPSTATE_EXPANDED = 0x01  # initial and session flags are valid
TCPSTATE_ATTRIBUTES = 0x78  # F, S, T, C: rwcut's attributes
TCPSTATE_IPV6 = 0x80
PROTO_TCP = 6


class SilkFileError(ValueError):
    """Not a SiLK flow file this reader knows; the message names the file and why."""


def _routing_dtype(order: str, version: int) -> np.dtype:
    """FT_RWIPV6ROUTING records: v1/v2 88 bytes (16-bit interfaces, 32-bit volumes), v3 100 bytes."""
    fields = [("sTime", f"{order}i8"), ("elapsed", f"{order}u4"), ("sPort", f"{order}u2"), ("dPort", f"{order}u2"),
              ("proto", "u1"), ("flow_type", "u1"), ("sensor", f"{order}u2"), ("flags", "u1"), ("init_flags", "u1"),
              ("rest_flags", "u1"), ("tcp_state", "u1"), ("application", f"{order}u2"), ("memo", f"{order}u2")]
    if version >= 3:
        fields += [("input", f"{order}u4"), ("pkts", f"{order}u8"), ("bytes", f"{order}u8"),
                   ("sIP", "V16"), ("dIP", "V16"), ("nhIP", "V16"), ("output", f"{order}u4")]
    else:
        fields += [("input", f"{order}u2"), ("output", f"{order}u2"), ("pkts", f"{order}u4"), ("bytes", f"{order}u4"),
                   ("sIP", "V16"), ("dIP", "V16"), ("nhIP", "V16")]
    return np.dtype(fields)


def _generic_dtype(order: str, version: int) -> np.dtype:
    """FT_RWGENERIC records (rwgenericio.c): v5 52 bytes (ms times); v3-v4 56 bytes and v2 48
    bytes with second times (v3-v4 add msec fractions and the application); v0/v1 40/37 bytes with
    8-bit interfaces and sensor and no flow type."""
    if version >= 5:
        return np.dtype([
            ("sTime", f"{order}i8"), ("elapsed", f"{order}u4"), ("sPort", f"{order}u2"), ("dPort", f"{order}u2"),
            ("proto", "u1"), ("flow_type", "u1"), ("sensor", f"{order}u2"), ("flags", "u1"), ("init_flags", "u1"),
            ("rest_flags", "u1"), ("tcp_state", "u1"), ("application", f"{order}u2"), ("memo", f"{order}u2"),
            ("input", f"{order}u2"), ("output", f"{order}u2"), ("pkts", f"{order}u4"), ("bytes", f"{order}u4"),
            ("sIP", f"{order}u4"), ("dIP", f"{order}u4"), ("nhIP", f"{order}u4"),
        ])
    if version <= 1:
        fields = [("sIP", f"{order}u4"), ("dIP", f"{order}u4"), ("sPort", f"{order}u2"), ("dPort", f"{order}u2"),
                  ("proto", "u1"), ("flags", "u1"), ("input", "u1"), ("output", "u1"), ("nhIP", f"{order}u4"),
                  ("sTime_s", f"{order}u4"), ("pkts", f"{order}u4"), ("bytes", f"{order}u4"), ("elapsed_s", f"{order}u4"),
                  ("sensor", "u1")]
        return np.dtype(fields + ([("pad", "V3")] if version == 0 else []))
    fields = [("sIP", f"{order}u4"), ("dIP", f"{order}u4"), ("sPort", f"{order}u2"), ("dPort", f"{order}u2"),
              ("nhIP", f"{order}u4"), ("input", f"{order}u2"), ("output", f"{order}u2"), ("sTime_s", f"{order}u4"),
              ("elapsed_s", f"{order}u4"), ("pkts", f"{order}u4"), ("bytes", f"{order}u4"), ("proto", "u1"),
              ("flow_type", "u1"), ("sensor", f"{order}u2"), ("flags", "u1"), ("init_flags", "u1"), ("rest_flags", "u1"),
              ("tcp_state", "u1"), ("bpp", f"{order}u4")]
    if version >= 3:
        fields += [("sTime_ms", f"{order}u2"), ("elapsed_ms", f"{order}u2"), ("application", f"{order}u2"), ("pad", "V2")]
    return np.dtype(fields)


def is_silk_file(head: bytes) -> bool:
    return head[:4] == MAGIC


@dataclass
class Header:
    flags: int
    format: int
    file_version: int
    compression: int
    rec_size: int
    rec_version: int
    entries: dict  # header entry id -> its data (after id and length)
    offset: int  # where the records start

    @property
    def name(self) -> str:
        return FORMAT_NAMES.get(self.format, f"format 0x{self.format:02X}")

    @property
    def order(self) -> str:
        return ">" if self.flags & 1 else "<"


def read_header(data: bytes, label: str) -> Header:
    if len(data) < HEADER_START.size or not is_silk_file(data):
        raise SilkFileError(f"{label}: not a SiLK file (no DEADBEEF magic)")
    _, flags, fmt, file_version, compression, _, rec_size, rec_version = HEADER_START.unpack_from(data)
    if file_version < EXPANDED_HEADERS:
        raise SilkFileError(f"{label}: SiLK file version {file_version} (before SiLK 1.0) is not read; convert it with rwcat")
    offset, entries = HEADER_START.size, {}
    while True:  # header entries up to the one with id 0
        if offset + ENTRY.size > len(data):
            raise SilkFileError(f"{label}: truncated SiLK header")
        entry_id, length = ENTRY.unpack_from(data, offset)
        if length < ENTRY.size or offset + length > len(data):
            raise SilkFileError(f"{label}: damaged SiLK header entry at byte {offset}")
        entries.setdefault(entry_id, data[offset + ENTRY.size : offset + length])
        offset += length
        if entry_id == 0:
            break
    return Header(flags, fmt, file_version, compression, rec_size, rec_version, entries, offset)


def read_silk_flows(data: bytes, label: str = "<silk>") -> pa.Table:
    """The flow records of a SiLK flow file's bytes, in the flow schema."""
    from . import silkpacked  # it builds on this module: imported here, not at the top

    header = read_header(data, label)
    fmt, rec_version, rec_size, name = header.format, header.rec_version, header.rec_size, header.name
    if fmt == FT_RWIPV6ROUTING and 1 <= rec_version <= 3:
        dtype = _routing_dtype(header.order, rec_version)
    elif fmt == FT_RWGENERIC and 0 <= rec_version <= 5:
        dtype = _generic_dtype(header.order, rec_version)
    elif fmt == FT_IPSET:
        raise SilkFileError(f"{label}: a SiLK IP set, not flow records")
    elif fmt == FT_RWBAG:
        raise SilkFileError(f"{label}: a SiLK bag, not flow records")
    elif fmt in silkpacked.READERS:  # the packed hourly formats rwflowpack writes into a repository
        return silkpacked.read_packed(header, _records_bytes(data, header.offset, header.compression, label), label)
    else:
        raise SilkFileError(f"{label}: {name} version {rec_version} is not read yet (every flow format SiLK 3.19.1 "
                            f"writes is; rwcat it into FT_RWIPV6ROUTING)")
    if dtype.itemsize != rec_size:
        raise SilkFileError(f"{label}: {name} v{rec_version} records are {dtype.itemsize} bytes, the header says {rec_size}")
    body = _records_bytes(data, header.offset, header.compression, label)
    if len(body) % rec_size:
        raise SilkFileError(f"{label}: {len(body) % rec_size} trailing byte(s) after the last whole record (a truncated file?)")
    records = np.frombuffer(body, dtype=dtype)
    return _routing_table(records, rec_version) if fmt == FT_RWIPV6ROUTING else _generic_table(records, rec_version)


# --- IP sets --------------------------------------------------------------------------------------

IPSET_ENTRY_ID = 7  # the header entry describing an IP set's layout (leaf size: 4/8 IPv4, 16/24 IPv6)


def read_silk_ipset(data: bytes, label: str = "<silk>") -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """A SiLK IP set file's contents as inclusive (low, high) ranges: (IPv4 ranges, IPv6 ranges).

    Record versions 2 (/24 bitmaps), 3 (radix tree: its sorted CIDR leaves), 4 (CIDR blocks and
    /24 or /120 bitmaps) and 5 (IPv6 by /64: blocks and /120 bitmaps) are read."""
    header = read_header(data, label)
    if header.format != FT_IPSET:
        raise SilkFileError(f"{label}: {header.name}, not a SiLK IP set")
    body = _records_bytes(data, header.offset, header.compression, label)
    order, version = header.order, header.rec_version
    layout = header.entries.get(IPSET_ENTRY_ID)
    fields = struct.unpack(">6I", layout[:24]) if layout is not None and len(layout) >= 24 else None
    if version in (0, 1, 2):
        if len(body) % 36:
            raise SilkFileError(f"{label}: {len(body) % 36} trailing byte(s) after the last whole /24 of the IP set")
        words = np.frombuffer(body, dtype=f"{order}u4").reshape(-1, 9)
        bits = np.unpackbits(words[:, 1:].astype("<u4").view(np.uint8).reshape(-1, 32), axis=1, bitorder="little")
        rows, offsets = np.nonzero(bits)
        addresses = words[rows, 0].astype(np.int64) + offsets
        return array_runs(addresses), []
    if version == 3:
        if fields is None:
            raise SilkFileError(f"{label}: IP set v3 without its layout header entry")
        _, leaf_count, leaf_size, node_count, node_size, _ = fields
        leaves = body[node_count * node_size : node_count * node_size + leaf_count * leaf_size]
        if leaf_size == 8:
            leaf = np.frombuffer(leaves, dtype=np.dtype([("prefix", "u1"), ("pad", "V3"), ("ip", f"{order}u4")]))[1:]
            return [(int(ip), int(ip) + (1 << (32 - int(p))) - 1) for ip, p in zip(leaf["ip"], leaf["prefix"])], []
        if leaf_size == 24:
            leaf = np.frombuffer(leaves, dtype=np.dtype([("prefix", "u1"), ("pad", "V7"), ("hi", f"{order}u8"), ("lo", f"{order}u8")]))[1:]
            return [], [((int(h) << 64) | int(lo), ((int(h) << 64) | int(lo)) + (1 << (128 - int(p))) - 1)
                        for h, lo, p in zip(leaf["hi"], leaf["lo"], leaf["prefix"])]
        raise SilkFileError(f"{label}: IP set v3 with {leaf_size}-byte leaves")
    if version == 4:
        width = fields[2] if fields is not None else 4
        if width not in (4, 16):
            raise SilkFileError(f"{label}: IP set v4 with {width}-byte addresses")
        v4, v6, pos = [], [], 0
        while pos < len(body):
            if pos + width + 1 > len(body):
                raise SilkFileError(f"{label}: truncated IP set block at byte {pos}")
            raw = body[pos : pos + width]
            base = int.from_bytes(raw, "big" if width == 16 or order == ">" else "little")
            kind = body[pos + width]
            pos += width + 1
            bits_total = 32 if width == 4 else 128
            target = v4 if width == 4 else v6
            if kind <= bits_total:
                target.append((base, base + (1 << (bits_total - kind)) - 1))
            elif kind == 0x81:
                if pos + 32 > len(body):
                    raise SilkFileError(f"{label}: truncated IP set bitmap at byte {pos}")
                words = np.frombuffer(body[pos : pos + 32], dtype=f"{order}u4")
                pos += 32
                bits = np.unpackbits(words.astype("<u4").view(np.uint8), bitorder="little")
                target += [(base + int(i), base + int(i)) for i in np.flatnonzero(bits)]
            else:
                raise SilkFileError(f"{label}: unknown IP set block kind 0x{kind:02x} at byte {pos - 1}")
        return v4, v6
    if version == 5:
        return [], _slash64_ranges(body, order, label)
    raise SilkFileError(f"{label}: SiLK IP set record version {version} is not read (2, 3, 4 and 5 are)")


SET_SLASH64 = 0x82  # in a record-version-5 IP set: the upper 64 bits of the addresses that follow


def _slash64_ranges(body: bytes, order: str, label: str) -> list[tuple[int, int]]:
    """IP set record version 5 (IPv6 only): 9-byte items, a 64-bit word and a byte that says what
    it is: <= 64 an upper-half block of that prefix, 0x82 the upper half of the items that follow,
    65..128 a lower half with its prefix, 0x81 a lower half and a 256-address bitmap."""
    ranges, upper, pos = [], None, 0
    while pos < len(body):
        if pos + 9 > len(body):
            raise SilkFileError(f"{label}: truncated IP set item at byte {pos}")
        word = int.from_bytes(body[pos : pos + 8], "big" if order == ">" else "little")
        kind = body[pos + 8]
        pos += 9
        if 0 < kind <= 64:
            ranges.append((word << 64, (word << 64) + (1 << (128 - kind)) - 1))
            upper = None
        elif kind == SET_SLASH64:
            upper = word
        elif upper is not None and 64 < kind <= 128:
            base = (upper << 64) | word
            ranges.append((base, base + (1 << (128 - kind)) - 1))
        elif upper is not None and kind == SET_BITMAP:
            if pos + 32 > len(body):
                raise SilkFileError(f"{label}: truncated IP set bitmap at byte {pos}")
            words = np.frombuffer(body[pos : pos + 32], dtype=f"{order}u4")
            pos += 32
            base = (upper << 64) | word
            bits = np.unpackbits(words.astype("<u4").view(np.uint8), bitorder="little")
            ranges += [(base + int(i), base + int(i)) for i in np.flatnonzero(bits)]
        else:
            raise SilkFileError(f"{label}: unexpected IP set item 0x{kind:02x} at byte {pos - 1}")
    return ranges


# --- bags -----------------------------------------------------------------------------------------

BAG_ENTRY_ID = 6  # key type, key length, counter type, counter length (uint16 each)
FT_RWBAG = 0x21
# SiLK's bag key types -> vlf's bag keys (IPv4 and IPv6 forms of one field are one key here)
BAG_KEYS = {0: "sIP", 1: "dIP", 2: "sPort", 3: "dPort", 4: "protocol", 5: "packets", 6: "bytes", 7: "flags",
            8: "sTime", 9: "duration", 10: "eTime", 11: "sensor", 12: "input", 13: "output", 14: "nhIP",
            15: "initialFlags", 16: "sessionFlags", 17: "attributes", 18: "application", 25: "sIP", 26: "dIP",
            27: "nhIP", 32: "anyIP", 33: "anyIP"}
BAG_COUNTERS = {28: "records", 29: "packets", 30: "bytes"}


@dataclass
class SilkBag:
    key: str  # a vlf bag key name (``value`` for SiLK's custom and unmapped key types)
    counter: str
    ipv6: bool  # 16-byte keys
    keys: np.ndarray  # uint64 (4-byte and smaller keys) or (n, 16) uint8 (16-byte keys)
    counters: np.ndarray  # uint64


def read_silk_bag(data: bytes, label: str = "<silk>") -> SilkBag:
    """A SiLK bag file (rwbag, rwbagbuild, rwbagtool): keys and counters, in the file's order."""
    header = read_header(data, label)
    if header.format != FT_RWBAG:
        raise SilkFileError(f"{label}: {header.name}, not a SiLK bag")
    version = header.rec_version
    key_type, key_len, counter_type, counter_len = 255, 4, 28, 8
    entry = header.entries.get(BAG_ENTRY_ID)
    if entry is not None and len(entry) >= 8:
        key_type, entry_key_len, counter_type, entry_counter_len = struct.unpack(">4H", entry[:8])
        if version >= 4:
            key_len, counter_len = entry_key_len, entry_counter_len
    if version == 1:
        counter_len = 4
    if key_len not in (1, 2, 4, 16) or counter_len not in (4, 8):
        raise SilkFileError(f"{label}: bag with {key_len}-byte keys and {counter_len}-byte counters is not read")
    body = _records_bytes(data, header.offset, header.compression, label)
    size = key_len + counter_len
    if len(body) % size:
        raise SilkFileError(f"{label}: {len(body) % size} trailing byte(s) after the last whole bag entry")
    order = header.order
    key_field = ("key", "V16") if key_len == 16 else ("key", f"{order}u{key_len}")
    rows = np.frombuffer(body, dtype=np.dtype([key_field, ("counter", f"{order}u{counter_len}")]))
    if key_len == 16:
        keys = np.frombuffer(rows["key"].tobytes(), dtype=np.uint8).reshape(-1, 16)
    else:
        keys = rows["key"].astype(np.uint64)
    return SilkBag(BAG_KEYS.get(key_type, "value"), BAG_COUNTERS.get(counter_type, "records"), key_len == 16, keys,
                   rows["counter"].astype(np.uint64))


def read_silk_file(path: str | Path) -> pa.Table:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SilkFileError(f"{path}: cannot read: {exc.strerror}") from None
    return read_silk_flows(data, str(path))


def _decompressor(compression: int, label: str):
    """The block decompressor of a SiLK compression method: zlib (the standard library), snappy
    (cramjam, raw blocks) and lzo1x (lzallright: LZO1X blocks as SiLK's liblzo2 writes them)."""
    if compression == 1:
        return lambda block, size: zlib.decompressobj().decompress(block, size + 1)  # never past the stated size
    if compression == 2:
        from lzallright import LZOCompressor

        return lambda block, size: LZOCompressor.decompress(block, output_size_hint=size)
    if compression == 3:
        import cramjam

        return lambda block, size: bytes(cramjam.snappy.decompress_raw(block))
    raise SilkFileError(f"{label}: compression method {compression} is unknown (SiLK has none, zlib, lzo1x and snappy)")


def _records_bytes(data: bytes, offset: int, compression: int, label: str) -> bytes:
    """The record bytes after the header: as they are, or each compressed block decompressed
    (SiLK writes blocks of [compressed length, uncompressed length, data])."""
    if compression == 0:
        return data[offset:]
    decompress = _decompressor(compression, label)
    method = COMPRESSION[compression]
    blocks = []
    while offset < len(data):
        if offset + 8 > len(data):
            raise SilkFileError(f"{label}: truncated compressed block header at byte {offset}")
        compressed, uncompressed = struct.unpack_from(">II", data, offset)
        offset += 8
        if offset + compressed > len(data):
            raise SilkFileError(f"{label}: truncated compressed block at byte {offset - 8}")
        if uncompressed > MAX_BLOCK_BYTES or compressed > MAX_BLOCK_BYTES:  # a damaged length: no 2 GB allocation
            raise SilkFileError(f"{label}: block at byte {offset - 8} claims {max(compressed, uncompressed):,} bytes; "
                                f"SiLK's blocks hold at most {MAX_BLOCK_BYTES:,}")
        try:
            block = decompress(data[offset : offset + compressed], uncompressed)
        except Exception as exc:  # each library has its own error class; any of them means a damaged block
            raise SilkFileError(f"{label}: damaged {method} block at byte {offset - 8}: {str(exc) or type(exc).__name__}") from None
        if len(block) != uncompressed:
            raise SilkFileError(f"{label}: block at byte {offset - 8} holds {len(block)} bytes, its header says {uncompressed}")
        blocks.append(block)
        offset += compressed
    return b"".join(blocks)


def _flags(records: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(initial flags, session flags, attributes) as libsilk reads them."""
    state = records["tcp_state"]
    initial, session = records["init_flags"].copy(), records["rest_flags"].copy()
    # libsilk clears initial/session flags unless the state says they are valid (TCP, not both 0)
    invalid = ((state & TCPSTATE_EXPANDED) == 0) | (records["proto"] != PROTO_TCP) | ((initial == 0) & (session == 0))
    initial[invalid] = 0
    session[invalid] = 0
    attributes = (state & TCPSTATE_ATTRIBUTES) | np.where(state & TCPSTATE_IPV6, ATTR_IPV6, 0).astype(np.uint8)
    return initial, session, attributes.astype(np.uint8)


def _ipv4_of(raw: np.ndarray) -> np.ndarray:
    """The IPv4 address in the last 4 bytes of 16-byte fields (network order)."""
    return np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(-1, 16)[:, 12:].copy().view(">u4").reshape(-1).astype(np.uint32)


def _ipv6_column(raw: np.ndarray, v6: np.ndarray) -> pa.Array:
    """16-byte addresses of the IPv6 records; null on IPv4 records."""
    n = len(raw)
    if not v6.any():
        return pa.nulls(n, IPV6_TYPE)
    values = pa.FixedSizeBinaryArray.from_buffers(IPV6_TYPE, n, [None, pa.py_buffer(raw.tobytes())])
    return pc.if_else(pa.array(~v6), pa.nulls(n, IPV6_TYPE), values)


def _flow_table(columns: dict[str, np.ndarray]) -> pa.Table:
    """Native-order arrays in the flow schema's types (SiLK files may be big-endian)."""
    return pa.table({k: pa.array(np.ascontiguousarray(v).astype(FLOW_SCHEMA.field(k).type.to_pandas_dtype()))
                     for k, v in columns.items()})


PROTO_ICMP, PROTO_ICMPV6 = 1, 58


def icmp_fixup(columns: dict[str, np.ndarray], v6: np.ndarray) -> None:
    """libsilk's fix-up on reading any flow file (skStreamReadRecord): an ICMP record (ICMPv6 on
    IPv6) with its type/code in sPort and a zero dPort gets them moved to dPort."""
    protocol = np.asarray(columns["protocol"])
    icmp = (protocol == PROTO_ICMP) | (v6 & (protocol == PROTO_ICMPV6))
    moved = icmp & (np.asarray(columns["sPort"]) != 0) & (np.asarray(columns["dPort"]) == 0)
    if moved.any():
        columns["dPort"] = np.where(moved, columns["sPort"], columns["dPort"])
        columns["sPort"] = np.where(moved, 0, columns["sPort"])


def _routing_table(records: np.ndarray, version: int) -> pa.Table:
    v6 = (records["tcp_state"] & TCPSTATE_IPV6) != 0
    initial, session, attributes = _flags(records)
    zero = np.zeros(len(records), np.uint32)
    columns = {
        "sIP": np.where(v6, zero, _ipv4_of(records["sIP"])),
        "dIP": np.where(v6, zero, _ipv4_of(records["dIP"])),
        "sPort": records["sPort"], "dPort": records["dPort"], "protocol": records["proto"],
        "packets": records["pkts"].astype(np.uint64), "bytes": records["bytes"].astype(np.uint64),
        "flags": records["flags"], "initialFlags": initial, "sessionFlags": session,
        "sTime": records["sTime"].astype(np.int64), "duration": records["elapsed"].astype(np.uint32),
        "sensor": records["sensor"], "flowtype": records["flow_type"],
        "in": records["input"].astype(np.uint16), "out": records["output"].astype(np.uint16),
        "nhIP": np.where(v6, zero, _ipv4_of(records["nhIP"])),
        # version 2 is version 1 whose application field libsilk clears on reading
        "application": records["application"] if version != 2 else np.zeros(len(records), np.uint16),
        "attributes": attributes,
    }
    icmp_fixup(columns, v6)
    table = _flow_table(columns)
    for name in ("sIP", "dIP", "nhIP"):
        table = table.append_column(f"{name}v6", _ipv6_column(records[name], v6))
    return conform(table)


def _generic_table(records: np.ndarray, version: int) -> pa.Table:
    n = len(records)
    names = records.dtype.names
    if "tcp_state" in names:
        initial, session, attributes = _flags(records)
    else:  # v0/v1: no TCP state, so no initial/session flags or attributes
        initial = session = attributes = np.zeros(n, np.uint8)
    if version >= 5:
        start, duration = records["sTime"].astype(np.int64), records["elapsed"].astype(np.uint32)
    else:
        start = records["sTime_s"].astype(np.int64) * 1000
        duration = records["elapsed_s"].astype(np.int64) * 1000
        if "sTime_ms" in names:  # v3-v4 keep the milliseconds apart
            start = start + records["sTime_ms"].astype(np.int64)
            duration = duration + records["elapsed_ms"].astype(np.int64)
        duration = duration.astype(np.uint32)
    zeros16 = np.zeros(n, np.uint16)
    columns = {
        "sIP": records["sIP"], "dIP": records["dIP"], "sPort": records["sPort"], "dPort": records["dPort"],
        "protocol": records["proto"], "packets": records["pkts"].astype(np.uint64), "bytes": records["bytes"].astype(np.uint64),
        "flags": records["flags"], "initialFlags": initial, "sessionFlags": session, "sTime": start, "duration": duration,
        "sensor": records["sensor"].astype(np.uint16),
        "flowtype": records["flow_type"] if "flow_type" in names else np.full(n, 0xFF, np.uint8),  # v0/v1: none stored
        "in": records["input"].astype(np.uint16), "out": records["output"].astype(np.uint16),
        "nhIP": records["nhIP"], "application": records["application"] if "application" in names else zeros16,
        "attributes": attributes & np.uint8(~ATTR_IPV6 & 0xFF),
    }
    icmp_fixup(columns, np.zeros(n, bool))
    table = _flow_table(columns)
    for name in ("sIPv6", "dIPv6", "nhIPv6"):
        table = table.append_column(name, pa.nulls(n, IPV6_TYPE))
    return conform(table)


# --- writing flow files SiLK reads -----------------------------------------------------------------

SILK_VERSION = 3_019_001  # the SiLK release whose layout these files follow (3.19.1)
_IP4IN6 = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


def silk_flow_bytes(table: pa.Table) -> bytes:
    """Flow records as an FT_RWIPV6ROUTING file (little-endian, uncompressed) that SiLK reads:
    record version 1 (88 bytes), or 3 (100 bytes) when a volume or interface needs the wider fields.
    IPv4 addresses are stored in ::ffff:0:0/96 as SiLK stores them; the attributes' IPv6 bit marks
    IPv6 records."""
    table = conform(table)
    n = table.num_rows
    col = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names if not name.endswith("v6")}
    wide = n and (int(col["packets"].max()) > 0xFFFFFFFF or int(col["bytes"].max()) > 0xFFFFFFFF)
    version = 3 if wide else 1
    dtype = _routing_dtype("<", version)
    records = np.zeros(n, dtype=dtype)
    records["sTime"], records["elapsed"] = col["sTime"], col["duration"]
    records["sPort"], records["dPort"], records["proto"] = col["sPort"], col["dPort"], col["protocol"]
    records["flow_type"], records["sensor"], records["flags"] = col["flowtype"], col["sensor"], col["flags"]
    records["init_flags"], records["rest_flags"] = col["initialFlags"], col["sessionFlags"]
    expanded = ((col["initialFlags"] | col["sessionFlags"]) != 0).astype(np.uint8) * TCPSTATE_EXPANDED
    v6 = (col["attributes"] & ATTR_IPV6) != 0
    records["tcp_state"] = (col["attributes"] & TCPSTATE_ATTRIBUTES) | expanded | np.where(v6, TCPSTATE_IPV6, 0).astype(np.uint8)
    records["application"], records["input"], records["output"] = col["application"], col["in"], col["out"]
    records["pkts"], records["bytes"] = col["packets"], col["bytes"]
    for name in ("sIP", "dIP", "nhIP"):
        raw = np.zeros((n, 16), dtype=np.uint8)
        raw[:, :12] = _IP4IN6
        raw[:, 12:] = col[name].astype(">u4").view(np.uint8).reshape(-1, 4)
        if v6.any():
            packed = table.column(name + "v6").combine_chunks()
            rows = np.flatnonzero(v6)
            if packed.null_count < len(packed):
                values = np.frombuffer(packed.buffers()[1], dtype=np.uint8)[packed.offset * 16 : (packed.offset + n) * 16].reshape(n, 16)
                raw[rows] = values[rows]
        records[name] = raw.view("V16").reshape(-1)
    size = dtype.itemsize
    header = HEADER_START.pack(MAGIC, 0, FT_RWIPV6ROUTING, EXPANDED_HEADERS, 0, SILK_VERSION, size, version)
    pad = size - len(header) % size if len(header) % size else size  # the end entry pads the header to a record size
    while pad < ENTRY.size:
        pad += size
    return header + ENTRY.pack(0, pad) + bytes(pad - ENTRY.size) + records.tobytes()


# --- writing IP sets and bags SiLK reads -------------------------------------------------------------

SET_BITMAP = 0x81  # in a record-version-4 IP set: a 256-address bitmap follows the base address
SET_VERSIONS_WRITTEN = (2, 4)


def _header(fmt: int, rec_size: int, rec_version: int, entries: list[tuple[int, bytes]]) -> bytes:
    """A SiLK file header (little-endian, uncompressed), the end entry padding it to a multiple of
    the record size as SiLK pads it."""
    head = HEADER_START.pack(MAGIC, 0, fmt, EXPANDED_HEADERS, 0, SILK_VERSION, rec_size, rec_version)
    head += b"".join(ENTRY.pack(entry_id, ENTRY.size + len(data)) + data for entry_id, data in entries)
    pad = ENTRY.size
    while (len(head) + pad) % rec_size:
        pad += 1
    return head + ENTRY.pack(0, pad) + bytes(pad - ENTRY.size)


def _cidrbmap_body(blocks: list[tuple[int, int]], width: int) -> bytes:
    """IP set record version 4: each block as its address and prefix, except that two or more
    blocks inside one /24 (IPv4) or /120 (IPv6) become the /24's or /120's address and a 256-bit
    bitmap (SiLK's ipsetWriteCidrbmapFromRadix)."""
    bits = width * 8
    bitmap_prefix = bits - 8

    def address(value: int) -> bytes:
        return value.to_bytes(width, "big" if width == 16 else "little")  # IPv6 in network order

    out, pending = [], []  # pending: the blocks of the current /24 or /120

    def flush() -> None:
        if len(pending) == 1:
            out.append(address(pending[0][0]) + bytes([pending[0][1]]))
        elif pending:
            base = pending[0][0] & ~0xFF
            bitmap = 0
            for start, prefix in pending:
                bitmap |= ((1 << (1 << (bits - prefix))) - 1) << (start & 0xFF)
            out.append(address(base) + bytes([SET_BITMAP]) + bitmap.to_bytes(32, "little"))
        pending.clear()

    for start, prefix in blocks:
        if pending and (prefix <= bitmap_prefix or (start >> 8) != (pending[0][0] >> 8)):
            flush()
        if prefix <= bitmap_prefix:
            out.append(address(start) + bytes([prefix]))
        else:
            pending.append((start, prefix))
    flush()
    return b"".join(out)


def silk_ipset_bytes(v4: np.ndarray, v6: list[int], record_version: int = 0) -> bytes:
    """An IP set as a SiLK IPset file: sorted distinct IPv4 addresses (uint32) and IPv6 addresses
    (ints).  Record version 0 is SiLK's default: 2 (/24 bitmaps) for an IPv4-only set, else 4 (CIDR
    blocks and bitmaps) with the IPv4 addresses in ::ffff:0:0/96, as SiLK keeps a mixed set."""
    if record_version not in (0, *SET_VERSIONS_WRITTEN):
        raise SilkFileError(f"IP set record version {record_version} is not written (0, 2 and 4 are)")
    v4 = np.asarray(v4, dtype=np.uint32)
    if v6 and record_version == 2:
        raise SilkFileError("an IP set holding IPv6 addresses cannot be written as record version 2 (IPv4 only)")
    if not v6:  # an IPv4 set: SiLK's /16-/24 tree and its writers
        bases, words = _slash24_bitmaps(v4)
        if record_version in (0, 2):
            body = np.empty((len(bases), 9), dtype="<u4")
            body[:, 0], body[:, 1:] = bases, words
            return _header(FT_IPSET, 1, 2, []) + body.tobytes()
        layout = struct.pack(">6I", 0, 0, 4, 0, 0, 0)  # SiLK's IPset entry: only the address width is set
        return _header(FT_IPSET, 1, 4, [(IPSET_ENTRY_ID, layout)]) + _slash24_cidrbmap_body(bases, words)
    runs = int_runs(sorted([0xFFFF << 32 | a for a in v4.tolist()] + list(v6)))
    layout = struct.pack(">6I", 0, 0, 16, 0, 0, 0)
    return _header(FT_IPSET, 1, 4, [(IPSET_ENTRY_ID, layout)]) + _cidrbmap_body([b for low, high in runs for b in range_cidrs(low, high, 128)], 16)


def _slash24_bitmaps(v4: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct IPv4 addresses as the /24s they occupy (base addresses, uint32) and each
    /24's 256-bit bitmap (8 little-endian uint32 words, bit i of word w = address w*32+i)."""
    bases, first = np.unique(v4 >> np.uint32(8), return_index=True)
    words = np.zeros((len(bases), 8), dtype="<u4")
    row = np.repeat(np.arange(len(bases)), np.diff(np.r_[first, len(v4)]))
    low = (v4 & np.uint32(0xFF)).astype(np.uint32)
    np.bitwise_or.at(words, (row, low >> np.uint32(5)), np.left_shift(np.uint32(1), low & np.uint32(31)))
    return (bases << np.uint32(8)).astype("<u4"), words


def _slash24_cidrbmap_body(bases: np.ndarray, words: np.ndarray) -> bytes:
    """IP set record version 4 from SiLK's IPv4 tree (ipsetWriteCidrbmapFromIPTree): a /24 holding
    some addresses is its bitmap; runs of full /24s are written as their fewest CIDR blocks."""
    full = (words == 0xFFFFFFFF).all(axis=1)
    out, run = [], []  # run: the /24 numbers of consecutive full /24s

    def flush() -> None:
        if run:
            out.extend(start.to_bytes(4, "little") + bytes([prefix])
                       for start, prefix in range_cidrs(run[0] << 8, (run[-1] << 8) | 0xFF, 32))
            run.clear()

    for base, is_full, bitmap in zip(bases.tolist(), full.tolist(), words):
        if is_full:
            if run and base >> 8 != run[-1] + 1:
                flush()
            run.append(base >> 8)
            continue
        flush()
        out.append(base.to_bytes(4, "little") + bytes([SET_BITMAP]) + bitmap.tobytes())
    flush()
    return b"".join(out)


# vlf's bag keys and counters -> SiLK's field types (IP keys: IPv4 form, IPv6 form)
_SILK_BAG_KEY_TYPES = {name: number for number, name in sorted(BAG_KEYS.items(), reverse=True)}
_SILK_BAG_IPV6_KEY_TYPES = {"sIP": 25, "dIP": 26, "nhIP": 27, "anyIP": 33}
_SILK_COUNTER_TYPES = {name: number for number, name in BAG_COUNTERS.items()}
SILK_CUSTOM_FIELD = 255


def silk_bag_bytes(key: str, counter: str, keys: np.ndarray, counters: np.ndarray) -> bytes:
    """A one-key, one-counter bag as a SiLK bag file, its entries sorted by key as SiLK writes
    them.  ``keys`` is uint32-sized integers (record version 3: 4-byte keys), or an (n, 16) uint8
    array of IPv6 addresses in network order (record version 4; IPv4 keys mapped into
    ::ffff:0:0/96).  A counter SiLK has no type for (``distinct:...``) is written as custom."""
    counters = np.asarray(counters, dtype="<u8")
    counter_type = _SILK_COUNTER_TYPES.get(counter, SILK_CUSTOM_FIELD)
    if keys.ndim == 2:
        key_type = _SILK_BAG_IPV6_KEY_TYPES.get(key, SILK_CUSTOM_FIELD)
        order = np.lexsort(tuple(keys[:, i] for i in range(15, -1, -1)))
        rows = np.empty(len(keys), dtype=np.dtype([("key", "V16"), ("counter", "<u8")]))
        rows["key"] = np.ascontiguousarray(keys[order]).view("V16").reshape(-1)
        rows["counter"] = counters[order]
        entry = struct.pack(">4H", key_type, 16, counter_type, 8)
        return _header(FT_RWBAG, 24, 4, [(BAG_ENTRY_ID, entry)]) + rows.tobytes()
    key_type = _SILK_BAG_KEY_TYPES.get(key, SILK_CUSTOM_FIELD)
    if len(keys) and int(np.max(keys)) > 0xFFFFFFFF:
        raise SilkFileError(f"bag keys of {key} above 2^32-1 do not fit SiLK's 4-byte keys")
    order = np.argsort(keys, kind="stable")
    rows = np.empty(len(keys), dtype=np.dtype([("key", "<u4"), ("counter", "<u8")]))
    rows["key"], rows["counter"] = np.asarray(keys)[order], counters[order]
    entry = struct.pack(">4H", key_type, 4, counter_type, 8)
    return _header(FT_RWBAG, 12, 3, [(BAG_ENTRY_ID, entry)]) + rows.tobytes()
