"""vlf filter (rwfilter): selection, every partitioning family, outputs, piping and errors.

Expectations are computed by hand from SiLK's rules (shared/docs/silk-semantics.md §2-4).
Each table's rows carry their position in the ``out`` column, so a test states which rows pass.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from conftest import START, flows, write_landing
from vlf_dagster import cli
from vlf_dagster.flows.archive import pack_hour
from vlf_dagster.flows.tools.filter.compiler import compile_filter
from vlf_dagster.flows.tools.filter.run import filter_files, partition
from vlf_dagster.flows.tools.filter.selection import parse_date_range, select_archive_files
from vlf_dagster.flows.tools.filter.spec import FilterError, FilterSpec
from vlf_dagster.flows.schema import ATTR_IPV6, conform
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.storage import write_parquet

ROOT = Path(__file__).resolve().parents[1]
UTC = timezone.utc
T2009 = 1234396800 * 1000  # 2009-02-12 00:00:00 UTC in ms (1234567890 s is 2009-02-13 23:31:30)
HOUR, MINUTE, SECOND = 3_600_000, 60_000, 1000


def v6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def table(rows: list[dict]) -> pa.Table:
    """flows() plus: ``out`` = row number, IPv6 columns null unless given (then the v6 bit is set)."""
    rows = [dict(r) for r in rows]
    for i, r in enumerate(rows):
        r.setdefault("out", i)
        for col in ("sIPv6", "dIPv6", "nhIPv6"):
            r.setdefault(col, None)
        if r["sIPv6"] is not None or r["dIPv6"] is not None:
            r["attributes"] = r.get("attributes", 0) | ATTR_IPV6
    return flows(rows)


def passing(rows, **spec) -> list[int]:
    passed, failed = partition(table(rows) if isinstance(rows, list) else rows, FilterSpec(**spec))
    assert passed.num_rows + failed.num_rows == len(rows)
    return passed.column("out").to_pylist()


def hours(*texts: str) -> list[datetime]:
    return [datetime.strptime(t, "%Y-%m-%d %H").replace(tzinfo=UTC) for t in texts]


# --- selection: --start-date / --end-date ---------------------------------------------------------


def test_dates_both_at_hour_precision_give_every_hour_between():
    assert parse_date_range("2006/04/01:22", "2006/04/02:01") == hours(
        "2006-04-01 22", "2006-04-01 23", "2006-04-02 00", "2006-04-02 01"
    )


def test_day_precision_start_gives_whole_days_and_ignores_the_end_hour():
    got = parse_date_range("2006/04/01", "2006/04/02:05")
    assert len(got) == 48 and got[0] == hours("2006-04-01 00")[0] and got[-1] == hours("2006-04-02 23")[0]


def test_hour_precision_start_with_day_precision_end_reuses_the_start_hour():
    got = parse_date_range("2006/04/01:05", "2006/04/03")
    assert got[0] == hours("2006-04-01 05")[0] and got[-1] == hours("2006-04-03 05")[0] and len(got) == 49


def test_start_only_is_that_day_or_that_hour_and_T_separates_the_hour():
    day = parse_date_range("2006/04/01", None)
    assert len(day) == 24 and day[0] == hours("2006-04-01 00")[0] and day[-1] == hours("2006-04-01 23")[0]
    assert parse_date_range("2006/04/01T07", None) == hours("2006-04-01 07")


def test_no_dates_is_today_utc():
    now = datetime(2010, 5, 6, 13, 45, tzinfo=UTC)
    got = parse_date_range(None, None, now=now)
    assert len(got) == 24 and got[0] == hours("2010-05-06 00")[0] and got[-1] == hours("2010-05-06 23")[0]


def test_end_date_without_start_date_is_an_error():
    with pytest.raises(FilterError, match="--end-date '2006/04/02' requires --start-date"):
        parse_date_range(None, "2006/04/02")


def test_epoch_seconds_follow_silks_precision_rules():
    midnight = "1143849600"  # 2006-04-01 00:00 UTC, divisible by 86400
    assert len(parse_date_range(midnight, "2006/04/02")) == 48  # day precision: two whole days
    assert parse_date_range(midnight, None) == hours("2006-04-01 00")  # alone: one hour
    # an epoch end makes both hour precision: 00:00 .. 02:00
    assert parse_date_range("2006/04/01", str(1143849600 + 2 * 3600 + 59)) == hours(
        "2006-04-01 00", "2006-04-01 01", "2006-04-01 02"
    )


def test_bad_dates_are_errors_naming_the_value():
    with pytest.raises(FilterError, match="2006/13/01"):
        parse_date_range("2006/13/01", None)
    with pytest.raises(FilterError, match="before"):
        parse_date_range("2006/04/02", "2006/04/01")


# --- addresses ------------------------------------------------------------------------------------

ADDR_ROWS = [
    {"sIP": "10.7.1.4"},  # 0: wildcard 10.x.1-2.4,5
    {"sIP": "10.200.2.5"},  # 1: wildcard
    {"sIP": "10.7.3.4"},  # 2: third octet 3 is outside 1-2
    {"sIP": "10.7.1.6"},  # 3: last octet 6 is outside 4,5
    {"sIP": "11.7.1.4"},  # 4: first octet
    {"sIP": "0.0.0.0", "sIPv6": v6("2001:db8::1")},  # 5: IPv6
    {"sIP": "0.0.0.0", "sIPv6": v6("2001:db8:1::9")},  # 6: IPv6, other /48
    {"sIP": "0.0.0.0", "sIPv6": v6("::ffff:10.9.1.5")},  # 7: IPv4-mapped IPv6
]


def test_silk_ip_wildcard_matches_each_octet_list():
    assert passing(ADDR_ROWS, saddress="10.x.1-2.4,5") == [0, 1, 7]


def test_cidr_and_single_address_including_ipv6():
    assert passing(ADDR_ROWS, saddress="10.7.0.0/16") == [0, 2, 3]
    assert passing(ADDR_ROWS, saddress="10.7.1.6") == [3]
    assert passing(ADDR_ROWS, saddress="2001:db8::/48") == [5]
    assert passing(ADDR_ROWS, saddress="2001:db8:1::9") == [6]
    assert passing(ADDR_ROWS, saddress="::ffff:0:0/96") == [0, 1, 2, 3, 4, 7]  # IPv4 as mapped
    assert passing(ADDR_ROWS, saddress="2001:db8:0-1:x:x:x:x:1-9") == [5, 6]  # IPv6 wildcard
    assert passing(ADDR_ROWS, saddress="x:x:x:x:x:x:a07:104") == [0]  # IPv4 10.7.1.4 seen as ::ffff:a07:104
    assert passing(ADDR_ROWS, saddress="2001:x:x:x:x:x:x:104") == []  # IPv4 records are not in 2001::/16


def test_cidr_lists_or_their_items():
    assert passing(ADDR_ROWS, scidr="11.0.0.0/8,10.7.1.6,2001:db8:1::/48") == [3, 4, 6]


def test_not_forms_invert_and_any_means_source_or_destination():
    rows = [
        {"sIP": "4.3.2.1", "dIP": "10.1.24.1"},
        {"sIP": "10.1.24.1", "dIP": "4.3.2.1"},
        {"sIP": "4.3.2.1", "dIP": "4.3.2.2"},
    ]
    assert passing(rows, not_saddress="10.1.24.0/22") == [0, 2]
    assert passing(rows, not_dcidr="10.1.24.0/22") == [1, 2]
    assert passing(rows, any_address="10.1.24.x") == [0, 1]
    assert passing(rows, not_any_cidr="10.1.24.0/22") == [2]
    assert passing(ADDR_ROWS, not_saddress="10.x.1-2.4,5") == [2, 3, 4, 5, 6]


def test_a_switch_with_its_own_not_form_is_an_error():
    with pytest.raises(FilterError, match="--sipset and --not-sipset"):
        compile_filter(FilterSpec(sipset="a.set", not_sipset="b.set"))


def test_set_files_for_source_destination_any_and_not(tmp_path):
    path = tmp_path / "s.set"
    IPSet.from_strings(["10.7.1.4", "10.9.1.5", "2001:db8::1"]).write(path)
    rows = [{"sIP": r.get("sIP", "0.0.0.0"), "dIP": "4.4.4.4", "sIPv6": r.get("sIPv6")} for r in ADDR_ROWS]
    rows.append({"sIP": "4.4.4.4", "dIP": "10.7.1.4"})  # 8: member as destination
    assert passing(rows, sipset=str(path)) == [0, 5, 7]  # 7 is ::ffff:10.9.1.5
    assert passing(rows, dipset=path) == [8]
    assert passing(rows, anyset=str(path)) == [0, 5, 7, 8]
    assert passing(rows, not_anyset=str(path)) == [1, 2, 3, 4, 6]  # input order kept
    assert passing(rows, sipset=IPSet.from_strings(["10.200.2.5"])) == [1]
    assert passing(rows, sipset=IPSet.from_strings(["::ffff:10.7.1.6"])) == [3]  # mapped member, IPv4 record


def test_set_tests_keep_the_input_order_of_a_large_table():
    n = 300_000
    ids = np.arange(n, dtype=np.uint32)
    big = conform({
        "sIP": pa.array(ids), "dIP": pa.array(ids), "sPort": pa.array(np.zeros(n, np.uint16)),
        "dPort": pa.array(np.zeros(n, np.uint16)), "protocol": pa.array(np.full(n, 6, np.uint8)),
        "packets": pa.array(np.ones(n, np.uint64)), "bytes": pa.array(np.ones(n, np.uint64)),
        "sTime": pa.array(np.zeros(n, np.int64)), "out": pa.array((ids % 65536).astype(np.uint16)),
    })  # fmt: skip
    members = IPSet.from_ipv4(ids[ids % 3 == 0])
    big = pa.Table.from_batches(big.to_batches(max_chunksize=20_000))  # parallel scan, joins may reorder
    passed, failed = partition(big, FilterSpec(sipset=members))
    assert passed.column("sIP").to_pylist() == list(range(0, n, 3))
    assert failed.num_rows == n - passed.num_rows and np.all(np.diff(failed.column("sIP").to_numpy().astype(np.int64)) > 0)


def test_unreadable_or_corrupt_set_file_is_an_error(tmp_path):
    with pytest.raises(FilterError, match="--sipset: .*missing.set"):
        compile_filter(FilterSpec(sipset=str(tmp_path / "missing.set")))
    (tmp_path / "junk.set").write_bytes(b"not a set at all")
    with pytest.raises(FilterError, match="--dipset: .*junk.set"):
        compile_filter(FilterSpec(dipset=str(tmp_path / "junk.set")))


def test_values_travel_as_parameters_never_in_the_sql(tmp_path):
    IPSet.from_strings(["10.0.0.1"]).write(tmp_path / "s.set")
    where, params, tables = compile_filter(
        FilterSpec(saddress="10.x.1-2.4,5", dport="31337", sipset=str(tmp_path / "s.set"), stime="2009/02/12")
    )
    assert "31337" not in where and 31337 in params.values()
    assert "1234396800000" not in where and T2009 in params.values()
    assert len(tables) == 2 and any(t.column("ip").to_pylist() == [167772161] for t in tables.values())


# --- ports, protocol, ICMP ---------------------------------------------------------------------


def test_port_lists_with_ranges_and_open_ranges():
    ports = [0, 1, 2, 3, 5, 10, 11, 1023, 1024, 65535]
    rows = [{"sPort": p, "dPort": 7} for p in ports]
    assert [ports[i] for i in passing(rows, sport="1,3,5-10,1024-")] == [1, 3, 5, 10, 1024, 65535]
    assert [ports[i] for i in passing(rows, aport="7")] == ports  # dPort 7 everywhere
    assert passing(rows, dport="8-") == []
    assert passing([{"protocol": 6}, {"protocol": 17}, {"protocol": 1}], protocol="1,17") == [1, 2]


def test_icmp_type_and_code_only_match_icmp_records():
    rows = [
        {"protocol": 1, "dPort": 3 * 256 + 1},  # 0: ICMP type 3 code 1
        {"protocol": 6, "dPort": 3 * 256 + 1},  # 1: TCP port 769 is not ICMP
        {"protocol": 58, "dPort": 3 * 256 + 1, "sIPv6": v6("2001:db8::1"), "dIPv6": v6("2001:db8::2")},  # 2: ICMPv6
        {"protocol": 58, "dPort": 3 * 256 + 1},  # 3: protocol 58 on an IPv4 record is not ICMP
        {"protocol": 1, "dPort": 8 * 256 + 0},  # 4: echo request
    ]
    assert passing(rows, icmp_type="3") == [0, 2]
    assert passing(rows, icmp_code="0") == [4]
    assert passing(rows, icmp_type="3,8", icmp_code="1", protocol="1,6") == [0]


def test_icmp_switches_with_a_protocol_list_lacking_1_and_58_are_an_error():
    with pytest.raises(FilterError, match="--icmp-type needs ICMP.*--protocol=6,17"):
        compile_filter(FilterSpec(icmp_type="3", protocol="6,17"))
    compile_filter(FilterSpec(icmp_code="0", protocol="58"))  # fine


# --- TCP flags -----------------------------------------------------------------------------------

F, S, R, P, A = 1, 2, 4, 8, 16
FLAG_ROWS = [
    {"flags": S},  # 0
    {"flags": S | A},  # 1
    {"flags": A},  # 2
    {"flags": F},  # 3
    {"flags": F | A},  # 4
    {"flags": 0, "protocol": 17},  # 5: UDP
]


def test_flags_high_mask_pairs():
    assert passing(FLAG_ROWS, flags_all=["S/SA"]) == [0]
    assert passing(FLAG_ROWS, flags_all=["S/S,A/A"]) == [0, 1, 2, 4]
    assert passing(FLAG_ROWS, flags_all=["/F"]) == [0, 1, 2, 5]


def test_udp_record_passes_flags_all_not_syn_because_there_is_no_protocol_check():
    assert passing(FLAG_ROWS, flags_all=["/S"]) == [2, 3, 4, 5]


def test_repeated_flag_switches_accumulate_and_initial_session_use_their_columns():
    assert passing(FLAG_ROWS, flags_all=["S/SA", "F/FA"]) == [0, 3]
    rows = [{"flags": S | A, "initialFlags": S, "sessionFlags": A}, {"flags": S | A, "initialFlags": S | A, "sessionFlags": A | F}]
    assert passing(rows, flags_initial=["S/SA"]) == [0]
    assert passing(rows, flags_session=["A/AF"]) == [0]


# --- volume, duration, time windows -------------------------------------------------------------


def test_packet_and_byte_ranges():
    rows = [{"packets": p, "bytes": 100 * p} for p in (1, 5, 10, 11)]
    assert passing(rows, packets="5-10") == [1, 2]
    assert passing(rows, packets="10-") == [2, 3]
    assert passing(rows, packets="5") == [1]
    assert passing(rows, bytes="0-500") == [0, 1]


def test_duration_is_a_decimal_range_in_seconds():
    rows = [{"duration": d} for d in (500, 1500, 2000, 2001)]
    assert passing(rows, duration="1.5-2") == [1, 2]
    assert passing(rows, duration="2") == [2]
    assert passing(rows, duration="2.001-") == [3]


def test_stime_window_fills_missing_start_parts_with_0_and_end_parts_with_max():
    at = [T2009 + 5 * HOUR - 1, T2009 + 5 * HOUR, T2009 + 6 * HOUR - 1, T2009 + 6 * HOUR]
    rows = [{"sTime": t} for t in at]
    assert passing(rows, stime="2009/02/12:05-2009/02/12:05") == [1, 2]
    assert passing(rows, stime="2009/02/12-2009/02/12") == [0, 1, 2, 3]
    assert passing(rows, stime="2009/02/12:04:59:59.999-2009/02/12:05:00") == [0, 1]
    assert passing(rows, stime=f"{(T2009 + 5 * HOUR) // 1000}-{(T2009 + 6 * HOUR) // 1000 - 1}") == [1, 2]


def test_a_single_time_is_a_one_millisecond_window():
    rows = [{"sTime": T2009 + 5 * HOUR}, {"sTime": T2009 + 5 * HOUR + 1}]
    assert passing(rows, stime="2009/02/12:05") == [0]
    assert passing(rows, stime="2009/02/12:05:00:00.001") == [1]


def test_etime_uses_start_plus_duration_and_active_time_means_overlap():
    w = "2009/02/12:05-2009/02/12:05"  # 05:00:00.000 .. 05:59:59.999
    rows = [
        {"sTime": T2009 + 5 * HOUR - MINUTE, "duration": MINUTE},  # 0: ends exactly 05:00:00.000
        {"sTime": T2009 + 5 * HOUR - MINUTE, "duration": MINUTE - 1},  # 1: ends 04:59:59.999
        {"sTime": T2009 + 6 * HOUR, "duration": 0},  # 2: starts after the window
        {"sTime": T2009 + 4 * HOUR, "duration": 3 * HOUR},  # 3: spans the whole window
        {"sTime": T2009 + 5 * HOUR + 30 * MINUTE, "duration": HOUR},  # 4: starts inside, ends after
    ]
    assert passing(rows, etime=w) == [0]
    assert passing(rows, active_time=w) == [0, 3, 4]
    assert passing(rows, active_time="2009/02/12:05:30") == [3, 4]  # active at that instant


def test_other_silk_tests_bpp_application_version_attributes_legacy_flags_indexes():
    rows = [
        {"packets": 2, "bytes": 100, "application": 80, "flags": S, "attributes": 0x20, "in": 3},  # 0: 50 B/pkt
        {"packets": 0, "bytes": 40, "application": 53, "flags": S | A, "in": 4},  # 1: no packets
        {"packets": 1, "bytes": 1500, "sIPv6": v6("2001:db8::1"), "dIPv6": v6("2001:db8::2"), "flags": F},  # 2
    ]
    assert passing(rows, bytes_per_packet="0-100") == [0]
    assert passing(rows, bytes_per_packet="1000-") == [2]  # 0 packets never passes
    assert passing(rows, application="53,443-") == [1]
    assert passing(rows, ip_version="6") == [2]
    assert passing(rows, attributes="T/TC") == [0]
    assert passing(rows, tcp_flags="AF") == [1, 2]
    assert passing(rows, flag_bits={"syn": "1", "ack": "0"}) == [0]
    assert passing(rows, any_index="3-4") == [0, 1]


# --- outputs and statistics through the command line ------------------------------------------------


def write_input(tmp_path, rows, name="in.parquet") -> Path:
    return write_parquet(table(rows), tmp_path / name)


def test_pass_fail_and_all_destinations_split_records_exactly(tmp_path, capsys):
    src = write_input(tmp_path, [{"dPort": p, "packets": 2, "bytes": 80} for p in (22, 80, 22, 443)])
    out = {k: tmp_path / f"{k}.parquet" for k in ("pass", "fail", "all")}
    status = cli.main([
        "filter", str(src), "--dport=22", "--pass", str(out["pass"]), "--fail", str(out["fail"]),
        "--all", str(out["all"]), "--pass-destination", str(tmp_path / "pass2.arrow"), "--print-statistics",
    ])  # fmt: skip
    assert status == 0
    read = {k: pq.read_table(p).column("out").to_pylist() for k, p in out.items()}
    assert read == {"pass": [0, 2], "fail": [1, 3], "all": [0, 1, 2, 3]}
    with open(tmp_path / "pass2.arrow", "rb") as f:
        assert ipc.open_stream(f).read_all().column("out").to_pylist() == [0, 2]
    assert capsys.readouterr().err == "Files     1.  Read          4.  Pass          2. Fail           2.\n"


def test_volume_statistics_report_records_packets_bytes(tmp_path, capsys):
    src = write_input(tmp_path, [{"dPort": 22, "packets": 3, "bytes": 300}, {"dPort": 80, "packets": 1, "bytes": 40}])
    assert cli.main(["filter", str(src), "--dport=22", "--print-volume-statistics"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "     |              Recs|           Packets|               Bytes|     Files|",
        "Total|                 2|                 4|                 340|         1|",
        " Pass|                 1|                 3|                 300|          |",
        " Fail|                 1|                 1|                  40|          |",
    ]


def test_type_and_sensor_are_per_record_tests_on_files(tmp_path, site_file, monkeypatch, capsys):
    src = write_input(tmp_path, [{"flowtype": 0, "sensor": 0}, {"flowtype": 1, "sensor": 1}, {"flowtype": 0, "sensor": 1}])
    dest = tmp_path / "p.parquet"
    args = ["filter", str(src), "--site-config-file", str(site_file / "site.toml"), "--pass", str(dest)]
    assert cli.main(args + ["--type", "in"]) == 0 and pq.read_table(dest).column("out").to_pylist() == [0, 2]
    # as rwfilter: an existing output file is replaced only with SILK_CLOBBER set
    assert cli.main(args + ["--sensors", "S1"]) == 1 and "output file exists" in capsys.readouterr().err
    assert pq.read_table(dest).column("out").to_pylist() == [0, 2]
    monkeypatch.setenv("SILK_CLOBBER", "1")
    assert cli.main(args + ["--sensors", "S1"]) == 0 and pq.read_table(dest).column("out").to_pylist() == [1, 2]


# --- archive selection ------------------------------------------------------------------------------


@pytest.fixture
def archive(tmp_path, site):
    data = tmp_path / "data"
    data.mkdir()
    (data / "site.toml").write_text(site.to_toml())
    write_landing(data, START, table([
        {"sIP": "4.3.2.1", "dIP": "10.1.24.1", "dPort": 25, "sensor": 0},  # in, S0
        {"sIP": "4.3.2.1", "dIP": "10.1.24.1", "dPort": 25, "sensor": 1},  # in, S1
        {"sIP": "10.1.24.1", "dIP": "4.3.2.1", "dPort": 25, "sensor": 1},  # out, S1
        {"sIP": "4.3.2.1", "dIP": "10.1.24.2", "dPort": 80, "sensor": 1},  # inweb, S1
    ]))  # fmt: skip
    pack_hour(data, START, site)
    return data


def test_archive_selection_by_type_and_sensor(archive, site):
    def names(**kw):
        return sorted(p.name for p in select_archive_files(archive, site, "2006/04/01", **kw))

    assert names() == ["in-S0_20060401.00.parquet", "in-S1_20060401.00.parquet", "iw-S1_20060401.00.parquet"]
    assert names(types="in,out", sensors="S1") == ["in-S1_20060401.00.parquet", "out-S1_20060401.00.parquet"]
    assert names(types="all", sensors="0") == ["in-S0_20060401.00.parquet"]
    assert select_archive_files(archive, site, "2006/04/02", types="all") == []
    files = select_archive_files(archive, site, "2006/04/01:00", types="all")
    assert filter_files(files, FilterSpec(dport="25")).column("out").to_pylist() == [0, 1, 2]


def test_cli_reads_the_archive_with_selection_switches(archive, capsys):
    dest = archive / "x.parquet"
    status = cli.main([
        "filter", "--data-dir", str(archive), "--start-date", "2006/04/01:00", "--type", "in,out",
        "--sensors", "S1", "--proto", "6", "--pass", str(dest), "--print-statistics",
    ])  # fmt: skip
    assert status == 0
    assert sorted(pq.read_table(dest).column("out").to_pylist()) == [1, 2]
    assert capsys.readouterr().err == "Files     2.  Read          2.  Pass          2. Fail           0.\n"
    # an archive pull without partitioning switches passes everything selected (default types)
    dest.unlink()
    assert cli.main(["filter", "--data-dir", str(archive), "--start-date", "2006/04/01", "--pass", str(dest)]) == 0
    assert sorted(pq.read_table(dest).column("out").to_pylist()) == [0, 1, 3]


# --- piping and errors through a real process ---------------------------------------------------------


def vlf(*args: str, stdin=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "vlf_dagster.cli", *args], input=stdin, capture_output=True, env=env, cwd=ROOT)


def test_stdin_stdout_arrow_ipc_pipe_between_two_filters(tmp_path):
    src = write_input(tmp_path, [{"protocol": 6, "dPort": 80}, {"protocol": 17, "dPort": 80}, {"protocol": 6, "dPort": 22}])
    first = vlf("filter", str(src), "--proto", "6", "--pass-destination", "-")
    assert first.returncode == 0, first.stderr
    assert ipc.open_stream(pa.BufferReader(first.stdout)).read_all().column("out").to_pylist() == [0, 2]
    dest = tmp_path / "out.parquet"
    second = vlf("filter", "-", "--dport", "80", "--pass", str(dest), stdin=first.stdout)
    assert second.returncode == 0, second.stderr
    assert pq.read_table(dest).column("out").to_pylist() == [0]


def test_bad_input_exits_1_with_one_line_and_no_traceback(tmp_path):
    src = write_input(tmp_path, [{}])
    result = vlf("filter", str(src), "--scidr", "10.0.0.300/8", "--pass", str(tmp_path / "x"))
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == ["vlf filter: --scidr: invalid IP address or CIDR block '10.0.0.300/8'"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--saddress", "10.x.256.1"], "--saddress: invalid IP address, CIDR block or wildcard '10.x.256.1'"),
        (["--dcidr", "1.2.3.4/33"], "--dcidr: invalid IP address or CIDR block '1.2.3.4/33'"),
        (["--sport", "80,9-5"], "--sport: range '9-5'"),
        (["--dport", "70000"], "--dport: value '70000'"),
        (["--flags-all", "S/X"], "--flags-all: invalid TCP flag 'X'"),
        (["--flags-all", "SA/S"], "HIGH flags must also be in MASK"),
        (["--stime", "2009/02/30"], "--stime: invalid time '2009/02/30'"),
        (["--packets", "10-5"], "--packets: range '10-5'"),
        (["--type", "inbound", "--proto", "6"], "unknown flow type 'inbound'"),
        (["--sensors", "S9", "--proto", "6"], "--sensors: unknown sensor 'S9'"),
        (["--sipset", "/nonexistent/x.set"], "--sipset: /nonexistent/x.set: cannot read IP set"),
        (["--sport", "1", "--sport", "2"], "--sport: switch used multiple times"),
        (["--proto", "6", "--icmp-type", "3"], "--icmp-type needs ICMP"),
        ([], "must specify partitioning rules when using --pass-destination"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_value(tmp_path, capsys, site_file, args, message):
    src = write_input(tmp_path, [{}])
    extra = ["--site-config-file", str(site_file / "site.toml")]
    assert cli.main(["filter", str(src), *extra, *args, "--pass", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vlf filter: ") and message in err, err


def test_archive_input_errors(tmp_path, capsys):
    assert cli.main(["filter", "--data-dir", str(tmp_path), "--end-date", "2006/04/02", "--proto", "6", "--pass", "x"]) == 1
    assert "--end-date '2006/04/02' requires --start-date" in capsys.readouterr().err
    assert cli.main(["filter", "--data-dir", str(tmp_path), "--start-date", "2006/04/01", "--proto", "6"]) == 1
    assert "no output" in capsys.readouterr().err
    assert cli.main(["filter", "--proto", "6", "--pass", "x"]) == 1
    assert "no input" in capsys.readouterr().err


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["filter", "--help"])
    text = capsys.readouterr().out
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices["filter"]
    for action in sub._actions:
        for option in action.option_strings:
            assert option in text
        assert action.help, action.dest


def test_written_flows_are_the_same_bytes_whatever_order_they_were_read_in(tmp_path):
    from vlf_dagster.flows.tools.filter.run import write_filtered
    from vlf_dagster.flows.tools.filter.spec import FilterSpec

    # records that tie on start time and source and differ in everything else
    rows = [dict(sIP="4.3.2.1", dIP=f"10.1.24.{i % 5}", dPort=1000 + (i * 7) % 13, packets=1 + i % 3, sTime=1_143_849_600_000)
            for i in range(40)]
    outputs = []
    for k, order in enumerate((rows, rows[::-1], rows[7:] + rows[:7])):
        source = write_parquet(flows(order), tmp_path / f"in{k}.parquet")
        write_filtered([source], FilterSpec(protocol="0-255"), tmp_path / f"out{k}.parquet")
        outputs.append((tmp_path / f"out{k}.parquet").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_print_statistics_to_a_file_and_a_bare_switch_before_an_input(tmp_path, capsys):
    """rwfilter's --print-statistics[=FILE]: bare, the next word is an input file, not the target."""
    from vlf_dagster.cli import main

    flows_file = tmp_path / "f.parquet"
    pq.write_table(table([dict(sIP="1.1.1.1", dIP="10.0.0.1", protocol=6), dict(sIP="2.2.2.2", dIP="10.0.0.2", protocol=17)]), flows_file)
    assert main(["filter", "--proto=6", "--print-statistics", str(flows_file)]) == 0
    line = "Files     1.  Read          2.  Pass          1. Fail           1."
    assert capsys.readouterr().err.strip() == line
    assert main(["filter", "--proto=6", f"--print-statistics={tmp_path / 'stats.txt'}", str(flows_file)]) == 0
    assert (tmp_path / "stats.txt").read_text() == line + "\n" and capsys.readouterr().err == ""
    assert main(["filter", "--proto=6", f"--print-volume-statistics={tmp_path / 'volume.txt'}", str(flows_file)]) == 0
    assert (tmp_path / "volume.txt").read_text().splitlines()[0].split("|")[1].strip() == "Recs"


def test_an_arrow_stream_out_is_written_batch_by_batch_in_input_order(tmp_path, capsys):
    """One Arrow stream out of Parquet inputs (a pipe or a file not named .parquet) is written batch
    by batch as DuckDB scans (filtered_batches): the same records, in input order, as the Parquet
    destination; a damaged input is one line naming it, and no output file is left."""
    from vlf_dagster.flows.tools.filter.run import filtered_batches

    t0 = 1_143_849_600_000
    rows = [dict(sIP=f"1.0.{i // 250}.{i % 250}", sTime=t0 + (7919 * i) % 100_000, protocol=6 if i % 3 else 17)
            for i in range(3000)]
    a = write_parquet(flows(rows[:2000]), tmp_path / "a.parquet")
    b = write_parquet(flows(rows[2000:]), tmp_path / "b.parquet")
    stream, parquet = tmp_path / "out.arrow", tmp_path / "out.parquet"
    assert cli.main(["filter", "--proto=6", f"--pass-destination={stream}", str(b), str(a)]) == 0
    assert cli.main(["filter", "--proto=6", f"--pass-destination={parquet}", str(b), str(a)]) == 0
    streamed = ipc.open_stream(stream.read_bytes()).read_all()
    assert streamed.num_rows == 2000 and streamed.equals(pq.read_table(parquet).replace_schema_metadata(None).cast(streamed.schema))
    batches = list(filtered_batches([str(b), str(a)], FilterSpec(protocol="6"), batch_rows=256))
    assert len(batches) > 1 and pa.Table.from_batches(batches).column("sIP").equals(streamed.column("sIP"))
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(a.read_bytes()[:-100])
    capsys.readouterr()
    assert cli.main(["filter", "--proto=6", f"--pass-destination={tmp_path / 'bad.arrow'}", str(b), str(damaged)]) == 1
    err = capsys.readouterr().err.strip()
    assert "damaged.parquet" in err and err.count("\n") == 0 and not (tmp_path / "bad.arrow").exists()


def test_a_selection_switch_without_dates_reads_todays_archive(site_file, site, capsys):
    """What filter's help says: a selection switch without dates means today (UTC); neither files
    nor a selection switch is an error saying so."""
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    t = int(now.timestamp() * 1000)
    write_landing(site_file, now, table([{"sIP": "4.3.2.1", "dIP": "10.1.24.1", "dPort": 25, "sTime": t + 5}]))
    pack_hour(site_file, now, site)
    capsys.readouterr()
    assert cli.main(["filter", "--data-dir", str(site_file), "--proto", "0-255", "--print-statistics=stdout"]) == 0
    assert capsys.readouterr().out.split()[:4] == ["Files", "1.", "Read", "1."]
    assert cli.main(["filter", "--proto", "6", "--print-statistics"]) == 1
    assert "no input" in capsys.readouterr().err


def test_statistics_and_text_files_obey_silk_clobber_too(tmp_path, capsys, monkeypatch):
    """--print-statistics=FILE and uniq's --output-path refuse an existing file without SILK_CLOBBER,
    as SiLK's tools refuse it; /dev/null is always written."""
    monkeypatch.delenv("SILK_CLOBBER", raising=False)
    src = write_parquet(flows([dict(sIP="1.0.0.1", protocol=6)]), tmp_path / "f.parquet")
    stats_file, text_file = tmp_path / "stats.txt", tmp_path / "uniq.txt"
    stats_file.write_text("old\n")
    text_file.write_text("old\n")
    assert cli.main(["filter", str(src), "--proto=6", f"--print-statistics={stats_file}"]) == 1
    assert cli.main(["uniq", "--fields=sip", f"--output-path={text_file}", str(src)]) == 1
    err = capsys.readouterr().err
    assert err.count("output file exists") == 2 and stats_file.read_text() == text_file.read_text() == "old\n"
    assert cli.main(["filter", str(src), "--proto=6", "--print-statistics=/dev/null"]) == 0
    monkeypatch.setenv("SILK_CLOBBER", "1")
    assert cli.main(["uniq", "--fields=sip", f"--output-path={text_file}", str(src)]) == 0
    assert "1.0.0.1" in text_file.read_text()


def test_a_pull_that_fails_half_way_fails_the_verb_downstream_too(tmp_path):
    """filter streaming into a pipe meets a damaged file after good ones: it ends the stream with
    a message no reader reads, so `vlf count` downstream fails instead of counting a short stream."""
    rows = [dict(sIP=f"1.0.{i // 250}.{i % 250}", sTime=1_143_849_600_000 + i, protocol=6) for i in range(6000)]
    good = tmp_path / "good.parquet"
    pq.write_table(flows(rows), good, row_group_size=1000)
    data = bytearray(good.read_bytes())
    page = pq.read_metadata(good).row_group(3).column(0).data_page_offset
    for i in range(page + 20, page + 200):
        data[i] ^= 0x5A
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(data))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    vlf = [sys.executable, "-m", "vlf_dagster.cli"]
    pull = subprocess.Popen([*vlf, "filter", str(good), str(good), str(bad), "--proto=6", "--pass=-"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    counted = subprocess.run([*vlf, "count", "--bin-size=86400"], stdin=pull.stdout, capture_output=True, text=True, env=env,
                             timeout=120)
    pull.wait(60)
    assert pull.returncode == 1 and b"bad.parquet" in pull.stderr.read()
    assert counted.returncode == 1 and "damaged Arrow stream" in counted.stderr
