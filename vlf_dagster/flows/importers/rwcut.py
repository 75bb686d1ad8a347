"""``rwcut``: SiLK rwcut text -> flow records (also what `vlf tuc` reads).

``|``- or tab-separated, padded or not, with a title line or with the columns given as ``fields``
(rwcut's ``--fields`` syntax); values as rwcut prints them with any of its options.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .formats import DEFAULT_OLD_TIMES
from .result import ImportFormatError, ImportResult, ReadOptions
from .text import (Lines, Rows, check_duration, check_family, check_volumes, convert_lines, filled, flag_letters,
                   flow_columns, np_bool, protocol_number, protocol_reason, read_text)


_RWCUT_TIME_FORMATS = ("%Y/%m/%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
# SiLK's TCP state attribute letters (rwcut's attributes column)
_ATTRIBUTE_BITS = {"T": 0x20, "C": 0x40, "F": 0x08, "S": 0x10}


def _title_field(title: str) -> str | None:
    """A title cell -> canonical field name: a name or alias, or a unique prefix of one (rwcut
    cuts titles to the column width: ``pro``, ``dur``, ``sen``, ``sessionF``, ``attribut``)."""
    from ..fields import FIELDS, FieldError, field

    text = title.strip()
    if not text or text.isdigit():  # field numbers are for --fields, never titles
        return None
    if text.replace(" ", "").lower() in ("<->match#", "match"):
        return "match"
    try:
        return field(text).name
    except FieldError:
        pass
    if len(text) < 3:
        return None
    lower = text.lower()
    hits = {f.name for f in FIELDS for key in (f.name, *f.aliases) if key.lower().startswith(lower)}
    return hits.pop() if len(hits) == 1 else None


def _rwcut_fields(fields: str | Sequence[str]) -> list[str]:
    from ..fields import FieldError, parse_fields

    items = fields.split(",") if isinstance(fields, str) else list(fields)
    names = []
    for item in items:
        text = item.strip()
        if text.lower() == "match":
            names.append("match")
            continue
        try:
            names.extend(f.name for f in parse_fields(text))
        except FieldError as exc:
            raise ImportFormatError(f"bad --fields: {exc}") from None
    return names


def _attributes(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        return value if value <= 255 else None
    value = 0
    for ch in text.upper():
        if ch == " ":
            continue
        if ch not in _ATTRIBUTE_BITS:
            return None
        value |= _ATTRIBUTE_BITS[ch]
    return value


def parse_rwcut(data: bytes | str, origin: str = "<rwcut>", *, fields: str | Sequence[str] | None = None,
                delimiter: str | None = None, old_times: str | None = None, tz: str | None = None,
                sensor_names: Sequence[str] | None = None, keep_types: bool = False) -> ImportResult:
    """rwcut text -> flows.

    Separator: ``delimiter``, else ``|`` or a tab, whichever the first line holds (the study's
    sample tables are tab-separated).  Cells may be padded; a trailing separator is allowed.  The
    columns come from the title line (names as rwcut prints them, cut to the column width:
    ``pro``, ``dur``...) or from ``fields`` (rwcut's ``--fields``: names, numbers, ranges).
    Values as rwcut prints them with any option: dotted, IPv6 or integer addresses; flags as
    letters (``FS PA``, ``FSPA``) or integers; times ``YYYY/MM/DDTHH:MM:SS.sss``, iso, m/d/y or
    epoch, with or without milliseconds; duration in seconds.  ``duration`` may come from
    ``eTime``; ``class``, ``type``, ``iType``, ``iCode`` (when ``dPort`` is there) and cutmatch's
    ``match`` are ignored (flowtypes are assigned by the pipeline); sensor names (not numbers)
    become sensor 0 (``sensor_names_dropped``).  ``vlf tuc`` keeps the ``type`` column
    (``keep_types``) and reads sensor names through the site's ``sensor_names``.
    """
    lines = Lines(data, origin)
    lines.skip_blank()
    policy = old_times or DEFAULT_OLD_TIMES["rwcut"]
    first = lines.first_remaining()
    if first is None:
        return convert_lines(lines, "rwcut", lambda rows: [], old_times=policy)
    first_text = lines.line(first)
    sep = delimiter or ("|" if "|" in first_text else "\t" if "\t" in first_text else None)
    if sep is None:
        raise ImportFormatError(f"{origin}: no '|' or tab separator on the first line; give the separator (--column-separator)")
    cells = first_text.split(sep)
    final = len(cells) > 1 and cells[-1].strip() == ""
    titles = [_title_field(c) for c in (cells[:-1] if final else cells)]
    has_titles = all(t is not None for t in titles)
    if has_titles:
        lines.skip(lines.equals_stripped(first_text), "title_lines")
    if fields is not None:
        names = _rwcut_fields(fields)
    elif has_titles:
        names = titles
    else:
        raise ImportFormatError(f"{origin}: rwcut text without a title line: give its columns (--fields)")
    missing = [f for f in ("sIP", "dIP", "sPort", "protocol", "packets", "bytes", "sTime") if f not in names]
    if "dPort" not in names and not {"iType", "iCode"} <= set(names):
        missing.append("dPort")
    if missing:
        raise ImportFormatError(f"{origin}: rwcut columns lack {', '.join(missing)}")

    def convert(rows: Rows):
        col = dict(zip(names, rows.split(sep, len(names), final_sep=True)))
        src = rows.addresses(col["sIP"], "sIP", integer_ok=True)
        dst = rows.addresses(col["dIP"], "dIP", integer_ok=True)
        v6 = check_family(rows, src, dst)
        protocol, _ = rows.lookup(col["protocol"], "protocol", protocol_number, reason=protocol_reason)
        sport = rows.uint(col["sPort"], "sPort", 0xFFFF)
        if "dPort" in col:
            dport = rows.uint(col["dPort"], "dPort", 0xFFFF)
        else:
            dport = rows.uint(col["iType"], "iType", 255, empty=0) * 256 + rows.uint(col["iCode"], "iCode", 255, empty=0)
        packets = rows.uint(col["packets"], "packets", 2**63 - 1)
        nbytes = rows.uint(col["bytes"], "bytes", 2**63 - 1)
        s_time = rows.times_ms(col["sTime"], "sTime", _RWCUT_TIME_FORMATS, epoch=True, tz=tz)
        if "duration" in col:
            duration = rows.seconds_ms(col["duration"], "duration")
        elif "eTime" in col:
            duration = rows.times_ms(col["eTime"], "eTime", _RWCUT_TIME_FORMATS, epoch=True, tz=tz) - s_time
        else:
            duration = np.zeros(rows.n, dtype=np.int64)
        duration = check_duration(rows, duration)
        extra: dict[str, np.ndarray] = {}
        for name in ("flags", "initialFlags", "sessionFlags"):
            if name in col:
                extra[name], _ = rows.lookup(col[name], name, flag_letters, reason=f"bad {name}: not TCP flags")
        if "attributes" in col:
            extra["attributes"], _ = rows.lookup(col["attributes"], "attributes", _attributes, reason="bad attributes")
        for name in ("in", "out", "application"):
            if name in col:
                extra[name] = rows.uint(col[name], name, 0xFFFF, empty=0)
        if "sensor" in col:
            text = filled(col["sensor"])
            numeric = np_bool(pc.match_substring_regex(text, r"^[0-9]{1,5}$"))
            extra["sensor"] = rows.uint(pc.if_else(pa.array(numeric), text, pa.scalar("0", pa.large_string())), "sensor", 0xFFFF)
            if sensor_names is not None:  # vlf tuc: names of the site's sensors, as rwtuc reads silk.conf's
                index = {name: i for i, name in enumerate(sensor_names)}
                named, known = rows.lookup(pc.if_else(pa.array(numeric), pa.scalar("", pa.large_string()), text), "sensor",
                                           lambda t: index.get(t, 0 if t == "" else None), reason="unknown sensor name")
                extra["sensor"] = np.where(numeric, extra["sensor"], named)
            else:
                rows.note("sensor_names_dropped", ~numeric & rows.ok)
        if keep_types and "type" in col:  # vlf tuc keeps the type column, as rwtuc does
            from ..flowtypes import TYPE_IDS

            extra["flowtype"], _ = rows.lookup(col["type"], "type", TYPE_IDS.get, reason="unknown flow type")
        if "nhIP" in col:
            nh = rows.addresses(col["nhIP"], "nhIP", integer_ok=True, empty_ok=True)
            same = nh.is_v6 == v6
            rows.note("next_hops_of_other_family_dropped", ~same & nh.present & rows.ok)
            extra.update(nhIP=np.where(same & ~v6, nh.v4, 0), nhIPv6=nh.v6, nhIPv6_valid=same & v6 & nh.present)
        rows.fail(packets == 0, "zero packets")
        check_volumes(rows, packets, nbytes, np.ones(rows.n, dtype=bool))
        cols = flow_columns(src, dst, v6, sPort=sport, dPort=dport, protocol=protocol, packets=packets, bytes=nbytes,
                        sTime=s_time, duration=duration, **extra)
        return [(np.ones(rows.n, dtype=bool), cols)]

    return convert_lines(lines, "rwcut", convert, old_times=policy)


def sniff(lines: list[str]) -> bool:
    first = lines[0]
    for sep in ("|", "\t"):
        if sep in first:
            cells = first.split(sep)
            if len(cells) > 1 and cells[-1].strip() == "":
                cells = cells[:-1]
            if all(_title_field(c) for c in cells):
                return True
            if re.match(r"^[0-9a-fA-F:.]+$", cells[0].strip()):
                return True
    return False


def read(path: Path, head: bytes, options: ReadOptions) -> ImportResult:
    return parse_rwcut(read_text(path, head, "rwcut"), str(path), fields=options.fields, delimiter=options.delimiter,
                       old_times=options.old_times, tz=options.tz)
