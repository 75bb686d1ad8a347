"""The Dagster instance written by ``runs.write_instance_config`` and its faster event log storage
(``vlf_dagster/orchestration/instance_storage.py``): same records as Dagster's own, safe across threads,
processes and forks, and a user's own storage config left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from vlf_dagster.orchestration.instance_storage import FastSqliteEventLogStorage
from vlf_dagster.orchestration.runs import write_instance_config

ROOT = Path(__file__).resolve().parents[1]
HOURS = dg.HourlyPartitionsDefinition(start_date="2006-02-01-00:00", end_date="2006-03-01-00:00", timezone="UTC")
KEYS = HOURS.get_partition_keys()[:48]
RANGE = {"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]}
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _defs(fail_second: bool = False) -> dg.Definitions:
    @dg.asset(partitions_def=HOURS, backfill_policy=dg.BackfillPolicy.multi_run(744))
    def first(context) -> dg.MaterializeResult:
        for key in context.partition_keys:
            context.add_asset_metadata({"hour": key, "rows": len(key)}, partition_key=key)
        return dg.MaterializeResult()

    @dg.asset(partitions_def=HOURS, deps=[first], backfill_policy=dg.BackfillPolicy.multi_run(744))
    def second(context) -> dg.MaterializeResult:
        if fail_second:
            raise RuntimeError("second fails")
        for key in context.partition_keys:
            context.add_asset_metadata({"hour": key}, partition_key=key)
        return dg.MaterializeResult()

    return dg.Definitions(assets=[first, second], executor=dg.in_process_executor)


def _run(instance, defs: dg.Definitions, tags: dict = RANGE):
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, tags=tags, run_config=QUIET, raise_on_error=False)


def _status(instance, key: str):
    value = get_and_update_asset_status_cache_value(instance, dg.AssetKey(key), HOURS)
    return (set(value.deserialize_materialized_partition_subsets(HOURS).get_partition_keys()),
            set(value.deserialize_failed_partition_subsets(HOURS).get_partition_keys()),
            set(value.deserialize_in_progress_partition_subsets(HOURS).get_partition_keys()))


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    write_instance_config(home)
    return home


@pytest.fixture
def instance(home):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def _entry(run_id: str, message: str = "hello") -> EventLogEntry:
    return EventLogEntry(error_info=None, level=20, user_message=message, run_id=run_id, timestamp=time.time())


# --- the instance config ------------------------------------------------------------------------


def test_a_fresh_home_uses_the_fast_storage_over_dagsters_default_files(home, instance):
    text = (home / "dagster.yaml").read_text()
    assert "event_log_storage:" in text and "telemetry:" in text and "nux:" in text
    storage = instance.event_log_storage
    assert type(storage) is FastSqliteEventLogStorage
    assert Path(storage._base_dir) == (home / "history" / "runs").resolve()
    assert instance._run_storage._conn_string.endswith(f"{home.resolve()}/history/runs.db")
    assert storage.supports_partition_subset_in_asset_materialization_planned_events
    assert write_instance_config(home).read_text() == text  # idempotent


def test_a_users_own_storage_is_left_alone(tmp_path):
    for own in ("storage:\n  sqlite:\n    base_dir: {base}\n",
                "storage:\n  postgres:\n    postgres_db:\n      username: u\n      password: p\n      hostname: h\n      db_name: d\n",
                "run_storage:\n  module: dagster._core.storage.runs\n  class: SqliteRunStorage\n  config:\n    base_dir: {base}\n"):
        home = tmp_path / uuid.uuid4().hex
        home.mkdir()
        (home / "dagster.yaml").write_text(own.format(base=home / "elsewhere"))
        text = write_instance_config(home).read_text()
        assert "event_log_storage" not in text and text.startswith(own.format(base=home / "elsewhere")) and "nux:" in text
    with dg.DagsterInstance.from_config(str(home)) as instance:  # the last one: a sqlite run storage of the user's
        assert type(instance.event_log_storage) is SqliteEventLogStorage


def test_a_storage_block_added_later_by_the_user_wins_over_ours(home):
    config = home / "dagster.yaml"
    config.write_text(config.read_text() + f"storage:\n  sqlite:\n    base_dir: {home / 'mine'}\n")
    with pytest.raises(Exception):  # Dagster refuses `storage:` next to `event_log_storage:` ...
        dg.DagsterInstance.from_config(str(home))
    text = write_instance_config(home).read_text()  # ... so we take ours out
    assert "event_log_storage" not in text and "storage:\n  sqlite:" in text
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        assert Path(instance.event_log_storage._base_dir) == (home / "mine" / "history" / "runs").resolve()


def test_an_existing_home_keeps_its_history_and_a_moved_home_is_followed(tmp_path):
    home = tmp_path / "old"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # a home from before this storage
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        old = _run(instance, _defs())
        assert old.success
    write_instance_config(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is FastSqliteEventLogStorage
        assert instance.get_run_by_id(old.run_id).is_success
        assert len(instance.all_logs(old.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)) == 96
        assert instance.get_materialized_partitions(dg.AssetKey("second")) == set(KEYS)
    moved = tmp_path / "moved"
    shutil.copytree(home, moved)
    assert str(home.resolve()) in (moved / "dagster.yaml").read_text()  # the copy still points back ...
    text = write_instance_config(moved).read_text()  # ... until it is configured again
    assert str(moved.resolve()) in text and str(home.resolve()) not in text and text.count("event_log_storage:") == 1


# --- what a run records -------------------------------------------------------------------------


def test_a_ranged_run_records_each_partition_with_its_own_metadata(instance):
    result = _run(instance, _defs())
    assert result.success
    for asset in ("first", "second"):
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
        assert len(records) == 48
        by_partition = {r.partition_key: r.asset_materialization.metadata for r in records}
        assert set(by_partition) == set(KEYS)
        assert all(metadata["hour"] == dg.TextMetadataValue(key) for key, metadata in by_partition.items())
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(KEYS)
        assert _status(instance, asset) == (set(KEYS), set(), set())
        # the asset's entry: its last materialization, stored without serializing the event twice
        record = instance.get_asset_records([dg.AssetKey(asset)])[0].asset_entry.last_materialization_record
        assert record.partition_key == KEYS[-1] and record.run_id == result.run_id
    planned = instance.all_logs(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    assert len(planned) == 2  # one per asset for the run, not one per asset and partition
    assert set(planned[0].get_dagster_event().asset_materialization_planned_data.partitions_subset.get_partition_keys()) == set(KEYS)
    assert instance.get_run_by_id(result.run_id).is_success
    assert [e.dagster_event_type for e in instance.all_logs(result.run_id)][-1] == DagsterEventType.RUN_SUCCESS


def test_the_asset_entry_matches_dagsters_own(instance):
    result = _run(instance, _defs())
    storage = instance.event_log_storage
    record = storage.fetch_materializations(dg.AssetKey("first"), limit=1).records[0]
    with storage.index_connection() as conn:
        ours = storage._asset_entry_values(conn, record.event_log_entry, record.storage_id,
                                           storage._event_to_row(record.event_log_entry)["event"])
        theirs = SqlEventLogStorage._get_asset_entry_values(storage, record.event_log_entry, record.storage_id, True)
    assert ours == theirs and result.success


def test_a_failed_run_leaves_the_instance_consistent(instance):
    failed = _run(instance, _defs(fail_second=True))
    assert not failed.success
    assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_materialized_partitions(dg.AssetKey("first")) == set(KEYS)
    assert instance.get_materialized_partitions(dg.AssetKey("second")) == set()
    # one planned event per asset per run, yet the UI still sees the failed run's partitions as failed
    assert _status(instance, "first") == (set(KEYS), set(), set())
    assert _status(instance, "second") == (set(), set(KEYS), set())
    retried = _run(instance, _defs())
    assert retried.success
    assert _status(instance, "second") == (set(KEYS), set(), set())


def test_a_planned_run_shows_its_partitions_in_progress(instance):
    job = _defs().resolve_implicit_global_asset_job_def()
    run = instance.create_run_for_job(job, tags=RANGE)  # emits the planned events, not started yet
    assert len(instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED)) == 2
    assert _status(instance, "first") == (set(), set(), set(KEYS))


# --- processes, threads, forks ------------------------------------------------------------------

WORKER = """
import sys
import dagster as dg
sys.path.insert(0, {tests!r})
from test_instance_storage import HOURS, QUIET, _defs
keys = HOURS.get_partition_keys()[int(sys.argv[1]):int(sys.argv[2])]
with dg.DagsterInstance.get() as instance:
    job = _defs().resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False, tags={{
        "dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}})
    print("RUN", result.run_id, result.success)
"""


def test_two_processes_write_to_one_instance_at_once(home, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(ROOT / "tests")))
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)}
    # the home exists first, as under `dagster dev` (Dagster's own SqliteScheduleStorage races two
    # processes that both create schedules.db: "table alembic_version already exists")
    dg.DagsterInstance.from_config(str(home)).dispose()
    procs = [subprocess.Popen([sys.executable, str(script), str(a), str(b)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a, b in ((0, 240), (240, 480))]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in outs]
    runs = [line.split() for out, _ in outs for line in out.splitlines() if line.startswith("RUN")]
    assert [success for _, _, success in runs] == ["True", "True"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for _, run_id, _ in runs:
            assert instance.get_run_by_id(run_id).is_success
            assert len(instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)) == 480
        assert instance.get_materialized_partitions(dg.AssetKey("second")) == set(HOURS.get_partition_keys()[:480])


def test_threads_share_one_storage(instance):
    storage = instance.event_log_storage
    run_ids = [str(uuid.uuid4()) for _ in range(6)]
    errors = []

    def work(run_id):
        try:
            for i in range(40):
                storage.store_event(_entry(run_id, f"m{i}"))
                assert len(storage.get_logs_for_run(run_id)) == i + 1
                storage.has_table("event_logs")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [len(storage.get_logs_for_run(run_id)) for run_id in run_ids] == [40] * 6


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_connections(instance):
    storage = instance.event_log_storage
    run_id = str(uuid.uuid4())
    storage.store_event(_entry(run_id, "parent before"))
    parent_engine = storage._engines[run_id]
    pid = os.fork()
    if pid == 0:  # the child: no engine of the parent's, and it can write
        code = 1
        try:
            fresh = not storage._engines
            storage.store_event(_entry(run_id, "child"))
            code = 0 if fresh and storage._engines[run_id] is not parent_engine else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert storage._engines[run_id] is parent_engine
    storage.store_event(_entry(run_id, "parent after"))
    assert [e.user_message for e in storage.get_logs_for_run(run_id)] == ["parent before", "child", "parent after"]


# --- connections: kept open, bounded, closed ----------------------------------------------------


def test_connections_are_bounded_and_closed_on_dispose_and_wipe(home):
    instance = dg.DagsterInstance.from_config(str(home))
    storage = instance.event_log_storage
    runs = [str(uuid.uuid4()) for _ in range(12)]
    for run_id in runs:
        storage.store_event(_entry(run_id))
    assert "index" in storage._engines and len(storage._engines) == 1 + 8  # the LRU of run shards, and index.db
    assert Path(storage.path_for_shard(runs[-1]) + "-wal").exists()  # open: commits wait in the WAL
    assert [len(storage.get_logs_for_run(run_id)) for run_id in runs] == [1] * 12
    storage.wipe()  # deletes run shard files: nothing may keep writing to a deleted file
    assert set(storage._engines) <= {"index"} and not Path(storage.path_for_shard(runs[0])).exists()
    storage.store_event(_entry(runs[-1], "after wipe"))  # a shard that had an open connection
    assert [e.user_message for e in storage.get_logs_for_run(runs[-1])] == ["after wipe"]
    with dg.DagsterInstance.from_config(str(home)) as other:  # on disk, not in a deleted file
        assert [e.user_message for e in other.event_log_storage.get_logs_for_run(runs[-1])] == ["after wipe"]
    instance.dispose()
    assert not storage._engines
    assert not Path(storage.path_for_shard(runs[-1]) + "-wal").exists()  # the last close checkpointed it


def test_a_shard_deleted_by_another_process_is_reopened_not_written_to_the_old_file(home):
    with dg.DagsterInstance.from_config(str(home)) as ours, dg.DagsterInstance.from_config(str(home)) as theirs:
        run_id = str(uuid.uuid4())
        ours.event_log_storage.store_event(_entry(run_id, "before"))  # ours keeps the file open
        theirs.event_log_storage.wipe()  # e.g. `dagster instance wipe`: run shard files unlinked
        ours.event_log_storage.store_event(_entry(run_id, "after"))
        assert [e.user_message for e in theirs.event_log_storage.get_logs_for_run(run_id)] == ["after"]
        assert [e.user_message for e in ours.event_log_storage.get_logs_for_run(run_id)] == ["after"]


def test_has_table_caches_only_what_exists(instance):
    storage = instance.event_log_storage
    assert storage.has_table("event_logs") and "event_logs" in storage._tables_present
    assert not storage.has_table("no_such_table") and "no_such_table" not in storage._tables_present
    with storage.index_connection() as conn:
        conn.exec_driver_sql("CREATE TABLE no_such_table (x INTEGER)")
    assert storage.has_table("no_such_table")  # a table added later (a migration) is seen


def test_synchronous_normal_only_in_wal_mode(instance):
    storage = instance.event_log_storage
    with storage.index_connection() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL; FULL is 2
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000


def test_the_ui_live_log_watcher_sees_events_written_through_open_connections(home):
    """The webserver streams a run's log by watching its shard file; with connections kept open a
    write lands in the -wal file, and the watcher must wake up for it."""
    with dg.DagsterInstance.from_config(str(home)) as watcher, dg.DagsterInstance.from_config(str(home)) as writer:
        run_id = str(uuid.uuid4())
        writer.event_log_storage.store_event(_entry(run_id, "first"))
        seen = []
        watcher.event_log_storage.watch(run_id, None, lambda event, cursor: seen.append(event.user_message))
        time.sleep(0.5)
        for i in range(3):
            writer.event_log_storage.store_event(_entry(run_id, f"live {i}"))
        deadline = time.monotonic() + 15
        while "live 2" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "live 2" in seen, seen
