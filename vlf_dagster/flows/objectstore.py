"""The data directory's durable copy on object storage (S3 or any filesystem pyarrow.fs opens).

One setting, ``$VLF_OBJECT_STORE`` (or the store resource's ``object_store``): a URL that
``pyarrow.fs.FileSystem.from_uri`` understands, e.g.
``s3://bucket/site?endpoint_override=127.0.0.1:9000&scheme=http`` (credentials from ``AWS_*``).

The local data directory stays the working copy: DuckDB reads local Parquet (its ``httpfs``
extension is not on PyPI for DuckDB 2.x and cannot be fetched offline) and the archive's journal
and the state folders need a POSIX folder.  What goes through here is what must outlive a machine
or reach another: files are uploaded when a step has written them and downloaded when a step reads
one that is missing locally or older than the store's.  An object appears whole or not at all (S3
publishes an upload on completion), so a reader never sees half a file; a download lands through
:func:`storage.atomic_path`.  A file's local modification time is set to its object's after each
transfer, which is how "older than the store's" is told without reading either.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.fs as pafs

from . import storage

ENV = "VLF_OBJECT_STORE"
TRANSFERS = 8  # uploads at once
_CHUNK = 8 << 20


class ObjectStoreError(RuntimeError):
    pass


def from_setting(url: str | None, base: str | Path) -> "ObjectStore | None":
    """The store the setting names (``url``, else ``$VLF_OBJECT_STORE``), or None for local files only."""
    url = url or os.environ.get(ENV, "")
    return ObjectStore(url, base) if url else None


class ObjectStore:
    """Files of the data directory ``base`` mirrored under a prefix of an object store."""

    def __init__(self, url: str, base: str | Path):
        try:
            self.fs, root = pafs.FileSystem.from_uri(url)
        except (pa.ArrowException, ValueError, OSError) as err:
            raise ObjectStoreError(f"{ENV}={url!r}: not a store pyarrow.fs can open: {err}") from None
        self.url = url
        self.root = root.rstrip("/")
        self.base = Path(base)

    def key(self, path: str | Path) -> str:
        rel = Path(path).resolve().relative_to(self.base.resolve()).as_posix()
        return self.root if rel == "." else f"{self.root}/{rel}"

    def path(self, key: str) -> Path:
        return self.base / key[len(self.root) + 1:]

    # --- listing -----------------------------------------------------------------------------

    def infos(self, folder: str | Path) -> dict[Path, pafs.FileInfo]:
        """The objects under a folder of the data directory, by their local path."""
        selector = pafs.FileSelector(self.key(folder), recursive=True, allow_not_found=True)
        return {self.path(i.path): i for i in self.fs.get_file_info(selector)
                if i.type == pafs.FileType.File and not storage.is_temporary(i.base_name)}

    def info(self, path: str | Path) -> pafs.FileInfo | None:
        found = self.fs.get_file_info(self.key(path))
        return found if found.type == pafs.FileType.File else None

    # --- transfers ----------------------------------------------------------------------------

    def push(self, paths: Iterable[str | Path], *, changed: bool = False) -> int:
        """Upload the files (a folder: every file in it) the store lacks or holds another version of;
        ``changed``: the caller knows each was written since its last upload (no check first).
        Several at once: each upload waits on the network, not the CPU."""
        def send(path: Path) -> int:
            if not changed and (remote := self.info(path)) is not None and _same(path, remote):
                return 0
            with open(path, "rb") as source, self.fs.open_output_stream(self.key(path)) as sink:
                shutil.copyfileobj(source, sink, _CHUNK)
            _stamp(path, self.info(path))
            return 1

        with ThreadPoolExecutor(TRANSFERS) as pool:
            return sum(pool.map(send, _files(paths)))

    def pull(self, paths: Iterable[str | Path]) -> int:
        """Download each file (or folder) whose local copy is missing or older than the store's.

        A local file newer than its object is this machine's own write, not yet pushed: kept."""
        fetched = 0
        for path in paths:
            path = Path(path)
            remote = self.info(path)
            # no object of that name: a folder's objects (a segmented artifact's), if it names no file
            wanted = {path: remote} if remote is not None else self.infos(path) if not path.suffix else {}
            for local, info in wanted.items():
                if _behind(local, info):
                    self._download(local, info)
                    fetched += 1
        return fetched

    def pull_listed(self, infos: dict[Path, pafs.FileInfo]) -> int:
        """Download the listed objects whose local copy is missing or older."""
        stale = [(p, i) for p, i in infos.items() if _behind(p, i)]
        for local, info in stale:
            self._download(local, info)
        return len(stale)

    def remove(self, paths: Iterable[str | Path]) -> None:
        for path in paths:
            self.fs.delete_file(self.key(path))

    def _download(self, local: Path, info: pafs.FileInfo) -> None:
        with storage.atomic_path(local) as tmp, self.fs.open_input_stream(info.path) as source, \
                open(tmp, "wb") as sink:
            shutil.copyfileobj(source, sink, _CHUNK)
        _stamp(local, info)


def _files(paths: Iterable[str | Path]) -> list[Path]:
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not storage.is_temporary(p.name))
        elif path.is_file():
            found.append(path)
    return found


def _same(local: Path, remote: pafs.FileInfo) -> bool:
    """The local file is the object's version: same size and the object's time (set by _stamp)."""
    try:
        stat = local.stat()
    except FileNotFoundError:
        return False
    return stat.st_size == remote.size and remote.mtime_ns is not None and abs(stat.st_mtime_ns - remote.mtime_ns) < 1_000_000


def _behind(local: Path, remote: pafs.FileInfo) -> bool:
    """The local copy is missing, older than the object, or of the object's time but not its size."""
    try:
        stat = local.stat()
    except FileNotFoundError:
        return True
    if remote.mtime_ns is None:
        return stat.st_size != remote.size
    if abs(stat.st_mtime_ns - remote.mtime_ns) < 1_000_000:
        return stat.st_size != remote.size
    return stat.st_mtime_ns < remote.mtime_ns


def _stamp(local: Path, remote: pafs.FileInfo | None) -> None:
    if remote is not None and remote.mtime_ns is not None:
        os.utime(local, ns=(remote.mtime_ns, remote.mtime_ns))
