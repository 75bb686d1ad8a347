"""vlf against SiLK 3.19.1, side by side on the same flows: wall time, ratio and peak RSS.

    .venv/bin/python bench/silk_compare.py [--flows 2750000] [--runs 3] [--silk build/silk]

Builds SiLK from ../shared/silk/ when it is not at ``--silk`` (about three minutes), simulates a
site until it has about ``--flows`` flows (``vlf simulate``, then one Parquet file), writes the same
records as a SiLK flow file (``vlf cat --silk``: record bytes as rwcat writes them), and runs each
operation with both tools on the same records, each run in its own process: the median of
``--runs`` wall times, the vlf/SiLK ratio (above 1: vlf is slower) and each tool's peak RSS.
Outputs go to files or /dev/null, so terminal speed is not measured.  Start-up is timed too
(``--help``, one record).  The machine has 2 shared cores: quote ratios and medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from silk_golden import silk_env  # noqa: E402

VLF = str(Path(sys.executable).with_name("vlf"))


def timed(command: str, env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one shell command, measured by /usr/bin/time."""
    report = tempfile.NamedTemporaryFile(delete=False)
    report.close()
    started = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, "sh", "-c", command], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    rss = int(Path(report.name).read_text().split()[-1]) / 1024
    os.unlink(report.name)
    return seconds, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=2_750_000, help="about this many flows (default 2.75 M)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--silk", default=str(ROOT / "build" / "silk"))
    parser.add_argument("--work", help="folder for the data (default: a temporary one)")
    args = parser.parse_args()
    env = silk_env(Path(args.silk).resolve())
    env["SILK_CLOBBER"] = "1"
    work = Path(args.work or tempfile.mkdtemp(prefix="vlf-silk-"))
    work.mkdir(parents=True, exist_ok=True)
    flows, rw = work / "flows.parquet", work / "flows.rw"
    if not flows.exists():
        # the simulated site gives ~13 flows per source over its first days, whatever the days
        sources = max(1000, args.flows // 13)
        data = work / "site"
        subprocess.run([VLF, "simulate", "--data-dir", str(data), "--days", "2", "--sources", str(sources), "--seed", "3",
                        "--start", "2006-04-01T00:00"], check=True, env=env, stdout=subprocess.DEVNULL)
        landing = sorted(str(p) for p in (data / "landing").rglob("*.parquet"))
        subprocess.run([VLF, "cat", *landing, "--output-path", str(flows)], check=True, env=env)
        shutil.rmtree(data)
    if not rw.exists():
        subprocess.run([VLF, "cat", "--silk", str(flows), "--output-path", str(rw)], check=True, env=env)
    # time the installed tool: its bytecode compiled, as `make install` leaves it (where
    # PYTHONDONTWRITEBYTECODE is set, each command would otherwise compile its modules)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "vlf_dagster")], check=True)
    count = int(subprocess.run(["rwfileinfo", "--fields=count-records", "--no-titles", str(rw)], env=env, check=True,
                               capture_output=True, text=True).stdout.split()[-1])
    out = work / "out"
    operations = [
        ("start-up: stats --help", f"{VLF} stats --help", "rwstats --help"),
        ("start-up: cut one record", f"{VLF} cut --num-recs=1 {flows}", f"rwcut --num-recs=1 {rw}"),
        ("cut (all fields of every record)", f"{VLF} cut {flows} > /dev/null", f"rwcut --ipv6-policy=asv4 {rw} > /dev/null"),
        ("filter S/SA to a file", f"{VLF} filter --proto=6 --flags-all=S/SA --pass-destination={out}.parquet {flows}",
         f"rwfilter --proto=6 --flags-all=S/SA --pass-destination={out}.rw {rw}"),
        ("stats top-10 sIP by records", f"{VLF} stats --fields=sip --count=10 {flows} > /dev/null",
         f"rwstats --fields=sip --count=10 {rw} > /dev/null"),
        ("uniq sIP", f"{VLF} uniq --fields=sip {flows} > /dev/null", f"rwuniq --fields=sip {rw} > /dev/null"),
        ("uniq sIP with distinct:dIP", f"{VLF} uniq --fields=sip --values=records,distinct:dip {flows} > /dev/null",
         f"rwuniq --fields=sip --values=records,distinct:dip {rw} > /dev/null"),
        ("set of sIPs", f"{VLF} set --sip-file={out}.set {flows}", f"rwset --sip-file={out}.rwset {rw}"),
        ("bag of sIP flows", f"{VLF} bag --sip-flows={out}.bag {flows}", f"rwbag --sip-flows={out}.rwbag {rw}"),
    ]
    print(f"{count:,} flows; medians of {args.runs} runs; ratio = vlf / SiLK wall time (above 1: vlf is slower)")
    print(f"{'operation':<34} {'vlf s':>8} {'SiLK s':>8} {'ratio':>7} {'vlf MB':>8} {'SiLK MB':>8}")
    for name, ours, theirs in operations:
        results = {"vlf": [], "silk": []}
        for _ in range(args.runs):
            for tool, command in (("vlf", ours), ("silk", theirs)):
                for leftover in out.parent.glob(out.name + ".*"):
                    leftover.unlink()
                results[tool].append(timed(command, env))
        vlf_s = statistics.median(r[0] for r in results["vlf"])
        silk_s = statistics.median(r[0] for r in results["silk"])
        vlf_mb = max(r[1] for r in results["vlf"])
        silk_mb = max(r[1] for r in results["silk"])
        print(f"{name:<34} {vlf_s:8.2f} {silk_s:8.2f} {vlf_s / silk_s:7.2f} {vlf_mb:8.0f} {silk_mb:8.0f}", flush=True)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
