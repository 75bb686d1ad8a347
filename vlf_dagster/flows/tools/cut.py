"""rwcut: flow records as text, in SiLK's column layout.

Every column is formatted for a whole batch of records at once with Arrow compute kernels
(integer -> string casts, table lookups for flags / names, ``strftime`` for times, left padding),
then the cells of a row are joined with the separator.  Nothing loops over records in Python
except IPv6 addresses, which are formatted once per distinct address.

Layout, as SiLK's ``rwascii.c`` prints it:

* columnar (the default): each value is right-aligned in its column width; each title is
  right-aligned **and cut** to that width (``protocol`` -> ``pro``); the separator follows every
  column, the last one included (``--no-final-delimiter`` drops that one).
* ``columns=False`` (``--no-columns``): no padding, and TCP flags print only their set letters.
* ``delimited`` (``--delimited[=C]``): no columns and no final separator.

Widths follow rwcut: IPs 15 on IPv4-only input (as rwcut under ``asv4``, or a SiLK built without
IPv6) and 39 when the input holds IPv6 records (as ``mix``); with an ``ipv6_policy``, as SiLK
under that policy (:mod:`.ipv6policy`); 10 decimal, 8 hexadecimal (:mod:`.iptext`); ports 5,
protocol 3, packets/bytes 10, flag bytes 8 (3 as integers), sTime/eTime 23 (``epoch``: 14;
``no-msec``: 19 / 10), duration 9, sensor the longest sensor name but at least 3 (5 when printed
as integers), in/out/application 5, class 3, type 7,
iType/iCode 3, attributes 8, and the cutmatch column ``match`` 10.

The ``match`` pseudo-field is SiLK's cutmatch plug-in: titled ``<->Match#``; ``->`` for a query
record (nhIP top byte 0) or ``<-`` for a response (top byte non-zero) followed by the match id
right-aligned in 8 characters (``->       1``); id 0 gives the arrow left-aligned in 10
characters, as the plug-in does, also without columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..fields import Field, FieldError, parse_fields
from ..flags import attribute_strings, flags_to_string
from ..flowtypes import FLOWTYPES
from ..iptext import CANONICAL, DECIMAL, IpFormat, ip_width, ipv4_text, ipv6_text
from ..ipv6policy import WIDE, apply_policy
from ..schema import ATTR_IPV6, FLOW_SCHEMA, PROTO_ICMP, PROTO_ICMPV6, conform, ipv6_words
from ..site import sensor_labels, sensor_width
from ..silktime import TIMESTAMP_FORMATS

DEFAULT_FIELDS = "sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,duration,eTime,sensor"
MATCH_FIELD = "match"
MATCH_TITLE = "<->Match#"
BATCH_ROWS = 65_536


class CutError(ValueError):
    """A bad rwcut option (field list, timestamp format, separator)."""


# Per-field column widths keyed by Field.name (or a callable of the options).
_FIXED_WIDTHS = {
    "sPort": 5,
    "dPort": 5,
    "protocol": 3,
    "packets": 10,
    "bytes": 10,
    "in": 5,
    "out": 5,
    "application": 5,
    "attributes": 8,
    "class": 3,
    "iType": 3,
    "iCode": 3,
    MATCH_FIELD: 10,
}


@dataclass(frozen=True)
class _Options:
    columns: bool
    delimiter: str
    final_delimiter: bool
    titles: bool
    time_format: str
    no_msec: bool
    ip_format: IpFormat
    integer_tcp_flags: bool
    integer_sensors: bool
    sensor_names: tuple[str, ...] | None
    any_ipv6: bool


# --- lookup tables (built once) ----------------------------------------------------------------

_FLAGS_PADDED = pa.array([flags_to_string(v, columns=True) for v in range(256)], pa.string())
_FLAGS_COMPACT = pa.array([flags_to_string(v, columns=False) for v in range(256)], pa.string())
_INT_0_255 = pa.array([str(v) for v in range(256)], pa.string())


_ATTR_PADDED = pa.array(attribute_strings(np.arange(256), columns=True), pa.string())
_ATTR_COMPACT = pa.array(attribute_strings(np.arange(256), columns=False), pa.string())
_TYPE_NAMES = pa.array([FLOWTYPES[i][0] if i in FLOWTYPES else str(i) for i in range(256)], pa.string())
TYPE_WIDTH = max(len(name) for name, _ in FLOWTYPES.values())


# --- column formatters ---------------------------------------------------------------------------


def _np(batch: pa.RecordBatch, name: str) -> np.ndarray:
    return batch.column(name).to_numpy(zero_copy_only=False)


def _ip_column(name: str) -> Callable[[pa.RecordBatch, _Options], pa.Array]:
    def fmt(batch: pa.RecordBatch, opt: _Options) -> pa.Array:
        text = ipv4_text(_np(batch, name), opt.ip_format)
        v6 = (_np(batch, "attributes") & ATTR_IPV6) != 0
        if v6.any():
            rows = np.flatnonzero(v6)
            high, low = ipv6_words(batch.column(name + "v6").take(pa.array(rows)))
            v6_text = ipv6_text(high, low, opt.ip_format)
            text = pc.if_else(pa.array(v6), _scatter(v6_text, rows, len(v6)), text)
        return text

    return fmt


def _scatter(values: pa.Array, rows: np.ndarray, n: int) -> pa.Array:
    """A length-n string array holding ``values`` at ``rows`` (other slots: empty strings)."""
    index = np.zeros(n, dtype=np.int64)
    index[rows] = np.arange(len(rows))
    return values.take(pa.array(index))


def _int_column(name: str) -> Callable[[pa.RecordBatch, _Options], pa.Array]:
    return lambda batch, opt: pc.cast(batch.column(name), pa.string())


def _lut_column(name: str, padded: pa.Array, compact: pa.Array, integer_attr: str | None = None):
    def fmt(batch: pa.RecordBatch, opt: _Options) -> pa.Array:
        values = batch.column(name)
        if integer_attr and getattr(opt, integer_attr):
            return pc.cast(values, pa.string())
        return (padded if opt.columns else compact).take(values)

    return fmt


def _icmp_rows(batch: pa.RecordBatch) -> pa.Array:
    proto = _np(batch, "protocol")
    v6 = (_np(batch, "attributes") & ATTR_IPV6) != 0
    return pa.array((proto == PROTO_ICMP) | ((proto == PROTO_ICMPV6) & v6))


def _icmp_column(shift: int) -> Callable[[pa.RecordBatch, _Options], pa.Array]:
    def fmt(batch: pa.RecordBatch, opt: _Options) -> pa.Array:
        part = (_np(batch, "dPort").astype(np.uint16) >> shift) & 0xFF
        return pc.if_else(_icmp_rows(batch), _INT_0_255.take(pa.array(part.astype(np.uint8))), "")

    return fmt


_DATE_PATTERNS = {"default": ("%Y/%m/%d", "T"), "iso": ("%Y-%m-%d", " "), "m/d/y": ("%m/%d/%Y", " ")}
_TWO_DIGITS = pa.array([f"{v:02d}" for v in range(60)], pa.string())
_THREE_DIGITS = pa.array([f"{v:03d}" for v in range(1000)], pa.string())
MS_PER_DAY = 86_400_000


def _date_text(days: np.ndarray, pattern: str) -> pa.Array:
    """Dates formatted once per distinct day (a flow table spans few days), then looked up."""
    lo, hi = int(days.min()), int(days.max())
    if hi - lo < 1_000_000:
        table_days, index = np.arange(lo, hi + 1, dtype=np.int64), days - lo
    else:
        table_days, index = np.unique(days, return_inverse=True)
    names = pc.strftime(pa.array(table_days * MS_PER_DAY, pa.timestamp("ms")), format=pattern)
    return names.take(pa.array(index.reshape(-1)))


def _time_text(ms: np.ndarray, opt: _Options) -> pa.Array:
    ms = np.asarray(ms, dtype=np.int64)
    if opt.time_format == "epoch":
        seconds = pc.cast(pa.array(ms // 1000), pa.string())
        if opt.no_msec:
            return seconds
        return pc.binary_join_element_wise(seconds, _THREE_DIGITS.take(pa.array(ms % 1000)), ".")
    if not len(ms):
        return pa.array([], pa.string())
    days = ms // MS_PER_DAY
    tod = ms - days * MS_PER_DAY
    pattern, sep = _DATE_PATTERNS[opt.time_format]
    parts = [
        _date_text(days, pattern), sep,
        _TWO_DIGITS.take(pa.array(tod // 3_600_000)), ":",
        _TWO_DIGITS.take(pa.array(tod // 60_000 % 60)), ":",
        _TWO_DIGITS.take(pa.array(tod // 1000 % 60)),
    ]
    if not opt.no_msec:
        parts += [".", _THREE_DIGITS.take(pa.array(tod % 1000))]
    return pc.binary_join_element_wise(*parts, "")


def _stime(batch, opt):
    return _time_text(_np(batch, "sTime"), opt)


def _etime(batch, opt):
    return _time_text(_np(batch, "sTime") + _np(batch, "duration").astype(np.int64), opt)


def _duration(batch, opt):
    ms = _np(batch, "duration").astype(np.int64)
    seconds = pc.cast(pa.array(ms // 1000), pa.string())
    if opt.no_msec:
        return seconds
    return pc.binary_join_element_wise(seconds, _THREE_DIGITS.take(pa.array(ms % 1000)), ".")


def _sensor(batch, opt):
    ids = batch.column("sensor")
    if opt.integer_sensors or opt.sensor_names is None:
        return pc.cast(ids, pa.string())
    return pa.array(sensor_labels(ids.to_numpy(zero_copy_only=False), opt.sensor_names), pa.string())


_CLASS_NAMES = pa.array(["all" if i in FLOWTYPES else "?" for i in range(256)], pa.string())


def _class(batch, opt):
    """The site's one class, "all"; "?" for a flowtype it does not define, as rwcut prints it."""
    return _CLASS_NAMES.take(batch.column("flowtype"))


def _type(batch, opt):
    return _TYPE_NAMES.take(batch.column("flowtype"))


def match_labels(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """The 32-bit rwmatch label of each record: nhIP, or the low 32 bits of nhIPv6 on IPv6 records."""
    label = np.asarray(batch.column("nhIP").to_numpy(zero_copy_only=False), dtype=np.uint32)
    v6 = (np.asarray(batch.column("attributes").to_numpy(zero_copy_only=False)) & ATTR_IPV6) != 0
    if v6.any():
        _, low = ipv6_words(batch.column("nhIPv6"))
        label = np.where(v6, (low & np.uint64(0xFFFFFFFF)).astype(np.uint32), label)
    return label


def _match(batch, opt):
    label = match_labels(batch)
    ids = label & np.uint32(0x00FFFFFF)
    arrow = pc.if_else(pa.array((label & np.uint32(0xFF000000)) != 0), "<-", "->")
    numbered = pc.binary_join_element_wise(arrow, pc.utf8_lpad(pc.cast(pa.array(ids), pa.string()), width=8), "")
    bare = pc.utf8_rpad(arrow, width=10)
    return pc.if_else(pa.array(ids != 0), numbered, bare)


_FORMATTERS: dict[str, Callable[[pa.RecordBatch, _Options], pa.Array]] = {
    "sIP": _ip_column("sIP"),
    "dIP": _ip_column("dIP"),
    "nhIP": _ip_column("nhIP"),
    "sPort": _int_column("sPort"),
    "dPort": _int_column("dPort"),
    "protocol": _int_column("protocol"),
    "packets": _int_column("packets"),
    "bytes": _int_column("bytes"),
    "in": _int_column("in"),
    "out": _int_column("out"),
    "application": _int_column("application"),
    "flags": _lut_column("flags", _FLAGS_PADDED, _FLAGS_COMPACT, "integer_tcp_flags"),
    "initialFlags": _lut_column("initialFlags", _FLAGS_PADDED, _FLAGS_COMPACT, "integer_tcp_flags"),
    "sessionFlags": _lut_column("sessionFlags", _FLAGS_PADDED, _FLAGS_COMPACT, "integer_tcp_flags"),
    "attributes": _lut_column("attributes", _ATTR_PADDED, _ATTR_COMPACT),
    "sTime": _stime,
    "eTime": _etime,
    "duration": _duration,
    "sTime+msec": _stime,
    "eTime+msec": _etime,
    "dur+msec": _duration,
    "sensor": _sensor,
    "class": _class,
    "type": _type,
    "iType": _icmp_column(8),
    "iCode": _icmp_column(0),
    MATCH_FIELD: _match,
}


def _width(name: str, opt: _Options) -> int:
    if name in ("sIP", "dIP", "nhIP"):
        return ip_width(opt.ip_format, opt.any_ipv6)
    if name in ("flags", "initialFlags", "sessionFlags"):
        return 3 if opt.integer_tcp_flags else 8
    if name in ("sTime", "eTime", "sTime+msec", "eTime+msec"):
        if opt.time_format == "epoch":
            return 10 if opt.no_msec else 14
        return 19 if opt.no_msec else 23
    if name in ("duration", "dur+msec"):
        return 5 if opt.no_msec else 9
    if name == "sensor":
        if opt.integer_sensors or opt.sensor_names is None:
            return 5
        return sensor_width(opt.sensor_names)
    if name == "type":
        return TYPE_WIDTH
    return _FIXED_WIDTHS[name]


def _title(name: str) -> str:
    return MATCH_TITLE if name == MATCH_FIELD else name


# --- public API ----------------------------------------------------------------------------------


def resolve_fields(fields: str | Sequence[str | Field] | None) -> list[str]:
    """Canonical column names of a ``--fields`` list: registry names or numbers, ranges, and the
    cutmatch pseudo-field ``match``."""
    if fields is None:
        fields = DEFAULT_FIELDS
    items: list[str | Field] = fields.split(",") if isinstance(fields, str) else list(fields)
    names: list[str] = []
    for item in items:
        if isinstance(item, Field):
            names.append(item.name)
            continue
        text = item.strip()
        if text.lower() == MATCH_FIELD:
            names.append(MATCH_FIELD)
            continue
        names.extend(f.name for f in parse_fields(text))
    for name in names:
        if name not in _FORMATTERS:
            raise FieldError(f"field {name!r} cannot be printed")
    if not names:
        raise FieldError("empty field list")
    return names


def parse_timestamp_format(text: str) -> tuple[str, bool]:
    """rwcut's ``--timestamp-format=FORMAT[,utc][,no-msec]`` -> (format, no_msec)."""
    fmt, no_msec = "default", False
    seen_format = False
    for part in (p.strip().lower() for p in str(text).split(",")):
        if part in TIMESTAMP_FORMATS:
            if seen_format:
                raise CutError(f"invalid timestamp format {text!r}: more than one format")
            fmt, seen_format = part, True
        elif part == "no-msec":
            no_msec = True
        elif part == "utc":
            pass
        else:
            raise CutError(
                f"invalid timestamp format {text!r}: expected one of {', '.join(TIMESTAMP_FORMATS)}, "
                "optionally with ',utc' and ',no-msec' (times are always UTC)"
            )
    return fmt, no_msec


def _any_ipv6(table: pa.Table) -> bool:
    attributes = table.column("attributes")
    return bool(len(attributes)) and bool(pc.any(pc.not_equal(pc.bit_wise_and(attributes, ATTR_IPV6), 0)).as_py())


def _options(any_ipv6: bool, *, columns, delimiter, delimited, no_titles, no_final_delimiter,
             timestamp_format, integer_ips, integer_tcp_flags, integer_sensors, site, ip_format=None) -> _Options:
    if delimited:
        if isinstance(delimited, str):
            delimiter = delimited
        columns, no_final_delimiter = False, True
    if len(delimiter) != 1:
        raise CutError(f"invalid column separator {delimiter!r}: must be one character")
    fmt, no_msec = parse_timestamp_format(timestamp_format)
    return _Options(
        columns=columns,
        delimiter=delimiter,
        final_delimiter=not no_final_delimiter,
        titles=not no_titles,
        time_format=fmt,
        no_msec=no_msec,
        ip_format=ip_format if ip_format is not None else (DECIMAL if integer_ips else CANONICAL),
        integer_tcp_flags=integer_tcp_flags,
        integer_sensors=integer_sensors,
        sensor_names=tuple(site.sensors) if site is not None else None,
        any_ipv6=any_ipv6,
    )


def _title_line(names: list[str], opt: _Options) -> str:
    cells = []
    for name in names:
        title = _title(name)
        if opt.columns:
            width = _width(name, opt)
            title = title[:width].rjust(width)
        cells.append(title)
    return opt.delimiter.join(cells) + (opt.delimiter if opt.final_delimiter else "")


def _batch_lines(batch: pa.RecordBatch, names: list[str], opt: _Options) -> pa.Array:
    cells = []
    for name in names:
        text = _FORMATTERS[name](batch, opt)
        if opt.columns:
            text = pc.utf8_lpad(text, width=_width(name, opt))
        cells.append(text)
    if opt.final_delimiter:
        cells.append(pa.array([""] * batch.num_rows, pa.string()) if batch.num_rows else pa.array([], pa.string()))
    return pc.binary_join_element_wise(*cells, opt.delimiter)


def _prepare(table: pa.Table, num_recs: int | None) -> pa.Table:
    if not table.schema.equals(FLOW_SCHEMA, check_metadata=False):
        table = conform(table)
    if num_recs:
        if num_recs < 0:
            raise CutError(f"invalid record count {num_recs}: must be >= 0")
        table = table.slice(0, num_recs)
    return table


def format_text(
    table: pa.Table,
    fields: str | Sequence[str | Field] | None = None,
    *,
    columns: bool = True,
    delimiter: str = "|",
    delimited: bool | str = False,
    no_titles: bool = False,
    no_final_delimiter: bool = False,
    num_recs: int | None = None,
    timestamp_format: str = "default",
    integer_ips: bool = False,
    integer_tcp_flags: bool = False,
    integer_sensors: bool = False,
    site=None,
    ip_format: IpFormat | None = None,
    ipv6_policy: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[bytes]:
    """rwcut's output as UTF-8 text blocks (each ends with a newline): the bulk path for `vlf cut`.

    Lines are assembled inside Arrow (one newline-terminated string per record), so a block is
    the string array's data buffer: no Python object per record.
    """
    names = resolve_fields(fields)
    table = _prepare(apply_policy(table, ipv6_policy), num_recs)
    opt = _options(
        _any_ipv6(table) if ipv6_policy is None else ipv6_policy in WIDE, columns=columns, delimiter=delimiter, delimited=delimited, no_titles=no_titles,
        no_final_delimiter=no_final_delimiter, timestamp_format=timestamp_format,
        integer_ips=integer_ips, integer_tcp_flags=integer_tcp_flags,
        integer_sensors=integer_sensors, site=site, ip_format=ip_format,
    )
    yield from _blocks(names, opt, table.to_batches(max_chunksize=batch_rows))


def format_flow_files(
    paths: Sequence[str],
    fields: str | Sequence[str | Field] | None = None,
    *,
    num_recs: int | None = None,
    batch_rows: int = BATCH_ROWS,
    **options,
) -> Iterator[bytes]:
    """:func:`format_text` over Parquet flow files, streamed: DuckDB hands the records over batch
    by batch in file order, so memory stays flat however many there are.  ``options`` are
    format_text's."""
    from .. import duck
    from ..sql import NO_HIVE, path_list
    from ..storage import ipv6_columns_empty

    unknown = set(options) - set(_FORMAT_DEFAULTS)
    if unknown:
        raise TypeError(f"format_flow_files() got unexpected options {sorted(unknown)}")
    names = resolve_fields(fields)
    if num_recs is not None and num_recs < 0:
        raise CutError(f"invalid record count {num_recs}: must be >= 0")
    con = duck.probe().cursor()  # the thread's kept database: no second database to open
    try:
        files = f"read_parquet({path_list([str(p) for p in paths])}, {NO_HIVE})"
        # one narrow column decides the address width for every batch to come
        policy = options.get("ipv6_policy")
        if policy is None:  # the footers' null counts answer for files without IPv6, else one narrow scan
            any_ipv6 = not ipv6_columns_empty(paths, con) and con.sql(
                f"SELECT coalesce(bool_or((attributes & {ATTR_IPV6}) <> 0), false) FROM {files}").fetchall()[0][0]
        else:
            any_ipv6 = policy in WIDE
        opt = _options(bool(any_ipv6), **{k: options.get(k, v) for k, v in _FORMAT_DEFAULTS.items() if k != "ipv6_policy"})
        where = {"ignore": f" WHERE (attributes & {ATTR_IPV6}) = 0", "only": f" WHERE (attributes & {ATTR_IPV6}) <> 0"}.get(policy, "")
        limit = f" LIMIT {int(num_recs)}" if num_recs else ""
        reader = con.sql(f"SELECT * FROM {files}{where}{limit}").to_arrow_reader(batch_rows)
        batches = (b for raw in reader for b in apply_policy(conform(pa.Table.from_batches([raw])), policy).to_batches())
        yield from _blocks(names, opt, batches)
    finally:
        con.close()


# format_text's formatting options and their defaults, for format_flow_files.
_FORMAT_DEFAULTS = dict(columns=True, delimiter="|", delimited=False, no_titles=False, no_final_delimiter=False,
                        timestamp_format="default", integer_ips=False, integer_tcp_flags=False,
                        integer_sensors=False, site=None, ip_format=None, ipv6_policy=None)


def _blocks(names: list[str], opt: _Options, batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """The title line, then one text block per batch (a string array's data buffer)."""
    if opt.titles:
        yield (_title_line(names, opt) + "\n").encode()
    for batch in batches:
        if not batch.num_rows:
            continue
        lines = _batch_lines(batch, names, opt)
        lines = pc.binary_join_element_wise(lines, pa.array([""] * batch.num_rows, pa.string()), "\n")
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
        start, end = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
        yield lines.buffers()[2].slice(start, end - start).to_pybytes()


def format_records(
    table: pa.Table,
    fields: str | Sequence[str | Field] | None = None,
    *,
    columns: bool = True,
    delimiter: str = "|",
    delimited: bool | str = False,
    no_titles: bool = False,
    num_recs: int | None = None,
    timestamp_format: str = "default",
    integer_ips: bool = False,
    integer_tcp_flags: bool = False,
    site=None,
    no_final_delimiter: bool = False,
    integer_sensors: bool = False,
) -> Iterator[str]:
    """rwcut's lines (title line first unless ``no_titles``), without newlines.

    ``fields``: a ``--fields`` string or list (names, numbers, ranges, ``match``); default rwcut's
    sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,duration,eTime,sensor.
    ``delimited``: True (keep ``delimiter``) or the separator character.  ``num_recs``: print at
    most that many records (0 or None: all).  ``timestamp_format``: default | iso | m/d/y | epoch,
    optionally ``,no-msec``.  ``site``: a :class:`~vlf_dagster.flows.site.Site` whose sensor names
    the sensor column prints (without one, sensors print as integers).
    """
    for block in format_text(
        table, fields, columns=columns, delimiter=delimiter, delimited=delimited,
        no_titles=no_titles, no_final_delimiter=no_final_delimiter, num_recs=num_recs,
        timestamp_format=timestamp_format, integer_ips=integer_ips,
        integer_tcp_flags=integer_tcp_flags, integer_sensors=integer_sensors, site=site,
    ):
        text = block.decode()
        yield from text[:-1].split("\n") if text else ()


def field_titles(fields: str | Iterable[str] | None = None) -> list[str]:
    """The titles rwcut would print (uncut), e.g. for --dry-run."""
    return [_title(n) for n in resolve_fields(fields if fields is None or isinstance(fields, str) else list(fields))]
