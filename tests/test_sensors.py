"""The landing sensor requests new and changed landing hours, once each."""

import os
from datetime import timedelta

import dagster as dg

from conftest import START, flows, write_landing
from vlf_dagster.definitions import build_definitions


def _evaluate(defs, cursor=None):
    sensor = defs.resolve_sensor_def("landing_sensor") if hasattr(defs, "resolve_sensor_def") else defs.get_sensor_def("landing_sensor")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        result = sensor.evaluate_tick(context)
    return [r.partition_key for r in result.run_requests], result.cursor


def test_landing_sensor_requests_new_and_late_hours(site_file):
    defs = build_definitions(site_file)
    assert _evaluate(defs) == ([], "{}")
    write_landing(site_file, START, flows([{"sIP": "4.0.0.1"}]))
    path = write_landing(site_file, START + timedelta(hours=2), flows([{"sIP": "4.0.0.2", "sTime": 0}]))
    keys, cursor = _evaluate(defs)
    assert keys == ["2006-04-01-00:00", "2006-04-01-02:00"]
    assert _evaluate(defs, cursor)[0] == []  # nothing new
    later = path.stat().st_mtime + 10
    os.utime(path, (later, later))  # late data replaces hour 02
    assert _evaluate(defs, cursor)[0] == ["2006-04-01-02:00"]
    write_landing(site_file, START + timedelta(days=30), flows([{"sIP": "4.0.0.3"}]))  # outside the window
    assert "2006-05-01-00:00" not in _evaluate(defs, cursor)[0]
