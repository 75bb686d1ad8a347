"""``nfcapd``: nfcapd files -> flow records, read by running the installed nfdump.

``nfdump -r FILE -q -o pipe`` with ``TZ=UTC``: its legacy ``pipe`` layout has millisecond times,
numeric protocol and flags and full IPv6 addresses (``csv`` would lose the milliseconds).  Line
numbers in the quarantine are lines of that output.  Without ``nfdump`` the import fails with a
clear error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..schema import PROTO_TCP
from .formats import DEFAULT_OLD_TIMES, NFCAPD_MAGIC
from .nfdump import nfdump_summary
from .result import ImportFormatError, ImportResult, ReadOptions
from .text import Addr, Lines, Rows, check_duration, check_volumes, convert_lines, flow_columns, icmp_ports


def parse_nfdump_pipe(data: bytes | str, origin: str = "<nfdump-pipe>", *, old_times: str | None = None) -> ImportResult:
    """``nfdump -q -o pipe`` text -> flows (what :func:`import_nfcapd` reads).

    Layout (nfdump's output_pipe.c): af|first ms|last ms|proto|sa0|sa1|sa2|sa3|sport|da0|da1|da2|
    da3|dport|srcas|dstas|in|out|flags|tos|packets|bytes; addresses as four 32-bit words, IPv4 in
    the last one; af 2 = IPv4, 10 = IPv6.
    """
    lines = Lines(data, origin)
    lines.skip_blank()
    lines.skip(nfdump_summary(lines), "summary_lines")

    def convert(rows: Rows):
        c = rows.split("|", 22)
        af = rows.uint(c[0], "af", 255)
        rows.fail((af != 2) & (af != 10), "bad af: not 2 (IPv4) or 10 (IPv6)")
        v6 = af == 10
        first = rows.uint(c[1], "first", 2**62)
        last = rows.uint(c[2], "last", 2**62)
        protocol = rows.uint(c[3], "proto", 255)

        def address(words, name) -> Addr:
            w = [rows.uint(words[i], name, 0xFFFFFFFF) for i in range(4)]
            rows.fail(~v6 & ((w[0] | w[1] | w[2]) != 0), f"IPv6 address where IPv4 expected ({name})")
            raw = np.stack(w, axis=1).astype(">u4").view(np.uint8).reshape(-1, 16)
            return Addr(w[3].astype(np.uint32), raw, v6, np.ones(rows.n, dtype=bool))

        src = address(c[4:8], "sa")
        sport = rows.uint(c[8], "sport", 0xFFFF)
        dst = address(c[9:13], "da")
        dport = rows.uint(c[13], "dport", 0xFFFF)
        in_ = rows.uint(c[16], "in", 2**32 - 1)
        out = rows.uint(c[17], "out", 2**32 - 1)
        rows.note("interfaces_over_65535_set_to_0", ((in_ > 0xFFFF) | (out > 0xFFFF)) & rows.ok)
        flags = rows.uint(c[18], "flags", 255)
        packets = rows.uint(c[20], "packets", 2**63 - 1)
        nbytes = rows.uint(c[21], "bytes", 2**63 - 1)
        rows.fail(last < first, "last seen before first seen")
        duration = check_duration(rows, last - first)
        rows.fail(packets == 0, "zero packets")
        check_volumes(rows, packets, nbytes, np.ones(rows.n, dtype=bool))
        icmp = icmp_ports(protocol, v6)
        cols = flow_columns(src, dst, v6, sPort=np.where(icmp, 0, sport), dPort=dport, protocol=protocol, packets=packets,
                        bytes=nbytes, flags=np.where(protocol == PROTO_TCP, flags, 0), sTime=first, duration=duration,
                        **{"in": np.where(in_ > 0xFFFF, 0, in_), "out": np.where(out > 0xFFFF, 0, out)})
        return [(np.ones(rows.n, dtype=bool), cols)]

    return convert_lines(lines, "nfcapd", convert, old_times=old_times or DEFAULT_OLD_TIMES["nfcapd"])


def nfdump_available(nfdump: str = "nfdump") -> bool:
    return shutil.which(nfdump) is not None


def import_nfcapd(path: str | Path, *, nfdump: str = "nfdump", old_times: str | None = None, timeout: float = 3600) -> ImportResult:
    """Read an nfcapd file through the installed ``nfdump`` (``-q -o pipe``, ``TZ=UTC``)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read: {exc.strerror}") from None
    if magic != NFCAPD_MAGIC:
        raise ImportFormatError(f"{path}: not an nfcapd file (no 0xA50C magic)")
    binary = shutil.which(nfdump)
    if binary is None:
        raise ImportFormatError(
            f"{path}: reading nfcapd files needs nfdump, which is not installed (apt-get install nfdump), "
            "or give `nfdump -r FILE -o csv` output with --format nfdump-csv"
        )
    env = dict(os.environ, TZ="UTC")
    try:
        done = subprocess.run([binary, "-r", str(path), "-q", "-o", "pipe"], capture_output=True, env=env, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImportFormatError(f"{path}: running nfdump failed: {exc}") from None
    if done.returncode != 0:
        message = (done.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {done.returncode}"])[0]
        raise ImportFormatError(f"{path}: nfdump cannot read it: {message}")
    return parse_nfdump_pipe(done.stdout, str(path), old_times=old_times)


def read(path: Path, head: bytes, options: ReadOptions) -> ImportResult:
    return import_nfcapd(path, old_times=options.old_times)
