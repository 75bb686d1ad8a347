"""The simulation's ground truth: one row per outside source, computed from its own inbound flows.

:func:`_chunk_truth` gives a chunk's rows (population, flows, distinct destinations, main protocol
and port, whether all its destinations are live) and counters for the summary;
:func:`_write_ground_truth` writes every chunk's rows, sorted by address, to ``sim/ground_truth.parquet``;
:func:`campaign_truth` reads the planted port campaigns back from ``sim/summary.json``;
:func:`_write_returns` writes the visits of the returning sources (:mod:`.returns`) to
``sim/returns.parquet`` and :func:`return_truth` reads them back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..flows.schema import MS_PER_HOUR
from ..flows.storage import PARQUET_OPTIONS, atomic_path
from .campaigns import PORT_CAMPAIGN_POPULATION
from .model import POPULATIONS
from .network import _Inside
from .populations import _segment_starts
from .window import _Plan
from .writing import _narrow

TRUTH_SCHEMA = pa.schema(
    [("sIP", pa.uint32()), ("population", pa.string()), ("flows", pa.int64()), ("destinations", pa.int64()),
     ("protocol", pa.uint8()), ("port", pa.uint16()), ("target_live", pa.bool_())]
)
TRUTH_ROW_GROUP = 1 << 20


def _chunk_truth(source_ip, pop, nflows, ndest, src, proto, dport, dst_off, t, inside: _Inside, plan: _Plan):
    """Ground-truth rows of a chunk's sources, computed from their inbound flows (grouped by source),
    and the chunk's counters for the summary."""
    S = len(source_ip)
    flows = np.bincount(src, minlength=S)
    starts = _segment_starts(flows)
    src64 = src.astype(np.int64)
    # distinct destinations: sort (source, destination) pairs (already in source order: timsort's runs)
    shift = int(inside.size - 1).bit_length()
    pairs = np.sort((src64 << shift) | dst_off, kind="stable")
    destinations = np.bincount(pairs[np.r_[True, pairs[1:] != pairs[:-1]]] >> shift, minlength=S)
    del pairs
    target_live = np.minimum.reduceat(inside.is_live(dst_off).astype(np.int8), starts).astype(bool)
    # main (protocol, port): the most frequent, ties to the lowest
    keys = np.sort((src64 << 24) | (proto.astype(np.int64) << 16) | dport.astype(np.int64), kind="stable")
    run = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    run_keys, run_counts = keys[run], np.diff(np.r_[run, len(keys)])
    del keys
    owner = run_keys >> 24
    owner_start = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])  # every source has a run
    most = np.repeat(np.maximum.reduceat(run_counts, owner_start), np.diff(np.r_[owner_start, len(owner)]))
    top = np.flatnonzero(run_counts == most)
    best = run_keys[top[np.r_[True, owner[top][1:] != owner[top][:-1]]]]
    # active hours per source
    hours = np.sort((src64 << 20) | ((t - plan.first_ms) // MS_PER_HOUR), kind="stable")
    hours_per_source = np.bincount(hours[np.r_[True, hours[1:] != hours[:-1]]] >> 20, minlength=S)
    del hours
    truth = dict(
        sIP=source_ip, population=pop.astype(np.uint8), flows=_narrow(flows, np.uint16, "flows per source"),
        destinations=_narrow(destinations, np.uint16, "destinations per source"), protocol=((best >> 16) & 0xFF).astype(np.uint8),
        port=(best & 0xFFFF).astype(np.uint16), target_live=target_live,
    )
    vlf = nflows <= 10
    counts = dict(
        populations=np.bincount(pop, minlength=len(POPULATIONS)), one_flow=int((nflows == 1).sum()),
        vlf=int(vlf.sum()), vlf_single_destination=int((ndest[vlf] == 1).sum()),
        in_1_to_5_hours=int((hours_per_source <= 5).sum()),
    )
    return truth, counts


def _write_ground_truth(parts: list[dict], path: Path) -> Path:
    """One row per source, sorted by sIP, from the chunks' rows (which are consumed).

    Written a row group at a time, so only the compact sorted columns are held whole."""
    sip = np.concatenate([p.pop("sIP") for p in parts])
    order = np.argsort(sip)  # addresses are distinct
    columns = {"sIP": sip[order]}
    del sip
    for name in TRUTH_SCHEMA.names[1:]:
        columns[name] = np.concatenate([p.pop(name) for p in parts])[order]
    del order
    names = pa.array([*POPULATIONS, PORT_CAMPAIGN_POPULATION], pa.string())  # the campaigns' sources: index len(POPULATIONS)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, TRUTH_SCHEMA, **PARQUET_OPTIONS) as writer:
        for a in range(0, len(columns["sIP"]), TRUTH_ROW_GROUP):
            rows = {name: values[a : a + TRUTH_ROW_GROUP] for name, values in columns.items()}
            rows["population"] = names.take(pa.array(rows["population"]))
            writer.write_table(pa.table(rows, schema=TRUTH_SCHEMA))
    return Path(path)


CAMPAIGN_COLUMNS = ["protocol", "port", "start_ms", "end_ms", "sources", "flows"]


def campaign_truth(data_dir: Path) -> pd.DataFrame:
    """The port campaigns planted in ``data_dir`` (``sim/summary.json``'s ``port_campaigns``): one row
    each, :data:`CAMPAIGN_COLUMNS` (every probe of a campaign has ``start_ms`` <= sTime < ``end_ms``)."""
    doc = json.loads((Path(data_dir) / "sim" / "summary.json").read_text())
    rows = doc.get("port_campaigns", [])
    return pd.DataFrame([[r[c] for c in CAMPAIGN_COLUMNS] for r in rows], columns=CAMPAIGN_COLUMNS).astype("int64")


RETURNS_NAME = "returns.parquet"
RETURNS_SCHEMA = pa.schema(
    [("sIP", pa.uint32()), ("visit", pa.uint16()), ("start_ms", pa.int64()), ("end_ms", pa.int64()), ("flows", pa.int64())]
)


def _write_returns(parts: list[dict], path: Path) -> Path:
    """One row per visit of every returning source, sorted by sIP and visit (:data:`RETURNS_SCHEMA`),
    from the chunks' rows (sIP, visit, start_ms, duration, flows; each chunk's in source and visit order)."""
    def column(name, dtype):
        return np.concatenate([p[name] for p in parts]).astype(dtype, copy=False) if parts else np.empty(0, dtype)

    sip = column("sIP", np.uint32)
    order = np.argsort(sip, kind="stable")  # a source's visits stay in order
    start = column("start_ms", np.int64)[order]
    columns = {"sIP": sip[order], "visit": column("visit", np.uint16)[order], "start_ms": start,
               "end_ms": start + column("duration", np.int64)[order], "flows": column("flows", np.int64)[order]}
    table = pa.table(columns, schema=RETURNS_SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=TRUTH_ROW_GROUP, **PARQUET_OPTIONS)
    return Path(path)


def return_truth(data_dir: Path) -> pd.DataFrame:
    """The visits of the returning sources planted in ``data_dir`` (``sim/returns.parquet``): one row
    each, :data:`RETURNS_SCHEMA`'s columns (every flow of visit ``visit`` of ``sIP`` has ``start_ms``
    <= sTime <= ``end_ms``, epoch ms), sorted by sIP and visit; empty when none were planted."""
    path = Path(data_dir) / "sim" / RETURNS_NAME
    table = pq.read_table(path) if path.exists() else RETURNS_SCHEMA.empty_table()
    return table.to_pandas()


def seen_within(visits: pd.DataFrame, sources, start_ms: int, end_ms: int) -> np.ndarray:
    """For each of ``sources`` (planted returners, :func:`return_truth`'s ``visits``), whether one of
    its visits has a flow in [start_ms, end_ms).  A visit's first and last flows are at its
    ``start_ms`` and ``end_ms`` and its bursts last at most 3 hours, so for a span of 3 hours or more
    a visit overlapping the span has a flow in it."""
    overlapping = visits[(visits.start_ms < end_ms) & (visits.end_ms >= start_ms)]
    return np.isin(np.asarray(sources), overlapping.sIP.to_numpy())
