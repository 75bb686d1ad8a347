"""``binetflow``: Argus / CTU-13 bidirectional CSV -> unidirectional flow records.

Columns ``StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,
SrcBytes[,SrcPkts],Label``; each bidirectional record is split into a src->dst and a dst->src
flow where the counts allow (rules in :func:`parse_binetflow`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from ..flags import ACK, FIN, SYN
from ..schema import PROTO_TCP
from .formats import DEFAULT_OLD_TIMES
from .result import ImportFormatError, ImportResult, ReadOptions
from .text import (Lines, Rows, check_duration, check_family, convert_lines, filled, flag_letters, flow_columns,
                   icmp_ports, np_bool, protocol_number, protocol_reason, read_text, reverse_icmp_port, reversed_flow)
from .zeek import ZEEK_STATES


BINETFLOW_COLUMNS = "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label".split(",")
_BINETFLOW_USED = {"StartTime", "Dur", "Proto", "SrcAddr", "Sport", "Dir", "DstAddr", "Dport", "State", "TotPkts", "TotBytes",
                   "SrcBytes", "SrcPkts"}
_DIRECTIONS = {"->": 0, "?>": 0, "<->": 0, "<?>": 0, "who": 0, "<-": 1, "<?": 1}
# Who opened the biflow, where Argus is sure: 1 the source (->, <->), 2 the destination (<-); the
# question-marked directions say Argus could not tell.
_ARGUS_OPENER = {"->": 1, "<->": 1, "<-": 2}

_S, _A, _F = SYN, ACK, FIN
# Argus TCP states (ra without -Z) -> (source flags, destination flags).
_ARGUS_STATES = {"REQ": (_S, 0), "ACC": (_S, _S | _A), "CON": (_S | _A, _S | _A), "EST": (_S | _A, _S | _A),
                 "CLO": (_S | _A | _F, _S | _A | _F), "FIN": (_S | _A | _F, _S | _A | _F)}
_FLAG_SET = re.compile(r"^[FSRPAUEC]*$")


def parse_binetflow(data: bytes | str, origin: str = "<binetflow>", *, old_times: str | None = None,
                    tz: str | None = None) -> ImportResult:
    """Argus bidirectional CSV -> unidirectional flows.

    Split rule: the src->dst flow gets ``SrcBytes`` and ``SrcPkts``; the dst->src flow gets
    ``TotBytes - SrcBytes`` and ``TotPkts - SrcPkts``.  Without a ``SrcPkts`` column the packets
    are apportioned by bytes: all to the side that has bytes when only one has, else
    ``round(TotPkts * SrcBytes / TotBytes)`` (half up) to src->dst, kept within 1..TotPkts-1 and
    never above either side's bytes (``packets_apportioned_by_bytes``).  A direction with 0
    packets gives no flow.  When both sides have bytes but ``TotPkts`` is 1 the counts cannot be
    split: one flow with the totals goes in the direction ``Dir`` names (``<-``/``<?``: dst->src,
    else src->dst), counted as ``biflows_unsplit``.

    Both flows start at ``StartTime`` and last ``Dur`` (Argus gives no per-direction times).  Where
    ``Dir`` is sure who opened the connection (``->``, ``<->``: the source; ``<-``: the
    destination), both flows carry the port it opened to in SiLK's ``application`` field.
    ``StartTime`` is read as UTC.  Ports may be hex (``0x0008``).  ICMP: Argus keeps type and code
    in ``Sport`` (low byte type, high byte code: ``0x0008`` echo, ``0x0303`` port unreachable),
    or, when both ports are two hex digits, type in ``Sport`` and code in ``Dport``; the reverse
    flow of a request carries the reply type.  TCP flags from ``State``: ``SRC_DST`` letter sets
    (``FSPA_FSRPA``), Zeek connection states (``S0``, ``SF``...) or Argus state names (``REQ``,
    ``ACC``, ``CON``, ``CLO``, ``FIN``); other states give no flags (``tcp_states_without_flags``).
    Non-IP records (``arp``...) are quarantined.
    """
    lines = Lines(data, origin)
    lines.skip_blank()
    columns = lines.header_columns("StartTime,", BINETFLOW_COLUMNS)
    required = ("StartTime", "Dur", "Proto", "SrcAddr", "Sport", "Dir", "DstAddr", "Dport", "State", "TotPkts", "TotBytes", "SrcBytes")
    missing = [c for c in required if c not in columns]
    if missing:
        raise ImportFormatError(f"{origin}: binetflow header lacks column(s) {', '.join(missing)}")

    def convert(rows: Rows):
        used = [i for i, c in enumerate(columns) if c in _BINETFLOW_USED]
        split = rows.split(",", len(columns), extra_in_last=columns[-1] == "Label", keep=used)
        cells = {c: v for c, v in zip(columns, split) if v is not None}
        s_time = rows.times_ms(cells["StartTime"], "StartTime", ["%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"], tz=tz)
        duration = check_duration(rows, rows.seconds_ms(cells["Dur"], "Dur"))
        protocol, _ = rows.lookup(cells["Proto"], "Proto", protocol_number, reason=protocol_reason)
        src = rows.addresses(cells["SrcAddr"], "SrcAddr")
        dst = rows.addresses(cells["DstAddr"], "DstAddr")
        v6 = check_family(rows, src, dst)
        direction, _ = rows.lookup(cells["Dir"], "Dir", _DIRECTIONS.get, reason="bad Dir: not ->, <-, <->, ?>, <?, <?> or who")
        backwards = direction == 1
        sport = rows.uint(cells["Sport"], "Sport", 0xFFFF, empty=0, hex_ok=True)
        dport = rows.uint(cells["Dport"], "Dport", 0xFFFF, empty=0, hex_ok=True)
        tot_pkts = rows.uint(cells["TotPkts"], "TotPkts", 2**62)
        tot_bytes = rows.uint(cells["TotBytes"], "TotBytes", 2**62)
        src_bytes = rows.uint(cells["SrcBytes"], "SrcBytes", 2**62)
        rows.fail(src_bytes > tot_bytes, "SrcBytes exceeds TotBytes")
        rows.fail(tot_pkts == 0, "zero packets")
        rows.fail(tot_pkts > tot_bytes, "more packets than bytes")
        fb = np.minimum(src_bytes, tot_bytes)
        rb = tot_bytes - fb
        unsplit = np.zeros(rows.n, dtype=bool)
        if "SrcPkts" in cells:
            src_pkts = rows.uint(cells["SrcPkts"], "SrcPkts", 2**62)
            rows.fail(src_pkts > tot_pkts, "SrcPkts exceeds TotPkts")
            fp = np.minimum(src_pkts, tot_pkts)
            rp = tot_pkts - fp
            rows.fail((fp > fb) | (rp > rb), "SrcPkts and SrcBytes disagree (more packets than bytes in one direction)")
            rows.fail(((fp == 0) & (fb > 0)) | ((rp == 0) & (rb > 0)), "SrcPkts and SrcBytes disagree (bytes without packets)")
        else:
            both = (fb > 0) & (rb > 0)
            share = np.floor(tot_pkts * (fb / np.maximum(tot_bytes, 1)) + 0.5).astype(np.int64)
            fp = np.where(rb == 0, tot_pkts, np.where(fb == 0, 0, np.clip(share, 1, np.maximum(tot_pkts - 1, 1))))
            fp = np.where(both, np.minimum(fp, fb), fp)  # never more packets than bytes on either side
            fp = np.where(both & (tot_pkts - fp > rb), tot_pkts - rb, fp)
            unsplit = both & (tot_pkts < 2)
            rows.note("packets_apportioned_by_bytes", both & ~unsplit & rows.ok)
            fp = np.where(unsplit, np.where(backwards, 0, tot_pkts), fp)
            fb = np.where(unsplit, np.where(backwards, 0, tot_bytes), fb)
            rb = tot_bytes - fb
            rp = tot_pkts - fp
        icmp = icmp_ports(protocol, v6)
        short_hex = np_bool(pc.match_substring_regex(filled(cells["Sport"]), r"^0[xX][0-9a-fA-F]{1,2}$")) & np_bool(
            pc.match_substring_regex(filled(cells["Dport"]), r"^0[xX][0-9a-fA-F]{1,2}$"))
        icmp_type = np.where(short_hex, sport, sport & 0xFF)
        icmp_code = np.where(short_hex, dport, sport >> 8)
        icmp_port = icmp_type * 256 + np.minimum(icmp_code, 255)
        flag_pair, known = rows.lookup(cells["State"], "State", _argus_flags, fail=False)
        tcp = protocol == PROTO_TCP
        rows.note("tcp_states_without_flags", tcp & ~known & rows.ok)
        fwd_flags = np.where(tcp & known, flag_pair & 0xFF, 0)
        rev_flags = np.where(tcp & known, (flag_pair >> 8) & 0xFF, 0)
        # the opener Argus is sure of: its service port goes into SiLK's application field of both
        # flows (as the Zeek importer does), so the opener's flow is the one whose dPort it is
        opener, _ = rows.lookup(cells["Dir"], "Dir", _ARGUS_OPENER.get, fail=False)
        service = np.where(icmp, 0, np.where(opener == 1, dport, np.where(opener == 2, sport, 0)))
        fwd = flow_columns(src, dst, v6, sPort=np.where(icmp, 0, sport), dPort=np.where(icmp, icmp_port, dport), protocol=protocol,
                       packets=fp, bytes=fb, flags=np.where(unsplit & ~backwards, fwd_flags | rev_flags, fwd_flags),
                       sTime=s_time, duration=duration, application=service)
        rev = reversed_flow(fwd, packets=rp, bytes=rb, flags=np.where(unsplit & backwards, fwd_flags | rev_flags, rev_flags),
                        sPort=np.where(icmp, 0, dport), dPort=np.where(icmp, reverse_icmp_port(icmp_port, v6), sport))
        ok = rows.ok
        rows.note("biflows_split", (fp > 0) & (rp > 0) & ok)
        rows.note("biflows_one_way", ((fp > 0) != (rp > 0)) & ~unsplit & ok)
        rows.note("biflows_unsplit", unsplit & ok)
        return [(fp > 0, fwd), (rp > 0, rev)]

    return convert_lines(lines, "binetflow", convert, old_times=old_times or DEFAULT_OLD_TIMES["binetflow"])


def _letters_or_none(text: str) -> int | None:
    if not _FLAG_SET.match(text):
        return None
    return flag_letters(text)


def _argus_flags(state: str) -> int | None:
    """Argus State -> source flags | destination flags << 8; None when it names no TCP flags."""
    if "_" in state:
        src, _, dst = state.partition("_")
        a, b = _letters_or_none(src), _letters_or_none(dst)
        if a is not None and b is not None:
            return a | (b << 8)
    pair = ZEEK_STATES.get(state) or _ARGUS_STATES.get(state)
    return None if pair is None else pair[0] | (pair[1] << 8)


def sniff(lines: list[str]) -> bool:
    first = lines[0]
    return first.startswith("StartTime,") or bool(
        re.match(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(\.\d+)?,", first) and first.count(",") >= 13)


def read(path: Path, head: bytes, options: ReadOptions) -> ImportResult:
    return parse_binetflow(read_text(path, head, "binetflow"), str(path), old_times=options.old_times, tz=options.tz)
