"""Sources that will not return (issue 15, part 2): profiles, cutoffs, labels, the model and the retirement set."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlf_dagster.analysis.steps import retirement as T
from vlf_dagster.analysis.steps import returns as R
from vlf_dagster.analysis.steps.profiles import MS_PER_DAY, PROFILE_SCHEMA, RETIREMENT_SCHEMA, month_source_profiles
from vlf_dagster.analysis.tables.returns import backtest_table, figure_of_merit, retirement_summary
from vlf_dagster.flows.site import ReturnSettings, SiteConfigError, site_from_mapping

DAY0 = 13_000  # 2005-08-05, a day number
HOUR = MS_PER_DAY // 24


def _flows(rows: list[tuple]) -> pa.Table:
    """Archive-like records: (sIP, dIP, dPort, protocol, sTime)."""
    sip, dip, dport, proto, stime = (list(c) for c in zip(*rows))
    n = len(rows)
    return pa.table({
        "sIP": pa.array(sip, pa.uint32()), "dIP": pa.array(dip, pa.uint32()), "dPort": pa.array(dport, pa.uint16()),
        "protocol": pa.array(proto, pa.uint8()), "packets": pa.array([2] * n, pa.uint64()),
        "bytes": pa.array([100] * n, pa.uint64()), "sTime": pa.array(stime, pa.int64()),
        "sIPv6": pa.array([None] * n, pa.binary(16)), "dIPv6": pa.array([None] * n, pa.binary(16))})


def test_profiles_sum_each_source_day(tmp_path):
    t = DAY0 * MS_PER_DAY
    inbound = _flows([(1, 10, 445, 6, t + 5), (1, 11, 445, 6, t + HOUR + 7), (1, 10, 53, 17, t + 2 * HOUR),
                      (1, 10, 0, 1, t + MS_PER_DAY + 1), (2, 10, 80, 6, t + 9)])
    outbound = _flows([(10, 1, 1025, 6, t + 6), (10, 1, 1025, 6, t + 8), (10, 3, 80, 6, t + 9)])
    pq.write_table(inbound, tmp_path / "in.parquet")
    pq.write_table(outbound, tmp_path / "out.parquet")
    table = month_source_profiles([tmp_path / "in.parquet"], [tmp_path / "out.parquet"], tmp_path / "p.parquet")
    assert table.schema == PROFILE_SCHEMA
    rows = table.to_pandas()
    assert rows[["sIP", "day"]].values.tolist() == [[1, DAY0], [1, DAY0 + 1], [2, DAY0]]
    first = rows.iloc[0]
    assert (first.first_ms, first.last_ms, first.records, first.hours) == (t + 5, t + 2 * HOUR, 3, 3)
    assert (first.destinations, first.ports, first.tcp, first.udp, first.icmp, first.answered) == (2, 2, 2, 1, 0, 2)
    assert rows.iloc[1].icmp == 1 and rows.iloc[1].answered == 0 and rows.iloc[2].answered == 0
    assert pq.read_table(tmp_path / "p.parquet").equals(table)
    # a month without inbound files: an empty file of the schema
    assert month_source_profiles([], [], tmp_path / "e.parquet").num_rows == 0
    assert pq.read_schema(tmp_path / "e.parquet").names == PROFILE_SCHEMA.names


def test_a_month_s_profiles_refresh_the_days_whose_files_changed(tmp_path):
    """Day by day, the month's profiles equal one pass over all its files, and a refresh reads again
    only the days whose archive files changed (a new hour changes one day)."""
    from vlf_dagster.analysis.steps.profiles import refresh_month_profiles

    rng = np.random.default_rng(4)
    days = {}
    for d in range(3):
        t = (DAY0 + d) * MS_PER_DAY
        rows = [(int(s), 10 + int(s) % 7, 445, 6, t + int(rng.integers(0, MS_PER_DAY))) for s in rng.integers(1, 60, 200)]
        pq.write_table(_flows(rows), tmp_path / f"in-{d}.parquet")
        pq.write_table(_flows([(10, int(s), 80, 6, t + 5) for s in rng.integers(1, 60, 20)]), tmp_path / f"out-{d}.parquet")
        days[DAY0 + d] = ([tmp_path / f"in-{d}.parquet"], [tmp_path / f"out-{d}.parquet"])

    def whole(n):
        chosen = sorted(days)[:n]
        return month_source_profiles([f for d in chosen for f in days[d][0]], [f for d in chosen for f in days[d][1]],
                                     tmp_path / "whole.parquet")

    state = tmp_path / "state"
    table, read = refresh_month_profiles(days, tmp_path / "month.parquet", state)
    assert read == 3 and table.equals(whole(3)) and table.num_rows > 100
    assert (tmp_path / "month.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert refresh_month_profiles(days, tmp_path / "month.parquet", state)[1] == 0
    # a late record of the second day: that day alone is read again
    t = (DAY0 + 1) * MS_PER_DAY
    late = pa.concat_tables([pq.read_table(tmp_path / "in-1.parquet"), _flows([(999, 10, 23, 6, t + 1)])])
    pq.write_table(late, tmp_path / "in-1.parquet")
    table, read = refresh_month_profiles(days, tmp_path / "month.parquet", state)
    assert read == 1 and table.equals(whole(3)) and 999 in table.column("sIP").to_pylist()
    # a day gone (its hours removed): its rows go with it
    del days[DAY0 + 2]
    table, read = refresh_month_profiles(days, tmp_path / "month.parquet", state)
    assert read == 0 and table.equals(whole(2)) and not (state / f"day={DAY0 + 2}.parquet").exists()


def test_cutoffs_never_train_on_a_horizon_that_has_not_passed():
    start = datetime(2006, 2, 1, 5, tzinfo=timezone.utc)  # not at midnight: the first cutoff counts from the next one
    end = datetime(2006, 6, 1, tzinfo=timezone.utc)
    cut = R.cutoffs_of(start, end, None, 30)
    assert cut.labelled == []
    last = int(end.timestamp() * 1000) // MS_PER_DAY - 1
    cut = R.cutoffs_of(start, end, last, 30)
    first_midnight = int(datetime(2006, 2, 2, tzinfo=timezone.utc).timestamp() * 1000) // MS_PER_DAY
    assert cut.first == first_midnight + 30 and cut.final == last + 1
    # the cutoff of May 3 is not labelled: its horizon ends June 2, after the data
    assert cut.labelled == [first_midnight + 30, first_midnight + 60]
    for test in cut.labelled:
        assert all(c + 30 <= test for c in cut.trainable_before(test))
    assert cut.trainable_before(cut.labelled[0]) == [] and cut.trainable_before(cut.labelled[1]) == cut.labelled[:1]
    # data that stops early ends the cutoffs there, not at the window's end
    assert R.cutoffs_of(start, end, first_midnight + 40, 30).final == first_midnight + 41


def _random_profiles(rng, sources: int, days: int, returning_share: float = 0.3) -> pd.DataFrame:
    """Profiles where a share of the sources keep coming back (several days, weeks apart) and the
    rest are seen on one day: who returns is learnable from the history."""
    rows = []
    for s in range(sources):
        repeat = rng.random() < returning_share
        visits = rng.integers(3, 8) if repeat else 1
        gap = rng.integers(2, 6)
        first = rng.integers(0, days)
        for v in range(visits):
            d = first + v * gap
            if d < days:
                flows = int(rng.integers(2, 20)) if repeat else 1
                t = (DAY0 + d) * MS_PER_DAY + int(rng.integers(0, 20)) * HOUR
                rows.append((s + 1, DAY0 + d, t, t + HOUR, flows, int(repeat)))
    frame = pd.DataFrame(rows, columns=["sIP", "day", "first_ms", "last_ms", "records", "answered"])
    frame["sIPv6"] = None
    for c in ("packets", "bytes", "hours", "destinations", "ports", "tcp", "udp", "icmp"):
        frame[c] = frame["records"]
    frame["udp"] = frame["icmp"] = 0
    return frame


def _write_profiles(frame: pd.DataFrame, path: Path) -> Path:
    table = pa.Table.from_pandas(frame[PROFILE_SCHEMA.names], preserve_index=False).cast(PROFILE_SCHEMA)
    pq.write_table(table, path)
    return path


def test_cutoff_rows_equal_a_direct_count(tmp_path):
    rng = np.random.default_rng(1)
    frame = _random_profiles(rng, 400, 40)
    path = _write_profiles(frame, tmp_path / "p.parquet")
    import duckdb

    with duckdb.connect() as con:
        rows = R.cutoff_rows(con, R._profiles([path]), DAY0 + 20, 5, DAY0 + 35)
    for sip, group in frame.groupby("sIP"):
        before, after = group[group.day < DAY0 + 20], group[group.day >= DAY0 + 20]
        got = rows[rows.sIP == sip]
        if before.empty:
            assert got.empty
            continue
        row = got.iloc[0]
        assert row.flows == before.records.sum() and row.days == len(before)
        assert row.hours_since_last == ((DAY0 + 20) * MS_PER_DAY - before.last_ms.max()) / HOUR
        assert bool(row.returned) == bool(((after.day < DAY0 + 25)).any())
        assert bool(row.returned_ever) == bool((after.day < DAY0 + 35).any())


def _site_window(days: int):
    start = datetime.fromtimestamp(DAY0 * MS_PER_DAY / 1000, tz=timezone.utc)
    return start, datetime.fromtimestamp((DAY0 + days) * MS_PER_DAY / 1000, tz=timezone.utc)


def test_the_model_learns_who_returns_and_beats_the_rules(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    path = _write_profiles(_random_profiles(rng, 3000, 60), tmp_path / "p.parquet")
    start, end = _site_window(60)
    settings = ReturnSettings(horizon_days=7, retire_below=0.2, sample_sources=100_000, backtest_cutoffs=3)
    metrics = R.train_return_model([path], start, end, settings, tmp_path / "model")
    assert metrics["status"] == "trained" and len(metrics["backtest"]) == 3
    for test in metrics["backtest"]:
        cutoff = np.datetime64(test["cutoff"])
        assert all(np.datetime64(c) + np.timedelta64(7, "D") <= cutoff for c in test["trained_on"])  # never peeks
        ours, age_rule = test["model"], test["last_seen"]
        assert ours["auc"] > 0.9 and ours["auc"] >= age_rule["auc"] - 0.01
        assert ours["precision"] > 0.95 and ours["missed_share_of_returners"] < 0.2
        assert sum(b["rows"] for b in test["calibration"]) == ours["rows"]
    # written: the model, its training rows with labels, the metrics, the calibration figure
    folder = tmp_path / "model"
    assert metrics.pop("refreshed") is True and json.loads((folder / R.METRICS_FILE).read_text()) == metrics
    training = pq.read_table(folder / R.TRAINING_FILE).to_pandas()
    assert len(training) == metrics["training_rows"] and set(R.FEATURES[:-1]) <= set(training.columns)
    assert (folder / R.CALIBRATION_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = backtest_table(metrics)
    assert len(table) == 9 and "return model" in set(table.Method)
    assert "the one-flow rule" in figure_of_merit(metrics)
    # the same inputs give the same bytes
    before = {f: (folder / f).read_bytes() for f in (R.MODEL_FILE, R.TRAINING_FILE, R.METRICS_FILE, R.CALIBRATION_FILE)}
    R.train_return_model([path], start, end, settings, folder)
    assert {f: (folder / f).read_bytes() for f in before} == before

    retired = tmp_path / "retirement_set.parquet"
    facts = T.retirement_set([path], start, end, settings, folder, retired)
    table = pq.read_table(retired)
    assert table.schema.names == RETIREMENT_SCHEMA.names and table.num_rows == facts["retired"] > 0
    assert (table.column("p_return").to_numpy() < 0.2).all()
    assert table.column("sIP").to_pylist() == sorted(table.column("sIP").to_pylist())
    assert 0 < facts["shrink"] < 1 and T.retirement_facts(retired)["state"] == facts["state"]
    summary = retirement_summary(retired)
    assert summary["Retired"].iloc[0] == facts["retired"] and summary["Tracked sources"].iloc[0] == facts["state"]
    # judged a range of addresses at a time: the same rows and facts
    monkeypatch.setattr(T, "CHUNK_SOURCES", 700)
    assert T.retirement_set([path], start, end, settings, folder, tmp_path / "chunked.parquet") == facts
    assert pq.read_table(tmp_path / "chunked.parquet").equals(table)


def test_a_refresh_with_the_same_inputs_keeps_the_model_and_the_set(tmp_path):
    """A live site's hours within a day change neither the model's inputs nor the set's: both are kept.
    A late record after the last labelled horizon leaves the model and judges one source again, the
    set equal to one judged from scratch; a late record of an early day makes both again."""
    rng = np.random.default_rng(11)
    frame = _random_profiles(rng, 1500, 40)
    old = _write_profiles(frame[frame.day < DAY0 + 30], tmp_path / "month=1.parquet")
    new = _write_profiles(frame[frame.day >= DAY0 + 30], tmp_path / "month=2.parquet")
    start, end = _site_window(40)
    settings = ReturnSettings(horizon_days=7, retire_below=0.2, backtest_cutoffs=1)  # labels end on day 35
    folder, out = tmp_path / "model", tmp_path / "retired.parquet"
    states = tmp_path / "state_model", tmp_path / "state_set"

    def refresh():
        metrics = R.train_return_model([old, new], start, end, settings, folder, state=states[0])
        facts = T.retirement_set([old, new], start, end, settings, folder, out, state=states[1])
        return metrics["refreshed"], facts["judged"]

    def day_rows(rows, day, sip=None):
        moved = rows.assign(day=day, first_ms=day * MS_PER_DAY, last_ms=day * MS_PER_DAY)
        return moved.assign(sIP=sip) if sip is not None else moved

    assert refresh() == (True, 1500)
    made = {p: p.stat().st_mtime_ns for p in [out, *folder.iterdir()]}
    assert refresh() == (False, 0)
    assert {p: p.stat().st_mtime_ns for p in made} == made
    # the open day: records after the data's last midnight (the window ends there) change nothing
    month2 = pd.concat([frame[frame.day >= DAY0 + 30], day_rows(frame.iloc[:3], DAY0 + 40)])
    _write_profiles(month2, new)
    assert refresh() == (False, 0)
    # a new source on day 37: past the labels, so the model stays; the set judges that source alone
    _write_profiles(pd.concat([month2, day_rows(frame.iloc[:1], DAY0 + 37, 888_888)]), new)
    assert refresh() == (False, 1)
    assert T.retirement_facts(out)["state"] == 1501  # the new source is tracked
    T.retirement_set([old, new], start, end, settings, folder, tmp_path / "scratch.parquet")
    assert out.read_bytes() == (tmp_path / "scratch.parquet").read_bytes()
    # a late record of an early day: both again
    _write_profiles(pd.concat([frame[frame.day < DAY0 + 30], day_rows(frame.iloc[:1], DAY0 + 3, 999_999)]), old)
    assert refresh() == (True, 1502)


def test_too_short_a_history_says_so(tmp_path):
    rng = np.random.default_rng(3)
    path = _write_profiles(_random_profiles(rng, 200, 10), tmp_path / "p.parquet")
    start, end = _site_window(10)
    settings = ReturnSettings(horizon_days=30)
    metrics = R.train_return_model([path], start, end, settings, tmp_path / "model")
    assert metrics["status"].startswith("not trained") and "returns.horizon_days" in metrics["status"]
    assert metrics["backtest"] == [] and "not trained" in figure_of_merit(metrics)
    facts = T.retirement_set([path], start, end, settings, tmp_path / "model", tmp_path / "r.parquet")
    assert facts["retired"] == 0 and pq.read_table(tmp_path / "r.parquet").num_rows == 0
    # no profiles at all: the same, no error
    metrics = R.train_return_model([], start, end, settings, tmp_path / "none")
    assert metrics["training_rows"] == 0


def test_site_file_return_settings():
    site = site_from_mapping({"returns": {"horizon_days": 14, "retire_below": 0.05}})
    assert site.returns.horizon_days == 14 and site.returns.retire_below == 0.05
    assert "[returns]\nhorizon_days = 14" in site.to_toml()
    for bad in ({"horizon_days": 0}, {"retire_below": 1.5}, {"bogus": 1}):
        with pytest.raises(SiteConfigError, match="returns"):
            site_from_mapping({"returns": bad}, source="site.toml")


def test_the_labels_and_the_model_against_the_simulators_return_times(tmp_path):
    """Through the archive the hourly step packs: every planted returner's label at every cutoff is the
    simulator's truth (a visit within the horizon or not); the model ranks who returns better than
    the last-seen rule over all sources, and as well on the planted returners, whose first visit
    looks like any one-time source's (the simulator picks them at random within their population)."""
    from sklearn.metrics import roc_auc_score

    from vlf_dagster.analysis.steps.profiles import month_source_profiles
    from vlf_dagster.flows.flowtypes import INBOUND_TYPES, OUTBOUND_TYPES
    from vlf_dagster.flows.site import packaged_site
    from vlf_dagster.flows.storage import archive_files, hours_between
    from vlf_dagster.flows.archive import pack_hours
    from vlf_dagster.simulate import SimulationConfig, simulate
    from vlf_dagster.simulate.truth import return_truth, seen_within

    days, start = 28, datetime(2006, 4, 1, tzinfo=timezone.utc)
    site = packaged_site().with_window(start, start + pd.Timedelta(days=days).to_pytimedelta()).with_horizon_for(days)
    assert site.returns.horizon_days == 4  # a seventh of the window
    data = tmp_path / "data"
    data.mkdir()
    (data / "site.toml").write_text(site.to_toml())
    simulate(site, SimulationConfig(days=days, sources=4000, seed=5, returning=0.5), data)
    hours = hours_between(site.start, site.end)
    pack_hours(data, hours, site)  # what the hourly_archive asset runs
    month_source_profiles(archive_files(data, hours, list(INBOUND_TYPES)), archive_files(data, hours, list(OUTBOUND_TYPES)),
                          tmp_path / "profiles.parquet")
    metrics = R.train_return_model([tmp_path / "profiles.parquet"], site.start, site.end, site.returns, tmp_path / "model")
    assert metrics["status"] == "trained" and len(metrics["backtest"]) == 3
    training = pq.read_table(tmp_path / "model" / R.TRAINING_FILE).to_pandas()
    visits = return_truth(data)
    planted = training[training.sIP.isin(visits.sIP)]
    assert planted.cutoff.nunique() == len(metrics["cutoffs"]) and len(planted) > 500
    for cutoff, rows in planted.groupby("cutoff"):
        c = int(cutoff) * MS_PER_DAY
        truth = seen_within(visits, rows.sIP, c, c + site.returns.horizon_days * MS_PER_DAY)
        assert (rows.returned.to_numpy() == truth).all()
    for test in metrics["backtest"]:
        assert test["model"]["auc"] > test["last_seen"]["auc"] and test["model"]["precision"] > 0.9
    judged = planted[planted.p_return_backtest.notna()]
    gone = ~judged.returned.to_numpy(bool)
    assert 50 < (~gone).sum() < len(judged)
    assert roc_auc_score(gone, 1 - judged.p_return_backtest) > roc_auc_score(gone, judged.hours_since_last) - 0.05


def test_a_short_window_gets_a_horizon_it_can_learn(tmp_path):
    site = site_from_mapping({})
    assert site.with_horizon_for(425).returns.horizon_days == 30  # the study's 14 months keep theirs
    assert site.with_horizon_for(120).returns.horizon_days == 30
    assert site.with_horizon_for(119).returns.horizon_days == 17
    assert site.with_horizon_for(7).returns.horizon_days == 1 and site.with_horizon_for(2).returns.horizon_days == 1
    from vlf_dagster.cli import main
    from vlf_dagster.flows.site import load_site

    main(["simulate", "--data-dir", str(tmp_path), "--days", "3", "--sources", "300"])
    assert load_site(tmp_path / "site.toml").returns.horizon_days == 1


def test_hostile_folder_names_read_their_own_files(tmp_path):
    """A data folder named with a quote and glob brackets: profiles, the model and the set read it."""
    folder = tmp_path / "it's [1]"
    folder.mkdir()
    (tmp_path / "its 1").mkdir()  # what the brackets would match as a glob
    rng = np.random.default_rng(8)
    path = _write_profiles(_random_profiles(rng, 800, 30), folder / "month=1.parquet")
    start, end = _site_window(30)
    settings = ReturnSettings(horizon_days=3, retire_below=0.2, backtest_cutoffs=1)
    metrics = R.train_return_model([path], start, end, settings, folder / "model", state=folder / "state")
    assert metrics["status"] == "trained"
    facts = T.retirement_set([path], start, end, settings, folder / "model", folder / "r.parquet", state=folder / "state2")
    assert facts["state"] == 800
