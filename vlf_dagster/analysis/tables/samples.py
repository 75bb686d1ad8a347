"""The study's record samples in rwcut / cutmatch layout, and the malformed near-matches.

* :func:`one_flow_sample`: "A small sample of 1 flow / host data": flows of sources that sent one
  flow over the window, a deterministic sample for a seed, sorted by start time, as rwcut text.
* :func:`matched_sample`: "A sample of matched flows": VLF queries, matched and unmatched, each
  match's responses right after its query, in cutmatch layout (``->`` / ``<-`` and the match id).
* :func:`near_matches`: "Malformed traffic": an inside host answered a VLF query (reversed
  addresses, same protocol, starting within the time delta of the query's end) but only one port
  mirrors the query's.  Labelled like rwmatch output so :func:`near_matches_text` prints it in
  cutmatch layout.

Sampling is a DuckDB top-n on a seeded hash of each record's (or conversation's) identifying
fields: independent of the input's row order, streamed over Parquet, no per-record Python loop.
Every function takes a pyarrow table, a pandas DataFrame or Parquet file(s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ...flows.tools.cut import format_records
from ...flows.tools.match import MAX_MATCH_ID, RESPONSE_TAG, label_sql
from ...flows.schema import FIELD_NAMES, FLOW_SCHEMA, PROTO_TCP, PROTO_UDP, conform
from ...flows.sql import ident
from ...flows.segments import SOURCE_IS_DIP, SOURCE_IS_SIP, Segmented, SourceKey
from ...flows.storage import write_parquet, holds_state_lock
from ...flows import duck

Source = Union[pa.Table, pd.DataFrame, str, Path, Sequence[Union[str, Path]]]

ONE_FLOW_FIELDS = "sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,duration"
MATCHED_FIELDS = "match,sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime"
NEAR_MATCH_FIELDS = "match,sIP,dIP,sPort,dPort,protocol,packets,bytes,flags"
# The fields that identify a record for sampling and for ties in sorting.
_IDENTITY = ("sTime", "sIP", "dIP", "sPort", "dPort", "protocol", "packets", "bytes", "flags", "duration")


class SampleError(ValueError):
    """A bad sample request (missing columns, negative size)."""


# --- input ---------------------------------------------------------------------------------------


def _register(con: duckdb.DuckDBPyConnection, name: str, source: Source, *, row_numbers: bool = False) -> set[str] | None:
    """Make ``source`` queryable as ``name`` (:func:`duck.register`); return its columns (None for
    no files).  A DataFrame is read as the Arrow table it converts to, the types the records have
    in files."""
    if isinstance(source, pd.DataFrame):
        source = pa.Table.from_pandas(source, preserve_index=False)
    return duck.register(con, name, source, row_numbers=row_numbers)


def _flow_table(table: pa.Table) -> pa.Table:
    """The flow-schema table of a query result (extra columns dropped, missing ones zero)."""
    keep = [c for c in table.column_names if c in FIELD_NAMES]
    return conform(table.select(keep), source="sample")


def _lines_text(table: pa.Table, fields: str) -> str:
    return "\n".join(format_records(table, fields)) + "\n"


def _check_n(n: int) -> int:
    if int(n) != n or n < 0:
        raise SampleError(f"sample size must be a non-negative integer, not {n!r}")
    return int(n)


def _hash(prefix: str, cols: Sequence[str], present: set[str]) -> str:
    """A seeded hash over the identifying columns present (the seed is the first argument)."""
    used = [f"{prefix}{ident(c)}" for c in cols if c in present]
    return f"hash(?::BIGINT, {', '.join(used)})"


# --- 5. 1 flow / host ----------------------------------------------------------------------------


def one_flow_sample_table(categories_or_flows: Source, n: int = 13, seed: int = 0) -> pa.Table:
    """``n`` flows of 1-flow sources (a flow table), sorted by sTime.

    With a ``source_flows`` column (``vlf_categories``) the 1-flow sources are the rows with
    ``source_flows == 1``; without one (a plain flow table) they are the sIPs seen exactly once in
    the input.  The same input and seed give the same sample whatever the row order.
    """
    n = _check_n(n)
    with duck.connect() as con:
        cols = _register(con, "src", categories_or_flows)
        if not cols or n == 0:
            return FLOW_SCHEMA.empty_table()
        missing = [c for c in ("sIP", "dIP", "sTime") if c not in cols]
        if missing:
            raise SampleError(f"sample input lacks column(s) {', '.join(missing)}")
        if "source_flows" in cols:
            ones = "SELECT * FROM src WHERE source_flows = 1"
        else:
            v6 = ", sIPv6" if "sIPv6" in cols else ""
            ones = f"SELECT * FROM src QUALIFY count(*) OVER (PARTITION BY sIP{v6}) = 1"
        ties = ", ".join(ident(c) for c in _IDENTITY if c in cols)
        picked = con.sql(
            f"SELECT * FROM (SELECT * FROM ({ones}) ORDER BY {_hash('', _IDENTITY, cols)}, {ties} LIMIT ?) "
            f"ORDER BY {ties}",
            params=[int(seed), n],
        ).to_arrow_table()
    return _flow_table(picked)


def one_flow_sample(categories_or_flows: Source, n: int = 13, seed: int = 0) -> str:
    """"A small sample of 1 flow / host data" as rwcut text (title line first, newline at the
    end): fields sIP, dIP, sPort, dPort, protocol, packets, bytes, flags, sTime, duration."""
    return one_flow_text(one_flow_sample_table(categories_or_flows, n, seed))


def one_flow_text(table: pa.Table) -> str:
    """A :func:`one_flow_sample_table` in the sample's rwcut layout."""
    return _lines_text(table, ONE_FLOW_FIELDS)


# --- 6. matched flows ----------------------------------------------------------------------------

_LABEL_SQL = label_sql()


def matched_sample_table(matched_vlf_flows: Source, n: int = 7, seed: int = 0,
                         matched_fraction: float | None = 0.5) -> pa.Table:
    """``n`` conversations of an rwmatch output, as a labelled flow table.

    A conversation is an unmatched query (label 0.0.0.0) or a match (every record with its id).
    ``matched_fraction`` of them are matches (rounded up; the other kind fills in when one runs
    short), or with None they are drawn from all conversations alike.  Conversations are sorted
    by their first query's sTime; a match's records keep rwmatch's output order, so each response
    follows its query.  Unmatched responses (255.0.0.0) are left out.
    """
    n = _check_n(n)
    if matched_fraction is not None and not 0.0 <= matched_fraction <= 1.0:
        raise SampleError(f"matched_fraction must be in [0, 1], not {matched_fraction!r}")
    with duck.connect() as con:
        cols = _register(con, "m", matched_vlf_flows, row_numbers=True)
        if not cols or n == 0:
            return FLOW_SCHEMA.empty_table()
        if "nhIP" not in cols:
            raise SampleError("the matched flows lack nhIP (rwmatch's labels)")
        label = _LABEL_SQL if {"attributes", "nhIPv6"} <= cols else "nhIP::UBIGINT"
        con.execute(
            f"CREATE VIEW lab AS SELECT *, (({label}) & {MAX_MATCH_ID})::BIGINT AS _id, "
            f"(({label}) & {RESPONSE_TAG}) <> 0 AS _resp FROM m"
        )
        fields = [c for c in _IDENTITY if c in cols]
        # one row per conversation: its first query's position and the seeded hash of that record
        # (hashes, not records, go through the grouping), and of each kind only the lowest hashes
        # are kept as candidates: a top-n heap, no table of 23 M conversations (11 s -> ~4 s here)
        h = _hash("", fields, set(fields))
        kinds = {  # matches (a group per id) and unmatched queries (each alone)
            "matched": f"SELECT _id, min(_row) AS _row, arg_min(h, _row) AS h FROM (SELECT _id, _row, {h} AS h FROM lab "
                       "WHERE NOT _resp AND _id <> 0) GROUP BY _id",
            "unmatched": f"SELECT _id, _row, {h} AS h FROM lab WHERE NOT _resp AND _id = 0",
        }
        fetch = 4 * n + 16
        found = []
        for sql in kinds.values():
            low = con.sql(f"SELECT * FROM ({sql}) ORDER BY h LIMIT ?", params=[int(seed), fetch]).to_arrow_table()
            if low.num_rows == fetch and low.column("h")[n - 1] == low.column("h")[fetch - 1]:  # ties past the heap: all of them
                low = con.sql(f"SELECT * FROM ({sql}) WHERE h <= ?", params=[int(seed), low.column("h")[n - 1].as_py()]).to_arrow_table()
            found.append(low)
        con.register("candidates", pa.concat_tables(found))
        top = ", ".join(f"l.{ident(c)}" for c in fields)
        pick = ("SELECT c._id, c._row, l.sTime AS t, c.h, {m} AS matched FROM candidates c JOIN lab l ON l._row = c._row "
                f"WHERE {{cond}} ORDER BY c.h, {top}, c._row LIMIT ?")
        top_n = con.sql(
            f"({pick.format(m='true', cond='c._id <> 0')}) UNION ALL ({pick.format(m='false', cond='c._id = 0')})",
            params=[n, n],
        ).df()
        top_n["order"] = np.arange(len(top_n))  # each kind's rows come in hash order
        matched, unmatched = top_n[top_n["matched"]], top_n[~top_n["matched"]]
        if matched_fraction is None:
            chosen = top_n.sort_values(["h", "t", "_row"]).head(n)
        else:
            want_m = int(np.ceil(n * matched_fraction))
            take_m = min(len(matched), max(want_m, n - len(unmatched)))
            take_u = min(len(unmatched), n - take_m)
            chosen = pd.concat([matched.head(take_m), unmatched.head(take_u)])
        chosen = chosen.sort_values(["t", "_row"])
        keys = pa.table({
            "_cid": pa.array(chosen["_id"].to_numpy(dtype=np.int64)),
            "_crow": pa.array(chosen["_row"].to_numpy(dtype=np.int64)),
            "_corder": pa.array(np.arange(len(chosen), dtype=np.int64)),
        })
        con.register("chosen", keys)
        picked = con.sql(
            "SELECT * EXCLUDE (_corder, _row) FROM ("
            "SELECT lab.* EXCLUDE (_id, _resp), _corder FROM chosen JOIN lab ON _cid <> 0 AND lab._id = _cid "
            "UNION ALL SELECT lab.* EXCLUDE (_id, _resp), _corder FROM chosen JOIN lab ON _cid = 0 AND lab._row = _crow"
            ") ORDER BY _corder, _row"
        ).to_arrow_table()
    return _flow_table(picked)


def matched_sample(matched_vlf_flows: Source, n: int = 7, seed: int = 0,
                   matched_fraction: float | None = 0.5) -> str:
    """"A sample of matched flows" in cutmatch layout (fields match, sIP, dIP, sPort, dPort,
    protocol, packets, bytes, flags, sTime); see :func:`matched_sample_table`."""
    return _lines_text(matched_sample_table(matched_vlf_flows, n, seed, matched_fraction), MATCHED_FIELDS)


# The matched sample drawn from the conversations with the lowest hashes only.  The state keeps,
# per kind (matches, unmatched queries), every conversation whose hash is at most a bound, with
# its records: a refresh drops the changed sources' conversations and adds their new ones under
# the bound, so the state still holds every conversation under it, and the n lowest of each kind
# (all a sample can pick) are among them.  When a kind runs short, everything is drawn again.
CANDIDATES_KEPT = 256  # conversations of each kind under the bound after a full draw
CANDIDATES_LOW = 32  # fewer than this left of a kind under a bound (counted by hash): draw again


def _candidate_rows(con, relation: str, seed: int, bounds: dict | None, keep: int) -> tuple[pa.Table, dict]:
    """The records (with ``_orow``, their position in the matched output, ``_kind`` and ``_h``)
    of the conversations of ``relation`` (matched records with ``_row``) whose hash is under the
    kind's bound; with ``bounds`` None, the ``keep`` lowest of each kind, and the bounds found."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW cand_src AS {relation}")
    cols = {r[0] for r in con.sql("DESCRIBE cand_src").fetchall()}
    label = _LABEL_SQL if {"attributes", "nhIPv6"} <= cols else "nhIP::UBIGINT"
    con.execute(f"CREATE OR REPLACE TEMP VIEW cand_lab AS SELECT *, (({label}) & {MAX_MATCH_ID})::BIGINT AS _id, "
                f"(({label}) & {RESPONSE_TAG}) <> 0 AS _resp FROM cand_src")
    fields = [c for c in _IDENTITY if c in cols]
    h = _hash("", fields, set(fields))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE cand_convs AS "
        f"SELECT 'matched' AS kind, _id, min(_row) AS first, arg_min(h, _row) AS h FROM (SELECT _id, _row, {h} AS h "
        f"FROM cand_lab WHERE NOT _resp AND _id <> 0) GROUP BY _id "
        f"UNION ALL SELECT 'unmatched', 0, _row, {h} FROM cand_lab WHERE NOT _resp AND _id = 0", [int(seed), int(seed)])
    if bounds is None:
        bounds = {}
        for kind in ("matched", "unmatched"):
            top = con.sql(f"SELECT h FROM cand_convs WHERE kind = '{kind}' ORDER BY h LIMIT ?", params=[keep]).fetchall()
            bounds[kind] = int(top[-1][0]) if len(top) == keep else None  # None: every conversation kept
    kept = " OR ".join(f"(kind = '{k}'{'' if b is None else f' AND h <= {int(b)}'})" for k, b in bounds.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE cand_kept AS SELECT * FROM cand_convs WHERE {kept}")
    rows = con.sql(
        "SELECT l.* EXCLUDE (_id, _resp, _row), l._row AS _orow, c.kind AS _kind, c.h AS _h FROM cand_lab l "
        "JOIN cand_kept c ON c.kind = 'matched' AND l._id = c._id "
        "UNION ALL SELECT l.* EXCLUDE (_id, _resp, _row), l._row, c.kind, c.h FROM cand_lab l "
        "JOIN cand_kept c ON c.kind = 'unmatched' AND l._row = c.first ORDER BY _orow").to_arrow_table()
    return rows, bounds


@holds_state_lock("state")
def refresh_sample_candidates(matched: Path, state: Path, *, seed: int = 0, keep: int = CANDIDATES_KEPT,
                              low: int | None = None) -> Segmented:
    """The matched sample's candidate conversations, kept per source beside the segmented
    ``matched`` output and refreshed by its change log."""
    from ..steps.matching import SOURCE_OF_RECORD, InputGenerations

    target = Segmented(state / "candidates", SOURCE_OF_RECORD)
    source = Segmented(matched, SOURCE_OF_RECORD)
    inputs = {"matched": source}
    kept = InputGenerations(state, {"matched_sample": 1, "seed": int(seed), "keep": int(keep)})
    changed = kept.changes(target, inputs)
    with duck.connect() as con:
        if changed is not None:
            bounds = target.extra["bounds"]
            # the changed sources' records, found once (the conversations and the records both read them)
            con.register("changed_records", source.rows_of(changed, row_numbers=True))
            rows, _ = _candidate_rows(con, "SELECT * FROM changed_records", seed, bounds, keep)
            target.apply(changed, rows)
            counts = dict(con.sql(f"SELECT _kind, count(DISTINCT _h) FROM ({target.relation_sql()}) GROUP BY ALL").fetchall())
            if any(b is not None and counts.get(k, 0) < (CANDIDATES_LOW if low is None else low) for k, b in bounds.items()):
                changed = None  # a kind ran short under its bound: draw again
        if changed is None:
            rows, bounds = _candidate_rows(con, source.relation_sql(row_numbers=True), seed, None, keep)
            target.write_full(lambda path: write_parquet(rows, path), extra={"bounds": bounds})
    kept.write(target, inputs)
    return target


def matched_sample_of_candidates(candidates: Segmented, n: int = 7, seed: int = 0,
                                 matched_fraction: float | None = 0.5) -> str:
    """:func:`matched_sample` over the kept candidates: the same conversations as over the whole
    matched output (they hold each kind's lowest hashes)."""
    with duck.connect() as con:
        table = con.sql(f"SELECT * EXCLUDE (_orow, _kind, _h) FROM ({candidates.relation_sql()}) ORDER BY _orow").to_arrow_table()
    return matched_sample(table, n, seed, matched_fraction)


# --- 7. malformed near-matches -------------------------------------------------------------------

_SAME_HOSTS = (
    "r.sIP = q.dIP AND r.dIP = q.sIP AND r.sIPv6 IS NOT DISTINCT FROM q.dIPv6 "
    "AND r.dIPv6 IS NOT DISTINCT FROM q.sIPv6 AND r.protocol = q.protocol"
)
_IN_TIME = "r.sTime >= q.sTime AND r.sTime <= q.sTime + q.duration + ?"


def near_matches(
    vlf_flows: Source,
    outbound: Source,
    time_delta_ms: int = 1000,
    limit: int | None = 20,
    *,
    exclude_answered: bool = True,
    groups: bool = False,
) -> pa.Table:
    """Queries answered with ports that mirror on one side only, labelled like rwmatch output.

    A near-match of a TCP/UDP query ``q`` (from ``vlf_flows``) is an outbound flow ``r`` with
    r.sIP = q.dIP, r.dIP = q.sIP, the same protocol, q.sTime <= r.sTime <= q.eTime +
    ``time_delta_ms``, and either r.sPort = q.dPort with r.dPort != q.sPort, or r.dPort = q.sPort
    with r.sPort != q.dPort.  A proper (mirrored) answer is never reported; with
    ``exclude_answered`` (the default) a pair is left out too when the query also got a proper
    answer in its window, or when the response is the proper answer of another query.

    The first ``limit`` queries (by sTime, then their fields; None: all) are numbered k = 1, 2,
    ...: the query is labelled 0.0.0.k and each of its near-matches, right after it in
    start-time order, 255.0.0.k.  One DuckDB join; returns a flow-schema table, or with
    ``groups`` the records unlabelled with their group ``k``, ``side`` (0 query, 1 response) and
    ``pos``.
    """
    delta = int(time_delta_ms)
    if delta < 0 or delta != time_delta_ms:
        raise SampleError(f"invalid time delta {time_delta_ms!r}: a non-negative number of milliseconds")
    if limit is not None:
        limit = _check_n(limit)
    with duck.connect() as con:
        # conform() gives both sides every flow column (the IPv6 ones included) for the join, and
        # each record its position (_row): the join reads the few columns it compares and fetches
        # whole records only for the pairs it keeps
        sides = []
        for name, source in (("qsrc", vlf_flows), ("rsrc", outbound)):
            if isinstance(source, (pa.Table, pd.DataFrame)):
                table = source if isinstance(source, pa.Table) else pa.Table.from_pandas(source, preserve_index=False)
                table = _flow_table(table)
                con.register(name, table.append_column("_row", pa.array(np.arange(table.num_rows, dtype=np.int64))))
                sides.append(True)
            else:
                cols = _register(con, name + "_raw", source, row_numbers=True)
                if cols:
                    fill = ", ".join(
                        f"NULL::BLOB AS {c}" if c.endswith("v6") else f"0 AS {ident(c)}"
                        for c in FIELD_NAMES if c not in cols
                    )
                    con.execute(f"CREATE VIEW {name} AS SELECT *{', ' + fill if fill else ''} FROM {name}_raw")
                sides.append(bool(cols))
        if not all(sides) or limit == 0:
            return _grouped(FLOW_SCHEMA.empty_table(), [], [], []) if groups else FLOW_SCHEMA.empty_table()
        compared = "_row, sIP, dIP, sIPv6, dIPv6, sPort, dPort, protocol, sTime, duration"
        # a query with a proper answer, or a response that properly answers another query, is no
        # sign of malformed traffic (e.g. two SYNs from one host, only the second one answered)
        answered = (
            f"AND NOT EXISTS (SELECT 1 FROM r r2 WHERE {_SAME_HOSTS.replace('r.', 'r2.')} AND {_IN_TIME.replace('r.', 'r2.')} "
            "AND r2.sPort = q.dPort AND r2.dPort = q.sPort) "
            f"AND NOT EXISTS (SELECT 1 FROM q q2 WHERE {_SAME_HOSTS.replace('q.', 'q2.')} "
            f"AND {_IN_TIME.replace('q.', 'q2.')} AND r.sPort = q2.dPort AND r.dPort = q2.sPort)"
            if exclude_answered else ""
        )
        record = lambda alias: "struct_pack(" + ", ".join(f"{ident(c)} := {alias}.{ident(c)}" for c in FIELD_NAMES) + ")"  # noqa: E731
        order_q = ", ".join(f"q.{ident(c)}" for c in _IDENTITY)
        sql = f"""
        WITH q AS (SELECT {compared} FROM qsrc WHERE protocol IN ({PROTO_TCP}, {PROTO_UDP})),
        r AS (SELECT {compared} FROM rsrc),
        hits AS (
            SELECT q._row AS qi, r._row AS ri FROM q JOIN r ON {_SAME_HOSTS}
            WHERE {_IN_TIME}
              AND ((r.sPort = q.dPort AND r.dPort <> q.sPort) OR (r.dPort = q.sPort AND r.sPort <> q.dPort))
              {answered}
        ),
        pairs AS (
            SELECT {record('qf')} AS qrec, {record('rf')} AS rrec FROM hits
            JOIN qsrc qf ON qf._row = hits.qi JOIN rsrc rf ON rf._row = hits.ri
        ),
        queries AS (
            SELECT qrec, row_number() OVER (ORDER BY {order_q.replace('q.', 'qrec.')}) AS k
            FROM (SELECT DISTINCT qrec FROM pairs)
            {'' if limit is None else 'QUALIFY k <= ?'}
        ),
        out AS (
            SELECT k, 0 AS side, 0 AS pos, unnest(qrec) FROM queries
            UNION ALL
            SELECT k, 1 AS side,
                   row_number() OVER (PARTITION BY k ORDER BY {order_q.replace('q.', 'rrec.')}) AS pos, unnest(rrec)
            FROM queries JOIN pairs USING (qrec)
        )
        SELECT * EXCLUDE (nhIP), ((CASE WHEN side = 1 THEN {RESPONSE_TAG} ELSE 0 END) | k)::UINTEGER AS nhIP
        FROM out ORDER BY k, side, pos
        """
        if groups:
            sql = sql.replace(f"SELECT * EXCLUDE (nhIP), ((CASE WHEN side = 1 THEN {RESPONSE_TAG} ELSE 0 END) | k)::UINTEGER AS nhIP", "SELECT *")
        # parameters in SQL text order: the pairs' time window, the two NOT EXISTS windows, the limit
        params = [delta] + ([delta, delta] if exclude_answered else []) + ([] if limit is None else [limit])
        result = con.sql(sql, params=params).to_arrow_table()
    if groups:
        return _grouped(_flow_table(result), *(result.column(c) for c in ("k", "side", "pos")))
    if result.num_rows and pc.max(result.column("k")).as_py() > MAX_MATCH_ID:
        raise SampleError(f"more than {MAX_MATCH_ID:,} near-matched queries: pass a limit")
    return _flow_table(result)


def _grouped(records: pa.Table, k, side, pos) -> pa.Table:
    column = lambda values, kind: (values.cast(kind) if isinstance(values, (pa.Array, pa.ChunkedArray))  # noqa: E731
                                   else pa.array(values, kind))
    return (records.append_column("k", column(k, pa.int64())).append_column("side", column(side, pa.int8()))
            .append_column("pos", column(pos, pa.int64())))


# Every near match of the window kept per source, like matched_vlf_flows: a response belongs to
# the source it answers (its destination).
NEAR_MATCH_SOURCE = SourceKey("CASE WHEN {t}.side = 1 THEN {t}.dIP ELSE {t}.sIP END",
                              "CASE WHEN {t}.side = 1 THEN {t}.dIPv6 ELSE {t}.sIPv6 END")


@holds_state_lock("state")
def refresh_near_matches(vlf_flows: Path, outbound: Path, state: Path, *, time_delta_ms: int) -> Segmented:
    """Every near match of the (segmented) ``vlf_flows`` and ``outbound``, kept in ``state`` as a
    segmented table of groups.  Every condition of a near match compares one source's queries
    with the answers to that source, so a refresh searches again only the sources the inputs'
    change logs name; the groups equal a full search's."""
    from ..steps.matching import InputGenerations

    target = Segmented(state / "groups", NEAR_MATCH_SOURCE)
    inputs = {"vlf_flows": Segmented(vlf_flows, SOURCE_IS_SIP), "outbound": Segmented(outbound, SOURCE_IS_DIP)}
    kept = InputGenerations(state, {"near_matches": 1, "time_delta_ms": int(time_delta_ms)})
    changed = kept.changes(target, inputs)
    if changed is None:
        found = near_matches(vlf_flows, outbound, time_delta_ms, limit=None, groups=True)
        target.write_full(lambda path: write_parquet(found, path), extra={"next_k": int(pc.max(found.column("k")).as_py() or 0) + 1})
    else:
        found = near_matches(inputs["vlf_flows"].rows_of(changed), inputs["outbound"].rows_of(changed),
                             time_delta_ms, limit=None, groups=True)
        first = int(target.extra.get("next_k", 1))  # above every group number given so far
        found = found.set_column(found.schema.get_field_index("k"), "k", pc.add(found.column("k"), first - 1))
        top = pc.max(found.column("k")).as_py()
        target.apply(changed, found, extra={"next_k": first if top is None else top + 1})
    kept.write(target, inputs)
    return target


def first_near_matches(groups: Segmented, limit: int = 20) -> pa.Table:
    """The first ``limit`` near-matched queries (by sTime, then their fields) with their answers,
    labelled k = 1, 2, ... as :func:`near_matches` labels them."""
    limit = _check_n(limit)
    order = ", ".join(ident(c) for c in _IDENTITY)
    with duck.connect() as con:
        result = con.sql(
            f"WITH g AS ({groups.relation_sql()}), "
            f"firsts AS (SELECT k AS gk, row_number() OVER (ORDER BY {order}) AS nk FROM g WHERE side = 0 QUALIFY nk <= ?) "
            f"SELECT g.* EXCLUDE (k, side, pos, nhIP), ((CASE WHEN side = 1 THEN {RESPONSE_TAG} ELSE 0 END) | nk)::UINTEGER AS nhIP "
            "FROM g JOIN firsts ON g.k = firsts.gk ORDER BY nk, side, pos", params=[limit]).to_arrow_table()
    return _flow_table(result)


def near_matches_text(table_or_vlf_flows: pa.Table | Source, outbound: Source | None = None, **kwargs) -> str:
    """The near-matches in cutmatch layout (fields match, sIP, dIP, sPort, dPort, protocol,
    packets, bytes, flags): pass the table :func:`near_matches` returned, or its inputs
    (``vlf_flows``, ``outbound`` and its keyword arguments)."""
    table = table_or_vlf_flows if outbound is None else near_matches(table_or_vlf_flows, outbound, **kwargs)
    return _lines_text(table, NEAR_MATCH_FIELDS)
