"""The flows of a chunk's sources: their inbound flows, the outbound flows paired with them, and the background.

:func:`_expand` turns the per-source attributes of :mod:`.populations` into inbound flows (grouped
by source), :func:`_inbound` gives them protocols, ports and volumes population by population and
notes which of them an inside host answers (or, for vlf_answerer, opened), :func:`_outbound` makes
those outbound flows, and :func:`_background` is the live hosts' own web browsing and DNS look-ups.
Flows are dicts of numpy columns named as the landing schema's fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..flows.flags import ACK, SYN
from ..flows.schema import MS_PER_HOUR, PROTO_TCP, PROTO_UDP
from .model import (
    ANSWER_DELAY_MS, BACKSCATTER, CLIENT, DNS_PORT, FALLBACK_SHARE, GAME_CLIENT, GAME_FIRST_PHASE_SHARE,
    IMPLAUSIBLE_PROTOCOLS, INTERESTING_SHARE, INTERESTING_UDP_PORTS, NEAR_MATCH, OTHER_PROTO, P2P_PEER,
    P2P_TCP_PORT, P2P_UDP_PORT, POPULATIONS, SCANNER, SESSION, SESSION_REST, TARGETED_HIT, TARGETED_MISS,
    VICTIM_PORTS, VLF_ANSWERER, VLF_ECHO, VLF_GAME, VLF_P2P, VLF_SCAN, VLF_SERVICE, VLF_SMTP, WINDOWS_EPHEMERAL,
    WINDOWS_SHARE,
)
from .network import _Inside
from .populations import _ephemeral, _log_uniform, _pick, _segment_starts, _Sources

# --- ports --------------------------------------------------------------------------------------


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


# --- volumes and answers ------------------------------------------------------------------------


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


def _concat_volumes(parts: list[_Volumes]) -> _Volumes:
    out = _Volumes(0)
    for name in ("packets", "bytes", "flags", "initial", "session", "duration"):
        setattr(out, name, np.concatenate([getattr(p, name) for p in parts]) if parts else np.empty(0, dtype=np.int64))
    return out


# --- the chunk's flows --------------------------------------------------------------------------


def _expand(rng: np.random.Generator, sources: _Sources, size: int, start_ms: int, window: int, game_end: int):
    """The sources' inbound flows, grouped by source: (source index, population, inside
    destination offset, sTime) per flow; ``size`` is the inside network's."""
    F = int(sources.nflows.sum())
    src = np.repeat(np.arange(len(sources.pop)), sources.nflows)
    k = np.arange(F) - np.repeat(_segment_starts(sources.nflows), sources.nflows)
    fpop = sources.pop[src]
    dst_off = (sources.base[src] + (k % sources.ndest[src]) * sources.step[src]) % size
    u = rng.random(F)
    seq = fpop == SCANNER
    u[seq] = (k[seq] + u[seq]) / sources.nflows[src[seq]]  # sweeps walk the addresses in order
    t = sources.t0[src] + np.floor(u * sources.span[src]).astype(np.int64)
    del u, k
    gc = np.flatnonzero(fpop == GAME_CLIENT)  # regulars: every flow on its own, mostly while the server lives
    first = rng.random(len(gc)) < GAME_FIRST_PHASE_SHARE
    t[gc] = np.where(first, rng.integers(0, max(1, game_end), len(gc)), rng.integers(min(game_end, window - 1), window, len(gc)))
    np.clip(t, 0, window - 1, out=t)
    t += start_ms
    # an answerer's flow follows its opener within the hour: never on the hour's first millisecond
    ans = np.flatnonzero(fpop == VLF_ANSWERER)
    t[ans] += t[ans] == np.maximum(t[ans] // MS_PER_HOUR * MS_PER_HOUR, start_ms)
    return src, fpop, dst_off, t


def _inbound(rng: np.random.Generator, rng_a: np.random.Generator, sources: _Sources, src, fpop, dst_off, t,
             inside: _Inside, start_ms: int, game_end: int):
    """Population by population, the inbound flows' (protocol, sPort, dPort, volumes) and the
    :class:`_Answers` of the inside hosts (drawn from ``rng_a``)."""
    F = len(src)
    proto = sources.proto[src]
    dport = sources.port[src]
    sport = _ephemeral(rng, F)
    vol = _Volumes(F)
    answers = _Answers()
    live_now = inside.is_live(dst_off) & ~((dst_off == inside.servers["game"]) & (t - start_ms >= game_end))
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
            tcp = rng.random(m) < sources.tcp_share[src[idx]]
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
            vol.single(rng, ti, sources.flags[src[ti]])
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
    return proto, sport, dport, vol, answers


def _outbound(rng: np.random.Generator, answers: _Answers, t, sip_in, dip_in, sport, dport, proto, start_ms: int,
              end_ms: int) -> tuple[dict, int, int]:
    """The outbound flows paired with the inbound flows (sTime ``t``, addresses ``sip_in``, ``dip_in``,
    ports, protocol): reversed addresses and ports, 0..500 ms later, inside the same hour; the
    sessions inside hosts opened to answerers: 1..500 ms before the answer, inside the same hour.
    Also how many are answers and how many opened sessions."""
    q = np.concatenate(answers.query) if answers.query else np.empty(0, dtype=np.int64)
    wrong = np.concatenate(answers.wrong_port) if answers.query else np.empty(0, dtype=bool)
    lead = np.concatenate(answers.lead) if answers.query else np.empty(0, dtype=bool)
    av = _concat_volumes(answers.volumes)
    qt = t[q]
    hour_start = np.maximum(qt // MS_PER_HOUR * MS_PER_HOUR, start_ms)
    hour_end = np.minimum((qt // MS_PER_HOUR + 1) * MS_PER_HOUR, end_ms)
    drawn = rng.integers(0, ANSWER_DELAY_MS + 1, len(q))
    delay = np.where(lead, -np.minimum(np.maximum(drawn, 1), qt - hour_start), np.minimum(drawn, hour_end - 1 - qt))
    answer_dport = sport[q]
    answer_dport[wrong] = 1024 + (answer_dport[wrong] - 1024 + rng.integers(1, 64512, int(wrong.sum()))) % 64512
    outbound = dict(
        sIP=dip_in[q], dIP=sip_in[q], sPort=dport[q], dPort=answer_dport, protocol=proto[q], packets=av.packets,
        bytes=av.bytes, flags=av.flags, initialFlags=av.initial, sessionFlags=av.session, sTime=qt + delay,
        duration=av.duration,
    )
    return outbound, int((~lead).sum()), int(lead.sum())


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
