"""The study's geographic tables: the countries of the sources sending to given ports.

Countries come from a ``country_of`` function over uint32 addresses (e.g.
:meth:`.geo.CountryLookup.countries`, the GeoIP database).  Inputs, errors and conventions are
those of :mod:`.common`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from ...flows.schema import PROTO_TCP, PROTO_UDP
from .common import Source, bucket_bounds, category_clause, connected, frame, int64s, percent, side_by_side

UNKNOWN_COUNTRY = "-"


def country_codes(country_of: Callable[[np.ndarray], np.ndarray], addresses: np.ndarray) -> np.ndarray:
    """country_of over distinct addresses, unknown (None, '', '--', '-') as :data:`UNKNOWN_COUNTRY`."""
    if len(addresses) == 0:
        return np.zeros(0, dtype=object)
    cc = np.asarray(country_of(np.asarray(addresses, dtype=np.uint32)))
    if cc.dtype.kind == "U":  # fixed-width codes (the GeoIP lookup's): compared whole, no Python loop
        known = ~np.isin(cc, ["", "-", "--"])
    else:
        known = np.array([isinstance(c, str) and c not in ("", "-", "--") for c in cc], dtype=bool)
    return np.where(known, cc.astype(object), UNKNOWN_COUNTRY).astype(object)


# --- geographic distribution ----------------------------------------------------------------

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
    with connected(categories) as con:
        lo, hi = bucket_bounds(buckets)
        ports = [int(p) for p in ports]
        proto = PROTO_UDP if "UDP" in category else PROTO_TCP
        where = category_clause(con, category, f"protocol = {proto}") + f" AND source_flows BETWEEN {lo} AND {hi}"
        con.register("wanted", pa.table({"port": pa.array(ports, type=pa.int64())}))
        con.execute(f"CREATE TEMP TABLE flows AS SELECT dPort, sIP, count(*) AS n FROM t WHERE {where} "
                    "AND dPort IN (SELECT port FROM wanted) GROUP BY ALL")
        # distinct and sorted by DuckDB: the lookup then skips its own unique (1 M addresses: ~2 s in numpy here)
        addrs = con.sql("SELECT DISTINCT sIP FROM flows ORDER BY sIP").fetchnumpy()["sIP"].astype(np.uint32)
        codes = country_codes(country_of, addrs)
        con.register("cc", pa.table({"sIP": pa.array(addrs, type=pa.uint32()), "cc": pa.array(codes, type=pa.string())}))
        q = (
            "WITH c AS (SELECT dPort AS port, cc, sum(n)::BIGINT AS n FROM flows JOIN cc USING (sIP) GROUP BY ALL), "
            "r AS (SELECT *, row_number() OVER (PARTITION BY port ORDER BY n DESC, cc) AS rk, sum(n) OVER (PARTITION BY port) AS total FROM c) "
            "SELECT port, rk, cc, n, total FROM r WHERE rk <= ? ORDER BY port, rk"
        )
        ranked = frame(con, q, [int(top)])
        totals = dict(con.sql("SELECT dPort, sum(n)::BIGINT FROM flows GROUP BY dPort").fetchall())
    parts = []
    for p in ports:  # one block per requested port
        block = ranked[ranked["port"] == p]
        total = int(totals.get(p, 0))
        n = int64s(block["n"])
        parts.append(pd.DataFrame({"Port": p, "Rank": int64s(block["rk"]).astype(object), "CC": block["cc"].astype(object).to_numpy(),
                                   "Count": n, "Percent": percent(n, total) if len(n) else np.zeros(0)}))
        parts.append(pd.DataFrame({"Port": [p], "Rank": ["T"], "CC": [""], "Count": [total], "Percent": [100.0 if total else 0.0]}))
    if not parts:
        return pd.DataFrame({c: [] for c in GEO_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    out["Port"] = int64s(out["Port"])
    out["Count"] = int64s(out["Count"])
    out["Percent"] = out["Percent"].astype(np.float64)
    out["Rank"] = out["Rank"].astype(object)
    return out[GEO_COLUMNS]


def geographic_side_by_side(long: pd.DataFrame) -> pd.DataFrame:
    """:func:`geographic_distribution` as the study prints it: R, then ``<port> CC``,
    ``<port> cnt.``, ``<port> pct.`` per port, and a last row ``T`` with each port's total count."""
    numbered = long[long["Rank"] != "T"].copy()
    numbered["Rank"] = int64s(numbered["Rank"]) if len(numbered) else numbered["Rank"]
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
