"""The whole study at the seed's size, through Dagster as a user's backfill would run it.

By default: 14 months from 2006-02-01 (425 days, 10,200 hourly partitions) of the study's /22,
12.7 M outside sources (~123 M inbound flows plus the outbound, ICMP and background traffic the
simulator makes).  ``--scale F`` shrinks the sources (and so the flows) for quick runs; ``--days``
and ``--sources`` give any other shape (``--days 28 --sources 400000 --start 2006-04-01`` is the
shape issue 8 measured).

Each stage runs in its own process, so its wall time, CPU time and peak RSS are its own:

    simulate   the streaming simulator (reported apart from the pipeline)
    hourly     hourly_job, one run per batch of hours (BackfillPolicy.multi_run)
    monthly    monthly_job, one run per month
    window     window bags, VLF sets, vlf_flows (and their blocking checks)
    matching   matched_vlf_flows, vlf_categories
    reports    the 21 report parts and vlf_report
    catalog    sql_catalog
    raw        the peer: VLF-fd by one plain DuckDB query over the landing files

It prints one table (wall s, CPU s, flows/s, peak RSS, runs, events, and the share of wall time
outside the project's own compute: Dagster, checks, process start), the pipeline-to-raw ratio,
and whether the pipeline's VLF-fd set equals both the raw query's and the simulator's ground
truth.  Figures also go to ``<data-dir>/bench-scale.json``.

    python bench/seed_scale.py                      # full size (make bench-scale)
    python bench/seed_scale.py --scale 0.05         # 635,000 sources
    python bench/seed_scale.py --days 28 --sources 400000 --start 2006-04-01
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

SEED_SOURCES = 12_700_000
SEED_DAYS = 425  # 2006-02-01 .. 2007-04-02: 10,200 hours
SEED_START = "2006-02-01T00:00"
PIPELINE = ("hourly", "monthly", "window", "matching", "reports", "catalog")

# Asset groups of each window-level stage (the hourly and monthly jobs are the project's own).
STAGE_GROUPS = {"window": ("bags", "vlf", "scanners", "returns"), "matching": ("matching",), "reports": ("reports",), "catalog": ("catalog",)}


def _usage() -> dict:
    """CPU of the stage's process and of its workers; peak RSS of the largest of them."""
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu": self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime,
            "rss_mb": max(self_.ru_maxrss, children.ru_maxrss) / 1024}


# --- stages (each in its own process) ----------------------------------------------------------


def stage_simulate(args) -> dict:
    from datetime import timedelta

    from vlf_dagster.flows.site import load_site, parse_utc
    from vlf_dagster.simulate import SimulationConfig, simulate

    data = Path(args.data_dir)
    site = load_site(Path(__file__).resolve().parents[1] / "vlf_dagster" / "site.default.toml")
    start = parse_utc(args.start, what="--start")
    site = site.with_window(start, start + timedelta(days=args.days))
    data.mkdir(parents=True, exist_ok=True)
    (data / "site.toml").write_text(site.to_toml())
    summary = simulate(site, SimulationConfig(days=args.days, sources=args.sources, seed=args.seed,
                                              returning=args.returning), data)
    return {"flows": summary.flows, "inbound_flows": summary.inbound_flows, "sources": summary.sources,
            "hours": summary.hours}


def _dagster_stage(args, stage: str) -> dict:
    import dagster as dg

    from vlf_dagster.orchestration.assets.clock import compute_seconds
    from vlf_dagster.orchestration.definitions import build_definitions
    from vlf_dagster.orchestration.jobs import HOURLY_ASSETS, MONTHLY_ASSETS
    from vlf_dagster.orchestration.runs import QUIET, ensure_instance_home, materialize_hourly

    ensure_instance_home(args.dagster_home)
    defs = build_definitions(args.data_dir)
    run_ids = []
    with dg.DagsterInstance.get() as instance:
        def run(job, tags):
            result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False, run_config=QUIET)
            if not result.success:
                raise SystemExit(f"{stage}: run {result.run_id} of {job.name} failed; see the Dagster UI")
            run_ids.append(result.run_id)

        started = time.perf_counter()
        compute, workers = 0.0, 1
        if stage == "hourly":  # as `vlf materialize` runs it: batches of hours on worker processes
            log = materialize_hourly(defs, instance, hours_per_run=args.hours_per_run, workers=args.workers,
                                     echo=lambda *_: None)
            run_ids.extend(log.run_ids)
            compute = log.compute_seconds
            workers = log.workers
        elif stage == "monthly":
            job = defs.resolve_job_def("monthly_job")
            for key in job.partitions_def.get_partition_keys():
                run(job, {"dagster/partition": key})
        else:
            selection = dg.AssetSelection.groups(*STAGE_GROUPS[stage]) - dg.AssetSelection.assets(*HOURLY_ASSETS, *MONTHLY_ASSETS)
            job = dg.Definitions.merge(defs, dg.Definitions(jobs=[dg.define_asset_job(f"bench_{stage}", selection=selection)]))
            run(job.resolve_job_def(f"bench_{stage}"), {})
        wall = time.perf_counter() - started
        events = sum(len(instance.all_logs(r)) for r in run_ids)  # after the clock: counting is not the stage's cost
    return {"stage_wall": wall, "compute": compute + compute_seconds(), "workers": workers, "runs": len(run_ids),
            "events": events}


def stage_raw(args) -> dict:
    """VLF-fd in one plain DuckDB query over the landing files, with the site's internal networks."""
    import duckdb

    from vlf_dagster.flows.site import load_site

    site = load_site(Path(args.data_dir) / "site.toml")
    inside = lambda col: " OR ".join(f"({col} & {mask}) = {net}" for net, mask in site.ipv4_networks)  # noqa: E731
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{Path(args.data_dir) / '.duckdb_tmp'}'")
    sources = con.execute(
        f"SELECT sIP FROM read_parquet('{Path(args.data_dir)}/landing/*/*/*.parquet') "
        f"WHERE ({inside('dIP')}) AND NOT ({inside('sIP')}) "
        f"GROUP BY sIP HAVING count(*) BETWEEN 1 AND {site.vlf.max_flows} "
        f"AND count(DISTINCT dIP) BETWEEN 1 AND {site.vlf.max_destinations} ORDER BY sIP"
    ).fetchnumpy()["sIP"]
    wall = time.perf_counter() - started
    np_path = Path(args.data_dir) / "raw_vlf_fd.npy"
    import numpy as np

    np.save(np_path, np.asarray(sources, dtype=np.uint32))
    return {"stage_wall": wall, "vlf_fd": int(len(sources))}


STAGES = {"simulate": stage_simulate, "raw": stage_raw, **{s: (lambda a, s=s: _dagster_stage(a, s)) for s in PIPELINE}}


def run_stage(args, stage: str) -> dict:
    """Run ``stage`` in a fresh process: its own wall time, CPU time and peak RSS."""
    command = [sys.executable, __file__, "--stage", stage, "--data-dir", str(args.data_dir),
               "--dagster-home", str(args.dagster_home), "--days", str(args.days), "--sources", str(args.sources),
               "--seed", str(args.seed), "--start", args.start, "--hours-per-run", str(args.hours_per_run),
               "--returning", str(args.returning)]
    if args.workers:
        command += ["--workers", str(args.workers)]
    started = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "GX_ANALYTICS_ENABLED": "false"})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} failed (exit {proc.returncode})")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["wall"] = wall
    return figures


# --- the report --------------------------------------------------------------------------------


def _vlf_check(data: Path) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    from vlf_dagster.flows.sets import IPSet

    pipeline = IPSet.read(data / "vlf_fd_set.set").ipv4_array()
    raw = np.load(data / "raw_vlf_fd.npy")
    truth = pq.read_table(data / "sim" / "ground_truth.parquet", columns=["sIP", "flows", "destinations"])
    t = truth.to_pandas()
    expected = np.sort(t.loc[(t.flows <= 10) & (t.destinations <= 1), "sIP"].to_numpy(np.uint32))
    return {"vlf_fd": int(len(pipeline)), "equals_raw": bool(np.array_equal(np.sort(pipeline), raw)),
            "equals_ground_truth": bool(np.array_equal(np.sort(pipeline), expected))}


def _outside(r: dict) -> float:
    """Share of the stage's process time (wall x its worker processes) outside the asset bodies."""
    return 1 - r["compute"] / (r["wall"] * r.get("workers", 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="share of the seed's 12.7 M sources (default 1)")
    parser.add_argument("--sources", type=int, help="outside sources (default: 12.7 M x scale)")
    parser.add_argument("--days", type=int, default=SEED_DAYS, help=f"days from --start (default {SEED_DAYS}: 14 months)")
    parser.add_argument("--start", default=SEED_START, help=f"first hour, UTC (default {SEED_START})")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--returning", type=float, default=0.0,
                        help="share of the eligible sources that come back in visits (vlf simulate --returning; default 0)")
    parser.add_argument("--hours-per-run", type=int, default=None, help="hourly partitions per run (default: the project's batch)")
    parser.add_argument("--workers", type=int, default=None, help="processes for the hourly batches (default: the project's)")
    parser.add_argument("--data-dir", type=Path, default=Path("data/bench-scale"), help="where to simulate (default data/bench-scale)")
    parser.add_argument("--dagster-home", type=Path, help="Dagster instance (default <data-dir>/.dagster_home)")
    parser.add_argument("--reuse", action="store_true", help="keep an existing simulation of the same shape")
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sources = args.sources or round(SEED_SOURCES * args.scale)
    args.dagster_home = args.dagster_home or args.data_dir / ".dagster_home"
    if args.hours_per_run is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from vlf_dagster.orchestration.assets.archive import HOURLY_BATCH

        args.hours_per_run = HOURLY_BATCH

    if args.stage:  # inside a stage's own process
        figures = STAGES[args.stage](args)
        print(json.dumps({**figures, **_usage()}))
        return

    shape = {"days": args.days, "sources": args.sources, "seed": args.seed, "start": args.start, "returning": args.returning}
    shape_file = args.data_dir / "bench-shape.json"
    results: dict[str, dict] = {}
    reuse = args.reuse and shape_file.exists() and all(
        {"returning": 0.0, **json.loads(shape_file.read_text())}.get(k) == v for k, v in shape.items())
    if not reuse:
        shutil.rmtree(args.data_dir, ignore_errors=True)
        print(f"simulating {args.days} days x {args.sources:,} sources into {args.data_dir} ...", flush=True)
        results["simulate"] = run_stage(args, "simulate")
        shape_file.write_text(json.dumps({**shape, **{k: results['simulate'][k] for k in ('flows', 'inbound_flows', 'hours')}}))
    else:
        from incremental import LATE_PREFIX  # bench/incremental.py, beside this script

        for late in args.data_dir.glob(f"landing/*/*/{LATE_PREFIX}*.parquet"):  # its additions
            late.unlink()
        for name in os.listdir(args.data_dir):  # keep landing, sim and the shape; rebuild everything else
            if name not in ("landing", "sim", "site.toml", "bench-shape.json"):
                path = args.data_dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    info = json.loads(shape_file.read_text())
    flows, hours = info["flows"], info["hours"]
    for stage in (*PIPELINE, "raw"):
        print(f"stage {stage} ...", flush=True)
        results[stage] = run_stage(args, stage)

    pipeline_wall = sum(results[s]["wall"] for s in PIPELINE)
    pipeline_cpu = sum(results[s]["cpu"] for s in PIPELINE)
    compute = sum(results[s]["compute"] for s in PIPELINE)
    check = _vlf_check(args.data_dir)
    print(f"\n{args.days} days ({hours:,} hourly partitions) x {args.sources:,} sources: {flows:,} flows "
          f"({info['inbound_flows']:,} inbound); {os.cpu_count()} CPUs\n")
    header = f"{'stage':<10} {'wall s':>8} {'CPU s':>8} {'flows/s':>11} {'peak RSS MB':>11} {'runs':>5} {'events':>7} {'outside own':>11}"
    print(header + "\n" + "-" * len(header))
    for stage in ("simulate", *PIPELINE, "raw"):
        r = results.get(stage)
        if r is None:
            continue
        outside = f"{100 * _outside(r):10.0f}%" if "compute" in r else f"{'':>11}"
        print(f"{stage:<10} {r['wall']:8.1f} {r['cpu']:8.1f} {flows / r['wall']:11,.0f} {r['rss_mb']:11,.0f} "
              f"{r.get('runs', ''):>5} {r.get('events', ''):>7} {outside}")
    runs = sum(results[s]["runs"] for s in PIPELINE)
    events = sum(results[s]["events"] for s in PIPELINE)
    print("-" * len(header))
    busy = sum(results[s]["wall"] * results[s]["workers"] for s in PIPELINE)
    print(f"{'pipeline':<10} {pipeline_wall:8.1f} {pipeline_cpu:8.1f} {flows / pipeline_wall:11,.0f} "
          f"{max(results[s]['rss_mb'] for s in PIPELINE):11,.0f} {runs:>5} {events:>7} {100 * (1 - compute / busy):10.0f}%")
    print("outside own: the share of the stage's process time (wall x worker processes) not spent in asset bodies:\n"
          "Dagster (runs, events, steps), the checks, process start and imports")
    raw = results["raw"]["stage_wall"]
    print(f"\nraw DuckDB VLF-fd query: {raw:.2f} s ({results['raw']['vlf_fd']:,} sources); "
          f"pipeline / raw = {pipeline_wall / raw:.0f}x")
    print(f"VLF-fd: {check['vlf_fd']:,} sources; equals the raw query: {check['equals_raw']}; "
          f"equals the simulator's ground truth: {check['equals_ground_truth']}")
    out = {"shape": info, "cpus": os.cpu_count(), "stages": results, "pipeline_wall": pipeline_wall,
           "pipeline_cpu": pipeline_cpu, "compute": compute, "runs": runs, "events": events,
           "raw_seconds": raw, "ratio": pipeline_wall / raw, **check}
    (args.data_dir / "bench-scale.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
