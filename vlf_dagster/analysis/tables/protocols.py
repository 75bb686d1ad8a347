"""The study's protocol tables: ICMP types and codes, and the protocols other than ICMP, TCP and UDP.

Inputs, errors and conventions are those of :mod:`.common`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from ...flows.schema import PROTO_ICMP, PROTO_TCP, PROTO_UDP
from .common import Source, category_clause, connected, frame, int64s
from .geography import UNKNOWN_COUNTRY, country_codes


# --- ICMP -----------------------------------------------------------------------------------

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
    with connected(categories) as con:
        where = category_clause(con, "ICMP", f"protocol = {PROTO_ICMP}")
        q = (
            f"WITH c AS (SELECT dPort >> 8 AS type, dPort & 255 AS code, count(*) AS n FROM t WHERE {where} GROUP BY ALL), "
            "r AS (SELECT *, row_number() OVER (ORDER BY n DESC, type, code) AS rk FROM c) "
            "SELECT type, code, n, rk, min(rk) OVER (PARTITION BY type) AS trk FROM r ORDER BY trk, rk"
        )
        df = frame(con, q)
    if top is not None:
        df = df[df["rk"] <= top]
    types, codes = int64s(df["type"]), int64s(df["code"])
    texts = []
    for ty, co in zip(types.tolist(), codes.tolist()):  # one call per distinct (type, code) pair
        text, valid = meaning(ty, co)
        texts.append(text if valid else INVALID_CODE)
    return pd.DataFrame(
        {"Type": types, "Code": codes, "Count": int64s(df["n"]), "Rank": int64s(df["rk"]), "Meaning": np.array(texts, dtype=object)}
    )


# --- other protocols ------------------------------------------------------------------------

OTHER_COLUMNS = ["P'col", "CC", "Flows", "Packets", "Bytes", "Description", "Implausible"]


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
    with connected(source) as con:
        where = category_clause(con, "other", f"protocol NOT IN ({PROTO_ICMP}, {PROTO_TCP}, {PROTO_UDP})")
        df = frame(
            con,
            f"SELECT protocol, count(*) AS flows, sum(packets)::HUGEINT AS packets, sum(bytes)::HUGEINT AS bytes "
            f"FROM t WHERE {where} GROUP BY protocol ORDER BY protocol",
        )
        pairs = frame(con, f"SELECT DISTINCT protocol, sIP FROM t WHERE {where}")
    cc = country_codes(country_of, pairs["sIP"].to_numpy())
    pairs = pd.DataFrame({"protocol": int64s(pairs["protocol"]), "cc": cc})
    known = pairs[pairs["cc"] != UNKNOWN_COUNTRY].drop_duplicates()
    joined = known.sort_values("cc").groupby("protocol")["cc"].agg(" ".join)
    protos = int64s(df["protocol"])
    flows = int64s(df["flows"])
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
