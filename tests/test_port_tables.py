"""The study's port tables on small hand-made inputs; every expected value is computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from vlf_dagster.analysis.tables.categories import category_counts
from vlf_dagster.analysis.tables.common import CATEGORY_SCHEMA, PortTableError
from vlf_dagster.analysis.tables.destinations import contact_surface, contact_surface_of_counts, where_do_they_go
from vlf_dagster.analysis.tables.flags import flags_by_port, flags_for_top_ports, flags_side_by_side, unmatched_tcp_flags
from vlf_dagster.analysis.tables.geography import geographic_distribution, geographic_side_by_side
from vlf_dagster.analysis.tables.ports import interest_score, interest_why, overall_port_usage, port_numerology, ports_by_flow_bucket
from vlf_dagster.analysis.tables.protocols import icmp_table, other_protocols
from vlf_dagster.analysis.tables.sessions import matched_port_direction_counts, matched_ports
from vlf_dagster.flows.schema import conform
from vlf_dagster.flows.sets import IPSet

S, R, RA, SA = 2, 4, 20, 18
TCP, UDP, ICMP = 6, 17, 1

# (sIP, dIP, dPort, protocol, flags, category, source_flows, packets, bytes)
ROWS = [
    # unmatched TCP: 13 rows
    (1, 10, 445, TCP, S, "unmatched TCP", 1, 1, 40),
    (2, 11, 445, TCP, S, "unmatched TCP", 1, 1, 40),
    (3, 12, 445, TCP, S, "unmatched TCP", 1, 1, 40),
    (4, 12, 445, TCP, R, "unmatched TCP", 1, 1, 40),
    (5, 10, 4662, TCP, S, "unmatched TCP", 1, 1, 40),
    (6, 10, 4662, TCP, RA, "unmatched TCP", 1, 1, 40),
    (7, 13, 25, TCP, SA, "unmatched TCP", 1, 1, 40),
    (8, 10, 4662, TCP, S, "unmatched TCP", 3, 1, 40),
    (8, 10, 4662, TCP, S, "unmatched TCP", 3, 1, 40),
    (8, 10, 4662, TCP, RA, "unmatched TCP", 3, 1, 40),
    (9, 12, 445, TCP, S, "unmatched TCP", 6, 1, 40),
    (9, 12, 25, TCP, S, "unmatched TCP", 6, 1, 40),
    (10, 11, 80, TCP, S, "unmatched TCP", 9, 1, 40),
    # unmatched UDP: 4 rows
    (20, 10, 7986, UDP, 0, "unmatched UDP", 1, 1, 60),
    (21, 10, 7986, UDP, 0, "unmatched UDP", 1, 1, 60),
    (22, 14, 53, UDP, 0, "unmatched UDP", 1, 1, 60),
    (23, 11, 53, UDP, 0, "unmatched UDP", 2, 1, 60),
    # matched
    (30, 10, 25, TCP, 27, "matched TCP", 2, 5, 500),
    (31, 11, 22, TCP, 27, "matched TCP", 2, 5, 500),
    (32, 10, 4672, UDP, 0, "matched UDP", 1, 1, 80),
    # ICMP (dPort = type * 256 + code): (3,3) x3, (3,1), (8,0) x2, (3,44), (11,0)
    (50, 10, 771, ICMP, 0, "ICMP", 3, 1, 56),
    (50, 11, 771, ICMP, 0, "ICMP", 3, 1, 56),
    (50, 12, 771, ICMP, 0, "ICMP", 3, 1, 56),
    (51, 10, 769, ICMP, 0, "ICMP", 1, 1, 56),
    (52, 10, 2048, ICMP, 0, "ICMP", 2, 1, 28),
    (52, 10, 2048, ICMP, 0, "ICMP", 2, 1, 28),
    (53, 10, 812, ICMP, 0, "ICMP", 1, 1, 56),
    (1, 10, 2816, ICMP, 0, "ICMP", 1, 1, 56),
    # other protocols
    (40, 10, 0, 50, 0, "other", 1, 10, 2000),
    (41, 10, 0, 50, 0, "other", 1, 10, 2000),
    (42, 10, 0, 132, 0, "other", 1, 8, 24),
    (43, 10, 0, 64, 0, "other", 1, 2_000_000, 200_000_000),
    (44, 10, 0, 200, 0, "other", 1, 1, 70_000),
]


def categories() -> pd.DataFrame:
    cols = list(zip(*ROWS))
    n = len(ROWS)
    return pd.DataFrame(
        {
            "sIP": np.array(cols[0], dtype=np.uint32),
            "dIP": np.array(cols[1], dtype=np.uint32),
            "sPort": np.full(n, 1025, dtype=np.uint16),
            "dPort": np.array(cols[2], dtype=np.uint16),
            "protocol": np.array(cols[3], dtype=np.uint8),
            "packets": np.array(cols[7], dtype=np.uint64),
            "bytes": np.array(cols[8], dtype=np.uint64),
            "flags": np.array(cols[4], dtype=np.uint8),
            "sTime": np.arange(n, dtype=np.int64) * 1000,
            "duration": np.zeros(n, dtype=np.uint32),
            "match_id": np.array([1 if c.startswith("matched") else 0 for c in cols[5]], dtype=np.uint32),
            "category": list(cols[5]),
            "source_flows": np.array(cols[6], dtype=np.uint32),
        }
    )


ACTIVE = IPSet.from_ipv4([10, 11])

COUNTRY = {1: "us", 2: "us", 3: "fr", 4: None, 9: "fr", 5: "de", 6: "de", 8: "fr", 40: "ca", 41: "us", 42: None, 43: "", 44: "ru"}


def country_of(addresses: np.ndarray) -> np.ndarray:
    return np.array([COUNTRY.get(int(a)) for a in addresses], dtype=object)


def col(df: pd.DataFrame, name: str) -> list:
    return [None if pd.isna(v) else v for v in df[name].tolist()]


# --- 1 -----------------------------------------------------------------------------------


def archive_table() -> pa.Table:
    rows = (
        [dict(sPort=1025, dPort=80, protocol=TCP, flowtype=0)] * 3
        + [dict(sPort=1026, dPort=445, protocol=TCP, flowtype=0)]
        + [dict(sPort=80, dPort=1025, protocol=TCP, flowtype=1)] * 2
        + [dict(sPort=5000, dPort=53, protocol=UDP, flowtype=0)] * 2
        + [dict(sPort=53, dPort=5000, protocol=UDP, flowtype=1)]
        + [dict(sPort=9, dPort=9, protocol=TCP, flowtype=6)] * 5  # int2int: not counted
        + [dict(sPort=0, dPort=771, protocol=ICMP, flowtype=8)]  # not TCP/UDP
    )
    n = len(rows)
    data = {k: [r[k] for r in rows] for k in rows[0]}
    data.update(sIP=[1] * n, dIP=[10] * n, packets=[1] * n, bytes=[40] * n, sTime=[0] * n)
    return conform(data)


def test_overall_port_usage():
    df = overall_port_usage(archive_table())
    assert list(df.columns) == [
        "Rank", "TCP source port", "TCP source flows", "TCP destination port", "TCP destination flows",
        "UDP source port", "UDP source flows", "UDP destination port", "UDP destination flows",
    ]
    assert col(df, "Rank") == [1, 2, 3]
    assert col(df, "TCP source port") == [1025, 80, 1026]
    assert col(df, "TCP source flows") == [3, 2, 1]
    assert col(df, "TCP destination port") == [80, 1025, 445]
    assert col(df, "TCP destination flows") == [3, 2, 1]
    assert col(df, "UDP source port") == [5000, 53, None]
    assert col(df, "UDP source flows") == [2, 1, None]
    assert col(df, "UDP destination port") == [53, 5000, None]
    assert col(df, "UDP destination flows") == [2, 1, None]
    top2 = overall_port_usage(archive_table(), top=2)
    assert col(top2, "TCP source port") == [1025, 80]
    with_int2int = overall_port_usage(archive_table(), flowtypes=[6])
    assert col(with_int2int, "TCP source port") == [9] and col(with_int2int, "TCP source flows") == [5]


def test_overall_port_usage_from_parquet(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "in-S0_20060401.00.parquet"
    pq.write_table(archive_table(), path)
    df = overall_port_usage([path])
    assert col(df, "TCP destination port") == [80, 1025, 445]
    assert overall_port_usage([]).empty


# --- 2 -----------------------------------------------------------------------------------


def test_unmatched_tcp_flags():
    df = unmatched_tcp_flags(categories())
    assert list(df.columns) == ["Rank", "Flags", "Count", "Percent"]
    assert col(df, "Rank") == [1, 2, 3, 4]
    assert col(df, "Flags") == ["S", "RA", "R", "SA"]  # R (4) before SA (18) on the tie
    assert col(df, "Count") == [9, 2, 1, 1]
    assert col(df, "Percent") == [69.23, 15.38, 7.69, 7.69]  # of 13 unmatched TCP flows
    top = unmatched_tcp_flags(categories(), top=2)
    assert col(top, "Percent") == [69.23, 15.38]


# --- 3 -----------------------------------------------------------------------------------


def test_ports_by_flow_bucket_tcp():
    df = ports_by_flow_bucket(categories())
    assert list(df.columns) == [
        "Rank",
        "Port (1 flow)", "Flows (1 flow)", "Port (2 - 4 flows)", "Flows (2 - 4 flows)",
        "Port (5 - 7 flows)", "Flows (5 - 7 flows)", "Port (8 - 10 flows)", "Flows (8 - 10 flows)",
        "Port (1 - 10 flows)", "Flows (1 - 10 flows)",
    ]
    assert col(df, "Rank") == [1, 2, 3, 4]
    assert col(df, "Port (1 flow)") == [445, 4662, 25, None]
    assert col(df, "Flows (1 flow)") == [4, 2, 1, None]
    assert col(df, "Port (2 - 4 flows)") == [4662, None, None, None]
    assert col(df, "Flows (2 - 4 flows)") == [3, None, None, None]
    assert col(df, "Port (5 - 7 flows)") == [25, 445, None, None]
    assert col(df, "Port (8 - 10 flows)") == [80, None, None, None]
    assert col(df, "Port (1 - 10 flows)") == [445, 4662, 25, 80]
    assert col(df, "Flows (1 - 10 flows)") == [5, 5, 2, 1]


def test_ports_by_flow_bucket_udp():
    df = ports_by_flow_bucket(categories(), category="unmatched UDP")
    assert col(df, "Port (1 flow)") == [7986, 53]
    assert col(df, "Flows (1 flow)") == [2, 1]
    assert col(df, "Port (2 - 4 flows)") == [53, None]
    assert col(df, "Port (5 - 7 flows)") == [None, None]
    assert col(df, "Port (1 - 10 flows)") == [53, 7986]
    assert col(df, "Flows (1 - 10 flows)") == [2, 2]


# --- 4 -----------------------------------------------------------------------------------


def test_flags_for_top_ports():
    long = flags_for_top_ports(categories(), top_ports=2, bucket=1)
    assert list(long.columns) == ["Port", "Rank", "Flags", "Count"]
    assert long.values.tolist() == [[445, 1, "S", 3], [445, 2, "R", 1], [4662, 1, "S", 1], [4662, 2, "RA", 1]]
    wide = flags_side_by_side(long)
    assert list(wide.columns) == ["Rank", "Port 445 flags", "Port 445 count", "Port 4662 flags", "Port 4662 count"]
    assert col(wide, "Port 4662 flags") == ["S", "RA"]
    by_port = flags_by_port(long)  # one row per port, as the report shows it
    assert by_port.values.tolist() == [[1, 445, 4, "S 75.0%, R 25.0%"], [2, 4662, 2, "S 50.0%, RA 50.0%"]]
    assert flags_by_port(long, shown=1)["Flag combinations (share of the port's flows)"].tolist() == [
        "S 75.0%, 1 other 25.0%", "S 50.0%, 1 other 50.0%"]
    assert flags_by_port(long.iloc[:0]).empty
    # all ten ports at 1 flow: only three exist; 25 has one SA flow
    all_ports = flags_for_top_ports(categories())
    assert all_ports["Port"].drop_duplicates().tolist() == [445, 4662, 25]
    assert all_ports[all_ports["Port"] == 25].values.tolist() == [[25, 1, "SA", 1]]
    # bucket 2-4: source 8 only
    assert flags_for_top_ports(categories(), bucket=(2, 4)).values.tolist() == [[4662, 1, "S", 2], [4662, 2, "RA", 1]]


# --- 5 -----------------------------------------------------------------------------------


def test_where_do_they_go_tcp_one_flow():
    df = where_do_they_go(categories(), ACTIVE, protocol=TCP, buckets=(1, 1))
    assert list(df.columns) == ["Rank", "Port", "Flows", "Hit", "Miss", "% Hit", "# Dst", "Dst Hit", "% Dst Hit"]
    assert df.values.tolist() == [
        [1, 445, 4, 2, 2, 50.0, 3, 2, 66.67],
        [2, 4662, 2, 2, 0, 100.0, 1, 1, 100.0],
        [3, 25, 1, 0, 1, 0.0, 1, 0, 0.0],
    ]


def test_where_do_they_go_tcp_one_to_ten_with_array():
    df = where_do_they_go(categories(), np.array([11, 10], dtype=np.uint32), protocol=TCP, buckets=(1, 10))
    assert df.values.tolist() == [
        [1, 445, 5, 2, 3, 40.0, 3, 2, 66.67],
        [2, 4662, 5, 5, 0, 100.0, 1, 1, 100.0],
        [3, 25, 2, 0, 2, 0.0, 2, 0, 0.0],
        [4, 80, 1, 1, 0, 100.0, 1, 1, 100.0],
    ]
    assert where_do_they_go(categories(), ACTIVE, buckets=(1, 10), top=1)["Port"].tolist() == [445]


def test_where_do_they_go_udp():
    df = where_do_they_go(categories(), ACTIVE, protocol=UDP, buckets=(1, 10))
    assert df.values.tolist() == [
        [1, 53, 2, 1, 1, 50.0, 2, 1, 50.0],
        [2, 7986, 2, 2, 0, 100.0, 1, 1, 100.0],
    ]


# --- 6 -----------------------------------------------------------------------------------

RESP = 0xFF000000


def matched_flows() -> pa.Table:
    rows = [
        # (sIP, dIP, sPort, dPort, protocol, sTime, nhIP)
        (100, 10, 3333, 25, TCP, 1000, 1),  # match 1: same start, the query originates -> 25 O
        (10, 100, 25, 3333, TCP, 1000, RESP | 1),
        (101, 10, 3334, 25, TCP, 2000, 2),  # match 2: 25 O
        (10, 101, 25, 3334, TCP, 2100, RESP | 2),
        (102, 11, 25, 4444, TCP, 5000, 3),  # match 3: the response starts first -> 25 E
        (11, 102, 4444, 25, TCP, 4000, RESP | 3),
        (103, 12, 5555, 22, TCP, 6000, 4),  # match 4: 22 O
        (12, 103, 22, 5555, TCP, 6500, RESP | 4),
        (100, 11, 3335, 25, TCP, 7000, 5),  # match 5: two queries, one response -> 25 O
        (100, 11, 3335, 25, TCP, 7100, 5),
        (11, 100, 25, 3335, TCP, 7050, RESP | 5),
        (104, 10, 3336, 445, TCP, 8000, 0),  # unmatched query
        (105, 10, 3337, 53, UDP, 9000, 6),  # match 6 (UDP): 53 O
        (10, 105, 53, 3337, UDP, 9010, RESP | 6),
    ]
    c = list(zip(*rows))
    n = len(rows)
    return conform(dict(sIP=c[0], dIP=c[1], sPort=c[2], dPort=c[3], protocol=c[4], sTime=c[5], nhIP=c[6],
                        packets=[1] * n, bytes=[40] * n))


def test_matched_ports_tcp():
    df = matched_ports(matched_flows(), protocol=TCP)
    assert list(df.columns) == ["Rank", "Port", "O/E", "Sessions", "O count", "E count"]
    assert df.values.tolist() == [
        [1, 25, "O", 3, 2, 2],  # matches 1, 2, 5: outside {100, 101}, inside {10, 11}
        [2, 22, "O", 1, 1, 1],
        [3, 25, "E", 1, 1, 1],  # match 3, opened by inside host 11
    ]


def test_matched_ports_udp_and_directions():
    assert matched_ports(matched_flows(), protocol=UDP).values.tolist() == [[1, 53, "O", 1, 1, 1]]
    d = matched_port_direction_counts(matched_flows(), protocol=TCP)
    assert list(d.columns) == ["Port", "O->E", "E->O"]
    assert d.values.tolist() == [[22, 1, 0], [25, 3, 1]]


# --- 7 -----------------------------------------------------------------------------------


def numerology_flows() -> pa.Table:
    ports = np.arange(52515, 52536)
    counts = np.array([1 + (i % 3) for i in range(21)])
    counts[10] = 40  # 52525
    d = np.repeat(ports, counts)
    n = len(d)
    matched = conform(dict(sIP=np.full(n, 7), dIP=np.full(n, 10), sPort=np.full(n, 1000), dPort=d,
                           protocol=np.full(n, UDP), sTime=np.zeros(n, dtype=np.int64),
                           nhIP=np.arange(1, n + 1), packets=np.ones(n), bytes=np.full(n, 40)))
    unmatched = conform(dict(sIP=np.full(100, 8), dIP=np.full(100, 10), sPort=np.full(100, 1000), dPort=np.full(100, 52524),
                             protocol=np.full(100, UDP), sTime=np.zeros(100, dtype=np.int64), nhIP=np.zeros(100),
                             packets=np.ones(100), bytes=np.full(100, 40)))
    return pa.concat_tables([matched, unmatched])


def test_port_numerology_finds_the_planted_spike():
    df = port_numerology(numerology_flows())
    assert list(df.columns) == ["Port", "Count", "Neighbour median", "Ratio", "Interest", "Why"]
    # neighbours of 52525: seven 1s, six 2s, seven 3s -> median 2; sPort 1000 has no neighbour;
    # the 100 unmatched records on 52524 are not counted
    assert df.values.tolist() == [[52525, 40, 2.0, 20.0, 5, "palindrome; pattern (52 repeated)"]]
    assert port_numerology(numerology_flows(), min_ratio=25).empty
    # all records, destination ports: 52524 gets 1 + 100 = 101 (neighbours: six 1s, 2s and 3s and 40 -> median 2)
    everything = port_numerology(numerology_flows(), matched_only=False, ports="dPort")
    # the interesting number leads though the ordinary one stands out further
    assert everything["Port"].tolist() == [52525, 52524]
    assert everything["Ratio"].tolist() == [20.0, 50.5] and everything["Interest"].tolist() == [5, 0]


def test_interest_score():
    assert interest_why(55555) == "repeated digits; palindrome"
    assert interest_score(55555) == 8
    assert interest_score(65535) == 5 and "largest port" in interest_why(65535)
    assert "all ones (2^16 - 1)" in interest_why(65535)
    assert interest_why(1024) == "first unprivileged port; power of two (2^10)"
    assert interest_score(32768) == 5
    assert interest_why(15051) == "palindrome" and interest_score(15051) == 3
    assert interest_why(10000).startswith("round (4 trailing zeros)")
    assert interest_why(1111) == "repeated digits; palindrome"
    assert interest_why(10006) == "run of 3 equal digits"
    assert interest_why(12345) == "sequence" and interest_score(12345) == 3
    assert interest_score(52467) == 0 and interest_why(52467) == ""


# --- 8 -----------------------------------------------------------------------------------

MEANINGS = {(3, 3): "Port Unreachable", (3, 1): "Host Unreachable", (8, 0): "Echo", (11, 0): "Time to Live exceeded in Transit"}


def test_icmp_table():
    df = icmp_table(categories(), lambda t, c: (MEANINGS.get((t, c), ""), (t, c) in MEANINGS))
    assert list(df.columns) == ["Type", "Code", "Count", "Rank", "Meaning"]
    assert df.values.tolist() == [
        [3, 3, 3, 1, "Port Unreachable"],
        [3, 1, 1, 3, "Host Unreachable"],
        [3, 44, 1, 4, "(Invalid code)"],
        [8, 0, 2, 2, "Echo"],
        [11, 0, 1, 5, "Time to Live exceeded in Transit"],
    ]


# --- 9 -----------------------------------------------------------------------------------


def test_other_protocols():
    names = {50: "ESP Encap Security Payload", 132: "Stream Control Transmission Protocol", 64: "SATNET and Backroom EXPAK"}
    df = other_protocols(categories(), names.get, country_of)
    assert list(df.columns) == ["P'col", "CC", "Flows", "Packets", "Bytes", "Description", "Implausible"]
    assert df.values.tolist() == [
        [50, "ca us", 2, 20, 4000, "ESP Encap Security Payload", ""],
        [64, "-", 1, 2_000_000, 200_000_000, "SATNET and Backroom EXPAK", "yes"],  # 2e6 packets per flow
        [132, "-", 1, 8, 24, "Stream Control Transmission Protocol", "yes"],  # 3 bytes per packet
        [200, "ru", 1, 1, 70_000, "Unassigned", "yes"],  # 70000 bytes per packet
        ["TOTAL", "", 5, 2_000_029, 200_074_024, "", ""],
    ]


# --- 10 ----------------------------------------------------------------------------------


def test_geographic_distribution():
    df = geographic_distribution(categories(), country_of, [445, 4662])
    assert list(df.columns) == ["Port", "Rank", "CC", "Count", "Percent"]
    assert df.values.tolist() == [
        [445, 1, "fr", 2, 40.0],  # sources 3, 9
        [445, 2, "us", 2, 40.0],  # sources 1, 2
        [445, 3, "-", 1, 20.0],  # source 4: unknown
        [445, "T", "", 5, 100.0],
        [4662, 1, "fr", 3, 60.0],
        [4662, 2, "de", 2, 40.0],
        [4662, "T", "", 5, 100.0],
    ]
    top1 = geographic_distribution(categories(), country_of, [4662, 445], top=1)
    assert top1.values.tolist() == [[4662, 1, "fr", 3, 60.0], [4662, "T", "", 5, 100.0], [445, 1, "fr", 2, 40.0], [445, "T", "", 5, 100.0]]
    wide = geographic_side_by_side(df)
    assert list(wide.columns) == ["R", "445 CC", "445 cnt.", "445 pct.", "4662 CC", "4662 cnt.", "4662 pct."]
    assert col(wide, "R") == [1, 2, 3, "T"]
    assert col(wide, "4662 CC") == ["fr", "de", None, None]
    assert col(wide, "4662 cnt.") == [3, 2, None, 5]
    assert col(wide, "445 pct.") == [40.0, 40.0, 20.0, None]


# --- 11, 12 ------------------------------------------------------------------------------


def test_contact_surface():
    pairs = pd.DataFrame({"sIP": np.array([1, 1, 2, 3, 3, 3, 4, 4], dtype=np.uint32),
                          "dIP": np.array([10, 11, 10, 10, 11, 12, 10, 10], dtype=np.uint32)})
    df = contact_surface(pairs)
    assert list(df.columns) == ["Destinations", "Sources", "%", "Cum. %"]
    assert df.values.tolist() == [[1, 2, 50.0, 50.0], [2, 1, 25.0, 75.0], [3, 1, 25.0, 100.0]]


def test_category_counts(tmp_path):
    path = tmp_path / "vlf_categories.parquet"
    categories().to_parquet(path)
    for source in (categories(), path, [path]):
        df = category_counts(source)
        assert list(df.columns) == ["Category", "Flows", "% flows", "Sources", "% sources"]
        assert df.values.tolist() == [
            ["unmatched TCP", 13, 39.39, 10, 38.46],
            ["unmatched UDP", 4, 12.12, 4, 15.38],
            ["matched TCP", 2, 6.06, 2, 7.69],
            ["matched UDP", 1, 3.03, 1, 3.85],
            ["ICMP", 8, 24.24, 5, 19.23],
            ["other", 5, 15.15, 5, 19.23],
            ["Total", 33, 100.0, 26, 100.0],
        ]


def test_empty_inputs():
    empty = CATEGORY_SCHEMA.empty_table()
    assert unmatched_tcp_flags(empty).empty
    assert where_do_they_go(empty, ACTIVE).empty
    assert ports_by_flow_bucket(empty).empty
    assert port_numerology(empty).empty
    assert other_protocols(empty, lambda p: None, country_of).empty  # the report says why instead
    assert category_counts(empty)["Flows"].tolist() == [0] * 7
    with pytest.raises(PortTableError):
        ports_by_flow_bucket(categories(), category="bogus")


def test_contact_surface_of_counts_equals_the_pairs_table(tmp_path):
    """The report's table from the distinct-destination bag equals the one from the pairs (IPv6
    sources left out, as the pairs' IPv4 filter does)."""
    from vlf_dagster.analysis.steps.contacts import refresh_contacts

    v6 = pa.array([None] * 7 + [b"\x20\x01" + b"\0" * 14], pa.binary(16))
    pairs = pa.table({"sIP": pa.array([1, 1, 2, 3, 3, 3, 4, 0], pa.uint32()), "sIPv6": v6,
                      "dIP": pa.array([10, 11, 10, 10, 11, 12, 10, 0], pa.uint32()), "dIPv6": v6,
                      "records": pa.array([1, 2, 1, 1, 1, 1, 3, 1], pa.uint64())})
    pq.write_table(pairs, tmp_path / "pairs.parquet")
    counts = tmp_path / "counts.parquet"
    refresh_contacts([tmp_path / "pairs.parquet"], counts, tmp_path / "state", None)
    v4_pairs = pairs.filter(pc.is_null(pairs.column("sIPv6"))).select(["sIP", "dIP"])
    assert contact_surface_of_counts(counts).equals(contact_surface(v4_pairs))
    assert contact_surface_of_counts(counts)["Sources"].tolist() == [2, 1, 1]
