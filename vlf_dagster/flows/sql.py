"""Quoting for the few SQL fragments that cannot be bound parameters (DDL, COPY targets, file lists)."""

from __future__ import annotations

import re

from pathlib import Path
from typing import Sequence


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def literal_list(values: Sequence[str | Path]) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]"


_GLOB_CHARACTER = re.compile(r"([*?\[])")


def glob_escaped(path: str | Path) -> str:
    """A file path as DuckDB's file readers (read_parquet, parquet_metadata, ...) must get it to
    read that file and no other: they expand ``*``, ``?`` and ``[...]`` in every name, so a data
    folder named ``d[1]`` would read ``d1``.  Each such character goes in a one-character class."""
    return _GLOB_CHARACTER.sub(r"[\1]", str(path))


def path_literal(path: str | Path) -> str:
    """:func:`glob_escaped` as a SQL string literal: one file, read by name."""
    return literal(glob_escaped(path))


# Flow files may sit under key=value folders (landing/dt=.../hour=...): DuckDB would add those as
# columns (dt, hour) unless told not to, and a flow file is its columns alone.
NO_HIVE = "hive_partitioning = false"


def path_list(paths: Sequence[str | Path]) -> str:
    """A SQL list of :func:`path_literal` files."""
    return "[" + ", ".join(path_literal(p) for p in paths) + "]"
