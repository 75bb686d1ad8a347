"""NetFlow v9 and IPFIX messages -> their sets -> data records queued per template.

A message's sets are walked in order: template sets go to :class:`~.templates.TemplatesMixin`,
data sets of a known template are cut into records (:meth:`V9IpfixMixin._records`), data sets of a
template not yet seen are held until it comes (bounded in bytes and sets; the oldest is
quarantined first), options data records give sampling and system-init times.

The batch path: datagrams holding a single data set of a known fixed-size template (nearly all of
them) are checked and cut into records with numpy; the others (templates, options, several sets,
unknown templates, anything malformed) go through the per-datagram path in order.  Batches decode
exactly as datagram-by-datagram feeding does.  Templates with variable-length fields (IPFIX) take
a per-record path, which also keeps the sampled packet sections a record carries.

:class:`V9IpfixMixin` is the v9/IPFIX part of :class:`~.decoder.Decoder`, whose state it uses.
"""

from __future__ import annotations

import struct

import numpy as np

from .accounting import DecodeError, ExporterStats
from .templates import (
    IE_SAMPLER_RANDOM_INTERVAL,
    IE_SAMPLING_INTERVAL,
    IE_SAMPLING_PACKET_INTERVAL,
    IE_SYSTEM_INIT_MS,
    VARIABLE,
    Template,
    _Ctx,
    _Group,
    _SetInfo,
    _uint,
)

V9_HEADER = struct.Struct(">HHIIII")  # version count sysUptime unix_secs package_sequence source_id
IPFIX_HEADER = struct.Struct(">HHIII")  # version length export_time sequence observation_domain
SET_HEADER = struct.Struct(">HH")
# header and first set header of a v9 / IPFIX datagram (the batch path)
V9_BATCH_DTYPE = np.dtype(
    [("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("secs", ">u4"), ("sequence", ">u4"), ("domain", ">u4"),
     ("set_id", ">u2"), ("set_length", ">u2")]
)
IPFIX_BATCH_DTYPE = np.dtype(
    [("version", ">u2"), ("length", ">u2"), ("secs", ">u4"), ("sequence", ">u4"), ("domain", ">u4"), ("set_id", ">u2"), ("set_length", ">u2")]
)


class V9IpfixMixin:
    """v9/IPFIX messages, their sets and data records, one by one or a batch at once."""

    def _datagram_v9(self, data: bytes, address: str, label: str, stats: ExporterStats) -> None:
        if len(data) < 20:
            raise DecodeError(f"truncated: v9 header needs 20 bytes, datagram has {len(data)}")
        _, count, uptime, secs, sequence, source_id = V9_HEADER.unpack_from(data)
        ctx = _Ctx(secs * 1000, uptime, -1, label, 9, source_id, sequence)
        self.accounting.bytes["headers"] += 20
        records, _ = self._sets(data, 20, len(data), address, ctx)
        self._sequence((label, 9, source_id), sequence, (1,), stats, per_record=False)
        if records is not None and count != records:
            self.accounting.warnings["v9 count differs from records"] += 1

    def _datagram_ipfix(self, data: bytes, address: str, label: str, stats: ExporterStats) -> None:
        if len(data) < 16:
            raise DecodeError(f"truncated: IPFIX header needs 16 bytes, datagram has {len(data)}")
        _, length, export_s, sequence, domain = IPFIX_HEADER.unpack_from(data)
        if length < 16:
            raise DecodeError(f"message length lying: {length} < 16")
        if length > len(data):
            raise DecodeError(f"truncated: message length {length}, datagram has {len(data)} bytes")
        options = self.exporter_options.get((address, 10, domain), {})
        ctx = _Ctx(export_s * 1000, -1, options.get("init_ms", -1), label, 10, domain, sequence)
        self.accounting.bytes["headers"] += 16
        options_before = self.accounting.option_records
        _, records = self._sets(data, 16, length, address, ctx)
        options = self.accounting.option_records - options_before
        if length < len(data):
            self._reject(label, f"trailing bytes: {len(data) - length} after the message", data[length:], length, version=10, domain=domain, sequence=sequence)
        # IPFIX sequence numbers count data records; unknown when a set was held
        self._sequence((label, 10, domain), sequence, None if records is None else (records, records - options), stats, per_record=True)

    def _sets(self, data: bytes, offset: int, end: int, address: str, ctx: _Ctx) -> tuple[int | None, int | None]:
        """Walk the sets of a v9/IPFIX message.

        Returns (records of any kind, data records); None where a held set makes it unknown, or
        where a broken set header stopped the walk.
        """
        acc = self.accounting
        ipfix = ctx.version == 10
        template_id, options_id = (2, 3) if ipfix else (0, 1)
        records: int | None = 0
        data_records: int | None = 0
        # the template sets a datagram starts with are, nearly always, the same as last time
        prefix_end, prefix_sets = offset, 0
        while prefix_end + 4 <= end:
            set_id, set_length = SET_HEADER.unpack_from(data, prefix_end)
            if (set_id != template_id and set_id != options_id) or set_length < 4 or prefix_end + set_length > end:
                break
            prefix_end += set_length
            prefix_sets += 1
        prefix_key = None
        if prefix_sets:
            prefix_key = (address, ctx.version, ctx.domain, data[offset:prefix_end])
            hit = self._template_prefixes.get(prefix_key)
            if hit is not None and all(self.templates.get((address, ctx.version, ctx.domain, t.tid)) is t for t in hit[3]):
                acc.bytes["headers"] += 4 * prefix_sets
                acc.bytes["templates"] += hit[0]
                acc.bytes["padding"] += hit[1]
                acc.template_records += hit[2]
                records += hit[2]
                offset = prefix_end
                prefix_key = None
            else:
                before = (acc.bytes["templates"], acc.bytes["padding"], acc.template_records, len(self._quarantine))
                defined: list[Template] = []
        while offset < end:
            if end - offset < 4:
                if any(data[offset:end]):
                    self._reject(ctx.exporter, f"truncated: {end - offset} byte(s) left, no room for a set header", data[offset:end], offset, version=ctx.version, domain=ctx.domain, sequence=ctx.sequence)
                else:
                    acc.bytes["padding"] += end - offset
                break
            set_id, set_length = SET_HEADER.unpack_from(data, offset)
            if set_length < 4:
                self._reject(ctx.exporter, f"set length lying: set {set_id} has length {set_length} < 4", data[offset:end], offset, version=ctx.version, domain=ctx.domain, sequence=ctx.sequence)
                return None, None
            if offset + set_length > end:
                self._reject(ctx.exporter, f"truncated: set {set_id} of {set_length} bytes, {end - offset} left", data[offset:end], offset, version=ctx.version, domain=ctx.domain, sequence=ctx.sequence)
                return None, None
            body = data[offset + 4 : offset + set_length]
            acc.bytes["headers"] += 4
            is_data = False
            if set_id == template_id or set_id == options_id:
                n = self._template_set(body, offset + 4, address, ctx, options=set_id == options_id)
                if prefix_key is not None and offset < prefix_end:
                    cached = self._template_sets.get((address, ctx.version, ctx.domain, set_id == options_id, bytes(body)))
                    if cached is None:
                        prefix_key = None  # something in it was rejected or withdrawn: not cached
                    else:
                        defined += cached[3]
            elif set_id >= 256:
                n = self._data_set(set_id, body, offset + 4, address, ctx)
                is_data = True
            else:
                self._reject(ctx.exporter, f"reserved set id: {set_id}", body, offset + 4, version=ctx.version, domain=ctx.domain, sequence=ctx.sequence)
                n = 0
            records = None if n is None or records is None else records + n
            if is_data:
                data_records = None if n is None or data_records is None else data_records + n
            offset += set_length
            if prefix_key is not None and offset == prefix_end:
                if len(self._quarantine) == before[3] and all(self.templates.get((address, ctx.version, ctx.domain, t.tid)) is t for t in defined):
                    if len(self._template_prefixes) > 4096:
                        self._template_prefixes.clear()
                    template_bytes = acc.bytes["templates"] - before[0]
                    # padding from the prefix's own length: releasing held data sets adds padding of theirs
                    padding = len(prefix_key[3]) - 4 * prefix_sets - template_bytes
                    self._template_prefixes[prefix_key] = (template_bytes, padding, acc.template_records - before[2], defined)
                prefix_key = None
        return records, data_records

    def _data_set(self, tid: int, body: bytes, base: int, address: str, ctx: _Ctx) -> int | None:
        key = (address, ctx.version, ctx.domain, tid)
        template = self.templates.get(key)
        if template is None:
            self._hold(key, body, ctx, base)
            return None
        return self._records(template, body, base, address, ctx)

    def _hold(self, key, body: bytes, ctx: _Ctx, base: int) -> None:
        acc = self.accounting
        self._serial += 1
        self.held[self._serial] = (key, bytes(body), ctx, base)
        self.held_by_key.setdefault(key, []).append(self._serial)
        self.held_bytes += len(body)
        acc.held_sets += 1
        acc.bytes["held"] += len(body)
        while self.held and (self.held_bytes > self.max_held_bytes or len(self.held) > self.max_held_sets):
            self._expire(next(iter(self.held)), "template id undefined: held data set evicted (too much held data)")

    def _expire(self, serial: int, reason: str) -> None:
        key, body, ctx, base = self.held.pop(serial)
        serials = self.held_by_key.get(key, [])
        if serial in serials:
            serials.remove(serial)
            if not serials:
                del self.held_by_key[key]
        self.held_bytes -= len(body)
        acc = self.accounting
        acc.held_sets -= 1
        acc.expired_sets += 1
        acc.bytes["held"] -= len(body)
        self._reject(ctx.exporter, f"{reason} (template {key[3]})", body, base, version=ctx.version, domain=ctx.domain, sequence=ctx.sequence, export_ms=ctx.export_ms)

    def _records(self, template: Template, body: bytes, base: int, address: str, ctx: _Ctx) -> int:
        """Account a data set's records and queue them for decoding; returns the record count."""
        acc = self.accounting
        if template.variable:
            return self._records_variable(template, body, base, address, ctx)
        size = template.size
        count = len(body) // size
        rest = len(body) - count * size
        if count == 0:
            self._reject(ctx.exporter, f"data set too short: {len(body)} bytes, template {template.tid} records need {size}", body, base, version=ctx.version, domain=ctx.domain, sequence=ctx.sequence)
            return 0
        acc.bytes["padding"] += rest
        if template.options:
            acc.bytes["options"] += count * size
            acc.option_records += count
            key = (address, ctx.version, ctx.domain, template.tid)
            if self._last_options.get(key) != (template, body):  # exporters repeat the same options data
                self._options(np.frombuffer(body, dtype=template.dtype, count=count), address, ctx)
                self._last_options[key] = (template, bytes(body))
            elif ctx.version == 10 and "init_ms" in self.exporter_options.get((address, 10, ctx.domain), {}):
                ctx.init_ms = self.exporter_options[(address, 10, ctx.domain)]["init_ms"]
            return count
        if template.flowless:
            acc.bytes["other"] += count * size
            acc.other_records += count
            return count
        group = self._groups.get(id(template))
        if group is None:
            group = self._groups[id(template)] = _Group(template)
        group.chunks.append(body[: count * size])
        group.counts.append(count)
        group.ctxs.append(ctx)
        acc.bytes["records"] += count * size
        return count

    def _records_variable(self, template: Template, body: bytes, base: int, address: str, ctx: _Ctx) -> int:
        """Per-record path for templates with variable-length fields."""
        acc = self.accounting
        packed, sizes, sections = [], [], []
        pos = 0
        wanted = template.packed_plan
        section_index = dict(template.sections)
        while len(body) - pos >= template.size:
            start = pos
            spans = []
            ok = True
            for ie, length, _ in template.fields:
                if length == VARIABLE:
                    if pos >= len(body):
                        ok = False
                        break
                    length = body[pos]
                    pos += 1
                    if length == 255:
                        if pos + 2 > len(body):
                            ok = False
                            break
                        length = body[pos] << 8 | body[pos + 1]
                        pos += 2
                if pos + length > len(body):
                    ok = False
                    break
                spans.append((pos, length))
                pos += length
            if not ok:
                pos = start
                break
            packed.append(b"".join(body[spans[i][0] : spans[i][0] + spans[i][1]] for i, _ in wanted))
            sections.append({ie: body[spans[i][0] : spans[i][0] + spans[i][1]] for i, ie in section_index.items()})
            sizes.append(pos - start)
        rest = body[pos:]
        count = len(sizes)
        if count == 0:
            self._reject(ctx.exporter, f"data set too short: {len(body)} bytes hold no complete record of template {template.tid}", body, base, version=ctx.version, domain=ctx.domain, sequence=ctx.sequence)
            return 0
        if rest:
            if any(rest):
                self._reject(ctx.exporter, f"truncated: record of template {template.tid} overruns its set", rest, base + pos, version=ctx.version, domain=ctx.domain, sequence=ctx.sequence)
            else:
                acc.bytes["padding"] += len(rest)
        arr = np.frombuffer(b"".join(packed), dtype=template.dtype) if template.dtype.itemsize else np.zeros(count, dtype=template.dtype)
        if template.options:
            acc.bytes["options"] += pos
            acc.option_records += count
            self._options(arr, address, ctx)
            return count
        if template.flowless:
            acc.bytes["other"] += pos
            acc.other_records += count
            return count
        acc.bytes["records"] += pos
        self._emit_template(template, arr, np.ones(count, dtype=np.int64), _SetInfo.of([ctx] * count), np.asarray(sizes, dtype=np.int64), sections=sections)
        return count

    def _options(self, arr: np.ndarray, address: str, ctx: _Ctx) -> None:
        info = self.exporter_options.setdefault((address, ctx.version, ctx.domain), {})
        names = arr.dtype.names or ()
        for ie, key in ((IE_SAMPLING_INTERVAL, "sampling"), (IE_SAMPLING_PACKET_INTERVAL, "sampling"), (IE_SAMPLER_RANDOM_INTERVAL, "sampling")):
            if f"e{ie}" in names and len(arr):
                info[key] = int(_uint(arr[f"e{ie}"])[-1])
        if f"e{IE_SYSTEM_INIT_MS}" in names and len(arr):
            info["init_ms"] = int(_uint(arr[f"e{IE_SYSTEM_INIT_MS}"])[-1])
            if ctx.version == 10:
                ctx.init_ms = info["init_ms"]

    def _template_batch(self, datagrams: list[bytes], address: str, label: str, stats: ExporterStats) -> bool:
        """v9/IPFIX batch path.

        Datagrams holding one data set of a known fixed-size template (the bulk of any export
        stream) are checked, accounted and cut into records with numpy.  Every other datagram
        (templates, options, several sets, unknown templates, anything malformed) goes through the
        per-datagram path.  Template changes are respected: the simple datagrams before a
        datagram that may change a template (one whose template sets are not re-announcements of
        templates in force) are decoded before it.  Sequence numbers are checked afterwards, in
        datagram order.
        """
        first = datagrams[0]
        if len(first) < 2 or first[0] != 0 or first[1] not in (9, 10):
            return False
        version = first[1]
        hlen, dtype = (20, V9_BATCH_DTYPE) if version == 9 else (16, IPFIX_BATCH_DTYPE)
        n = len(datagrams)
        lengths = np.fromiter(map(len, datagrams), dtype=np.int64, count=n)
        if lengths.min() < hlen + 4:
            return False
        buf = np.frombuffer(b"".join(datagrams), dtype=np.uint8)
        offsets = np.zeros(n, dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        hdr = buf[(offsets[:, None] + np.arange(hlen + 4)).ravel()].view(dtype)
        if (hdr["version"] != version).any():
            return False
        set_length = hdr["set_length"].astype(np.int64)
        simple = (set_length + hlen == lengths) & (hdr["set_id"] >= 256)
        if version == 10:
            simple &= hdr["length"] == lengths
        batch = (datagrams, buf, offsets, lengths, hdr, set_length, version, hlen, address, label, stats)
        self._seq_events = []
        simple_events: list = []
        pending = 0
        try:
            for c in np.flatnonzero(~simple).tolist():
                if self._may_change_templates(datagrams[c], version, hlen, address):
                    self._resolve(batch, np.flatnonzero(simple[pending:c]) + pending, simple_events)
                    pending = c + 1
                self._position = c
                self._datagram(bytes(datagrams[c]), address, label, stats)
            self._resolve(batch, np.flatnonzero(simple[pending:]) + pending, simple_events)
        finally:
            events, self._seq_events = self._seq_events, None
        self._apply_sequences(events, simple_events, label, version, stats)
        return True

    def _may_change_templates(self, data: bytes, version: int, hlen: int, address: str) -> bool:
        """Whether a datagram has a template set that is not a re-announcement of templates in force."""
        if len(data) < hlen:
            return False
        end = len(data)
        if version == 10:
            end = min(end, data[2] << 8 | data[3])
            domain = int.from_bytes(data[12:16], "big")
        else:
            domain = int.from_bytes(data[16:20], "big")
        template_ids = (2, 3) if version == 10 else (0, 1)
        pos = hlen
        while pos + 4 <= end:  # leading template sets: one lookup for all of them
            set_id, set_length = SET_HEADER.unpack_from(data, pos)
            if set_id not in template_ids or set_length < 4 or pos + set_length > end:
                break
            pos += set_length
        if pos > hlen:
            hit = self._template_prefixes.get((address, version, domain, data[hlen:pos]))
            if hit is None or not all(self.templates.get((address, version, domain, t.tid)) is t for t in hit[3]):
                return True
        while pos + 4 <= end:
            set_id, set_length = SET_HEADER.unpack_from(data, pos)
            if set_length < 4:
                return True
            if set_id in template_ids:
                key = (address, version, domain, set_id == template_ids[1], bytes(data[pos + 4 : pos + set_length]))
                cached = self._template_sets.get(key)
                if cached is None or not all(self.templates.get((address, version, domain, t.tid)) is t for t in cached[3]):
                    return True
            pos += set_length
        return False

    def _resolve(self, batch, indices: np.ndarray, simple_events: list) -> None:
        """Decode simple datagrams (one data set each) with the templates in force now."""
        if not len(indices):
            return
        datagrams, buf, offsets, lengths, hdr, set_length, version, hlen, address, label, stats = batch
        domains = hdr["domain"][indices].astype(np.int64)
        keys = (domains << 16) | hdr["set_id"][indices].astype(np.int64)
        unique_keys, inverse = np.unique(keys, return_inverse=True)
        templates = [self.templates.get((address, version, k >> 16, k & 0xFFFF)) for k in unique_keys.tolist()]
        good_template = np.array([t is not None and not t.variable and not t.options and not t.flowless for t in templates])
        sizes = np.array([t.size if t is not None else 0 for t in templates], dtype=np.int64)[inverse]
        body = set_length[indices] - 4
        fast = good_template[inverse] & (body >= sizes) & (sizes > 0)
        for i in indices[~fast].tolist():  # unknown templates (held), options data, short sets
            self._position = i
            self._datagram(bytes(datagrams[i]), address, label, stats)
        if not fast.any():
            return
        if not fast.all():
            indices, domains, inverse, sizes, body = indices[fast], domains[fast], inverse[fast], sizes[fast], body[fast]
        acc = self.accounting
        m = len(indices)
        counts = body // sizes
        record_bytes = counts * sizes
        acc.datagrams += m
        stats.datagrams += m
        stats.versions.add(version)
        total = int(lengths[indices].sum())
        records_total = int(record_bytes.sum())
        acc.bytes["input"] += total
        acc.bytes["headers"] += (hlen + 4) * m
        acc.bytes["records"] += records_total
        acc.bytes["padding"] += total - (hlen + 4) * m - records_total
        sequences = hdr["sequence"][indices].astype(np.int64)
        if version == 9:
            mismatch = int((hdr["count"][indices] != counts).sum())
            if mismatch:
                acc.warnings["v9 count differs from records"] += mismatch
        simple_events.append((indices, domains, sequences, np.ones(m, dtype=np.int64) if version == 9 else counts))
        export_ms = hdr["secs"][indices].astype(np.int64) * 1000
        uptime = hdr["uptime"][indices].astype(np.int64) if version == 9 else np.full(m, -1, dtype=np.int64)
        init = np.full(m, -1, dtype=np.int64)
        if version == 10 and self.exporter_options:
            for d in np.unique(domains).tolist():
                init[domains == d] = self.exporter_options.get((address, 10, d), {}).get("init_ms", -1)
        first = hlen + 4
        for index, template in enumerate(templates):
            pick = np.flatnonzero(inverse == index) if len(templates) > 1 else np.arange(m)
            if not len(pick):
                continue
            rb = record_bytes[pick]
            which = indices[pick]
            if len(pick) <= 32:  # short runs: slicing the payloads is cheaper than a mask
                raw = np.frombuffer(b"".join(datagrams[i][first : first + r] for i, r in zip(which.tolist(), rb.tolist())), dtype=np.uint8)
            else:  # one mask over the bytes: runs of (skip, keep) built with np.repeat
                low = int(offsets[which[0]])
                starts = offsets[which] - low + first
                ends = starts + rb
                runs = np.empty(2 * len(which), dtype=np.int64)
                runs[0::2] = starts - np.concatenate([[0], ends[:-1]])
                runs[1::2] = rb
                keep = np.repeat(np.tile(np.array([False, True]), len(which)), runs)
                raw = buf[low : low + len(keep)][keep]
            info = _SetInfo(export_ms[pick], uptime[pick], init[pick], sequences[pick], [label] * len(pick), version)
            group = self._groups.get(id(template))
            if group is None:
                group = self._groups[id(template)] = _Group(template)
            group.blocks.append((raw, counts[pick], info))
