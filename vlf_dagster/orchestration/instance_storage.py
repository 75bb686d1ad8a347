"""A faster SQLite event log storage for the Dagster instance in ``$DAGSTER_HOME``.

Dagster's default :class:`SqliteEventLogStorage` pays fixed costs on every stored event that have
nothing to do with the event: it builds a new SQLAlchemy engine for every statement group (so the
compiled-statement cache, which lives on the engine, never hits), opens and closes a SQLite
connection for it (the last close of a WAL database checkpoints the WAL into the main file), runs
every write with ``synchronous=FULL``, builds another throw-away engine to ask whether its own
``asset_event_tags`` table exists and reads the ``asset_keys`` columns with ``PRAGMA table_info``
for every asset event, serializes each materialization twice, and tries an ``INSERT`` into
``asset_keys`` that fails for all but an asset's first event before its ``UPDATE``.  A ranged run
of one hourly asset over 672 partitions stored 1,354 events at ~15 ms each.

:class:`FastSqliteEventLogStorage` keeps Dagster's files, schema and sharding (one database per
run under ``history/runs/``, plus ``index.db``), so an existing ``.dagster_home`` keeps its history
and every Dagster process (webserver, daemon, code servers, runs, the ``dagster`` CLI) can use them
at the same time, with this class or with Dagster's own.  What it changes:

Engines and connections (``_connect``, every read and write)
    One engine per shard, cached: ``index.db`` always, run shards in an LRU of
    ``max_open_run_shards``.  Its pool keeps one connection open, so statements compile once and
    a commit is a WAL append.  Thread safety: Dagster already serializes every use of a storage
    within a process behind ``_db_lock`` (the webserver and daemon use threads) and the engine
    cache is read and changed under that lock, so a connection is never used by two threads at
    once (``check_same_thread`` is off for that reason only).  Other processes: connections keep
    Dagster's busy timeout (``SQLITE_BUSY_TIMEOUT_SECONDS``, 30 s), so writers still wait for each
    other, and WAL lets readers run during a write.  A cached connection is only reused while its
    shard file is the same file (device and inode, one ``stat`` per use): after a wipe, here or in
    another process, the shard is reopened (and its tables recreated) instead of writing on into
    the unlinked file.  Fork: a child finds a cache keyed by another pid (also reset by an at-fork
    hook, which renews the lock too) and starts afresh without closing the parent's connections.
    ``dispose()`` (instance teardown) and interpreter exit close every cached connection, so the
    last one out checkpoints and removes the WAL as before; ``wipe()`` and ``upgrade()`` close
    them first.

``PRAGMA synchronous=NORMAL``
    Set on each new connection, only when the database is in WAL mode (Dagster creates every shard
    in WAL mode; a new shard is reconnected after Dagster's ``_initdb`` switches it).  In WAL mode
    NORMAL cannot corrupt a database; it drops the fsync per commit, so on power loss or an OS
    crash (not a crash of the process) the last commits roll back.  Then the run's status in
    ``runs.db`` (Dagster's run storage, still FULL) could say more than its event log.
    ``synchronous: FULL`` keeps Dagster's.

``has_table`` and the ``asset_keys`` column check
    Cached, positive answers only: a table or column that exists stays (migrations only add);
    one that is missing is asked again, so a ``dagster instance migrate`` elsewhere is seen.

``store_event`` / ``store_event_batch``
    The same rows as Dagster's ``SqliteEventLogStorage.store_event`` (the event in its run shard;
    asset and run-status events mirrored in ``index.db`` with the asset's tags and ``asset_keys``
    entry; asset check events through Dagster's own ``store_asset_check_event``), with statements
    built once, the event serialized once (the ``asset_keys`` entry wraps the event's JSON in the
    ``EventLogRecord`` envelope that ``serialize_value`` writes, checked against ``serialize_value``
    at import), and the ``asset_keys`` entry updated first, inserted only for a new asset.
    ``store_event_batch`` writes a batch in one transaction per shard.  Dagster hands batches to
    the storage only when ``DAGSTER_EVENT_BATCH_SIZE`` > 0 (its per-partition materializations of
    a ranged run's output, and planned events, are tagged as a batch), so this class sets that
    variable to ``event_batch_size`` (1000) if it is unset, in each process that loads it.  The
    batch is buffered by Dagster in memory for the microseconds between its first and last event;
    a process killed in between loses those events (the partitions would then show as not
    materialized and be run again).  ``event_batch_size: 0`` (or the variable set to 0) turns it off.

``watch``
    The webserver streams a run's log to the UI by watching the run's shard file.  With connections
    kept open a commit lands in ``<run>.db-wal`` and the main file only changes at a checkpoint,
    so the watcher listens to the ``-wal`` file too (and still to the main file, which writers
    using Dagster's own storage change).

Planned events (``planned_event_per_asset``, default true)
    A ranged run emits one ``ASSET_MATERIALIZATION_PLANNED`` event per asset *per partition*, as
    many again as the materializations.  With this option the storage reports
    ``supports_partition_subset_in_asset_materialization_planned_events`` and Dagster emits one
    planned event per asset per run, carrying the run's partition subset (its ``partition`` column
    is NULL).  What that costs in stock Dagster (the comment on that property in
    ``dagster/_core/storage/event_log/base.py``: "partitions [are] not marked as failed if the run
    fails"): the asset status cache (``partition_status_cache.py``) finds failed and in-progress
    partitions with ``get_latest_asset_partition_materialization_attempts_without_materializations``,
    which reads only per-partition planned rows, so the partitions of a failed ranged run would
    show as *missing* instead of *failed* in the UI's partition bar and asset health (and not as
    *in progress* while the run goes), and automation conditions reading the failed/in-progress
    subsets would not see them.  Backfills are unaffected (their failure accounting reads run tags
    and the planned *asset keys* of a run), as are materialized partitions,
    ``get_planned_materializations_for_run`` and the asset-level "latest planned run".  This class
    overrides that one query to also expand the partition-subset planned events of the asset (one
    per asset per run, decoded once each), so failed and in-progress partitions show as before.
    Still lost: the per-partition planned rows themselves, i.e.
    ``get_latest_planned_materialization_info(asset, partition=k)`` and ``get_event_records`` on
    planned events filtered by partition (Dagster warns about the latter; Dagster 1.13 calls
    neither for partitioned assets).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
import sqlalchemy.exc as db_exc
from dagster import Field
from dagster import _check as check
from dagster._config import StringSource
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.base import EventLogRecord
from dagster._core.storage.event_log.schema import AssetKeyTable, SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._core.storage.sqlalchemy_compat import db_select
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from dagster._time import datetime_from_timestamp
from dagster_shared.serdes import deserialize_value, serialize_value
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool
from watchdog.events import FileSystemEvent, PatternMatchingEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)

MODULE = __name__
CLASS = "FastSqliteEventLogStorage"

# Events Dagster may hand to store_event_batch at once (see "Batches" above).
EVENT_BATCH_SIZE = 1000

# Statements built once, so SQLAlchemy computes their cache keys once (values go in as parameters).
_INSERT_EVENT = SqlEventLogStorageTable.insert()
_UPDATE_ASSET_ENTRY = AssetKeyTable.update().where(AssetKeyTable.c.asset_key == db.bindparam("vlf_asset_key"))


def _record_json(event_json: str, storage_id: int) -> str:
    """``serialize_value(EventLogRecord(storage_id, entry))`` from ``serialize_value(entry)``."""
    return f'{{"__class__": "EventLogRecord", "event_log_entry": {event_json}, "storage_id": {int(storage_id)}}}'


def _record_json_matches_serdes() -> bool:
    probe = EventLogEntry(error_info=None, level=10, user_message="probe", run_id="r", timestamp=1.5)
    return _record_json(serialize_value(probe), 7) == serialize_value(EventLogRecord(storage_id=7, event_log_entry=probe))


# Dagster stores the last materialization of an asset as a serialized EventLogRecord, i.e. the event
# serialized a second time; we wrap the event's JSON instead, if this Dagster serializes it that way.
_REUSE_EVENT_JSON = _record_json_matches_serdes()

# Every live storage of this process, so that fork and interpreter exit can reach them.
_LIVE: weakref.WeakSet[FastSqliteEventLogStorage] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for storage in list(_LIVE):
        storage._forget_after_fork()


def _at_exit() -> None:
    for storage in list(_LIVE):
        try:
            storage._close_engines(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at exit; SQLite recovers a left-over WAL
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)


class _WalAwareWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's run-log watcher, also woken by writes to the run shard's ``-wal`` file."""

    def __init__(self, event_log_storage, run_id, callback, cursor):
        self._event_log_storage = event_log_storage
        self._run_id = run_id
        self._cb = callback
        self._log_path = event_log_storage.path_for_shard(run_id)
        self._cursor = cursor
        self._process_lock = threading.Lock()
        PatternMatchingEventHandler.__init__(self, patterns=[self._log_path, self._log_path + "-wal"])

    def _process(self) -> None:
        with self._process_lock:
            self._process_log()

    def on_modified(self, event: FileSystemEvent) -> None:
        self._process()

    def on_created(self, event: FileSystemEvent) -> None:
        self._process()


class FastSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log storage with cached engines, open connections and cheaper fixed costs.

    Same files and schema as Dagster's ``SqliteEventLogStorage``; see the module docstring for
    what each override does and why it is safe.  In ``dagster.yaml``::

        event_log_storage:
          module: vlf_dagster.orchestration.instance_storage
          class: FastSqliteEventLogStorage
          config:
            base_dir: /abs/path/to/DAGSTER_HOME/history/runs/
    """

    def __init__(
        self,
        base_dir: str,
        inst_data: ConfigurableClassData | None = None,
        synchronous: str = "NORMAL",
        planned_event_per_asset: bool = True,
        max_open_run_shards: int = 8,
        event_batch_size: int = EVENT_BATCH_SIZE,
    ):
        synchronous = synchronous.upper()
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self._synchronous = synchronous
        self._planned_event_per_asset = bool(planned_event_per_asset)
        self._max_open_run_shards = max(1, int(max_open_run_shards))
        self._engines: OrderedDict[str, Engine] = OrderedDict()  # shard -> engine, least recently used first
        self._engines_pid = os.getpid()
        self._file_ids: dict[str, tuple[int, int] | None] = {}  # shard -> (st_dev, st_ino) of its open file
        self._tables_present: set[str] = set()
        self._asset_key_columns_present: set[str] = set()
        if event_batch_size > 0:
            # Dagster reads this in DagsterInstance.handle_new_event, per event; a value the user
            # set (0 turns batching off) wins
            os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(int(event_batch_size)))
        super().__init__(base_dir, inst_data=inst_data)
        _LIVE.add(self)

    # ---- configuration -------------------------------------------------------------------------

    @classmethod
    def config_type(cls):
        return {
            "base_dir": StringSource,
            "synchronous": Field(str, is_required=False, default_value="NORMAL",
                                 description="NORMAL (in WAL mode only) or FULL, Dagster's own."),
            "planned_event_per_asset": Field(bool, is_required=False, default_value=True,
                                             description="One planned event per asset per run, not per partition."),
            "max_open_run_shards": Field(int, is_required=False, default_value=8,
                                         description="Run shard databases kept open at once (plus index.db)."),
            "event_batch_size": Field(int, is_required=False, default_value=EVENT_BATCH_SIZE,
                                      description="DAGSTER_EVENT_BATCH_SIZE to set if unset (0: leave it)."),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **config_value)

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        return self._planned_event_per_asset or super().supports_partition_subset_in_asset_materialization_planned_events

    # ---- engines and connections ---------------------------------------------------------------

    def _new_engine(self, shard: str) -> Engine:
        engine = db.create_engine(
            self.conn_string_for_shard(shard),
            poolclass=QueuePool,
            pool_size=1,  # the one connection kept open; _db_lock means one is in use at a time ...
            max_overflow=4,  # ... except _initdb, which inspects the engine while it holds one
            pool_timeout=SQLITE_BUSY_TIMEOUT_SECONDS,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        if self._synchronous == "NORMAL":
            sa_event.listen(engine, "connect", _synchronous_normal_in_wal)
        return engine

    def _engine_for(self, shard: str) -> Engine:
        """The cached engine of ``shard``; call with ``_db_lock`` held."""
        if self._engines_pid != os.getpid():  # forked without the at-fork hook (belt and braces)
            self._forget_after_fork()
        engine = self._engines.get(shard)
        if engine is not None:
            if _file_id(self.path_for_shard(shard)) == self._file_ids.get(shard):
                self._engines.move_to_end(shard)
                return engine
            # deleted or replaced since we opened it (a wipe, here or in another process): an open
            # connection would go on reading and writing the old, unlinked file
            self._drop_engine(shard)
        engine = self._engines[shard] = self._new_engine(shard)
        run_shards = [s for s in self._engines if s != INDEX_SHARD_NAME]
        for old in run_shards[: max(0, len(run_shards) - self._max_open_run_shards)]:
            self._drop_engine(old)  # not in use: every use holds _db_lock, which we hold
        return engine

    def _drop_engine(self, shard: str) -> None:
        self._engines.pop(shard).dispose()
        self._file_ids.pop(shard, None)
        self._initialized_dbs.discard(shard)  # a new file gets its tables again

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            check.str_param(shard, "shard")
            engine = self._engine_for(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
                # _initdb may just have switched a new file to WAL: reconnect so the connect hook
                # sees WAL mode (and sets synchronous=NORMAL) on the connection we keep
                engine.dispose()
            with engine.connect() as conn:
                if shard not in self._file_ids:  # the file the kept connection has open
                    self._file_ids[shard] = _file_id(self.path_for_shard(shard))
                with conn.begin():
                    yield conn

    def _close_engines(self, timeout: float = -1) -> None:
        if not self._db_lock.acquire(timeout=timeout):
            return  # at exit, a daemon thread may hold the lock forever; SQLite recovers the WAL
        try:
            engines, self._engines, self._file_ids = list(self._engines.values()), OrderedDict(), {}
            if self._engines_pid == os.getpid():
                for engine in engines:
                    engine.dispose()
        finally:
            self._db_lock.release()

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's engines without closing its connections."""
        if self._engines_pid == os.getpid():
            return
        self._db_lock = threading.Lock()  # a thread of the parent may have held it at fork time
        for engine in self._engines.values():
            engine.dispose(close=False)
        self._engines, self._file_ids = OrderedDict(), {}
        self._engines_pid = os.getpid()
        self._obs = None  # the parent's watchdog thread does not exist here
        self._watchers.clear()

    def dispose(self) -> None:
        super().dispose()
        self._close_engines()

    def wipe(self) -> None:
        self._close_engines()  # wipe deletes run shard files: no connection may keep them alive
        super().wipe()

    def upgrade(self) -> None:
        self._close_engines()
        self._tables_present.clear()
        self._asset_key_columns_present.clear()
        super().upgrade()
        self._close_engines()

    # ---- cached schema questions ---------------------------------------------------------------

    def has_table(self, table_name: str) -> bool:
        # called inside index transactions (from _store_asset_event_tags), so it must not take
        # _db_lock: a miss uses Dagster's own query through a throw-away engine
        if table_name in self._tables_present:
            return True
        present = super().has_table(table_name)
        if present:
            self._tables_present.add(table_name)
        return present

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        if column_name in self._asset_key_columns_present:
            return True
        present = super()._has_asset_key_col_on_connection(conn, column_name)
        if present:
            self._asset_key_columns_present.add(column_name)
        return present

    # ---- watching a run's log (the UI's live run view) ------------------------------------------

    def watch(self, run_id: str, cursor: str | None, callback) -> None:
        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        watchdog = _WalAwareWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (watchdog, self._obs.schedule(watchdog, self._base_dir, recursive=True))

    # ---- storing events ------------------------------------------------------------------------

    def store_event(self, event: EventLogEntry) -> None:
        """Dagster's ``SqliteEventLogStorage.store_event``, with cheaper statements.

        The same rows: the event in its run shard, and a mirror of asset events and run status
        events in the index shard (with the asset's tags and ``asset_keys`` entry).  Prepared
        statements instead of a new one per event, the event serialized once, and the
        ``asset_keys`` entry updated first (inserted only for a new asset) instead of an insert
        that fails with an integrity error for every event but an asset's first.
        """
        check.inst_param(event, "event", EventLogEntry)
        row = self._event_to_row(event)
        with self.run_connection(event.run_id) as conn:
            conn.execute(_INSERT_EVENT, row)
        self._mirror_in_index([(event, row)])

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store ``events`` with one transaction per shard (Dagster's default: one per event)."""
        events = list(events)
        if len(events) <= 1 or len({e.run_id for e in events}) != 1:
            for event in events:
                self.store_event(event)
            return
        rows = [self._event_to_row(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(_INSERT_EVENT, rows)
        self._mirror_in_index(list(zip(events, rows)))

    def _mirror_in_index(self, stored: Sequence[tuple[EventLogEntry, dict[str, Any]]]) -> None:
        """What ``SqliteEventLogStorage.store_event`` writes to the index shard, in order.

        Asset events and run status events of one call share one transaction; asset check events
        go one at a time, as Dagster's own (``store_asset_check_event`` opens its own connection).
        """
        pending: list[tuple[EventLogEntry, dict[str, Any]]] = []
        for event, row in stored:
            event_type = event.dagster_event_type if event.is_dagster_event else None
            if event_type in ASSET_CHECK_EVENTS:
                self._mirror_plain(pending)
                pending = []
                with self.index_connection() as conn:
                    event_id = _insert_returning_id(conn, row)
                self.store_asset_check_event(event, event_id)
            elif event_type in ASSET_EVENTS or event_type in EVENT_TYPE_TO_PIPELINE_RUN_STATUS:
                pending.append((event, row))
        self._mirror_plain(pending)

    def _mirror_plain(self, stored: Sequence[tuple[EventLogEntry, dict[str, Any]]]) -> None:
        if not stored:
            return
        with self.index_transaction() as conn:
            for event, row in stored:
                if event.dagster_event_type in ASSET_EVENTS:
                    event_id = _insert_returning_id(conn, row)
                    if event_id is None:
                        raise DagsterInvariantViolationError("Cannot store asset event tags for null event id.")
                    self._store_asset_event_tags(conn, [event], [event_id])
                    self._upsert_asset_entry(conn, event, event_id, row["event"])
                else:
                    conn.execute(_INSERT_EVENT, row)

    def _store_asset_event(self, conn: Connection, event: EventLogEntry, event_id: int) -> None:
        self._upsert_asset_entry(conn, event, event_id, None)

    def _asset_entry_values(self, conn: Connection, event: EventLogEntry, event_id: int, event_json: str | None):
        has_index_cols = self._has_asset_key_index_cols_on_connection(conn)
        if event_json is None or not _REUSE_EVENT_JSON or not event.get_dagster_event().is_step_materialization:
            return self._get_asset_entry_values(event, event_id, has_index_cols)
        # SqlEventLogStorage._get_asset_entry_values for a materialization, without re-serializing
        values: dict[str, Any] = {"last_materialization": _record_json(event_json, event_id), "last_run_id": event.run_id}
        if has_index_cols:
            values["last_materialization_timestamp"] = datetime_from_timestamp(event.timestamp)
        return values

    def _upsert_asset_entry(self, conn: Connection, event: EventLogEntry, event_id: int, event_json: str | None) -> None:
        """``SqlEventLogStorage._store_asset_event``: update the asset's entry, insert it if new."""
        if not (event.dagster_event and event.dagster_event.asset_key):
            return
        values = self._asset_entry_values(conn, event, event_id, event_json)
        if not values:
            return
        asset_key = event.dagster_event.asset_key.to_string()
        if conn.execute(_UPDATE_ASSET_ENTRY, {"vlf_asset_key": asset_key, **values}).rowcount:
            return
        try:
            conn.execute(AssetKeyTable.insert().values(asset_key=asset_key, **values))
        except db_exc.IntegrityError:  # inserted meanwhile by another process
            conn.execute(_UPDATE_ASSET_ENTRY, {"vlf_asset_key": asset_key, **values})

    # ---- failed / in-progress partitions with one planned event per asset ----------------------

    def get_latest_asset_partition_materialization_attempts_without_materializations(
        self, asset_key, after_storage_id: int | None = None
    ) -> Mapping[str, tuple[str, int]]:
        """Dagster's answer, plus the partitions of partition-subset planned events (see module doc)."""
        result = dict(super().get_latest_asset_partition_materialization_attempts_without_materializations(
            asset_key, after_storage_id=after_storage_id))
        table = SqlEventLogStorageTable
        query = db_select([table.c.id, table.c.run_id, table.c.event]).where(
            db.and_(
                table.c.asset_key == asset_key.to_string(),
                table.c.partition == None,  # noqa: E711
                table.c.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value,
            )
        )
        if after_storage_id is not None:
            query = query.where(table.c.id > after_storage_id)
        query = self._add_assets_wipe_filter_to_query(query, self._get_assets_details([asset_key]), [asset_key])
        with self.index_connection() as conn:
            rows = conn.execute(query.order_by(table.c.id.asc())).fetchall()
        planned: dict[str, tuple[str, int]] = {}
        for storage_id, run_id, event_json in rows:
            try:
                entry = deserialize_value(event_json, EventLogEntry)
                subset = entry.get_dagster_event().asset_materialization_planned_data.partitions_subset
                keys = subset.get_partition_keys() if subset is not None else ()
            except Exception:  # noqa: BLE001 - an undecodable event must not break the UI's status
                log.warning("could not read the partitions of planned event %s", storage_id, exc_info=True)
                continue
            for key in keys:
                planned[key] = (run_id, storage_id)  # rows ascend: the latest planned event wins
        if not planned:
            return result
        latest = self._latest_event_ids_by_partition_subquery(
            asset_key, [DagsterEventType.ASSET_MATERIALIZATION], after_cursor=after_storage_id)
        with self.index_connection() as conn:
            materialized = dict(conn.execute(db_select([latest.c.partition, latest.c.id])).fetchall())
        for key, (run_id, storage_id) in planned.items():
            if materialized.get(key, -1) > storage_id:
                continue  # materialized after it was planned
            if key in result and result[key][1] > storage_id:
                continue  # a later per-partition planned event
            result[key] = (run_id, storage_id)
        return result


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _insert_returning_id(conn: Connection, row: Mapping[str, Any]) -> int:
    with conn.execute(_INSERT_EVENT, row) as result:
        return result.inserted_primary_key[0]


def _synchronous_normal_in_wal(dbapi_connection, _connection_record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
