"""`vlf scan` against SiLK's rwsort | rwscan on the same records: wall time, flows/s, peak RSS.

    .venv/bin/python bench/scan_compare.py [--days 7] [--sources 100000] [--runs 3] [--silk build/silk]

Simulates a site (``vlf simulate``), puts its records in one Parquet file and the same records in
one SiLK flow file (``vlf cat --silk``), and the site's inside addresses that sent traffic in an
IPset (SiLK's format).  Then, ``--runs`` times each, alternately: ``vlf scan`` on the Parquet file
(unsorted: vlf groups the records itself) and ``rwsort --fields=sip,proto,dip,stime | rwscan`` on
the SiLK file (rwscan needs sorted input), both with rwscan's default model (TRW, then logistic
regression for TCP, UDP and ICMP).  Prints medians,
the vlf/SiLK ratio (below 1: vlf is faster) and whether the two outputs are the same bytes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from silk_compare import timed  # noqa: E402
from silk_golden import silk_env  # noqa: E402

VLF = str(Path(sys.executable).with_name("vlf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--sources", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--silk", default=str(ROOT / "build" / "silk"))
    args = parser.parse_args()
    import ipaddress

    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlf_dagster.flows.sets import IPSet
    from vlf_dagster.flows.site import load_site

    env = silk_env(Path(args.silk).resolve())
    env["SILK_CLOBBER"] = "1"
    work = Path(tempfile.mkdtemp(prefix="vlf-scan-"))
    try:
        data = work / "site"
        subprocess.run([VLF, "simulate", "--days", str(args.days), "--sources", str(args.sources), "--data-dir", str(data)],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        records = pa.concat_tables(pq.read_table(p) for p in sorted((data / "landing").rglob("*.parquet")))
        flows, rw, inside = work / "flows.parquet", work / "flows.rw", work / "inside.set"
        pq.write_table(records, flows)
        subprocess.run([VLF, "cat", "--silk", str(flows), "--output-path", str(rw)], check=True, env=env)
        site = load_site(data / "site.toml")
        networks = [ipaddress.ip_network(n) for n in site.internal_networks]
        sources = sorted(set(records.column("sIP").to_pylist()))
        inside.write_bytes(IPSet.from_strings([str(ipaddress.ip_address(a)) for a in sources
                                               if any(ipaddress.ip_address(a) in n for n in networks)]).to_silk_bytes())
        silk_bin = Path(args.silk).resolve() / "bin"
        out_vlf, out_silk = work / "vlf.txt", work / "silk.txt"
        vlf_cmd = f"{VLF} scan --trw-internal-set={inside} --output-path={out_vlf} {flows}"
        silk_cmd = (f"{silk_bin / 'rwsort'} --fields=sip,proto,dip,stime {rw} | "
                    f"{silk_bin / 'rwscan'} --trw-internal-set={inside} --output-path={out_silk} -")
        vlf_runs, silk_runs = [], []
        for _ in range(args.runs):
            for runs, command, out in ((vlf_runs, vlf_cmd, out_vlf), (silk_runs, silk_cmd, out_silk)):
                out.unlink(missing_ok=True)
                runs.append(timed(command, env))
        n = records.num_rows
        (vw, vr), (sw, sr) = [(statistics.median(s for s, _ in r), max(m for _, m in r)) for r in (vlf_runs, silk_runs)]
        scanners = len(out_vlf.read_text().splitlines()) - 1
        print(f"{n:,} flows ({args.days} days, {args.sources:,} sources), {scanners} scanners, medians of {args.runs}")
        print(f"vlf scan:               {vw:6.2f} s  {n / vw / 1e6:5.2f} M flows/s  peak RSS {vr:6.0f} MB")
        print(f"rwsort | rwscan (SiLK): {sw:6.2f} s  {n / sw / 1e6:5.2f} M flows/s  peak RSS {sr:6.0f} MB")
        print(f"vlf/SiLK wall time: {vw / sw:.2f}; same output bytes: {out_vlf.read_bytes() == out_silk.read_bytes()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
