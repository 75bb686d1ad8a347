"""A synthetic monitored /22 with the outside populations of the 2008 VLF study, and its ground truth.

:func:`simulate` writes one landing file per hour (``landing/dt=.../hour=HH/sim.parquet``, the flow
schema, sorted by sTime, flowtype 0: the pipeline classifies) and ``sim/ground_truth.parquet`` with
one row per outside source: its population, its exact inbound flow count and number of distinct
inside destinations, its main protocol and destination port and whether its destinations are live.

The model, scaled by ``days`` and ``sources`` with the study's proportions:

- Inside: the site's first IPv4 internal network.  About 10% of it is live; live hosts browse the
  web (TCP 80/443) and ask DNS (UDP 53) every hour, so they show as active.  Five live hosts are
  servers: SMTP (25), SSH (22), web (80/443), eDonkey/eMule (4662 TCP, 4672 UDP) and a HalfLife
  game server (27015 UDP) that lives only in the first third of the window (at most 14 days):
  afterwards it neither answers nor originates, while clients keep trying at a lower rate.
- Outside: exactly ``sources`` distinct public addresses.  Flow counts per source follow the
  study's per-host distribution (48.74% one flow, 90.88% one to ten, 0.76% over a hundred); 93%
  of the one-to-ten-flow sources hit a single inside address; each source's flows cluster in time.
  Every source belongs to one population (:data:`POPULATIONS`, described in
  :data:`POPULATION_DESCRIPTIONS` and in summary.json); answers to inbound queries are outbound
  flows with reversed addresses and ports, 0..500 ms after the query, in the same hour.
- Matched sessions both ways (the study's "Matched TCP and UDP" tables):

  - outside originated (O): vlf_smtp sessions go to one of 2-3 mail hosts; ``vlf_service`` sources
    (1..10 flows, one destination) open sessions to inside services that always answer, each port
    served by one to four live hosts (:data:`OUTSIDE_SERVICES`: 3531, 17306, 7717, 34718, 113, ...
    TCP; 7986, 7717, 56604, 53, 41639, ... UDP; a port of the targeted-hit table has its targeted
    host among its servers);
  - enterprise originated (E): ``vlf_answerer`` sources (1..10 flows, one destination) only ever
    answer: each of their inbound flows mirrors an outbound flow that a live inside host started
    1..500 ms earlier in the same hour, from an ephemeral port to the answerer's service port
    (:data:`ENTERPRISE_SERVICES`: NetBIOS 139, SSH 22, SMTP 25, BitTorrent 6881, web 80, eDonkey
    4662/4672 from the P2P server and a few more hosts, ident 113, DNS 53, high ports 32459 and
    6672 ...; several originating hosts per port; TCP only for answerers with one or two flows, the
    chattier ones answer UDP).  rwmatch pairs them only with ``--symmetric-delta`` (the response
    starts first); without it they stay unmatched.
- Port numerology: the UDP source ports of outside peers (p2p_peer, vlf_p2p, vlf_service) are 10%
  "interesting" numbers (:data:`INTERESTING_UDP_PORTS`: 15001, 52525, 65535, 10006, 55555, 4000,
  6000, 1024; 15% of those one to three ports further, as applications that find their port busy
  bind the next one), the rest ephemeral (40% from Windows XP's 1025..5000): in the matched data
  those ports count an order of magnitude more than their neighbours.

Everything is vectorised: per-source attributes are numpy arrays, expanded to flows with
``np.repeat``; the only Python loops run per chunk, population, port table entry, bucket and hour.

Streaming, so the study's 14 months with 12.7 million sources fit in bounded memory: sources are
simulated in chunks of a fixed size (a function of the config: about two days' worth of sources,
4,096 to 131,072), two at a time on threads, each chunk with its own random streams.  A chunk
spills its flows (inbound ones and the outbound flows paired with them, which stay in their hour)
to an Arrow IPC file under ``sim/.spill-*`` with one record batch per landing bucket (a day, fewer
hours for very busy sites) and keeps only its sources' ground-truth rows and counters.  Then,
bucket by bucket, the chunks' batches and the bucket's background traffic are merged, sorted by
sTime and written as hourly files (two writer threads); the spill files are removed.  Peak memory
depends on the sources per day, not on the length of the window.  Outside addresses are ranks of
a keyed permutation of the public IPv4 space (:class:`_OutsideAddresses`): distinct without a
global set.  Same site, config and seed give byte-identical files, whatever the threads do.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..flows.flags import ACK, FIN, PSH, RST, SYN
from ..flows.schema import (
    FLOW_SCHEMA, MS_PER_HOUR, PROTO_ICMP, PROTO_TCP, PROTO_UDP, int_to_ipv4, ipv4_to_int, numpy_dtype,
)
from ..flows.site import Site
from ..flows.storage import PARQUET_OPTIONS, atomic_path, hour_ms, hours_between, landing_dir, write_parquet, write_text

LANDING_NAME = "sim.parquet"
MS_PER_DAY = 24 * MS_PER_HOUR

# --- the study's numbers -----------------------------------------------------------------------

# Per host flow distribution (study table): 1..10 flows, then 11..100, then >100.
FLOW_BUCKET_SHARES = (
    0.4874, 0.1779, 0.0814, 0.0510, 0.0330, 0.0244, 0.0177, 0.0146, 0.0115, 0.0099, 0.0836, 0.0076,
)
BUCKET_11_100, BUCKET_OVER_100 = 10, 11
SINGLE_DESTINATION_SHARE = 0.93  # of the sources with 1..10 flows
LIVE_SHARE = 0.10  # of the inside addresses
MAX_LIVE_HOSTS = 4096
GAME_MAX_DAYS = 14
GAME_FIRST_PHASE_SHARE = 0.7  # share of game traffic in the server's lifetime (the first third)
ANSWER_DELAY_MS = 500

POPULATIONS = (
    "scanner",
    "p2p_peer",
    "client",
    "game_client",
    "vlf_scan",
    "vlf_targeted_hit",
    "vlf_targeted_miss",
    "vlf_p2p",
    "vlf_game",
    "vlf_smtp",
    "backscatter",
    "vlf_echo",
    "other_proto",
    "near_match",
    "vlf_answerer",
    "vlf_service",
)
(
    SCANNER, P2P_PEER, CLIENT, GAME_CLIENT, VLF_SCAN, TARGETED_HIT, TARGETED_MISS, VLF_P2P,
    VLF_GAME, VLF_SMTP, BACKSCATTER, VLF_ECHO, OTHER_PROTO, NEAR_MATCH, VLF_ANSWERER, VLF_SERVICE,
) = range(len(POPULATIONS))

# What each population is (also written to summary.json).
POPULATION_DESCRIPTIONS = {
    "scanner": "over 100 flows: TCP SYN sweeps of 1-4 whole inside /24s (445, 139, 1433, 80); live hosts answer a quarter",
    "p2p_peer": "11 to ~1500 flows: eDonkey peers of the inside P2P server (4662/TCP, 4672/UDP), mostly answered",
    "client": "11-100 flows: regular clients of the inside SMTP, SSH and web servers, always answered",
    "game_client": "over 10 flows: HalfLife players of the inside game server (27015/UDP), answered while it lives",
    "vlf_scan": "1-10 flows: unanswered SYN probes of random inside addresses (445, 139, 1433, 80, 25)",
    "vlf_targeted_hit": "1-10 flows, 1 destination: unanswered probes of one port that always goes to one live host",
    "vlf_targeted_miss": "1-10 flows, 1 destination: unanswered probes of one port that always goes to one dead address",
    "vlf_p2p": "1-10 flows, 1 destination: eDonkey peers of the P2P server, about a third answered",
    "vlf_game": "1-10 flows, 1 destination: game clients, answered while the game server lives",
    "vlf_smtp": "1-3 flows, 1 destination: one SMTP session with one of the 2-3 inside mail hosts, answered",
    "backscatter": "1-10 flows: ICMP errors and TCP SYN/ACK, RST of DDoS victims (spoofed inside addresses)",
    "vlf_echo": "1-10 flows: ICMP echo requests",
    "other_proto": "a handful: protocols other than TCP/UDP/ICMP, some with implausible volumes",
    "near_match": "1-10 flows, 1 destination: SYNs answered from the queried address and port but to the wrong port",
    "vlf_answerer": "1-10 flows, 1 destination (enterprise originated): every inbound flow answers a session that a live "
    "inside host opened 1..500 ms earlier (outbound flow, mirrored addresses and ports, same hour) to this "
    "source's service port (139, 22, 25, 6881, 80, 4662, 113, 1433, 445/TCP with 1-2 flows; 4672, 53, 6881, "
    "32459, 6672/UDP)",
    "vlf_service": "1-10 flows, 1 destination (outside originated): sessions to inside services answered by one to "
    "four inside servers per port (3531, 17306, 7717, 34718, 113, 18837, 25383, 20507, 6738/TCP; 7986, 7717, "
    "56604, 53, 41639, 43635, 24263, 3531, 22198, 18911, 34718, 20507, 17306/UDP)",
}

# Who the heavier sources are.
POPULATIONS_11_100 = ((CLIENT, 0.40), (P2P_PEER, 0.40), (GAME_CLIENT, 0.20))
POPULATIONS_OVER_100 = ((SCANNER, 0.75), (P2P_PEER, 0.15), (GAME_CLIENT, 0.10))
# 1..10-flow sources that hit 2..5 addresses.
POPULATIONS_MULTI_DESTINATION = ((VLF_SCAN, 0.50), (BACKSCATTER, 0.40), (VLF_ECHO, 0.10))
# 1..10-flow single-destination sources; vlf_smtp (a single SMTP session) only with 1..3 flows.
POPULATIONS_SINGLE_DESTINATION = (
    (TARGETED_HIT, 0.24), (VLF_P2P, 0.16), (VLF_SCAN, 0.11), (BACKSCATTER, 0.10), (VLF_ANSWERER, 0.09),
    (VLF_GAME, 0.07), (VLF_SMTP, 0.07), (VLF_SERVICE, 0.05), (TARGETED_MISS, 0.05), (VLF_ECHO, 0.04),
    (NEAR_MATCH, 0.02),
)
SMTP_MAX_FLOWS = 3
OTHER_PROTOCOLS = (0, 12, 41, 47, 50, 89, 132, 255)
IMPLAUSIBLE_PROTOCOLS = (0, 12, 89)  # collector garbage: 10^6..10^8 packets

# (port, weight): TCP sweeps and single probes.
SCANNER_PORTS = ((445, 0.50), (139, 0.20), (1433, 0.15), (80, 0.15))
VLF_SCAN_PORTS = ((445, 0.55), (139, 0.10), (1433, 0.08), (80, 0.12), (25, 0.15))
# (protocol, port, weight): each port always goes to one specific address (study hit/miss tables).
TARGETED_HIT_PORTS = (
    (PROTO_TCP, 35372, 58994), (PROTO_TCP, 17306, 26723), (PROTO_TCP, 41639, 42492),
    (PROTO_TCP, 24263, 22113), (PROTO_TCP, 7717, 17676), (PROTO_TCP, 25383, 17266),
    (PROTO_TCP, 40987, 13615),
    (PROTO_UDP, 7986, 479889), (PROTO_UDP, 7717, 410036), (PROTO_UDP, 41639, 213221),
    (PROTO_UDP, 56604, 107250), (PROTO_UDP, 3531, 73635), (PROTO_UDP, 22198, 31315),
    (PROTO_UDP, 25383, 22255), (PROTO_UDP, 24263, 20815),
)
TARGETED_MISS_PORTS = (
    (PROTO_TCP, 9272, 21110), (PROTO_TCP, 47190, 11939), (PROTO_TCP, 34001, 9893),
    (PROTO_TCP, 14662, 6662),
)
# (protocol, dPort or ICMP type*256+code, TCP flags, weight): replies of DDoS victims.
BACKSCATTER_KINDS = (
    (PROTO_ICMP, 3 * 256 + 3, 0, 0.40), (PROTO_ICMP, 3 * 256 + 1, 0, 0.10),
    (PROTO_ICMP, 3 * 256 + 13, 0, 0.08), (PROTO_ICMP, 3 * 256 + 0, 0, 0.04),
    (PROTO_ICMP, 11 * 256 + 0, 0, 0.08), (PROTO_TCP, 0, SYN | ACK, 0.10),
    (PROTO_TCP, 0, RST | ACK, 0.12), (PROTO_TCP, 0, RST, 0.08),
)
VICTIM_PORTS = np.array([80, 443, 6667, 25, 53, 22, 3306], dtype=np.int64)
# (protocol, port, weight, inside hosts, first hosts): sessions that live inside hosts open to a
# vlf_answerer's service port; "p2p" / "mail" put the P2P server / the mail hosts first in the pool.
ENTERPRISE_SERVICES = (
    (PROTO_TCP, 139, 0.14, 5, None), (PROTO_TCP, 22, 0.10, 27, None), (PROTO_TCP, 25, 0.06, 10, "mail"),
    (PROTO_TCP, 6881, 0.06, 14, "p2p"), (PROTO_TCP, 80, 0.05, 60, None), (PROTO_TCP, 4662, 0.05, 7, "p2p"),
    (PROTO_TCP, 113, 0.03, 3, "mail"), (PROTO_TCP, 1433, 0.02, 4, None), (PROTO_TCP, 445, 0.02, 2, None),
    (PROTO_UDP, 4672, 0.20, 7, "p2p"), (PROTO_UDP, 53, 0.09, 12, None), (PROTO_UDP, 6881, 0.08, 13, "p2p"),
    (PROTO_UDP, 32459, 0.05, 13, None), (PROTO_UDP, 6672, 0.05, 4, None),
)
ANSWERER_TCP_MAX_FLOWS = 2  # answerers with more flows answer UDP (P2P, DNS) exchanges
# (protocol, port, weight, inside hosts, first hosts): inside services that answer vlf_service
# sources; a port of TARGETED_HIT_PORTS has its targeted host first ("hit"), 113 the mail hosts.
OUTSIDE_SERVICES = (
    (PROTO_TCP, 3531, 0.14, 4, None), (PROTO_TCP, 17306, 0.05, 1, "hit"), (PROTO_TCP, 7717, 0.05, 2, "hit"),
    (PROTO_TCP, 34718, 0.04, 3, None), (PROTO_TCP, 113, 0.05, 4, "mail"), (PROTO_TCP, 18837, 0.03, 1, None),
    (PROTO_TCP, 25383, 0.03, 1, "hit"), (PROTO_TCP, 20507, 0.02, 1, None), (PROTO_TCP, 6738, 0.02, 2, None),
    (PROTO_UDP, 7986, 0.12, 2, "hit"), (PROTO_UDP, 7717, 0.09, 2, "hit"), (PROTO_UDP, 56604, 0.05, 1, "hit"),
    (PROTO_UDP, 53, 0.05, 3, None), (PROTO_UDP, 41639, 0.04, 1, "hit"), (PROTO_UDP, 43635, 0.03, 2, None),
    (PROTO_UDP, 24263, 0.03, 1, "hit"), (PROTO_UDP, 3531, 0.02, 1, "hit"), (PROTO_UDP, 22198, 0.02, 1, "hit"),
    (PROTO_UDP, 18911, 0.02, 2, None), (PROTO_UDP, 34718, 0.02, 2, None), (PROTO_UDP, 20507, 0.02, 1, None),
    (PROTO_UDP, 17306, 0.01, 1, None),
)
MAIL_HOSTS = 3  # the SMTP server and two more MX hosts
# Source ports of outside UDP peers (p2p_peer, vlf_p2p, vlf_service): a share of their flows use a
# few "interesting" port numbers (the study's port numerology), the rest are ephemeral, part of
# them from the Windows XP range 1025..5000.
INTERESTING_UDP_PORTS = (
    (15001, 1.00), (52525, 0.97), (65535, 0.95), (10006, 0.95), (55555, 0.93), (4000, 0.80), (6000, 0.75),
    (1024, 0.70),
)
INTERESTING_SHARE = 0.10
FALLBACK_SHARE = 0.15  # of those: the port was busy, the application bound one of the next three
WINDOWS_EPHEMERAL = (1025, 5001)  # Windows XP's ephemeral ports (end exclusive)
WINDOWS_SHARE = 0.4  # of the other outside peer ports
ECHO_REQUEST = 8 * 256 + 0

SMTP_PORT, SSH_PORT, P2P_TCP_PORT, P2P_UDP_PORT, GAME_PORT, DNS_PORT = 25, 22, 4662, 4672, 27015, 53
SERVER_ROLES = ("smtp", "ssh", "web", "p2p", "game")

SESSION = FIN | SYN | PSH | ACK  # "FS PA"
SESSION_REST = FIN | PSH | ACK

# Outside address blocks a source never comes from (plus the site's own networks).
EXCLUDED_BLOCKS = (
    ("0.0.0.0", 8), ("10.0.0.0", 8), ("127.0.0.0", 8), ("169.254.0.0", 16), ("172.16.0.0", 12),
    ("192.168.0.0", 16), ("224.0.0.0", 3),
)
WEB_SERVER_POOL, DNS_SERVER_POOL = 256, 3


class SimulationError(ValueError):
    pass


@dataclass(frozen=True)
class SimulationConfig:
    days: int = 7
    sources: int = 20000  # number of distinct outside sources that send inbound flows
    seed: int = 1


@dataclass
class SimulationSummary:
    flows: int
    inbound_flows: int
    outbound_flows: int
    sources: int
    hours: int
    landing_files: list[Path]
    ground_truth_path: Path
    populations: dict[str, int]  # population -> number of sources
    summary_path: Path | None = None
    details: dict = field(default_factory=dict)


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


def _windows_ephemeral(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.integers(*WINDOWS_EPHEMERAL, size)


def _peer_ports(rng: np.random.Generator, size: int) -> np.ndarray:
    """Source ports of outside UDP peers: :data:`INTERESTING_SHARE` of them one of the interesting
    ports (:data:`FALLBACK_SHARE` of those one to three ports further: the port was taken), the
    rest ephemeral (:data:`WINDOWS_SHARE` of those from Windows XP's range)."""
    ports = _ephemeral(rng, size)
    windows = rng.random(size) < WINDOWS_SHARE
    ports[windows] = _windows_ephemeral(rng, int(windows.sum()))
    interesting = np.flatnonzero(rng.random(size) < INTERESTING_SHARE)
    table = np.array([q for q, _ in INTERESTING_UDP_PORTS])
    chosen = table[_pick(rng, len(interesting), [w for _, w in INTERESTING_UDP_PORTS])]
    step = np.where(rng.random(len(interesting)) < FALLBACK_SHARE, rng.integers(1, 4, len(interesting)), 0)
    ports[interesting] = np.where(chosen + 3 <= 65535, chosen + step, chosen - step)
    return ports


def _segment_starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


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


# --- flow columns -------------------------------------------------------------------------------

_COLUMNS = {
    "sIP": np.uint32, "dIP": np.uint32, "sPort": np.uint16, "dPort": np.uint16, "protocol": np.uint8,
    "packets": np.uint64, "bytes": np.uint64, "flags": np.uint8, "initialFlags": np.uint8,
    "sessionFlags": np.uint8, "sTime": np.int64, "duration": np.uint32,
}


class _Volumes:
    """Per-flow packets, bytes, flags and duration, filled population by population."""

    def __init__(self, size: int):
        self.packets = np.ones(size, dtype=np.int64)
        self.bytes = np.full(size, 40, dtype=np.int64)
        self.flags = np.zeros(size, dtype=np.int64)
        self.initial = np.zeros(size, dtype=np.int64)
        self.session = np.zeros(size, dtype=np.int64)
        self.duration = np.zeros(size, dtype=np.int64)

    def put(self, idx, packets, bytes_, flags=0, initial=0, session=0, duration=0):
        self.packets[idx] = packets
        self.bytes[idx] = bytes_
        self.flags[idx] = flags
        self.initial[idx] = initial
        self.session[idx] = session
        self.duration[idx] = duration

    # the shapes of traffic
    def syn_probe(self, rng, idx):
        """Unanswered SYN: 1-3 packets (retransmissions at 3 and 9 s), 48 bytes each."""
        m = len(idx)
        packets = rng.choice(np.array([1, 2, 3]), size=m, p=[0.45, 0.15, 0.40])
        duration = np.select([packets == 2, packets == 3], [3000, 9000], 0) + np.where(packets > 1, rng.integers(0, 200, m), 0)
        self.put(idx, packets, 48 * packets, SYN, SYN, np.where(packets > 1, SYN, 0), duration)

    def single(self, rng, idx, flags, lo=40, hi=41):
        m = len(idx)
        self.put(idx, 1, rng.integers(lo, hi, m), flags, flags, 0, 0)

    def tcp_session(self, rng, idx, lo=4, hi=40):
        m = len(idx)
        packets = rng.integers(lo, hi + 1, m)
        self.put(idx, packets, packets * rng.integers(52, 1200, m), SESSION, SYN, SESSION_REST, rng.integers(20, 60001, m))

    def udp(self, rng, idx, lo, hi, max_packets=1):
        m = len(idx)
        packets = rng.integers(1, max_packets + 1, m)
        duration = np.where(packets > 1, rng.integers(1, 60001, m), 0)
        self.put(idx, packets, packets * rng.integers(lo, hi + 1, m), 0, 0, 0, duration)

    def icmp(self, rng, idx):
        m = len(idx)
        self.put(idx, 1, rng.choice(np.array([28, 56, 56, 56, 70, 92, 112]), size=m))


@dataclass
class _Answers:
    """Outbound flows paired with inbound flows (by index), with their own volumes: answers (after
    the inbound query) or, with ``leads``, the sessions inside hosts opened (before the inbound flow)."""

    query: list = field(default_factory=list)
    wrong_port: list = field(default_factory=list)
    lead: list = field(default_factory=list)
    volumes: list = field(default_factory=list)

    def add(self, rng, idx, kind, queries: _Volumes, wrong_port=False, leads=False):
        idx = np.asarray(idx, dtype=np.int64)
        m = len(idx)
        if m == 0:
            return
        v = _Volumes(m)
        all_ = np.arange(m)
        if kind == "session":
            packets = np.maximum(1, (queries.packets[idx] * rng.uniform(0.5, 0.9, m)).astype(np.int64))
            dur = np.maximum(0, queries.duration[idx] - rng.integers(0, 20, m))
            v.put(all_, packets, packets * rng.integers(52, 900, m), SESSION, SYN | ACK, SESSION_REST, dur)
        elif kind == "opener":  # the inside host's side of a session it opened: SYN first, a bit longer
            packets = queries.packets[idx] + rng.integers(1, 4, m)
            dur = np.minimum(60000, queries.duration[idx] + rng.integers(1, 500, m))
            v.put(all_, packets, packets * rng.integers(52, 900, m), SESSION, SYN, SESSION_REST, dur)
        elif kind == "synack":
            v.put(all_, 1, 44, SYN | ACK, SYN | ACK, 0, 0)
        elif kind == "udp":
            v.udp(rng, all_, 40, 1400, max_packets=2)
        else:  # pragma: no cover - programming error
            raise ValueError(kind)
        self.query.append(idx)
        self.wrong_port.append(np.full(m, wrong_port))
        self.lead.append(np.full(m, leads))
        self.volumes.append(v)


# --- the simulation -----------------------------------------------------------------------------

# Random streams, all children of one SeedSequence per seed: (stream, index) -> generator.
_STREAM_SITE, _STREAM_ADDRESSES, _STREAM_CHUNK, _STREAM_BACKGROUND = range(4)
CHUNK_MIN_SOURCES, CHUNK_MAX_SOURCES = 1 << 12, 1 << 17
CHUNK_DAYS = 2  # a chunk holds about this many days' worth of sources (at least CHUNK_MIN_SOURCES)
BUCKET_MAX_FLOWS = 4_000_000  # estimated flows of a landing bucket (a day, or fewer hours if busier)
FLOWS_PER_SOURCE = 16  # generous estimate (inbound and answers) for sizing the landing buckets
WORKERS = 2  # threads: two chunks are simulated, and two hours written, at a time


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


@dataclass
class _Context:
    plan: _Plan
    inside: "_Inside"
    addresses: _OutsideAddresses
    entropy: list
    spill_dir: Path


def simulate(site: Site, config: SimulationConfig, data_dir: Path) -> SimulationSummary:
    """Simulate ``config.days`` days from ``site.start`` and write landing files and ground truth.

    Streaming: sources are simulated chunk by chunk (each chunk with its own random streams); a
    chunk's flows go to a spill file with one Arrow record batch per landing bucket (a day); then
    bucket by bucket the chunks' batches and the bucket's background traffic are merged, sorted and
    written as hourly landing files.  Memory depends on the sources per day, not on the window.
    """
    if config.days < 1:
        raise SimulationError(f"days must be >= 1 (got {config.days})")
    if config.sources < 1:
        raise SimulationError(f"sources must be >= 1 (got {config.sources})")
    data_dir = Path(data_dir)
    plan = _plan(site, config)
    entropy = [int(config.seed), 0x564C46]
    inside = _inside(_rng(entropy, _STREAM_SITE), site)
    addresses = _OutsideAddresses(_rng(entropy, _STREAM_ADDRESSES), site)
    S = int(config.sources)
    web_pool = addresses(S, S + WEB_SERVER_POOL)
    dns_pool = addresses(S + WEB_SERVER_POOL, S + WEB_SERVER_POOL + DNS_SERVER_POOL)

    bounds = list(range(0, S, plan.chunk_sources)) + [S]
    sizes = np.diff(bounds)
    n_other = _quota(min(int(np.clip(round(S * 0.0004), 3, 16)), S), sizes)  # "a handful" in all

    (data_dir / "sim").mkdir(parents=True, exist_ok=True)
    spill_dir = Path(tempfile.mkdtemp(prefix=".spill-", dir=data_dir / "sim"))
    try:
        ctx = _Context(plan, inside, addresses, entropy, spill_dir)
        chunks = _run_in_order(
            WORKERS, lambda c: _simulate_chunk(ctx, c, bounds[c], bounds[c + 1], int(n_other[c])), range(len(sizes))
        )
        landing_files, n_background = _write_landing(data_dir, ctx, [c.spill for c in chunks], web_pool, dns_pool)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
    _remove_stale_hours(data_dir, landing_files)

    truth_path = _write_ground_truth([c.truth for c in chunks], data_dir / "sim" / "ground_truth.parquet")
    counts = {k: sum(c.counts[k] for c in chunks) for k in chunks[0].counts}

    populations = {name: int(n) for name, n in zip(POPULATIONS, counts["populations"])}
    n_in = int(counts["inbound"])
    n_out = int(counts["answers"] + counts["opened"] + n_background)
    details = _details(site, config, plan, inside, counts, n_background=n_background)
    summary = SimulationSummary(
        flows=n_in + n_out, inbound_flows=n_in, outbound_flows=n_out, sources=S, hours=len(landing_files),
        landing_files=landing_files, ground_truth_path=truth_path, populations=populations, details=details,
    )
    doc = {
        "flows": summary.flows, "inbound_flows": n_in, "outbound_flows": n_out, "sources": S,
        "hours": summary.hours, "populations": populations, **details,
        "landing_files": [str(p.relative_to(data_dir)) for p in landing_files],
        "ground_truth": str(truth_path.relative_to(data_dir)),
    }
    summary.summary_path = write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", data_dir / "sim" / "summary.json")
    return summary


def _run_in_order(workers: int, fn, items) -> list:
    """``[fn(i) for i in items]`` on ``workers`` threads, at most ``workers`` items in flight (numpy
    and pyarrow release the GIL in their loops)."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    out, pending = [], deque()
    with ThreadPoolExecutor(workers) as pool:
        for i in items:
            if len(pending) >= workers:
                out.append(pending.popleft().result())
            pending.append(pool.submit(fn, i))
        while pending:
            out.append(pending.popleft().result())
    return out


@dataclass
class _Chunk:
    spill: Path  # Arrow IPC file: one record batch per landing bucket
    truth: dict  # ground-truth columns of the chunk's sources (compact types)
    counts: dict  # counters for the summary


def _simulate_chunk(ctx: _Context, c: int, lo: int, hi: int, n_other: int) -> _Chunk:
    """Sources ``lo``..``hi-1``: their inbound flows, the outbound flows paired with them, their truth."""
    plan, inside = ctx.plan, ctx.inside
    start_ms, end_ms, window, game_end = plan.start_ms, plan.end_ms, plan.window, plan.game_end
    streams = np.random.SeedSequence(ctx.entropy, spawn_key=(_STREAM_CHUNK, c)).spawn(5)
    rng_pop, rng_dst, rng_time, rng_traffic, rng_ans = (np.random.default_rng(s) for s in streams)
    S = hi - lo
    source_ip = ctx.addresses(lo, hi)

    # --- per-source flow counts and populations ---
    pop, nflows, ndest = _populations(rng_pop, S, inside, n_other)

    # --- per-source destinations: offset = (base + (k % ndest) * step) % size ---
    base, step = _destinations(rng_dst, pop, nflows, ndest, inside)

    # --- per-source protocol/port attributes ---
    src_proto = np.zeros(S, dtype=np.int64)
    src_port = np.zeros(S, dtype=np.int64)
    src_flags = np.zeros(S, dtype=np.int64)
    src_tcp_share = np.zeros(S, dtype=float)
    rng = rng_traffic
    for p in range(len(POPULATIONS)):
        sel = np.flatnonzero(pop == p)
        m = len(sel)
        if m == 0:
            continue
        if p == SCANNER:
            src_proto[sel], src_port[sel] = PROTO_TCP, np.array([q for q, _ in SCANNER_PORTS])[_pick(rng, m, [w for _, w in SCANNER_PORTS])]
        elif p == VLF_SCAN:
            src_proto[sel], src_port[sel] = PROTO_TCP, np.array([q for q, _ in VLF_SCAN_PORTS])[_pick(rng, m, [w for _, w in VLF_SCAN_PORTS])]
        elif p in (P2P_PEER, VLF_P2P):
            src_tcp_share[sel] = rng.uniform(0.15, 0.6, m)
        elif p == CLIENT:
            role = _pick(rng, m, [0.35, 0.25, 0.40])  # smtp, ssh, web
            src_proto[sel] = PROTO_TCP
            src_port[sel] = np.array([SMTP_PORT, SSH_PORT, 80])[role]
            base[sel] = np.array([inside.servers[r] for r in ("smtp", "ssh", "web")])[role]
        elif p in (GAME_CLIENT, VLF_GAME):
            src_proto[sel], src_port[sel] = PROTO_UDP, GAME_PORT
        elif p == VLF_SMTP:
            src_proto[sel], src_port[sel] = PROTO_TCP, SMTP_PORT
            base[sel] = inside.mail_hosts[rng.integers(0, len(inside.mail_hosts), m)]
        elif p == BACKSCATTER:
            kind = _pick(rng, m, [w for *_, w in BACKSCATTER_KINDS])
            src_proto[sel] = np.array([k[0] for k in BACKSCATTER_KINDS])[kind]
            src_port[sel] = np.array([k[1] for k in BACKSCATTER_KINDS])[kind]
            src_flags[sel] = np.array([k[2] for k in BACKSCATTER_KINDS])[kind]
        elif p == VLF_ECHO:
            src_proto[sel], src_port[sel] = PROTO_ICMP, ECHO_REQUEST
        elif p == OTHER_PROTO:
            src_proto[sel] = np.array(OTHER_PROTOCOLS)[np.arange(m) % len(OTHER_PROTOCOLS)]
        elif p == NEAR_MATCH:
            src_proto[sel], src_port[sel] = PROTO_TCP, rng.integers(10000, 60000, m)
        elif p in (VLF_ANSWERER, VLF_SERVICE):  # src_port: the service port (answerer: its own sPort)
            table, pools = (ENTERPRISE_SERVICES, inside.open_pools) if p == VLF_ANSWERER else (OUTSIDE_SERVICES, inside.service_pools)
            weights = np.array([e[2] for e in table])
            entry = _pick(rng, m, weights)
            if p == VLF_ANSWERER:  # TCP: one or two sessions per outside host; chatty ones are UDP
                chatty = np.flatnonzero(nflows[sel] > ANSWERER_TCP_MAX_FLOWS)
                entry[chatty] = _pick(rng, len(chatty), np.where([e[0] == PROTO_UDP for e in table], weights, 0.0))
            src_proto[sel] = np.array([e[0] for e in table])[entry]
            src_port[sel] = np.array([e[1] for e in table])[entry]
            base[sel] = _pool_pick(rng, pools, entry)
    # targeted probes: the port table entry was chosen with the destination
    for table, p in ((TARGETED_HIT_PORTS, TARGETED_HIT), (TARGETED_MISS_PORTS, TARGETED_MISS)):
        sel = np.flatnonzero(pop == p)
        entry = step[sel] - 1  # _destinations stores entry + 1 in step for these (ndest == 1)
        src_proto[sel] = np.array([e[0] for e in table])[entry]
        src_port[sel] = np.array([e[1] for e in table])[entry]
        step[sel] = 1

    # --- per-source time: flows at t0 + u * span ---
    t0, span = _times(rng_time, pop, nflows, window, game_end)

    # --- expand to flows (grouped by source) ---
    F = int(nflows.sum())
    src = np.repeat(np.arange(S), nflows)
    k = np.arange(F) - np.repeat(_segment_starts(nflows), nflows)
    fpop = pop[src]
    dst_off = (base[src] + (k % ndest[src]) * step[src]) % inside.size
    rng = rng_time
    u = rng.random(F)
    seq = fpop == SCANNER
    u[seq] = (k[seq] + u[seq]) / nflows[src[seq]]  # sweeps walk the addresses in order
    t = t0[src] + np.floor(u * span[src]).astype(np.int64)
    del u, k
    gc = np.flatnonzero(fpop == GAME_CLIENT)  # regulars: every flow on its own, mostly while the server lives
    first = rng.random(len(gc)) < GAME_FIRST_PHASE_SHARE
    t[gc] = np.where(first, rng.integers(0, max(1, game_end), len(gc)), rng.integers(min(game_end, window - 1), window, len(gc)))
    np.clip(t, 0, window - 1, out=t)
    t += start_ms
    # an answerer's flow follows its opener within the hour: never on the hour's first millisecond
    ans = np.flatnonzero(fpop == VLF_ANSWERER)
    t[ans] += t[ans] == np.maximum(t[ans] // MS_PER_HOUR * MS_PER_HOUR, start_ms)

    rng = rng_traffic
    proto = src_proto[src]
    dport = src_port[src]
    sport = _ephemeral(rng, F)
    vol = _Volumes(F)
    answers = _Answers()
    live_now = inside.is_live(dst_off) & ~((dst_off == inside.servers["game"]) & (t - start_ms >= game_end))
    rng_a = rng_ans
    for p in range(len(POPULATIONS)):
        idx = np.flatnonzero(fpop == p)
        m = len(idx)
        if m == 0:
            continue
        if p in (SCANNER, VLF_SCAN, TARGETED_MISS):
            vol.syn_probe(rng, idx)
            if p == SCANNER:  # only live hosts answer, and only some
                answers.add(rng_a, idx[live_now[idx] & (rng.random(m) < 0.25)], "synack", vol)
        elif p == TARGETED_HIT:
            tcp = proto[idx] == PROTO_TCP
            vol.syn_probe(rng, idx[tcp])
            vol.udp(rng, idx[~tcp], 28, 120)
        elif p in (P2P_PEER, VLF_P2P):
            tcp = rng.random(m) < src_tcp_share[src[idx]]
            proto[idx] = np.where(tcp, PROTO_TCP, PROTO_UDP)
            dport[idx] = np.where(tcp, P2P_TCP_PORT, P2P_UDP_PORT)
            ans = rng.random(m) < (0.9 if p == P2P_PEER else 0.35)
            vol.tcp_session(rng, idx[tcp & ans])
            vol.syn_probe(rng, idx[tcp & ~ans])
            vol.udp(rng, idx[~tcp], 30, 200)
            sport[idx[~tcp]] = _peer_ports(rng, int((~tcp).sum()))
            answers.add(rng_a, idx[tcp & ans], "session", vol)
            answers.add(rng_a, idx[~tcp & ans], "udp", vol)
        elif p in (CLIENT, VLF_SMTP):
            web = dport[idx] == 80
            dport[idx[web]] = np.where(rng.random(int(web.sum())) < 0.6, 80, 443)
            vol.tcp_session(rng, idx, 4, 40 if p == CLIENT else 20)
            answers.add(rng_a, idx, "session", vol)
        elif p == VLF_SERVICE:
            tcp = proto[idx] == PROTO_TCP
            vol.tcp_session(rng, idx[tcp], 4, 30)
            vol.udp(rng, idx[~tcp], 30, 600, max_packets=3)
            sport[idx[~tcp]] = _peer_ports(rng, int((~tcp).sum()))
            answers.add(rng_a, idx[tcp], "session", vol)
            answers.add(rng_a, idx[~tcp], "udp", vol)
        elif p == VLF_ANSWERER:  # answers from the service port to the inside host's ephemeral port
            sport[idx] = dport[idx]
            dport[idx] = _ephemeral(rng, m)
            tcp = proto[idx] == PROTO_TCP
            ti = idx[tcp]
            packets = rng.integers(3, 30, len(ti))
            vol.put(ti, packets, packets * rng.integers(52, 1200, len(ti)), SESSION, SYN | ACK, SESSION_REST, rng.integers(20, 60001, len(ti)))
            vol.udp(rng, idx[~tcp], 40, 1400, max_packets=2)
            answers.add(rng_a, ti, "opener", vol, leads=True)
            answers.add(rng_a, idx[~tcp], "udp", vol, leads=True)
        elif p in (GAME_CLIENT, VLF_GAME):
            vol.udp(rng, idx, 53, 53)
            answers.add(rng_a, idx[t[idx] - start_ms < game_end], "udp", vol)
        elif p == BACKSCATTER:
            tcp = proto[idx] == PROTO_TCP
            ti = idx[tcp]
            sport[ti] = VICTIM_PORTS[rng.integers(0, len(VICTIM_PORTS), len(ti))]
            dport[ti] = _ephemeral(rng, len(ti))
            vol.single(rng, ti, src_flags[src[ti]])
            vol.icmp(rng, idx[~tcp])
            sport[idx[~tcp]] = 0
        elif p == VLF_ECHO:
            vol.icmp(rng, idx)
            sport[idx] = 0
        elif p == OTHER_PROTO:
            sport[idx] = 0
            dport[idx] = 0
            crazy = np.isin(proto[idx], IMPLAUSIBLE_PROTOCOLS)
            ci, pi = idx[crazy], idx[~crazy]
            packets = np.floor(_log_uniform(rng, 1e6, 1e8, len(ci))).astype(np.int64)
            vol.put(ci, packets, packets * rng.integers(1, 65, len(ci)), 0, 0, 0, rng.integers(0, 60001, len(ci)))
            packets = rng.integers(1, 21, len(pi))
            vol.put(pi, packets, packets * rng.integers(40, 1401, len(pi)), 0, 0, 0, np.where(packets > 1, rng.integers(1, 60001, len(pi)), 0))
        elif p == NEAR_MATCH:
            vol.single(rng, idx, SYN, 60, 61)
            answers.add(rng_a, idx, "synack", vol, wrong_port=True)
    del live_now, fpop

    # --- the truth, from the inbound flows themselves ---
    truth, counts = _chunk_truth(source_ip, pop, nflows, ndest, src, proto, dport, dst_off, t, inside, plan)

    sip_in = source_ip[src]
    dip_in = (inside.base + dst_off).astype(np.uint32)
    del src, dst_off
    inbound = dict(
        sIP=sip_in, dIP=dip_in, sPort=sport, dPort=dport, protocol=proto, packets=vol.packets, bytes=vol.bytes,
        flags=vol.flags, initialFlags=vol.initial, sessionFlags=vol.session, sTime=t, duration=vol.duration,
    )

    # --- answers: reversed addresses and ports, 0..500 ms later, inside the same hour; the sessions
    # inside hosts opened to answerers: 1..500 ms before the answer, inside the same hour ---
    q = np.concatenate(answers.query) if answers.query else np.empty(0, dtype=np.int64)
    wrong = np.concatenate(answers.wrong_port) if answers.query else np.empty(0, dtype=bool)
    lead = np.concatenate(answers.lead) if answers.query else np.empty(0, dtype=bool)
    av = _concat_volumes(answers.volumes)
    qt = t[q]
    hour_start = np.maximum(qt // MS_PER_HOUR * MS_PER_HOUR, start_ms)
    hour_end = np.minimum((qt // MS_PER_HOUR + 1) * MS_PER_HOUR, end_ms)
    drawn = rng_ans.integers(0, ANSWER_DELAY_MS + 1, len(q))
    delay = np.where(lead, -np.minimum(np.maximum(drawn, 1), qt - hour_start), np.minimum(drawn, hour_end - 1 - qt))
    answer_dport = sport[q]
    answer_dport[wrong] = 1024 + (answer_dport[wrong] - 1024 + rng_ans.integers(1, 64512, int(wrong.sum()))) % 64512
    outbound = dict(
        sIP=dip_in[q], dIP=sip_in[q], sPort=dport[q], dPort=answer_dport, protocol=proto[q], packets=av.packets,
        bytes=av.bytes, flags=av.flags, initialFlags=av.initial, sessionFlags=av.session, sTime=qt + delay,
        duration=av.duration,
    )
    counts.update(inbound=F, answers=int((~lead).sum()), opened=int(lead.sum()))
    spill = ctx.spill_dir / f"chunk-{c:06d}.arrow"
    _spill(plan, (inbound, outbound), spill)
    return _Chunk(spill, truth, counts)


# Spilled flows: the landing columns, sTime as ms from the start of the bucket.
_SPILL_SCHEMA = pa.schema([(name, pa.from_numpy_dtype(np.uint32 if name == "sTime" else dtype)) for name, dtype in _COLUMNS.items()])


def _narrow(values: np.ndarray, dtype, name: str) -> np.ndarray:
    """``values`` as ``dtype``, refusing values that do not fit (a bug in the model, never wrapped)."""
    info = np.iinfo(dtype)
    if len(values) and (values.min() < info.min or values.max() > info.max):
        raise SimulationError(f"simulated {name} out of range for {np.dtype(dtype)}: {values.min()}..{values.max()}")
    return values.astype(dtype, copy=False)


def _spill(plan: _Plan, parts, path: Path) -> None:
    """Write flows bucket by bucket: record batch ``b`` of ``path`` holds the flows of bucket ``b``."""
    t = np.concatenate([p["sTime"] for p in parts])
    bucket = (t - plan.first_ms) // plan.bucket_ms
    assert len(t) == 0 or (bucket.min() >= 0 and bucket.max() < plan.buckets), "a flow's sTime fell outside the window"
    bucket = bucket.astype(np.uint16 if plan.buckets <= 1 << 16 else np.uint32)
    order = np.argsort(bucket, kind="stable")  # radix sort; keeps the flows' order inside a bucket
    cuts = np.r_[0, np.cumsum(np.bincount(bucket, minlength=plan.buckets))]
    columns = []
    for name, dtype in _COLUMNS.items():
        values = np.concatenate([p[name] for p in parts])[order]
        if name == "sTime":
            values = (values - plan.first_ms - bucket[order].astype(np.int64) * plan.bucket_ms).astype(np.uint32)
        else:
            values = _narrow(values, dtype, name)
        columns.append(pa.array(values))
    batch = pa.RecordBatch.from_arrays(columns, schema=_SPILL_SCHEMA)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, _SPILL_SCHEMA) as writer:
        for b in range(plan.buckets):
            writer.write_batch(batch.slice(cuts[b], cuts[b + 1] - cuts[b]))


def _chunk_truth(source_ip, pop, nflows, ndest, src, proto, dport, dst_off, t, inside: _Inside, plan: _Plan):
    """Ground-truth rows of a chunk's sources, computed from their inbound flows (grouped by source),
    and the chunk's counters for the summary."""
    S = len(source_ip)
    flows = np.bincount(src, minlength=S)
    starts = _segment_starts(flows)
    src64 = src.astype(np.int64)
    # distinct destinations: sort (source, destination) pairs (already in source order: timsort's runs)
    shift = int(inside.size - 1).bit_length()
    pairs = np.sort((src64 << shift) | dst_off, kind="stable")
    destinations = np.bincount(pairs[np.r_[True, pairs[1:] != pairs[:-1]]] >> shift, minlength=S)
    del pairs
    target_live = np.minimum.reduceat(inside.is_live(dst_off).astype(np.int8), starts).astype(bool)
    # main (protocol, port): the most frequent, ties to the lowest
    keys = np.sort((src64 << 24) | (proto.astype(np.int64) << 16) | dport.astype(np.int64), kind="stable")
    run = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    run_keys, run_counts = keys[run], np.diff(np.r_[run, len(keys)])
    del keys
    owner = run_keys >> 24
    owner_start = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])  # every source has a run
    most = np.repeat(np.maximum.reduceat(run_counts, owner_start), np.diff(np.r_[owner_start, len(owner)]))
    top = np.flatnonzero(run_counts == most)
    best = run_keys[top[np.r_[True, owner[top][1:] != owner[top][:-1]]]]
    # active hours per source
    hours = np.sort((src64 << 20) | ((t - plan.first_ms) // MS_PER_HOUR), kind="stable")
    hours_per_source = np.bincount(hours[np.r_[True, hours[1:] != hours[:-1]]] >> 20, minlength=S)
    del hours
    truth = dict(
        sIP=source_ip, population=pop.astype(np.uint8), flows=_narrow(flows, np.uint16, "flows per source"),
        destinations=_narrow(destinations, np.uint16, "destinations per source"), protocol=((best >> 16) & 0xFF).astype(np.uint8),
        port=(best & 0xFFFF).astype(np.uint16), target_live=target_live,
    )
    vlf = nflows <= 10
    counts = dict(
        populations=np.bincount(pop, minlength=len(POPULATIONS)), one_flow=int((nflows == 1).sum()),
        vlf=int(vlf.sum()), vlf_single_destination=int((ndest[vlf] == 1).sum()),
        in_1_to_5_hours=int((hours_per_source <= 5).sum()),
    )
    return truth, counts


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
    # clients, vlf_smtp, vlf_answerer and vlf_service get their host with their service, in simulate()
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


def _concat_volumes(parts: list[_Volumes]) -> _Volumes:
    out = _Volumes(0)
    for name in ("packets", "bytes", "flags", "initial", "session", "duration"):
        setattr(out, name, np.concatenate([getattr(p, name) for p in parts]) if parts else np.empty(0, dtype=np.int64))
    return out


def _background(rng, inside: _Inside, hours, start_ms, end_ms, game_end, web_pool, dns_pool) -> dict:
    """Web browsing and DNS look-ups by every live host in every hour."""
    hour_starts = np.array([int(h.timestamp() * 1000) for h in hours], dtype=np.int64)
    lo = np.maximum(hour_starts, start_ms)
    hi = np.minimum(hour_starts + MS_PER_HOUR, end_ms)
    hosts = inside.live
    H, L = len(hours), len(hosts)
    host = np.tile(hosts, H)
    hour_i = np.repeat(np.arange(H), L)
    alive = ~((host == inside.servers["game"]) & (lo[hour_i] - start_ms >= game_end))
    host, hour_i = host[alive], hour_i[alive]
    per = rng.integers(1, 5, len(host))
    host, hour_i = np.repeat(host, per), np.repeat(hour_i, per)
    n = len(host)
    t = lo[hour_i] + np.floor(rng.random(n) * (hi[hour_i] - lo[hour_i])).astype(np.int64)
    dns = rng.random(n) < 0.3
    vol = _Volumes(n)
    vol.tcp_session(rng, np.flatnonzero(~dns), 4, 60)
    vol.udp(rng, np.flatnonzero(dns), 40, 80)
    return dict(
        sIP=(inside.base + host).astype(np.uint32),
        dIP=np.where(dns, dns_pool[rng.integers(0, len(dns_pool), n)], web_pool[rng.integers(0, len(web_pool), n)]),
        sPort=_ephemeral(rng, n),
        dPort=np.where(dns, DNS_PORT, np.where(rng.random(n) < 0.5, 80, 443)),
        protocol=np.where(dns, PROTO_UDP, PROTO_TCP),
        packets=vol.packets, bytes=vol.bytes, flags=vol.flags, initialFlags=vol.initial,
        sessionFlags=vol.session, sTime=t, duration=vol.duration,
    )


def _write_landing(data_dir: Path, ctx: _Context, spills: list[Path], web_pool, dns_pool) -> tuple[list[Path], int]:
    """Bucket by bucket: the chunks' flows and the bucket's background, sorted by sTime, one file per hour."""
    plan = ctx.plan
    written, n_background = [], 0
    files = [pa.OSFile(str(p), "rb") for p in spills]
    try:
        readers = [pa.ipc.open_file(f) for f in files]
        with ThreadPoolExecutor(WORKERS) as pool:
            pending: deque = deque()
            for b in range(plan.buckets):
                hours = plan.bucket(b)
                bucket_start = plan.first_ms + b * plan.bucket_ms
                batches = [r.get_batch(b) for r in readers]
                background = _background(_rng(ctx.entropy, _STREAM_BACKGROUND, b), ctx.inside, hours, plan.start_ms,
                                         plan.end_ms, plan.game_end, web_pool, dns_pool)
                n_background += len(background["sTime"])
                flows = {}
                for i, (name, dtype) in enumerate(_COLUMNS.items()):
                    parts = [batch.column(i).to_numpy() for batch in batches]
                    if name == "sTime":
                        parts = [part.astype(np.int64) + bucket_start for part in parts]
                    parts.append(_narrow(np.asarray(background[name]), dtype, name))
                    flows[name] = np.concatenate(parts)
                del batches
                order = np.argsort(flows["sTime"], kind="stable")
                flows = {name: values[order] for name, values in flows.items()}
                del order
                edges = [hour_ms(h) for h in hours] + [hour_ms(hours[-1]) + MS_PER_HOUR]
                cuts = np.searchsorted(flows["sTime"], edges, side="left")
                assert cuts[0] == 0 and cuts[-1] == len(flows["sTime"]), "a flow's sTime fell outside its bucket"
                for i, hour in enumerate(hours):
                    a, z = cuts[i], cuts[i + 1]
                    if a == z:
                        continue
                    path = landing_dir(data_dir, hour) / LANDING_NAME
                    written.append(path)
                    pending.append(pool.submit(_write_hour, {name: v[a:z] for name, v in flows.items()}, path))
                while len(pending) > 2 * plan.bucket_hours:  # at most about two buckets in memory
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
    finally:
        for f in files:
            f.close()
    return written, n_background


def _write_hour(flows: dict, path: Path) -> Path:
    return write_parquet(_flow_table(flows), path)


def _flow_table(flows: dict) -> pa.Table:
    """What :func:`~vlf_dagster.flows.schema.conform` makes of ``flows`` (exact types, checked by
    :func:`_narrow`) at a quarter of its cost: the other fields 0, the IPv6 ones null."""
    n = len(flows["sTime"])
    arrays = []
    for f in FLOW_SCHEMA:
        if f.name in flows:
            arrays.append(pa.array(flows[f.name], type=f.type))
        elif f.nullable:
            arrays.append(pa.nulls(n, f.type))
        else:
            arrays.append(pa.array(np.zeros(n, dtype=numpy_dtype(f.name)), type=f.type))
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)


def _remove_stale_hours(data_dir: Path, written: list[Path]) -> None:
    """A previous simulation over a longer window must not leave its hours behind."""
    keep = {p.resolve() for p in written}
    for old in sorted((data_dir / "landing").glob(f"dt=*/hour=*/{LANDING_NAME}")):
        if old.resolve() not in keep:
            old.unlink()


TRUTH_SCHEMA = pa.schema(
    [("sIP", pa.uint32()), ("population", pa.string()), ("flows", pa.int64()), ("destinations", pa.int64()),
     ("protocol", pa.uint8()), ("port", pa.uint16()), ("target_live", pa.bool_())]
)
TRUTH_ROW_GROUP = 1 << 20


def _write_ground_truth(parts: list[dict], path: Path) -> Path:
    """One row per source, sorted by sIP, from the chunks' rows (which are consumed).

    Written a row group at a time, so only the compact sorted columns are held whole."""
    sip = np.concatenate([p.pop("sIP") for p in parts])
    order = np.argsort(sip)  # addresses are distinct
    columns = {"sIP": sip[order]}
    del sip
    for name in TRUTH_SCHEMA.names[1:]:
        columns[name] = np.concatenate([p.pop(name) for p in parts])[order]
    del order
    names = pa.array(list(POPULATIONS), pa.string())
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, TRUTH_SCHEMA, **PARQUET_OPTIONS) as writer:
        for a in range(0, len(columns["sIP"]), TRUTH_ROW_GROUP):
            rows = {name: values[a : a + TRUTH_ROW_GROUP] for name, values in columns.items()}
            rows["population"] = names.take(pa.array(rows["population"]))
            writer.write_table(pa.table(rows, schema=TRUTH_SCHEMA))
    return Path(path)


def _service_key(protocol: int, port: int) -> str:
    return f"{'tcp' if protocol == PROTO_TCP else 'udp'}/{port}"


def _details(site, config, plan: _Plan, inside: _Inside, counts: dict, *, n_background: int) -> dict:
    """Facts about the run for summary.json (the window, the inside hosts and the headline shares)."""
    S = config.sources
    ip = lambda off: int_to_ipv4(inside.base + int(off))  # noqa: E731
    share = lambda n, d: round(float(n / d), 4) if d else 0.0  # noqa: E731
    return {
        "site": site.name,
        "days": config.days,
        "seed": config.seed,
        "start": plan.start.strftime("%Y-%m-%dT%H:%M"),
        "end": plan.end.strftime("%Y-%m-%dT%H:%M"),
        "inside_network": f"{int_to_ipv4(inside.base)}/{32 - int(np.log2(inside.size))}",
        "live_hosts": [ip(o) for o in inside.live],
        "servers": {role: ip(o) for role, o in inside.servers.items()},
        "game_server_until": (plan.start + timedelta(milliseconds=int(plan.game_end))).strftime("%Y-%m-%dT%H:%M:%S"),
        "targeted_hit": {_service_key(pr, port): ip(h) for (pr, port, _), h in zip(TARGETED_HIT_PORTS, inside.hit_hosts)},
        "targeted_miss": {f"tcp/{port}": ip(h) for (_, port, _), h in zip(TARGETED_MISS_PORTS, inside.miss_hosts)},
        "mail_hosts": [ip(o) for o in inside.mail_hosts],
        "enterprise_originated": {
            _service_key(pr, port): [ip(o) for o in pool] for (pr, port, *_), pool in zip(ENTERPRISE_SERVICES, inside.open_pools)
        },
        "outside_services": {
            _service_key(pr, port): [ip(o) for o in pool] for (pr, port, *_), pool in zip(OUTSIDE_SERVICES, inside.service_pools)
        },
        "interesting_udp_ports": [port for port, _ in INTERESTING_UDP_PORTS],
        "population_descriptions": dict(POPULATION_DESCRIPTIONS),
        "answers": int(counts["answers"]),
        "enterprise_sessions": int(counts["opened"]),
        "background_flows": int(n_background),
        "share_one_flow": share(counts["one_flow"], S),
        "share_vlf_flows": share(counts["vlf"], S),
        "share_single_destination_of_vlf": share(counts["vlf_single_destination"], counts["vlf"]),
        "share_in_1_to_5_hours": share(counts["in_1_to_5_hours"], S),
    }
