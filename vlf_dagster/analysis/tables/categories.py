"""The study's category table: the flows and sources of each category of VLF traffic.

Inputs, errors and conventions are those of :mod:`.common`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ...flows import duck
from ...flows.segments import Segmented, is_segmented, relation_sql
from ...flows.sql import path_literal
from ..steps.matching import CATEGORIES, TOTALS, category_totals
from .common import CATEGORY_SCHEMA, Source, connected, percent


# --- category counts ------------------------------------------------------------------------

CATEGORY_COLUMNS = ["Category", "Flows", "% flows", "Sources", "% sources"]


def category_counts(categories: Source) -> pd.DataFrame:
    """The study's "Details by type of data": the six categories, then ``Total``.

    Flows = rows of the category; % flows = share of all VLF inbound flows; Sources = distinct sIPs
    with at least one flow of the category; % sources = share of all distinct VLF sources (a source
    may have flows in several categories, so these shares can add up to more than 100).  Every
    category is listed, with zeros when absent; the Total row has all flows and all distinct sources.
    """
    kept = Segmented(Path(categories)).extra.get(TOTALS) if isinstance(categories, (str, Path)) and is_segmented(categories) else None
    if kept is None:
        with connected(categories):  # the input checks: missing files, an empty list
            pass
        if isinstance(categories, pd.DataFrame):
            categories = pa.Table.from_pandas(categories, preserve_index=False)
        paths = duck.source_paths(categories)
        kept = category_totals(categories if paths is None
                               else relation_sql(paths) if paths else CATEGORY_SCHEMA.empty_table())
    return _counts_frame(kept)


def _counts_frame(kept: dict[str, list[int]]) -> pd.DataFrame:
    flows = np.array([kept[c][0] for c in (*CATEGORIES, "Total")], dtype=np.int64)
    sources = np.array([kept[c][1] for c in (*CATEGORIES, "Total")], dtype=np.int64)
    total_flows, total_sources = flows[-1], sources[-1]
    return pd.DataFrame(
        {
            "Category": [*CATEGORIES, "Total"],
            "Flows": flows,
            "% flows": percent(flows, total_flows),
            "Sources": sources,
            "% sources": percent(sources, total_sources),
        }
    )


def without_scanners(categories: str | Path, scanners: str | Path) -> tuple[int, int, pd.DataFrame | None]:
    """The window's scanners (rwscan's, the ``scanners`` asset), how many VLF sources are among them,
    and the category table without those sources' flows (None when there are none: the table is the same)."""
    scanner_sips = f"SELECT sIP FROM read_parquet({path_literal(str(scanners))})"
    rows = relation_sql(categories) if is_segmented(categories) else f"SELECT * FROM read_parquet({path_literal(str(categories))})"
    flagged = f"(sIPv6 IS NULL AND sIP IN ({scanner_sips}))"
    with duck.connect() as con:
        found = con.sql(f"SELECT count(DISTINCT sIP) FROM ({scanner_sips})").fetchall()[0][0]
        among = con.sql(f"SELECT count(DISTINCT sIP) FROM ({rows}) WHERE {flagged}").fetchall()[0][0]
    if not among:
        return int(found), 0, None
    return int(found), int(among), _counts_frame(category_totals(f"SELECT * FROM ({rows}) WHERE NOT {flagged}"))
