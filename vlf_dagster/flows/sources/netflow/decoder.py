"""The stateful NetFlow v5 / v9 / IPFIX decoder: batches of one exporter's datagrams -> flow records.

:class:`Decoder` keeps what a collector needs between datagrams (templates, sequence numbers,
held data sets, exporter options), dispatches each datagram by version and returns flow-schema
tables plus what it quarantined.  Its parts live in the modules of this package, as mixins that
share its state: :mod:`.v5`, :mod:`.v9_ipfix` (and :mod:`.templates`), :mod:`.sequences`,
:mod:`.columns`.  :func:`decode_datagrams` is the one-shot form.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Iterable

import numpy as np
import pyarrow as pa

from ...schema import empty_table
from .accounting import Accounting, DecodeError, Decoded, ExporterStats, Quarantined, _reason_key
from .columns import ColumnsMixin
from .sequences import SequencesMixin
from .templates import Template, TemplatesMixin, _Group, _SetInfo
from .v5 import V5Mixin
from .v9_ipfix import V9IpfixMixin

# Exporter addresses one decoder keeps counters, templates and sequence streams for; datagrams of
# more are quarantined with an "exporter cap" reason and counted, so a flood of made-up exporters
# cannot grow the collector's memory without bound (the other caps: templates.py, sequences.py).
MAX_EXPORTERS = 1024  # exporter addresses (their counters, templates, sequence streams)


class Decoder(V5Mixin, V9IpfixMixin, TemplatesMixin, SequencesMixin, ColumnsMixin):
    """Stateful NetFlow v5 / v9 / IPFIX decoder.

    ``feed(datagrams, exporter)`` decodes a batch of UDP payloads from one exporter
    (``(address, port)``) and returns a :class:`Decoded`; ``finish()`` gives up on data sets still
    waiting for their template.  ``accounting`` holds the cumulative counters.

    The state is all here (``__init__``), as are the dispatch by version and the output
    (``_flush``); the decoding of each version is in its mixin.
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

    def _flush(self) -> Decoded:
        self._decode_v5()
        self._trim_streams()
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


def _split_exporter(exporter) -> tuple[str, int]:
    if isinstance(exporter, tuple):
        return str(exporter[0]), int(exporter[1])
    text = str(exporter)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 0


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
