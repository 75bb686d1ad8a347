"""The whole study with the data's durable copy on an S3 server, against local files only.

Simulates a site once, starts moto's S3-compatible server on 127.0.0.1 (its own process), then
alternately, ``--runs`` times each: `vlf materialize` with local files only, and with
``$VLF_OBJECT_STORE`` pointing at a fresh prefix of the bucket; after each run with the store, a
second data directory with nothing but the site file builds the window (the window job) from the
bucket alone.  Prints the median wall times, their ratio, the objects and bytes uploaded, and
whether the second machine's VLF sets equal the first's.

    .venv/bin/python bench/objectstore.py --days 7 --sources 20000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BUCKET = "vlf-bench"

WINDOW_FROM_BUCKET = """
import sys, dagster as dg
from vlf_dagster.orchestration.definitions import build_definitions
with dg.instance_for_test() as instance:
    assert build_definitions(sys.argv[1]).resolve_job_def("window_job").execute_in_process(instance=instance).success
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(cmd: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def _materialize(data: Path, env: dict) -> float:
    home = Path(tempfile.mkdtemp(prefix="vlf-bench-home-"))
    try:
        return _timed([str(BIN / "vlf"), "materialize", "--data-dir", str(data), "--dagster-home", str(home)], env)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _fresh_copy(data: Path, to: Path) -> Path:
    """The simulated site's landing files and site file, with nothing derived from them."""
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(data / "landing", to / "landing")
    shutil.copy(data / "site.toml", to / "site.toml")
    return to


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--sources", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", default="data/bench-objectstore")
    args = parser.parse_args()
    work = (ROOT / args.data_dir).resolve()
    site = work / "site"
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "AWS_ACCESS_KEY_ID": "vlf", "AWS_SECRET_ACCESS_KEY": "bench"}
    env.pop("VLF_OBJECT_STORE", None)
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run([str(BIN / "vlf"), "simulate", "--days", str(args.days), "--sources", str(args.sources),
                    "--data-dir", str(site)], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    port = _free_port()
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        from vlf_dagster.flows.objectstore import ObjectStore

        base_url = f"s3://{BUCKET}/{{prefix}}?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        os.environ.update(AWS_ACCESS_KEY_ID="vlf", AWS_SECRET_ACCESS_KEY="bench")
        ObjectStore(base_url.format(prefix="x") + "&allow_bucket_creation=true", work).fs.create_dir(BUCKET)
        local, remote, window, same = [], [], [], []
        objects = size = 0
        for run in range(args.runs):
            local.append(_materialize(_fresh_copy(site, work / "local"), env))
            url = base_url.format(prefix=f"run{run}")
            first = _fresh_copy(site, work / "first")
            remote.append(_materialize(first, {**env, "VLF_OBJECT_STORE": url}))
            infos = ObjectStore(url, first).infos(first)
            objects, size = len(infos), sum(i.size for i in infos.values())
            second = work / "second"
            shutil.rmtree(second, ignore_errors=True)
            second.mkdir()
            shutil.copy(site / "site.toml", second / "site.toml")
            window.append(_timed([sys.executable, "-c", WINDOW_FROM_BUCKET, str(second)],
                                 {**env, "VLF_OBJECT_STORE": url, "VLF_DATA_DIR": str(second)}))
            same.append(all((second / n).read_bytes() == (first / n).read_bytes()
                            for n in ("vlf_f_set.set", "vlf_d_set.set", "vlf_fd_set.set")))
            print(f"run {run + 1}: local {local[-1]:.1f} s, with the store {remote[-1]:.1f} s, "
                  f"window from the bucket {window[-1]:.1f} s", flush=True)
    finally:
        server.terminate()
        server.wait(10)
    lm, rm, wm = (statistics.median(x) for x in (local, remote, window))
    print(f"site: {args.days} days, {args.sources} sources; {objects} objects, {size / 1e6:.1f} MB in the bucket")
    print(f"vlf materialize, local files only:      median {lm:.1f} s")
    print(f"vlf materialize, uploading to S3:        median {rm:.1f} s  (ratio {rm / lm:.2f})")
    print(f"window job on an empty data directory:  median {wm:.1f} s  (its inputs fetched from the bucket)")
    print(f"second machine's VLF sets equal the first's: {all(same)}")


if __name__ == "__main__":
    main()
