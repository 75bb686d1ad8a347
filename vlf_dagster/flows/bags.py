"""Bags (SiLK's keyed counters), stored as Parquet and computed with DuckDB.

A bag file has key column(s) and uint64 counter column(s); its Parquet metadata names the keys and
counters (``vlf.bag.keys``, ``vlf.bag.counters``).  A SiLK bag is the one-key, one-counter case.
Beyond SiLK: keys may be composite (``sIP+dIP``, what SiLK needed rwaggbag for), IP keys hold
IPv4 and IPv6 side by side, and ``distinct:FIELD`` counts distinct values exactly (the study used
a Bloom filter for distinct destinations).

IP keys take two columns, as in the flow schema: ``sIP`` (uint32) and ``sIPv6`` (16 bytes, null for
IPv4 keys).  Counters follow SiLK: a counter of 0 means the key is absent; building a bag
saturates at 2^64-2 (:data:`COUNTER_MAX`); ``add`` overflowing is an error; ``subtract`` drops keys
that end at or below zero.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .schema import FLOW_SCHEMA, IPV6_TYPE, MS_PER_HOUR
from .sets import IPSet
from .sql import NO_HIVE, glob_escaped, ident, literal, path_list
from .storage import atomic_path, read_parquet_bytes
from . import duck

COUNTER_MAX = 2**64 - 2
UINT64_WRAP = 2**64

# key name -> (output column, SQL expression over a flow row) pairs; IP keys carry their IPv6 column
KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "sIP": (("sIP", "sIP"), ("sIPv6", "sIPv6")),
    "dIP": (("dIP", "dIP"), ("dIPv6", "dIPv6")),
    "nhIP": (("nhIP", "nhIP"), ("nhIPv6", "nhIPv6")),
    "sPort": (("sPort", "sPort"),),
    "dPort": (("dPort", "dPort"),),
    "protocol": (("protocol", "protocol"),),
    "packets": (("packets", "packets"),),
    "bytes": (("bytes", "bytes"),),
    "flags": (("flags", "flags"),),
    "initialFlags": (("initialFlags", "initialFlags"),),
    "sessionFlags": (("sessionFlags", "sessionFlags"),),
    "attributes": (("attributes", "attributes"),),
    "application": (("application", "application"),),
    "sensor": (("sensor", "sensor"),),
    "input": (("in", '"in"'),),
    "output": (("out", '"out"'),),
    "sTime": (("sTime", "(sTime // 1000)"),),  # 1 s resolution, as rwbag
    "eTime": (("eTime", "((sTime + duration) // 1000)"),),
    "duration": (("duration", "(duration // 1000)"),),
    "value": (("value", "value"),),  # a plain integer key: what --invert and --bag-input produce
    # any address: what adding bags of different address keys gives (SiLK's any-IPv4 / any-IPv6)
    "anyIP": (("anyIP", "anyIP"), ("anyIPv6", "anyIPv6")),
}
IP_KEYS = ("sIP", "dIP", "nhIP", "anyIP")
_ANY_IP_TYPES = {"anyIP": pa.uint32(), "anyIPv6": IPV6_TYPE}
KEY_ALIASES = {
    "sipv4": "sIP", "sipv6": "sIP", "sip": "sIP", "dipv4": "dIP", "dipv6": "dIP", "dip": "dIP",
    "nhipv4": "nhIP", "nhipv6": "nhIP", "nhip": "nhIP", "sport": "sPort", "dport": "dPort",
    "protocol": "protocol", "proto": "protocol", "packets": "packets", "bytes": "bytes", "flags": "flags",
    "initialflags": "initialFlags", "sessionflags": "sessionFlags", "attributes": "attributes",
    "application": "application", "sensor": "sensor", "input": "input", "output": "output",
    "stime": "sTime", "etime": "eTime", "duration": "duration", "value": "value", "custom": "value",
    "anyip": "anyIP", "any-ipv4": "anyIP", "any-ipv6": "anyIP", "anyipv4": "anyIP", "anyipv6": "anyIP",
}
# counter name -> SQL aggregate over flow records
COUNTERS: dict[str, str] = {"records": "count(*)", "packets": "sum(packets)", "bytes": "sum(bytes)"}
COUNTER_ALIASES = {"records": "records", "flows": "records", "sum-packets": "packets", "packets": "packets",
                   "sum-bytes": "bytes", "bytes": "bytes"}


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
        return tuple(col for k in self.keys for col, _ in KEYS[k])

    @property
    def counter(self) -> str:
        """The counter of a one-counter (SiLK) bag."""
        if len(self.counters) != 1:
            raise BagError(f"this operation needs a bag with one counter, not {list(self.counters)}")
        return self.counters[0]


def parse_key(text: str) -> tuple[str, ...]:
    """``sIPv4``, ``dport`` or a composite ``sIP+dIP`` -> canonical key names."""
    keys = []
    for part in text.split("+"):
        name = KEY_ALIASES.get(part.strip().lower())
        if name is None:
            raise BagError(f"unknown bag key {part.strip()!r} (known: {', '.join(sorted(set(KEY_ALIASES)))})")
        keys.append(name)
    if len(set(keys)) != len(keys):
        raise BagError(f"repeated key in {text!r}")
    return tuple(keys)


def parse_counter(text: str) -> str:
    """``records``/``flows``, ``sum-packets``, ``sum-bytes`` or ``distinct:FIELD``."""
    t = text.strip()
    if t.lower().startswith("distinct:"):
        field = KEY_ALIASES.get(t.split(":", 1)[1].strip().lower())
        if field is None:
            raise BagError(f"unknown field in counter {t!r}")
        return f"distinct:{field}"
    name = COUNTER_ALIASES.get(t.lower())
    if name is None:
        raise BagError(f"unknown bag counter {t!r} (records, sum-packets, sum-bytes, distinct:FIELD)")
    return name


def _counter_sql(counter: str) -> str:
    if counter.startswith("distinct:"):
        exprs = [f"{e}" for _, e in KEYS[counter.split(":", 1)[1]]]
        inner = exprs[0] if len(exprs) == 1 else "struct_pack(" + ", ".join(f"k{i} := {e}" for i, e in enumerate(exprs)) + ")"
        return f"count(DISTINCT {inner})"
    return COUNTERS[counter]


def _keys_select(info: BagInfo, *, from_flows: bool) -> str:
    return ", ".join(
        f"{expr} AS {ident(col)}" if from_flows else ident(col) for k in info.keys for col, expr in KEYS[k]
    )


def key_list(info: BagInfo, prefix: str = "") -> str:
    return ", ".join(prefix + ident(c) for c in info.key_columns)


# --- the Bag value and its files -------------------------------------------------------------


@dataclass
class Bag:
    table: pa.Table
    info: BagInfo

    def __len__(self) -> int:
        return self.table.num_rows

    def to_bytes(self) -> bytes:
        sink = io.BytesIO()
        pq.write_table(_with_meta(self.table, self.info), sink, compression="zstd")
        return sink.getvalue()

    def write(self, path: str | Path) -> Path:
        return write_bag(self.table, path, self.info)

    def to_silk_bytes(self) -> bytes:
        """The bag as a SiLK bag file (what rwbag writes): one key and one counter, entries sorted
        by key; an IP key holding an IPv6 address makes every key 16 bytes (IPv4 in ::ffff:0:0/96)."""
        from .silkfile import SilkFileError, silk_bag_bytes

        if len(self.info.keys) != 1 or len(self.info.counters) != 1:
            raise BagError(f"a SiLK bag has one key and one counter; this one has keys {list(self.info.keys)} "
                           f"and counters {list(self.info.counters)}")
        key, counter = self.info.keys[0], self.info.counters[0]
        counters = self.table.column(counter).to_numpy()
        if key in IP_KEYS:
            v4_col, v6_col = (col for col, _ in KEYS[key])
            v4 = self.table.column(v4_col).to_numpy()
            v6 = self.table.column(v6_col).combine_chunks()
            if v6.null_count == len(v6):
                keys = v4
            else:
                keys = np.zeros((len(v4), 16), dtype=np.uint8)
                keys[:, 10:12] = 0xFF
                keys[:, 12:] = v4.astype(">u4").view(np.uint8).reshape(-1, 4)
                rows = np.flatnonzero(v6.is_valid().to_numpy(zero_copy_only=False))
                raw = np.frombuffer(v6.buffers()[1], dtype=np.uint8)[v6.offset * 16 : (v6.offset + len(v6)) * 16].reshape(-1, 16)
                keys[rows] = raw[rows]
        else:
            keys = self.table.column(KEYS[key][0][0]).to_numpy()
        try:
            return silk_bag_bytes(key, counter, keys, counters)
        except SilkFileError as exc:
            raise BagError(str(exc)) from None

    @classmethod
    def _from_silk(cls, data: bytes, source: str) -> "Bag":
        return _silk_bag(data, source)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>") -> "Bag":
        if data[:4] == b"\xde\xad\xbe\xef":  # a SiLK bag file (rwbag, rwbagbuild, rwbagtool)
            return cls._from_silk(data, source)
        try:
            table = read_parquet_bytes(data)
        except (pa.ArrowInvalid, OSError) as exc:
            raise BagError(f"{source}: not a bag file ({str(exc).splitlines()[0]})") from None
        return cls(table, _info_from_meta(table.schema.metadata, source))

    @classmethod
    def read(cls, path: str | Path) -> "Bag":
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise BagError(f"{path}: cannot read bag: {exc.strerror}") from None
        return cls.from_bytes(data, source=str(path))


def _with_meta(table: pa.Table, info: BagInfo) -> pa.Table:
    meta = {b"vlf.bag.keys": json.dumps(list(info.keys)).encode(), b"vlf.bag.counters": json.dumps(list(info.counters)).encode()}
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})


def _info_from_meta(meta: dict | None, source: str) -> BagInfo:
    meta = meta or {}
    if b"vlf.bag.keys" not in meta:
        raise BagError(f"{source}: not a bag file (no vlf.bag.keys metadata)")
    try:
        info = BagInfo(tuple(json.loads(meta[b"vlf.bag.keys"])), tuple(json.loads(meta[b"vlf.bag.counters"])))
    except (ValueError, KeyError):
        raise BagError(f"{source}: corrupt bag metadata") from None
    if any(k not in KEYS for k in info.keys):
        raise BagError(f"{source}: corrupt bag metadata (unknown key in {list(info.keys)})")
    return info


def read_info(path: str | Path) -> BagInfo:
    try:
        meta = pq.read_schema(path).metadata
    except (OSError, pa.ArrowInvalid) as exc:
        raise BagError(f"{path}: not a bag file: {str(exc).splitlines()[0]}") from None
    return _info_from_meta(meta, str(path))


def write_bag(table: pa.Table, path: str | Path, info: BagInfo) -> Path:
    with atomic_path(path) as tmp:
        pq.write_table(_with_meta(table, info), tmp, compression="zstd")
    return Path(path)


def _silk_bag(data: bytes, source: str) -> "Bag":
    """A SiLK bag file as a vlf bag: IPv4 keys of IPv6 bags (::ffff:a.b.c.d) become IPv4 keys."""
    from .silkfile import SilkFileError, read_silk_bag

    try:
        silk = read_silk_bag(data, source)
    except SilkFileError as exc:
        raise BagError(str(exc)) from None
    info = BagInfo((silk.key,), (silk.counter,))
    counters = pa.array(silk.counters, pa.uint64())
    if silk.key in IP_KEYS:
        v4_col, v6_col = (col for col, _ in KEYS[silk.key])
        if silk.ipv6:
            raw = silk.keys
            mapped = (raw[:, :10] == 0).all(axis=1) & (raw[:, 10] == 0xFF) & (raw[:, 11] == 0xFF)
            v4 = np.where(mapped, raw[:, 12:].copy().view(">u4").reshape(-1), 0).astype(np.uint32)
            v6 = pa.FixedSizeBinaryArray.from_buffers(IPV6_TYPE, len(raw), [None, pa.py_buffer(raw.tobytes())])
            v6 = pc.if_else(pa.array(mapped), pa.nulls(len(raw), IPV6_TYPE), v6)
        else:
            v4, v6 = silk.keys.astype(np.uint32), pa.nulls(len(silk.keys), IPV6_TYPE)
        table = pa.table({v4_col: pa.array(v4, pa.uint32()), v6_col: v6, silk.counter: counters})
    else:
        column = KEYS[silk.key][0][0]
        table = pa.table({column: pa.array(silk.keys), silk.counter: counters})
    with duck.connect() as con:
        con.register("silk_bag", normalize(table, info))
        return _query_bag(con, "SELECT * FROM silk_bag", info)  # in vlf's key order


def read_bag(path: str | Path) -> pa.Table:
    read_info(path)
    return pq.read_table(path)


def write_bag_query(con: duckdb.DuckDBPyConnection, sql: str, params: list, path: str | Path, info: BagInfo) -> Path:
    """Run ``sql`` and write its rows atomically, in key order, as a bag file with ``info``."""
    meta = "{'vlf.bag.keys': %s, 'vlf.bag.counters': %s}" % (
        literal(json.dumps(list(info.keys))), literal(json.dumps(list(info.counters))))
    with atomic_path(path) as tmp:
        con.execute(
            f"COPY (SELECT * FROM ({sql}) ORDER BY {key_list(info)}) TO {literal(tmp)} "
            f"(FORMAT parquet, COMPRESSION zstd, KV_METADATA {meta})",
            params,
        )
    return Path(path)


def _query_bag(con: duckdb.DuckDBPyConnection, sql: str, info: BagInfo, params: Sequence = ()) -> Bag:
    table = con.sql(f"SELECT * FROM ({sql}) ORDER BY {key_list(info)}", params=list(params)).to_arrow_table()
    return Bag(normalize(table, info), info)


def _key_type(column: str) -> pa.DataType:
    if column in FLOW_SCHEMA.names:
        return FLOW_SCHEMA.field(column).type
    return _ANY_IP_TYPES.get(column, pa.uint64())


def normalize(table: pa.Table, info: BagInfo) -> pa.Table:
    """Key columns in the flow schema's types, counters uint64."""
    fields = [pa.field(c, _key_type(c)) for c in info.key_columns] + [pa.field(c, pa.uint64()) for c in info.counters]
    columns = [table.column(f.name).cast(f.type) for f in fields]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def empty_bag_table(info: BagInfo) -> pa.Table:
    fields = [pa.field(c, _key_type(c)) for c in info.key_columns] + [pa.field(c, pa.uint64()) for c in info.counters]
    return pa.schema(fields).empty_table()


# --- rwbag ------------------------------------------------------------------------------------


def _flows_source(con: duckdb.DuckDBPyConnection, flows: Sequence[str | Path] | pa.Table | pa.RecordBatchReader) -> str:
    """A relation DuckDB scans: Parquet files, a table, or a reader of batches (scanned once)."""
    # Not duck.register: its view over the files and the DESCRIBE that lists their columns would
    # bind the file list twice more than the query does (~5 ms each over 360 files, beside a
    # ~110 ms bag), and a bag needs no column list.
    if isinstance(flows, (pa.Table, pa.RecordBatchReader)):
        con.register("flow_input", flows)
        return "flow_input"
    return f"read_parquet({path_list(flows)}, {NO_HIVE})"


def bag_sql(source: str, info: BagInfo, where: str = "TRUE", *, hour_key: bool = False) -> str:
    """rwbag as SQL over flow rows; ``hour_key`` adds the start hour (``_hour``, ms) to the keys."""
    aggs = ", ".join(f"LEAST({_counter_sql(c)}, {COUNTER_MAX})::UBIGINT AS {ident(c)}" for c in info.counters)
    hour = f"(sTime // {MS_PER_HOUR}) * {MS_PER_HOUR} AS _hour, " if hour_key else ""
    return f"SELECT {hour}{_keys_select(info, from_flows=True)}, {aggs} FROM {source} WHERE {where} GROUP BY ALL"


def _check_bag_spec(keys: Sequence[str], counters: Sequence[str]) -> BagInfo:
    unknown = [k for k in keys if k not in KEYS]
    unknown += [c for c in counters if c not in COUNTERS and not (c.startswith("distinct:") and c.split(":", 1)[1] in KEYS)]
    if unknown:
        raise BagError(f"unknown bag key or counter: {', '.join(unknown)}")
    if "anyIP" in keys:  # what adding an sIP and a dIP bag gives; a flow has two addresses, not one
        raise BagError("anyIP is the key of bags added together (bagtool --add of sIP and dIP bags), not of flow "
                       "records: count by sIP or dIP")
    return BagInfo(tuple(keys), tuple(counters))


def bag_from_flows(
    flows: Sequence[str | Path] | pa.Table,
    path: str | Path,
    keys: Sequence[str],
    counters: Sequence[str] = ("records",),
    *,
    where: str = "TRUE",
    params: Sequence = (),
) -> Path:
    """rwbag into a file: count flows (Parquet files or a table) by ``keys``; counters saturate."""
    info = _check_bag_spec(keys, counters)
    if not isinstance(flows, pa.Table) and not flows:  # an hour without flows still gets its (empty) bag
        return write_bag(empty_bag_table(info), path, info)
    with duck.connect() as con:
        return write_bag_query(con, bag_sql(_flows_source(con, flows), info, where), list(params), path, info)


def bags_from_table(flows: pa.Table | pa.RecordBatchReader | Sequence[str | Path],
                    specs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[Bag]:
    """rwbag with several ``--bag-file`` specs over one input table (read once), or over Parquet
    flow files (scanned by DuckDB once per spec: worth it for one spec, not for many); a reader of
    batches is scanned once, so it serves one spec."""
    if isinstance(flows, pa.RecordBatchReader) and len(specs) != 1:
        raise BagError("a stream of flow batches is read once: it makes one bag")
    out = []
    with duck.connect() as con:
        source = _flows_source(con, flows)
        for keys, counters in specs:
            info = _check_bag_spec(keys, counters)
            out.append(_query_bag(con, bag_sql(source, info), info))
    return out


# --- rwbagbuild -------------------------------------------------------------------------------


def bag_from_set(ipset: IPSet, *, default_count: int = 1, key: str = "sIP") -> Bag:
    """rwbagbuild --set-input: every address gets ``default_count``."""
    _check_count(default_count)
    info = BagInfo((key,), ("records",))
    v4, v6 = ipset.ipv4_array(), ipset.ipv6_array()
    table = pa.table({
        KEYS[key][0][0]: pa.array(np.concatenate([v4, np.zeros(len(v6), np.uint32)]), pa.uint32()),
        KEYS[key][1][0]: pa.concat_arrays([pa.nulls(len(v4), IPV6_TYPE), v6]),
        "records": pa.array(np.full(len(v4) + len(v6), default_count, np.uint64), pa.uint64()),
    })
    return Bag(table, info)


def _check_count(value: int) -> None:
    if not 1 <= value <= COUNTER_MAX:
        raise BagError(f"count {value} is outside 1..{COUNTER_MAX}")


# --- rwbagtool --------------------------------------------------------------------------------


def _same_keys(bags: Sequence[Bag], op: str) -> BagInfo:
    if not bags:
        raise BagError(f"{op}: no input bags")
    keys = {b.info.keys for b in bags}
    if len(keys) > 1 and all(len(k) == 1 and k[0] in IP_KEYS for k in keys):
        keys = {("anyIP",)}  # sIP and dIP bags add up by address, as SiLK's any-IPv4
    if len(keys) != 1:
        raise BagError(f"{op}: input bags have different keys: {sorted(keys)}")
    for b in bags:
        b.info.counter  # noqa: B018 - raises unless one counter
    return BagInfo(next(iter(keys)), (bags[0].info.counter,))


def _register(con, bags: Sequence[Bag], info: BagInfo | None = None) -> str:
    """Register bags as b0, b1, ... (their keys named as ``info``'s) and return a UNION ALL of
    (keys, c, i) over them."""
    parts = []
    for i, bag in enumerate(bags):
        table = bag.table
        if info is not None and bag.info.keys != info.keys:  # an sIP or dIP bag taking part as anyIP
            table = table.rename_columns(list(info.key_columns) + table.column_names[len(info.key_columns):])
        con.register(f"b{i}", table)
        parts.append(f"SELECT {key_list(info or bag.info)}, {ident(bag.info.counter)}::HUGEINT AS c, {i} AS i FROM b{i}")
    return " UNION ALL ".join(parts)


def _add_sql(source: str, info: BagInfo, counters: Sequence[str], extra: dict[str, str]) -> str:
    sums = [f"sum({ident(c)}) AS {ident(c)}" for c in counters] + [f"{e} AS {ident(n)}" for n, e in extra.items()]
    return f"SELECT {key_list(info)}, {', '.join(sums)} FROM {source} GROUP BY ALL"


def _raise_on_overflow(con, sql: str, counters: Sequence[str], op: str) -> None:
    if not counters:
        return
    biggest = con.sql(f"SELECT max(GREATEST({', '.join(ident(c) for c in counters)})) FROM ({sql})").fetchall()[0][0]
    if biggest is not None and biggest > COUNTER_MAX:
        raise BagOverflowError(f"{op}: counter overflow ({biggest} > {COUNTER_MAX})")


def add(bags: Sequence[Bag]) -> Bag:
    """rwbagtool --add: sum per key (missing keys count 0); overflow is an error."""
    info = _same_keys(bags, "--add")
    with duck.connect() as con:
        sql = f"SELECT {key_list(info)}, sum(c) AS {ident(info.counter)} FROM ({_register(con, bags, info)}) GROUP BY ALL"
        _raise_on_overflow(con, sql, [info.counter], "--add")
        return _query_bag(con, sql, info)


def add_bags(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    counters: Sequence[str] | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    """--add over bag files, streamed by DuckDB (the assets' monthly and window rollups).

    ``counters`` keeps only those counters of multi-counter bags; ``extra`` adds computed counters,
    e.g. ``{"hours": "count(*)"}`` counts the input bags a key appears in (the study's "count 1
    bags added up").  Overflow past :data:`COUNTER_MAX` raises :class:`BagOverflowError`.
    """
    if not paths:
        raise BagError("add_bags: no input bags")
    infos = {read_info(p) for p in paths}
    if len(infos) != 1:
        raise BagError(f"add_bags: inputs have different keys or counters: {sorted(map(str, infos))}")
    (info,) = infos
    kept = list(info.counters if counters is None else counters)
    missing = [c for c in kept if c not in info.counters]
    if missing:
        raise BagError(f"add_bags: inputs have no counter(s) {missing} (counters: {list(info.counters)})")
    extra = extra or {}
    out_info = BagInfo(info.keys, tuple(kept) + tuple(extra))
    sql = _add_sql(f"read_parquet({path_list(paths)})", info, kept, extra)
    casts = ", ".join(f"{ident(c)}::UBIGINT AS {ident(c)}" for c in out_info.counters)
    with duck.connect() as con:
        _raise_on_overflow(con, sql, kept, "add_bags")
        return write_bag_query(con, f"SELECT {key_list(info)}, {casts} FROM ({sql})", [], out, out_info)


def subtract(bags: Sequence[Bag]) -> Bag:
    """rwbagtool --subtract: the first bag minus the others; keys at or below zero vanish."""
    info = _same_keys(bags, "--subtract")
    with duck.connect() as con:
        union = _register(con, bags, info)
        sql = (
            f"SELECT {key_list(info)}, sum(CASE WHEN i = 0 THEN c ELSE -c END) AS {ident(info.counter)} "
            f"FROM ({union}) GROUP BY ALL HAVING bool_or(i = 0) AND sum(CASE WHEN i = 0 THEN c ELSE -c END) > 0"
        )
        return _query_bag(con, sql, info)


def minimize(bags: Sequence[Bag]) -> Bag:
    """rwbagtool --minimize: keys present in every bag, with their smallest counter."""
    info = _same_keys(bags, "--minimize")
    with duck.connect() as con:
        sql = (f"SELECT {key_list(info)}, min(c) AS {ident(info.counter)} FROM ({_register(con, bags, info)}) "
               f"GROUP BY ALL HAVING count(DISTINCT i) = {len(bags)}")
        return _query_bag(con, sql, info)


def maximize(bags: Sequence[Bag]) -> Bag:
    """rwbagtool --maximize: the union of keys, with their largest counter."""
    info = _same_keys(bags, "--maximize")
    with duck.connect() as con:
        sql = f"SELECT {key_list(info)}, max(c) AS {ident(info.counter)} FROM ({_register(con, bags, info)}) GROUP BY ALL"
        return _query_bag(con, sql, info)


def _two(bags: Sequence[Bag], op: str) -> BagInfo:
    if len(bags) != 2:
        raise BagError(f"{op} needs exactly two bags, got {len(bags)}")
    return _same_keys(bags, op)


def divide(bags: Sequence[Bag]) -> Bag:
    """rwbagtool --divide: bag1 / bag2 per key, rounded half up; results below 0.5 are dropped.

    Every key of the first bag must be in the second.
    """
    info = _two(bags, "--divide")
    keys = " AND ".join(f"b0.{ident(c)} IS NOT DISTINCT FROM b1.{ident(c)}" for c in info.key_columns)
    c0, c1 = ident(bags[0].info.counter), ident(bags[1].info.counter)
    quotient = f"((b0.{c0}::HUGEINT * 2 + b1.{c1}::HUGEINT) // (b1.{c1}::HUGEINT * 2))"  # round half up
    sql = (f"SELECT {key_list(info, 'b0.')}, {quotient} AS {ident(info.counter)} FROM b0 JOIN b1 ON {keys} "
           f"WHERE {quotient} > 0")
    with duck.connect() as con:
        _register(con, bags, info)
        missing = con.sql(f"SELECT count(*) FROM b0 WHERE NOT EXISTS (SELECT 1 FROM b1 WHERE {keys})").fetchall()[0][0]
        if missing:
            raise BagError(f"--divide: {missing} key(s) of the first bag are not in the second bag")
        return _query_bag(con, sql, info)


def scalar_multiply(bag: Bag, value: int) -> Bag:
    """rwbagtool --scalar-multiply: like SiLK, an overflowing product warns and wraps."""
    if not 1 <= value <= UINT64_WRAP - 1:
        raise BagError(f"--scalar-multiply={value} is outside 1..{UINT64_WRAP - 1}")
    info = _same_keys([bag], "--scalar-multiply")
    c = ident(info.counter)
    sql = f"SELECT {key_list(info)}, ({c}::UHUGEINT * {value}::UHUGEINT) % {UINT64_WRAP}::UHUGEINT AS {c} FROM b0"
    with duck.connect() as con:
        con.register("b0", bag.table)
        overflow = con.sql(f"SELECT count(*) FROM b0 WHERE {c}::UHUGEINT * {value}::UHUGEINT > {COUNTER_MAX}").fetchall()[0][0]
        if overflow:
            print(f"vlf bagtool: warning: --scalar-multiply overflowed {overflow} counter(s); they wrapped", file=sys.stderr)
        return _query_bag(con, sql, info)


COMPARISONS = {"lt": "<", "le": "<=", "eq": "=", "ge": ">=", "gt": ">"}


def compare(bags: Sequence[Bag], op: str) -> Bag:
    """rwbagtool --compare=OP: keys in both bags where counter1 OP counter2, with counter 1."""
    info = _two(bags, "--compare")
    if op.lower() not in COMPARISONS:
        raise BagError(f"--compare={op}: use one of {', '.join(COMPARISONS)}")
    keys = " AND ".join(f"b0.{ident(c)} IS NOT DISTINCT FROM b1.{ident(c)}" for c in info.key_columns)
    c0, c1 = ident(bags[0].info.counter), ident(bags[1].info.counter)
    sql = (f"SELECT {key_list(info, 'b0.')}, 1 AS {ident(info.counter)} FROM b0 JOIN b1 ON {keys} "
           f"WHERE b0.{c0} {COMPARISONS[op.lower()]} b1.{c1}")
    with duck.connect() as con:
        _register(con, bags, info)
        return _query_bag(con, sql, info)


def _ip_key(info: BagInfo, op: str) -> tuple[str, str]:
    if len(info.keys) != 1 or info.keys[0] not in IP_KEYS:
        raise BagError(f"{op} needs a bag with one IP key, not {list(info.keys)}")
    return KEYS[info.keys[0]][0][0], KEYS[info.keys[0]][1][0]


def filter_bag(
    bag: Bag,
    *,
    min_counter: int | None = None,
    max_counter: int | None = None,
    min_key: int | None = None,
    max_key: int | None = None,
    intersect: IPSet | None = None,
    complement: IPSet | None = None,
) -> Bag:
    """rwbagtool's filters: counter and key bounds (IPv4 / integer keys) and set masks."""
    info = bag.info
    table = bag.table
    mask = pa.array(np.ones(table.num_rows, bool))
    counter = table.column(info.counter)
    if min_counter is not None:
        mask = pc.and_(mask, pc.greater_equal(counter, min_counter))
    if max_counter is not None:
        mask = pc.and_(mask, pc.less_equal(counter, max_counter))
    if min_key is not None or max_key is not None:
        if len(info.keys) != 1:
            raise BagError("--minkey/--maxkey need a bag with one key")
        key = table.column(info.key_columns[0])
        if min_key is not None:
            mask = pc.and_(mask, pc.greater_equal(key, min_key))
        if max_key is not None:
            mask = pc.and_(mask, pc.less_equal(key, max_key))
    for ipset, keep in ((intersect, True), (complement, False)):
        if ipset is None:
            continue
        inside = _members(bag, ipset, "--intersect" if keep else "--complement-intersect")
        mask = pc.and_(mask, pa.array(inside if keep else ~inside))
    return Bag(table.filter(mask), info)


def _members(bag: Bag, ipset: IPSet, op: str) -> np.ndarray:
    v4col, v6col = _ip_key(bag.info, op)
    is_v6 = bag.table.column(v6col).is_valid().to_numpy(zero_copy_only=False)
    inside = ipset.contains_ipv4(bag.table.column(v4col).to_numpy()) & ~is_v6
    if is_v6.any():
        wanted = {a.tobytes() for a in ipset.v6}
        v6 = bag.table.column(v6col).to_pylist()
        inside |= np.array([v is not None and v in wanted for v in v6])
    return inside


def coverset_of(bag: Bag) -> IPSet:
    """rwbagtool --coverset: the IP keys of a bag as an IP set."""
    v4col, v6col = _ip_key(bag.info, "--coverset")
    v6 = bag.table.column(v6col).cast(IPV6_TYPE)
    attributes = pc.if_else(pc.is_valid(v6), pa.scalar(0x80, pa.uint8()), pa.scalar(0, pa.uint8()))
    return IPSet.from_flow_column(pa.table({"sIP": bag.table.column(v4col), "sIPv6": v6, "attributes": attributes}), "sIP")


def coverset(path: str | Path, *, counter: str | None = None, min_counter: int = 1, max_counter: int = COUNTER_MAX) -> IPSet:
    """--mincounter/--maxcounter --coverset over a bag file, filtering in DuckDB."""
    info = read_info(path)
    v4col, v6col = _ip_key(info, "--coverset")
    counter = counter or info.counters[0]
    if counter not in info.counters:
        raise BagError(f"{path}: no counter {counter!r} (counters: {list(info.counters)})")
    with duck.connect() as con:
        rows = con.sql(
            f"SELECT {ident(v4col)}, {ident(v6col)}, {ident(counter)} FROM read_parquet(?) WHERE {ident(counter)} BETWEEN ? AND ?",
            params=[glob_escaped(path), min_counter, max_counter],
        ).to_arrow_table()
    return coverset_of(Bag(rows, BagInfo(info.keys, (counter,))))


def invert(bag: Bag) -> Bag:
    """rwbagtool --invert: counter -> number of keys; counters above 2^32-1 go to key 2^32-1."""
    info = _same_keys([bag], "--invert")
    sql = f"SELECT LEAST({ident(info.counter)}, {2**32 - 1}) AS value, count(*) AS records FROM b0 GROUP BY 1"
    with duck.connect() as con:
        con.register("b0", bag.table)
        return _query_bag(con, sql, BagInfo(("value",), ("records",)))


# --- rwbagcat ---------------------------------------------------------------------------------


def statistics(bag: Bag) -> dict[str, float | int]:
    """rwbagcat --print-statistics: keys, sum, min/max key and counter, mean, sample variance and
    standard deviation, skew as rwbagcat computes it (third central moment over n * s^3), and the
    excess kurtosis (fourth central moment over the squared population variance, minus 3).

    rwbagcat 3.19.1 prints (n-1)^2/n as its kurtosis (its formula squares the second moment where
    the fourth belongs); this one is the textbook value.  Undefined values (one key, equal
    counters) are NaN, as SiLK's 0/0."""
    info = bag.info
    counter = bag.table.column(info.counter).to_numpy().astype(np.float64)
    n = len(counter)
    stats: dict[str, float | int] = {"keys": n, "sum": int(pc.sum(bag.table.column(info.counter)).as_py() or 0)}
    if n:
        key = bag.table.column(info.key_columns[0])
        stats.update(min_key=pc.min(key).as_py(), max_key=pc.max(key).as_py(),
                     min_counter=int(counter.min()), max_counter=int(counter.max()))
        mean = counter.mean()
        deviation = counter - mean
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.float64((deviation**2).sum()) / np.float64(n - 1)
            sd = np.sqrt(var)
            m2 = (deviation**2).mean()
            stats.update(mean=float(mean), variance=float(var), standard_deviation=float(sd),
                         skew=float(np.float64((deviation**3).sum()) / (n * var * sd)),
                         kurtosis=float(np.float64((deviation**4).mean()) / np.float64(m2 * m2) - 3))
    return stats
