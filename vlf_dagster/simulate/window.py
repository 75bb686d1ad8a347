"""How a simulation run is cut: its window's hours, chunks of sources, landing buckets and random streams.

The cut is a function of the site's start and the config only, so the output is too: sources
are simulated in chunks of a fixed size (about :data:`CHUNK_DAYS` days' worth), flows are landed a
bucket of whole hours at a time (a day, fewer hours for very busy sites), and every random draw
comes from a stream of one seed (:func:`_rng`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

from ..flows.schema import MS_PER_HOUR
from ..flows.site import Site
from ..flows.storage import hours_between
from .model import GAME_MAX_DAYS, MAX_LIVE_HOSTS, SimulationConfig

MS_PER_DAY = 24 * MS_PER_HOUR

# Random streams, all children of one SeedSequence per seed: (stream, index) -> generator.
_STREAM_SITE, _STREAM_ADDRESSES, _STREAM_CHUNK, _STREAM_BACKGROUND, _STREAM_CAMPAIGNS, _STREAM_RETURNS = range(6)
CHUNK_MIN_SOURCES, CHUNK_MAX_SOURCES = 1 << 12, 1 << 17
CHUNK_DAYS = 2  # a chunk holds about this many days' worth of sources (at least CHUNK_MIN_SOURCES)
BUCKET_MAX_FLOWS = 4_000_000  # estimated flows of a landing bucket (a day, or fewer hours if busier)
FLOWS_PER_SOURCE = 16  # generous estimate (inbound and answers) for sizing the landing buckets


@dataclass(frozen=True)
class _Plan:
    """The window and how it is cut: source chunks and landing buckets (whole hours)."""

    start: datetime
    end: datetime
    start_ms: int
    end_ms: int
    game_end: int  # ms from start_ms
    hours: list  # every hour of the window
    first_ms: int  # start of the first hour
    bucket_hours: int  # hours per landing bucket
    chunk_sources: int  # sources per chunk

    @property
    def window(self) -> int:
        return self.end_ms - self.start_ms

    @property
    def bucket_ms(self) -> int:
        return self.bucket_hours * MS_PER_HOUR

    @property
    def buckets(self) -> int:
        return -(-len(self.hours) // self.bucket_hours)

    def bucket(self, b: int) -> list:
        return self.hours[b * self.bucket_hours : (b + 1) * self.bucket_hours]


def _plan(site: Site, config: SimulationConfig) -> _Plan:
    start = site.start.astimezone(timezone.utc)
    end = start + timedelta(days=config.days)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    hours = hours_between(start, end)
    per_day = -(-config.sources // config.days)
    # Chunks of a fixed size (a function of the config only, so the output is too): memory grows
    # with the sources per day, never with the window.
    chunk = int(min(CHUNK_MAX_SOURCES, max(CHUNK_MIN_SOURCES, 1 << int(CHUNK_DAYS * per_day - 1).bit_length())))
    per_hour = per_day * FLOWS_PER_SOURCE / 24 + MAX_LIVE_HOSTS
    bucket_hours = max([d for d in (1, 2, 3, 4, 6, 8, 12, 24) if d * per_hour <= BUCKET_MAX_FLOWS] or [1])
    return _Plan(
        start=start, end=end, start_ms=start_ms, end_ms=end_ms,
        game_end=min(GAME_MAX_DAYS * MS_PER_DAY, (end_ms - start_ms) // 3), hours=hours,
        first_ms=int(hours[0].timestamp() * 1000), bucket_hours=bucket_hours, chunk_sources=chunk,
    )


def _rng(entropy, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(stream, index)))
