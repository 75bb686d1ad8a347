"""What the NetFlow v5 / v9 / IPFIX decoder counts and rejects: its accounting and quarantine entries.

:class:`Accounting` holds the cumulative counters of a :class:`~.decoder.Decoder`: datagrams, flow
records, option records, sequence gaps per exporter (see :mod:`.sequences`), undecodable datagrams
by reason, and every input byte in exactly one of :data:`BYTE_CATEGORIES`
(``accounting.bytes_balanced()`` checks it).  :class:`Quarantined` is a rejected datagram, part of
a datagram, or decoded record, with its reason; :func:`quarantine_table` puts a list of them in the
pipeline's quarantine layout.  :class:`Decoded` is what one ``feed`` returns.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

BYTE_CATEGORIES = ("headers", "templates", "records", "options", "other", "padding", "held", "quarantined")


class DecodeError(ValueError):
    """A datagram or a part of one cannot be decoded; the message is the quarantine reason."""

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

def quarantine_table(entries: list[Quarantined], *, origin: str = "netflow") -> pa.Table:
    """Quarantined datagrams and records in the pipeline's quarantine layout (origin, reason, record)."""
    from ...ingest import quarantine_table as make

    origins = [f"{origin}:{q.exporter}" + (f"#seq={q.sequence}" if q.sequence is not None else "") + f"+{q.offset}" for q in entries]
    return make(origins, [q.reason for q in entries], [q.to_json() for q in entries])
