"""Bags (SiLK's keyed counters), stored as Parquet and computed with DuckDB.

A bag file has one or more key columns and one or more uint64 counter columns; its Parquet
metadata names them (``vlf.bag.keys``, ``vlf.bag.counters``).  A SiLK bag is the one-key,
one-counter case; a composite key such as (sIP, dIP) is what SiLK needed rwaggbag for.

IP keys take two columns, as in the flow schema: ``sIP`` (uint32, IPv4) and ``sIPv6`` (16 bytes,
null for IPv4 keys), so one bag holds both families (SiLK's bags convert wholesale to IPv6).

Counters follow SiLK: a counter of 0 means the key is absent; building a bag saturates a
counter at 2^64-2 (:data:`COUNTER_MAX`); adding bags whose sum overflows is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .schema import FLOW_SCHEMA, IPV6_TYPE
from .sets import IPSet
from .sql import ident, literal, literal_list
from .storage import atomic_path

COUNTER_MAX = 2**64 - 2

# key name -> the flow columns it groups by (IP keys carry their IPv6 companion column)
KEYS: dict[str, tuple[str, ...]] = {
    "sIP": ("sIP", "sIPv6"),
    "dIP": ("dIP", "dIPv6"),
    "nhIP": ("nhIP", "nhIPv6"),
    "sPort": ("sPort",),
    "dPort": ("dPort",),
    "protocol": ("protocol",),
    "sensor": ("sensor",),
    "flags": ("flags",),
    "initialFlags": ("initialFlags",),
    "sessionFlags": ("sessionFlags",),
    "attributes": ("attributes",),
    "application": ("application",),
    "input": ("in",),
    "output": ("out",),
}
# counter name -> SQL aggregate over flow records
COUNTERS: dict[str, str] = {
    "records": "count(*)",
    "packets": "sum(packets)",
    "bytes": "sum(bytes)",
}


class BagError(ValueError):
    pass


class BagOverflowError(BagError):
    pass


@dataclass(frozen=True)
class BagInfo:
    keys: tuple[str, ...]
    counters: tuple[str, ...]

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(c for k in self.keys for c in KEYS[k])


def read_info(path: str | Path) -> BagInfo:
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise BagError(f"{path}: not a bag file: {exc}") from None
    if b"vlf.bag.keys" not in meta:
        raise BagError(f"{path}: not a bag file (no vlf.bag.keys metadata)")
    return BagInfo(
        tuple(json.loads(meta[b"vlf.bag.keys"])), tuple(json.loads(meta[b"vlf.bag.counters"]))
    )


def write_bag_query(con: duckdb.DuckDBPyConnection, sql: str, params: list, path: str | Path, info: BagInfo) -> Path:
    """Run ``sql`` and write its rows atomically as a bag file with ``info`` in its metadata."""
    order = ", ".join(ident(c) for c in info.key_columns)
    meta = "{'vlf.bag.keys': '%s', 'vlf.bag.counters': '%s'}" % (
        json.dumps(list(info.keys)),
        json.dumps(list(info.counters)),
    )
    with atomic_path(path) as tmp:
        con.execute(
            f"COPY (SELECT * FROM ({sql}) ORDER BY {order}) TO {literal(tmp)} "
            f"(FORMAT parquet, COMPRESSION zstd, KV_METADATA {meta})",
            params,
        )
    return Path(path)


def _select_keys(info: BagInfo) -> str:
    cols = []
    for key in info.keys:
        for column in KEYS[key]:
            cols.append(ident(column))
    return ", ".join(cols)


def bag_from_flows(
    flow_files: Sequence[str | Path],
    path: str | Path,
    keys: Sequence[str],
    counters: Sequence[str] = ("records",),
    *,
    where: str = "TRUE",
    params: Sequence = (),
) -> Path:
    """rwbag: count flows of ``flow_files`` by ``keys``; counters saturate at :data:`COUNTER_MAX`."""
    unknown = [k for k in keys if k not in KEYS] + [c for c in counters if c not in COUNTERS]
    if unknown:
        raise BagError(f"unknown bag key or counter: {', '.join(unknown)}")
    info = BagInfo(tuple(keys), tuple(counters))
    key_sql = _select_keys(info)
    agg = ", ".join(
        f"LEAST({COUNTERS[c]}, {COUNTER_MAX})::UBIGINT AS {ident(c)}" for c in counters
    )
    if not flow_files:  # an hour without flows still gets its (empty) bag
        return write_bag(empty_bag_table(info), path, info)
    sql = f"SELECT {key_sql}, {agg} FROM read_parquet({literal_list(flow_files)}) WHERE {where} GROUP BY ALL"
    return write_bag_query(duckdb.connect(), sql, list(params), path, info)


def empty_bag_table(info: BagInfo) -> pa.Table:
    fields = [FLOW_SCHEMA.field(c) for c in info.key_columns]
    fields += [pa.field(c, pa.uint64()) for c in info.counters]
    return pa.schema(fields).empty_table()


def write_bag(table: pa.Table, path: str | Path, info: BagInfo) -> Path:
    meta = {
        b"vlf.bag.keys": json.dumps(list(info.keys)).encode(),
        b"vlf.bag.counters": json.dumps(list(info.counters)).encode(),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def add_bags(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    counters: Sequence[str] | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    """rwbagtool --add: sum counters per key over ``paths`` (missing keys count 0).

    ``counters`` keeps only those counters of multi-counter bags.  ``extra`` adds computed counters, e.g. ``{"hours": "count(*)"}`` counts the input bags a key
    appears in (the "count 1 bags added up" of the study).  Overflow past
    :data:`COUNTER_MAX` raises :class:`BagOverflowError`, as rwbagtool does.
    """
    if not paths:
        raise BagError("add_bags: no input bags")
    infos = {read_info(p) for p in paths}
    if len(infos) != 1:
        raise BagError(f"add_bags: inputs have different keys or counters: {sorted(map(str, infos))}")
    (info,) = infos
    if counters is not None:
        missing = [c for c in counters if c not in info.counters]
        if missing:
            raise BagError(f"add_bags: inputs have no counter(s) {missing} (counters: {list(info.counters)})")
        info = BagInfo(info.keys, tuple(counters))
    extra = extra or {}
    out_info = BagInfo(info.keys, info.counters + tuple(extra))
    key_sql = _select_keys(info)
    sums = [f"sum({ident(c)}) AS {ident(c)}" for c in info.counters]
    sums += [f"{expr} AS {ident(name)}" for name, expr in extra.items()]
    con = duckdb.connect()
    sql = f"SELECT {key_sql}, {', '.join(sums)} FROM read_parquet({literal_list(paths)}) GROUP BY ALL"
    if info.counters:
        biggest = con.execute(
            f"SELECT max(GREATEST({', '.join(ident(c) for c in info.counters)})) FROM ({sql})"
        ).fetchone()[0]
        if biggest is not None and biggest > COUNTER_MAX:
            raise BagOverflowError(f"add_bags: counter overflow ({biggest} > {COUNTER_MAX})")
    casts = ", ".join(f"{ident(c)}::UBIGINT AS {ident(c)}" for c in out_info.counters)
    return write_bag_query(con, f"SELECT {key_sql}, {casts} FROM ({sql})", [], out, out_info)


def read_bag(path: str | Path) -> pa.Table:
    read_info(path)
    return pq.read_table(path)


def coverset(
    path: str | Path,
    *,
    counter: str | None = None,
    min_counter: int = 1,
    max_counter: int = COUNTER_MAX,
) -> IPSet:
    """rwbagtool --mincounter/--maxcounter --coverset: the IP keys whose counter is in range."""
    info = read_info(path)
    if len(info.keys) != 1 or KEYS[info.keys[0]][0] not in ("sIP", "dIP", "nhIP"):
        raise BagError(f"{path}: coverset needs a bag with one IP key, not {list(info.keys)}")
    counter = counter or info.counters[0]
    if counter not in info.counters:
        raise BagError(f"{path}: no counter {counter!r} (counters: {list(info.counters)})")
    v4col, v6col = KEYS[info.keys[0]]
    con = duckdb.connect()
    rows = con.sql(
        f"SELECT {ident(v4col)}, {ident(v6col)} FROM read_parquet(?) "
        f"WHERE {ident(counter)} BETWEEN ? AND ?", params=[str(path), min_counter, max_counter]).to_arrow_table()
    v6 = rows.column(v6col)
    if v6.type != IPV6_TYPE:
        v6 = v6.cast(IPV6_TYPE)
    attributes = pc.if_else(pc.is_valid(v6), pa.scalar(0x80, pa.uint8()), pa.scalar(0, pa.uint8()))
    flows_like = pa.table({"sIP": rows.column(v4col), "sIPv6": v6, "attributes": attributes})
    return IPSet.from_flow_column(flows_like, "sIP")
