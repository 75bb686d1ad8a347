"""rwfilter's address patterns: one IP, CIDR block or SiLK IP wildcard (``10.x.1-2.4,5``,
``::ffff:0:x``) by :func:`parse_address`, and IP/CIDR lists by :func:`parse_cidr_list`, as
128-bit :class:`AddressRange` and :class:`Wildcard` values (IPv4 lives in ``::ffff:0:0/96``)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .spec import FilterError
from .values import merge_int_ranges

# ::ffff:0:0/96, where IPv4 addresses sit among the 128-bit ones
MAPPED_LO = 0xFFFF << 32
MAPPED_HI = MAPPED_LO | 0xFFFFFFFF


@dataclass(frozen=True)
class AddressRange:
    """An inclusive range of 128-bit addresses (IPv4 lives in ::ffff:0:0/96)."""

    lo: int
    hi: int


@dataclass(frozen=True)
class Wildcard:
    """A SiLK IP wildcard: per-part value ranges over bit fields of the 128-bit address.

    ``fields`` are (bit offset from the top, width, ranges); ``prefix`` optionally fixes the
    address's top bits to a 128-bit range (an IPv4 wildcard lives in ::ffff:0:0/96).
    """

    fields: tuple[tuple[int, int, tuple[tuple[int, int], ...]], ...]
    prefix: AddressRange | None = None


def _v4_to_128(value: int) -> int:
    return MAPPED_LO | value


def _network_range(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> AddressRange:
    lo, hi = int(net.network_address), int(net.broadcast_address)
    if net.version == 4:
        return AddressRange(_v4_to_128(lo), _v4_to_128(hi))
    return AddressRange(lo, hi)


def _parse_cidr(text: str, what: str) -> AddressRange:
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        value = int(text)
        if value > 0xFFFFFFFF:
            raise FilterError(f"{what}: invalid IP address {text!r}")
        return AddressRange(_v4_to_128(value), _v4_to_128(value))
    try:
        return _network_range(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise FilterError(f"{what}: invalid IP address or CIDR block {text!r}") from None


def _parse_part(text: str, maximum: int, base: int) -> tuple[tuple[int, int], ...]:
    if text == "x":
        return ((0, maximum),)
    ranges = []
    digits = r"[0-9]+" if base == 10 else r"[0-9a-fA-F]+"
    for item in text.split(","):
        m = re.fullmatch(rf"({digits})(?:-({digits}))?", item)
        if not m:
            raise ValueError(item)
        lo = int(m.group(1), base)
        hi = int(m.group(2), base) if m.group(2) else lo
        if lo > hi or hi > maximum:
            raise ValueError(item)
        ranges.append((lo, hi))
    return tuple(merge_int_ranges(ranges))


def _v4_wildcard_fields(text: str, offset: int) -> list[tuple[int, int, tuple]]:
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError(text)
    return [(offset + 8 * i, 8, _parse_part(p, 255, 10)) for i, p in enumerate(parts)]


def _parse_wildcard(text: str) -> Wildcard:
    if ":" not in text:
        return Wildcard(tuple(_v4_wildcard_fields(text, 96)), AddressRange(MAPPED_LO, MAPPED_HI))
    # IPv6: hexadectets, '::' for a run of zero groups, an optional IPv4 wildcard tail
    if text.count("::") > 1:
        raise ValueError(text)
    if "::" in text:
        left, right = text.split("::")
        left_parts = left.split(":") if left else []
        right_parts = right.split(":") if right else []
    else:
        left_parts, right_parts = text.split(":"), []
    tail_v4 = None
    holder = right_parts if "::" in text else left_parts
    if holder and "." in holder[-1]:
        tail_v4 = holder.pop()
    groups = len(left_parts) + len(right_parts) + (2 if tail_v4 else 0)
    if ("::" in text and groups > 7) or ("::" not in text and groups != 8):
        raise ValueError(text)
    zeros = 8 - groups
    hexparts = left_parts + ["0"] * (zeros if "::" in text else 0) + right_parts
    fields = [(16 * i, 16, _parse_part(p, 0xFFFF, 16)) for i, p in enumerate(hexparts)]
    if tail_v4 is not None:
        fields += _v4_wildcard_fields(tail_v4, 16 * len(hexparts))
    return Wildcard(tuple(fields))


def parse_address(text: str, *, what: str = "address") -> AddressRange | Wildcard:
    """One IP, CIDR block or SiLK IP wildcard (``10.x.1-2.4,5``, ``::ffff:0:x``)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text) or "/" in text:
        return _parse_cidr(text, what)
    try:
        return _parse_cidr(text, what)
    except FilterError:
        pass
    try:
        return _parse_wildcard(text)
    except ValueError:
        raise FilterError(f"{what}: invalid IP address, CIDR block or wildcard {text!r}") from None


def parse_cidr_list(text: str, *, what: str = "cidr") -> list[AddressRange]:
    items = [p for p in str(text).split(",")]
    if not any(p.strip() for p in items):
        raise FilterError(f"{what}: empty IP/CIDR list")
    ranges = [_parse_cidr(p, what) for p in items]
    return [AddressRange(lo, hi) for lo, hi in merge_int_ranges((r.lo, r.hi) for r in ranges)]
