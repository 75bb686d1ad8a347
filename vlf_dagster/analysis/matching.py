"""The study's matching step: VLF queries paired with the outbound flows that answer them, and
the six categories the study reports (unmatched TCP, unmatched UDP, matched TCP, matched UDP,
ICMP, other)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..flows.filter import FilterSpec, filter_files
from ..flows.match import match_ids, match_sessions
from ..flows.schema import conform, is_icmp
from ..flows.sets import IPSet
from ..flows.storage import write_parquet
from ..flows import duck

CATEGORIES = ("unmatched TCP", "unmatched UDP", "matched TCP", "matched UDP", "ICMP", "other")

CATEGORY_COLUMNS = ("sIP", "dIP", "sPort", "dPort", "protocol", "packets", "bytes", "flags", "sTime", "duration")


def match_vlf_flows(
    vlf_flows: Path, outbound_files: Sequence[Path], vlf_sources: IPSet, out: Path, *, time_delta_ms: int
) -> pa.Table:
    """rwmatch --symmetric-delta of the VLF queries with the outbound flows to VLF sources
    (rwfilter --dipset first).

    Every query is kept (matched ones carry their id in nhIP, unmatched ones 0.0.0.0); responses
    appear only when they answer a query.
    """
    queries = conform(pq.read_table(vlf_flows), source=str(vlf_flows))
    answers = filter_files(outbound_files, FilterSpec(dipset=vlf_sources)) if outbound_files else queries.schema.empty_table()
    # --symmetric-delta: an answer may start before the query when the enterprise side opened the
    # session; the study looks at both origins (its O/E columns).
    matched = match_sessions(queries, conform(answers), time_delta_ms, symmetric=True, unmatched="q")
    write_parquet(matched, out)
    return matched


def categorize(matched: pa.Table, flow_bag: Path) -> pa.Table:
    """One row per VLF query with its match id, category and its source's flow count."""
    ids, is_response = match_ids(matched)
    queries = matched.filter(pa.array(~is_response))
    ids = ids[~is_response]
    protocol = queries.column("protocol").to_numpy()
    icmp = is_icmp(protocol, queries.column("attributes").to_numpy())
    tcp, udp, hit = protocol == 6, protocol == 17, ids > 0
    category = np.select(
        [icmp, tcp & ~hit, udp & ~hit, tcp & hit, udp & hit],
        ["ICMP", "unmatched TCP", "unmatched UDP", "matched TCP", "matched UDP"],
        default="other",
    )
    table = queries.select(list(CATEGORY_COLUMNS)).append_column("match_id", pa.array(ids.astype(np.uint32)))
    table = table.append_column("category", pa.array(category.astype(str)))
    con = duck.connect()
    con.register("q", table)
    return con.sql(
        "SELECT q.*, coalesce(b.records, 0)::UINTEGER AS source_flows FROM q "
        "LEFT JOIN read_parquet(?) b ON b.sIP = q.sIP AND b.sIPv6 IS NULL ORDER BY q.sTime, q.sIP",
        params=[str(flow_bag)],
    ).to_arrow_table()
