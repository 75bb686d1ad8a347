"""Segmented window artifacts: base, removed rows and delta read as one table; the change log."""

import ipaddress

import pyarrow as pa
import pytest

from vlf_dagster.flows import duck
from vlf_dagster.flows.segments import CHANGE_LOG_LENGTH, SOURCE_IS_DIP, SegmentError, Segmented, Summary, is_segmented
from vlf_dagster.flows.storage import write_parquet

SCHEMA = pa.schema([("sIP", pa.uint32()), ("dIP", pa.uint32()), ("sIPv6", pa.binary()), ("dIPv6", pa.binary()),
                    ("n", pa.int64())])
V6 = ipaddress.ip_address("2001:db8::7").packed


def rows(*records) -> pa.Table:
    sip, dip, v6, n = zip(*records) if records else ((), (), (), ())
    return pa.table({"sIP": pa.array(sip, pa.uint32()), "dIP": pa.array(dip, pa.uint32()),
                     "sIPv6": pa.array(v6, pa.binary()), "dIPv6": pa.array([None] * len(n), pa.binary()),
                     "n": pa.array(n, pa.int64())}, schema=SCHEMA)


def keys(*pairs) -> pa.Table:
    return pa.table({"ip": pa.array([p[0] for p in pairs], pa.uint64()), "ipv6": pa.array([p[1] for p in pairs], pa.binary())})


def current(seg: Segmented) -> list[tuple]:
    con = duck.connect()
    return sorted(con.sql(f"SELECT sIP, sIPv6, n FROM ({seg.relation_sql()})").fetchall())


@pytest.fixture
def seg(tmp_path):
    s = Segmented(tmp_path / "art")
    s.write_full(lambda path: write_parquet(rows((1, 9, None, 10), (1, 9, None, 11), (2, 9, None, 20), (0, 9, V6, 60)), path))
    return s


def test_a_full_write_reads_back_and_logs_everything(seg):
    assert is_segmented(seg.directory)
    assert current(seg) == [(0, V6, 60), (1, None, 10), (1, None, 11), (2, None, 20)]
    assert seg.rows == 4
    assert seg.changes_since(None) is None
    assert seg.changes_since(seg.generation - 1) is None  # the full write changed everything
    assert seg.changes_since(seg.generation).num_rows == 0


def test_apply_replaces_the_rows_of_changed_sources_only(seg, monkeypatch):
    import vlf_dagster.flows.segments as segments

    monkeypatch.setattr(segments, "COMPACT_SHARE", 100.0)
    g0 = seg.generation
    seg.apply(keys((1, None), (3, None)), rows((1, 9, None, 12), (3, 9, None, 30)))
    assert current(seg) == [(0, V6, 60), (1, None, 12), (2, None, 20), (3, None, 30)]
    assert seg.rows == 4
    # a source that leaves: changed, with no new rows; an IPv6 source keyed by its address
    seg.apply(keys((3, None), (0, V6)), rows())
    assert current(seg) == [(1, None, 12), (2, None, 20)]
    assert seg.read().num_rows == 2 and seg.read().schema == SCHEMA
    changed = seg.changes_since(g0)
    assert sorted(zip(changed.column("ip").to_pylist(), changed.column("ipv6").to_pylist()), key=str) == \
        sorted([(0, V6), (1, None), (3, None)], key=str)
    assert seg.changes_since(g0 + 1).num_rows == 2


def test_an_added_row_of_an_unchanged_source_is_refused(seg):
    with pytest.raises(SegmentError, match="not among the changed"):
        seg.apply(keys((1, None)), rows((2, 9, None, 21)))
    assert current(seg)[-1] == (2, None, 20)  # nothing published


def test_the_key_may_be_the_destination(tmp_path):
    s = Segmented(tmp_path / "out", SOURCE_IS_DIP)
    s.write_full(lambda path: write_parquet(rows((5, 1, None, 1), (5, 2, None, 2)), path))
    s.apply(keys((2, None)), rows())
    assert current(s) == [(5, None, 1)]


def test_a_consumer_too_far_behind_must_redo_everything(seg):
    g0 = seg.generation
    for _ in range(CHANGE_LOG_LENGTH):  # the log holds the last CHANGE_LOG_LENGTH generations
        seg.touch()
    assert seg.changes_since(g0) is not None
    for _ in range(1):
        seg.touch()
    assert seg.changes_since(g0) is None
    assert seg.changes_since(seg.generation - 3).num_rows == 0


def test_old_files_go_but_the_previous_generation_stays(seg, monkeypatch):
    import vlf_dagster.flows.segments as segments

    monkeypatch.setattr(segments, "COMPACT_SHARE", 100.0)  # no folding in this one
    before = set(p.name for p in seg.directory.glob("*.parquet"))
    seg.apply(keys((2, None)), rows((2, 9, None, 21)))
    middle = set(p.name for p in seg.directory.glob("*.parquet"))
    assert before <= middle  # the previous generation's files are still there
    seg.apply(keys((2, None)), rows((2, 9, None, 22)))
    seg.apply(keys((2, None)), rows((2, 9, None, 23)))
    names = sorted(p.name for p in seg.directory.glob("delta-*.parquet"))
    assert len(names) == 2 and current(seg)[-1] == (2, None, 23)
    seg.write_full(lambda path: write_parquet(rows((7, 9, None, 70)), path))
    assert current(seg) == [(7, None, 70)]
    assert len(list(seg.directory.glob("base-*.parquet"))) == 2  # the new base and the one just replaced


def test_a_missing_artifact_says_so(tmp_path):
    with pytest.raises(SegmentError, match="no segmented artifact"):
        Segmented(tmp_path / "none").relation_sql()
    assert Segmented(tmp_path / "none").changes_since(1) is None


def test_sets_and_key_tables_convert_both_ways():
    from vlf_dagster.flows.segments import keys_of_set, set_of_keys
    from vlf_dagster.flows.sets import IPSet

    ipset = IPSet.from_strings(["10.0.0.1", "10.0.0.3", "2001:db8::7"])
    table = keys_of_set(ipset)
    assert sorted(zip(table.column("ip").to_pylist(), table.column("ipv6").to_pylist()), key=str) == \
        sorted([(0x0A000001, None), (0x0A000003, None), (0, V6)], key=str)
    assert set_of_keys(table) == ipset
    assert len(set_of_keys(keys())) == 0


def test_ipv6_members_keep_their_bytes_through_set_algebra():
    from vlf_dagster.flows.segments import keys_of_set
    from vlf_dagster.flows.sets import IPSet

    a, b = IPSet.from_strings(["2001:db8::7"]), IPSet.from_strings(["2001:db8::8"])
    for combined in (a | b, (a | b) & a, a ^ b):
        assert V6 in keys_of_set(combined).column("ipv6").to_pylist()
        assert V6 in [bytes(x) for x in combined.ipv6_array().to_pylist()]


def test_a_delta_grown_past_its_share_is_folded_into_a_new_base(seg, monkeypatch):
    import vlf_dagster.flows.segments as segments

    monkeypatch.setattr(segments, "COMPACT_SHARE", 0.6)
    g0 = seg.generation
    seg.apply(keys((2, None)), rows((2, 9, None, 21)))  # 1 removed + 1 delta row: half of the base's 4
    assert seg.manifest()["delta"] is not None
    seg.apply(keys((1, None)), rows((1, 9, None, 12), (1, 9, None, 13), (1, 9, None, 14)))  # past 60% of the base
    m = seg.manifest()
    assert m["delta"] is None and m["removed"] is None and m["base_rows"] == m["rows"] == 5
    assert current(seg) == [(0, V6, 60), (1, None, 12), (1, None, 13), (1, None, 14), (2, None, 21)]
    changed = seg.changes_since(g0)  # the log still tells consumers which sources changed
    assert sorted(changed.column("ip").to_pylist()) == [1, 2]
    seg.apply(keys((0, V6)), rows())  # and refreshes go on from the new base
    assert [r[0] for r in current(seg)] == [1, 1, 1, 2]


# row counts by destination, and each row counted once more under n's parity when n is even
BY_DESTINATION = Summary("by_destination", ("dIP", "even"),
                         "SELECT dIP, FALSE AS even FROM summarized UNION ALL SELECT dIP, TRUE FROM summarized WHERE n % 2 = 0")


def summary_rows(seg: Segmented) -> list[tuple]:
    con = duck.connect()
    return con.sql(f"SELECT * FROM read_parquet('{seg.summary('by_destination')}')").fetchall()


def counted_over_rows(seg: Segmented) -> list[tuple]:
    con = duck.connect()
    return con.sql(f"SELECT * FROM ({BY_DESTINATION.counts_sql(seg.relation_sql())}) ORDER BY ALL").fetchall()


@pytest.mark.parametrize("compact_share", [100.0, 0.0])  # kept through deltas, and through folds into a new base
def test_a_summary_follows_every_refresh_from_the_changed_rows(tmp_path, monkeypatch, compact_share):
    import vlf_dagster.flows.segments as segments

    monkeypatch.setattr(segments, "COMPACT_SHARE", compact_share)
    seg = Segmented(tmp_path / "art", summaries=(BY_DESTINATION,))
    seg.write_full(lambda path: write_parquet(rows((1, 9, None, 10), (1, 8, None, 11), (2, 9, None, 20), (0, 9, V6, 60)), path))
    assert summary_rows(seg) == [(8, False, 1), (9, False, 3), (9, True, 3)]
    seg.apply(keys((1, None), (3, None)), rows((1, 7, None, 12), (3, 9, None, 31)))
    assert summary_rows(seg) == counted_over_rows(seg) == [(7, False, 1), (7, True, 1), (9, False, 3), (9, True, 2)]
    seg.apply(keys((2, None), (0, V6)), rows())  # sources that leave: their counts go, zeros are dropped
    assert summary_rows(seg) == counted_over_rows(seg) == [(7, False, 1), (7, True, 1), (9, False, 1)]
    file = seg.summary("by_destination")
    seg.touch({"note": 1})  # nothing changed: the same file stays
    assert seg.summary("by_destination") == file and file.exists()
    # the bytes equal a summary counted from scratch over the same rows
    fresh = Segmented(tmp_path / "fresh", summaries=(BY_DESTINATION,))
    fresh.write_full(lambda path: write_parquet(seg.read(), path))
    assert fresh.summary("by_destination").read_bytes() == file.read_bytes()


def test_a_summary_declared_later_is_counted_once_over_every_row(seg):
    assert seg.summary("by_destination") is None  # the writer declared none
    later = Segmented(seg.directory, summaries=(BY_DESTINATION,))
    later.apply(keys((2, None)), rows((2, 5, None, 21)))
    assert summary_rows(later) == counted_over_rows(later) == [(5, False, 1), (9, False, 3), (9, True, 2)]
