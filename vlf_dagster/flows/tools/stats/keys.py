"""The request of uniq, stats and count, parsed and checked: key fields (``--fields``), aggregate
values (``--values``), ``--threshold`` ranges and ``--bin-time``, resolved into a :class:`Plan`.
A bad request raises :class:`StatsError` with a one-line message."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ... import fields as field_registry
from ...fields import Field, FieldError


class StatsError(ValueError):
    """A bad request to uniq, stats or count (unknown field, bad threshold, bad bin size ...)."""


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
