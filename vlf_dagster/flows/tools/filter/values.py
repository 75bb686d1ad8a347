"""Parsers of rwfilter's value syntaxes: integer lists (``1,3,5-10,1024-``), integer and decimal
ranges (``MIN-MAX``, ``MIN-``), SiLK times and time windows (``START[-END]``).  Each raises
:class:`~.spec.FilterError` naming the switch (``what``) and the bad value."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Iterable

from ...silktime import SilkTimeError, parse_silk_time, window_end
from .spec import FilterError


def parse_integer_list(text: str, maximum: int, *, what: str) -> list[tuple[int, int]]:
    """``1,3,5-10,1024-`` -> merged inclusive ranges; an open range ends at ``maximum``."""
    text = str(text).strip()
    if not text:
        raise FilterError(f"{what}: empty integer list")
    ranges = []
    for item in text.split(","):
        item = item.strip()
        m = re.fullmatch(r"(\d+)(?:(-)(\d*))?", item)
        if not m:
            raise FilterError(f"{what}: invalid value {item!r} in {text!r} (expected N, N-M or N-)")
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else maximum)
        if lo > maximum or hi > maximum:
            raise FilterError(f"{what}: value {item!r} in {text!r} is above the maximum {maximum}")
        if lo > hi:
            raise FilterError(f"{what}: range {item!r} in {text!r} has its start above its end")
        ranges.append((lo, hi))
    return merge_int_ranges(ranges)


def merge_int_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive ranges sorted, with overlapping and adjacent ones joined."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def parse_integer_range(text: str, *, what: str, maximum: int = 2**64 - 1) -> tuple[int, int]:
    """``MIN-MAX``, ``MIN-`` or an exact value."""
    text = str(text).strip()
    m = re.fullmatch(r"(\d+)(?:(-)(\d*))?", text)
    if not m:
        raise FilterError(f"{what}: invalid range {text!r} (expected MIN-MAX, MIN- or a value)")
    lo = int(m.group(1))
    hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else maximum)
    if lo > hi:
        raise FilterError(f"{what}: range {text!r} has its minimum above its maximum")
    if hi > maximum:
        raise FilterError(f"{what}: {text!r} is above the maximum {maximum}")
    return lo, hi


def parse_decimal_range(text: str, *, what: str) -> tuple[Decimal, Decimal | None]:
    """``5.0-10.031``, ``1.5-`` or an exact value, as Decimals (None: no upper limit)."""
    text = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(?:(-)(\d+(?:\.\d*)?|\.\d+)?)?", text)
    if not m:
        raise FilterError(f"{what}: invalid decimal range {text!r} (expected MIN-MAX, MIN- or a value)")
    try:
        lo = Decimal(m.group(1))
        hi = lo if m.group(2) is None else (Decimal(m.group(3)) if m.group(3) else None)
    except InvalidOperation:
        raise FilterError(f"{what}: invalid decimal range {text!r}") from None
    if hi is not None and lo > hi:
        raise FilterError(f"{what}: range {text!r} has its minimum above its maximum")
    return lo, hi


# --- times ----------------------------------------------------------------------------------

def parse_time(text: str, *, end: bool = False, what: str = "time") -> int:
    """A SiLK time (:mod:`.silktime`) as ms since the epoch (UTC); with ``end``, the last
    millisecond it covers (missing parts 23:59:59.999, an epoch end without a fraction .999), as
    rwfilter's time windows take them."""
    try:
        ms, precision = parse_silk_time(text)
    except SilkTimeError as exc:
        raise FilterError(f"{what}: invalid time {str(text).strip()!r} ({exc})") from None
    return window_end(ms, precision) if end else ms


def parse_time_window(text: str, *, what: str = "time window") -> tuple[int, int]:
    """``START[-END]`` -> inclusive (min_ms, max_ms); a single time is a 1 ms window."""
    text = str(text).strip()
    if text.count("-") > 1:
        raise FilterError(f"{what}: invalid time window {text!r} (expected START[-END])")
    start_s, _, end_s = text.partition("-")
    if not start_s:
        raise FilterError(f"{what}: invalid time window {text!r} (missing start)")
    lo = parse_time(start_s, what=what)
    if not end_s:
        return lo, lo
    hi = parse_time(end_s, end=True, what=what)
    if hi < lo:
        raise FilterError(f"{what}: time window {text!r} ends before it starts")
    return lo, hi
