"""Classic pcap captures of NetFlow/IPFIX export traffic -> UDP datagrams -> flow records.

A tiny classic-pcap reader (:func:`read_pcap`: Ethernet, Linux cooked, raw IP and loopback link
types; VLAN tags; IPv4 with fragment reassembly; IPv6 with extension headers; UDP) and
:func:`import_pcap`, which decodes the NetFlow v5/v9/IPFIX payloads found in a capture through the
collector's :class:`~.netflow.decoder.Decoder`.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa

from ..schema import empty_table
from .netflow.accounting import Accounting
from .netflow.decoder import Decoder


@dataclass
class UdpPacket:
    ts_ms: int
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


@dataclass
class PcapStats:
    packets: int = 0
    udp: int = 0
    not_udp: int = 0  # not IP, or IP but not UDP
    truncated: int = 0  # captured shorter than the headers or the UDP length say
    fragments: int = 0  # IPv4 fragments (reassembled when all parts are present)
    reassembled: int = 0


class PcapError(ValueError):
    pass


_LINK_ETHERNET, _LINK_NULL, _LINK_RAW, _LINK_LOOP, _LINK_SLL, _LINK_SLL2 = 1, 0, 101, 108, 113, 276


def read_pcap(path: str | Path, stats: PcapStats | None = None) -> Iterator[UdpPacket]:
    """UDP datagrams of a classic pcap file (Ethernet, cooked, raw IP or loopback link types)."""
    data = Path(path).read_bytes()
    stats = stats if stats is not None else PcapStats()
    if len(data) < 24:
        raise PcapError(f"{path}: not a pcap file (too short)")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    elif magic == b"\x0a\x0d\x0d\x0a":
        raise PcapError(f"{path}: pcapng is not supported; convert with `editcap -F pcap`")
    else:
        raise PcapError(f"{path}: not a pcap file (magic {magic.hex()})")
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    fragments: dict[tuple, dict] = {}
    pos = 24
    while pos + 16 <= len(data):
        secs, frac, incl, _orig = record.unpack_from(data, pos)
        pos += 16
        frame = data[pos : pos + incl]
        pos += incl
        stats.packets += 1
        if len(frame) < incl:
            stats.truncated += 1
            break
        ts_ms = secs * 1000 + (frac // 1_000_000 if nanos else frac // 1000)
        ip = _link_payload(frame, linktype)
        if ip is None:
            stats.not_udp += 1
            continue
        packet = _udp(ip, ts_ms, stats, fragments)
        if packet is not None:
            stats.udp += 1
            yield packet


def _link_payload(frame: bytes, linktype: int) -> bytes | None:
    if linktype == _LINK_ETHERNET:
        if len(frame) < 14:
            return None
        pos, ethertype = 14, frame[12] << 8 | frame[13]
        while ethertype in (0x8100, 0x88A8, 0x9100) and len(frame) >= pos + 4:
            ethertype, pos = frame[pos + 2] << 8 | frame[pos + 3], pos + 4
        return frame[pos:] if ethertype in (0x0800, 0x86DD) else None
    if linktype in (_LINK_RAW, 12, 14):
        return frame
    if linktype in (_LINK_NULL, _LINK_LOOP):
        return frame[4:]
    if linktype == _LINK_SLL:
        return frame[16:] if len(frame) >= 16 and (frame[14] << 8 | frame[15]) in (0x0800, 0x86DD) else None
    if linktype == _LINK_SLL2:
        return frame[20:] if len(frame) >= 20 and (frame[0] << 8 | frame[1]) in (0x0800, 0x86DD) else None
    return None


def _udp(ip: bytes, ts_ms: int, stats: PcapStats, fragments: dict) -> UdpPacket | None:
    if not ip:
        stats.not_udp += 1
        return None
    version = ip[0] >> 4
    if version == 4 and len(ip) >= 20:
        ihl = (ip[0] & 15) * 4
        total = ip[2] << 8 | ip[3]
        proto = ip[9]
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        if total < ihl or len(ip) < total:
            stats.truncated += 1
            return None
        flags_frag = ip[6] << 8 | ip[7]
        payload = ip[ihl:total]
        if flags_frag & 0x3FFF:  # more fragments, or an offset
            stats.fragments += 1
            key = (src, dst, ip[4:6], proto)
            entry = fragments.setdefault(key, {"parts": {}, "last": None})
            offset = (flags_frag & 0x1FFF) * 8
            entry["parts"][offset] = payload
            if not flags_frag & 0x2000:
                entry["last"] = offset + len(payload)
            if entry["last"] is None:
                return None
            whole, at = bytearray(), 0
            for off in sorted(entry["parts"]):
                if off != at:
                    return None
                whole += entry["parts"][off]
                at = off + len(entry["parts"][off])
            if at != entry["last"]:
                return None
            del fragments[key]
            stats.reassembled += 1
            payload = bytes(whole)
    elif version == 6 and len(ip) >= 40:
        proto = ip[6]
        src, dst = str(ipaddress.IPv6Address(ip[8:24])), str(ipaddress.IPv6Address(ip[24:40]))
        pos = 40
        end = 40 + (ip[4] << 8 | ip[5])
        while proto in (0, 43, 60) and len(ip) >= pos + 8:
            proto, pos = ip[pos], pos + (ip[pos + 1] + 1) * 8
        if proto == 44:  # IPv6 fragments are not reassembled
            stats.fragments += 1
            return None
        if len(ip) < end:
            stats.truncated += 1
            return None
        payload = ip[pos:end]
    else:
        stats.not_udp += 1
        return None
    if proto != 17:
        stats.not_udp += 1
        return None
    if len(payload) < 8:
        stats.truncated += 1
        return None
    sport, dport, length = struct.unpack_from(">HHH", payload)
    if length < 8 or length > len(payload):
        stats.truncated += 1
        return None
    return UdpPacket(ts_ms, src, sport, dst, dport, bytes(payload[8:length]))


def looks_like_export(payload: bytes) -> bool:
    """A UDP payload that starts like a NetFlow v5/v9 or IPFIX header."""
    return len(payload) >= 2 and payload[0] == 0 and payload[1] in (5, 9, 10)


def import_pcap(
    path: str | Path,
    *,
    ports: Iterable[int] | None = None,
    decoder: Decoder | None = None,
    finish: bool = True,
) -> tuple[pa.Table, Accounting]:
    """Decode the NetFlow v5/v9/IPFIX datagrams of a pcap file through :class:`Decoder`.

    With ``ports``, UDP datagrams sent to those ports are decoded (others skipped); without, UDP
    payloads that start like an export header are.  The accounting's ``pcap`` attribute holds the
    capture's own counters, ``quarantine`` the rejected datagrams and records.
    """
    decoder = decoder or Decoder()
    stats = PcapStats()
    wanted = set(ports) if ports is not None else None
    batches: list[tuple[tuple[str, int], list[bytes]]] = []
    skipped = 0
    for packet in read_pcap(path, stats):
        if wanted is not None and packet.dport not in wanted:
            skipped += 1
            continue
        if wanted is None and not looks_like_export(packet.payload):
            skipped += 1
            continue
        key = (packet.src, packet.sport)
        if batches and batches[-1][0] == key:
            batches[-1][1].append(packet.payload)
        else:
            batches.append((key, [packet.payload]))
    tables, quarantine = [], []
    for key, payloads in batches:
        out = decoder.feed(payloads, key)
        tables.append(out.table)
        quarantine += out.quarantine
    if finish:
        out = decoder.finish()
        tables.append(out.table)
        quarantine += out.quarantine
    acc = decoder.accounting
    acc.pcap = {**stats.__dict__, "skipped_udp": skipped}
    acc.quarantine = quarantine
    table = pa.concat_tables(tables) if tables else empty_table()
    return table, acc
