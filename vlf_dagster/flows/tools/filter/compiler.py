"""rwfilter's partitioning tests compiled to SQL: :func:`compile_filter` turns a
:class:`~.spec.FilterSpec` into ONE DuckDB boolean expression over a flow-schema row.

Values only ever travel as named ``$pN`` parameters; IP-set members travel as registered Arrow
tables (``IN (SELECT ip FROM ...)``); no Python code runs per record.  Tests are AND'ed; the
items of one switch's list are OR'ed.  Addresses follow SiLK's mixed IPv4 / IPv6 policy: an IPv4
pattern also matches IPv6 records inside ``::ffff:0:0/96`` and an IPv6 pattern covering that
block also matches IPv4 records.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pyarrow as pa

from ...flags import FLAG_BITS, parse_flags, parse_high_mask
from ...schema import ATTR_IPV6, PROTO_ICMP, PROTO_ICMPV6, ipv4_mapped
from ...sets import IPSet
from ...sql import ident
from .addresses import MAPPED_HI, MAPPED_LO, AddressRange, Wildcard, parse_address, parse_cidr_list
from .spec import NEGATABLE, FilterError, FilterSpec, option_name
from .values import parse_decimal_range, parse_integer_list, parse_integer_range, parse_time_window

# Address families: (spec field stem, flow column stem).  "any" means source OR destination.
_ADDRESS_SIDES = {"s": ("sIP",), "d": ("dIP",), "any": ("sIP", "dIP"), "nh": ("nhIP",)}


class CompiledFilter(NamedTuple):
    """One DuckDB boolean expression, its named parameters and the Arrow tables it reads."""

    where: str
    params: dict[str, object]
    tables: dict[str, pa.Table]


_ALL128 = (1 << 128) - 1


def _v6_bytes(value: int) -> bytes:
    return value.to_bytes(16, "big")


class _Compiler:
    def __init__(self, prefix: str = "p"):
        self.prefix = prefix
        self.params: dict[str, object] = {}
        self.tables: dict[str, pa.Table] = {}
        self.terms: list[str] = []

    def p(self, value) -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return "$" + name

    # integer ranges over an expression
    def ranges(self, expr: str, ranges: Sequence[tuple[int, int]], maximum: int | None = None) -> str:
        if maximum is not None and list(ranges) == [(0, maximum)]:
            return "TRUE"
        parts = []
        for lo, hi in ranges:
            if lo == hi:
                parts.append(f"{expr} = {self.p(lo)}")
            elif maximum is not None and hi == maximum:
                parts.append(f"{expr} >= {self.p(lo)}")
            elif lo == 0:
                parts.append(f"{expr} <= {self.p(hi)}")
            else:
                parts.append(f"{expr} BETWEEN {self.p(lo)} AND {self.p(hi)}")
        return _or(parts)

    # addresses
    def _v4_pattern(self, col: str, pat: AddressRange | Wildcard) -> str | None:
        """The test on an IPv4 record's uint32 column, or None when it can never match."""
        if isinstance(pat, AddressRange):
            lo, hi = max(pat.lo, MAPPED_LO), min(pat.hi, MAPPED_HI)
            if lo > hi:
                return None
            return self.ranges(col, [(lo - MAPPED_LO, hi - MAPPED_LO)], 0xFFFFFFFF)
        if pat.prefix is not None and not (pat.prefix.lo <= MAPPED_LO and MAPPED_HI <= pat.prefix.hi):
            return None
        parts = []
        for offset, width, ranges in pat.fields:
            if offset < 96:
                fixed = (MAPPED_LO >> (128 - offset - width)) & ((1 << width) - 1)
                if not any(lo <= fixed <= hi for lo, hi in ranges):
                    return None
                continue
            shift = 128 - offset - width
            expr = f"(({col} >> {shift}) & {(1 << width) - 1})"
            parts.append(self.ranges(expr, ranges, (1 << width) - 1))
        return _and(parts)

    def _v6_pattern(self, col6: str, pat: AddressRange | Wildcard) -> str | None:
        """The test on an IPv6 record's 16-byte column."""
        if isinstance(pat, AddressRange):
            if pat.lo == 0 and pat.hi == _ALL128:
                return "TRUE"
            if pat.lo == pat.hi:
                return f"{col6} = {self.p(_v6_bytes(pat.lo))}"
            return f"{col6} BETWEEN {self.p(_v6_bytes(pat.lo))} AND {self.p(_v6_bytes(pat.hi))}"
        parts = []
        if pat.prefix is not None:
            parts.append(self._v6_pattern(col6, pat.prefix))
        for offset, width, ranges in pat.fields:
            expr = f"('0x' || substr(hex({col6}), {offset // 4 + 1}, {width // 4}))::UINTEGER"
            parts.append(self.ranges(expr, ranges, (1 << width) - 1))
        return _and(parts)

    def address(self, column: str, patterns: Sequence[AddressRange | Wildcard]) -> str:
        """Whether a record's ``column`` address matches any of ``patterns`` (both families)."""
        col, col6 = ident(column), ident(column + "v6")
        v4 = [t for t in (self._v4_pattern(col, p) for p in patterns) if t is not None]
        v6 = [t for t in (self._v6_pattern(col6, p) for p in patterns) if t is not None]
        return _family(v4 and _or(v4), v6 and _or(v6))

    def ipset(self, column: str, ipset: IPSet) -> str:
        col, col6 = ident(column), ident(column + "v6")
        n = len(self.tables) // 2
        v4_name, v6_name = f"__vlf_{self.prefix}set{n}_v4", f"__vlf_{self.prefix}set{n}_v6"
        v4 = np.asarray(ipset.v4.to_array(), dtype=np.uint32)
        hi = ipset.v6["hi"].astype(np.uint64)
        lo = ipset.v6["lo"].astype(np.uint64)
        mapped = ipv4_mapped(hi, lo)
        if mapped.any():  # IPv6 members inside ::ffff:0:0/96 also match IPv4 records
            v4 = np.union1d(v4, (lo[mapped] & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        v6_array = ipset.ipv6_array()
        self.tables[v4_name] = pa.table({"ip": pa.array(v4, pa.uint32())})
        self.tables[v6_name] = pa.table({"ip": v6_array})
        v4_test = f"{col} IN (SELECT ip FROM {ident(v4_name)})" if len(v4) else None
        v6_tests = []
        if len(ipset.v6):
            v6_tests.append(f"{col6} IN (SELECT ip FROM {ident(v6_name)})")
        if len(v4):  # IPv4 members also match IPv6 records inside ::ffff:0:0/96
            v6_tests.append(
                f"({self._v6_pattern(col6, AddressRange(MAPPED_LO, MAPPED_HI))} AND "
                f"('0x' || right(hex({col6}), 8))::UINTEGER IN (SELECT ip FROM {ident(v4_name)}))"
            )
        return _family(v4_test, v6_tests and _or(v6_tests))

    def add(self, term: str, *, negate: bool = False) -> None:
        term = f"coalesce({term}, FALSE)"
        self.terms.append(f"(NOT {term})" if negate else term)


def _or(parts: Sequence[str]) -> str:
    parts = [p for p in parts if p]
    if not parts:
        return "FALSE"
    if "TRUE" in parts:
        return "TRUE"
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _and(parts: Sequence[str]) -> str:
    parts = [p for p in parts if p and p != "TRUE"]
    if not parts:
        return "TRUE"
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


_IS_V6 = f'("attributes" & {ATTR_IPV6}) <> 0'
_IS_V4 = f'("attributes" & {ATTR_IPV6}) = 0'
_IS_ICMP = f'("protocol" = {PROTO_ICMP} OR ("protocol" = {PROTO_ICMPV6} AND {_IS_V6}))'


def _family(v4: str | None, v6: str | None) -> str:
    parts = []
    if v4:
        parts.append(_and([_IS_V4, v4]))
    if v6:
        parts.append(_and([_IS_V6, v6]))
    return _or(parts)


def _load_set(value: str | Path | IPSet, what: str) -> IPSet:
    if isinstance(value, IPSet):
        return value
    try:
        return IPSet.read(value)
    except ValueError as exc:
        raise FilterError(f"{what}: {exc}") from None


_ATTRIBUTE_BITS = {"F": 0x08, "S": 0x10, "T": 0x20, "C": 0x40}
_FLAG_SWITCHES = {"fin": "F", "syn": "S", "rst": "R", "psh": "P", "ack": "A", "urg": "U", "ece": "E", "cwr": "C"}


def _parse_attributes(text: str) -> list[tuple[int, int]]:
    pairs = []
    for item in str(text).split(","):
        item = item.strip()
        high_s, sep, mask_s = item.partition("/")
        if not sep:
            raise FilterError(f"--attributes: invalid HIGH/MASK pair {item!r} (expected e.g. T/TC)")
        bits = []
        for letters in (high_s, mask_s):
            value = 0
            for ch in letters.upper():
                if ch not in _ATTRIBUTE_BITS:
                    raise FilterError(f"--attributes: invalid attribute {ch!r} in {item!r} (expected S, T, C, F)")
                value |= _ATTRIBUTE_BITS[ch]
            bits.append(value)
        high, mask = bits
        if mask == 0 or high & ~mask:
            raise FilterError(f"--attributes: invalid HIGH/MASK pair {item!r} (HIGH must be inside a non-empty MASK)")
        pairs.append((high, mask))
    return pairs


def compile_filter(spec: FilterSpec, *, prefix: str = "p") -> CompiledFilter:
    """Compile every test of ``spec`` into one DuckDB boolean expression over a flow-schema row.

    Returns ``(where, params, tables)``: ``params`` are named (``$p0`` ...), ``tables`` are the
    Arrow tables of IP-set members to register on the connection under their names.  With no
    tests the expression is ``TRUE``.  Give each filter its own ``prefix`` (letters) to use
    several in one query.

    Usage on your own connection::

        where, params, tables = compile_filter(FilterSpec(protocol="6", flags_all=["S/SA"]))
        for name, members in tables.items():
            con.register(name, members)
        con.sql(f"SELECT count(*) FROM read_parquet($files) WHERE {where}", params={**params, "files": files})
    """
    if not re.fullmatch(r"[A-Za-z]+", prefix):
        raise ValueError(f"prefix must be letters, not {prefix!r}")
    for stem in NEGATABLE:
        if getattr(spec, stem) is not None and getattr(spec, "not_" + stem) is not None:
            raise FilterError(f"{option_name(stem)} and {option_name('not_' + stem)} cannot be used together")
    c = _Compiler(prefix)

    # addresses: wildcards, CIDR lists, sets -------------------------------------------------
    for family, stem in (("s", "saddress"), ("d", "daddress"), ("any", "any_address"), ("nh", "next_hop_id")):
        for negate, name in ((False, stem), (True, "not_" + stem)):
            value = getattr(spec, name)
            if value is not None:
                pattern = parse_address(value, what=option_name(name))
                c.add(_or([c.address(col, [pattern]) for col in _ADDRESS_SIDES[family]]), negate=negate)
    for family, stem in (("s", "scidr"), ("d", "dcidr"), ("any", "any_cidr"), ("nh", "nhcidr")):
        for negate, name in ((False, stem), (True, "not_" + stem)):
            value = getattr(spec, name)
            if value is not None:
                patterns = parse_cidr_list(value, what=option_name(name))
                c.add(_or([c.address(col, patterns) for col in _ADDRESS_SIDES[family]]), negate=negate)
    for family, stem in (("s", "sipset"), ("d", "dipset"), ("any", "anyset"), ("nh", "nhipset")):
        for negate, name in ((False, stem), (True, "not_" + stem)):
            value = getattr(spec, name)
            if value is not None:
                ipset = _load_set(value, option_name(name))
                c.add(_or([c.ipset(col, ipset) for col in _ADDRESS_SIDES[family]]), negate=negate)

    # ports, protocol, ICMP, other integer fields -------------------------------------------
    int_lists = (
        ("sport", ('"sPort"',), 0xFFFF),
        ("dport", ('"dPort"',), 0xFFFF),
        ("aport", ('"sPort"', '"dPort"'), 0xFFFF),
        ("protocol", ('"protocol"',), 0xFF),
        ("application", ('"application"',), 0xFFFF),
        ("input_index", ('"in"',), 0xFFFF),
        ("output_index", ('"out"',), 0xFFFF),
        ("any_index", ('"in"', '"out"'), 0xFFFF),
    )
    parsed_protocol = None
    for name, exprs, maximum in int_lists:
        value = getattr(spec, name)
        if value is not None:
            ranges = parse_integer_list(value, maximum, what=option_name(name))
            if name == "protocol":
                parsed_protocol = ranges
            c.add(_or([c.ranges(e, ranges, maximum) for e in exprs]))
    for name, expr in (("icmp_type", '("dPort" >> 8)'), ("icmp_code", '("dPort" & 255)')):
        value = getattr(spec, name)
        if value is not None:
            ranges = parse_integer_list(value, 255, what=option_name(name))
            if parsed_protocol is not None and not any(
                lo <= p <= hi for lo, hi in parsed_protocol for p in (PROTO_ICMP, PROTO_ICMPV6)
            ):
                raise FilterError(
                    f"{option_name(name)} needs ICMP, but --protocol={spec.protocol} includes neither 1 nor 58"
                )
            c.add(_and([_IS_ICMP, c.ranges(expr, ranges, 255)]))
    if spec.ip_version is not None:
        ranges = parse_integer_list(spec.ip_version, 6, what="--ip-version")
        versions = {v for lo, hi in ranges for v in range(lo, hi + 1)}
        if not versions <= {4, 6}:
            raise FilterError(f"--ip-version: invalid value {spec.ip_version!r} (expected 4, 6 or 4,6)")
        c.add(_or([_IS_V4 if v == 4 else _IS_V6 for v in sorted(versions)]))

    # TCP flags and attributes -------------------------------------------------------------
    for name, column in (("flags_all", '"flags"'), ("flags_initial", '"initialFlags"'), ("flags_session", '"sessionFlags"')):
        values = getattr(spec, name) or []
        if isinstance(values, str):
            values = [values]
        pairs = []
        for text in values:
            try:
                pairs.extend(parse_high_mask(text))
            except ValueError as exc:
                raise FilterError(f"{option_name(name)}: {exc}") from None
        if pairs:
            c.add(_or([f"({column} & {c.p(mask)}) = {c.p(high)}" for high, mask in pairs]))
    if spec.tcp_flags is not None:
        try:
            mask = parse_flags(spec.tcp_flags)
        except ValueError as exc:
            raise FilterError(f"--tcp-flags: {exc}") from None
        if mask == 0:
            raise FilterError(f"--tcp-flags: no flags in {spec.tcp_flags!r}")
        c.add(f'("flags" & {c.p(mask)}) <> 0')
    for name, value in sorted(spec.flag_bits.items()):
        if name not in _FLAG_SWITCHES:
            raise FilterError(f"unknown flag switch --{name}-flag")
        if str(value).strip() not in ("0", "1"):
            raise FilterError(f"--{name}-flag: invalid value {value!r} (expected 0 or 1)")
        bit = FLAG_BITS[_FLAG_SWITCHES[name]]
        c.add(f'("flags" & {c.p(bit)}) {"<>" if str(value).strip() == "1" else "="} 0')
    if spec.attributes is not None:
        pairs = _parse_attributes(spec.attributes)
        c.add(_or([f'("attributes" & {c.p(mask)}) = {c.p(high)}' for high, mask in pairs]))

    # volume and time ----------------------------------------------------------------------
    for name in ("packets", "bytes"):
        value = getattr(spec, name)
        if value is not None:
            lo, hi = parse_integer_range(value, what=option_name(name))
            c.add(c.ranges(ident(name), [(lo, hi)], 2**64 - 1))
    if spec.bytes_per_packet is not None:
        lo, hi = parse_decimal_range(spec.bytes_per_packet, what="--bytes-per-packet")
        bpp = '("bytes" / "packets")'
        test = ['"packets" > 0', f"{bpp} >= {c.p(float(lo))}"]
        if hi is not None:
            test.append(f"{bpp} <= {c.p(float(hi))}")
        c.add(_and(test))
    if spec.duration is not None:
        lo, hi = parse_decimal_range(spec.duration, what="--duration")
        test = [f'"duration" >= {c.p(float(lo * 1000))}']
        if hi is not None:
            test.append(f'"duration" <= {c.p(float(hi * 1000))}')
        c.add(_and(test))
    etime = '("sTime" + "duration")'
    for name, expr in (("stime", '"sTime"'), ("etime", etime)):
        value = getattr(spec, name)
        if value is not None:
            lo, hi = parse_time_window(value, what=option_name(name))
            c.add(f"{expr} BETWEEN {c.p(lo)} AND {c.p(hi)}")
    if spec.active_time is not None:
        lo, hi = parse_time_window(spec.active_time, what="--active-time")
        c.add(f'("sTime" <= {c.p(hi)} AND {etime} >= {c.p(lo)})')

    # selection switches as per-record tests -----------------------------------------------
    if spec.types is not None:
        c.add(_or([f'"flowtype" = {c.p(int(t))}' for t in sorted(set(spec.types))]))
    if spec.sensors is not None:
        c.add(_or([f'"sensor" = {c.p(int(s))}' for s in sorted(set(spec.sensors))]))

    where = " AND ".join(c.terms) if c.terms else "TRUE"
    return CompiledFilter(where, c.params, c.tables)
