"""Hourly landing spools of the collector: append-only Arrow IPC streams published as Parquet files.

A :class:`Spool` holds the rows of one final file, per (hour in which the flow *started*, exporter
address)::

    landing/dt=YYYY-MM-DD/hour=HH/collector-<exporter>.parquet      (flow schema)

(:func:`spool_path`; rejected datagrams and records go to :func:`quarantine_spool_path` by arrival
hour).  Rows wait in memory for at most a second (``SPOOL_FLUSH_SECONDS``) and are then appended
to a hidden append-only Arrow IPC stream beside the final path (``.collector-<exporter>.parquet.
<pid>-<n>.spool``: the pipeline ignores dot files), held under ``flock`` while open.  Closing
turns the stream into the final Parquet file (merged after the rows of a file already there) in
one rename (:func:`publish_spool`).  :func:`recover_spools` publishes the spools a killed
collector left behind, up to their last whole batch.  :func:`split_by_hour` cuts decoded records
by the hour they start in.
"""

from __future__ import annotations

import fcntl
import itertools
import os
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..ingest import QUARANTINE_SCHEMA
from ..schema import FLOW_SCHEMA, MS_PER_HOUR
from ..storage import PARQUET_OPTIONS, atomic_path, landing_dir

# Dictionary encoding and statistics of every column cost the collector more than half its Parquet
# time; landing files are read whole once by the pipeline, so the spool skips them (zstd stays).
SPOOL_PARQUET_OPTIONS = dict(PARQUET_OPTIONS, use_dictionary=False, write_statistics=["sTime"])


def exporter_slug(address: str) -> str:
    """An exporter address as a file name part (no colons: IPv6 ``:`` becomes ``-``)."""
    return address.replace(":", "-").replace("%", "_").replace("/", "_")


def spool_path(data_dir: str | Path, hour: datetime, exporter: str) -> Path:
    return landing_dir(data_dir, hour) / f"collector-{exporter_slug(exporter)}.parquet"


def quarantine_spool_path(data_dir: str | Path, hour: datetime, exporter: str) -> Path:
    return (
        Path(data_dir) / "quarantine" / "collector" / f"dt={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        / f"collector-{exporter_slug(exporter)}.parquet"
    )


def hour_of_index(hour_index: int) -> datetime:
    """The UTC hour numbered ``hour_index`` hours after the epoch (``sTime // MS_PER_HOUR``)."""
    return datetime.fromtimestamp(hour_index * 3600, tz=timezone.utc)


def split_by_hour(table: pa.Table) -> list[tuple[int, pa.Table]]:
    """(hour index, rows) for each hour in which the table's flows start, in hour order.

    An archive hour holds the flows that *started* in it; ``hour_of_index`` turns the index into
    the hour for :func:`~.storage.landing_dir`.
    """
    if table.num_rows == 0:
        return []
    hours = table.column("sTime").to_numpy() // MS_PER_HOUR
    first = int(hours[0])
    if (hours == first).all():
        return [(first, table)]
    order = np.argsort(hours, kind="stable")
    sorted_hours = hours[order]
    bounds = np.flatnonzero(np.diff(sorted_hours)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(order)]])
    return [(int(sorted_hours[s]), table.take(pa.array(order[s:e]))) for s, e in zip(starts, ends)]


SPOOL_ROW_GROUP = 262_144  # rows per spool batch on disk and per row group of a published file
SPOOL_SUFFIX = ".spool"  # never ``.tmp``: a spool outlives sweep_temp_files' hour while it is open
SPOOL_FLUSH_SECONDS = 1.0  # records decoded this long ago are on disk: the window a kill -9 can lose
SPOOL_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


class Spool:
    """Rows for one final Parquet file, kept in an append-only hidden Arrow IPC stream until it closes.

    Rows are buffered in memory for at most ``flush_seconds`` (or ``max_rows``) and then appended
    to ``.<final name>.<pid>-<n>.spool`` beside the final path as one IPC record batch.  A stream
    is readable up to its last whole batch, so a collector killed with ``kill -9`` loses at most
    the rows of its last ``flush_seconds``: :func:`recover_spools` publishes the rest when a
    collector starts again.  The file is held under an exclusive ``flock`` while open, so a
    recovering collector never takes a live collector's spool.  ``close()`` turns the stream into
    the final Parquet file (merged after the rows of a file already there) in one atomic rename.

    With an ``executor`` (one writer thread), batches are written in the background (Arrow lets go
    of the GIL while it compresses), at most ``MAX_WRITES_IN_FLIGHT`` ahead.
    """

    _serial = 0
    MAX_WRITES_IN_FLIGHT = 4

    def __init__(self, path: Path, schema: pa.Schema, *, hour: datetime, exporter: str, max_rows: int = SPOOL_ROW_GROUP,
                 flush_seconds: float = SPOOL_FLUSH_SECONDS, executor=None):
        self.executor = executor
        self._writes: deque = deque()
        self.path = path
        self.schema = schema
        self.hour = hour
        self.exporter = exporter
        self.max_rows = max_rows
        self.flush_seconds = flush_seconds
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.pending_since = 0.0
        self.rows = 0
        self.last_append = 0.0
        self.tmp: Path | None = None
        self._file = None
        self.writer: pa.ipc.RecordBatchStreamWriter | None = None

    def append(self, table: pa.Table, now: float) -> None:
        if table.num_rows == 0:
            return
        if not self.pending:
            self.pending_since = now
        self.pending.append(table)
        self.pending_rows += table.num_rows
        self.rows += table.num_rows
        self.last_append = now
        if self.pending_rows >= self.max_rows:
            self._write_pending()

    def flush_due(self, now: float) -> None:
        """Write what has waited in memory for ``flush_seconds`` or more."""
        if self.pending and now - self.pending_since >= self.flush_seconds:
            self._write_pending()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        Spool._serial += 1
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{Spool._serial}{SPOOL_SUFFIX}")
        self._file = open(self.tmp, "wb", buffering=0)  # unbuffered: each batch reaches the kernel whole
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.writer = pa.ipc.new_stream(self._file, self.schema, options=SPOOL_IPC_OPTIONS)

    def _write_pending(self) -> None:
        if not self.pending:
            return
        if self.writer is None:
            self._open()
        table = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending, self.pending_rows = [], 0
        if self.executor is None:
            self._write_table(table)
            return
        while len(self._writes) >= self.MAX_WRITES_IN_FLIGHT:
            self._writes.popleft().result()
        self._writes.append(self.executor.submit(self._write_table, table))

    def _write_table(self, table: pa.Table) -> None:
        # one record batch per flush, not one per decoded chunk: thousands of tiny batches cost
        # kilobytes each when read back, which made publishing a flood's quarantine take gigabytes
        self.writer.write_table(table.combine_chunks(), max_chunksize=self.max_rows)

    def _wait(self) -> None:
        while self._writes:
            self._writes.popleft().result()

    def _close_stream(self) -> None:
        self._wait()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._file is not None:
            self._file.close()  # also lets go of the flock
            self._file = None

    def close(self) -> Path | None:
        """Publish the spool as its final file (merged with an existing one); None when it was empty."""
        if self.rows == 0:
            return None
        self._write_pending()
        self._close_stream()
        assert self.tmp is not None
        try:
            publish_spool(self.tmp, self.path, self.schema)  # a torn tail cannot happen in a live close
        finally:
            if self.tmp.exists():
                self.tmp.unlink()
        return self.path

    def abandon(self) -> None:
        self._close_stream()
        if self.tmp is not None and self.tmp.exists():
            self.tmp.unlink()


def _spool_batches(spool: Path, outcome: dict) -> Iterator[pa.RecordBatch]:
    """A spool stream's whole record batches, one at a time; ``outcome["torn"]`` tells whether the
    stream ended in a batch cut short (a kill mid-write: that batch is lost)."""
    outcome["torn"] = False
    try:
        with pa.OSFile(str(spool), "rb") as source:
            reader = pa.ipc.open_stream(source)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                yield batch
    except (pa.ArrowInvalid, OSError):
        outcome["torn"] = True


def publish_spool(spool: Path, path: Path, schema: pa.Schema) -> tuple[int, bool]:
    """Write a spool stream's rows as ``path`` (after the rows already in ``path``), atomically.

    Returns the rows taken from the spool and whether its tail was torn.  Row groups of at most
    ``SPOOL_ROW_GROUP`` rows, written as they are read: memory stays at about one row group,
    whatever the hour holds.
    """
    outcome: dict = {}
    batches = _spool_batches(spool, outcome)
    first = next(batches, None)
    if first is None:
        return 0, outcome["torn"]
    rows = 0
    with atomic_path(path) as out:
        with pq.ParquetWriter(out, schema, **SPOOL_PARQUET_OPTIONS) as writer:
            if path.exists():
                for earlier in pq.ParquetFile(path).iter_batches(batch_size=SPOOL_ROW_GROUP):
                    writer.write_table(pa.Table.from_batches([earlier]).cast(schema))
            pending: list[pa.RecordBatch] = []
            count = 0
            for batch in itertools.chain([first], batches):
                pending.append(batch)
                count += batch.num_rows
                rows += batch.num_rows
                if count >= SPOOL_ROW_GROUP:
                    writer.write_table(pa.Table.from_batches(pending, schema))
                    pending, count = [], 0
            if pending:
                writer.write_table(pa.Table.from_batches(pending, schema))
    return rows, outcome["torn"]


def spool_final_path(spool: Path) -> Path:
    """``.collector-X.parquet.<pid>-<n>.spool`` -> ``collector-X.parquet``."""
    name = spool.name[1 : -len(SPOOL_SUFFIX)]
    return spool.with_name(name.rsplit(".", 1)[0])


@dataclass
class Recovery:
    spools: int = 0
    records: int = 0  # flow records published from spools a killed collector left
    quarantine_rows: int = 0
    torn: int = 0  # spools whose last batch was cut short by the kill (that batch is lost)
    files: list = field(default_factory=list)


def recover_spools(data_dir: str | Path) -> Recovery:
    """Publish the spools a killed collector left in the landing and collector quarantine areas.

    A spool still locked by a running collector is left alone.  What a spool holds is merged into
    its final file as a normal close would have done, so the pipeline's landing sensor sees the
    hour change and re-packs it.
    """
    found = Recovery()
    data_dir = Path(data_dir)
    for area, schema in ((data_dir / "landing", FLOW_SCHEMA), (data_dir / "quarantine" / "collector", QUARANTINE_SCHEMA)):
        if not area.is_dir():
            continue
        for folder, _, names in os.walk(area):
            for name in names:
                if not (name.startswith(".collector-") and name.endswith(SPOOL_SUFFIX)):
                    continue
                spool = Path(folder) / name
                try:
                    handle = open(spool, "rb")
                except FileNotFoundError:
                    continue
                with handle:
                    try:
                        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # a running collector's open spool
                    final = spool_final_path(spool)
                    rows, torn = publish_spool(spool, final, schema)
                    spool.unlink()
                found.spools += 1
                found.torn += torn
                if schema is FLOW_SCHEMA:
                    found.records += rows
                else:
                    found.quarantine_rows += rows
                if rows:
                    found.files.append(str(final))
    return found
