"""vlf against SiLK 3.19.1, side by side on the same flows: wall time, ratio and peak RSS.

    .venv/bin/python bench/silk_compare.py [--flows 2750000] [--runs 3] [--silk build/silk]

Builds SiLK from ../shared/silk/ when it is not at ``--silk`` (about three minutes), simulates a
site until it has about ``--flows`` flows (``vlf simulate``, then one Parquet file), writes the same
records as a SiLK flow file (``vlf cat --silk``: record bytes as rwcat writes them), and runs each
operation with both tools on the same records, each run in its own process: the median of
``--runs`` wall times, the vlf/SiLK ratio (above 1: vlf is slower) and each tool's peak RSS.
Outputs go to files or /dev/null, so terminal speed is not measured.  Start-up is timed too
(``--help``, one record).  The machine has 2 shared cores: quote ratios and medians.

The last two rows read an hourly archive instead of one file, each tool its own holding the same
records: the simulated site is kept and packed into vlf's archive (``pack_hours``: files
``archive/<type>/YYYY/MM/DD/<prefix>-S0_YYYYMMDD.HH.parquet``), and each of those files is
written as a SiLK flow file at the path of SiLK's default layout (``%T/%Y/%m/%d/%x``) in a
repository of its own (``silk-archive/``, with a copy of the built SiLK's silk.conf), where
``SILK_DATA_ROOTDIR`` points for those rows.  The rows are the study's recipe: the f-set (sources
of at most 10 inbound flows) alone, and the whole of it (f-set, d-set of sources with one
destination, their intersection, and the flows of its sources pulled from the archive), each
tool's as one shell command; the two tools' sets are then checked equal.  The site and both
archives are kept in ``--work`` and built only when missing.
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
DAYS = "2006/04/01", "2006/04/02"  # the simulated site's two days
TYPES = "in,inweb,inicmp"


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


def silk_types(conf: Path) -> dict[int, tuple[str, str]]:
    """silk.conf's flowtypes: id -> (type name, file prefix), from its ``type`` lines."""
    types = {}
    for line in conf.read_text().splitlines():
        words = line.split("#")[0].split()
        if words[:1] == ["type"]:
            types[int(words[1])] = (words[2], words[3] if len(words) > 3 else words[2])
        if words[:1] == ["path-format"]:
            sys.exit(f"{conf} sets path-format {words[1:]}: this script writes SiLK's default layout only")
    return types


def build_archives(data: Path, silk_root: Path, silk_conf: Path) -> None:
    """Pack the site's landing hours into vlf's archive (``data/archive``) and write each archive
    file as a SiLK flow file at its path under ``silk_root``, in-process."""
    sys.path.insert(0, str(ROOT))
    from vlf_dagster.flows.archive import pack_hours
    from vlf_dagster.flows.flowtypes import FLOWTYPES
    from vlf_dagster.flows.silkfile import silk_flow_bytes
    from vlf_dagster.flows.site import load_site
    from vlf_dagster.flows.storage import landing_hours, read_parquet

    # vlf's archive path is SiLK's %T/%Y/%m/%d/%x plus ".parquet" when the flowtypes agree
    types = silk_types(silk_conf)
    for wanted in TYPES.split(","):
        if wanted not in {name for name, _ in types.values()}:
            sys.exit(f"{silk_conf} has no type {wanted!r}: it defines {', '.join(n for n, _ in types.values())}")
    if any(types.get(i) != named for i, named in FLOWTYPES.items()):
        sys.exit(f"{silk_conf}'s types {types} are not vlf's {FLOWTYPES}")
    site = load_site(data / "site.toml")
    hours = landing_hours(data)
    shutil.rmtree(silk_root, ignore_errors=True)
    silk_root.mkdir(parents=True)
    shutil.copy(silk_conf, silk_root / "silk.conf")
    started, files = time.perf_counter(), 0
    for first in range(0, len(hours), 6):  # six hours at a time: memory stays a few hundred MB
        for result in pack_hours(data, hours[first:first + 6], site):
            for path in result.archive_files:
                target = silk_root / path.relative_to(data / "archive").with_suffix("")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(silk_flow_bytes(read_parquet(path)))
                files += 1
    print(f"archives: {len(hours)} hours packed into {files} files per tool in {time.perf_counter() - started:.0f} s",
          flush=True)


def read_count(command: list[str], env: dict) -> tuple[int, int]:
    """(files, records read) from a ``--print-statistics=stdout`` line (rwfilter's and vlf's)."""
    words = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout.split()
    return int(words[words.index("Files") + 1].rstrip(".")), int(words[words.index("Read") + 1].rstrip("."))


def check_sets(out: Path, env: dict, *names: str) -> str:
    """vlf's ``out.<name>.set`` and SiLK's ``out.<name>.rwset`` hold the same addresses (``vlf
    setcat`` reads both), and with "fd", the flows each pulled are as many: what was found, or exit."""
    found = []
    for name in names:
        ours, theirs = (subprocess.run([VLF, "setcat", f"{out}.{name}.{ext}"], env=env, check=True,
                                       capture_output=True, text=True).stdout.splitlines() for ext in ("set", "rwset"))
        if ours != theirs:
            sys.exit(f"{name}-set: vlf's {out}.{name}.set ({len(ours):,} addresses) and SiLK's {out}.{name}.rwset "
                     f"({len(theirs):,}) differ")
        found.append(f"{name}-set equal ({len(ours):,} addresses)")
    if "fd" in names:
        import pyarrow.parquet as pq

        pulled = pq.read_metadata(f"{out}.fd.parquet").num_rows
        pulled_silk = int(subprocess.run(["rwfileinfo", "--fields=count-records", "--no-titles", f"{out}.fd.rw"],
                                         check=True, capture_output=True, text=True, env=env).stdout.split()[-1])
        if pulled != pulled_silk:
            sys.exit(f"fd flows: vlf pulled {pulled:,} flows ({out}.fd.parquet), SiLK {pulled_silk:,} ({out}.fd.rw)")
        found.append(f"fd flows pulled equal ({pulled:,})")
    return ", ".join(found)


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
    data, silk_root = work / "site", work / "silk-archive"
    if not (work / "site.done").exists():
        # the simulated site gives ~13 flows per source over its first days, whatever the days
        sources = max(1000, args.flows // 13)
        shutil.rmtree(data, ignore_errors=True)
        (work / "archives.done").unlink(missing_ok=True)
        flows.unlink(missing_ok=True)
        rw.unlink(missing_ok=True)
        subprocess.run([VLF, "simulate", "--data-dir", str(data), "--days", "2", "--sources", str(sources), "--seed", "3",
                        "--start", "2006-04-01T00:00"], check=True, env=env, stdout=subprocess.DEVNULL)
        (work / "site.done").touch()
    if not flows.exists():
        landing = sorted(str(p) for p in (data / "landing").rglob("*.parquet"))
        subprocess.run([VLF, "cat", *landing, "--output-path", str(flows)], check=True, env=env)
    if not (work / "archives.done").exists():
        build_archives(data, silk_root, Path(env["SILK_CONFIG_FILE"]))
        (work / "archives.done").touch()
    if not rw.exists():
        subprocess.run([VLF, "cat", "--silk", str(flows), "--output-path", str(rw)], check=True, env=env)
    # time the installed tool: its bytecode compiled, as `make install` leaves it (where
    # PYTHONDONTWRITEBYTECODE is set, each command would otherwise compile its modules)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "vlf_dagster")], check=True)
    count = int(subprocess.run(["rwfileinfo", "--fields=count-records", "--no-titles", str(rw)], env=env, check=True,
                               capture_output=True, text=True).stdout.split()[-1])
    out = work / "out"
    # the archive rows: SiLK reads its own repository; rwfilter wants a partitioning rule before
    # --pass (vlf does not), so SiLK passes everything with --all-destination
    archive_env = dict(env, SILK_DATA_ROOTDIR=str(silk_root), SILK_CONFIG_FILE=str(silk_root / "silk.conf"))
    ours_select = f"{VLF} filter --data-dir {data} --start-date {DAYS[0]} --end-date {DAYS[1]} --type {TYPES}"
    theirs_select = f"rwfilter --start-date={DAYS[0]} --end-date={DAYS[1]} --type={TYPES}"
    ours_read = read_count([*ours_select.split(), "--print-statistics=stdout"], env)
    theirs_read = read_count([*theirs_select.split(), "--proto=0-255", "--print-statistics=stdout"], archive_env)
    if ours_read != theirs_read or not ours_read[1]:
        sys.exit(f"the archives differ: vlf reads {ours_read[1]:,} records from {ours_read[0]} files, "
                 f"SiLK {theirs_read[1]:,} from {theirs_read[0]}")
    f_set = (f"{ours_select} --pass-destination - | {VLF} bag --bag-file sIPv4,flows,- "
             f"| {VLF} bagtool --maxcounter 10 --coverset --output-path {out}.f.set",
             f"{theirs_select} --all-destination=stdout | rwbag --bag-file=sIPv4,flows,stdout "
             f"| rwbagtool --maxcounter=10 --coverset --output-path={out}.f.rwset")
    # the whole recipe reads the archive once for both sets (vlf: two bags in one pass; SiLK:
    # rwuniq's --copy-input feeds rwbag), then pulls the fd-set's flows from it
    fd_recipe = (
        f"{ours_select} --pass-destination - "
        f"| {VLF} bag --bag-file sIPv4,flows,{out}.flows.bag --bag-file sIPv4,distinct:dIP,{out}.dests.bag"
        f" && {VLF} bagtool --maxcounter 10 --coverset {out}.flows.bag --output-path {out}.f.set"
        f" && {VLF} bagtool --maxcounter 1 --coverset {out}.dests.bag --output-path {out}.d.set"
        f" && {VLF} settool --intersect {out}.f.set {out}.d.set --output-path {out}.fd.set"
        f" && {ours_select} --sipset {out}.fd.set --pass-destination {out}.fd.parquet",
        # SiLK has no distinct bag counter: rwuniq keeps the sources with exactly one dIP
        f"{theirs_select} --all-destination=stdout "
        f"| rwuniq --fields=sip --threshold=distinct:dip=1-1 --ipv6-policy=asv4 --no-titles --delimited "
        f"--copy-input=stdout --output-path={out}.dests.txt | rwbag --bag-file=sIPv4,flows,{out}.flows.rwbag"
        f" && rwbagtool --maxcounter=10 --coverset {out}.flows.rwbag --output-path={out}.f.rwset"
        f" && cut -d'|' -f1 {out}.dests.txt | rwsetbuild stdin {out}.d.rwset"
        f" && rwsettool --intersect {out}.f.rwset {out}.d.rwset --output-path={out}.fd.rwset"
        f" && {theirs_select} --sipset={out}.fd.rwset --pass-destination={out}.fd.rw",
    )
    operations = [
        ("start-up: stats --help", f"{VLF} stats --help", "rwstats --help"),
        ("start-up: cut one record", f"{VLF} cut --num-recs=1 {flows}", f"rwcut --num-recs=1 {rw}"),
        ("cut (all fields of every record)", f"{VLF} cut {flows} > /dev/null", f"rwcut --ipv6-policy=asv4 {rw} > /dev/null"),
        ("filter S/SA to a file", f"{VLF} filter --proto=6 --flags-all=S/SA --pass-destination={out}.parquet {flows}",
         f"rwfilter --proto=6 --flags-all=S/SA --pass-destination={out}.rw {rw}"),
        # uncompressed records, as rwfilter writes them: an Arrow IPC stream file
        ("filter S/SA to an Arrow file", f"{VLF} filter --proto=6 --flags-all=S/SA --pass-destination={out}.arrow {flows}",
         f"rwfilter --proto=6 --flags-all=S/SA --pass-destination={out}.rw {rw}"),
        ("stats top-10 sIP by records", f"{VLF} stats --fields=sip --count=10 {flows} > /dev/null",
         f"rwstats --fields=sip --count=10 {rw} > /dev/null"),
        ("uniq sIP", f"{VLF} uniq --fields=sip {flows} > /dev/null", f"rwuniq --fields=sip {rw} > /dev/null"),
        ("uniq sIP with distinct:dIP", f"{VLF} uniq --fields=sip --values=records,distinct:dip {flows} > /dev/null",
         f"rwuniq --fields=sip --values=records,distinct:dip {rw} > /dev/null"),
        ("set of sIPs", f"{VLF} set --sip-file={out}.set {flows}", f"rwset --sip-file={out}.rwset {rw}"),
        ("bag of sIP flows", f"{VLF} bag --sip-flows={out}.bag {flows}", f"rwbag --sip-flows={out}.rwbag {rw}"),
        # over the archive, SiLK reading its own; after the runs, the last run's outputs are compared
        ("VLF-f recipe over the archive", *f_set, archive_env, lambda: check_sets(out, env, "f")),
        ("VLF-fd recipe (f, d, intersect, pull flows)", *fd_recipe, archive_env,
         lambda: check_sets(out, env, "f", "d", "fd")),
    ]
    operations = [op if len(op) == 5 else (*op, env, None) for op in operations]
    width = max(len(op[0]) for op in operations)
    print(f"{count:,} flows; medians of {args.runs} runs; ratio = vlf / SiLK wall time (above 1: vlf is slower)")
    print(f"{'operation':<{width}} {'vlf s':>8} {'SiLK s':>8} {'ratio':>7} {'vlf MB':>8} {'SiLK MB':>8}")
    checked = []
    for name, ours, theirs, theirs_env, check in operations:
        results = {"vlf": [], "silk": []}
        for _ in range(args.runs):
            # each tool's outputs have their own names: both stay until the next run, for the check
            for leftover in out.parent.glob(out.name + ".*"):
                leftover.unlink()
            for tool, command, tool_env in (("vlf", ours, env), ("silk", theirs, theirs_env)):
                results[tool].append(timed(command, tool_env))
        vlf_s = statistics.median(r[0] for r in results["vlf"])
        silk_s = statistics.median(r[0] for r in results["silk"])
        vlf_mb = max(r[1] for r in results["vlf"])
        silk_mb = max(r[1] for r in results["silk"])
        print(f"{name:<{width}} {vlf_s:8.2f} {silk_s:8.2f} {vlf_s / silk_s:7.2f} {vlf_mb:8.0f} {silk_mb:8.0f}", flush=True)
        if check:
            checked.append(f"{name}: {check()}")  # exits when the tools disagree
    print(f"archive rows: {ours_read[1]:,} {TYPES} flows read from {ours_read[0]} hourly files by each tool")
    for line in checked:
        print(line)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
