"""rwcount's engine: records, bytes and packets spread over fixed time bins by one of rwcount's
seven load schemes, and its switches (``--bin-size``, ``--load-scheme``, ``--start-time``,
``--end-time``)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from ...silktime import SilkTimeError, parse_silk_time, window_end
from .keys import StatsError
from .source import Source, open_flows


MS_PER_DAY = 86_400_000


LOAD_SCHEMES = {  # SiLK's numbers
    "bin-uniform": 0,
    "start-spike": 1,
    "end-spike": 2,
    "middle-spike": 3,
    "time-proportional": 4,
    "maximum-volume": 5,
    "minimum-volume": 6,
}
_SCHEME_BY_NUMBER = {n: name for name, n in LOAD_SCHEMES.items()}


def parse_load_scheme(text: str | int) -> str:
    """A load scheme by name (any unique prefix) or SiLK's number 0-6 -> its canonical name."""
    s = str(text).strip().lower()
    if s.isdigit():
        if int(s) in _SCHEME_BY_NUMBER:
            return _SCHEME_BY_NUMBER[int(s)]
        raise StatsError(f"invalid load scheme {text!r}: numbers are 0-6")
    matches = [name for name in LOAD_SCHEMES if name.startswith(s)] if s else []
    if len(matches) != 1:
        why = "ambiguous" if matches else "unknown"
        names = ", ".join(f"{n} ({i})" for n, i in LOAD_SCHEMES.items())
        raise StatsError(f"{why} load scheme {text!r} (choose from {names})")
    return matches[0]


def parse_bin_size(seconds: float | str) -> int:
    """rwcount's ``--bin-size`` in seconds (>= 0.001, fractional allowed) -> milliseconds."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise StatsError(f"invalid bin size {seconds!r}: expected seconds, e.g. 30 or 0.5") from None
    if not np.isfinite(value) or value < 0.001 or value > 2**31 - 1:
        raise StatsError(f"invalid bin size {seconds!r}: must be from 0.001 to 2147483647 seconds")
    return int(1000.0 * value)


def parse_time(value: str | int | datetime, what: str = "time") -> tuple[int, str]:
    """A SiLK time (:mod:`.silktime`) in UTC -> (ms, precision).  Integers are epoch ms and
    datetimes exact; both have millisecond precision."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(round(value.timestamp() * 1000)), "ms"
    if isinstance(value, (int, np.integer)):
        return int(value), "ms"
    try:
        return parse_silk_time(str(value))
    except SilkTimeError as exc:
        raise StatsError(f"invalid {what} {str(value).strip()!r}: {exc}") from None


def _day_floor(ms: int) -> int:
    return ms - ms % MS_PER_DAY


def _default_origin(first_start: int, size: int) -> int:
    """Where rwcount anchors its bins when no start time is given (bins repeat every ``size``)."""
    day = _day_floor(first_start)
    if size < 1000:
        return day
    if size > MS_PER_DAY:
        return day - 7 * MS_PER_DAY
    return day - 2 * MS_PER_DAY


def _expand(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For inclusive bin ranges [first, last] per flow: (flow index, bin) for every covered bin."""
    spans = last - first + 1
    flow = np.repeat(np.arange(len(first)), spans)
    starts = np.cumsum(spans) - spans
    bins = first[flow] + (np.arange(len(flow)) - starts[flow])
    return flow, bins


COUNT_COLUMNS = ("Date", "Records", "Bytes", "Packets")


def count_bins(
    source: Source,
    bin_size: float | str = 30,
    load_scheme: str | int = "time-proportional",
    *,
    start_time: str | int | datetime | None = None,
    end_time: str | int | datetime | None = None,
    skip_zeroes: bool = False,
) -> pa.Table:
    """rwcount: records, bytes and packets per time bin (fractional under the spreading schemes).

    ``bin_size`` is in seconds; ``load_scheme`` a name or SiLK's number.  Without ``start_time``
    the first row is the first bin with bytes and bins are anchored on the UTC day of the earliest
    start time (two days back, as rwcount does); with it, bins start exactly there.  Without
    ``end_time`` the last row is the last bin with bytes; with it, unspecified parts of the time
    are filled with their maximum and every bin up to the one holding that time is listed.
    ``skip_zeroes`` drops bins that received no records.  Returns columns Date (timestamp[ms, UTC]),
    Records, Bytes, Packets (float64).
    """
    size = parse_bin_size(bin_size)
    scheme = parse_load_scheme(load_scheme)
    start = parse_time(start_time, "start time")[0] if start_time is not None else None
    end = None
    if end_time is not None:
        end_ms, precision = parse_time(end_time, "end time")
        end_ceiling = window_end(end_ms, precision) + 1  # first ms after the end time
        if start is not None:
            if end_ceiling <= start:
                raise StatsError("the end time is earlier than the start time")
            end = start + size * (1 + (end_ceiling - start - 1) // size)
        else:
            end = end_ms + size * (1 + (end_ceiling - end_ms - 1) // size)

    with open_flows(source) as (con, _):
        data = con.sql("SELECT sTime, duration, packets, bytes FROM flows").to_arrow_table()
    empty = pa.table(
        {"Date": pa.array([], pa.timestamp("ms", tz="UTC")), **{c: pa.array([], pa.float64()) for c in COUNT_COLUMNS[1:]}}
    )
    if data.num_rows == 0:
        return empty
    s = data.column("sTime").to_numpy().astype(np.int64)
    e = s + data.column("duration").to_numpy().astype(np.int64)
    pkts = data.column("packets").to_numpy().astype(np.float64)
    octets = data.column("bytes").to_numpy().astype(np.float64)

    if start is not None:
        origin = start
    else:
        origin = _default_origin(int(s.min()), size)
        if end is not None:  # keep the grid aligned on the end time
            origin = end - size * (1 + (end - origin) // size)
    low = 0 if start is not None else None  # first bin index inside the window
    high = (end - origin) // size if end is not None else None  # one past the last

    def bin_of(t: np.ndarray) -> np.ndarray:
        return np.floor_divide(t - origin, size)

    if scheme.endswith("-spike"):
        t = {"start-spike": s, "end-spike": e, "middle-spike": s + (e - s) // 2}[scheme]
        keep = np.ones(len(t), dtype=bool)
        if start is not None:
            keep &= t >= start
        if end is not None:
            keep &= t < end
        bins = bin_of(t[keep])
        w_rec = np.ones(len(bins))
        w_bytes, w_pkts = octets[keep], pkts[keep]
    else:
        first, last = bin_of(s), bin_of(e)
        lo_c = first if low is None else np.maximum(first, low)
        hi_c = last if high is None else np.minimum(last, high - 1)
        keep = hi_c >= lo_c  # the flow touches the window (rwcount's IGNORE_FLOW otherwise)
        idx, bins = _expand(lo_c[keep], hi_c[keep])
        f_s, f_e = s[keep][idx], e[keep][idx]
        span = (last - first + 1)[keep][idx]
        if scheme == "time-proportional":
            # each bin gets the share of [sTime, eTime + 1 ms) it overlaps, as rwcount computes it
            b0 = origin + bins * size
            overlap = np.minimum(f_e + 1, b0 + size) - np.maximum(f_s, b0)
            w_rec = overlap / (f_e + 1 - f_s).astype(np.float64)
            w_bytes, w_pkts = octets[keep][idx] * w_rec, pkts[keep][idx] * w_rec
        elif scheme == "bin-uniform":
            w_rec = 1.0 / span
            w_bytes, w_pkts = octets[keep][idx] * w_rec, pkts[keep][idx] * w_rec
        elif scheme == "maximum-volume":
            w_rec = np.ones(len(bins))
            w_bytes, w_pkts = octets[keep][idx], pkts[keep][idx]
        else:  # minimum-volume: volume only for flows inside a single bin
            w_rec = np.ones(len(bins))
            single = span == 1
            w_bytes = np.where(single, octets[keep][idx], 0.0)
            w_pkts = np.where(single, pkts[keep][idx], 0.0)

    if len(bins):
        kmin, kmax = int(bins.min()), int(bins.max())
        pos = bins - kmin
        n = kmax - kmin + 1
        acc_rec = np.bincount(pos, weights=w_rec, minlength=n)
        acc_bytes = np.bincount(pos, weights=w_bytes, minlength=n)
        acc_pkts = np.bincount(pos, weights=w_pkts, minlength=n)
        nonzero = np.flatnonzero(acc_bytes > 0.0) + kmin
    else:
        kmin, n = 0, 0
        acc_rec = acc_bytes = acc_pkts = np.zeros(0)
        nonzero = np.zeros(0, dtype=np.int64)

    if low is not None:
        row_first = low
    elif len(nonzero):
        row_first = int(nonzero[0])
    else:
        return empty
    if high is not None:
        row_last = high - 1
    else:
        row_last = max(row_first, int(nonzero[-1]) if len(nonzero) else row_first)

    rows = np.arange(row_first, row_last + 1, dtype=np.int64)
    inside = (rows >= kmin) & (rows < kmin + n)

    def take(acc: np.ndarray) -> np.ndarray:
        out = np.zeros(len(rows))
        out[inside] = acc[rows[inside] - kmin]
        return out

    records, octet_sum, pkt_sum = take(acc_rec), take(acc_bytes), take(acc_pkts)
    if skip_zeroes:
        shown = records > 0
        rows, records, octet_sum, pkt_sum = rows[shown], records[shown], octet_sum[shown], pkt_sum[shown]
    dates = pa.array(origin + rows * size, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    return pa.table(
        {"Date": dates, "Records": records, "Bytes": octet_sum, "Packets": pkt_sum},
    )
