"""Record samples in rwcut / cutmatch layout and the malformed near-matches, hand-computed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import START, flows, ip
from vlf_dagster.analysis.tables import samples as sm
from vlf_dagster.flows.tools.cut import format_records
from vlf_dagster.flows.flags import parse_flags
from vlf_dagster.flows.tools.match import match_ids, match_sessions
from vlf_dagster.flows.schema import FLOW_SCHEMA
from vlf_dagster.flows.storage import hour_ms

T0 = hour_ms(START)
S, SA, FSPA = parse_flags("S"), parse_flags("SA"), parse_flags("FSPA")


# --- 5. 1 flow / host ------------------------------------------------------------------------


def category_frame() -> pd.DataFrame:
    """40 one-flow sources (4.0.0.k) and 3 sources of 2..4 flows (9.0.0.k), as vlf_categories."""
    rows = []
    for k in range(40):
        rows.append(dict(sIP=ip(f"4.0.0.{k}"), dPort=1000 + k, sTime=T0 + 1000 * ((k * 7) % 40), source_flows=1))
    for k, count in enumerate((2, 3, 4)):
        for j in range(count):
            rows.append(dict(sIP=ip(f"9.0.0.{k}"), dPort=2000 + j, sTime=T0 + 500 * j, source_flows=count))
    df = pd.DataFrame(rows)
    df["dIP"] = ip("10.1.24.9")
    df["sPort"], df["protocol"], df["packets"], df["bytes"], df["flags"] = 4000, 6, 1, 40, S
    df["duration"], df["match_id"], df["category"] = 0, 0, "unmatched TCP"
    return df.astype({"sIP": np.uint32, "dIP": np.uint32, "sTime": np.int64})


def test_one_flow_sample_only_one_flow_sources_sorted_deterministic():
    df = category_frame()
    table = sm.one_flow_sample_table(df, n=13, seed=0)
    assert table.schema.equals(FLOW_SCHEMA, check_metadata=False)
    assert table.num_rows == 13
    sips = table.column("sIP").to_pylist()
    assert all(s >> 24 == 4 for s in sips) and len(set(sips)) == 13
    times = table.column("sTime").to_pylist()
    assert times == sorted(times)
    # the same sample whatever the row order; another seed gives another sample
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert sm.one_flow_sample_table(shuffled, n=13, seed=0).equals(table)
    assert sm.one_flow_sample_table(df, n=13, seed=1).column("sIP").to_pylist() != sips
    # all of them when n is large, none for n = 0
    assert sm.one_flow_sample_table(df, n=100).num_rows == 40
    assert sm.one_flow_sample_table(df, n=0).num_rows == 0


def test_one_flow_sample_text_is_rwcut():
    df = category_frame()
    text = sm.one_flow_sample(df, n=5, seed=2)
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 6
    assert lines == list(format_records(sm.one_flow_sample_table(df, 5, 2), sm.ONE_FLOW_FIELDS))
    assert lines[0].split("|")[:5] == ["            sIP", "            dIP", "sPort", "dPort", "pro"]
    assert lines[0].rstrip("|").endswith("duration")
    assert lines[1].startswith("        4.0.0.") and "|2006/04/01T00:00:" in lines[1]


def test_one_flow_sample_of_a_flow_table(tmp_path):
    table = flows([
        dict(sIP="4.1.1.1", sTime=T0 + 3), dict(sIP="5.5.5.5", sTime=T0 + 1), dict(sIP="5.5.5.5", sTime=T0 + 2),
        dict(sIP="6.6.6.6", sTime=T0 + 2),
    ])
    got = sm.one_flow_sample_table(table, n=13)
    assert got.column("sIP").to_pylist() == [ip("6.6.6.6"), ip("4.1.1.1")]  # sorted by sTime
    path = tmp_path / "vlf_flows.parquet"
    pq.write_table(table, path)
    assert sm.one_flow_sample_table(path).equals(got)
    assert len(sm.one_flow_sample([]).splitlines()) == 1  # the title line only, as rwcut prints it
    with pytest.raises(sm.SampleError):
        sm.one_flow_sample_table(table.drop_columns(["sTime"]))


# --- 6. matched flows ------------------------------------------------------------------------


def study_like_match() -> pa.Table:
    """4 unmatched queries, 3 matches (one with two responses), an unmatched response."""
    q, r = [], []
    for k in range(4):
        q.append(dict(sIP=f"4.0.0.{k}", dIP="10.1.24.202", sPort=4137 + k, dPort=445, flags=S, sTime=T0 + 100_000 * k))
    for k in range(3):
        t = T0 + 50_000 + 100_000 * k
        q.append(dict(sIP=f"216.0.0.{k}", dIP="10.1.24.69", sPort=4289 + k, dPort=25, packets=15, bytes=1518, flags=FSPA, sTime=t, duration=6000))
        r.append(dict(sIP="10.1.24.69", dIP=f"216.0.0.{k}", sPort=25, dPort=4289 + k, packets=10, bytes=772, flags=FSPA, sTime=t + 10, flowtype=1))
        if k == 1:
            r.append(dict(sIP="10.1.24.69", dIP=f"216.0.0.{k}", sPort=25, dPort=4289 + k, packets=2, bytes=80, flags=FSPA, sTime=t + 20, flowtype=1))
    r.append(dict(sIP="10.1.24.5", dIP="7.7.7.7", sPort=53, dPort=5353, protocol=17, sTime=T0 + 5, flowtype=1))
    return match_sessions(flows(q), flows(r), 1000)


def check_cutmatch(table: pa.Table, text: str) -> list[str]:
    lines = text.splitlines()
    assert lines[0].startswith(" <->Match#|")
    ids, resp = match_ids(table)
    body = lines[1:]
    assert len(body) == table.num_rows
    for i, line in enumerate(body):
        if resp[i]:  # a response: right after its query (or a response of the same match)
            assert ids[i] > 0 and ids[i - 1] == ids[i] and i > 0
            assert line.startswith("<-") and line[2:10].strip() == str(ids[i])
            assert body[i - 1].startswith("->") or body[i - 1].startswith("<-")
        else:
            assert line.startswith("->")
    return body


def test_matched_sample_responses_follow_queries():
    matched = study_like_match()
    table = sm.matched_sample_table(matched, n=7, seed=0)
    ids, resp = match_ids(table)
    # 7 conversations: all 3 matches (4 + 3 records) and the 4 unmatched queries; no unmatched response
    assert table.num_rows == 11 and int(resp.sum()) == 4
    assert sorted(set(ids[ids > 0].tolist())) == [1, 2, 3]
    assert ip("7.7.7.7") not in table.column("dIP").to_pylist()
    body = check_cutmatch(table, sm.matched_sample(matched, n=7, seed=0))
    # queries in time order; each match: its query then its responses
    starts = table.column("sTime").to_pylist()
    queries = [t for t, r in zip(starts, resp) if not r]
    assert queries == sorted(queries)
    two = [line for line in body if line[2:10].strip() == str(ids[np.flatnonzero(resp)][1])]
    assert [line[:2] for line in two] == ["->", "<-", "<-"]
    assert "|      216.0.0.1|" in two[0]


def test_matched_sample_quota_seed_and_files(tmp_path):
    matched = study_like_match()
    small = sm.matched_sample_table(matched, n=2, seed=0)
    ids, resp = match_ids(small)
    queries = ~resp
    assert int(queries.sum()) == 2 and int((ids[queries] > 0).sum()) == 1  # one match, one unmatched
    only_matches = sm.matched_sample_table(matched, n=5, matched_fraction=1.0)
    ids5, resp5 = match_ids(only_matches)
    # 3 matches exist; the unmatched fill in the other 2
    assert int((~resp5 & (ids5 > 0)).sum()) == 3 and int((~resp5 & (ids5 == 0)).sum()) == 2
    assert sm.matched_sample_table(matched, n=3, matched_fraction=None).num_rows >= 3
    assert sm.matched_sample_table(matched, n=4, seed=5).equals(sm.matched_sample_table(matched, n=4, seed=5))
    path = tmp_path / "matched_vlf_flows.parquet"
    pq.write_table(matched, path)
    assert sm.matched_sample_table(path, n=7).equals(sm.matched_sample_table(matched, n=7))
    assert sm.matched_sample_table(matched, n=0).num_rows == 0
    with pytest.raises(sm.SampleError):
        sm.matched_sample_table(matched, matched_fraction=2.0)


# --- 7. malformed near-matches ---------------------------------------------------------------

STUDY_QUERY = dict(sIP="207.237.229.243", dIP="10.1.26.178", sPort=31185, dPort=25383, packets=1, bytes=60, flags=S, sTime=T0 + 1000)
STUDY_RESPONSE = dict(sIP="10.1.26.178", dIP="207.237.229.243", sPort=25383, dPort=1966, packets=1, bytes=48, flags=SA, sTime=T0 + 1400, flowtype=1)


def near_inputs():
    q = [
        STUDY_QUERY,
        # properly answered (mirrored ports): no near match
        dict(sIP="8.8.8.8", dIP="10.1.24.9", sPort=5000, dPort=80, sTime=T0 + 2000),
        # answered with dPort = query sPort but another sPort: near match (the other way round)
        dict(sIP="9.9.9.9", dIP="10.1.24.10", sPort=6000, dPort=7000, protocol=17, sTime=T0 + 3000, duration=500),
        # a near answer, but too late (query ends at +3000 + 100, delta 1000)
        dict(sIP="5.5.5.5", dIP="10.1.24.11", sPort=1111, dPort=2222, sTime=T0 + 3000, duration=100),
        # a near answer, and a proper one: left out unless exclude_answered=False
        dict(sIP="6.6.6.6", dIP="10.1.24.12", sPort=1234, dPort=25, sTime=T0 + 4000),
        # ICMP is not considered
        dict(sIP="7.7.7.7", dIP="10.1.24.13", sPort=0, dPort=2048, protocol=1, sTime=T0 + 100),
    ]
    r = [
        STUDY_RESPONSE,
        dict(sIP="10.1.24.9", dIP="8.8.8.8", sPort=80, dPort=5000, sTime=T0 + 2010, flowtype=1),
        dict(sIP="10.1.24.10", dIP="9.9.9.9", sPort=7001, dPort=6000, protocol=17, sTime=T0 + 3500 + 1000, flowtype=1),
        dict(sIP="10.1.24.11", dIP="5.5.5.5", sPort=2222, dPort=9999, sTime=T0 + 4101, flowtype=1),
        dict(sIP="10.1.24.12", dIP="6.6.6.6", sPort=25, dPort=1234, sTime=T0 + 4001, flowtype=1),
        dict(sIP="10.1.24.12", dIP="6.6.6.6", sPort=25, dPort=4321, sTime=T0 + 4002, flowtype=1),
        dict(sIP="10.1.24.13", dIP="7.7.7.7", sPort=0, dPort=0, protocol=1, sTime=T0 + 150, flowtype=1),
        # same hosts and a mirrored port but another protocol
        dict(sIP="10.1.26.178", dIP="207.237.229.243", sPort=25383, dPort=1967, protocol=17, sTime=T0 + 1500, flowtype=1),
    ]
    return flows(q), flows(r)


def test_near_matches_finds_the_study_example():
    q, r = near_inputs()
    table = sm.near_matches(q, r, time_delta_ms=1000)
    assert table.schema.equals(FLOW_SCHEMA, check_metadata=False)
    assert table.column("sIP").to_pylist() == [ip("207.237.229.243"), ip("10.1.26.178"), ip("9.9.9.9"), ip("10.1.24.10")]
    assert table.column("nhIP").to_pylist() == [1, 0xFF000001, 2, 0xFF000002]
    text = sm.near_matches_text(table)
    assert text.splitlines() == [
        " <->Match#|            sIP|            dIP|sPort|dPort|pro|   packets|     bytes|   flags|",
        "->       1|207.237.229.243|    10.1.26.178|31185|25383|  6|         1|        60| S      |",
        "<-       1|    10.1.26.178|207.237.229.243|25383| 1966|  6|         1|        48| S  A   |",
        "->       2|        9.9.9.9|     10.1.24.10| 6000| 7000| 17|         1|        40|        |",
        "<-       2|     10.1.24.10|        9.9.9.9| 7001| 6000| 17|         1|        40|        |",
    ]
    assert text == sm.near_matches_text(q, r, time_delta_ms=1000)


def test_near_matches_time_delta_answered_and_limit(tmp_path):
    q, r = near_inputs()
    # delta 999: the UDP answer (at query end + 1000) is too late
    assert sm.near_matches(q, r, time_delta_ms=999).column("nhIP").to_pylist() == [1, 0xFF000001]
    # the late answer to 5.5.5.5 comes in with a larger delta
    wide = sm.near_matches(q, r, time_delta_ms=1001)
    assert ip("5.5.5.5") in wide.column("sIP").to_pylist()
    # a query that also got a proper answer
    kept = sm.near_matches(q, r, exclude_answered=False)
    rows = list(zip(kept.column("sIP").to_pylist(), kept.column("dPort").to_pylist()))
    assert (ip("10.1.24.12"), 4321) in rows and (ip("10.1.24.12"), 1234) not in rows
    assert sm.near_matches(q, r, limit=1).num_rows == 2
    assert sm.near_matches(q, r, limit=0).num_rows == 0
    # Parquet inputs (the outbound archive files) give the same table
    pq.write_table(q, tmp_path / "vlf_flows.parquet")
    pq.write_table(r.slice(0, 4), tmp_path / "out-S0_20060401.00.parquet")
    pq.write_table(r.slice(4), tmp_path / "out-S0_20060401.01.parquet")
    files = sorted(tmp_path.glob("out-*.parquet"))
    assert sm.near_matches(tmp_path / "vlf_flows.parquet", files).equals(sm.near_matches(q, r))
    assert sm.near_matches(q, []).num_rows == 0
    assert sm.near_matches_text(q.slice(0, 0), r).splitlines()[1:] == []
    with pytest.raises(sm.SampleError):
        sm.near_matches(q, r, time_delta_ms=-1)


def test_near_match_query_with_two_near_answers():
    q = flows([STUDY_QUERY])
    second = dict(STUDY_RESPONSE, dPort=1967, sTime=T0 + 1300)
    table = sm.near_matches(q, flows([STUDY_RESPONSE, second]))
    assert table.column("nhIP").to_pylist() == [1, 0xFF000001, 0xFF000001]
    assert table.column("dPort").to_pylist() == [25383, 1967, 1966]  # responses by start time


def test_near_match_ignores_the_answer_of_another_query():
    # two SYNs from one host to port 445 a moment apart; only the second is answered
    first = dict(sIP="4.4.4.4", dIP="10.1.24.20", sPort=4000, dPort=445, flags=S, sTime=T0)
    second = dict(first, sPort=4001, sTime=T0 + 300)
    answer = dict(sIP="10.1.24.20", dIP="4.4.4.4", sPort=445, dPort=4001, flags=SA, sTime=T0 + 310, flowtype=1)
    q, r = flows([first, second]), flows([answer])
    assert sm.near_matches(q, r).num_rows == 0
    loose = sm.near_matches(q, r, exclude_answered=False)
    assert loose.column("sPort").to_pylist() == [4000, 445]


def test_matched_sample_reads_ipv6_labels():
    # rwmatch labels IPv6 records in ::ffff:0:0/96 of nhIPv6, nhIP stays 0
    def mapped(label: int) -> bytes:
        return b"\0" * 10 + b"\xff\xff" + label.to_bytes(4, "big")

    v6q, v6r = b"\x20\x01" + b"\0" * 13 + b"\x01", b"\x20\x01" + b"\0" * 13 + b"\x02"
    rows = [
        dict(sIPv6=v6q, dIPv6=v6r, nhIPv6=mapped(1), attributes=0x80, sTime=T0 + 5, sIP=0, dIP=0),
        dict(sIPv6=v6r, dIPv6=v6q, nhIPv6=mapped(0xFF000001), attributes=0x80, sTime=T0 + 6, sIP=0, dIP=0, flowtype=1),
        dict(sIP="4.0.0.1", nhIP=0, sTime=T0 + 1),
    ]
    table = sm.matched_sample_table(flows(rows), n=2)
    ids, resp = match_ids(table)
    assert ids.tolist() == [0, 1, 1] and resp.tolist() == [False, False, True]


def test_near_matches_of_a_repeated_query_record_number_it_once():
    """Two identical query records (one flow seen by two sensors alike) are one near-matched query;
    the answer pairs with each copy, as the record-level join always did."""
    table = sm.near_matches(flows([STUDY_QUERY, STUDY_QUERY]), flows([STUDY_RESPONSE]))
    assert table.column("nhIP").to_pylist() == [1, 0xFF000001, 0xFF000001]


def test_near_matches_kept_per_source_equal_a_full_search_after_edits(tmp_path):
    from test_match_refresh import _site_flows
    from vlf_dagster.analysis.steps.extraction import extract_by_set
    from vlf_dagster.flows.segments import SOURCE_IS_DIP, SOURCE_IS_SIP, Segmented
    from vlf_dagster.flows.sets import IPSet
    from vlf_dagster.flows.storage import write_parquet

    def refreshed(queries, answers):
        for side, key, records in (("q", SOURCE_IS_SIP, queries), ("r", SOURCE_IS_DIP, answers)):
            write_parquet(flows(records), tmp_path / side / "month=2007-04.parquet")
            extract_by_set([tmp_path / side / "month=2007-04.parquet"], IPSet.from_flow_column(flows(queries), "sIP"),
                           Segmented(tmp_path / f"{side}_seg", key), tmp_path / f"{side}_state")
        return sm.refresh_near_matches(tmp_path / "q_seg", tmp_path / "r_seg", tmp_path / "near", time_delta_ms=2000)

    rng = np.random.default_rng(21)
    queries, answers = _site_flows(rng, range(1, 150), per_source=3)
    for step in range(3):
        groups = refreshed(queries, answers)
        for limit in (5, 10_000):  # the first few, and all
            expected = sm.near_matches(flows(queries), flows(answers), time_delta_ms=2000, limit=limit)
            assert expected.num_rows >= (10 if limit == 5 else 20)
            assert sm.first_near_matches(groups, limit).equals(expected), (step, limit)
        if step:
            assert groups.manifest()["changes"][-1]["keys"] is not None  # searched again by source, not from scratch
        more_q, more_a = _site_flows(rng, rng.choice(np.arange(1, 200), size=8, replace=False).tolist(), serial0=1000 * (step + 1))
        gone = queries[5]["sIP"]
        queries = [q for q in queries if q["sIP"] != gone] + more_q
        answers = [a for a in answers if a["dIP"] != gone] + more_a


@pytest.mark.parametrize("keep, low", [(6, 2), (40, 2), (6, 5)])
def test_the_matched_sample_from_kept_candidates_equals_one_over_all_conversations(tmp_path, keep, low):
    from test_match_refresh import _Site, _site_flows
    from vlf_dagster.flows.segments import Segmented

    rng = np.random.default_rng(keep + low)
    site = _Site(tmp_path / "site")
    queries, answers = _site_flows(rng, range(1, 120), per_source=3)
    for step in range(4):
        site.run(queries, answers)
        candidates = sm.refresh_sample_candidates(site.root / "matched", tmp_path / "state", keep=keep, low=low)
        if step and keep == 40:  # kept by source, not drawn again
            assert candidates.manifest()["changes"][-1]["keys"] is not None
        full = Segmented(site.root / "matched").relation_sql()
        for n, fraction in ((3, 0.5), (5, None)):
            with duck_connect() as con:
                whole = con.sql(f"SELECT * FROM ({full}) ORDER BY 1").to_arrow_table()
            expected = sm.matched_sample(Segmented(site.root / "matched").directory, n, 0, fraction)
            assert sm.matched_sample_of_candidates(candidates, n, 0, fraction) == expected, (step, n)
            assert whole.num_rows > Segmented(candidates.directory).rows
        more_q, more_a = _site_flows(rng, rng.choice(np.arange(1, 160), size=10, replace=False).tolist(), serial0=5000 * (step + 1))
        gone = {queries[k]["sIP"] for k in (3, 40)}
        queries = [q for q in queries if q["sIP"] not in gone] + more_q
        answers = [a for a in answers if a["dIP"] not in gone] + more_a


def duck_connect():
    from vlf_dagster.flows import duck

    return duck.connect()
