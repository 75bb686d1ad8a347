"""Running a compiled filter: :func:`execute` partitions Parquet files or an Arrow table in one
DuckDB query into pass / fail / all record tables and :class:`FilterStats`
(``--print-statistics``, ``--print-volume-statistics``); :func:`filtered_batches` streams the
passing records and :func:`write_filtered` has DuckDB write them to Parquet, so that memory stays
flat however many pass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ... import duck
from ...schema import FIELD_NAMES, FLOW_SCHEMA, TIME_ORDER, conform
from ...sql import NO_HIVE, glob_escaped, ident, literal
from .compiler import CompiledFilter, compile_filter
from .spec import FilterError, FilterSpec


@dataclass
class FilterStats:
    """What --print-statistics / --print-volume-statistics report."""

    files: int = 0
    records: int = 0
    packets: int = 0
    bytes: int = 0
    pass_records: int = 0
    pass_packets: int = 0
    pass_bytes: int = 0

    @property
    def fail_records(self) -> int:
        return self.records - self.pass_records

    @property
    def fail_packets(self) -> int:
        return self.packets - self.pass_packets

    @property
    def fail_bytes(self) -> int:
        return self.bytes - self.pass_bytes

    def summary(self) -> str:
        """rwfilter's one-line --print-statistics summary."""
        return (
            f"Files {self.files:5d}.  Read {self.records:10d}.  "
            f"Pass {self.pass_records:10d}. Fail  {self.fail_records:10d}."
        )

    def volume(self) -> str:
        """rwfilter's four-line --print-volume-statistics table."""
        rows = [
            f"{'':>5}|{'Recs':>18}|{'Packets':>18}|{'Bytes':>20}|{'Files':>10}|",
            f"{'Total':>5}|{self.records:18d}|{self.packets:18d}|{self.bytes:20d}|{self.files:10d}|",
            f"{'Pass':>5}|{self.pass_records:18d}|{self.pass_packets:18d}|{self.pass_bytes:20d}|{'':>10}|",
            f"{'Fail':>5}|{self.fail_records:18d}|{self.fail_packets:18d}|{self.fail_bytes:20d}|{'':>10}|",
        ]
        return "\n".join(rows)


@dataclass
class FilterResult:
    passed: pa.Table | None
    failed: pa.Table | None
    everything: pa.Table | None
    stats: FilterStats | None


_COLUMNS = ", ".join(ident(n) for n in FIELD_NAMES)
_PASS = "__vlf_pass"


def _duckdb_error(exc: Exception) -> FilterError:
    return FilterError(str(exc).strip().splitlines()[0])


def execute(
    spec: FilterSpec | CompiledFilter,
    *,
    files: Sequence[str | Path] | None = None,
    table: pa.Table | None = None,
    passed: bool = True,
    failed: bool = False,
    everything: bool = False,
    stats: bool = False,
) -> FilterResult:
    """Run the filter over Parquet ``files`` or an Arrow ``table`` in one DuckDB query.

    Returns the requested record tables (flow schema, input order kept) and the statistics.
    """
    if (files is None) == (table is None):
        raise TypeError("give exactly one of files= or table=")
    compiled = spec if isinstance(spec, CompiledFilter) else compile_filter(spec)
    n_files = len(files) if files is not None else 1
    if files is not None and not files:
        empty = FLOW_SCHEMA.empty_table()
        return FilterResult(
            empty if passed else None, empty if failed else None, empty if everything else None,
            FilterStats(files=0) if stats else None,
        )  # fmt: skip
    con = duck.connect()
    try:
        params = dict(compiled.params)
        for name, members in compiled.tables.items():
            con.register(name, members)
        # Set tests are joins, which do not keep row order: number the rows and sort back.
        ordered = bool(compiled.tables)
        if table is not None:
            source_table = conform(table) if not table.schema.equals(FLOW_SCHEMA, check_metadata=False) else table
            if ordered:
                source_table = source_table.append_column("__vlf_row", pa.array(np.arange(source_table.num_rows, dtype=np.int64)))
            con.register("__vlf_input", source_table)
            source, order = "__vlf_input", ' ORDER BY "__vlf_row"'
        else:
            params["__vlf_files"] = [glob_escaped(f) for f in files]
            if ordered:
                # Scan each distinct file once; the join repeats its rows for every position it has
                # in the input list, so a file named twice is read twice, in place, like rwfilter.
                params["__vlf_files"] = list(dict.fromkeys(glob_escaped(f) for f in files))
                con.register("__vlf_files", pa.table({"filename": [str(f) for f in files],
                                                      "__vlf_file": list(range(len(files)))}))
                source = (
                    f"(SELECT * FROM read_parquet($__vlf_files, filename = true, file_row_number = true, {NO_HIVE}) "
                    'JOIN "__vlf_files" USING (filename))'
                )
                order = ' ORDER BY "__vlf_file", "file_row_number"'
            else:
                source, order = f"read_parquet($__vlf_files, {NO_HIVE})", ""
        if not ordered:
            order = ""
        where = compiled.where

        result = FilterResult(None, None, None, None)
        if failed or everything:
            query = f"SELECT {_COLUMNS}, coalesce({where}, FALSE) AS {_PASS} FROM {source}{order}"
            rows = con.sql(query, params=params).to_arrow_table()
            mask = rows.column(_PASS)
            rows = conform(rows.drop_columns([_PASS]))
            if passed:
                result.passed = rows.filter(mask)
            if failed:
                result.failed = rows.filter(pc.invert(mask))
            if everything:
                result.everything = rows
            if stats:
                result.stats = _stats_from_tables(n_files, rows, rows.filter(mask))
            return result
        if passed:
            query = f"SELECT {_COLUMNS} FROM {source} WHERE {where}{order}"
            result.passed = conform(con.sql(query, params=params).to_arrow_table())
        if stats:
            query = (
                "SELECT count(*), coalesce(sum(packets), 0), coalesce(sum(bytes), 0), "
                f"count(*) FILTER (WHERE {_PASS}), coalesce(sum(packets) FILTER (WHERE {_PASS}), 0), "
                f"coalesce(sum(bytes) FILTER (WHERE {_PASS}), 0) "
                f"FROM (SELECT packets, bytes, coalesce({where}, FALSE) AS {_PASS} FROM {source})"
            )
            row = con.sql(query, params=params).fetchall()[0]
            result.stats = FilterStats(n_files, *(int(v) for v in row))
        return result
    except duckdb.Error as exc:
        raise _duckdb_error(exc) from None
    finally:
        con.close()


def _stats_from_tables(n_files: int, rows: pa.Table, passed: pa.Table) -> FilterStats:
    def total(t: pa.Table, column: str) -> int:
        return int(pc.sum(t.column(column)).as_py() or 0) if t.num_rows else 0

    return FilterStats(
        n_files, rows.num_rows, total(rows, "packets"), total(rows, "bytes"),
        passed.num_rows, total(passed, "packets"), total(passed, "bytes"),
    )  # fmt: skip


def filter_files(files: Sequence[str | Path], spec: FilterSpec | CompiledFilter) -> pa.Table:
    """The records of Parquet flow ``files`` (e.g. archive files) that pass ``spec``."""
    return execute(spec, files=list(files)).passed


def partition_files(files: Sequence[str | Path], spec: FilterSpec | CompiledFilter) -> tuple[pa.Table, pa.Table]:
    """(pass, fail) records of Parquet flow ``files``."""
    result = execute(spec, files=list(files), failed=True)
    return result.passed, result.failed


def partition(table: pa.Table, spec: FilterSpec | CompiledFilter) -> tuple[pa.Table, pa.Table]:
    """(pass, fail) records of a flow table; every record lands in exactly one of them."""
    result = execute(spec, table=table, failed=True)
    return result.passed, result.failed


def filtered_batches(files: Sequence[str | Path], spec: FilterSpec | CompiledFilter, *,
                     batch_rows: int = 1 << 17) -> Iterator[pa.RecordBatch]:
    """The records of Parquet ``files`` that pass, in flow-schema batches, in input order, as DuckDB
    scans them: memory stays flat however many pass, and a reader downstream of a pipe starts on
    the first batch.  Set tests (joins, which do not keep order) are :func:`execute`'s."""
    compiled = spec if isinstance(spec, CompiledFilter) else compile_filter(spec)
    if compiled.tables:
        raise FilterError("set tests need execute(), which sorts the joined rows back into input order")
    if not files:
        return
    con = duck.connect()
    try:
        params = {**compiled.params, "__vlf_files": [glob_escaped(f) for f in files]}
        sql = f"SELECT {_COLUMNS} FROM read_parquet($__vlf_files, {NO_HIVE}) WHERE {compiled.where}"
        try:
            reader = con.sql(sql, params=params).to_arrow_reader(batch_rows)
            for raw in reader:
                yield from conform(pa.Table.from_batches([raw])).to_batches()
        except duckdb.Error as exc:
            raise _duckdb_error(exc) from None
    finally:
        con.close()


def write_filtered(
    files: Sequence[str | Path], spec: FilterSpec | CompiledFilter, out: str | Path, *, order_by: str | None = TIME_ORDER
) -> int:
    """``--pass-destination=FILE.parquet`` streamed by DuckDB: the passing records never pass
    through Python, so memory stays flat however many there are.  Returns the record count."""
    from ...storage import atomic_path, write_parquet

    if not files:
        write_parquet(FLOW_SCHEMA.empty_table(), out)
        return 0
    compiled = spec if isinstance(spec, CompiledFilter) else compile_filter(spec)
    con = duck.connect()
    try:
        for name, members in compiled.tables.items():
            con.register(name, members)
        params = {**compiled.params, "__vlf_files": [str(f) for f in files]}
        order = f" ORDER BY {order_by}" if order_by else ""
        sql = f"SELECT {_COLUMNS} FROM read_parquet($__vlf_files) WHERE {compiled.where}{order}"
        with atomic_path(out) as tmp:  # COPY answers with the number of rows it wrote
            written = con.execute(f"COPY ({sql}) TO {literal(tmp)} (FORMAT parquet, COMPRESSION zstd)", params).fetchall()
        return int(written[0][0])
    except duckdb.Error as exc:
        raise _duckdb_error(exc) from None
    finally:
        con.close()
