"""Run SiLK 3.19.1 on the conformance cases and keep its outputs as golden files for the tests.

    .venv/bin/python bench/silk_golden.py [--silk build/silk]

Builds SiLK from ../shared/silk/ into ``--silk`` when it is not there yet (about three minutes),
converts ``tests/silk/flows.parquet`` to a SiLK flow file with rwtuc (from ``vlf cut --delimited``
text), builds SiLK's own sIP set and sIP/dPort bags from it, runs every SiLK command of
``tests/silk_cases.py`` and writes its standard output to ``tests/silk/golden/<case>.txt``.
The tests then need no SiLK: they compare vlf's output with these files byte for byte.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from silk_cases import CASES, PIPELINES  # noqa: E402

SILK_SOURCE = ROOT.parent / "shared" / "silk"
if not SILK_SOURCE.is_dir():
    SILK_SOURCE = Path("/work/shared/silk")
RWTUC_FIELDS = ("sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,duration,sensor,in,out,nhIP,"
                "initialFlags,sessionFlags,attributes,application,class,type")


def silk_env(prefix: Path) -> dict[str, str]:
    if not (prefix / "bin" / "rwcut").exists():
        subprocess.run(["bash", str(SILK_SOURCE / "build-silk.sh"), str(prefix)], check=True)
    env = dict(os.environ)
    env["PATH"] = f"{prefix / 'bin'}:{env['PATH']}"
    env["SILK_CONFIG_FILE"] = str(prefix / "data" / "silk.conf")
    env["SILK_DATA_ROOTDIR"] = str(prefix / "data")
    env.pop("SILK_IPV6_POLICY", None)
    return env


SILK_FILES = ROOT / "tests" / "silk" / "files"


def write_silk_files(work: Path, env: dict[str, str]) -> None:
    """Small SiLK flow files in the formats SiLK writes, for the reader's tests: the first 300
    records of flows.parquet as rwtuc writes them (FT_RWIPV6ROUTING), zlib-compressed,
    big-endian, IPv4-only (FT_RWGENERIC), sorted by rwsort, and the mixed IPv4/IPv6 records."""
    SILK_FILES.mkdir(parents=True, exist_ok=True)
    first = work / "first.rw"
    subprocess.run(["rwfilter", "--proto=0-255", "--max-pass-records=300", f"--pass={first}", str(work / "flows.rw")], check=True, env=env)
    commands = {
        "routing.rw": ["rwcat", "--compression-method=none", "--output-path={out}", str(first)],
        "routing-zlib.rw": ["rwcat", "--compression-method=zlib", "--output-path={out}", str(first)],
        "routing-big-endian.rw": ["rwcat", "--byte-order=big", "--compression-method=none", "--output-path={out}", str(first)],
        "generic-ipv4.rw": ["rwcat", "--ipv4-output", "--compression-method=none", "--output-path={out}", str(first)],
        "sorted-by-dport.rw": ["rwsort", "--fields=dport,stime", "--output-path={out}", str(first)],
        "mixed.rw": ["rwcat", "--compression-method=none", "--output-path={out}", str(work / "mixed.rw")],
    }
    setbuild = str(ROOT / "tests" / "silk" / "setbuild.txt")
    ipv6 = str(ROOT / "tests" / "silk" / "ipv6.txt")
    commands.update({
        # IP sets in each record version SiLK writes: 2 (IPv4 default), 3 (IPv6 default), 4, 5; zlib
        "sip-v2.set": ["rwset", "--sip-file={out}", str(first)],
        "setbuild-v4.set": ["rwsetbuild", "--record-version=4", setbuild, "{out}"],
        "ipv6-v3.set": ["rwsetbuild", ipv6, "{out}"],
        "ipv6-v4.set": ["rwsetbuild", "--record-version=4", ipv6, "{out}"],
        "ipv6-v5.set": ["rwsetbuild", "--record-version=5", ipv6, "{out}"],
        "setbuild-zlib.set": ["rwsetbuild", "--compression-method=zlib", setbuild, "{out}"],
        # bags: IPv4 address, port, sensor and flags keys; an IPv6 address bag; an any-IPv4 sum
        "sip-flows.bag": ["rwbag", "--bag-file=sIPv4,flows,{out}", str(first)],
        "dport-bytes.bag": ["rwbag", "--bag-file=dPort,sum-bytes,{out}", str(first)],
        "sensor-packets.bag": ["rwbag", "--bag-file=sensor,sum-packets,{out}", str(first)],
        "flags-flows.bag": ["rwbag", "--bag-file=flags,flows,{out}", str(first)],
        "sipv6-bytes.bag": ["rwbag", "--bag-file=sIPv6,sum-bytes,{out}", str(work / "mixed.rw")],
    })
    # SiLK's optional block compressions: only a SiLK built with libsnappy-dev and liblzo2-dev
    # installed has them (its configure finds the libraries); otherwise the kept files stay
    methods = subprocess.run(["rwcat", "--version"], env=env, capture_output=True, text=True).stdout
    compressed = {
        "routing-snappy.rw": ("snappy", ["rwcat", "--compression-method=snappy", "--output-path={out}", str(first)]),
        "routing-lzo1x.rw": ("lzo1x", ["rwcat", "--compression-method=lzo1x", "--output-path={out}", str(first)]),
        "setbuild-snappy.set": ("snappy", ["rwsetbuild", "--compression-method=snappy", setbuild, "{out}"]),
        "sip-flows-lzo.bag": ("lzo1x", ["rwbag", "--compression-method=lzo1x", "--bag-file=sIPv4,flows,{out}", str(first)]),
    }
    for name, (method, argv) in compressed.items():
        if method in methods:
            commands[name] = argv
        else:
            print(f"{name}: kept as it is (this SiLK has no {method})")
    for name, argv in commands.items():
        out = SILK_FILES / name
        out.unlink(missing_ok=True)
        subprocess.run([a.format(out=out) for a in argv], check=True, env=env)
    for name in [n for n in commands if n.endswith((".set", ".bag")) and n not in compressed]:  # what SiLK prints of each
        tool = "rwsetcat" if name.endswith(".set") else "rwbagcat"
        extra = ["--cidr-blocks"] if name.endswith(".set") else []
        done = subprocess.run([tool, *extra, str(SILK_FILES / name)], check=True, env=env, capture_output=True, text=True)
        (SILK_FILES / f"{name}.txt").write_text(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--silk", default=str(ROOT / "build" / "silk"), help="SiLK install prefix (built here if missing)")
    args = parser.parse_args()
    env = silk_env(Path(args.silk).resolve())
    golden = ROOT / "tests" / "silk" / "golden"
    golden.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        text = subprocess.run([sys.executable, "-m", "vlf_dagster.cli", "cut", str(ROOT / "tests" / "silk" / "flows.parquet"),
                               f"--fields={RWTUC_FIELDS}", "--delimited", "--no-titles", "--timestamp-format=epoch",
                               "--integer-sensors"], check=True, capture_output=True, text=True).stdout
        (work / "flows.txt").write_text(text)
        # --no-titles: without it rwtuc takes the first record for a title line
        subprocess.run(["rwtuc", f"--fields={RWTUC_FIELDS}", "--no-titles", "--column-sep=|", f"--output-path={work / 'flows.rw'}",
                        str(work / "flows.txt")], check=True, env=env)
        subprocess.run(["rwset", f"--sip-file={work / 'sip.set'}", str(work / "flows.rw")], check=True, env=env)
        subprocess.run(["rwbag", f"--sip-flows={work / 'sip.bag'}", f"--dport-flows={work / 'dport.bag'}", str(work / "flows.rw")],
                       check=True, env=env)
        subprocess.run(["rwbag", f"--bag-file=sensor,flows,{work / 'sensor.bag'}", f"--bag-file=flags,flows,{work / 'flags.bag'}",
                        f"--bag-file=sTime,flows,{work / 'stime.bag'}", str(work / "flows.rw")], check=True, env=env)
        subprocess.run(["rwbag", f"--dip-flows={work / 'dip.bag'}", str(work / "flows.rw")], check=True, env=env)
        subprocess.run(["rwbagtool", "--add", str(work / "sip.bag"), str(work / "dip.bag"), f"--output-path={work / 'sum.bag'}"],
                       check=True, env=env)
        subprocess.run(["rwtuc", "--column-sep=|", f"--output-path={work / 'mixed.rw'}", str(ROOT / "tests" / "silk" / "mixed.txt")],
                       check=True, env=env)
        subprocess.run(["rwsetbuild", str(ROOT / "tests" / "silk" / "ipv6.txt"), str(work / "v6.set")], check=True, env=env)
        subprocess.run(["rwsetbuild", str(ROOT / "tests" / "silk" / "setbuild.txt"), str(work / "built.set")], check=True, env=env)
        subprocess.run(["rwsetbuild", "--ip-ranges", str(ROOT / "tests" / "silk" / "setbuild-ranges.txt"), str(work / "ranges.set")],
                       check=True, env=env)
        names = {"text": ROOT / "tests" / "silk" / "tuc.txt", "flows": work / "flows.rw", "built_set": work / "built.set", "built_ranges_set": work / "ranges.set", "sip_set": work / "sip.set", "sip_bag": work / "sip.bag", "dport_bag": work / "dport.bag",
                 "v6_set": work / "v6.set", "sensor_bag": work / "sensor.bag", "flags_bag": work / "flags.bag",
                 "stime_bag": work / "stime.bag", "sip_plus_dip_bag": work / "sum.bag",
                 "mixed": work / "mixed.rw"}
        write_silk_files(work, env)
        for name, command, _ in CASES + PIPELINES:
            if "|" in command:  # a SiLK pipeline (rwsort ... | rwcut ...): run by the shell
                done = subprocess.run(command.format(**{k: shlex.quote(str(v)) for k, v in names.items()}), shell=True,
                                      capture_output=True, text=True, env=env)
            else:
                argv = [part.format(**{k: str(v) for k, v in names.items()}) for part in shlex.split(command)]
                done = subprocess.run(argv, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise SystemExit(f"{name}: {command} failed: {done.stderr.strip()}")
            (golden / f"{name}.txt").write_text(done.stdout)
            print(f"{name}: {len(done.stdout.splitlines())} lines")


if __name__ == "__main__":
    main()
