"""The Dagster instance on PostgreSQL ($VLF_DAGSTER_POSTGRES_URL, runs.write_instance_config): the
setting switches the storage block and back, and `vlf materialize` of a simulated day on a real
PostgreSQL server (Debian's package, started here under a temporary folder on 127.0.0.1) leaves its
runs, events and partition status in that database and nothing in the home's SQLite files."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from vlf_dagster.orchestration.runs import POSTGRES_URL_VARIABLE, write_instance_config

ROOT = Path(__file__).resolve().parents[1]
URL = "postgresql://vlf@127.0.0.1:5432/vlf_dagster"


def _storage(home: Path) -> dict:
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    return {key: config[key] for key in ("storage", "event_log_storage") if key in config}


def test_the_setting_switches_the_storage_and_unset_goes_back_to_sqlite(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.delenv(POSTGRES_URL_VARIABLE, raising=False)
    sqlite_text = write_instance_config(home).read_text()
    monkeypatch.setenv(POSTGRES_URL_VARIABLE, URL)
    text = write_instance_config(home).read_text()
    assert _storage(home) == {"storage": {"postgres": {"postgres_url": URL.replace("postgresql:", "postgresql+psycopg2:")}}}
    assert write_instance_config(home).read_text() == text  # idempotent
    assert text.replace(text[text.index("# vlf_dagster: instance storage"):], "") == \
        sqlite_text.replace(sqlite_text[sqlite_text.index("# vlf_dagster: faster"):], "")  # the other settings stay
    monkeypatch.setenv(POSTGRES_URL_VARIABLE, "")  # empty is unset
    assert write_instance_config(home).read_text() == sqlite_text


def test_a_users_own_storage_wins_over_the_setting(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    own = "storage:\n  sqlite:\n    base_dir: /elsewhere\n"
    (home / "dagster.yaml").write_text(own)
    monkeypatch.setenv(POSTGRES_URL_VARIABLE, URL)
    assert _storage(home) == _storage(Path(write_instance_config(home)).parent) == {"storage": {"sqlite": {"base_dir": "/elsewhere"}}}


# --- a real server ------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda f: int(Path(f).parent.name)
                     if Path(f).parent.name.isdigit() else 0)
    return Path(folders[-1]) if folders and Path(folders[-1], "pg_ctl").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throw-away server: its own data folder and socket folder, 127.0.0.1 only, trust for the
    one user `vlf`, an empty database `vlf_dagster`; stopped and removed afterwards."""
    pytest.importorskip("dagster_postgres", reason="dagster-postgres is not installed (pyproject.toml pins it)")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql (.ci/run does)")
    # initdb and postgres refuse to run as root: as root, run them as `nobody` over a folder it owns
    # (not under pytest's tmp_path, which root keeps to itself)
    as_user: list[str] = []
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser (util-linux) to start PostgreSQL as nobody")
    folder = Path(tempfile.mkdtemp(prefix="vlf-pg-"))
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"]
    data, port = folder / "data", _free_port()
    run = lambda *args: subprocess.run([*as_user, *map(str, args)], capture_output=True, text=True, timeout=120)  # noqa: E731
    try:
        done = run(bin_dir / "initdb", "-D", data, "-U", "vlf", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        # fsync off: a test's database need not survive a power cut
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder} -c fsync=off"
        done = run(bin_dir / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-t", "60", "-o", options, "start")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:] + _tail(folder / "server.log")
        try:
            done = run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "vlf", "vlf_dagster")
            assert done.returncode == 0, done.stderr[-2000:]
            yield f"postgresql://vlf@127.0.0.1:{port}/vlf_dagster"
        finally:
            run(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _tail(path: Path) -> str:
    return path.read_text()[-2000:] if path.exists() else ""


def test_a_backfill_lands_its_runs_events_and_partition_status_in_postgres(postgres_url, tmp_path):
    import dagster as dg
    import psycopg2
    from dagster._core.events import DagsterEventType
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    from vlf_dagster.flows.site import load_site
    from vlf_dagster.orchestration.definitions import build_definitions
    from vlf_dagster.orchestration.jobs import HOURLY_ASSETS
    from vlf_dagster.simulate import SimulationConfig, simulate

    start = datetime(2006, 4, 1, tzinfo=timezone.utc)
    data, home = tmp_path / "data", tmp_path / "home"
    data.mkdir()
    site = load_site(ROOT / "vlf_dagster" / "site.default.toml").with_window(start, start + timedelta(days=1))
    (data / "site.toml").write_text(site.to_toml())
    simulate(site, SimulationConfig(days=1, sources=2000, seed=3), data)

    # two batches of 12 hours, the month, the window (more processes would cost more to start than they save here)
    env = {**os.environ, POSTGRES_URL_VARIABLE: postgres_url, "DAGSTER_HOME": str(home), "GX_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-m", "vlf_dagster.cli", "materialize", "--data-dir", str(data),
                           "--dagster-home", str(home), "--hours-per-run", "12", "--workers", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "4 runs" in done.stdout
    assert _storage(home) == {"storage": {"postgres": {"postgres_url": postgres_url.replace("postgresql:", "postgresql+psycopg2:")}}}
    assert not (home / "history").exists() and not (home / "schedules").exists()  # no SQLite storage at all

    with psycopg2.connect(postgres_url) as connection, connection.cursor() as sql:
        sql.execute("SELECT pipeline_name, status, count(*) FROM runs GROUP BY 1, 2 ORDER BY 1")
        assert sql.fetchall() == [("hourly_job", "SUCCESS", 2), ("monthly_job", "SUCCESS", 1), ("window_job", "SUCCESS", 1)]
        sql.execute("SELECT count(DISTINCT run_id) FROM event_logs WHERE dagster_event_type = %s",
                    (DagsterEventType.RUN_SUCCESS.value,))
        assert sql.fetchone() == (4,)
        # one materialization per hour and hourly asset, each tagged with its hour
        sql.execute("SELECT asset_key, count(DISTINCT partition) FROM event_logs "
                    "WHERE dagster_event_type = %s AND partition LIKE '2006-04-01-%%' GROUP BY 1",
                    (DagsterEventType.ASSET_MATERIALIZATION.value,))
        assert dict(sql.fetchall()) == {dg.AssetKey(name).to_string(): 24 for name in HOURLY_ASSETS}

    hours = {(start + timedelta(hours=h)).strftime("%Y-%m-%d-%H:%M") for h in range(24)}
    defs = build_definitions(data)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__module__.startswith("dagster_postgres")
        assert len(instance.get_runs()) == 4
        for name in HOURLY_ASSETS:
            key = dg.AssetKey(name)
            assert instance.get_materialized_partitions(key) == hours, name
            partitions = defs.resolve_assets_def(key).partitions_def
            status = get_and_update_asset_status_cache_value(instance, key, partitions)
            assert set(status.deserialize_materialized_partition_subsets(partitions).get_partition_keys()) == hours
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as sql:  # the UI's status cache is there too
        sql.execute("SELECT count(*) FROM asset_keys WHERE cached_status_data IS NOT NULL AND asset_key = ANY(%s)",
                    ([dg.AssetKey(name).to_string() for name in HOURLY_ASSETS],))
        assert sql.fetchone() == (len(HOURLY_ASSETS),)
