"""End to end through the UI's own path: `dagster dev` on 127.0.0.1, a backfill launched over
GraphQL as the web UI launches it, run by the daemon as a multi_run batch, then the checks' verdicts.

Marked ``e2e`` (about a minute): deselect with ``-m "not e2e"``.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from vlf_dagster.flows.site import load_site
from vlf_dagster.flows.storage import archive_files, hourly_path
from vlf_dagster.runs import write_instance_config
from vlf_dagster.assets.archive import HOURLY_ASSETS
from vlf_dagster.simulate import SimulationConfig, simulate

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e

LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status } ... on PythonError { message } } }"""
RUNS = "{ runsOrError { ... on Runs { results { status tags { key value } } } } }"
CHECKS = """query($name: String!) { assetCheckExecutions(assetKey: {path: ["hourly_flows"]}, checkName: $name, limit: 10) {
  status partition } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def query(self, text: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            out = json.loads(response.read())
        assert "errors" not in out, out["errors"]
        return out["data"]


def _wait(what: str, probe, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def dagster_dev(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    site = load_site(ROOT / "vlf_dagster" / "site.default.toml")
    site = site.with_window(site.start, site.start + timedelta(days=1))
    (data / "site.toml").write_text(site.to_toml())
    simulate(site, SimulationConfig(days=1, sources=300, seed=3), data)
    home = tmp_path / "home"
    write_instance_config(home)
    port = _free_port()
    env = {**os.environ, "VLF_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "GX_ANALYTICS_ENABLED": "false",
           "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "dagster-dev.log").open("w")
    # its own process group: `dagster dev` forks a webserver, a daemon and code servers
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        server = Server(port)
        _wait("the code location to load", lambda: server.query("{ assetNodes { assetKey { path } } }")["assetNodes"], 180)
        yield server, site, data
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_backfill_from_the_ui_runs_through_the_daemon(dagster_dev):
    server, site, data = dagster_dev
    assets = {tuple(n["assetKey"]["path"]) for n in server.query("{ assetNodes { assetKey { path } } }")["assetNodes"]}
    assert {("hourly_flows",), ("vlf_report",), ("sql_catalog",)} <= assets

    hours = [site.start + timedelta(hours=h) for h in range(4)]
    params = {"partitionNames": [f"{h:%Y-%m-%d-%H:%M}" for h in hours],
              # the hourly assets are one step (hourly_archive): the UI selects them together
              "assetSelection": [{"path": [name]} for name in HOURLY_ASSETS]}
    launched = server.query(LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    status = _wait("the backfill to finish", lambda: (
        s if (s := server.query(BACKFILL, {"id": launched["backfillId"]})["partitionBackfillOrError"]["status"])
        not in ("REQUESTED", "CANCELING", "FAILING") else None), 300, every=2)
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status

    # BackfillPolicy.multi_run: the four hours are one run, tagged with the range
    runs = server.query(RUNS)["runsOrError"]["results"]
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS"
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert tags["dagster/backfill"] == launched["backfillId"]
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        params["partitionNames"][0], params["partitionNames"][-1])
    # exactly the four hours landed, with their bags
    archived_hours = {p.name.rsplit("_", 1)[1][:11] for p in archive_files(data, [site.start + timedelta(hours=h) for h in range(24)])}
    assert archived_hours == {f"{h:%Y%m%d.%H}" for h in hours}
    assert all(hourly_path(data, "hourly_source_bags", h).exists() for h in hours)
    assert not hourly_path(data, "hourly_source_bags", site.start + timedelta(hours=4)).exists()
    # both blocking checks ran once over the batch and passed.  Dagster 1.13 records a ranged run's
    # check verdict without a partition and lists the batch's hours as SKIPPED for the check.
    for check in ("archive_records_valid", "archive_expectations"):
        executions = server.query(CHECKS, {"name": check})["assetCheckExecutions"]
        verdicts = [e for e in executions if e["partition"] is None]
        assert [e["status"] for e in verdicts] == ["SUCCEEDED"], (check, executions)
        assert not [e for e in executions if e["status"] in ("FAILED", "EXECUTION_FAILED")], (check, executions)
