"""A NetFlow v5/v9/IPFIX collector: UDP datagrams -> hourly landing spools the pipeline ingests.

:class:`Collector` listens on a UDP socket (loopback by default) with a big receive buffer
(``SO_RCVBUFFORCE`` when allowed, else ``SO_RCVBUF``, capped by ``net.core.rmem_max``).  A
receiving thread drains it with ``recvmmsg`` (hundreds of datagrams per system call) into an
in-memory inbox bounded in bytes; the main thread decodes what arrived in batches of up to 4096
datagrams per exporter with one :class:`~.netflow.Decoder` (numpy batch paths), and appends the
records to a spool per (hour in which the flow *started*, exporter address)::

    landing/dt=YYYY-MM-DD/hour=HH/collector-<exporter>.parquet      (flow schema)

A spool collects rows in memory and writes them (on a writer thread: Arrow lets go of the GIL while
it encodes) as row groups of a hidden temporary Parquet file beside its final path
(``.collector-...tmp``: the pipeline ignores dot files), and is renamed into
place when it closes: ``grace`` seconds after both the end of its hour and the last record
appended to it, or on shutdown.  A spool of an hour that was closed before (late records, a
restarted collector) is merged with the file already there, so an hour never loses records and
the pipeline's landing sensor sees the file change and re-packs the hour.

Undecodable datagrams and rejected records go to
``quarantine/collector/dt=YYYY-MM-DD/hour=HH/collector-<exporter>.parquet`` (by arrival hour) in
the pipeline's quarantine layout (origin, reason, record as JSON with exporter, version,
observation domain, sequence number, offset and the bytes in hex).

Counters (datagrams, records, lost, undecodable, held, bytes by category, per exporter) are
printed on shutdown and written as JSON: beside every closed spool
(``.collector-<exporter>.json``, hidden so the pipeline does not read it as input) and for the
whole run in ``collector/collector-<bind>-<port>.json``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
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

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .ingest import QUARANTINE_SCHEMA
from .netflow import Decoder, Quarantined, quarantine_table
from .schema import FLOW_SCHEMA, MS_PER_HOUR
from .storage import FILE_MODE, PARQUET_OPTIONS, landing_dir, write_bytes, write_parquet

DEFAULT_PORT = 9995
DEFAULT_GRACE = 300.0
DEFAULT_RCVBUF = 64 << 20
MAX_DATAGRAM = 65535
PROCESS_CHUNK = 4096  # datagrams decoded together: bounded memory, and no long C call holds the GIL
# Dictionary encoding and statistics of every column cost the collector more than half its Parquet
# time; landing files are read whole once by the pipeline, so the spool skips them (zstd stays).
SPOOL_PARQUET_OPTIONS = dict(PARQUET_OPTIONS, use_dictionary=False, write_statistics=["sTime"])


# --- receiving many datagrams per system call ------------------------------------------------------


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32), ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t), ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_MSG_DONTWAIT = 0x40
_MSG_TRUNC = 0x20
_SOCKADDR = 128


class BatchReceiver:
    """``recvmmsg(2)`` through ctypes: up to ``slots`` datagrams per system call (Linux).

    One system call per batch instead of one per datagram matters twice in Python: it is cheaper,
    and the receiving thread gives up the GIL once per batch rather than once per datagram.
    Falls back to ``recvfrom`` where ``recvmmsg`` is missing.
    """

    def __init__(self, sock: socket.socket, slots: int = 512, slot_size: int = 65536):
        self.sock = sock
        self.slots = slots
        self.slot_size = slot_size
        self._recvmmsg = None
        self._addresses: dict[bytes, tuple[str, int]] = {}
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
                self._recvmmsg = libc.recvmmsg
                self._recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Mmsghdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
                self._recvmmsg.restype = ctypes.c_int
            except (OSError, AttributeError):
                self._recvmmsg = None
        if self._recvmmsg is not None:
            self._buffer = ctypes.create_string_buffer(slots * slot_size)
            self._names = ctypes.create_string_buffer(slots * _SOCKADDR)
            self._iov = (_Iovec * slots)()
            self._msgs = (_Mmsghdr * slots)()
            base = ctypes.addressof(self._buffer)
            names = ctypes.addressof(self._names)
            for i in range(slots):
                self._iov[i].iov_base = base + i * slot_size
                self._iov[i].iov_len = slot_size
                hdr = self._msgs[i].msg_hdr
                hdr.msg_name = names + i * _SOCKADDR
                hdr.msg_iov = ctypes.pointer(self._iov[i])
                hdr.msg_iovlen = 1
            self._view = memoryview(self._buffer).cast("B")
            self._names_view = memoryview(self._names).cast("B")
        self.truncated = 0

    def receive(self) -> tuple[list[bytes], list[tuple[str, int]]]:
        """(payloads, sender addresses) of every datagram waiting now, up to ``slots``.

        Two flat lists, and address tuples shared between datagrams: bytes objects are not
        tracked by Python's cyclic garbage collector, so a backlog of datagrams does not make its
        collections (which stop every thread) long.
        """
        payloads: list[bytes] = []
        senders: list[tuple[str, int]] = []
        if self._recvmmsg is None:
            for _ in range(self.slots):
                try:
                    data, address = self.sock.recvfrom(MAX_DATAGRAM)
                except BlockingIOError:
                    break
                payloads.append(data)
                senders.append(self._addresses.setdefault(address[:2], address[:2]))
            return payloads, senders
        for i in range(self.slots):
            self._msgs[i].msg_hdr.msg_namelen = _SOCKADDR
        n = self._recvmmsg(self.sock.fileno(), self._msgs, self.slots, _MSG_DONTWAIT, None)
        if n <= 0:
            if n < 0 and ctypes.get_errno() not in (11, 4):  # EAGAIN, EINTR
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            return payloads, senders
        view, names, size = self._view, self._names_view, self.slot_size
        addresses = self._addresses
        for i in range(n):
            msg = self._msgs[i]
            length = msg.msg_len
            if msg.msg_hdr.msg_flags & _MSG_TRUNC:
                self.truncated += 1
            raw = bytes(names[i * _SOCKADDR : i * _SOCKADDR + msg.msg_hdr.msg_namelen])
            address = addresses.get(raw)
            if address is None:
                address = addresses[raw] = _sockaddr(raw)
                if len(addresses) > 65536:
                    addresses.clear()
            payloads.append(bytes(view[i * size : i * size + length]))
            senders.append(address)
        return payloads, senders


def _sockaddr(raw: bytes) -> tuple[str, int]:
    family = int.from_bytes(raw[:2], sys.byteorder)
    port = struct.unpack_from(">H", raw, 2)[0]
    if family == socket.AF_INET6:
        if raw[8:20] == b"\0" * 10 + b"\xff\xff":  # IPv4-mapped: an IPv4 exporter on a dual-stack socket
            return socket.inet_ntop(socket.AF_INET, raw[20:24]), port
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), port


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


def exporter_slug(address: str) -> str:
    """An exporter address as a file name part (no colons: IPv6 ``:`` becomes ``-``)."""
    return address.replace(":", "-").replace("%", "_").replace("/", "_")


def spool_path(data_dir: str | Path, hour: datetime, exporter: str) -> Path:
    return landing_dir(data_dir, hour) / f"collector-{exporter_slug(exporter)}.parquet"


def quarantine_spool_path(data_dir: str | Path, hour: datetime, exporter: str) -> Path:
    return (
        Path(data_dir) / "quarantine" / "collector" / f"dt={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        / f"collector-{exporter_slug(exporter)}.parquet"
    )


def hour_of_index(hour_index: int) -> datetime:
    """The UTC hour numbered ``hour_index`` hours after the epoch (``sTime // MS_PER_HOUR``)."""
    return datetime.fromtimestamp(hour_index * 3600, tz=timezone.utc)


def split_by_hour(table: pa.Table) -> list[tuple[int, pa.Table]]:
    """(hour index, rows) for each hour in which the table's flows start, in hour order.

    An archive hour holds the flows that *started* in it; ``hour_of_index`` turns the index into
    the hour for :func:`~.storage.landing_dir`.
    """
    if table.num_rows == 0:
        return []
    hours = table.column("sTime").to_numpy() // MS_PER_HOUR
    first = int(hours[0])
    if (hours == first).all():
        return [(first, table)]
    order = np.argsort(hours, kind="stable")
    sorted_hours = hours[order]
    bounds = np.flatnonzero(np.diff(sorted_hours)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(order)]])
    return [(int(sorted_hours[s]), table.take(pa.array(order[s:e]))) for s, e in zip(starts, ends)]


class Spool:
    """Rows for one final Parquet file, buffered in memory and a hidden temporary file.

    With an ``executor`` (one writer thread), row groups are written in the background (Arrow
    lets go of the GIL while it encodes and compresses), at most ``MAX_WRITES_IN_FLIGHT`` ahead.
    """

    _serial = 0
    MAX_WRITES_IN_FLIGHT = 4

    def __init__(self, path: Path, schema: pa.Schema, *, hour: datetime, exporter: str, max_rows: int = 262_144, executor=None):
        self.executor = executor
        self._writes: deque = deque()
        self.path = path
        self.schema = schema
        self.hour = hour
        self.exporter = exporter
        self.max_rows = max_rows
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.rows = 0
        self.last_append = 0.0
        self.tmp: Path | None = None
        self.writer: pq.ParquetWriter | None = None

    def append(self, table: pa.Table, now: float) -> None:
        if table.num_rows == 0:
            return
        self.pending.append(table)
        self.pending_rows += table.num_rows
        self.rows += table.num_rows
        self.last_append = now
        if self.pending_rows >= self.max_rows:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self.pending:
            return
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            Spool._serial += 1
            self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{Spool._serial}.tmp")
            self.writer = pq.ParquetWriter(self.tmp, self.schema, **SPOOL_PARQUET_OPTIONS)
        table = pa.concat_tables(self.pending)
        self.pending, self.pending_rows = [], 0
        if self.executor is None:
            self.writer.write_table(table)
            return
        while len(self._writes) >= self.MAX_WRITES_IN_FLIGHT:
            self._writes.popleft().result()
        self._writes.append(self.executor.submit(self.writer.write_table, table))

    def _wait(self) -> None:
        while self._writes:
            self._writes.popleft().result()

    def close(self) -> Path | None:
        """Rename the spool into place (merged with an existing file); None when it was empty."""
        if self.rows == 0:
            return None
        self._write_pending()
        self._wait()
        assert self.writer is not None and self.tmp is not None
        self.writer.close()
        self.writer = None
        try:
            if self.path.exists():
                merged = pa.concat_tables([pq.read_table(self.path).cast(self.schema), pq.read_table(self.tmp)])
                write_parquet(merged, self.path)
            else:
                os.chmod(self.tmp, FILE_MODE)
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()
        return self.path

    def abandon(self) -> None:
        self._wait()
        if self.writer is not None:
            self.writer.close()
        if self.tmp is not None and self.tmp.exists():
            self.tmp.unlink()


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
    files: list = field(default_factory=list)


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
        clock=time.time,
    ):
        self.data_dir = Path(data_dir)
        self.bind = bind
        self.port = port
        self.grace = float(grace)
        self.rcvbuf = rcvbuf
        self.max_inbox_bytes = max_inbox_bytes
        self._inbox: deque = deque()
        self._inbox_size = 0
        self._inbox_bytes = 0
        self._inbox_lock = threading.Condition()
        self._receiving = threading.Event()
        self.clock = clock
        self.decoder = Decoder(sensor=sensor)
        self.spools: dict[tuple[int, str], Spool] = {}
        self.quarantine_spools: dict[tuple[int, str], Spool] = {}
        self.stats = CollectorStats()
        self.sock: socket.socket | None = None
        self._stop = threading.Event()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlf-collect-writer")
        self._closed = False
        self.started = self.clock()

    # -- socket ------------------------------------------------------------------------------

    def open(self) -> "Collector":
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
            while True:
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
        key = (hour_index, exporter)
        spool = self.spools.get(key)
        if spool is None:
            hour = hour_of_index(hour_index)
            spool = self.spools[key] = Spool(spool_path(self.data_dir, hour, exporter), FLOW_SCHEMA, hour=hour, exporter=exporter, executor=self._writer)
            spool.last_append = now
        return spool

    def _quarantine(self, entries: list[Quarantined], now: float) -> None:
        if not entries:
            return
        hour_index = int(now * 1000) // MS_PER_HOUR
        by_exporter: dict[str, list[Quarantined]] = defaultdict(list)
        for q in entries:
            by_exporter[q.exporter.rsplit(":", 1)[0]].append(q)
        for exporter, items in by_exporter.items():
            key = (hour_index, exporter)
            spool = self.quarantine_spools.get(key)
            if spool is None:
                hour = hour_of_index(hour_index)
                spool = self.quarantine_spools[key] = Spool(quarantine_spool_path(self.data_dir, hour, exporter), QUARANTINE_SCHEMA, hour=hour, exporter=exporter, max_rows=4096)
            spool.append(quarantine_table(items, origin="collector"), now)
            self.stats.quarantine_rows += len(items)

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
        return closed

    def _close_spool(self, spool: Spool, *, landing: bool) -> list[Path]:
        path = spool.close()
        if path is None:
            return []
        self.stats.spools_closed += 1
        self.stats.files.append(str(path))
        if landing:
            self.stats.records_landed += spool.rows
            info = {
                "hour": spool.hour.strftime("%Y-%m-%dT%H:00Z"),
                "exporter": spool.exporter,
                "records_appended": spool.rows,
                "file_records": pq.ParquetFile(path).metadata.num_rows,
                "closed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "collector": self.counters(),
            }
            write_bytes(json.dumps(info, indent=2, sort_keys=True).encode(), path.with_name(f".{path.stem}.json"))
        return [path]

    def counters(self) -> dict:
        acc = self.decoder.accounting.to_dict()
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
        counters["files"] = list(self.stats.files)
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
