"""Transient port activity: the simulator's planted port campaigns are found as bursts of their port.

Against the simulator's truth (``sim/summary.json``'s ``port_campaigns``), on three seeds: every
planted campaign is one burst of its port, whose peak lies inside it and whose sources are the
campaign's.  On a port with no other traffic (3389, 1434/UDP, 5900) its start and end are within
:data:`TOLERANCE_HOURS` of the campaign's first and last probe; the campaign on 445, the busiest
unmatched port, only about doubles its flows per hour, so its ends are found within
:data:`BUSY_TOLERANCE_HOURS` and it overlaps the campaign by :data:`BUSY_MIN_JACCARD` (intersection
over union) or more.  The detection
reads the inbound flows of the VLF-fd sources (1..10 flows, one destination) as the report reads
``vlf_categories``: the campaigns' probes are never answered, so they are all unmatched there.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import START
from vlf_dagster.analysis.tables import figures as fig
from vlf_dagster.analysis.tables.bursts import BURST_COLUMNS, find_bursts, port_bursts
from vlf_dagster.flows.schema import ipv4_to_int
from vlf_dagster.flows.site import load_site
from vlf_dagster.simulate import SimulationConfig, SimulationError, simulate
from vlf_dagster.simulate.campaigns import CAMPAIGN_PORTS, PORT_CAMPAIGN_POPULATION
from vlf_dagster.simulate.truth import campaign_truth

ROOT = Path(__file__).resolve().parents[1]
DAYS, SOURCES, CAMPAIGNS, SEEDS = 3, 3000, 4, (1, 2, 3)
TOLERANCE_HOURS = 2.0  # a burst's start and end against the campaign's first and last probe (a quiet port)
BUSY_TOLERANCE_HOURS, BUSY_MIN_JACCARD, BUSY_PORT = 8.0, 0.4, 445  # a surge on the busiest port
MS_PER_HOUR = 3_600_000


def _site(days=DAYS):
    return load_site(ROOT / "vlf_dagster" / "site.default.toml").with_window(START, START + timedelta(days=days))


def _country(addresses: np.ndarray) -> np.ndarray:
    """A stand-in for GeoIP: the first octet's parity."""
    return np.where((np.asarray(addresses, dtype=np.uint32) >> 24) % 2 == 0, "EV", "OD").astype(object)


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    return [_planted(tmp_path_factory.mktemp(f"campaigns{seed}"), seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def planted(sites):
    return sites[0]


def _planted(data, seed):
    summary = simulate(_site(), SimulationConfig(days=DAYS, sources=SOURCES, seed=seed, campaigns=CAMPAIGNS), data)
    truth = pq.read_table(summary.ground_truth_path).to_pandas()
    flows = pd.concat([pq.read_table(p, columns=["sIP", "dPort", "protocol", "sTime"]).to_pandas()
                       for p in summary.landing_files], ignore_index=True)
    vlf = flows[flows.sIP.isin(truth.sIP[(truth.flows <= 10) & (truth.destinations == 1)])]  # VLF-fd sources' flows
    started = time.perf_counter()
    found = {}
    for protocol in (6, 17):
        rows = vlf[vlf.protocol == protocol]
        top = rows.dPort.value_counts().head(10).index.tolist()  # as the report's top 10 ports
        found[protocol] = (top, *port_bursts(rows, top, START, START + timedelta(days=DAYS), protocol=protocol,
                                             country_of=_country))
    seconds = time.perf_counter() - started
    return dict(data=data, summary=summary, truth=truth, vlf=vlf, found=found, seconds=seconds,
                campaigns=campaign_truth(data))


def _ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").timestamp() * 1000)


def test_the_simulator_plants_campaigns_with_their_truth(planted):
    campaigns, truth, vlf = planted["campaigns"], planted["truth"], planted["vlf"]
    assert len(campaigns) == CAMPAIGNS
    assert [tuple(r) for r in campaigns[["protocol", "port"]].itertuples(index=False)] == list(CAMPAIGN_PORTS[:CAMPAIGNS])
    window = (_ms(str(START)), _ms(str(START + timedelta(days=DAYS))))
    ours = truth[truth.population == PORT_CAMPAIGN_POPULATION]
    assert len(ours) == campaigns.sources.sum() == planted["summary"].populations[PORT_CAMPAIGN_POPULATION]
    assert (ours.flows <= 4).all() and (ours.destinations == 1).all()
    for c in campaigns.itertuples():
        assert 4 * MS_PER_HOUR <= c.end_ms - c.start_ms <= 24 * MS_PER_HOUR
        assert c.start_ms >= window[0] + 6 * MS_PER_HOUR and c.end_ms <= window[1] - 6 * MS_PER_HOUR
        mine = vlf[vlf.sIP.isin(ours.sIP[ours.port == c.port])]
        assert len(mine) == c.flows and mine.sIP.nunique() == c.sources
        assert (mine.dPort == c.port).all() and (mine.protocol == c.protocol).all()
        assert mine.sTime.min() >= c.start_ms and mine.sTime.max() < c.end_ms
        # it starts and stops: its first and last hours are busy
        assert (mine.sTime < c.start_ms + 2 * MS_PER_HOUR).any() and (mine.sTime >= c.end_ms - 2 * MS_PER_HOUR).any()
    assert len(set(ours.sIP) & set(truth.sIP[truth.population != PORT_CAMPAIGN_POPULATION])) == 0
    with pytest.raises(SimulationError):
        simulate(_site(1), SimulationConfig(days=1, sources=100, campaigns=len(CAMPAIGN_PORTS) + 1), planted["data"] / "x")


def test_every_planted_campaign_is_one_burst_within_two_hours(sites):
    errors = []
    for planted in sites:
        errors += _check_campaigns(planted)
    quiet = [e for e in errors if e[0] != BUSY_PORT]
    print(f"\nplanted campaigns: {len(SEEDS) * CAMPAIGNS}, found: {len(errors)}; |start error| max "
          f"{max(abs(e[1]) for e in quiet):.2f} h, |end error| max {max(abs(e[2]) for e in quiet):.2f} h on quiet ports; "
          "(port, start error h, end error h):", [(p, round(s, 2), round(e, 2)) for p, s, e in errors],
          "detection s per site:", [round(p["seconds"], 2) for p in sites])
    assert len(errors) == len(SEEDS) * CAMPAIGNS


def _check_campaigns(planted) -> list[tuple[int, float, float]]:
    campaigns, found, truth = planted["campaigns"], planted["found"], planted["truth"]
    campaign_sources = set(truth.sIP[truth.population == PORT_CAMPAIGN_POPULATION])
    errors = []
    for c in campaigns.itertuples():
        top, bursts, hourly = found[c.protocol]
        assert c.port in top, "a campaign is among its protocol's top 10 ports, as the report picks them"
        mine = bursts[bursts.Port == c.port]
        assert len(mine) == 1, mine
        b = mine.iloc[0]
        start_err, end_err = (_ms(b.Start) - c.start_ms) / MS_PER_HOUR, (_ms(b.End) - c.end_ms) / MS_PER_HOUR
        errors.append((c.port, start_err, end_err))
        assert _ms(b.Start) <= _ms(b.Peak) < _ms(b.End) and b["Peak flows"] == hourly[c.port].max()
        if c.port == BUSY_PORT:
            lo, hi = _ms(b.Start), _ms(b.End)
            jaccard = (min(hi, c.end_ms) - max(lo, c.start_ms)) / (max(hi, c.end_ms) - min(lo, c.start_ms))
            assert jaccard >= BUSY_MIN_JACCARD and max(abs(start_err), abs(end_err)) <= BUSY_TOLERANCE_HOURS, (c, b)
            continue
        assert abs(start_err) <= TOLERANCE_HOURS and abs(end_err) <= TOLERANCE_HOURS, (c, b.Start, b.End)
        assert b.Flows >= 0.9 * c.flows and b.Sources >= 0.9 * c.sources
        top_sources = [ipv4_to_int(s.split(" (")[0]) for s in b["Top sources"].split(", ")]
        assert len(top_sources) == 3
        # the other campaign ports have no traffic besides the campaign: it drives them alone
        assert set(top_sources) <= campaign_sources and b.Sources <= c.sources
    return errors


def test_bursts_name_the_countries_of_their_sources(planted):
    c = planted["campaigns"].iloc[0]
    bursts = planted["found"][int(c.protocol)][1]
    b = bursts[bursts.Port == c.port].iloc[0]
    vlf = planted["vlf"]
    inside = vlf[(vlf.dPort == c.port) & (vlf.protocol == c.protocol) & (vlf.sTime >= _ms(b.Start)) & (vlf.sTime < _ms(b.End))]
    by_country = pd.Series(_country(inside.sIP.unique())).value_counts()
    expected = ", ".join(f"{k} ({int(n)})" for k, n in by_country.items())
    assert set(b["Top countries"].split(", ")) == set(expected.split(", "))
    assert sum(int(x.split("(")[1].rstrip(")")) for x in b["Top countries"].split(", ")) == b.Sources


def test_no_burst_in_steady_traffic_and_a_planted_step_is_found_to_the_hour():
    rng = np.random.default_rng(3)
    for level in (0.2, 5, 80):
        assert find_bursts(rng.poisson(level, 2000)) == [], level  # steady Poisson traffic: no false alarm
    clustered = rng.poisson(2, 1000) * rng.integers(1, 6, 1000)  # sources send their flows in clusters
    assert len(find_bursts(clustered)) <= 1
    y = rng.poisson(5, 500)
    y[200:212] += 40
    (b,) = find_bursts(y)
    assert (b.start, b.end) == (200, 212) and 200 <= b.peak < 212 and b.baseline == pytest.approx(5, abs=1)
    shifted = rng.poisson(5, 500)
    shifted[150:] += 40  # a change of level for most of the window is no transient
    assert find_bursts(shifted) == []
    assert find_bursts(np.zeros(100)) == [] and find_bursts(np.array([50, 0])) == []


def test_the_figure_boxes_each_burst_and_marks_its_peak(planted, tmp_path):
    top, bursts, hourly = planted["found"][6]
    spans = bursts.attrs["hours"]
    assert len(spans) == len(bursts) >= 3
    figure = fig.port_bursts_figure(hourly, spans)
    red = [line for line in figure.axes[0].get_lines() if line.get_color() == "red"]
    assert len(red) == 2 * len(spans)  # a box and a peak marker each
    ports = [c for c in hourly.columns if c != "Date"]
    for (port, a, b, peak), row in zip(spans, bursts.itertuples()):
        assert ports[ports.index(port)] == row.Port and hourly[port].iloc[peak] == row[BURST_COLUMNS.index("Peak flows") + 1]
    out = fig.plot_port_bursts(hourly, spans, tmp_path / "bursts.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_no_rows_no_bursts(planted):
    empty = planted["vlf"].iloc[:0]
    bursts, hourly = port_bursts(empty, [445], START, START + timedelta(days=1), protocol=6)
    assert list(bursts.columns) == BURST_COLUMNS and bursts.empty and (hourly[445] == 0).all() and len(hourly) == 24
    assert json.dumps(bursts.attrs["hours"]) == "[]"


def test_the_game_servers_lifetime_is_a_burst_of_its_port(sites):
    """Not planted as a campaign: the game server lives only in the window's first third, and its
    clients come mostly then (model.GAME_FIRST_PHASE_SHARE), so among the VLF-fd sources' flows
    (answered or not) port 27015/UDP has a burst that ends when the server does (summary.json's
    game_server_until), within :data:`TOLERANCE_HOURS`.  (The report reads unmatched UDP only, where the
    answered first third drops out: there 27015 starts when the server dies, a change of level, no burst.)"""
    for planted in sites:
        facts = json.loads((planted["data"] / "sim" / "summary.json").read_text())
        until = _ms(facts["game_server_until"])
        top, bursts, _ = planted["found"][17]
        assert 27015 in top
        game = bursts[bursts.Port == 27015]
        assert len(game) >= 1 and _ms(game.Start.iloc[0]) == _ms(str(START))
        assert abs(_ms(game.End.iloc[-1]) - until) <= TOLERANCE_HOURS * MS_PER_HOUR, (game, facts["game_server_until"])


def test_vlf_simulate_plants_campaigns_on_request(tmp_path, capsys):
    from vlf_dagster.cli import main

    assert main(["simulate", "--days", "2", "--sources", "2000", "--campaigns", "2", "--data-dir", str(tmp_path / "d")]) == 0
    planted = json.loads((tmp_path / "d" / "sim" / "summary.json").read_text())["port_campaigns"]
    assert [c["port"] for c in planted] == [3389, 1434]
    assert main(["simulate", "--days", "1", "--sources", "300", "--campaigns", "9", "--data-dir", str(tmp_path / "e")]) == 1
    assert capsys.readouterr().err.strip() == "vlf simulate: at most 6 port campaigns (got 9)"


def test_the_burst_cache_segments_only_series_that_changed(tmp_path, monkeypatch):
    """A new hour changes one port's series: only that port is segmented again, the others come from
    the cache with the same bursts; entries no call asked for are removed."""
    from vlf_dagster.analysis.tables import bursts as B

    rng = np.random.default_rng(2)
    quiet = rng.poisson(3, 400).astype(float)
    busy = quiet.copy()
    busy[200:220] += 60
    cache = B.BurstCache(tmp_path / "cache")
    first = [cache.bursts(quiet), cache.bursts(busy)]
    assert first == [find_bursts(quiet), find_bursts(busy)] and len(first[1]) == 1
    calls = []
    monkeypatch.setattr(B, "find_bursts", lambda counts, **kw: calls.append(1) or find_bursts(counts, **kw))
    again = B.BurstCache(tmp_path / "cache")
    changed = busy.copy()
    changed[399] += 1
    assert [again.bursts(quiet), again.bursts(changed)] == [first[0], find_bursts(changed)]
    assert len(calls) == 1  # the quiet port came from the cache
    again.prune()
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2  # the busy port's old series is gone
    assert again.bursts(quiet, penalty=9.0) == find_bursts(quiet, penalty=9.0) and len(calls) == 2  # other settings: again
