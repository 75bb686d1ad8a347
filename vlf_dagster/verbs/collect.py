"""`vlf collect`: a NetFlow v5/v9/IPFIX collector spooling records into the landing area by hour."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .common import HelpFormatter, VerbError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "collect",
        help="collect NetFlow v5/v9/IPFIX over UDP into hourly landing files",
        formatter_class=HelpFormatter,
        description=(
            "Listen for NetFlow v5, v9 and IPFIX export datagrams on UDP, decode them and spool the flow\n"
            "records into the landing area by the hour in which each flow started:\n"
            "  DATA/landing/dt=YYYY-MM-DD/hour=HH/collector-<exporter>.parquet\n"
            "which the pipeline's hourly_flows packs into the archive. An hour's file is written (atomically)\n"
            "GRACE seconds after the hour ended and its last record arrived, and on shutdown; records arriving\n"
            "for an hour already written are merged into its file. Until then records are appended every\n"
            "second to a hidden spool beside it: after a crash or kill -9 at most the last second is lost, and\n"
            "the next `vlf collect` on the same data directory publishes what the spools hold. Caps: 256 open\n"
            "hour files, 1,024 exporters, 256 observation domains and 4,096 templates per exporter; the excess,\n"
            "and records starting over a day after this machine's clock, are quarantined and counted.\n"
            "Undecodable datagrams go to\n"
            "DATA/quarantine/collector/... with exporter, sequence number and reason. Counters (datagrams,\n"
            "records, lost, undecodable, held) are printed on shutdown (Ctrl-C, SIGTERM or --duration) and\n"
            "written as JSON to DATA/collector/.\n\n"
            "example: vlf collect --port 9995 --data-dir data   (then: softflowd -i eth0 -n 127.0.0.1:9995)"
        ),
    )
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1; :: or 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=9995, help="UDP port (default 9995; 0 picks a free one)")
    p.add_argument("--data-dir", help="data directory (default: $VLF_DATA_DIR or ./data)")
    p.add_argument("--grace", type=float, default=300.0, metavar="SECONDS", help="how long an hour's spool stays open after the hour and its last record (default 300)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds (default: run until interrupted)")
    p.add_argument("--sensor", type=int, default=0, help="sensor number stamped on the records (default 0)")
    p.add_argument("--rcvbuf", type=int, default=64 << 20, metavar="BYTES", help="socket receive buffer to ask for (default 64 MiB)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..flows.sources.collector import Collector, format_counters

    if args.grace < 0:
        raise VerbError("--grace must be >= 0")
    if args.duration is not None and args.duration < 0:
        raise VerbError("--duration must be >= 0")
    data = Path(args.data_dir or os.environ.get("VLF_DATA_DIR", "data"))
    collector = Collector(data, bind=args.bind, port=args.port, grace=args.grace, rcvbuf=args.rcvbuf, sensor=args.sensor)
    try:
        collector.open()
    except OSError as exc:
        raise VerbError(f"cannot listen on {args.bind} port {args.port}: {exc.strerror or exc}") from None
    print(f"collecting on udp {args.bind}:{collector.port} into {data / 'landing'} (socket buffer {collector.stats.rcvbuf:,} bytes)", file=sys.stderr, flush=True)

    def stop(signum, frame):
        collector.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        collector.run(duration=args.duration)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        counters = collector.close()
    print(format_counters(counters), file=sys.stderr)
    print(f"counters: {collector.counters_path()}", file=sys.stderr)
    return 0
