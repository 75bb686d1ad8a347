"""What the study's tables share: their inputs, their errors and their conventions.

The tables are pure functions in the modules of this folder, by subject: :mod:`.ports` (port
usage, ports by flow bucket, port numerology), :mod:`.flags` (TCP flag combinations),
:mod:`.destinations` (where the flows go, the contact surface), :mod:`.sessions` (matched
sessions and their ports), :mod:`.protocols` (ICMP and the other protocols), :mod:`.geography`
(countries) and :mod:`.categories` (the flows and sources of each category).

Every function takes its inputs as Parquet paths (one path or a list, or a segmented artifact's
directory) or in-memory tables (``pyarrow.Table`` or ``pandas.DataFrame``), opens them once as an
in-memory DuckDB relation (:func:`connected`) and returns a ``pandas.DataFrame`` whose columns are
the study's.  The work is done by DuckDB ``GROUP BY`` / window queries and numpy; there is no
Python loop per record (the only Python loops run over result rows: at most a few hundred ports,
countries or ICMP type/code pairs).

Inputs (see each function):

* archive flow files (flow schema; inbound flowtypes 0, 2, 8, outbound 1, 3, 9);
* ``vlf_categories``: one row per inbound flow of a VLF source with the flow's fields plus
  ``match_id`` (0 = unmatched), ``category`` (one of :data:`~..steps.matching.CATEGORIES`) and
  ``source_flows`` (that source's inbound flows in the window, 1..10);
* ``matched_vlf_flows``: rwmatch output; nhIP carries the label (low 24 bits the match id, top byte
  0x00 query, 0xFF response; 0.0.0.0 for unmatched queries).  Only the uint32 ``nhIP`` label is
  read: IPv6 records (label in nhIPv6) are outside this IPv4 study;
* ``active_inside``: an :class:`~vlf_dagster.flows.sets.IPSet` or a uint32 array.

Conventions shared by all tables:

* ranks start at 1; ties in a count are broken by the smaller key (port, flag byte, type/code,
  country code), so every table is deterministic;
* percentages are ``100 * part / whole`` rounded to 2 decimals (0.0 when the whole is 0); the
  study itself sometimes truncated (66.66 for 2/3) -- here 2/3 is 66.67 (:func:`percent`);
* side-by-side tables (several ranked lists next to each other) pad the shorter lists with
  missing values (pandas ``Int64``/``NaN``), so numeric columns stay numeric (:func:`side_by_side`).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ...flows import duck
from ...flows.sets import IPSet
from ...flows.sql import path_literal
from ...flows.segments import Segmented, Summary, is_segmented
from ..steps.matching import CATEGORIES, CATEGORY_PORTS

Source = duck.Source


# The columns of ``vlf_categories`` (used for an empty input given as an empty list of paths).
CATEGORY_SCHEMA = pa.schema(
    [
        ("sIP", pa.uint32()), ("dIP", pa.uint32()), ("sPort", pa.uint16()), ("dPort", pa.uint16()),
        ("protocol", pa.uint8()), ("packets", pa.uint64()), ("bytes", pa.uint64()), ("flags", pa.uint8()),
        ("sTime", pa.int64()), ("duration", pa.uint32()), ("match_id", pa.uint32()),
        ("category", pa.string()), ("source_flows", pa.uint32()), ("sIPv6", pa.binary()),
    ]
)

# The study's flow buckets (source_flows ranges) for the port-by-bucket tables.
FLOW_BUCKETS: tuple[tuple[int, int], ...] = ((1, 1), (2, 4), (5, 7), (8, 10), (1, 10))


class PortTableError(ValueError):
    """A bad argument to one of the table functions."""


# --- input ----------------------------------------------------------------------------------


@contextmanager
def connected(source: Source, *, empty: pa.Schema = CATEGORY_SCHEMA, name: str = "t") -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh in-memory DuckDB connection with ``source`` as relation ``name`` (an empty list
    of paths: an empty table of ``empty``), closed when the block ends."""
    with duck.relation(source, name, empty=empty, missing=lambda path: PortTableError(f"no such Parquet file: {path}")) as con:
        yield con


def kept_summary(source: Source, summary: Summary) -> Path | None:
    """The counts ``summary`` its writer keeps beside a segmented ``source``, if any."""
    if isinstance(source, (str, Path)) and is_segmented(source):
        return Segmented(Path(source)).summary(summary.name)
    return None


def counted(con: duckdb.DuckDBPyConnection, source: Source, summary: Summary, name: str, *, kept_holds: bool = True) -> None:
    """Relation ``name``: ``summary``'s counts of ``t`` (column ``n``), read from the file its
    writer keeps beside a segmented ``source`` (unless it does not hold the rows wanted:
    ``kept_holds``), or counted here over the rows (by the key columns ``t`` has)."""
    kept = kept_summary(source, summary) if kept_holds else None
    if kept is not None:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({path_literal(str(kept))})")
        return
    present = columns_of(con)
    keys = tuple(k for k in summary.keys if k in present)
    rows = Summary(name, keys, f"SELECT {', '.join(keys)} FROM summarized")
    con.execute(f"CREATE TEMP TABLE {name} AS {rows.counts_sql('SELECT * FROM t')}")


def category_ports(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    """Relation ``ps``: flows by category, protocol, dPort, flags and source_flows
    (:data:`~.matching.CATEGORY_PORTS`)."""
    counted(con, source, CATEGORY_PORTS, "ps")


def columns_of(con: duckdb.DuckDBPyConnection, name: str = "t") -> set[str]:
    return {row[0] for row in con.sql(f"DESCRIBE {name}").fetchall()}


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.sql(sql, params=params or []).df()


def percent(part, whole) -> np.ndarray | float:
    """100 * part / whole rounded to 2 decimals; 0 where whole is 0."""
    part = np.asarray(part, dtype=np.float64)
    whole = np.asarray(whole, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(whole > 0, 100.0 * part / np.where(whole > 0, whole, 1.0), 0.0)
    out = np.round(out, 2)
    return float(out) if out.ndim == 0 else out


def int64s(series) -> np.ndarray:
    return np.asarray(series, dtype=np.int64)


def bucket_bounds(bucket: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(bucket, (int, np.integer)):
        return int(bucket), int(bucket)
    lo, hi = bucket
    if lo > hi:
        raise PortTableError(f"empty flow bucket {bucket!r}")
    return int(lo), int(hi)


def bucket_label(bucket: int | tuple[int, int]) -> str:
    """The study's bucket names: ``1 flow``, ``2 - 4 flows``, ``1 - 10 flows``."""
    lo, hi = bucket_bounds(bucket)
    if lo == hi:
        return f"{lo} flow" if lo == 1 else f"{lo} flows"
    return f"{lo} - {hi} flows"


def category_clause(con: duckdb.DuckDBPyConnection, category: str, protocol_sql: str) -> str:
    """``category = '...'`` on a categories table, or the protocol test on a plain flow table."""
    if "category" in columns_of(con):
        if category not in CATEGORIES:
            raise PortTableError(f"unknown category {category!r} (one of {', '.join(CATEGORIES)})")
        return "category = '" + category.replace("'", "''") + "'"
    return protocol_sql


def active_array(active_inside: IPSet | np.ndarray | Iterable[int]) -> np.ndarray:
    if isinstance(active_inside, IPSet):
        return active_inside.ipv4_array()
    if not isinstance(active_inside, np.ndarray):
        active_inside = list(active_inside)
    return np.unique(np.asarray(active_inside, dtype=np.uint32))


def side_by_side(
    long: pd.DataFrame,
    group_col: str,
    columns: dict[str, str],
    groups: Sequence | None = None,
    *,
    label: Callable[[object], str] = str,
    rank_col: str = "Rank",
    out_rank: str = "Rank",
) -> pd.DataFrame:
    """Pivot a long ranked table into the study's side-by-side layout.

    ``long`` has one row per (group, rank); for every group (in ``groups`` order, default the order
    of first appearance) the output gets the columns ``columns`` renamed with ``{label(group)}``
    substituted for ``{}`` in each new name, e.g. ``{"Flags": "Port {} flags"}``.  Rows are ranks
    1..max rank; shorter lists are padded with missing values (``Int64``/``NaN``/``None``).
    """
    if groups is None:
        groups = list(dict.fromkeys(long[group_col].tolist()))
    ranks = pd.to_numeric(long[rank_col], errors="coerce")
    numbered = long[ranks.notna()]
    n = int(ranks.max()) if ranks.notna().any() else 0
    out = pd.DataFrame({out_rank: np.arange(1, n + 1, dtype=np.int64)})
    for g in groups:
        part = numbered[numbered[group_col] == g]
        idx = pd.to_numeric(part[rank_col]).to_numpy(dtype=np.int64) - 1
        for src, pattern in columns.items():
            name = pattern.format(label(g))
            values = part[src].to_numpy()
            if pd.api.types.is_integer_dtype(part[src].dtype) or pd.api.types.is_bool_dtype(part[src].dtype):
                col = pd.array([pd.NA] * n, dtype="Int64")
                col[idx] = values.astype(np.int64)
            elif pd.api.types.is_float_dtype(part[src].dtype):
                col = np.full(n, np.nan)
                col[idx] = values
            else:
                col = np.full(n, None, dtype=object)
                col[idx] = values
            out[name] = col
    return out


def rank_within(con: duckdb.DuckDBPyConnection, sql: str, group: str, key: str, top: int | None, params: list | None = None) -> pd.DataFrame:
    """Rank the rows of ``sql`` (columns ``group``, ``key``, ``n``) inside each group by n desc, key asc."""
    limit = "" if top is None else f"WHERE rk <= {int(top)}"
    q = (
        f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {group} ORDER BY n DESC, {key}) AS rk "
        f"FROM ({sql})) {limit} ORDER BY {group}, rk"
    )
    return frame(con, q, params)
