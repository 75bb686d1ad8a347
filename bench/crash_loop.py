"""Kill -9 crash loop: `vlf materialize` killed at random moments, then run to the end.

    .venv/bin/python bench/crash_loop.py [--kills 20] [--days 1] [--sources 300] [--seed 7]

A simulated site is materialized once cleanly (the reference).  A copy is then materialized again
and again, each run killed with SIGKILL (its whole process group) at a random moment within the
clean run's duration.  After every kill the script checks what a reader sees:

- every visible Parquet file reads whole (footer and pages);
- every archive hour a reader lists is either absent or byte-identical to the reference's hour
  (never half an hour: the publish journal is rolled forward by the listing itself);

then it lets a run finish and compares the outputs with the reference: every archive, hourly,
monthly and window file byte for byte, segmented artifacts by their current rows, the report's
tables byte for byte.  It prints the kills, the failures found and the time taken.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vlf_dagster.flows.segments import Segmented, is_segmented  # noqa: E402
from vlf_dagster.flows.storage import archive_files, hours_between  # noqa: E402
from vlf_dagster.flows.site import load_site  # noqa: E402

VLF = [sys.executable, "-m", "vlf_dagster.cli"]
# not outputs a re-run must reproduce: inputs, the report folder (its tables are compared below),
# state, the catalog database, and study_months.json (an index of the months' files and mtimes)
SKIPPED = {"landing", "sim", "reports", ".state", ".row_counts.parquet", "catalog.duckdb", "catalog.duckdb.wal", "study_months.json"}


def materialize(data: Path, home: Path) -> list[str]:
    return [*VLF, "materialize", "--data-dir", str(data), "--dagster-home", str(home), "--hours-per-run", "24"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outputs(data: Path) -> dict[str, str]:
    """Relative path -> content digest of every output a re-run must reproduce."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(data):
        folder = Path(dirpath)
        rel = folder.relative_to(data)
        if rel.parts and (rel.parts[0] in SKIPPED or rel.parts[0].startswith(".")):
            dirnames[:] = []
            continue
        if is_segmented(folder):
            table = Segmented(folder).read()
            found[str(rel) + "/ (rows)"] = hashlib.sha256(table.sort_by([(c, "ascending") for c in table.column_names
                                                                         if not str(table.schema.field(c).type).startswith("binary")][:6])
                                                          .to_string().encode()).hexdigest() + f":{table.num_rows}"
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or name.endswith((".tmp", ".lock")) or (not rel.parts and name in SKIPPED):
                continue
            found[str(rel / name)] = digest(folder / name)
    for report in sorted((data / "reports").rglob("*.csv")):
        found[str(report.relative_to(data))] = digest(report)
    return found


def reader_view(data: Path, reference: dict[str, str], hours) -> list[str]:
    """What a reader sees right after a kill: problems found (empty: all good)."""
    problems = []
    listed: dict[str, list[Path]] = {}
    for path in archive_files(data, hours):  # rolls a kill's publish journal forward first
        listed.setdefault(path.name.rsplit("_", 1)[1], []).append(path)
    for stamp, paths in listed.items():
        expected = sorted(k for k in reference if k.startswith("archive/") and k.endswith(f"_{stamp}"))
        got = sorted(str(p.relative_to(data)) for p in paths)
        if got != expected:
            problems.append(f"hour {stamp}: {len(got)} of {len(expected)} archive files visible")
        problems += [f"{p}: differs from the reference" for p in paths if digest(p) != reference.get(str(p.relative_to(data)))]
    for path in data.rglob("*.parquet"):
        if any(part.startswith(".") for part in path.relative_to(data).parts) or not path.is_file():
            continue
        try:
            pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the finding
            problems.append(f"{path}: unreadable: {str(exc).splitlines()[0]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--sources", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", help="folder to work in (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="vlf-crash-"))
    ref, crash = work / "reference", work / "crashed"
    for folder in (ref, crash, work / "reference-home", work / "crashed-home"):
        shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([*VLF, "simulate", "--data-dir", str(ref), "--days", str(args.days), "--sources", str(args.sources),
                    "--seed", str(args.seed), "--start", "2006-04-29T00:00"], check=True, capture_output=True)
    shutil.copytree(ref, crash)
    started = time.monotonic()
    subprocess.run(materialize(ref, work / "reference-home"), check=True, capture_output=True)
    clean_seconds = time.monotonic() - started
    reference = outputs(ref)
    site = load_site(ref / "site.toml")
    hours = hours_between(site.start, site.window_end())
    print(f"reference: {clean_seconds:.1f} s, {len(reference)} outputs", flush=True)

    rng = random.Random(args.seed)
    failures: list[str] = []
    kills = finished_runs = 0
    while kills < args.kills and finished_runs < 5 * args.kills:
        proc = subprocess.Popen(materialize(crash, work / "crashed-home"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        moment = rng.uniform(0.5, clean_seconds)
        try:
            proc.wait(moment)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        else:
            # the run finished before its kill: start over from the landing files (a fresh copy and
            # instance), so that every kill counted lands in the middle of a run
            finished_runs += 1
            shutil.rmtree(crash)
            shutil.rmtree(work / "crashed-home", ignore_errors=True)
            shutil.copytree(ref, crash, ignore=lambda folder, names: [n for n in names if Path(folder) == ref and n not in ("landing", "site.toml", "sim")])
            continue
        kills += 1
        problems = reader_view(crash, reference, hours)
        failures += [f"kill {kills} at {moment:.1f} s: {p}" for p in problems]
        print(f"kill {kills:2d} at {moment:5.1f} s: {'ok' if not problems else f'{len(problems)} problem(s)'}", flush=True)
    started = time.monotonic()
    final = subprocess.run(materialize(crash, work / "crashed-home"), capture_output=True, text=True)
    final_seconds = time.monotonic() - started
    if final.returncode != 0:
        failures.append(f"the run after the kills failed: {final.stderr.strip().splitlines()[-1:]}")
    after = outputs(crash)
    differ = sorted(k for k in reference.keys() | after.keys() if reference.get(k) != after.get(k))
    failures += [f"after the kills: {k} differs from the reference" for k in differ]
    print(f"{kills} kills mid-run ({finished_runs} runs finished before their kill and were started over); then a run to the end in {final_seconds:.1f} s; {len(reference)} outputs compared, "
          f"{len(differ)} differ; {len(failures)} failure(s)")
    for failure in failures:
        print("  " + failure)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
