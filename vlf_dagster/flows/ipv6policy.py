"""SiLK's ``--ipv6-policy`` (and ``$SILK_IPV6_POLICY``): which records a text tool reads, and how.

- ``ignore``: IPv4 records only;
- ``asv4``: IPv4 records, and IPv6 records whose addresses are all in ::ffff:0:0/96, turned into
  IPv4; other IPv6 records are skipped;
- ``mix``: every record as it is (an IPv6-enabled SiLK's default: address columns 39 wide);
- ``force``: every record as IPv6 (IPv4 addresses mapped into ::ffff:0:0/96);
- ``only``: IPv6 records only.

Without a policy, vlf prints IPv4-only input 15 wide (as ``asv4``) and input holding IPv6 39 wide
(as ``mix``): what SiLK built without IPv6, and SiLK with IPv6 on such input, print.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import ATTR_IPV6, IPV6_TYPE, ipv6_words

POLICIES = ("ignore", "asv4", "mix", "force", "only")
WIDE = ("mix", "force", "only")  # policies whose address columns are 39 wide whatever the input
_ADDRESSES = ("sIP", "dIP", "nhIP")
_MAPPED = np.uint64(0xFFFF)


class Ipv6PolicyError(ValueError):
    pass


def resolve_policy(text: str | None) -> str | None:
    """The policy from the option, else ``$SILK_IPV6_POLICY``, else None (vlf's adaptive width)."""
    value = text if text else os.environ.get("SILK_IPV6_POLICY") or None
    if value is None:
        return None
    if value.lower() not in POLICIES:
        raise Ipv6PolicyError(f"invalid --ipv6-policy {value!r}: use {', '.join(POLICIES)}")
    return value.lower()


def apply_policy(table: pa.Table | pa.RecordBatch, policy: str | None):
    """The records ``policy`` reads, converted as it converts them (a no-op for None and mix)."""
    if policy in (None, "mix") or table.num_rows == 0:
        return table
    v6 = (table.column("attributes").to_numpy(zero_copy_only=False) & ATTR_IPV6) != 0
    if policy == "ignore":
        return table.filter(pa.array(~v6))
    if policy == "only":
        return table.filter(pa.array(v6))
    if policy == "asv4":
        return _as_ipv4(table, v6)
    return _as_ipv6(table, v6)


def _as_ipv4(table, v6: np.ndarray):
    if not v6.any():
        return table
    words = {name: ipv6_words(table.column(name + "v6")) for name in _ADDRESSES}
    mapped = {name: (hi == 0) & ((lo >> np.uint64(32)) == _MAPPED) for name, (hi, lo) in words.items()}
    keep = ~v6 | (mapped["sIP"] & mapped["dIP"])
    for name, (hi, lo) in words.items():
        current = table.column(name).to_numpy(zero_copy_only=False).astype(np.uint32)
        converted = np.where(v6 & mapped[name], (lo & np.uint64(0xFFFFFFFF)).astype(np.uint32), np.where(v6, 0, current))
        table = _set(table, name, pa.array(converted.astype(np.uint32), pa.uint32()))
        table = _set(table, name + "v6", pa.nulls(table.num_rows, IPV6_TYPE))
    attributes = table.column("attributes").to_numpy(zero_copy_only=False)
    table = _set(table, "attributes", pa.array((attributes & ~np.uint8(ATTR_IPV6)).astype(attributes.dtype)))
    return table.filter(pa.array(keep))


def _as_ipv6(table, v6: np.ndarray):
    if v6.all():
        return table
    for name in _ADDRESSES:
        v4 = table.column(name).to_numpy(zero_copy_only=False).astype(">u4")
        raw = np.zeros((table.num_rows, 16), dtype=np.uint8)
        raw[:, 10:12] = 0xFF
        raw[:, 12:] = v4.view(np.uint8).reshape(-1, 4)
        mapped = pa.FixedSizeBinaryArray.from_buffers(IPV6_TYPE, table.num_rows, [None, pa.py_buffer(raw.tobytes())])
        current = table.column(name + "v6")
        current = current.combine_chunks() if isinstance(current, pa.ChunkedArray) else current
        table = _set(table, name + "v6", pc.if_else(pa.array(v6), current, mapped))
    attributes = table.column("attributes").to_numpy(zero_copy_only=False)
    return _set(table, "attributes", pa.array((attributes | np.uint8(ATTR_IPV6)).astype(attributes.dtype)))


def _set(table, name: str, values: pa.Array):
    index = table.schema.get_field_index(name)
    field = table.schema.field(index)
    values = values.cast(field.type)
    if isinstance(table, pa.RecordBatch):
        columns = list(table.columns)
        columns[index] = values
        return pa.RecordBatch.from_arrays(columns, schema=table.schema)
    return table.set_column(index, field, values)
