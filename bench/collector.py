"""Collector throughput: our `vlf collect` against nfcapd, fed the same UDP stream over loopback.

    .venv/bin/python bench/collector.py [--rates 10000,25000,50000,100000] [--seconds 4]
                                        [--format v5|v9|ipfix] [--rcvbuf BYTES]
    .venv/bin/python bench/collector.py --decode      # decoder alone: flows/s for v5, v9 and IPFIX

For each target rate (datagrams per second) a sender process sends ``rate * seconds`` export
datagrams to nfcapd, then the same stream to ``vlf collect`` (each collector in its own process,
one at a time, so they do not compete for the CPUs), and prints datagrams/s and flows/s the sender
achieved, what each collector stored, and the loss.  nfcapd's count is the ``Flows:`` of its own
summary; ours is the ``records`` of the counters file `vlf collect` writes on shutdown.

The stream: ``v5`` is synthetic NetFlow v5 (30 records per datagram, consecutive flow sequence
numbers, current times); ``v9``/``ipfix`` replay softflowd's export of the real capture
shared/data/real/pcap/test-cc-capture-1.pcap (captured once at start-up, with sequence numbers
rewritten so each replay continues the stream).  Both collectors get the same socket buffer
(``--rcvbuf``, nfcapd's ``-B``).  Loopback only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT.parent / "shared" / "data" / "real" / "pcap" / "test-cc-capture-1.pcap"
if not CAPTURE.exists():
    CAPTURE = Path("/work/shared/data/real/pcap/test-cc-capture-1.pcap")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_bound(port: int, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on udp port {port}")


# --- streams ---------------------------------------------------------------------------------


def v5_stream(count: int):
    """(datagram factory, records per datagram) for a synthetic v5 stream with current times."""
    now = int(time.time())
    uptime = 3_600_000
    records = b""
    for i in range(30):
        records += struct.pack(
            ">IIIHHIIIIHHBBBBHHBBH",
            0x0A000000 + i, 0xC0A80000 + i, 0, 1, 2, 3 + i, 400 + 10 * i, uptime - 5000, uptime - 1000,
            1024 + i, 443, 0, 0x1B, 6, 0, 0, 0, 0, 0, 0,
        )
    template = bytearray(struct.pack(">HHIIIIBBH", 5, 30, uptime, now, 0, 0, 0, 0, 0) + records)

    def make(i: int) -> bytes:
        struct.pack_into(">I", template, 16, (30 * i) & 0xFFFFFFFF)
        return bytes(template)

    return make, 30


def softflowd_stream(version: int):
    """softflowd's export of the real capture, replayable with continuing sequence numbers."""
    if shutil.which("softflowd") is None or not CAPTURE.exists():
        sys.exit("v9/ipfix streams need softflowd and shared/data/real/pcap/test-cc-capture-1.pcap")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2.0)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["softflowd", "-r", str(CAPTURE), "-a", "-d", "-v", str(version), "-n", f"127.0.0.1:{sink.getsockname()[1]}", "-p", f"{tmp}/sf.pid"]
        if version == 10:
            cmd[5:5] = ["-A", "milli"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    datagrams = []
    try:
        while True:
            datagrams.append(sink.recv(65535))
    except socket.timeout:
        pass
    sink.close()
    from vlf_dagster.flows.sources.netflow.decoder import Decoder

    decoder = Decoder()
    per = []
    for d in datagrams:
        before = decoder.accounting.records
        decoder.feed([d], ("127.0.0.1", 1))
        per.append(decoder.accounting.records - before)
    flows_per_loop = sum(per)
    loop = [bytearray(d) for d in datagrams]

    def make(i: int) -> bytes:
        turn, k = divmod(i, len(loop))
        d = loop[k]
        if version == 9:
            seq = struct.unpack_from(">I", datagrams[k], 12)[0]
            struct.pack_into(">I", d, 12, (seq + turn * len(loop)) & 0xFFFFFFFF)
        else:
            seq = struct.unpack_from(">I", datagrams[k], 8)[0]
            struct.pack_into(">I", d, 8, (seq + turn * flows_per_loop) & 0xFFFFFFFF)
        return bytes(d)

    return make, per


def sender(port: int, fmt: str, rate: int, count: int, result) -> None:
    """Send ``count`` datagrams at ``rate`` per second (paced in 1 ms slices)."""
    if fmt == "v5":
        make, per = v5_stream(count)
        flows = lambda i: per  # noqa: E731
    else:
        make, per_list = softflowd_stream(9 if fmt == "v9" else 10)
        flows = lambda i: per_list[i % len(per_list)]  # noqa: E731
    datagrams = [make(i) for i in range(count)]
    total_flows = sum(flows(i) for i in range(count))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    address = ("127.0.0.1", port)
    sendto = sock.sendto
    start = time.perf_counter()
    sent = 0
    errors = 0
    burst = max(1, rate // 1000)  # at most 1 ms of datagrams at once: a late sender slips, never bursts
    while sent < count:
        due = min(count, int((time.perf_counter() - start) * rate) + 1, sent + burst)
        while sent < due:
            try:
                sendto(datagrams[sent], address)
            except OSError:
                errors += 1
            sent += 1
        if sent < count:
            ahead = sent / rate - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)
    elapsed = time.perf_counter() - start
    result.put({"datagrams": count, "flows": total_flows, "seconds": elapsed, "send_errors": errors})


def send(port: int, fmt: str, rate: int, count: int) -> dict:
    queue = mp.Queue()
    proc = mp.Process(target=sender, args=(port, fmt, rate, count, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


# --- collectors ------------------------------------------------------------------------------


def run_nfcapd(fmt: str, rate: int, count: int, rcvbuf: int, drain: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        log = open(f"{tmp}/nfcapd.log", "w")
        proc = subprocess.Popen(["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", tmp, "-B", str(rcvbuf)], stdout=log, stderr=log)
        wait_bound(port)
        sent = send(port, fmt, rate, count)
        time.sleep(drain)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
        text = Path(f"{tmp}/nfcapd.log").read_text()
    match = re.search(r"Flows: (\d+), Packets: (\d+), Bytes: (\d+), Sequence Errors: (\d+), Bad Packets: (\d+)", text)
    flows = int(match.group(1)) if match else -1
    return {"sent": sent, "stored": flows, "sequence_errors": int(match.group(4)) if match else -1}


def run_ours(fmt: str, rate: int, count: int, rcvbuf: int, drain: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "vlf_dagster.cli", "collect", "--port", str(port), "--data-dir", tmp, "--grace", "3600", "--rcvbuf", str(rcvbuf)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        wait_bound(port)
        sent = send(port, fmt, rate, count)
        time.sleep(drain)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
        counters = json.loads(next(Path(tmp, "collector").glob("collector-*.json")).read_text())
    return {"sent": sent, "stored": counters["records"], "datagrams": counters["datagrams"], "lost_seq": counters["lost"], "rcvbuf": counters["collector"]["rcvbuf"],
            "backlog": counters["collector"]["inbox_peak"], "dropped": counters["collector"]["dropped"]}


def bench_decode() -> None:
    """Decoder alone, in this process: flows/s per format."""
    from vlf_dagster.flows.sources.netflow.decoder import Decoder

    streams = {"v5": v5_stream(0)[0]}
    for name, version in (("v9", 9), ("ipfix", 10)):
        if shutil.which("softflowd") and CAPTURE.exists():
            streams[name] = softflowd_stream(version)[0]
    for name, make in streams.items():
        datagrams = [make(i) for i in range(50_000)]
        Decoder().feed(datagrams[:100], ("127.0.0.1", 1))  # warm up imports
        decoder = Decoder()
        start = time.perf_counter()
        flows = 0
        for i in range(0, len(datagrams), 4096):
            flows += decoder.feed(datagrams[i : i + 4096], ("127.0.0.1", 1)).table.num_rows
        elapsed = time.perf_counter() - start
        print(f"decode {name:6s} {len(datagrams) / elapsed:>10,.0f} datagrams/s {flows / elapsed:>12,.0f} flows/s  ({flows:,} flows, lost {decoder.accounting.lost})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10000,25000,50000,100000", help="datagrams per second to try (comma separated)")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long each stream lasts at its rate")
    parser.add_argument("--format", choices=["v5", "v9", "ipfix"], default="v5")
    parser.add_argument("--rcvbuf", type=int, default=8 << 20, help="socket receive buffer for both collectors (bytes)")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds to let a collector drain before stopping it")
    parser.add_argument("--decode", action="store_true", help="only time the decoder")
    parser.add_argument("--only", choices=["ours", "nfcapd"], help="run one collector")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.decode:
        bench_decode()
        return
    if shutil.which("nfcapd") is None and args.only != "ours":
        sys.exit("nfcapd not found: apt-get install nfdump (or --only ours)")
    print(f"format {args.format}, {args.seconds:g} s per rate, socket buffer {args.rcvbuf:,} bytes, {os.cpu_count()} CPUs")
    print(f"{'target dg/s':>11} {'collector':>9} {'sent dg/s':>10} {'sent flows/s':>12} {'stored flows':>12} {'loss':>8}  notes")
    for rate in (int(r) for r in args.rates.split(",")):
        count = int(rate * args.seconds)
        for name, run in (("nfcapd", run_nfcapd), ("ours", run_ours)):
            if args.only and args.only != name:
                continue
            out = run(args.format, rate, count, args.rcvbuf, args.drain)
            sent = out["sent"]
            loss = sent["flows"] - out["stored"]
            note = (
                f"sequence errors {out['sequence_errors']}"
                if name == "nfcapd"
                else f"lost by sequence {out['lost_seq']:,}, backlog peak {out['backlog']:,} datagrams, dropped {out['dropped']:,}"
            )
            print(
                f"{rate:>11,} {name:>9} {sent['datagrams'] / sent['seconds']:>10,.0f} {sent['flows'] / sent['seconds']:>12,.0f} "
                f"{out['stored']:>12,} {loss / max(1, sent['flows']):>8.2%}  {note}",
                flush=True,
            )


if __name__ == "__main__":
    main()
