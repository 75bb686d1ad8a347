"""Port campaigns: one port probed for a few hours by many low-frequency sources, then dropped.

Planted only when ``SimulationConfig.campaigns`` is above 0 (the default is 0, and then no random
draw of this module is made: every other population's output is byte-identical with or without
it).  Campaign ``i`` probes :data:`CAMPAIGN_PORTS` ``[i]`` from ``start`` to ``end`` (ms, anywhere in
the window at least :data:`CAMPAIGN_MARGIN_HOURS` from either end, lasting 4 to 24 hours and at
most a quarter of the window): its sources (1.5% to 3% of ``config.sources`` each, at least
:data:`CAMPAIGN_MIN_SOURCES`) send 1 to 4 unanswered probes (TCP SYN, or one UDP datagram) to
one random inside address each (VLF-fd sources, as the study's: few flows, one destination) within 10 minutes, at a time uniform in ``start..end``: a flat burst that
starts and stops sharply.  Its sources are extra outside addresses (the ranks after the web and
DNS servers'), of population ``port_campaign`` in the ground truth; ``summary.json`` lists the
campaigns under ``port_campaigns`` (:func:`.truth.campaign_truth` reads them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np

from ..flows.schema import MS_PER_HOUR, PROTO_TCP, PROTO_UDP
from .model import SimulationError
from .network import _Inside
from .populations import _ephemeral
from .traffic import _Volumes
from .window import _Plan

PORT_CAMPAIGN_POPULATION = "port_campaign"
# (protocol, port): RDP, MS-SQL's Slammer port, SMB, VNC, SIP, telnet; at most one campaign each
CAMPAIGN_PORTS = ((PROTO_TCP, 3389), (PROTO_UDP, 1434), (PROTO_TCP, 445), (PROTO_TCP, 5900), (PROTO_UDP, 5060),
                  (PROTO_TCP, 23))
CAMPAIGN_HOURS = (4, 24)  # a campaign lasts this many hours (and at most a quarter of the window)
CAMPAIGN_MARGIN_HOURS = 6  # it starts and ends at least this far from the window's ends
CAMPAIGN_SOURCE_SHARE = (0.015, 0.03)  # its sources, as a share of config.sources
CAMPAIGN_MIN_SOURCES = 30
CAMPAIGN_MAX_FLOWS = 4  # flows per source: 1..4 (low frequency)
CAMPAIGN_SPAN_MS = 600_000  # a source's flows within 10 minutes


@dataclass(frozen=True)
class Campaign:
    """One planted campaign: its port, when it runs (``start_ms`` <= sTime < ``end_ms``), its sources and flows."""

    protocol: int
    port: int
    start_ms: int
    end_ms: int
    sources: int
    flows: int = 0

    def as_json(self) -> dict:
        iso = lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # noqa: E731
        return {**asdict(self), "start": iso(self.start_ms), "end": iso(self.end_ms)}


def plan_campaigns(rng: np.random.Generator, plan: _Plan, count: int, sources: int) -> list[Campaign]:
    """``count`` campaigns on the first ports of :data:`CAMPAIGN_PORTS`: when and how many sources."""
    if count > len(CAMPAIGN_PORTS):
        raise SimulationError(f"at most {len(CAMPAIGN_PORTS)} port campaigns (got {count})")
    window_hours = plan.window / MS_PER_HOUR
    longest = min(CAMPAIGN_HOURS[1], window_hours / 4)
    room = window_hours - 2 * CAMPAIGN_MARGIN_HOURS
    if count and (longest < CAMPAIGN_HOURS[0] or room < CAMPAIGN_HOURS[0]):
        raise SimulationError(f"a {window_hours:g}-hour window is too short for port campaigns "
                              f"({CAMPAIGN_HOURS[0]} hours and {CAMPAIGN_MARGIN_HOURS} hours from either end)")
    out = []
    for protocol, port in CAMPAIGN_PORTS[:count]:
        hours = rng.uniform(CAMPAIGN_HOURS[0], min(longest, room))
        first = rng.uniform(CAMPAIGN_MARGIN_HOURS, window_hours - CAMPAIGN_MARGIN_HOURS - hours)
        start = plan.start_ms + int(first * MS_PER_HOUR)
        n = max(CAMPAIGN_MIN_SOURCES, int(round(rng.uniform(*CAMPAIGN_SOURCE_SHARE) * sources)))
        out.append(Campaign(protocol, port, start, start + int(hours * MS_PER_HOUR), n))
    return out


def campaign_flows(rng: np.random.Generator, campaigns: list[Campaign], inside: _Inside):
    """The campaigns' inbound flows, grouped by source, and the campaigns with their flow counts.

    Returns (campaigns, per-source flows, src, proto, sport, dport, dst_off, sTime, volumes)."""
    n_src = np.array([c.sources for c in campaigns], dtype=np.int64)
    owner = np.repeat(np.arange(len(campaigns)), n_src)  # campaign of each source
    nflows = rng.integers(1, CAMPAIGN_MAX_FLOWS + 1, len(owner))
    start = np.array([c.start_ms for c in campaigns], dtype=np.int64)[owner]
    end = np.array([c.end_ms for c in campaigns], dtype=np.int64)[owner]
    span = np.minimum(CAMPAIGN_SPAN_MS, end - start)
    t0 = start + np.floor(rng.random(len(owner)) * (end - start - span)).astype(np.int64)
    src = np.repeat(np.arange(len(owner)), nflows)
    t = t0[src] + np.floor(rng.random(len(src)) * span[src]).astype(np.int64)
    proto = np.array([c.protocol for c in campaigns], dtype=np.int64)[owner][src]
    dport = np.array([c.port for c in campaigns], dtype=np.int64)[owner][src]
    sport = _ephemeral(rng, len(src))
    dst_off = rng.integers(0, inside.size, len(owner))[src]  # one inside address per source: VLF-fd, as the study's
    vol = _Volumes(len(src))
    tcp = proto == PROTO_TCP
    vol.syn_probe(rng, np.flatnonzero(tcp))
    vol.udp(rng, np.flatnonzero(proto == PROTO_UDP), 28, 404)
    flows = np.bincount(owner[src], minlength=len(campaigns))
    done = [Campaign(c.protocol, c.port, c.start_ms, c.end_ms, c.sources, int(f)) for c, f in zip(campaigns, flows)]
    return done, nflows, src, proto, sport, dport, dst_off, t, vol

