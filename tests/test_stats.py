"""uniq (rwuniq), stats (rwstats) and count (rwcount): expected values worked out by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import START, flows, ip

from vlf_dagster.flows.tools.stats.count import count_bins, parse_load_scheme
from vlf_dagster.flows.tools.stats.keys import StatsError
from vlf_dagster.flows.tools.stats.text import TextLines, TextOptions, format_top, format_uniq
from vlf_dagster.flows.tools.stats.top import top_n
from vlf_dagster.flows.tools.stats.uniq import uniq, uniq_plan

T0 = int(START.timestamp() * 1000)  # 2006-04-01 00:00:00 UTC, a day (and 30 s) boundary
ROOT = Path(__file__).resolve().parents[1]

# 1.1.1.1: 3 flows, 6 packets, 350 bytes, 2 destinations; 2.2.2.2: 1/4/400/1; 3.3.3.3: 1/1/40/1;
# 5.5.5.5: 11 flows (40 bytes, 1 packet each) to 11 destinations -- 16 records in all.
ROWS = [
    {"sIP": "1.1.1.1", "dIP": "10.0.0.1", "packets": 2, "bytes": 100, "sTime": T0 + 5_000, "duration": 2_000},
    {"sIP": "1.1.1.1", "dIP": "10.0.0.2", "packets": 3, "bytes": 200, "sTime": T0 + 1_000},
    {"sIP": "1.1.1.1", "dIP": "10.0.0.1", "packets": 1, "bytes": 50, "sTime": T0 + 9_000, "duration": 500},
    {"sIP": "2.2.2.2", "dIP": "10.0.0.1", "packets": 4, "bytes": 400},
    {"sIP": "3.3.3.3", "dIP": "10.0.0.3", "packets": 1, "bytes": 40},
] + [{"sIP": "5.5.5.5", "dIP": f"10.0.1.{i}", "packets": 1, "bytes": 40} for i in range(11)]


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return flows(ROWS)


@pytest.fixture(scope="module")
def parquet(tmp_path_factory, table) -> str:
    path = tmp_path_factory.mktemp("stats") / "flows.parquet"
    pq.write_table(table, path)
    return str(path)


def vlf(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run(
        [sys.executable, "-m", "vlf_dagster.cli", *args], input=stdin, capture_output=True, env=env, cwd=ROOT
    )


def rows_by_key(result: pa.Table, key: str) -> dict:
    data = result.to_pylist()
    return {r[key]: {k: v for k, v in r.items() if k != key} for r in data}


# --- uniq -----------------------------------------------------------------------------------


def test_uniq_records_packets_bytes_per_key(table):
    got = rows_by_key(uniq(table, "sip", "records,packets,bytes"), "sIP")
    assert got == {
        ip("1.1.1.1"): {"Records": 3, "Packets": 6, "Bytes": 350},
        ip("2.2.2.2"): {"Records": 1, "Packets": 4, "Bytes": 400},
        ip("3.3.3.3"): {"Records": 1, "Packets": 1, "Bytes": 40},
        ip("5.5.5.5"): {"Records": 11, "Packets": 11, "Bytes": 440},
    }


def test_uniq_default_value_is_records_and_numbers_name_fields(table):
    result = uniq(table, "1")  # rwcut number 1 = sIP
    assert result.column_names == ["sIP", "Records"]
    assert rows_by_key(result, "sIP")[ip("5.5.5.5")] == {"Records": 11}


def test_uniq_distinct_dip_and_sip_distinct(table):
    got = rows_by_key(uniq(table, "sip", "distinct:dip"), "sIP")
    assert {k: v["dIP-Distinct"] for k, v in got.items()} == {
        ip("1.1.1.1"): 2, ip("2.2.2.2"): 1, ip("3.3.3.3"): 1, ip("5.5.5.5"): 11,
    }  # fmt: skip
    per_dip = rows_by_key(uniq(table, "dip", "sIP-Distinct,flows"), "dIP")
    assert per_dip[ip("10.0.0.1")] == {"sIP-Distinct": 2, "Records": 3}  # 1.1.1.1 twice, 2.2.2.2 once
    assert per_dip[ip("10.0.0.2")] == {"sIP-Distinct": 1, "Records": 1}
    assert per_dip[ip("10.0.1.7")] == {"sIP-Distinct": 1, "Records": 1}


def test_uniq_earliest_and_latest_times(table):
    got = rows_by_key(uniq(table, "sip", "stime,etime"), "sIP")[ip("1.1.1.1")]
    # starts at +5 s, +1 s, +9 s; ends at +7 s, +1 s, +9.5 s
    assert got == {"sTime-Earliest": T0 + 1_000, "eTime-Latest": T0 + 9_500}


def test_uniq_thresholds(table):
    only_big = uniq(table, "sip", "flows", ["flows=2"], sort=True)
    assert only_big.column("sIP").to_pylist() == [ip("1.1.1.1"), ip("5.5.5.5")]
    singles = uniq(table, "sip", "flows", ["flows=1-1"], sort=True)
    assert singles.column("sIP").to_pylist() == [ip("2.2.2.2"), ip("3.3.3.3")]
    both = uniq(table, "sip", "flows", ["flows=1-3", "bytes=100-400"], sort=True)
    # the bytes threshold appends Bytes to the values
    assert both.to_pylist() == [
        {"sIP": ip("1.1.1.1"), "Records": 3, "Bytes": 350},
        {"sIP": ip("2.2.2.2"), "Records": 1, "Bytes": 400},
    ]
    zero_min = uniq(table, "sip", "flows", ["dip-distinct=0-1"], sort=True)  # MIN 0 counts as 1
    assert zero_min.column("sIP").to_pylist() == [ip("2.2.2.2"), ip("3.3.3.3")]


def test_uniq_study_example(table):
    result = uniq(table, "sip", "flows,distinct:dip", ["flows=1-10"], sort=True)
    assert result.to_pylist() == [
        {"sIP": ip("1.1.1.1"), "Records": 3, "dIP-Distinct": 2},
        {"sIP": ip("2.2.2.2"), "Records": 1, "dIP-Distinct": 1},
        {"sIP": ip("3.3.3.3"), "Records": 1, "dIP-Distinct": 1},
    ]  # 5.5.5.5 has 11 flows: above 10


def test_uniq_sort_output_orders_by_all_keys(table):
    result = uniq(table, "sip,dip", "records", sort=True)
    pairs = list(zip(result.column("sIP").to_pylist(), result.column("dIP").to_pylist()))
    assert pairs[:3] == [(ip("1.1.1.1"), ip("10.0.0.1")), (ip("1.1.1.1"), ip("10.0.0.2")), (ip("2.2.2.2"), ip("10.0.0.1"))]
    assert pairs == sorted(pairs) and len(pairs) == 15
    assert result.column("Records").to_pylist()[0] == 2


def test_uniq_cli_literal_text(parquet):
    out = vlf("uniq", "--fields=sip", "--values=flows,distinct:dip", "--threshold=flows=1-10", "--sort-output", parquet)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == (
        "            sIP|   Records|dIP-Distin|\n"
        "        1.1.1.1|         3|         2|\n"
        "        2.2.2.2|         1|         1|\n"
        "        3.3.3.3|         1|         1|\n"
    )
    delimited = vlf("uniq", "--fields=sip", "--values=flows,distinct:dip", "--threshold=flows=1-10", "--sort", "--delimited=,", parquet)
    assert delimited.stdout.decode().splitlines() == ["sIP,Records,dIP-Distinct", "1.1.1.1,3,2", "2.2.2.2,1,1", "3.3.3.3,1,1"]
    bare = vlf("uniq", "--fields=sip", "--threshold=flows=11", "--no-titles", "--no-columns", parquet)
    assert bare.stdout.decode() == "5.5.5.5|11|\n"


def test_uniq_keys_shown_as_rwcut_shows_them():
    data = flows(
        [
            {"protocol": 6, "flags": 0x12, "sTime": T0 + 3_599_000},  # SA
            {"protocol": 6, "flags": 0x12, "sTime": T0 + 10},
            {"protocol": 17, "flags": 0, "sTime": T0 + 3_600_000},
        ]
    )
    plan, result = uniq_plan(data, "proto,flags,stime", "bytes", bin_time=3600, sort=True)
    assert format_uniq(result, plan) == [
        "pro|   flags|              sTime|               Bytes|",
        "  6| S  A   |2006/04/01T00:00:00|                  80|",
        " 17|        |2006/04/01T01:00:00|                  40|",
    ]
    compact = format_uniq(result, plan, TextOptions(columns=False, final_delimiter=False))
    assert compact[1] == "6|SA|2006/04/01T00:00:00|80"


def test_uniq_reads_an_arrow_stream_from_stdin(table):
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    out = vlf("uniq", "--fields=dip", "--values=sip-distinct", "--threshold=sip-distinct=2", stdin=sink.getvalue().to_pybytes())
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == "            dIP|sIP-Distin|\n       10.0.0.1|         2|\n"


def test_uniq_accepts_parquet_paths(parquet):
    result = uniq([parquet, parquet], "sip", "flows", ["flows=20"], sort=True)
    assert result.to_pylist() == [{"sIP": ip("5.5.5.5"), "Records": 22}]


# --- count ----------------------------------------------------------------------------------

# A: starts 10 s into bin 0 (30 s bins), lasts 59.999 s, so it covers [T0+10 s, T0+70 s): 20 s of
#    bin 0, all 30 s of bin 1, 10 s of bin 2 -- shares 1/3, 1/2, 1/6.  6000 bytes, 60 packets.
#    Its midpoint is T0 + 10 s + 29.999 s, in bin 1.
# B: inside bin 1 (T0+35 s .. T0+36 s), 100 bytes, 1 packet.
SPAN = [
    {"sTime": T0 + 10_000, "duration": 59_999, "bytes": 6000, "packets": 60},
    {"sTime": T0 + 35_000, "duration": 1_000, "bytes": 100, "packets": 1},
]
EXPECTED = {  # scheme -> per bin (records, bytes, packets)
    "time-proportional": [(1 / 3, 2000, 20), (1 / 2 + 1, 3100, 31), (1 / 6, 1000, 10)],
    "bin-uniform": [(1 / 3, 2000, 20), (1 / 3 + 1, 2100, 21), (1 / 3, 2000, 20)],
    "start-spike": [(1, 6000, 60), (1, 100, 1), (0, 0, 0)],
    "end-spike": [(0, 0, 0), (1, 100, 1), (1, 6000, 60)],
    "middle-spike": [(0, 0, 0), (2, 6100, 61), (0, 0, 0)],
    "maximum-volume": [(1, 6000, 60), (2, 6100, 61), (1, 6000, 60)],
    "minimum-volume": [(1, 0, 0), (2, 100, 1), (1, 0, 0)],
}


@pytest.mark.parametrize("scheme", list(EXPECTED))
def test_count_load_schemes_over_three_bins(scheme):
    result = count_bins(
        flows(SPAN), 30, scheme, start_time="2006/04/01:00:00:00", end_time="2006/04/01:00:01:29"
    )
    dates = [int(d.timestamp() * 1000) for d in result.column("Date").to_pylist()]
    assert dates == [T0, T0 + 30_000, T0 + 60_000]
    got = list(zip(*(result.column(c).to_pylist() for c in ("Records", "Bytes", "Packets"))))
    for row, want in zip(got, EXPECTED[scheme]):
        assert row == pytest.approx(want, abs=1e-9)


def test_count_load_scheme_numbers_match_names():
    for number, name in enumerate(
        ["bin-uniform", "start-spike", "end-spike", "middle-spike", "time-proportional", "maximum-volume", "minimum-volume"]
    ):
        assert parse_load_scheme(number) == name
    assert parse_load_scheme("max") == "maximum-volume"


def test_count_text_and_default_range(tmp_path):
    path = tmp_path / "span.parquet"
    pq.write_table(flows(SPAN), path)
    out = vlf("count", str(path))  # default: 30 s bins, time-proportional, first to last bin with bytes
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == (
        "               Date|        Records|               Bytes|          Packets|\n"
        "2006/04/01T00:00:00|           0.33|             2000.00|            20.00|\n"
        "2006/04/01T00:00:30|           1.50|             3100.00|            31.00|\n"
        "2006/04/01T00:01:00|           0.17|             1000.00|            10.00|\n"
    )
    spikes = vlf("count", "--load-scheme=1", "--delimited", str(path))  # start-spike: bins 0 and 1 only
    assert spikes.stdout.decode().splitlines() == [
        "Date|Records|Bytes|Packets",
        "2006/04/01T00:00:00|1.00|6000.00|60.00",
        "2006/04/01T00:00:30|1.00|100.00|1.00",
    ]


def test_count_skip_zeroes():
    window = dict(start_time=T0, end_time="2006/04/01:00:01:29")
    full = count_bins(flows(SPAN), 30, "start-spike", **window)
    assert full.column("Records").to_pylist() == [1, 1, 0]
    skipped = count_bins(flows(SPAN), 30, "start-spike", skip_zeroes=True, **window)
    assert skipped.column("Records").to_pylist() == [1, 1]
    middle = count_bins(flows(SPAN), 30, "middle", skip_zeroes=True, **window)
    assert [int(d.timestamp() * 1000) for d in middle.column("Date").to_pylist()] == [T0 + 30_000]
    # an empty bin between two busy ones is printed unless skip-zeroes
    gap = flows([{"sTime": T0, "bytes": 10}, {"sTime": T0 + 60_000, "bytes": 10}])
    assert count_bins(gap, 30, "start-spike").column("Records").to_pylist() == [1, 0, 1]
    assert count_bins(gap, 30, "start-spike", skip_zeroes=True).column("Records").to_pylist() == [1, 1]


def test_count_start_time_cuts_the_flow():
    # start at T0+30 s: A's first 20 s are not counted; bins 1 and 2 keep their shares
    result = count_bins(flows(SPAN), 30, "time-proportional", start_time=T0 + 30_000)
    assert result.column("Records").to_pylist() == pytest.approx([1.5, 1 / 6])
    assert result.column("Bytes").to_pylist() == pytest.approx([3100, 1000])


# --- stats ----------------------------------------------------------------------------------


def test_stats_top_n_with_percentages(table):
    result = top_n(table, "sip", "records", count=2)
    assert (result.records, result.bins, result.total) == (16, 4, 16)
    assert result.table.column("sIP").to_pylist() == [ip("5.5.5.5"), ip("1.1.1.1")]
    assert result.table.column("%Records").to_pylist() == pytest.approx([68.75, 18.75])  # 11/16, 3/16
    assert result.table.column("cumul_%").to_pylist() == pytest.approx([68.75, 87.5])
    assert format_top(result) == [
        "INPUT: 16 Records for 4 Bins and 16 Total Records",
        "OUTPUT: Top 2 Bins by Records",
        "            sIP|   Records|  %Records|   cumul_%|",
        "        5.5.5.5|        11| 68.750000| 68.750000|",
        "        1.1.1.1|         3| 18.750000| 87.500000|",
    ]


def test_stats_bottom_n_breaks_ties_by_key(table):
    result = top_n(table, "sip", "flows", count=3, bottom=True)
    # 2.2.2.2 and 3.3.3.3 tie at 1 record: the smaller key comes first
    assert result.table.column("sIP").to_pylist() == [ip("2.2.2.2"), ip("3.3.3.3"), ip("1.1.1.1")]
    assert result.table.column("cumul_%").to_pylist() == pytest.approx([6.25, 12.5, 31.25])
    assert format_top(result)[1] == "OUTPUT: Bottom 3 Bins by Records"


def test_stats_bytes_percentages(table):
    result = top_n(table, "sip", "bytes,flows", count=1)
    # bytes: 350 + 400 + 40 + 440 = 1230; 440 / 1230 = 35.7723577...%
    assert result.total == 1230
    assert format_top(result)[3] == "        5.5.5.5|                 440|        11| 35.772358| 35.772358|"


def test_stats_threshold_mode(table):
    top = top_n(table, "sip", "records", threshold=3)
    assert top.table.column("sIP").to_pylist() == [ip("5.5.5.5"), ip("1.1.1.1")]  # >= 3
    assert format_top(top)[1] == "OUTPUT: Top 2 bins by Records (threshold 3)"
    bottom = top_n(table, "sip", "packets", threshold=4, bottom=True)
    assert bottom.table.column("sIP").to_pylist() == [ip("3.3.3.3"), ip("2.2.2.2")]  # 1 and 4 packets <= 4
    none = top_n(table, "sip", "records", threshold=12)
    assert format_top(none) == [
        "INPUT: 16 Records for 4 Bins and 16 Total Records",
        "OUTPUT: No bins above threshold of 12 Records",
    ]


def test_stats_percentage_mode(table):
    result = top_n(table, "sip", "records", percentage=15)
    # cut-off: int(15 * 16 / 100) = int(2.4) = 2 records
    assert result.threshold == 2
    assert result.table.column("sIP").to_pylist() == [ip("5.5.5.5"), ip("1.1.1.1")]
    assert format_top(result)[1] == "OUTPUT: Top 2 bins by Records (15.0000% == 2)"


def test_stats_distinct_primary_total_is_overall_distinct_count(table):
    result = top_n(table, "sip", "dip-distinct", count=2)
    # distinct destinations overall: 10.0.0.1-3 and 10.0.1.0-10 = 14
    assert result.total == 14
    assert result.table.column("dIP-Distinct").to_pylist() == [11, 2]
    assert result.table.column("%dIP-Distinct").to_pylist() == pytest.approx([1100 / 14, 200 / 14])


def test_stats_cli(parquet):
    out = vlf("stats", "--fields=sip", "--values=flows", "--count=1", "--bottom", parquet)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == (
        "INPUT: 16 Records for 4 Bins and 16 Total Records\n"
        "OUTPUT: Bottom 1 Bin by Records\n"
        "            sIP|   Records|  %Records|   cumul_%|\n"
        "        2.2.2.2|         1|  6.250000|  6.250000|\n"
    )


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, needle",
    [
        (["uniq", "--fields=sip,nosuch"], "unknown field"),
        (["uniq", "--fields=sip", "--threshold=flows"], "invalid threshold"),
        (["uniq", "--fields=sip", "--threshold=flows=10-2"], "maximum is below minimum"),
        (["uniq", "--fields=sip", "--values=distinct:sip"], "also a key field"),
        (["uniq", "--fields=sip", "--values=bogus"], "unknown value"),
        (["stats", "--fields=sip", "--count=-3"], "invalid --count"),
        (["stats", "--fields=sip"], "--count"),
        (["count", "--bin-size=0"], "invalid bin size"),
        (["count", "--bin-size=abc"], "invalid bin size"),
        (["count", "--load-scheme=9"], "invalid load scheme"),
        (["count", "--load-scheme=spike"], "load scheme"),
        (["count", "--start-time=2006/13/01"], "invalid --start-time"),
    ],
)
def test_bad_input_exits_1_with_one_line(parquet, args, needle):
    out = vlf(*args, parquet)
    err = out.stderr.decode()
    assert out.returncode == 1, err
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert out.stdout == b""


def test_library_errors_are_value_errors(table):
    with pytest.raises(StatsError, match="also a key"):
        uniq(table, "dip", "dip-distinct")
    with pytest.raises(StatsError, match="exactly one"):
        top_n(table, "sip", count=1, threshold=2)
    with pytest.raises(ValueError, match="sTime-Earliest cannot"):
        top_n(table, "sip", "stime", count=1)


def test_uniq_output_path_is_written_whole_or_not_at_all(parquet, tmp_path, capsys, monkeypatch):
    from vlf_dagster.cli import main
    from vlf_dagster.flows import storage

    out = tmp_path / "uniq.txt"
    assert main(["uniq", "--fields=sip", "--output-path", str(out), parquet]) == 0
    whole = out.read_text()
    assert whole.count("\n") == 5 and "5.5.5.5" in whole
    # a full disk mid-write: the earlier output stays as it was, no 0-byte file, one line
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", full_disk)
    monkeypatch.setenv("SILK_CLOBBER", "1")  # replacing an existing output file needs it, as in SiLK
    assert main(["uniq", "--fields=dip", "--output-path", str(out), parquet]) == 1
    assert out.read_text() == whole and [p.name for p in tmp_path.iterdir()] == ["uniq.txt"]
    monkeypatch.undo()
    assert main(["uniq", "--fields=sip", "--output-path", "/dev/full", parquet]) == 1  # a device is written in place
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vlf uniq: {out}: cannot write: No space left on device", "vlf uniq: /dev/full: cannot write: No space left on device"]


def test_text_lines_bytes_equal_the_lines_joined():
    """TextLines.to_bytes (the verbs' output path) gives exactly the lines, newline after each, for a
    sliced Arrow body (non-zero offset), non-ASCII text, an empty body and prefixed header lines."""
    import pyarrow as pa

    rows = pa.array(["zero", "één|", "  2|", "3"]).slice(1, 3)
    lines = ["head 1"] + TextLines(["title|"], rows)
    assert list(lines) == ["head 1", "title|", "één|", "  2|", "3"] and lines[-1] == "3" and lines[1:3] == ["title|", "één|"]
    assert lines.to_bytes() == "".join(line + "\n" for line in lines).encode("utf-8")
    assert TextLines(["only"]).to_bytes() == b"only\n"
