"""The one place that opens DuckDB connections for flow work, with the settings that bound them.

Every query of the project runs on an in-memory connection from :func:`connect`:

- ``memory_limit``: ``$VLF_DUCKDB_MEMORY`` (default ``3GB``): beyond it DuckDB spills sorts,
  joins and aggregates to disk instead of growing, so window stages over 12.7 M sources and
  tens of millions of pairs stay within a few GB;
- ``temp_directory``: where it spills, ``<data dir>/.duckdb_tmp`` (``$VLF_DATA_DIR``, else
  ``data``), beside the data it works on, never the system's small /tmp;
- no progress bar: long window queries would otherwise draw one into every run's log.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import duckdb

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
