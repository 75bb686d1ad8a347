"""The study's destination tables: where the flows go (hits and misses of the inside addresses
that exist) and the contact surface (sources by the number of destinations they contacted).

Inputs, errors and conventions are those of :mod:`.common`.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from ...flows.schema import PROTO_TCP, PROTO_UDP
from ...flows.sets import IPSet
from ..steps.matching import CATEGORY_DESTINATIONS, UNMATCHED
from .common import PortTableError, Source, active_array, bucket_bounds, category_clause, connected, counted, frame, int64s, percent


# --- where do they go -----------------------------------------------------------------------

WHERE_COLUMNS = ["Rank", "Port", "Flows", "Hit", "Miss", "% Hit", "# Dst", "Dst Hit", "% Dst Hit"]


def where_do_they_go(
    categories: Source,
    active_inside: IPSet | np.ndarray | Iterable[int],
    protocol: int = PROTO_TCP,
    buckets: int | tuple[int, int] = (1, 1),
    top: int = 20,
    category: str | None = None,
) -> pd.DataFrame:
    """The study's "Where do they go" / "Hit Miss" tables.

    Rows of ``category`` (default ``unmatched TCP`` for protocol 6, ``unmatched UDP`` for 17) of
    that ``protocol`` whose ``source_flows`` lies in ``buckets`` ((1, 1): 1 flow per host; (1, 10):
    1-10 flows).  Per destination port, the ``top`` ports by flows (desc, port asc):

    * Flows: rows; Hit: rows whose dIP is in ``active_inside`` (an inside address that exists);
      Miss = Flows - Hit; % Hit = 100 * Hit / Flows;
    * # Dst: distinct dIPs; Dst Hit: distinct dIPs in ``active_inside``; % Dst Hit = 100 * Dst Hit / # Dst.
    """
    if category is None:
        if protocol not in (PROTO_TCP, PROTO_UDP):
            raise PortTableError("give category= for a protocol other than TCP (6) or UDP (17)")
        category = "unmatched TCP" if protocol == PROTO_TCP else "unmatched UDP"
    with connected(categories) as con:
        con.register("active", pa.table({"addr": pa.array(active_array(active_inside), type=pa.uint32())}))
        lo, hi = bucket_bounds(buckets)
        where = (
            category_clause(con, category, "TRUE")
            + f" AND protocol = {int(protocol)} AND source_flows BETWEEN {lo} AND {hi}"
        )
        # flows by (port, destination, source's flow count): kept by vlf_categories for the unmatched ones
        counted(con, categories, CATEGORY_DESTINATIONS, "pd", kept_holds=category in UNMATCHED)
        q = (
            f"WITH f AS (SELECT dPort, dIP, n, dIP IN (SELECT addr FROM active) AS hit FROM pd WHERE {where}) "
            "SELECT dPort, sum(n)::BIGINT AS flows, coalesce(sum(n) FILTER (WHERE hit), 0)::BIGINT AS hits, "
            "count(DISTINCT dIP) AS dst, count(DISTINCT dIP) FILTER (WHERE hit) AS dst_hit FROM f GROUP BY dPort "
            "ORDER BY flows DESC, dPort LIMIT ?"
        )
        df = frame(con, q, [int(top)])
    flows, hits, dst, dst_hit = (int64s(df[c]) for c in ("flows", "hits", "dst", "dst_hit"))
    return pd.DataFrame(
        {
            "Rank": np.arange(1, len(df) + 1, dtype=np.int64),
            "Port": int64s(df["dPort"]),
            "Flows": flows,
            "Hit": hits,
            "Miss": flows - hits,
            "% Hit": percent(hits, flows),
            "# Dst": dst,
            "Dst Hit": dst_hit,
            "% Dst Hit": percent(dst_hit, dst),
        }
    )


# --- contact surface ------------------------------------------------------------------------

CONTACT_COLUMNS = ["Destinations", "Sources", "%", "Cum. %"]


def contact_surface(pairs: Source) -> pd.DataFrame:
    """The study's contact surface ("number of sources by number of destinations contacted").

    From a table of (sIP, dIP) pairs (the contact-pair bag: columns sIP, dIP and possibly a
    counter; duplicates are harmless): per source, the number of distinct destinations; then per
    number of destinations, Sources = how many sources contacted exactly that many, % = share of
    all sources and Cum. % (2 decimals), sorted by Destinations.
    """
    with connected(pairs) as con:
        return _contact_table(frame(
            con,
            "SELECT d, count(*) AS s FROM (SELECT sIP, count(DISTINCT dIP) AS d FROM t GROUP BY sIP) GROUP BY d ORDER BY d",
        ))


def contact_surface_of_counts(destination_counts: Source) -> pd.DataFrame:
    """:func:`contact_surface` of the IPv4 sources, from a bag of distinct destinations per
    source (``source_destination_count_bag``) instead of the pairs themselves: the same table,
    without a second pass over every pair of the window."""
    with connected(destination_counts) as con:
        return _contact_table(frame(
            con, "SELECT destinations AS d, count(*) AS s FROM t WHERE sIPv6 IS NULL AND destinations > 0 GROUP BY d ORDER BY d"))


def _contact_table(df: pd.DataFrame) -> pd.DataFrame:
    s = int64s(df["s"])
    total = int(s.sum())
    return pd.DataFrame(
        {"Destinations": int64s(df["d"]), "Sources": s, "%": percent(s, total) if len(s) else np.zeros(0),
         "Cum. %": percent(np.cumsum(s), total) if len(s) else np.zeros(0)}
    )
