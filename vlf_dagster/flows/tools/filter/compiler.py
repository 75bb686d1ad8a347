"""rwfilter: select archive files, then partition flow records into pass and fail.

Two halves, as in SiLK:

- **Selection** (:func:`parse_date_range`, :func:`select_archive_files`): which hourly archive
  files to read, from ``--start-date``/``--end-date`` (SiLK's precision rules), ``--type`` and
  ``--sensors``.
- **Partitioning** (:class:`FilterSpec`, :func:`compile_filter`): every test becomes part of ONE
  DuckDB boolean expression.  Values only ever travel as named ``$pN`` parameters; IP-set members
  travel as registered Arrow tables (``IN (SELECT ip FROM ...)``).  The expression runs over
  ``read_parquet(file list)`` (:func:`filter_files`) or over a registered Arrow table
  (:func:`partition`); no Python code runs per record.

Tests are AND'ed; the items of one switch's list are OR'ed.  Addresses follow SiLK's mixed IPv4 /
IPv6 policy: an IPv4 pattern also matches IPv6 records inside ``::ffff:0:0/96`` and an IPv6
pattern covering that block also matches IPv4 records.

Every user error raises :class:`FilterError` (a ``ValueError``) with a one-line message that
names the switch and the bad value.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...flags import FLAG_BITS, parse_flags, parse_high_mask
from ...flowtypes import DEFAULT_TYPES, FLOWTYPES, parse_types
from ...schema import ATTR_IPV6, FIELD_NAMES, FLOW_SCHEMA, PROTO_ICMP, PROTO_ICMPV6, TIME_ORDER, conform, ipv4_mapped
from ...sets import IPSet
from ...silktime import SilkTimeError, parse_silk_time, window_end
from ...site import Site
from ...sql import NO_HIVE, glob_escaped, ident, literal
from ...storage import archive_files, hours_between
from ... import duck


class FilterError(ValueError):
    """A malformed filter argument; the message names the switch and the value."""


# --- the filter specification -------------------------------------------------------------

# Address families: (spec field stem, flow column stem).  "any" means source OR destination.
_ADDRESS_SIDES = {"s": ("sIP",), "d": ("dIP",), "any": ("sIP", "dIP"), "nh": ("nhIP",)}


@dataclass
class FilterSpec:
    """The partitioning tests of one rwfilter invocation.

    Every field is optional; strings use rwfilter's argument syntax (e.g. ``sport="1024-"``,
    ``flags_all=["S/SA"]``, ``stime="2009/02/12:00-2009/02/12:05"``).  Set fields take a path to
    a ``.set`` file or an :class:`~vlf_dagster.flows.sets.IPSet`.  ``types`` and ``sensors`` are
    per-record tests (flowtype ids, sensor ids), used when the records come from files rather
    than the archive.
    """

    # IP wildcards / single address / CIDR
    saddress: str | None = None
    not_saddress: str | None = None
    daddress: str | None = None
    not_daddress: str | None = None
    any_address: str | None = None
    not_any_address: str | None = None
    next_hop_id: str | None = None
    not_next_hop_id: str | None = None
    # IP and CIDR lists
    scidr: str | None = None
    not_scidr: str | None = None
    dcidr: str | None = None
    not_dcidr: str | None = None
    any_cidr: str | None = None
    not_any_cidr: str | None = None
    nhcidr: str | None = None
    not_nhcidr: str | None = None
    # IP sets
    sipset: str | Path | IPSet | None = None
    not_sipset: str | Path | IPSet | None = None
    dipset: str | Path | IPSet | None = None
    not_dipset: str | Path | IPSet | None = None
    anyset: str | Path | IPSet | None = None
    not_anyset: str | Path | IPSet | None = None
    nhipset: str | Path | IPSet | None = None
    not_nhipset: str | Path | IPSet | None = None
    # integer lists
    sport: str | None = None
    dport: str | None = None
    aport: str | None = None
    protocol: str | None = None
    icmp_type: str | None = None
    icmp_code: str | None = None
    application: str | None = None
    input_index: str | None = None
    output_index: str | None = None
    any_index: str | None = None
    ip_version: str | None = None
    # TCP flags and attributes
    flags_all: list[str] = field(default_factory=list)
    flags_initial: list[str] = field(default_factory=list)
    flags_session: list[str] = field(default_factory=list)
    tcp_flags: str | None = None
    flag_bits: dict[str, str] = field(default_factory=dict)  # {"syn": "1", "ack": "0"}
    attributes: str | None = None
    # volume and time
    packets: str | None = None
    bytes: str | None = None
    bytes_per_packet: str | None = None
    duration: str | None = None
    stime: str | None = None
    etime: str | None = None
    active_time: str | None = None
    # selection switches acting as per-record tests (files / stdin input)
    types: list[int] | None = None
    sensors: list[int] | None = None

    def has_tests(self) -> bool:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None and value != [] and value != {}:
                return True
        return False


# Spec fields that cannot be combined with their own --not- form.
NEGATABLE = (
    "saddress", "daddress", "any_address", "next_hop_id",
    "scidr", "dcidr", "any_cidr", "nhcidr",
    "sipset", "dipset", "anyset", "nhipset",
)  # fmt: skip


def option_name(spec_field: str) -> str:
    return "--" + spec_field.replace("_", "-")


class CompiledFilter(NamedTuple):
    """One DuckDB boolean expression, its named parameters and the Arrow tables it reads."""

    where: str
    params: dict[str, object]
    tables: dict[str, pa.Table]


# --- small parsers --------------------------------------------------------------------------


def parse_integer_list(text: str, maximum: int, *, what: str) -> list[tuple[int, int]]:
    """``1,3,5-10,1024-`` -> merged inclusive ranges; an open range ends at ``maximum``."""
    text = str(text).strip()
    if not text:
        raise FilterError(f"{what}: empty integer list")
    ranges = []
    for item in text.split(","):
        item = item.strip()
        m = re.fullmatch(r"(\d+)(?:(-)(\d*))?", item)
        if not m:
            raise FilterError(f"{what}: invalid value {item!r} in {text!r} (expected N, N-M or N-)")
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else maximum)
        if lo > maximum or hi > maximum:
            raise FilterError(f"{what}: value {item!r} in {text!r} is above the maximum {maximum}")
        if lo > hi:
            raise FilterError(f"{what}: range {item!r} in {text!r} has its start above its end")
        ranges.append((lo, hi))
    return _merge(ranges)


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def parse_integer_range(text: str, *, what: str, maximum: int = 2**64 - 1) -> tuple[int, int]:
    """``MIN-MAX``, ``MIN-`` or an exact value."""
    text = str(text).strip()
    m = re.fullmatch(r"(\d+)(?:(-)(\d*))?", text)
    if not m:
        raise FilterError(f"{what}: invalid range {text!r} (expected MIN-MAX, MIN- or a value)")
    lo = int(m.group(1))
    hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else maximum)
    if lo > hi:
        raise FilterError(f"{what}: range {text!r} has its minimum above its maximum")
    if hi > maximum:
        raise FilterError(f"{what}: {text!r} is above the maximum {maximum}")
    return lo, hi


def parse_decimal_range(text: str, *, what: str) -> tuple[Decimal, Decimal | None]:
    """``5.0-10.031``, ``1.5-`` or an exact value, as Decimals (None: no upper limit)."""
    text = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(?:(-)(\d+(?:\.\d*)?|\.\d+)?)?", text)
    if not m:
        raise FilterError(f"{what}: invalid decimal range {text!r} (expected MIN-MAX, MIN- or a value)")
    try:
        lo = Decimal(m.group(1))
        hi = lo if m.group(2) is None else (Decimal(m.group(3)) if m.group(3) else None)
    except InvalidOperation:
        raise FilterError(f"{what}: invalid decimal range {text!r}") from None
    if hi is not None and lo > hi:
        raise FilterError(f"{what}: range {text!r} has its minimum above its maximum")
    return lo, hi


# --- times ----------------------------------------------------------------------------------

def parse_time(text: str, *, end: bool = False, what: str = "time") -> int:
    """A SiLK time (:mod:`.silktime`) as ms since the epoch (UTC); with ``end``, the last
    millisecond it covers (missing parts 23:59:59.999, an epoch end without a fraction .999), as
    rwfilter's time windows take them."""
    try:
        ms, precision = parse_silk_time(text)
    except SilkTimeError as exc:
        raise FilterError(f"{what}: invalid time {str(text).strip()!r} ({exc})") from None
    return window_end(ms, precision) if end else ms


def parse_time_window(text: str, *, what: str = "time window") -> tuple[int, int]:
    """``START[-END]`` -> inclusive (min_ms, max_ms); a single time is a 1 ms window."""
    text = str(text).strip()
    if text.count("-") > 1:
        raise FilterError(f"{what}: invalid time window {text!r} (expected START[-END])")
    start_s, _, end_s = text.partition("-")
    if not start_s:
        raise FilterError(f"{what}: invalid time window {text!r} (missing start)")
    lo = parse_time(start_s, what=what)
    if not end_s:
        return lo, lo
    hi = parse_time(end_s, end=True, what=what)
    if hi < lo:
        raise FilterError(f"{what}: time window {text!r} ends before it starts")
    return lo, hi


_DATE_RE = re.compile(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})(?:[:T](\d{1,2})(?::\d{1,2}(?::\d{1,2}(?:\.\d*)?)?)?)?")


def _parse_date(text: str, what: str) -> tuple[datetime, str, bool]:
    """A --start-date/--end-date value -> (hour, precision 'day'|'hour', was epoch seconds)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        seconds = int(text)
        try:
            moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise FilterError(f"{what}: invalid date {text!r}") from None
        precision = "day" if seconds % 86400 == 0 else "hour"
        return moment.replace(minute=0, second=0, microsecond=0), precision, True
    m = _DATE_RE.fullmatch(text)
    if not m:
        raise FilterError(f"{what}: invalid date {text!r} (expected YYYY/MM/DD[:HH] or epoch seconds)")
    hour = m.group(4)
    try:
        moment = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(hour or 0), tzinfo=timezone.utc)
    except ValueError as exc:
        raise FilterError(f"{what}: invalid date {text!r}: {exc}") from None
    return moment, ("hour" if hour is not None else "day"), False


def parse_date_range(start: str | None, end: str | None, *, now: datetime | None = None) -> list[datetime]:
    """The archive hours that rwfilter's ``--start-date``/``--end-date`` select (UTC).

    - both at hour precision: every hour from start to end;
    - day-precision start: whole days from start to end, the end's hour is ignored;
    - hour-precision start with a day-precision end: the start's hour is used for the end;
    - start only: that day (day precision) or that hour (hour precision);
    - neither: today (UTC); end without start: an error.

    Epoch seconds: an epoch end makes both hour precision; an epoch start with a YYYY/MM/DD end is
    day precision when divisible by 86400; an epoch start alone is hour precision.
    """
    if end and not start:
        raise FilterError(f"--end-date {end!r} requires --start-date")
    if not start:
        today = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        day = today.replace(hour=0, minute=0, second=0, microsecond=0)
        return [day + timedelta(hours=h) for h in range(24)]
    first, s_prec, s_epoch = _parse_date(start, "--start-date")
    if not end:
        if s_prec == "hour" or s_epoch:
            return [first]
        return [first + timedelta(hours=h) for h in range(24)]
    last, e_prec, e_epoch = _parse_date(end, "--end-date")
    if e_epoch:
        s_prec = e_prec = "hour"
    if s_prec == "day":
        first = first.replace(hour=0)
        last = last.replace(hour=23)
    elif e_prec == "day":
        last = last.replace(hour=first.hour)
    if last < first:
        raise FilterError(f"--end-date {end!r} is before --start-date {start!r}")
    return hours_between(first, last + timedelta(hours=1))


# --- selection ------------------------------------------------------------------------------


def parse_type_list(types: str | Sequence[int | str] | None, *, what: str = "--type") -> list[int]:
    """Flowtype ids from a ``--type`` value (names or ``all``) or a list of ids/names."""
    if types is None:
        return [i for name in DEFAULT_TYPES for i in parse_types(name)]
    try:
        if isinstance(types, str):
            return parse_types(types)
        out = []
        for t in types:
            if isinstance(t, (int, np.integer)):
                if int(t) not in FLOWTYPES:
                    raise FilterError(f"{what}: unknown flow type id {t}")
                out.append(int(t))
            else:
                out.extend(parse_types(str(t)))
        return out
    except FilterError:
        raise
    except ValueError as exc:
        raise FilterError(f"{what}: {exc}") from None


def parse_flowtypes(text: str) -> list[int]:
    """``--flowtypes=CLASS/TYPE[,...]``; the only class is ``all`` (SiLK's twoway site)."""
    out = []
    for item in (p.strip() for p in str(text).split(",")):
        cls, sep, typ = item.partition("/")
        if not sep or cls != "all":
            raise FilterError(f"--flowtypes: invalid class/type {item!r} (the class is 'all', e.g. all/in)")
        out.extend(parse_type_list(typ, what="--flowtypes"))
    return sorted(set(out))


def parse_sensors(sensors: str | Sequence[int | str] | None, site: Site) -> list[int] | None:
    """Sensor ids from names, ids and id ranges (``S0,S2``, ``0-3``); None means every sensor."""
    if sensors is None:
        return None
    items = [p.strip() for p in sensors.split(",")] if isinstance(sensors, str) else list(sensors)
    ids: list[int] = []
    count = len(site.sensors)
    for item in items:
        if isinstance(item, (int, np.integer)):
            lo = hi = int(item)
        elif item in site.sensors:
            ids.append(site.sensors.index(item))
            continue
        elif re.fullmatch(r"\d+", item):
            lo = hi = int(item)
        elif re.fullmatch(r"\d+-\d+", item):
            lo, hi = (int(p) for p in item.split("-"))
            if lo > hi:
                raise FilterError(f"--sensors: invalid sensor range {item!r}")
        else:
            raise FilterError(f"--sensors: unknown sensor {item!r} (site sensors: {', '.join(site.sensors)})")
        if hi >= count:
            raise FilterError(f"--sensors: unknown sensor id {hi if lo < count else lo} (site has ids 0-{count - 1})")
        ids.extend(range(lo, hi + 1))
    return sorted(set(ids))


def select_archive_files(
    data_dir: str | Path,
    site: Site,
    start: str | None = None,
    end: str | None = None,
    types: str | Sequence[int | str] | None = None,
    sensors: str | Sequence[int | str] | None = None,
    *,
    now: datetime | None = None,
) -> list[Path]:
    """The existing archive files rwfilter's selection switches pick, hour by hour.

    ``types`` defaults to SiLK's default types (in, inweb, inicmp); ``sensors`` to every sensor.
    """
    hours = parse_date_range(start, end, now=now)
    flowtypes = parse_type_list(types)
    sensor_ids = parse_sensors(sensors, site)
    names = None if sensor_ids is None else [site.sensor_name(i) for i in sensor_ids]
    return archive_files(data_dir, hours, flowtypes, names)


# --- IP patterns ----------------------------------------------------------------------------

_MAPPED_LO = 0xFFFF << 32
_MAPPED_HI = _MAPPED_LO | 0xFFFFFFFF
_ALL128 = (1 << 128) - 1


@dataclass(frozen=True)
class _Range:
    """An inclusive range of 128-bit addresses (IPv4 lives in ::ffff:0:0/96)."""

    lo: int
    hi: int


@dataclass(frozen=True)
class _Wildcard:
    """A SiLK IP wildcard: per-part value ranges over bit fields of the 128-bit address.

    ``fields`` are (bit offset from the top, width, ranges); ``prefix`` optionally fixes the
    address's top bits to a 128-bit range (an IPv4 wildcard lives in ::ffff:0:0/96).
    """

    fields: tuple[tuple[int, int, tuple[tuple[int, int], ...]], ...]
    prefix: _Range | None = None


def _v4_to_128(value: int) -> int:
    return _MAPPED_LO | value


def _network_range(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> _Range:
    lo, hi = int(net.network_address), int(net.broadcast_address)
    if net.version == 4:
        return _Range(_v4_to_128(lo), _v4_to_128(hi))
    return _Range(lo, hi)


def _parse_cidr(text: str, what: str) -> _Range:
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        value = int(text)
        if value > 0xFFFFFFFF:
            raise FilterError(f"{what}: invalid IP address {text!r}")
        return _Range(_v4_to_128(value), _v4_to_128(value))
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
    return tuple(_merge(ranges))


def _v4_wildcard_fields(text: str, offset: int) -> list[tuple[int, int, tuple]]:
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError(text)
    return [(offset + 8 * i, 8, _parse_part(p, 255, 10)) for i, p in enumerate(parts)]


def _parse_wildcard(text: str) -> _Wildcard:
    if ":" not in text:
        return _Wildcard(tuple(_v4_wildcard_fields(text, 96)), _Range(_MAPPED_LO, _MAPPED_HI))
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
    return _Wildcard(tuple(fields))


def parse_address(text: str, *, what: str = "address") -> _Range | _Wildcard:
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


def parse_cidr_list(text: str, *, what: str = "cidr") -> list[_Range]:
    items = [p for p in str(text).split(",")]
    if not any(p.strip() for p in items):
        raise FilterError(f"{what}: empty IP/CIDR list")
    ranges = [_parse_cidr(p, what) for p in items]
    return [_Range(lo, hi) for lo, hi in _merge((r.lo, r.hi) for r in ranges)]


def _v6_bytes(value: int) -> bytes:
    return value.to_bytes(16, "big")


# --- the compiler ---------------------------------------------------------------------------


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
    def _v4_pattern(self, col: str, pat: _Range | _Wildcard) -> str | None:
        """The test on an IPv4 record's uint32 column, or None when it can never match."""
        if isinstance(pat, _Range):
            lo, hi = max(pat.lo, _MAPPED_LO), min(pat.hi, _MAPPED_HI)
            if lo > hi:
                return None
            return self.ranges(col, [(lo - _MAPPED_LO, hi - _MAPPED_LO)], 0xFFFFFFFF)
        if pat.prefix is not None and not (pat.prefix.lo <= _MAPPED_LO and _MAPPED_HI <= pat.prefix.hi):
            return None
        parts = []
        for offset, width, ranges in pat.fields:
            if offset < 96:
                fixed = (_MAPPED_LO >> (128 - offset - width)) & ((1 << width) - 1)
                if not any(lo <= fixed <= hi for lo, hi in ranges):
                    return None
                continue
            shift = 128 - offset - width
            expr = f"(({col} >> {shift}) & {(1 << width) - 1})"
            parts.append(self.ranges(expr, ranges, (1 << width) - 1))
        return _and(parts)

    def _v6_pattern(self, col6: str, pat: _Range | _Wildcard) -> str | None:
        """The test on an IPv6 record's 16-byte column."""
        if isinstance(pat, _Range):
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

    def address(self, column: str, patterns: Sequence[_Range | _Wildcard]) -> str:
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
                f"({self._v6_pattern(col6, _Range(_MAPPED_LO, _MAPPED_HI))} AND "
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


# --- running a compiled filter ---------------------------------------------------------------


@dataclass
class FilterStats:
    """What --print-statistics / --print-volume-statistics report."""

    files: int = 0
    records: int = 0
    packets: int = 0
    bytes: int = 0
    pass_records: int = 0
    pass_packets: int = 0
    pass_bytes: int = 0

    @property
    def fail_records(self) -> int:
        return self.records - self.pass_records

    @property
    def fail_packets(self) -> int:
        return self.packets - self.pass_packets

    @property
    def fail_bytes(self) -> int:
        return self.bytes - self.pass_bytes

    def summary(self) -> str:
        """rwfilter's one-line --print-statistics summary."""
        return (
            f"Files {self.files:5d}.  Read {self.records:10d}.  "
            f"Pass {self.pass_records:10d}. Fail  {self.fail_records:10d}."
        )

    def volume(self) -> str:
        """rwfilter's four-line --print-volume-statistics table."""
        rows = [
            f"{'':>5}|{'Recs':>18}|{'Packets':>18}|{'Bytes':>20}|{'Files':>10}|",
            f"{'Total':>5}|{self.records:18d}|{self.packets:18d}|{self.bytes:20d}|{self.files:10d}|",
            f"{'Pass':>5}|{self.pass_records:18d}|{self.pass_packets:18d}|{self.pass_bytes:20d}|{'':>10}|",
            f"{'Fail':>5}|{self.fail_records:18d}|{self.fail_packets:18d}|{self.fail_bytes:20d}|{'':>10}|",
        ]
        return "\n".join(rows)


@dataclass
class FilterResult:
    passed: pa.Table | None
    failed: pa.Table | None
    everything: pa.Table | None
    stats: FilterStats | None


_COLUMNS = ", ".join(ident(n) for n in FIELD_NAMES)
_PASS = "__vlf_pass"


def _duckdb_error(exc: Exception) -> FilterError:
    return FilterError(str(exc).strip().splitlines()[0])


def execute(
    spec: FilterSpec | CompiledFilter,
    *,
    files: Sequence[str | Path] | None = None,
    table: pa.Table | None = None,
    passed: bool = True,
    failed: bool = False,
    everything: bool = False,
    stats: bool = False,
) -> FilterResult:
    """Run the filter over Parquet ``files`` or an Arrow ``table`` in one DuckDB query.

    Returns the requested record tables (flow schema, input order kept) and the statistics.
    """
    if (files is None) == (table is None):
        raise TypeError("give exactly one of files= or table=")
    compiled = spec if isinstance(spec, CompiledFilter) else compile_filter(spec)
    n_files = len(files) if files is not None else 1
    if files is not None and not files:
        empty = FLOW_SCHEMA.empty_table()
        return FilterResult(
            empty if passed else None, empty if failed else None, empty if everything else None,
            FilterStats(files=0) if stats else None,
        )  # fmt: skip
    con = duck.connect()
    try:
        params = dict(compiled.params)
        for name, members in compiled.tables.items():
            con.register(name, members)
        # Set tests are joins, which do not keep row order: number the rows and sort back.
        ordered = bool(compiled.tables)
        if table is not None:
            source_table = conform(table) if not table.schema.equals(FLOW_SCHEMA, check_metadata=False) else table
            if ordered:
                source_table = source_table.append_column("__vlf_row", pa.array(np.arange(source_table.num_rows, dtype=np.int64)))
            con.register("__vlf_input", source_table)
            source, order = "__vlf_input", ' ORDER BY "__vlf_row"'
        else:
            params["__vlf_files"] = [glob_escaped(f) for f in files]
            if ordered:
                # Scan each distinct file once; the join repeats its rows for every position it has
                # in the input list, so a file named twice is read twice, in place, like rwfilter.
                params["__vlf_files"] = list(dict.fromkeys(glob_escaped(f) for f in files))
                con.register("__vlf_files", pa.table({"filename": [str(f) for f in files],
                                                      "__vlf_file": list(range(len(files)))}))
                source = (
                    f"(SELECT * FROM read_parquet($__vlf_files, filename = true, file_row_number = true, {NO_HIVE}) "
                    'JOIN "__vlf_files" USING (filename))'
                )
                order = ' ORDER BY "__vlf_file", "file_row_number"'
            else:
                source, order = f"read_parquet($__vlf_files, {NO_HIVE})", ""
        if not ordered:
            order = ""
        where = compiled.where

        result = FilterResult(None, None, None, None)
        if failed or everything:
            query = f"SELECT {_COLUMNS}, coalesce({where}, FALSE) AS {_PASS} FROM {source}{order}"
            rows = con.sql(query, params=params).to_arrow_table()
            mask = rows.column(_PASS)
            rows = conform(rows.drop_columns([_PASS]))
            if passed:
                result.passed = rows.filter(mask)
            if failed:
                result.failed = rows.filter(pc.invert(mask))
            if everything:
                result.everything = rows
            if stats:
                result.stats = _stats_from_tables(n_files, rows, rows.filter(mask))
            return result
        if passed:
            query = f"SELECT {_COLUMNS} FROM {source} WHERE {where}{order}"
            result.passed = conform(con.sql(query, params=params).to_arrow_table())
        if stats:
            query = (
                "SELECT count(*), coalesce(sum(packets), 0), coalesce(sum(bytes), 0), "
                f"count(*) FILTER (WHERE {_PASS}), coalesce(sum(packets) FILTER (WHERE {_PASS}), 0), "
                f"coalesce(sum(bytes) FILTER (WHERE {_PASS}), 0) "
                f"FROM (SELECT packets, bytes, coalesce({where}, FALSE) AS {_PASS} FROM {source})"
            )
            row = con.sql(query, params=params).fetchall()[0]
            result.stats = FilterStats(n_files, *(int(v) for v in row))
        return result
    except duckdb.Error as exc:
        raise _duckdb_error(exc) from None
    finally:
        con.close()


def _stats_from_tables(n_files: int, rows: pa.Table, passed: pa.Table) -> FilterStats:
    def total(t: pa.Table, column: str) -> int:
        return int(pc.sum(t.column(column)).as_py() or 0) if t.num_rows else 0

    return FilterStats(
        n_files, rows.num_rows, total(rows, "packets"), total(rows, "bytes"),
        passed.num_rows, total(passed, "packets"), total(passed, "bytes"),
    )  # fmt: skip


def filter_files(files: Sequence[str | Path], spec: FilterSpec | CompiledFilter) -> pa.Table:
    """The records of Parquet flow ``files`` (e.g. archive files) that pass ``spec``."""
    return execute(spec, files=list(files)).passed


def partition_files(files: Sequence[str | Path], spec: FilterSpec | CompiledFilter) -> tuple[pa.Table, pa.Table]:
    """(pass, fail) records of Parquet flow ``files``."""
    result = execute(spec, files=list(files), failed=True)
    return result.passed, result.failed


def partition(table: pa.Table, spec: FilterSpec | CompiledFilter) -> tuple[pa.Table, pa.Table]:
    """(pass, fail) records of a flow table; every record lands in exactly one of them."""
    result = execute(spec, table=table, failed=True)
    return result.passed, result.failed


def filtered_batches(files: Sequence[str | Path], spec: FilterSpec | CompiledFilter, *,
                     batch_rows: int = 1 << 17) -> Iterator[pa.RecordBatch]:
    """The records of Parquet ``files`` that pass, in flow-schema batches, in input order, as DuckDB
    scans them: memory stays flat however many pass, and a reader downstream of a pipe starts on
    the first batch.  Set tests (joins, which do not keep order) are :func:`execute`'s."""
    compiled = spec if isinstance(spec, CompiledFilter) else compile_filter(spec)
    if compiled.tables:
        raise FilterError("set tests need execute(), which sorts the joined rows back into input order")
    if not files:
        return
    con = duck.connect()
    try:
        params = {**compiled.params, "__vlf_files": [glob_escaped(f) for f in files]}
        sql = f"SELECT {_COLUMNS} FROM read_parquet($__vlf_files, {NO_HIVE}) WHERE {compiled.where}"
        try:
            reader = con.sql(sql, params=params).to_arrow_reader(batch_rows)
            for raw in reader:
                yield from conform(pa.Table.from_batches([raw])).to_batches()
        except duckdb.Error as exc:
            raise _duckdb_error(exc) from None
    finally:
        con.close()


def write_filtered(
    files: Sequence[str | Path], spec: FilterSpec | CompiledFilter, out: str | Path, *, order_by: str | None = TIME_ORDER
) -> int:
    """``--pass-destination=FILE.parquet`` streamed by DuckDB: the passing records never pass
    through Python, so memory stays flat however many there are.  Returns the record count."""
    from ...storage import atomic_path, write_parquet

    if not files:
        write_parquet(FLOW_SCHEMA.empty_table(), out)
        return 0
    compiled = spec if isinstance(spec, CompiledFilter) else compile_filter(spec)
    con = duck.connect()
    try:
        for name, members in compiled.tables.items():
            con.register(name, members)
        params = {**compiled.params, "__vlf_files": [str(f) for f in files]}
        order = f" ORDER BY {order_by}" if order_by else ""
        sql = f"SELECT {_COLUMNS} FROM read_parquet($__vlf_files) WHERE {compiled.where}{order}"
        with atomic_path(out) as tmp:  # COPY answers with the number of rows it wrote
            written = con.execute(f"COPY ({sql}) TO {literal(tmp)} (FORMAT parquet, COMPRESSION zstd)", params).fetchall()
        return int(written[0][0])
    except duckdb.Error as exc:
        raise _duckdb_error(exc) from None
    finally:
        con.close()
