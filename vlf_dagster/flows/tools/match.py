"""rwmatch: label the query and response flows that belong to the same conversation.

Semantics are SiLK 3.19's ``rwmatch.c`` (see docs/silk-semantics.md section 7):

* ``relate`` pairs ``(Q, R)`` are one-way: field Q of a query record must equal field R of a
  response record.  The query side is sorted by its Q fields then sTime, the response side by its
  R fields then sTime (this module sorts; rwmatch expects sorted files).  A record's *key* is the
  tuple of its side's fields.  Only records with equal keys can match, so matching runs
  independently inside each key *group*, groups in key order.
* Starting a match between the current query q and response r: equal sTime always matches and
  the base is guessed from the query's ports (TCP/UDP: dPort < 1024 <= sPort -> query, dPort >=
  1024 > sPort -> response, else query); q first matches when ``r.sTime <= q.eTime + delta``
  (base q), otherwise q is skipped; r first matches only with ``symmetric`` and
  ``q.sTime <= r.eTime + delta`` (base r), otherwise r is skipped.
* Growing it: the window ends at ``base.eTime + delta``; ``absolute`` keeps it, ``relative``
  raises it to each added record's ``eTime + delta``, ``infinite`` has none.  Write the lead
  record, read the next one of the lead's side; a side stays in the match while its next record
  is in the group and starts no later than the window end.  The next lead is the side whose
  record starts first, the base's side on a tie.  The record that broke the match is retried.
* Labels go in nhIP: match id (from 1) in the low 24 bits, top byte 0x00 for query records and
  0xFF for responses; IPv6 records get the label in ``::ffff:0:0/96`` of nhIPv6.  With
  ``unmatched`` ('q', 'r' or 'b') unmatched records are kept with 0.0.0.0 / 255.0.0.0.
* rwmatch lets ids run past 2^24 - 1 into the top byte; this raises :class:`MatchError` instead.

How it runs without a Python loop per record
--------------------------------------------
1. One ``np.lexsort`` of both sides stacked on (key..., side, sTime) gives the groups (segment
   boundaries) and each side's order.
2. Groups with records on one side only are unmatched in bulk.
3. Groups that form a single match holding every record (the first pair matches and the last
   record of each side starts inside ``base.eTime + delta``, or the delta is infinite) are
   resolved in bulk: their output order is a merge by sTime with ties to the base's side.
4. The other groups (*ambiguous*) run rwmatch's state machine in lock-step: every iteration
   advances every such group by one record with numpy operations, so the number of iterations
   is the size of the largest group, not the number of records.
5. Ambiguous groups larger than :data:`LOCKSTEP_MAX_GROUP` records would make that lock-step
   long and narrow, so they run the same state machine as a plain loop, one group at a time.
   This is the only per-record Python loop; it touches only records of such large groups.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..fields import FieldError, field as lookup_field
from ..schema import ATTR_IPV6, FLOW_SCHEMA, IPV6_TYPE, PROTO_TCP, PROTO_UDP, conform, ipv6_words

MAX_MATCH_ID = 0xFFFFFF  # 24 bits: the largest id that keeps the top byte for the side
RESPONSE_TAG = 0xFF000000
RELATE_COUNT_MAX = 128


def label_sql(alias: str = "") -> str:
    """rwmatch's label of a record as SQL (UBIGINT): nhIP, or the low 32 bits of nhIPv6 on an
    IPv6 record (attributes 0x80), as :func:`with_labels` writes it; ``alias`` qualifies columns."""
    t = f"{alias}." if alias else ""
    return (f"CASE WHEN ({t}attributes & {ATTR_IPV6}) <> 0 AND {t}nhIPv6 IS NOT NULL "
            f"THEN ('0x' || substring(hex({t}nhIPv6), 25, 8))::UBIGINT ELSE {t}nhIP::UBIGINT END")



LOCKSTEP_MAX_GROUP = 512  # larger ambiguous groups run the per-group loop (see module doc)
BULK_SINGLE_WINDOW = True  # resolve one-match groups in bulk (tests switch it off to cross-check)
DELTA_MODES = ("absolute", "relative", "infinite")
UNMATCHED_CHOICES = ("q", "r", "b")

# rwmatch's --relate fields (rwcut's names minus nhIP and the time fields).
RELATE_FIELDS = (
    "sIP", "dIP", "sPort", "dPort", "protocol", "packets", "bytes", "flags", "sensor", "class",
    "type", "iType", "iCode", "in", "out", "initialFlags", "sessionFlags", "attributes",
    "application",
)
# The manual's recommendation for TCP/UDP: --relate=1,2 --relate=4,3 --relate=2,1 --relate=3,4 --relate=5,5
SESSION_RELATE: tuple[tuple[str, str], ...] = (
    ("sIP", "dIP"), ("dPort", "sPort"), ("dIP", "sIP"), ("sPort", "dPort"), ("protocol", "protocol"),
)

_QUERY, _RESPONSE = 0, 1
_INF = np.iinfo(np.int64).max
_V4_MAPPED = np.uint64(0xFFFF_0000_0000)


class MatchError(ValueError):
    """Bad rwmatch arguments, or more matches than the 24-bit match id can label."""


# --- arguments -----------------------------------------------------------------------------------


def _relate_field(name: str) -> str:
    try:
        f = lookup_field(name)
    except FieldError as exc:
        raise MatchError(f"invalid relate field: {exc}") from None
    if f.name not in RELATE_FIELDS:
        raise MatchError(f"field {f.name} cannot be related (allowed: {', '.join(RELATE_FIELDS)})")
    return f.name


def parse_relate(text: str) -> tuple[str, str]:
    """One ``--relate=QUERY_FIELD,RESPONSE_FIELD`` argument (names or rwcut numbers)."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2 or not all(parts):
        raise MatchError(f"invalid relate pair {text!r}: exactly two fields must be given")
    return _relate_field(parts[0]), _relate_field(parts[1])


def normalize_relate(relate: Iterable[tuple[str, str] | str]) -> list[tuple[str, str]]:
    pairs = []
    for item in relate:
        if isinstance(item, str):
            pairs.append(parse_relate(item))
        else:
            q, r = item
            pairs.append((_relate_field(q), _relate_field(r)))
    if not pairs:
        raise MatchError("at least one relate pair must be given")
    if len(pairs) > RELATE_COUNT_MAX:
        raise MatchError(f"too many relate pairs ({len(pairs)}; at most {RELATE_COUNT_MAX})")
    return pairs


# --- keys ----------------------------------------------------------------------------------------


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def _ipv6_rows(table: pa.Table) -> np.ndarray:
    return (_column(table, "attributes") & ATTR_IPV6) != 0


def _field_words(table: pa.Table, name: str, wide: bool) -> list[np.ndarray]:
    """A record field as uint64 sort words.  IPs are 128-bit (two words) when any record is IPv6,
    IPv4 addresses then mapped into ::ffff:0:0/96, as rwmatch compares mixed addresses."""
    if name in ("sIP", "dIP"):
        v4 = _column(table, name).astype(np.uint64)
        if not wide:
            return [v4]
        high = np.zeros(len(v4), dtype=np.uint64)
        low = v4 | _V4_MAPPED
        v6 = _ipv6_rows(table)
        if v6.any():
            h6, l6 = ipv6_words(table.column(name + "v6"))
            high = np.where(v6, h6, high)
            low = np.where(v6, l6, low)
        return [high, low]
    if name == "iType":  # rwRecGetIcmpType: no protocol check
        return [(_column(table, "dPort") >> 8).astype(np.uint64)]
    if name == "iCode":
        return [(_column(table, "dPort") & 0xFF).astype(np.uint64)]
    if name == "class":  # the twoway site has the one class "all"
        return [np.zeros(table.num_rows, dtype=np.uint64)]
    if name == "type":
        return [_column(table, "flowtype").astype(np.uint64)]
    return [_column(table, name).astype(np.uint64)]


def _pair_words(q: pa.Table, r: pa.Table, qf: str, rf: str, wide: bool) -> list[np.ndarray]:
    qw, rw = _field_words(q, qf, wide), _field_words(r, rf, wide)
    if len(qw) != len(rw):  # an IP related to a number: the number compares as an IPv4 address
        fix = lambda w: w if len(w) == 2 else [np.zeros_like(w[0]), (w[0] & np.uint64(0xFFFFFFFF)) | _V4_MAPPED]
        qw, rw = fix(qw), fix(rw)
    return [np.concatenate([a, b]) for a, b in zip(qw, rw)]


def _base_guess(table: pa.Table) -> np.ndarray:
    """rwmatch's guess of the base when q and r start together: 1 (response) for a TCP/UDP query
    with dPort >= 1024 and sPort < 1024, else 0 (query)."""
    proto = _column(table, "protocol")
    sport, dport = _column(table, "sPort"), _column(table, "dPort")
    tcpudp = (proto == PROTO_TCP) | (proto == PROTO_UDP)
    return (tcpudp & (dport >= 1024) & (sport < 1024)).astype(np.int8)


# --- the state machine ---------------------------------------------------------------------------


class _Plan:
    """Records to emit, as parallel arrays: group, order within group, side, position in the
    side's sorted order, local match number (0 = unmatched)."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, gid, k, side, pos, label):
        n = len(gid)
        if n:
            as_arr = lambda v, dt: np.broadcast_to(np.asarray(v, dtype=dt), (n,))
            self.parts.append(
                (as_arr(gid, np.int64), as_arr(k, np.int64), as_arr(side, np.int8), as_arr(pos, np.int64), as_arr(label, np.int64))
            )

    def arrays(self):
        if not self.parts:
            return tuple(np.zeros(0, dtype=dt) for dt in (np.int64, np.int64, np.int8, np.int64, np.int64))
        return tuple(np.concatenate([p[i] for p in self.parts]) for i in range(5))


def _ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated aranges [start, end) and, for each element, the index of its range."""
    lengths = np.maximum(ends - starts, 0)
    owner = np.repeat(np.arange(len(starts)), lengths)
    if not len(owner):
        return np.zeros(0, dtype=np.int64), owner
    offsets = np.cumsum(lengths) - lengths
    return starts[owner] + (np.arange(len(owner)) - offsets[owner]), owner


class _Sides:
    """Both sides in key-then-sTime order, with group ranges."""

    def __init__(self, qs, qe, qguess, rs, re, qstart, qend, rstart, rend):
        self.Qs, self.Qe, self.Qg, self.Rs, self.Re = qs, qe, qguess, rs, re
        self.qstart, self.qend, self.rstart, self.rend = qstart, qend, rstart, rend


def _lockstep(groups: np.ndarray, sd: _Sides, plan: _Plan, delta: int, symmetric: bool, mode: str) -> np.ndarray:
    """rwmatch's loop for many groups at once, one record per group per iteration.
    Returns the number of matches of each group."""
    Qs, Qe, Qg, Rs, Re = sd.Qs, sd.Qe, sd.Qg, sd.Rs, sd.Re
    nQ, nR = len(Qs), len(Rs)
    A = len(groups)
    qp, qend = sd.qstart[groups].copy(), sd.qend[groups]
    rp, rend = sd.rstart[groups].copy(), sd.rend[groups]
    in_match = np.zeros(A, dtype=bool)
    base = np.zeros(A, dtype=np.int8)
    lead = np.zeros(A, dtype=np.int8)
    hq = np.zeros(A, dtype=bool)
    hr = np.zeros(A, dtype=bool)
    maxt = np.zeros(A, dtype=np.int64)
    nm = np.zeros(A, dtype=np.int64)
    relative = mode == "relative"
    act = np.arange(A)
    it = 0
    while act.size:
        # outer loop: skip a record, or start a match
        o = act[~in_match[act]]
        if o.size:
            qi, ri = qp[o], rp[o]
            qs, rs = Qs[qi], Rs[ri]
            eq = qs == rs
            qf = (qs < rs) & (rs <= Qe[qi] + delta)
            rf = (qs > rs) & (qs <= Re[ri] + delta) if symmetric else np.zeros(len(o), dtype=bool)
            start = eq | qf | rf
            skipq = ~start & (qs < rs)
            skipr = ~start & ~skipq
            g = o[skipq]
            plan.add(groups[g], it, _QUERY, qp[g], 0)
            qp[g] += 1
            g = o[skipr]
            plan.add(groups[g], it, _RESPONSE, rp[g], 0)
            rp[g] += 1
            s = o[start]
            if s.size:
                b = np.where(eq[start], Qg[qi[start]], np.where(qf[start], _QUERY, _RESPONSE)).astype(np.int8)
                base[s] = b
                lead[s] = b
                hq[s] = True
                hr[s] = True
                in_match[s] = True
                nm[s] += 1
                if mode == "infinite":
                    maxt[s] = _INF
                else:
                    maxt[s] = np.where(b == _QUERY, Qe[qi[start]], Re[ri[start]]) + delta
        # inside a match: write the lead, read the next record of its side
        m = act[in_match[act]]
        if m.size:
            L = lead[m]
            for side, P, S, E, H, end in ((_QUERY, qp, Qs, Qe, hq, qend), (_RESPONSE, rp, Rs, Re, hr, rend)):
                g = m[L == side]
                if not g.size:
                    continue
                plan.add(groups[g], it, side, P[g], nm[g])
                P[g] += 1
                nxt = np.minimum(P[g], len(S) - 1)
                ok = (P[g] < end[g]) & (S[nxt] <= maxt[g])
                H[g] = ok
                if relative and ok.any():
                    up = g[ok]
                    maxt[up] = np.maximum(maxt[up], E[nxt[ok]] + delta)
            hqm, hrm = hq[m], hr[m]
            in_match[m[~hqm & ~hrm]] = False
            qs = Qs[np.minimum(qp[m], nQ - 1)]
            rs = Rs[np.minimum(rp[m], nR - 1)]
            lead[m] = np.where(
                ~hqm, _RESPONSE,
                np.where(~hrm, _QUERY, np.where(qs < rs, _QUERY, np.where(qs > rs, _RESPONSE, base[m]))),
            )
        it += 1
        act = act[in_match[act] | ((qp[act] < qend[act]) & (rp[act] < rend[act]))]
    # what is left of a group (one side only) is unmatched, in order
    for side, P, end in ((_QUERY, qp, qend), (_RESPONSE, rp, rend)):
        pos, owner = _ranges(P, end)
        plan.add(groups[owner], it + pos, side, pos, 0)
    return nm


def _sequential(g: int, sd: _Sides, plan: _Plan, delta: int, symmetric: bool, mode: str) -> int:
    """The same state machine for one (large) group, as a plain loop.  Returns its match count."""
    q0, q1, r0, r1 = int(sd.qstart[g]), int(sd.qend[g]), int(sd.rstart[g]), int(sd.rend[g])
    Qs, Qe, Qg = sd.Qs[q0:q1].tolist(), sd.Qe[q0:q1].tolist(), sd.Qg[q0:q1].tolist()
    Rs, Re = sd.Rs[r0:r1].tolist(), sd.Re[r0:r1].tolist()
    nq, nr = len(Qs), len(Rs)
    out_side: list[int] = []
    out_pos: list[int] = []
    out_label: list[int] = []
    emit = lambda side, pos, label: (out_side.append(side), out_pos.append(pos), out_label.append(label))
    i = j = nm = 0
    relative, infinite = mode == "relative", mode == "infinite"
    while i < nq and j < nr:
        qs, rs = Qs[i], Rs[j]
        if qs == rs:
            base = Qg[i]
        elif qs < rs:
            if rs > Qe[i] + delta:
                emit(_QUERY, q0 + i, 0)
                i += 1
                continue
            base = _QUERY
        else:
            if not (symmetric and qs <= Re[j] + delta):
                emit(_RESPONSE, r0 + j, 0)
                j += 1
                continue
            base = _RESPONSE
        nm += 1
        maxt = _INF if infinite else (Qe[i] if base == _QUERY else Re[j]) + delta
        lead, hq, hr = base, True, True
        while True:
            if lead == _QUERY:
                emit(_QUERY, q0 + i, nm)
                i += 1
                hq = i < nq and Qs[i] <= maxt
                if hq and relative and Qe[i] + delta > maxt:
                    maxt = Qe[i] + delta
            else:
                emit(_RESPONSE, r0 + j, nm)
                j += 1
                hr = j < nr and Rs[j] <= maxt
                if hr and relative and Re[j] + delta > maxt:
                    maxt = Re[j] + delta
            if not hq and not hr:
                break
            if not hq:
                lead = _RESPONSE
            elif not hr:
                lead = _QUERY
            elif Qs[i] != Rs[j]:
                lead = _QUERY if Qs[i] < Rs[j] else _RESPONSE
            else:
                lead = base
    for k in range(i, nq):
        emit(_QUERY, q0 + k, 0)
    for k in range(j, nr):
        emit(_RESPONSE, r0 + k, 0)
    n = len(out_side)
    plan.add(np.full(n, g), np.arange(n), np.array(out_side), np.array(out_pos), np.array(out_label))
    return nm


def _packed_keys(words: list[np.ndarray], side: np.ndarray) -> list[np.ndarray]:
    """``words`` then ``side``, most significant first, packed into as few uint64 sort keys as
    their values' bit widths allow: the same order with fewer stable sort passes (the session
    relation's five IPv4 words and the side fit in two keys instead of six)."""
    keys, current, used = [], None, 0
    for w in [*words, side.astype(np.uint64)]:
        bits = int(w.max()).bit_length() if len(w) else 0
        if bits == 0:
            continue  # all zero: orders nothing
        if current is None or used + bits > 64:
            if current is not None:
                keys.append(current)
            current, used = w.astype(np.uint64, copy=True), bits
        else:
            current = (current << np.uint64(bits)) | w.astype(np.uint64)
            used += bits
    if current is not None:
        keys.append(current)
    return keys or [np.zeros(len(side), dtype=np.uint64)]


def _plan_matches(q: pa.Table, r: pa.Table, pairs, delta: int, symmetric: bool, mode: str):
    """(side, original row, match id) of every record, in rwmatch's output order, plus the count
    of matches."""
    nq, nr = q.num_rows, r.num_rows
    wide = bool(_ipv6_rows(q).any() or _ipv6_rows(r).any())
    words: list[np.ndarray] = []
    for qf, rf in pairs:
        words.extend(_pair_words(q, r, qf, rf, wide))
    side = np.concatenate([np.zeros(nq, dtype=np.int8), np.ones(nr, dtype=np.int8)])
    stime = np.concatenate([_column(q, "sTime"), _column(r, "sTime")]).astype(np.int64)
    rowpos = np.concatenate([np.arange(nq), np.arange(nr)])
    # (words..., side, sTime, then input order): lexsort is stable and rows are in input order
    # within a side, so the row position needs no sort pass of its own
    order = np.lexsort([stime] + _packed_keys(words, side)[::-1])
    n = nq + nr
    new = np.zeros(n, dtype=bool)
    if n:
        new[0] = True
        for w in words:
            sw = w[order]
            new[1:] |= sw[1:] != sw[:-1]
    gid = np.cumsum(new) - 1
    G = int(gid[-1]) + 1 if n else 0
    s_side = side[order]
    qmask = s_side == _QUERY
    q_order, r_order = rowpos[order][qmask], rowpos[order][~qmask]
    q_gid, r_gid = gid[qmask], gid[~qmask]
    nqg = np.bincount(q_gid, minlength=G)
    nrg = np.bincount(r_gid, minlength=G)
    qstart = np.cumsum(nqg) - nqg
    rstart = np.cumsum(nrg) - nrg
    q_st, r_st = _column(q, "sTime").astype(np.int64), _column(r, "sTime").astype(np.int64)
    Qs = q_st[q_order]
    Rs = r_st[r_order]
    sd = _Sides(
        Qs, Qs + _column(q, "duration").astype(np.int64)[q_order], _base_guess(q)[q_order],
        Rs, Rs + _column(r, "duration").astype(np.int64)[r_order],
        qstart, qstart + nqg, rstart, rstart + nrg,
    )
    plan = _Plan()
    nmatch = np.zeros(G, dtype=np.int64)

    # 1. one-sided groups: unmatched, in order
    one_sided = (nqg == 0) | (nrg == 0)
    qsel = one_sided[q_gid]
    plan.add(q_gid[qsel], np.flatnonzero(qsel), _QUERY, np.flatnonzero(qsel), 0)
    rsel = one_sided[r_gid]
    plan.add(r_gid[rsel], np.flatnonzero(rsel), _RESPONSE, np.flatnonzero(rsel), 0)

    # 2. groups that are one match holding every record
    both = np.flatnonzero(~one_sided)
    qi, ri = sd.qstart[both], sd.rstart[both]
    qs, rs, qe, re = sd.Qs[qi], sd.Rs[ri], sd.Qe[qi], sd.Re[ri]
    eq = qs == rs
    qf = (qs < rs) & (rs <= qe + delta)
    rf = (qs > rs) & (qs <= re + delta) if symmetric else np.zeros(len(both), dtype=bool)
    base = np.where(eq, sd.Qg[qi], np.where(qf, _QUERY, _RESPONSE)).astype(np.int8)
    if mode == "infinite":
        single = eq | qf | rf
    else:
        window = np.where(base == _QUERY, qe, re) + delta
        last_q, last_r = sd.Qs[sd.qend[both] - 1], sd.Rs[sd.rend[both] - 1]
        single = (eq | qf | rf) & ((nqg[both] == 1) | (last_q <= window)) & ((nrg[both] == 1) | (last_r <= window))
    if not BULK_SINGLE_WINDOW:
        single[:] = False
    bulk = both[single]
    if bulk.size:
        gbase = np.zeros(G, dtype=np.int8)
        gbase[bulk] = base[single]
        in_bulk = np.zeros(G, dtype=bool)
        in_bulk[bulk] = True
        qsel, rsel = np.flatnonzero(in_bulk[q_gid]), np.flatnonzero(in_bulk[r_gid])
        b_gid = np.concatenate([q_gid[qsel], r_gid[rsel]])
        b_side = np.concatenate([np.zeros(len(qsel), np.int8), np.ones(len(rsel), np.int8)])
        b_pos = np.concatenate([qsel, rsel])
        b_st = np.concatenate([sd.Qs[qsel], sd.Rs[rsel]])
        tie = (b_side != gbase[b_gid]).astype(np.int8)  # on equal sTime the base's side leads
        o = np.lexsort([b_pos, tie, b_st, b_gid])
        plan.add(b_gid[o], np.arange(len(o)), b_side[o], b_pos[o], 1)
        nmatch[bulk] = 1

    # 3. the rest: rwmatch's state machine
    rest = both[~single]
    size = nqg[rest] + nrg[rest]
    small, large = rest[size <= LOCKSTEP_MAX_GROUP], rest[size > LOCKSTEP_MAX_GROUP]
    if small.size:
        nmatch[small] = _lockstep(small, sd, plan, delta, symmetric, mode)
    for g in large.tolist():
        nmatch[g] = _sequential(g, sd, plan, delta, symmetric, mode)

    total = int(nmatch.sum())
    if total > MAX_MATCH_ID:
        raise MatchError(
            f"{total:,} matches: more than the {MAX_MATCH_ID:,} that rwmatch's 24-bit match id "
            "can label; split the input (e.g. by time or address range)"
        )
    p_gid, p_k, p_side, p_pos, p_label = _Plan.arrays(plan)
    final = np.lexsort([p_k, p_gid])
    p_gid, p_side, p_pos, p_label = p_gid[final], p_side[final], p_pos[final], p_label[final]
    offsets = np.cumsum(nmatch) - nmatch
    ids = np.where(p_label > 0, offsets[p_gid] + p_label, 0)
    rows = np.empty(len(p_pos), dtype=np.int64)
    qm = p_side == _QUERY
    rows[qm] = q_order[p_pos[qm]]
    rows[~qm] = r_order[p_pos[~qm]]
    return p_side, rows, ids, total


def _labelled(q: pa.Table, r: pa.Table, side: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> pa.Table:
    combined = pa.concat_tables([q, r])
    out = combined.take(pa.array(np.where(side == _QUERY, rows, q.num_rows + rows)))
    return with_labels(out, ids, side == _RESPONSE)


def with_labels(table: pa.Table, ids: np.ndarray, is_response: np.ndarray) -> pa.Table:
    """``table`` with rwmatch's label of each record in nhIP (nhIPv6's ::ffff:0:0/96 on IPv6
    records): the match id (0: unmatched), top byte 0xFF on responses."""
    label = ids.astype(np.uint32) | np.where(is_response, np.uint32(RESPONSE_TAG), np.uint32(0))
    out = table
    v6 = _ipv6_rows(out) if out.num_rows else np.zeros(0, dtype=bool)
    columns = {"nhIP": pa.array(np.where(v6, np.uint32(0), label), pa.uint32())}
    if v6.any():
        n = out.num_rows
        raw = np.zeros((n, 16), dtype=np.uint8)
        raw[:, 10:12] = 0xFF
        raw[:, 12:16] = label.astype(">u4").view(np.uint8).reshape(n, 4)
        mapped = pa.FixedSizeBinaryArray.from_buffers(IPV6_TYPE, n, [None, pa.py_buffer(raw.tobytes())])
        columns["nhIPv6"] = pc.if_else(pa.array(v6), mapped, out.column("nhIPv6").combine_chunks())
    for name, array in columns.items():
        i = out.schema.get_field_index(name)
        out = out.set_column(i, FLOW_SCHEMA.field(name), array)
    return out


def match(
    query: pa.Table,
    response: pa.Table,
    relate: Sequence[tuple[str, str] | str],
    *,
    time_delta_ms: int = 0,
    symmetric: bool = False,
    delta_mode: str = "absolute",
    unmatched: str | None = None,
) -> pa.Table:
    """rwmatch over two flow tables; returns the labelled records in rwmatch's output order.

    ``relate``: (query field, response field) pairs (or "F1,F2" strings), one-way.
    ``time_delta_ms``: the --time-delta in milliseconds.  ``symmetric``: --symmetric-delta.
    ``delta_mode``: absolute | relative | infinite.  ``unmatched``: None, 'q', 'r' or 'b'.
    Raises :class:`MatchError` on bad arguments or when the match ids would pass 16,777,215.
    """
    pairs = normalize_relate(relate)
    if delta_mode not in DELTA_MODES:
        raise MatchError(f"invalid delta mode {delta_mode!r} (expected one of {', '.join(DELTA_MODES)})")
    if unmatched is not None:
        unmatched = str(unmatched).lower()
        if unmatched not in UNMATCHED_CHOICES:
            raise MatchError(f"invalid unmatched {unmatched!r}: argument must be one of q, r, b")
    delta = int(time_delta_ms)
    if delta < 0 or delta != time_delta_ms:
        raise MatchError(f"invalid time delta {time_delta_ms!r}: a non-negative number of milliseconds")
    q = conform(query.replace_schema_metadata(None), source="query")
    r = conform(response.replace_schema_metadata(None), source="response")
    side, rows, ids, _ = _plan_matches(q, r, pairs, delta, bool(symmetric), delta_mode)
    keep = ids > 0
    if unmatched in ("q", "b"):
        keep |= side == _QUERY
    if unmatched in ("r", "b"):
        keep |= side == _RESPONSE
    if not keep.all():
        side, rows, ids = side[keep], rows[keep], ids[keep]
    return _labelled(q, r, side, rows, ids)


def match_sessions(
    inbound: pa.Table,
    outbound: pa.Table,
    time_delta_ms: int = 0,
    *,
    symmetric: bool = False,
    delta_mode: str = "absolute",
    unmatched: str | None = "b",
) -> pa.Table:
    """The study's matching: inbound flows (queries) with the outbound flows that answer them,
    related as the rwmatch manual recommends for TCP/UDP (1,2 / 4,3 / 2,1 / 3,4 / 5,5).

    By default every record is kept (``unmatched='b'``): matched ones carry their id, and
    :func:`match_ids` tells them apart.
    """
    return match(
        inbound, outbound, SESSION_RELATE, time_delta_ms=time_delta_ms, symmetric=symmetric,
        delta_mode=delta_mode, unmatched=unmatched,
    )


def match_ids(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(match id, is_response) of each record of a :func:`match` output (id 0: unmatched)."""
    label = np.asarray(table.column("nhIP").to_numpy(), dtype=np.uint32)
    v6 = _ipv6_rows(table) if table.num_rows else np.zeros(0, dtype=bool)
    if v6.any():
        _, low = ipv6_words(table.column("nhIPv6"))
        label = np.where(v6, (low & np.uint64(0xFFFFFFFF)).astype(np.uint32), label)
    return (label & np.uint32(MAX_MATCH_ID)).astype(np.int64), (label & np.uint32(RESPONSE_TAG)) != 0
