"""DuckDB connections of the project: bounded memory, spilling beside the data."""

from vlf_dagster.flows import duck


def test_connections_take_the_memory_limit_and_the_data_dirs_temp_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("VLF_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VLF_DUCKDB_MEMORY", "64MB")
    con = duck.connect()
    limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    temp = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    assert limit.replace(" ", "") in ("61.0MiB", "64.0MB", "61MiB")
    assert temp == str((tmp_path / ".duckdb_tmp").resolve())
    assert con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0] is False


def test_a_sort_larger_than_memory_spills_into_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VLF_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VLF_DUCKDB_MEMORY", "40MB")
    con = duck.connect()
    con.execute("SET threads = 1")
    # ~10 M random 8-byte keys with payload: far more than 40 MB to sort
    rows = con.execute(
        "SELECT count(*), min(k) FROM (SELECT hash(i) AS k, i FROM range(10000000) t(i) ORDER BY k)"
    ).fetchone()
    assert rows[0] == 10_000_000
    assert (tmp_path / ".duckdb_tmp").is_dir()  # DuckDB made its spill folder beside the data


def test_default_memory_limit(monkeypatch, tmp_path):
    monkeypatch.delenv("VLF_DUCKDB_MEMORY", raising=False)
    monkeypatch.setenv("VLF_DATA_DIR", str(tmp_path))
    limit = duck.connect().execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit.replace(" ", "") in ("2.7GiB", "3.0GB", "2.79GiB")


def test_the_probe_connection_is_one_per_thread_and_stays_open():
    """duck.probe(): one kept connection per thread (a verb's footer probe does not open a second
    database), never shared across threads."""
    import threading

    from vlf_dagster.flows import duck

    first = duck.probe()
    assert duck.probe() is first and first.sql("SELECT 42").fetchall() == [(42,)]
    other = []
    thread = threading.Thread(target=lambda: other.append(duck.probe()))
    thread.start()
    thread.join()
    assert other and other[0] is not first
