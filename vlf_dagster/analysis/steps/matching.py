"""The study's matching step: VLF queries paired with the outbound flows that answer them, and
the six categories the study reports (unmatched TCP, unmatched UDP, matched TCP, matched UDP,
ICMP, other)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ...flows.tools.match import MAX_MATCH_ID, RESPONSE_TAG, label_sql, match_ids, match_sessions, with_labels
from ...flows.schema import conform, ipv6_words, is_icmp
from ...flows.segments import CHANGES_SCHEMA, SOURCE_IS_DIP, SOURCE_IS_SIP, Segmented, SourceKey, Summary, rows_of_sources, set_of_keys
from ...flows.sql import ident, path_list
from ...flows.storage import ROW_GROUP_ROWS, read_parquet, write_parquet, write_parquet_batches, write_text, holds_state_lock
from ...flows import duck

CATEGORIES = ("unmatched TCP", "unmatched UDP", "matched TCP", "matched UDP", "ICMP", "other")

CATEGORY_COLUMNS = ("sIP", "dIP", "sPort", "dPort", "protocol", "packets", "bytes", "flags", "sTime", "duration")
CATEGORY_INPUTS = (*CATEGORY_COLUMNS, "attributes", "nhIP", "nhIPv6", "sIPv6")  # what categorize reads of the matched flows
_KEY = np.dtype([("hi", ">u8"), ("lo", ">u8")])  # big-endian: bytewise order is (hi, lo) order


# A matched record belongs to the VLF source of its group: the query's source, the response's
# destination (rwmatch's first relate key); the side is in the top byte of its label.
_IS_RESPONSE = f"(({label_sql('{t}')}) & {RESPONSE_TAG}) <> 0"
SOURCE_OF_RECORD = SourceKey(f"CASE WHEN {_IS_RESPONSE} THEN {{t}}.dIP ELSE {{t}}.sIP END",
                             f"CASE WHEN {_IS_RESPONSE} THEN {{t}}.dIPv6 ELSE {{t}}.sIPv6 END")
STATE_VERSION = 2

# Row counts the report's port tables read instead of the rows (kept by every refresh).
# vlf_categories: flows by category, protocol, destination port, flags and the source's flow count.
CATEGORY_PORTS = Summary("category_ports", ("category", "protocol", "dPort", "flags", "source_flows"),
                         "SELECT category, protocol, dPort, flags, source_flows FROM summarized")
# vlf_categories: unmatched flows by category, protocol, destination port and address, and the
# source's flow count ("Where do they go": hits and distinct destinations per port).
UNMATCHED = ("unmatched TCP", "unmatched UDP")
CATEGORY_DESTINATIONS = Summary("category_destinations", ("category", "protocol", "dPort", "dIP", "source_flows"),
                                "SELECT category, protocol, dPort, dIP, source_flows FROM summarized "
                                f"WHERE category IN {UNMATCHED}")
# matched_vlf_flows: matched TCP and UDP records by port, under the source port and under a
# different destination port (port numerology counts both sides).
_MATCHED_TCP_UDP = "FROM summarized WHERE protocol IN (6, 17) AND (nhIP & 16777215) > 0"
MATCHED_PORTS = Summary("matched_ports", ("protocol", "port"),
                        f"SELECT protocol, sPort AS port {_MATCHED_TCP_UDP} "
                        f"UNION ALL SELECT protocol, dPort {_MATCHED_TCP_UDP} AND dPort <> sPort")


@dataclass(frozen=True)
class MatchRefresh:
    records: int  # in the labelled output
    rematched: int | None  # sources matched again (None: a full run, every source)
    incremental: bool


class InputGenerations:
    """Which generation of each input a window step last read, and under which settings: the
    step's state, beside its segmented output."""

    def __init__(self, folder: Path, settings: dict):
        self.path, self.settings = folder / "state.json", {"version": STATE_VERSION, **settings}

    def changes(self, target: Segmented, inputs: dict[str, Segmented]) -> pa.Table | None:
        """The sources changed in any input since the last refresh; None: redo everything."""
        try:
            state = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if (state.get("settings") != self.settings or not target.exists()
                or state.get("target") != target.generation):
            return None
        found = []
        for name, source in inputs.items():
            changed = source.changes_since(state.get("inputs", {}).get(name))
            if changed is None:
                return None
            found.append(changed)
        return pa.concat_tables(found) if found else CHANGES_SCHEMA.empty_table()

    def write(self, target: Segmented, inputs: dict[str, Segmented]) -> None:
        write_text(json.dumps({"settings": self.settings, "target": target.generation,
                               "inputs": {n: s.generation for n, s in inputs.items()}}, indent=1, sort_keys=True) + "\n",
                   self.path)


def _match(queries: pa.Table, answers: pa.Table, time_delta_ms: int) -> pa.Table:
    # --symmetric-delta: an answer may start before the query when the enterprise side opened the
    # session; the study looks at both origins (its O/E columns).
    return match_sessions(queries, answers, time_delta_ms, symmetric=True, unmatched="q")


@holds_state_lock("state")
def match_vlf_flows(vlf_flows: Path, outbound: Path, out: Path, *, time_delta_ms: int, state: Path) -> MatchRefresh:
    """rwmatch --symmetric-delta of the VLF queries (segmented ``vlf_flows``) with the outbound
    flows to VLF sources (segmented ``outbound``), into the segmented ``out``.

    Every query is kept (matched ones carry their id in nhIP, unmatched ones 0.0.0.0); responses
    appear only when they answer a query.

    A refresh matches again only the sources the inputs' change logs name: rwmatch's groups never
    mix two sources (its first key is the outside address), so every other source's records and
    matches stay as they are.  The rematched groups get ids above every id given so far, so ids
    stay unique; a full run (no usable state, other settings, an input rebuilt, or ids running
    out) numbers them in rwmatch's order again.  Either way the groups equal a full run's.
    """
    target = Segmented(out, SOURCE_OF_RECORD, summaries=(MATCHED_PORTS,))
    sources = {"vlf_flows": Segmented(vlf_flows, SOURCE_IS_SIP), "outbound": Segmented(outbound, SOURCE_IS_DIP)}
    kept = InputGenerations(state, {"time_delta_ms": int(time_delta_ms), "symmetric": True, "unmatched": "q"})
    changed = kept.changes(target, sources)
    next_id = int(target.extra.get("next_id", 0)) if changed is not None else 0
    fresh = None
    if changed is not None:
        fresh = _match(conform(sources["vlf_flows"].rows_of(changed)), conform(sources["outbound"].rows_of(changed)),
                       time_delta_ms)
        ids, is_response = match_ids(fresh)
        if next_id + int(ids.max(initial=0)) > MAX_MATCH_ID:
            fresh = None  # ids would run out: renumber everything
        else:
            fresh = with_labels(fresh, np.where(ids > 0, ids + next_id - 1, 0), is_response)
            next_id += int(ids.max(initial=0))
    if fresh is None:
        matched = _match(conform(sources["vlf_flows"].read()), conform(sources["outbound"].read()), time_delta_ms)
        ids, _ = match_ids(matched)
        target.write_full(lambda path: write_parquet(matched, path), extra={"next_id": int(ids.max(initial=0)) + 1})
        result = MatchRefresh(target.rows, None, False)
    else:
        target.apply(changed, fresh, extra={"next_id": next_id})
        result = MatchRefresh(target.rows, len(set_of_keys(changed)), True)
    kept.write(target, sources)
    return result


class _FlowCounts:
    """The window flow bag's sources and their records, sorted, for lookups (IPv4 sources by
    number, IPv6 ones by their two words)."""

    def __init__(self, flow_bag: Path | pa.Table):
        bag = read_parquet(flow_bag, columns=["sIP", "sIPv6", "records"]) if isinstance(flow_bag, (str, Path)) else flow_bag
        v6 = bag.column("sIPv6").is_valid().to_numpy(zero_copy_only=False)
        self.v4 = self._sorted(bag.column("sIP").to_numpy()[~v6], bag.column("records").to_numpy()[~v6])
        hi, lo = ipv6_words(bag.column("sIPv6").filter(pa.array(v6))) if v6.any() else (np.zeros(0, np.uint64),) * 2
        self.v6 = self._sorted(_wide_keys(hi, lo), bag.column("records").to_numpy()[v6])

    @staticmethod
    def _sorted(keys: np.ndarray, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(keys) > 1 and (keys.dtype.kind == "V" or not (keys[1:] > keys[:-1]).all()):  # V16: no ">"
            order = np.argsort(keys, kind="stable")
            keys, records = keys[order], records[order]
        return keys, records

    def of(self, table: pa.Table) -> pa.Array:
        """Each record's source's records (0 when the bag has none)."""
        out = np.zeros(table.num_rows, np.uint64)
        v6 = table.column("sIPv6").is_valid().to_numpy(zero_copy_only=False)
        for rows, (keys, records), probes in (
                (~v6, self.v4, lambda: table.column("sIP").to_numpy()[~v6]),
                (v6, self.v6, lambda: _wide_keys(*ipv6_words(table.column("sIPv6").filter(pa.array(v6)))))):
            if rows.any() and len(keys):
                at, found = _find(keys, probes())
                out[rows] = np.where(found, records[at], 0)
        return pa.array(out).cast(pa.uint32())  # raises past 2^32 - 1


def _wide_keys(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Two-word addresses as one sortable, searchable 16-byte value each."""
    keys = np.empty(len(hi), dtype=_KEY)
    keys["hi"], keys["lo"] = hi, lo
    return keys.view("V16").ravel()


def _find(keys: np.ndarray, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each probe in the sorted ``keys`` (index 0 where not found)."""
    if not len(keys):
        return np.zeros(len(probes), np.int64), np.zeros(len(probes), bool)
    at = np.minimum(np.searchsorted(keys, probes), len(keys) - 1)
    return at, keys[at] == probes


@dataclass(frozen=True)
class CategoryRefresh:
    rows: int
    recategorized: int | None  # sources categorized again (None: a full run)
    incremental: bool


def _categorized(matched: pa.Table, counts: _FlowCounts) -> pa.Table:
    ids, is_response = match_ids(matched)
    queries = matched.select(list(CATEGORY_INPUTS)).filter(pa.array(~is_response))  # select first: less to copy
    ids = ids[~is_response]
    protocol = queries.column("protocol").to_numpy()
    icmp = is_icmp(protocol, queries.column("attributes").to_numpy())
    tcp, udp, hit = protocol == 6, protocol == 17, ids > 0
    code = np.select([icmp, tcp & ~hit, udp & ~hit, tcp & hit, udp & hit],
                     [CATEGORIES.index(c) for c in ("ICMP", "unmatched TCP", "unmatched UDP", "matched TCP", "matched UDP")],
                     default=CATEGORIES.index("other")).astype(np.int8)
    table = queries.select(list(CATEGORY_COLUMNS)).append_column("match_id", pa.array(ids.astype(np.uint32)))
    table = table.append_column("category", pa.array(CATEGORIES, pa.string()).take(pa.array(code)))
    table = table.append_column("source_flows", counts.of(queries))
    return table.append_column("sIPv6", queries.column("sIPv6").cast(pa.binary()))


TOTALS = "category_totals"  # kept in vlf_categories' manifest: what "Details by type of data" shows


def category_totals(rows: str | pa.Table) -> dict[str, list[int]]:
    """Flows and distinct sources (address and IPv6 address) of each category, and of all
    ("Total"), over categorized rows (SQL or a table).  Both are sums over sources, so a refresh
    keeps them by the changed sources' old and new rows alone."""
    with duck.connect() as con:
        if isinstance(rows, pa.Table):
            con.register("rows_table", rows)
            rows = "SELECT * FROM rows_table"
        source = "(sIP, sIPv6)" if "sIPv6" in {r[0] for r in con.sql(f"DESCRIBE {rows}").fetchall()} else "sIP"
        found = con.sql(f"SELECT category, count(*), count(DISTINCT {source}) FROM ({rows}) GROUP BY category").fetchall()
        total = con.sql(f"SELECT count(*), count(DISTINCT {source}) FROM ({rows})").fetchall()[0]
    out = {c: [0, 0] for c in CATEGORIES}
    out.update({c: [int(f), int(n)] for c, f, n in found})
    out["Total"] = [int(total[0]), int(total[1])]
    return out


def categorize(matched: pa.Table, flow_bag: Path | pa.Table) -> pa.Table:
    """One row per VLF query with its match id, category and its source's flow count, in the
    matched records' order."""
    return _categorized(matched, _FlowCounts(flow_bag))


@holds_state_lock("state")
def write_categories(matched: Path, flow_bag: Path, out: Path, *, state: Path) -> CategoryRefresh:
    """:func:`categorize` of the segmented matched flows into the segmented ``out``.

    A refresh categorizes again only the sources whose matched records changed since the last
    one (a source's flow count changes only with its flows, so with its records); a full run
    streams the matched records a row group at a time."""
    source = Segmented(matched, SOURCE_OF_RECORD)
    target = Segmented(out, SOURCE_IS_SIP, summaries=(CATEGORY_PORTS, CATEGORY_DESTINATIONS))
    inputs = {"matched": source}
    kept = InputGenerations(state, {"categories": 1})
    changed = kept.changes(target, inputs)
    if changed is None:
        counts = _FlowCounts(flow_bag)
        schema = _categorized(source.schema().empty_table().select(list(CATEGORY_INPUTS)), counts).schema
        with duck.connect() as con:
            reader = con.sql(f"SELECT {', '.join(ident(c) for c in CATEGORY_INPUTS)} FROM ({source.relation_sql()})"
                             ).fetch_record_batch(ROW_GROUP_ROWS)
            batches = (_categorized(pa.Table.from_batches([b]), counts).cast(schema) for b in reader)
            target.write_full(lambda path: write_parquet_batches(batches, path, schema),
                              extra=lambda base: {TOTALS: category_totals(f"SELECT * FROM read_parquet({path_list([base])})")})
        result = CategoryRefresh(target.rows, None, False)
    else:
        bag = rows_of_sources(f"SELECT sIP, sIPv6, records FROM read_parquet({path_list([flow_bag])})", SOURCE_IS_SIP,
                              changed)
        records = source.rows_of(changed).select(list(CATEGORY_INPUTS))
        fresh = _categorized(records, _FlowCounts(bag))
        # sums over sources: less the changed sources' old rows, plus their new ones (counted
        # over every row once, when an older refresh left no totals)
        totals = target.extra.get(TOTALS) or category_totals(target.relation_sql())
        old_rows = target.rows_of(changed)
        old, new = category_totals(old_rows), category_totals(fresh)
        totals = {k: [t - o + n for t, o, n in zip(totals[k], old[k], new[k])] for k in totals}
        target.apply(changed, fresh, extra={TOTALS: totals}, old_rows=old_rows)
        result = CategoryRefresh(target.rows, len(set_of_keys(changed)), True)
    kept.write(target, inputs)
    return result
