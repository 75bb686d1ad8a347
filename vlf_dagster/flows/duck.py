"""The one place that opens DuckDB connections for flow work, with the settings that bound them.

Every query of the project runs on an in-memory connection from :func:`connect`:

- ``memory_limit``: ``$VLF_DUCKDB_MEMORY`` (default ``3GB``): beyond it DuckDB spills sorts,
  joins and aggregates to disk instead of growing, so window stages over 12.7 M sources and
  tens of millions of pairs stay within a few GB;
- ``temp_directory``: where it spills, ``<data dir>/.duckdb_tmp`` (``$VLF_DATA_DIR``, else
  ``data``), beside the data it works on, never the system's small /tmp;
- no progress bar: long window queries would otherwise draw one into every run's log.

:func:`register` is the one adapter from a table source (an Arrow table or pandas DataFrame, a
Parquet path or list of them, a segmented artifact's directory) to a relation of a connection;
:func:`relation` opens a connection with one such relation and closes it after use.

Whoever opens a connection closes it (``with connect() as con:``), once nothing it returns still
needs it: results leave as Arrow tables, DataFrames or Python values, not as relations.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, Union

import duckdb
import pyarrow as pa

if TYPE_CHECKING:
    import pandas

# A table source: in memory (pa.Table, pandas.DataFrame), or Parquet file(s) / segmented artifact
# directories (:mod:`.segments`) by path.
Source = Union[pa.Table, "pandas.DataFrame", str, os.PathLike, Sequence[Union[str, os.PathLike]]]

DEFAULT_MEMORY = "3GB"
TEMP_NAME = ".duckdb_tmp"


def temp_directory() -> Path:
    return Path(os.environ.get("VLF_DATA_DIR") or "data") / TEMP_NAME


def connect(database: str = ":memory:", **kwargs) -> duckdb.DuckDBPyConnection:
    config = {"memory_limit": os.environ.get("VLF_DUCKDB_MEMORY") or DEFAULT_MEMORY,
              "temp_directory": str(temp_directory().resolve())}
    if kwargs.get("read_only"):
        return duckdb.connect(database, **kwargs)  # settings are per connection; readers need none
    con = duckdb.connect(database, config=config, **kwargs)
    con.execute("SET enable_progress_bar = false")  # a session option: not accepted in config
    return con


_probes = threading.local()


def probe() -> duckdb.DuckDBPyConnection:
    """This thread's connection for metadata probes that create nothing (Parquet footers and
    schemas), kept open: opening an in-memory database costs ~20 ms, which a one-shot verb would
    otherwise pay once for the probe and once for its query.  Callers must not close it."""
    con = getattr(_probes, "connection", None)
    if con is None:
        con = _probes.connection = connect()
    return con


def is_table(source) -> bool:
    """Whether ``source`` is an in-memory table (Arrow or pandas) rather than path(s).  pandas is
    not imported for the test: a DataFrame exists only once pandas is loaded, and the verbs that
    read files never load it."""
    if isinstance(source, pa.Table):
        return True
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(source, pandas.DataFrame)


def source_paths(source: Source) -> list | None:
    """The paths of a table source given by path(s), in order; None for an in-memory table."""
    if is_table(source):
        return None
    return [source] if isinstance(source, (str, os.PathLike)) else list(source)


def register(
    con: duckdb.DuckDBPyConnection,
    name: str,
    source: Source,
    *,
    empty: pa.Schema | None = None,
    missing: Callable[[str], Exception] | None = None,
    row_numbers: bool = False,
    files_sql: Callable[[list], str] | None = None,
) -> set[str] | None:
    """Make ``source`` the relation ``name`` of ``con``; return its columns.

    * an in-memory table is registered as it is (pandas stays pandas);
    * no path at all: ``empty.empty_table()`` when ``empty`` is given, else nothing is made and
      None is returned;
    * paths: a temporary view over them (temporary: on a cursor of a kept database, as
      ``duck.probe().cursor()``, closing the cursor drops it), read as
      :func:`.segments.relation_sql` reads files and segmented artifacts, or by ``files_sql(paths)``
      (a ``SELECT``; plain files only).  With ``missing``, a path that is not there raises
      ``missing(path)``.

    ``row_numbers``: the relation gets ``_row``, each record's position in the input (files in the
    order given, rows in file order; a table's row index), so an output order can be kept.
    """
    import numpy as np

    from .segments import Segmented, is_segmented, relation_sql  # here: segments imports this module
    from .sql import path_list

    paths = source_paths(source)
    if paths is None:
        if row_numbers:
            if not isinstance(source, pa.Table):
                source = pa.Table.from_pandas(source, preserve_index=False)
            source = source.append_column("_row", pa.array(np.arange(source.num_rows, dtype=np.int64)))
        con.register(name, source)
    elif not paths:
        if empty is None:
            return None
        con.register(name, empty.empty_table())
    else:
        if missing is not None:
            for p in paths:
                if not (Path(p).is_file() or (files_sql is None and is_segmented(p))):
                    raise missing(str(p))
        if files_sql is not None:
            sql = files_sql(paths)
        elif len(paths) == 1 and is_segmented(paths[0]):
            sql = Segmented(Path(paths[0])).relation_sql(row_numbers=row_numbers)
        elif row_numbers:  # files in the order given, rows in file order
            sql = " UNION ALL BY NAME ".join(
                f"SELECT * EXCLUDE (file_row_number), ({i}::BIGINT << 40) + file_row_number AS _row "
                f"FROM read_parquet({path_list([p])}, file_row_number = true)"
                for i, p in enumerate(paths)
            )
        else:
            sql = relation_sql(paths)
        con.execute(f"CREATE TEMP VIEW {name} AS {sql}")
    return {row[0] for row in con.sql(f"DESCRIBE {name}").fetchall()}


@contextmanager
def relation(source: Source, name: str = "t", **options) -> Iterator[duckdb.DuckDBPyConnection]:
    """A new connection (:func:`connect`) with ``source`` as relation ``name`` (:func:`register`
    and its ``options``), closed when the block ends."""
    con = connect()
    try:
        register(con, name, source, **options)
        yield con
    finally:
        con.close()
