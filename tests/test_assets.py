"""Assets through Dagster: one partition, a partition range, blocking checks, the whole graph."""

import dataclasses
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from conftest import START, flows, ip, write_landing
from vlf_dagster.artifacts import BY_NAME
from vlf_dagster.orchestration.assets import build_assets
from vlf_dagster.orchestration.partitions import hour_of_key, study_partitions
from vlf_dagster.orchestration.jobs import HOURLY_ASSETS
from vlf_dagster.orchestration.definitions import build_definitions
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.storage import archive_files, hour_ms
from vlf_dagster.orchestration.resources import GeoIPResource, VlfStore
from vlf_dagster.orchestration.runs import materialize_all, recorded_backfill
from vlf_dagster.flows.segments import Segmented

H0, H1, H2 = START, START + timedelta(hours=1), START + timedelta(hours=2)


def _plant(data):
    """Four outside sources with known VLF membership, spread over three hours."""
    t0, t1, t2 = hour_ms(H0), hour_ms(H1), hour_ms(H2)
    write_landing(data, H0, flows([
        {"sIP": "4.0.0.1", "dIP": "10.1.24.5", "dPort": 25, "sTime": t0 + 10},  # A: 1 flow, 1 dst
        {"sIP": "10.1.24.5", "dIP": "4.0.0.1", "sPort": 25, "dPort": 1025, "sTime": t0 + 20},  # answer to A
        {"sIP": "4.0.0.2", "dIP": "10.1.24.6", "dPort": 7717, "protocol": 17, "sTime": t0 + 30},  # B (1/3)
        {"sIP": "4.0.0.3", "dIP": "10.1.24.7", "dPort": 445, "sTime": t0 + 40},  # C (1/2)
    ]))
    write_landing(data, H1, flows(
        [{"sIP": "4.0.0.2", "dIP": "10.1.24.6", "dPort": 7717, "protocol": 17, "sTime": t1 + 5}]  # B (2/3)
        + [{"sIP": "4.0.0.4", "dIP": "10.1.24.9", "dPort": 80, "sTime": t1 + i} for i in range(12)]  # D: 12 flows
    ))
    write_landing(data, H2, flows([
        {"sIP": "4.0.0.2", "dIP": "10.1.24.6", "dPort": 7717, "protocol": 17, "sTime": t2 + 5},  # B (3/3)
        {"sIP": "4.0.0.3", "dIP": "10.1.24.8", "dPort": 445, "sTime": t2 + 6},  # C (2/2): 2nd destination
    ]))


@pytest.fixture
def planted(site_file):
    _plant(site_file)
    return site_file


def _assets(site):
    return build_assets(study_partitions(site))


def test_one_partition_through_materialize(planted, site):
    result = dg.materialize(
        _assets(site), selection=HOURLY_ASSETS,
        resources={"store": VlfStore(data_dir=str(planted)), "geoip": GeoIPResource()}, partition_key="2006-04-01-01:00",
    )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"archive_records_valid": True, "archive_expectations": True}
    assert [p.name for p in archive_files(planted, [H1])] == ["in-S0_20060401.01.parquet", "iw-S0_20060401.01.parquet"]
    assert archive_files(planted, [H0]) == []  # only the requested hour ran
    bag = pq.read_table(planted / "hourly_source_bags" / "dt=2006-04-01" / "hour=01.parquet").to_pylist()
    assert {(r["sIP"], r["records"]) for r in bag} == {(ip("4.0.0.2"), 1), (ip("4.0.0.4"), 12)}


def test_partition_range_in_one_run_each_hour_with_its_own_figures(planted, site):
    result = dg.materialize(
        _assets(site), selection=HOURLY_ASSETS,
        resources={"store": VlfStore(data_dir=str(planted)), "geoip": GeoIPResource()},
        tags={"dagster/asset_partition_range_start": "2006-04-01-00:00", "dagster/asset_partition_range_end": "2006-04-01-02:00"},
    )
    assert result.success
    mats = result.get_asset_materialization_events()
    by = lambda asset, key: {m.partition: m.materialization.metadata[key].value  # noqa: E731
                             for m in mats if m.asset_key.to_user_string() == asset}
    # one run, three hours: each hour's materialization counts that hour's records only (4 + 13 + 2)
    assert by("hourly_flows", "flows") == {"2006-04-01-00:00": 4, "2006-04-01-01:00": 13, "2006-04-01-02:00": 2}
    assert by("hourly_flows", "dagster/row_count") == by("hourly_flows", "flows")
    for asset, label in (("hourly_source_bags", "sources"), ("hourly_contact_pairs", "pairs")):
        for hour, count in by(asset, label).items():
            path = VlfStore(data_dir=str(planted)).path(BY_NAME[asset], hour_of_key(hour))
            assert count == pq.ParquetFile(path).metadata.num_rows  # the hour's own bag, not the batch's
        assert len(set(by(asset, label).values())) > 1
    assert len(archive_files(planted, [H0, H1, H2])) == 5


def test_failing_blocking_check_stops_downstream(site_file, site):
    write_landing(site_file, H0, flows([{"sIP": "4.0.0.1", "dIP": "10.1.24.5", "packets": 50, "bytes": 10}]))
    result = dg.materialize(
        _assets(site), selection=HOURLY_ASSETS,
        resources={"store": VlfStore(data_dir=str(site_file), quarantine_implausible=False), "geoip": GeoIPResource()},
        partition_key="2006-04-01-00:00", raise_on_error=False,
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["archive_records_valid"].passed is False
    assert evaluations["archive_records_valid"].metadata["packets > bytes"].value == 1
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert materialized == {"hourly_flows"}
    assert not (site_file / "hourly_source_bags").exists()


def test_whole_graph_gives_the_planted_vlf_sets(planted, tmp_path):
    defs = build_definitions(planted)
    with dg.instance_for_test() as instance:
        log = materialize_all(defs, instance, hours_per_run=2, echo=lambda *_: None)
        catalog = {name: instance.get_latest_materialization_event(dg.AssetKey(name)).asset_materialization.metadata
                   for name in ("source_flow_bag", "vlf_flows", "hourly_flows")}
        # the UI's Backfills tab shows the four runs as one completed backfill
        backfill = instance.get_backfill(log.backfill_id)
        in_backfill = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": log.backfill_id}))
    assert backfill.status.value == "COMPLETED_SUCCESS" and backfill.title == "vlf materialize"
    assert sorted(r.run_id for r in in_backfill) == sorted(log.run_ids)
    assert [r[0] for r in log.runs] == ["hourly_job", "hourly_job", "monthly_job", "window_job"]
    # the UI's catalog: row counts and column schemas read from the written files
    assert catalog["source_flow_bag"]["dagster/row_count"].value == 4
    columns = catalog["source_flow_bag"]["dagster/column_schema"].value.columns
    assert [(c.name, c.type) for c in columns] == [("sIP", "uint32"), ("sIPv6", "binary"), ("records", "uint64")]
    assert catalog["vlf_flows"]["dagster/row_count"].value == 4
    assert catalog["hourly_flows"]["dagster/row_count"].value > 0
    spec = defs.resolve_assets_def("hourly_flows").specs_by_key[dg.AssetKey("hourly_flows")]
    flow_columns = spec.metadata["dagster/column_schema"].columns
    assert flow_columns[0].name == "sIP" and "IPv4" in flow_columns[0].description and flow_columns[-1].name == "nhIPv6"
    read = lambda name: sorted(IPSet.read(planted / f"{name}.set").ipv4_array().tolist())
    A, B, C, D = (ip(f"4.0.0.{i}") for i in (1, 2, 3, 4))
    assert read("vlf_f_set") == [A, B, C]
    assert read("vlf_d_set") == [A, B, D]
    assert read("vlf_fd_set") == [A, B]
    assert read("active_inside_set") == [ip("10.1.24.5")]
    vlf_flows = Segmented(planted / "vlf_flows").read()
    assert sorted(vlf_flows.column("sIP").to_pylist()) == [A, B, B, B]
    hours = {r["sIP"]: r["hours"] for r in pq.read_table(planted / "source_hour_count_bag.parquet").to_pylist()}
    assert hours == {A: 1, B: 3, C: 2, D: 1}
    report = next((planted / "reports").glob("*/index.html")).read_text()
    assert "Per Host Flow Distribution" in report and "VLF-fd" in report
    table = (next((planted / "reports").glob("*/report_per_host_flow_distribution/*.csv"))).read_text().splitlines()
    assert table[1].startswith("1,1,25.00,25.00,1,5.56,5.56")  # A: 1 of 4 sources, 1 of 18 flows
    assert table[-1] == "Total,4,100.00,100.00,18,100.00,100.00"


def test_workspace_yaml_loads(site_file):
    env = {**os.environ, "VLF_DATA_DIR": str(site_file), "DAGSTER_HOME": str(site_file)}
    (site_file / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(root / "workspace.yaml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Validation successful" in done.stdout + done.stderr


def test_pipeline_vlf_sets_equal_the_simulator_ground_truth(tmp_path):
    """The done criterion of the foundation: VLF-fd from Dagster == the planted truth."""
    from vlf_dagster.flows.site import load_site
    from vlf_dagster.simulate import SimulationConfig, simulate

    data = tmp_path / "data"
    site = load_site(Path(__file__).resolve().parents[1] / "vlf_dagster" / "site.default.toml")
    site = site.with_window(START, START + timedelta(days=2))
    # a one-day horizon: the return model learns from the first day who comes back on the second
    site = dataclasses.replace(site, returns=dataclasses.replace(site.returns, horizon_days=1))
    data.mkdir()
    (data / "site.toml").write_text(site.to_toml())
    summary = simulate(site, SimulationConfig(days=2, sources=3000, seed=7), data)
    with dg.instance_for_test() as instance:
        materialize_all(build_definitions(data), instance, hours_per_run=48, echo=lambda *_: None)
    truth = pq.read_table(summary.ground_truth_path).to_pandas()
    expected_f = set(truth.loc[truth.flows.between(1, 10), "sIP"])
    expected_fd = set(truth.loc[truth.flows.between(1, 10) & (truth.destinations == 1), "sIP"])
    got = lambda name: set(IPSet.read(data / f"{name}.set").ipv4_array().tolist())
    assert got("vlf_f_set") == expected_f
    assert got("vlf_fd_set") == expected_fd
    assert 0.8 * len(truth) < len(expected_fd) < 0.9 * len(truth)  # ~91% VLF-f x ~93% single-destination
    flows_per_source = Segmented(data / "vlf_flows").read().to_pandas().groupby("sIP").size()
    assert flows_per_source.to_dict() == truth.set_index("sIP").loc[sorted(expected_fd), "flows"].to_dict()
    # the scanners asset: every planted scanner, and only scanning populations (issue 15)
    scanners = pq.read_table(data / "scanners.parquet").to_pandas()
    populations = truth.set_index("sIP").population
    planted = set(truth.loc[truth.population == "scanner", "sIP"])
    assert planted and planted <= set(scanners.sIP)
    assert set(populations.loc[sorted(set(scanners.sIP))]) <= {"scanner", "vlf_scan"}
    assert set(scanners.month) == {f"{START:%Y-%m}"} and set(scanners.scan_model) <= {1, 2}
    # the SQL catalog's VLF flows say which come from a scanner (the VLF tables with and without them)
    import duckdb
    with duckdb.connect(str(data / "catalog.duckdb"), read_only=True) as con:
        labelled = con.sql("SELECT sIP, bool_or(scanner), bool_and(scanner) FROM vlf_categories GROUP BY sIP").fetchall()
    assert labelled and all(any_ == all_ == (sip in set(scanners.sIP)) for sip, any_, all_ in labelled)
    # rwscan's models cannot call a VLF-fd source a scan: one destination host (TRW needs four misses
    # on distinct hosts) and at most 10 records (BLR needs 32); the label stays false on the VLF flows
    assert not any(any_ for _, any_, _ in labelled)
    # sources that will not return (issue 15): trained on the first day, the retirement set judged at the
    # window's end tracks every outside source, and retires only sources the window saw
    from vlf_dagster.analysis.steps.retirement import retirement_facts
    from vlf_dagster.analysis.steps.returns import METRICS_FILE
    metrics = json.loads((data / "return_model" / METRICS_FILE).read_text())
    assert metrics["status"] == "trained" and metrics["cutoffs"] == [f"{START + timedelta(days=1):%Y-%m-%d}"]
    retired = pq.read_table(data / "retirement_set.parquet").to_pandas()
    facts = retirement_facts(data / "retirement_set.parquet")
    assert facts["state"] == len(truth) and 0 < facts["retired"] == len(retired) < len(truth)
    assert set(retired.sIP) <= set(truth.sIP) and (retired.p_return < site.returns.retire_below).all()


def test_stale_rollup_is_caught_before_the_vlf_sets_use_it(planted, site):
    """Late data re-packs an hour; rebuilding the window bag without the monthly rollup must fail
    its conservation check (blocking), so the VLF sets are not rebuilt on a stale bag."""
    resources = {"store": VlfStore(data_dir=str(planted)), "geoip": GeoIPResource()}
    with dg.instance_for_test() as instance:
        materialize_all(build_definitions(planted), instance, hours_per_run=3, echo=lambda *_: None)
        write_landing(planted, H1, flows([{"sIP": "4.0.0.5", "dIP": "10.1.24.5", "sTime": hour_ms(H1) + 99}]), name="late.parquet")
        assert dg.materialize(_assets(site), selection=HOURLY_ASSETS, resources=resources,
                              partition_key="2006-04-01-01:00", instance=instance).success
        before = IPSet.read(planted / "vlf_f_set.set")
        result = dg.materialize(_assets(site), selection=["source_flow_bag", "vlf_f_set"], resources=resources,
                                instance=instance, raise_on_error=False)
        check = {e.check_name: e for e in result.get_asset_check_evaluations()}["window_bag_conserves_flows"]
        assert check.passed is False
        assert check.metadata["difference"].value == -1  # the late flow is archived but not in the monthly rollup
        assert {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()} == {"source_flow_bag"}
        assert IPSet.read(planted / "vlf_f_set.set") == before  # not rebuilt on the stale bag
        # rolling the month up again makes the window consistent
        assert dg.materialize(_assets(site), selection=["monthly_source_bags"], resources=resources,
                              partition_key="2006-04-01", instance=instance).success
        result = dg.materialize(_assets(site), selection=["source_flow_bag", "vlf_f_set"], resources=resources, instance=instance)
        assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {"window_bag_conserves_flows": True}
        assert "4.0.0.5" in IPSet.read(planted / "vlf_f_set.set")


def test_instance_config_turns_telemetry_and_the_sign_up_pop_up_off_and_keeps_the_rest(tmp_path):
    from vlf_dagster.orchestration.runs import write_instance_config

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nrun_monitoring:\n  enabled: true")  # an older home
    config = write_instance_config(home)
    text = config.read_text()
    assert text.count("telemetry:") == 1 and "run_monitoring:\n  enabled: true\nnux:\n  enabled: false\n" in text
    assert write_instance_config(home).read_text() == text  # idempotent
    with dg.DagsterInstance.from_config(str(home)) as instance:  # Dagster reads and accepts the file
        assert instance.get_settings("nux") == {"enabled": False} and not instance.telemetry_enabled
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 2
        assert queue.tag_concurrency_limits == [{"key": "vlf/automation", "limit": 1}]
    # a file that limits runs its own (older) way keeps its limit, and Dagster still accepts it
    own = tmp_path / "own"
    own.mkdir()
    (own / "dagster.yaml").write_text("run_queue:\n  max_concurrent_runs: 5\n")
    assert "concurrency:" not in write_instance_config(own).read_text()
    with dg.DagsterInstance.from_config(str(own)) as instance:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 5


def test_an_ipv6_source_goes_through_the_whole_graph(tmp_path):
    """IPv6 records are first-class: an outside IPv6 source with one flow to one inside host is VLF,
    its flow is extracted, matched and checked like any other, and the SQL catalog prints it."""
    import ipaddress

    from vlf_dagster.analysis.steps.catalog import connect
    from vlf_dagster.flows.site import site_from_mapping

    data = tmp_path / "data"
    data.mkdir()
    site = site_from_mapping({"internal_networks": ["10.1.24.0/22", "2001:db8:1::/48"], "sensors": ["S0", "S1"],
                              "start": "2006-04-01T00:00", "end": "2006-04-01T03:00"})
    (data / "site.toml").write_text(site.to_toml())
    _plant(data)
    packed = lambda a: ipaddress.ip_address(a).packed  # noqa: E731
    write_landing(data, H0, flows([{"sIP": 0, "dIP": 0, "sIPv6": packed("2001:db8::1"), "dIPv6": packed("2001:db8:1::5"),
                                    "attributes": 0x80, "dPort": 22, "sTime": hour_ms(H0) + 50}]), name="v6.parquet")
    with dg.instance_for_test() as instance:
        materialize_all(build_definitions(data), instance, hours_per_run=3, echo=lambda *_: None)  # raises if a check fails
        verdict = instance.get_latest_materialization_event(dg.AssetKey("vlf_flows")).asset_materialization.metadata
    assert "2001:db8::1" in IPSet.read(data / "vlf_fd_set.set")
    assert verdict["dagster/row_count"].value == 5  # A, B x3 and the IPv6 source
    assert connect(data).sql("SELECT ip_text(sIP, sIPv6) FROM vlf_flows WHERE sIPv6 IS NOT NULL").fetchall() == [
        ("2001:0db8:0000:0000:0000:0000:0000:0001",)]


def test_hourly_batches_on_two_processes_equal_one_process(planted, tmp_path):
    """`vlf materialize` runs batches of hours on worker processes against one instance: every
    hour is materialized once with its own figures, and the files equal a one-process run's."""
    from vlf_dagster.orchestration.runs import materialize_hourly, write_instance_config

    def run(home, workers):
        write_instance_config(home)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            log = materialize_hourly(build_definitions(planted), instance, hours_per_run=1, workers=workers,
                                     echo=lambda *_: None)
            flows = {}
            for key in ("2006-04-01-00:00", "2006-04-01-01:00", "2006-04-01-02:00"):
                records = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey("hourly_flows"), asset_partitions=[key]), limit=1).records
                flows[key] = records[0].asset_materialization.metadata["flows"].value
        files = {p.relative_to(planted): p.read_bytes() for p in sorted(planted.rglob("*.parquet"))
                 if p.parts[len(planted.parts)] in ("archive", "hourly_source_bags", "hourly_contact_pairs")}
        return log, flows, files

    one_log, one_flows, one_files = run(tmp_path / "home1", 1)
    two_log, two_flows, two_files = run(tmp_path / "home2", 2)
    assert len(two_log.run_ids) == len(set(two_log.run_ids)) == 3  # the site's three hours, a run each
    assert two_flows == one_flows == {"2006-04-01-00:00": 4, "2006-04-01-01:00": 13, "2006-04-01-02:00": 2}
    assert two_files == one_files and len(one_files) >= 5


def test_a_failed_materialization_is_recorded_as_a_failed_backfill(site_file):
    defs = build_definitions(site_file.parent)
    with dg.instance_for_test() as instance:
        with pytest.raises(RuntimeError):
            with recorded_backfill(defs, instance) as tags:
                raise RuntimeError("a run failed")
        backfill = instance.get_backfill(tags["dagster/backfill"])
    assert backfill.status.value == "COMPLETED_FAILED"
