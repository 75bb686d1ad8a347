"""The study's matched sessions: who opened each match of rwmatch's output, its service port and
direction, kept per source (:func:`refresh_sessions`), and the matched-ports tables over them.

Inputs, errors and conventions are those of :mod:`.common`.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ...flows import duck
from ...flows.schema import FLOW_SCHEMA, PROTO_TCP
from ...flows.segments import Segmented, SourceKey
from ...flows.storage import holds_state_lock, write_parquet
from ..steps.matching import SOURCE_OF_RECORD, InputGenerations
from .common import Source, columns_of, connected, frame, int64s


# --- matched ports --------------------------------------------------------------------------

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
    if con is not None and "oe" in columns_of(con):
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
    with duck.connect() as con:
        if changed is None:
            rows = con.sql(_session_rows_sql(source.relation_sql())).to_arrow_table()
            target.write_full(lambda path: write_parquet(rows, path))
        else:
            con.register("changed_records", source.rows_of(changed))
            target.apply(changed, con.sql(_session_rows_sql("SELECT * FROM changed_records")).to_arrow_table())
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
    with connected(matched_vlf_flows, empty=FLOW_SCHEMA) as con:
        q = (
            _sessions_sql(protocol, con)
            + "SELECT port, oe, count(*) AS sessions, count(DISTINCT outside) AS o, count(DISTINCT inside) AS e "
            "FROM s GROUP BY port, oe ORDER BY sessions DESC, port, oe LIMIT ?"
        )
        df = frame(con, q, [int(top)])
    return pd.DataFrame(
        {
            "Rank": np.arange(1, len(df) + 1, dtype=np.int64),
            "Port": int64s(df["port"]),
            "O/E": df["oe"].astype(object).to_numpy(),
            "Sessions": int64s(df["sessions"]),
            "O count": int64s(df["o"]),
            "E count": int64s(df["e"]),
        }
    )


def matched_port_direction_counts(matched_vlf_flows: Source, protocol: int = PROTO_TCP) -> pd.DataFrame:
    """Per service port, the matched sessions opened from outside and from the enterprise:
    columns Port, ``O->E``, ``E->O`` (the data of the study's "Overall TCP/UDP ports (1 - 10 F)
    OtoE, EtoO" plots).  Sessions, originator and service port as in :func:`matched_ports`; every
    port with at least one session, sorted by port.
    """
    with connected(matched_vlf_flows, empty=FLOW_SCHEMA) as con:
        q = (
            _sessions_sql(protocol, con)
            + "SELECT port, count_if(oe = 'O') AS oe_n, count_if(oe = 'E') AS eo_n FROM s GROUP BY port ORDER BY port"
        )
        df = frame(con, q)
    return pd.DataFrame({"Port": int64s(df["port"]), "O->E": int64s(df["oe_n"]), "E->O": int64s(df["eo_n"])})
