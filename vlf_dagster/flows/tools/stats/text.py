"""The text output of uniq, stats and count in the SiLK tools' layouts: right-aligned columns,
``|`` separators including a trailing one, keys shown as rwcut shows them, and the switches that
change them (:class:`TextOptions`).  Lines come as :class:`TextLines`, written without a Python
string per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...fields import Field
from ...flags import attribute_strings, flag_strings
from ...flowtypes import FLOWTYPES
from ...iptext import CANONICAL, DECIMAL, IpFormat, ip_width, ipv4_text, ipv6_text
from ...site import sensor_labels, sensor_width
from .count import parse_bin_size
from .keys import Plan, Value
from .top import TopN


@dataclass(frozen=True)
class TextOptions:
    """The SiLK text-output switches shared by rwuniq, rwstats and rwcount."""

    columns: bool = True  # --no-columns turns off
    titles: bool = True  # --no-titles turns off
    separator: str = "|"  # --column-separator / --delimited=C
    final_delimiter: bool = True  # --no-final-delimiter turns off
    integer_flags: bool = False  # --integer-tcp-flags
    integer_ips: bool = False  # --integer-ips / --ip-format=decimal
    timestamp_format: str = "default"  # default | iso | m/d/y | epoch
    sensor_names: tuple[str, ...] | None = None  # the site's sensors; None (or --integer-sensors): numbers
    ip_format: IpFormat | None = None  # --ip-format; None: canonical, or decimal with integer_ips
    mapped_as_ipv4: bool = True  # ::ffff:a.b.c.d prints as a.b.c.d (--ipv6-policy force and only: not)


_STRFTIME = {"default": "%Y/%m/%dT%H:%M:%S", "iso": "%Y-%m-%d %H:%M:%S", "m/d/y": "%m/%d/%Y %H:%M:%S"}


_TYPE_NAMES = np.array([FLOWTYPES.get(i, (str(i),))[0] for i in range(256)], dtype=object)


_KEY_WIDTHS = {
    "sPort": 5, "dPort": 5, "protocol": 3, "packets": 10, "bytes": 10, "in": 5, "out": 5,
    "application": 5, "iType": 3, "iCode": 3, "sensor": 5, "class": 3, "type": 7, "attributes": 8,
}  # fmt: skip


def _strings(values: np.ndarray | pa.Array) -> pa.Array:
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.fill_null(pc.cast(arr, pa.string()), "")


def format_times(ms: pa.Array | np.ndarray, opts: TextOptions, msec: bool) -> pa.Array:
    """Millisecond epoch times as SiLK prints them (UTC); ``msec`` keeps the milliseconds."""
    arr = ms if isinstance(ms, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(ms, dtype=np.int64))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.int64())
    if opts.timestamp_format == "epoch":
        values = arr.to_numpy(zero_copy_only=False)
        secs = np.floor_divide(values, 1000)
        if not msec:
            return _strings(secs)
        text = np.char.add(np.char.add(secs.astype(str), "."), np.char.zfill(np.mod(values, 1000).astype(str), 3))
        return pa.array(text.astype(object), pa.string())
    fmt = _STRFTIME[opts.timestamp_format]
    if msec:
        stamps = arr.cast(pa.timestamp("ms", tz="UTC"))
    else:
        floor = pa.array(np.floor_divide(arr.to_numpy(zero_copy_only=False), 1000), pa.int64())
        stamps = floor.cast(pa.timestamp("s", tz="UTC"))
    return pc.strftime(stamps, format=fmt)


def _time_width(opts: TextOptions, msec: bool) -> int:
    if opts.timestamp_format == "epoch":
        return 14 if msec else 10
    return 23 if msec else 19


def _ip_format(opts: TextOptions) -> IpFormat:
    return opts.ip_format if opts.ip_format is not None else (DECIMAL if opts.integer_ips else CANONICAL)


def _ipv6_key_words(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    n = len(column)
    raw = np.frombuffer(column.buffers()[1], dtype=np.uint8)[column.offset * 16 : (column.offset + n) * 16]
    words = raw.reshape(n, 16).view(">u8").reshape(n, 2).astype(np.uint64)
    return words[:, 0], words[:, 1]


def _is_mapped(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))


def _format_ips(column: pa.Array, opts: TextOptions, unmap: np.ndarray | None = None) -> pa.Array:
    """Addresses as text; a 128-bit address in ::ffff:0:0/96 prints as IPv4 where ``unmap`` says so
    (SiLK's mix: in rows whose every address is IPv4 or mapped)."""
    fmt = _ip_format(opts)
    if pa.types.is_fixed_size_binary(column.type):
        hi, lo = _ipv6_key_words(column)
        text = ipv6_text(hi, lo, fmt)  # one per IPv6 bin (output rows, not records)
        mapped = _is_mapped(hi, lo) & (unmap if unmap is not None else True)
        if mapped.any() and opts.mapped_as_ipv4:  # an IPv4 bin of a table that also holds IPv6: printed as IPv4
            v4 = ipv4_text((lo & np.uint64(0xFFFFFFFF)).astype(np.uint32), fmt)
            text = pc.if_else(pa.array(mapped), v4, text)
        return text
    return ipv4_text(column.to_numpy(zero_copy_only=False), fmt)


def _format_key(field: Field, column: pa.Array, plan: Plan, opts: TextOptions,
                unmap: np.ndarray | None = None) -> tuple[pa.Array, int]:
    """A key column as rwcut would print it, and its column width."""
    kind = field.kind
    if kind == "ip":
        width = ip_width(_ip_format(opts), plan.ipv6)
        return _format_ips(column, opts, unmap), width
    if kind == "time":
        return format_times(column, opts, plan.msec), _time_width(opts, plan.msec)
    if kind == "duration":
        ms = column.to_numpy(zero_copy_only=False).astype(np.int64)
        if plan.msec:
            text = np.char.add(np.char.add((ms // 1000).astype(str), "."), np.char.zfill((ms % 1000).astype(str), 3))
            return pa.array(text.astype(object), pa.string()), 9
        return _strings(ms // 1000), 5
    if kind == "flags":
        if opts.integer_flags:
            return _strings(column), 3
        values = column.to_numpy(zero_copy_only=False)
        return pa.array(flag_strings(values, columns=opts.columns), pa.string()), 8
    if kind == "attributes":
        return pa.array(attribute_strings(column.to_numpy(zero_copy_only=False), columns=opts.columns), pa.string()), 8
    if kind == "flowtype":
        values = column.to_numpy(zero_copy_only=False).astype(np.uint8)
        return pa.array(_TYPE_NAMES[values], pa.string()), 7
    if kind == "class":
        return pa.array(np.where(column.to_numpy(zero_copy_only=False) == 0, "all", "?").astype(object), pa.string()), 3
    if kind == "sensor" and opts.sensor_names is not None:
        labels = sensor_labels(column.to_numpy(zero_copy_only=False), opts.sensor_names)
        return pa.array(labels, pa.string()), sensor_width(opts.sensor_names)
    return _strings(column), _KEY_WIDTHS.get(field.name, 10)


def _format_value(value: Value, column: pa.Array, plan: Plan, opts: TextOptions) -> tuple[pa.Array, int]:
    if value.kind in ("stime", "etime"):
        return format_times(column, opts, plan.msec), _time_width(opts, plan.msec)
    if value.kind == "distinct" and value.field is not None and value.field.kind == "ip" and plan.ipv6:
        return _strings(column), 20  # as wide as a 64-bit count, when the addresses may be IPv6
    return _strings(column), value.width


def _fixed(values: np.ndarray, decimals: int) -> pa.Array:
    return pa.array(np.char.mod(f"%.{decimals}f", np.asarray(values, dtype=np.float64)).astype(object), pa.string())


class TextLines(Sequence[str]):
    """The lines of a SiLK text table: a few head lines, then one body row per bin kept as an Arrow
    string array.  It reads as a list of lines; :meth:`to_bytes` gives the whole text, newline
    after each line, without building a Python string per row (211 k bins: 0.15 s less)."""

    def __init__(self, head: list[str], rows: pa.Array | None = None):
        self.head = head
        self.rows = rows if rows is not None else pa.array([], pa.string())

    def __len__(self) -> int:
        return len(self.head) + len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.head[index] if index < len(self.head) else self.rows[index - len(self.head)].as_py()

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, tuple, TextLines)) else NotImplemented

    def __radd__(self, other: list[str]) -> "TextLines":
        return TextLines(list(other) + self.head, self.rows)

    def to_bytes(self) -> bytes:
        head = "".join(line + "\n" for line in self.head).encode("utf-8")
        if not len(self.rows):
            return head
        # one Arrow string per row, "\n" appended by a join with an empty column; their bytes are
        # contiguous in the data buffer, between the first and the last offset
        rows = pc.binary_join_element_wise(self.rows, "", "\n").cast(pa.large_string())
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)[rows.offset : rows.offset + len(rows) + 1]
        return head + memoryview(rows.buffers()[2])[offsets[0] : offsets[-1]].tobytes()


def _render(columns: list[tuple[str, pa.Array, int]], opts: TextOptions, n_rows: int) -> TextLines:
    """Join (title, strings, width) columns into SiLK's lines: right-aligned, separator-joined."""
    sep = opts.separator
    tail = sep if opts.final_delimiter else ""
    head: list[str] = []
    if opts.titles:
        if opts.columns:
            head.append(sep.join(title[:width].rjust(width) for title, _, width in columns) + tail)
        else:
            head.append(sep.join(title for title, _, _ in columns) + tail)
    if not (n_rows and columns):
        return TextLines(head)
    cells = [pc.utf8_lpad(text, width=width) if opts.columns else text for _, text, width in columns]
    if tail:
        cells.append(pa.scalar(""))  # the separator after the last column
    joined = pc.binary_join_element_wise(*cells, sep) if len(cells) > 1 else cells[0]
    return TextLines(head, joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined)


def _table_columns(table: pa.Table, plan: Plan, opts: TextOptions) -> list[tuple[str, pa.Array, int]]:
    columns = []
    keys = [table.column(i).combine_chunks() for i in range(len(plan.keys))]
    unmap = None
    if plan.ipv6:  # SiLK prints a row's mapped addresses as IPv4 only when all of its addresses are
        unmap = np.ones(table.num_rows, dtype=bool)
        for key, column in zip(plan.keys, keys):
            if key.kind == "ip" and pa.types.is_fixed_size_binary(column.type):
                unmap &= _is_mapped(*_ipv6_key_words(column))
    for key, column in zip(plan.keys, keys):
        text, width = _format_key(key, column, plan, opts, unmap)
        columns.append((key.name, text, width))
    for j, value in enumerate(plan.values):
        text, width = _format_value(value, table.column(len(plan.keys) + j).combine_chunks(), plan, opts)
        columns.append((value.title, text, width))
    return columns


def format_uniq(table: pa.Table, plan: Plan, opts: TextOptions = TextOptions()) -> TextLines:
    """rwuniq's text: a title line, then one line per bin."""
    return _render(_table_columns(table, plan, opts), opts, table.num_rows)


def _plural(n: int) -> str:
    return "" if n == 1 else "s"


def top_header(result: TopN) -> list[str]:
    """rwstats' ``INPUT:`` and ``OUTPUT:`` lines."""
    title = result.primary.title
    line = f"INPUT: {result.records} Record{_plural(result.records)} for {result.bins} Bin{_plural(result.bins)}"
    if result.total:
        line += f" and {result.total} Total {title}"
    direction = "Bottom" if result.bottom else "Top"
    side = "below" if result.bottom else "above"
    shown = result.table.num_rows
    if result.mode == "count":
        out = f"OUTPUT: {direction} {result.count} Bin{_plural(result.count)} by {title}"
    elif result.mode == "all":
        out = f"OUTPUT: {direction} {shown} Bin{_plural(shown)} by {title}"
    elif result.mode == "threshold":
        out = (
            f"OUTPUT: {direction} {shown} bins by {title} (threshold {result.threshold})"
            if shown
            else f"OUTPUT: No bins {side} threshold of {result.threshold} {title}"
        )
    else:
        out = (
            f"OUTPUT: {direction} {shown} bins by {title} ({result.percentage:.4f}% == {result.threshold})"
            if shown
            else f"OUTPUT: No bins {side} threshold of {result.percentage:.4f}% ({result.threshold} {title})"
        )
    return [line, out]


def format_top(result: TopN, opts: TextOptions = TextOptions(), *, percents: bool = True) -> TextLines:
    """rwstats' text: the two header lines, a title line, one line per bin with % and cumul_%."""
    lines = top_header(result) if opts.titles else []
    empty_limit = result.mode in ("threshold", "percentage") and result.table.num_rows == 0
    if empty_limit:
        return lines  # rwstats prints no column titles when no bin meets the threshold
    plan = result.plan
    columns = _table_columns(result.table, plan, opts)
    if percents:
        n_cols = len(plan.keys) + len(plan.values)
        share = result.table.column(n_cols).to_numpy()
        cumulative = result.table.column(n_cols + 1).to_numpy()
        cumul_decimals = 4 if result.primary.kind == "distinct" else 6  # rwstats' own quirk
        columns.append((f"%{result.primary.title}", _fixed(share, 6), 10))
        columns.append(("cumul_%", _fixed(cumulative, cumul_decimals), 10))
    return lines + _render(columns, opts, result.table.num_rows)


def format_count(table: pa.Table, bin_size: float | str = 30, opts: TextOptions = TextOptions()) -> TextLines:
    """rwcount's text: ``Date|Records|Bytes|Packets|`` with two decimals."""
    msec = parse_bin_size(bin_size) % 1000 != 0
    dates = table.column("Date").combine_chunks().cast(pa.int64())
    columns = [
        ("Date", format_times(dates, opts, msec), 23 if msec else 19),  # rwcount keeps the width for epoch times
        ("Records", _fixed(table.column("Records").to_numpy(), 2), 15),
        ("Bytes", _fixed(table.column("Bytes").to_numpy(), 2), 20),
        ("Packets", _fixed(table.column("Packets").to_numpy(), 2), 17),
    ]
    return _render(columns, opts, table.num_rows)
