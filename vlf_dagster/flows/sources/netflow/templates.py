"""NetFlow v9 / IPFIX templates: the information elements read, templates compiled to numpy dtypes,
template sets parsed, and the templates in force per (exporter, version, domain) within caps.

A template is compiled once into a numpy dtype that picks the fields SiLK needs at their offsets
(:class:`Template`); exporters re-announce the same templates over and over, so a template set
identical to one seen before, whose templates are all still in force, is recognised from its bytes
and changes nothing.  Data records waiting to be decoded are gathered per template
(:class:`_Group`), with what their times are relative to (:class:`_Ctx` per set, :class:`_SetInfo`
per batch of sets).

:class:`TemplatesMixin` is the part of :class:`~.decoder.Decoder` that parses template sets and
keeps its ``templates``; defining a template releases the data sets held for it
(``_records`` of :class:`~.v9_ipfix.V9IpfixMixin`).
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .accounting import DecodeError

# --- information elements (IPFIX numbers; NetFlow v9 field types share them below 128) ----------

IE_OCTETS, IE_PACKETS = 1, 2
IE_PROTOCOL, IE_TOS, IE_TCP_FLAGS = 4, 5, 6
IE_SRC_PORT, IE_SRC_V4, IE_IN_IF, IE_DST_PORT, IE_DST_V4, IE_OUT_IF, IE_NH_V4 = 7, 8, 10, 11, 12, 14, 15
IE_BGP_NH_V4 = 18
IE_END_UPTIME, IE_START_UPTIME = 21, 22
IE_POST_OCTETS, IE_POST_PACKETS = 23, 24
IE_SRC_V6, IE_DST_V6 = 27, 28
IE_ICMP_V4 = 32
IE_SAMPLING_INTERVAL = 34
IE_SAMPLER_RANDOM_INTERVAL = 50
IE_NH_V6, IE_BGP_NH_V6 = 62, 63
IE_OCTETS_TOTAL, IE_PACKETS_TOTAL = 85, 86
IE_ICMP_V6 = 139
IE_START_S, IE_END_S, IE_START_MS, IE_END_MS = 150, 151, 152, 153
IE_START_US, IE_END_US, IE_START_NS, IE_END_NS = 154, 155, 156, 157
IE_START_DELTA_US, IE_END_DELTA_US = 158, 159
IE_SYSTEM_INIT_MS = 160
IE_DURATION_MS, IE_DURATION_US = 161, 162
IE_ICMP_TYPE_V4, IE_ICMP_CODE_V4, IE_ICMP_TYPE_V6, IE_ICMP_CODE_V6 = 176, 177, 178, 179
IE_UDP_SRC, IE_UDP_DST, IE_TCP_SRC, IE_TCP_DST = 180, 181, 182, 183
IE_INITIATOR_OCTETS, IE_INITIATOR_PACKETS = 231, 298
IE_SAMPLING_PACKET_INTERVAL = 305
IE_FRAME_SIZE, IE_IP_HEADER_SECTION, IE_FRAME_SECTION = 312, 313, 315
IE_IN_PHYSICAL, IE_OUT_PHYSICAL = 252, 253
IE_OBS_S, IE_OBS_MS, IE_OBS_US, IE_OBS_NS = 322, 323, 324, 325
# RFC 5103 bidirectional flows: reverse elements carry this enterprise number
REVERSE_PEN = 29305
_REVERSE_WANTED = {IE_OCTETS, IE_PACKETS, IE_OCTETS_TOTAL, IE_PACKETS_TOTAL, IE_TCP_FLAGS, IE_START_MS, IE_END_MS, IE_START_S, IE_END_S, IE_START_US, IE_END_US, IE_START_NS, IE_END_NS, IE_START_UPTIME, IE_END_UPTIME}

# fields the decoder reads (any other field is skipped by offset)
_WANTED = {
    IE_OCTETS, IE_PACKETS, IE_PROTOCOL, IE_TCP_FLAGS, IE_SRC_PORT, IE_SRC_V4, IE_IN_IF, IE_DST_PORT,
    IE_DST_V4, IE_OUT_IF, IE_NH_V4, IE_BGP_NH_V4, IE_END_UPTIME, IE_START_UPTIME, IE_POST_OCTETS,
    IE_POST_PACKETS, IE_SRC_V6, IE_DST_V6, IE_ICMP_V4, IE_SAMPLING_INTERVAL, IE_SAMPLER_RANDOM_INTERVAL,
    IE_NH_V6, IE_BGP_NH_V6, IE_OCTETS_TOTAL, IE_PACKETS_TOTAL, IE_ICMP_V6, IE_START_S, IE_END_S,
    IE_START_MS, IE_END_MS, IE_START_US, IE_END_US, IE_START_NS, IE_END_NS, IE_START_DELTA_US,
    IE_END_DELTA_US, IE_SYSTEM_INIT_MS, IE_DURATION_MS, IE_DURATION_US, IE_ICMP_TYPE_V4,
    IE_ICMP_CODE_V4, IE_ICMP_TYPE_V6, IE_ICMP_CODE_V6, IE_UDP_SRC, IE_UDP_DST, IE_TCP_SRC, IE_TCP_DST,
    IE_INITIATOR_OCTETS, IE_INITIATOR_PACKETS, IE_SAMPLING_PACKET_INTERVAL, IE_FRAME_SIZE,
    IE_IN_PHYSICAL, IE_OUT_PHYSICAL, IE_OBS_S, IE_OBS_MS, IE_OBS_US, IE_OBS_NS,
}
_ADDRESS_LENGTH = {IE_SRC_V4: 4, IE_DST_V4: 4, IE_NH_V4: 4, IE_BGP_NH_V4: 4, IE_SRC_V6: 16, IE_DST_V6: 16, IE_NH_V6: 16, IE_BGP_NH_V6: 16}
_SECTIONS = (IE_IP_HEADER_SECTION, IE_FRAME_SECTION)
VARIABLE = 0xFFFF

# What one decoder keeps templates for; beyond these, template records are quarantined with a
# "... cap" reason and counted, so a flood of made-up domains or templates cannot grow the
# collector's memory without bound (the exporter cap is the decoder's: decoder.MAX_EXPORTERS).
MAX_DOMAINS_PER_EXPORTER = 256  # observation domains / v9 source IDs holding templates, per exporter address
MAX_TEMPLATES_PER_EXPORTER = 4096  # templates in force, per exporter address (all its domains)
MAX_TEMPLATES = 65_536  # templates in force, all exporters


def _int_format(length: int) -> str | None:
    return {1: "u1", 2: ">u2", 4: ">u4", 8: ">u8"}.get(length)


class Template:
    """A (data or options) template compiled into a numpy dtype over its records."""

    __slots__ = ("tid", "fields", "scope_count", "options", "variable", "size", "dtype", "lengths", "sections", "packed_plan", "flowless", "reverse")

    def __init__(self, tid: int, fields: list[tuple[int, int, int]], *, scope_count: int = 0, options: bool = False):
        self.tid = tid
        self.fields = fields  # (element id, length, enterprise number)
        self.scope_count = scope_count
        self.options = options
        self.variable = any(length == VARIABLE for _, length, _ in fields)
        self.size = sum(1 if length == VARIABLE else length for _, length, _ in fields)  # minimum record size
        names, formats, offsets, self.lengths = [], [], [], {}
        self.sections: list[tuple[int, int]] = []  # (field index, element id) of packet sections
        offset, fixed = 0, True
        for index, (ie, length, pen) in enumerate(fields):
            if length == VARIABLE:
                fixed = False
                if pen == 0 and ie in _SECTIONS and not any(s[1] == ie for s in self.sections):
                    self.sections.append((index, ie))
                continue
            if pen == 0:
                name = f"e{ie}"
                wanted = ie in _WANTED and name not in names and length > 0
            else:
                name = f"r{ie}"
                wanted = pen == REVERSE_PEN and ie in _REVERSE_WANTED and name not in names and length > 0
            if wanted and pen == 0 and ie in _ADDRESS_LENGTH and length != _ADDRESS_LENGTH[ie]:
                wanted = False  # an address of the wrong size: ignored
            if wanted:
                names.append(name)
                formats.append(_int_format(length) or f"V{length}")
                offsets.append(offset if fixed else -1)
                self.lengths[ie if pen == 0 else -ie] = (index, length)
            if fixed:
                offset += length
        if not self.variable:
            self.dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": self.size})
            self.packed_plan = None
        else:
            # the per-record path copies wanted fields into a packed layout
            self.dtype = np.dtype({"names": names, "formats": formats})
            self.packed_plan = [self.lengths[int(n[1:]) if n[0] == "e" else -int(n[1:])] for n in names]
        has_v4 = IE_SRC_V4 in self.lengths or IE_DST_V4 in self.lengths
        has_v6 = IE_SRC_V6 in self.lengths or IE_DST_V6 in self.lengths
        self.flowless = not (has_v4 or has_v6 or self.sections)
        self.reverse = any(-ie in self.lengths for ie in (IE_OCTETS, IE_PACKETS, IE_OCTETS_TOTAL, IE_PACKETS_TOTAL))

    def same_as(self, other: "Template") -> bool:
        return self.fields == other.fields and self.scope_count == other.scope_count and self.options == other.options


def _uint(column: np.ndarray) -> np.ndarray:
    """A numpy column of a structured view as uint64 (big-endian ints or odd-sized raw bytes)."""
    if column.dtype.kind == "u":
        return column.astype(np.uint64)
    size = column.dtype.itemsize
    raw = np.frombuffer(column.tobytes(), dtype=np.uint8).reshape(len(column), size)
    if size > 8:
        raw = raw[:, size - 8 :]
        size = 8
    out = np.zeros((len(column), 8), dtype=np.uint8)
    out[:, 8 - size :] = raw
    return out.view(">u8").reshape(len(column)).astype(np.uint64)


@dataclass
class _Ctx:
    """Per-set context of data records: what times are relative to."""

    export_ms: int
    uptime_ms: int  # v9 header sysUptime; -1 for IPFIX
    init_ms: int  # IPFIX systemInitTimeMilliseconds announced by options; -1 unknown
    exporter: str
    version: int
    domain: int
    sequence: int


@dataclass
class _SetInfo:
    """Per data set (one entry per set, in record order): what its records' times are relative to."""

    export_ms: np.ndarray
    uptime: np.ndarray  # v9 header sysUptime; -1 for IPFIX
    init: np.ndarray  # IPFIX systemInitTimeMilliseconds; -1 unknown
    sequences: np.ndarray
    labels: list
    version: int

    @classmethod
    def of(cls, ctxs: list[_Ctx]) -> "_SetInfo":
        n = len(ctxs)
        return cls(
            np.fromiter((c.export_ms for c in ctxs), dtype=np.int64, count=n),
            np.fromiter((c.uptime_ms for c in ctxs), dtype=np.int64, count=n),
            np.fromiter((c.init_ms for c in ctxs), dtype=np.int64, count=n),
            np.fromiter((c.sequence for c in ctxs), dtype=np.int64, count=n),
            [c.exporter for c in ctxs],
            ctxs[0].version,
        )

    @classmethod
    def concat(cls, infos: list["_SetInfo"]) -> "_SetInfo":
        if len(infos) == 1:
            return infos[0]
        return cls(
            np.concatenate([i.export_ms for i in infos]),
            np.concatenate([i.uptime for i in infos]),
            np.concatenate([i.init for i in infos]),
            np.concatenate([i.sequences for i in infos]),
            [label for i in infos for label in i.labels],
            infos[0].version,
        )


class _Group:
    """Data records of one template gathered over a batch, decoded in one numpy view."""

    __slots__ = ("template", "chunks", "counts", "ctxs", "blocks")

    def __init__(self, template: Template):
        self.template = template
        self.chunks: list[bytes] = []  # per-datagram path: one chunk, count and context per set
        self.counts: list[int] = []
        self.ctxs: list[_Ctx] = []
        self.blocks: list[tuple[np.ndarray, np.ndarray, _SetInfo]] = []  # batch path: (record bytes, counts, info)


class _Padding(Exception):
    """The rest of a template set is padding (or truncated, if it is not all zero bytes)."""


class TemplatesMixin:
    """Template sets -> the decoder's ``templates`` (part of :class:`~.decoder.Decoder`, whose state it uses)."""

    def _template_set(self, body: bytes, base: int, address: str, ctx: _Ctx, *, options: bool) -> int:
        # exporters re-announce the same templates over and over: a set identical to one seen
        # before from this exporter and domain, whose templates are all still in force, changes nothing
        cache_key = (address, ctx.version, ctx.domain, options, bytes(body))
        cached = self._template_sets.get(cache_key)
        if cached is not None and all(self.templates.get((address, ctx.version, ctx.domain, t.tid)) is t for t in cached[3]):
            self.accounting.bytes["templates"] += cached[1]
            self.accounting.bytes["padding"] += len(body) - cached[1]
            self.accounting.template_records += cached[2]
            return cached[2]
        templates_before = self.accounting.bytes["templates"]
        rejected_before = len(self._quarantine)
        self._withdrew = False
        n = self._parse_template_set(body, base, address, ctx, options=options)
        defined = list(self._last_defined)
        if len(self._quarantine) == rejected_before and not self._withdrew and all(
            self.templates.get((address, ctx.version, ctx.domain, t.tid)) is t for t in defined
        ):
            if len(self._template_sets) > 4096:
                self._template_sets.clear()
            self._template_sets[cache_key] = (bytes(body), self.accounting.bytes["templates"] - templates_before, n, defined)
        else:
            self._template_sets.pop(cache_key, None)
        return n

    def _parse_template_set(self, body: bytes, base: int, address: str, ctx: _Ctx, *, options: bool) -> int:
        acc = self.accounting
        ipfix = ctx.version == 10
        pos, n = 0, 0
        self._last_defined = []
        while pos < len(body):
            start = pos
            try:
                if len(body) - pos < 4 or (not ipfix and options and len(body) - pos < 6):
                    raise _Padding
                if ipfix:
                    tid, count = struct.unpack_from(">HH", body, pos)
                    pos += 4
                    scope = 0
                    if tid == 0 and count == 0:
                        raise _Padding
                    if options and count:
                        if len(body) - pos < 2:
                            raise DecodeError(f"truncated: options template {tid} header")
                        (scope,) = struct.unpack_from(">H", body, pos)
                        pos += 2
                    if count == 0:  # template withdrawal
                        if tid not in (2, 3) and tid < 256:
                            raise DecodeError(f"template id below 256: withdrawal of {tid}")
                        self._withdraw(address, ctx, tid)
                        acc.bytes["templates"] += pos - start
                        n += 1
                        acc.template_records += 1
                        continue
                    fields = []
                    for _ in range(count):
                        if len(body) - pos < 4:
                            raise DecodeError(f"truncated: template {tid} field list")
                        ie, length = struct.unpack_from(">HH", body, pos)
                        pos += 4
                        pen = 0
                        if ie & 0x8000:
                            if len(body) - pos < 4:
                                raise DecodeError(f"truncated: template {tid} enterprise number")
                            (pen,) = struct.unpack_from(">I", body, pos)
                            pos += 4
                            ie &= 0x7FFF
                        fields.append((ie, length, pen))
                    if options and (scope == 0 or scope > count):
                        raise DecodeError(f"bad options template: template {tid} has scope field count {scope} of {count} fields")
                else:
                    if options:
                        tid, scope_len, option_len = struct.unpack_from(">HHH", body, pos)
                        pos += 6
                        if tid == 0 and scope_len == 0 and option_len == 0:
                            raise _Padding
                        if scope_len % 4 or option_len % 4:
                            raise DecodeError(f"bad options template: template {tid} scope/option lengths {scope_len}/{option_len} are not multiples of 4")
                        if len(body) - pos < scope_len + option_len:
                            raise DecodeError(f"truncated: options template {tid} field list")
                        count = (scope_len + option_len) // 4
                        scope = scope_len // 4
                    else:
                        tid, count = struct.unpack_from(">HH", body, pos)
                        pos += 4
                        scope = 0
                        if tid == 0 and count == 0:
                            raise _Padding
                        if len(body) - pos < 4 * count:
                            raise DecodeError(f"truncated: template {tid} field list")
                    fields = []
                    for _ in range(count):
                        ie, length = struct.unpack_from(">HH", body, pos)
                        pos += 4
                        fields.append((ie, length, 0))
                    if count == 0:
                        raise DecodeError(f"empty template: template {tid} has no fields")
                if tid < 256:
                    raise DecodeError(f"template id below 256: {tid}")
                for index, (ie, length, _) in enumerate(fields):
                    if length == 0 and (ipfix or not options or index >= scope):
                        raise DecodeError(f"zero-length field: element {ie} in template {tid}")
                    if length == VARIABLE and not ipfix:
                        raise DecodeError(f"variable-length field in a v9 template: element {ie} in template {tid}")
                signature = (tid, tuple(fields), scope, options)
                template = self._compiled.get(signature)
                if template is None:
                    template = Template(tid, fields, scope_count=scope, options=options)
                    if len(self._compiled) >= 4096:
                        self._compiled.clear()
                    self._compiled[signature] = template
                if template.size == 0:
                    raise DecodeError(f"zero-length field: template {tid} records have no bytes")
                if template.size > 65535 - 20:
                    raise DecodeError(f"template too large: template {tid} records of {template.size} bytes do not fit a datagram")
            except _Padding:
                rest = body[start:]
                if any(rest):
                    self._reject(ctx.exporter, f"truncated: {len(rest)} byte(s) at the end of a template set", rest, base + start, version=ctx.version, domain=ctx.domain, sequence=ctx.sequence)
                else:
                    acc.bytes["padding"] += len(rest)
                return n
            except DecodeError as exc:
                self._reject(ctx.exporter, str(exc), body[start:], base + start, version=ctx.version, domain=ctx.domain, sequence=ctx.sequence)
                return n
            try:
                self._admit_template(address, ctx, template.tid)
            except DecodeError as exc:
                self._reject(ctx.exporter, str(exc), body[start:], base + start, version=ctx.version, domain=ctx.domain, sequence=ctx.sequence)
                return n
            acc.bytes["templates"] += pos - start
            acc.template_records += 1
            n += 1
            self._define(address, ctx, template)
            self._last_defined.append(template)
        return n

    def _admit_template(self, address: str, ctx: _Ctx, tid: int) -> None:
        """Raise DecodeError if a new template would pass a cap (a template replaced always passes)."""
        if (address, ctx.version, ctx.domain, tid) in self.templates:
            return
        domains = self._domains_of.get(address)
        if domains is not None and (ctx.version, ctx.domain) not in domains and len(domains) >= MAX_DOMAINS_PER_EXPORTER:
            raise DecodeError(f"domain cap: exporter {address} already has templates in {MAX_DOMAINS_PER_EXPORTER} observation domains")
        if self._templates_of[address] >= MAX_TEMPLATES_PER_EXPORTER:
            raise DecodeError(f"template cap: exporter {address} already has {MAX_TEMPLATES_PER_EXPORTER} templates")
        if len(self.templates) >= MAX_TEMPLATES:
            raise DecodeError(f"template cap: the collector already holds {MAX_TEMPLATES} templates")

    def _forget_template(self, key: tuple) -> None:
        del self.templates[key]
        address, domain = key[0], key[1:3]
        self._templates_of[address] -= 1
        if not self._templates_of[address]:
            del self._templates_of[address]
        domains = self._domains_of[address]
        domains[domain] -= 1
        if not domains[domain]:
            del domains[domain]
            if not domains:
                del self._domains_of[address]

    def _withdraw(self, address: str, ctx: _Ctx, tid: int) -> None:
        self._withdrew = True
        if tid == 2 or tid == 3:  # all (options) templates of the domain
            for key in [k for k in self.templates if k[:3] == (address, ctx.version, ctx.domain)]:
                if self.templates[key].options == (tid == 3):
                    self._forget_template(key)
        elif (address, ctx.version, ctx.domain, tid) in self.templates:
            self._forget_template((address, ctx.version, ctx.domain, tid))

    def _define(self, address: str, ctx: _Ctx, template: Template) -> None:
        key = (address, ctx.version, ctx.domain, template.tid)
        old = self.templates.get(key)
        if old is not None and (old is template or old.same_as(template)):
            template = old  # keep the compiled one (and its group)
        else:
            if old is None:
                self._templates_of[address] += 1
                self._domains_of.setdefault(address, Counter())[key[1:3]] += 1
            self.templates[key] = template
        for serial in self.held_by_key.pop(key, []):
            _, body, held_ctx, offset = self.held.pop(serial)
            self.held_bytes -= len(body)
            self.accounting.held_sets -= 1
            self.accounting.bytes["held"] -= len(body)
            self.accounting.held_records += self._records(template, body, offset, address, held_ctx)
