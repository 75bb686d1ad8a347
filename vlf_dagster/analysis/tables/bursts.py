"""Transient port activity: the bursts of each top port's hourly flows, found by change-point detection.

:func:`find_bursts` segments one port's flows per hour with ruptures' bottom-up segmentation
(``BottomUp``, least-squares cost, a break allowed at any hour) on the Anscombe transform of the
counts, ``2 sqrt(y + 3/8)``, which gives Poisson counts a variance near 1 at any level; the noise
``sigma`` is estimated from the hour-to-hour differences (median absolute deviation, at least 1:
sources that send their flows in clusters make the counts noisier than Poisson), and the penalty of a
break is :data:`PENALTY` ``x sigma^2 x ln(hours)`` (the BIC's order, made stricter).  The baseline is
the median of the segments' levels over the hours; a burst is a run of adjacent segments
whose mean is :data:`HIGH_SIGMAS` standard errors (``sigma / sqrt(hours)``) above it and whose flows
per hour are :data:`MIN_RATIO` times the baseline's, runs :data:`MERGE_GAP_HOURS` or fewer hours
apart joined; its ends are then placed again by the exact least-squares fit of two breaks around it
(ruptures' ``Dynp``).  It is kept when shorter than :data:`MAX_SHARE` of the window (longer is a
change of level, not a transient) with at least :data:`MIN_EXCESS_FLOWS` flows above the baseline
(and, in :func:`port_bursts`, :data:`MIN_SOURCES` sources).  Steady traffic that varies by the hour
of the day would need the daily profile taken out first: the simulated site has none.

:func:`port_bursts` does that for the top ports of the temporal distribution (the same hourly grid,
:func:`.figures.port_timeline_data`), then says in one DuckDB query which sources and countries drive
each burst: its flows counted by source over the burst's hours.  Columns: :data:`BURST_COLUMNS`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ...flows import duck
from ...flows.schema import int_to_ipv4
from ...flows.storage import write_text
from .figures import MS_PER_HOUR, Source, port_timeline_data

PENALTY = 3.0  # x sigma^2 x ln(hours): the cost of one more break
HIGH_SIGMAS = 4.0  # a segment whose mean is this many standard errors above the baseline (Anscombe scale) ...
MIN_RATIO = 1.5  # ... and whose flows per hour are at least this many times the baseline's is part of a burst
MAX_SHARE = 0.5  # a burst is shorter than this share of the window
MIN_EXCESS_FLOWS = 20  # flows above the baseline over the burst
MIN_SOURCES = 10  # distinct sources in the burst: fewer is a few hosts' own clusters, not activity of the port
TOP_DRIVERS = 3  # sources and countries named per burst
MERGE_GAP_HOURS = 2  # bursts this close are one
REFINE_HOURS = 72  # hours on either side of a burst where its ends are placed again
REFINE_MAX_HOURS = 240  # and no more hours in all (the exact fit costs the square of them): longer bursts keep theirs

BURST_COLUMNS = ["Protocol", "Port", "Start", "End", "Hours", "Peak", "Peak flows", "Flows", "Baseline flows/hour",
                 "Sources", "Top sources", "Top countries"]


@dataclass(frozen=True)
class Burst:
    """Hours ``start`` <= h < ``end`` (indices into the series), the busiest hour ``peak``."""

    start: int
    end: int
    peak: int
    flows: int
    baseline: float  # flows per hour outside the bursts (median)


def anscombe(counts: np.ndarray) -> np.ndarray:
    return 2.0 * np.sqrt(np.asarray(counts, dtype=np.float64) + 0.375)


def noise_sigma(z: np.ndarray) -> float:
    """The noise of the transformed series from its hour-to-hour differences (robust to the breaks); at least 1."""
    if len(z) < 3:
        return 1.0
    return max(1.0, 1.4826 * float(np.median(np.abs(np.diff(z)))) / np.sqrt(2.0))


def find_bursts(counts: np.ndarray, *, penalty: float = PENALTY, high_sigmas: float = HIGH_SIGMAS,
                min_ratio: float = MIN_RATIO, max_share: float = MAX_SHARE,
                min_excess: float = MIN_EXCESS_FLOWS) -> list[Burst]:
    """The bursts of one port's flows per hour ``counts`` (see the module's text)."""
    y = np.asarray(counts, dtype=np.float64)
    n = len(y)
    if n < 3 or y.sum() == 0:
        return []
    import ruptures as rpt  # here: with scipy it takes 0.7 s to import, and the code location loads this module

    z = anscombe(y)
    sigma = noise_sigma(z)
    ends = rpt.BottomUp(model="l2", min_size=1, jump=1).fit(z).predict(pen=penalty * sigma**2 * np.log(n))
    edges = np.r_[0, ends]
    lengths = np.diff(edges)
    means = np.array([z[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])  # a segment's level
    rates = np.array([y[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])  # its flows per hour
    level = np.repeat(means, lengths)  # per hour
    base = float(np.median(level))
    base_rate = float(np.median(np.repeat(rates, lengths)))
    high_segment = ((means - base) * np.sqrt(lengths) > high_sigmas * sigma) & (rates >= min_ratio * base_rate)
    high = np.repeat(high_segment, lengths)
    quiet = ~high
    baseline = float(np.median(y[quiet])) if quiet.any() else 0.0
    change = np.flatnonzero(np.diff(np.r_[0, high.astype(np.int8), 0]))  # runs of high hours: [start, end)
    runs = _merge_gaps(list(zip(change[::2].tolist(), change[1::2].tolist())), MERGE_GAP_HOURS)
    out = []
    for k, (a, b) in enumerate(runs):
        a, b = _refine(z, a, b, runs[k - 1][1] if k else 0, runs[k + 1][0] if k + 1 < len(runs) else n)
        flows = float(y[a:b].sum())
        if b - a >= max_share * n or flows - baseline * (b - a) < min_excess:
            continue
        out.append(Burst(int(a), int(b), int(a + np.argmax(y[a:b])), int(flows), baseline))
    return out


def _merge_gaps(runs: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Runs of high hours closer than ``gap`` quiet hours joined: a campaign that dips for an hour is one burst."""
    out = []
    for a, b in runs:
        if out and a - out[-1][1] <= gap:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _refine(z: np.ndarray, a: int, b: int, lo: int, hi: int) -> tuple[int, int]:
    """The burst's ends placed again by the exact least-squares fit of two breaks (ruptures' ``Dynp``)
    over the burst and as many hours on either side (at most :data:`REFINE_HOURS`, never into the next
    burst; not past :data:`REFINE_MAX_HOURS` in all): the bottom-up merges place the ends of a weak burst
    only roughly."""
    width = min(b - a, REFINE_HOURS)
    lo, hi = max(lo, a - width), min(hi, b + width)
    if hi - lo < 3 or hi - lo > REFINE_MAX_HOURS or (lo == a and hi == b):
        return a, b
    import ruptures as rpt

    x = z[lo:hi]
    if lo == a or hi == b:  # the burst touches the window's edge (or a neighbour): one break to place
        (k, _) = rpt.Dynp(model="l2", min_size=1, jump=1).fit(x).predict(n_bkps=1)
        return (a, lo + k) if lo == a else (lo + k, b)
    k1, k2, _ = rpt.Dynp(model="l2", min_size=1, jump=1).fit(x).predict(n_bkps=2)
    inside, outside = x[k1:k2].mean(), np.r_[x[:k1], x[k2:]].mean()
    return (lo + k1, lo + k2) if inside > outside else (a, b)


def _hour_text(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:00")


def _drivers(categories: Source, bursts: pd.DataFrame, protocol: int | None, category: str | None,
             country_of: Callable[[np.ndarray], np.ndarray] | None) -> pd.DataFrame:
    """Per burst (``i``, port, lo_ms, hi_ms): its distinct sources, top sources and top countries."""
    where, params = ["TRUE"], []
    if protocol is not None:
        where.append("c.protocol = ?")
        params.append(int(protocol))
    if category is not None:
        where.append("c.category = ?")
        params.append(category)
    with duck.connect() as con:
        duck.register(con, "cats", categories)
        con.register("bursts", bursts[["i", "port", "lo_ms", "hi_ms"]])
        per_source = con.sql(
            "SELECT b.i, c.sIP::BIGINT AS sip, count(*)::BIGINT AS n FROM cats c JOIN bursts b "
            "ON c.dPort = b.port AND c.sTime >= b.lo_ms AND c.sTime < b.hi_ms "
            f"WHERE {' AND '.join(where)} GROUP BY ALL ORDER BY b.i, n DESC, sip", params=params).df()
    if len(per_source):
        countries = country_of(per_source["sip"].to_numpy(np.uint32)) if country_of is not None else None
        per_source["country"] = countries if countries is not None else "-"
    else:
        per_source["country"] = pd.Series(dtype=object)
    rows = []
    for i in bursts["i"]:  # one row per burst: a handful
        mine = per_source[per_source["i"] == i]
        top = ", ".join(f"{int_to_ipv4(int(s))} ({int(n)})" for s, n in zip(mine["sip"][:TOP_DRIVERS], mine["n"][:TOP_DRIVERS]))
        by_country = mine.groupby("country", sort=False)["sip"].count().sort_values(ascending=False, kind="stable")
        named = ", ".join(f"{c} ({int(k)})" for c, k in by_country.head(TOP_DRIVERS).items())
        rows.append((i, len(mine), top, named))
    return pd.DataFrame(rows, columns=["i", "Sources", "Top sources", "Top countries"])


class BurstCache:
    """The bursts found in each series, by a digest of the series and the settings, kept in ``folder``:
    a port whose flows per hour did not change is not segmented again (ruptures takes ~1 s a port at
    10,200 hours; a new hour changes one or two ports).  Entries no call asked for are removed."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.used: set[str] = set()

    def bursts(self, counts: np.ndarray, **detect) -> list[Burst]:
        y = np.ascontiguousarray(counts, dtype=np.float64)
        key = hashlib.sha256(y.tobytes() + json.dumps(detect, sort_keys=True).encode()).hexdigest()[:32]
        self.used.add(key)
        path = self.folder / f"{key}.json"
        try:
            return [Burst(*row) for row in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError):
            found = find_bursts(y, **detect)
            write_text(json.dumps([dataclasses.astuple(b) for b in found]), path)
            return found

    def prune(self) -> None:
        for path in self.folder.glob("*.json"):
            if path.stem not in self.used:
                path.unlink(missing_ok=True)


def port_bursts(categories: Source, ports: Sequence[int], start: datetime | int, end: datetime | int, *,
                protocol: int | None = None, category: str | None = None,
                country_of: Callable[[np.ndarray], np.ndarray] | None = None,
                min_sources: int = MIN_SOURCES, cache: Path | None = None, **detect) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The bursts of ``ports`` (destination ports of ``categories``' rows of ``protocol`` and
    ``category``) in the window ``start``..``end`` (end exclusive), found hour by hour.

    Returns (bursts, hourly): the bursts, one row each in :data:`BURST_COLUMNS` (ports in the order
    given, then by start; Start and End are the first hour and the hour after the last, Peak the busiest
    hour, UTC; Top sources "address (flows)", Top countries "code (sources)", "-" without GeoIP), with
    ``attrs['hours']`` the (port, first hour index, end index, peak index) of each for the figure; and
    the hourly flows of every port (:func:`.figures.port_timeline_data`).  ``detect`` goes to
    :func:`find_bursts`; with ``cache`` (a folder), each port's bursts are kept by its series (:class:`BurstCache`)."""
    hourly = port_timeline_data(categories, ports, "hour", protocol=protocol, category=category, start=start, end=end)
    kept = BurstCache(cache) if cache is not None else None
    found = []
    if len(hourly):
        first_ms = int(hourly["Date"].iloc[0].timestamp() * 1000)
        for port in [c for c in hourly.columns if c != "Date"]:
            counts = hourly[port].to_numpy()
            for b in (kept.bursts(counts, **detect) if kept is not None else find_bursts(counts, **detect)):
                found.append((len(found), int(port), b, first_ms + b.start * MS_PER_HOUR, first_ms + b.end * MS_PER_HOUR,
                              first_ms + b.peak * MS_PER_HOUR, int(hourly[port].iloc[b.peak])))
    if kept is not None:
        kept.prune()
    frame = pd.DataFrame([(i, port, lo, hi) for i, port, _, lo, hi, *_ in found], columns=["i", "port", "lo_ms", "hi_ms"])
    drivers = _drivers(categories, frame, protocol, category, country_of) if found else None
    rows, spans = [], []
    for (i, port, b, lo, hi, peak, peak_n), d in zip(found, drivers.itertuples(index=False) if found else []):
        if d.Sources < min_sources:
            continue
        rows.append((_protocol_name(protocol), port, _hour_text(lo), _hour_text(hi), b.end - b.start, _hour_text(peak), peak_n,
                     b.flows, round(b.baseline, 1), d.Sources, d[2], d[3]))
        spans.append((port, b.start, b.end, b.peak))
    out = pd.DataFrame(rows, columns=BURST_COLUMNS)
    for c in ("Port", "Hours", "Peak flows", "Flows", "Sources"):
        out[c] = out[c].astype("int64")
    out["Baseline flows/hour"] = out["Baseline flows/hour"].astype("float64")
    out.attrs["hours"] = spans
    return out, hourly


def _protocol_name(protocol: int | None) -> str:
    return {6: "TCP", 17: "UDP"}.get(protocol, "-" if protocol is None else str(protocol))
