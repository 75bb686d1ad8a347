"""The input of uniq, stats and count: a flow table or flow files opened as one DuckDB ``flows``
relation, and whether it holds IPv6 records."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence, Union

import duckdb
import pyarrow as pa

from ... import duck
from ...schema import FLOW_SCHEMA, SchemaError, conform
from ...sql import NO_HIVE, path_list
from ...storage import holds_flow_columns, ipv6_columns_empty
from .keys import StatsError


Source = Union[pa.Table, Sequence[Union[str, Path]], str, Path]


def scalar(con: duckdb.DuckDBPyConnection, sql: str):
    return con.sql(sql).fetchall()[0][0]


@contextmanager
def open_flows(source: Source) -> Iterator[tuple[duckdb.DuckDBPyConnection, bool]]:
    """An in-memory DuckDB connection with a ``flows`` relation, and whether it holds IPv6 data.

    A cursor on this thread's kept database (``duck.probe``), its ``flows`` a temporary view that
    closing the cursor (when the block ends) drops: opening a database of its own cost a one-shot
    verb ~20 ms more."""
    if isinstance(source, pa.Table) and not source.schema.equals(FLOW_SCHEMA, check_metadata=False):
        try:
            source = conform(source)
        except SchemaError as exc:
            raise StatsError(str(exc)) from None
    paths = duck.source_paths(source)
    with duck.probe().cursor() as con:

        def files_sql(paths: list) -> str:
            # matching files are scanned as they are (binding by name costs a footer pass per query)
            by_name = "false" if holds_flow_columns([str(p) for p in paths], con) else "true"
            return f"SELECT * FROM read_parquet({path_list(paths)}, union_by_name = {by_name}, {NO_HIVE})"

        columns = duck.register(con, "flows", source, empty=FLOW_SCHEMA, files_sql=files_sql,
                                missing=lambda path: StatsError(f"no such flow file: {path}"))
        if paths is None:
            has_v6 = any(source.column(c).null_count < source.num_rows for c in ("sIPv6", "dIPv6", "nhIPv6"))
        else:
            v6 = [c for c in ("sIPv6", "dIPv6", "nhIPv6") if c in columns]
            has_v6 = bool(paths) and bool(v6) and _holds_ipv6(con, paths, v6)
        yield con, has_v6


def _holds_ipv6(con: duckdb.DuckDBPyConnection, paths: Sequence[str | Path], columns: list[str]) -> bool:
    """Whether any IPv6 column holds a value: the footers' null counts answer without a scan."""
    if ipv6_columns_empty(paths, con):
        return False
    return bool(scalar(con, f"SELECT count(*) FROM flows WHERE {' OR '.join(f'{c} IS NOT NULL' for c in columns)}"))
