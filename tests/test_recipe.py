"""The study's recipe as a shell pipeline of `vlf` verbs gives the same sets as the Dagster assets."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from conftest import START
from vlf_dagster.orchestration.definitions import build_definitions
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.site import load_site
from vlf_dagster.orchestration.runs import materialize_all
from vlf_dagster.simulate import SimulationConfig, simulate
from vlf_dagster.flows.segments import Segmented

ROOT = Path(__file__).resolve().parents[1]


def test_shell_recipe_equals_the_assets(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    site = load_site(ROOT / "vlf_dagster" / "site.default.toml").with_window(START, START + timedelta(days=2))
    (data / "site.toml").write_text(site.to_toml())
    simulate(site, SimulationConfig(days=2, sources=2000, seed=11), data)
    with dg.instance_for_test() as instance:
        materialize_all(build_definitions(data), instance, hours_per_run=48, echo=lambda *_: None)

    vlf = f"{sys.executable} -m vlf_dagster.cli"
    dates = "--start-date 2006/04/01 --end-date 2006/04/02"
    script = f"""
set -euo pipefail
{vlf} filter {dates} --type in,inweb,inicmp --pass-destination - \\
  | {vlf} bag --bag-file sIPv4,flows,flows.bag --bag-file sIPv4,distinct:dIP,dests.bag
{vlf} filter {dates} --pass-destination - | {vlf} bag --bag-file sIPv4,flows,- \\
  | {vlf} bagtool --maxcounter 10 --coverset --output-path vlf-f.set
{vlf} bagtool --maxcounter 1 --coverset dests.bag --output-path vlf-d.set
{vlf} settool --intersect vlf-f.set vlf-d.set --output-path vlf-fd.set
{vlf} filter {dates} --sipset vlf-fd.set --pass-destination vlf-flows.parquet
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLF_DATA_DIR": str(data)}
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for mine, asset in (("vlf-f.set", "vlf_f_set"), ("vlf-d.set", "vlf_d_set"), ("vlf-fd.set", "vlf_fd_set")):
        assert IPSet.read(tmp_path / mine) == IPSet.read(data / f"{asset}.set"), mine
    assert len(IPSet.read(tmp_path / "vlf-fd.set")) > 1000
    ours = pq.read_table(tmp_path / "vlf-flows.parquet").sort_by([("sTime", "ascending"), ("sIP", "ascending")])
    theirs = Segmented(data / "vlf_flows").read().sort_by([("sTime", "ascending"), ("sIP", "ascending")])
    assert ours.num_rows == theirs.num_rows
    assert ours.column("sIP").equals(theirs.column("sIP")) and ours.column("sTime").equals(theirs.column("sTime"))
