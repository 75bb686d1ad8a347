"""``zeek``: Zeek ``conn.log`` -> unidirectional flow records.

TSV (``#separator``/``#fields``/``#unset_field`` headers, several header blocks allowed) or JSON
lines; each connection gives an orig->resp and a resp->orig flow (rules in :func:`parse_zeek`).
The one format that can force a per-record loop is Zeek JSON: when Arrow's JSON reader rejects a
batch (a malformed line, a field changing type) that batch is parsed line by line with
``json.loads`` (counted as ``json_lines_parsed_one_by_one``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ..flags import ACK, FIN, PSH, RST, SYN
from ..schema import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP
from .formats import DEFAULT_OLD_TIMES
from .result import ImportFormatError, ImportResult, ReadOptions
from .text import (Lines, Rows, check_duration, check_family, check_volumes, convert_lines, filled, flow_columns,
                   icmp_counterpart, icmp_ports, is_blank, np_bool, read_text, reversed_flow)


_ZEEK_FIELDS = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "duration", "orig_bytes", "resp_bytes",
                "conn_state", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")
_ZEEK_REQUIRED = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "orig_pkts", "resp_pkts")
_ZEEK_PROTOCOLS = {"tcp": PROTO_TCP, "udp": 17, "icmp": PROTO_ICMP}

# Zeek conn_state -> (originator flags, responder flags), used when there is no history.
_S, _A, _F, _R = SYN, ACK, FIN, RST
ZEEK_STATES = {
    "S0": (_S, 0), "S1": (_S | _A, _S | _A), "SF": (_S | _A | _F, _S | _A | _F), "REJ": (_S, _R | _A),
    "S2": (_S | _A | _F, _S | _A), "S3": (_S | _A, _S | _A | _F), "RSTO": (_S | _A | _R, _S | _A),
    "RSTR": (_S | _A, _S | _A | _R), "RSTOS0": (_S | _R, 0), "RSTRH": (0, _S | _A | _R),
    "SH": (_S | _F, 0), "SHR": (0, _S | _A | _F), "OTH": (0, 0),
}
# Zeek history letters (upper case: originator, lower case: responder) -> flags.
_HISTORY_FLAGS = {"S": _S, "H": _S | _A, "A": _A, "D": PSH | _A, "F": _F, "R": _R}


def parse_zeek(data: bytes | str, origin: str = "<zeek>", *, old_times: str | None = None) -> ImportResult:
    """Zeek conn.log (TSV with ``#`` headers, or JSON lines) -> unidirectional flows.

    Each connection gives an orig->resp flow (``orig_pkts``, ``orig_ip_bytes``) and a resp->orig
    flow (``resp_pkts``, ``resp_ip_bytes``); a direction with 0 packets gives no flow, and a
    connection without packets in either direction gives none (counted as
    ``connections_without_packets``).  Bytes are the IP-level ``*_ip_bytes`` (what NetFlow and
    SiLK count); only when those are absent the payload ``*_bytes`` are used
    (``bytes_from_payload``).  Both flows start at ``ts`` and last ``duration``.

    TCP flags from ``history`` (upper case: originator, lower case: responder): S SYN, H SYN+ACK,
    A ACK, D PSH+ACK (data), F FIN, R RST; other letters (T W C I Q G ^ ...) add none.  Without a
    history, ``conn_state`` gives them (S0: orig S; REJ: orig S, resp RA; SF: both SAF; ...).

    ICMP (``proto`` icmp; protocol 58 for IPv6 addresses): ``id.orig_p`` is the type; for
    request/reply types ``id.resp_p`` is Zeek's counterpart type (the reply), for one-way types
    the code.  The orig->resp flow gets dPort type*256+code, the resp->orig flow the counterpart
    type.  Times before 1990 (Zeek reading a capture with relative time) are kept by default and
    counted as ``times_before_1990``.

    The originator is kept: both TCP and UDP flows of a connection carry ``id.resp_p`` in SiLK's
    ``application`` field (the service port), so the orig->resp flow is the one whose dPort it is.

    TSV: the ``#separator``, ``#unset_field`` and ``#empty_field`` directives are honoured (also
    after stray white space), and several header blocks (concatenated logs) may each bring their
    own ``#fields``.  JSON lines go through Arrow's JSON reader; a batch it rejects (a malformed
    line, a field changing type) is parsed line by line with ``json.loads``.
    """
    lines = Lines(data, origin)
    lines.skip_blank()
    first = lines.first_remaining()
    policy = old_times or DEFAULT_OLD_TIMES["zeek"]
    if first is not None and lines.line(first).lstrip().startswith("{"):
        return convert_lines(lines, "zeek", lambda rows: _zeek_records(rows, _zeek_json_columns(rows), ["-", "(empty)"]),
                    old_times=policy, no_record_key="connections_without_packets")
    return _zeek_tsv(lines, policy)


def _zeek_escape(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _zeek_tsv(lines: Lines, policy: str) -> ImportResult:
    comment = lines.startswith("#")
    header_rows = np.flatnonzero(comment)
    lines.skip(comment, "header_lines")
    separator, unset, empty = "\t", "-", "(empty)"
    segments: list[tuple[int, list[str], str, str, str]] = []  # (#fields line, fields, separator, unset, empty)
    for i in header_rows:
        text = lines.line(int(i)).lstrip()
        directive, _, value = text.partition(" " if text.startswith("#separator") else separator)
        directive = directive.strip()
        if directive == "#separator":
            separator = _zeek_escape(value.strip()) or "\t"
        elif directive == "#unset_field":
            unset = value
        elif directive == "#empty_field":
            empty = value
        elif directive == "#fields":
            segments.append((int(i), value.split(separator), separator, unset, empty))
    if not segments:
        if not len(lines.remaining()):
            return convert_lines(lines, "zeek", lambda rows: [], old_times=policy)
        raise ImportFormatError(f"{lines.origin}: Zeek TSV without a #fields header")
    missing = [f for f in _ZEEK_REQUIRED if f not in segments[0][1]]
    if missing:
        raise ImportFormatError(f"{lines.origin}: Zeek #fields lacks {', '.join(missing)}")
    unset_tokens = sorted({t for seg in segments for t in seg[3:]})
    starts = [seg[0] for seg in segments]

    def convert(rows: Rows):
        rows.fail(rows.index < starts[0], "data before the #fields header")
        columns: dict[str, pa.Array] = {}
        segment_of = np.searchsorted(starts, rows.index, side="right") - 1
        for k, (_, fields, sep, _, _) in enumerate(segments):
            member = (segment_of == k) & rows.ok
            if not member.any():
                continue
            sub = Rows(rows.lines, rows.index[member])
            cells = sub.split(sep, len(fields), keep=[i for i, f in enumerate(fields) if f in _ZEEK_FIELDS])
            if sub.reason_texts:
                rows.fail(_scatter_mask(member, ~sub.ok), sub.reason_texts[0])
            for name in _ZEEK_FIELDS:
                if name in fields:
                    columns[name] = _scatter(columns.get(name), cells[fields.index(name)], member, rows.n)
        for name in _ZEEK_FIELDS:
            columns.setdefault(name, pa.nulls(rows.n, pa.large_string()))
        return _zeek_records(rows, columns, unset_tokens)

    return convert_lines(lines, "zeek", convert, old_times=policy, no_record_key="connections_without_packets")


def _scatter_mask(member: np.ndarray, sub_mask: np.ndarray) -> np.ndarray:
    out = np.zeros(len(member), dtype=bool)
    out[np.flatnonzero(member)] = sub_mask
    return out


def _scatter(existing: pa.Array | None, values: pa.Array, member: np.ndarray, n: int) -> pa.Array:
    index = np.zeros(n, dtype=np.int64)
    index[np.flatnonzero(member)] = np.arange(int(member.sum()))
    placed = values.cast(pa.large_string()).take(pa.array(index))
    base = existing if existing is not None else pa.nulls(n, pa.large_string())
    return pc.if_else(pa.array(member), placed, base)


def _json_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    return ""


def _zeek_json_columns(rows: Rows) -> dict[str, pa.Array]:
    """The Zeek fields of a batch of JSON lines, as strings: Arrow's reader, or json.loads per line."""
    columns: dict[str, pa.Array] | None = None
    offsets = pa.array([0, rows.n], pa.int64())
    joined = pc.binary_join(pa.LargeListArray.from_arrays(offsets, rows.text), pa.scalar("\n", pa.large_string()))
    payload = joined[0].as_buffer()
    try:
        table = pajson.read_json(pa.BufferReader(payload), read_options=pajson.ReadOptions(block_size=max(1 << 20, payload.size + 1)))
        if table.num_rows == rows.n:
            columns = {}
            for name in _ZEEK_FIELDS:
                if name in table.column_names:
                    col = table.column(name)
                    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_string(col.type)
                            or pa.types.is_null(col.type)):
                        raise pa.ArrowInvalid(f"unexpected type for {name}")
                    columns[name] = col.cast(pa.large_string()).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        columns = None
    if columns is None:
        # Arrow's reader rejected the batch: every line through json.loads (a loop per record)
        raw: dict[str, list] = {name: [] for name in _ZEEK_FIELDS}
        not_object = np.zeros(rows.n, dtype=bool)
        for i, text in enumerate(rows.text.to_pylist()):
            try:
                obj = json.loads(text)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                not_object[i] = True
                obj = {}
            for name in _ZEEK_FIELDS:
                raw[name].append(_json_text(obj.get(name)))
        rows.fail(not_object, "not a JSON object")
        rows.note("json_lines_parsed_one_by_one", rows.n)
        columns = {name: pa.array(values, pa.large_string()) for name, values in raw.items()}
    for name in _ZEEK_FIELDS:
        columns.setdefault(name, pa.nulls(rows.n, pa.large_string()))
    return columns


def _zeek_records(rows: Rows, cols: dict[str, pa.Array], unset: list[str]):
    ts_text = filled(cols["ts"])
    numeric_ts = np_bool(pc.match_substring_regex(ts_text, r"^[0-9.eE+-]+$"))
    s_time = rows.seconds_ms(pc.if_else(pa.array(numeric_ts), ts_text, pa.scalar("0", pa.large_string())), "ts")
    if (~numeric_ts).any():  # JSON logs written with JSON::TS_FORMAT=ISO8601
        iso = Rows(rows.lines, rows.index)
        iso_ms = iso.times_ms(ts_text, "ts", ["%Y-%m-%dT%H:%M:%S"])
        rows.fail(~numeric_ts & ~iso.ok, "bad ts: not a time")
        s_time = np.where(numeric_ts, s_time, iso_ms)
    duration = check_duration(rows, rows.seconds_ms(cols["duration"], "duration", empty=0, unset=unset))
    src = rows.addresses(cols["id.orig_h"], "id.orig_h")
    dst = rows.addresses(cols["id.resp_h"], "id.resp_h")
    v6 = check_family(rows, src, dst)
    proto_name = pc.utf8_lower(filled(cols["proto"]))
    protocol, _ = rows.lookup(proto_name, "proto", _ZEEK_PROTOCOLS.get, reason="bad proto: not tcp, udp or icmp")
    protocol = np.where((protocol == PROTO_ICMP) & v6, PROTO_ICMPV6, protocol)
    orig_p = rows.uint(cols["id.orig_p"], "id.orig_p", 0xFFFF)
    resp_p = rows.uint(cols["id.resp_p"], "id.resp_p", 0xFFFF)
    orig_pkts = rows.uint(cols["orig_pkts"], "orig_pkts", 2**62, empty=0, unset=unset)
    resp_pkts = rows.uint(cols["resp_pkts"], "resp_pkts", 2**62, empty=0, unset=unset)
    volumes = []
    for side, pkts in (("orig", orig_pkts), ("resp", resp_pkts)):
        ip_text = filled(cols[f"{side}_ip_bytes"])
        have_ip = ~is_blank(ip_text, unset)
        ip_bytes = rows.uint(ip_text, f"{side}_ip_bytes", 2**62, empty=0, unset=unset)
        payload = rows.uint(cols[f"{side}_bytes"], f"{side}_bytes", 2**62, empty=0, unset=unset)
        rows.note("bytes_from_payload", ~have_ip & (pkts > 0) & rows.ok)
        volumes.append(np.where(have_ip, ip_bytes, payload))
    orig_bytes, resp_bytes = volumes
    check_volumes(rows, orig_pkts, orig_bytes, orig_pkts > 0, " (orig)")
    check_volumes(rows, resp_pkts, resp_bytes, resp_pkts > 0, " (resp)")
    icmp = icmp_ports(protocol, v6)
    rows.fail(icmp & (orig_p > 255), "bad ICMP type in id.orig_p")
    rows.fail(icmp & (resp_p > 255), "bad ICMP code in id.resp_p")
    counterpart = icmp_counterpart(orig_p, v6)
    two_way = counterpart >= 0
    fwd_icmp = orig_p * 256 + np.where(two_way, 0, resp_p)
    rev_icmp = np.where(two_way, counterpart * 256, fwd_icmp)
    key = pc.binary_join_element_wise(filled(cols["history"]), filled(cols["conn_state"]), pa.scalar("\x1f", pa.large_string()))
    pair, known = rows.lookup(key, "history", _zeek_flags, fail=False)
    tcp = protocol == PROTO_TCP
    rows.note("tcp_connections_without_flags", tcp & ~known & rows.ok)
    orig_flags = np.where(tcp & known, pair & 0xFF, 0)
    resp_flags = np.where(tcp & known, (pair >> 8) & 0xFF, 0)
    # Zeek knows who opened the connection: both flows carry the responder's port as SiLK's
    # application (the service port the flow generator recognised), so the originator's flow is
    # the one whose dPort is it (analysis.tables.sessions decides who opened a matched session so)
    service = np.where(icmp, 0, resp_p)
    fwd = flow_columns(src, dst, v6, sPort=np.where(icmp, 0, orig_p), dPort=np.where(icmp, fwd_icmp, resp_p), protocol=protocol,
                   packets=orig_pkts, bytes=orig_bytes, flags=orig_flags, sTime=s_time, duration=duration,
                   application=service)
    rev = reversed_flow(fwd, packets=resp_pkts, bytes=resp_bytes, flags=resp_flags, sPort=np.where(icmp, 0, resp_p),
                    dPort=np.where(icmp, rev_icmp, orig_p))
    rows.note("connections_both_ways", (orig_pkts > 0) & (resp_pkts > 0) & rows.ok)
    return [(orig_pkts > 0, fwd), (resp_pkts > 0, rev)]


def _zeek_flags(key: str) -> int | None:
    """'history\\x1fconn_state' -> orig flags | resp flags << 8."""
    history, _, state = key.partition("\x1f")
    if history and history not in ("-", "(empty)"):
        orig = resp = 0
        for ch in history:
            bits = _HISTORY_FLAGS.get(ch.upper(), 0)
            if ch.isupper():
                orig |= bits
            else:
                resp |= bits
        return orig | (resp << 8)
    pair = ZEEK_STATES.get(state)
    return None if pair is None else pair[0] | (pair[1] << 8)


def sniff(lines: list[str]) -> bool:
    first = lines[0]
    if first.startswith("#"):
        return any(line.startswith("#fields") for line in lines)
    return first.startswith("{") and '"id.orig_h"' in first


def read(path: Path, head: bytes, options: ReadOptions) -> ImportResult:
    return parse_zeek(read_text(path, head, "zeek"), str(path), old_times=options.old_times)
