"""vlf match (rwmatch): hand-computed cases, a record-by-record oracle, the CLI."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import flows
from vlf_dagster.flows.tools import match as match_mod
from vlf_dagster.flows.tools.match import SESSION_RELATE, MatchError, match, match_ids, match_sessions, parse_relate
from vlf_dagster.flows.schema import FLOW_SCHEMA

T0 = 1143850555000  # 2006/04/01T00:15:55.000
Q_TAG, R_TAG = 0, 0xFF000000
ROOT = Path(__file__).resolve().parents[1]


def nh(table: pa.Table) -> list[str]:
    return [str(ipaddress.IPv4Address(v)) for v in table.column("nhIP").to_pylist()]


def ids_of(table: pa.Table) -> list[int]:
    """The `bytes` field is used as a record name in these tests."""
    return table.column("bytes").to_pylist()


# --- the study's samples ---------------------------------------------------------------------------

STUDY_QUERIES = [  # "A small sample of 1 flow / host data" (inbound)
    dict(sIP="4.227.17.37", dIP="10.1.24.202", sPort=4137, dPort=445, packets=3, bytes=144, flags=2, sTime=T0 - 487000, duration=9000),
    dict(sIP="202.170.99.73", dIP="10.1.25.118", sPort=27318, dPort=16729, packets=1, bytes=52, flags=2, sTime=T0 - 430000),
    dict(sIP="216.123.177.141", dIP="10.1.24.69", sPort=4289, dPort=25, packets=15, bytes=1518, flags=27, sTime=T0, duration=6000),
    dict(sIP="4.252.250.124", dIP="10.1.24.202", sPort=3950, dPort=445, packets=3, bytes=144, flags=2, sTime=T0 + 93000, duration=9000),
    dict(sIP="219.107.35.199", dIP="10.1.26.132", sPort=2398, dPort=25, packets=17, bytes=11890, flags=27, sTime=T0 + 530000, duration=4000),
]
STUDY_RESPONSES = [  # "A sample of matched flows": the answers
    dict(sIP="10.1.24.69", dIP="216.123.177.141", sPort=25, dPort=4289, packets=10, bytes=772, flags=27, sTime=T0, duration=6000),
    dict(sIP="10.1.26.132", dIP="219.107.35.199", sPort=25, dPort=2398, packets=14, bytes=825, flags=27, sTime=T0 + 530000, duration=4000),
]


def test_study_matched_sample_gets_ids_in_nhip_and_keeps_other_fields():
    q, r = flows(STUDY_QUERIES), flows(STUDY_RESPONSES)
    out = match(q, r, SESSION_RELATE)
    # matched records only, in key order: the 216.* conversation is match 1, the 219.* one match 2;
    # equal sTime with dPort 25 < 1024 <= sPort: the query is the base and is written first
    assert nh(out) == ["0.0.0.1", "255.0.0.1", "0.0.0.2", "255.0.0.2"]
    assert ids_of(out) == [1518, 772, 11890, 825]
    first = out.slice(0, 1).to_pylist()[0]
    expected = q.slice(2, 1).to_pylist()[0]
    assert {k: v for k, v in first.items() if k != "nhIP"} == {k: v for k, v in expected.items() if k != "nhIP"}
    ids, is_resp = match_ids(out)
    assert ids.tolist() == [1, 1, 2, 2] and is_resp.tolist() == [False, True, False, True]


def test_unmatched_both_are_written_with_zero_labels_in_key_order():
    q, r = flows(STUDY_QUERIES[:3]), flows(STUDY_RESPONSES[:1] + [dict(sIP="10.1.24.7", dIP="250.1.1.1", sPort=80, dPort=999, bytes=7)])
    out = match(q, r, SESSION_RELATE, unmatched="b")
    # query keys start with sIP, response keys with dIP: 4.* < 202.* < 216.* (matched) < 250.* (response)
    assert ids_of(out) == [144, 52, 1518, 772, 7]
    assert nh(out) == ["0.0.0.0", "0.0.0.0", "0.0.0.1", "255.0.0.1", "255.0.0.0"]
    assert ids_of(match(q, r, SESSION_RELATE, unmatched="q")) == [144, 52, 1518, 772]
    assert ids_of(match(q, r, SESSION_RELATE, unmatched="r")) == [1518, 772, 7]
    assert ids_of(match_sessions(q, r)) == [144, 52, 1518, 772, 7]  # the study's helper keeps all


def test_near_match_with_wrong_port_does_not_match_the_full_relate_set():
    # "Malformed traffic": the SYN-ACK answers from port 25383 to 1966, not to 31185
    q = flows([dict(sIP="207.237.229.243", dIP="10.1.26.178", sPort=31185, dPort=25383, flags=2, bytes=60, sTime=T0)])
    r = flows([dict(sIP="10.1.26.178", dIP="207.237.229.243", sPort=25383, dPort=1966, flags=18, bytes=48, sTime=T0)])
    assert match(q, r, SESSION_RELATE).num_rows == 0
    # keys differ first at the 4th pair (q.sPort 31185 vs r.dPort 1966): the response is smaller
    assert nh(match(q, r, SESSION_RELATE, unmatched="b")) == ["255.0.0.0", "0.0.0.0"]
    loose = match(q, r, [("sIP", "dIP"), ("dIP", "sIP"), ("dPort", "sPort"), ("protocol", "protocol")])
    assert nh(loose) == ["0.0.0.1", "255.0.0.1"]


# --- starting a match ------------------------------------------------------------------------------

PAIR = [("sIP", "dIP"), ("dIP", "sIP"), ("protocol", "protocol")]


def q_rec(**kw):
    base = dict(sIP="1.1.1.1", dIP="10.0.0.1", sPort=4000, dPort=25, protocol=6, sTime=T0, duration=1000, bytes=1)
    base.update(kw)
    return base


def r_rec(**kw):
    base = dict(sIP="10.0.0.1", dIP="1.1.1.1", sPort=25, dPort=4000, protocol=6, sTime=T0, duration=1000, bytes=2)
    base.update(kw)
    return base


@pytest.mark.parametrize(
    "r_start, delta, matched",
    [(500, 0, True), (1000, 0, True), (1001, 0, False), (1500, 500, True), (1500, 499, False)],
)
def test_query_first_needs_the_response_to_start_by_query_end_plus_delta(r_start, delta, matched):
    out = match(flows([q_rec()]), flows([r_rec(sTime=T0 + r_start)]), PAIR, time_delta_ms=delta, unmatched="b")
    assert nh(out) == (["0.0.0.1", "255.0.0.1"] if matched else ["0.0.0.0", "255.0.0.0"])


def test_response_first_matches_only_with_symmetric_delta_and_then_leads():
    q, r = flows([q_rec(sTime=T0 + 500)]), flows([r_rec(sTime=T0)])
    plain = match(q, r, PAIR, unmatched="b")
    assert ids_of(plain) == [2, 1] and nh(plain) == ["255.0.0.0", "0.0.0.0"]  # r skipped first
    sym = match(q, r, PAIR, symmetric=True, unmatched="b")
    assert ids_of(sym) == [2, 1] and nh(sym) == ["255.0.0.1", "0.0.0.1"]  # r is the base
    late = match(flows([q_rec(sTime=T0 + 1500)]), r, PAIR, symmetric=True, time_delta_ms=499, unmatched="b")
    assert nh(late) == ["255.0.0.0", "0.0.0.0"]
    assert nh(match(flows([q_rec(sTime=T0 + 1500)]), r, PAIR, symmetric=True, time_delta_ms=500)) == ["255.0.0.1", "0.0.0.1"]


def test_equal_start_guesses_the_base_from_the_query_ports():
    # UDP, equal sTime; the response lasts 10 s, the query 0.1 s; a second response at +5 s.
    def run(q_sport, q_dport):
        q = flows([q_rec(protocol=17, sPort=q_sport, dPort=q_dport, duration=100)])
        r = flows([
            r_rec(protocol=17, sPort=q_dport, dPort=q_sport, duration=10_000, bytes=2),
            r_rec(protocol=17, sPort=q_dport, dPort=q_sport, sTime=T0 + 5000, bytes=3),
        ])
        return match(q, r, PAIR + [("sPort", "dPort"), ("dPort", "sPort")], unmatched="b")

    client = run(5000, 53)  # dPort < 1024 <= sPort: the query is the base, window ends at +0.1 s
    assert ids_of(client) == [1, 2, 3] and nh(client) == ["0.0.0.1", "255.0.0.1", "255.0.0.0"]
    server = run(53, 5000)  # dPort >= 1024 > sPort: the response is the base (written first), window +10 s
    assert ids_of(server) == [2, 1, 3] and nh(server) == ["255.0.0.1", "0.0.0.1", "255.0.0.1"]


# --- growing a match -------------------------------------------------------------------------------

GROW_Q = [q_rec(sTime=T0, duration=1000, bytes=11), q_rec(sTime=T0 + 2000, duration=500, bytes=12), q_rec(sTime=T0 + 10_000, duration=100, bytes=13)]
GROW_R = [r_rec(sTime=T0 + 500, duration=2500, bytes=21), r_rec(sTime=T0 + 3500, duration=500, bytes=22), r_rec(sTime=T0 + 10_050, duration=50, bytes=23)]


@pytest.mark.parametrize(
    "mode, expected",
    [
        # window q11.e + 1 s = +2 s: q11 r21 q12; r22 (+3.5 s) is left and skipped; q13 r23 is match 2
        ("absolute", [(11, "0.0.0.1"), (21, "255.0.0.1"), (12, "0.0.0.1"), (22, "255.0.0.0"), (13, "0.0.0.2"), (23, "255.0.0.2")]),
        # q12 read at +2 s moves the window to +3.5 s, r22 to +5 s: r22 joins; q13 starts match 2
        ("relative", [(11, "0.0.0.1"), (21, "255.0.0.1"), (12, "0.0.0.1"), (22, "255.0.0.1"), (13, "0.0.0.2"), (23, "255.0.0.2")]),
        # no window: everything related is one match, merged by sTime
        ("infinite", [(11, "0.0.0.1"), (21, "255.0.0.1"), (12, "0.0.0.1"), (22, "255.0.0.1"), (13, "0.0.0.1"), (23, "255.0.0.1")]),
    ],
)
def test_delta_modes_grow_a_match_differently(mode, expected):
    out = match(flows(GROW_Q), flows(GROW_R), PAIR, time_delta_ms=1000, delta_mode=mode, unmatched="b")
    assert list(zip(ids_of(out), nh(out))) == expected


def test_relate_pairs_are_one_way():
    q = flows([q_rec(sIP="1.1.1.1", dIP="10.0.0.1")])
    other_host = flows([r_rec(sIP="10.0.0.9", dIP="1.1.1.1")])  # answers from another inside host
    same_dir = flows([r_rec(sIP="1.1.1.1", dIP="10.0.0.1")])  # travels the query's way
    assert nh(match(q, other_host, [("sIP", "dIP")])) == ["0.0.0.1", "255.0.0.1"]
    assert match(q, other_host, [("sIP", "dIP"), ("dIP", "sIP")]).num_rows == 0
    assert match(q, same_dir, [("sIP", "dIP")]).num_rows == 0  # q.sIP 1.1.1.1 != r.dIP 10.0.0.1
    assert nh(match(q, same_dir, [("sIP", "sIP")])) == ["0.0.0.1", "255.0.0.1"]


def test_ipv6_records_get_the_label_mapped_into_nhipv6():
    a6, b6 = ipaddress.IPv6Address("2001:db8::1").packed, ipaddress.IPv6Address("2001:db8::2").packed
    q = flows([q_rec(sIP="0.0.0.0", dIP="0.0.0.0", sIPv6=a6, dIPv6=b6, attributes=0x80)])
    r = flows([r_rec(sIP="0.0.0.0", dIP="0.0.0.0", sIPv6=b6, dIPv6=a6, attributes=0x80), r_rec(bytes=5, sIPv6=None, dIPv6=None)])
    out = match(q, r, PAIR, unmatched="b")
    # IPv4 addresses sort as ::ffff:a.b.c.d, below 2001:db8::: the IPv4 response comes first
    assert ids_of(out) == [5, 1, 2]
    rows = {row["bytes"]: row for row in out.to_pylist()}
    assert rows[1]["nhIP"] == 0 and ipaddress.IPv6Address(rows[1]["nhIPv6"]) == ipaddress.IPv6Address("::ffff:0.0.0.1")
    assert ipaddress.IPv6Address(rows[2]["nhIPv6"]) == ipaddress.IPv6Address("::ffff:255.0.0.1")
    assert rows[5]["nhIP"] == R_TAG and rows[5]["nhIPv6"] is None  # the IPv4 response stays IPv4
    ids, is_resp = match_ids(out)
    assert sorted(zip(ids.tolist(), is_resp.tolist())) == [(0, True), (1, False), (1, True)]


def test_an_ipv4_mapped_ipv6_address_relates_to_the_ipv4_address():
    mapped = ipaddress.IPv6Address("::ffff:1.1.1.1").packed
    q = flows([q_rec(sIP="0.0.0.0", sIPv6=mapped, dIPv6=ipaddress.IPv6Address("::ffff:10.0.0.1").packed, attributes=0x80)])
    assert nh(match(q, flows([r_rec()]), [("sIP", "dIP")]))[1] == "255.0.0.1"


# --- errors ----------------------------------------------------------------------------------------


def test_match_id_overflow_is_an_error_before_any_id_spills(monkeypatch):
    pairs = [(q_rec(sIP=f"1.1.1.{i}", bytes=i), r_rec(dIP=f"1.1.1.{i}", bytes=100 + i)) for i in range(3)]
    q, r = flows([p[0] for p in pairs]), flows([p[1] for p in pairs])
    monkeypatch.setattr(match_mod, "MAX_MATCH_ID", 3)
    assert nh(match(q, r, PAIR))[-1] == "255.0.0.3"
    monkeypatch.setattr(match_mod, "MAX_MATCH_ID", 2)
    with pytest.raises(MatchError, match="24-bit"):
        match(q, r, PAIR)


def test_bad_arguments_raise_match_error():
    with pytest.raises(MatchError, match="exactly two"):
        parse_relate("sip")
    with pytest.raises(MatchError, match="cannot be related"):
        parse_relate("sTime,sTime")
    with pytest.raises(MatchError, match="unknown field"):
        parse_relate("sip,bogus")
    assert parse_relate("1,2") == ("sIP", "dIP") and parse_relate("dport, SPORT") == ("dPort", "sPort")
    q = flows([q_rec()])
    with pytest.raises(MatchError):
        match(q, q, [])
    with pytest.raises(MatchError):
        match(q, q, PAIR, delta_mode="sideways")
    with pytest.raises(MatchError):
        match(q, q, PAIR, unmatched="x")
    with pytest.raises(MatchError):
        match(q, q, PAIR, time_delta_ms=-1)


def test_empty_inputs():
    empty = FLOW_SCHEMA.empty_table()
    q = flows([q_rec(), q_rec(bytes=3)])
    assert match(empty, empty, PAIR).num_rows == 0
    assert ids_of(match(q, empty, PAIR, unmatched="b")) == [1, 3]
    assert match(q, empty, PAIR).num_rows == 0


# --- the oracle: rwmatch.c's loop, one record at a time --------------------------------------------

INF = 2**63 - 1


def _value(rec: dict, name: str, other: str, wide: bool) -> int:
    ips = ("sIP", "dIP")
    if name in ips:
        if rec["attributes"] & 0x80:
            return int.from_bytes(rec[name + "v6"], "big")
        return (0xFFFF << 32 | rec[name]) if wide else rec[name]
    if name == "iType":
        v = rec["dPort"] >> 8
    elif name == "iCode":
        v = rec["dPort"] & 0xFF
    elif name == "class":
        v = 0
    elif name == "type":
        v = rec["flowtype"]
    else:
        v = rec[name]
    return (0xFFFF << 32 | (v & 0xFFFFFFFF)) if wide and other in ips else v


def rwmatch_reference(q: pa.Table, r: pa.Table, relate, delta=0, symmetric=False, mode="absolute", unmatched="b"):
    """(bytes, nhIP label) of each output record, by a direct record-at-a-time rwmatch loop."""
    Q, R = q.to_pylist(), r.to_pylist()
    wide = any(x["attributes"] & 0x80 for x in Q + R)

    def key(rec, side):
        return tuple(_value(rec, pair[side], pair[1 - side], wide) for pair in relate)

    Q.sort(key=lambda x: (key(x, 0), x["sTime"]))
    R.sort(key=lambda x: (key(x, 1), x["sTime"]))
    end = lambda x: x["sTime"] + x["duration"]
    out = []

    def write(rec, side, mid):
        if mid or unmatched in ("b", "q" if side == 0 else "r"):
            out.append((rec["bytes"], mid | (0xFF000000 if side else 0)))

    def guess(x):
        if x["protocol"] in (6, 17):
            if x["dPort"] < 1024:
                if x["sPort"] > 1023:
                    return 0
            elif x["sPort"] < 1024:
                return 1
        return 0

    def check(x, y):
        kq, kr = key(x, 0), key(y, 1)
        if kq != kr:
            return (-1 if kq < kr else 1), None
        if x["sTime"] == y["sTime"]:
            return 0, guess(x)
        if x["sTime"] < y["sTime"]:
            return (0, 0) if y["sTime"] <= end(x) + delta else (-1, None)
        if symmetric and x["sTime"] <= end(y) + delta:
            return 0, 1
        return 1, None

    i = j = mid = 0
    while i < len(Q) and j < len(R):
        rv, base_type = check(Q[i], R[j])
        if rv < 0:
            write(Q[i], 0, 0)
            i += 1
        elif rv > 0:
            write(R[j], 1, 0)
            j += 1
        else:
            mid += 1
            base = Q[i] if base_type == 0 else R[j]
            bkey = key(base, base_type)
            maxt = INF if mode == "infinite" else end(base) + delta
            hq = hr = True
            lead = base_type
            while True:
                if lead == 0:
                    write(Q[i], 0, mid)
                    i += 1
                    hq = i < len(Q) and key(Q[i], 0) == bkey and Q[i]["sTime"] <= maxt
                    if hq and mode == "relative":
                        maxt = max(maxt, end(Q[i]) + delta)
                else:
                    write(R[j], 1, mid)
                    j += 1
                    hr = j < len(R) and key(R[j], 1) == bkey and R[j]["sTime"] <= maxt
                    if hr and mode == "relative":
                        maxt = max(maxt, end(R[j]) + delta)
                if not hq and not hr:
                    break
                if not hq:
                    lead = 1
                elif not hr:
                    lead = 0
                elif Q[i]["sTime"] != R[j]["sTime"]:
                    lead = 0 if Q[i]["sTime"] < R[j]["sTime"] else 1
                else:
                    lead = base_type
    for x in Q[i:]:
        write(x, 0, 0)
    for x in R[j:]:
        write(x, 1, 0)
    return out


V6_ADDRS = [ipaddress.IPv6Address("::ffff:1.1.1.1").packed, ipaddress.IPv6Address("2001:db8::1").packed]


@st.composite
def flow_side(draw, first_id):
    n = draw(st.integers(0, 12))
    rows = []
    for k in range(n):
        v6 = draw(st.integers(0, 9)) == 0
        row = dict(
            sIP=draw(st.sampled_from(["1.1.1.1", "10.0.0.1"])),
            dIP=draw(st.sampled_from(["1.1.1.1", "10.0.0.1"])),
            sPort=draw(st.sampled_from([25, 53, 4000, 771])),
            dPort=draw(st.sampled_from([25, 53, 4000, 771])),
            protocol=draw(st.sampled_from([6, 17, 1])),
            sensor=draw(st.integers(0, 1)),
            sTime=T0 + 500 * draw(st.integers(0, 8)),
            duration=500 * draw(st.integers(0, 4)),
            bytes=first_id + k,
            sIPv6=None,
            dIPv6=None,
        )
        if v6:
            row.update(sIP="0.0.0.0", dIP="0.0.0.0", attributes=0x80, sIPv6=draw(st.sampled_from(V6_ADDRS)), dIPv6=draw(st.sampled_from(V6_ADDRS)))
        rows.append(row)
    return rows


RELATE_CHOICES = ["sIP", "dIP", "sPort", "dPort", "protocol", "sensor", "iType"]


@st.composite
def scenario(draw):
    relate = draw(st.lists(st.tuples(st.sampled_from(RELATE_CHOICES), st.sampled_from(RELATE_CHOICES)), min_size=1, max_size=3))
    return dict(
        q=draw(flow_side(1000)),
        r=draw(flow_side(2000)),
        relate=relate,
        delta=draw(st.sampled_from([0, 500, 1000, 2500])),
        symmetric=draw(st.booleans()),
        mode=draw(st.sampled_from(["absolute", "relative", "infinite"])),
    )


def _empty_or(rows):
    return flows(rows) if rows else FLOW_SCHEMA.empty_table()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario(), st.sampled_from(["bulk", "lockstep", "sequential"]))
def test_matches_the_record_at_a_time_oracle_and_keeps_every_record(sc, path):
    q, r = _empty_or(sc["q"]), _empty_or(sc["r"])
    saved = match_mod.BULK_SINGLE_WINDOW, match_mod.LOCKSTEP_MAX_GROUP
    try:
        match_mod.BULK_SINGLE_WINDOW = path == "bulk"
        match_mod.LOCKSTEP_MAX_GROUP = 0 if path == "sequential" else 512
        out = match(q, r, sc["relate"], time_delta_ms=sc["delta"], symmetric=sc["symmetric"], delta_mode=sc["mode"], unmatched="b")
    finally:
        match_mod.BULK_SINGLE_WINDOW, match_mod.LOCKSTEP_MAX_GROUP = saved
    got = list(zip(ids_of(out), match_ids(out)[0].tolist(), match_ids(out)[1].tolist()))
    want = rwmatch_reference(q, r, sc["relate"], sc["delta"], sc["symmetric"], sc["mode"])
    assert [(b, lab & 0xFFFFFF, bool(lab >> 24)) for b, lab in want] == got
    # every record is written once, unchanged except for its label
    strip = lambda row: tuple(sorted((k, v) for k, v in row.items() if k not in ("nhIP", "nhIPv6")))
    assert sorted(map(strip, out.to_pylist())) == sorted(map(strip, q.to_pylist() + r.to_pylist()))
    # the side tag is right: query records (bytes < 2000) have top byte 0
    assert all((b >= 2000) == resp for b, _, resp in got)


def _random_side(rng: np.random.Generator, first_id: int) -> list[dict]:
    rows = []
    for k in range(int(rng.integers(0, 14))):
        row = dict(
            sIP=str(rng.choice(["1.1.1.1", "10.0.0.1"])), dIP=str(rng.choice(["1.1.1.1", "10.0.0.1"])),
            sPort=int(rng.choice([25, 53, 4000])), dPort=int(rng.choice([25, 53, 4000])),
            protocol=int(rng.choice([6, 17])), sTime=T0 + 500 * int(rng.integers(0, 8)),
            duration=500 * int(rng.integers(0, 5)), bytes=first_id + k,
        )
        rows.append(row)
    return rows


@pytest.mark.parametrize("path", ["bulk", "lockstep", "sequential"])
def test_seeded_sweep_against_the_oracle(monkeypatch, path):
    monkeypatch.setattr(match_mod, "BULK_SINGLE_WINDOW", path == "bulk")
    monkeypatch.setattr(match_mod, "LOCKSTEP_MAX_GROUP", 0 if path == "sequential" else 512)
    rng = np.random.default_rng(7)
    relate_sets = [PAIR, PAIR + [("sPort", "dPort"), ("dPort", "sPort")], [("sIP", "dIP")], [("protocol", "protocol")]]
    for case in range(150):
        q, r = _empty_or(_random_side(rng, 1000)), _empty_or(_random_side(rng, 2000))
        relate = relate_sets[case % len(relate_sets)]
        mode = ["absolute", "relative", "infinite"][case % 3]
        delta, symmetric = int(rng.choice([0, 500, 1500])), bool(rng.integers(0, 2))
        out = match(q, r, relate, time_delta_ms=delta, symmetric=symmetric, delta_mode=mode, unmatched="b")
        want = rwmatch_reference(q, r, relate, delta, symmetric, mode)
        assert list(zip(ids_of(out), out.column("nhIP").to_pylist())) == want, (case, relate, mode, delta, symmetric)


# --- CLI -------------------------------------------------------------------------------------------


def vlf(*args, stdin=None):
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run([sys.executable, "-m", "vlf_dagster.cli", *args], input=stdin, capture_output=True, env=env, cwd=ROOT)


def test_cli_match_pipes_an_arrow_stream_into_cut(tmp_path):
    pq.write_table(flows(STUDY_QUERIES), tmp_path / "q.parquet")
    pq.write_table(flows(STUDY_RESPONSES), tmp_path / "r.parquet")
    relate = ["--relate=1,2", "--relate=4,3", "--relate=2,1", "--relate=3,4", "--relate=5,5"]
    m = vlf("match", *relate, str(tmp_path / "q.parquet"), str(tmp_path / "r.parquet"), "-")
    assert m.returncode == 0, m.stderr
    assert m.stdout[:4] != b"PAR1" and len(m.stdout) > 0
    c = vlf("cut", "--fields=match,sIP,dIP,sPort,dPort", "--site-config-file", str(ROOT / "vlf_dagster/site.default.toml"), stdin=m.stdout)
    assert c.returncode == 0, c.stderr
    assert c.stdout.decode().splitlines() == [
        " <->Match#|            sIP|            dIP|sPort|dPort|",
        "->       1|216.123.177.141|     10.1.24.69| 4289|   25|",
        "<-       1|     10.1.24.69|216.123.177.141|   25| 4289|",
        "->       2| 219.107.35.199|    10.1.26.132| 2398|   25|",
        "<-       2|    10.1.26.132| 219.107.35.199|   25| 2398|",
    ]
    out = tmp_path / "m.parquet"
    m = vlf("match", *relate, "--unmatched=B", "--time-delta=0.5", str(tmp_path / "q.parquet"), str(tmp_path / "r.parquet"), str(out))
    assert m.returncode == 0, m.stderr
    assert pq.read_table(out).num_rows == 7


def test_cli_match_errors_are_one_line(tmp_path):
    pq.write_table(flows(STUDY_QUERIES), tmp_path / "q.parquet")
    for args, text in [
        (["--relate=1,bogus"], "unknown field"),
        (["--relate=1,2", "--time-delta=soon"], "--time-delta"),
        (["--relate=1,2", "--unmatched=x"], "--unmatched"),
    ]:
        res = vlf("match", *args, str(tmp_path / "q.parquet"), str(tmp_path / "q.parquet"), str(tmp_path / "o.parquet"))
        assert res.returncode == 1
        lines = res.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vlf match:") and text in lines[0]
