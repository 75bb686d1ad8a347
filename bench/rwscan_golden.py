"""Record SiLK rwscan's output for tests/test_scan.py (run once; the test needs no SiLK).

Takes the inbound TCP records of a simulated site (a data directory `make demo` built, with its
ground truth): the TCP, UDP and ICMP records of 30 planted scanners (their first 120 records each),
60 low-frequency probes and 40 sources of other populations, 30 sources made to look like vertical
scans of one host (34 bare SYNs each, so BLR judges them), and synthetic ICMP and UDP sweeps for
those models' counters (see _icmp_sweeps and _udp_sweeps); sorts them with rwsort --fields=sip,proto,dip,stime, and
runs rwscan with each --scan-model and --model-fields.  Writes tests/silk/scan/: the sorted SiLK
file, the internal set, and rwscan's outputs.

    .venv/bin/python bench/rwscan_golden.py --data-dir data --silk /work/silk
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "silk" / "scan"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--silk", default="/work/silk", help="SiLK's install prefix (bash ../shared/silk/build-silk.sh PREFIX)")
    args = parser.parse_args()
    from vlf_dagster.flows.sets import IPSet
    from vlf_dagster.verbs.common import write_flows

    data = Path(args.data_dir)
    truth = pq.read_table(data / "sim" / "ground_truth.parquet").to_pandas()
    rng = np.random.default_rng(3)
    pick = lambda pop, k: rng.choice(truth.loc[truth.population == pop, "sIP"].to_numpy(), k, replace=False)
    others = truth.loc[~truth.population.isin(["scanner", "vlf_scan"]), "sIP"].to_numpy()
    chosen = np.r_[pick("scanner", 30), pick("vlf_scan", 60), rng.choice(others, 40, replace=False)]
    files = sorted(str(p) for t in ("in", "inweb", "inicmp") for p in (data / "archive" / t).rglob("*.parquet"))
    flows = pa.concat_tables(pq.read_table(f) for f in files)
    flows = flows.filter(pc.and_(pc.is_in(flows.column("sIP"), pa.array(chosen, pa.uint32())),
                                 pc.is_in(flows.column("protocol"), pa.array([1, 6, 17], pa.uint8()))))
    # at most 120 records a source: the scanners' thousands add nothing to the comparison
    frame = flows.to_pandas()
    frame = frame.groupby("sIP", sort=False).head(120)
    # vertical scans: one source, one inside host, 34 ports, bare SYNs of one or two packets
    template = frame.iloc[0]
    vertical = []
    for k in range(30):
        for port in range(34):
            row = template.copy()
            row["sIP"], row["dIP"] = 0x05000000 + k, int(frame.dIP.iloc[k])
            row["sPort"], row["dPort"], row["flags"] = 40000 + port, 20 + port * (k + 1) % 1000, 0x02
            row["packets"], row["bytes"] = 1 + port % 2, 44 * (1 + port % 2)
            row["sTime"] = int(template.sTime) + k * 60_000 + port * 500
            vertical.append(row)
    import pandas as pd
    frame = pd.concat([frame, pd.DataFrame(vertical), _icmp_sweeps(template, rng),
                       _udp_sweeps(template, rng)], ignore_index=True)
    table = pa.Table.from_pandas(frame, schema=flows.schema, preserve_index=False)
    OUT.mkdir(parents=True, exist_ok=True)
    unsorted = OUT / "unsorted.rw"
    write_flows(table, str(unsorted), silk=True)
    bin_ = Path(args.silk) / "bin"
    sorted_rw = OUT / "flows.rw"
    sorted_rw.unlink(missing_ok=True)
    subprocess.run([bin_ / "rwsort", "--fields=sip,proto,dip,stime", "--compression-method=zlib", f"--output-path={sorted_rw}", str(unsorted)], check=True)
    unsorted.unlink()
    (OUT / "inside.set").write_bytes(IPSet.read(data / "active_inside_set.set").to_silk_bytes())  # rwscan reads SiLK's
    for model in (0, 1, 2):
        out = OUT / f"rwscan-model{model}.txt"
        out.unlink(missing_ok=True)
        subprocess.run([bin_ / "rwscan", f"--scan-model={model}", f"--trw-internal-set={OUT / 'inside.set'}",
                        "--model-fields", f"--output-path={out}", str(sorted_rw)], check=True)
        print(out, len(out.read_text().splitlines()) - 1, "scanners")
    for name, options in LAYOUTS.items():  # rwscan's text options, on the default model
        out = OUT / f"rwscan-{name}.txt"
        out.unlink(missing_ok=True)
        subprocess.run([bin_ / "rwscan", "--scan-model=2", f"--trw-internal-set={OUT / 'inside.set'}", *options,
                        f"--output-path={out}", str(sorted_rw)], check=True)


def _icmp_sweeps(template, rng):
    """ICMP sources for rwscan's ICMP model: sweeps across /24s, gaps, a whole /24 (its uint8
    counters wrap), mixed types and one address pinged again and again."""
    import pandas as pd

    base = 0x0A011800  # 10.1.24.0
    plans = [
        [base + i for i in range(300)],  # consecutive across two /24s
        [base + 3 * i for i in range(40)],  # every third address
        [base + 512 + i for i in range(256)] + [base + 768 + i for i in range(5)],  # a whole /24, then more
        list(rng.integers(base, base + 1024, 50)),  # scattered, some twice
        [base + 7] * 33,  # one address
        [base + i for i in range(0, 64, 2)] + [base + 256 + i for i in range(20)] + [base + 600 + i for i in range(9)],
    ]
    rows = []
    for k, dips in enumerate(plans):
        for i, dip in enumerate(dips):
            row = template.copy()
            row["sIP"], row["dIP"], row["protocol"] = 0x06000000 + k, int(dip), 1
            row["sPort"], row["dPort"], row["flags"] = 0, (8 if (k != 3 or i % 3) else 13) << 8, 0
            row["packets"], row["bytes"] = 1, 84
            row["sTime"] = int(template.sTime) + k * 3_600_000 + int(rng.integers(0, 600_000))
            rows.append(row)
    return pd.DataFrame(rows)


def _udp_sweeps(template, rng):
    """UDP sources for rwscan's UDP model: sweeps with steps and gaps across /24s, low ports in runs
    (one reaching 1023), high ports, source ports changing or fixed (and 65535), small and large
    packets."""
    import pandas as pd

    base = 0x0A011800
    plans = [
        ([base + i for i in range(120)], lambda i: 53, lambda i: 40000),  # a sweep, one port
        ([base + 2 * i for i in range(40)] + [base + 256 + i for i in range(30)], lambda i: 137, lambda i: 1024 + i),
        ([base + 7] * 40, lambda i: 1000 + i % 24, lambda i: 5000 + i % 3),  # one host, low ports up to 1023
        (list(rng.integers(base, base + 2048, 60)), lambda i: int(rng.integers(0, 2000)), lambda i: 65535 if i % 5 == 0 else 33000),
        ([base + i for i in range(0, 10)] + [base + 20 + i for i in range(15)] + [base + 60 + i for i in range(5)]
         + [base + 100 + i for i in range(30)] + [base + 300 + i for i in range(40)],
         lambda i: 161 + i % 3, lambda i: 2000),
        ([base + 5] * 10 + [base + 6] * 12 + [base + 700 + i for i in range(20)], lambda i: 500 + i, lambda i: 700 + i % 7),
    ]
    rows = []
    for k, (dips, dport, sport) in enumerate(plans):
        for i, dip in enumerate(dips):
            row = template.copy()
            row["sIP"], row["dIP"], row["protocol"] = 0x07000000 + k, int(dip), 17
            row["sPort"], row["dPort"], row["flags"] = int(sport(i)), int(dport(i)), 0
            row["packets"] = 1 + (i % 4 == 0) * 3
            row["bytes"] = row["packets"] * (40 if i % 3 else 400)
            row["sTime"] = int(template.sTime) + k * 3_600_000 + int(rng.integers(0, 600_000))
            rows.append(row)
    return pd.DataFrame(rows)


LAYOUTS = {"plain": [], "scandb": ["--scandb"], "delimited": ["--delimited=,", "--integer-ips"],
           "no-titles": ["--no-titles", "--no-final-delimiter", "--column-separator=;"]}


if __name__ == "__main__":
    main()
