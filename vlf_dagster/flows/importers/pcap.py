"""``netflow-pcap``: NetFlow v5/v9/IPFIX export datagrams captured in a pcap -> flow records,
through the collector's decoder (:mod:`..sources.pcap`); read only when named (no sniffing)."""

from __future__ import annotations

from pathlib import Path

from .result import ImportFormatError, ImportResult, ReadOptions


def import_netflow_pcap(path: str | Path) -> ImportResult:
    """NetFlow v5/v9/IPFIX export datagrams captured in a pcap, through the collector's decoder.

    Rejected datagrams and records are quarantined with their exporter and sequence number."""
    from ..sources.netflow.accounting import quarantine_table
    from ..sources.pcap import import_pcap

    try:
        flows, accounting = import_pcap(path)
    except ValueError as exc:
        raise ImportFormatError(f"{path}: {exc}") from None
    quarantine = quarantine_table(accounting.quarantine, origin=f"pcap:{path}")
    counts = {"datagrams": accounting.datagrams, "records": accounting.records, "undecodable": accounting.undecodable,
              "lost_records": accounting.lost, "held_sets": accounting.held_sets}
    return ImportResult(flows, quarantine, counts, origin=str(path), format="netflow-pcap")


def read(path: Path, head: bytes, options: ReadOptions) -> ImportResult:
    return import_netflow_pcap(path)
