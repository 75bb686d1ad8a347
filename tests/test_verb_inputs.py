"""How verbs take their input: named flow Parquet files are scanned by DuckDB directly (all at
once, only the columns needed); stdin, Arrow IPC and Parquet lacking flow columns are read and
conformed in Python.  Both paths must give the same records in the same order."""

import io
import ipaddress
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from conftest import START, flows, ip
from vlf_dagster.cli import main
from vlf_dagster.flows.schema import conform
from vlf_dagster.flows.storage import hour_ms, write_parquet
from vlf_dagster.verbs.common import parquet_flow_files, read_flows

T0 = hour_ms(START)
V6 = ipaddress.IPv6Address("2001:db8::9").packed


@pytest.fixture
def files(tmp_path):
    # two files whose records are deliberately not in time order: input order must survive
    a = write_parquet(flows([dict(sIP="1.0.0.1", sTime=T0 + 500, flags=2), dict(sIP="1.0.0.2", sTime=T0 + 100, flags=18),
                             dict(sIP="1.0.0.3", sTime=T0 + 300, flags=2, protocol=17)]), tmp_path / "a.parquet")
    b = write_parquet(flows([dict(sIP="1.0.0.4", sTime=T0 + 50, flags=2), dict(sIP="1.0.0.5", sTime=T0 + 900, flags=2)]),
                      tmp_path / "b.parquet")
    return [str(a), str(b)]


def test_only_complete_parquet_flow_files_are_scanned_directly(files, tmp_path):
    assert parquet_flow_files(files) == files
    assert parquet_flow_files([*files, "-"]) is None
    stream = tmp_path / "c.arrows"
    with ipc.new_stream(stream, flows([{}]).schema) as writer:
        writer.write_table(flows([{}]))
    assert parquet_flow_files([files[0], str(stream)]) is None
    partial = tmp_path / "partial.parquet"  # another tool's Parquet: the required columns only
    pq.write_table(pa.table({"sIP": pa.array([ip("9.9.9.9")], pa.uint32()), "dIP": pa.array([1], pa.uint32()),
                             "sPort": [1], "dPort": [2], "protocol": [6], "packets": [1], "bytes": [40], "sTime": [T0]}), partial)
    assert parquet_flow_files([files[0], str(partial)]) is None
    # ... and is still read, conformed (missing columns default to 0), in order
    table = read_flows([files[0], str(partial)])
    assert table.column("sIP").to_pylist() == [ip("1.0.0.1"), ip("1.0.0.2"), ip("1.0.0.3"), ip("9.9.9.9")]
    assert table.column("flowtype").to_pylist() == [0, 0, 0, 0]
    assert parquet_flow_files([str(tmp_path / "missing.parquet")]) is None


def test_read_flows_keeps_input_order_across_files(files):
    assert read_flows(files).column("sIP").to_pylist() == [ip(f"1.0.0.{i}") for i in (1, 2, 3, 4, 5)]


@pytest.mark.parametrize("tests", [["--flags-all", "S/SA"], ["--flags-all", "S/SA", "--sipset", "SET"]])
def test_filter_to_parquet_streams_in_input_order_like_the_table_path(files, tmp_path, tests, monkeypatch):
    from vlf_dagster.flows.sets import IPSet

    members = IPSet.from_strings(["1.0.0.1", "1.0.0.4", "1.0.0.5", "1.0.0.3"]).write(tmp_path / "s.set")
    tests = [str(members) if t == "SET" else t for t in tests]
    out = tmp_path / "direct.parquet"
    assert main(["filter", *files, "--proto", "6", *tests, "--pass-destination", str(out)]) == 0
    direct = conform(pq.read_table(out))
    # the same inputs through stdin (the read-and-conform path)
    whole = tmp_path / "whole.arrows"
    table = read_flows(files)
    with ipc.new_stream(whole, table.schema) as writer:
        writer.write_table(table)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(whole.read_bytes())))
    piped_out = tmp_path / "piped.parquet"
    assert main(["filter", "-", "--proto", "6", *tests, "--pass-destination", str(piped_out)]) == 0
    piped = conform(pq.read_table(piped_out))
    expected = ["1.0.0.1", "1.0.0.4", "1.0.0.5"]  # SYN without ACK, TCP, in input order (not time order)
    assert direct.column("sIP").to_pylist() == [ip(a) for a in expected]
    assert direct.equals(piped)


def test_stats_sees_ipv6_in_files_without_scanning_for_it(tmp_path, capsys):
    v6 = write_parquet(flows([dict(sIP="0.0.0.0", dIP="0.0.0.0", sIPv6=V6, dIPv6=V6, attributes=0x80),
                              dict(sIP="0.0.0.0", dIP="0.0.0.0", sIPv6=V6, dIPv6=V6, attributes=0x80),
                              dict(sIP="1.2.3.4")]), tmp_path / "v6.parquet")
    v4 = write_parquet(flows([dict(sIP="1.2.3.4")]), tmp_path / "v4.parquet")
    assert main(["stats", "--fields", "sip", "--values", "flows", "--count", "2", "--no-titles", "--delimited", str(v6), str(v4)]) == 0
    rows = [line.split("|")[:2] for line in capsys.readouterr().out.splitlines() if "|" in line and not line.startswith("INPUT")]
    assert rows == [["1.2.3.4", "2"], ["2001:db8::9", "2"]]  # a tie: the smaller key (IPv4 maps below) first
    assert main(["stats", "--fields", "sip", "--values", "flows", "--count", "1", "--no-titles", "--delimited", str(v4)]) == 0
    assert [line.split("|")[:2] for line in capsys.readouterr().out.splitlines() if "|" in line] == [["1.2.3.4", "1"]]


def test_library_stats_scan_mixed_files_by_name_and_complete_ones_as_they_are(files, tmp_path):
    from vlf_dagster.flows.tools.stats.top import top_n
    from vlf_dagster.flows.storage import holds_flow_columns

    partial = tmp_path / "partial.parquet"
    pq.write_table(pa.table({"sIP": pa.array([ip("1.0.0.1")] * 2, pa.uint32()), "dIP": pa.array([1, 2], pa.uint32()),
                             "sPort": [1, 1], "dPort": [2, 2], "protocol": [6, 6], "packets": [1, 1], "bytes": [40, 40],
                             "sTime": [T0, T0]}), partial)
    assert holds_flow_columns(files) and not holds_flow_columns([*files, str(partial)])
    assert not holds_flow_columns([str(tmp_path / "missing.parquet")])
    top = top_n([*files, str(partial)], "sip", "flows", count=1).table
    assert top.column(0).to_pylist() == [ip("1.0.0.1")] and top.column(1).to_pylist() == [3]
    top = top_n(files, "sip", "flows", count=0).table
    assert top.num_rows == 5


@pytest.mark.parametrize("options", [{}, {"num_recs": 2, "delimited": ","}, {"no_titles": True, "timestamp_format": "epoch"}])
def test_cut_streams_files_exactly_as_it_formats_the_table(files, tmp_path, options):
    from vlf_dagster.flows.tools.cut import format_flow_files, format_text

    v6 = write_parquet(flows([dict(sIP="0.0.0.0", dIP="0.0.0.0", sIPv6=V6, dIPv6=V6, attributes=0x80, sTime=T0 + 7)]),
                       tmp_path / "v6.parquet")
    paths = [*files, str(v6)]
    streamed = b"".join(format_flow_files(paths, None, batch_rows=2, **options))
    whole = b"".join(format_text(read_flows(paths), None, **options))
    assert streamed == whole
    lines = streamed.decode().splitlines()
    assert len(lines) == (options.get("num_recs") or 6) + (0 if options.get("no_titles") else 1)
    if not options:  # an IPv6 record anywhere widens every address column, as in the table path
        assert lines[-1].split("|")[0].strip() == "2001:db8::9" and len(lines[1].split("|")[0]) == 39
    with pytest.raises(TypeError, match="unexpected options"):
        list(format_flow_files(paths, None, colums=False))


# --- found in review: inputs that must not take the DuckDB path, and orders that must hold ------------


def test_pipes_are_read_whole_not_sniffed(files, tmp_path):
    import os
    import subprocess
    import threading

    fifo = tmp_path / "flows.fifo"
    os.mkfifo(fifo)
    assert parquet_flow_files([str(fifo)]) is None  # decided from stat(), without opening the pipe
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    data = Path(files[0]).read_bytes()
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    done = subprocess.run([sys.executable, "-m", "vlf_dagster.cli", "cut", str(fifo), "--fields", "sIP", "--no-titles"],
                          capture_output=True, text=True, env=env, timeout=60)
    writer.join()
    assert done.returncode == 0, done.stderr
    assert [line.strip(" |") for line in done.stdout.splitlines()] == ["1.0.0.1", "1.0.0.2", "1.0.0.3"]


def test_glob_characters_in_names_read_that_file(files, tmp_path):
    literal = tmp_path / "h[1].parquet"
    literal.write_bytes(Path(files[0]).read_bytes())
    (tmp_path / "h1.parquet").write_bytes(Path(files[1]).read_bytes())  # what the glob would match
    assert parquet_flow_files([str(literal)]) is None
    assert read_flows([str(literal)]).column("sIP").to_pylist() == [ip("1.0.0.1"), ip("1.0.0.2"), ip("1.0.0.3")]


def test_extra_columns_are_a_one_line_error_wherever_the_file_comes(files, tmp_path, capsys):
    extra = tmp_path / "extra.parquet"
    pq.write_table(pq.read_table(files[0]).append_column("category", pa.array(["x", "y", "z"])), extra)
    assert parquet_flow_files([str(extra), files[1]]) is None and parquet_flow_files([files[1], str(extra)]) is None
    for order in ([str(extra), files[1]], [files[1], str(extra)]):
        assert main(["cut", *order]) == 1
        assert "unknown flow field(s): category" in capsys.readouterr().err


def test_a_file_named_twice_is_read_twice_in_place_with_a_set_test(files, tmp_path):
    from vlf_dagster.flows.sets import IPSet

    members = IPSet.from_strings([f"1.0.0.{i}" for i in range(1, 6)]).write(tmp_path / "all.set")
    out = tmp_path / "out.parquet"
    assert main(["filter", files[0], files[1], files[0], "--sipset", str(members), "--pass-destination", str(out)]) == 0
    assert conform(pq.read_table(out)).column("sIP").to_pylist() == [ip(f"1.0.0.{i}") for i in (1, 2, 3, 4, 5, 1, 2, 3)]


def test_ipv6_vlf_flows_written_by_duckdb_pass_the_consistency_check(tmp_path):
    from vlf_dagster.analysis.steps.consistency import vlf_flows_match_bag
    from vlf_dagster.flows.bags import bag_from_flows
    from vlf_dagster.flows.tools.filter.run import write_filtered
    from vlf_dagster.flows.tools.filter.spec import FilterSpec
    from vlf_dagster.flows.sets import IPSet

    archive = write_parquet(flows([dict(sIP="0.0.0.0", dIP="0.0.0.0", sIPv6=V6, dIPv6=V6, attributes=0x80),
                                   dict(sIP="4.0.0.1"), dict(sIP="4.0.0.2")]), tmp_path / "a.parquet")
    bag = bag_from_flows([archive], tmp_path / "bag.parquet", ["sIP"])
    fd = IPSet.from_strings(["2001:db8::9", "4.0.0.1"])
    out = tmp_path / "vlf.parquet"
    assert write_filtered([archive], FilterSpec(sipset=fd), out) == 2
    verdict = vlf_flows_match_bag(out, bag, fd)
    assert verdict.passed and verdict.metadata["vlf_flows"] == 2


def test_a_segmented_window_artifact_is_read_as_its_current_rows(tmp_path, capsys):
    from vlf_dagster.flows.segments import Segmented

    seg = Segmented(tmp_path / "vlf_flows")
    seg.write_full(lambda path: write_parquet(flows([dict(sIP="1.0.0.1", sTime=T0), dict(sIP="1.0.0.2", sTime=T0 + 1)]), path))
    replaced = flows([dict(sIP="1.0.0.2", sTime=T0 + 7)])
    seg.apply(pa.table({"ip": pa.array([ip("1.0.0.2")], pa.uint64()), "ipv6": pa.nulls(1, pa.binary())}), replaced)
    assert read_flows([str(seg.directory)]).column("sTime").to_pylist() == [T0, T0 + 7]
    assert main(["cut", str(seg.directory), "--fields=sIP", "--no-titles", "--delimited"]) in (0, None)
    assert capsys.readouterr().out.split() == ["1.0.0.1", "1.0.0.2"]


def test_a_flow_file_under_key_value_folders_is_its_columns_alone(tmp_path, capsys):
    """A landing file (landing/dt=.../hour=...) read by the verbs: DuckDB must not add dt and hour
    as columns (cut refused the file with "unknown flow field(s): dt, hour")."""
    table = flows([dict(sIP="4.3.2.1", dIP="10.1.24.5", packets=3, sTime=1_143_849_600_000 + i) for i in range(3)])
    nested = tmp_path / "landing" / "dt=2006-04-01" / "hour=00" / "x.parquet"
    plain = tmp_path / "x.parquet"
    for path in (nested, plain):
        write_parquet(table, path)
    for verb in (["cut"], ["uniq", "--fields=sip"], ["stats", "--fields=sip", "--count=2"], ["count"],
                 ["filter", "--proto=0-255", "--print-statistics"]):
        outputs = []
        for path in (nested, plain):
            assert main([*verb, str(path)]) == 0, verb
            captured = capsys.readouterr()
            outputs.append(captured.out + captured.err)
        assert outputs[0] == outputs[1] and outputs[0], verb


def test_the_verb_map_names_every_verb_and_its_module():
    """The CLI loads only the invoked verb's module: the map must match what each module registers."""
    import argparse
    import importlib
    import pkgutil

    from vlf_dagster import verbs

    registered = {}
    for info in pkgutil.iter_modules(verbs.__path__):
        module = importlib.import_module(f"vlf_dagster.verbs.{info.name}")
        if hasattr(module, "register"):
            sub = argparse.ArgumentParser().add_subparsers()
            module.register(sub)
            registered.update({name: info.name for name in sub.choices})
    assert registered == verbs.VERB_MODULES


def test_building_a_verbs_parser_loads_no_heavy_library():
    """`vlf VERB --help` and the parser before any work: no pyarrow, DuckDB, numpy, pandas or Dagster
    (together 0.3-0.5 s of start-up; SiLK's tools start in milliseconds)."""
    import subprocess

    from vlf_dagster import verbs

    heavy = ("pyarrow", "duckdb", "numpy", "pandas", "dagster")
    code = (
        "import sys; from vlf_dagster.cli import build_parser\n"
        "for verb in sys.argv[1:]:\n"
        "    build_parser(verb)\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *sorted(verbs.VERB_MODULES)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
    help_text = subprocess.run([sys.executable, "-m", "vlf_dagster.cli", "filter", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "--flags-all" in help_text.stdout


def test_an_unknown_switch_prints_the_verbs_usage_and_version_says_what_runs(capsys):
    """`vlf filter --frobnicate` prints filter's usage (not the top level's); `vlf --version` names
    vlf's version and its engines' without importing them."""
    import pytest

    from vlf_dagster.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["filter", "--frobnicate"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith("usage: vlf filter ") and "unrecognized arguments: --frobnicate" in err
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    out = capsys.readouterr().out
    assert stopped.value.code == 0 and out.startswith("vlf ") and "duckdb " in out and "dagster " in out
