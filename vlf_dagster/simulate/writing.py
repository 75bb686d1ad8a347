"""The simulator's landing files: chunks' flows spilled by landing bucket, then merged into hourly files.

A chunk's flows go to an Arrow IPC spill file with one record batch per landing bucket
(:func:`_spill`); :func:`_write_landing` then merges, bucket by bucket, the chunks' batches and the
bucket's background traffic, sorts them by sTime and writes one ``sim.parquet`` per hour under
``landing/``.  Columns are narrowed to the landing schema's types, refusing values that do not fit.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import progress
from ..flows.schema import FLOW_SCHEMA, MS_PER_HOUR, numpy_dtype
from ..flows.storage import hour_ms, landing_dir, write_parquet
from .model import SimulationError
from .window import _Plan

LANDING_NAME = "sim.parquet"

# The landing columns the simulator fills, and their types (the other fields are 0 or null).
_COLUMNS = {
    "sIP": np.uint32, "dIP": np.uint32, "sPort": np.uint16, "dPort": np.uint16, "protocol": np.uint8,
    "packets": np.uint64, "bytes": np.uint64, "flags": np.uint8, "initialFlags": np.uint8,
    "sessionFlags": np.uint8, "sTime": np.int64, "duration": np.uint32,
}

# Spilled flows: the landing columns, sTime as ms from the start of the bucket.
_SPILL_SCHEMA = pa.schema([(name, pa.from_numpy_dtype(np.uint32 if name == "sTime" else dtype)) for name, dtype in _COLUMNS.items()])


def _narrow(values: np.ndarray, dtype, name: str) -> np.ndarray:
    """``values`` as ``dtype``, refusing values that do not fit (a bug in the model, never wrapped)."""
    info = np.iinfo(dtype)
    if len(values) and (values.min() < info.min or values.max() > info.max):
        raise SimulationError(f"simulated {name} out of range for {np.dtype(dtype)}: {values.min()}..{values.max()}")
    return values.astype(dtype, copy=False)


def _spill(plan: _Plan, parts, path: Path) -> None:
    """Write flows bucket by bucket: record batch ``b`` of ``path`` holds the flows of bucket ``b``."""
    t = np.concatenate([p["sTime"] for p in parts])
    bucket = (t - plan.first_ms) // plan.bucket_ms
    assert len(t) == 0 or (bucket.min() >= 0 and bucket.max() < plan.buckets), "a flow's sTime fell outside the window"
    bucket = bucket.astype(np.uint16 if plan.buckets <= 1 << 16 else np.uint32)
    order = np.argsort(bucket, kind="stable")  # radix sort; keeps the flows' order inside a bucket
    cuts = np.r_[0, np.cumsum(np.bincount(bucket, minlength=plan.buckets))]
    columns = []
    for name, dtype in _COLUMNS.items():
        values = np.concatenate([p[name] for p in parts])[order]
        if name == "sTime":
            values = (values - plan.first_ms - bucket[order].astype(np.int64) * plan.bucket_ms).astype(np.uint32)
        else:
            values = _narrow(values, dtype, name)
        columns.append(pa.array(values))
    batch = pa.RecordBatch.from_arrays(columns, schema=_SPILL_SCHEMA)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, _SPILL_SCHEMA) as writer:
        for b in range(plan.buckets):
            writer.write_batch(batch.slice(cuts[b], cuts[b + 1] - cuts[b]))


def _write_landing(data_dir: Path, plan: _Plan, spills: list[Path], background, workers: int) -> tuple[list[Path], int]:
    """Bucket by bucket: the chunks' flows and the bucket's background (``background(b)``, flows of
    bucket ``b``), sorted by sTime, one file per hour on ``workers`` threads.  Also the number of
    background flows."""
    written, n_background = [], 0
    files = [pa.OSFile(str(p), "rb") for p in spills]
    try:
        readers = [pa.ipc.open_file(f) for f in files]
        progress.start(sum(len(plan.bucket(b)) for b in range(plan.buckets)), "hours", "writing the landing files")
        with ThreadPoolExecutor(workers) as pool:
            pending: deque = deque()
            for b in range(plan.buckets):
                hours = plan.bucket(b)
                progress.advance(len(hours))  # its hours are handed to the writers below
                bucket_start = plan.first_ms + b * plan.bucket_ms
                batches = [r.get_batch(b) for r in readers]
                extra = background(b)
                n_background += len(extra["sTime"])
                flows = {}
                for i, (name, dtype) in enumerate(_COLUMNS.items()):
                    parts = [batch.column(i).to_numpy() for batch in batches]
                    if name == "sTime":
                        parts = [part.astype(np.int64) + bucket_start for part in parts]
                    parts.append(_narrow(np.asarray(extra[name]), dtype, name))
                    flows[name] = np.concatenate(parts)
                del batches
                order = np.argsort(flows["sTime"], kind="stable")
                flows = {name: values[order] for name, values in flows.items()}
                del order
                edges = [hour_ms(h) for h in hours] + [hour_ms(hours[-1]) + MS_PER_HOUR]
                cuts = np.searchsorted(flows["sTime"], edges, side="left")
                assert cuts[0] == 0 and cuts[-1] == len(flows["sTime"]), "a flow's sTime fell outside its bucket"
                for i, hour in enumerate(hours):
                    a, z = cuts[i], cuts[i + 1]
                    if a == z:
                        continue
                    path = landing_dir(data_dir, hour) / LANDING_NAME
                    written.append(path)
                    pending.append(pool.submit(_write_hour, {name: v[a:z] for name, v in flows.items()}, path))
                while len(pending) > 2 * plan.bucket_hours:  # at most about two buckets in memory
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
    finally:
        for f in files:
            f.close()
    return written, n_background


def _write_hour(flows: dict, path: Path) -> Path:
    return write_parquet(_flow_table(flows), path)


def _flow_table(flows: dict) -> pa.Table:
    """What :func:`~vlf_dagster.flows.schema.conform` makes of ``flows`` (exact types, checked by
    :func:`_narrow`) at a quarter of its cost: the other fields 0, the IPv6 ones null."""
    n = len(flows["sTime"])
    arrays = []
    for f in FLOW_SCHEMA:
        if f.name in flows:
            arrays.append(pa.array(flows[f.name], type=f.type))
        elif f.nullable:
            arrays.append(pa.nulls(n, f.type))
        else:
            arrays.append(pa.array(np.zeros(n, dtype=numpy_dtype(f.name)), type=f.type))
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)


def _remove_stale_hours(data_dir: Path, written: list[Path]) -> None:
    """A previous simulation over a longer window must not leave its hours behind."""
    keep = {p.resolve() for p in written}
    for old in sorted((data_dir / "landing").glob(f"dt=*/hour=*/{LANDING_NAME}")):
        if old.resolve() not in keep:
            old.unlink()
