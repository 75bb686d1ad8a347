"""Landing input -> validated flow records, with every rejected record kept and explained.

A landing file is read into the flow schema row by row *in SQL*: DuckDB ``TRY_CAST``s each
column to its schema type, and a row whose required value is missing or does not fit is moved
to quarantine with its origin (``file:row``) and a reason.  Good rows of the same file still land.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from .sql import ident, literal
from .schema import FLOW_SCHEMA, MS_PER_HOUR, REQUIRED_FIELDS, conform, empty_table

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
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW landing AS SELECT *, row_number() OVER () AS _row FROM read_parquet({literal(path)}, hive_partitioning = false)")
        present = {r[0] for r in con.execute("DESCRIBE landing").fetchall()}
    except duckdb.Error as exc:
        reason = f"unreadable Parquet: {str(exc).splitlines()[0]}"
        return IngestResult(empty_table(), quarantine_table([str(path)], [reason], [""]), {reason: 1})
    unknown = sorted(present - set(FLOW_SCHEMA.names) - {"_row"})
    missing = [f for f in REQUIRED_FIELDS if f not in present]
    if missing or unknown:
        reason = "missing field(s) " + ", ".join(missing) if missing else "unknown field(s) " + ", ".join(unknown)
        return IngestResult(empty_table(), quarantine_table([str(path)], [reason], [""]), {reason: 1})

    casts, problems = [], []
    for f in FLOW_SCHEMA:
        if f.name not in present:
            continue
        duck = _DUCK_TYPES[f.type]
        cast = f"TRY_CAST({ident(f.name)} AS {duck})"
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
    reason_sql = "CASE " + " ".join(problems) + " ELSE NULL END"
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


READERS = {".parquet": read_landing_parquet}


def read_landing_file(path: str | Path, **options) -> IngestResult:
    """Read one landing file with the reader its suffix selects; unknown kinds are quarantined."""
    path = Path(path)
    reader = READERS.get(path.suffix)
    if reader is None:
        reason = f"no reader for landing files of kind {path.suffix or '(none)'!r}"
        return IngestResult(empty_table(), quarantine_table([str(path)], [reason], [""]), {reason: 1})
    return reader(path, **options)
