"""Packing an hour of landing input into SiLK's archive layout, and reading the archive back."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .flowtypes import classify, type_name
from .ingest import empty_quarantine, read_landing_file
from .schema import FLOW_SCHEMA, MS_PER_HOUR, empty_table
from .site import Site
from .storage import archive_files, archive_path, hour_ms, landing_dir, quarantine_path, write_parquet


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


def pack_hour(data_dir: str | Path, hour: datetime, site: Site, *, plausibility: bool = True) -> PackResult:
    """Read the hour's landing files, classify by flowtype and write one file per flowtype and sensor.

    Rejected records go to the hour's quarantine file.  Archive files of the hour that the new
    input no longer produces are removed, so re-packing an hour replaces it whole.
    """
    files = sorted(p for p in landing_dir(data_dir, hour).glob("*") if p.is_file() and not p.name.startswith("."))
    result = PackResult(hour=hour, landing_files=files)
    good, bad, reasons = [], [], Counter()
    for path in files:
        ingested = read_landing_file(path, hour_start_ms=hour_ms(hour), plausibility=plausibility)
        good.append(ingested.flows)
        bad.append(ingested.quarantine)
        reasons.update(ingested.reasons)
    flows = pa.concat_tables(good) if good else empty_table()
    quarantine = pa.concat_tables(bad) if bad else empty_quarantine()

    flowtype = classify(flows, site)
    index = FLOW_SCHEMA.get_field_index("flowtype")
    flows = flows.set_column(index, FLOW_SCHEMA.field(index), pa.array(flowtype, pa.uint8()))
    written: list[Path] = []
    if flows.num_rows:
        sensor = flows.column("sensor").to_numpy()
        groups = np.unique(np.stack([flowtype.astype(np.int64), sensor.astype(np.int64)], axis=1), axis=0)
        for ft, sensor_id in groups:
            part = flows.filter(pc.and_(pc.equal(flows.column("flowtype"), int(ft)), pc.equal(flows.column("sensor"), int(sensor_id))))
            part = part.sort_by([("sTime", "ascending")])
            path = archive_path(data_dir, int(ft), site.sensor_name(int(sensor_id)), hour)
            written.append(write_parquet(part, path))
            result.by_flowtype[type_name(int(ft))] = result.by_flowtype.get(type_name(int(ft)), 0) + part.num_rows
    for stale in set(archive_files(data_dir, [hour])) - set(written):
        stale.unlink()

    qpath = quarantine_path(data_dir, hour)
    if quarantine.num_rows:
        result.quarantine_file = write_parquet(quarantine, qpath)
    elif qpath.exists():
        qpath.unlink()
    result.flows = flows.num_rows
    result.quarantined = quarantine.num_rows
    result.reasons = dict(reasons)
    result.archive_files = sorted(written)
    return result


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
    start = hour_ms(hour)
    con = duckdb.connect()
    row = con.execute(
        "SELECT count(*), "
        "count(*) FILTER (WHERE packets > bytes), "
        "count(*) FILTER (WHERE packets = 0), "
        "count(*) FILTER (WHERE sTime < ? OR sTime >= ?) "
        "FROM read_parquet(?)",
        [start, start + MS_PER_HOUR, [str(p) for p in files]],
    ).fetchone()
    violations["packets > bytes"], violations["zero packets"], violations["sTime outside hour"] = row[1], row[2], row[3]
    return ArchiveCheck(len(files), row[0], violations)
