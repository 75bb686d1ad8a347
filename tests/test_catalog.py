"""The SQL catalog: views over hand-written archive files, bags and sets, opened read-only."""

import ipaddress
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from conftest import START, flows, ip
from vlf_dagster.analysis.steps.catalog import CatalogError, build_catalog, connect
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.storage import archive_path, hour_ms, hourly_path, window_path, write_parquet

ROOT = Path(__file__).resolve().parents[1]
V6 = ipaddress.IPv6Address("2001:db8::7").packed
H1 = START + timedelta(hours=1)


@pytest.fixture
def data(tmp_path):
    base = tmp_path / "data"
    # hour 0: two inbound (flowtype 0) records, one IPv6; hour 1: one outbound (flowtype 1) record
    write_parquet(flows([
        dict(sIP="4.3.2.1", dIP="10.1.24.5", flags=0x12, sTime=hour_ms(START) + 1500),
        dict(sIP="0.0.0.0", dIP="0.0.0.0", sIPv6=V6, dIPv6=V6, attributes=0x80, flags=0x02, sTime=hour_ms(START) + 9),
    ]), archive_path(base, 0, "S0", START))
    write_parquet(flows([dict(sIP="10.1.24.5", dIP="4.3.2.1", flowtype=1, sTime=hour_ms(H1))]),
                  archive_path(base, 1, "S0", H1))
    for hour, n in ((START, 2), (H1, 1)):
        write_parquet(pa.table({"sIP": pa.array([ip("4.3.2.1")] * n, pa.uint32()), "records": pa.array(range(n), pa.uint64())}),
                      hourly_path(base, "hourly_source_bags", hour))
    write_parquet(pa.table({"sIP": pa.array([ip("4.3.2.1")], pa.uint32()), "records": pa.array([3], pa.uint64())}),
                  window_path(base, "source_flow_bag"))
    IPSet.from_strings(["4.3.2.1", "5.5.5.5", "2001:db8::7"]).write(window_path(base, "vlf_fd_set", "set"))
    return base


def test_views_read_the_archive_bags_and_sets(data):
    summary = build_catalog(data)
    assert summary.path == data.resolve() / "catalog.duckdb"
    assert summary.objects["flows"] == 3 and summary.objects["hourly_source_bags"] == 3
    assert summary.objects["source_flow_bag"] == 1 and summary.objects["vlf_fd_set"] == 3
    assert "vlf_flows" in summary.missing and "vlf_f_set" in summary.missing
    con = connect(data)
    # nothing was quarantined: the documented view still answers, with no rows and its columns
    assert "quarantine" not in summary.missing and summary.objects["quarantine"] == 0
    assert con.sql("SELECT origin, reason, record, hour FROM quarantine").fetchall() == []
    assert con.sql("SELECT count(*) FROM monthly_port_usage WHERE port = 80").fetchall() == [(0,)]
    rows = con.sql("SELECT ip_text(sIP, sIPv6), ip_text(dIP, dIPv6), flag_text(flags), flowtype_name, ms_time(sTime) "
                   "FROM flows ORDER BY sTime").fetchall()
    assert [r[:4] for r in rows] == [
        ("2001:0db8:0000:0000:0000:0000:0000:0007", "2001:0db8:0000:0000:0000:0000:0000:0007", "S", "in"),
        ("4.3.2.1", "10.1.24.5", "SA", "in"),
        ("10.1.24.5", "4.3.2.1", "", "out"),
    ]
    assert str(rows[1][4]) == "2006-04-01 00:00:01.500000"
    # the hour of an hourly file comes from its name
    assert con.sql("SELECT strftime(hour, '%H'), count(*) FROM hourly_source_bags GROUP BY 1 ORDER BY 1").fetchall() == [
        ("00", 2), ("01", 1)]
    assert sorted(con.sql("SELECT ipv4_text(ipv4) FROM vlf_fd_set WHERE ipv4 IS NOT NULL").fetchall()) == [
        ("4.3.2.1",), ("5.5.5.5",)]
    assert con.sql("SELECT ipv6_text(ipv6) FROM ip_sets WHERE ipv6 IS NOT NULL").fetchall() == [
        ("2001:0db8:0000:0000:0000:0000:0000:0007",)]
    # set membership joins the archive, as rwfilter --sipset does
    assert con.sql("SELECT count(*) FROM flows JOIN vlf_fd_set ON flows.sIP = vlf_fd_set.ipv4").fetchall() == [(1,)]
    listed = dict(con.sql("SELECT name, rows_at_refresh FROM catalog").fetchall())
    assert listed == summary.objects
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("DROP VIEW flows")


def test_views_see_new_hours_and_a_refresh_never_disturbs_a_reader(data):
    build_catalog(data)
    reader = connect(data)
    write_parquet(flows([dict(sTime=hour_ms(START + timedelta(hours=2)))]), archive_path(data, 0, "S1", START + timedelta(hours=2)))
    assert reader.sql("SELECT count(*) FROM flows").fetchall() == [(4,)]  # views read files at query time
    IPSet.from_strings(["9.9.9.9"]).write(window_path(data, "vlf_fd_set", "set"))
    build_catalog(data)  # renamed into place while the reader holds the old file
    assert reader.sql("SELECT count(*) FROM vlf_fd_set").fetchall() == [(3,)]
    reader.close()  # DuckDB shares one instance per path inside a process; other processes see the new file at once
    assert connect(data).sql("SELECT ipv4_text(ipv4) FROM vlf_fd_set").fetchall() == [("9.9.9.9",)]
    assert connect(data).sql("SELECT ipv4_text(NULL::UINTEGER)").fetchall() == [(None,)]
    assert not [p for p in data.iterdir() if p.name.startswith(".catalog")]  # no temp file left


def test_a_refresh_reads_only_new_or_changed_footers_and_counts_stay_exact(data, monkeypatch):
    import vlf_dagster.analysis.steps.catalog as catalog

    assert build_catalog(data).objects["flows"] == 3
    read = []
    from vlf_dagster.flows.storage import ParquetRowCounts

    real = ParquetRowCounts.rows

    def counting(self, con, files):
        stale = [f for f in files if self.known.get(f, (None, None))[:2] != (os.stat(f).st_size, os.stat(f).st_mtime_ns)]
        read.extend(stale)
        return real(self, con, files)

    monkeypatch.setattr(ParquetRowCounts, "rows", counting)
    assert build_catalog(data).objects["flows"] == 3 and read == []  # nothing changed: no footer read
    hour0 = archive_path(data, 0, "S0", START)
    write_parquet(flows([dict(sTime=hour_ms(START) + i) for i in range(5)]), hour0)  # the hour re-packed
    added = archive_path(data, 0, "S1", H1)
    write_parquet(flows([dict(sTime=hour_ms(H1))]), added)
    assert build_catalog(data).objects["flows"] == 5 + 1 + 1
    assert sorted(read) == sorted([str(hour0.resolve()), str(added.resolve())])
    (data / catalog.ROW_CACHE).write_bytes(b"garbage")  # an unreadable cache: everything is counted again
    assert build_catalog(data).objects["flows"] == 7


def test_missing_or_foreign_catalog_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="no catalog yet"):
        connect(tmp_path)
    (tmp_path / "catalog.duckdb").write_bytes(b"not a database at all" * 100)
    with pytest.raises(CatalogError, match="not a DuckDB catalog"):
        connect(tmp_path)


def test_vlf_sql_prints_rows_and_one_line_errors(data):
    build_catalog(data)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def vlf_sql(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "vlf_dagster.cli", "sql", "--data-dir", str(data), *args],
                              capture_output=True, text=True, env=env, input=stdin)

    done = vlf_sql("--delimited", "SELECT flowtype_name, count(*) AS n FROM flows GROUP BY 1 ORDER BY 1")
    assert done.returncode == 0 and done.stdout.splitlines() == ["flowtype_name,n", "in,2", "out,1"]
    done = vlf_sql("--delimited=|", stdin="SELECT ipv4_text(ipv4) AS a FROM vlf_fd_set WHERE ipv4 IS NOT NULL ORDER BY 1")
    assert done.stdout.splitlines() == ["a", "4.3.2.1", "5.5.5.5"]
    listing = vlf_sql(stdin="")
    assert listing.returncode == 0 and "hourly_source_bags" in listing.stdout and "ip_sets" in listing.stdout
    for args, message in ((["SELEC 1"], "Parser Error"), (["DELETE FROM ip_sets"], "queries only"),
                          (["--catalog", str(data / "nope.duckdb"), "SELECT 1"], "no catalog yet"),
                          ([f"COPY (SELECT 42) TO '{data}/x.csv'"], "not COPY"),
                          (["SET enable_external_access = true"], "not SET"),
                          (["SELECT * FROM read_text('/etc/hostname')"], "Permission Error")):
        done = vlf_sql(*args)
        assert done.returncode == 1 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (data / "x.csv").exists()


def test_a_catalog_reader_reads_the_data_folder_and_nothing_else(data, tmp_path):
    build_catalog(data)
    con = connect(data)
    assert con.sql("SELECT count(*) FROM flows").fetchall() == [(3,)]  # the views' files are allowed
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    for query in (f"SELECT * FROM read_csv('{outside}')", f"COPY (SELECT 1) TO '{tmp_path}/y.csv'", f"ATTACH '{tmp_path}/z.db'"):
        with pytest.raises(duckdb.PermissionException):
            con.execute(query)
    with pytest.raises(duckdb.Error, match="lock"):
        con.execute("SET enable_external_access = true")
