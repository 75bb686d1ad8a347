"""IP addresses as SiLK's text tools print them: ``--ip-format`` and the column widths it implies.

One home for the spelling of an address in rwcut, rwuniq and rwstats output: canonical (dotted
quads; IPv6 in SiLK's mixed notation for ::ffff:0:0/96 and ::/96), decimal, hexadecimal, each
optionally zero-padded to its full width.  IPv4 columns are 15 / 10 / 8 wide; a column that may
hold IPv6 is 39 wide (hexadecimal: 32).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BASES = ("canonical", "decimal", "hexadecimal")


class IpFormatError(ValueError):
    pass


@dataclass(frozen=True)
class IpFormat:
    base: str = "canonical"  # canonical | decimal | hexadecimal
    zero_padded: bool = False


CANONICAL = IpFormat()
DECIMAL = IpFormat("decimal")


def parse_ip_format(text: str | None, *, integer_ips: bool = False) -> IpFormat:
    """``--ip-format=FORMAT[,zero-padded]`` (``--integer-ips`` is ``decimal``)."""
    if not text:
        return DECIMAL if integer_ips else CANONICAL
    base, padded = "canonical", False
    for item in (t.strip().lower() for t in text.split(",")):
        if item == "zero-padded":
            padded = True
        elif item in BASES:
            base = item
        else:
            raise IpFormatError(f"invalid --ip-format {text!r}: use {', '.join(BASES)}, optionally with ,zero-padded")
    return IpFormat(base, padded)


def ip_width(fmt: IpFormat, ipv6: bool) -> int:
    if ipv6:
        return 32 if fmt.base == "hexadecimal" else 39
    return {"canonical": 15, "decimal": 10, "hexadecimal": 8}[fmt.base]


def ipv4_text(values: np.ndarray, fmt: IpFormat = CANONICAL) -> pa.Array:
    """uint32 addresses as text, vectorised."""
    v = pa.array(np.asarray(values, dtype=np.uint32))
    if fmt.base == "decimal":
        text = pc.cast(v, pa.string())
        return pc.utf8_lpad(text, 10, "0") if fmt.zero_padded else text
    if fmt.base == "hexadecimal":
        text = pa.array(np.char.mod("%08x" if fmt.zero_padded else "%x", np.asarray(values, dtype=np.uint32)).astype(object), pa.string())
        return text
    octets = [pc.cast(pc.bit_wise_and(pc.shift_right(v, s), 0xFF), pa.string()) for s in (24, 16, 8, 0)]
    if fmt.zero_padded:
        octets = [pc.utf8_lpad(o, 3, "0") for o in octets]
    return pc.binary_join_element_wise(*octets, ".")


def ipv6_text(high: np.ndarray, low: np.ndarray, fmt: IpFormat = CANONICAL) -> pa.Array:
    """128-bit addresses (two uint64 words) as text, computed once per distinct address."""
    pairs = np.stack([np.asarray(high, np.uint64), np.asarray(low, np.uint64)], axis=1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    texts = [_one_ipv6((int(hi) << 64) | int(lo), fmt) for hi, lo in uniq.tolist()]
    return pa.array(texts, pa.string()).take(pa.array(inverse.reshape(-1)))


def _one_ipv6(value: int, fmt: IpFormat) -> str:
    if fmt.base == "decimal":
        return f"{value:039d}" if fmt.zero_padded else str(value)
    if fmt.base == "hexadecimal":
        return f"{value:032x}" if fmt.zero_padded else f"{value:x}"
    if fmt.zero_padded:
        return ipaddress.IPv6Address(value).exploded
    hi, lo = value >> 64, value & ((1 << 64) - 1)
    v4 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if hi == 0 and (lo >> 32) == 0xFFFF:
        return f"::ffff:{v4}"
    if hi == 0 and (lo >> 32) == 0 and value > 1:
        return f"::{v4}"
    return str(ipaddress.IPv6Address(value))
