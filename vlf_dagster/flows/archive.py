"""Packing an hour of landing input into SiLK's archive layout, and reading the archive back."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .flowtypes import classify, type_name
from .ingest import read_landing_batch
from .schema import FLOW_SCHEMA, MS_PER_HOUR
from .site import Site
from .storage import archive_path, complete_publishes, hour_ms, landing_files, publishing_hours, quarantine_path


@dataclass
class PackResult:
    hour: datetime
    landing_files: list[Path]
    flows: int = 0
    quarantined: int = 0
    by_flowtype: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    archive_files: list[Path] = field(default_factory=list)
    quarantine_file: Path | None = None
    check: "ArchiveCheck | None" = None  # the archive rules over the records written


def pack_hour(data_dir: str | Path, hour: datetime, site: Site, *, plausibility: bool = True) -> PackResult:
    """:func:`pack_hours` for one hour."""
    return pack_hours(data_dir, [hour], site, plausibility=plausibility)[0]


@dataclass
class PackedBatch:
    """What :func:`pack_batch` wrote: each hour's result, and the records themselves (in archive
    order: hour, flowtype, sensor, sTime), for what the same step derives from them."""

    results: list[PackResult]
    flows: pa.Table


def pack_hours(
    data_dir: str | Path, hours: Sequence[datetime], site: Site, *, plausibility: bool = True, threads: int = 2
) -> list[PackResult]:
    """:func:`pack_batch`'s per-hour results."""
    return pack_batch(data_dir, hours, site, plausibility=plausibility, threads=threads).results


def pack_batch(
    data_dir: str | Path, hours: Sequence[datetime], site: Site, *, plausibility: bool = True, threads: int = 2
) -> PackedBatch:
    """Pack a batch of hours: read their landing files, classify by flowtype and write one archive
    file per hour, flowtype and sensor, all in a few vectorised passes over the whole batch.

    Rejected records go to each hour's quarantine file.  Archive files of an hour that the new
    input no longer produces are removed, so re-packing an hour replaces it whole; an hour's files
    do not depend on which batch it was packed in.  Each result also carries the archive check of
    its hour (:class:`ArchiveCheck`), computed over exactly the records written.

    The batch is published in one step (:func:`~.storage.publishing_hours`): files are written to
    temporaries, then a journal renames them all into place and removes the stale ones, so a kill
    leaves either the previous version of every hour or, once rolled forward, the new one, never
    part of an hour.  A publish an earlier kill left is finished first.
    """
    complete_publishes(data_dir)
    hours = list(hours)
    starts = [hour_ms(h) for h in hours]
    inputs = {i: landing_files(data_dir, h) for i, h in enumerate(hours)}
    batch = read_landing_batch(
        [(path, i, starts[i]) for i, paths in inputs.items() for path in paths], plausibility=plausibility, threads=threads
    )
    flows, flow_hours = batch.flows, batch.flow_hours
    flowtype = classify(flows, site)
    index = FLOW_SCHEMA.get_field_index("flowtype")
    flows = flows.set_column(index, FLOW_SCHEMA.field(index), pa.array(flowtype, pa.uint8()))
    sensor = flows.column("sensor").to_numpy()
    s_time = flows.column("sTime").to_numpy()
    # hour, flowtype, sensor, then start time; lexsort is stable, so ties keep the input order
    order = np.lexsort((s_time, sensor, flowtype, flow_hours))
    flows = flows.take(pa.array(order)) if len(order) else flows
    keys = np.stack([flow_hours[order], flowtype[order].astype(np.int32), sensor[order].astype(np.int32)], axis=1)
    cuts = np.flatnonzero(np.any(keys[1:] != keys[:-1], axis=1)) + 1 if len(keys) else np.zeros(0, np.int64)
    bounds = list(zip(np.r_[0, cuts], np.r_[cuts, len(keys)])) if len(keys) else []

    results = [PackResult(hour=h, landing_files=inputs[i]) for i, h in enumerate(hours)]
    jobs = []
    for a, b in bounds:
        i, ft, sensor_id = (int(v) for v in keys[a])
        path = archive_path(data_dir, ft, site.sensor_name(sensor_id), hours[i])
        jobs.append((flows.slice(a, b - a), path))
        r = results[i]
        r.archive_files.append(path)
        r.by_flowtype[type_name(ft)] = r.by_flowtype.get(type_name(ft), 0) + int(b - a)
        r.flows += int(b - a)

    sorted_hours = flow_hours[order]
    checks = _check_records(flows, sorted_hours, np.asarray(starts, np.int64), len(hours),
                            schema_ok=flows.schema.remove_metadata().equals(FLOW_SCHEMA.remove_metadata()))
    quarantine_hours = batch.quarantine_hours
    q_order = np.argsort(quarantine_hours, kind="stable")
    quarantine = batch.quarantine.take(pa.array(q_order)) if len(q_order) else batch.quarantine
    q_cuts = np.searchsorted(quarantine_hours[q_order], np.arange(len(hours) + 1))
    for i, r in enumerate(results):
        a, b = int(q_cuts[i]), int(q_cuts[i + 1])
        qpath = quarantine_path(data_dir, hours[i])
        if b > a:
            jobs.append((quarantine.slice(a, b - a), qpath))
            r.quarantine_file = qpath
        r.quarantined = b - a
        r.reasons = dict(batch.reasons[i]) if i < len(batch.reasons) else {}
        r.archive_files.sort()
        r.check = checks[i]
        r.check.files = len(r.archive_files)
    # the hours' other archive and quarantine files (an old quarantine, a flowtype gone) go with the publish
    with publishing_hours(data_dir, hours, threads=max(1, threads)) as publish:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:  # pyarrow writes release the GIL
            list(pool.map(lambda job: publish.write_parquet(*job), jobs))
    return PackedBatch(results, flows)


def _check_records(flows: pa.Table, flow_hours: np.ndarray, starts: np.ndarray, n_hours: int, *,
                   schema_ok: bool) -> list["ArchiveCheck"]:
    """The archive rules (packets <= bytes, packets > 0, sTime in its hour) over records, per hour:
    :func:`pack_batch` applies them to what it writes, :func:`check_archive_hour` to files."""
    packets, size = flows.column("packets").to_numpy(), flows.column("bytes").to_numpy()
    s_time = flows.column("sTime").to_numpy()
    outside = (s_time < starts[flow_hours]) | (s_time >= starts[flow_hours] + MS_PER_HOUR) if len(s_time) else np.zeros(0, bool)
    count = lambda mask: np.bincount(flow_hours[mask], minlength=n_hours)  # noqa: E731
    records = np.bincount(flow_hours, minlength=n_hours)
    over, zero, out = count(packets > size), count(packets == 0), count(outside)
    return [
        ArchiveCheck(0, int(records[i]), {"schema": 0 if schema_ok else 1, "packets > bytes": int(over[i]),
                                         "zero packets": int(zero[i]), "sTime outside hour": int(out[i])})
        for i in range(n_hours)
    ]


@dataclass
class ArchiveCheck:
    """Outcome of :func:`check_archive_hour`: how many records break each rule."""

    files: int
    records: int
    violations: dict[str, int]

    @property
    def passed(self) -> bool:
        return not any(self.violations.values())


def check_archive_hour(files: list[Path], hour: datetime) -> ArchiveCheck:
    """Verify archive files of one hour: schema, packets <= bytes, packets > 0, sTime in the hour.

    Port and protocol ranges are part of the schema check: the columns must be uint16 / uint8.
    """
    violations = {"schema": 0, "packets > bytes": 0, "zero packets": 0, "sTime outside hour": 0}
    if not files:
        return ArchiveCheck(0, 0, violations)
    for path in files:
        if not pq.read_schema(path).remove_metadata().equals(FLOW_SCHEMA.remove_metadata()):
            violations["schema"] += 1
    if violations["schema"]:
        return ArchiveCheck(len(files), 0, violations)
    table = pa.concat_tables([pq.read_table(p, columns=["packets", "bytes", "sTime"]) for p in files])
    check = _check_records(table, np.zeros(table.num_rows, np.int64), np.array([hour_ms(hour)], np.int64), 1,
                           schema_ok=True)[0]  # every file's schema was checked above
    check.files = len(files)
    return check
