"""One new hour through a study already built, as the daemon's automation brings it: the cost of an
incremental refresh next to the from-scratch build.

Run it over a study ``bench/seed_scale.py`` built (``make bench-scale`` then ``make bench-incremental``,
same ``SCALE``).  It changes the window's last hour the way a collector's late spool does (a new
landing file: an 11th flow for a VLF source with exactly max_flows flows, and the first flow of a
new source), then drives the landing sensor and the automation conditions in this process, one
tick at a time (``runs.AutomationTicks``), running what they request: the hour, its month,
study_months, and at the next window cron tick every window asset.  It prints each evaluation and
run with its wall time, the slowest steps of the window run, the total against the from-scratch
pipeline of ``bench-scale.json``, and checks that the two sources moved as they must.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LATE_PREFIX = "bench-late-"  # seed_scale.py --reuse removes these: the simulator's ground truth knows none of them


def _steps(instance, run_id: str) -> list[tuple[str, float]]:
    """Each step's wall time in a run, from its STEP_START and STEP_SUCCESS/FAILURE events."""
    starts, seconds = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[entry.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in starts:
            seconds[entry.step_key] = entry.timestamp - starts[entry.step_key]
    return sorted(seconds.items(), key=lambda kv: -kv[1])


def _new_landing(data: Path, site) -> tuple[str, str, Path]:
    """A late landing file in the window's last hour: which source leaves VLF-f, which comes in."""
    import duckdb
    import pyarrow as pa

    from vlf_dagster.flows.schema import conform, int_to_ipv4
    from vlf_dagster.flows.segments import relation_sql
    from vlf_dagster.flows.storage import hour_ms, landing_dir, segmented_path, window_path, write_parquet

    hour = site.end - timedelta(hours=1)
    vlf_flows = segmented_path(data, "vlf_flows")  # a study built before segmenting has the plain file
    vlf_flows = vlf_flows if vlf_flows.is_dir() else window_path(data, "vlf_flows")
    leaving, destination = duckdb.connect().execute(
        f"SELECT b.sIP, any_value(d.dIP) FROM read_parquet(?) b JOIN ({relation_sql(vlf_flows)}) d USING (sIP) "
        "WHERE b.records = ? GROUP BY b.sIP ORDER BY b.sIP LIMIT 1",
        [str(window_path(data, "source_flow_bag")), site.vlf.max_flows],
    ).fetchone()
    # the first address of 198.51.100.0/24 (TEST-NET-2, never simulated) no earlier run has landed
    newcomer = duckdb.connect().execute(
        "SELECT min(a) FROM range(3325256705, 3325256955) t(a) WHERE a NOT IN (SELECT sIP FROM read_parquet(?))",
        [str(window_path(data, "source_flow_bag"))]).fetchone()[0]
    inside = int(site.internal_networks[0].network_address) + 7
    t = hour_ms(hour) + 1_800_000
    table = conform(pa.table({
        "sIP": pa.array([leaving, newcomer], pa.uint32()), "dIP": pa.array([destination, inside], pa.uint32()),
        "sPort": pa.array([40001, 40002], pa.uint16()), "dPort": pa.array([22, 3389], pa.uint16()),
        "protocol": pa.array([6, 6], pa.uint8()), "packets": pa.array([1, 1], pa.uint32()),
        "bytes": pa.array([40, 40], pa.uint32()), "sTime": pa.array([t, t + 1], pa.int64()),
    }))
    path = write_parquet(table, landing_dir(data, hour) / f"{LATE_PREFIX}{int(time.time())}.parquet")
    return int_to_ipv4(leaving), int_to_ipv4(newcomer), path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "bench-scale")
    parser.add_argument("--dagster-home", type=Path, help="the study's instance (default <data-dir>/.dagster_home)")
    args = parser.parse_args()
    data = args.data_dir.resolve()
    if not (data / "vlf_fd_set.set").exists():
        raise SystemExit(f"{data}: no study built here: run `make bench-scale` (same SCALE) first")

    import dagster as dg

    from vlf_dagster.orchestration.definitions import build_definitions
    from vlf_dagster.flows.sets import IPSet
    from vlf_dagster.flows.site import load_site
    from vlf_dagster.orchestration.runs import AutomationTicks, ensure_instance_home

    ensure_instance_home(args.dagster_home or data / ".dagster_home")
    site = load_site(data / "site.toml")
    defs = build_definitions(data)
    with dg.DagsterInstance.get() as instance:
        ticks = AutomationTicks(defs, instance)
        started = time.perf_counter()
        ticks.land()  # the sensor's first look: every packed hour is taken as seen
        ticks.tick(0)  # automation's first evaluation requests nothing
        setup = time.perf_counter() - started
        leaving, newcomer, path = _new_landing(data, site)
        print(f"late landing file {path.relative_to(data)}: {leaving} gets its 11th flow, {newcomer} its first")

        started = time.perf_counter()
        clock = time.perf_counter()
        reported = ticks.land()
        land_seconds = time.perf_counter() - clock
        ticks.log.clear()
        # one evaluation per stage, as the daemon's ticks come; the window waits for its cron tick
        for minutes in (1, 1, 1, 15, 1):
            ticks.tick(minutes)
        total = time.perf_counter() - started
        window_run = instance.get_run_records(limit=1)[0].dagster_run.run_id

        hours = len(defs.resolve_job_def("hourly_job").partitions_def.get_partition_keys())
        print(f"\nsensor and automation set-up over {hours:,} hourly partitions: {setup:.1f} s (once per daemon start)")
        print(f"landing sensor tick: {land_seconds:.1f} s, reported {reported}")
        print(f"\n{'step':<10} {'partition':<18} {'seconds':>8}  assets")
        for kind, partition, assets, seconds in ticks.log:
            names = ", ".join(assets[:3]) + (f" (+{len(assets) - 3})" if len(assets) > 3 else "")
            print(f"{kind:<10} {partition or '-':<18} {seconds:8.1f}  {names}")
        runs = sum(s for k, *_, s in ticks.log if k == "run")
        evaluations = sum(s for k, *_, s in ticks.log if k == "evaluate")
        print(f"\none new hour to the VLF sets, report and catalog: {total:.1f} s "
              f"(runs {runs:.1f} s, evaluations {evaluations:.1f} s, landing sensor {land_seconds:.1f} s)")
        print("slowest steps of the window run:")
        for step, seconds in _steps(instance, window_run)[:10]:
            print(f"  {step:<40} {seconds:7.1f} s")
        scratch = data / "bench-scale.json"
        if scratch.exists():
            built = json.loads(scratch.read_text())
            print(f"from scratch (bench-scale.json): {built['pipeline_wall']:.0f} s; "
                  f"incremental / from scratch = {total / built['pipeline_wall']:.3f}")
        vlf_fd = IPSet.read(data / "vlf_fd_set.set")
        moved = leaving not in vlf_fd and newcomer in vlf_fd
        print(f"{leaving} left VLF-fd and {newcomer} joined it: {moved}")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
        (data / "bench-incremental.json").write_text(json.dumps(
            {"seconds": total, "runs": runs, "evaluations": evaluations, "landing_sensor": land_seconds,
             "log": ticks.log, "moved": moved}, indent=1))
        if not moved:
            raise SystemExit("the refresh did not move the two sources")


if __name__ == "__main__":
    main()
