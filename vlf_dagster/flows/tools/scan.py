"""Scan detection as SiLK's rwscan does it: Threshold Random Walk (Jung, Paxson, Berger and
Balakrishnan, 2004), vectorised over every source at once.

rwscan (``src/rwscan/rwscan.c``, ``invoke_trw_model``) reads records sorted by sIP, protocol and
dIP; an *event* is one (sIP, protocol) group, and TRW judges TCP events only.  Walking an event's
records in that order, the first record to each new dIP is a trial: a **hit** if the dIP is in the
internal set (a host that exists) or the record is not a bare SYN (flags masked to F|S|R|A), a
**miss** otherwise.  After each new dIP the likelihood ratio is recomputed as
``(theta1/theta0)^hits * ((1-theta1)/(1-theta0))^misses``; after each record, *while every record
so far was a bare SYN*, a ratio above ``beta/alpha`` (99) makes the source a scanner and one below
``(1-beta)/(1-alpha)`` (~0.0101) benign, and the walk stops.  It gives up after 100,000 records.
A scanner's row covers the whole event: its records, packets, bytes, first start and rwscan's
end time (the end of a record that starts after the end time so far, in walking order).

Here the walk is a set of cumulative sums over the sorted records (no loop per record); only the
end-time recurrence is iterated, over the scanners' records alone, once per update of the end time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..sets import IPSet

TCP = 6
SYN, STATE_FLAGS = 0x02, 0x17  # F|S|R|A, rwscan's TCP_FLAGS_STATE
FLOW_CUTOFF = 100_000  # rwscan's RWSCAN_FLOW_CUTOFF: TRW gives up after this many records
NO_DIP = 0xFFFFFFFF  # rwscan's "previous dIP" before an event's first record

SCANNER_SCHEMA = pa.schema([
    pa.field("sIP", pa.uint32()), pa.field("proto", pa.uint8()),
    pa.field("stime", pa.int64()), pa.field("etime", pa.int64()),  # seconds since the epoch, UTC
    pa.field("flows", pa.uint64()), pa.field("packets", pa.uint64()), pa.field("bytes", pa.uint64()),
    pa.field("scan_model", pa.uint8()), pa.field("scan_prob", pa.float64()),
])
COLUMNS = ["sIP", "sIPv6", "dIP", "dIPv6", "sPort", "dPort", "protocol", "flags", "packets", "bytes", "sTime", "duration"]


@dataclass(frozen=True)
class TrwModel:
    """rwscan's TRW constants (rwscan.h): alpha, beta fixed; theta0/theta1 its --trw-theta0/1."""

    theta0: float = 0.8
    theta1: float = 0.2
    alpha: float = 0.01
    beta: float = 0.99

    @property
    def eta0(self) -> float:
        return (1 - self.beta) / (1 - self.alpha)

    @property
    def eta1(self) -> float:
        return self.beta / self.alpha


HYBRID, TRW, BLR = 0, 1, 2  # rwscan's --scan-model numbers
BLR_MIN_FLOWS = 32  # rwscan's EVENT_FLOW_THRESHOLD: smaller events are not judged by BLR
SMALL_PACKETS, PAYLOAD_BYTES = 3, 60  # SMALL_PKT_CUTOFF, PACKET_PAYLOAD_CUTOFF
ACK, RST = 0x10, 0x04
# rwscan.h's TCP_BETA0..21: the logistic regression over the event's TCP ratios
TCP_BETAS = dict(intercept=-2.838353611, noack=3.309023427, small=-0.157047027, sport_per_dip=-0.002319304,
                 payload=-1.047413699, unique_dip=3.163018548, backscatter=-3.260270447)


ICMP_BETAS = dict(intercept=-4.307079, subnet_run=-0.08245704, dip_run=-0.02800612, subnet_dips=0.04877852,
                  destinations=-0.000006398878, echo=4.016751)  # rwscan.h's ICMP_BETA0..22
UDP_BETAS = dict(intercept=-1.887907966, small=0.543683505, subnet_run=0.025150994, low_port_hits=0.529094801,
                 low_port_run=-1.244182168, sport_per_destination=-0.001841634, payload=-0.224548546,
                 unique_sport=-0.697943155)  # rwscan.h's UDP_BETA0..20
LOW_PORTS = 1024  # rwscan's low-port bitmap
ICMP, UDP = 1, 17
ECHO_TYPES = (8, 13, 15, 17)  # echo, timestamp, information and address mask requests


def find_scanners(flows: pa.Table, internal: IPSet, model: TrwModel = TrwModel(), scan_model: int = HYBRID) -> pa.Table:
    """One row per (sIP, protocol) event called a scan, in sIP then protocol order (rwscan's
    output, as a table).

    ``scan_model``: TRW (1) judges TCP events; HYBRID (0) adds BLR for what TRW leaves benign or
    unknown (not its floods or backscatter) and for ICMP and UDP; BLR (2) alone.  BLR needs 32
    records.
    """
    records = _ipv4_records(flows)
    n = records.num_rows
    if n == 0:
        return SCANNER_SCHEMA.empty_table()
    col = lambda name: records.column(name).to_numpy()
    sip, proto, dip = col("sIP"), col("protocol"), col("dIP")
    order = np.lexsort((dip, proto, sip))  # stable: records of one (sIP, dIP) keep their input order
    sip, proto, dip = sip[order], proto[order], dip[order]
    flags = col("flags")[order]
    first = np.r_[True, (sip[1:] != sip[:-1]) | (proto[1:] != proto[:-1])]
    starts = np.flatnonzero(first)
    event = np.cumsum(first) - 1
    sizes = np.diff(np.r_[starts, n])
    kind = proto[starts]

    scan = np.zeros(len(starts), bool)
    used = np.full(len(starts), TRW, np.uint8)
    prob = np.zeros(len(starts))
    blr_allowed = np.ones(len(starts), bool)
    if scan_model in (HYBRID, TRW):
        trw_scan, likelihood, after_trw = _trw(dip, flags, starts, event, internal, model)
        tcp = kind == TCP
        scan, prob = trw_scan & tcp, np.where(tcp, likelihood, 0.0)
        blr_allowed = np.where(tcp, after_trw, True)
    if scan_model in (HYBRID, BLR):
        p = np.zeros(len(starts))
        for code in (TCP, ICMP, UDP):
            judged = blr_allowed & (sizes >= BLR_MIN_FLOWS) & (kind == code)  # only these need the metrics
            if judged.any():
                keep = np.repeat(judged, sizes)
                part_sizes = sizes[judged]
                part_starts = np.r_[0, np.cumsum(part_sizes)[:-1]]
                part_event = np.repeat(np.arange(len(part_sizes)), part_sizes)
                rows = order[keep]
                if code == TCP:
                    p[judged] = _blr_tcp(records, rows, sip[keep], dip[keep], flags[keep], part_starts, part_event,
                                         part_sizes)
                elif code == ICMP:
                    p[judged] = _blr_icmp(dip[keep], col("dPort")[rows], col("sTime")[rows], part_starts, part_event,
                                          part_sizes)
                else:
                    p[judged] = _blr_udp(dip[keep], col("sPort")[rows], col("dPort")[rows], col("packets")[rows],
                                         col("bytes")[rows], col("sTime")[rows], part_starts, part_event, part_sizes)
        blr_scan = blr_allowed & (sizes >= BLR_MIN_FLOWS) & (p > 0.5)
        scan = scan | blr_scan
        used = np.where(blr_scan, BLR, used).astype(np.uint8)
        prob = np.where(blr_scan, p, prob)
    if not scan.any():
        return SCANNER_SCHEMA.empty_table()

    chosen = np.flatnonzero(scan)
    rows = order[np.repeat(scan, sizes)]
    start_ms = col("sTime")[rows]
    end_ms = start_ms + col("duration")[rows].astype(np.int64)
    offsets = np.r_[0, np.cumsum(sizes[chosen])[:-1]]
    packets = np.add.reduceat(col("packets")[rows].astype(np.uint64), offsets)
    octets = np.add.reduceat(col("bytes")[rows].astype(np.uint64), offsets)
    start_s, end_s = start_ms // 1000, end_ms // 1000
    return pa.table({
        "sIP": sip[starts[chosen]], "proto": kind[chosen].astype(np.uint8),
        "stime": np.minimum.reduceat(start_s, offsets), "etime": _rwscan_etime(start_s, end_s, offsets),
        "flows": sizes[chosen].astype(np.uint64), "packets": packets, "bytes": octets,
        "scan_model": used[chosen], "scan_prob": prob[chosen],
    }, schema=SCANNER_SCHEMA)


def _trw(dip, flags, starts, event, internal: IPSet, model: TrwModel):
    """Per event: TRW's scanner verdict, its likelihood ratio, and whether BLR may judge it next
    (TRW said benign or unknown, not flood or backscatter)."""
    n = len(dip)
    idx = np.arange(n)
    pos = idx - starts[event]
    previous = np.r_[NO_DIP, dip[:-1]].astype(np.int64)
    previous[starts] = NO_DIP
    new_dip = dip.astype(np.int64) != previous
    syn = (flags & STATE_FLAGS) == SYN
    inside = internal.contains_ipv4(dip)
    hits = _running(new_dip & (inside | ~syn), starts, event)
    misses = _running(new_dip & ~inside & syn, starts, event)
    with np.errstate(over="ignore", under="ignore"):
        ratio = np.power(model.theta1 / model.theta0, hits) * np.power((1 - model.theta1) / (1 - model.theta0), misses)
    # the ratio holds from one new dIP to the next; before an event's first new dIP it is 0 (calloc)
    last_new = np.maximum.accumulate(np.where(new_dip, idx, -1))
    likelihood = np.where(last_new >= starts[event], ratio[np.maximum(last_new, 0)], 0.0)
    all_syn = _running(~syn, starts, event) == 0
    decides = all_syn & (pos <= FLOW_CUTOFF) & ((likelihood > model.eta1) | (likelihood < model.eta0))
    decision = np.minimum.reduceat(np.where(decides, idx, n), starts)
    decided = decision < n
    at = np.where(decided, decision, 0)
    scan = decided & (likelihood[at] > model.eta1)
    # undecided events: the counters of the records walked (all, or up to the give-up) say flood or backscatter
    walked = pos <= FLOW_CUTOFF + 1
    count = lambda mask: np.add.reduceat((mask & walked).astype(np.int64), starts)
    walked_flows, syns, dips = count(np.ones(n, bool)), count(syn), count(new_dip)
    backscatter = count(np.isin(flags, (RST, SYN | ACK, RST | ACK)))
    flood_answers = count(np.isin(flags, (RST, SYN | RST, RST | ACK)))
    is_backscatter = (backscatter == walked_flows) & (dips > 3) & (walked_flows > 100)
    is_flood = ((dips == 1) & (syns >= walked_flows * 0.5) & (syns + flood_answers == walked_flows)
                & (walked_flows > 10))
    blr_allowed = ~scan & (decided | ~(is_backscatter | is_flood))
    return scan, np.where(decided, likelihood[at], likelihood[np.r_[starts[1:], n] - 1]), blr_allowed


def _blr_tcp(tcp, order, sip, dip, flags, starts, event, sizes) -> np.ndarray:
    """rwscan's TCP Bayesian logistic regression: each event's scan probability."""
    packets = tcp.column("packets").to_numpy()[order].astype(np.int64)
    octets = tcp.column("bytes").to_numpy()[order].astype(np.int64)
    sport = tcp.column("sPort").to_numpy()[order]
    per_event = lambda mask: np.add.reduceat(mask.astype(np.int64), starts)
    noack = per_event((flags & ACK) == 0)
    small = per_event(packets < SMALL_PACKETS)
    payload = per_event(octets // np.maximum(packets, 1) > PAYLOAD_BYTES)
    backscatter = per_event(np.isin(flags, (RST, SYN | ACK, RST | ACK)))
    new_dip = np.r_[True, dip[1:] != dip[:-1]] | np.isin(np.arange(len(dip)), starts)
    unique_dips = per_event(new_dip)
    # sources ports counted as rwscan's calculate_shared_metrics leaves them: those of the last
    # (highest) dIP, the records sorted by dIP and sPort
    by_port = np.lexsort((sport, dip, sip))
    d, sp = dip[by_port], sport[by_port]
    ev = event[by_port]
    last_dip = np.maximum.reduceat(dip, starts)[ev] == d
    new_port = np.r_[True, (sp[1:] != sp[:-1]) | (d[1:] != d[:-1]) | (ev[1:] != ev[:-1])]
    sport_count = np.bincount(ev, weights=new_port & last_dip, minlength=len(starts))
    b = TCP_BETAS
    y = (b["intercept"] + b["noack"] * noack / sizes + b["small"] * small / sizes
         + b["sport_per_dip"] * sport_count / unique_dips + b["payload"] * payload / sizes
         + b["unique_dip"] * unique_dips / sizes + b["backscatter"] * backscatter / sizes)
    return np.exp(y) / (1.0 + np.exp(y))


def _ipv4_records(flows: pa.Table) -> pa.Table:
    """ICMP, TCP and UDP records with IPv4 addresses (rwscan is IPv4 only), the columns read."""
    import pyarrow.compute as pc

    keep = pc.is_in(flows.column("protocol"), pa.array([ICMP, TCP, UDP], flows.schema.field("protocol").type))
    if "sIPv6" in flows.column_names:
        keep = pc.and_(keep, pc.and_(pc.is_null(flows.column("sIPv6")), pc.is_null(flows.column("dIPv6"))))
    return flows.select([c for c in COLUMNS if c in flows.column_names]).filter(keep)


def _running(mask: np.ndarray, starts: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Count of True in ``mask`` from each record's event start up to and including the record."""
    total = np.cumsum(mask, dtype=np.int64)
    before = np.r_[0, total][starts]
    return total - before[event]


def _blr_icmp(dip, dport, stime, starts, event, sizes) -> np.ndarray:
    """rwscan's ICMP Bayesian logistic regression (calculate_icmp_metrics), each event's probability.

    rwscan walks the event sorted by stime, then (stably) by dIP; its counters are uint8 and its
    maxima are taken where the /24 changes, quirks kept: the dIP run at an event's end is never
    counted, and a run carries over from one /24 to the next."""
    n = len(dip)
    o = np.lexsort((np.arange(n), stime, dip, event))
    d, p, ev = dip[o].astype(np.int64), dport[o], event[o]
    c = d >> 8
    last = np.r_[ev[1:] != ev[:-1], True]
    nd = np.r_[d[1:], -1]
    same_c = ~last & (c == (nd >> 8))
    change = same_c & (d != nd)
    step = change & (nd - d == 1)
    gap = change & ~step
    n_events = len(starts)
    # the most dIPs in one /24 (uint8), at least 1
    seg_first = np.r_[True, ~same_c[:-1]]
    seg = np.cumsum(seg_first) - 1
    seg_dips = (1 + np.bincount(seg, weights=change).astype(np.int64)) % 256
    seg_event = ev[seg_first]
    subnet_dips = np.maximum(1, _max_by(seg_dips, seg_event, n_events))
    # the longest run of consecutive /24s
    seg_c = c[seg_first]
    chained = np.r_[False, (seg_event[1:] == seg_event[:-1]) & (seg_c[1:] - seg_c[:-1] == 1)]
    chain = np.cumsum(~chained) - 1
    chain_len = np.bincount(chain)
    subnet_run = np.maximum(1, _max_by(chain_len, seg_event[~chained], n_events))
    # the longest run of consecutive dIPs inside /24s, as counted when a gap ends it
    gap_at = np.flatnonzero(gap)
    steps = np.cumsum(step)
    before = np.r_[0, steps][np.maximum.accumulate(np.where(np.r_[True, gap[:-1]] | np.r_[True, last[:-1]],
                                                             np.arange(n), 0))]
    run_at_gap = (1 + steps[gap_at] - step[gap_at] - before[gap_at]) % 256
    dip_run = np.maximum(1, _max_by(run_at_gap, ev[gap_at], n_events))
    # distinct (dIP, type/code) steps in walking order, and the share of echo-like requests
    destinations = np.bincount(ev, weights=np.r_[True, (d[1:] != d[:-1]) | (p[1:] != p[:-1]) | (ev[1:] != ev[:-1])],
                               minlength=n_events)
    echo = np.bincount(ev, weights=np.isin(p >> 8, ECHO_TYPES) & ((p & 0xFF) == 0), minlength=n_events)
    b = ICMP_BETAS
    y = (b["intercept"] + b["subnet_run"] * subnet_run + b["dip_run"] * dip_run + b["subnet_dips"] * subnet_dips
         + b["destinations"] * destinations + b["echo"] * echo / sizes)
    return np.exp(y) / (1.0 + np.exp(y))


def _blr_udp(dip, sport, dport, packets, octets, stime, starts, event, sizes) -> np.ndarray:
    """rwscan's UDP Bayesian logistic regression (calculate_udp_metrics), each event's probability.

    The walk is ICMP's order (stime, then stably dIP).  Quirks kept: a dIP's low-port bitmap starts
    with the port of the record before it (the previous dIP's last), not its own first record's; a
    run of low ports reaching port 1023 is never counted; the run of consecutive dIPs is reset only
    when it beats the /24's maximum so far, and is carried from one /24 to the next."""
    n, n_events = len(dip), len(starts)
    o = np.lexsort((np.arange(n), stime, dip, event))
    d, sp, dp, ev = dip[o].astype(np.int64), sport[o], dport[o].astype(np.int64), event[o]
    pk, by = packets[o].astype(np.int64), octets[o].astype(np.int64)
    per_event = lambda mask: np.bincount(ev, weights=mask, minlength=n_events)
    small = per_event(pk < SMALL_PACKETS)
    payload = per_event(by // np.maximum(pk, 1) > PAYLOAD_BYTES)
    first = np.r_[True, ev[1:] != ev[:-1]]
    last = np.r_[ev[1:] != ev[:-1], True]
    new_dip = first | np.r_[True, d[1:] != d[:-1]]
    destinations = per_event(new_dip | np.r_[True, dp[1:] != dp[:-1]])
    # source ports: changes inside the event's last dIP, and distinct values (65535 lies outside the bitmap)
    last_dip = np.maximum.reduceat(d, starts)[ev] == d
    sport_count = 1 + per_event(last_dip & ~new_dip & np.r_[False, sp[1:] != sp[:-1]])
    keys = np.unique(ev.astype(np.int64) * 65536 + sp.astype(np.int64))
    keys = keys[keys % 65536 != 65535]
    unique_sports = np.bincount(keys // 65536, minlength=n_events)
    # low destination ports per dIP: the record before the dIP (its own first for the event's first), then the rest
    group = np.cumsum(new_dip) - 1
    seed = np.where(first, dp, np.r_[0, dp[:-1]])
    ports = np.r_[seed[new_dip], dp[~new_dip]]
    owners = np.r_[group[new_dip], group[~new_dip]]
    low = ports < LOW_PORTS
    pairs = np.unique(owners[low] * LOW_PORTS + ports[low])
    pair_group, pair_port = pairs // LOW_PORTS, pairs % LOW_PORTS
    group_event = ev[new_dip]
    low_hits = _max_by(np.bincount(pair_group, minlength=len(group_event)), group_event, n_events)
    chained = np.r_[False, (pair_group[1:] == pair_group[:-1]) & (pair_port[1:] == pair_port[:-1] + 1)][:len(pairs)]
    run_id = np.cumsum(~chained) - 1
    run_len = np.bincount(run_id, minlength=0)
    run_last_port = pair_port[np.r_[np.flatnonzero(~chained)[1:] - 1, len(pairs) - 1]] if len(pairs) else pair_port
    counted = run_last_port != LOW_PORTS - 1
    run_group = pair_group[~chained]
    low_run = _max_by(run_len[counted], group_event[run_group[counted]], n_events)
    subnet_run = _udp_subnet_runs(d, ev, first, last, n_events)
    b = UDP_BETAS
    y = (b["intercept"] + b["small"] * small / sizes + b["subnet_run"] * subnet_run + b["low_port_hits"] * low_hits
         + b["low_port_run"] * low_run + b["sport_per_destination"] * sport_count / destinations
         + b["payload"] * payload / sizes + b["unique_sport"] * unique_sports / sizes)
    return np.exp(y) / (1.0 + np.exp(y))


def _udp_subnet_runs(d, ev, first, last, n_events) -> np.ndarray:
    """rwscan's max_class_c_dip_run_length for UDP events (records in walking order).

    Between records: the next dIP one above in the same /24 is a step (run + 1); a larger jump in
    the same /24 is a gap, which resets the run to 1 only if it beats the /24's maximum (which it
    then becomes); a new /24 sets the maximum back to 1.  The result is the largest maximum, the
    run at the event's end included.  Each pass finds every event's next reset."""
    nd = np.r_[d[1:], -1]
    same_c = ~last & ((d >> 8) == (nd >> 8))
    step = same_c & (nd - d == 1)
    gap = same_c & (nd - d > 1)
    segment = np.cumsum(np.r_[True, ~same_c[:-1]]) - 1  # each record's /24 stretch
    steps_before = np.r_[0, np.cumsum(step)[:-1]]  # steps strictly before each transition
    start_steps = steps_before[first]
    gaps = np.flatnonzero(gap)
    g_ev, g_seg, g_steps = ev[gaps], segment[gaps], steps_before[gaps]
    base = start_steps.copy()  # steps before the run began
    best = np.ones(n_events, np.int64)  # the /24's maximum
    seg_now = segment[first].copy()
    at = np.full(n_events, -1)
    metric = np.ones(n_events, np.int64)
    while len(gaps):
        run = 1 + g_steps - base[g_ev]
        same = g_seg == seg_now[g_ev]
        beats = (gaps > at[g_ev]) & np.where(same, run > best[g_ev], run > 1)
        nxt = np.full(n_events, len(gaps))
        np.minimum.at(nxt, g_ev[beats], np.flatnonzero(beats))
        moving = nxt < len(gaps)
        if not moving.any():
            break
        k = nxt[moving]
        won = 1 + g_steps[k] - base[moving]
        best[moving], base[moving], seg_now[moving], at[moving] = won, g_steps[k], g_seg[k], gaps[k]
        metric[moving] = np.maximum(metric[moving], won)
    total_steps = np.bincount(ev, weights=step, minlength=n_events).astype(np.int64) + start_steps
    return np.maximum(metric, 1 + total_steps - base)


def _max_by(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """The largest value of each group (0 where a group has none)."""
    out = np.zeros(n_groups, np.int64)
    np.maximum.at(out, groups, values.astype(np.int64))
    return out


def _rwscan_etime(start_s: np.ndarray, end_s: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """rwscan's event end time: the first record's end, then the end of each record that starts
    after the end time so far.  Those records form a chain (each the first after the one before
    to start past its end): the next link of every record is found by descending a sparse table of
    start maxima, and each chain's last link by pointer doubling, O(n log n) with no loop per record."""
    n = len(start_s)
    bound = np.repeat(np.r_[offsets[1:], n], np.diff(np.r_[offsets, n]))  # each record's event end
    levels = [start_s]
    while (1 << len(levels)) <= n:
        half, prev = 1 << (len(levels) - 1), levels[-1]
        levels.append(np.maximum(prev[:-half], prev[half:]))  # max of start over [i, i + 2^level)
    # next link: the first record after j, in its event, that starts after j ends
    pos = np.arange(1, n + 1)
    for level in range(len(levels) - 1, -1, -1):
        width, table = 1 << level, levels[level]
        fits = pos + width <= bound
        skip = fits.copy()
        skip[fits] = table[pos[fits]] <= end_s[fits]
        pos[skip] += width
    link = np.where((pos < bound) & (start_s[np.minimum(pos, n - 1)] > end_s), pos, n)
    # the chain's last link from each event's first record
    jumps, at = [np.r_[link, n]], offsets.copy()
    while (1 << len(jumps)) <= n:
        jumps.append(jumps[-1][jumps[-1]])
    for jump in reversed(jumps):
        ahead = jump[at]
        at = np.where(ahead < n, ahead, at)
    return end_s[at]
