"""Paths of the data directory and atomic writes.

Layout (root ``data/`` by default, ``$VLF_DATA_DIR`` overrides):

- ``landing/dt=YYYY-MM-DD/hour=HH/<source>.<ext>``: raw input for the hour, as it arrived
- ``archive/<type>/YYYY/MM/DD/<flowtype>-<sensor>_YYYYMMDD.HH.parquet``: SiLK's path format
- ``quarantine/dt=YYYY-MM-DD/hour=HH.parquet``: rejected input records with origin and reason
- ``<asset>/dt=YYYY-MM-DD/hour=HH.<ext>``: derived hourly artifacts (hive style, no colons)
- ``<asset>/month=YYYY-MM.<ext>``: monthly rollups; ``<asset>.<ext>``: window-level artifacts
- ``reports/<window>/``: HTML report, CSV and PNG files

Every write goes to a temporary file in the destination folder and is renamed into place, so a
crash never leaves half a file and re-writing a partition replaces it whole.  An hour of the
archive is several files in several folders: a batch of hours is published through a journal
(``archive/.publish/``, :func:`publishing_hours`), so a kill never leaves part of an hour visible.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .flowtypes import FLOWTYPES, file_prefix, type_name
from . import duck

# No dictionary pages: flow columns are either near-unique (addresses, times) or a few values that
# zstd packs as well; an hour's archive file writes ~25% faster and comes out ~10% smaller.
PARQUET_OPTIONS = dict(compression="zstd", use_dictionary=False)

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give; mkstemp alone gives 0600


TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"  # atomic_path's temporary files: .<name>.<random>.tmp


def is_temporary(name: str) -> bool:
    """A file name of atomic_path's temporaries (``.<name>.<random>.tmp``): work under way or litter."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX) and name.count(".") >= 3


def temp_beside(path: str | Path) -> Path:
    """A new empty file beside ``path`` (made with its folder), named as a temporary of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    return Path(tmp)


def written_in_place(path: str | Path) -> bool:
    """Whether an output ``path`` is not a file of ours to replace: an existing FIFO or device,
    anything under /dev or /proc, or a symlink (/dev/stdout is one, into /proc).  Such a path is
    written through; a rename would replace the node or the link (as root, /dev/null itself)."""
    path = Path(path)
    if path.is_symlink() or Path(os.path.abspath(path)).parts[1:2] in (("dev",), ("proc",)):
        return True
    return path.exists() and not path.is_file() and not path.is_dir()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    A path :func:`written_in_place` (a FIFO, a device, a symlink such as /dev/stdout) is yielded
    itself and written through."""
    path = Path(path)
    if written_in_place(path):
        yield path
        return
    tmp_path = temp_beside(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


STALE_TEMP_SECONDS = 3600  # no write of this project takes an hour: older temporaries are a kill's


def sweep_temp_files(base: str | Path, older_than_s: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove the temporary files a killed writer left under ``base`` (``atomic_path``'s, older
    than ``older_than_s``: a writer running now is never touched).  Returns what went.

    A publish a kill interrupted is finished first (:func:`complete_publishes`), and a temporary
    that a journal still names (one this process could not finish) is kept: it is that publish's
    content, not litter."""
    complete_publishes(base)
    journaled = {Path(base) / folder / temp for journal in _journals(base)
                 for folder, temp in _journal_temps(journal)}
    cutoff = time.time() - older_than_s
    gone = []
    for folder, _, names in os.walk(base):
        for name in names:
            if is_temporary(name):
                path = Path(folder) / name
                if path in journaled:
                    continue
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        gone.append(path)
                except FileNotFoundError:
                    continue  # its writer finished or removed it meanwhile
    return sorted(gone)


def write_parquet(table: pa.Table, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)
    return Path(path)


ROW_GROUP_ROWS = 1024 * 1024  # pyarrow's default row group size: what write_parquet writes


def write_parquet_batches(tables: Iterable[pa.Table], path: str | Path, schema: pa.Schema) -> int:
    """Tables written one after another as one Parquet file, holding about one row group at a
    time: the same bytes as :func:`write_parquet` of their concatenation (the same row groups).
    Returns the rows written."""
    path = Path(path)
    pending: list[pa.Table] = []
    count = written = 0
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS) as writer:
            for table in tables:
                pending.append(table)
                count += table.num_rows
                while count >= ROW_GROUP_ROWS:
                    whole = pa.concat_tables(pending)
                    writer.write_table(whole.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
                    pending, count = [whole.slice(ROW_GROUP_ROWS)], count - ROW_GROUP_ROWS
                    written += ROW_GROUP_ROWS
            if count:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                written += count
    if not written:  # what write_parquet writes for no rows
        write_parquet(schema.empty_table(), path)
    return written


class ParquetRowCounts:
    """Rows of Parquet files from their footers, each footer read once: counts are kept in a
    cache file by size and modification time, so a later count reads only the footers of files
    that are new or changed (51,000 archive footers take ~20 s at the seed's size; their sizes
    and times ~0.3 s)."""

    def __init__(self, cache: Path):
        self.path = Path(cache)
        self.known: dict[str, tuple[int, int, int]] = {}
        if self.path.exists():
            try:
                cached = pq.read_table(self.path).to_pydict()
                self.known = {f: (s, m, r) for f, s, m, r in zip(cached["file"], cached["size"], cached["mtime_ns"], cached["rows"])}
            except (pa.ArrowInvalid, OSError, KeyError):
                self.known = {}  # unreadable: count again
        self.seen: dict[str, tuple[int, int, int]] = {}

    def rows(self, con, files: list[str]) -> int:
        from .sql import path_list

        stats = {f: os.stat(f) for f in files}
        stale = [f for f, st in stats.items()
                 if self.known.get(f, (None, None, None))[:2] != (st.st_size, st.st_mtime_ns)]
        counted = {}
        for start in range(0, len(stale), 5000):
            chunk = stale[start:start + 5000]
            counted.update(con.sql(f"SELECT file_name, sum(num_rows) FROM parquet_file_metadata({path_list(chunk)}) "
                                   "GROUP BY file_name").fetchall())
        total = 0
        for f, st in stats.items():
            rows = int(counted[f]) if f in counted else self.known[f][2]
            self.seen[f] = (st.st_size, st.st_mtime_ns, rows)
            total += rows
        return total

    def save(self) -> None:
        files = sorted(self.seen)
        write_parquet(pa.table({"file": files, "size": [self.seen[f][0] for f in files],
                                "mtime_ns": [self.seen[f][1] for f in files], "rows": [self.seen[f][2] for f in files]},
                               schema=pa.schema([("file", pa.string()), ("size", pa.int64()),
                                                 ("mtime_ns", pa.int64()), ("rows", pa.int64())])), self.path)


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file as a table, without pyarrow's pre-buffering: on a window file of 30 M rows
    pre-buffering made the read 4x slower here (17 s against 4.5 s)."""
    return pq.read_table(path, columns=columns, pre_buffer=False)


def read_parquet_bytes(data: bytes) -> pa.Table:
    """Decode a Parquet file held in memory (a stdin stream, a bag read whole).

    Single-threaded on purpose: pyarrow's threaded reader over an in-memory or Python file
    object leaves cleanup work on its pool that can abort the process at interpreter exit
    ("terminate called without an active exception", apache/arrow#34314, #50482).
    """
    return pq.read_table(pa.BufferReader(data), use_threads=False)


def holds_flow_columns(paths: list[str], con=None) -> bool:
    """Whether every Parquet file in ``paths`` has exactly the flow columns, read from the footers alone.

    With a DuckDB ``con``, the footers stay in its Parquet metadata cache, so the scans that follow
    on that connection do not read them again (840 hourly files: ~50 ms per scan saved).
    """
    import duckdb

    from .schema import FLOW_SCHEMA
    from .sql import glob_escaped

    if con is None:
        con = duck.probe()  # no metadata cache there: it outlives the files it would describe
    else:
        con.execute("SET parquet_metadata_cache = true")
    try:
        found = dict(con.sql("SELECT name, count(*) FROM parquet_schema($files) WHERE name <> 'duckdb_schema' "
                             "GROUP BY name", params={"files": [glob_escaped(p) for p in paths]}).fetchall())
    except duckdb.Error:
        return False
    found.pop("schema", None)  # the root element pyarrow writes
    return set(found) == set(FLOW_SCHEMA.names) and all(n == len(paths) for n in found.values())


IPV6_ADDRESS_COLUMNS = ("sIPv6", "dIPv6", "nhIPv6")


def ipv6_columns_empty(paths: Sequence[str | Path], con) -> bool:
    """Whether the Parquet footers prove every IPv6 address column of ``paths`` all null (no IPv6
    record), without a scan; False when a footer has no null count or a column holds a value."""
    from .sql import literal_list, path_list

    unknown_or_used = con.sql(
        f"SELECT count(*) FROM parquet_metadata({path_list(paths)}) "
        f"WHERE list_contains({literal_list(list(IPV6_ADDRESS_COLUMNS))}, path_in_schema) "
        "AND (stats_null_count IS NULL OR stats_null_count < num_values)").fetchall()[0][0]
    return not unknown_or_used


def write_bytes(data: bytes, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    return write_bytes(text.encode("utf-8"), path)


# --- hours ----------------------------------------------------------------------------------


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def hour_ms(hour: datetime) -> int:
    """Milliseconds since the epoch at the start of ``hour``."""
    return int(hour.astimezone(timezone.utc).timestamp()) * 1000


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Every hour from ``start`` (inclusive) to ``end`` (exclusive)."""
    out, hour = [], floor_hour(start)
    while hour < end:
        out.append(hour)
        hour += timedelta(hours=1)
    return out


# --- paths ----------------------------------------------------------------------------------


# The layouts of the data directory.  Which artifact has which layout is vlf_dagster.artifacts'.


def hourly_path(base: str | Path, asset: str, hour: datetime, ext: str = "parquet") -> Path:
    return Path(base) / asset / f"dt={hour:%Y-%m-%d}" / f"hour={hour:%H}.{ext}"


def hourly_glob(asset: str, ext: str = "parquet") -> str:
    return f"{asset}/dt=*/hour=*.{ext}"


def monthly_path(base: str | Path, asset: str, month: datetime, ext: str = "parquet") -> Path:
    return Path(base) / asset / f"month={month:%Y-%m}.{ext}"


def month_of(path: str | Path) -> str:
    """The ``YYYY-MM`` a monthly file (:func:`monthly_path`) holds."""
    return Path(path).stem.removeprefix("month=")


def monthly_glob(asset: str, ext: str = "parquet") -> str:
    return f"{asset}/month=*.{ext}"


def window_path(base: str | Path, asset: str, ext: str = "parquet") -> Path:
    return Path(base) / f"{asset}.{ext}"


def state_dir(base: str | Path, asset: str) -> Path:
    """What a window step keeps between refreshes to redo only what changed (not an asset)."""
    return Path(base) / ".state" / asset


def segmented_path(base: str | Path, asset: str) -> Path:
    """A window artifact kept as base, removed rows, delta and change log (flows/segments.py)."""
    return Path(base) / asset


@contextmanager
def state_lock(folder: str | Path) -> Iterator[None]:
    """Hold the lock of a window step's state folder: two runs refreshing one artifact (a manual
    launch beside automation's) take turns, and the second refreshes from what the first left,
    instead of both applying changes to the same generation."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def holds_state_lock(parameter: str):
    """Decorate a refresh to run under :func:`state_lock` of its state folder argument ``parameter``."""
    import functools
    import inspect

    def decorate(refresh):
        signature = inspect.signature(refresh)

        @functools.wraps(refresh)
        def locked(*args, **kwargs):
            with state_lock(signature.bind(*args, **kwargs).arguments[parameter]):
                return refresh(*args, **kwargs)

        return locked

    return decorate


def fingerprint(path: str | Path) -> str:
    """Size and modification time: what tells a refresh that a file it read before has changed."""
    stat = Path(path).stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def landing_dir(base: str | Path, hour: datetime) -> Path:
    return Path(base) / "landing" / f"dt={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def _visible_files(folder: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    return [folder / n for n in names if not n.startswith(".") and (folder / n).is_file()]


def landing_files(base: str | Path, hour: datetime) -> list[Path]:
    """The hour's landing files, in name order (hidden files are in-flight spools: skipped)."""
    return _visible_files(landing_dir(base, hour))


def landing_folders(base: str | Path) -> list[tuple[datetime, list[Path]]]:
    """Each hour that has a landing folder with at least one file, with its files (one listing each)."""
    found = []
    for folder in sorted((Path(base) / "landing").glob("dt=*/hour=*")):
        files = _visible_files(folder)
        if files:
            day = folder.parent.name.removeprefix("dt=")
            hour = datetime.strptime(f"{day} {folder.name.removeprefix('hour=')}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc)
            found.append((hour, files))
    return found


def landing_hours(base: str | Path) -> list[datetime]:
    """The hours that have a landing folder with at least one file."""
    return [hour for hour, _ in landing_folders(base)]


QUARANTINE_DIR = "quarantine"  # the hour's rejected records, laid out as an hourly artifact


def quarantine_path(base: str | Path, hour: datetime) -> Path:
    return hourly_path(base, QUARANTINE_DIR, hour)


ARCHIVE_GLOB = "archive/*/*/*/*/*.parquet"  # every file archive_path names


def archive_path(base: str | Path, flowtype: int, sensor: str, hour: datetime) -> Path:
    """SiLK's default path format ``%T/%Y/%m/%d/%x`` with a ``.parquet`` suffix."""
    return (
        Path(base)
        / "archive"
        / type_name(flowtype)
        / f"{hour:%Y}"
        / f"{hour:%m}"
        / f"{hour:%d}"
        / f"{file_prefix(flowtype)}-{sensor}_{hour:%Y%m%d.%H}.parquet"
    )


def archive_files(
    base: str | Path,
    hours: list[datetime],
    flowtypes: list[int] | None = None,
    sensors: list[str] | None = None,
) -> list[Path]:
    """Existing archive files for the given hours, flowtypes (default all) and sensors (default all).

    In SiLK's order (hour, flowtype, sensor).  Each day folder is listed once, so selecting months costs one directory read per day and type.
    Hours are seen whole: a publish a kill interrupted is finished first, and the listing holds
    the publish lock (shared), so no publish is half applied while it reads the folders.
    """
    with _archive_held(base):
        return _listed_archive_files(base, hours, flowtypes, sensors)


def _day_folder(base: str | Path, flowtype: int, year: int, month: int, day: int) -> Path:
    return Path(base) / "archive" / type_name(flowtype) / f"{year:04d}" / f"{month:02d}" / f"{day:02d}"


def archive_day_folders(base: str | Path, hours: list[datetime], flowtypes: list[int] | None = None) -> list[Path]:
    """The archive's day folders that hold these hours' files of these flowtypes (default all)."""
    days = sorted({(h.year, h.month, h.day) for h in hours})
    return [_day_folder(base, ft, *day) for day in days for ft in (sorted(FLOWTYPES) if flowtypes is None else flowtypes)]


def _listed_archive_files(
    base: str | Path,
    hours: list[datetime],
    flowtypes: list[int] | None = None,
    sensors: list[str] | None = None,
) -> list[Path]:
    """:func:`archive_files` without the publish lock (for the publisher, which holds it)."""
    flowtypes = sorted(FLOWTYPES) if flowtypes is None else flowtypes
    days: dict[tuple[int, int, int], set[str]] = {}
    for hour in hours:
        days.setdefault((hour.year, hour.month, hour.day), set()).add(f"{hour:%Y%m%d.%H}")
    found: list[tuple[str, int, str, Path]] = []  # (hour, flowtype position, sensor, path)
    for (year, month, day), stamps in sorted(days.items()):
        for position, ft in enumerate(flowtypes):
            folder = _day_folder(base, ft, year, month, day)
            if not folder.is_dir():
                continue
            prefix = file_prefix(ft) + "-"
            for path in sorted(folder.iterdir()):
                name = path.name
                if not (name.startswith(prefix) and name.endswith(".parquet")):
                    continue
                sensor, stamp = name[len(prefix) : -len(".parquet")].rsplit("_", 1)
                if stamp in stamps and (sensors is None or sensor in sensors):
                    found.append((stamp, position, sensor, path))
    return [path for *_, path in sorted(found)]  # hour by hour, then flowtype, then sensor, as SiLK


# --- publishing hours whole -------------------------------------------------------------------
#
# An hour of the archive is several files in several folders (one per flowtype and sensor, and its
# quarantine file): no single rename replaces it.  A batch of hours is published through a journal:
#   1. each file is written to a temporary beside its path (atomic_path's ``.<name>.<random>.tmp``);
#   2. a journal ``archive/.publish/<time>-<pid>-<random>.json`` is written (atomically), naming
#      each (path, temporary) pair and the files of those hours that the batch no longer writes;
#   3. it is applied: each temporary renamed onto its path, the stale files removed, the journal
#      removed last.
# Killed before step 2, the previous version of the hours stays whole (sweep_temp_files removes the
# temporaries); killed after it, the journal is rolled forward (complete_publishes) by the next
# writer, reader or sweep, before anything is listed.  Applying takes archive/.publish/.lock
# exclusive and archive_files takes it shared, so a listing never falls between two renames of a
# publish under way.  No fsync: this guards against a killed process, as atomic_path does, not a
# lost machine.

PUBLISH_DIR = Path("archive") / ".publish"
JOURNAL_SUFFIX = ".json"
_LOCK_NAME = ".lock"
_warned: set[str] = set()  # journals this process could not finish and said so (once each)


def publish_dir(base: str | Path) -> Path:
    """Where the journals of publishes under way (or interrupted by a kill) are kept."""
    return Path(base) / PUBLISH_DIR


def _journals(base: str | Path) -> list[Path]:
    """The journals waiting to be applied, oldest first (one directory read; none if no folder)."""
    try:
        with os.scandir(publish_dir(base)) as entries:
            return sorted(Path(e.path) for e in entries
                          if e.name.endswith(JOURNAL_SUFFIX) and not e.name.startswith(TEMP_PREFIX))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _open_lock(base: str | Path, create: bool) -> int | None:
    """A descriptor of the publish lock file (read-only: flock needs no more), or None if there
    is none and ``create`` is false (nothing ever published through a journal here)."""
    path = publish_dir(base) / _LOCK_NAME
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDONLY | os.O_CREAT, FILE_MODE)
    try:
        return os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _lock(fd: int | None, exclusive: bool) -> None:
    import fcntl

    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # and the lock with it


def _read_journal(journal: Path) -> dict:
    entry = json.loads(journal.read_text(encoding="utf-8"))
    if not isinstance(entry, dict) or not isinstance(entry.get("publish"), list) or not isinstance(entry.get("remove"), list):
        raise ValueError("not a publish journal")
    return entry


def _journal_temps(journal: Path) -> list[tuple[str, str]]:
    """The (folder relative to the data folder, temporary's name) pairs a journal names."""
    try:
        return [(str(Path(final).parent), temp) for final, temp in _read_journal(journal)["publish"]]
    except (OSError, ValueError, TypeError):
        return []


def _apply(base: Path, journal: Path, threads: int = 1) -> None:
    """Carry out a journal (idempotent: what an earlier try or another process did is skipped).

    The renames may run on ``threads`` threads, as the writes do: on ext4 a rename over an
    existing file (a re-pack) starts the writeback of the new one (auto_da_alloc), ~0.2 ms each."""
    entry = _read_journal(journal)

    def rename(pair) -> None:
        final = base / pair[0]
        try:
            os.replace(final.parent / pair[1], final)
        except FileNotFoundError:
            pass  # renamed already, by an earlier try at this journal

    if threads > 1 and len(entry["publish"]) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(rename, entry["publish"]))
    else:
        for pair in entry["publish"]:
            rename(pair)
    for stale in entry["remove"]:
        try:
            os.unlink(base / stale)
        except FileNotFoundError:
            continue
    try:
        os.unlink(journal)
    except FileNotFoundError:
        pass


def _warn_unfinished(journal: Path, reason: str) -> None:
    if str(journal) in _warned:
        return
    _warned.add(str(journal))
    try:
        hours = ", ".join(_read_journal(journal).get("hours", [])) or "unknown"
    except (OSError, ValueError, TypeError):
        hours = "unknown"
    print(f"vlf: archive hour(s) {hours} may be incomplete: an interrupted publish ({journal}) "
          f"could not be finished here ({reason})", file=sys.stderr)


def complete_publishes(base: str | Path) -> list[Path]:
    """Finish every publish a kill interrupted under the data folder ``base`` (roll forward: the
    new version of its hours replaces the old whole).  Returns the journals finished.

    Costs one directory read when there is none.  A process that cannot write here (a read-only
    archive) says on stderr, once per journal, which hours may be incomplete, and goes on."""
    if not _journals(base):
        return []
    base = Path(base)
    done = []
    try:
        fd = _open_lock(base, create=True)
    except OSError:
        fd = _open_lock(base, create=False)  # cannot create it here: take it if it exists
    try:
        _lock(fd, exclusive=True)
        for journal in _journals(base):  # again, under the lock: another process may have finished them
            try:
                _apply(base, journal)
                done.append(journal)
            except FileNotFoundError:
                continue  # another process finished it between the listing and the read
            except ValueError as exc:  # not a journal of ours (a machine crash can leave it empty)
                _warn_unfinished(journal, f"unreadable journal: {exc}")
            except OSError as exc:
                _warn_unfinished(journal, exc.strerror or str(exc))
    finally:
        _close(fd)
    return done


@contextmanager
def _archive_held(base: str | Path) -> Iterator[None]:
    """Hold the archive still for a listing: any interrupted publish finished, and the publish
    lock taken shared (when one exists) until the block ends."""
    fd = _open_lock(base, create=False)
    try:
        _lock(fd, exclusive=False)
        for _ in range(2):  # a kill between the roll-forward and the shared lock: once more
            if not _journals(base):
                break
            _close(fd)
            fd = None
            complete_publishes(base)
            fd = _open_lock(base, create=False)
            _lock(fd, exclusive=False)
        yield
    finally:
        _close(fd)


def _relative(path: Path, base: Path) -> str:
    """``path`` as the journal names it: relative to the data folder, so a folder moved (or named
    otherwise) after a kill is still rolled forward; absolute if it is outside."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path.resolve())


class HourPublish:
    """The files of a batch of hours, each written to a temporary beside its path, then published
    together in one step by :meth:`publish` (see the comment above :data:`PUBLISH_DIR`).  The
    batch replaces its hours whole: their archive and quarantine files it did not write go."""

    def __init__(self, base: str | Path, hours: Iterable[datetime], threads: int = 1):
        self.base = Path(base)
        self.hours = list(hours)
        self.threads = threads
        self.written: list[tuple[Path, Path]] = []  # (temporary, path)
        self.journal: Path | None = None
        self._guard = threading.Lock()  # write_parquet runs in a thread pool

    def temp_for(self, path: str | Path) -> Path:
        """A temporary for ``path`` that :meth:`publish` renames onto it."""
        tmp = temp_beside(path)
        with self._guard:
            self.written.append((tmp, Path(path)))
        return tmp

    def write_parquet(self, table: pa.Table, path: str | Path) -> Path:
        """:func:`write_parquet`'s bytes, to a temporary of ``path`` until :meth:`publish`."""
        pq.write_table(table, self.temp_for(path), **PARQUET_OPTIONS)
        return Path(path)

    def _stale(self) -> list[Path]:
        finals = {path for _, path in self.written}
        old = _listed_archive_files(self.base, self.hours) + [
            q for q in (quarantine_path(self.base, h) for h in self.hours) if q.exists()]
        return sorted(set(old) - finals)

    def publish(self) -> None:
        """Journal, then apply: rename every temporary onto its path and remove the stale files."""
        if not self.written and not self._stale():
            return  # nothing written and nothing to remove (hours with no input): no journal, no folder
        fd = _open_lock(self.base, create=True)
        try:
            _lock(fd, exclusive=True)
            stale = self._stale()  # under the lock: what is there now, no publish half applied
            if not self.written and not stale:
                return
            entry = {
                "hours": sorted(f"{floor_hour(h):%Y-%m-%dT%H}Z" for h in self.hours),
                "publish": [[_relative(path, self.base), tmp.name] for tmp, path in sorted(self.written, key=lambda w: w[1])],
                "remove": [_relative(path, self.base) for path in stale],
            }
            name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{JOURNAL_SUFFIX}"
            self.journal = publish_dir(self.base) / name  # before it exists: discard then checks
            write_text(json.dumps(entry, separators=(",", ":")), self.journal)
            _apply(self.base, self.journal, self.threads)
        finally:
            _close(fd)

    def discard(self) -> None:
        """Remove the temporaries, unless a journal names them (then rolling forward needs them)."""
        if self.journal is not None and self.journal.exists():
            return
        for tmp, _ in self.written:
            tmp.unlink(missing_ok=True)
        self.written = []


@contextmanager
def publishing_hours(base: str | Path, hours: Iterable[datetime], threads: int = 1) -> Iterator[HourPublish]:
    """Write a batch of hours' files through the yielded :class:`HourPublish`; when the block
    ends they are published in one step (renamed into place on ``threads`` threads), replacing
    the hours whole.  If it fails before the journal, nothing of the batch is visible and its
    temporaries go; after it, the journal is left for :func:`complete_publishes`."""
    publish = HourPublish(base, hours, threads)
    try:
        yield publish
        publish.publish()
    except BaseException:
        publish.discard()
        raise
