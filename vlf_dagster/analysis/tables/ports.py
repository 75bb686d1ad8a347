"""The study's port, flag, destination, ICMP, protocol and country tables as pure functions.

Every function takes its inputs as Parquet paths (one path or a list) or in-memory tables
(``pyarrow.Table`` or ``pandas.DataFrame``), converts them once into an in-memory DuckDB relation
and returns a ``pandas.DataFrame`` whose columns are the study's.  The work is done by DuckDB
``GROUP BY`` / window queries and numpy; there is no Python loop per record (the only Python loops
run over result rows: at most a few hundred ports, countries or ICMP type/code pairs).

Inputs (see each function):

* archive flow files (flow schema; inbound flowtypes 0, 2, 8, outbound 1, 3, 9);
* ``vlf_categories``: one row per inbound flow of a VLF source with the flow's fields plus
  ``match_id`` (0 = unmatched), ``category`` (one of :data:`CATEGORIES`) and ``source_flows``
  (that source's inbound flows in the window, 1..10);
* ``matched_vlf_flows``: rwmatch output; nhIP carries the label (low 24 bits the match id, top byte
  0x00 query, 0xFF response; 0.0.0.0 for unmatched queries).  Only the uint32 ``nhIP`` label is
  read: IPv6 records (label in nhIPv6) are outside this IPv4 study;
* ``active_inside``: an :class:`~vlf_dagster.flows.sets.IPSet` or a uint32 array.

Conventions shared by all tables:

* ranks start at 1; ties in a count are broken by the smaller key (port, flag byte, type/code,
  country code), so every table is deterministic;
* percentages are ``100 * part / whole`` rounded to 2 decimals (0.0 when the whole is 0); the
  study itself sometimes truncated (66.66 for 2/3) -- here 2/3 is 66.67;
* side-by-side tables (several ranked lists next to each other) pad the shorter lists with
  missing values (pandas ``Int64``/``NaN``), so numeric columns stay numeric.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence, Union

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ...flows.flags import flag_strings
from ...flows.flowtypes import INBOUND_TYPES, OUTBOUND_TYPES
from ...flows.schema import FLOW_SCHEMA, PROTO_ICMP, PROTO_TCP, PROTO_UDP
from ...flows.sets import IPSet
from ...flows.sql import path_literal
from ...flows.segments import Segmented, SourceKey, Summary, is_segmented, relation_sql
from ...flows.storage import holds_state_lock, write_parquet
from ..steps.matching import CATEGORIES, CATEGORY_DESTINATIONS, CATEGORY_PORTS, MATCHED_PORTS, UNMATCHED, SOURCE_OF_RECORD, TOTALS, InputGenerations, category_totals
from ...flows import duck

Source = Union[str, Path, Sequence[Union[str, Path]], pa.Table, pd.DataFrame]


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

MATCH_ID_MASK = 0xFFFFFF
UNKNOWN_COUNTRY = "-"


class PortTableError(ValueError):
    """A bad argument to one of the table functions."""


# --- input ----------------------------------------------------------------------------------


def _connect(source: Source, *, empty: pa.Schema = CATEGORY_SCHEMA, name: str = "t") -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection with ``source`` as relation ``name``."""
    con = duck.connect()
    if isinstance(source, (pa.Table, pd.DataFrame)):
        con.register(name, source)
        return con
    paths = [source] if isinstance(source, (str, Path)) else list(source)
    if not paths:
        con.register(name, empty.empty_table())
        return con
    missing = [str(p) for p in paths if not (Path(p).is_file() or is_segmented(p))]
    if missing:
        raise PortTableError(f"no such Parquet file: {missing[0]}")
    con.execute(f"CREATE VIEW {name} AS {relation_sql(paths)}")
    return con


def _kept_summary(source: Source, summary: Summary) -> Path | None:
    """The counts ``summary`` its writer keeps beside a segmented ``source``, if any."""
    if isinstance(source, (str, Path)) and is_segmented(source):
        return Segmented(Path(source)).summary(summary.name)
    return None


def _counted(con: duckdb.DuckDBPyConnection, source: Source, summary: Summary, name: str, *, kept_holds: bool = True) -> None:
    """Relation ``name``: ``summary``'s counts of ``t`` (column ``n``), read from the file its
    writer keeps beside a segmented ``source`` (unless it does not hold the rows wanted:
    ``kept_holds``), or counted here over the rows (by the key columns ``t`` has)."""
    kept = _kept_summary(source, summary) if kept_holds else None
    if kept is not None:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({path_literal(str(kept))})")
        return
    present = _columns(con)
    keys = tuple(k for k in summary.keys if k in present)
    rows = Summary(name, keys, f"SELECT {', '.join(keys)} FROM summarized")
    con.execute(f"CREATE TEMP TABLE {name} AS {rows.counts_sql('SELECT * FROM t')}")


def _category_ports(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    """Relation ``ps``: flows by category, protocol, dPort, flags and source_flows
    (:data:`~.matching.CATEGORY_PORTS`)."""
    _counted(con, source, CATEGORY_PORTS, "ps")


def _columns(con: duckdb.DuckDBPyConnection, name: str = "t") -> set[str]:
    return {row[0] for row in con.sql(f"DESCRIBE {name}").fetchall()}


def _df(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.sql(sql, params=params or []).df()


def _pct(part, whole) -> np.ndarray | float:
    """100 * part / whole rounded to 2 decimals; 0 where whole is 0."""
    part = np.asarray(part, dtype=np.float64)
    whole = np.asarray(whole, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(whole > 0, 100.0 * part / np.where(whole > 0, whole, 1.0), 0.0)
    out = np.round(out, 2)
    return float(out) if out.ndim == 0 else out


def _ints(series) -> np.ndarray:
    return np.asarray(series, dtype=np.int64)


def _bucket(bucket: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(bucket, (int, np.integer)):
        return int(bucket), int(bucket)
    lo, hi = bucket
    if lo > hi:
        raise PortTableError(f"empty flow bucket {bucket!r}")
    return int(lo), int(hi)


def bucket_label(bucket: int | tuple[int, int]) -> str:
    """The study's bucket names: ``1 flow``, ``2 - 4 flows``, ``1 - 10 flows``."""
    lo, hi = _bucket(bucket)
    if lo == hi:
        return f"{lo} flow" if lo == 1 else f"{lo} flows"
    return f"{lo} - {hi} flows"


def _category_clause(con: duckdb.DuckDBPyConnection, category: str, protocol_sql: str) -> str:
    """``category = '...'`` on a categories table, or the protocol test on a plain flow table."""
    if "category" in _columns(con):
        if category not in CATEGORIES:
            raise PortTableError(f"unknown category {category!r} (one of {', '.join(CATEGORIES)})")
        return "category = '" + category.replace("'", "''") + "'"
    return protocol_sql


def _active_array(active_inside: IPSet | np.ndarray | Iterable[int]) -> np.ndarray:
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


def _ranked(con: duckdb.DuckDBPyConnection, sql: str, group: str, key: str, top: int | None, params: list | None = None) -> pd.DataFrame:
    """Rank the rows of ``sql`` (columns ``group``, ``key``, ``n``) inside each group by n desc, key asc."""
    limit = "" if top is None else f"WHERE rk <= {int(top)}"
    q = (
        f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {group} ORDER BY n DESC, {key}) AS rk "
        f"FROM ({sql})) {limit} ORDER BY {group}, rk"
    )
    return _df(con, q, params)


# --- 1. overall port usage -----------------------------------------------------------------

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
    con = _connect(archive, empty=FLOW_SCHEMA)
    types = tuple(flowtypes) if flowtypes is not None else (*INBOUND_TYPES, *OUTBOUND_TYPES)
    where = f"protocol IN ({PROTO_TCP}, {PROTO_UDP})"
    columns = _columns(con)
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
    long = _ranked(con, sql, "g", "port", top)
    long = long.rename(columns={"rk": "Rank", "port": "Port", "n": "Flows"})
    long["Port"] = _ints(long["Port"])
    long["Flows"] = _ints(long["Flows"])
    groups = [f"{PROTO_TCP}:s", f"{PROTO_TCP}:d", f"{PROTO_UDP}:s", f"{PROTO_UDP}:d"]
    names = {f"{PROTO_TCP}:s": "TCP source", f"{PROTO_TCP}:d": "TCP destination",
             f"{PROTO_UDP}:s": "UDP source", f"{PROTO_UDP}:d": "UDP destination"}
    out = side_by_side(long, "g", {"Port": "{} port", "Flows": "{} flows"}, groups, label=names.get)
    if len(out.columns) == 1:  # no rows at all
        for c in OVERALL_PORT_COLUMNS[1:]:
            out[c] = pd.array([], dtype="Int64")
    return out[OVERALL_PORT_COLUMNS]


# --- 2. unmatched TCP flag combinations ------------------------------------------------------


def unmatched_tcp_flags(categories: Source, top: int | None = None) -> pd.DataFrame:
    """The study's "Unmatched TCP Flag combinations": Rank, Flags, Count, Percent.

    Over the ``unmatched TCP`` rows of ``vlf_categories``: flows grouped by their cumulative
    ``flags`` byte, written as SiLK letters in FSRPAUEC order without spaces (S, RA, SA, FSPA; no
    flag at all is the empty string).  Count = flows; Percent = 100 * Count / all unmatched TCP
    flows (including those beyond ``top``), 2 decimals.  Ranked by count desc, flag byte asc.
    """
    con = _connect(categories)
    _category_ports(con, categories)
    where = _category_clause(con, "unmatched TCP", f"protocol = {PROTO_TCP}")
    df = _df(con, f"SELECT flags, sum(n)::BIGINT AS n FROM ps WHERE {where} GROUP BY flags ORDER BY n DESC, flags")
    total = int(df["n"].sum()) if len(df) else 0
    if top is not None:
        df = df.head(top)
    counts = _ints(df["n"])
    return pd.DataFrame(
        {
            "Rank": np.arange(1, len(df) + 1, dtype=np.int64),
            "Flags": flag_strings(df["flags"].to_numpy()).astype(object),
            "Count": counts,
            "Percent": _pct(counts, total) if len(df) else np.zeros(0),
        }
    )


# --- 3. ports by flow bucket -----------------------------------------------------------------


def ports_by_bucket_long(
    categories: Source, category: str = "unmatched TCP", top: int | None = 20,
    buckets: Sequence[int | tuple[int, int]] = FLOW_BUCKETS,
) -> pd.DataFrame:
    """Long form of :func:`ports_by_flow_bucket`: Bucket (label), Rank, Port, Flows."""
    con = _connect(categories)
    proto = PROTO_UDP if "UDP" in category else PROTO_TCP
    where = _category_clause(con, category, f"protocol = {proto}")
    # the flows by (port, source's flow count), kept by vlf_categories' refreshes; the buckets add those up
    _category_ports(con, categories)
    con.execute(f"CREATE TEMP TABLE per_port AS SELECT dPort, source_flows, sum(n)::BIGINT AS n FROM ps WHERE {where} GROUP BY ALL")
    parts = []
    for i, b in enumerate(buckets):
        lo, hi = _bucket(b)
        parts.append(
            f"SELECT {i} AS g, dPort AS port, sum(n)::BIGINT AS n FROM per_port "
            f"WHERE source_flows BETWEEN {lo} AND {hi} GROUP BY dPort"
        )
    long = _ranked(con, " UNION ALL ".join(parts), "g", "port", top)
    labels = [bucket_label(b) for b in buckets]
    return pd.DataFrame(
        {
            "Bucket": [labels[int(g)] for g in long["g"]],
            "Rank": _ints(long["rk"]),
            "Port": _ints(long["port"]),
            "Flows": _ints(long["n"]),
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


# --- 4. flags for the top ports --------------------------------------------------------------


def flags_for_top_ports(categories: Source, top_ports: int = 10, bucket: int | tuple[int, int] = 1) -> pd.DataFrame:
    """The study's "TCP Flags for top 10 ports at 1 flow / host", long format: Port, Rank, Flags, Count.

    Over the ``unmatched TCP`` rows whose ``source_flows`` is in ``bucket`` (an int or an
    inclusive (lo, hi) range; 1 = sources with a single flow): the ``top_ports`` destination ports
    by flows (desc, port asc), and for each of them every flag combination (SiLK letters,
    FSRPAUEC order, "" for none) with its flow count, ranked by count desc, flag byte asc.  Rows are
    ordered by the port's rank, then the flag rank.  :func:`flags_side_by_side` pivots it.
    """
    con = _connect(categories)
    _category_ports(con, categories)
    lo, hi = _bucket(bucket)
    where = _category_clause(con, "unmatched TCP", f"protocol = {PROTO_TCP}") + f" AND source_flows BETWEEN {lo} AND {hi}"
    q = (
        f"WITH f AS (SELECT dPort, flags, n FROM ps WHERE {where}), "
        "p AS (SELECT dPort, sum(n)::BIGINT AS n, row_number() OVER (ORDER BY sum(n) DESC, dPort) AS prk "
        "FROM f GROUP BY dPort QUALIFY prk <= ?), "
        "c AS (SELECT f.dPort, f.flags, sum(f.n)::BIGINT AS n FROM f JOIN p USING (dPort) GROUP BY ALL) "
        "SELECT c.dPort, c.flags, c.n, p.prk, row_number() OVER (PARTITION BY c.dPort ORDER BY c.n DESC, c.flags) AS rk "
        "FROM c JOIN p USING (dPort) ORDER BY p.prk, rk"
    )
    df = _df(con, q, [int(top_ports)])
    return pd.DataFrame(
        {
            "Port": _ints(df["dPort"]),
            "Rank": _ints(df["rk"]),
            "Flags": flag_strings(df["flags"].to_numpy()).astype(object) if len(df) else np.zeros(0, dtype=object),
            "Count": _ints(df["n"]),
        }
    )


FLAGS_BY_PORT_COLUMNS = ["Rank", "Port", "Flows", "Flag combinations (share of the port's flows)"]


def flags_by_port(long: pd.DataFrame, shown: int = 6) -> pd.DataFrame:
    """:func:`flags_for_top_ports` as one row per port: Rank, Port, Flows and its ``shown`` most
    common flag combinations with their share ("S 96.2%, RA 2.1%, 3 others 1.7%"; "(none)" for
    no flag): ten ports read down one column, not across forty."""
    rows = []
    for rank, (port, block) in enumerate(long.groupby("Port", sort=False), start=1):
        counts = _ints(block["Count"])
        total = int(counts.sum())
        share = _pct(counts, total)
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


# --- 5. where do they go ---------------------------------------------------------------------

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
    con = _connect(categories)
    con.register("active", pa.table({"addr": pa.array(_active_array(active_inside), type=pa.uint32())}))
    lo, hi = _bucket(buckets)
    where = (
        _category_clause(con, category, "TRUE")
        + f" AND protocol = {int(protocol)} AND source_flows BETWEEN {lo} AND {hi}"
    )
    # flows by (port, destination, source's flow count): kept by vlf_categories for the unmatched ones
    _counted(con, categories, CATEGORY_DESTINATIONS, "pd", kept_holds=category in UNMATCHED)
    q = (
        f"WITH f AS (SELECT dPort, dIP, n, dIP IN (SELECT addr FROM active) AS hit FROM pd WHERE {where}) "
        "SELECT dPort, sum(n)::BIGINT AS flows, coalesce(sum(n) FILTER (WHERE hit), 0)::BIGINT AS hits, "
        "count(DISTINCT dIP) AS dst, count(DISTINCT dIP) FILTER (WHERE hit) AS dst_hit FROM f GROUP BY dPort "
        "ORDER BY flows DESC, dPort LIMIT ?"
    )
    df = _df(con, q, [int(top)])
    flows, hits, dst, dst_hit = (_ints(df[c]) for c in ("flows", "hits", "dst", "dst_hit"))
    return pd.DataFrame(
        {
            "Rank": np.arange(1, len(df) + 1, dtype=np.int64),
            "Port": _ints(df["dPort"]),
            "Flows": flows,
            "Hit": hits,
            "Miss": flows - hits,
            "% Hit": _pct(hits, flows),
            "# Dst": dst,
            "Dst Hit": dst_hit,
            "% Dst Hit": _pct(dst_hit, dst),
        }
    )


# --- 6. matched ports ------------------------------------------------------------------------

MATCHED_COLUMNS = ["Rank", "Port", "O/E", "Sessions", "O count", "E count"]


SESSION_COLUMNS = ("protocol", "port", "oe", "outside", "inside")


# Who opened a matched session, record by record (the first in this order opened it):
#  1. the exporter said so: SiLK's application field holds the service port the flow generator
#     recognised (the Zeek importer writes the responder's port there), and the opener's record
#     goes to it (dPort = application, sPort another port);
#  2. the earlier start time;
#  3. on a tie, the first packet's flags (initialFlags, else the cumulative flags): SYN without
#     ACK opens, SYN+ACK answers, anything else says nothing;
#  4. the port rule: the opener goes from an ephemeral port to a well-known one (port classes
#     0-1023, 1024-49151, 49152-65535: a lower class of dPort than of sPort opens);
#  5. still tied: the outside query, then the smaller dPort and sPort (deterministic).
_OPENING_FLAGS = "(CASE WHEN initialFlags <> 0 THEN initialFlags ELSE flags END)"
_PORT_CLASS = "(CASE WHEN {p} < 1024 THEN 0 WHEN {p} < 49152 THEN 1 ELSE 2 END)"
ORIGINATOR_ORDER = (
    "(application <> 0 AND dPort = application AND sPort <> application) DESC, sTime, "
    f"CASE WHEN ({_OPENING_FLAGS} & 18) = 2 THEN 0 WHEN ({_OPENING_FLAGS} & 18) = 18 THEN 2 ELSE 1 END, "
    f"{_PORT_CLASS.format(p='dPort')} < {_PORT_CLASS.format(p='sPort')} DESC, "
    "(nhIP >> 24) = 255, dPort, sPort"
)


def _session_rows_sql(relation: str) -> str:
    """One row per match id of matched records: protocol, its originator's service port, O/E,
    outside and inside address (the originator: :data:`ORIGINATOR_ORDER`)."""
    return (
        "SELECT protocol, port, oe, outside, inside FROM ("
        "SELECT protocol, nhIP & 16777215 AS id, dPort AS port, CASE WHEN (nhIP >> 24) = 255 THEN 'E' ELSE 'O' END AS oe, "
        "CASE WHEN (nhIP >> 24) = 255 THEN dIP ELSE sIP END AS outside, CASE WHEN (nhIP >> 24) = 255 THEN sIP ELSE dIP END AS inside "
        f"FROM ({relation}) WHERE (nhIP & 16777215) > 0 "
        "QUALIFY row_number() OVER (PARTITION BY protocol, nhIP & 16777215 "
        f"ORDER BY {ORIGINATOR_ORDER}) = 1)"
    )


def _sessions_sql(protocol: int, con: duckdb.DuckDBPyConnection | None = None) -> str:
    """CTE ``s``: one row per match id of ``t`` (matched records, or the kept sessions of
    :func:`refresh_sessions`) with its originator's service port, O/E, outside and inside address."""
    if con is not None and "oe" in _columns(con):
        return f"WITH s AS (SELECT * FROM t WHERE protocol = {int(protocol)}) "
    return f"WITH s AS (SELECT * FROM ({_session_rows_sql('SELECT * FROM t')}) WHERE protocol = {int(protocol)}) "


# A session belongs to its outside address, the VLF source (sessions are IPv4 records only).
SESSION_SOURCE = SourceKey("{t}.outside", "CAST(NULL AS BLOB)")


@holds_state_lock("state")
def refresh_sessions(matched: Path, state: Path) -> Segmented:
    """The matched sessions (one row per match id: ``SESSION_COLUMNS``) kept per source beside
    the segmented ``matched`` output and refreshed by its change log: what the matched-ports
    tables and figures count, without a pass over 30 M records each."""
    target = Segmented(state / "sessions", SESSION_SOURCE)
    source = Segmented(matched, SOURCE_OF_RECORD)
    inputs = {"matched": source}
    kept = InputGenerations(state, {"sessions": 2})  # 2: the originator rules of ORIGINATOR_ORDER
    changed = kept.changes(target, inputs)
    con = duck.connect()
    try:
        if changed is None:
            rows = con.sql(_session_rows_sql(source.relation_sql())).to_arrow_table()
            target.write_full(lambda path: write_parquet(rows, path))
        else:
            con.register("changed_records", source.rows_of(changed))
            target.apply(changed, con.sql(_session_rows_sql("SELECT * FROM changed_records")).to_arrow_table())
    finally:
        con.close()
    kept.write(target, inputs)
    return target


def matched_ports(matched_vlf_flows: Source, protocol: int = PROTO_TCP, top: int = 20) -> pd.DataFrame:
    """The study's "Top 20 Matched TCP/UDP ports (1 - 10 Flows)": Rank, Port, O/E, Sessions, O count, E count.

    The study does not say how it attributed a session ("we are unable to reliably determine the
    origin of the flows"); this is the definition used here.  Over the records of ``protocol`` in
    the rwmatch output whose nhIP label has a match id (low 24 bits) > 0, for each match id:

    * the *originator* is decided by :data:`ORIGINATOR_ORDER`: the exporter's word (SiLK's
      application field names the service port), else the earlier start, else SYN without ACK
      over SYN+ACK, else the ephemeral-to-well-known port rule, else the outside query;
    * the service *Port* is the originator's destination port;
    * *O/E* is ``O`` when the originator is a query record (the outside host opened it) and ``E``
      when it is a response record (the enterprise host opened it);
    * the match's outside address is the query's sIP (= the response's dIP), its inside address
      the query's dIP.

    Per (Port, O/E): Sessions = match ids; O count = distinct outside addresses; E count = distinct
    inside addresses.  Ranked by Sessions desc, then Port, then O before E; ``top`` rows.
    """
    con = _connect(matched_vlf_flows, empty=FLOW_SCHEMA)
    q = (
        _sessions_sql(protocol, con)
        + "SELECT port, oe, count(*) AS sessions, count(DISTINCT outside) AS o, count(DISTINCT inside) AS e "
        "FROM s GROUP BY port, oe ORDER BY sessions DESC, port, oe LIMIT ?"
    )
    df = _df(con, q, [int(top)])
    return pd.DataFrame(
        {
            "Rank": np.arange(1, len(df) + 1, dtype=np.int64),
            "Port": _ints(df["port"]),
            "O/E": df["oe"].astype(object).to_numpy(),
            "Sessions": _ints(df["sessions"]),
            "O count": _ints(df["o"]),
            "E count": _ints(df["e"]),
        }
    )


def matched_port_direction_counts(matched_vlf_flows: Source, protocol: int = PROTO_TCP) -> pd.DataFrame:
    """Per service port, the matched sessions opened from outside and from the enterprise:
    columns Port, ``O->E``, ``E->O`` (the data of the study's "Overall TCP/UDP ports (1 - 10 F)
    OtoE, EtoO" plots).  Sessions, originator and service port as in :func:`matched_ports`; every
    port with at least one session, sorted by port.
    """
    con = _connect(matched_vlf_flows, empty=FLOW_SCHEMA)
    q = (
        _sessions_sql(protocol, con)
        + "SELECT port, count_if(oe = 'O') AS oe_n, count_if(oe = 'E') AS eo_n FROM s GROUP BY port ORDER BY port"
    )
    df = _df(con, q)
    return pd.DataFrame({"Port": _ints(df["port"]), "O->E": _ints(df["oe_n"]), "E->O": _ints(df["eo_n"])})


# --- 7. port numerology ----------------------------------------------------------------------

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
    kept = _kept_summary(source, MATCHED_PORTS) if ports == "both" and matched_only else None
    if kept is not None:  # the matched records' counts by port, kept by each refresh of the matching
        which = f"protocol = {int(protocol)}" if protocol is not None else "TRUE"
        return _port_array(duck.connect().sql(
            f"SELECT port, sum(n)::BIGINT AS n FROM read_parquet({path_literal(str(kept))}) WHERE {which} GROUP BY port"))
    con = _connect(source)
    cols = _columns(con)
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


# --- 8. ICMP ---------------------------------------------------------------------------------

ICMP_COLUMNS = ["Type", "Code", "Count", "Rank", "Meaning"]
INVALID_CODE = "(Invalid code)"


def icmp_table(categories: Source, meaning: Callable[[int, int], tuple[str, bool]], top: int | None = None) -> pd.DataFrame:
    """The study's "ICMP" table: Type, Code, Count, Rank, Meaning.

    Over the ``ICMP`` rows of ``vlf_categories`` (or the protocol-1 records of a flow table), type =
    dPort >> 8 and code = dPort & 255 (SiLK's encoding).  Count = flows per (type, code); Rank =
    position by count desc over all pairs (ties: smaller type, then code).  Meaning =
    ``meaning(type, code)[0]``, or ``(Invalid code)`` when ``meaning`` says the code is not valid.
    Rows are sorted as in the study: grouped by type, the types in the order of their most frequent
    code (its rank), and inside a type by count desc.  ``top`` keeps the pairs of rank <= top.
    """
    con = _connect(categories)
    where = _category_clause(con, "ICMP", f"protocol = {PROTO_ICMP}")
    q = (
        f"WITH c AS (SELECT dPort >> 8 AS type, dPort & 255 AS code, count(*) AS n FROM t WHERE {where} GROUP BY ALL), "
        "r AS (SELECT *, row_number() OVER (ORDER BY n DESC, type, code) AS rk FROM c) "
        "SELECT type, code, n, rk, min(rk) OVER (PARTITION BY type) AS trk FROM r ORDER BY trk, rk"
    )
    df = _df(con, q)
    if top is not None:
        df = df[df["rk"] <= top]
    types, codes = _ints(df["type"]), _ints(df["code"])
    texts = []
    for ty, co in zip(types.tolist(), codes.tolist()):  # one call per distinct (type, code) pair
        text, valid = meaning(ty, co)
        texts.append(text if valid else INVALID_CODE)
    return pd.DataFrame(
        {"Type": types, "Code": codes, "Count": _ints(df["n"]), "Rank": _ints(df["rk"]), "Meaning": np.array(texts, dtype=object)}
    )


# --- 9. other protocols ----------------------------------------------------------------------

OTHER_COLUMNS = ["P'col", "CC", "Flows", "Packets", "Bytes", "Description", "Implausible"]


def _country_codes(country_of: Callable[[np.ndarray], np.ndarray], addresses: np.ndarray) -> np.ndarray:
    """country_of over distinct addresses, unknown (None, '', '--', '-') as :data:`UNKNOWN_COUNTRY`."""
    if len(addresses) == 0:
        return np.zeros(0, dtype=object)
    cc = np.asarray(country_of(np.asarray(addresses, dtype=np.uint32)))
    if cc.dtype.kind == "U":  # fixed-width codes (the GeoIP lookup's): compared whole, no Python loop
        known = ~np.isin(cc, ["", "-", "--"])
    else:
        known = np.array([isinstance(c, str) and c not in ("", "-", "--") for c in cc], dtype=bool)
    return np.where(known, cc.astype(object), UNKNOWN_COUNTRY).astype(object)


def other_protocols(
    source: Source,
    protocol_name: Callable[[int], str | None],
    country_of: Callable[[np.ndarray], np.ndarray],
) -> pd.DataFrame:
    """The study's "Other Protocols": P'col, CC, Flows, Packets, Bytes, Description, Implausible.

    Over the ``other`` rows of ``vlf_categories`` (or, for a flow table, records whose protocol is
    not ICMP, TCP or UDP), per protocol number: CC = the distinct known country codes of its source
    addresses (``country_of``), sorted, space separated, ``-`` if none is known; Flows = rows;
    Packets and Bytes = sums; Description = ``protocol_name(p)``, ``Unassigned`` when it gives None;
    Implausible = ``yes`` when bytes/packets < 20 (smaller than an IP header) or > 65535 (larger
    than an IP packet), or packets per flow > 10^6, or packets = 0 -- the study's "collector
    malfunction" rows -- else empty.  Sorted by protocol, then a ``TOTAL`` row (sums; CC,
    Description, Implausible empty); no row at all when there is no such flow.
    """
    con = _connect(source)
    where = _category_clause(con, "other", f"protocol NOT IN ({PROTO_ICMP}, {PROTO_TCP}, {PROTO_UDP})")
    df = _df(
        con,
        f"SELECT protocol, count(*) AS flows, sum(packets)::HUGEINT AS packets, sum(bytes)::HUGEINT AS bytes "
        f"FROM t WHERE {where} GROUP BY protocol ORDER BY protocol",
    )
    pairs = _df(con, f"SELECT DISTINCT protocol, sIP FROM t WHERE {where}")
    cc = _country_codes(country_of, pairs["sIP"].to_numpy())
    pairs = pd.DataFrame({"protocol": _ints(pairs["protocol"]), "cc": cc})
    known = pairs[pairs["cc"] != UNKNOWN_COUNTRY].drop_duplicates()
    joined = known.sort_values("cc").groupby("protocol")["cc"].agg(" ".join)
    protos = _ints(df["protocol"])
    flows = _ints(df["flows"])
    packets = np.array([int(v) for v in df["packets"]], dtype=object)
    byts = np.array([int(v) for v in df["bytes"]], dtype=object)
    implausible = []
    for f, p, b in zip(flows.tolist(), packets.tolist(), byts.tolist()):  # one row per protocol
        implausible.append(p == 0 or b < 20 * p or b > 65535 * p or p > 10**6 * f)
    names = []
    for p in protos.tolist():
        name = protocol_name(p)
        names.append(name if name else "Unassigned")
    out = pd.DataFrame(
        {
            "P'col": protos.astype(object),
            "CC": [joined.get(p, UNKNOWN_COUNTRY) for p in protos.tolist()],
            "Flows": flows.astype(object),
            "Packets": packets,
            "Bytes": byts,
            "Description": names,
            "Implausible": np.array(["yes" if bad else "" for bad in implausible], dtype=object),
        }
    )
    if not len(out):
        return out[OTHER_COLUMNS]
    total = pd.DataFrame(
        {"P'col": ["TOTAL"], "CC": [""], "Flows": [int(flows.sum())], "Packets": [int(sum(packets.tolist()))],
         "Bytes": [int(sum(byts.tolist()))], "Description": [""], "Implausible": [""]}
    )
    out = pd.concat([out, total], ignore_index=True)
    for c in ("Flows", "Packets", "Bytes"):
        values = out[c].tolist()
        if max(values, default=0) < 2**63:
            out[c] = np.array(values, dtype=np.int64)
    return out[OTHER_COLUMNS]


# --- 10. geographic distribution -------------------------------------------------------------

GEO_COLUMNS = ["Port", "Rank", "CC", "Count", "Percent"]


def geographic_distribution(
    categories: Source,
    country_of: Callable[[np.ndarray], np.ndarray],
    ports: Sequence[int],
    top: int = 10,
    *,
    category: str = "unmatched TCP",
    buckets: int | tuple[int, int] = (1, 10),
) -> pd.DataFrame:
    """The study's "Geographical distribution", long format: Port, Rank, CC, Count, Percent.

    For each port of ``ports`` (in that order; the study's are the top unmatched-TCP ports for
    1-10 flows), over the ``category`` rows with that destination port and ``source_flows`` in
    ``buckets``: flows per country of the source address (``country_of`` on the distinct sIPs;
    unknown countries are counted as ``-``), the ``top`` countries by flows desc, code asc, with
    Percent = 100 * Count / all flows to the port (2 decimals), then a total row with Rank ``T``,
    CC "", Count = all flows to the port and Percent 100 (0 when there are none).
    :func:`geographic_side_by_side` pivots it.
    """
    con = _connect(categories)
    lo, hi = _bucket(buckets)
    ports = [int(p) for p in ports]
    proto = PROTO_UDP if "UDP" in category else PROTO_TCP
    where = _category_clause(con, category, f"protocol = {proto}") + f" AND source_flows BETWEEN {lo} AND {hi}"
    con.register("wanted", pa.table({"port": pa.array(ports, type=pa.int64())}))
    con.execute(f"CREATE TEMP TABLE flows AS SELECT dPort, sIP, count(*) AS n FROM t WHERE {where} "
                "AND dPort IN (SELECT port FROM wanted) GROUP BY ALL")
    # distinct and sorted by DuckDB: the lookup then skips its own unique (1 M addresses: ~2 s in numpy here)
    addrs = con.sql("SELECT DISTINCT sIP FROM flows ORDER BY sIP").fetchnumpy()["sIP"].astype(np.uint32)
    codes = _country_codes(country_of, addrs)
    con.register("cc", pa.table({"sIP": pa.array(addrs, type=pa.uint32()), "cc": pa.array(codes, type=pa.string())}))
    q = (
        "WITH c AS (SELECT dPort AS port, cc, sum(n)::BIGINT AS n FROM flows JOIN cc USING (sIP) GROUP BY ALL), "
        "r AS (SELECT *, row_number() OVER (PARTITION BY port ORDER BY n DESC, cc) AS rk, sum(n) OVER (PARTITION BY port) AS total FROM c) "
        "SELECT port, rk, cc, n, total FROM r WHERE rk <= ? ORDER BY port, rk"
    )
    ranked = _df(con, q, [int(top)])
    totals = dict(con.sql("SELECT dPort, sum(n)::BIGINT FROM flows GROUP BY dPort").fetchall())
    parts = []
    for p in ports:  # one block per requested port
        block = ranked[ranked["port"] == p]
        total = int(totals.get(p, 0))
        n = _ints(block["n"])
        parts.append(pd.DataFrame({"Port": p, "Rank": _ints(block["rk"]).astype(object), "CC": block["cc"].astype(object).to_numpy(),
                                   "Count": n, "Percent": _pct(n, total) if len(n) else np.zeros(0)}))
        parts.append(pd.DataFrame({"Port": [p], "Rank": ["T"], "CC": [""], "Count": [total], "Percent": [100.0 if total else 0.0]}))
    if not parts:
        return pd.DataFrame({c: [] for c in GEO_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    out["Port"] = _ints(out["Port"])
    out["Count"] = _ints(out["Count"])
    out["Percent"] = out["Percent"].astype(np.float64)
    out["Rank"] = out["Rank"].astype(object)
    return out[GEO_COLUMNS]


def geographic_side_by_side(long: pd.DataFrame) -> pd.DataFrame:
    """:func:`geographic_distribution` as the study prints it: R, then ``<port> CC``,
    ``<port> cnt.``, ``<port> pct.`` per port, and a last row ``T`` with each port's total count."""
    numbered = long[long["Rank"] != "T"].copy()
    numbered["Rank"] = _ints(numbered["Rank"]) if len(numbered) else numbered["Rank"]
    ports = list(dict.fromkeys(long["Port"].tolist()))
    out = side_by_side(numbered, "Port", {"CC": "{} CC", "Count": "{} cnt.", "Percent": "{} pct."}, ports, out_rank="R")
    if len(numbered) == 0:
        out = pd.DataFrame({"R": pd.Series([], dtype=object)})
        for p in ports:
            out[f"{p} CC"], out[f"{p} cnt."], out[f"{p} pct."] = pd.Series([], dtype=object), pd.array([], dtype="Int64"), np.zeros(0)
    out["R"] = out["R"].astype(object)
    totals = long[long["Rank"] == "T"].set_index("Port")["Count"]
    row: dict[str, object] = {"R": "T"}
    for p in ports:
        row[f"{p} CC"] = None
        row[f"{p} cnt."] = int(totals.get(p, 0))
        row[f"{p} pct."] = np.nan
    total = pd.DataFrame([row])
    for c in out.columns:
        if str(out[c].dtype) == "Int64":
            total[c] = total[c].astype("Int64")
    return pd.concat([out, total], ignore_index=True)


# --- 11. contact surface ---------------------------------------------------------------------

CONTACT_COLUMNS = ["Destinations", "Sources", "%", "Cum. %"]


def contact_surface(pairs: Source) -> pd.DataFrame:
    """The study's contact surface ("number of sources by number of destinations contacted").

    From a table of (sIP, dIP) pairs (the contact-pair bag: columns sIP, dIP and possibly a
    counter; duplicates are harmless): per source, the number of distinct destinations; then per
    number of destinations, Sources = how many sources contacted exactly that many, % = share of
    all sources and Cum. % (2 decimals), sorted by Destinations.
    """
    con = _connect(pairs)
    return _contact_table(_df(
        con,
        "SELECT d, count(*) AS s FROM (SELECT sIP, count(DISTINCT dIP) AS d FROM t GROUP BY sIP) GROUP BY d ORDER BY d",
    ))


def contact_surface_of_counts(destination_counts: Source) -> pd.DataFrame:
    """:func:`contact_surface` of the IPv4 sources, from a bag of distinct destinations per
    source (``source_destination_count_bag``) instead of the pairs themselves: the same table,
    without a second pass over every pair of the window."""
    con = _connect(destination_counts)
    return _contact_table(_df(
        con, "SELECT destinations AS d, count(*) AS s FROM t WHERE sIPv6 IS NULL AND destinations > 0 GROUP BY d ORDER BY d"))


def _contact_table(df: pd.DataFrame) -> pd.DataFrame:
    s = _ints(df["s"])
    total = int(s.sum())
    return pd.DataFrame(
        {"Destinations": _ints(df["d"]), "Sources": s, "%": _pct(s, total) if len(s) else np.zeros(0),
         "Cum. %": _pct(np.cumsum(s), total) if len(s) else np.zeros(0)}
    )


# --- 12. category counts ---------------------------------------------------------------------

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
        _connect(categories).close()  # the input checks: missing files, an empty list
        if isinstance(categories, pd.DataFrame):
            categories = pa.Table.from_pandas(categories, preserve_index=False)
        paths = [] if isinstance(categories, pa.Table) else [categories] if isinstance(categories, (str, Path)) else list(categories)
        kept = category_totals(categories if isinstance(categories, pa.Table)
                               else relation_sql(paths) if paths else CATEGORY_SCHEMA.empty_table())
    flows = np.array([kept[c][0] for c in (*CATEGORIES, "Total")], dtype=np.int64)
    sources = np.array([kept[c][1] for c in (*CATEGORIES, "Total")], dtype=np.int64)
    total_flows, total_sources = flows[-1], sources[-1]
    return pd.DataFrame(
        {
            "Category": [*CATEGORIES, "Total"],
            "Flows": flows,
            "% flows": _pct(flows, total_flows),
            "Sources": sources,
            "% sources": _pct(sources, total_sources),
        }
    )
