"""A NetFlow v5/v9/IPFIX collector: UDP datagrams -> hourly landing spools the pipeline ingests.

:class:`Collector` listens on a UDP socket (loopback by default) with a big receive buffer
(``SO_RCVBUFFORCE`` when allowed, else ``SO_RCVBUF``, capped by ``net.core.rmem_max``).  A
receiving thread drains it with ``recvmmsg`` (hundreds of datagrams per system call:
:mod:`.receive`) into an in-memory inbox bounded in bytes; the main thread decodes what arrived in
batches of up to 4096 datagrams per exporter with one :class:`~.netflow.decoder.Decoder` (numpy
batch paths), and appends the records to a spool (:mod:`.spool`) per (hour in which the flow
*started*, exporter address)::

    landing/dt=YYYY-MM-DD/hour=HH/collector-<exporter>.parquet      (flow schema)

A spool keeps rows in memory for at most a second (``SPOOL_FLUSH_SECONDS``) and then appends
them, on a writer thread, to a hidden append-only Arrow IPC stream beside its final path
(``.collector-<exporter>.parquet.<pid>-<n>.spool``: the pipeline ignores dot files).  When the
spool closes (``grace`` seconds after both the end of its hour and the last record appended to it,
on shutdown, or early when more than ``max_open_spools`` are open) the stream becomes the final
Parquet file in one rename.  A spool of an hour that was closed before (late records, a restarted
collector) is merged with the file already there, so an hour never loses records and the
pipeline's landing sensor sees the file change and re-packs the hour.

Durability: a collector killed with ``kill -9`` (or a crash) loses at most the records decoded in
its last second and what waited in the socket buffer; the next collector started on the same data
directory publishes every whole batch of the spools left behind (:func:`recover_spools`; a spool
a running collector holds is locked with ``flock`` and left alone).  SIGTERM and Ctrl-C stop the
receiving thread at once, decode what is already received, and publish every spool.

Bounds: at most ``MAX_OPEN_SPOOLS`` open spools (the least recently appended is published first),
records starting more than a day after the collector's clock are quarantined by the decoder, which
also caps exporters, observation domains, templates and sequence streams (:mod:`.netflow`),
quarantining and counting the excess.

Undecodable datagrams and rejected records go to
``quarantine/collector/dt=YYYY-MM-DD/hour=HH/collector-<exporter>.parquet`` (by arrival hour) in
the pipeline's quarantine layout (origin, reason, record as JSON with exporter, version,
observation domain, sequence number, offset and the bytes in hex).

Counters (datagrams, records, lost, undecodable, held, bytes by category, per exporter) are
printed on shutdown and written as JSON: beside every closed spool
(``.collector-<exporter>.json``, hidden so the pipeline does not read it as input, holding the
totals and that exporter's counters only) and for the whole run in
``collector/collector-<bind>-<port>.json`` (with the last ``RECENT_FILES`` files published).
"""

from __future__ import annotations

import gc
import json
import select
import socket
import struct
import sys
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..ingest import QUARANTINE_SCHEMA
from .netflow.accounting import Quarantined, quarantine_table
from .netflow.decoder import Decoder
from .receive import BatchReceiver
from ..schema import FLOW_SCHEMA, MS_PER_HOUR
from .spool import (
    SPOOL_PARQUET_OPTIONS,
    Recovery,
    Spool,
    exporter_slug,
    hour_of_index,
    quarantine_spool_path,
    recover_spools,
    split_by_hour,
    spool_path,
)
from ..storage import write_bytes

DEFAULT_PORT = 9995
DEFAULT_GRACE = 300.0
DEFAULT_RCVBUF = 64 << 20
MAX_OPEN_SPOOLS = 256  # open landing (and quarantine) spools; the least recently appended is published first
RECENT_FILES = 100  # published files the run's counters name (the count is spools_closed)
PROCESS_CHUNK = 4096  # datagrams decoded together: bounded memory, and no long C call holds the GIL


def _warm_up() -> None:
    """Decode and write one record before the first datagram arrives.

    First calls into numpy, Arrow and the Parquet writer load code and hold the GIL for a while;
    done while traffic flows, that stalls the receiving thread long enough to overflow the socket.
    """
    import io

    datagram = struct.pack(">HHIIIIBBH", 5, 1, 10_000, 1_700_000_000, 0, 0, 0, 0, 0) + bytes(48)
    decoder = Decoder()
    for _ in range(2):
        table = decoder.feed([datagram] * 4, ("127.0.0.1", 0)).table
        writer = pq.ParquetWriter(io.BytesIO(), FLOW_SCHEMA, **SPOOL_PARQUET_OPTIONS)
        writer.write_table(pa.concat_tables([table, table]))
        writer.close()
        table.column("sTime").to_numpy()


@dataclass
class CollectorStats:
    received: int = 0  # datagrams taken off the socket
    batches: int = 0
    spools_closed: int = 0
    records_landed: int = 0  # records in closed spools
    quarantine_rows: int = 0
    receive_errors: int = 0
    dropped: int = 0  # datagrams dropped because the decoder fell behind by more than max_inbox_bytes
    truncated: int = 0  # datagrams larger than a receive slot (64 KiB): cannot happen over UDP/IPv4
    inbox_peak: int = 0  # most datagrams waiting between the receiving thread and the decoder
    rcvbuf: int = 0  # the socket's receive buffer as the kernel granted it
    spools_evicted: int = 0  # spools published early to stay under max_open_spools
    files: deque = field(default_factory=lambda: deque(maxlen=RECENT_FILES))


class Collector:
    """UDP NetFlow/IPFIX collector spooling decoded records into the landing area by hour.

    ``open()`` binds the socket (``port=0`` picks a free one: see ``.port``), ``run()`` serves
    until ``duration`` passes or ``stop()`` is called, ``close()`` closes every spool, gives up
    on held data sets and writes the counters.  ``process()`` and ``tick()`` are the socket-free
    core (tests drive them directly).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        bind: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        grace: float = DEFAULT_GRACE,
        rcvbuf: int = DEFAULT_RCVBUF,
        max_inbox_bytes: int = 256 << 20,
        sensor: int = 0,
        max_open_spools: int = MAX_OPEN_SPOOLS,
        clock=time.time,
    ):
        self.data_dir = Path(data_dir)
        self.bind = bind
        self.port = port
        self.grace = float(grace)
        self.rcvbuf = rcvbuf
        self.max_inbox_bytes = max_inbox_bytes
        self.max_open_spools = max_open_spools
        self.recovery = Recovery()
        self._inbox: deque = deque()
        self._inbox_size = 0
        self._inbox_bytes = 0
        self._inbox_lock = threading.Condition()
        self._receiving = threading.Event()
        self.clock = clock
        self.decoder = Decoder(sensor=sensor, clock=clock)
        self.spools: dict[tuple[int, str], Spool] = {}
        self.quarantine_spools: dict[tuple[int, str], Spool] = {}
        self.stats = CollectorStats()
        self.sock: socket.socket | None = None
        self._stop = threading.Event()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlf-collect-writer")
        self._closed = False
        self.started = self.clock()

    # -- socket ------------------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Publish what a killed collector left in its spools (see :func:`recover_spools`)."""
        self.recovery = recover_spools(self.data_dir)
        return self.recovery

    def open(self) -> "Collector":
        self.recover()
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, self.rcvbuf)
                break
            except OSError:
                continue  # SO_RCVBUFFORCE needs CAP_NET_ADMIN; SO_RCVBUF is capped at rmem_max
        self.stats.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        sock.bind((self.bind, self.port))
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.sock = sock
        _warm_up()
        return self

    def stop(self) -> None:
        self._stop.set()

    def run(self, duration: float | None = None) -> dict:
        """Receive, decode and spool until ``duration`` seconds pass or :meth:`stop`.

        A receiving thread drains the socket (``recvmmsg``, hundreds of datagrams per call) into
        an in-memory inbox; this thread decodes what has arrived in batches, appends to the
        spools and closes the hours that are due.  Decoding and Parquet writes never stop the
        socket from being drained; if decoding falls behind by more than ``max_inbox_bytes``,
        the excess is dropped and counted (``collector.dropped``).
        """
        if self.sock is None:
            self.open()
        deadline = None if duration is None else time.monotonic() + duration
        previous_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(previous_interval, 0.001))  # the receiver gets the GIL back quickly
        gc.freeze()  # long-lived objects out of the collector's way: shorter pauses of every thread
        self._receiving.set()
        receiver = threading.Thread(target=self._receive_loop, name="vlf-collect-receiver", daemon=True)
        receiver.start()
        last_tick = 0.0
        try:
            while True:
                stopping = self._stop.is_set() or (deadline is not None and time.monotonic() >= deadline)
                if stopping:
                    self._receiving.clear()
                    receiver.join(5)
                batches = self._take_inbox(0.0 if stopping else 0.2)
                self._process_batches(batches)
                now = self.clock()
                if now - last_tick >= 1.0:
                    self.tick(now)
                    last_tick = now
                if stopping:
                    break
        finally:
            self._receiving.clear()
            receiver.join(5)
            sys.setswitchinterval(previous_interval)
            gc.unfreeze()
        self._process_batches(self._take_inbox(0.0))
        return self.counters()

    def _process_batches(self, batches: list) -> None:
        payloads: list = []
        senders: list = []
        for batch_payloads, batch_senders in batches:
            payloads += batch_payloads
            senders += batch_senders
            if len(payloads) >= PROCESS_CHUNK:
                self._process_lists(payloads, senders)
                payloads, senders = [], []
        if payloads:
            self._process_lists(payloads, senders)

    def _take_inbox(self, timeout: float) -> list:
        with self._inbox_lock:
            if not self._inbox and timeout > 0:
                self._inbox_lock.wait(timeout)
            batches = list(self._inbox)
            self._inbox.clear()
            self._inbox_size = self._inbox_bytes = 0
        return batches

    def _receive_loop(self) -> None:
        receiver = BatchReceiver(self.sock)
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        stats = self.stats
        while self._receiving.is_set():
            if not poller.poll(50):
                continue
            while self._receiving.is_set():  # under a flood the socket never runs dry: look at the flag
                try:
                    payloads, senders = receiver.receive()
                except OSError:
                    stats.receive_errors += 1
                    break
                if not payloads:
                    break
                size = sum(map(len, payloads))
                with self._inbox_lock:
                    if self._inbox_bytes + size > self.max_inbox_bytes:
                        stats.dropped += len(payloads)
                    else:
                        self._inbox.append((payloads, senders))
                        self._inbox_size += len(payloads)
                        self._inbox_bytes += size
                        stats.inbox_peak = max(stats.inbox_peak, self._inbox_size)
                    self._inbox_lock.notify()
        stats.truncated = receiver.truncated

    # -- core --------------------------------------------------------------------------------

    def process(self, datagrams: list[tuple[bytes, tuple]], now: float | None = None) -> None:
        """Decode a batch of (payload, (address, port)) and append the records to their spools."""
        self._process_lists([d for d, _ in datagrams], [a[:2] for _, a in datagrams], now)

    def _process_lists(self, payloads: list[bytes], senders: list[tuple], now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.stats.received += len(payloads)
        self.stats.batches += 1
        first = senders[0]
        if all(s == first for s in senders):  # the common case: one exporter
            groups = {first: payloads}
        else:
            groups = defaultdict(list)
            for data, sender in zip(payloads, senders):
                groups[sender].append(data)
        for exporter, payloads in groups.items():
            out = self.decoder.feed(payloads, exporter)
            self._spool(out.table, exporter[0], now)
            self._quarantine(out.quarantine, now)

    def _spool(self, table: pa.Table, exporter: str, now: float) -> None:
        for hour_index, part in split_by_hour(table):
            self._spool_for(hour_index, exporter, now).append(part, now)

    def _spool_for(self, hour_index: int, exporter: str, now: float) -> Spool:
        return self._open_spool(self.spools, hour_index, exporter, now, lambda hour: Spool(
            spool_path(self.data_dir, hour, exporter), FLOW_SCHEMA, hour=hour, exporter=exporter, executor=self._writer))

    def _open_spool(self, spools: dict, hour_index: int, exporter: str, now: float, make) -> Spool:
        """The open spool of (hour, exporter) in ``spools``, made by ``make(hour)`` when there is none;
        the least recently appended one is published first when ``max_open_spools`` are open."""
        key = (hour_index, exporter)
        spool = spools.get(key)
        if spool is None:
            if len(spools) >= self.max_open_spools:
                self._close_least_recent(spools, landing=spools is self.spools)
            spool = spools[key] = make(hour_of_index(hour_index))
            spool.last_append = now
        return spool

    def _close_least_recent(self, spools: dict, *, landing: bool) -> None:
        """Publish the spool appended to longest ago: open spools (memory, file handles) stay under the cap.
        Records that come later for its hour are merged into the file, as for any closed hour."""
        key = min(spools, key=lambda k: spools[k].last_append)
        self.stats.spools_evicted += 1
        self._close_spool(spools.pop(key), landing=landing)

    def _quarantine(self, entries: list[Quarantined], now: float) -> None:
        if not entries:
            return
        by_exporter: dict[str, list[Quarantined]] = defaultdict(list)
        for q in entries:
            by_exporter[q.exporter.rsplit(":", 1)[0]].append(q)
        for exporter, items in by_exporter.items():
            self._quarantine_table(quarantine_table(items, origin="collector"), exporter, now)

    def _quarantine_table(self, table: pa.Table, exporter: str, now: float) -> None:
        """Append rejected datagrams or records to the spool of their arrival hour and exporter."""
        spool = self._open_spool(self.quarantine_spools, int(now * 1000) // MS_PER_HOUR, exporter, now, lambda hour: Spool(
            quarantine_spool_path(self.data_dir, hour, exporter), QUARANTINE_SCHEMA, hour=hour, exporter=exporter, max_rows=4096))
        spool.append(table, now)
        self.stats.quarantine_rows += table.num_rows

    def tick(self, now: float | None = None) -> list[Path]:
        """Close the spools whose hour ended, and whose last record came, over ``grace`` seconds ago."""
        now = self.clock() if now is None else now
        closed = []
        for spools in (self.spools, self.quarantine_spools):
            for key in list(spools):
                spool = spools[key]
                hour_end = (key[0] + 1) * 3600
                if now >= max(hour_end, spool.last_append) + self.grace:
                    closed += self._close_spool(spools.pop(key), landing=spools is self.spools)
                else:
                    spool.flush_due(now)
        return closed

    def _close_spool(self, spool: Spool, *, landing: bool) -> list[Path]:
        path = spool.close()
        if path is None:
            return []
        self.stats.spools_closed += 1
        self.stats.files.append(str(path))  # a deque: the most recent files only
        if landing:
            self.stats.records_landed += spool.rows
            info = {
                "hour": spool.hour.strftime("%Y-%m-%dT%H:00Z"),
                "exporter": spool.exporter,
                "records_appended": spool.rows,
                "file_records": pq.ParquetFile(path).metadata.num_rows,
                "closed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                # this exporter's counters and the totals, not every exporter's: a sidecar stays small
                "collector": self.counters(exporters=[spool.exporter]),
            }
            write_bytes(json.dumps(info, indent=2, sort_keys=True).encode(), path.with_name(f".{path.stem}.json"))
        return [path]

    def counters(self, exporters: list[str] | None = None) -> dict:
        """The collector's counters; ``exporters`` limits the per-exporter part to those addresses."""
        acc = self.decoder.accounting.to_dict(exporters)
        return {
            "bind": self.bind,
            "port": self.port,
            "started": datetime.fromtimestamp(self.started, tz=timezone.utc).isoformat(timespec="seconds"),
            "datagrams": acc["datagrams"],
            "records": acc["records"],
            "lost": acc["lost"],
            "undecodable": acc["undecodable"],
            "held": acc["held_sets"],
            "collector": {k: v for k, v in self.stats.__dict__.items() if k != "files"},
            "recovered": self.recovery.__dict__ if self.recovery.spools else {},
            "decoder": acc,
        }

    def counters_path(self) -> Path:
        return self.data_dir / "collector" / f"collector-{exporter_slug(self.bind)}-{self.port}.json"

    def close(self) -> dict:
        """Close every spool, quarantine held data sets, write and return the counters."""
        if self._closed:
            return self.counters()
        self._closed = True
        now = self.clock()
        rest = self.decoder.finish()
        self._spool(rest.table, "unknown", now)
        self._quarantine(rest.quarantine, now)
        for spools, landing in ((self.spools, True), (self.quarantine_spools, False)):
            for key in list(spools):
                self._close_spool(spools.pop(key), landing=landing)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._writer.shutdown(wait=True)
        counters = self.counters()
        counters["files"] = list(self.stats.files)  # the last RECENT_FILES published
        write_bytes(json.dumps(counters, indent=2, sort_keys=True).encode(), self.counters_path())
        return counters

    def __enter__(self) -> "Collector":
        return self.open() if self.sock is None else self

    def __exit__(self, *exc) -> None:
        self.close()


def format_counters(counters: dict) -> str:
    c = counters
    dec = c["decoder"]
    lines = [
        f"datagrams {c['datagrams']:,}  records {c['records']:,}  lost {c['lost']:,} "
        f"({dec['lost_records']:,} records, {dec['lost_datagrams']:,} datagrams)  undecodable {c['undecodable']:,}  "
        f"held {c['held']:,}",
        f"landed {c['collector']['records_landed']:,} records in {c['collector']['spools_closed']:,} files; "
        f"quarantined {c['collector']['quarantine_rows']:,} datagrams/records; socket buffer {c['collector']['rcvbuf']:,} bytes; "
        f"backlog peak {c['collector']['inbox_peak']:,} datagrams, dropped {c['collector']['dropped']:,}",
    ]
    if dec["reasons"]:
        lines.append("reasons: " + ", ".join(f"{k} {v:,}" for k, v in dec["reasons"].items()))
    for address, stats in dec["exporters"].items():
        lines.append(
            f"  exporter {address}: v{','.join(map(str, stats['versions']))} datagrams {stats['datagrams']:,} "
            f"records {stats['records']:,} lost {stats['lost_records']:,} records/{stats['lost_datagrams']:,} datagrams "
            f"undecodable {stats['undecodable']:,}"
        )
    return "\n".join(lines)
