"""Returning sources: outside sources whose flows come in several visits, days apart.

Planted only when ``SimulationConfig.returning`` is above 0 (the default is 0, and then no random
draw of this module is made: the output is byte-identical with or without it).  Of a chunk's
eligible sources (two flows or more, of a population that comes back in practice: P2P peers,
scanners, targeted probes, backscatter and echo: :data:`RETURNING_POPULATIONS`) that share, rounded,
returns: the ones with the smallest keys of a random draw, so a larger share only adds sources.

A returning source keeps its flows, destinations, ports and volumes; only their times change.  Its
``n`` flows are split into ``V`` visits (``V`` uniform in 2..min(n, :data:`MAX_VISITS`), each visit
at least one flow, the rest by random weights).  Each visit is a burst over a span log-uniform in
:data:`VISIT_SPAN_MS` (as the other sources' bursts); consecutive visits are apart by gaps
log-uniform between the bounds of :func:`gap_bounds` (1 to 60 days, scaled down when ``V``
visits would not fit in the window), the gap counted from the end of one burst's span to the start
of the next; the first visit starts anywhere the whole sequence fits.  A returning scanner sweeps
its share of its addresses at each visit, in address order.

The truth, one row per visit (:func:`plant_returns`), goes to ``sim/returns.parquet``
(:func:`.truth.return_truth` reads it).  Everything is vectorised: per-source draws are arrays of
``(sources, MAX_VISITS)``, expanded to flows with ``np.repeat``.
"""

from __future__ import annotations

import numpy as np

from ..flows.schema import MS_PER_HOUR
from .model import BACKSCATTER, P2P_PEER, SCANNER, TARGETED_HIT, TARGETED_MISS, VLF_ECHO, VLF_P2P, VLF_SCAN
from .populations import _segment_starts

MS_PER_DAY = 24 * MS_PER_HOUR
RETURNING_POPULATIONS = (P2P_PEER, VLF_P2P, SCANNER, VLF_SCAN, TARGETED_HIT, TARGETED_MISS, BACKSCATTER, VLF_ECHO)
MAX_VISITS = 5
VISIT_SPAN_MS = (1_000, 3 * MS_PER_HOUR)  # a visit's burst (shorter when V visits would not fit)
GAP_MS = (MS_PER_DAY, 60 * MS_PER_DAY)  # between visits, when the window holds them
GAP_FLOOR_MS = MS_PER_HOUR  # the shortest gap in a short window
GAP_RATIO = 24  # in a short window the gaps range over gmax / GAP_RATIO .. gmax


def gap_bounds(window: int, visits) -> tuple[np.ndarray, np.ndarray]:
    """(shortest, longest) gap in ms between the visits of a source with ``visits`` visits in a
    ``window``-ms window: 1 to 60 days, the longest at most ``window / visits`` and the shortest
    then ``longest / GAP_RATIO`` (between 1 hour and 1 day)."""
    visits = np.asarray(visits, dtype=np.int64)
    longest = np.minimum(GAP_MS[1], window // visits)
    shortest = np.minimum(GAP_MS[0], np.maximum(GAP_FLOOR_MS, -(-longest // GAP_RATIO)))
    return shortest, longest


def _log_uniform(rng: np.random.Generator, lo, hi, shape) -> np.ndarray:
    lo, hi = np.log(np.asarray(lo, dtype=float)), np.log(np.asarray(hi, dtype=float))
    return np.exp(lo + rng.random(shape) * (hi - lo))


def plant_returns(rng: np.random.Generator, share: float, pop, nflows, src, t, start_ms: int, window: int) -> dict:
    """Make ``share`` of the chunk's eligible sources come back: rewrite the sTime ``t`` (epoch ms,
    in place) of their flows (``src``: each flow's source, grouped by source, as :func:`.traffic._expand`
    makes them) into visits.  Returns the visits, one row each, in source and visit order: ``source``
    (index in the chunk), ``visit`` (0-based), ``start_ms`` and ``end_ms`` (its first and last flow's
    sTime) and ``flows``."""
    eligible = np.flatnonzero(np.isin(pop, RETURNING_POPULATIONS) & (nflows >= 2))
    key = rng.random(len(eligible))
    chosen = np.sort(eligible[np.argsort(key, kind="stable")[: int(round(share * len(eligible)))]])
    R, n = len(chosen), nflows[chosen]
    visits = rng.integers(2, np.minimum(n, MAX_VISITS) + 1)
    col = np.arange(MAX_VISITS)
    used = col < visits[:, None]
    # flows per visit: one each, the others split by random weights (cut points rounded)
    weight = np.where(used, rng.uniform(0.25, 1.0, (R, MAX_VISITS)), 0.0)
    share_before = np.cumsum(weight, axis=1) / weight.sum(axis=1, keepdims=True)
    cut = np.floor(share_before * (n - visits)[:, None] + 0.5).astype(np.int64)
    per_visit = 1 + np.diff(cut, axis=1, prepend=0)
    # bursts and gaps: V spans of at most (window / V - 1) / V and V - 1 gaps of at most window / V fit
    longest_span = np.minimum(VISIT_SPAN_MS[1], (window / visits - 1) / visits)
    span = np.floor(_log_uniform(rng, VISIT_SPAN_MS[0], longest_span[:, None], (R, MAX_VISITS))).astype(np.int64)
    span[~used | (per_visit == 1)] = 0
    shortest, longest = gap_bounds(window, visits)
    gap = np.floor(_log_uniform(rng, shortest[:, None], longest[:, None], (R, MAX_VISITS))).astype(np.int64)
    gap[col >= (visits - 1)[:, None]] = 0  # none after the last visit
    step = span + gap
    length = step.sum(axis=1)
    first = np.floor(rng.random(R) * (window - length)).astype(np.int64)
    begin = first[:, None] + np.cumsum(step, axis=1) - step
    v_begin, v_span, v_flows = begin[used], span[used], per_visit[used]
    # the flows: visit by visit, in the order _expand made them (a scanner's: address order)
    returning = np.zeros(len(pop), dtype=bool)
    returning[chosen] = True
    flows = np.flatnonzero(returning[src])
    assert len(flows) == int(v_flows.sum()), "the visits' flows do not add up to the sources'"
    visit = np.repeat(np.arange(len(v_flows)), v_flows)
    v_first = _segment_starts(v_flows)
    u = rng.random(len(flows))
    sweep = np.flatnonzero(pop[src[flows]] == SCANNER)
    u[sweep] = (sweep - v_first[visit[sweep]] + u[sweep]) / v_flows[visit[sweep]]
    times = start_ms + v_begin[visit] + np.floor(u * v_span[visit]).astype(np.int64)
    t[flows] = times
    return dict(
        source=np.repeat(chosen, visits), visit=np.nonzero(used)[1].astype(np.uint16),
        start_ms=np.minimum.reduceat(times, v_first) if len(times) else times,
        end_ms=np.maximum.reduceat(times, v_first) if len(times) else times, flows=v_flows.astype(np.int64),
    )
