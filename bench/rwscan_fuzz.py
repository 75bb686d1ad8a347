"""`vlf scan` against SiLK's rwscan on random flows: every model, byte for byte.

    .venv/bin/python bench/rwscan_fuzz.py [--trials 30] [--seed 12] [--silk build/silk]

Each trial draws 2-9 sources, each one protocol (ICMP, TCP or UDP) and 25-199 records: sweeps or
scattered destinations over a few /24s, scan-like (bare SYNs, one-packet probes, one source port) or
not, low and high ports, source port 65535.  The records are written as a SiLK file, sorted with
rwsort --fields=sip,proto,dip,stime, and both tools run every --scan-model with --model-fields on
the sorted file.  Prints the trials whose outputs differ and how many scanner rows were compared.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from silk_golden import silk_env  # noqa: E402

VLF = str(Path(sys.executable).with_name("vlf"))


def _records(rng: np.random.Generator, trial: int, start_ms: int) -> list[dict]:
    rows = []
    for s in range(int(rng.integers(2, 10))):
        proto, n = int(rng.choice([1, 6, 17])), int(rng.integers(25, 200))
        base, spread = 0x0A011800 + int(rng.integers(0, 600)), int(rng.choice([3, 40, 300, 1000]))
        sweep, scanlike = rng.random() < 0.6, rng.random() < 0.6
        for i in range(n):
            if proto == 1:
                dport = int(rng.choice([2048, 2048, 3328, 0]))  # echo, echo, timestamp, echo reply
            elif proto == 17:
                dport = int(rng.choice([137, 53, 161, int(rng.integers(0, 1100))]))
            else:
                dport = int(rng.integers(0, 65536))
            rows.append({
                "sIP": f"4.0.{trial}.{s + 1}",
                "dIP": base + (i if sweep and rng.random() < 0.85 else int(rng.integers(0, spread))),
                "protocol": proto, "dPort": dport,
                "sPort": 40000 if scanlike else int(rng.choice([int(rng.integers(0, 65536)), 40000 + s, 65535])),
                "flags": (2 if scanlike else int(rng.choice([2, 18, 16, 4, 20, 6]))) if proto == 6 else 0,
                "packets": 1 if scanlike else int(rng.integers(1, 6)),
                "bytes": int(rng.integers(40, 90)) if scanlike else int(rng.integers(40, 3000)),
                "sTime": start_ms + int(rng.integers(0, 3_600_000)), "duration": int(rng.integers(0, 60_000)),
            })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--silk", default=str(ROOT / "build" / "silk"))
    args = parser.parse_args()
    from conftest import START, flows
    from vlf_dagster.flows.sets import IPSet
    from vlf_dagster.flows.storage import hour_ms
    from vlf_dagster.verbs.common import write_flows

    env = silk_env(Path(args.silk).resolve())
    env["SILK_CLOBBER"] = "1"
    silk_bin = Path(args.silk).resolve() / "bin"
    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="vlf-rwscan-fuzz-"))
    inside = work / "inside.set"
    inside.write_bytes(IPSet.from_strings([f"10.1.24.{i}" for i in range(0, 256, 3)]).to_silk_bytes())
    differ, rows_compared, by_proto = [], 0, {}
    for trial in range(args.trials):
        write_flows(flows(_records(rng, trial, hour_ms(START))), str(work / "u.rw"), silk=True)
        subprocess.run([silk_bin / "rwsort", "--fields=sip,proto,dip,stime", f"--output-path={work / 's.rw'}",
                        str(work / "u.rw")], check=True, env=env)
        for model in (0, 1, 2):
            options = [f"--scan-model={model}", f"--trw-internal-set={inside}", "--model-fields", str(work / "s.rw")]
            silk = subprocess.run([silk_bin / "rwscan", *options], capture_output=True, check=True, env=env).stdout
            ours = subprocess.run([VLF, "scan", *options], capture_output=True, check=True, env=env).stdout
            for line in silk.decode().splitlines()[1:]:
                proto = line.split("|")[1].strip()
                by_proto[proto] = by_proto.get(proto, 0) + 1
                rows_compared += 1
            if silk != ours:
                differ.append((trial, model))
    print(f"{args.trials} trials x 3 models: {len(differ)} differ {differ if differ else ''}")
    print(f"scanner rows compared: {rows_compared} (by protocol: {dict(sorted(by_proto.items()))})")


if __name__ == "__main__":
    main()
