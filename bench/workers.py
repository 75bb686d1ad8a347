"""A month's hourly backfill on one process against two (`vlf materialize --workers`).

Simulates a site once, then packs every hour of it into the archive with its bags (the hourly job,
one run per batch of ``--hours-per-run`` hours) on 1 and on 2 worker processes, alternately,
``--runs`` times each, each time into a fresh Dagster instance.  Prints the median wall time,
flows/s, the peak RSS of the largest process and the ratio of the two.

    .venv/bin/python bench/workers.py --days 31 --sources 200000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE_BACKFILL = """
import json, os, sys, time, resource
import dagster as dg
from vlf_dagster.orchestration.definitions import build_definitions
from vlf_dagster.orchestration.runs import ensure_instance_home, materialize_hourly
data, home, workers, per_run = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ensure_instance_home(home)
defs = build_definitions(data)
started = time.perf_counter()
with dg.DagsterInstance.get() as instance:
    log = materialize_hourly(defs, instance, hours_per_run=per_run, workers=workers, echo=lambda *_: None)
wall = time.perf_counter() - started
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"wall": wall, "runs": len(log.runs), "workers": log.workers, "rss_mb": rss / 1024}))
"""


def _backfill(data: Path, workers: int, per_run: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="vlf-bench-home-"))
    try:
        env = {**os.environ, "DAGSTER_HOME": str(home), "VLF_DATA_DIR": str(data), "GX_ANALYTICS_ENABLED": "false"}
        out = subprocess.run([sys.executable, "-c", ONE_BACKFILL, str(data), str(home), str(workers), str(per_run)],
                             env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--sources", type=int, default=200000)
    parser.add_argument("--hours-per-run", type=int, default=168, help="hours per run (default 168: a week, as the project)")
    parser.add_argument("--runs", type=int, default=3, help="backfills per worker count (default 3)")
    parser.add_argument("--data-dir", default="data/bench-workers")
    args = parser.parse_args()

    data = Path(args.data_dir).resolve()
    shutil.rmtree(data, ignore_errors=True)
    env = {**os.environ, "VLF_DATA_DIR": str(data)}
    subprocess.run([sys.executable, "-m", "vlf_dagster.cli", "simulate", "--days", str(args.days), "--sources",
                    str(args.sources)], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((data / "sim" / "summary.json").read_text())
    flows = int(summary["flows"])
    results: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(args.runs):
        for workers in (1, 2):  # alternately: the shared machine's load falls on both alike
            results[workers].append(_backfill(data, workers, args.hours_per_run))
    print(f"hourly backfill of {args.days} days ({args.days * 24} hours, {flows:,} flows, {args.sources:,} sources), "
          f"runs of {args.hours_per_run} hours, median of {args.runs}, {os.cpu_count()} cores")
    print(f"{'workers':>7} {'runs':>5} {'wall s':>8} {'flows/s':>10} {'peak RSS MB':>12}")
    median = {}
    for workers, rows in results.items():
        median[workers] = statistics.median(r["wall"] for r in rows)
        # the workers of a pool are the forkserver's children, not ours: getrusage sees one process
        rss = f"{max(r['rss_mb'] for r in rows):,.0f}" if workers == 1 else "-"
        print(f"{workers:>7} {rows[0]['runs']:>5} {median[workers]:>8.1f} {flows / median[workers]:>10,.0f} {rss:>12}")
    walls = {w: ", ".join(f"{r['wall']:.1f}" for r in rows) for w, rows in results.items()}
    print(f"two workers / one: {median[2] / median[1]:.2f} of the wall time (walls 1: {walls[1]}; 2: {walls[2]})")


if __name__ == "__main__":
    main()
