"""rwstats' engine: bins ranked by their first value, with each bin's share of the total and the
cumulative share, and what rwstats' two header lines report (:class:`TopN`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from .bins import field_sql, group_sql, name_result, order_keys, outer_columns, uses_ip
from .keys import Plan, StatsError, Value, make_plan
from .source import Source, open_flows, scalar


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
    with open_flows(source) as (con, has_v6):
        plan = replace(plan, ipv6=(has_v6 if wide is None else wide) and uses_ip(plan))
        inner, _ = group_sql(plan)
        con.execute(f"CREATE TEMP TABLE g AS {inner}")
        records = int(scalar(con, "SELECT count(*) FROM flows"))
        bins = int(scalar(con, "SELECT count(*) FROM g"))
        if primary.kind == "records":
            total = records
        elif primary.kind == "distinct":
            total = int(scalar(con, f"SELECT count(DISTINCT {field_sql(primary.field, plan)}) FROM flows"))
        else:
            total = int(scalar(con, "SELECT coalesce(sum(v0), 0) FROM g"))
        direction = "ASC" if bottom else "DESC"
        order = f"v0 {direction}, {order_keys(plan)}"
        sql = f"SELECT {outer_columns(plan)} FROM g"
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
    table = name_result(
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
