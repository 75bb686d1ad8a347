"""``vlf_flows`` and ``vlf_outbound_flows``: the flows of the VLF sources, extracted by set
membership from the months' low-frequency files, and refreshed by source.

A refresh after new hours extracts again only the sources whose rows can have changed:
- the sources that entered or left the set (an 11th flow, a second destination, a first flow);
- the set's sources whose rows in a changed month file differ, found by per-source digests of
  each month's rows kept in the state (a month that did not change is not read).
Their old rows are marked removed and their new rows written to the artifact's small delta
(:class:`~vlf_dagster.flows.segments.Segmented`); the change log tells matching which sources to
match again.  The rows equal a full extraction's (a test compares them after added, late and
replaced hours).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from ...flows import duck
from ...flows.tools.filter.run import write_filtered
from ...flows.tools.filter.spec import FilterSpec
from ...flows.schema import FLOW_SCHEMA, TIME_ORDER
from ...flows.segments import CHANGES_SCHEMA, SOURCE_IS_DIP, SOURCE_IS_SIP, Segmented, SourceKey, keys_of_set, rows_of_sources, set_of_keys
from ...flows.sets import IPSet
from ...flows.sql import ident, path_literal, path_list
from ...flows.storage import fingerprint, write_parquet, write_text, holds_state_lock

STATE_VERSION = 1
ORDER = TIME_ORDER  # a full extraction's order (the delta keeps it too): total, so re-runs give the same bytes


@dataclass(frozen=True)
class ExtractRefresh:
    rows: int  # in the artifact
    sources_changed: int  # sources whose rows were extracted again (all on a full run)
    months_read: int  # month files whose digests were computed
    incremental: bool


def _digest_sql(month: Path, key: SourceKey) -> str:
    """Per source of a month file: its rows and the sum of a hash of each whole row."""
    columns = ", ".join(ident(c) for c in FLOW_SCHEMA.names)
    ip, ipv6 = (e.replace("{t}", "m") for e in (key.ip, key.ipv6))
    return (f"SELECT {ip}::UBIGINT AS ip, {ipv6}::BLOB AS ipv6, count(*)::UBIGINT AS records, "
            f"(sum(hash({columns})) % 18446744073709551616)::UBIGINT AS digest "
            f"FROM read_parquet({path_literal(str(month))}) m GROUP BY ALL")


class _State:
    """What the last refresh extracted from: the set, each month file's fingerprint and digests."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta_path = folder / "state.json"

    def read(self, target: Segmented) -> dict | None:
        try:
            meta = json.loads(self.meta_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if meta.get("version") != STATE_VERSION or not target.exists() or meta.get("generation") != target.generation:
            return None
        if not (self.folder / "sources.set").is_file():
            return None
        if not all(self.digests(m, p).is_file() for m, p in meta.get("months", {}).items()):
            return None
        return meta

    def digests(self, month: str, print_: str) -> Path:
        """A month file's digests as of one fingerprint: new ones never overwrite the ones the
        state still points at, so a refresh cut short finds the old ones again."""
        return self.folder / "digests" / f"{month.removesuffix('.parquet')}.{print_.replace(':', '-')}.parquet"

    def sources(self) -> IPSet:
        return IPSet.read(self.folder / "sources.set")

    def write(self, sources: IPSet, months: dict[str, str], generation: int) -> None:
        sources.write(self.folder / "sources.set")
        write_text(json.dumps({"version": STATE_VERSION, "generation": generation, "months": months}, indent=1,
                              sort_keys=True) + "\n", self.meta_path)
        current = {self.digests(m, p).name for m, p in months.items()}
        for path in (self.folder / "digests").glob("*.parquet"):
            if path.name not in current:
                path.unlink(missing_ok=True)


def _write_digests(con, month: Path, key: SourceKey, out: Path) -> None:
    write_parquet(con.sql(_digest_sql(month, key) + " ORDER BY ip, ipv6").to_arrow_table(), out)


@holds_state_lock("state_folder")
def extract_by_set(months: Sequence[Path], sources: IPSet, target: Segmented, state_folder: Path) -> ExtractRefresh:
    """Keep ``target`` equal to the rows of the ``months`` files whose source (``target.key``)
    is in ``sources``: a full extraction when there is no usable state, else a refresh of the
    sources that changed."""
    months = sorted(months)
    state = _State(state_folder)
    previous = state.read(target)
    prints = {m.name: fingerprint(m) for m in months}
    with duck.connect() as con:
        if previous is None:
            return _full(con, months, sources, target, state, prints)
        return _refresh(con, months, sources, target, state, prints, previous)


def _full(con, months, sources, target, state, prints) -> ExtractRefresh:
    # rwfilter --sipset / --dipset: streamed to the file by DuckDB, the rows never in memory
    filters = {SOURCE_IS_SIP: FilterSpec(sipset=sources), SOURCE_IS_DIP: FilterSpec(dipset=sources)}
    if target.key not in filters:
        raise ValueError(f"{target.directory}: extraction keys rows by sIP or dIP, not {target.key}")
    target.write_full(lambda path: write_filtered(list(months), filters[target.key], path, order_by=ORDER))
    (state.folder / "digests").mkdir(parents=True, exist_ok=True)
    for month in months:
        _write_digests(con, month, target.key, state.digests(month.name, prints[month.name]))
    state.write(sources, prints, target.generation)
    return ExtractRefresh(target.rows, len(sources), len(months), False)


def _refresh(con, months, sources, target, state, prints, previous) -> ExtractRefresh:
    old_prints = previous["months"]
    changed_months = [m for m in months if old_prints.get(m.name) != prints[m.name]]
    gone = [name for name in old_prints if name not in prints]
    touched = []  # (ip, ipv6) of sources with different rows in a changed or vanished month
    for month in changed_months:
        old = state.digests(month.name, old_prints[month.name]) if month.name in old_prints else None
        con.execute(f"CREATE OR REPLACE TEMP TABLE new_digests AS {_digest_sql(month, target.key)}")
        old_sql = f"read_parquet({path_literal(str(old))})" if old is not None else "(SELECT * FROM new_digests LIMIT 0)"
        touched.append(con.sql(
            f"SELECT coalesce(n.ip, o.ip) AS ip, coalesce(n.ipv6, o.ipv6) AS ipv6 FROM new_digests n "
            f"FULL JOIN {old_sql} o ON n.ip = o.ip AND n.ipv6 IS NOT DISTINCT FROM o.ipv6 "
            "WHERE n.records IS DISTINCT FROM o.records OR n.digest IS DISTINCT FROM o.digest").to_arrow_table())
        write_parquet(con.sql("SELECT * FROM new_digests ORDER BY ip, ipv6").to_arrow_table(),
                      state.digests(month.name, prints[month.name]))
    for name in gone:
        old = state.digests(name, old_prints[name])
        touched.append(con.sql(f"SELECT ip, ipv6 FROM read_parquet({path_literal(str(old))})").to_arrow_table())
    was = state.sources()
    candidates = was | sources
    moved = was ^ sources
    changed_rows = set_of_keys(pa.concat_tables([t.cast(CHANGES_SCHEMA) for t in touched])) if touched else IPSet()
    changed = moved | (changed_rows & candidates)
    keys = keys_of_set(changed)
    staying = keys_of_set(changed & sources)
    added = FLOW_SCHEMA.empty_table()
    if len(staying) and months:
        added = rows_of_sources(f"SELECT * FROM read_parquet({path_list([str(m) for m in months])})", target.key,
                                staying, order_by=ORDER)
    target.apply(keys, added)
    state.write(sources, prints, target.generation)
    return ExtractRefresh(target.rows, len(changed), len(changed_months), True)
