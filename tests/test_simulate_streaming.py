"""The streaming simulator: chunks of sources and landing buckets leave no trace in the output.

Exact ground truth across chunks, memory that stays flat as the window grows (at a fixed number of
sources per day), byte-identical output whatever the number of threads, and the address space.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from vlf_dagster.flows.schema import MS_PER_HOUR, check_schema, conform
from vlf_dagster.flows.site import site_from_mapping
from vlf_dagster.flows.storage import hour_ms, hours_between, landing_dir
from vlf_dagster.simulate import POPULATIONS, SimulationConfig, SimulationError, simulate
from vlf_dagster.simulate import site_sim, window, writing
from vlf_dagster.simulate.network import _OutsideAddresses

NETWORK = "10.1.24.0/22"
REPO = Path(__file__).resolve().parents[1]


def make_site(days: int, network: str = NETWORK):
    start = datetime(2006, 2, 1, tzinfo=timezone.utc)
    return site_from_mapping(
        {"internal_networks": [network], "start": "2006-02-01T00:00", "end": (start + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")}
    )


def inside_mask(ips, network: str = NETWORK):
    net = ipaddress.ip_network(network)
    return (np.asarray(ips, dtype=np.uint32) & np.uint32(int(net.netmask))) == np.uint32(int(net.network_address))


def all_files(base: Path) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def landing(summary) -> pd.DataFrame:
    return pd.concat([pq.read_table(p, columns=["sIP", "dIP", "protocol", "dPort", "sTime"]).to_pandas() for p in summary.landing_files],
                     ignore_index=True)


DAYS, SOURCES = 8, 20000  # 2,500 sources a day: chunks of 8,192 sources, three of them


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    base = tmp_path_factory.mktemp("chunked")
    site, config = make_site(DAYS), SimulationConfig(days=DAYS, sources=SOURCES, seed=3)
    plan = window._plan(site, config)
    assert plan.chunk_sources < SOURCES // 2 and plan.bucket_hours == 24, "the fixture must span several chunks"
    summary = simulate(site, config, base)
    flows = landing(summary)
    truth = pq.read_table(summary.ground_truth_path).to_pandas()
    inbound = flows[~inside_mask(flows.sIP) & inside_mask(flows.dIP)]
    facts = json.loads(summary.summary_path.read_text())
    return dict(base=base, summary=summary, flows=flows, inbound=inbound, truth=truth, facts=facts)


def test_ground_truth_equals_the_landing_files_across_chunks(chunked):
    truth, inbound, summary = chunked["truth"], chunked["inbound"], chunked["summary"]
    assert len(truth) == truth.sIP.nunique() == SOURCES and truth.sIP.is_monotonic_increasing
    landed = inbound.groupby("sIP").agg(flows=("dIP", "size"), destinations=("dIP", "nunique"))
    assert set(landed.index) == set(truth.sIP), "every source sends, and only the sources send inbound"
    landed = landed.reindex(truth.sIP)
    assert (landed.flows.to_numpy() == truth.flows.to_numpy()).all()
    assert (landed.destinations.to_numpy() == truth.destinations.to_numpy()).all()
    assert summary.inbound_flows == len(inbound) == truth.flows.sum()
    assert summary.flows == len(chunked["flows"])
    assert summary.populations == truth.population.value_counts().reindex(POPULATIONS, fill_value=0).to_dict()
    # no spill files left behind
    assert not list((chunked["base"] / "sim").glob(".spill-*"))
    assert sorted(p.name for p in (chunked["base"] / "sim").iterdir()) == ["ground_truth.parquet", "summary.json"]


def test_every_hour_has_its_file_sorted_by_time(chunked):
    summary = chunked["summary"]
    hours = hours_between(make_site(DAYS).start, make_site(DAYS).start + timedelta(days=DAYS))
    assert summary.landing_files == [landing_dir(chunked["base"], h) / "sim.parquet" for h in hours]
    for hour, path in zip(hours[:: 24 * DAYS // 8], summary.landing_files[:: 24 * DAYS // 8]):
        table = pq.read_table(path)
        check_schema(table, source=str(path))
        t = table.column("sTime").to_numpy()
        assert (np.diff(t) >= 0).all() and t.min() >= hour_ms(hour) and t.max() < hour_ms(hour) + MS_PER_HOUR


def test_landing_tables_are_what_conform_makes(chunked):
    table = pq.read_table(chunked["summary"].landing_files[5])
    flows = {name: table.column(name).to_numpy() for name in writing._COLUMNS}
    assert writing._flow_table(flows).equals(conform(flows), check_metadata=True)
    assert table.equals(conform(flows), check_metadata=True)


def test_vlf_proportions_hold_across_chunks(chunked):
    truth, facts, inbound = chunked["truth"], chunked["facts"], chunked["inbound"]
    n = len(truth)
    assert abs((truth.flows == 1).sum() / n - 0.4874) <= 0.005
    assert abs((truth.flows <= 10).mean() - 0.9088) <= 0.005
    assert abs((truth.flows > 100).mean() - 0.0076) <= 0.001
    vlf = truth[truth.flows <= 10]
    assert abs((vlf.destinations == 1).mean() - 0.93) <= 0.01
    assert 3 <= (truth.population == "other_proto").sum() <= 16, "a handful in all, not per chunk"
    for population in POPULATIONS:
        assert (truth.population == population).sum() >= 1, population
    # the summary's shares, computed chunk by chunk, are those of the ground truth and the flows
    assert facts["share_one_flow"] == round((truth.flows == 1).mean(), 4)
    assert facts["share_vlf_flows"] == round((truth.flows <= 10).mean(), 4)
    assert facts["share_single_destination_of_vlf"] == round((vlf.destinations == 1).mean(), 4)
    hours = inbound.assign(hour=inbound.sTime // MS_PER_HOUR).groupby("sIP").hour.nunique()
    assert facts["share_in_1_to_5_hours"] == round((hours <= 5).mean(), 4)
    assert 0.85 <= facts["share_in_1_to_5_hours"] <= 0.95


def test_threads_and_buckets_do_not_change_the_truth(chunked, tmp_path, monkeypatch):
    """One thread gives the same bytes as two; hour-sized buckets (a busy site) keep the truth exact."""
    site, config = make_site(DAYS), SimulationConfig(days=DAYS, sources=SOURCES, seed=3)
    monkeypatch.setattr(site_sim, "WORKERS", 1)
    simulate(site, config, tmp_path / "one")
    assert all_files(tmp_path / "one") == all_files(chunked["base"])
    monkeypatch.setattr(window, "BUCKET_MAX_FLOWS", 20_000)
    assert window._plan(site, config).bucket_hours < 24
    summary = simulate(site, config, tmp_path / "hourly")
    truth = pq.read_table(summary.ground_truth_path).to_pandas()
    assert truth.equals(chunked["truth"]), "the sources' flows do not depend on the buckets"
    inbound = landing(summary)
    inbound = inbound[~inside_mask(inbound.sIP) & inside_mask(inbound.dIP)]
    landed = inbound.groupby("sIP").dIP.agg(["size", "nunique"]).reindex(truth.sIP)
    assert (landed["size"].to_numpy() == truth.flows.to_numpy()).all()
    assert (landed["nunique"].to_numpy() == truth.destinations.to_numpy()).all()


def test_same_seed_same_bytes_other_seed_other_bytes(chunked, tmp_path):
    again = simulate(make_site(DAYS), SimulationConfig(days=DAYS, sources=SOURCES, seed=3), tmp_path / "again")
    assert all_files(tmp_path / "again") == all_files(chunked["base"])
    other = simulate(make_site(DAYS), SimulationConfig(days=DAYS, sources=SOURCES, seed=4), tmp_path / "other")
    assert other.ground_truth_path.read_bytes() != again.ground_truth_path.read_bytes()
    assert all(a.read_bytes() != b.read_bytes() for a, b in zip(other.landing_files[::24], again.landing_files[::24]))


def test_a_failed_run_removes_its_spill_files(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(site_sim, "_write_landing", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        simulate(make_site(2), SimulationConfig(days=2, sources=500, seed=1), tmp_path)
    assert not list((tmp_path / "sim").glob(".spill-*"))


# --- memory --------------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from datetime import datetime, timedelta, timezone
    from vlf_dagster.flows.site import site_from_mapping
    from vlf_dagster.simulate import SimulationConfig, simulate

    days, sources, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    start = datetime(2006, 2, 1, tzinfo=timezone.utc)
    site = site_from_mapping({"internal_networks": ["10.1.24.0/22"], "start": "2006-02-01T00:00",
                              "end": (start + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")})
    summary = simulate(site, SimulationConfig(days=days, sources=sources, seed=1), out)
    print(json.dumps({"flows": summary.flows, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    """
)


def _peak(tmp_path: Path, days: int, sources: int) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(days), str(sources), str(tmp_path / f"d{days}")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_peak_memory_stays_flat_as_the_window_grows(tmp_path):
    """4 days x N and 16 days x 4N sources: the same sources per day, four times the flows.

    The in-memory simulator this replaced needed 1.86x the memory for the longer window (190 MB
    and 354 MB); the streaming one about 1.1x (204 MB and 225 MB).
    """
    per_day = 4096
    short = _peak(tmp_path, 4, 4 * per_day)
    long = _peak(tmp_path, 16, 16 * per_day)
    assert long["flows"] > 3.5 * short["flows"]
    assert long["rss_kb"] <= 1.3 * short["rss_kb"], (short, long)


# --- outside addresses -----------------------------------------------------------------------------


def test_outside_addresses_are_distinct_public_and_spread(monkeypatch):
    site = make_site(1, "172.32.0.0/16")
    space = _OutsideAddresses(np.random.default_rng(5), site)
    first = space(0, 1_000_000)
    more = space(1_000_000, 2_000_000)
    every = np.concatenate([first, more])
    ordered = np.sort(every)
    assert every.dtype == np.uint32 and (ordered[1:] != ordered[:-1]).all(), "distinct"
    assert (space(999_990, 1_000_010) == every[999_990:1_000_010]).all(), "a range is computed on its own"
    octet = every >> 24
    assert octet.min() >= 1 and octet.max() <= 223
    assert not np.isin(octet, [10, 127]).any()
    for network in ("169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "172.32.0.0/16"):
        assert not inside_mask(every, network).any(), network
    counts = np.bincount(octet, minlength=224)[1:224]
    allowed = counts[counts > 0]
    assert len(allowed) == 223 - 2  # 10 and 127 are out; 169, 172 and 192 partly
    assert allowed.min() > 0.5 * np.median(allowed) and allowed.max() < 1.5 * np.median(allowed)
    with pytest.raises(SimulationError):
        space(space.total - 1, space.total + 1)
