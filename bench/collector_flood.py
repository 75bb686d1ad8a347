"""Collector memory under hostile floods: made-up IPFIX domains, v9 source IDs, exporters and hours.

    .venv/bin/python bench/collector_flood.py [--scale 1.0]

Drives the collector's socket-free core (``Collector.process``) with each flood in turn and prints
the peak RSS after each, what the caps quarantined, and what the collector holds.  With the caps,
memory stays flat however long a flood lasts; the excess is quarantined and counted.
"""

from __future__ import annotations

import argparse
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlf_dagster.flows.sources.collector import Collector  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ipfix_template(domain: int, export: int) -> bytes:
    body = struct.pack(">HH", 300, 2) + struct.pack(">HHHH", 8, 4, 12, 4)
    sets = struct.pack(">HH", 2, len(body) + 4) + body
    return struct.pack(">HHIII", 10, 16 + len(sets), export, 0, domain) + sets


def v9_template(source_id: int, export: int) -> bytes:
    body = struct.pack(">HH", 300, 2) + struct.pack(">HHHH", 8, 4, 12, 4)
    sets = struct.pack(">HH", 0, len(body) + 4) + body
    return struct.pack(">HHIIII", 9, 1, 1_000_000, export, 0, source_id) + sets


def v5(export: int, sequence: int = 0) -> bytes:
    record = struct.pack(">IIIHHIIIIHHBBBBHHBBH", 0x0A000001, 0x0A000002, 0, 1, 2, 1, 40, 90_000, 95_000, 1024, 80, 0, 2, 6, 0, 0, 0, 0, 0, 0)
    return struct.pack(">HHIIIIBBH", 5, 1, 100_000, export, 0, sequence, 0, 0, 0) + record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every flood's size")
    args = parser.parse_args()
    now = int(time.time())
    floods = [
        ("IPFIX templates, a new domain each", int(240_000 * args.scale), lambda i: ([ipfix_template(i, now)], ("192.0.2.1", 4739))),
        ("v9 templates, a new source ID each", int(30_000 * args.scale), lambda i: ([v9_template(i, now)], ("192.0.2.2", 2055))),
        ("v5 records a day or more ahead, a new hour each", int(20_000 * args.scale), lambda i: ([v5(now + 86_400 + 3600 * i)], ("192.0.2.3", 2055))),
        ("v5 records of past hours, a new hour each", int(2_000 * args.scale), lambda i: ([v5(now - 3600 * (i + 1), i)], ("192.0.2.4", 2055))),
        ("v5 from a new exporter each", int(3_000 * args.scale), lambda i: ([v5(now)], (f"10.9.{i >> 8 & 255}.{i & 255}", 2055))),
    ]
    print(f"start: peak RSS {rss_mb():,.0f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        col = Collector(Path(tmp) / "data", grace=300)
        for name, count, make in floods:
            started = time.perf_counter()
            for i in range(count):
                payloads, exporter = make(i)
                col.process([(p, exporter) for p in payloads])
            seconds = time.perf_counter() - started
            dec = col.decoder
            print(f"{name}: {count:,} datagrams in {seconds:.1f} s; peak RSS {rss_mb():,.0f} MB; "
                  f"templates {len(dec.templates):,}, exporters {len(dec.accounting.exporters):,}, "
                  f"streams {len(dec.sequences):,}, open spools {len(col.spools):,}")
        counters = col.close()
        reasons = counters["decoder"]["reasons"]
        print("quarantined by reason: " + ", ".join(f"{k} {v:,}" for k, v in reasons.items()))
        print(f"spools published early {counters['collector']['spools_evicted']:,}; "
              f"landed {counters['collector']['records_landed']:,}")
    print(f"end: peak RSS {rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
