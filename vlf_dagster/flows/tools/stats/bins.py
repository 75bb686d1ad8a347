"""Flows grouped into bins in SQL, for uniq and stats: the grouping expression of each key field
(times binned, addresses 128-bit when the input holds IPv6), the aggregate of each value, the
``--threshold`` ranges as ``HAVING``, and the result's columns named after the fields and values."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

from ...fields import Field
from .keys import Plan, Value


_V4_MAPPED = 0xFFFF << 32  # ::ffff:0:0/96
_MASK64 = (1 << 64) - 1


_IP_V6_COLUMN = {"sIP": "sIPv6", "dIP": "dIPv6", "nhIP": "nhIPv6"}


def field_sql(field: Field, plan: Plan) -> str:
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
    return f"count(DISTINCT {field_sql(value.field, plan)})::UBIGINT"


def uses_ip(plan: Plan) -> bool:
    return any(f.kind == "ip" for f in plan.keys) or any(
        v.kind == "distinct" and v.field.kind == "ip" for v in plan.values
    )


def group_sql(plan: Plan) -> tuple[str, list]:
    """SELECT k0.., v0.. FROM flows GROUP BY ALL [HAVING thresholds]."""
    cols = [f"{field_sql(k, plan)} AS k{i}" for i, k in enumerate(plan.keys)]
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


def outer_columns(plan: Plan) -> str:
    """Select list over the grouped relation; 128-bit addresses come out as two uint64 halves."""
    cols = []
    for i, key in enumerate(plan.keys):
        if key.kind == "ip" and plan.ipv6:
            cols += [f"(k{i} >> 64)::UBIGINT AS k{i}_hi", f"(k{i} & {_MASK64}::UHUGEINT)::UBIGINT AS k{i}_lo"]
        else:
            cols.append(f"k{i}")
    cols += [f"v{j}" for j in range(len(plan.values))]
    return ", ".join(cols)


def order_keys(plan: Plan) -> str:
    return ", ".join(f"k{i} ASC NULLS FIRST" for i in range(len(plan.keys)))


def _addresses16(hi: np.ndarray, lo: np.ndarray) -> pa.Array:
    raw = np.empty((len(hi), 2), dtype=">u8")
    raw[:, 0] = hi
    raw[:, 1] = lo
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(hi), [None, pa.py_buffer(raw.tobytes())])


def name_result(raw: pa.Table, plan: Plan, extra: Sequence[tuple[str, pa.Array]] = ()) -> pa.Table:
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
