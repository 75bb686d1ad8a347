"""The study's matching and categories refreshed source by source equal a full run: the same
groups of records, the same categories (ids are labels: a refresh numbers new groups above the old)."""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import flows
from vlf_dagster.analysis.steps import matching
from vlf_dagster.analysis.steps.extraction import extract_by_set
from vlf_dagster.flows import duck
from vlf_dagster.flows.tools.match import MAX_MATCH_ID, match_ids
from vlf_dagster.flows.segments import SOURCE_IS_DIP, SOURCE_IS_SIP, Segmented
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


class _Site:
    """The matching's inputs as the window keeps them: queries and answers extracted by set from
    one month file each, refreshed by source, then matched and categorized."""

    def __init__(self, root, delta=2000):
        self.root, self.delta = root, delta
        root.mkdir(parents=True, exist_ok=True)

    def run(self, queries, answers):
        write_parquet(flows(queries), self.root / "q" / "month=2007-04.parquet")
        write_parquet(flows(answers) if answers else flows(queries).slice(0, 0), self.root / "r" / "month=2007-04.parquet")
        sources = IPSet.from_flow_column(flows(queries), "sIP")
        for side, key in (("q", SOURCE_IS_SIP), ("r", SOURCE_IS_DIP)):
            extract_by_set([self.root / side / "month=2007-04.parquet"], sources, Segmented(self.root / f"{side}_seg", key),
                           self.root / f"{side}_state")
        refresh = matching.match_vlf_flows(self.root / "q_seg", self.root / "r_seg", self.root / "matched",
                                           time_delta_ms=self.delta, state=self.root / "m_state")
        bag = self.root / "bag.parquet"  # what categorize reads of source_flow_bag
        table = flows(queries)
        words = [bytes(v) if v is not None else None for v in table.column("sIPv6").to_pylist()]
        counts: dict = {}
        for sip, v6 in zip(table.column("sIP").to_pylist(), words):
            counts[(sip, v6)] = counts.get((sip, v6), 0) + 1
        pq.write_table(pa.table({"sIP": pa.array([k[0] for k in counts], pa.uint32()),
                                 "sIPv6": pa.array([k[1] for k in counts], pa.binary(16)),
                                 "records": pa.array(list(counts.values()), pa.uint64())}), bag)
        categories = matching.write_categories(self.root / "matched", bag, self.root / "categories",
                                               state=self.root / "c_state")
        return refresh, categories

    def matched(self) -> pa.Table:
        return Segmented(self.root / "matched").read()

    def categories(self) -> pa.Table:
        return Segmented(self.root / "categories").read()


def _record(row: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in row.items() if k not in ("nhIP", "nhIPv6", "match_id")))


def groups(matched: pa.Table) -> list:
    """The matched output with ids as labels only: each group's records (with their side), and
    each unmatched query alone."""
    ids, is_response = match_ids(matched)
    by_id: dict = {}
    out = []
    for row, i, r in zip(matched.to_pylist(), ids.tolist(), is_response.tolist()):
        if i == 0:
            out.append(((False, _record(row)),))
        else:
            by_id.setdefault(i, []).append((r, _record(row)))
    return sorted(out + [tuple(sorted(g)) for g in by_id.values()])


def categorized(categories: pa.Table) -> list:
    return sorted((_record(row), row["match_id"] > 0) for row in categories.to_pylist())


def _assert_same_as_full(tmp_path, site: _Site, queries, answers):
    live, live_categories = site.run(queries, answers)
    full_site = _Site(tmp_path / f"full{np.random.randint(1 << 30)}", site.delta)
    full, full_categories = full_site.run(queries, answers)
    assert not full.incremental and not full_categories.incremental
    assert live.records == full.records == site.matched().num_rows == full_site.matched().num_rows
    assert groups(site.matched()) == groups(full_site.matched())
    assert categorized(site.categories()) == categorized(full_site.categories())
    assert live_categories.rows == len(queries)
    # the totals kept through refreshes equal a count over the rows
    kept = Segmented(site.root / "categories").extra[matching.TOTALS]
    assert kept == matching.category_totals(Segmented(site.root / "categories").relation_sql())
    assert kept["Total"][0] == len(queries)
    # so do the port counts kept beside the categories and the matched records
    for name, summary in (("categories", matching.CATEGORY_PORTS), ("categories", matching.CATEGORY_DESTINATIONS),
                          ("matched", matching.MATCHED_PORTS)):
        seg = Segmented(site.root / name)
        con = duck.connect()
        assert con.sql(f"SELECT * FROM read_parquet('{seg.summary(summary.name)}')").fetchall() == \
            con.sql(f"SELECT * FROM ({summary.counts_sql(seg.relation_sql())}) ORDER BY ALL").fetchall()
    ids = match_ids(site.matched())[0]
    matched_ids = ids[ids > 0]
    assert len(np.unique(matched_ids)) == len(groups(site.matched())) - int((ids == 0).sum())  # ids tell groups apart
    return live


def test_refresh_rematches_only_changed_sources_and_equals_a_full_run(tmp_path):
    rng = np.random.default_rng(11)
    site = _Site(tmp_path / "live")
    queries, answers = _site_flows(rng, range(1, 120))
    first = _assert_same_as_full(tmp_path, site, queries, answers)
    assert not first.incremental and first.rematched is None

    # new flows for a few sources already seen, two new sources, an answer to an old query
    more_q, more_a = _site_flows(rng, [5, 34, 77, 200, 201], serial0=10_000)
    answers.append(dict(sIP=queries[3]["dIP"], dIP=queries[3]["sIP"], sPort=queries[3]["dPort"], dPort=queries[3]["sPort"],
                        protocol=queries[3]["protocol"], sTime=queries[3]["sTime"] + 100, duration=1, bytes=99_999))
    queries += more_q
    answers += more_a
    second = _assert_same_as_full(tmp_path, site, queries, answers)
    assert second.incremental
    assert 0 < second.rematched <= 7

    # a source loses its flows (it left the VLF set), a record changes one field, nothing else
    gone = queries[10]["sIP"]
    queries = [q for q in queries if q["sIP"] != gone]
    answers = [a for a in answers if a["dIP"] != gone]
    queries[20] = {**queries[20], "packets": 7}
    third = _assert_same_as_full(tmp_path, site, queries, answers)
    assert third.incremental and third.rematched == 2  # the gone source and the changed record's

    # nothing changed: nothing matched again
    idle, idle_categories = site.run(queries, answers)
    assert (idle.incremental, idle.rematched, idle_categories.recategorized) == (True, 0, 0)


def test_other_settings_or_a_lost_state_mean_a_full_run(tmp_path):
    rng = np.random.default_rng(5)
    site = _Site(tmp_path / "live")
    queries, answers = _site_flows(rng, range(1, 40))
    _assert_same_as_full(tmp_path, site, queries, answers)
    site.delta = 0  # another match delta: every match may differ
    assert not _assert_same_as_full(tmp_path, site, queries, answers).incremental
    assert _assert_same_as_full(tmp_path, site, queries, answers).incremental
    (site.root / "m_state" / "state.json").unlink()
    assert not _assert_same_as_full(tmp_path, site, queries, answers).incremental


def test_ids_that_would_run_out_are_numbered_again(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    site = _Site(tmp_path / "live")
    queries, answers = _site_flows(rng, range(1, 30))
    _assert_same_as_full(tmp_path, site, queries, answers)
    target = Segmented(site.root / "matched")
    target.touch(extra={"next_id": MAX_MATCH_ID - 1})  # as if ids had been given for years
    state = site.root / "m_state" / "state.json"
    import json
    kept = json.loads(state.read_text())
    kept["target"] = target.generation
    state.write_text(json.dumps(kept))
    more_q, more_a = _site_flows(rng, [3, 4, 5, 6], serial0=9_000)
    refresh = _assert_same_as_full(tmp_path, site, queries + more_q, answers + more_a)
    assert not refresh.incremental and match_ids(site.matched())[0].max() < 100


@pytest.mark.parametrize("seed, v6", [(1, True), (2, True), (3, False), (4, False)])
def test_random_edit_sequences_equal_full_runs(tmp_path, seed, v6):
    rng = np.random.default_rng(seed)
    site = _Site(tmp_path / "live")
    queries, answers = _site_flows(rng, range(1, 60), per_source=4, v6=v6)
    _assert_same_as_full(tmp_path, site, queries, answers)
    serial = 50_000
    for step in range(4):
        touched = rng.choice(np.arange(1, 90), size=6, replace=False).tolist()
        more_q, more_a = _site_flows(rng, touched, serial0=serial, v6=v6 or step == 3)  # IPv6 arrives late
        serial += 1000
        drop = set(rng.choice(len(queries), size=3, replace=False).tolist())
        queries = [q for k, q in enumerate(queries) if k not in drop] + more_q
        answers = answers + more_a
        result = _assert_same_as_full(tmp_path, site, queries, answers)
        assert result.incremental, step


def test_categories_streamed_row_group_by_row_group_equal_categorizing_the_whole(tmp_path, monkeypatch):
    from vlf_dagster.flows import storage

    rng = np.random.default_rng(3)
    queries, answers = _site_flows(rng, range(1, 80), v6=True)
    monkeypatch.setattr(storage, "ROW_GROUP_ROWS", 7)  # many row groups and batches
    monkeypatch.setattr(matching, "ROW_GROUP_ROWS", 7)
    site = _Site(tmp_path / "live")
    site.run(queries, answers)
    whole = matching.categorize(site.matched().select(list(matching.CATEGORY_INPUTS)), site.root / "bag.parquet")
    streamed = site.categories()
    assert streamed.num_rows == whole.num_rows == len(queries)
    assert categorized(streamed) == categorized(whole)
    assert set(whole.column("source_flows").to_pylist()) <= {1, 2, 3} and 0 not in whole.column("source_flows").to_pylist()
    assert whole.column("sIPv6").null_count < whole.num_rows  # the IPv6 sources keep their address and count


def test_sessions_kept_by_source_give_the_matched_port_tables_of_the_records(tmp_path):
    from vlf_dagster.analysis.tables import sessions as pt

    rng = np.random.default_rng(17)
    site = _Site(tmp_path / "live")
    queries, answers = _site_flows(rng, range(1, 150), v6=False)
    for step in range(3):
        site.run(queries, answers)
        sessions = pt.refresh_sessions(site.root / "matched", tmp_path / "sessions")
        for protocol in (6, 17):
            records = site.matched()
            assert pt.matched_ports(sessions.directory, protocol=protocol).equals(pt.matched_ports(records, protocol=protocol))
            assert pt.matched_port_direction_counts(sessions.directory, protocol=protocol).equals(
                pt.matched_port_direction_counts(records, protocol=protocol))
        assert len(pt.matched_ports(records, protocol=6)) > 3
        if step:
            assert sessions.manifest()["changes"][-1]["keys"] is not None  # by source, not from scratch
        more_q, more_a = _site_flows(rng, rng.choice(np.arange(1, 200), size=8, replace=False).tolist(),
                                     serial0=7000 * (step + 1), v6=False)
        queries, answers = queries[4:] + more_q, answers + more_a


def test_port_tables_read_the_kept_counts_as_they_would_the_rows(tmp_path):
    from vlf_dagster.analysis.tables.destinations import where_do_they_go
    from vlf_dagster.analysis.tables.flags import flags_for_top_ports, unmatched_tcp_flags
    from vlf_dagster.analysis.tables.ports import port_counts, ports_by_flow_bucket

    rng = np.random.default_rng(23)
    site = _Site(tmp_path / "live")
    queries, answers = _site_flows(rng, range(1, 90), v6=False)
    site.run(queries, answers)
    more_q, more_a = _site_flows(rng, [4, 9, 300], serial0=70_000, v6=False)
    site.run(queries + more_q, answers + more_a)  # the counts now come through a refresh
    folder, rows = site.root / "categories", site.categories()
    assert Segmented(folder).summary(matching.CATEGORY_PORTS.name) is not None
    for category in ("unmatched TCP", "unmatched UDP"):
        kept, counted = ports_by_flow_bucket(folder, category), ports_by_flow_bucket(rows, category)
        assert len(kept) and kept.equals(counted)
    assert unmatched_tcp_flags(folder).equals(unmatched_tcp_flags(rows))
    assert flags_for_top_ports(folder, bucket=(1, 10)).equals(flags_for_top_ports(rows, bucket=(1, 10)))
    active = IPSet.from_ipv4(np.unique(rows.column("dIP").to_numpy())[::2])  # every other destination exists
    for protocol, category in ((6, "unmatched TCP"), (17, "unmatched UDP"), (6, "matched TCP")):
        for buckets in ((1, 1), (1, 10)):
            kept = where_do_they_go(folder, active, protocol, buckets, category=category)
            assert kept.equals(where_do_they_go(rows, active, protocol, buckets, category=category))
            assert buckets == (1, 1) or (len(kept) and kept["Hit"].sum() and kept["Miss"].sum())
    for protocol in (6, 17, None):
        assert (port_counts(site.root / "matched", protocol) == port_counts(site.matched(), protocol)).all()
    assert port_counts(site.root / "matched").sum() > 0
