"""The simulated site's addresses: the inside network's hosts and servers, and the outside sources' addresses.

:func:`_inside` picks the live hosts of the site's first IPv4 internal network, its servers and the
hosts of the port tables of :mod:`.model`; :class:`_OutsideAddresses` numbers the public IPv4 space
in a keyed pseudo-random order, so that sources, web and DNS servers are ranges of one sequence of
distinct addresses without a global set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..flows.schema import ipv4_to_int
from ..flows.site import Site
from .model import (
    ENTERPRISE_SERVICES, EXCLUDED_BLOCKS, LIVE_SHARE, MAIL_HOSTS, MAX_LIVE_HOSTS, OUTSIDE_SERVICES, SERVER_ROLES,
    TARGETED_HIT_PORTS, TARGETED_MISS_PORTS, SimulationError,
)

# --- the outside addresses ----------------------------------------------------------------------


def _mix32(x: np.ndarray) -> np.ndarray:
    """A 32-bit integer hash (lowbias32), elementwise on a uint32 array."""
    x = x ^ (x >> np.uint32(16))
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


class _OutsideAddresses:
    """Distinct public IPv4 addresses outside the site, in a keyed pseudo-random order: rank -> address.

    The allowed addresses (1.0.0.0 to 223.255.255.255 without :data:`EXCLUDED_BLOCKS` and the
    site's own networks) are numbered 0..total-1 in address order; a keyed Feistel permutation of
    32-bit numbers, cycle-walked into 0..total-1, shuffles the numbers.  Any range of ranks is
    computed on its own, in memory proportional to its length, and distinct ranks always give
    distinct addresses: sources, web and DNS servers are ranges of one sequence.
    """

    ROUNDS = 6

    def __init__(self, rng: np.random.Generator, site: Site):
        cut = [(ipv4_to_int(a), 1 << (32 - p)) for a, p in EXCLUDED_BLOCKS]
        cut += [(network, ((~mask) & 0xFFFFFFFF) + 1) for network, mask in site.ipv4_networks]
        allowed = [(1 << 24, 224 << 24)]
        for lo, size in cut:
            hi = lo + size
            allowed = [(a, b) for a0, b0 in allowed for a, b in ((a0, min(b0, lo)), (max(a0, hi), b0)) if a < b]
        allowed.sort()
        sizes = np.array([b - a for a, b in allowed], dtype=np.int64)
        self.starts = np.array([a for a, _ in allowed], dtype=np.int64)  # first address of each interval
        self.rank_ends = np.cumsum(sizes)  # first rank after each interval
        self.rank_starts = self.rank_ends - sizes
        self.total = int(self.rank_ends[-1])
        self.keys = rng.integers(0, 1 << 32, self.ROUNDS, dtype=np.uint64).astype(np.uint32)

    def _permute(self, x: np.ndarray) -> np.ndarray:
        """A bijection of the uint32 numbers (balanced Feistel network on 16-bit halves)."""
        left, right = x >> np.uint32(16), x & np.uint32(0xFFFF)
        for key in self.keys:
            left, right = right, left ^ (_mix32(right ^ key) & np.uint32(0xFFFF))
        return (left << np.uint32(16)) | right

    def __call__(self, start: int, stop: int) -> np.ndarray:
        """The addresses of ranks ``start``..``stop-1`` (uint32)."""
        if stop > self.total:
            raise SimulationError(f"cannot draw {stop:,} distinct outside addresses (only {self.total:,} exist)")
        ranks = self._permute(np.arange(start, stop, dtype=np.uint32))
        walk = np.flatnonzero(ranks >= self.total)  # cycle walking: permute again until inside 0..total-1
        while len(walk):
            ranks[walk] = self._permute(ranks[walk])
            walk = walk[ranks[walk] >= self.total]
        ranks = ranks.astype(np.int64)
        interval = np.searchsorted(self.rank_ends, ranks, side="right")
        return (self.starts[interval] + ranks - self.rank_starts[interval]).astype(np.uint32)


# --- the inside network -------------------------------------------------------------------------


@dataclass
class _Inside:
    base: int  # network address
    size: int  # addresses
    live: np.ndarray  # sorted offsets of the live hosts
    servers: dict[str, int]  # role -> offset
    hit_hosts: np.ndarray  # offset per TARGETED_HIT_PORTS entry (live)
    miss_hosts: np.ndarray  # offset per TARGETED_MISS_PORTS entry (never live)
    ordinary: np.ndarray  # live offsets that are not servers
    mail_hosts: np.ndarray  # the SMTP server and the other MX hosts (vlf_smtp sessions)
    open_pools: list  # per ENTERPRISE_SERVICES entry: live hosts that open such sessions
    service_pools: list  # per OUTSIDE_SERVICES entry: live hosts that answer on that port

    def is_live(self, offsets: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.size, dtype=bool)
        mask[self.live] = True
        return mask[offsets]


def _pool_pick(rng: np.random.Generator, pools: list, entry: np.ndarray) -> np.ndarray:
    """One host per row: uniformly from the pool of the row's table entry."""
    sizes = np.array([len(p) for p in pools], dtype=np.int64)
    padded = np.zeros((len(pools), int(sizes.max())), dtype=np.int64)
    for i, pool in enumerate(pools):
        padded[i, : len(pool)] = pool
    return padded[entry, np.floor(rng.random(len(entry)) * sizes[entry]).astype(np.int64)]


def _pools(rng: np.random.Generator, table, ordinary: np.ndarray, first: dict) -> list:
    """Per table entry, ``hosts`` live hosts: the entry's ``first`` hosts, then random ordinary ones."""
    pools = []
    for protocol, port, _, hosts, key in table:
        head = np.asarray(first[key] if key != "hit" else first["hit"][(protocol, port)], dtype=np.int64).ravel()
        rest = rng.permutation(np.setdiff1d(ordinary, head))
        pools.append(np.concatenate([head, rest])[: max(1, min(hosts, len(head) + len(rest)))])
    return pools


def _inside(rng: np.random.Generator, site: Site) -> _Inside:
    nets = [n for n in site.internal_networks if n.version == 4]
    if not nets:
        raise SimulationError(f"site {site.name!r} has no IPv4 internal network to simulate")
    net = nets[0]
    size = net.num_addresses
    if size < 64:
        raise SimulationError(f"internal network {net} is too small to simulate (needs at least a /26)")
    offsets = np.arange(size)
    low = offsets & 0xFF if size >= 256 else offsets
    candidates = offsets[(low != 0) & (low != min(size, 256) - 1)]
    n_live = int(min(MAX_LIVE_HOSTS, max(16, round(LIVE_SHARE * size))))
    live_order = rng.choice(candidates, size=n_live, replace=False)
    servers = {role: int(live_order[i]) for i, role in enumerate(SERVER_ROLES)}
    ordinary = np.sort(live_order[len(SERVER_ROLES):])
    hit_hosts = rng.choice(ordinary, size=len(TARGETED_HIT_PORTS), replace=len(ordinary) < len(TARGETED_HIT_PORTS))
    dead = np.setdiff1d(candidates, live_order)
    miss_hosts = rng.choice(dead, size=len(TARGETED_MISS_PORTS), replace=False)
    mail_hosts = np.concatenate([[servers["smtp"]], rng.choice(ordinary, size=MAIL_HOSTS - 1, replace=False)])
    first = {
        None: [], "p2p": [servers["p2p"]], "mail": mail_hosts,
        "hit": {(pr, port): h for (pr, port, _), h in zip(TARGETED_HIT_PORTS, hit_hosts)},
    }
    open_pools = _pools(rng, ENTERPRISE_SERVICES, ordinary, first)
    service_pools = _pools(rng, OUTSIDE_SERVICES, ordinary, first)
    return _Inside(int(net.network_address), size, np.sort(live_order), servers, hit_hosts, miss_hosts, ordinary,
                   mail_hosts, open_pools, service_pools)
