"""SiLK's record fields as the toolbox names them: numbers, aliases and SQL expressions.

One registry serves every verb that takes ``--fields`` (cut, uniq, stats, sort, match): rwcut's
field numbers (sIP=1 ... application=29), its names, case-insensitive aliases, and the DuckDB
expression that computes each field from a flow-schema row.
"""

from __future__ import annotations

from dataclasses import dataclass

from .flowtypes import FLOWTYPES

# the class of a record: 0 for the site's one class ("all"), 1 for a flowtype the site does not
# define (SiLK prints "?": FT_FLOWCAP and old FT_RWFILTER files store no flowtype)
CLASS_SQL = f"(CASE WHEN flowtype IN ({', '.join(str(i) for i in sorted(FLOWTYPES))}) THEN 0 ELSE 1 END)"


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
    Field("class", 20, CLASS_SQL, (), "class"),
    Field("type", 21, "flowtype", ("flowtype",), "flowtype"),
    # rwcut's millisecond variants: the same columns as sTime, eTime and duration print (with msec)
    Field("sTime+msec", 22, "sTime", (), "time"),
    Field("eTime+msec", 23, "(sTime + duration)", (), "time"),
    Field("dur+msec", 24, "duration", (), "duration"),
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
# rwcut's field 25, icmpTypeCode, prints as the two columns iType and iCode
_PAIRS: dict[str, tuple[str, str]] = {"icmptypecode": ("iType", "iCode"), "25": ("iType", "iCode")}


def field(name: str) -> Field:
    """A field by name, alias or number; like SiLK, a unique prefix of a name or alias will do."""
    key = name.strip().lower()
    found = _BY_KEY.get(key)
    if found is not None:
        return found
    candidates = {f.name: f for k, f in _BY_KEY.items() if not k.isdigit() and k.startswith(key)} if key else {}
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    if len(candidates) > 1:
        raise FieldError(f"ambiguous field {name.strip()!r}: it starts {', '.join(sorted(candidates))}")
    raise FieldError(f"unknown field {name.strip()!r}")


def _expand(key: str) -> list[Field] | None:
    pair = _PAIRS.get(key.strip().lower())
    if pair is None and len(key.strip()) >= 5 and "icmptypecode".startswith(key.strip().lower()):
        pair = _PAIRS["icmptypecode"]
    return None if pair is None else [_BY_KEY[p.lower()] for p in pair]


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
            known = [n for n in range(lo, hi + 1) if str(n) in _BY_KEY or str(n) in _PAIRS]
            if len(known) != hi - lo + 1:
                raise FieldError(f"invalid field range {item!r}")
            for number in known:
                out.extend(_expand(str(number)) or [_BY_KEY[str(number)]])
        else:
            out.extend(_expand(item) or [field(item)])
    return out
