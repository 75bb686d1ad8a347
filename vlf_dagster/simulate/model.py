"""The simulated site's model: the study's numbers, its populations and the tables they draw from.

Scaled by ``days`` and ``sources``, with the study's proportions:

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
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..flows.flags import ACK, FIN, PSH, RST, SYN
from ..flows.schema import PROTO_ICMP, PROTO_TCP, PROTO_UDP

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
MAX_RETURNING = 0.5  # SimulationConfig.returning: at most half the eligible sources come back


class SimulationError(ValueError):
    """A site or configuration the simulator cannot simulate, or a simulated value out of its column's range."""


@dataclass(frozen=True)
class SimulationConfig:
    """The model's scale and seed: ``days`` from the site's start, ``sources`` outside sources."""

    days: int = 7
    sources: int = 20000  # number of distinct outside sources that send inbound flows
    seed: int = 1
    # port campaigns planted on top (simulate/campaigns.py), each with its own extra sources; 0 plants
    # none and leaves every other output as it was
    campaigns: int = 0
    # share of the eligible outside sources (simulate/returns.py) that come back: their flows split
    # into 2-5 visits days apart, listed in sim/returns.parquet; 0 plants none and leaves every
    # output as it was
    returning: float = 0.0

    def __post_init__(self):
        share = self.returning
        if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0.0 <= share <= MAX_RETURNING:
            raise SimulationError(f"returning (--returning) must be a share from 0 to {MAX_RETURNING} of the "
                                  f"eligible sources (got {share!r})")
