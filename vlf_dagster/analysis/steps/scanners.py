"""Scan detection over the archive: each month's scanners (rwscan's models) and the window's."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ...flows import duck
from ...flows.schema import conform_columns
from ...flows.sets import IPSet
from ...flows.sql import NO_HIVE, glob_escaped, ident
from ...flows.storage import month_of, write_parquet
from ...flows.tools.scan import COLUMNS, HYBRID, ICMP, SCANNER_SCHEMA, TCP, UDP, find_scanners

BUCKET_ROWS = 4_000_000  # records held at once (~0.5 GB with the walk's arrays): sources split by a hash of sIP
WINDOW_SCHEMA = pa.schema([pa.field("month", pa.string()), *SCANNER_SCHEMA])


def month_scanners(inbound: Sequence[str | Path], internal: IPSet, out: str | Path, scan_model: int = HYBRID) -> pa.Table:
    """rwscan over the month's inbound records, written sorted by sIP to ``out``.

    A source's walk needs all of its records at once, not everyone's: sources are split into
    buckets by a hash of sIP, each bucket read and judged alone, so memory stays bounded at scale."""
    files = [str(p) for p in inbound]
    parts = []
    if files:
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        buckets = rows // BUCKET_ROWS + 1
        select = ", ".join(ident(c) for c in COLUMNS)
        with duck.connect() as con:
            for bucket in range(buckets):
                table = con.sql(f"SELECT {select} FROM read_parquet($files, {NO_HIVE}) WHERE protocol IN ({ICMP}, {TCP}, {UDP})"
                                f" AND hash(sIP) % {buckets} = {bucket}",
                                params={"files": [glob_escaped(f) for f in files]}).to_arrow_table()
                parts.append(find_scanners(conform_columns(table, COLUMNS), internal, scan_model=scan_model))
    found = pa.concat_tables(parts).sort_by("sIP") if parts else SCANNER_SCHEMA.empty_table()
    write_parquet(found, out)
    return found


def window_scanners(monthly: Sequence[Path], out: str | Path) -> pa.Table:
    """The months' scanner rows with their month (from the file name ``month=YYYY-MM``), by sIP and month."""
    tables = []
    for path in sorted(monthly):
        rows = pq.read_table(path).cast(SCANNER_SCHEMA)
        tables.append(rows.add_column(0, "month", pa.array([month_of(path)] * rows.num_rows, pa.string())))
    table = pa.concat_tables(tables).sort_by([("sIP", "ascending"), ("month", "ascending")]) if tables \
        else WINDOW_SCHEMA.empty_table()
    write_parquet(table, out)
    return table

