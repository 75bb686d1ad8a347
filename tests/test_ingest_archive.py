
import pyarrow as pa
import pyarrow.parquet as pq

from conftest import START, flows, ip, write_landing
from vlf_dagster.flows.archive import check_archive_hour, pack_hour
from vlf_dagster.flows.ingest import read_landing_file
from vlf_dagster.flows.storage import archive_files, hour_ms, landing_dir, quarantine_path, write_parquet

T0 = hour_ms(START)


def test_pack_hour_writes_silk_paths_sorted_by_stime(tmp_path, site):
    write_landing(tmp_path, START, flows([
        {"sIP": "4.2.2.1", "dIP": "10.1.24.5", "dPort": 445, "sTime": T0 + 5000},
        {"sIP": "4.2.2.2", "dIP": "10.1.24.5", "dPort": 445, "sTime": T0 + 1000},
        {"sIP": "4.2.2.1", "dIP": "10.1.24.5", "dPort": 80, "sTime": T0 + 2000},
        {"sIP": "10.1.24.5", "dIP": "4.2.2.1", "sPort": 445, "dPort": 3000, "sTime": T0 + 3000, "sensor": 1},
    ]))
    result = pack_hour(tmp_path, START, site)
    rel = sorted(str(p.relative_to(tmp_path)) for p in result.archive_files)
    assert rel == [
        "archive/in/2006/04/01/in-S0_20060401.00.parquet",
        "archive/inweb/2006/04/01/iw-S0_20060401.00.parquet",
        "archive/out/2006/04/01/out-S1_20060401.00.parquet",
    ]
    inbound = pq.read_table(tmp_path / rel[0])
    assert inbound.column("sTime").to_pylist() == [T0 + 1000, T0 + 5000]
    assert inbound.column("flowtype").to_pylist() == [0, 0]
    assert result.by_flowtype == {"in": 2, "inweb": 1, "out": 1} and result.quarantined == 0
    assert check_archive_hour(result.archive_files, START).passed


def test_bad_records_are_quarantined_with_origin_and_good_ones_land(tmp_path, site):
    table = pa.table({
        "sIP": pa.array([ip("4.2.2.1")] * 5, pa.int64()),
        "dIP": pa.array([ip("10.1.24.5")] * 5, pa.int64()),
        "sPort": pa.array([1000, 70000, 1000, 1000, 1000], pa.int64()),  # row 2: port out of range
        "dPort": pa.array([25, 25, 25, 25, None], pa.int64()),  # row 5: missing
        "protocol": pa.array([6] * 5, pa.int64()),
        "packets": pa.array([1, 1, 10, 1, 1], pa.int64()),  # row 3: more packets than bytes
        "bytes": pa.array([40, 40, 5, 40, 40], pa.int64()),
        "sTime": pa.array([T0, T0, T0, T0 - 1, T0], pa.int64()),  # row 4: previous hour
    })
    write_parquet(table, landing_dir(tmp_path, START) / "mixed.parquet")
    (landing_dir(tmp_path, START) / "notes.txt").write_text("hello")
    result = pack_hour(tmp_path, START, site)
    assert result.flows == 1 and result.quarantined == 5
    q = pq.read_table(quarantine_path(tmp_path, START)).to_pylist()
    by_origin = {r["origin"].rsplit("/", 1)[-1]: r["reason"] for r in q}
    assert by_origin == {
        "mixed.parquet:2": "field sPort out of range or not a number",
        "mixed.parquet:3": "more packets than bytes",
        "mixed.parquet:4": "starts outside the hour",
        "mixed.parquet:5": "field dPort is missing",
        "notes.txt": "no reader for landing files of kind '.txt'",
    }
    assert '"sPort":70000' in next(r["record"] for r in q if r["origin"].endswith(":2"))


def test_unreadable_landing_file_is_quarantined(tmp_path):
    path = landing_dir(tmp_path, START) / "broken.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 this is not parquet")
    result = read_landing_file(path)
    assert result.flows.num_rows == 0
    assert result.quarantine.column("reason")[0].as_py().startswith("unreadable Parquet")


def test_repacking_replaces_the_hour_whole(tmp_path, site):
    write_landing(tmp_path, START, flows([
        {"sIP": "4.2.2.1", "dIP": "10.1.24.5", "dPort": 80},
        {"sIP": "4.2.2.1", "dIP": "10.1.24.5", "dPort": 25, "packets": 9, "bytes": 1},
    ]))
    first = pack_hour(tmp_path, START, site)
    assert first.quarantined == 1 and quarantine_path(tmp_path, START).exists()
    write_landing(tmp_path, START, flows([{"sIP": "4.2.2.1", "dIP": "10.1.24.5", "dPort": 22}]))
    again = pack_hour(tmp_path, START, site)
    files = archive_files(tmp_path, [START])
    assert [p.name for p in files] == ["in-S0_20060401.00.parquet"]  # the inweb file is gone
    assert again.quarantined == 0 and not quarantine_path(tmp_path, START).exists()
    before = files[0].read_bytes()
    pack_hour(tmp_path, START, site)
    assert files[0].read_bytes() == before  # same input, same output


def test_archive_check_finds_violations(tmp_path):
    bad = flows([{"sTime": T0 + 3_600_000, "packets": 5, "bytes": 4}, {"packets": 0, "bytes": 0}])
    path = write_parquet(bad, tmp_path / "x.parquet")
    check = check_archive_hour([path], START)
    assert not check.passed
    assert check.violations == {"schema": 0, "packets > bytes": 1, "zero packets": 1, "sTime outside hour": 1}
    other = write_parquet(pa.table({"a": [1]}), tmp_path / "y.parquet")
    assert check_archive_hour([other], START).violations["schema"] == 1
