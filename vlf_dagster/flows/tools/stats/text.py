"""Bins by key, top-N lists and traffic over time: SiLK's rwuniq, rwstats and rwcount.

Three pure functions, each taking either a flow table (``pa.Table``) or a list of Parquet paths:

* :func:`uniq` groups flows by key fields (``fields.py`` names or rwcut numbers) and computes
  aggregate values per bin (records, packets, bytes, earliest start, latest end, distinct counts),
  keeping only bins inside every ``--threshold`` range.  One DuckDB ``GROUP BY``.
* :func:`top_n` ranks the same bins by their first value: the N largest (or smallest), those at or
  beyond a threshold, or those holding at least a percentage of the total, with each bin's share
  and the cumulative share.  Ties are broken by the key, smaller first (SiLK leaves them arbitrary).
* :func:`count_bins` spreads records, bytes and packets over fixed time bins with one of rwcount's
  seven load schemes; a flow spanning k bins is expanded with ``numpy.repeat``, never a Python loop.

:func:`format_uniq`, :func:`format_top` and :func:`format_count` render the results in the SiLK
tools' text layouts (right-aligned columns, ``|`` separators including a trailing one, keys shown as
rwcut shows them).  Errors in the caller's request raise :class:`StatsError` with a one-line message.

IPv6: when the input holds IPv6 records and an address field is a key or a distinct count, every
address is handled as IPv6 with IPv4 mapped into ``::ffff:0:0/96`` (SiLK's ``mix`` policy); mapped
addresses are printed as dotted quads again, as SiLK does.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence, Union

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ... import fields as field_registry
from ...fields import Field, FieldError
from ...flags import attribute_strings, flag_strings
from ...flowtypes import FLOWTYPES
from ...site import sensor_labels, sensor_width
from ...iptext import CANONICAL, DECIMAL, IpFormat, ip_width, ipv4_text, ipv6_text
from ...schema import FLOW_SCHEMA, SchemaError, conform
from ...storage import holds_flow_columns, ipv6_columns_empty
from ...silktime import SilkTimeError, parse_silk_time, window_end
from ...sql import NO_HIVE, path_list
from ... import duck


class StatsError(ValueError):
    """A bad request to uniq, stats or count (unknown field, bad threshold, bad bin size ...)."""


Source = Union[pa.Table, Sequence[Union[str, Path]], str, Path]

MS_PER_DAY = 86_400_000
_V4_MAPPED = 0xFFFF << 32  # ::ffff:0:0/96
_MASK64 = (1 << 64) - 1


# --- input ----------------------------------------------------------------------------------


def _scalar(con: duckdb.DuckDBPyConnection, sql: str):
    return con.sql(sql).fetchall()[0][0]


@contextmanager
def _flows(source: Source) -> Iterator[tuple[duckdb.DuckDBPyConnection, bool]]:
    """An in-memory DuckDB connection with a ``flows`` relation, and whether it holds IPv6 data.

    A cursor on this thread's kept database (``duck.probe``), its ``flows`` a temporary view that
    closing the cursor (when the block ends) drops: opening a database of its own cost a one-shot
    verb ~20 ms more."""
    if isinstance(source, pa.Table) and not source.schema.equals(FLOW_SCHEMA, check_metadata=False):
        try:
            source = conform(source)
        except SchemaError as exc:
            raise StatsError(str(exc)) from None
    paths = duck.source_paths(source)
    with duck.probe().cursor() as con:

        def files_sql(paths: list) -> str:
            # matching files are scanned as they are (binding by name costs a footer pass per query)
            by_name = "false" if holds_flow_columns([str(p) for p in paths], con) else "true"
            return f"SELECT * FROM read_parquet({path_list(paths)}, union_by_name = {by_name}, {NO_HIVE})"

        columns = duck.register(con, "flows", source, empty=FLOW_SCHEMA, files_sql=files_sql,
                                missing=lambda path: StatsError(f"no such flow file: {path}"))
        if paths is None:
            has_v6 = any(source.column(c).null_count < source.num_rows for c in ("sIPv6", "dIPv6", "nhIPv6"))
        else:
            v6 = [c for c in ("sIPv6", "dIPv6", "nhIPv6") if c in columns]
            has_v6 = bool(paths) and bool(v6) and _holds_ipv6(con, paths, v6)
        yield con, has_v6


def _holds_ipv6(con: duckdb.DuckDBPyConnection, paths: Sequence[str | Path], columns: list[str]) -> bool:
    """Whether any IPv6 column holds a value: the footers' null counts answer without a scan."""
    if ipv6_columns_empty(paths, con):
        return False
    return bool(_scalar(con, f"SELECT count(*) FROM flows WHERE {' OR '.join(f'{c} IS NOT NULL' for c in columns)}"))


# --- parsing keys, values, thresholds -------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """One aggregate value column: ``kind`` is records|packets|bytes|stime|etime|distinct."""

    kind: str
    title: str
    width: int
    field: Field | None = None  # the counted field of a distinct value


_VALUE_NAMES = {  # lower-case name -> kind (or the field a distinct alias counts)
    "records": "records",
    "flows": "records",
    "packets": "packets",
    "bytes": "bytes",
    "stime-earliest": "stime",
    "etime-latest": "etime",
    "sip-distinct": "distinct:sIP",
    "dip-distinct": "distinct:dIP",
}

VALUE_HELP = "records (alias flows), packets, bytes, sTime-Earliest, eTime-Latest, sIP-Distinct, dIP-Distinct, distinct:FIELD"


def _make_value(kind: str, field: Field | None = None) -> Value:
    if kind == "records":
        return Value("records", "Records", 10)
    if kind == "packets":
        return Value("packets", "Packets", 15)
    if kind == "bytes":
        return Value("bytes", "Bytes", 20)
    if kind == "stime":
        return Value("stime", "sTime-Earliest", 19)
    if kind == "etime":
        return Value("etime", "eTime-Latest", 19)
    assert field is not None
    # rwuniq sizes a distinct count as the field printed as an integer (dPort 5, flags 3, sIP 10),
    # and cuts the title "<field>-Distinct" to that width like every title
    return Value("distinct", f"{field.name}-Distinct", _DISTINCT_WIDTHS.get(field.name, 10), field)


_DISTINCT_WIDTHS = {
    "sPort": 5, "dPort": 5, "protocol": 3, "flags": 3, "initialFlags": 3, "sessionFlags": 3, "attributes": 3,
    "sensor": 5, "in": 5, "out": 5, "application": 5, "class": 3, "type": 3, "iType": 3, "iCode": 3,
}  # fmt: skip


def parse_value(text: str) -> Value:
    """One ``--values`` item: a name (case-insensitive, any unique prefix) or ``distinct:FIELD``."""
    name = text.strip()
    low = name.lower()
    if not low:
        raise StatsError("empty value name")
    if low.startswith("distinct:"):
        try:
            return _make_value("distinct", field_registry.field(name.split(":", 1)[1]))
        except FieldError as exc:
            raise StatsError(f"invalid value {name!r}: {exc}") from None
    candidates = [*_VALUE_NAMES, "distinct"]
    if low in candidates:
        matches = [low]
    else:
        matches = [n for n in candidates if n.startswith(low)]
        if len({_VALUE_NAMES.get(m, m) for m in matches}) == 1:
            matches = matches[:1]
    if len(matches) != 1:
        why = "ambiguous" if matches else "unknown"
        raise StatsError(f"{why} value {name!r} (values: {VALUE_HELP})")
    if matches[0] == "distinct":
        raise StatsError(f"invalid value {name!r}: write distinct:FIELD, e.g. distinct:dport")
    kind = _VALUE_NAMES[matches[0]]
    if kind.startswith("distinct:"):
        return _make_value("distinct", field_registry.field(kind.split(":", 1)[1]))
    return _make_value(kind)


def value_id(value: Value) -> tuple:
    """Identity of a value: distinct:sIP and sIP-Distinct are the same value."""
    return (value.kind, value.field.name if value.field else None)


def parse_values(spec: str | Iterable[str | Value] | None) -> list[Value]:
    if spec is None:
        return []
    items = [p for p in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[Value] = []
    for item in items:
        value = item if isinstance(item, Value) else parse_value(item)
        if any(value_id(v) == value_id(value) for v in out):
            raise StatsError(f"value {value.title} given more than once")
        out.append(value)
    return out


def parse_keys(spec: str | Iterable[str | Field]) -> list[Field]:
    """``--fields``: names, aliases or rwcut numbers (``N-M`` ranges), each at most once."""
    try:
        if isinstance(spec, str):
            keys = field_registry.parse_fields(spec)
        else:
            keys = [k if isinstance(k, Field) else field_registry.field(k) for k in spec]
    except FieldError as exc:
        raise StatsError(str(exc)) from None
    if not keys:
        raise StatsError("no key fields given (--fields)")
    seen: set[str] = set()
    for key in keys:
        if key.name in seen:
            raise StatsError(f"key field {key.name} given more than once")
        seen.add(key.name)
    return keys


@dataclass(frozen=True)
class Threshold:
    """Keep bins whose ``value`` lies in [minimum, maximum] (maximum None: no upper bound)."""

    value: Value
    minimum: int
    maximum: int | None = None


_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d*)\s*)?$")  # MIN, MIN-MAX, or MIN- (no maximum)


def parse_range(text: str, what: str) -> tuple[int, int | None]:
    m = _RANGE.match(text)
    if not m:
        raise StatsError(f"invalid {what} range {text!r}: expected MIN, MIN- or MIN-MAX (non-negative integers)")
    low = max(int(m.group(1)), 1)  # rwuniq treats a minimum of 0 as 1
    high = int(m.group(2)) if m.group(2) else None
    if high is not None and high < low:
        raise StatsError(f"invalid {what} range {text!r}: maximum is below minimum")
    return low, high


def parse_threshold(text: str | Threshold) -> Threshold:
    """rwuniq's ``--threshold=VALUE=MIN[-MAX]`` (SiLK 3.17+)."""
    if isinstance(text, Threshold):
        return text
    if "=" not in text:
        raise StatsError(f"invalid threshold {text!r}: expected VALUE=MIN[-MAX], e.g. flows=1-10")
    name, rng = text.rsplit("=", 1)
    value = parse_value(name)
    if value.kind in ("stime", "etime"):
        raise StatsError(f"invalid threshold {text!r}: {value.title} cannot have a threshold")
    low, high = parse_range(rng, f"threshold {name.strip()}")
    return Threshold(value, low, high)


def parse_bin_time(seconds: float | str | None) -> int:
    """``--bin-time`` in seconds (fractional allowed, >= 0.001) -> milliseconds; None -> 1 s."""
    if seconds is None:
        return 1000
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise StatsError(f"invalid bin time {seconds!r}: expected seconds, e.g. 60 or 0.5") from None
    ms = int(round(value * 1000))
    if not np.isfinite(value) or ms < 1:
        raise StatsError(f"invalid bin time {seconds!r}: must be at least 0.001 seconds")
    return ms


# --- SQL for keys and values ----------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to group by and compute, resolved against the input (IPv6 present or not)."""

    keys: tuple[Field, ...]
    values: tuple[Value, ...]
    thresholds: tuple[Threshold, ...]
    bin_ms: int
    ipv6: bool

    @property
    def msec(self) -> bool:
        """Times and durations keep milliseconds (a fractional --bin-time)."""
        return self.bin_ms % 1000 != 0


_IP_V6_COLUMN = {"sIP": "sIPv6", "dIP": "dIPv6", "nhIP": "nhIPv6"}


def _field_sql(field: Field, plan: Plan) -> str:
    """The grouping expression of one key (or distinct) field."""
    b = plan.bin_ms
    key_names = {k.name for k in plan.keys}
    if field.kind == "ip" and plan.ipv6:
        v6 = _IP_V6_COLUMN[field.name]
        return (
            f"CASE WHEN {v6} IS NOT NULL THEN ('0x' || hex({v6}))::UHUGEINT "
            f"ELSE {_V4_MAPPED}::UHUGEINT + {field.sql} END"
        )
    if field.name == "sTime":
        return f"((sTime // {b}) * {b})"
    if field.name == "eTime":
        return f"(((sTime + duration) // {b}) * {b})"
    if field.name == "duration":
        if "sTime" in key_names and "eTime" in key_names:
            return f"((((sTime + duration) // {b}) * {b}) - ((sTime // {b}) * {b}))"
        return "duration::BIGINT" if plan.msec else "((duration // 1000) * 1000)::BIGINT"
    return field.sql


def _value_sql(value: Value, plan: Plan) -> str:
    if value.kind == "records":
        return "count(*)::UBIGINT"
    if value.kind in ("packets", "bytes"):
        return f"sum({value.kind})::UBIGINT"
    if value.kind == "stime":
        return "min(sTime)"
    if value.kind == "etime":
        return "max(sTime + duration)"
    return f"count(DISTINCT {_field_sql(value.field, plan)})::UBIGINT"


def make_plan(
    keys, values=None, thresholds: Iterable = (), *, bin_time: float | str | None = None, ipv6: bool = False
) -> Plan:
    """Parse and check a request; thresholds on values not listed append those values (rwuniq)."""
    key_fields = parse_keys(keys)
    value_list = parse_values(values)
    limits = [parse_threshold(t) for t in thresholds]
    for limit in limits:
        if not any(value_id(v) == value_id(limit.value) for v in value_list):
            value_list.append(limit.value)
    if not value_list:
        value_list = [_make_value("records")]
    key_names = {k.name for k in key_fields}
    for value in value_list:
        if value.kind == "distinct" and value.field.name in key_names:
            raise StatsError(f"cannot count distinct {value.field.name}: it is also a key field")
    return Plan(tuple(key_fields), tuple(value_list), tuple(limits), parse_bin_time(bin_time), ipv6)


def _uses_ip(plan: Plan) -> bool:
    return any(f.kind == "ip" for f in plan.keys) or any(
        v.kind == "distinct" and v.field.kind == "ip" for v in plan.values
    )


def _group_sql(plan: Plan) -> tuple[str, list]:
    """SELECT k0.., v0.. FROM flows GROUP BY ALL [HAVING thresholds]."""
    cols = [f"{_field_sql(k, plan)} AS k{i}" for i, k in enumerate(plan.keys)]
    cols += [f"{_value_sql(v, plan)} AS v{j}" for j, v in enumerate(plan.values)]
    having, params = [], []
    for limit in plan.thresholds:
        expr = _value_sql(limit.value, plan)
        having.append(f"{expr} >= ?")
        params.append(limit.minimum)
        if limit.maximum is not None:
            having.append(f"{expr} <= ?")
            params.append(limit.maximum)
    sql = f"SELECT {', '.join(cols)} FROM flows GROUP BY ALL"
    if having:
        sql += " HAVING " + " AND ".join(having)
    return sql, params


def _outer_columns(plan: Plan) -> str:
    """Select list over the grouped relation; 128-bit addresses come out as two uint64 halves."""
    cols = []
    for i, key in enumerate(plan.keys):
        if key.kind == "ip" and plan.ipv6:
            cols += [f"(k{i} >> 64)::UBIGINT AS k{i}_hi", f"(k{i} & {_MASK64}::UHUGEINT)::UBIGINT AS k{i}_lo"]
        else:
            cols.append(f"k{i}")
    cols += [f"v{j}" for j in range(len(plan.values))]
    return ", ".join(cols)


def _order_keys(plan: Plan) -> str:
    return ", ".join(f"k{i} ASC NULLS FIRST" for i in range(len(plan.keys)))


def _addresses16(hi: np.ndarray, lo: np.ndarray) -> pa.Array:
    raw = np.empty((len(hi), 2), dtype=">u8")
    raw[:, 0] = hi
    raw[:, 1] = lo
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(hi), [None, pa.py_buffer(raw.tobytes())])


def _name_result(raw: pa.Table, plan: Plan, extra: Sequence[tuple[str, pa.Array]] = ()) -> pa.Table:
    """Rename k*/v* to field names and value titles; join 128-bit halves into binary(16)."""
    names, arrays = [], []
    for i, key in enumerate(plan.keys):
        names.append(key.name)
        if key.kind == "ip" and plan.ipv6:
            hi = raw.column(f"k{i}_hi").to_numpy().astype(np.uint64)
            lo = raw.column(f"k{i}_lo").to_numpy().astype(np.uint64)
            arrays.append(_addresses16(hi, lo))
        else:
            arrays.append(raw.column(f"k{i}").combine_chunks())
    for j, value in enumerate(plan.values):
        names.append(value.title)
        arrays.append(raw.column(f"v{j}").combine_chunks())
    for name, array in extra:
        names.append(name)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=names)


# --- uniq -----------------------------------------------------------------------------------


def uniq_plan(source: Source, keys, values=None, thresholds: Iterable = (), *, bin_time=None, sort: bool = False,
              wide: bool | None = None):
    """(plan, table) for :func:`uniq`; the plan tells :func:`format_uniq` how to show each column.

    ``wide``: whether addresses are 128-bit (39-wide columns) whatever the input holds, as SiLK's
    --ipv6-policy decides it (:mod:`.ipv6policy`); None: only when the input holds IPv6."""
    plan = make_plan(keys, values, thresholds, bin_time=bin_time)
    with _flows(source) as (con, has_v6):
        plan = replace(plan, ipv6=(has_v6 if wide is None else wide) and _uses_ip(plan))
        inner, params = _group_sql(plan)
        sql = f"WITH g AS ({inner}) SELECT {_outer_columns(plan)} FROM g"
        if sort:
            sql += f" ORDER BY {_order_keys(plan)}"
        raw = con.sql(sql, params=params).to_arrow_table() if params else con.sql(sql).to_arrow_table()
    return plan, _name_result(raw, plan)


def uniq(
    source: Source,
    keys,
    values=None,
    thresholds: Iterable = (),
    *,
    bin_time: float | str | None = None,
    sort: bool = False,
) -> pa.Table:
    """rwuniq: one row per distinct key with its aggregate values.

    ``keys`` is a ``--fields`` string (``"sip,dport"``, ``"1-5"``) or a list of names/Fields;
    ``values`` a ``--values`` string or list (default: records); ``thresholds`` strings such as
    ``"flows=1-10"``.  Key columns are named after the fields (IP keys: uint32, or binary(16) with
    IPv4 mapped when the input holds IPv6; times and durations in milliseconds, binned by
    ``bin_time`` seconds, default 1), value columns after the values' titles (``Records``,
    ``dIP-Distinct`` ...).  Rows are in key order when ``sort`` is true, else in no set order.
    """
    return uniq_plan(source, keys, values, thresholds, bin_time=bin_time, sort=sort)[1]


# --- top-N ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopN:
    """The result of :func:`top_n` plus what rwstats' two header lines report."""

    table: pa.Table  # keys, values, "%<primary title>", "cumul_%"
    plan: Plan
    records: int  # input records
    bins: int  # bins before the limit
    total: int  # sum of the primary value over all records (distinct: distinct count overall)
    bottom: bool
    mode: str  # count | all | threshold | percentage
    count: int | None = None
    threshold: int | None = None
    percentage: float | None = None

    @property
    def primary(self) -> Value:
        return self.plan.values[0]


def top_n(
    source: Source,
    keys,
    values=None,
    *,
    count: int | None = None,
    threshold: int | None = None,
    percentage: float | None = None,
    bottom: bool = False,
    bin_time: float | str | None = None,
    wide: bool | None = None,
) -> TopN:
    """rwstats: bins ranked by their first value, largest first (``bottom``: smallest first).

    Give exactly one limit: ``count`` (N bins; 0 = all), ``threshold`` (bins whose value is at
    least -- bottom: at most -- this) or ``percentage`` (the threshold is that percentage of the
    total, truncated to an integer, as in SiLK).  Bins with equal values are ordered by key,
    smaller key first.
    """
    given = [n for n, v in (("count", count), ("threshold", threshold), ("percentage", percentage)) if v is not None]
    if len(given) != 1:
        raise StatsError("give exactly one of --count, --threshold or --percentage")
    if count is not None and (int(count) != count or count < 0):
        raise StatsError(f"invalid count {count!r}: expected a non-negative integer")
    if threshold is not None and (int(threshold) != threshold or threshold < 0):
        raise StatsError(f"invalid threshold {threshold!r}: expected a non-negative integer")
    if percentage is not None and not (0.0 <= float(percentage) <= 100.0):
        raise StatsError(f"invalid percentage {percentage!r}: expected a number from 0 to 100")
    plan = make_plan(keys, values, bin_time=bin_time)
    primary = plan.values[0]
    if primary.kind in ("stime", "etime"):
        raise StatsError(f"{primary.title} cannot be the first (ranking) value of stats")
    with _flows(source) as (con, has_v6):
        plan = replace(plan, ipv6=(has_v6 if wide is None else wide) and _uses_ip(plan))
        inner, _ = _group_sql(plan)
        con.execute(f"CREATE TEMP TABLE g AS {inner}")
        records = int(_scalar(con, "SELECT count(*) FROM flows"))
        bins = int(_scalar(con, "SELECT count(*) FROM g"))
        if primary.kind == "records":
            total = records
        elif primary.kind == "distinct":
            total = int(_scalar(con, f"SELECT count(DISTINCT {_field_sql(primary.field, plan)}) FROM flows"))
        else:
            total = int(_scalar(con, "SELECT coalesce(sum(v0), 0) FROM g"))
        direction = "ASC" if bottom else "DESC"
        order = f"v0 {direction}, {_order_keys(plan)}"
        sql = f"SELECT {_outer_columns(plan)} FROM g"
        params: list = []
        mode, limit_value = "count", None
        if count is not None:
            mode = "count" if count else "all"
            raw_sql = f"{sql} ORDER BY {order}" + (f" LIMIT {int(count)}" if count else "")
        else:
            if percentage is not None:
                mode = "percentage"
                limit_value = int(float(percentage) * total / 100.0)
            else:
                mode = "threshold"
                limit_value = int(threshold)
            raw_sql = f"{sql} WHERE v0 {'<=' if bottom else '>='} ? ORDER BY {order}"
            params = [limit_value]
        raw = con.sql(raw_sql, params=params).to_arrow_table() if params else con.sql(raw_sql).to_arrow_table()
    primary_values = raw.column("v0").to_numpy().astype(np.float64) if raw.num_rows else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = 100.0 * primary_values / total if total else np.full(len(primary_values), np.nan)
    cumulative = np.cumsum(share)
    table = _name_result(
        raw, plan, [(f"%{primary.title}", pa.array(share, pa.float64())), ("cumul_%", pa.array(cumulative, pa.float64()))]
    )
    return TopN(
        table=table,
        plan=plan,
        records=records,
        bins=bins,
        total=total,
        bottom=bottom,
        mode=mode,
        count=int(count) if count is not None else None,
        threshold=limit_value,
        percentage=float(percentage) if percentage is not None else None,
    )


# --- count ----------------------------------------------------------------------------------

LOAD_SCHEMES = {  # SiLK's numbers
    "bin-uniform": 0,
    "start-spike": 1,
    "end-spike": 2,
    "middle-spike": 3,
    "time-proportional": 4,
    "maximum-volume": 5,
    "minimum-volume": 6,
}
_SCHEME_BY_NUMBER = {n: name for name, n in LOAD_SCHEMES.items()}


def parse_load_scheme(text: str | int) -> str:
    """A load scheme by name (any unique prefix) or SiLK's number 0-6 -> its canonical name."""
    s = str(text).strip().lower()
    if s.isdigit():
        if int(s) in _SCHEME_BY_NUMBER:
            return _SCHEME_BY_NUMBER[int(s)]
        raise StatsError(f"invalid load scheme {text!r}: numbers are 0-6")
    matches = [name for name in LOAD_SCHEMES if name.startswith(s)] if s else []
    if len(matches) != 1:
        why = "ambiguous" if matches else "unknown"
        names = ", ".join(f"{n} ({i})" for n, i in LOAD_SCHEMES.items())
        raise StatsError(f"{why} load scheme {text!r} (choose from {names})")
    return matches[0]


def parse_bin_size(seconds: float | str) -> int:
    """rwcount's ``--bin-size`` in seconds (>= 0.001, fractional allowed) -> milliseconds."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise StatsError(f"invalid bin size {seconds!r}: expected seconds, e.g. 30 or 0.5") from None
    if not np.isfinite(value) or value < 0.001 or value > 2**31 - 1:
        raise StatsError(f"invalid bin size {seconds!r}: must be from 0.001 to 2147483647 seconds")
    return int(1000.0 * value)


def parse_time(value: str | int | datetime, what: str = "time") -> tuple[int, str]:
    """A SiLK time (:mod:`.silktime`) in UTC -> (ms, precision).  Integers are epoch ms and
    datetimes exact; both have millisecond precision."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(round(value.timestamp() * 1000)), "ms"
    if isinstance(value, (int, np.integer)):
        return int(value), "ms"
    try:
        return parse_silk_time(str(value))
    except SilkTimeError as exc:
        raise StatsError(f"invalid {what} {str(value).strip()!r}: {exc}") from None


def _day_floor(ms: int) -> int:
    return ms - ms % MS_PER_DAY


def _default_origin(first_start: int, size: int) -> int:
    """Where rwcount anchors its bins when no start time is given (bins repeat every ``size``)."""
    day = _day_floor(first_start)
    if size < 1000:
        return day
    if size > MS_PER_DAY:
        return day - 7 * MS_PER_DAY
    return day - 2 * MS_PER_DAY


def _expand(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For inclusive bin ranges [first, last] per flow: (flow index, bin) for every covered bin."""
    spans = last - first + 1
    flow = np.repeat(np.arange(len(first)), spans)
    starts = np.cumsum(spans) - spans
    bins = first[flow] + (np.arange(len(flow)) - starts[flow])
    return flow, bins


COUNT_COLUMNS = ("Date", "Records", "Bytes", "Packets")


def count_bins(
    source: Source,
    bin_size: float | str = 30,
    load_scheme: str | int = "time-proportional",
    *,
    start_time: str | int | datetime | None = None,
    end_time: str | int | datetime | None = None,
    skip_zeroes: bool = False,
) -> pa.Table:
    """rwcount: records, bytes and packets per time bin (fractional under the spreading schemes).

    ``bin_size`` is in seconds; ``load_scheme`` a name or SiLK's number.  Without ``start_time``
    the first row is the first bin with bytes and bins are anchored on the UTC day of the earliest
    start time (two days back, as rwcount does); with it, bins start exactly there.  Without
    ``end_time`` the last row is the last bin with bytes; with it, unspecified parts of the time
    are filled with their maximum and every bin up to the one holding that time is listed.
    ``skip_zeroes`` drops bins that received no records.  Returns columns Date (timestamp[ms, UTC]),
    Records, Bytes, Packets (float64).
    """
    size = parse_bin_size(bin_size)
    scheme = parse_load_scheme(load_scheme)
    start = parse_time(start_time, "start time")[0] if start_time is not None else None
    end = None
    if end_time is not None:
        end_ms, precision = parse_time(end_time, "end time")
        end_ceiling = window_end(end_ms, precision) + 1  # first ms after the end time
        if start is not None:
            if end_ceiling <= start:
                raise StatsError("the end time is earlier than the start time")
            end = start + size * (1 + (end_ceiling - start - 1) // size)
        else:
            end = end_ms + size * (1 + (end_ceiling - end_ms - 1) // size)

    with _flows(source) as (con, _):
        data = con.sql("SELECT sTime, duration, packets, bytes FROM flows").to_arrow_table()
    empty = pa.table(
        {"Date": pa.array([], pa.timestamp("ms", tz="UTC")), **{c: pa.array([], pa.float64()) for c in COUNT_COLUMNS[1:]}}
    )
    if data.num_rows == 0:
        return empty
    s = data.column("sTime").to_numpy().astype(np.int64)
    e = s + data.column("duration").to_numpy().astype(np.int64)
    pkts = data.column("packets").to_numpy().astype(np.float64)
    octets = data.column("bytes").to_numpy().astype(np.float64)

    if start is not None:
        origin = start
    else:
        origin = _default_origin(int(s.min()), size)
        if end is not None:  # keep the grid aligned on the end time
            origin = end - size * (1 + (end - origin) // size)
    low = 0 if start is not None else None  # first bin index inside the window
    high = (end - origin) // size if end is not None else None  # one past the last

    def bin_of(t: np.ndarray) -> np.ndarray:
        return np.floor_divide(t - origin, size)

    if scheme.endswith("-spike"):
        t = {"start-spike": s, "end-spike": e, "middle-spike": s + (e - s) // 2}[scheme]
        keep = np.ones(len(t), dtype=bool)
        if start is not None:
            keep &= t >= start
        if end is not None:
            keep &= t < end
        bins = bin_of(t[keep])
        w_rec = np.ones(len(bins))
        w_bytes, w_pkts = octets[keep], pkts[keep]
    else:
        first, last = bin_of(s), bin_of(e)
        lo_c = first if low is None else np.maximum(first, low)
        hi_c = last if high is None else np.minimum(last, high - 1)
        keep = hi_c >= lo_c  # the flow touches the window (rwcount's IGNORE_FLOW otherwise)
        idx, bins = _expand(lo_c[keep], hi_c[keep])
        f_s, f_e = s[keep][idx], e[keep][idx]
        span = (last - first + 1)[keep][idx]
        if scheme == "time-proportional":
            # each bin gets the share of [sTime, eTime + 1 ms) it overlaps, as rwcount computes it
            b0 = origin + bins * size
            overlap = np.minimum(f_e + 1, b0 + size) - np.maximum(f_s, b0)
            w_rec = overlap / (f_e + 1 - f_s).astype(np.float64)
            w_bytes, w_pkts = octets[keep][idx] * w_rec, pkts[keep][idx] * w_rec
        elif scheme == "bin-uniform":
            w_rec = 1.0 / span
            w_bytes, w_pkts = octets[keep][idx] * w_rec, pkts[keep][idx] * w_rec
        elif scheme == "maximum-volume":
            w_rec = np.ones(len(bins))
            w_bytes, w_pkts = octets[keep][idx], pkts[keep][idx]
        else:  # minimum-volume: volume only for flows inside a single bin
            w_rec = np.ones(len(bins))
            single = span == 1
            w_bytes = np.where(single, octets[keep][idx], 0.0)
            w_pkts = np.where(single, pkts[keep][idx], 0.0)

    if len(bins):
        kmin, kmax = int(bins.min()), int(bins.max())
        pos = bins - kmin
        n = kmax - kmin + 1
        acc_rec = np.bincount(pos, weights=w_rec, minlength=n)
        acc_bytes = np.bincount(pos, weights=w_bytes, minlength=n)
        acc_pkts = np.bincount(pos, weights=w_pkts, minlength=n)
        nonzero = np.flatnonzero(acc_bytes > 0.0) + kmin
    else:
        kmin, n = 0, 0
        acc_rec = acc_bytes = acc_pkts = np.zeros(0)
        nonzero = np.zeros(0, dtype=np.int64)

    if low is not None:
        row_first = low
    elif len(nonzero):
        row_first = int(nonzero[0])
    else:
        return empty
    if high is not None:
        row_last = high - 1
    else:
        row_last = max(row_first, int(nonzero[-1]) if len(nonzero) else row_first)

    rows = np.arange(row_first, row_last + 1, dtype=np.int64)
    inside = (rows >= kmin) & (rows < kmin + n)

    def take(acc: np.ndarray) -> np.ndarray:
        out = np.zeros(len(rows))
        out[inside] = acc[rows[inside] - kmin]
        return out

    records, octet_sum, pkt_sum = take(acc_rec), take(acc_bytes), take(acc_pkts)
    if skip_zeroes:
        shown = records > 0
        rows, records, octet_sum, pkt_sum = rows[shown], records[shown], octet_sum[shown], pkt_sum[shown]
    dates = pa.array(origin + rows * size, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    return pa.table(
        {"Date": dates, "Records": records, "Bytes": octet_sum, "Packets": pkt_sum},
    )


# --- text output ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TextOptions:
    """The SiLK text-output switches shared by rwuniq, rwstats and rwcount."""

    columns: bool = True  # --no-columns turns off
    titles: bool = True  # --no-titles turns off
    separator: str = "|"  # --column-separator / --delimited=C
    final_delimiter: bool = True  # --no-final-delimiter turns off
    integer_flags: bool = False  # --integer-tcp-flags
    integer_ips: bool = False  # --integer-ips / --ip-format=decimal
    timestamp_format: str = "default"  # default | iso | m/d/y | epoch
    sensor_names: tuple[str, ...] | None = None  # the site's sensors; None (or --integer-sensors): numbers
    ip_format: IpFormat | None = None  # --ip-format; None: canonical, or decimal with integer_ips
    mapped_as_ipv4: bool = True  # ::ffff:a.b.c.d prints as a.b.c.d (--ipv6-policy force and only: not)


_STRFTIME = {"default": "%Y/%m/%dT%H:%M:%S", "iso": "%Y-%m-%d %H:%M:%S", "m/d/y": "%m/%d/%Y %H:%M:%S"}

_TYPE_NAMES = np.array([FLOWTYPES.get(i, (str(i),))[0] for i in range(256)], dtype=object)

_KEY_WIDTHS = {
    "sPort": 5, "dPort": 5, "protocol": 3, "packets": 10, "bytes": 10, "in": 5, "out": 5,
    "application": 5, "iType": 3, "iCode": 3, "sensor": 5, "class": 3, "type": 7, "attributes": 8,
}  # fmt: skip


def _strings(values: np.ndarray | pa.Array) -> pa.Array:
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.fill_null(pc.cast(arr, pa.string()), "")


def format_times(ms: pa.Array | np.ndarray, opts: TextOptions, msec: bool) -> pa.Array:
    """Millisecond epoch times as SiLK prints them (UTC); ``msec`` keeps the milliseconds."""
    arr = ms if isinstance(ms, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(ms, dtype=np.int64))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.int64())
    if opts.timestamp_format == "epoch":
        values = arr.to_numpy(zero_copy_only=False)
        secs = np.floor_divide(values, 1000)
        if not msec:
            return _strings(secs)
        text = np.char.add(np.char.add(secs.astype(str), "."), np.char.zfill(np.mod(values, 1000).astype(str), 3))
        return pa.array(text.astype(object), pa.string())
    fmt = _STRFTIME[opts.timestamp_format]
    if msec:
        stamps = arr.cast(pa.timestamp("ms", tz="UTC"))
    else:
        floor = pa.array(np.floor_divide(arr.to_numpy(zero_copy_only=False), 1000), pa.int64())
        stamps = floor.cast(pa.timestamp("s", tz="UTC"))
    return pc.strftime(stamps, format=fmt)


def _time_width(opts: TextOptions, msec: bool) -> int:
    if opts.timestamp_format == "epoch":
        return 14 if msec else 10
    return 23 if msec else 19


def _ip_format(opts: TextOptions) -> IpFormat:
    return opts.ip_format if opts.ip_format is not None else (DECIMAL if opts.integer_ips else CANONICAL)


def _ipv6_key_words(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    n = len(column)
    raw = np.frombuffer(column.buffers()[1], dtype=np.uint8)[column.offset * 16 : (column.offset + n) * 16]
    words = raw.reshape(n, 16).view(">u8").reshape(n, 2).astype(np.uint64)
    return words[:, 0], words[:, 1]


def _is_mapped(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))


def _format_ips(column: pa.Array, opts: TextOptions, unmap: np.ndarray | None = None) -> pa.Array:
    """Addresses as text; a 128-bit address in ::ffff:0:0/96 prints as IPv4 where ``unmap`` says so
    (SiLK's mix: in rows whose every address is IPv4 or mapped)."""
    fmt = _ip_format(opts)
    if pa.types.is_fixed_size_binary(column.type):
        hi, lo = _ipv6_key_words(column)
        text = ipv6_text(hi, lo, fmt)  # one per IPv6 bin (output rows, not records)
        mapped = _is_mapped(hi, lo) & (unmap if unmap is not None else True)
        if mapped.any() and opts.mapped_as_ipv4:  # an IPv4 bin of a table that also holds IPv6: printed as IPv4
            v4 = ipv4_text((lo & np.uint64(0xFFFFFFFF)).astype(np.uint32), fmt)
            text = pc.if_else(pa.array(mapped), v4, text)
        return text
    return ipv4_text(column.to_numpy(zero_copy_only=False), fmt)


def _format_key(field: Field, column: pa.Array, plan: Plan, opts: TextOptions,
                unmap: np.ndarray | None = None) -> tuple[pa.Array, int]:
    """A key column as rwcut would print it, and its column width."""
    kind = field.kind
    if kind == "ip":
        width = ip_width(_ip_format(opts), plan.ipv6)
        return _format_ips(column, opts, unmap), width
    if kind == "time":
        return format_times(column, opts, plan.msec), _time_width(opts, plan.msec)
    if kind == "duration":
        ms = column.to_numpy(zero_copy_only=False).astype(np.int64)
        if plan.msec:
            text = np.char.add(np.char.add((ms // 1000).astype(str), "."), np.char.zfill((ms % 1000).astype(str), 3))
            return pa.array(text.astype(object), pa.string()), 9
        return _strings(ms // 1000), 5
    if kind == "flags":
        if opts.integer_flags:
            return _strings(column), 3
        values = column.to_numpy(zero_copy_only=False)
        return pa.array(flag_strings(values, columns=opts.columns), pa.string()), 8
    if kind == "attributes":
        return pa.array(attribute_strings(column.to_numpy(zero_copy_only=False), columns=opts.columns), pa.string()), 8
    if kind == "flowtype":
        values = column.to_numpy(zero_copy_only=False).astype(np.uint8)
        return pa.array(_TYPE_NAMES[values], pa.string()), 7
    if kind == "class":
        return pa.array(np.where(column.to_numpy(zero_copy_only=False) == 0, "all", "?").astype(object), pa.string()), 3
    if kind == "sensor" and opts.sensor_names is not None:
        labels = sensor_labels(column.to_numpy(zero_copy_only=False), opts.sensor_names)
        return pa.array(labels, pa.string()), sensor_width(opts.sensor_names)
    return _strings(column), _KEY_WIDTHS.get(field.name, 10)


def _format_value(value: Value, column: pa.Array, plan: Plan, opts: TextOptions) -> tuple[pa.Array, int]:
    if value.kind in ("stime", "etime"):
        return format_times(column, opts, plan.msec), _time_width(opts, plan.msec)
    if value.kind == "distinct" and value.field is not None and value.field.kind == "ip" and plan.ipv6:
        return _strings(column), 20  # as wide as a 64-bit count, when the addresses may be IPv6
    return _strings(column), value.width


def _fixed(values: np.ndarray, decimals: int) -> pa.Array:
    return pa.array(np.char.mod(f"%.{decimals}f", np.asarray(values, dtype=np.float64)).astype(object), pa.string())


class TextLines(Sequence[str]):
    """The lines of a SiLK text table: a few head lines, then one body row per bin kept as an Arrow
    string array.  It reads as a list of lines; :meth:`to_bytes` gives the whole text, newline
    after each line, without building a Python string per row (211 k bins: 0.15 s less)."""

    def __init__(self, head: list[str], rows: pa.Array | None = None):
        self.head = head
        self.rows = rows if rows is not None else pa.array([], pa.string())

    def __len__(self) -> int:
        return len(self.head) + len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.head[index] if index < len(self.head) else self.rows[index - len(self.head)].as_py()

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, tuple, TextLines)) else NotImplemented

    def __radd__(self, other: list[str]) -> "TextLines":
        return TextLines(list(other) + self.head, self.rows)

    def to_bytes(self) -> bytes:
        head = "".join(line + "\n" for line in self.head).encode("utf-8")
        if not len(self.rows):
            return head
        # one Arrow string per row, "\n" appended by a join with an empty column; their bytes are
        # contiguous in the data buffer, between the first and the last offset
        rows = pc.binary_join_element_wise(self.rows, "", "\n").cast(pa.large_string())
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)[rows.offset : rows.offset + len(rows) + 1]
        return head + memoryview(rows.buffers()[2])[offsets[0] : offsets[-1]].tobytes()


def _render(columns: list[tuple[str, pa.Array, int]], opts: TextOptions, n_rows: int) -> TextLines:
    """Join (title, strings, width) columns into SiLK's lines: right-aligned, separator-joined."""
    sep = opts.separator
    tail = sep if opts.final_delimiter else ""
    head: list[str] = []
    if opts.titles:
        if opts.columns:
            head.append(sep.join(title[:width].rjust(width) for title, _, width in columns) + tail)
        else:
            head.append(sep.join(title for title, _, _ in columns) + tail)
    if not (n_rows and columns):
        return TextLines(head)
    cells = [pc.utf8_lpad(text, width=width) if opts.columns else text for _, text, width in columns]
    if tail:
        cells.append(pa.scalar(""))  # the separator after the last column
    joined = pc.binary_join_element_wise(*cells, sep) if len(cells) > 1 else cells[0]
    return TextLines(head, joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined)


def _table_columns(table: pa.Table, plan: Plan, opts: TextOptions) -> list[tuple[str, pa.Array, int]]:
    columns = []
    keys = [table.column(i).combine_chunks() for i in range(len(plan.keys))]
    unmap = None
    if plan.ipv6:  # SiLK prints a row's mapped addresses as IPv4 only when all of its addresses are
        unmap = np.ones(table.num_rows, dtype=bool)
        for key, column in zip(plan.keys, keys):
            if key.kind == "ip" and pa.types.is_fixed_size_binary(column.type):
                unmap &= _is_mapped(*_ipv6_key_words(column))
    for key, column in zip(plan.keys, keys):
        text, width = _format_key(key, column, plan, opts, unmap)
        columns.append((key.name, text, width))
    for j, value in enumerate(plan.values):
        text, width = _format_value(value, table.column(len(plan.keys) + j).combine_chunks(), plan, opts)
        columns.append((value.title, text, width))
    return columns


def format_uniq(table: pa.Table, plan: Plan, opts: TextOptions = TextOptions()) -> TextLines:
    """rwuniq's text: a title line, then one line per bin."""
    return _render(_table_columns(table, plan, opts), opts, table.num_rows)


def _plural(n: int) -> str:
    return "" if n == 1 else "s"


def top_header(result: TopN) -> list[str]:
    """rwstats' ``INPUT:`` and ``OUTPUT:`` lines."""
    title = result.primary.title
    line = f"INPUT: {result.records} Record{_plural(result.records)} for {result.bins} Bin{_plural(result.bins)}"
    if result.total:
        line += f" and {result.total} Total {title}"
    direction = "Bottom" if result.bottom else "Top"
    side = "below" if result.bottom else "above"
    shown = result.table.num_rows
    if result.mode == "count":
        out = f"OUTPUT: {direction} {result.count} Bin{_plural(result.count)} by {title}"
    elif result.mode == "all":
        out = f"OUTPUT: {direction} {shown} Bin{_plural(shown)} by {title}"
    elif result.mode == "threshold":
        out = (
            f"OUTPUT: {direction} {shown} bins by {title} (threshold {result.threshold})"
            if shown
            else f"OUTPUT: No bins {side} threshold of {result.threshold} {title}"
        )
    else:
        out = (
            f"OUTPUT: {direction} {shown} bins by {title} ({result.percentage:.4f}% == {result.threshold})"
            if shown
            else f"OUTPUT: No bins {side} threshold of {result.percentage:.4f}% ({result.threshold} {title})"
        )
    return [line, out]


def format_top(result: TopN, opts: TextOptions = TextOptions(), *, percents: bool = True) -> TextLines:
    """rwstats' text: the two header lines, a title line, one line per bin with % and cumul_%."""
    lines = top_header(result) if opts.titles else []
    empty_limit = result.mode in ("threshold", "percentage") and result.table.num_rows == 0
    if empty_limit:
        return lines  # rwstats prints no column titles when no bin meets the threshold
    plan = result.plan
    columns = _table_columns(result.table, plan, opts)
    if percents:
        n_cols = len(plan.keys) + len(plan.values)
        share = result.table.column(n_cols).to_numpy()
        cumulative = result.table.column(n_cols + 1).to_numpy()
        cumul_decimals = 4 if result.primary.kind == "distinct" else 6  # rwstats' own quirk
        columns.append((f"%{result.primary.title}", _fixed(share, 6), 10))
        columns.append(("cumul_%", _fixed(cumulative, cumul_decimals), 10))
    return lines + _render(columns, opts, result.table.num_rows)


def format_count(table: pa.Table, bin_size: float | str = 30, opts: TextOptions = TextOptions()) -> TextLines:
    """rwcount's text: ``Date|Records|Bytes|Packets|`` with two decimals."""
    msec = parse_bin_size(bin_size) % 1000 != 0
    dates = table.column("Date").combine_chunks().cast(pa.int64())
    columns = [
        ("Date", format_times(dates, opts, msec), 23 if msec else 19),  # rwcount keeps the width for epoch times
        ("Records", _fixed(table.column("Records").to_numpy(), 2), 15),
        ("Bytes", _fixed(table.column("Bytes").to_numpy(), 2), 20),
        ("Packets", _fixed(table.column("Packets").to_numpy(), 2), 17),
    ]
    return _render(columns, opts, table.num_rows)
