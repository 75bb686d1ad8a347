"""The study's port tables: overall port usage, ports by flow bucket and port numerology.

Inputs, errors and conventions (ranks, percentages, side-by-side layout) are those of
:mod:`.common`.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from ...flows import duck
from ...flows.flowtypes import INBOUND_TYPES, OUTBOUND_TYPES
from ...flows.schema import FLOW_SCHEMA, PROTO_TCP, PROTO_UDP
from ...flows.sql import path_literal
from ..steps.matching import MATCHED_PORTS
from .common import (
    FLOW_BUCKETS, PortTableError, Source, bucket_bounds, bucket_label, category_clause, category_ports, columns_of,
    connected, int64s, kept_summary, rank_within, side_by_side,
)


# --- overall port usage ---------------------------------------------------------------------

OVERALL_PORT_COLUMNS = [
    "Rank",
    "TCP source port", "TCP source flows", "TCP destination port", "TCP destination flows",
    "UDP source port", "UDP source flows", "UDP destination port", "UDP destination flows",
]


def overall_port_usage(archive: Source, top: int = 20, flowtypes: Sequence[int] | None = None) -> pd.DataFrame:
    """The study's "Overall Port Usage": the ``top`` TCP and UDP source and destination ports by flows.

    Counted over every archive record of protocol 6 or 17 whose flowtype is inbound or outbound
    (``in, inweb, inicmp, out, outweb, outicmp`` = 0, 2, 8, 1, 3, 9; the study used all traffic
    crossing the border, both directions) -- pass ``flowtypes`` to choose others; a table without a
    ``flowtype`` column is counted whole.  Each flow counts once under its source port (source
    lists) and once under its destination port (destination lists).  ``archive`` may also be the
    monthly port summaries of :mod:`analysis.traffic` (the same counts, pre-aggregated).  Four independent rankings by
    flows desc, port asc, side by side: columns :data:`OVERALL_PORT_COLUMNS`.
    """
    with connected(archive, empty=FLOW_SCHEMA) as con:
        types = tuple(flowtypes) if flowtypes is not None else (*INBOUND_TYPES, *OUTBOUND_TYPES)
        where = f"protocol IN ({PROTO_TCP}, {PROTO_UDP})"
        columns = columns_of(con)
        if "flowtype" in columns and types:
            where += f" AND flowtype IN ({', '.join(str(int(t)) for t in types)})"
        if "side" in columns:  # monthly port summaries (analysis.traffic): flows per flowtype, protocol, side, port
            sql = f"SELECT protocol || ':' || side AS g, port, sum(flows) AS n FROM t WHERE {where} GROUP BY ALL"
        else:
            sql = (
                f"WITH f AS (SELECT protocol, sPort, dPort FROM t WHERE {where}) "
                "SELECT protocol || ':s' AS g, sPort AS port, count(*) AS n FROM f GROUP BY ALL "
                "UNION ALL SELECT protocol || ':d' AS g, dPort AS port, count(*) AS n FROM f GROUP BY ALL"
            )
        long = rank_within(con, sql, "g", "port", top)
    long = long.rename(columns={"rk": "Rank", "port": "Port", "n": "Flows"})
    long["Port"] = int64s(long["Port"])
    long["Flows"] = int64s(long["Flows"])
    groups = [f"{PROTO_TCP}:s", f"{PROTO_TCP}:d", f"{PROTO_UDP}:s", f"{PROTO_UDP}:d"]
    names = {f"{PROTO_TCP}:s": "TCP source", f"{PROTO_TCP}:d": "TCP destination",
             f"{PROTO_UDP}:s": "UDP source", f"{PROTO_UDP}:d": "UDP destination"}
    out = side_by_side(long, "g", {"Port": "{} port", "Flows": "{} flows"}, groups, label=names.get)
    if len(out.columns) == 1:  # no rows at all
        for c in OVERALL_PORT_COLUMNS[1:]:
            out[c] = pd.array([], dtype="Int64")
    return out[OVERALL_PORT_COLUMNS]


# --- ports by flow bucket -------------------------------------------------------------------


def ports_by_bucket_long(
    categories: Source, category: str = "unmatched TCP", top: int | None = 20,
    buckets: Sequence[int | tuple[int, int]] = FLOW_BUCKETS,
) -> pd.DataFrame:
    """Long form of :func:`ports_by_flow_bucket`: Bucket (label), Rank, Port, Flows."""
    with connected(categories) as con:
        proto = PROTO_UDP if "UDP" in category else PROTO_TCP
        where = category_clause(con, category, f"protocol = {proto}")
        # the flows by (port, source's flow count), kept by vlf_categories' refreshes; the buckets add those up
        category_ports(con, categories)
        con.execute(f"CREATE TEMP TABLE per_port AS SELECT dPort, source_flows, sum(n)::BIGINT AS n FROM ps WHERE {where} GROUP BY ALL")
        parts = []
        for i, b in enumerate(buckets):
            lo, hi = bucket_bounds(b)
            parts.append(
                f"SELECT {i} AS g, dPort AS port, sum(n)::BIGINT AS n FROM per_port "
                f"WHERE source_flows BETWEEN {lo} AND {hi} GROUP BY dPort"
            )
        long = rank_within(con, " UNION ALL ".join(parts), "g", "port", top)
    labels = [bucket_label(b) for b in buckets]
    return pd.DataFrame(
        {
            "Bucket": [labels[int(g)] for g in long["g"]],
            "Rank": int64s(long["rk"]),
            "Port": int64s(long["port"]),
            "Flows": int64s(long["n"]),
        }
    )


def ports_by_flow_bucket(
    categories: Source, category: str = "unmatched TCP", top: int = 20,
    buckets: Sequence[int | tuple[int, int]] = FLOW_BUCKETS,
) -> pd.DataFrame:
    """The study's "Unmatched TCP Port Usage" (``category="unmatched TCP"``) and "UDP per port
    volumes" (``category="unmatched UDP"``).

    The rows of ``category`` in ``vlf_categories`` are split by the source's flow count
    ``source_flows`` into the buckets 1, 2-4, 5-7, 8-10 and 1-10 (the last one is all of them);
    inside each bucket the destination ports are ranked by flows (rows) desc, port asc, ``top``
    of them.  Columns: Rank, then ``Port (<bucket>)`` and ``Flows (<bucket>)`` for each bucket,
    e.g. ``Port (1 flow)``, ``Flows (2 - 4 flows)``.
    """
    long = ports_by_bucket_long(categories, category, top, buckets)
    labels = [bucket_label(b) for b in buckets]
    out = side_by_side(long, "Bucket", {"Port": "Port ({})", "Flows": "Flows ({})"}, labels)
    if len(out) == 0:
        for lab in labels:
            out[f"Port ({lab})"] = pd.array([], dtype="Int64")
            out[f"Flows ({lab})"] = pd.array([], dtype="Int64")
    return out


# --- port numerology ------------------------------------------------------------------------

# Well-known boundary numbers of the port space.
SPECIAL_PORTS = {
    0: "zero",
    1023: "last privileged port",
    1024: "first unprivileged port",
    32768: "start of the BSD/Linux ephemeral range",
    49152: "start of the IANA dynamic range",
    65535: "largest port",
}


def interest_components(port: int) -> list[tuple[str, int]]:
    """Why a port number is "interesting", as (reason, points) pairs; empty if it is not.

    * ``round``: trailing zeros of a port >= 10, one point each (8080 -> 1, 10000 -> 4);
    * ``repeated digits``: all digits the same, 3 digits or more (1111, 55555): one point per digit;
    * ``run``: otherwise a run of >= 3 equal digits inside the number (10006): length - 2 points;
    * ``palindrome``: 3 digits or more reading the same both ways (52525, 15051): length - 2 points;
    * ``pattern``: a repeated block of 2 or 3 digits covering the number, at least 4 digits
      (5252, 52525, 123123): 2 points;
    * ``sequence``: digits counting up or down by one, 3 digits or more (1234, 54321): length - 2;
    * ``special``: one of :data:`SPECIAL_PORTS` (65535, 1024, 32768, ...): 3 points;
    * ``power of two`` (2^k, k >= 4: 16 .. 32768) and ``all ones`` (2^k - 1, k >= 4: 15 .. 65535): 2 points.
    """
    port = int(port)
    d = str(port)
    n = len(d)
    out: list[tuple[str, int]] = []
    if port >= 10:
        zeros = n - len(d.rstrip("0"))
        if zeros:
            out.append((f"round ({zeros} trailing zero{'s' if zeros > 1 else ''})", zeros))
    if n >= 3 and len(set(d)) == 1:
        out.append(("repeated digits", n))
    elif n >= 3:
        best, run = 1, 1
        for a, b in zip(d, d[1:]):
            run = run + 1 if a == b else 1
            best = max(best, run)
        if best >= 3:
            out.append((f"run of {best} equal digits", best - 2))
    if n >= 3 and d == d[::-1]:
        out.append(("palindrome", n - 2))
    if n >= 4 and len(set(d)) > 1:
        for k in (2, 3):
            if n >= 2 * k and all(d[i] == d[i % k] for i in range(n)):
                out.append((f"pattern ({d[:k]} repeated)", 2))
                break
    if n >= 3:
        steps = {int(b) - int(a) for a, b in zip(d, d[1:])}
        if steps in ({1}, {-1}):
            out.append(("sequence", n - 2))
    if port in SPECIAL_PORTS:
        out.append((SPECIAL_PORTS[port], 3))
    if port >= 16 and port & (port - 1) == 0:
        out.append((f"power of two (2^{port.bit_length() - 1})", 2))
    if port >= 15 and (port + 1) & port == 0:
        out.append((f"all ones (2^{(port + 1).bit_length() - 1} - 1)", 2))
    return out


def interest_score(port: int) -> int:
    """The sum of the points of :func:`interest_components` (0: an ordinary number)."""
    return sum(points for _, points in interest_components(port))


def interest_why(port: int) -> str:
    """The reasons of :func:`interest_components`, joined with ``"; "`` ("" for none)."""
    return "; ".join(reason for reason, _ in interest_components(port))


NUMEROLOGY_MIN_RATIO = 3.0  # a port stands out at this many times its neighbours' median count
NUMEROLOGY_COLUMNS = ["Port", "Count", "Neighbour median", "Ratio", "Interest", "Why"]


def port_counts(source: Source, protocol: int | None = None, ports: str = "both", matched_only: bool = True) -> np.ndarray:
    """Flows per port number (an array of 65536 counts) for :func:`port_numerology`.

    ``source`` is the rwmatch output (matched records: match id in nhIP > 0) or ``vlf_categories``
    (matched rows: match_id > 0); ``matched_only=False`` takes every record.  Only TCP and UDP
    records, or only ``protocol``.  ``ports``: ``"dPort"``, ``"sPort"`` or ``"both"`` (the study
    looked at both since it cannot tell the service side: a record counts under its source port
    and under its destination port, once if they are equal).
    """
    kept = kept_summary(source, MATCHED_PORTS) if ports == "both" and matched_only else None
    if kept is not None:  # the matched records' counts by port, kept by each refresh of the matching
        which = f"protocol = {int(protocol)}" if protocol is not None else "TRUE"
        with duck.connect() as con:
            return _port_array(con.sql(
                f"SELECT port, sum(n)::BIGINT AS n FROM read_parquet({path_literal(str(kept))}) WHERE {which} GROUP BY port"))
    with connected(source) as con:
        cols = columns_of(con)
        where = [f"protocol = {int(protocol)}" if protocol is not None else f"protocol IN ({PROTO_TCP}, {PROTO_UDP})"]
        if matched_only:
            if "match_id" in cols:
                where.append("match_id > 0")
            elif "nhIP" in cols:
                where.append("(nhIP & 16777215) > 0")
        w = " AND ".join(where)
        if ports == "both":
            q = (
                f"SELECT port, count(*) AS n FROM (SELECT sPort AS port FROM t WHERE {w} "
                f"UNION ALL SELECT dPort FROM t WHERE {w} AND dPort <> sPort) GROUP BY port"
            )
        elif ports in ("sPort", "dPort"):
            q = f"SELECT {ports} AS port, count(*) AS n FROM t WHERE {w} GROUP BY port"
        else:
            raise PortTableError(f"ports must be 'both', 'sPort' or 'dPort', not {ports!r}")
        return _port_array(con.sql(q))


def _port_array(relation) -> np.ndarray:
    """A relation's (port, n) rows as an array of 65536 counts."""
    rows = relation.fetchnumpy()
    counts = np.zeros(65536, dtype=np.int64)
    counts[np.asarray(rows["port"], dtype=np.int64)] = np.asarray(rows["n"], dtype=np.int64)
    return counts


def port_numerology(
    source: Source | np.ndarray,
    window: int = 10,
    min_ratio: float = NUMEROLOGY_MIN_RATIO,
    top: int | None = 20,
    *,
    protocol: int | None = None,
    ports: str = "both",
    matched_only: bool = True,
) -> pd.DataFrame:
    """The study's "Port Numerology": ports whose counts stand out from their neighbours.

    Counts per port come from :func:`port_counts` (or ``source`` is already such an array of 65536
    counts).  Among the ports that occur (count > 0), a port's *neighbour median* is the median
    count of the other occurring ports within +-``window`` port numbers; a port with no occurring
    neighbour is not compared (not reported).  A port stands out when count >= ``min_ratio`` x
    neighbour median; Ratio = count / neighbour median (2 decimals).  Reported: the ``top``
    standing-out ports, the numbers a person picks first -- by :func:`interest_score` (Interest)
    desc, then Ratio desc, count desc, port asc -- each with its reasons (Why).  The study sorted
    by count, which buried 55555 and 52525 under ordinary ports that merely stood out.
    """
    if isinstance(source, np.ndarray):
        if source.shape != (65536,):
            raise PortTableError("a port count array must have 65536 entries (one per port number)")
        counts = np.asarray(source, dtype=np.int64)
    else:
        counts = port_counts(source, protocol, ports, matched_only)
    occurring = np.flatnonzero(counts)
    if len(occurring) == 0:
        return _empty_numerology()
    values = np.where(counts > 0, counts.astype(np.float64), np.nan)
    padded = np.pad(values, window, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * window + 1)[occurring]
    neighbours = np.delete(windows, window, axis=1)
    has = ~np.isnan(neighbours).all(axis=1)
    median = np.full(len(occurring), np.nan)
    if has.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median[has] = np.nanmedian(neighbours[has], axis=1)
    count = counts[occurring]
    keep = has & (count >= min_ratio * median)
    port, count, median = occurring[keep], count[keep], median[keep]
    ratio = np.round(count / median, 2)
    interest = np.array([interest_score(p) for p in port], dtype=np.int64)  # one per standing-out port
    order = np.lexsort((port, -count, -ratio, -interest))
    if top is not None:
        order = order[:top]
    port, count, median, ratio, interest = port[order], count[order], median[order], ratio[order], interest[order]
    return pd.DataFrame(
        {
            "Port": port.astype(np.int64),
            "Count": count.astype(np.int64),
            "Neighbour median": median,
            "Ratio": ratio,
            "Interest": interest,
            "Why": np.array([interest_why(p) for p in port], dtype=object),
        }
    )


def _empty_numerology() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Port": np.zeros(0, np.int64), "Count": np.zeros(0, np.int64), "Neighbour median": np.zeros(0),
            "Ratio": np.zeros(0), "Interest": np.zeros(0, np.int64), "Why": np.zeros(0, dtype=object),
        }
    )
