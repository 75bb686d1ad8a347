"""SiLK's record fields as the toolbox names them: numbers, aliases and SQL expressions.

One registry serves every verb that takes ``--fields`` (cut, uniq, stats, sort, match): rwcut's
field numbers (sIP=1 ... application=29), its names, case-insensitive aliases, and the DuckDB
expression that computes each field from a flow-schema row.
"""

from __future__ import annotations

from dataclasses import dataclass


class FieldError(ValueError):
    pass


@dataclass(frozen=True)
class Field:
    name: str  # canonical name, as rwcut's title
    number: int | None  # rwcut's field number, None where SiLK has none
    sql: str  # DuckDB expression over a flow-schema row
    aliases: tuple[str, ...] = ()
    kind: str = "int"  # int | ip | time | duration | flags | sensor | flowtype | class


FIELDS: tuple[Field, ...] = (
    Field("sIP", 1, "sIP", ("sip",), "ip"),
    Field("dIP", 2, "dIP", ("dip",), "ip"),
    Field("sPort", 3, "sPort", ("sport",)),
    Field("dPort", 4, "dPort", ("dport",)),
    Field("protocol", 5, "protocol", ("proto", "pro")),
    Field("packets", 6, "packets", ("pkts",)),
    Field("bytes", 7, "bytes", ()),
    Field("flags", 8, "flags", ("tcpflags",), "flags"),
    Field("sTime", 9, "sTime", ("stime", "starttime"), "time"),
    Field("duration", 10, "duration", ("dur", "elapsed"), "duration"),
    Field("eTime", 11, "(sTime + duration)", ("etime", "endtime"), "time"),
    Field("sensor", 12, "sensor", ("sen",), "sensor"),
    Field("in", 13, '"in"', ("input",)),
    Field("out", 14, '"out"', ("output",)),
    Field("nhIP", 15, "nhIP", ("nhip", "nexthop"), "ip"),
    Field("class", 20, "0", (), "class"),
    Field("type", 21, "flowtype", ("flowtype",), "flowtype"),
    Field("iType", None, "CASE WHEN protocol = 1 OR (protocol = 58 AND attributes & 128 <> 0) THEN dPort >> 8 END", ("itype",)),
    Field("iCode", None, "CASE WHEN protocol = 1 OR (protocol = 58 AND attributes & 128 <> 0) THEN dPort & 255 END", ("icode",)),
    Field("initialFlags", 26, "initialFlags", ("initialflags",), "flags"),
    Field("sessionFlags", 27, "sessionFlags", ("sessionflags",), "flags"),
    Field("attributes", 28, "attributes", (), "attributes"),
    Field("application", 29, "application", ("app",)),
)

_BY_KEY: dict[str, Field] = {}
for _f in FIELDS:
    _BY_KEY[_f.name.lower()] = _f
    for _a in _f.aliases:
        _BY_KEY[_a.lower()] = _f
    if _f.number is not None:
        _BY_KEY[str(_f.number)] = _f


def field(name: str) -> Field:
    try:
        return _BY_KEY[name.strip().lower()]
    except KeyError:
        raise FieldError(f"unknown field {name.strip()!r}") from None


def parse_fields(text: str) -> list[Field]:
    """A ``--fields`` list: names or numbers, comma-separated, with ``N-M`` number ranges."""
    out: list[Field] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            raise FieldError(f"empty item in field list {text!r}")
        if "-" in item and all(p.isdigit() for p in item.split("-", 1)):
            lo, hi = (int(p) for p in item.split("-", 1))
            if lo > hi:
                raise FieldError(f"invalid field range {item!r}")
            numbered = [f for f in FIELDS if f.number is not None and lo <= f.number <= hi]
            if len(numbered) != len([n for n in range(lo, hi + 1) if str(n) in _BY_KEY]) or not numbered:
                raise FieldError(f"invalid field range {item!r}")
            out.extend(numbered)
        else:
            out.append(field(item))
    return out
