"""The registry of the formats `vlf import` reads: one line per format, names only.

Each :class:`Format` names the module of this package that reads it; sniffing and reading
(:mod:`.readers`), the verb's ``--format`` choices and its help all derive from :data:`REGISTRY`.
This module imports nothing heavy (the format modules load pyarrow and numpy), so that
`vlf import --help` and the verb's parser are built without them.

A format module provides:

* ``read(path: Path, head: bytes, options: ReadOptions) -> ImportResult`` (``head``: the file's
  first 64 KiB; ``options``: :class:`~.result.ReadOptions`, of which it uses what applies);
* for a text format, ``sniff(lines: list[str]) -> bool``: whether the first (up to 20) non-blank
  lines of an input, stripped, are this format.  A binary format is sniffed by the ``magic`` of
  its registry line instead (before any text); a format with neither is read only when named.

Adding a format is its module plus one line here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str  # --format NAME, and ImportResult.format
    module: str  # the module of this package that reads it
    summary: str  # its entry in `vlf import --help`; a "\n" continues it on the next line
    magic: bytes = b""  # a binary format: the first bytes of its files
    local_times: bool = False  # date-time text, which --tz reinterprets (the others carry epoch times)
    old_times: str = "quarantine"  # records starting before 1990: kept, or quarantined (one of OLD_TIME_POLICIES)


NFCAPD_MAGIC = b"\x0c\xa5"  # nfcapd file header magic 0xA50C, little-endian
SILK_MAGIC = b"\xde\xad\xbe\xef"  # every SiLK file (flows, sets, bags) starts with it

REGISTRY = (
    Format("nfdump-csv", "nfdump", "`nfdump -r FILE -o csv` output (run nfdump with TZ=UTC: its times are local)",
           local_times=True),
    Format("nfcapd", "nfcapd", "nfcapd files, read through the installed nfdump (-o pipe, millisecond times)",
           magic=NFCAPD_MAGIC),
    Format("binetflow", "argus", "Argus / CTU-13 bidirectional CSV: split into src->dst and dst->src flows",
           local_times=True),
    # Zeek logs read from a capture with relative time start in 1970 on purpose; elsewhere a time
    # before 1990 means an exporter whose clock was not set.
    Format("zeek", "zeek", "Zeek conn.log, TSV or JSON lines: orig->resp and resp->orig flows", old_times="keep"),
    Format("rwcut", "rwcut", "SiLK rwcut text, '|' or tab separated; without a title line give --fields",
           local_times=True),
    Format("netflow-pcap", "pcap", "NetFlow v5/v9/IPFIX export datagrams captured in a pcap"),
    Format("silk", "silk", "SiLK flow files: every flow format SiLK 3.19.1 writes (rwtuc, rwcat, rwfilter and rwsort\n"
           "output, rwflowpack's packed hourly repository files), uncompressed, zlib, lzo1x or snappy",
           magic=SILK_MAGIC),
)

FORMATS = tuple(f.name for f in REGISTRY)
BY_NAME = {f.name: f for f in REGISTRY}
OLD_TIME_POLICIES = ("keep", "quarantine")
DEFAULT_OLD_TIMES = {f.name: f.old_times for f in REGISTRY}
LOCAL_TIME_FORMATS = tuple(f.name for f in REGISTRY if f.local_times)
MAGICS = tuple(f.magic for f in REGISTRY if f.magic)
