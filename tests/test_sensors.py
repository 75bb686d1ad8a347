"""The landing sensor reports new and changed landing hours as landing_flows, once each."""

import json
import os
from datetime import timedelta

import dagster as dg

from conftest import START, flows, write_landing
from vlf_dagster.orchestration.definitions import build_definitions
from vlf_dagster.orchestration.sensors import SETTLE_NS, changed_hours, LandingHour


def _evaluate(defs, cursor=None, instance=None):
    sensor = defs.resolve_sensor_def("landing_sensor")
    with dg.instance_for_test() as fresh:
        context = dg.build_sensor_context(instance=instance or fresh, cursor=cursor, definitions=defs)
        result = sensor.evaluate_tick(context)
    assert not result.run_requests  # it reports data; automation launches the runs
    keys = [e.partition for e in result.asset_events]
    assert all(e.asset_key == dg.AssetKey("landing_flows") for e in result.asset_events)
    return keys, result.cursor


def test_landing_sensor_reports_new_and_late_hours(site_file):
    defs = build_definitions(site_file)
    assert _evaluate(defs)[0] == []
    write_landing(site_file, START, flows([{"sIP": "4.0.0.1"}]))
    path = write_landing(site_file, START + timedelta(hours=2), flows([{"sIP": "4.0.0.2", "sTime": 0}]))
    keys, cursor = _evaluate(defs)
    assert keys == ["2006-04-01-00:00", "2006-04-01-02:00"]
    assert _evaluate(defs, cursor)[0] == []  # nothing new
    later = path.stat().st_mtime + 10
    os.utime(path, (later, later))  # late data replaces hour 02
    keys, cursor = _evaluate(defs, cursor)
    assert keys == ["2006-04-01-02:00"]
    write_landing(site_file, START + timedelta(days=30), flows([{"sIP": "4.0.0.3"}]))  # outside the window
    assert "2006-05-01-00:00" not in _evaluate(defs, cursor)[0]


def test_first_look_takes_hours_the_instance_holds_as_seen(site_file):
    """Switched on over an archive `vlf materialize` built, the sensor re-packs nothing."""
    defs = build_definitions(site_file)
    write_landing(site_file, START, flows([{"sIP": "4.0.0.1"}]))
    write_landing(site_file, START + timedelta(hours=1), flows([{"sIP": "4.0.0.2"}]))
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("hourly_flows", partition="2006-04-01-00:00"))
        keys, _ = _evaluate(defs, instance=instance)
    assert keys == ["2006-04-01-01:00"]


def test_cursor_stays_small_and_still_sees_a_late_stamped_file():
    minute = 60 * 10**9
    old = {f"2006-04-01-{h:02d}:00": LandingHour(1, 100, h * 60 * minute) for h in range(24)}
    changed, cursor = changed_hours(old, {}, set())
    assert len(changed) == 24 and set(cursor["recent"]) == {"2006-04-01-23:00"}  # only hours near the watermark
    assert len(json.dumps(cursor)) < 200
    # a slow spool renamed into place, stamped 5 minutes before the newest file already seen
    late = dict(old, **{"2006-04-01-22:00": LandingHour(2, 250, 23 * 60 * minute - 5 * minute)})
    assert changed_hours(late, cursor, set())[0] == ["2006-04-01-22:00"]
    # stamped earlier than the settle window: taken as already seen (the documented limit)
    too_old = dict(old, **{"2006-04-01-05:00": LandingHour(2, 250, 23 * 60 * minute - SETTLE_NS - minute)})
    assert changed_hours(too_old, cursor, set())[0] == []
