"""IP sets (SiLK's IPsets): IPv4 as a roaring bitmap, IPv6 as a sorted array of 128-bit addresses.

File format (``.set``): a 16-byte header ``b"VLFSET"``, format version (1 byte), reserved byte,
IPv4 payload length (uint64, little endian), then the portable roaring serialization of the IPv4
part, then the IPv6 part as big-endia 16-byte addresses, sorted and unique.  SiLK keeps one
family per set file (IPv4 addresses mapped into ::ffff:0:0/96 once any IPv6 is present); here a
set holds both families natively and reports them separately.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
from pyroaring import BitMap

from .schema import ATTR_IPV6, ipv6_words
from .storage import write_bytes

MAGIC = b"VLFSET"
VERSION = 1
HEADER = struct.Struct("<6sBBQ")  # magic, version, reserved, length of the IPv4 payload

_V6_DTYPE = np.dtype([("hi", ">u8"), ("lo", ">u8")])


class SetFileError(ValueError):
    pass


def _v6_unique(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    pairs = np.empty(len(hi), dtype=_V6_DTYPE)
    pairs["hi"], pairs["lo"] = hi, lo
    return np.unique(pairs)  # sorts by (hi, lo)


class IPSet:
    """A set of IPv4 and IPv6 addresses."""

    __slots__ = ("v4", "v6")

    def __init__(self, v4: BitMap | None = None, v6: np.ndarray | None = None):
        self.v4 = v4 if v4 is not None else BitMap()
        self.v6 = v6 if v6 is not None else np.empty(0, dtype=_V6_DTYPE)

    # construction ------------------------------------------------------------------------
    @classmethod
    def from_ipv4(cls, values: Iterable[int] | np.ndarray) -> "IPSet":
        return cls(BitMap(np.asarray(values, dtype=np.uint32)))

    @classmethod
    def from_strings(cls, texts: Iterable[str]) -> "IPSet":
        """Addresses or CIDR blocks, e.g. ``["10.1.24.7", "10.1.25.0/24", "2001:db8::/126"]``."""
        v4, v6 = BitMap(), []
        for text in texts:
            net = ipaddress.ip_network(text.strip(), strict=False)
            if net.version == 4:
                v4.add_range(int(net.network_address), int(net.broadcast_address) + 1)
            else:
                if net.num_addresses > 1 << 20:
                    raise ValueError(f"IPv6 block {text} is too large to enumerate")
                v6.extend(int(a) for a in net)
        hi = np.array([a >> 64 for a in v6], dtype=np.uint64)
        lo = np.array([a & (2**64 - 1) for a in v6], dtype=np.uint64)
        return cls(v4, _v6_unique(hi, lo))

    @classmethod
    def from_flow_column(cls, table: pa.Table, column: str) -> "IPSet":
        """The set of ``column`` ('sIP', 'dIP' or 'nhIP') addresses of a flow table."""
        if table.num_rows == 0:
            return cls()
        v6_rows = (table.column("attributes").to_numpy() & ATTR_IPV6) != 0
        v4 = BitMap(table.column(column).to_numpy()[~v6_rows])
        if not v6_rows.any():
            return cls(v4)
        hi, lo = ipv6_words(table.column(column + "v6"))
        return cls(v4, _v6_unique(hi[v6_rows], lo[v6_rows]))

    # queries -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.v4) + len(self.v6)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IPSet) and self.v4 == other.v4 and np.array_equal(self.v6, other.v6)

    def __contains__(self, address: str | int) -> bool:
        if isinstance(address, int):
            return address in self.v4
        ip = ipaddress.ip_address(address)
        if ip.version == 4:
            return int(ip) in self.v4
        value = int(ip)
        probe = np.array([(value >> 64, value & (2**64 - 1))], dtype=_V6_DTYPE)
        i = np.searchsorted(self.v6, probe[0])
        return bool(i < len(self.v6) and self.v6[i] == probe[0])

    def ipv4_array(self) -> np.ndarray:
        return np.asarray(self.v4.to_array(), dtype=np.uint32)

    def ipv6_ints(self) -> list[int]:
        return [(int(h) << 64) | int(l) for h, l in zip(self.v6["hi"], self.v6["lo"])]

    def contains_ipv4(self, values: np.ndarray) -> np.ndarray:
        """Vectorised membership of uint32 addresses (binary search in the sorted members)."""
        members = self.ipv4_array()
        values = np.asarray(values, dtype=np.uint32)
        if len(members) == 0:
            return np.zeros(values.shape, dtype=bool)
        idx = np.searchsorted(members, values)
        idx[idx == len(members)] = 0
        return members[idx] == values

    # algebra -----------------------------------------------------------------------------
    def union(self, other: "IPSet") -> "IPSet":
        return IPSet(self.v4 | other.v4, np.union1d(self.v6, other.v6))

    def intersection(self, other: "IPSet") -> "IPSet":
        return IPSet(self.v4 & other.v4, np.intersect1d(self.v6, other.v6))

    def difference(self, other: "IPSet") -> "IPSet":
        return IPSet(self.v4 - other.v4, np.setdiff1d(self.v6, other.v6))

    def symmetric_difference(self, other: "IPSet") -> "IPSet":
        return IPSet(self.v4 ^ other.v4, np.setxor1d(self.v6, other.v6))

    __or__, __and__, __sub__, __xor__ = union, intersection, difference, symmetric_difference

    # files -------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        self.v4.run_optimize()
        v4 = self.v4.serialize()
        return HEADER.pack(MAGIC, VERSION, 0, len(v4)) + v4 + self.v6.astype(_V6_DTYPE).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>") -> "IPSet":
        if len(data) < HEADER.size:
            raise SetFileError(f"{source}: not an IP set file (too short: {len(data)} bytes)")
        magic, version, _, v4_len = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise SetFileError(f"{source}: not an IP set file (bad magic {magic!r})")
        if version != VERSION:
            raise SetFileError(f"{source}: unsupported IP set file version {version}")
        body = data[HEADER.size :]
        if v4_len > len(body) or (len(body) - v4_len) % 16:
            raise SetFileError(f"{source}: corrupt IP set file (payload length mismatch)")
        try:
            v4 = BitMap.deserialize(body[:v4_len]) if v4_len else BitMap()
        except Exception as exc:  # pyroaring raises plain ValueError/RuntimeError on garbage
            raise SetFileError(f"{source}: corrupt IPv4 bitmap: {exc}") from None
        v6 = np.frombuffer(body[v4_len:], dtype=_V6_DTYPE).copy()
        hi, lo = v6["hi"], v6["lo"]
        increasing = (hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1]))
        if not increasing.all():
            raise SetFileError(f"{source}: corrupt IPv6 part (addresses not sorted and unique)")
        return cls(v4, v6)

    def write(self, path: str | Path) -> Path:
        return write_bytes(self.to_bytes(), path)

    @classmethod
    def read(cls, path: str | Path) -> "IPSet":
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise SetFileError(f"{path}: cannot read IP set: {exc.strerror}") from None
        return cls.from_bytes(data, source=str(path))

    def __repr__(self) -> str:
        return f"IPSet({len(self.v4)} IPv4, {len(self.v6)} IPv6)"
