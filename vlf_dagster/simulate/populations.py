"""The outside sources of a chunk: each one's population, flow count, destinations, service and time.

Everything is per source, as numpy arrays (:class:`_Sources`), drawn with the study's proportions
from the tables of :mod:`.model`; :mod:`.traffic` expands them to flows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..flows.schema import MS_PER_HOUR, PROTO_ICMP, PROTO_TCP, PROTO_UDP
from .model import (
    ANSWERER_TCP_MAX_FLOWS, BACKSCATTER, BACKSCATTER_KINDS, BUCKET_11_100, BUCKET_OVER_100, CLIENT, ECHO_REQUEST,
    ENTERPRISE_SERVICES, FLOW_BUCKET_SHARES, GAME_CLIENT, GAME_FIRST_PHASE_SHARE, GAME_PORT, NEAR_MATCH,
    OTHER_PROTO, OTHER_PROTOCOLS, OUTSIDE_SERVICES, P2P_PEER, POPULATIONS, POPULATIONS_11_100,
    POPULATIONS_MULTI_DESTINATION, POPULATIONS_OVER_100, POPULATIONS_SINGLE_DESTINATION, SCANNER, SCANNER_PORTS,
    SINGLE_DESTINATION_SHARE, SMTP_MAX_FLOWS, SMTP_PORT, SSH_PORT, TARGETED_HIT, TARGETED_HIT_PORTS, TARGETED_MISS,
    TARGETED_MISS_PORTS, VLF_ANSWERER, VLF_ECHO, VLF_GAME, VLF_P2P, VLF_SCAN, VLF_SCAN_PORTS, VLF_SERVICE, VLF_SMTP,
)
from .network import _Inside, _pool_pick

# --- small vectorised helpers -------------------------------------------------------------------


def _quota(total: int, weights) -> np.ndarray:
    """Split ``total`` into integer counts proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=float)
    exact = w / w.sum() * total
    counts = np.floor(exact).astype(np.int64)
    rest = int(total - counts.sum())
    if rest:
        counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
    return counts


def _deal(rng: np.random.Generator, total: int, weights) -> np.ndarray:
    """``total`` labels 0..len(weights)-1 in exact quota proportions, shuffled."""
    return rng.permutation(np.repeat(np.arange(len(weights)), _quota(total, weights)))


def _pick(rng: np.random.Generator, size: int, weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(w), size=size, p=w / w.sum())


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _ephemeral(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.integers(1024, 65536, size)



def _segment_starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


# --- the sources --------------------------------------------------------------------------------


@dataclass
class _Sources:
    """Per-source attributes (arrays of one row per source).

    A source's ``k``-th flow goes to inside offset ``(base + (k % destinations) * step) % size``
    at ``t0 + u * span`` ms from the window's start (``u`` uniform in 0..1)."""

    pop: np.ndarray  # population (index into POPULATIONS)
    nflows: np.ndarray  # inbound flows
    ndest: np.ndarray  # distinct inside destinations
    base: np.ndarray  # first destination offset
    step: np.ndarray  # offset step between destinations
    proto: np.ndarray  # protocol (0 for p2p peers: drawn per flow from tcp_share)
    port: np.ndarray  # destination port or ICMP type*256+code (answerers: their own service port)
    flags: np.ndarray  # TCP flags of backscatter
    tcp_share: np.ndarray  # p2p peers: share of TCP flows
    t0: np.ndarray  # first possible flow time, ms from the window's start
    span: np.ndarray  # ms over which the flows spread


def _sources(rng_pop, rng_dst, rng_traffic, rng_time, S: int, inside: _Inside, n_other: int, window: int,
             game_end: int) -> _Sources:
    """The chunk's ``S`` sources, each attribute from its own random stream."""
    pop, nflows, ndest = _populations(rng_pop, S, inside, n_other)
    base, step = _destinations(rng_dst, pop, nflows, ndest, inside)
    proto, port, flags, tcp_share = _services(rng_traffic, pop, nflows, base, step, inside)
    t0, span = _times(rng_time, pop, nflows, window, game_end)
    return _Sources(pop, nflows, ndest, base, step, proto, port, flags, tcp_share, t0, span)


def _populations(rng: np.random.Generator, S: int, inside: _Inside, n_other: int):
    """(population, flows, destinations) per source, with the study's proportions; ``n_other`` of
    the single-destination VLF sources are other_proto (the chunk's share of "a handful")."""
    bucket = _deal(rng, S, FLOW_BUCKET_SHARES)
    nflows = np.where(bucket < 10, bucket + 1, 0).astype(np.int64)
    ndest = np.ones(S, dtype=np.int64)
    pop = np.full(S, -1, dtype=np.int64)

    vlf = np.flatnonzero(bucket < 10)
    several = np.flatnonzero((bucket >= 1) & (bucket < 10))
    n_multi = min(len(several), int(round((1 - SINGLE_DESTINATION_SHARE) * len(vlf))))
    multi = np.sort(rng.permutation(several)[:n_multi])
    pop[multi] = np.array([p for p, _ in POPULATIONS_MULTI_DESTINATION])[_deal(rng, len(multi), [w for _, w in POPULATIONS_MULTI_DESTINATION])]
    ndest[multi] = rng.integers(2, np.minimum(nflows[multi], 5) + 1)

    single = np.setdiff1d(vlf, multi)
    n_other = min(len(single), n_other)
    other = np.sort(rng.permutation(single)[:n_other])
    pop[other] = OTHER_PROTO
    single = np.setdiff1d(single, other)
    for group, allow_smtp in ((single[nflows[single] <= SMTP_MAX_FLOWS], True), (single[nflows[single] > SMTP_MAX_FLOWS], False)):
        table = [(p, w) for p, w in POPULATIONS_SINGLE_DESTINATION if allow_smtp or p != VLF_SMTP]
        pop[group] = np.array([p for p, _ in table])[_deal(rng, len(group), [w for _, w in table])]

    mid = np.flatnonzero(bucket == BUCKET_11_100)
    pop[mid] = np.array([p for p, _ in POPULATIONS_11_100])[_deal(rng, len(mid), [w for _, w in POPULATIONS_11_100])]
    values = np.arange(11, 101)
    weights = values ** -1.5
    nflows[mid] = rng.choice(values, size=len(mid), p=weights / weights.sum())

    heavy = np.flatnonzero(bucket == BUCKET_OVER_100)
    pop[heavy] = np.array([p for p, _ in POPULATIONS_OVER_100])[_deal(rng, len(heavy), [w for _, w in POPULATIONS_OVER_100])]
    nflows[heavy] = np.floor(_log_uniform(rng, 101, 1500, len(heavy))).astype(np.int64)
    # scanners sweep 1-4 whole /24s: one flow per address
    scan = heavy[pop[heavy] == SCANNER]
    block = min(256, inside.size)
    blocks = rng.integers(1, min(4, inside.size // block) + 1, len(scan))
    nflows[scan] = np.maximum(101, blocks * block)
    ndest[scan] = np.minimum(nflows[scan], inside.size)
    nflows[scan] = ndest[scan]
    assert (pop >= 0).all()
    return pop, nflows, ndest


def _destinations(rng: np.random.Generator, pop, nflows, ndest, inside: _Inside):
    """(base offset, step) per source; targeted probes get their port-table entry + 1 in step."""
    S = len(pop)
    base = rng.integers(0, inside.size, S)
    step = 2 * rng.integers(0, inside.size // 2, S) + 1  # odd: up to 5 distinct addresses
    servers = inside.servers
    base[pop == VLF_P2P] = servers["p2p"]
    base[pop == P2P_PEER] = servers["p2p"]
    base[(pop == GAME_CLIENT) | (pop == VLF_GAME)] = servers["game"]
    # clients, vlf_smtp, vlf_answerer and vlf_service get their host with their service, in _services()
    near = np.flatnonzero(pop == NEAR_MATCH)
    base[near] = inside.ordinary[rng.integers(0, len(inside.ordinary), len(near))]
    for table, p, hosts in ((TARGETED_HIT_PORTS, TARGETED_HIT, inside.hit_hosts), (TARGETED_MISS_PORTS, TARGETED_MISS, inside.miss_hosts)):
        sel = np.flatnonzero(pop == p)
        entry = _pick(rng, len(sel), [e[2] for e in table])
        base[sel] = hosts[entry]
        step[sel] = entry + 1
    scan = np.flatnonzero(pop == SCANNER)
    block = min(256, inside.size)
    n_blocks = inside.size // block
    base[scan] = rng.integers(0, n_blocks, len(scan)) * block
    step[scan] = 1
    return base, step


def _services(rng: np.random.Generator, pop, nflows, base, step, inside: _Inside):
    """(protocol, port, flags, TCP share) per source.  Points ``base`` at the host of the service
    where the service picks it (clients, vlf_smtp, vlf_answerer, vlf_service) and sets ``step`` of
    the targeted probes, which holds their port-table entry (+ 1), back to 1, in place."""
    S = len(pop)
    proto = np.zeros(S, dtype=np.int64)
    port = np.zeros(S, dtype=np.int64)
    flags = np.zeros(S, dtype=np.int64)
    tcp_share = np.zeros(S, dtype=float)
    for p in range(len(POPULATIONS)):
        sel = np.flatnonzero(pop == p)
        m = len(sel)
        if m == 0:
            continue
        if p == SCANNER:
            proto[sel], port[sel] = PROTO_TCP, np.array([q for q, _ in SCANNER_PORTS])[_pick(rng, m, [w for _, w in SCANNER_PORTS])]
        elif p == VLF_SCAN:
            proto[sel], port[sel] = PROTO_TCP, np.array([q for q, _ in VLF_SCAN_PORTS])[_pick(rng, m, [w for _, w in VLF_SCAN_PORTS])]
        elif p in (P2P_PEER, VLF_P2P):
            tcp_share[sel] = rng.uniform(0.15, 0.6, m)
        elif p == CLIENT:
            role = _pick(rng, m, [0.35, 0.25, 0.40])  # smtp, ssh, web
            proto[sel] = PROTO_TCP
            port[sel] = np.array([SMTP_PORT, SSH_PORT, 80])[role]
            base[sel] = np.array([inside.servers[r] for r in ("smtp", "ssh", "web")])[role]
        elif p in (GAME_CLIENT, VLF_GAME):
            proto[sel], port[sel] = PROTO_UDP, GAME_PORT
        elif p == VLF_SMTP:
            proto[sel], port[sel] = PROTO_TCP, SMTP_PORT
            base[sel] = inside.mail_hosts[rng.integers(0, len(inside.mail_hosts), m)]
        elif p == BACKSCATTER:
            kind = _pick(rng, m, [w for *_, w in BACKSCATTER_KINDS])
            proto[sel] = np.array([k[0] for k in BACKSCATTER_KINDS])[kind]
            port[sel] = np.array([k[1] for k in BACKSCATTER_KINDS])[kind]
            flags[sel] = np.array([k[2] for k in BACKSCATTER_KINDS])[kind]
        elif p == VLF_ECHO:
            proto[sel], port[sel] = PROTO_ICMP, ECHO_REQUEST
        elif p == OTHER_PROTO:
            proto[sel] = np.array(OTHER_PROTOCOLS)[np.arange(m) % len(OTHER_PROTOCOLS)]
        elif p == NEAR_MATCH:
            proto[sel], port[sel] = PROTO_TCP, rng.integers(10000, 60000, m)
        elif p in (VLF_ANSWERER, VLF_SERVICE):  # port: the service port (answerer: its own sPort)
            table, pools = (ENTERPRISE_SERVICES, inside.open_pools) if p == VLF_ANSWERER else (OUTSIDE_SERVICES, inside.service_pools)
            weights = np.array([e[2] for e in table])
            entry = _pick(rng, m, weights)
            if p == VLF_ANSWERER:  # TCP: one or two sessions per outside host; chatty ones are UDP
                chatty = np.flatnonzero(nflows[sel] > ANSWERER_TCP_MAX_FLOWS)
                entry[chatty] = _pick(rng, len(chatty), np.where([e[0] == PROTO_UDP for e in table], weights, 0.0))
            proto[sel] = np.array([e[0] for e in table])[entry]
            port[sel] = np.array([e[1] for e in table])[entry]
            base[sel] = _pool_pick(rng, pools, entry)
    # targeted probes: the port table entry was chosen with the destination
    for table, p in ((TARGETED_HIT_PORTS, TARGETED_HIT), (TARGETED_MISS_PORTS, TARGETED_MISS)):
        sel = np.flatnonzero(pop == p)
        entry = step[sel] - 1  # _destinations stores entry + 1 in step for these (ndest == 1)
        proto[sel] = np.array([e[0] for e in table])[entry]
        port[sel] = np.array([e[1] for e in table])[entry]
        step[sel] = 1
    return proto, port, flags, tcp_share


def _times(rng: np.random.Generator, pop, nflows, window: int, game_end: int):
    """(t0, span) per source, in ms from the window start: flows cluster in a short burst."""
    S = len(pop)
    hour = MS_PER_HOUR
    span = np.where(
        rng.random(S) < 0.85, _log_uniform(rng, 1_000, 3 * hour, S), _log_uniform(rng, 3 * hour, window, S)
    )
    regular = (pop == P2P_PEER) | (pop == CLIENT)
    span[regular] = _log_uniform(rng, 6 * hour, window, int(regular.sum()))
    scan = pop == SCANNER
    span[scan] = _log_uniform(rng, 600_000, 4 * hour, int(scan.sum()))
    span = np.minimum(np.floor(span).astype(np.int64), window - 1)
    span[nflows == 1] = 0
    t0 = np.floor(rng.random(S) * (window - span)).astype(np.int64)
    game = np.flatnonzero(pop == VLF_GAME)  # busy while the server lives, fewer afterwards
    first = rng.random(len(game)) < GAME_FIRST_PHASE_SHARE
    anchor = np.where(first, rng.random(len(game)) * game_end, game_end + rng.random(len(game)) * (window - game_end))
    t0[game] = np.clip(anchor.astype(np.int64) - span[game] // 2, 0, window - span[game] - 1)
    return t0, span
