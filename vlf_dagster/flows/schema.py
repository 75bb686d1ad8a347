"""The flow record: one Arrow schema for every flow file the project writes or reads.

Fields follow SiLK's record (rwrec.h): addresses, ports, protocol, volumes, the three TCP flag
bytes, start time and duration in milliseconds, sensor, flowtype, interfaces, next hop,
application and attributes.  ICMP type and code live in dPort (type*256 + code), as in SiLK.

IPv4 addresses are uint32 columns (``sIP``, ``dIP``, ``nhIP``).  IPv6 records carry their
addresses in the 16-byte ``sIPv6``/``dIPv6``/``nhIPv6`` columns (null for IPv4 records) and set
the 0x80 bit of ``attributes``, SiLK's "IPv6 record" marker; their uint32 columns hold 0.
Packets and bytes are uint64 (SiLK has uint32), so implausible collector volumes survive intact.

Nothing else in the project spells field types: build tables with :func:`empty_table` or
:func:`conform`, and ask :data:`FLOW_SCHEMA` for a field's type.
"""

from __future__ import annotations

import ipaddress
from typing import Sequence

import numpy as np
import pyarrow as pa

from .sql import ident

ATTR_IPV6 = 0x80

IPV6_TYPE = pa.binary(16)

FLOW_SCHEMA = pa.schema(
    [
        pa.field("sIP", pa.uint32(), nullable=False),
        pa.field("dIP", pa.uint32(), nullable=False),
        pa.field("sPort", pa.uint16(), nullable=False),
        pa.field("dPort", pa.uint16(), nullable=False),
        pa.field("protocol", pa.uint8(), nullable=False),
        pa.field("packets", pa.uint64(), nullable=False),
        pa.field("bytes", pa.uint64(), nullable=False),
        pa.field("flags", pa.uint8(), nullable=False),
        pa.field("initialFlags", pa.uint8(), nullable=False),
        pa.field("sessionFlags", pa.uint8(), nullable=False),
        pa.field("sTime", pa.int64(), nullable=False),  # ms since the Unix epoch, UTC
        pa.field("duration", pa.uint32(), nullable=False),  # ms
        pa.field("sensor", pa.uint16(), nullable=False),
        pa.field("flowtype", pa.uint8(), nullable=False),
        pa.field("in", pa.uint16(), nullable=False),
        pa.field("out", pa.uint16(), nullable=False),
        pa.field("nhIP", pa.uint32(), nullable=False),
        pa.field("application", pa.uint16(), nullable=False),
        pa.field("attributes", pa.uint8(), nullable=False),
        pa.field("sIPv6", IPV6_TYPE, nullable=True),
        pa.field("dIPv6", IPV6_TYPE, nullable=True),
        pa.field("nhIPv6", IPV6_TYPE, nullable=True),
    ],
    metadata={b"vlf.record": b"silk-flow-v1"},
)

# What each column means, for catalogs and help texts.
FIELD_DESCRIPTIONS: dict[str, str] = {
    "sIP": "source IPv4 address (0 for IPv6 records)",
    "dIP": "destination IPv4 address (0 for IPv6 records)",
    "sPort": "source port (0 for ICMP)",
    "dPort": "destination port; ICMP type*256 + code",
    "protocol": "IP protocol number",
    "packets": "packets in the flow",
    "bytes": "bytes in the flow",
    "flags": "OR of all TCP flags (FSRPAUEC bits)",
    "initialFlags": "TCP flags of the first packet",
    "sessionFlags": "OR of the TCP flags after the first packet",
    "sTime": "start time, ms since the Unix epoch, UTC",
    "duration": "duration in ms",
    "sensor": "sensor id (the site's sensor list)",
    "flowtype": "SiLK flowtype id: 0 in, 1 out, 2 inweb, 3 outweb, 4 innull, 5 outnull, 6 int2int, "
                "7 ext2ext, 8 inicmp, 9 outicmp, 10 other",
    "in": "input interface (SNMP index)",
    "out": "output interface (SNMP index)",
    "nhIP": "next-hop IPv4 address; the rwmatch id in matched files",
    "application": "application (port) the collector recognised",
    "attributes": "SiLK attributes; 0x80 marks an IPv6 record",
    "sIPv6": "source IPv6 address (null for IPv4 records)",
    "dIPv6": "destination IPv6 address (null for IPv4 records)",
    "nhIPv6": "next-hop IPv6 address (null for IPv4 records)",
}

FIELD_NAMES: tuple[str, ...] = tuple(FLOW_SCHEMA.names)
# A total order of flow records (by start, source, then every other field): records written in it
# come out in the same order whatever order they were read in, so re-runs give the same bytes.
TIME_ORDER = ", ".join(ident(f) for f in ("sTime", "sIP", *(n for n in FIELD_NAMES if n not in ("sTime", "sIP"))))
IPV6_FIELDS = ("sIPv6", "dIPv6", "nhIPv6")
# Fields a producer must supply; the rest default to 0 (or null for IPv6 columns).
REQUIRED_FIELDS = ("sIP", "dIP", "sPort", "dPort", "protocol", "packets", "bytes", "sTime")

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

MS_PER_HOUR = 3_600_000
# Flow times before 1990: a capture read with relative time (Zeek starts it at 1970) or an
# exporter whose clock was not set; kept, but said wherever the times are shown.
TIME_1990_MS = 631_152_000_000  # 1990-01-01T00:00:00Z


def early_times_warning(first_ms: int, records: int | None = None) -> str | None:
    """One sentence for times that start before 1990 (None for plausible ones)."""
    if first_ms >= TIME_1990_MS:
        return None
    count = f"{records:,} records start" if records is not None else "The window starts"
    return (f"Warning: {count} before 1990: the times look relative to the start of a capture (or an "
            "exporter's clock was not set), so dates and hours here are not wall-clock times.")


class SchemaError(ValueError):
    """A table does not fit the flow schema."""


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a non-IPv6 flow field, e.g. ``numpy_dtype('sPort') == uint16``."""
    return np.dtype(FLOW_SCHEMA.field(name).type.to_pandas_dtype())


def empty_table() -> pa.Table:
    return FLOW_SCHEMA.empty_table()


def conform(table: pa.Table | dict, *, source: str = "<table>") -> pa.Table:
    """Return ``table`` with exactly the flow schema's columns, order and types.

    Missing optional columns are filled with 0 (IPv6 columns with null); missing required columns
    or values that do not fit their type raise :class:`SchemaError` naming ``source``.
    """
    if isinstance(table, dict):
        table = pa.table(table)
    missing = [f for f in REQUIRED_FIELDS if f not in table.column_names]
    if missing:
        raise SchemaError(f"{source}: missing required flow field(s): {', '.join(missing)}")
    unknown = [c for c in table.column_names if c not in FIELD_NAMES]
    if unknown:
        raise SchemaError(f"{source}: unknown flow field(s): {', '.join(unknown)}")
    columns = [_conform_column(table, field, source) for field in FLOW_SCHEMA]
    return pa.Table.from_arrays(columns, schema=FLOW_SCHEMA)


def conform_columns(table: pa.Table, names: Sequence[str], *, source: str = "<table>") -> pa.Table:
    """Only the flow columns ``names``, in the flow schema's types (as :func:`conform` makes them)."""
    schema = pa.schema([FLOW_SCHEMA.field(name) for name in names])
    return pa.Table.from_arrays([_conform_column(table, field, source) for field in schema], schema=schema)


def _conform_column(table: pa.Table, field: pa.Field, source: str) -> pa.ChunkedArray | pa.Array:
    n = table.num_rows
    if field.name in table.column_names:
        column = table.column(field.name)
        if column.type != field.type and column.null_count == n:
            column = pa.nulls(n, field.type)  # e.g. DuckDB's BLOB for IPv6 columns without an address: no cast needed
        elif field.type == IPV6_TYPE and pa.types.is_binary(column.type):
            try:
                column = pa.chunked_array([_fixed16(chunk) for chunk in _chunks(column)], IPV6_TYPE)
            except SchemaError as exc:
                raise SchemaError(f"{source}: field {field.name}: {exc}") from None
        elif column.type != field.type:
            try:
                column = column.cast(field.type)  # safe cast: raises on overflow
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(f"{source}: field {field.name}: {exc}") from None
    elif field.nullable:
        column = pa.nulls(n, field.type)
    else:
        column = pa.array(np.zeros(n, dtype=numpy_dtype(field.name)), type=field.type)
    if not field.nullable and column.null_count:
        raise SchemaError(f"{source}: field {field.name} has {column.null_count} null value(s)")
    return column


def check_schema(table: pa.Table, *, source: str = "<table>") -> None:
    """Raise :class:`SchemaError` unless ``table`` has exactly the flow schema."""
    if not table.schema.equals(FLOW_SCHEMA, check_metadata=False):
        raise SchemaError(f"{source}: schema differs from the flow schema:\n{table.schema}")


# --- addresses -------------------------------------------------------------------------------


def ipv4_to_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def int_to_ipv4(value: int) -> str:
    return str(ipaddress.IPv4Address(int(value)))


def ipv4_strings(values: np.ndarray) -> np.ndarray:
    """Dotted quads for an array of uint32 addresses, without a Python loop per address."""
    v = np.asarray(values, dtype=np.uint32)
    octets = [(v >> shift) & 0xFF for shift in (24, 16, 8, 0)]
    parts = [o.astype(str) for o in octets]
    out = parts[0]
    for p in parts[1:]:
        out = np.char.add(np.char.add(out, "."), p)
    return out


def is_icmp(protocol: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """SiLK's test: protocol 1, or protocol 58 on an IPv6 record."""
    protocol = np.asarray(protocol)
    v6 = (np.asarray(attributes) & ATTR_IPV6) != 0
    return (protocol == PROTO_ICMP) | ((protocol == PROTO_ICMPV6) & v6)


def ipv4_mapped(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Which (hi, lo) IPv6 addresses lie in ::ffff:0:0/96, the IPv4-mapped block (their IPv4 is ``lo``'s low 32 bits)."""
    return (np.asarray(hi) == 0) & ((np.asarray(lo, dtype=np.uint64) >> np.uint64(32)) == np.uint64(0xFFFF))


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def _fixed16(chunk: pa.Array) -> pa.Array:
    """A BLOB address column (DuckDB's type for them) as 16-byte values, by moving its bytes: the
    generic cast took 7.7 s for 23 M mostly empty values.  A value of another size is a
    SchemaError."""
    n = len(chunk)
    if chunk.null_count == n:
        return pa.nulls(n, IPV6_TYPE)
    valid = chunk.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[chunk.offset : chunk.offset + n + 1]
    lengths = np.diff(offsets)
    if (lengths[valid] != 16).any():
        raise SchemaError(f"an address of {int(lengths[valid][lengths[valid] != 16][0])} bytes, not 16")
    data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)
    rows = np.flatnonzero(valid)
    raw = np.zeros((n, 16), dtype=np.uint8)
    raw[rows] = data[(offsets[rows][:, None] + np.arange(16)).ravel()].reshape(-1, 16)
    validity = pa.array(valid).buffers()[1] if chunk.null_count else None  # the mask, bit-packed from offset 0
    return pa.FixedSizeBinaryArray.from_buffers(IPV6_TYPE, n, [validity, pa.py_buffer(raw.tobytes())],
                                                null_count=chunk.null_count)


def ipv6_words(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) uint64 halves of a 16-byte address column; null entries give (0, 0).

    A variable-width binary column (what DuckDB writes for BLOB) is taken as 16-byte values."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], type=IPV6_TYPE)
    if pa.types.is_binary(column.type):  # moved, not cast: see _fixed16
        try:
            column = _fixed16(column)
        except SchemaError as exc:
            raise SchemaError(f"not an IPv6 address column ({exc})") from None
    elif column.type != IPV6_TYPE:
        try:
            column = column.cast(IPV6_TYPE)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(f"not an IPv6 address column ({str(exc).splitlines()[0]})") from None
    n = len(column)
    if column.null_count == n:  # no IPv6 address at all: no buffer to read
        return np.zeros(n, np.uint64), np.zeros(n, np.uint64)
    raw = np.frombuffer(column.buffers()[1], dtype=np.uint8)
    raw = raw[column.offset * 16 : (column.offset + n) * 16].reshape(n, 16)
    if column.null_count:  # a null slot's bytes are unspecified: read the valid ones only (no fill_null copy)
        valid = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False))
        words = np.zeros((n, 2), dtype=np.uint64)
        words[valid] = raw[valid].view(">u8").reshape(-1, 2)
    else:
        words = raw.view(">u8").reshape(n, 2).astype(np.uint64)
    return words[:, 0], words[:, 1]
