"""SiLK's packed hourly flow formats: the files rwflowpack writes into a SiLK repository.

A packed file holds one hour of one sensor's flows of one flowtype.  Its header carries that
hour, flowtype and sensor (the "packedfile" header entry, id 1: start time as int64 ms, flowtype
and sensor as uint32, network order), so most records store only an offset into the hour and no
sensor or flowtype.  Volumes are often packed as a packet count (20 bits, times 64 when a flag
says so) and a bytes-per-packet ratio (14 bits whole, 6 bits 1/64ths), from which libsilk
rebuilds the byte count.

Read here, each with the layouts of SiLK 3.19.1's src/libsilk/rw*io.c and flowcapio.c and the
unpacking of rwpack.c, vectorised over the whole record array:

- ``FT_RWIPV6`` v1-v2 (rwflowpack's output on an IPv6-enabled site);
- ``FT_RWAUGMENTED``, ``FT_RWAUGWEB``, ``FT_RWAUGROUTING``, ``FT_RWAUGSNMPOUT`` v1-v5 (IPv4 sites);
- the older ``FT_RWSPLIT``, ``FT_RWWWW``, ``FT_RWROUTED``, ``FT_RWNOTROUTED``, ``FT_RWFILTER``
  v1-v5 and ``FT_FLOWCAP`` v2-v6.

Every field a format does not store takes the value libsilk gives it: sensor and flowtype from
the header (65535 and 255 without the entry; ``FT_RWFILTER`` stores both, ``FT_FLOWCAP`` no
flowtype), 0 for addresses, interfaces and application.  As libsilk's reader does for every
file, an ICMP record with its type/code in sPort and a zero dPort gets them moved to dPort.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

from .schema import ATTR_IPV6, IPV6_TYPE, conform
from .silkfile import (
    PROTO_TCP, TCPSTATE_ATTRIBUTES, TCPSTATE_EXPANDED, TCPSTATE_IPV6, Header, SilkFileError, _flags, _flow_table,
    icmp_fixup,
    _ipv4_of, _ipv6_column,
)

PACKEDFILE_ENTRY_ID = 1  # SK_HENTRY_PACKEDFILE_ID
PACKEDFILE_ENTRY = struct.Struct(">qII")  # start of the hour (ms), flowtype, sensor
NO_SENSOR, NO_FLOWTYPE = 0xFFFF, 0xFF  # libsilk's values when a file says nothing
WEB_PORTS = np.array([80, 443, 8080, 0], dtype=np.int64)  # SK_WEBPORT_EXPAND: 2-bit code -> port

FT_RWIPV6, FT_RWAUGSNMPOUT, FT_RWAUGROUTING = 0x0B, 0x0D, 0x0E
FT_RWROUTED, FT_RWNOTROUTED, FT_RWSPLIT, FT_RWFILTER = 0x10, 0x11, 0x12, 0x13
FT_RWAUGMENTED, FT_RWAUGWEB, FT_FLOWCAP, FT_RWWWW = 0x14, 0x15, 0x1C, 0x1F


@dataclass(frozen=True)
class PackedFile:
    """What a packed file's records leave to its header: the packedfile entry's hour, flowtype
    and sensor, plus the record version and byte order."""

    start: int  # ms since the epoch
    flowtype: int
    sensor: int
    version: int
    order: str  # '<' or '>'


def packed_file(header: Header, label: str) -> PackedFile:
    entry = header.entries.get(PACKEDFILE_ENTRY_ID)
    if entry is None:  # libsilk then reads offsets from time 0 and marks sensor/flowtype invalid
        return PackedFile(0, NO_FLOWTYPE, NO_SENSOR, header.rec_version, header.order)
    if len(entry) != PACKEDFILE_ENTRY.size:
        raise SilkFileError(f"{label}: damaged packed-file header entry ({len(entry)} bytes, "
                            f"not {PACKEDFILE_ENTRY.size})")
    start, flowtype, sensor = PACKEDFILE_ENTRY.unpack(entry)
    # libsilk keeps flowtype and sensor in 8 and 16 bits
    return PackedFile(start, flowtype & 0xFF, sensor & 0xFFFF, header.rec_version, header.order)


# --- record layouts (field name, type; multi-byte integers take the file's byte order) --------------

# the 6-byte start time / protocol / flags block of rwpackUnpackTimesFlagsProto
_TIMES_FLAGS_PROTO = [("rflag_stime", "u4"), ("proto_iflags", "u1"), ("tcp_state", "u1"), ("application", "u2")]
# the 16-byte (12 without state, rest flags and application) block of rwpackUnpackFlagsTimesVolumes
_FLAGS_TIMES_VOLUMES_12 = [("stime_bb1", "u4"), ("bb2_elapsed", "u4"), ("pro_flg_pkts", "u4")]
_FLAGS_TIMES_VOLUMES = _FLAGS_TIMES_VOLUMES_12 + [("tcp_state", "u1"), ("rest_flags", "u1"), ("application", "u2")]
# the three words of rwpackUnpackTimeBytesPktsFlags
_TIME_BYTES_PKTS_FLAGS = [("pkts_stime", "u4"), ("bbe", "u4"), ("msec_flags", "u4")]
_ADDRESSES = [("sIP", "u4"), ("dIP", "u4")]
_PORTS = [("sPort", "u2"), ("dPort", "u2")]
_VOLUMES = [("elapsed", "u4"), ("pkts", "u4"), ("bytes", "u4")]

_AUG_V5 = _TIMES_FLAGS_PROTO + _PORTS + _VOLUMES + _ADDRESSES
_AUG_V1 = _ADDRESSES + _PORTS + _TIME_BYTES_PKTS_FLAGS + [("application", "u2"), ("tcp_state", "u1"),
                                                         ("rest_flags", "u1")]
_SPLIT_V1 = _ADDRESSES + _PORTS + [("pef", "u4"), ("sbb", "u4"), ("proto", "u1"), ("flags", "u1")]
_FLOWCAP_HEAD = _ADDRESSES + [("bytes", "u4"), ("sTime_s", "u4"), ("elapsed_s", "u2")] + _PORTS

LAYOUTS: dict[int, dict[tuple[int, ...], list]] = {  # format -> record versions -> fields
    FT_RWIPV6: {
        (1,): [("sTime", "i8"), ("elapsed", "u4")] + _PORTS + [
            ("proto", "u1"), ("flow_type", "u1"), ("sensor", "u2"), ("flags", "u1"), ("init_flags", "u1"),
            ("rest_flags", "u1"), ("tcp_state", "u1"), ("application", "u2"), ("memo", "u2"), ("pkts", "u4"),
            ("bytes", "u4"), ("sIP", "V16"), ("dIP", "V16")],
        (2,): _TIMES_FLAGS_PROTO + _PORTS + _VOLUMES + [("sIP", "V16"), ("dIP", "V16")],
    },
    FT_RWAUGMENTED: {
        (5,): _AUG_V5,
        (4,): _FLAGS_TIMES_VOLUMES + _PORTS + _ADDRESSES,
        (1, 2, 3): _AUG_V1,  # v1-v3 differ only in header padding and compression support
    },
    FT_RWAUGROUTING: {
        (5,): _AUG_V5 + [("nhIP", "u4"), ("input", "u2"), ("output", "u2")],
        (4,): _FLAGS_TIMES_VOLUMES + _PORTS + [("input", "u2"), ("output", "u2")] + _ADDRESSES + [("nhIP", "u4")],
        (1, 2, 3): _AUG_V1 + [("nhIP", "u4"), ("input", "u2"), ("output", "u2")],
    },
    FT_RWAUGSNMPOUT: {
        (5,): _AUG_V5 + [("output", "u2")],
        (4,): _FLAGS_TIMES_VOLUMES + _PORTS + _ADDRESSES + [("output", "u2")],
        (1, 2, 3): _AUG_V1 + [("output", "u2")],
    },
    FT_RWAUGWEB: {
        (5,): _TIMES_FLAGS_PROTO + [("srvport_elapsed", "u4"), ("pkts", "u4"), ("bytes", "u4")] + _ADDRESSES
        + [("clnt_port", "u2")],
        (4,): _FLAGS_TIMES_VOLUMES + _ADDRESSES + [("clnt_port", "u2")],
        (1, 2, 3): _ADDRESSES + _TIME_BYTES_PKTS_FLAGS + [("clnt_port", "u2"), ("application", "u2"),
                                                          ("tcp_state", "u1"), ("rest_flags", "u1")],
    },
    FT_RWSPLIT: {
        (5,): _FLAGS_TIMES_VOLUMES_12 + _PORTS + _ADDRESSES,
        (3, 4): _ADDRESSES + _PORTS + _TIME_BYTES_PKTS_FLAGS,
        (1, 2): _SPLIT_V1,
    },
    FT_RWROUTED: {
        (5,): _FLAGS_TIMES_VOLUMES_12 + _PORTS + [("input", "u2"), ("output", "u2")] + _ADDRESSES + [("nhIP", "u4")],
        (3, 4): _ADDRESSES + _PORTS + _TIME_BYTES_PKTS_FLAGS + [("nhIP", "u4"), ("input", "u2"), ("output", "u2")],
        (1, 2): _ADDRESSES + [("nhIP", "u4")] + _PORTS + [("pef", "u4"), ("sbb", "u4"), ("proto", "u1"),
                                                          ("flags", "u1"), ("input", "u1"), ("output", "u1")],
    },
    FT_RWNOTROUTED: {
        (5,): _FLAGS_TIMES_VOLUMES_12 + _PORTS + _ADDRESSES + [("input", "u2")],
        (3, 4): _ADDRESSES + _PORTS + _TIME_BYTES_PKTS_FLAGS + [("input", "u2")],
        (1, 2): _SPLIT_V1 + [("input", "u1")],
    },
    FT_RWWWW: {
        (5,): _FLAGS_TIMES_VOLUMES_12 + _ADDRESSES + [("clnt_port", "u2")],
        (3, 4): _ADDRESSES + _TIME_BYTES_PKTS_FLAGS + [("clnt_port", "u2")],
        (1, 2): _ADDRESSES + [("pef", "u4"), ("sbb", "u4"), ("clnt_port", "u2"), ("wrf", "u1"), ("wport", "u1")],
    },
    FT_RWFILTER: {
        (4, 5): _ADDRESSES + _PORTS + [
            ("nhIP", "u4"), ("input", "u2"), ("output", "u2"), ("sTime_s", "u4"), ("elapsed_s", "u4"),
            ("pkts_stimems", "u4"), ("bb_elapsems", "u4"), ("sensor", "u2"), ("flow_type", "u1"), ("prot_flags", "u1"),
            ("application", "u2"), ("tcp_state", "u1"), ("rest_flags", "u1")],
        (3,): _ADDRESSES + _PORTS + [
            ("nhIP", "u4"), ("input", "u2"), ("output", "u2"), ("sTime_s", "u4"), ("elapsed_s", "u4"),
            ("pkts_ftype", "u4"), ("bpp", "u4"), ("sensor", "u2"), ("proto", "u1"), ("flags", "u1")],
        (1, 2): _ADDRESSES + _PORTS + [("proto", "u1"), ("flags", "u1"), ("input", "u1"), ("output", "u1"),
                                       ("nhIP", "u4"), ("sTime_s", "u4"), ("pef", "u4"), ("sbb", "u4")],
    },
    FT_FLOWCAP: {  # pkts: 3 bytes in the file's byte order
        (5, 6): _FLOWCAP_HEAD + [("application", "u2"), ("input", "u2"), ("output", "u2"), ("pkts", "3u1"),
                                 ("proto", "u1"), ("flags", "u1"), ("first_flags", "u1"), ("tcp_state", "u1"),
                                 ("time_frac", "3u1")],
        (3, 4): _FLOWCAP_HEAD + [("application", "u2"), ("input", "u1"), ("output", "u1"), ("pkts", "3u1"),
                                 ("proto", "u1"), ("flags", "u1"), ("first_flags", "u1"), ("tcp_state", "u1"),
                                 ("time_frac", "3u1")],
        (2,): _FLOWCAP_HEAD + [("input", "u1"), ("output", "u1"), ("pkts", "3u1"), ("proto", "u1"), ("flags", "u1"),
                               ("tos", "u1")],
    },
}


def record_dtype(fmt: int, version: int, order: str) -> np.dtype | None:
    """A format's record layout at one record version, or None when SiLK has no such version."""
    fields = next((layout for versions, layout in LAYOUTS.get(fmt, {}).items() if version in versions), None)
    if fields is None:
        return None
    if fmt == FT_FLOWCAP and version == 4:
        fields = fields + [("payload_hash", "u4")]
    return np.dtype([(name, order + code if code in ("u2", "u4", "i8") else code) for name, code in fields])


# --- rwpack.c's unpacking, vectorised ----------------------------------------------------------------
# Each takes the record array's fields and returns columns under the flow schema's names (plus
# ``tcp_state``); all arithmetic is in int64, masked where SiLK's is 32-bit.

Columns = dict[str, np.ndarray]


def _bits(value: np.ndarray, offset: int, width: int) -> np.ndarray:
    """GET_MASKED_BITS: ``width`` bits of ``value`` from bit ``offset``."""
    return (value.astype(np.int64) >> offset) & ((1 << width) - 1)


def _volumes(bpp: np.ndarray, pkts: np.ndarray, pflag: np.ndarray) -> Columns:
    """rwpackUnpackBytesPackets: packets (times 64 when pflag is set) and the bytes rebuilt from
    the bytes-per-packet ratio, rounded to the nearest byte and in C's int/uint32 arithmetic."""
    packets = np.where(pflag != 0, pkts * 64, pkts).astype(np.int64)
    fraction = ((bpp & 0x3F) * packets) & 0xFFFFFFFF
    fraction = fraction.astype(np.uint32).view(np.int32).astype(np.int64)  # div() takes a C int
    quotient = np.where(fraction < 0, -((-fraction) // 64), fraction // 64)  # C division truncates
    remainder = fraction - quotient * 64
    total = ((bpp >> 6) & 0x3FFF) * packets + quotient + (remainder >= 32)
    return {"packets": packets, "bytes": total & 0xFFFFFFFF}


def _times_flags_proto(r: np.ndarray, f: PackedFile) -> Columns:
    """rwpackUnpackTimesFlagsProto: ms offset in the hour (22 bits), is-TCP bit 23, rest flags in
    the top byte; proto_iflags is the protocol, or the TCP flags (initial ones when expanded).
    Non-TCP records keep no flags."""
    word, first, state = r["rflag_stime"].astype(np.int64), r["proto_iflags"].astype(np.int64), r["tcp_state"]
    tcp = _bits(word, 23, 1) == 1
    expanded = tcp & ((state & TCPSTATE_EXPANDED) != 0)
    initial = np.where(expanded, first, 0)
    session = np.where(expanded, _bits(word, 24, 8), 0)
    return {"sTime": f.start + _bits(word, 0, 22), "protocol": np.where(tcp, PROTO_TCP, first),
            "flags": np.where(expanded, initial | session, np.where(tcp, first, 0)),
            "initialFlags": initial, "sessionFlags": session, "tcp_state": state,
            "application": r["application"]}


def _flags_times_volumes(r: np.ndarray, f: PackedFile, force_tcp: bool = False) -> Columns:
    """rwpackUnpackFlagsTimesVolumes: start offset (ms, 22 bits) and duration (ms, 22 bits) with the
    bytes-per-packet ratio split across them; pkts (20 bits), pflag (bit 23), is-TCP (bit 22) and
    the protocol or flags (top byte).  The 12-byte form has no state, rest flags or application."""
    head, tail, word = (r[name].astype(np.int64) for name in ("stime_bb1", "bb2_elapsed", "pro_flg_pkts"))
    names = r.dtype.names
    zero = np.zeros(len(r), np.int64)
    state = r["tcp_state"].astype(np.int64) if "tcp_state" in names else zero
    rest = r["rest_flags"].astype(np.int64) if "rest_flags" in names else zero
    tcp = np.ones(len(r), bool) if force_tcp else _bits(word, 22, 1) == 1
    top = _bits(word, 24, 8)
    expanded = tcp & ((state & TCPSTATE_EXPANDED) != 0)
    columns = {"sTime": f.start + _bits(head, 10, 22), "duration": _bits(tail, 0, 22),
               "protocol": np.where(tcp, PROTO_TCP, top), "flags": np.where(tcp, top | rest, rest),
               "initialFlags": np.where(expanded, top, 0), "sessionFlags": np.where(expanded, rest, 0),
               "tcp_state": state}
    if "application" in names:
        columns["application"] = r["application"]
    bpp = (_bits(head, 0, 10) << 10) | _bits(tail, 22, 10)
    return columns | _volumes(bpp, _bits(word, 0, 20), _bits(word, 23, 1))


def _time_bytes_pkts_flags(r: np.ndarray, f: PackedFile, preset_tcp: bool = False) -> Columns:
    """rwpackUnpackTimeBytesPktsFlags: pkts (20 bits) and start seconds (12 bits); bytes-per-packet
    (20 bits) and duration seconds (12 bits); start and duration ms (10 bits each), pflag, is-TCP
    and the protocol or TCP flags.  ``preset_tcp``: the format holds only TCP (proto set first)."""
    counts, ratio, word = (r[name].astype(np.int64) for name in ("pkts_stime", "bbe", "msec_flags"))
    tcp = np.ones(len(r), bool) if preset_tcp else _bits(word, 10, 1) == 1
    low = _bits(word, 0, 8)
    columns = {"sTime": f.start + _bits(counts, 0, 12) * 1000 + _bits(word, 22, 10),
               "duration": _bits(ratio, 0, 12) * 1000 + _bits(word, 12, 10),
               "protocol": np.where(tcp, PROTO_TCP, low), "flags": np.where(tcp, low, 0)}
    return columns | _volumes(_bits(ratio, 12, 20), _bits(counts, 12, 20), _bits(word, 11, 1))


def _proto_flags(columns: Columns, is_tcp: np.ndarray, first: np.ndarray, state: np.ndarray,
                 rest: np.ndarray) -> Columns:
    """rwpackUnpackProtoFlags, over what an earlier step set: a TCP record (is-TCP bit, or protocol
    already 6) takes the flags, split into initial and session flags when expanded; any other
    record takes the protocol from ``first`` and its flags from ``rest``."""
    first, rest = first.astype(np.int64), rest.astype(np.int64)
    tcp = (columns["protocol"] == PROTO_TCP) | (is_tcp == 1)
    expanded = tcp & ((state & TCPSTATE_EXPANDED) != 0)
    return columns | {
        "protocol": np.where(tcp, PROTO_TCP, first),
        "flags": np.where(expanded, first | rest, np.where(tcp, first, rest)),
        "initialFlags": np.where(expanded, first, 0), "sessionFlags": np.where(expanded, rest, 0), "tcp_state": state}


def _sbb_pef(r: np.ndarray, f: PackedFile) -> Columns:
    """rwpackUnpackSbbPef: start seconds (12 bits) and bytes-per-packet (20 bits); pkts (20 bits),
    duration seconds (11 bits) and pflag."""
    sbb, pef = r["sbb"].astype(np.int64), r["pef"].astype(np.int64)
    return {"sTime": f.start + _bits(sbb, 20, 12) * 1000, "duration": _bits(pef, 1, 11) * 1000} | _volumes(
        _bits(sbb, 0, 20), _bits(pef, 12, 20), _bits(pef, 0, 1))


def _web_ports(server_is_source: np.ndarray, code: np.ndarray, client: np.ndarray) -> Columns:
    """Web formats store the server's port as a 2-bit code (80, 443, 8080, other -> 0) and the
    client's port in full; which side the server is on is a bit."""
    server = WEB_PORTS[code]
    return {"sPort": np.where(server_is_source, server, client), "dPort": np.where(server_is_source, client, server)}


def _stored(r: np.ndarray, *names: str) -> Columns:
    """Fields the record stores as they are, under the flow schema's names."""
    schema_names = {"input": "in", "output": "out", "proto": "protocol", "flow_type": "flowtype"}
    return {schema_names.get(name, name): r[name] for name in names if name in r.dtype.names}


# --- one decoder per format family ------------------------------------------------------------------

_ADDRESS_FIELDS = ("sIP", "dIP", "sPort", "dPort", "nhIP", "input", "output")


def _decode_ipv6(r: np.ndarray, f: PackedFile) -> Columns:
    """FT_RWIPV6: v1 is FT_RWIPV6ROUTING v1 without interfaces and next hop (and with its own
    sensor and flowtype); v2 packs start time, protocol and flags against the file's hour."""
    if f.version == 1:
        initial, session, _ = _flags(r)  # libsilk drops flags an expanded state cannot hold
        columns = _stored(r, "sPort", "dPort", "proto", "flow_type", "sensor", "flags", "application", "tcp_state")
        columns |= {"sTime": r["sTime"], "initialFlags": initial, "sessionFlags": session}
    else:
        columns = _times_flags_proto(r, f) | _stored(r, "sPort", "dPort")
    return columns | {"duration": r["elapsed"], "packets": r["pkts"], "bytes": r["bytes"]}


def _decode_augmented(r: np.ndarray, f: PackedFile) -> Columns:
    """FT_RWAUGMENTED, FT_RWAUGROUTING, FT_RWAUGSNMPOUT: one packing per version, the routing and
    SNMP formats adding next hop and interfaces."""
    if f.version == 5:
        columns = _times_flags_proto(r, f) | {"duration": r["elapsed"], "packets": r["pkts"], "bytes": r["bytes"]}
    elif f.version == 4:
        columns = _flags_times_volumes(r, f)
    else:
        word = r["msec_flags"]
        columns = _proto_flags(_time_bytes_pkts_flags(r, f), _bits(word, 10, 1), _bits(word, 0, 8), r["tcp_state"],
                               r["rest_flags"]) | {"application": r["application"]}
    return columns | _stored(r, *_ADDRESS_FIELDS)


def _decode_augweb(r: np.ndarray, f: PackedFile) -> Columns:
    """FT_RWAUGWEB: TCP only, the server's port as a 2-bit code next to the client's port."""
    if f.version == 5:
        word, elapsed = r["rflag_stime"], r["srvport_elapsed"]
        columns = _times_flags_proto(r, f) | {"duration": _bits(elapsed, 0, 30), "packets": r["pkts"],
                                              "bytes": r["bytes"]}
        ports = _web_ports(_bits(word, 22, 1) == 1, _bits(elapsed, 30, 2), r["clnt_port"])
    elif f.version == 4:
        word = r["pro_flg_pkts"]
        columns = _flags_times_volumes(r, f, force_tcp=True)
        ports = _web_ports(_bits(word, 22, 1) == 1, _bits(word, 20, 2), r["clnt_port"])
    else:
        word = r["msec_flags"]
        columns = _proto_flags(_time_bytes_pkts_flags(r, f, preset_tcp=True), np.ones(len(r), np.int64),
                               _bits(word, 0, 8), r["tcp_state"], r["rest_flags"]) | {"application": r["application"]}
        ports = _web_ports(_bits(word, 10, 1) == 1, _bits(word, 8, 2), r["clnt_port"])
    return columns | ports | _stored(r, "sIP", "dIP")


def _decode_split(r: np.ndarray, f: PackedFile) -> Columns:
    """FT_RWSPLIT, FT_RWROUTED, FT_RWNOTROUTED: no TCP state; routed adds next hop and interfaces,
    notrouted the input interface."""
    if f.version == 5:
        columns = _flags_times_volumes(r, f)
    elif f.version >= 3:
        columns = _time_bytes_pkts_flags(r, f)
    else:
        columns = _sbb_pef(r, f) | _stored(r, "proto", "flags")
    return columns | _stored(r, *_ADDRESS_FIELDS)


def _decode_www(r: np.ndarray, f: PackedFile) -> Columns:
    """FT_RWWWW: web traffic of the pre-augmented repositories, TCP only, no TCP state."""
    if f.version == 5:
        word = r["pro_flg_pkts"]
        columns = _flags_times_volumes(r, f, force_tcp=True)
        ports = _web_ports(_bits(word, 22, 1) == 1, _bits(word, 20, 2), r["clnt_port"])
    elif f.version >= 3:
        word = r["msec_flags"]
        columns = _time_bytes_pkts_flags(r, f, preset_tcp=True)
        ports = _web_ports(_bits(word, 10, 1) == 1, _bits(word, 8, 2), r["clnt_port"])
    else:  # wrf: server-is-source bit 7, flags in 6 bits; wport: server port code in bits 6-7
        columns = _sbb_pef(r, f) | {"protocol": np.full(len(r), PROTO_TCP), "flags": _bits(r["wrf"], 0, 6)}
        ports = _web_ports(_bits(r["wrf"], 7, 1) == 1, _bits(r["wport"], 6, 2), r["clnt_port"])
    return columns | ports | _stored(r, "sIP", "dIP")


def _decode_filter(r: np.ndarray, f: PackedFile) -> Columns:
    """FT_RWFILTER: rwfilter's output before FT_RWGENERIC; whole epoch seconds, sensor and flowtype
    in the record (flowtype not before v3), no packed header."""
    stored = _stored(r, *_ADDRESS_FIELDS, "sensor", "flow_type", "application")
    seconds = r["sTime_s"].astype(np.int64) * 1000
    if f.version >= 4:
        counts, ratio = r["pkts_stimems"].astype(np.int64), r["bb_elapsems"].astype(np.int64)
        columns = {"sTime": seconds + _bits(counts, 0, 10), "protocol": np.zeros(len(r), np.int64),
                   "duration": (r["elapsed_s"].astype(np.int64) * 1000 + _bits(ratio, 0, 10)) & 0xFFFFFFFF}
        columns = _proto_flags(columns, _bits(counts, 10, 1), r["prot_flags"], r["tcp_state"], r["rest_flags"])
        return columns | _volumes(_bits(ratio, 12, 20), _bits(counts, 12, 20), _bits(counts, 11, 1)) | stored
    if f.version == 3:
        word = r["pkts_ftype"].astype(np.int64)
        columns = {"sTime": seconds, "duration": (r["elapsed_s"].astype(np.int64) * 1000) & 0xFFFFFFFF,
                   "flowtype": _bits(word, 0, 8)} | _stored(r, "proto", "flags")
        return columns | _volumes(_bits(r["bpp"], 12, 20), _bits(word, 12, 20), _bits(word, 11, 1)) | stored
    pef, sbb = r["pef"].astype(np.int64), r["sbb"].astype(np.int64)
    sensor = _bits(sbb, 6, 6) if f.version == 1 else _bits(sbb, 0, 8)  # v2 moved the sensor to the low 8 bits
    columns = {"sTime": seconds, "duration": _bits(pef, 1, 11) * 1000, "sensor": sensor,
               "flowtype": np.full(len(r), NO_FLOWTYPE)} | _stored(r, "proto", "flags")
    return columns | _volumes(_bits(sbb, 12, 20), _bits(pef, 12, 20), _bits(pef, 0, 1)) | stored


def _decode_flowcap(r: np.ndarray, f: PackedFile) -> Columns:
    """FT_FLOWCAP: flowcap's spool files; epoch seconds, a 24-bit packet count, ms fractions
    packed in three bytes (v3+), the payload hash in nhIP (v4), no flowtype."""
    low_first = f.order == "<"
    pkts = r["pkts"].astype(np.int64)
    first, middle, last = pkts[:, 0], pkts[:, 1], pkts[:, 2]
    packets = (first | middle << 8 | last << 16) if low_first else (first << 16 | middle << 8 | last)
    columns = {"sTime": r["sTime_s"].astype(np.int64) * 1000, "duration": r["elapsed_s"].astype(np.int64) * 1000,
               "packets": packets, "flowtype": np.full(len(r), NO_FLOWTYPE)}
    columns |= _stored(r, *_ADDRESS_FIELDS, "bytes", "proto", "flags")
    if f.version >= 3:
        frac = r["time_frac"].astype(np.int64)
        columns["sTime"] = columns["sTime"] + (frac[:, 0] << 2 | frac[:, 1] >> 6)
        columns["duration"] = columns["duration"] + ((frac[:, 1] & 0x3F) << 4 | frac[:, 2] >> 4)
        state, rest, first = r["tcp_state"], r["flags"].astype(np.int64), r["first_flags"].astype(np.int64)
        expanded = (state & TCPSTATE_EXPANDED) != 0
        columns |= {"flags": np.where(expanded, rest | first, rest), "initialFlags": np.where(expanded, first, 0),
                    "sessionFlags": np.where(expanded, rest, 0), "tcp_state": state}
        if f.version < 6:  # v6 is v5 with the application cleared
            columns["application"] = r["application"]
    if f.version == 4:
        columns["nhIP"] = r["payload_hash"]
    return columns


READERS: dict[int, Callable[[np.ndarray, PackedFile], Columns]] = {  # file format id -> its record decoder
    FT_RWIPV6: _decode_ipv6, FT_RWAUGMENTED: _decode_augmented, FT_RWAUGROUTING: _decode_augmented,
    FT_RWAUGSNMPOUT: _decode_augmented, FT_RWAUGWEB: _decode_augweb, FT_RWSPLIT: _decode_split,
    FT_RWROUTED: _decode_split, FT_RWNOTROUTED: _decode_split, FT_RWWWW: _decode_www, FT_RWFILTER: _decode_filter,
    FT_FLOWCAP: _decode_flowcap,
}


# --- reading ------------------------------------------------------------------------------------------

def read_packed(header: Header, body: bytes, label: str) -> pa.Table:
    """The records of a packed-format SiLK file (``body``: its decompressed record bytes)."""
    fmt, version, name = header.format, header.rec_version, header.name
    dtype = record_dtype(fmt, version, header.order)
    if dtype is None:
        known = sorted(v for versions in LAYOUTS[fmt] for v in versions)
        raise SilkFileError(f"{label}: {name} record version {version} is not read (SiLK has versions "
                            f"{known[0]}-{known[-1]})")
    if header.rec_size not in (0, dtype.itemsize):  # libsilk takes 0 as "the format's size"
        raise SilkFileError(f"{label}: {name} v{version} records are {dtype.itemsize} bytes, "
                            f"the header says {header.rec_size}")
    if len(body) % dtype.itemsize:
        raise SilkFileError(f"{label}: {len(body) % dtype.itemsize} trailing byte(s) after the last whole record "
                            f"(a truncated file?)")
    records = np.frombuffer(body, dtype=dtype)
    f = packed_file(header, label)
    columns = READERS[fmt](records, f)
    if fmt == FT_RWIPV6:
        return _table(columns, len(records), f, records["sIP"], records["dIP"])
    return _table(columns, len(records), f)


def _table(columns: Columns, n: int, f: PackedFile, sip6: np.ndarray | None = None,
           dip6: np.ndarray | None = None) -> pa.Table:
    """Decoded columns as a flow table: defaults for what the format does not store, the TCP
    state's attribute bits, libsilk's ICMP fix-up, and (FT_RWIPV6) the 16-byte addresses."""
    zero = np.zeros(n, np.int64)
    state = columns.pop("tcp_state", zero).astype(np.int64)
    v6 = (state & TCPSTATE_IPV6) != 0 if sip6 is not None else np.zeros(n, bool)
    full = {"sIP": zero, "dIP": zero, "sPort": zero, "dPort": zero, "protocol": zero, "packets": zero, "bytes": zero,
            "flags": zero, "initialFlags": zero, "sessionFlags": zero, "sTime": zero, "duration": zero,
            "sensor": np.full(n, f.sensor), "flowtype": np.full(n, f.flowtype), "in": zero, "out": zero,
            "nhIP": zero, "application": zero} | {k: np.asarray(v).astype(np.int64) for k, v in columns.items()}
    if sip6 is not None:
        full["sIP"] = np.where(v6, 0, _ipv4_of(sip6))
        full["dIP"] = np.where(v6, 0, _ipv4_of(dip6))
    icmp_fixup(full, v6)
    full["attributes"] = (state & TCPSTATE_ATTRIBUTES) | np.where(v6, ATTR_IPV6, 0)
    table = _flow_table(full)
    if sip6 is None:
        for column in ("sIPv6", "dIPv6", "nhIPv6"):
            table = table.append_column(column, pa.nulls(n, IPV6_TYPE))
    else:
        no_next_hop = np.zeros(n, dtype="V16")  # "::" on IPv6 records, as libsilk leaves it
        for column, raw in (("sIPv6", sip6), ("dIPv6", dip6), ("nhIPv6", no_next_hop)):
            table = table.append_column(column, _ipv6_column(raw, v6))
    return conform(table)
