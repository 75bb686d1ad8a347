"""The window's VLF flows and their possible answers come from the months' low-frequency extracts,
never from the archive: they must equal what a scan of the whole archive gives."""

from datetime import datetime, timezone

import dagster as dg
import pyarrow.parquet as pq

from conftest import flows, ip, write_landing
from vlf_dagster.orchestration.definitions import build_definitions
from vlf_dagster.flows.tools.filter.run import filter_files
from vlf_dagster.flows.tools.filter.spec import FilterSpec
from vlf_dagster.flows.schema import conform
from vlf_dagster.flows.flowtypes import INBOUND_TYPES, OUTBOUND_TYPES
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.site import site_from_mapping
from vlf_dagster.flows.storage import archive_files, hour_ms, hours_between
from vlf_dagster.orchestration.runs import materialize_all
from vlf_dagster.flows.segments import Segmented

APRIL = datetime(2006, 4, 30, 22, tzinfo=timezone.utc)
MAY = datetime(2006, 5, 1, 1, tzinfo=timezone.utc)


def _sorted(table):
    return conform(table).sort_by([("sTime", "ascending"), ("sIP", "ascending"), ("dIP", "ascending")]).to_pylist()


def test_extracts_give_the_archives_vlf_flows_and_answers_across_months(tmp_path):
    site = site_from_mapping({"internal_networks": ["10.1.24.0/22"], "sensors": ["S0"],
                              "start": "2006-04-30T22:00", "end": "2006-05-01T03:00"})
    data = tmp_path / "data"
    data.mkdir()
    (data / "site.toml").write_text(site.to_toml())
    a, m = hour_ms(APRIL), hour_ms(MAY)
    write_landing(data, APRIL, flows(
        [{"sIP": "4.0.0.1", "dIP": "10.1.24.5", "dPort": 25, "sTime": a + 1}]  # X: its only inbound flow
        + [{"sIP": "4.0.0.2", "dIP": "10.1.24.6", "dPort": 80, "sTime": a + 10 + i} for i in range(12)]  # H: heavy in April
        + [{"sIP": "4.0.0.3", "dIP": "10.1.24.7", "dPort": 445, "sTime": a + 100 + i} for i in range(6)]  # Y: 6 + 6
        + [{"sIP": "10.1.24.6", "dIP": "4.0.0.2", "sPort": 80, "dPort": 1025, "sTime": a + 20}]  # answer to H
    ))
    write_landing(data, MAY, flows(
        [{"sIP": "4.0.0.3", "dIP": "10.1.24.7", "dPort": 445, "sTime": m + 100 + i} for i in range(6)]  # Y: 12 in all
        + [{"sIP": "10.1.24.5", "dIP": "4.0.0.1", "sPort": 25, "dPort": 40000, "sTime": m + 5}]  # to X, a month later
        + [{"sIP": "4.0.0.4", "dIP": "10.1.24.9", "dPort": 22, "sTime": m + 7},  # Z: one flow, answered
           {"sIP": "10.1.24.9", "dIP": "4.0.0.4", "sPort": 22, "dPort": 1025, "sTime": m + 9}]
    ))
    with dg.instance_for_test() as instance:
        materialize_all(build_definitions(data), instance, hours_per_run=2, echo=lambda *_: None)

    vlf_fd = IPSet.read(data / "vlf_fd_set.set")
    assert sorted(vlf_fd.ipv4_array().tolist()) == [ip("4.0.0.1"), ip("4.0.0.4")]  # X and Z; not H, not Y
    hours = hours_between(site.start, site.window_end())
    from_archive = filter_files(archive_files(data, hours, list(INBOUND_TYPES)), FilterSpec(sipset=vlf_fd))
    assert _sorted(Segmented(data / "vlf_flows").read()) == _sorted(from_archive)
    for name in ("vlf_flows", "vlf_outbound_flows"):  # base and delta each in time order across the months
        segments = Segmented(data / name)
        assert segments.rows >= 2, name
        for path in segments.files():
            times = pq.read_table(path).column("sTime").to_pylist()
            assert times == sorted(times), name
    answers = filter_files(archive_files(data, hours, list(OUTBOUND_TYPES)), FilterSpec(dipset=vlf_fd))
    outbound = _sorted(Segmented(data / "vlf_outbound_flows").read())
    assert outbound == _sorted(answers)
    assert ip("4.0.0.1") in [r["dIP"] for r in outbound]  # X's answer in May, when X sent nothing
    # the extracts hold no heavy source of their month, and Y's flows in both months
    april = pq.read_table(data / "monthly_low_frequency_flows" / "month=2006-04.parquet").column("sIP").to_pylist()
    may = pq.read_table(data / "monthly_low_frequency_flows" / "month=2006-05.parquet").column("sIP").to_pylist()
    assert ip("4.0.0.2") not in april and april.count(ip("4.0.0.3")) == 6 and may.count(ip("4.0.0.3")) == 6
