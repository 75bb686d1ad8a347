"""The study's TCP flag tables: the unmatched flag combinations and the flags of the top ports.

Inputs, errors and conventions are those of :mod:`.common`; flags are written as SiLK letters in
FSRPAUEC order without spaces (S, RA, SA, FSPA; no flag at all is the empty string).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...flows.flags import flag_strings
from ...flows.schema import PROTO_TCP
from .common import Source, bucket_bounds, category_clause, category_ports, connected, frame, int64s, percent, side_by_side


# --- unmatched TCP flag combinations --------------------------------------------------------


def unmatched_tcp_flags(categories: Source, top: int | None = None) -> pd.DataFrame:
    """The study's "Unmatched TCP Flag combinations": Rank, Flags, Count, Percent.

    Over the ``unmatched TCP`` rows of ``vlf_categories``: flows grouped by their cumulative
    ``flags`` byte, written as SiLK letters in FSRPAUEC order without spaces (S, RA, SA, FSPA; no
    flag at all is the empty string).  Count = flows; Percent = 100 * Count / all unmatched TCP
    flows (including those beyond ``top``), 2 decimals.  Ranked by count desc, flag byte asc.
    """
    with connected(categories) as con:
        category_ports(con, categories)
        where = category_clause(con, "unmatched TCP", f"protocol = {PROTO_TCP}")
        df = frame(con, f"SELECT flags, sum(n)::BIGINT AS n FROM ps WHERE {where} GROUP BY flags ORDER BY n DESC, flags")
    total = int(df["n"].sum()) if len(df) else 0
    if top is not None:
        df = df.head(top)
    counts = int64s(df["n"])
    return pd.DataFrame(
        {
            "Rank": np.arange(1, len(df) + 1, dtype=np.int64),
            "Flags": flag_strings(df["flags"].to_numpy()).astype(object),
            "Count": counts,
            "Percent": percent(counts, total) if len(df) else np.zeros(0),
        }
    )


# --- flags for the top ports ----------------------------------------------------------------


def flags_for_top_ports(categories: Source, top_ports: int = 10, bucket: int | tuple[int, int] = 1) -> pd.DataFrame:
    """The study's "TCP Flags for top 10 ports at 1 flow / host", long format: Port, Rank, Flags, Count.

    Over the ``unmatched TCP`` rows whose ``source_flows`` is in ``bucket`` (an int or an
    inclusive (lo, hi) range; 1 = sources with a single flow): the ``top_ports`` destination ports
    by flows (desc, port asc), and for each of them every flag combination (SiLK letters,
    FSRPAUEC order, "" for none) with its flow count, ranked by count desc, flag byte asc.  Rows are
    ordered by the port's rank, then the flag rank.  :func:`flags_side_by_side` pivots it.
    """
    with connected(categories) as con:
        category_ports(con, categories)
        lo, hi = bucket_bounds(bucket)
        where = category_clause(con, "unmatched TCP", f"protocol = {PROTO_TCP}") + f" AND source_flows BETWEEN {lo} AND {hi}"
        q = (
            f"WITH f AS (SELECT dPort, flags, n FROM ps WHERE {where}), "
            "p AS (SELECT dPort, sum(n)::BIGINT AS n, row_number() OVER (ORDER BY sum(n) DESC, dPort) AS prk "
            "FROM f GROUP BY dPort QUALIFY prk <= ?), "
            "c AS (SELECT f.dPort, f.flags, sum(f.n)::BIGINT AS n FROM f JOIN p USING (dPort) GROUP BY ALL) "
            "SELECT c.dPort, c.flags, c.n, p.prk, row_number() OVER (PARTITION BY c.dPort ORDER BY c.n DESC, c.flags) AS rk "
            "FROM c JOIN p USING (dPort) ORDER BY p.prk, rk"
        )
        df = frame(con, q, [int(top_ports)])
    return pd.DataFrame(
        {
            "Port": int64s(df["dPort"]),
            "Rank": int64s(df["rk"]),
            "Flags": flag_strings(df["flags"].to_numpy()).astype(object) if len(df) else np.zeros(0, dtype=object),
            "Count": int64s(df["n"]),
        }
    )


FLAGS_BY_PORT_COLUMNS = ["Rank", "Port", "Flows", "Flag combinations (share of the port's flows)"]


def flags_by_port(long: pd.DataFrame, shown: int = 6) -> pd.DataFrame:
    """:func:`flags_for_top_ports` as one row per port: Rank, Port, Flows and its ``shown`` most
    common flag combinations with their share ("S 96.2%, RA 2.1%, 3 others 1.7%"; "(none)" for
    no flag): ten ports read down one column, not across forty."""
    rows = []
    for rank, (port, block) in enumerate(long.groupby("Port", sort=False), start=1):
        counts = int64s(block["Count"])
        total = int(counts.sum())
        share = percent(counts, total)
        parts = [f"{flags or '(none)'} {pct:.1f}%" for flags, pct in zip(block["Flags"].head(shown), np.atleast_1d(share)[:shown])]
        if len(block) > shown:
            rest = total - int(counts[:shown].sum())
            others = len(block) - shown
            parts.append(f"{others} other{'s' if others > 1 else ''} {100.0 * rest / total:.1f}%")
        rows.append((rank, int(port), total, ", ".join(parts)))
    return pd.DataFrame(rows, columns=FLAGS_BY_PORT_COLUMNS).astype({"Rank": np.int64, "Port": np.int64, "Flows": np.int64})


def flags_side_by_side(long: pd.DataFrame) -> pd.DataFrame:
    """:func:`flags_for_top_ports` as the study prints it: Rank, ``Port <p> flags``, ``Port <p> count``, ...

    Ports in the order of the long table (their rank); shorter lists padded with missing values.
    The study splits the ten ports into two tables of five: slice the columns.
    """
    return side_by_side(long, "Port", {"Flags": "Port {} flags", "Count": "Port {} count"})
