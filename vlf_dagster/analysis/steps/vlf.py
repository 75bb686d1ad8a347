"""The study's VLF steps as pure functions over bag, set and archive files.

- per hour: source bag (records, packets, bytes per outside source of the inbound flowtypes),
  contact pairs (distinct (sIP, dIP) with flows), active inside hosts (a set)
- per month: the hourly bags added up, with ``hours`` = the number of hours a source was active
  (the study's "count 1 bags added up")
- per window: flows per source, active hours per source, distinct destinations per source,
  then the VLF-f, VLF-d and VLF-fd sets and the VLF flows extracted by set membership
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from ...flows import bags
from ...flows.bags import BagInfo, add_bags, write_bag_query
from ...flows.sql import glob_escaped, ident, path_list
from ...flows.storage import fingerprint, holds_state_lock
from .month_links import MonthLinks
from ...flows.flowtypes import OUTBOUND_TYPES, INT2INT
from ...flows.schema import ATTR_IPV6, MS_PER_HOUR
from ...flows.sets import IPSet
from ...flows.storage import hour_ms
from ...flows import duck

SOURCE_COUNTERS = ("records", "packets", "bytes")


# --- hourly ----------------------------------------------------------------------------------


def union_sets(paths: Sequence[Path]) -> IPSet:
    result = IPSet()
    for path in paths:
        result = result | IPSet.read(path)
    return result


def _hour_cuts(hour_column: np.ndarray, hours: Sequence[datetime]) -> np.ndarray:
    """Row boundaries of each hour in rows sorted by hour (``hour_column`` in ms at the hour)."""
    return np.searchsorted(hour_column, np.array([hour_ms(h) for h in hours] + [hour_ms(hours[-1]) + MS_PER_HOUR]))


def _batch_source(con, flows: Sequence[Path] | pa.Table) -> str:
    """A batch's flows as a relation: archive files, or the records a step has in memory."""
    # not duck.register: its view and column probe would bind the batch's file list twice more
    if isinstance(flows, pa.Table):
        con.register("batch_flows", flows)
        return "batch_flows"
    return f"read_parquet({path_list(flows)})"


def _has_flows(flows: Sequence[Path] | pa.Table) -> bool:
    return flows.num_rows > 0 if isinstance(flows, pa.Table) else bool(flows)


def hourly_bags(flows: Sequence[Path] | pa.Table, hours: Sequence[datetime], outputs: Sequence[Path],
                keys: Sequence[str], counters: Sequence[str], *, flowtypes: Sequence[int] | None = None,
                threads: int = 2) -> list[int]:
    """One bag per hour over a batch's flows (archive files or a table), in one DuckDB pass.

    Each hour's bag holds what :func:`bags.bag_from_flows` would give over that hour's flows of
    ``flowtypes`` (default: all); an hour without flows gets an empty bag.  Returns each bag's rows.
    """
    info = BagInfo(tuple(keys), tuple(counters))
    where = f"flowtype IN ({', '.join(str(int(t)) for t in flowtypes)})" if flowtypes is not None else "TRUE"
    if _has_flows(flows):
        with duck.connect() as con:
            table = con.sql(
                f"SELECT * FROM ({bags.bag_sql(_batch_source(con, flows), info, where, hour_key=True)}) "
                f"ORDER BY _hour, {bags.key_list(info)}"
            ).to_arrow_table()
    else:
        table = pa.table({"_hour": pa.array([], pa.int64())})
    cuts = _hour_cuts(table.column("_hour").to_numpy(), hours)
    empty = bags.empty_bag_table(info)
    parts = [bags.normalize(table.slice(cuts[i], cuts[i + 1] - cuts[i]), info) if cuts[i + 1] > cuts[i] else empty
             for i in range(len(hours))]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(lambda job: bags.write_bag(job[0], job[1], info), zip(parts, outputs)))
    return [p.num_rows for p in parts]


ACTIVE_TYPES = (*OUTBOUND_TYPES, INT2INT)  # inside hosts that originated or answered


def hourly_active_hosts(flows: Sequence[Path] | pa.Table, hours: Sequence[datetime]) -> list[IPSet]:
    """Inside addresses active in each hour of a batch (archive files or a table): sources of
    outbound and int2int flows, in one DuckDB pass."""
    if not _has_flows(flows):
        return [IPSet() for _ in hours]
    with duck.connect() as con:
        table = con.sql(
            f"SELECT DISTINCT (sTime // {MS_PER_HOUR}) * {MS_PER_HOUR} AS _hour, sIP, sIPv6, attributes & {ATTR_IPV6} AS attributes "
            f"FROM {_batch_source(con, flows)} "
            f"WHERE flowtype IN ({', '.join(str(t) for t in ACTIVE_TYPES)}) ORDER BY _hour"
        ).to_arrow_table()
    cuts = _hour_cuts(table.column("_hour").to_numpy(), hours)
    return [IPSet.from_flow_column(table.slice(cuts[i], cuts[i + 1] - cuts[i]), "sIP") for i in range(len(hours))]


# --- monthly and window rollups --------------------------------------------------------------


def rollup_source_bags(hourly_bags: Sequence[Path], out: Path) -> Path:
    """Add hourly source bags; ``hours`` counts the hours each source appears in."""
    if not hourly_bags:
        info = BagInfo(("sIP",), SOURCE_COUNTERS + ("hours",))
        return bags.write_bag(bags.empty_bag_table(info), out, info)
    if "hours" in bags.read_info(hourly_bags[0]).counters:  # monthly bags: hours add up
        return add_bags(hourly_bags, out)
    return add_bags(hourly_bags, out, extra={"hours": "count(*)"})


def rollup_contact_pairs(pair_bags: Sequence[Path], out: Path) -> Path:
    info = BagInfo(("sIP", "dIP"), ("records",))
    if not pair_bags:
        return bags.write_bag(bags.empty_bag_table(info), out, info)
    return add_bags(pair_bags, out)


@holds_state_lock("state")
def refresh_counter_bag(monthly_bags: Sequence[Path], counter: str, out: Path, state: Path) -> bool:
    """:func:`window_counter_bag`, refreshed by the months that changed: each changed month's
    counts less its old version's (kept by :class:`MonthLinks`) are added to the window bag's.
    The counter adds up over months, so the result equals a full sum.  Returns whether it was a
    refresh (False: a full sum)."""
    months = sorted(monthly_bags)
    links = MonthLinks(state)
    settings = lambda: {"counter": counter, "bag": fingerprint(out) if out.exists() else None}  # noqa: E731
    seen = links.changes(months, settings()) if months else None
    if seen is None:
        window_counter_bag(months, counter, out)
        links.record(months, settings())
        return False
    if not seen.any:
        return True
    c = ident(counter)
    signed = [f"SELECT sIP, sIPv6, {c}::HUGEINT AS d FROM read_parquet({path_list([m])})" for m in seen.changed]
    signed += [f"SELECT sIP, sIPv6, -{c}::HUGEINT AS d FROM read_parquet({path_list([p])})" for p in seen.old.values()]
    with duck.connect() as con:
        con.execute(f"CREATE TEMP TABLE delta AS SELECT sIP, sIPv6, sum(d) AS d FROM ({' UNION ALL '.join(signed)}) "
                    "GROUP BY ALL HAVING sum(d) <> 0")
        _write_counter_bag(con, (
            f"SELECT b.sIP, b.sIPv6, (b.{c} + coalesce(d.d, 0))::UBIGINT AS {c} FROM read_parquet({path_list([out])}) b "
            f"LEFT JOIN delta d ON b.sIP = d.sIP AND b.sIPv6 IS NOT DISTINCT FROM d.sIPv6 WHERE b.{c} + coalesce(d.d, 0) > 0 "
            f"UNION ALL SELECT d.sIP, d.sIPv6, d.d::UBIGINT FROM delta d ANTI JOIN read_parquet({path_list([out])}) b "
            "ON b.sIP = d.sIP AND b.sIPv6 IS NOT DISTINCT FROM d.sIPv6"), counter, out)
    links.record(months, settings())
    return True


def _write_counter_bag(con, sql: str, counter: str, out: Path) -> Path:
    """A one-counter window bag from ``sql``, through a table: a full sum and a refresh then write
    the same bytes (DuckDB marks a column read straight from Parquet NOT NULL when the file's
    statistics show no null, so the query's shape would show in the schema)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE window_bag AS {sql}")
    return write_bag_query(con, "SELECT * FROM window_bag", [], out, BagInfo(("sIP",), (counter,)))


def window_counter_bag(monthly_bags: Sequence[Path], counter: str, out: Path) -> Path:
    """Add monthly source bags into a one-counter window bag (``records`` or ``hours``)."""
    if not monthly_bags:
        info = BagInfo(("sIP",), (counter,))
        return bags.write_bag(bags.empty_bag_table(info), out, info)
    infos = {bags.read_info(p) for p in monthly_bags}
    if len(infos) != 1 or counter not in next(iter(infos)).counters:
        return add_bags(monthly_bags, out, counters=[counter])  # its one-line errors
    with duck.connect() as con:
        c = ident(counter)
        return _write_counter_bag(con, f"SELECT sIP, sIPv6, sum({c})::UBIGINT AS {c} FROM "
                                  f"read_parquet({path_list(list(monthly_bags))}) GROUP BY ALL", counter, out)


# --- the per-host flow distribution table ----------------------------------------------------

# --- the VLF sets (stage 3): the study's thresholds applied to the window's bags ---------------------


def vlf_f_set(source_flow_bag: Path, thresholds) -> IPSet:
    """VLF-f: sources with 1..max_flows flows over the window (rwbagtool --maxcounter --coverset)."""
    return bags.coverset(source_flow_bag, min_counter=1, max_counter=thresholds.max_flows)


def vlf_d_set(source_destination_count_bag: Path, thresholds) -> IPSet:
    """VLF-d: sources that contacted 1..max_destinations inside addresses."""
    return bags.coverset(source_destination_count_bag, min_counter=1, max_counter=thresholds.max_destinations)


def vlf_fd_set(vlf_f: IPSet, vlf_d: IPSet) -> IPSet:
    """VLF-fd = VLF-f and VLF-d (rwsettool --intersect)."""
    return vlf_f & vlf_d


def heavy_sources(monthly_source_bag: Path, thresholds) -> IPSet:
    """Sources with more than max_flows inbound flows in one month: none of them can be VLF, so a
    month's low-frequency flows leave them out."""
    return bags.coverset(monthly_source_bag, counter="records", min_counter=thresholds.max_flows + 1)


def share_active_1_to_5_hours(source_hour_count_bag: Path) -> float:
    """The share of sources active in 1 to 5 hours of the window (the study's figure)."""
    with duck.connect() as con:
        share = con.execute("SELECT avg((hours BETWEEN 1 AND 5)::INT) FROM read_parquet(?)",
                            [glob_escaped(source_hour_count_bag)]).fetchone()[0]
    return float(share or 0)


def destination_counts(source_destination_count_bag: Path) -> tuple[int, int]:
    """(sources, sources with exactly one destination) of the window's destination bag."""
    with duck.connect() as con:
        single, total = con.execute("SELECT count(*) FILTER (WHERE destinations = 1), count(*) FROM read_parquet(?)",
                                    [glob_escaped(source_destination_count_bag)]).fetchone()
    return int(total), int(single)


DISTRIBUTION_COLUMNS = ["Flows/host", "Sources", "% sources", "Cum. % sources", "Flows", "% flows", "Cum. % flows"]


def per_host_flow_distribution(flow_bag: Path, max_flows: int = 10) -> pd.DataFrame:
    """The study's "Per Host Flow Distribution": one row per flow count 1..max_flows, then
    ``1...100``, ``> 100`` and ``Total``; sources and flows with % and cumulative %.

    As in the study, the 1...100 and > 100 rows are not cumulative with the rows above: their
    "Cum." columns repeat their own share.
    """
    with duck.connect() as con:
        counts = con.execute(
            "SELECT records, count(*) AS sources FROM read_parquet(?) WHERE records > 0 GROUP BY 1 ORDER BY 1",
            [glob_escaped(flow_bag)],
        ).fetchdf()
    per = counts.set_index("records")["sources"].astype("int64")
    flows_of = per * per.index.to_numpy(dtype=np.int64)
    total_sources, total_flows = int(per.sum()), int(flows_of.sum())

    def pct(x: int, total: int) -> float:
        return 100.0 * x / total if total else 0.0

    rows, cum_s, cum_f = [], 0, 0
    for n in range(1, max_flows + 1):
        s, f = int(per.get(n, 0)), int(flows_of.get(n, 0))
        cum_s, cum_f = cum_s + s, cum_f + f
        rows.append((str(n), s, pct(s, total_sources), pct(cum_s, total_sources), f, pct(f, total_flows), pct(cum_f, total_flows)))
    low = per.index <= 100
    for label, mask in (("1...100", low), ("> 100", ~low)):
        s, f = int(per[mask].sum()), int(flows_of[mask].sum())
        rows.append((label, s, pct(s, total_sources), pct(s, total_sources), f, pct(f, total_flows), pct(f, total_flows)))
    rows.append(("Total", total_sources, 100.0 if total_sources else 0.0, 100.0 if total_sources else 0.0, total_flows, 100.0 if total_flows else 0.0, 100.0 if total_flows else 0.0))
    return pd.DataFrame(rows, columns=DISTRIBUTION_COLUMNS)
