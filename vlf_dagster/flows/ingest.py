"""Landing input -> validated flow records, with every rejected record kept and explained.

A landing file is read into the flow schema row by row *in SQL*: DuckDB ``TRY_CAST``s each
column to its schema type, and a row whose required value is missing or does not fit is moved
to quarantine with its origin (``file:row``) and a reason.  Good rows of the same file still land.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .sql import ident, path_literal
from .schema import FLOW_SCHEMA, MS_PER_HOUR, REQUIRED_FIELDS, conform, empty_table
from . import duck

# Arrow type -> DuckDB type used to TRY_CAST landing values
_DUCK_TYPES = {
    pa.uint8(): "UTINYINT",
    pa.uint16(): "USMALLINT",
    pa.uint32(): "UINTEGER",
    pa.uint64(): "UBIGINT",
    pa.int64(): "BIGINT",
    pa.binary(16): "BLOB",
}

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("origin", pa.string()),  # file:row (1-based), or file when the whole file failed
        pa.field("reason", pa.string()),
        pa.field("record", pa.string()),  # the rejected input, as JSON text
    ]
)


class LandingError(ValueError):
    pass


@dataclass
class IngestResult:
    flows: pa.Table
    quarantine: pa.Table
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return self.quarantine.num_rows


def empty_quarantine() -> pa.Table:
    return QUARANTINE_SCHEMA.empty_table()


def quarantine_table(origins: list[str], reasons: list[str], records: list[str]) -> pa.Table:
    return pa.table({"origin": origins, "reason": reasons, "record": records}, schema=QUARANTINE_SCHEMA)


def read_landing_parquet(
    path: str | Path, *, hour_start_ms: int | None = None, plausibility: bool = True
) -> IngestResult:
    """Read a flow-schema Parquet landing file (what the simulator and converters write).

    With ``hour_start_ms``, rows that do not start in that hour are rejected (an archive hour
    holds the flows that *started* in it).  With ``plausibility``, rows with zero packets or
    more packets than bytes are rejected too.
    """
    path = Path(path)
    with duck.connect() as con:
        try:
            con.execute(f"CREATE VIEW landing AS SELECT *, row_number() OVER () AS _row FROM read_parquet({path_literal(path)}, hive_partitioning = false)")
            present = {r[0] for r in con.execute("DESCRIBE landing").fetchall()}
        except duckdb.Error as exc:
            reason = f"unreadable Parquet: {str(exc).splitlines()[0]}"
            return IngestResult(empty_table(), quarantine_table([str(path)], [reason], [""]), {reason: 1})
        unknown = sorted(present - set(FLOW_SCHEMA.names) - {"_row"})
        missing = [f for f in REQUIRED_FIELDS if f not in present]
        if missing or unknown:
            reason = "missing field(s) " + ", ".join(missing) if missing else "unknown field(s) " + ", ".join(unknown)
            return IngestResult(empty_table(), quarantine_table([str(path)], [reason], [""]), {reason: 1})
        casts, reason_sql = _checks_sql(present, hour_start_ms, plausibility)
        con.execute(f"CREATE TABLE checked AS SELECT {', '.join(casts)}, _row, {reason_sql} AS _reason FROM landing")
        good = con.sql(
            f"SELECT {', '.join(ident(c) for c in FLOW_SCHEMA.names if c in present)} FROM checked WHERE _reason IS NULL ORDER BY _row"
        ).to_arrow_table()
        bad = con.sql(
            "SELECT ? || ':' || c._row AS origin, c._reason AS reason, to_json(l)::VARCHAR AS record "
            "FROM checked c JOIN landing l USING (_row) WHERE c._reason IS NOT NULL ORDER BY c._row", params=[str(path)]).to_arrow_table()
        reasons = dict(con.execute("SELECT _reason, count(*) FROM checked WHERE _reason IS NOT NULL GROUP BY 1").fetchall())
    flows = conform(good, source=str(path))
    return IngestResult(flows, bad.cast(QUARANTINE_SCHEMA), reasons)


def _checks_sql(present: set[str], hour_start_ms: int | None, plausibility: bool) -> tuple[list[str], str]:
    """The casts of the ``present`` flow columns to the flow schema's types, and a CASE giving
    each row's first problem (NULL for a good row), as :func:`read_landing_parquet` checks them."""
    casts, problems = [], []
    for f in FLOW_SCHEMA:
        if f.name not in present:
            continue
        duck_type = _DUCK_TYPES[f.type]
        cast = f"TRY_CAST({ident(f.name)} AS {duck_type})"
        casts.append(f"{cast} AS {ident(f.name)}")
        if not f.nullable:
            problems.append(
                f"WHEN {ident(f.name)} IS NULL THEN 'field {f.name} is missing' "
                f"WHEN {cast} IS NULL THEN 'field {f.name} out of range or not a number'"
            )
        else:
            problems.append(
                f"WHEN {ident(f.name)} IS NOT NULL AND octet_length({ident(f.name)}::BLOB) <> 16 "
                f"THEN 'field {f.name} is not a 16-byte address'"
            )
    if hour_start_ms is not None:
        problems.append(
            f"WHEN TRY_CAST(sTime AS BIGINT) NOT BETWEEN {int(hour_start_ms)} AND {int(hour_start_ms) + MS_PER_HOUR - 1} "
            "THEN 'starts outside the hour'"
        )
    if plausibility:
        problems.append("WHEN TRY_CAST(packets AS UBIGINT) = 0 THEN 'zero packets'")
        problems.append("WHEN TRY_CAST(packets AS UBIGINT) > TRY_CAST(bytes AS UBIGINT) THEN 'more packets than bytes'")
    return casts, "CASE " + " ".join(problems) + " ELSE NULL END"


READERS = {".parquet": read_landing_parquet}


def read_landing_file(path: str | Path, **options) -> IngestResult:
    """Read one landing file with the reader its suffix selects; unknown kinds are quarantined."""
    path = Path(path)
    reader = READERS.get(path.suffix)
    if reader is None:
        reason = f"no reader for landing files of kind {path.suffix or '(none)'!r}"
        return IngestResult(empty_table(), quarantine_table([str(path)], [reason], [""]), {reason: 1})
    return reader(path, **options)


# --- many landing files at once --------------------------------------------------------------


@dataclass
class BatchIngest:
    """Landing files of several hours read together: good flows and quarantined records, each row
    tagged with the position of its hour in the batch."""

    flows: pa.Table
    flow_hours: np.ndarray  # int32, hour position of each flow
    quarantine: pa.Table
    quarantine_hours: np.ndarray  # int32, hour position of each quarantined record
    reasons: list[Counter]  # per hour position: reason -> records


def _holds_flow_schema(path: Path) -> bool:
    """Whether a landing file is Parquet with exactly the flow schema (what the simulator, the
    collector and the importers write): such files need no casts, only the record rules."""
    try:
        return pq.read_schema(path).remove_metadata().equals(_PLAIN_FLOW_SCHEMA)
    except (OSError, pa.ArrowException):
        return False


_PLAIN_FLOW_SCHEMA = FLOW_SCHEMA.remove_metadata()


def _record_rules(table: pa.Table, hour_start_ms: np.ndarray, plausibility: bool) -> np.ndarray:
    """The quarantine reason index of each row (0: good), in read_landing_parquet's order of rules."""
    n = table.num_rows
    reason = np.zeros(n, dtype=np.int8)

    def mark(mask: np.ndarray, code: int) -> None:
        reason[(reason == 0) & mask] = code

    for code, name in enumerate(_NULL_FIELDS, start=1):  # schema types guarantee range; only nulls can fail
        column = table.column(name)
        if column.null_count:
            mark(column.is_null().to_numpy(zero_copy_only=False), code)
    start = table.column("sTime").to_numpy()
    mark((start < hour_start_ms) | (start >= hour_start_ms + MS_PER_HOUR), _OUTSIDE)
    if plausibility:
        packets = table.column("packets").to_numpy()
        mark(packets == 0, _ZERO)
        mark(packets > table.column("bytes").to_numpy(), _MORE_PACKETS)
    return reason


_NULL_FIELDS = tuple(f.name for f in FLOW_SCHEMA if not f.nullable)
_OUTSIDE, _ZERO, _MORE_PACKETS = len(_NULL_FIELDS) + 1, len(_NULL_FIELDS) + 2, len(_NULL_FIELDS) + 3
_REASON_TEXT = ("", *(f"field {name} is missing" for name in _NULL_FIELDS),
                "starts outside the hour", "zero packets", "more packets than bytes")


def read_landing_batch(files: Sequence[tuple[Path, int, int]], *, plausibility: bool = True, threads: int = 2) -> BatchIngest:
    """Read ``(path, hour position, hour start ms)`` landing files in one vectorised pass.

    Files with exactly the flow schema are read by pyarrow (in ``threads`` threads) and checked with
    numpy, all at once; any other file goes through :func:`read_landing_file` alone, with the same
    rules and reasons.  Flows keep their order: by the input order of the files, then by row.
    """
    n_hours = max((h for _, h, _ in files), default=-1) + 1
    reasons = [Counter() for _ in range(n_hours)]
    flow_parts: list[pa.Table] = []
    hour_parts: list[np.ndarray] = []
    start_parts: list[np.ndarray] = []
    origin_parts: list[tuple[str, np.ndarray]] = []  # file name, 1-based row of each flow in it
    unchecked_parts: list[np.ndarray] = []  # True: the record rules still have to look at the flow
    quarantine_parts: list[tuple[pa.Table, int]] = []

    def load(item):
        path, _, _ = item
        if path.suffix == ".parquet" and _holds_flow_schema(path):
            try:
                return pq.read_table(path, use_threads=False)
            except (OSError, pa.ArrowException):
                return None  # unreadable after all: the single-file reader explains it
        return None

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        loaded = list(pool.map(load, files))
    for (path, hour, start_ms), table in zip(files, loaded):
        if table is None:
            single = read_landing_file(path, hour_start_ms=start_ms, plausibility=plausibility)
            flow_parts.append(single.flows)
            hour_parts.append(np.full(single.flows.num_rows, hour, np.int32))
            start_parts.append(np.full(single.flows.num_rows, start_ms, np.int64))
            origin_parts.append((str(path), np.zeros(single.flows.num_rows, np.int64)))
            unchecked_parts.append(np.zeros(single.flows.num_rows, bool))  # read_landing_file applied them
            quarantine_parts.append((single.quarantine, hour))
            reasons[hour].update(single.reasons)
            continue
        table = pa.Table.from_arrays(table.columns, schema=FLOW_SCHEMA)
        flow_parts.append(table)
        hour_parts.append(np.full(table.num_rows, hour, np.int32))
        start_parts.append(np.full(table.num_rows, start_ms, np.int64))
        origin_parts.append((str(path), np.arange(1, table.num_rows + 1, dtype=np.int64)))
        unchecked_parts.append(np.ones(table.num_rows, bool))

    flows = pa.concat_tables(flow_parts) if flow_parts else empty_table()
    flow_hours = np.concatenate(hour_parts) if hour_parts else np.zeros(0, np.int32)
    starts = np.concatenate(start_parts) if start_parts else np.zeros(0, np.int64)
    unchecked = np.concatenate(unchecked_parts) if unchecked_parts else np.zeros(0, bool)
    reason = _record_rules(flows, starts, plausibility)
    reason[~unchecked] = 0
    bad = np.flatnonzero(reason)

    q_tables = [q for q, _ in quarantine_parts if q.num_rows]
    q_hours = [np.full(q.num_rows, h, np.int32) for q, h in quarantine_parts if q.num_rows]
    if len(bad):
        file_of_row = np.concatenate([np.full(len(h), i, np.int64) for i, h in enumerate(hour_parts)])
        row_in_file = np.concatenate([rows for _, rows in origin_parts])
        names = np.array([name for name, _ in origin_parts], dtype=object)
        origins = [f"{names[f]}:{r}" for f, r in zip(file_of_row[bad], row_in_file[bad])]  # only rejected rows
        texts = [_REASON_TEXT[c] for c in reason[bad]]
        records = records_as_json(flows.take(pa.array(bad)))
        q_tables.append(quarantine_table(origins, texts, records))
        q_hours.append(flow_hours[bad])
        for h, text in zip(flow_hours[bad], texts):
            reasons[h][text] += 1
        good = reason == 0
        flows, flow_hours = flows.filter(pa.array(good)), flow_hours[good]
    quarantine = pa.concat_tables(q_tables) if q_tables else empty_quarantine()
    quarantine_hours = np.concatenate(q_hours) if q_hours else np.zeros(0, np.int32)
    return BatchIngest(flows, flow_hours, quarantine, quarantine_hours, reasons)


def records_as_json(table: pa.Table) -> list[str]:
    """Each row as JSON text, as read_landing_parquet keeps a rejected record (DuckDB's to_json)."""
    with duck.connect() as con:
        con.register("rejected", table)
        return [r[0] for r in con.execute("SELECT to_json(r)::VARCHAR FROM rejected r").fetchall()]
