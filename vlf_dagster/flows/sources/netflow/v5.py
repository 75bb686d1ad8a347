"""NetFlow v5 datagrams -> flow columns.

The headers of a whole batch of datagrams are checked with numpy (version, count against length,
engine, sequence numbers), and the records are viewed through a big-endian structured dtype (48
bytes per record); header values are repeated per record.  A batch with anything unusual goes
datagram by datagram, which explains what is wrong.

:class:`V5Mixin` is the NetFlow v5 part of :class:`~.decoder.Decoder`, whose state it uses.
"""

from __future__ import annotations

import struct

import numpy as np

from .accounting import DecodeError, ExporterStats

V5_HEADER = struct.Struct(">HHIIIIBBH")  # version count sysUptime unix_secs unix_nsecs flow_sequence engine_type engine_id sampling
V5_MAX_COUNT = (65535 - 24) // 48

V5_DTYPE = np.dtype(
    [
        ("srcaddr", ">u4"), ("dstaddr", ">u4"), ("nexthop", ">u4"), ("input", ">u2"), ("output", ">u2"),
        ("dPkts", ">u4"), ("dOctets", ">u4"), ("first", ">u4"), ("last", ">u4"), ("srcport", ">u2"),
        ("dstport", ">u2"), ("pad1", "u1"), ("tcp_flags", "u1"), ("prot", "u1"), ("tos", "u1"),
        ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"), ("dst_mask", "u1"), ("pad2", ">u2"),
    ]
)
assert V5_DTYPE.itemsize == 48
V5_HEADER_DTYPE = np.dtype(
    [("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("secs", ">u4"), ("nsecs", ">u4"), ("sequence", ">u4"),
     ("engine_type", "u1"), ("engine_id", "u1"), ("sampling", ">u2")]
)


class V5Mixin:
    """NetFlow v5 datagrams, one by one or a batch at once; records queue in ``_v5`` until ``_flush``."""

    def _datagram_v5(self, data: bytes, address: str, label: str, stats: ExporterStats) -> None:
        if len(data) < 24:
            raise DecodeError(f"truncated: v5 header needs 24 bytes, datagram has {len(data)}")
        _, count, uptime, secs, nsecs, sequence, engine_type, engine_id, _ = V5_HEADER.unpack_from(data)
        room, extra = divmod(len(data) - 24, 48)
        if count > V5_MAX_COUNT:
            raise DecodeError(f"count lying: header says {count} records, a datagram holds at most {V5_MAX_COUNT}")
        if room < count and extra:
            raise DecodeError(f"truncated: header says {count} records, datagram holds {len(data) - 24} bytes of records")
        if room != count or extra:
            raise DecodeError(f"count lying: header says {count} records, datagram holds {room} and {extra} byte(s) more")
        if nsecs >= 1_000_000_000:
            self.accounting.warnings["v5 unix_nsecs >= 1e9"] += 1
        self._sequence((label, 5, engine_type, engine_id), sequence, (count,), stats, per_record=True)
        self.accounting.bytes["headers"] += 24
        self.accounting.bytes["records"] += 48 * count
        if count:
            self._v5.append((data, count, uptime, secs * 1000 + min(nsecs, 999_999_999) // 1_000_000, label, sequence))

    def _v5_batch(self, datagrams: list[bytes], label: str, stats: ExporterStats) -> bool:
        """A batch made only of well-formed v5 datagrams of one engine, decoded without a loop.

        Returns False (nothing consumed) when anything is unusual; the per-datagram path then
        decodes the batch and explains what is wrong.
        """
        first = datagrams[0]
        if self._v5 or len(first) < 24 or first[0] != 0 or first[1] != 5:
            return False
        n = len(datagrams)
        lengths = np.fromiter(map(len, datagrams), dtype=np.int64, count=n)
        if lengths.min() < 24:
            return False
        buf = np.frombuffer(b"".join(datagrams), dtype=np.uint8)
        uniform = bool((lengths == lengths[0]).all())  # full datagrams: the usual case under load
        if uniform:
            rows = buf.reshape(n, int(lengths[0]))
            hdr = np.ascontiguousarray(rows[:, :24]).view(V5_HEADER_DTYPE).ravel()
        else:
            offsets = np.zeros(n, dtype=np.int64)
            np.cumsum(lengths[:-1], out=offsets[1:])
            header_index = (offsets[:, None] + np.arange(24)).ravel()
            hdr = buf[header_index].view(V5_HEADER_DTYPE)
        counts = hdr["count"].astype(np.int64)
        if (
            (hdr["version"] != 5).any()
            or (counts > V5_MAX_COUNT).any()
            or (lengths != 24 + 48 * counts).any()
            or (hdr["nsecs"] >= 1_000_000_000).any()
            or (hdr["engine_type"] != hdr["engine_type"][0]).any()
            or (hdr["engine_id"] != hdr["engine_id"][0]).any()
        ):
            return False
        acc = self.accounting
        acc.datagrams += n
        stats.datagrams += n
        stats.versions.add(5)
        total = int(lengths.sum())
        acc.bytes["input"] += total
        acc.bytes["headers"] += 24 * n
        acc.bytes["records"] += total - 24 * n
        # sequence numbers: vectorised when the stream is gapless under the standard reading
        key = (label, 5, int(hdr["engine_type"][0]), int(hdr["engine_id"][0]))
        seq = hdr["sequence"].astype(np.int64)
        state = self.sequences.get(key)
        expected = (seq[:-1] + counts[:-1]) & 0xFFFFFFFF
        if (state is None or state[2] == ("before", 0)) and (seq[1:] == expected).all():
            self._sequence(key, int(seq[0]), (int(counts[0]),), stats, per_record=True)
            self.sequences[key] = (int(seq[-1]), (int(counts[-1]),), ("before", 0))
        else:
            for sq, ct in zip(seq.tolist(), counts.tolist()):
                self._sequence(key, sq, (ct,), stats, per_record=True)
        if uniform:
            rec = np.ascontiguousarray(rows[:, 24:]).view(V5_DTYPE).ravel()
        else:
            keep = np.ones(len(buf), dtype=bool)
            keep[header_index] = False
            rec = buf[keep].view(V5_DTYPE)
        export_ms = hdr["secs"].astype(np.int64) * 1000 + hdr["nsecs"].astype(np.int64) // 1_000_000
        self._v5_records(rec, counts, hdr["uptime"].astype(np.uint32), export_ms, [label] * n, seq)
        return True

    def _decode_v5(self) -> None:
        parts, self._v5 = self._v5, []
        if not parts:
            return
        counts = np.fromiter((p[1] for p in parts), dtype=np.int64, count=len(parts))
        buf = b"".join(memoryview(p[0])[24:] for p in parts)
        rec = np.frombuffer(buf, dtype=V5_DTYPE)
        uptimes = np.fromiter((p[2] for p in parts), dtype=np.uint32, count=len(parts))
        export = np.fromiter((p[3] for p in parts), dtype=np.int64, count=len(parts))
        self._v5_records(rec, counts, uptimes, export, [p[4] for p in parts], [p[5] for p in parts])

    def _v5_records(self, rec: np.ndarray, counts: np.ndarray, uptimes: np.ndarray, export: np.ndarray, labels: list, sequences) -> None:
        uptime = np.repeat(uptimes, counts)
        export_ms = np.repeat(export, counts)
        first = rec["first"].astype(np.uint32)
        last = rec["last"].astype(np.uint32)
        start = export_ms - (uptime - first).view(np.int32).astype(np.int64)
        duration = (last - first).view(np.int32).astype(np.int64)
        cols = {
            "sIP": rec["srcaddr"].astype(np.uint32),
            "dIP": rec["dstaddr"].astype(np.uint32),
            "nhIP": rec["nexthop"].astype(np.uint32),
            "sPort": rec["srcport"].astype(np.uint16),
            "dPort": rec["dstport"].astype(np.uint16),
            "protocol": rec["prot"].astype(np.uint8),
            "packets": rec["dPkts"].astype(np.uint64),
            "bytes": rec["dOctets"].astype(np.uint64),
            "flags": rec["tcp_flags"].astype(np.uint8),
            "in": rec["input"].astype(np.uint16),
            "out": rec["output"].astype(np.uint16),
        }
        self._emit(cols, start, duration, export_ms, np.full(len(counts), 48, dtype=np.int64), counts, labels, sequences, 5)
