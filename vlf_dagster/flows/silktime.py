"""SiLK's time syntax, parsed once for every tool that takes a time (rwfilter's --stime/--etime/
--active-time, rwcount's --start-time/--end-time), as SiLK's own parser takes it:

- ``YYYY/MM/DD[:HH[:MM[:SS[.fraction]]]]`` in UTC, ``T`` or ``:`` before the hour (SiLK refuses
  ``-`` in dates here);
- epoch seconds with an optional fraction.

Fractions of any length are cut to milliseconds, as SiLK cuts them.  A time comes back with its
precision (day, hour, minute, second or ms), from which a window's inclusive end follows.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

_DATETIME = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})(?:[:T](\d{1,2})(?::(\d{1,2})(?::(\d{1,2})(?:\.(\d*))?)?)?)?")
_EPOCH = re.compile(r"(\d+)(?:\.(\d*))?")
# SiLK's --timestamp-format choices: how the text tools print times (rwcut, rwuniq, rwstats, rwcount)
TIMESTAMP_FORMATS = ("default", "iso", "m/d/y", "epoch")
PRECISION_MS = {"day": 86_400_000, "hour": 3_600_000, "minute": 60_000, "second": 1_000, "ms": 1}
EXPECTED = "YYYY/MM/DD[:HH[:MM[:SS[.sss]]]] or epoch seconds"


class SilkTimeError(ValueError):
    """Not a time in SiLK's syntax; the message says what was expected or what is wrong."""


def parse_silk_time(text: str) -> tuple[int, str]:
    """A SiLK time -> (ms since the epoch, precision)."""
    text = str(text).strip()
    m = _EPOCH.fullmatch(text)
    if m:
        fraction = m.group(2)
        ms = int(m.group(1)) * 1000 + (int(fraction[:3].ljust(3, "0")) if fraction else 0)
        return ms, "ms" if fraction else "second"
    m = _DATETIME.fullmatch(text)
    if not m:
        raise SilkTimeError(f"expected {EXPECTED}")
    parts = [int(p) if p is not None else None for p in m.groups()[:6]]
    precision = ("day", "day", "day", "hour", "minute", "second")[max(i for i, p in enumerate(parts) if p is not None)]
    try:
        moment = datetime(*(p or 0 for p in parts[:3]), *(p or 0 for p in parts[3:]), tzinfo=timezone.utc)
    except ValueError as exc:
        raise SilkTimeError(str(exc)) from None
    ms = int(moment.timestamp()) * 1000
    fraction = m.group(7)
    if fraction:
        ms += int(fraction[:3].ljust(3, "0"))
        precision = "ms"
    return ms, precision


def window_end(ms: int, precision: str) -> int:
    """The last millisecond a time of this precision covers (2006/04/01 ends at 23:59:59.999)."""
    return ms + PRECISION_MS[precision] - 1
