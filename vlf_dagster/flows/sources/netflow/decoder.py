"""NetFlow v5, NetFlow v9 and IPFIX export datagrams -> flow records, with every byte accounted for.

The decoders are pure (no sockets, no dagster): a :class:`Decoder` is fed the UDP payloads of one
exporter at a time and returns flow-schema tables (:func:`~vlf_dagster.flows.schema.conform`) plus
the datagrams or parts of datagrams it could not decode, each with a reason.  It keeps the state a
collector needs between datagrams: templates and options templates per (exporter address, version,
observation domain / source id), sequence numbers per exporter and stream, data sets held while
their template has not arrived yet, and sampling and system-init times announced in options data.

No per-record Python loop on the hot path, and for the bulk of a stream no per-datagram one:

- NetFlow v5: the headers of a whole batch of datagrams are checked with numpy (version, count
  against length, engine, sequence numbers), and the records are viewed through a big-endian
  structured dtype (48 bytes per record); header values are repeated per record.
- A v9/IPFIX template is compiled once into a numpy dtype that picks the fields SiLK needs at their
  offsets; the data records of every set using that template in a batch are joined and viewed at
  once.  Datagrams holding a single data set of a known template (nearly all of them) are checked
  and cut into records with numpy as well; the others (templates, options, several sets, unknown
  templates, anything malformed) go through the per-datagram path in order, and identical
  template re-announcements are recognised from their bytes and skipped.  Sequence numbers are
  checked in datagram order after the batch.  Batches decode exactly as datagram-by-datagram
  feeding does (a property test holds them to it).
- Templates with variable-length fields (IPFIX) fall back to a per-record path, which also reads
  5-tuples out of sampled packet sections (``ipHeaderPacketSection``, ``dataLinkFrameSection``)
  when a record carries no addresses of its own.
- RFC 5103 biflows (reverse elements, enterprise 29305) give a second record for the reverse
  direction when it carried packets; other enterprise elements are skipped.

Accounting (:class:`Accounting`): datagrams, flow records, option records, sequence gaps per
exporter (lost records for v5 ``flow_sequence`` and IPFIX sequence numbers, lost datagrams for the
v9 package sequence; a jump beyond :data:`MAX_RECORD_GAP` / :data:`MAX_DATAGRAM_GAP` counts as a
stream reset, not loss), undecodable datagrams by reason, and every input byte in exactly one of the
``bytes`` categories (headers, templates, records, options, other records, padding, held,
quarantined): ``accounting.bytes_balanced()`` checks it.  Exporters disagree on what a sequence
number counts (softflowd's IPFIX counts the message's own records, and no options records): the
reading that explains a stream is learned per stream, so quirks are not reported as loss.
Decoded records that start before 1995 (an exporter clock never set: "times in 1970"), over a
day after their export time, or relative to a system-init time never announced are quarantined
with their decoded fields.

Also here: a tiny classic-pcap reader (Ethernet, Linux cooked, raw IP and loopback link types;
VLAN tags; IPv4 with fragment reassembly; IPv6 with extension headers; UDP) and
:func:`import_pcap`, which decodes the NetFlow/IPFIX payloads found in a capture through the same
decoders.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa

from ..schema import ATTR_IPV6, IPV6_TYPE, PROTO_ICMP, PROTO_ICMPV6, conform, empty_table

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

NTP_EPOCH_OFFSET_S = 2_208_988_800  # 1900-01-01 -> 1970-01-01
# A record starting before this is implausible: the exporter's clock was not set (times in 1970).
MIN_PLAUSIBLE_MS = 788_918_400_000  # 1995-01-01T00:00Z
# ... or starting this long after the datagram was exported.
MAX_AHEAD_MS = 86_400_000

# A jump ahead this far between two datagrams of one stream is no loss an exporter could have had
# (a restart, a damaged or mutated header): it counts as a reset, and the new number is the baseline.
MAX_RECORD_GAP = 10_000_000  # v5 flow_sequence, IPFIX sequence (records)
MAX_DATAGRAM_GAP = 1_000_000  # v9 package_sequence (datagrams)
V5_HEADER = struct.Struct(">HHIIIIBBH")  # version count sysUptime unix_secs unix_nsecs flow_sequence engine_type engine_id sampling
# What one decoder keeps state for; beyond these, datagrams and template records are quarantined
# with a "... cap" reason and counted, so a flood of made-up exporters, domains or templates cannot
# grow the collector's memory without bound.
MAX_EXPORTERS = 1024  # exporter addresses (their counters, templates, sequence streams)
MAX_DOMAINS_PER_EXPORTER = 256  # observation domains / v9 source IDs holding templates, per exporter address
MAX_TEMPLATES_PER_EXPORTER = 4096  # templates in force, per exporter address (all its domains)
MAX_TEMPLATES = 65_536  # templates in force, all exporters
MAX_STREAMS = 16_384  # sequence-number streams (address:port, version, domain); the oldest baseline goes first
V9_HEADER = struct.Struct(">HHIIII")  # version count sysUptime unix_secs package_sequence source_id
IPFIX_HEADER = struct.Struct(">HHIII")  # version length export_time sequence observation_domain
SET_HEADER = struct.Struct(">HH")
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
# header and first set header of a v9 / IPFIX datagram (the batch path)
V9_BATCH_DTYPE = np.dtype(
    [("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("secs", ">u4"), ("sequence", ">u4"), ("domain", ">u4"),
     ("set_id", ">u2"), ("set_length", ">u2")]
)
IPFIX_BATCH_DTYPE = np.dtype(
    [("version", ">u2"), ("length", ">u2"), ("secs", ">u4"), ("sequence", ">u4"), ("domain", ">u4"), ("set_id", ">u2"), ("set_length", ">u2")]
)
V5_HEADER_DTYPE = np.dtype(
    [("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("secs", ">u4"), ("nsecs", ">u4"), ("sequence", ">u4"),
     ("engine_type", "u1"), ("engine_id", "u1"), ("sampling", ">u2")]
)

BYTE_CATEGORIES = ("headers", "templates", "records", "options", "other", "padding", "held", "quarantined")


class DecodeError(ValueError):
    """A datagram or a part of one cannot be decoded; the message is the quarantine reason."""


# --- accounting ------------------------------------------------------------------------------


@dataclass
class ExporterStats:
    datagrams: int = 0
    records: int = 0
    lost_records: int = 0  # v5 flow_sequence and IPFIX sequence gaps
    lost_datagrams: int = 0  # v9 package_sequence gaps
    undecodable: int = 0
    out_of_order: int = 0  # sequence numbers that went backwards (reordering, duplicates, restarts)
    sequence_resets: int = 0  # jumps too far ahead to be loss (MAX_RECORD_GAP / MAX_DATAGRAM_GAP)
    versions: set = field(default_factory=set)

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "versions"}
        out["versions"] = sorted(self.versions)
        return out


@dataclass
class Accounting:
    """Cumulative counters of a :class:`Decoder` (or of one :func:`decode_datagrams` call)."""

    datagrams: int = 0
    undecodable: int = 0  # datagrams rejected whole
    partial: int = 0  # datagrams decoded except for a quarantined part
    records: int = 0  # flow records returned
    option_records: int = 0
    other_records: int = 0  # data records that carry no flow (no addresses, no packet section)
    template_records: int = 0
    quarantined_records: int = 0  # decoded records rejected (implausible times, ...)
    held_sets: int = 0  # data sets waiting for their template now
    held_records: int = 0  # records decoded from held sets once their template came
    expired_sets: int = 0  # held sets whose template never came (quarantined)
    lost_records: int = 0
    lost_datagrams: int = 0
    out_of_order: int = 0
    sequence_resets: int = 0
    reasons: Counter = field(default_factory=Counter)  # quarantine reason (without details) -> count
    warnings: Counter = field(default_factory=Counter)  # oddities that did not stop decoding
    bytes: Counter = field(default_factory=Counter)  # "input" and one entry per BYTE_CATEGORIES
    exporters: dict = field(default_factory=dict)  # address -> ExporterStats
    pcap: dict = field(default_factory=dict)  # import_pcap: the capture's own counters
    quarantine: list = field(default_factory=list, repr=False)  # import_pcap: the Quarantined entries

    @property
    def lost(self) -> int:
        """Sequence gaps: lost records (v5, IPFIX) plus lost datagrams (v9)."""
        return self.lost_records + self.lost_datagrams

    @property
    def held(self) -> int:
        return self.held_sets

    def exporter(self, address: str) -> ExporterStats:
        stats = self.exporters.get(address)
        if stats is None:
            stats = self.exporters[address] = ExporterStats()
        return stats

    def bytes_balanced(self) -> bool:
        """Every input byte is in exactly one category."""
        return self.bytes["input"] == sum(self.bytes[c] for c in BYTE_CATEGORIES)

    def to_dict(self, exporters: list[str] | None = None) -> dict:
        """The counters as JSON-ready values; ``exporters`` limits the per-exporter part to those."""
        out = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("reasons", "warnings", "bytes", "exporters", "quarantine", "pcap")
        }
        if self.pcap:
            out["pcap"] = dict(self.pcap)
        out["lost"] = self.lost
        out["reasons"] = dict(self.reasons.most_common())
        out["warnings"] = dict(self.warnings.most_common())
        out["bytes"] = {k: int(self.bytes[k]) for k in ("input", *BYTE_CATEGORIES)}
        out["bytes_balanced"] = self.bytes_balanced()
        chosen = self.exporters if exporters is None else {a: self.exporters[a] for a in exporters if a in self.exporters}
        out["exporters"] = {a: s.to_dict() for a, s in sorted(chosen.items())}
        return out

    def summary(self) -> str:
        return (
            f"{self.datagrams:,} datagrams, {self.records:,} records, {self.lost:,} lost "
            f"({self.lost_records:,} records, {self.lost_datagrams:,} datagrams), "
            f"{self.undecodable:,} undecodable, {self.held_sets:,} held"
        )


@dataclass
class Quarantined:
    """A rejected datagram, part of a datagram, or decoded record, with its reason."""

    exporter: str  # "address:port"
    reason: str
    version: int | None = None
    domain: int | None = None
    sequence: int | None = None
    offset: int = 0
    data: bytes = b""
    record: dict | None = None  # a decoded record rejected after decoding
    export_ms: int | None = None

    def to_json(self) -> str:
        out = {
            "exporter": self.exporter,
            "version": self.version,
            "domain": self.domain,
            "sequence": self.sequence,
            "offset": self.offset,
            "length": len(self.data),
        }
        if self.export_ms is not None:
            out["export_ms"] = self.export_ms
        if self.record is not None:
            out["record"] = self.record
        if self.data:
            out["hex"] = self.data.hex()
        return json.dumps(out, sort_keys=True)


def _reason_key(reason: str) -> str:
    """The reason without its details (what the counters group by)."""
    return reason.split(":", 1)[0]


@dataclass
class Decoded:
    table: pa.Table
    quarantine: list[Quarantined]

    @property
    def records(self) -> int:
        return self.table.num_rows


# --- templates -------------------------------------------------------------------------------


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


# --- decoder ---------------------------------------------------------------------------------


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


class Decoder:
    """Stateful NetFlow v5 / v9 / IPFIX decoder.

    ``feed(datagrams, exporter)`` decodes a batch of UDP payloads from one exporter
    (``(address, port)``) and returns a :class:`Decoded`; ``finish()`` gives up on data sets still
    waiting for their template.  ``accounting`` holds the cumulative counters.
    """

    def __init__(self, *, max_held_bytes: int = 8 << 20, max_held_sets: int = 10_000, sensor: int = 0, clock=None):
        """``clock`` (seconds since the epoch, e.g. ``time.time``): a live collector's clock; records
        starting over a day after it are quarantined whatever the export header says."""
        self.clock = clock
        self.templates: dict[tuple, Template] = {}
        self._templates_of: Counter = Counter()  # exporter address -> templates in force
        self._domains_of: dict[str, Counter] = {}  # exporter address -> (version, domain) -> templates in force
        self.sequences: dict[tuple, int] = {}
        self.exporter_options: dict[tuple, dict] = {}  # (address, version, domain) -> {"sampling": .., "init_ms": ..}
        self.held: OrderedDict[int, tuple] = OrderedDict()  # serial -> (key, body, ctx, offset)
        self.held_by_key: dict[tuple, list[int]] = {}
        self.held_bytes = 0
        self.max_held_bytes = max_held_bytes
        self.max_held_sets = max_held_sets
        self.sensor = sensor
        self.accounting = Accounting()
        self._serial = 0
        self._compiled: dict[tuple, Template] = {}  # template signature -> compiled template (exporters repeat them)
        self._template_sets: dict[tuple, tuple] = {}  # last template set per exporter/domain/kind: (body, template bytes, records, templates)
        self._withdrew = False
        self._last_defined: list[Template] = []
        self._last_options: dict[tuple, tuple] = {}  # last options data set per template
        self._template_prefixes: dict[tuple, tuple] = {}  # leading template sets of a datagram -> their accounting
        self._seq_events: list | None = None  # sequence checks deferred while a batch is decoded
        self._position = 0
        self._groups: dict[int, _Group] = {}
        self._v5: list = []
        self._quarantine: list[Quarantined] = []
        self._tables: list[pa.Table] = []

    # -- public ------------------------------------------------------------------------------

    def feed(self, datagrams: Iterable[bytes], exporter: tuple[str, int] | str) -> Decoded:
        address, port = _split_exporter(exporter)
        label = f"{address}:{port}"
        if not isinstance(datagrams, list):
            datagrams = list(datagrams)
        if address not in self.accounting.exporters and len(self.accounting.exporters) >= MAX_EXPORTERS:
            acc = self.accounting
            for datagram in datagrams:
                acc.datagrams += 1
                acc.bytes["input"] += len(datagram)
                self._reject(label, f"exporter cap: the collector already keeps {MAX_EXPORTERS} exporters", datagram, 0, whole=True)
            return self._flush()
        stats = self.accounting.exporter(address)
        if len(datagrams) >= 4 and (self._v5_batch(datagrams, label, stats) or self._template_batch(datagrams, address, label, stats)):
            return self._flush()
        for datagram in datagrams:
            self._datagram(bytes(datagram), address, label, stats)
        return self._flush()

    def decode(self, datagram: bytes, exporter: tuple[str, int] | str = ("0.0.0.0", 0)) -> Decoded:
        return self.feed([datagram], exporter)

    def finish(self) -> Decoded:
        """Quarantine every held data set (its template never came)."""
        for serial in list(self.held):
            self._expire(serial, "template id undefined: template never arrived")
        return self._flush()

    # -- datagrams ---------------------------------------------------------------------------

    def _datagram(self, data: bytes, address: str, label: str, stats: ExporterStats) -> None:
        acc = self.accounting
        acc.datagrams += 1
        stats.datagrams += 1
        acc.bytes["input"] += len(data)
        version = (data[0] << 8 | data[1]) if len(data) >= 2 else None
        if version is not None:
            stats.versions.add(version)
        before = len(self._quarantine)
        try:
            if version == 5:
                self._datagram_v5(data, address, label, stats)
            elif version == 9:
                self._datagram_v9(data, address, label, stats)
            elif version == 10:
                self._datagram_ipfix(data, address, label, stats)
            elif version is None:
                raise DecodeError(f"truncated: {len(data)} byte(s), no version")
            else:
                raise DecodeError(f"wrong version: {version}")
        except DecodeError as exc:
            self._reject(label, str(exc), data, 0, version=version, whole=True)
            stats.undecodable += 1
            return
        except Exception as exc:  # a decoder bug must not stop a collector; tests look for this reason
            self._reject(label, f"internal decoder error: {type(exc).__name__}: {exc}", data, 0, version=version, whole=True)
            stats.undecodable += 1
            return
        if len(self._quarantine) > before:
            acc.partial += 1

    def _reject(self, label, reason, data, offset, *, version=None, domain=None, sequence=None, whole=False, export_ms=None):
        acc = self.accounting
        if whole:
            acc.undecodable += 1
        acc.reasons[_reason_key(reason)] += 1
        acc.bytes["quarantined"] += len(data)
        self._quarantine.append(
            Quarantined(label, reason, version=version, domain=domain, sequence=sequence, offset=offset, data=bytes(data), export_ms=export_ms)
        )

    # NetFlow v5 ------------------------------------------------------------------------------

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

    def _apply_sequences(self, events: list, simple_events: list, label: str, version: int, stats: ExporterStats) -> None:
        """A batch's sequence checks in datagram order: vectorised when the batch has no gap."""
        per_record = version == 10
        readings = 2 if version == 10 else 1
        singles_by_key: dict[tuple, list] = {}
        for position, key, sequence, increments, _ in events:
            singles_by_key.setdefault(key, []).append((position, sequence, increments))
        blocks_by_key: dict[tuple, list] = {}
        for indices, domains, sequences, increments in simple_events:
            for domain in np.unique(domains).tolist():
                pick = domains == domain
                blocks_by_key.setdefault((label, version, domain), []).append((indices[pick], sequences[pick], increments[pick]))
        for key in sorted(set(singles_by_key) | set(blocks_by_key), key=repr):
            singles = singles_by_key.get(key, [])
            blocks = blocks_by_key.get(key, [])
            position = np.concatenate([np.fromiter((e[0] for e in singles), dtype=np.int64, count=len(singles))] + [b[0] for b in blocks])
            seq = np.concatenate([np.fromiter((e[1] for e in singles), dtype=np.int64, count=len(singles))] + [b[1] for b in blocks])
            inc = np.concatenate(
                [np.array([[e[2][0], e[2][-1]] if e[2] is not None else [0, 0] for e in singles], dtype=np.int64).reshape(-1, 2)]
                + [np.stack([b[2], b[2]], axis=1) for b in blocks]
            )
            order = np.argsort(position, kind="stable")
            position, seq, inc = position[order], seq[order], inc[order]
            single_increments = {e[0]: e[2] for e in singles}

            def increments_at(i):
                at = int(position[i])
                if at in single_increments:
                    return single_increments[at]
                return tuple(int(x) for x in inc[i][:readings])

            start = 0
            if not any(e[2] is None for e in singles):
                self._sequence(key, int(seq[0]), increments_at(0), stats, per_record=per_record)
                state = self.sequences.get(key)
                mode = state[2] if state is not None else ("before", 0)
                column = inc[:, min(mode[1], 1)]
                ahead = column[:-1] if mode[0] == "before" else column[1:]
                if len(seq) == 1 or ((seq[:-1] + ahead) & 0xFFFFFFFF == seq[1:]).all():
                    if len(seq) > 1:
                        self.sequences[key] = (int(seq[-1]), increments_at(len(seq) - 1), mode)
                    continue
                start = 1
            for i in range(start, len(seq)):
                self._sequence(key, int(seq[i]), increments_at(i), stats, per_record=per_record)

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

    # NetFlow v9 ------------------------------------------------------------------------------

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

    # IPFIX -----------------------------------------------------------------------------------

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

    # sets (v9 and IPFIX) ---------------------------------------------------------------------

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

    # sequences -------------------------------------------------------------------------------

    def _sequence(self, key: tuple, sequence: int, increments: tuple[int, ...] | None, stats: ExporterStats, *, per_record: bool) -> None:
        """Count a sequence gap.

        ``increments`` are what this datagram adds to the exporter's counter under the readings
        an exporter may use (IPFIX: all data records, or flow records only, as softflowd does).
        The standard says a header carries the counter *before* its datagram; some exporters
        (softflowd's IPFIX) send it *after*.  The reading that explains the stream is learned per
        stream, so neither quirk shows up as loss.  ``None``: unknown (a held set), next datagram
        starts a new baseline.
        """
        if self._seq_events is not None:  # inside a batch: checked later, in datagram order
            self._seq_events.append((self._position, key, sequence, increments, per_record))
            return
        state = self.sequences.get(key)
        if state is not None and increments is not None:
            previous, previous_increments, mode = state
            # fast path: the stream's learned reading explains this datagram
            if sequence == (previous + (previous_increments if mode[0] == "before" else increments)[mode[1]]) & 0xFFFFFFFF:
                self.sequences[key] = (sequence, increments, mode)
                return
            candidates = [("before", i, (previous + inc) & 0xFFFFFFFF) for i, inc in enumerate(previous_increments)]
            candidates += [("after", i, (previous + inc) & 0xFFFFFFFF) for i, inc in enumerate(increments)]
            ordered = sorted(candidates, key=lambda c: (c[0], c[1]) != mode)
            match = next((c for c in ordered if c[2] == sequence), None)
            if match is not None:
                mode = match[:2]
            else:
                expected = next(c[2] for c in ordered)
                gap = (sequence - expected) & 0xFFFFFFFF
                if gap > (MAX_RECORD_GAP if per_record else MAX_DATAGRAM_GAP) and gap < 0x80000000:
                    self.accounting.sequence_resets += 1  # a restart or a damaged header, not loss
                    stats.sequence_resets += 1
                elif gap < 0x80000000:
                    if per_record:
                        self.accounting.lost_records += gap
                        stats.lost_records += gap
                    else:
                        self.accounting.lost_datagrams += gap
                        stats.lost_datagrams += gap
                else:
                    self.accounting.out_of_order += 1
                    stats.out_of_order += 1
        else:
            mode = state[2] if state is not None else ("before", 0)
        if increments is None:
            self.sequences.pop(key, None)
        else:
            self.sequences[key] = (sequence, increments, mode)

    # decoding and output ---------------------------------------------------------------------

    def _flush(self) -> Decoded:
        self._decode_v5()
        while len(self.sequences) > MAX_STREAMS:  # the oldest stream's baseline: its next datagram starts anew
            del self.sequences[next(iter(self.sequences))]
        groups, self._groups = self._groups, {}
        for group in groups.values():
            template = group.template
            raw, counts, infos = [], [], []
            if group.chunks:
                raw.append(np.frombuffer(b"".join(group.chunks), dtype=np.uint8))
                counts.append(np.asarray(group.counts, dtype=np.int64))
                infos.append(_SetInfo.of(group.ctxs))
            for block_raw, block_counts, block_info in group.blocks:
                raw.append(block_raw)
                counts.append(block_counts)
                infos.append(block_info)
            arr = (raw[0] if len(raw) == 1 else np.concatenate(raw)).view(template.dtype)
            counts_all = counts[0] if len(counts) == 1 else np.concatenate(counts)
            self._emit_template(template, arr, counts_all, _SetInfo.concat(infos), np.full(len(counts_all), template.size, dtype=np.int64))
        tables, self._tables = self._tables, []
        quarantine, self._quarantine = self._quarantine, []
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0] if tables else empty_table()
        return Decoded(table, quarantine)

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


class _Padding(Exception):
    pass


# --- numpy helpers ---------------------------------------------------------------------------


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


def _split_exporter(exporter) -> tuple[str, int]:
    if isinstance(exporter, tuple):
        return str(exporter[0]), int(exporter[1])
    text = str(exporter)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 0


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


# --- one-shot helpers ------------------------------------------------------------------------


def decode_datagrams(datagrams: Iterable[bytes], exporter: tuple[str, int] | str = ("0.0.0.0", 0), *, finish: bool = True) -> tuple[pa.Table, Accounting, list[Quarantined]]:
    """Decode datagrams of one exporter with a fresh :class:`Decoder`."""
    decoder = Decoder()
    out = decoder.feed(datagrams, exporter)
    tables, quarantine = [out.table], list(out.quarantine)
    if finish:
        rest = decoder.finish()
        tables.append(rest.table)
        quarantine += rest.quarantine
    return pa.concat_tables(tables), decoder.accounting, quarantine


def quarantine_table(entries: list[Quarantined], *, origin: str = "netflow") -> pa.Table:
    """Quarantined datagrams and records in the pipeline's quarantine layout (origin, reason, record)."""
    from ..ingest import quarantine_table as make

    origins = [f"{origin}:{q.exporter}" + (f"#seq={q.sequence}" if q.sequence is not None else "") + f"+{q.offset}" for q in entries]
    return make(origins, [q.reason for q in entries], [q.to_json() for q in entries])


# --- pcap ------------------------------------------------------------------------------------


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
