"""rwuniq's engine: one row per distinct key with its aggregate values, in one DuckDB ``GROUP BY``."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

import pyarrow as pa

from .bins import group_sql, name_result, order_keys, outer_columns, uses_ip
from .keys import make_plan
from .source import Source, open_flows


def uniq_plan(source: Source, keys, values=None, thresholds: Iterable = (), *, bin_time=None, sort: bool = False,
              wide: bool | None = None):
    """(plan, table) for :func:`uniq`; the plan tells :func:`.text.format_uniq` how to show each column.

    ``wide``: whether addresses are 128-bit (39-wide columns) whatever the input holds, as SiLK's
    --ipv6-policy decides it (:mod:`.ipv6policy`); None: only when the input holds IPv6."""
    plan = make_plan(keys, values, thresholds, bin_time=bin_time)
    with open_flows(source) as (con, has_v6):
        plan = replace(plan, ipv6=(has_v6 if wide is None else wide) and uses_ip(plan))
        inner, params = group_sql(plan)
        sql = f"WITH g AS ({inner}) SELECT {outer_columns(plan)} FROM g"
        if sort:
            sql += f" ORDER BY {order_keys(plan)}"
        raw = con.sql(sql, params=params).to_arrow_table() if params else con.sql(sql).to_arrow_table()
    return plan, name_result(raw, plan)


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
