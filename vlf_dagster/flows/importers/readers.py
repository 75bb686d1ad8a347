"""Importing a file: its format (named, or sniffed through the registry), read by the format's module,
and the result landed where the pipeline's hourly archive picks it up.

:func:`land` writes the good records into ``landing/dt=YYYY-MM-DD/hour=HH/<source>.parquet``, one
file per hour in which flows *start*, and the quarantine to ``quarantine/import/<source>.parquet``;
re-landing a source replaces its files and removes the ones it no longer has.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..ingest import QUARANTINE_SCHEMA
from ..schema import FLOW_SCHEMA, MS_PER_HOUR
from ..storage import landing_dir, write_parquet
from .formats import BY_NAME, FORMATS, LOCAL_TIME_FORMATS, REGISTRY
from .result import ImportFormatError, ImportResult, ReadOptions, hour_datetime


def _module(name: str):
    """The module of this package that reads the format ``name``."""
    return importlib.import_module(f".{BY_NAME[name].module}", __package__)


def sniff_format(data: bytes) -> str | None:
    """The format of an input from its first bytes and lines, or None."""
    for entry in REGISTRY:
        if entry.magic and data.startswith(entry.magic):
            return entry.name
    head = data[:65536].decode("utf-8", errors="replace")
    lines = [line.strip() for line in head.splitlines() if line.strip()][:20]
    if not lines:
        return None
    for entry in REGISTRY:
        if not entry.magic:
            sniff = getattr(_module(entry.name), "sniff", None)
            if sniff is not None and sniff(lines):
                return entry.name
    return None


def check_time_zone(tz: str) -> str:
    """An IANA zone name pyarrow's zone database knows, e.g. ``Europe/Prague``."""
    try:
        pc.assume_timezone(pa.array([0], pa.timestamp("s")), timezone=tz)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ImportFormatError(f"unknown time zone {tz!r} ({str(exc).splitlines()[0]})") from None
    return tz


def import_file(path: str | Path, format: str = "auto", *, fields: str | Sequence[str] | None = None,
                delimiter: str | None = None, old_times: str | None = None, tz: str | None = None) -> ImportResult:
    """Import one file; ``format`` is one of :data:`.formats.FORMATS` or ``auto`` (sniffed).

    ``tz`` reads the date-time text of :data:`.formats.LOCAL_TIME_FORMATS` as wall-clock time in that zone."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if format == "auto":
        sniffed = sniff_format(head)
        if sniffed is None:
            raise ImportFormatError(f"{path}: cannot tell its format; give --format ({', '.join(FORMATS)})")
        format = sniffed
    if tz is not None:
        check_time_zone(tz)
        if format not in LOCAL_TIME_FORMATS:
            raise ImportFormatError(f"{path}: --tz applies to {', '.join(LOCAL_TIME_FORMATS)} text; {format} times are epoch times")
    if format not in BY_NAME:
        raise ImportFormatError(f"unknown format {format!r}: expected auto or one of {', '.join(FORMATS)}")
    options = ReadOptions(fields=fields, delimiter=delimiter, old_times=old_times, tz=tz)
    return _module(format).read(path, head, options)


_SOURCE_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def source_name(path: str | Path) -> str:
    """A landing source name from a file name: its base name, other characters as ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).name).lstrip(".") or "import"
    return name


def check_source_name(name: str) -> str:
    if not _SOURCE_OK.match(name or "") or len(name) > 200:
        raise ValueError(f"invalid source name {name!r}: use letters, digits, '.', '_' and '-' (not starting with '.' or '-')")
    return name


@dataclass
class LandResult:
    source: str
    files: list[Path]
    hours: dict[datetime, int]
    quarantine: Path
    removed: list[Path]

    @property
    def records(self) -> int:
        return sum(self.hours.values())


def land(result: ImportResult | Iterable[ImportResult], data_dir: str | Path, source_name: str) -> LandResult:
    """Write an import's records into the landing area, one file per start hour, and its quarantine.

    ``landing/dt=YYYY-MM-DD/hour=HH/<source_name>.parquet`` (atomic writes, sorted by sTime) and
    ``quarantine/import/<source_name>.parquet``.  Files this source landed before in other hours
    are removed, so re-importing a file replaces its records and never duplicates them.
    Several results (e.g. the files of one ``--source``) land together.
    """
    check_source_name(source_name)
    results = [result] if isinstance(result, ImportResult) else list(result)
    flows = pa.concat_tables([r.flows for r in results]) if results else FLOW_SCHEMA.empty_table()
    quarantine = pa.concat_tables([r.quarantine for r in results]) if results else QUARANTINE_SCHEMA.empty_table()
    data_dir = Path(data_dir)
    files: list[Path] = []
    hours: dict[datetime, int] = {}
    if flows.num_rows:
        s_time = flows.column("sTime").to_numpy()
        order = np.argsort(s_time, kind="stable")
        flows = flows.take(pa.array(order))
        hour_index = s_time[order] // MS_PER_HOUR
        starts = np.flatnonzero(np.r_[True, hour_index[1:] != hour_index[:-1]])
        ends = np.r_[starts[1:], len(hour_index)]
        for start, end in zip(starts, ends):
            hour = hour_datetime(int(hour_index[start]))
            path = landing_dir(data_dir, hour) / f"{source_name}.parquet"
            write_parquet(flows.slice(int(start), int(end - start)), path)
            files.append(path)
            hours[hour] = int(end - start)
    keep = {p.resolve() for p in files}
    removed = []
    for old in sorted((data_dir / "landing").glob(f"dt=*/hour=*/{source_name}.parquet")):
        if old.resolve() not in keep:
            old.unlink()
            removed.append(old)
    quarantine_file = write_parquet(quarantine, data_dir / "quarantine" / "import" / f"{source_name}.parquet")
    return LandResult(source_name, files, hours, quarantine_file, removed)
