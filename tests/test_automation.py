"""Declarative automation, tick by tick as the daemon runs it: a landing hour brings its hourly
assets, then its month, then study_months, then (at the window cron) every window asset; late and
replaced landing files re-pack their hour and the same chain follows; the result equals a rebuild
from scratch."""

from __future__ import annotations

import filecmp
import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from conftest import START, flows, write_landing
from vlf_dagster.orchestration.jobs import HOURLY_ASSETS
from vlf_dagster.orchestration.jobs import MONTHLY_ASSETS
from vlf_dagster.orchestration.definitions import build_definitions
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.site import SiteConfigError, site_from_mapping
from vlf_dagster.flows.storage import hour_ms, window_path
from vlf_dagster.orchestration.runs import AutomationTicks, materialize_all
from vlf_dagster.flows.segments import Segmented
from test_match_refresh import categorized, groups

H0, H1, H2 = START, START + timedelta(hours=1), START + timedelta(hours=2)
HOURS = [h.strftime("%Y-%m-%d-%H:%M") for h in (H0, H1, H2)]
MONTH = "2006-04-01"


def _site_file(data, cron="*/15 * * * *"):
    site = site_from_mapping({"internal_networks": ["10.1.24.0/22"], "sensors": ["S0"], "start": "2006-04-01T00:00",
                              "end": "2006-04-01T03:00", "automation": {"window_cron": cron}})
    data.mkdir(parents=True, exist_ok=True)
    (data / "site.toml").write_text(site.to_toml())
    return data


def _first_landing(data):
    """E: 10 flows in H0 (VLF-f); G: 1 flow in H0 answered; B: one flow an hour."""
    t0, t1 = hour_ms(H0), hour_ms(H1)
    write_landing(data, H0, flows(
        [{"sIP": "4.0.0.5", "dIP": "10.1.24.5", "dPort": 22, "sTime": t0 + i} for i in range(10)]  # E (10 flows)
        + [{"sIP": "4.0.0.7", "dIP": "10.1.24.7", "dPort": 25, "sTime": t0 + 100},  # G
           {"sIP": "10.1.24.7", "dIP": "4.0.0.7", "sPort": 25, "dPort": 1025, "sTime": t0 + 120},  # G's answer
           {"sIP": "4.0.0.2", "dIP": "10.1.24.6", "dPort": 7717, "protocol": 17, "sTime": t0 + 30}]))  # B
    write_landing(data, H1, flows([{"sIP": "4.0.0.2", "dIP": "10.1.24.6", "dPort": 7717, "protocol": 17,
                                    "sTime": t1 + 5}]))  # B


def _later_landing(data):
    """H2 lands: E's 11th flow (E leaves VLF-f). Late into H0: F's first and only flow."""
    write_landing(data, H2, flows([{"sIP": "4.0.0.5", "dIP": "10.1.24.5", "dPort": 22, "sTime": hour_ms(H2) + 1}]))
    write_landing(data, H0, flows([{"sIP": "4.0.0.6", "dIP": "10.1.24.9", "dPort": 3389, "sTime": hour_ms(H0) + 500}]),
                  name="late.parquet")


class Daemon(AutomationTicks):
    def __init__(self, data, instance):
        super().__init__(build_definitions(data), instance, clock=datetime(2026, 12, 2, 10, 1, tzinfo=timezone.utc))

    def settle(self) -> list[dict]:
        """Tick until the chain is done (one evaluation per stage, then a window cron tick)."""
        return [self.tick(minutes) for minutes in (1, 1, 1, 15, 1)]


WINDOW_OUTPUTS = [("source_flow_bag", "parquet"), ("source_destination_count_bag", "parquet"),
                  ("vlf_f_set", "set"), ("vlf_d_set", "set"), ("vlf_fd_set", "set")]
SEGMENTED_OUTPUTS = ["vlf_flows", "vlf_outbound_flows"]  # refreshed by source: the same rows, in base + delta


def _rows(data, name) -> list[dict]:
    return sorted(Segmented(data / name).read().to_pylist(), key=lambda r: sorted((k, str(v)) for k, v in r.items()))


def _vlf_fd(data) -> IPSet:
    return IPSet.read(window_path(data, "vlf_fd_set", "set"))


def _ips(*texts) -> IPSet:
    return IPSet.from_strings(texts)


@pytest.fixture
def live(tmp_path):
    data = _site_file(tmp_path / "data")
    with dg.instance_for_test() as instance:
        yield data, Daemon(data, instance)


def test_each_stage_follows_by_itself_and_late_data_equals_a_rebuild(live, tmp_path):
    data, daemon = live
    assert daemon.tick() == {}  # the first evaluation requests nothing
    _first_landing(data)
    assert daemon.land() == HOURS[:2]
    hourly = daemon.tick()
    assert hourly == {HOURS[0]: set(HOURLY_ASSETS), HOURS[1]: set(HOURLY_ASSETS)}
    # two consecutive hours: one ranged run, as the daemon's backfill batches them; its checks'
    # verdicts carry no partition, and the month still follows
    assert [label for kind, label, *_ in daemon.log if kind == "run"] == [f"{HOURS[0]}..{HOURS[1]}"]
    assert daemon.tick() == {MONTH: set(MONTHLY_ASSETS)}  # the month follows its hours
    assert daemon.tick() == {None: {"study_months"}}  # the window's index follows the month
    assert daemon.tick() == {}  # the window waits for its cron tick (*/15)
    window = daemon.tick(15)[None]
    assert {"source_flow_bag", "vlf_fd_set", "vlf_flows", "matched_vlf_flows", "vlf_report", "sql_catalog"} <= window
    assert not window & {"study_months", *HOURLY_ASSETS, *MONTHLY_ASSETS}
    assert daemon.tick(15) == {}  # nothing changed: no refresh at the next tick
    assert _vlf_fd(data) == _ips("4.0.0.2", "4.0.0.5", "4.0.0.7")
    # the blocking checks ran with their assets, in automation's runs
    for asset, check in [("source_flow_bag", "window_bag_conserves_flows"), ("vlf_fd_set", "vlf_fd_is_f_and_d"),
                         ("vlf_flows", "vlf_flows_match_the_bag")]:
        key = dg.AssetCheckKey(dg.AssetKey(asset), check)
        record = daemon.instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert record.status.value == "SUCCEEDED", check

    _later_landing(data)
    assert daemon.land() == [HOURS[0], HOURS[2]]  # H0 changed (late file), H2 is new
    steps = daemon.settle()
    assert steps[0] == {HOURS[0]: set(HOURLY_ASSETS), HOURS[2]: set(HOURLY_ASSETS)}  # H1 is not re-packed
    assert steps[1] == {MONTH: set(MONTHLY_ASSETS)}
    assert "vlf_flows" in steps[3][None]
    # E's 11th flow takes it out of VLF-f; F's late first flow brings it in
    assert _vlf_fd(data) == _ips("4.0.0.2", "4.0.0.6", "4.0.0.7")
    # the matching refresh matched again only the sources whose flows changed
    event = daemon.instance.get_latest_materialization_event(dg.AssetKey("matched_vlf_flows"))
    refresh = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert refresh["incremental"] is True and refresh["sources_rematched"] == 2  # E (gone) and F (new)

    # nothing counted twice: the window equals a rebuild from scratch over the same landing files
    scratch = _site_file(tmp_path / "scratch")
    _first_landing(scratch)
    _later_landing(scratch)
    with dg.instance_for_test() as instance:
        materialize_all(build_definitions(scratch), instance, hours_per_run=3, echo=lambda *_: None)
    for name, ext in WINDOW_OUTPUTS:
        assert filecmp.cmp(window_path(data, name, ext), window_path(scratch, name, ext), shallow=False), name
    for name in SEGMENTED_OUTPUTS:
        assert _rows(data, name) == _rows(scratch, name), name
    # matching: the same groups (ids are labels; a refresh numbers new groups above the old ones)
    assert groups(Segmented(data / "matched_vlf_flows").read()) == groups(Segmented(scratch / "matched_vlf_flows").read())
    assert categorized(Segmented(data / "vlf_categories").read()) == categorized(Segmented(scratch / "vlf_categories").read())
    for name in [*SEGMENTED_OUTPUTS, "matched_vlf_flows", "vlf_categories"]:  # the late hours were a refresh
        assert Segmented(data / name).manifest()["changes"][-1]["keys"] is not None, name
    def written(study):  # every table, text and part manifest (an empty piece's reason is in the manifest)
        return sorted(p.relative_to(study) for p in study.glob("reports/*/*/*") if p.suffix in (".csv", ".txt", ".json"))

    tables = written(data)
    assert tables == written(scratch) and len([t for t in tables if t.suffix == ".csv"]) > 15
    for table in tables:
        assert (data / table).read_text() == (scratch / table).read_text(), table


@pytest.mark.parametrize("setting, message", [
    ({"window_cron": "every hour"}, "expected five cron fields"),
    ({"window_cron": "99 * * * *"}, "is not a valid cron schedule"),
    ({"landing_check_seconds": 0}, "must be >= 1"),
    ({"enabeld": False}, "unexpected keyword argument 'enabeld'"),
])
def test_a_bad_automation_setting_is_one_line_naming_the_file(tmp_path, setting, message):
    data = tmp_path / "data"
    data.mkdir()
    text = "[automation]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in setting.items()) + "\n"
    (data / "site.toml").write_text(text)
    with pytest.raises(SiteConfigError) as raised:
        build_definitions(data)
    assert str(data / "site.toml") in str(raised.value) and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_automation_off_leaves_both_sensors_stopped(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "site.toml").write_text("[automation]\nenabled = false\n")
    defs = build_definitions(data)
    for name in ("landing_sensor", "study_automation"):
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.STOPPED
    on = build_definitions(_site_file(tmp_path / "on"))
    for name in ("landing_sensor", "study_automation"):
        assert on.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING
