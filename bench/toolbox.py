"""Throughput of the toolbox verbs on a simulated site: flows per second and peak memory.

    .venv/bin/python bench/toolbox.py [--days 7] [--sources 20000] [--repeat 3]

Simulates a site, packs its archive (the library `hourly_flows` uses), then times filter, bag,
match, uniq and cut over the whole archive.  Each operation runs in a fresh process so its peak
resident memory (ru_maxrss, including DuckDB's and Arrow's native memory) is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def _setup(data: Path, days: int, sources: int) -> int:
    from vlf_dagster.flows.archive import pack_hour
    from vlf_dagster.flows.site import load_site
    from vlf_dagster.flows.storage import hours_between
    from vlf_dagster.simulate import SimulationConfig, simulate

    site = load_site(Path(__file__).resolve().parents[1] / "vlf_dagster" / "site.default.toml")
    site = site.with_window(site.start, site.start + timedelta(days=days))
    (data / "site.toml").parent.mkdir(parents=True, exist_ok=True)
    (data / "site.toml").write_text(site.to_toml())
    simulate(site, SimulationConfig(days=days, sources=sources, seed=1), data)
    return sum(pack_hour(data, h, site).flows for h in hours_between(site.start, site.end))


def _files(data: Path, types=None):
    from vlf_dagster.flows.site import load_site
    from vlf_dagster.flows.storage import archive_files, hours_between

    site = load_site(data / "site.toml")
    return archive_files(data, hours_between(site.start, site.end), types)


def op_filter(data: Path) -> int:
    from vlf_dagster.flows.tools.filter.run import filter_files
    from vlf_dagster.flows.tools.filter.spec import FilterSpec

    files = _files(data)
    filter_files(files, FilterSpec(protocol="6", flags_all=["S/SA"]))


def op_bag(data: Path) -> int:
    from vlf_dagster.flows.bags import bag_from_flows

    files = _files(data)
    bag_from_flows(files, data / "bench-sip.bag", ["sIP"], ["records", "packets", "bytes"])


def op_match(data: Path) -> int:
    import duckdb

    from vlf_dagster.flows.bags import literal_list
    from vlf_dagster.flows.flowtypes import INBOUND_TYPES, OUTBOUND_TYPES
    from vlf_dagster.flows.tools.match import match_sessions
    from vlf_dagster.flows.schema import conform

    con = duckdb.connect()
    inbound = conform(con.sql(f"SELECT * FROM read_parquet({literal_list(_files(data, list(INBOUND_TYPES)))})").to_arrow_table())
    outbound = conform(con.sql(f"SELECT * FROM read_parquet({literal_list(_files(data, list(OUTBOUND_TYPES)))})").to_arrow_table())
    match_sessions(inbound, outbound, 1000)


def op_uniq(data: Path) -> int:
    from vlf_dagster.flows.tools.stats.uniq import uniq

    files = _files(data)
    uniq([str(f) for f in files], "sip", "flows,distinct:dip", ["flows=1-10"])


def op_cut(data: Path) -> int:
    import duckdb

    from vlf_dagster.flows.bags import literal_list
    from vlf_dagster.flows.tools.cut import format_text
    from vlf_dagster.flows.schema import conform

    table = conform(duckdb.connect().sql(f"SELECT * FROM read_parquet({literal_list(_files(data))})").to_arrow_table())
    size = sum(len(block) for block in format_text(table))
    assert size > 0


OPS = {"filter --proto 6 --flags-all S/SA": op_filter, "bag sIPv4 records,packets,bytes": op_bag,
       "match (session relate set, 1 s delta)": op_match, "uniq sip flows,distinct:dip --threshold flows=1-10": op_uniq,
       "cut (default fields, all records)": op_cut}


def _child(name: str, data: str, repeat: int, queue) -> None:
    best = float("inf")
    for _ in range(repeat):  # each run reads the whole archive (all flows; match reads in + out)
        started = time.perf_counter()
        OPS[name](Path(data))
        best = min(best, time.perf_counter() - started)
    queue.put((best, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--sources", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        flows = _setup(data, args.days, args.sources)
        print(f"site: {args.days} days, {args.sources:,} sources, {flows:,} flows archived in {time.perf_counter() - started:.1f} s")
        print(f"{'operation':<52} {'records':>10} {'best s':>8} {'flows/s':>12} {'peak MB':>8}")
        ctx = mp.get_context("spawn")
        for name in OPS:
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(name, str(data), args.repeat, queue))
            proc.start()
            seconds, peak = queue.get()
            proc.join()
            records = flows
            print(f"{name:<52} {records:>10,} {seconds:>8.3f} {records / seconds:>12,.0f} {peak:>8.0f}")


if __name__ == "__main__":
    main()
