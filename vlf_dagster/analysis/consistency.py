"""Cross-artifact consistency of the study: what the window-level asset checks verify.

Each function compares two artifacts that must agree by construction and returns a verdict with
the numbers that show it, so a stale rollup (a month not rolled up after late data) or an
extraction that disagrees with its bag is caught before the VLF sets and the report build on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..flows.bags import Bag, filter_bag
from ..flows.schema import ATTR_IPV6
from ..flows.sets import IPSet
from ..flows.sql import literal_list
from ..flows.storage import read_parquet
from ..flows import duck


@dataclass(frozen=True)
class Verdict:
    passed: bool
    metadata: dict = field(default_factory=dict)


def _bag_total(bag: Bag, counter: str) -> int:
    return int(pc.sum(bag.table.column(counter)).as_py() or 0) if len(bag) else 0


def flows_conserved(inbound_files: Sequence[Path], source_flow_bag: Path, counter: str = "records") -> Verdict:
    """The window's source bag counts every inbound archive record exactly once."""
    archived = 0
    if inbound_files:
        with duck.connect() as con:
            # the footers' row counts: no data pages, and ~2x faster than count(*) over 60,000 files
            archived = int(con.sql(f"SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata({literal_list(inbound_files)})")
                           .fetchall()[0][0])
    counted = _bag_total(Bag.read(source_flow_bag), counter)
    return Verdict(archived == counted, {
        "inbound_archive_records": archived, "records_in_source_flow_bag": counted, "difference": counted - archived,
        "archive_files": len(inbound_files),
    })


def vlf_flows_match_bag(vlf_flows: Path, source_flow_bag: Path, vlf_fd_set: IPSet) -> Verdict:
    """The extracted VLF flows are exactly the flows the bag counts for the VLF-fd sources."""
    flows = read_parquet(vlf_flows, columns=["sIP", "sIPv6", "attributes"])
    expected = _bag_total(filter_bag(Bag.read(source_flow_bag), intersect=vlf_fd_set), "records")
    strangers = _sources_outside(flows, vlf_fd_set)
    return Verdict(flows.num_rows == expected and strangers == 0, {
        "vlf_flows": flows.num_rows, "bag_records_of_vlf_fd_sources": expected,
        "sources_outside_vlf_fd": strangers,
    })


def _sources_outside(flows, ipset: IPSet) -> int:
    """Distinct sIPs of ``flows`` not in ``ipset``: an anti join in DuckDB (1 s for 23 M records
    and 10.7 M members here; a roaring set of the records took 12 s, numpy's binary search 30 s)."""
    if not flows.num_rows:
        return 0
    v6 = (flows.column("attributes").to_numpy() & ATTR_IPV6) != 0
    with duck.connect() as con:
        con.register("records", flows.select(["sIP"]).filter(pa.array(~v6)))
        con.register("members", pa.table({"address": ipset.ipv4_array()}))
        outside = con.sql("SELECT count(DISTINCT sIP) FROM records ANTI JOIN members ON records.sIP = members.address").fetchall()[0][0]
    if v6.any():
        outside += len(IPSet.from_flow_column(flows.filter(pa.array(v6)), "sIP").difference(ipset))
    return int(outside)


def intersection_holds(vlf_f: IPSet, vlf_d: IPSet, vlf_fd: IPSet) -> Verdict:
    """VLF-fd is exactly VLF-f and VLF-d."""
    both = vlf_f & vlf_d
    return Verdict(both == vlf_fd, {
        "vlf_f": len(vlf_f), "vlf_d": len(vlf_d), "vlf_fd": len(vlf_fd),
        "missing_from_vlf_fd": len(both.difference(vlf_fd)), "extra_in_vlf_fd": len(vlf_fd.difference(both)),
    })
