"""The study's matching step: VLF queries paired with the outbound flows that answer them, and
the six categories the study reports (unmatched TCP, unmatched UDP, matched TCP, matched UDP,
ICMP, other)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..flows.filter import FilterSpec, filter_files
from ..flows.match import MAX_MATCH_ID, MatchError, address_words, match_ids, match_sessions, with_labels
from ..flows.schema import FLOW_SCHEMA, conform, is_icmp
from ..flows.sql import ident
from ..flows.sets import IPSet
from ..flows.storage import ROW_GROUP_ROWS, read_parquet, write_parquet, write_parquet_batches
from ..flows import duck

CATEGORIES = ("unmatched TCP", "unmatched UDP", "matched TCP", "matched UDP", "ICMP", "other")

CATEGORY_COLUMNS = ("sIP", "dIP", "sPort", "dPort", "protocol", "packets", "bytes", "flags", "sTime", "duration")
CATEGORY_INPUTS = (*CATEGORY_COLUMNS, "attributes", "nhIP", "nhIPv6")  # what categorize reads of the matched flows


# The state beside matched_vlf_flows that lets the next refresh rematch only the sources whose
# flows changed: per source (its address as rwmatch's two sort words), a digest of its queries and
# responses, its rows in the output and its number of matches.
STATE_VERSION = "1"
_KEY = np.dtype([("hi", ">u8"), ("lo", ">u8")])  # big-endian: bytewise order is (hi, lo) order


@dataclass(frozen=True)
class MatchRefresh:
    records: int  # in the labelled output
    sources: int  # VLF sources with flows
    rematched: int  # of them matched again (all of them on a full run)
    incremental: bool


def _keys(hi: np.ndarray, lo: np.ndarray, wide: bool) -> np.ndarray:
    """Two-word addresses as one sortable, searchable value each: the low word alone when no
    address has a high word (IPv4 and IPv4-mapped only), else 16 big-endian bytes."""
    if not wide:
        return np.asarray(lo, dtype=np.uint64)
    keys = np.empty(len(hi), dtype=_KEY)
    keys["hi"], keys["lo"] = hi, lo
    return keys.view("V16")


def _row_keys(table: pa.Table, is_response: np.ndarray, wide: bool) -> np.ndarray:
    """The VLF source of each record: sIP of a query, dIP of a response (rwmatch's first key)."""
    qh, ql = address_words(table, "sIP")
    if not is_response.any():
        return _keys(qh, ql, wide)
    rh, rl = address_words(table, "dIP")
    return _keys(np.where(is_response, rh, qh), np.where(is_response, rl, ql), wide)


def _digests(queries: pa.Table, query_words, responses: pa.Table, response_words) -> pa.Table:
    """(key words, records, digest) per VLF source, in key order: the digest sums a hash of every
    column of each of its records (and the side), so any added, removed or changed record of a
    source changes it; sums do not depend on the records' order."""
    con = duck.connect()
    columns = ", ".join(ident(c) for c in FLOW_SCHEMA.names)
    selects = []
    for name, side, table, (hi, lo) in (("q", 0, queries, query_words), ("r", 1, responses, response_words)):
        con.register(name, table.append_column("_hi", pa.array(hi)).append_column("_lo", pa.array(lo)))
        selects.append(f"SELECT _hi, _lo, hash({side}, {columns}) AS h FROM {name}")
    return con.sql(
        "SELECT _hi, _lo, count(*)::UBIGINT AS records, (sum(h) % 18446744073709551616)::UBIGINT AS digest "
        f"FROM ({' UNION ALL '.join(selects)}) GROUP BY _hi, _lo ORDER BY _hi, _lo"
    ).to_arrow_table()


def _find(keys: np.ndarray, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each probe in the sorted ``keys`` (index 0 where not found)."""
    if not len(keys):
        return np.zeros(len(probes), np.int64), np.zeros(len(probes), bool)
    at = np.minimum(np.searchsorted(keys, probes), len(keys) - 1)
    return at, keys[at] == probes


def _state_keys(table: pa.Table, wide: bool) -> np.ndarray:
    return _keys(table.column("_hi").to_numpy(), table.column("_lo").to_numpy(), wide)


def _output_runs(table: pa.Table, wide: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(keys, first row, rows, matches) of each source's block in a matched output (rwmatch
    writes groups in key order, so each source's records are contiguous and its ids dense)."""
    n = table.num_rows
    if n == 0:
        return _keys(np.zeros(0, np.uint64), np.zeros(0, np.uint64), wide), *(np.zeros(0, np.int64) for _ in range(3))
    ids, is_response = match_ids(table)
    keys = _row_keys(table, is_response, wide)
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    rows = np.diff(np.append(starts, n))
    top = np.maximum.reduceat(ids, starts)
    bottom = np.minimum.reduceat(np.where(ids > 0, ids, np.iinfo(np.int64).max), starts)
    return keys[starts], starts, rows, np.where(top > 0, top - bottom + 1, 0)


def _fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _settings(time_delta_ms: int) -> dict[str, str]:
    return {"version": STATE_VERSION, "time_delta_ms": str(int(time_delta_ms)), "symmetric": "1", "unmatched": "q"}


def _write_state(path: Path, digests: pa.Table, out_keys, out_rows, out_matches, output: Path, time_delta_ms: int,
                 wide: bool) -> None:
    at, found = _find(out_keys, _state_keys(digests, wide))
    rows = np.where(found, out_rows[at], 0) if len(out_keys) else np.zeros(len(found), np.int64)
    matches = np.where(found, out_matches[at], 0) if len(out_keys) else np.zeros(len(found), np.int64)
    state = digests.append_column("rows", pa.array(rows.astype(np.int64))).append_column("matches", pa.array(matches.astype(np.int64)))
    write_parquet(state.replace_schema_metadata({**_settings(time_delta_ms), "output": _fingerprint(output)}), path)


def _read_state(path: Path | None, output: Path, time_delta_ms: int) -> pa.Table | None:
    """The previous refresh's state, if it describes ``output`` as it is, under the same settings."""
    if path is None or not path.exists() or not output.exists():
        return None
    state = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (state.schema.metadata or {}).items()}
    if meta != {**_settings(time_delta_ms), "output": _fingerprint(output)}:
        return None
    return state


def _match(queries: pa.Table, answers: pa.Table, time_delta_ms: int) -> pa.Table:
    # --symmetric-delta: an answer may start before the query when the enterprise side opened the
    # session; the study looks at both origins (its O/E columns).
    return match_sessions(queries, answers, time_delta_ms, symmetric=True, unmatched="q")


def match_vlf_flows(
    vlf_flows: Path, outbound_files: Sequence[Path], vlf_sources: IPSet | None, out: Path, *, time_delta_ms: int,
    state: Path | None = None,
) -> MatchRefresh:
    """rwmatch --symmetric-delta of the VLF queries with the outbound flows to VLF sources
    (rwfilter --dipset first; with ``vlf_sources`` None the outbound files hold only such flows).

    Every query is kept (matched ones carry their id in nhIP, unmatched ones 0.0.0.0); responses
    appear only when they answer a query.

    With ``state`` (a file this function keeps), a refresh matches again only the sources whose
    queries or responses changed since the output was written: rwmatch's groups never mix two
    sources (its first key is the outside address), so every other source's records and matches
    are the same and only their ids move, by the matches gained or lost before them.  The result
    equals a full run's, byte for byte.
    """
    queries = conform(read_parquet(vlf_flows), source=str(vlf_flows))
    if not outbound_files:
        answers = queries.schema.empty_table()
    elif vlf_sources is None:  # the files hold only answers to VLF sources already (vlf_outbound_flows)
        answers = conform(pa.concat_tables([read_parquet(f) for f in outbound_files]))
    else:
        answers = conform(filter_files(outbound_files, FilterSpec(dipset=vlf_sources)))
    previous = _read_state(state, out, time_delta_ms) if state is not None else None
    query_words, answer_words = address_words(queries, "sIP"), address_words(answers, "dIP")
    wide = bool(query_words[0].any() or answer_words[0].any()
                or (previous is not None and previous.column("_hi").to_numpy().any()))
    digests = _digests(queries, query_words, answers, answer_words) if state is not None else None
    if previous is None:
        matched = _match(queries, answers, time_delta_ms)
        write_parquet(matched, out)
        records, rematched = matched.num_rows, None
        keys, _, rows, matches = _output_runs(matched, wide)
    else:
        changed, kept = _changes(digests, previous, wide)
        queries = queries.filter(pa.array(_of(changed, query_words, wide)))  # the rest is not needed: free it
        answers = answers.filter(pa.array(_of(changed, answer_words, wide)))
        records, (keys, rows, matches) = _rematch(queries, answers, previous, kept, out, time_delta_ms, wide)
        rematched = len(changed)
    if state is not None:
        _write_state(state, digests, keys, rows, matches, out, time_delta_ms, wide)
    sources = digests.num_rows if digests is not None else len(keys)
    return MatchRefresh(records, sources, sources if rematched is None else rematched, rematched is not None)


def _changes(digests: pa.Table, previous: pa.Table, wide: bool) -> tuple[np.ndarray, np.ndarray]:
    """(keys of the sources whose records changed or are new, the previous state's rows of the
    others), by digest."""
    new_keys = _state_keys(digests, wide)
    at, same = _find(_state_keys(previous, wide), new_keys)
    if previous.num_rows:
        for column in ("records", "digest"):
            same &= previous.column(column).to_numpy()[at] == digests.column(column).to_numpy()
    return new_keys[~same], at[same]


def _of(keys: np.ndarray, words, wide: bool) -> np.ndarray:
    """Which records' addresses (as two words) are among the sorted ``keys``."""
    return _find(keys, _keys(*words, wide))[1]


def _rematch(queries: pa.Table, answers: pa.Table, previous: pa.Table, kept: np.ndarray, out: Path,
             time_delta_ms: int, wide: bool) -> tuple[int, tuple]:
    """Rewrite ``out`` as a full run would, from the previous output (the ``kept`` sources of its
    state) and a match of the changed sources' records (``queries``, ``answers``); returns the
    records written and (keys, rows, matches) per source of the new output."""
    old_keys = _state_keys(previous, wide)
    old_rows, old_matches = previous.column("rows").to_numpy(), previous.column("matches").to_numpy()
    fresh = _match(queries, answers, time_delta_ms)
    f_keys, f_start, f_rows, f_matches = _output_runs(fresh, wide)

    # the blocks of the new output, one per source: kept ones from the old file, changed ones
    # from the fresh match, merged in key order; ids move by the matches before them
    block_keys = np.concatenate([old_keys[kept], f_keys])
    order = np.argsort(block_keys, kind="stable")
    origin = np.concatenate([np.zeros(len(kept), np.int8), np.ones(len(f_keys), np.int8)])[order]
    first = np.concatenate([(np.cumsum(old_rows) - old_rows)[kept], f_start])[order]
    rows = np.concatenate([old_rows[kept], f_rows])[order]
    matches = np.concatenate([old_matches[kept], f_matches])[order]
    base = np.concatenate([(np.cumsum(old_matches) - old_matches)[kept], np.cumsum(f_matches) - f_matches])[order]
    total = int(matches.sum())
    if total > MAX_MATCH_ID:
        raise MatchError(f"{total:,} matches: more than the {MAX_MATCH_ID:,} that rwmatch's 24-bit match id can label")
    shift = (np.cumsum(matches) - matches) - base
    if pq.ParquetFile(out).metadata.num_rows != int(old_rows.sum()):
        raise MatchError(f"{out}: not the {int(old_rows.sum()):,} records its state describes")
    pieces = _spliced(out, _segments(origin, first, rows, shift), fresh)
    records = write_parquet_batches(pieces, out, fresh.schema)
    return records, (block_keys[order], rows, matches)


def _segments(origin, first, rows, shift) -> list[tuple[int, int, int, int]]:
    """Consecutive blocks from the same place with the same id shift, as one (origin, first row,
    rows, shift) segment each: few segments however many sources."""
    if not len(origin):
        return []
    follows = np.zeros(len(origin), bool)
    follows[1:] = (origin[1:] == origin[:-1]) & (first[1:] == first[:-1] + rows[:-1]) & (shift[1:] == shift[:-1])
    starts = np.flatnonzero(~follows)
    totals = np.add.reduceat(rows, starts)
    return list(zip(origin[starts].tolist(), first[starts].tolist(), totals.tolist(), shift[starts].tolist()))


def _spliced(out: Path, segments, fresh: pa.Table):
    """The new output's records, segment by segment, relabelled: the previous output is read once,
    in order, one row group at a time."""
    batches = pq.ParquetFile(out).iter_batches(batch_size=ROW_GROUP_ROWS)
    buffer, buffer_start = None, 0
    for origin, first, count, shift in segments:
        while count > 0:
            if origin:
                piece = fresh.slice(first, count)
            else:
                while buffer is None or first >= buffer_start + buffer.num_rows:
                    if buffer is not None:
                        buffer_start += buffer.num_rows
                    buffer = conform(pa.Table.from_batches([next(batches)]), source=str(out))
                piece = buffer.slice(first - buffer_start, min(count, buffer_start + buffer.num_rows - first))
            first, count = first + piece.num_rows, count - piece.num_rows
            if piece.num_rows:
                ids, is_response = match_ids(piece)
                yield with_labels(piece, np.where(ids > 0, ids + shift, 0), is_response)


class _FlowCounts:
    """The window flow bag's IPv4 sources and their records, sorted, for lookups."""

    def __init__(self, flow_bag: Path):
        bag = read_parquet(flow_bag, columns=["sIP", "sIPv6", "records"])
        v4 = bag.filter(pc.is_null(bag.column("sIPv6")))
        keys, records = v4.column("sIP").to_numpy(), v4.column("records").to_numpy()
        if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():
            order = np.argsort(keys, kind="stable")
            keys, records = keys[order], records[order]
        self.keys, self.records = keys, records

    def of(self, sources: np.ndarray) -> pa.Array:
        """Each IPv4 source's records (0 when the bag has none)."""
        if not len(self.keys):
            return pa.array(np.zeros(len(sources), np.uint32))
        at, found = _find(self.keys, sources)
        return pa.array(np.where(found, self.records[at], 0)).cast(pa.uint32())  # raises past 2^32 - 1


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
    return table.append_column("source_flows", counts.of(queries.column("sIP").to_numpy()))


def categorize(matched: pa.Table, flow_bag: Path) -> pa.Table:
    """One row per VLF query with its match id, category and its source's flow count, in the
    matched output's order (by source, as rwmatch writes its groups)."""
    return _categorized(matched, _FlowCounts(flow_bag))


def write_categories(matched: Path, flow_bag: Path, out: Path) -> int:
    """:func:`categorize` of a matched-flows file into ``out``, one row group at a time (the same
    bytes as categorizing it whole); returns the rows written."""
    counts = _FlowCounts(flow_bag)
    batches = pq.ParquetFile(matched).iter_batches(batch_size=ROW_GROUP_ROWS, columns=list(CATEGORY_INPUTS))
    schema = _categorized(pq.read_schema(matched).empty_table().select(list(CATEGORY_INPUTS)), counts).schema
    return write_parquet_batches((_categorized(pa.Table.from_batches([b]), counts) for b in batches), out, schema)
