"""Folders whose names hold glob characters (d[1], a*b): every read goes to that folder's files,
never to a sibling's the pattern would also match (DuckDB's readers expand * ? [ in names)."""

import pyarrow as pa
import pytest

from conftest import START, flows, write_landing
from vlf_dagster.analysis.steps.catalog import build_catalog, connect
from vlf_dagster.flows import duck
from vlf_dagster.flows.archive import pack_hour
from vlf_dagster.flows.segments import Segmented, relation_sql
from vlf_dagster.flows.sql import glob_escaped
from vlf_dagster.flows.storage import archive_files, write_parquet


@pytest.mark.parametrize("ours, sibling", [("d[1]", "d1"), ("a*b", "axb"), ("q?", "qx")])
def test_a_data_folder_with_glob_characters_reads_only_its_own_files(tmp_path, site, ours, sibling):
    for name, packets in ((ours, 7), (sibling, 99)):  # the sibling's flows would be read if the name were a pattern
        data = tmp_path / name
        (data / "site.toml").parent.mkdir(parents=True, exist_ok=True)
        write_landing(data, START, flows([dict(sIP="4.3.2.1", dIP="10.1.24.5", packets=packets, sTime=1_143_849_600_000 + i)
                                          for i in range(2 if name == ours else 3)]))
        pack_hour(data, START, site)
    data = tmp_path / ours
    files = archive_files(data, [START])
    con = duck.connect()
    assert con.sql(f"SELECT packets FROM ({relation_sql(files)})").fetchall() == [(7,), (7,)]
    # the catalog's views name the folder and keep the pattern for the files under it
    build_catalog(data)
    assert connect(data).sql("SELECT count(*), min(packets), max(packets) FROM flows").fetchall() == [(2, 7, 7)]
    # segmented artifacts read their own base and delta
    seg = Segmented(tmp_path / ours / "seg")
    seg.write_full(lambda path: write_parquet(pa.table({"sIP": pa.array([1], pa.uint32()), "sIPv6": pa.nulls(1, pa.binary())}), path))
    Segmented(tmp_path / sibling / "seg").write_full(
        lambda path: write_parquet(pa.table({"sIP": pa.array([2, 3], pa.uint32()), "sIPv6": pa.nulls(2, pa.binary())}), path))
    assert con.sql(f"SELECT sIP FROM ({seg.relation_sql()})").fetchall() == [(1,)]


def test_glob_characters_are_escaped_one_by_one():
    assert glob_escaped("/data/d[1]/a*b/q?.parquet") == "/data/d[[]1]/a[*]b/q[?].parquet"
    assert glob_escaped("/plain/path.parquet") == "/plain/path.parquet"


def test_make_passes_dagster_home_as_a_value_never_as_code(tmp_path):
    import os
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("no make")
    root = Path(__file__).resolve().parents[1]
    hostile = str(tmp_path / "h');print('INJECTED');('")
    for target in ("ui", "clean"):
        shown = subprocess.run(["make", "-n", "-o", "install", target], cwd=root, capture_output=True, text=True,
                               env={**os.environ, "DAGSTER_HOME": hostile}).stdout
        assert "INJECTED" not in shown and shown.strip(), (target, shown)


def test_a_data_folder_that_is_a_file_is_one_line_not_a_traceback(tmp_path, capsys):
    from vlf_dagster.cli import main

    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("")
    log = tmp_path / "one.csv"
    log.write_text("StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label\n"
                   "2022/06/12 17:00:00.000000,1.0,tcp,4.3.2.1,40000,->,10.1.24.5,22,S_,0,0,1,60,60,x\n")
    assert main(["import", "--data-dir", str(not_a_folder), str(log)]) == 1
    assert main(["simulate", "--data-dir", str(not_a_folder), "--days", "1", "--sources", "50"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("vlf import: Not a directory: ") and str(not_a_folder) in err[-2]
    assert err[-1] == f"vlf simulate: File exists: {not_a_folder}"


def test_a_damaged_archive_file_is_named_with_its_hour(site_file, site, capsys):
    """A flipped byte in a footer: `vlf filter` over the archive names the file and its hour (DuckDB's
    own error names neither), and a verb reading the file names it too."""
    from vlf_dagster.cli import main

    data = site_file
    write_landing(data, START, flows([dict(sIP="4.3.2.1", dIP="10.1.24.5", sTime=1_143_849_600_000 + i) for i in range(3)]))
    pack_hour(data, START, site)
    (path,) = archive_files(data, [START])
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF
    path.write_bytes(bytes(raw))
    selection = ["--data-dir", str(data), "--start-date", "2006/04/01:00", "--type", "all"]
    assert main(["filter", *selection, "--proto", "0-255", "--print-statistics"]) == 1
    assert main(["filter", *selection, "--proto", "6", "--pass-destination", str(data / "out.parquet")]) == 1
    assert main(["cut", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    for line in err[:2]:
        assert line.startswith(f"vlf filter: {path}: damaged Parquet file (archive hour 2006-04-01T00)"), line
    assert err[2].startswith(f"vlf cut: {path}: damaged Parquet file")
    assert not (data / "out.parquet").exists()


def test_stdin_that_is_no_flow_stream_is_one_line_saying_so(capsys, monkeypatch):
    """`echo hello | vlf cut -`: one line that says what stdin is not, not Arrow's reading of it."""
    import io

    from vlf_dagster.cli import main
    from vlf_dagster.verbs import common

    monkeypatch.setattr(common, "stdin_binary", lambda: io.BufferedReader(io.BytesIO(b"hello\n")))
    monkeypatch.setattr(common.sys.stdin, "isatty", lambda: False, raising=False)
    assert main(["cut", "-"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vlf cut: <stdin>: not a flow file or stream: it starts with b'hello\\n'") and "\n" not in err
    assert "metadata bytes" not in err
