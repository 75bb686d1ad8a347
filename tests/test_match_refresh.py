"""The study's matching refreshed source by source equals a full rwmatch run, byte for byte."""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import flows
from vlf_dagster.analysis import matching
from vlf_dagster.flows.match import match_ids
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.storage import write_parquet

T0 = 1_175_385_600_000  # 2007-04-01 00:00 UTC
INSIDE = ["10.1.24.1", "10.1.24.2", "10.1.24.3"]
V6_OUTSIDE = [ipaddress.IPv6Address(f"2001:db8::{k:x}").packed for k in range(1, 6)]
V6_INSIDE = ipaddress.IPv6Address("2001:db8:ffff::1").packed


def _pair(rng, source: int, serial: int, v6: bool = True) -> tuple[dict, dict | None]:
    """A query from outside source ``source`` and, often, an answer to it (some late, some early,
    some with other ports): matched, unmatched and ambiguous groups all occur."""
    inside = str(rng.choice(INSIDE))
    sport, dport = int(rng.choice([1025, 40000, 53])), int(rng.choice([80, 53, 445]))
    start = T0 + 1000 * int(rng.integers(0, 40))
    q = dict(sIP=f"4.{source // 250}.{source % 250}.9", dIP=inside, sPort=sport, dPort=dport,
             protocol=int(rng.choice([6, 17])), sTime=start, duration=500 * int(rng.integers(0, 4)), bytes=serial)
    if v6 and source % 17 == 0:  # an IPv6 source
        q.update(sIP="0.0.0.0", dIP="0.0.0.0", attributes=0x80, sIPv6=V6_OUTSIDE[source % 5], dIPv6=V6_INSIDE)
    if rng.random() < 0.35:
        return q, None
    r = dict(sIP=q["dIP"], dIP=q["sIP"], sPort=dport, dPort=sport if rng.random() < 0.9 else 1, protocol=q["protocol"],
             sTime=start + int(rng.choice([-1500, 0, 300, 1500, 9000])), duration=400, bytes=serial + 1_000_000)
    if "sIPv6" in q:
        r.update(attributes=0x80, sIPv6=q["dIPv6"], dIPv6=q["sIPv6"])
    return q, r


def _site_flows(rng, sources, per_source: int = 3, serial0: int = 0, v6: bool = True):
    queries, answers = [], []
    serial = serial0
    for s in sources:
        for _ in range(int(rng.integers(1, per_source + 1))):
            q, r = _pair(rng, s, serial, v6)
            serial += 1
            queries.append(q)
            if r is not None:
                answers.append(r)
    return queries, answers


def _run(tmp_path, name, queries, answers, state=None, delta=2000):
    q_path, r_path = tmp_path / f"{name}_q.parquet", tmp_path / f"{name}_r.parquet"
    write_parquet(flows(queries), q_path)
    write_parquet(flows(answers) if answers else flows(queries).slice(0, 0), r_path)
    sources = IPSet.from_flow_column(pq.read_table(q_path), "sIP")
    out = tmp_path / f"{name}_matched.parquet"
    return matching.match_vlf_flows(q_path, [r_path], sources, out, time_delta_ms=delta, state=state), out


def _assert_same_as_full(tmp_path, queries, answers, state, delta=2000):
    live, live_out = _run(tmp_path, "live", queries, answers, state=state, delta=delta)
    full, full_out = _run(tmp_path, "full", queries, answers, delta=delta)
    assert live.records == full.records == pq.read_table(full_out).num_rows
    assert live_out.read_bytes() == full_out.read_bytes()
    return live


def test_refresh_rematches_only_changed_sources_and_equals_a_full_run(tmp_path):
    rng = np.random.default_rng(11)
    state = tmp_path / "state.parquet"
    queries, answers = _site_flows(rng, range(1, 120))
    first = _assert_same_as_full(tmp_path, queries, answers, state)
    assert not first.incremental and first.rematched == first.sources

    # new flows for a few sources already seen, two new sources, an answer to an old query
    more_q, more_a = _site_flows(rng, [5, 34, 77, 200, 201], serial0=10_000)
    answers.append(dict(sIP=queries[3]["dIP"], dIP=queries[3]["sIP"], sPort=queries[3]["dPort"], dPort=queries[3]["sPort"],
                        protocol=queries[3]["protocol"], sTime=queries[3]["sTime"] + 100, duration=1, bytes=99_999))
    queries += more_q
    answers += more_a
    second = _assert_same_as_full(tmp_path, queries, answers, state)
    assert second.incremental
    assert 0 < second.rematched <= 7 < second.sources
    ids = match_ids(pq.read_table(tmp_path / "live_matched.parquet"))[0]
    assert ids.max() == len(np.unique(ids[ids > 0]))  # ids stay dense after the shift

    # a source loses its flows (it left the VLF set), a record changes one field, nothing else
    gone = queries[10]["sIP"]
    queries = [q for q in queries if q["sIP"] != gone]
    answers = [a for a in answers if a["dIP"] != gone]
    queries[20] = {**queries[20], "packets": 7}
    third = _assert_same_as_full(tmp_path, queries, answers, state)
    assert third.incremental and third.rematched == 1  # the changed record's source; the gone one has nothing to match


def test_a_state_that_does_not_describe_the_output_means_a_full_run(tmp_path):
    rng = np.random.default_rng(5)
    state = tmp_path / "state.parquet"
    queries, answers = _site_flows(rng, range(1, 40))
    _assert_same_as_full(tmp_path, queries, answers, state)
    # another match delta: every match may differ
    other = _assert_same_as_full(tmp_path, queries, answers, state, delta=0)
    assert not other.incremental
    # the output rewritten behind the state's back
    again = _assert_same_as_full(tmp_path, queries, answers, state, delta=0)
    assert again.incremental and again.rematched == 0
    write_parquet(pq.read_table(tmp_path / "live_matched.parquet").slice(0, 5), tmp_path / "live_matched.parquet")
    assert not _assert_same_as_full(tmp_path, queries, answers, state, delta=0).incremental


@pytest.mark.parametrize("seed, v6", [(1, True), (2, True), (3, False), (4, False)])
def test_random_edit_sequences_equal_full_runs(tmp_path, monkeypatch, seed, v6):
    monkeypatch.setattr(matching, "ROW_GROUP_ROWS", 5)  # the previous output read back in many small batches
    rng = np.random.default_rng(seed)
    state = tmp_path / "state.parquet"
    queries, answers = _site_flows(rng, range(1, 60), per_source=4, v6=v6)
    _assert_same_as_full(tmp_path, queries, answers, state)
    serial = 50_000
    for step in range(4):
        touched = rng.choice(np.arange(1, 90), size=6, replace=False).tolist()
        more_q, more_a = _site_flows(rng, touched, serial0=serial, v6=v6 or step == 3)  # IPv6 arrives late
        serial += 1000
        drop = set(rng.choice(len(queries), size=3, replace=False).tolist())
        queries = [q for k, q in enumerate(queries) if k not in drop] + more_q
        answers = answers + more_a
        result = _assert_same_as_full(tmp_path, queries, answers, state)
        assert result.incremental, step


def test_categories_written_row_group_by_row_group_equal_categorizing_the_whole(tmp_path, monkeypatch):
    from vlf_dagster.analysis import matching as matching_mod
    from vlf_dagster.flows import storage

    rng = np.random.default_rng(3)
    queries, answers = _site_flows(rng, range(1, 80), v6=False)
    _, matched = _run(tmp_path, "full", queries, answers)
    monkeypatch.setattr(storage, "ROW_GROUP_ROWS", 7)  # many row groups and batches
    monkeypatch.setattr(matching_mod, "ROW_GROUP_ROWS", 7)
    bag = tmp_path / "bag.parquet"  # what categorize reads of source_flow_bag
    sources, records = np.unique(flows(queries).column("sIP").to_numpy(), return_counts=True)
    pq.write_table(pa.table({"sIP": pa.array(sources, pa.uint32()), "sIPv6": pa.nulls(len(sources), pa.binary(16)),
                             "records": pa.array(records.astype(np.uint64))}), bag)
    rows = matching.write_categories(matched, bag, tmp_path / "streamed.parquet")
    whole = matching.categorize(pq.read_table(matched, columns=list(matching.CATEGORY_INPUTS)), bag)
    assert rows == whole.num_rows == len(queries)
    assert pq.read_table(tmp_path / "streamed.parquet").equals(whole)
    assert pq.ParquetFile(tmp_path / "streamed.parquet").metadata.num_row_groups == -(-rows // 7)
    assert set(whole.column("source_flows").to_pylist()) == {1, 2, 3}  # every source found in the bag
