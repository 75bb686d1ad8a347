"""End to end through the UI's own path: `dagster dev` on 127.0.0.1, a backfill launched over
GraphQL as the web UI launches it, run by the daemon as a multi_run batch, then the checks' verdicts.

Marked ``e2e`` (about a minute): deselect with ``-m "not e2e"``.
"""

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import flows, write_landing
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.site import AutomationSettings, load_site, site_from_mapping
from vlf_dagster.flows.storage import archive_files, hour_ms, hourly_path, window_path
from vlf_dagster.orchestration.jobs import HOURLY_ASSETS
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


def _processes_of(home) -> list[int]:
    """Processes whose command line names the instance folder (every process `dagster dev` starts
    passes its instance along)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(home).encode() in cmdline.read_bytes() and int(cmdline.parent.name) != os.getpid():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue  # it ended meanwhile
    return found


@contextlib.contextmanager
def _dagster_dev(tmp_path, data, home):
    """`vlf ui` (dagster dev: webserver, daemon, code server) on a free loopback port, over ``data``;
    stopped as `make ui` is, by a SIGTERM to it alone, which must take everything it started down."""
    port = _free_port()
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "dagster-dev.log").open("w")
    # its own process group, so that a failure below can still kill all of it
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlf_dagster.cli", "ui", "--data-dir", str(data), "--dagster-home", str(home),
         "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    stopped_cleanly = False
    try:
        server = Server(port)
        _wait("the code location to load", lambda: server.query("{ assetNodes { assetKey { path } } }")["assetNodes"], 180)
        yield server
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        left = _wait("every process of the UI to end", lambda: not _processes_of(home) or None, 10)
        stopped_cleanly = left
    finally:
        if not stopped_cleanly:
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in _processes_of(home):
                os.kill(pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def dagster_dev(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    site = load_site(ROOT / "vlf_dagster" / "site.default.toml")
    # automation off: this test launches the backfill itself, as a user does from the UI
    site = dataclasses.replace(site.with_window(site.start, site.start + timedelta(days=1)),
                               automation=AutomationSettings(enabled=False))
    (data / "site.toml").write_text(site.to_toml())
    simulate(site, SimulationConfig(days=1, sources=300, seed=3), data)
    with _dagster_dev(tmp_path, data, tmp_path / "home") as server:
        yield server, site, data


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


# the window assets that read the months directly (their staleness comes through study_months)
MONTH_READERS = ["source_flow_bag", "source_destination_count_bag", "active_inside_set", "vlf_flows",
                 "report_traffic_volumes", "sql_catalog"]
STALE = "{ assetNodes(assetKeys: [%s]) { assetKey { path } staleStatus } }" % ", ".join(
    '{path: ["%s"]}' % name for name in MONTH_READERS)


def _stale(server) -> dict[str, str]:
    return {n["assetKey"]["path"][0]: n["staleStatus"] for n in server.query(STALE)["assetNodes"]}


def _per_host_total(data) -> tuple[int, int] | None:
    """(sources, flows) of the report's Per Host Flow Distribution, Total row."""
    import pandas as pd

    found = sorted(data.glob("reports/*/report_per_host_flow_distribution/*.csv"))
    if not found:
        return None
    table = pd.read_csv(found[0])
    total = table[table.iloc[:, 0] == "Total"].iloc[0]
    return int(total.iloc[1]), int(total.iloc[4])


def _catalog_flows(data) -> int | None:
    import duckdb

    path = data / "catalog.duckdb"
    if not path.exists():
        return None
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT count(*) FROM flows").fetchone()[0]


def _vlf_fd(data):
    path = window_path(data, "vlf_fd_set", "set")
    return IPSet.read(path) if path.exists() else None


def test_a_live_site_keeps_itself_current_with_no_launch(tmp_path):
    """An open-ended site, hours landing one after another as a collector spools them: with no
    launch by the test, the daemon's sensors bring each hour through to the VLF sets, the report's
    Per Host Flow Distribution and the catalog; between refreshes the UI shows the window stale."""
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    first, second = now - timedelta(hours=3), now - timedelta(hours=2)
    data = tmp_path / "data"
    data.mkdir()
    site = site_from_mapping({"name": "live", "internal_networks": ["10.1.24.0/22"], "sensors": ["S0"],
                              "start": f"{now - timedelta(hours=6):%Y-%m-%dT%H:%M}",  # no end: a live site
                              "automation": {"window_cron": "* * * * *", "landing_check_seconds": 2,
                                             "evaluation_seconds": 5}})
    (data / "site.toml").write_text(site.to_toml())
    home = tmp_path / "home"
    home.mkdir()
    # the queue checked every second instead of 5 s, so the test waits on automation, not on polling
    (home / "dagster.yaml").write_text("run_coordinator:\n  module: dagster._core.run_coordinator\n"
                                       "  class: QueuedRunCoordinator\n  config:\n    dequeue_interval_seconds: 1\n")
    with _dagster_dev(tmp_path, data, home) as server:
        t = hour_ms(first)
        write_landing(data, first, flows(
            [{"sIP": "4.0.0.1", "dIP": "10.1.24.5", "dPort": 25, "sTime": t + 10}]  # X: 1 flow, 1 destination
            + [{"sIP": "4.0.0.9", "dIP": "10.1.24.9", "dPort": 80, "sTime": t + i} for i in range(12)]))  # Y: heavy
        started = time.monotonic()
        _wait("the first hour to reach the VLF sets, the report and the catalog", lambda: (
            _vlf_fd(data) == IPSet.from_strings(["4.0.0.1"]) and _per_host_total(data) == (2, 13)
            and _catalog_flows(data) == 13), 240, every=1)
        first_refresh = time.monotonic() - started
        assert set((stale := _stale(server)).values()) == {"FRESH"}, stale

        # the second hour: X's second destination takes it out of VLF-d, Z is new
        t = hour_ms(second)
        write_landing(data, second, flows([{"sIP": "4.0.0.1", "dIP": "10.1.24.6", "dPort": 25, "sTime": t + 1},
                                           {"sIP": "4.0.0.3", "dIP": "10.1.24.7", "dPort": 22, "sTime": t + 2}]))
        started = time.monotonic()
        # the month rolls up at once; the window waits for its next cron tick, shown stale meanwhile
        _wait("the window assets to show stale", lambda: set(_stale(server).values()) == {"STALE"}, 180, every=0.5)
        _wait("the second hour to reach the VLF sets, the report and the catalog", lambda: (
            _vlf_fd(data) == IPSet.from_strings(["4.0.0.3"]) and _per_host_total(data) == (3, 15)
            and _catalog_flows(data) == 15), 240, every=1)
        second_refresh = time.monotonic() - started
        _wait("the window to be fresh again", lambda: set(_stale(server).values()) == {"FRESH"}, 60)
        # every run came from automation (the landing sensor and the automation sensor), none by hand;
        # the window shows fresh once its assets are written, while the run may still close its last steps
        _wait("the runs to finish", lambda: all(r["status"] not in ("STARTED", "STARTING", "QUEUED", "NOT_STARTED")
                                                for r in server.query(RUNS)["runsOrError"]["results"]), 120)
        runs = server.query(RUNS)["runsOrError"]["results"]
        summary = [(r["status"], {t["key"]: t["value"] for t in r["tags"]}.get("dagster/partition")) for r in runs]
        assert runs and all(r["status"] == "SUCCESS" for r in runs), [x for x in summary if x[0] != "SUCCESS"]
        assert all({t["key"] for t in r["tags"]} & {"dagster/automation_condition", "dagster/sensor_name"}
                   for r in runs), [r["tags"] for r in runs]
        print(f"live site: first hour through in {first_refresh:.0f} s, second in {second_refresh:.0f} s, "
              f"{len(runs)} runs")
