"""Decoded NetFlow v5 / v9 / IPFIX records -> flow columns -> checked flow-schema tables.

A template's records (one numpy structured view over many data sets) give the flow columns
(addresses, ports, ICMP type and code, volumes, interfaces, times from whichever elements the
template carries); RFC 5103 biflows (reverse elements, enterprise 29305) give a second record for
the reverse direction when it carried packets.  When a record carries no addresses of its own, the
5-tuple is read out of its sampled packet section (``ipHeaderPacketSection``,
``dataLinkFrameSection``).  Decoded records that start before 1995 (an exporter clock never set:
"times in 1970"), over a day after their export time, or relative to a system-init time never
announced are quarantined with their decoded fields; the others become a flow-schema table
(:func:`~vlf_dagster.flows.schema.conform`).

:class:`ColumnsMixin` is that part of :class:`~.decoder.Decoder` (v5 records go through its
``_emit`` too), whose state it uses.
"""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pyarrow as pa

from ...schema import ATTR_IPV6, IPV6_TYPE, PROTO_ICMP, PROTO_ICMPV6, conform
from .accounting import Quarantined, _reason_key
from .templates import (
    IE_BGP_NH_V4,
    IE_BGP_NH_V6,
    IE_DST_PORT,
    IE_DST_V4,
    IE_DST_V6,
    IE_DURATION_MS,
    IE_DURATION_US,
    IE_END_DELTA_US,
    IE_END_MS,
    IE_END_NS,
    IE_END_S,
    IE_END_UPTIME,
    IE_END_US,
    IE_FRAME_SECTION,
    IE_FRAME_SIZE,
    IE_ICMP_CODE_V4,
    IE_ICMP_CODE_V6,
    IE_ICMP_TYPE_V4,
    IE_ICMP_TYPE_V6,
    IE_ICMP_V4,
    IE_ICMP_V6,
    IE_IN_IF,
    IE_IN_PHYSICAL,
    IE_INITIATOR_OCTETS,
    IE_INITIATOR_PACKETS,
    IE_IP_HEADER_SECTION,
    IE_NH_V4,
    IE_NH_V6,
    IE_OBS_MS,
    IE_OBS_NS,
    IE_OBS_S,
    IE_OBS_US,
    IE_OCTETS,
    IE_OCTETS_TOTAL,
    IE_OUT_IF,
    IE_OUT_PHYSICAL,
    IE_PACKETS,
    IE_PACKETS_TOTAL,
    IE_POST_OCTETS,
    IE_POST_PACKETS,
    IE_PROTOCOL,
    IE_SRC_PORT,
    IE_SRC_V4,
    IE_SRC_V6,
    IE_START_DELTA_US,
    IE_START_MS,
    IE_START_NS,
    IE_START_S,
    IE_START_UPTIME,
    IE_START_US,
    IE_SYSTEM_INIT_MS,
    IE_TCP_DST,
    IE_TCP_FLAGS,
    IE_TCP_SRC,
    IE_UDP_DST,
    IE_UDP_SRC,
    Template,
    _SetInfo,
    _uint,
)

NTP_EPOCH_OFFSET_S = 2_208_988_800  # 1900-01-01 -> 1970-01-01
# A record starting before this is implausible: the exporter's clock was not set (times in 1970).
MIN_PLAUSIBLE_MS = 788_918_400_000  # 1995-01-01T00:00Z
# ... or starting this long after the datagram was exported.
MAX_AHEAD_MS = 86_400_000


class ColumnsMixin:
    """Records -> columns -> time checks -> the decoder's output tables and quarantine."""

    def _emit_template(self, template: Template, arr: np.ndarray, counts, info: _SetInfo, sizes: np.ndarray, *, sections=None) -> None:
        """Columns of a template's records (and RFC 5103 reverse records) -> checked output."""
        counts_arr = np.asarray(counts, dtype=np.int64)
        cols, start, duration, export_ms = self._template_columns(template, arr, counts_arr, info)
        if sections is not None and template.sections and IE_SRC_V4 not in template.lengths and IE_SRC_V6 not in template.lengths:
            _apply_sections(cols, sections, template)
        labels, sequences = info.labels, info.sequences
        per_record = sections is not None
        reverse = self._reverse_columns(template, arr, cols, counts_arr, info, export_ms) if template.reverse else None
        self._emit(cols, start, duration, export_ms, sizes, counts_arr, labels, sequences, info.version, per_record_sizes=per_record)
        if reverse is not None:
            rcols, rstart, rduration, rexport, keep = reverse
            if keep.any():
                record_of = np.repeat(np.arange(len(counts_arr)), counts_arr)[keep]
                rcounts = np.bincount(record_of, minlength=len(counts_arr))
                rcols = {k: (None if v is None else v[keep]) for k, v in rcols.items()}
                self._emit(rcols, rstart[keep], rduration[keep], rexport[keep], np.zeros(len(counts_arr), dtype=np.int64), rcounts, labels, sequences, info.version)
                self.accounting.warnings["reverse records (RFC 5103 biflows)"] += int(keep.sum())

    def _reverse_columns(self, template: Template, arr: np.ndarray, cols: dict, counts, info: _SetInfo, export_ms):
        """The reverse direction of RFC 5103 biflow records: swapped endpoints, reverse volumes."""
        names = set(arr.dtype.names or ())

        def rget(ie):
            if f"r{ie}" in names:
                return _uint(arr[f"r{ie}"])
            return _uint(arr[f"e{ie}"]) if f"e{ie}" in names else None

        def only_reverse(*ies):
            for ie in ies:
                if f"r{ie}" in names:
                    return _uint(arr[f"r{ie}"])
            return None

        n = len(arr)
        packets = only_reverse(IE_PACKETS, IE_PACKETS_TOTAL)
        octets = only_reverse(IE_OCTETS, IE_OCTETS_TOTAL)
        packets = np.zeros(n, dtype=np.uint64) if packets is None else packets
        octets = np.zeros(n, dtype=np.uint64) if octets is None else octets
        keep = (packets > 0) | (octets > 0)
        rcols = dict(cols)
        rcols["sIP"], rcols["dIP"] = cols["dIP"], cols["sIP"]
        rcols["sIPv6"], rcols["dIPv6"] = cols["dIPv6"], cols["sIPv6"]
        rcols["in"], rcols["out"] = cols["out"], cols["in"]
        is_icmp = (cols["protocol"] == PROTO_ICMP) | (cols["protocol"] == PROTO_ICMPV6)
        rcols["sPort"] = np.where(is_icmp, cols["sPort"], cols["dPort"]).astype(np.uint16)
        rcols["dPort"] = np.where(is_icmp, cols["dPort"], cols["sPort"]).astype(np.uint16)
        rcols["packets"], rcols["bytes"] = packets, octets
        flags = only_reverse(IE_TCP_FLAGS)
        rcols["flags"] = np.zeros(n, dtype=np.uint8) if flags is None else (flags & 0xFF).astype(np.uint8)
        start, end, no_init = self._times(template, rget, export_ms, counts, info, n)
        rcols["_noinit"] = no_init
        return rcols, start, end - start, export_ms, keep

    def _template_columns(self, template: Template, arr: np.ndarray, counts: np.ndarray, info: _SetInfo):
        n = len(arr)
        export_ms = np.repeat(info.export_ms, counts)
        names = set(arr.dtype.names or ())

        def get(ie):
            return _uint(arr[f"e{ie}"]) if f"e{ie}" in names else None

        def first(*ies):
            for ie in ies:
                v = get(ie)
                if v is not None:
                    return v
            return None

        zeros = np.zeros(n, dtype=np.uint64)
        cols: dict[str, np.ndarray] = {}
        for name, ie in (("sIP", IE_SRC_V4), ("dIP", IE_DST_V4)):
            v = get(ie)
            cols[name] = np.zeros(n, dtype=np.uint32) if v is None else v.astype(np.uint32)
        nh = first(IE_NH_V4, IE_BGP_NH_V4)
        cols["nhIP"] = np.zeros(n, dtype=np.uint32) if nh is None else nh.astype(np.uint32)
        sport = first(IE_SRC_PORT, IE_UDP_SRC, IE_TCP_SRC)
        dport = first(IE_DST_PORT, IE_UDP_DST, IE_TCP_DST)
        cols["sPort"] = (zeros if sport is None else sport).astype(np.uint16)
        cols["dPort"] = (zeros if dport is None else dport).astype(np.uint16)
        proto = get(IE_PROTOCOL)
        cols["protocol"] = (zeros if proto is None else proto).astype(np.uint8)
        packets = first(IE_PACKETS, IE_PACKETS_TOTAL, IE_POST_PACKETS, IE_INITIATOR_PACKETS)
        octets = first(IE_OCTETS, IE_OCTETS_TOTAL, IE_POST_OCTETS, IE_INITIATOR_OCTETS)
        if octets is None:
            octets = get(IE_FRAME_SIZE)  # sampled packets: replaced by the IP length when the section parses
        if packets is None and template.sections:
            packets = np.ones(n, dtype=np.uint64)  # one sampled packet per record
        cols["packets"] = zeros.copy() if packets is None else packets
        cols["bytes"] = zeros.copy() if octets is None else octets
        flags = get(IE_TCP_FLAGS)
        cols["flags"] = (zeros if flags is None else flags & 0xFF).astype(np.uint8)
        for name, ie, physical in (("in", IE_IN_IF, IE_IN_PHYSICAL), ("out", IE_OUT_IF, IE_OUT_PHYSICAL)):
            v = first(ie, physical)
            if v is not None and (v > 0xFFFF).any():
                self.accounting.warnings["interface index above 65535 (stored as 65535)"] += int((v > 0xFFFF).sum())
            cols[name] = (zeros if v is None else np.minimum(v, 0xFFFF)).astype(np.uint16)

        # IPv6
        for name, ie in (("sIPv6", IE_SRC_V6), ("dIPv6", IE_DST_V6), ("nhIPv6", IE_NH_V6)):
            cols[name] = _bytes16(arr[f"e{ie}"]) if f"e{ie}" in names else None
        if cols["nhIPv6"] is None and f"e{IE_BGP_NH_V6}" in names:
            cols["nhIPv6"] = _bytes16(arr[f"e{IE_BGP_NH_V6}"])
        has_v4 = IE_SRC_V4 in template.lengths or IE_DST_V4 in template.lengths
        if cols["sIPv6"] is not None or cols["dIPv6"] is not None:
            for name in ("sIPv6", "dIPv6"):
                if cols[name] is None:
                    cols[name] = np.zeros((n, 16), dtype=np.uint8)
            if has_v4:
                v6 = (cols["sIP"] == 0) & (cols["dIP"] == 0) & (cols["sIPv6"].any(axis=1) | cols["dIPv6"].any(axis=1))
            else:
                v6 = np.ones(n, dtype=bool)
        else:
            v6 = np.zeros(n, dtype=bool)
            cols["sIPv6"] = cols["dIPv6"] = cols["nhIPv6"] = None
        cols["_v6"] = v6

        # ICMP type and code into dPort
        icmp = first(IE_ICMP_V4, IE_ICMP_V6)
        if icmp is None:
            t4, c4 = get(IE_ICMP_TYPE_V4), get(IE_ICMP_CODE_V4)
            t6, c6 = get(IE_ICMP_TYPE_V6), get(IE_ICMP_CODE_V6)
            t, c = (t4, c4) if t4 is not None or c4 is not None else (t6, c6)
            if t is not None or c is not None:
                icmp = (zeros if t is None else t) * 256 + (zeros if c is None else c)
        if icmp is not None:
            is_icmp = (cols["protocol"] == PROTO_ICMP) | (cols["protocol"] == PROTO_ICMPV6)
            use = is_icmp if dport is None else is_icmp & (cols["dPort"] == 0)
            cols["dPort"] = np.where(use, icmp.astype(np.uint16), cols["dPort"])
            cols["sPort"] = np.where(is_icmp & (sport is None), 0, cols["sPort"]).astype(np.uint16)

        # times
        start, end, no_init = self._times(template, get, export_ms, counts, info, n)
        cols["_noinit"] = no_init
        return cols, start, end - start, export_ms

    def _times(self, template, get, export_ms, counts, info: _SetInfo, n):
        reps = counts
        bad = None

        def absolute(ms_ie, s_ie, us_ie, ns_ie):
            v = get(ms_ie)
            if v is not None:
                return v.astype(np.int64)
            v = get(s_ie)
            if v is not None:
                return v.astype(np.int64) * 1000
            for ie in (us_ie, ns_ie):
                v = get(ie)
                if v is not None:
                    secs = (v >> np.uint64(32)).astype(np.int64)
                    frac = (v & np.uint64(0xFFFFFFFF)).astype(np.int64)
                    return (secs - NTP_EPOCH_OFFSET_S) * 1000 + (frac * 1000 >> 32)
            return None

        start = absolute(IE_START_MS, IE_START_S, IE_START_US, IE_START_NS)
        end = absolute(IE_END_MS, IE_END_S, IE_END_US, IE_END_NS)
        up_start, up_end = get(IE_START_UPTIME), get(IE_END_UPTIME)
        if (start is None and up_start is not None) or (end is None and up_end is not None):
            if info.version == 9:
                uptime = np.repeat(info.uptime, reps).astype(np.uint32)

                def convert(v):
                    return export_ms - (uptime - v.astype(np.uint32)).view(np.int32).astype(np.int64)
            else:
                init = get(IE_SYSTEM_INIT_MS)
                if init is not None:
                    init = init.astype(np.int64)
                else:
                    init = np.repeat(info.init, reps)
                bad = init < 0

                def convert(v):
                    return init + v.astype(np.int64)
            if start is None and up_start is not None:
                start = convert(up_start)
            if end is None and up_end is not None:
                end = convert(up_end)
        if start is None:
            delta = get(IE_START_DELTA_US)
            if delta is not None:
                start = export_ms - (delta.astype(np.int64) // 1000)
        if end is None:
            delta = get(IE_END_DELTA_US)
            if delta is not None:
                end = export_ms - (delta.astype(np.int64) // 1000)
        if start is None and end is None:
            start = absolute(IE_OBS_MS, IE_OBS_S, IE_OBS_US, IE_OBS_NS)  # events (NAT, firewall)
        if start is None and end is None:
            self.accounting.warnings["records without times (export time used)"] += n
            start = export_ms.copy()
        if end is None:
            dur = get(IE_DURATION_MS)
            if dur is None:
                dur = get(IE_DURATION_US)
                dur = None if dur is None else dur // np.uint64(1000)
            end = start + (0 if dur is None else dur.astype(np.int64))
        if start is None:
            dur = get(IE_DURATION_MS)
            start = end - (0 if dur is None else dur.astype(np.int64))
        # sysUpTime-relative times without a systemInitTimeMilliseconds cannot be placed
        return start, end, bad if bad is not None and bad.any() else None

    def _emit(self, cols, start, duration, export_ms, sizes, counts, labels, sequences, version, *, per_record_sizes=False):
        """Check times, quarantine implausible records, append the good ones as a table."""
        acc = self.accounting
        n = len(start)
        no_init = cols.pop("_noinit", None)
        if no_init is None:
            no_init = np.zeros(n, dtype=bool)
        early = (start < MIN_PLAUSIBLE_MS) & ~no_init
        # an exporter's clock can lie both ways: a live decoder also holds records to its own clock
        limit = export_ms if self.clock is None else np.minimum(export_ms, int(self.clock() * 1000))
        ahead = start > limit + MAX_AHEAD_MS
        bad = no_init | early | ahead
        neg = duration < 0
        if neg.any():
            acc.warnings["end before start (duration 0)"] += int(neg.sum())
        duration = np.clip(duration, 0, 0xFFFFFFFF).astype(np.uint32)
        v6 = cols.pop("_v6", None)
        if bad.any():
            rec_sizes = sizes if per_record_sizes else np.repeat(sizes, counts)
            rec_label = np.repeat(np.arange(len(counts)), counts)
            for i in np.flatnonzero(bad):
                reason = (
                    "no time base: sysUpTime-relative times without systemInitTimeMilliseconds"
                    if no_init[i]
                    else f"time in 1970: record starts {int(start[i])} ms after the epoch (exporter clock not set?)"
                    if early[i]
                    else "time ahead: record starts over a day after its export time or the collector's clock"
                )
                k = int(rec_label[i])
                record = {name: _jsonable(col, i) for name, col in cols.items() if col is not None}
                record["sTime"] = None if no_init[i] else int(start[i])
                record["duration"] = int(duration[i])
                acc.reasons[_reason_key(reason)] += 1
                acc.bytes["quarantined"] += int(rec_sizes[i])
                acc.bytes["records"] -= int(rec_sizes[i])
                acc.quarantined_records += 1
                self._quarantine.append(
                    Quarantined(labels[k], reason, version=version, sequence=int(sequences[k]), record=record, export_ms=int(export_ms[i]))
                )
            keep = ~bad
            cols = {k: (None if v is None else v[keep]) for k, v in cols.items()}
            start, duration = start[keep], duration[keep]
            v6 = None if v6 is None else v6[keep]
            n = len(start)
            counts_good = np.bincount(np.repeat(np.arange(len(counts)), counts)[keep], minlength=len(counts))
        else:
            counts_good = np.asarray(counts)
        if n == 0:
            return
        acc.records += n
        if labels and labels[0] == labels[-1] and len(set(labels)) == 1:
            acc.exporter(labels[0].rsplit(":", 1)[0]).records += n
        else:
            for k, label in enumerate(labels):
                if counts_good[k]:
                    acc.exporter(label.rsplit(":", 1)[0]).records += int(counts_good[k])
        arrays = {
            "sIP": pa.array(cols["sIP"], pa.uint32()),
            "dIP": pa.array(cols["dIP"], pa.uint32()),
            "sPort": pa.array(cols["sPort"], pa.uint16()),
            "dPort": pa.array(cols["dPort"], pa.uint16()),
            "protocol": pa.array(cols["protocol"], pa.uint8()),
            "packets": pa.array(cols["packets"].astype(np.uint64), pa.uint64()),
            "bytes": pa.array(cols["bytes"].astype(np.uint64), pa.uint64()),
            "flags": pa.array(cols["flags"], pa.uint8()),
            "sTime": pa.array(start.astype(np.int64), pa.int64()),
            "duration": pa.array(duration, pa.uint32()),
            "sensor": pa.array(np.full(n, self.sensor, dtype=np.uint16), pa.uint16()),
            "in": pa.array(cols["in"], pa.uint16()),
            "out": pa.array(cols["out"], pa.uint16()),
            "nhIP": pa.array(cols["nhIP"], pa.uint32()),
        }
        if v6 is not None and v6.any():
            arrays["attributes"] = pa.array(np.where(v6, ATTR_IPV6, 0).astype(np.uint8), pa.uint8())
            for name in ("sIPv6", "dIPv6", "nhIPv6"):
                col = cols.get(name)
                if col is None:
                    col = np.zeros((n, 16), dtype=np.uint8)
                arrays[name] = _binary16(col, v6)
            for name in ("sIP", "dIP", "nhIP"):
                arrays[name] = pa.array(np.where(v6, 0, cols[name]).astype(np.uint32), pa.uint32())
        self._tables.append(conform(pa.table(arrays)))


# --- numpy helpers ---------------------------------------------------------------------------


def _bytes16(column: np.ndarray) -> np.ndarray:
    return np.frombuffer(column.tobytes(), dtype=np.uint8).reshape(len(column), 16)


def _binary16(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    n = len(values)
    data = pa.py_buffer(np.ascontiguousarray(values, dtype=np.uint8).tobytes())
    if valid.all():
        return pa.FixedSizeBinaryArray.from_buffers(IPV6_TYPE, n, [None, data])
    bitmap = pa.py_buffer(np.packbits(valid.astype(np.uint8), bitorder="little").tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(IPV6_TYPE, n, [bitmap, data], null_count=int(n - valid.sum()))


def _jsonable(col: np.ndarray, i: int):
    v = col[i]
    if isinstance(v, np.ndarray):
        return str(ipaddress.IPv6Address(bytes(v)))
    return int(v)


# --- packet sections (sampled packets in IPFIX records) --------------------------------------


def _apply_sections(cols: dict, sections: list[dict], template: Template) -> None:
    """Fill addresses, protocol and ports from ipHeaderPacketSection / dataLinkFrameSection."""
    n = len(sections)
    has_bytes = any(ie in template.lengths for ie in (IE_OCTETS, IE_OCTETS_TOTAL, IE_POST_OCTETS, IE_INITIATOR_OCTETS))
    v6 = cols["_v6"].copy()
    s6 = cols["sIPv6"] if cols["sIPv6"] is not None else np.zeros((n, 16), dtype=np.uint8)
    d6 = cols["dIPv6"] if cols["dIPv6"] is not None else np.zeros((n, 16), dtype=np.uint8)
    s6, d6 = s6.copy(), d6.copy()
    for i, sec in enumerate(sections):
        parsed = None
        if IE_IP_HEADER_SECTION in sec:
            parsed = _parse_ip(sec[IE_IP_HEADER_SECTION], 0)
        elif IE_FRAME_SECTION in sec:
            parsed = _parse_frame(sec[IE_FRAME_SECTION])
        if parsed is None:
            continue
        family, src, dst, proto, sport, dport, length = parsed
        if family == 4:
            cols["sIP"][i], cols["dIP"][i] = src, dst
        else:
            v6[i] = True
            s6[i] = np.frombuffer(src, dtype=np.uint8)
            d6[i] = np.frombuffer(dst, dtype=np.uint8)
        cols["protocol"][i] = proto
        cols["sPort"][i], cols["dPort"][i] = sport, dport
        if not has_bytes:
            cols["bytes"][i] = length
    cols["_v6"] = v6
    if v6.any():
        cols["sIPv6"], cols["dIPv6"] = s6, d6


def _parse_frame(frame: bytes, depth: int = 0):
    """Ethernet (VLAN tags, MPLS with or without a pseudowire control word) -> _parse_ip."""
    if len(frame) < 14 or depth > 2:
        return None
    pos = 12
    ethertype = frame[pos] << 8 | frame[pos + 1]
    pos += 2
    while ethertype in (0x8100, 0x88A8, 0x9100) and len(frame) >= pos + 4:
        ethertype = frame[pos + 2] << 8 | frame[pos + 3]
        pos += 4
    if ethertype in (0x8847, 0x8848):
        while len(frame) >= pos + 4:
            bottom = frame[pos + 2] & 1
            pos += 4
            if bottom:
                break
        if len(frame) <= pos:
            return None
        nibble = frame[pos] >> 4
        if nibble == 4 or nibble == 6:
            return _parse_ip(frame, pos)
        if nibble == 0:  # pseudowire control word, then an Ethernet frame
            return _parse_frame(frame[pos + 4 :], depth + 1)
        return None
    if ethertype in (0x0800, 0x86DD):
        return _parse_ip(frame, pos)
    return None


def _parse_ip(data: bytes, pos: int):
    """(family, src, dst, protocol, sport, dport, ip length) of the IP header at ``pos``."""
    if len(data) <= pos:
        return None
    version = data[pos] >> 4
    if version == 4 and len(data) >= pos + 20:
        ihl = (data[pos] & 15) * 4
        length = data[pos + 2] << 8 | data[pos + 3]
        proto = data[pos + 9]
        src, dst = struct.unpack_from(">II", data, pos + 12)
        frag = (data[pos + 6] << 8 | data[pos + 7]) & 0x1FFF
        l4 = pos + ihl
        family = 4
    elif version == 6 and len(data) >= pos + 40:
        length = (data[pos + 4] << 8 | data[pos + 5]) + 40
        proto = data[pos + 6]
        src, dst = bytes(data[pos + 8 : pos + 24]), bytes(data[pos + 24 : pos + 40])
        l4 = pos + 40
        frag = 0
        while proto in (0, 43, 60) and len(data) >= l4 + 8:
            proto, l4 = data[l4], l4 + (data[l4 + 1] + 1) * 8
        if proto == 44 and len(data) >= l4 + 8:
            frag = (data[l4 + 2] << 8 | data[l4 + 3]) >> 3
            proto, l4 = data[l4], l4 + 8
        family = 6
    else:
        return None
    sport = dport = 0
    if frag == 0 and len(data) >= l4 + 4:
        if proto in (6, 17, 132, 136):
            sport, dport = struct.unpack_from(">HH", data, l4)
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            dport = data[l4] << 8 | data[l4 + 1]
    return family, src, dst, proto, sport, dport, length
