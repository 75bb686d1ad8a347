"""Returning sources: the simulator's visits (sim/returns.parquet) against the landing flows themselves.

With ``returning`` a share of the eligible sources (P2P peers, scanners, targeted probes, backscatter
and echo with two flows or more) come back: their flows in 2-5 short visits, gaps apart that fit in
the window.  The landing files are read with DuckDB; each returning source's inbound flows must
fall in its visits, add up to its flows in the ground truth, and keep its visits the shortest gap
apart.  With ``returning=0`` nothing is drawn and nothing is written beyond what was before.
"""

from __future__ import annotations

import ipaddress
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from vlf_dagster import cli
from vlf_dagster.flows.site import site_from_mapping
from vlf_dagster.simulate import SimulationConfig, SimulationError, simulate, site_sim
from vlf_dagster.simulate.returns import MAX_VISITS, RETURNING_POPULATIONS, VISIT_SPAN_MS, gap_bounds
from vlf_dagster.simulate.model import POPULATIONS
from vlf_dagster.simulate.truth import RETURNS_SCHEMA, return_truth

NETWORK = "10.1.24.0/22"
DAYS, SOURCES, SEED, SHARE = 20, 5000, 11, 0.3
ELIGIBLE = [POPULATIONS[p] for p in RETURNING_POPULATIONS]


def make_site(days: int):
    start = datetime(2006, 4, 1, tzinfo=timezone.utc)
    return site_from_mapping({"internal_networks": [NETWORK], "start": "2006-04-01T00:00",
                              "end": (start + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")})


def window_ms(days: int) -> tuple[int, int]:
    start = int(datetime(2006, 4, 1, tzinfo=timezone.utc).timestamp() * 1000)
    return start, start + days * 86_400_000


def inbound(data: Path) -> pd.DataFrame:
    """The inbound flows of the landing files (sIP outside the site's network)."""
    net = ipaddress.ip_network(NETWORK)
    lo, hi = int(net.network_address), int(net.network_address) + net.num_addresses
    return duckdb.sql(
        f"SELECT sIP, dIP, sTime FROM read_parquet('{data}/landing/*/*/sim.parquet') "
        f"WHERE NOT (sIP >= {lo} AND sIP < {hi}) ORDER BY sIP, sTime"
    ).df()


def all_files(base: Path) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def run(data: Path, days=DAYS, sources=SOURCES, seed=SEED, share=SHARE):
    summary = simulate(make_site(days), SimulationConfig(days=days, sources=sources, seed=seed, returning=share), data)
    return dict(data=data, summary=summary, days=days, truth=pq.read_table(summary.ground_truth_path).to_pandas(),
                visits=return_truth(data), facts=json.loads((data / "sim" / "summary.json").read_text()))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    sim = run(tmp_path_factory.mktemp("returning"))
    sim["flows"] = inbound(sim["data"])
    return sim


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return run(tmp_path_factory.mktemp("plain"), share=0.0)


def _visit_of_each_flow(flows: pd.DataFrame, visits: pd.DataFrame) -> pd.DataFrame:
    """Each returning source's flows, with the last visit that started at or before it."""
    mine = flows[flows.sIP.isin(visits.sIP)].sort_values("sTime")
    starts = visits.sort_values("start_ms")
    return pd.merge_asof(mine, starts, left_on="sTime", right_on="start_ms", by="sIP", direction="backward")


def test_every_flow_of_a_returning_source_falls_in_one_of_its_visits(planted):
    flows, visits, truth = planted["flows"], planted["visits"], planted["truth"]
    assert len(visits) and list(visits.columns) == RETURNS_SCHEMA.names
    assert visits.equals(visits.sort_values(["sIP", "visit"]).reset_index(drop=True))
    joined = _visit_of_each_flow(flows, visits)
    assert joined.visit.notna().all()  # none before its first visit
    assert (joined.sTime <= joined.end_ms).all()  # none between two visits
    # each visit's flows: its count, and its first and last flow are its start and end
    seen = joined.groupby(["sIP", "visit"]).agg(n=("sTime", "size"), lo=("sTime", "min"), hi=("sTime", "max"))
    expected = visits.set_index(["sIP", "visit"])
    assert len(seen) == len(expected)
    seen = seen.join(expected, how="outer")
    assert (seen.n == seen.flows).all() and (seen.lo == seen.start_ms).all() and (seen.hi == seen.end_ms).all()
    # the visits' flows add up to the source's in the ground truth
    per_source = visits.groupby("sIP").flows.sum()
    assert (truth.set_index("sIP").flows.loc[per_source.index].to_numpy() == per_source.to_numpy()).all()


def test_visits_are_short_bursts_the_shortest_gap_apart(planted):
    visits = planted["visits"]
    n = visits.groupby("sIP").visit.transform("size")
    assert n.between(2, MAX_VISITS).all()
    assert (visits.groupby("sIP").visit.apply(lambda v: list(v) == list(range(len(v))))).all()
    assert (visits.end_ms - visits.start_ms < VISIT_SPAN_MS[1]).all()
    start, end = window_ms(planted["days"])
    shortest, longest = gap_bounds(end - start, n.to_numpy())
    nxt = visits.groupby("sIP").start_ms.shift(-1)
    gap = (nxt - visits.end_ms).to_numpy()
    has_next = ~np.isnan(gap)
    assert (gap[has_next] >= shortest[has_next]).all()
    assert (gap[has_next] <= longest[has_next] + VISIT_SPAN_MS[1]).all()
    assert gap[has_next].max() > 4 * 86_400_000  # days apart, not only hours


def test_a_returning_scanner_sweeps_its_share_in_address_order(planted):
    flows, visits, truth = planted["flows"], planted["visits"], planted["truth"]
    scanners = truth.sIP[(truth.population == "scanner") & truth.sIP.isin(visits.sIP)]
    assert len(scanners)
    joined = _visit_of_each_flow(flows[flows.sIP.isin(scanners)], visits)
    for _, visit in joined.groupby(["sIP", "visit"]):
        times = visit.sort_values("dIP").sTime.to_numpy()
        assert (np.diff(times) < 0).sum() <= 1  # in address order (one drop where the sweep wraps)


@pytest.mark.parametrize("days", [1, 3])
def test_short_windows_hold_every_visit(tmp_path, days):
    sim = run(tmp_path, days=days, sources=1500, share=0.5)
    visits, flows = sim["visits"], inbound(tmp_path)
    start, end = window_ms(days)
    assert len(visits) and (visits.start_ms >= start).all() and (visits.end_ms < end).all()
    assert (flows.sTime >= start).all() and (flows.sTime < end).all()
    n = visits.groupby("sIP").visit.transform("size").to_numpy()
    shortest, _ = gap_bounds(end - start, n)
    gap = (visits.groupby("sIP").start_ms.shift(-1) - visits.end_ms).to_numpy()
    assert (gap[~np.isnan(gap)] >= shortest[~np.isnan(gap)]).all()


def test_gap_bounds_scale_with_the_window():
    day, hour = 86_400_000, 3_600_000
    assert [int(x) for x in gap_bounds(425 * day, 5)] == [day, 60 * day]  # the long window: 1 to 60 days
    shortest, longest = gap_bounds(7 * day, np.array([2, 5]))
    assert list(longest) == [7 * day // 2, 7 * day // 5]  # a week: at most window / V
    assert (shortest >= hour).all() and (shortest < day).all()


def test_the_share_of_eligible_sources_is_honoured(planted):
    truth, visits, facts = planted["truth"], planted["visits"], planted["facts"]
    eligible = truth[truth.population.isin(ELIGIBLE) & (truth.flows >= 2)]
    returning = visits.sIP.unique()
    assert set(returning) <= set(eligible.sIP)  # only eligible sources return
    assert abs(len(returning) / len(eligible) - SHARE) < 0.01
    assert set(truth.population[truth.sIP.isin(returning)]) == set(ELIGIBLE)  # every eligible population
    assert facts["returning"] == {"share": SHARE, "sources": len(returning), "visits": len(visits)}


@pytest.mark.parametrize("bad", [0.51, -0.1, math.nan, "0.3", True])
def test_a_bad_share_is_refused_naming_the_option(bad):
    with pytest.raises(ValueError, match="returning"):
        SimulationConfig(returning=bad)
    assert issubclass(SimulationError, ValueError)


def test_the_command_line_refuses_a_bad_share(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VLF_DATA_DIR", str(tmp_path))  # the command sets it: restored afterwards
    assert cli.main(["simulate", "--data-dir", str(tmp_path), "--days", "1", "--sources", "10", "--returning", "0.9"]) == 1
    assert "--returning" in capsys.readouterr().err


def test_sources_that_do_not_return_are_left_as_they_were(planted, plain):
    """The share moves only the returning sources' times: the ground truth (no times in it) is the
    same file, and every other source's inbound flows are the same flows at the same times."""
    assert planted["summary"].ground_truth_path.read_bytes() == plain["summary"].ground_truth_path.read_bytes()
    others = planted["flows"][~planted["flows"].sIP.isin(planted["visits"].sIP)].reset_index(drop=True)
    before = inbound(plain["data"])
    before = before[~before.sIP.isin(planted["visits"].sIP)].reset_index(drop=True)
    assert others.sort_values(["sIP", "sTime", "dIP"]).reset_index(drop=True).equals(
        before.sort_values(["sIP", "sTime", "dIP"]).reset_index(drop=True))


def test_no_share_draws_nothing_and_writes_nothing_new(plain, tmp_path, monkeypatch):
    assert not (plain["data"] / "sim" / "returns.parquet").exists()
    assert "returning" not in plain["facts"] and plain["summary"].returns_path is None
    assert return_truth(plain["data"]).empty and list(return_truth(plain["data"]).columns) == RETURNS_SCHEMA.names

    def never(*args, **kwargs):
        raise AssertionError("a return was planted with returning=0")

    monkeypatch.setattr(site_sim, "plant_returns", never)
    again = tmp_path / "again"
    simulate(make_site(DAYS), SimulationConfig(days=DAYS, sources=SOURCES, seed=SEED), again)  # the default: 0
    assert all_files(again) == all_files(plain["data"])


def test_a_run_without_returns_removes_the_previous_runs_visits(tmp_path):
    run(tmp_path, days=2, sources=800, share=0.2)
    assert not return_truth(tmp_path).empty
    run(tmp_path, days=2, sources=800, share=0.0)
    assert not (tmp_path / "sim" / "returns.parquet").exists() and return_truth(tmp_path).empty


def test_same_seed_same_visits(planted, tmp_path):
    again = run(tmp_path)
    assert all_files(tmp_path) == all_files(planted["data"])
    assert again["visits"].equals(planted["visits"])
