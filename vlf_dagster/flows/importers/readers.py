"""Importers: other tools' flow exports -> flow-schema records, every input line accounted for.

Formats (``FORMATS``):

* ``nfdump-csv``: ``nfdump -r FILE -o csv`` (nfdump 1.6/1.7: 48 columns ``ts,te,td,sa,da,sp,dp,pr,
  flg,...``, then a ``Summary`` block unless ``-q``).  Columns are found by the header line's
  names.  ``ts`` has no milliseconds and is in nfdump's local time: produce it with ``TZ=UTC``.
  ``opkt``/``obyt`` (NSEL and other bidirectional records) become a second, reversed flow.
* ``nfcapd``: nfcapd files, read by running the installed ``nfdump -r FILE -q -o pipe`` with
  ``TZ=UTC``: its legacy ``pipe`` layout has millisecond times, numeric protocol and flags and
  full IPv6 addresses (``csv`` would lose the milliseconds).  Line numbers in the quarantine are
  lines of that output.  Without ``nfdump`` the import fails with a clear error.
* ``binetflow``: Argus / CTU-13 CSV ``StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,
  sTos,dTos,TotPkts,TotBytes,SrcBytes[,SrcPkts],Label``; each bidirectional record is split into
  a src->dst and a dst->src flow where the counts allow (rules in :func:`parse_binetflow`).
* ``zeek``: Zeek ``conn.log``, TSV (``#separator``/``#fields``/``#unset_field`` headers, several
  header blocks allowed) or JSON lines; each connection gives an orig->resp and a resp->orig flow
  (rules in :func:`parse_zeek`).
* ``rwcut``: SiLK rwcut text, ``|``- or tab-separated, padded or not, with a title line or with
  the columns given as ``fields`` (rwcut's ``--fields`` syntax).
* ``silk``: SiLK's own binary flow files (rwtuc, rwcat, rwfilter, rwsort output), read by
  :mod:`.silkfile`; ``netflow-pcap``: NetFlow/IPFIX export datagrams in a pcap.

Every importer returns an :class:`ImportResult`: the flows (flow schema), the quarantine
(:data:`~vlf_dagster.flows.ingest.QUARANTINE_SCHEMA`: origin ``FILE:LINE``, reason, the input line
as a JSON string) and ``counts`` with ``lines == data_lines + skipped_lines + quarantined_lines``:
a line either produced records, or is a header / comment / blank / summary line (or a Zeek
connection without packets), each counted under its own key, or is quarantined with a reason.

Parsing is vectorised with Arrow compute kernels rather than a CSV reader (a CSV reader cannot
say which *line* a bad row came from, nor tell a Summary block from a short row): lines are cut at
the newline offsets of the input's own buffer, cells by ``split_pattern``, numbers are validated
by regular expressions and cast as whole columns, times go through ``strptime``; rows are
converted ``BATCH_ROWS`` at a time so memory stays bounded.  Python loops run over *distinct*
values only (protocol names, flag strings, Zeek histories, Argus states, hex ports, IPv6
addresses: per record only when every address is distinct), over the few header lines, and over
quarantined lines (to JSON-quote them).  The one format that can force a per-record loop is Zeek
JSON: when Arrow's JSON reader rejects a batch (a malformed line, a field changing type) that
batch is parsed line by line with ``json.loads`` (counted as ``json_lines_parsed_one_by_one``).

:func:`land` writes the good records into ``landing/dt=YYYY-MM-DD/hour=HH/<source>.parquet``, one
file per hour in which flows *start*, and the quarantine to ``quarantine/import/<source>.parquet``;
re-landing a source replaces its files and removes the ones it no longer has.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ..flags import ACK, FIN, FLAG_BITS, PSH, RST, SYN
from ..ingest import QUARANTINE_SCHEMA
from ..schema import (ATTR_IPV6, FLOW_SCHEMA, IPV6_FIELDS, IPV6_TYPE, MS_PER_HOUR, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP,
                     TIME_1990_MS, conform)
from .formats import DEFAULT_OLD_TIMES, FORMATS, OLD_TIME_POLICIES
from ..storage import landing_dir, write_parquet
TIME_AFTER_LAST_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z: no datetime holds it
NFCAPD_MAGIC = b"\x0c\xa5"  # nfcapd file header magic 0xA50C, little-endian
SILK_MAGIC = b"\xde\xad\xbe\xef"  # every SiLK file (flows, sets, bags) starts with it

_U32 = np.uint64(0xFFFFFFFF)


class ImportFormatError(ValueError):
    """The input cannot be read as the format at all (not a line-level problem)."""


@dataclass
class ImportResult:
    """One input's records (flow schema), its quarantine and its line accounting."""

    flows: pa.Table
    quarantine: pa.Table
    counts: dict[str, int] = field(default_factory=dict)
    origin: str = ""
    format: str = ""

    @property
    def records(self) -> int:
        return self.flows.num_rows

    @property
    def quarantined(self) -> int:
        return self.quarantine.num_rows

    def reasons(self) -> list[tuple[str, int]]:
        """Quarantine reasons, most frequent first."""
        if not self.quarantine.num_rows:
            return []
        counted = pc.value_counts(self.quarantine.column("reason").combine_chunks()).to_pylist()
        return sorted(((r["values"], r["counts"]) for r in counted), key=lambda kv: (-kv[1], kv[0]))

    def hours(self) -> dict[datetime, int]:
        """Records per UTC hour in which they start."""
        return _hour_counts(self.flows)


def _hour_counts(flows: pa.Table) -> dict[datetime, int]:
    if not flows.num_rows:
        return {}
    hours, counts = np.unique(flows.column("sTime").to_numpy() // MS_PER_HOUR, return_counts=True)
    return {_hour_datetime(int(h)): int(c) for h, c in zip(hours, counts)}


def _hour_datetime(hour_index: int) -> datetime:
    return datetime.fromtimestamp(hour_index * 3600, tz=timezone.utc)


# --- lines and rows ----------------------------------------------------------------------------


class _Lines:
    """The input split into lines (Arrow strings); each line ends up skipped, data or quarantined.

    Lines are cut at ``\n`` from the newline offsets (numpy) over the input's own buffer, then one
    kernel drops the line ends (``\n``, ``\r``): one copy of the text, whatever its size.
    """

    def __init__(self, data: bytes | str, origin: str):
        raw = data.encode("utf-8", errors="replace") if isinstance(data, str) else bytes(data)
        self.origin = origin
        lines = self._split(raw)
        try:
            lines.validate(full=True)
        except pa.ArrowInvalid:  # not UTF-8: replacement characters, like bytes.decode(errors="replace")
            lines = self._split(raw.decode("utf-8", errors="replace").encode("utf-8"))
        self.text = pc.utf8_rtrim(lines, characters="\r\n")
        self.n = len(self.text)
        self.skipped_mask = np.zeros(self.n, dtype=bool)
        self.skipped: Counter = Counter()

    @staticmethod
    def _split(raw: bytes) -> pa.Array:
        ends = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10) + 1
        if raw and not raw.endswith(b"\n"):
            ends = np.append(ends, len(raw))
        offsets = np.concatenate([[0], ends]).astype(np.int64)
        return pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(raw))

    def skip(self, mask, key: str) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.skipped_mask
        if mask.any():
            self.skipped_mask |= mask
            self.skipped[key] += int(mask.sum())

    def matches(self, pattern: str) -> np.ndarray:
        return _np_bool(pc.match_substring_regex(self.text, pattern))

    def skip_blank(self) -> None:
        self.skip(self.matches(r"^\s*$"), "blank_lines")

    def startswith(self, prefix: str) -> np.ndarray:
        """Lines starting with ``prefix`` after optional white space."""
        return self.matches(r"^\s*" + _re2_escape(prefix))

    def equals_stripped(self, text: str) -> np.ndarray:
        return self.matches(r"^\s*" + _re2_escape(text.strip()) + r"\s*$")

    def remaining(self) -> np.ndarray:
        return np.flatnonzero(~self.skipped_mask)

    def first_remaining(self) -> int | None:
        rest = self.remaining()
        return int(rest[0]) if len(rest) else None

    def line(self, i: int) -> str:
        return self.text[i].as_py()


def _re2_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\.^$|?*+()[]{}" else c for c in text)


def _np_bool(array) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _filled(col: pa.Array) -> pa.Array:
    """Trimmed strings, nulls as empty strings."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_large_string(col.type):
        col = col.cast(pa.large_string())
    return pc.utf8_trim_whitespace(pc.fill_null(col, ""))


@dataclass
class _Addr:
    v4: np.ndarray  # uint32
    v6: np.ndarray  # (n, 16) uint8
    is_v6: np.ndarray  # bool
    present: np.ndarray  # bool: a value was given


class _Rows:
    """Candidate data lines: their text, cells and the first problem found on each."""

    def __init__(self, lines: _Lines, index: np.ndarray):
        self.lines = lines
        self.index = np.asarray(index, dtype=np.int64)
        self.n = len(self.index)
        self.text = lines.text.take(pa.array(self.index, pa.int64()))
        self.reason = np.full(self.n, -1, dtype=np.int32)
        self.reason_texts: list[str] = []
        self.notes: Counter = Counter()

    @property
    def ok(self) -> np.ndarray:
        return self.reason < 0

    def fail(self, mask, reason: str) -> None:
        mask = np.asarray(mask, dtype=bool) & (self.reason < 0)
        if mask.any():
            if reason not in self.reason_texts:
                self.reason_texts.append(reason)
            self.reason[mask] = self.reason_texts.index(reason)

    def note(self, key: str, mask_or_count) -> None:
        value = int(np.count_nonzero(mask_or_count)) if isinstance(mask_or_count, np.ndarray) else int(mask_or_count)
        if value:
            self.notes[key] += value

    # cells ------------------------------------------------------------------------------------

    def split(self, sep: str, ncols: int, *, extra_in_last: bool = False, final_sep: bool = False,
              keep: Iterable[int] | None = None) -> list[pa.Array | None]:
        """The first ``ncols`` cells of every row; rows with another number of cells fail.

        ``extra_in_last``: more cells are allowed and stay in the last one (a free-text label).
        ``final_sep``: one more, empty, cell after a trailing separator is allowed (rwcut).
        ``keep``: the cell positions wanted (the others come back as None and are not copied).
        """
        keep = sorted(set(range(ncols) if keep is None else keep))
        if not self.n:
            return [pa.array([], pa.large_string()) if i in keep else None for i in range(ncols)]
        found = pc.add(pc.count_substring(self.text, sep), 1).to_numpy(zero_copy_only=False)
        good = found == ncols
        if extra_in_last:
            good |= found > ncols
        if final_sep:
            good |= (found == ncols + 1) & _np_bool(pc.ends_with(self.text, sep))
        self.fail(~good, f"wrong number of fields (expected {ncols})")
        text = pc.if_else(pa.array(good), self.text, pa.scalar(sep * (ncols - 1), pa.large_string()))
        # split no further than needed: the cells after the last wanted one stay joined
        limit = ncols - 1 if extra_in_last else min((keep[-1] if keep else 0) + 1, ncols)
        cells = pc.split_pattern(text, sep, max_splits=limit)
        return [pc.list_element(cells, i) if i in keep else None for i in range(ncols)]

    # value converters --------------------------------------------------------------------------

    def uint(self, col, name: str, max_value: int, *, empty: int | None = None, unset: Sequence[str] = (),
             hex_ok: bool = False) -> np.ndarray:
        """Unsigned integers (``max_value`` < 2**63 - 1) as int64; bad values fail the row and read 0."""
        s = _filled(col)
        ok = _np_bool(pc.match_substring_regex(s, r"^[0-9]{1,19}$"))
        wide = pc.cast(pc.if_else(pa.array(ok), s, pa.scalar("0", pa.large_string())), pa.uint64()).to_numpy(zero_copy_only=False)
        ok &= wide <= np.uint64(max_value)
        values = np.where(ok, wide, np.uint64(0)).astype(np.int64)
        if hex_ok:
            is_hex = _np_bool(pc.match_substring_regex(s, r"^0[xX][0-9a-fA-F]{1,8}$"))
            if is_hex.any():
                hex_values, _ = _per_distinct(s, lambda t: int(t, 16), np.int64, mask=is_hex)
                values = np.where(is_hex, hex_values, values)
                ok |= is_hex & (hex_values <= max_value)
        if empty is not None:
            blank = _blank(s, unset)
            values[blank] = empty
            ok |= blank
        bad = ~ok | (values > max_value)
        self.fail(bad, f"bad {name}: not an integer in 0..{max_value}")
        values[bad] = 0
        return values

    def seconds_ms(self, col, name: str, *, empty: int | None = None, unset: Sequence[str] = ()) -> np.ndarray:
        """Non-negative seconds (decimal, optionally with an exponent) -> int64 milliseconds, truncated."""
        s = _filled(col)
        m = pc.extract_regex(s, r"^(?P<i>[0-9]{1,12})(?:\.(?P<f>[0-9]*))?$")
        ok = _np_bool(m.is_valid())
        whole = pc.cast(pc.fill_null(pc.struct_field(m, "i"), "0"), pa.int64()).to_numpy(zero_copy_only=False)
        frac = pc.fill_null(pc.struct_field(m, "f"), "")
        frac = pc.utf8_rpad(pc.utf8_slice_codeunits(frac, 0, 3), width=3, padding="0")
        ms = whole * 1000 + pc.cast(frac, pa.int64()).to_numpy(zero_copy_only=False)
        exp = ~ok & _np_bool(pc.match_substring_regex(s, r"^[0-9]*\.?[0-9]+[eE][-+]?[0-9]{1,3}$"))
        if exp.any():
            floats = pc.cast(pc.if_else(pa.array(exp), s, pa.scalar("0", pa.large_string())), pa.float64()).to_numpy(zero_copy_only=False)
            fine = exp & (floats < 1e15)
            ms = np.where(fine, np.floor(np.where(fine, floats, 0) * 1000.0).astype(np.int64), ms)
            ok |= fine
        if empty is not None:
            blank = _blank(s, unset)
            ms = np.where(blank, empty, ms)
            ok |= blank
        self.fail(~ok, f"bad {name}: not a number of seconds")
        return np.where(ok, ms, 0).astype(np.int64)

    def times_ms(self, col, name: str, formats: Sequence[str], *, epoch: bool = False, tz: str | None = None) -> np.ndarray:
        """Date-times in one of ``formats`` with optional fraction -> ms since the epoch.

        Times are UTC, or wall-clock times in the IANA zone ``tz`` (daylight saving included: a
        repeated hour takes its first occurrence, a time inside a skipped hour is quarantined)."""
        s = pc.utf8_rtrim(_filled(col), characters="Z")
        m = pc.extract_regex(s, r"^(?P<main>[^.]*)(?:\.(?P<f>[0-9]{1,9}))?$")
        main = pc.fill_null(pc.struct_field(m, "main"), "")
        frac = pc.utf8_rpad(pc.utf8_slice_codeunits(pc.fill_null(pc.struct_field(m, "f"), ""), 0, 3), width=3, padding="0")
        seconds = None
        for fmt in formats:
            parsed = pc.strptime(main, format=fmt, unit="s", error_is_null=True)
            seconds = parsed if seconds is None else pc.coalesce(seconds, parsed)
        ok = _np_bool(seconds.is_valid())
        if tz is not None:
            first = pc.assume_timezone(seconds, timezone=tz, ambiguous="earliest", nonexistent="earliest")
            last = pc.assume_timezone(seconds, timezone=tz, ambiguous="earliest", nonexistent="latest")
            skipped = ok & ~_np_bool(pc.fill_null(pc.equal(first, last), True))
            self.fail(skipped, f"bad {name}: not a valid time in {tz} (inside a daylight-saving gap)")
            ok &= ~skipped
            seconds = first
        secs = pc.fill_null(seconds.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        if epoch:
            digits = ~ok & _np_bool(pc.match_substring_regex(main, r"^[0-9]{1,12}$"))
            if digits.any():
                as_int = pc.cast(pc.if_else(pa.array(digits), main, pa.scalar("0", pa.large_string())), pa.int64()).to_numpy(zero_copy_only=False)
                secs = np.where(digits, as_int, secs)
                ok |= digits
        ms = secs * 1000 + pc.cast(frac, pa.int64()).to_numpy(zero_copy_only=False)
        self.fail(~ok, f"bad {name}: not a date and time")
        self.fail(ok & (ms < 0), f"bad {name}: before 1970")
        return np.where(ok & (ms >= 0), ms, 0).astype(np.int64)

    def addresses(self, col, name: str, *, integer_ok: bool = False, empty_ok: bool = False) -> _Addr:
        s = _filled(col)
        n = self.n
        m = pc.extract_regex(s, r"^(?P<a>[0-9]{1,3})\.(?P<b>[0-9]{1,3})\.(?P<c>[0-9]{1,3})\.(?P<d>[0-9]{1,3})$")
        is_v4 = _np_bool(m.is_valid())
        v4 = np.zeros(n, dtype=np.uint64)
        for part in "abcd":
            octet = pc.cast(pc.fill_null(pc.struct_field(m, part), "0"), pa.uint64()).to_numpy(zero_copy_only=False)
            is_v4 &= octet <= 255
            v4 = (v4 << np.uint64(8)) | octet
        v6 = np.zeros((n, 16), dtype=np.uint8)
        is_v6 = np.zeros(n, dtype=bool)
        candidates = ~is_v4 & _np_bool(pc.match_substring(s, ":"))
        if candidates.any():
            raw, good = _per_distinct_bytes(s, _ipv6_bytes, candidates)
            v6[good] = raw[good]
            is_v6 |= good
        if integer_ok:
            digits = ~is_v4 & ~is_v6 & _np_bool(pc.match_substring_regex(s, r"^[0-9]{1,39}$"))
            if digits.any():
                small = digits & (pc.utf8_length(s).to_numpy(zero_copy_only=False) <= 10)
                ints = pc.cast(pc.if_else(pa.array(small), s, pa.scalar("0", pa.large_string())), pa.uint64()).to_numpy(zero_copy_only=False)
                as_v4 = small & (ints <= _U32)
                v4 = np.where(as_v4, ints, v4)
                is_v4 |= as_v4
                big = digits & ~as_v4
                if big.any():
                    raw, good = _per_distinct_bytes(s, _integer_ipv6_bytes, big)
                    v6[good] = raw[good]
                    is_v6 |= good
        present = np.ones(n, dtype=bool)
        if empty_ok:
            present = _np_bool(pc.not_equal(s, "")) | is_v4 | is_v6
            is_v4 |= ~present
        self.fail(~(is_v4 | is_v6), f"bad {name}: not an IP address")
        v4 = np.where(is_v4, v4, 0).astype(np.uint32)
        return _Addr(v4, v6, is_v6, present)

    def lookup(self, col, name: str, fn: Callable[[str], int | None], reason: str | Callable[[str], str] | None = None,
               dtype=np.int64, fail: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Map each distinct (trimmed) value through ``fn`` (None: not valid)."""
        s = _filled(col)
        values, ok = _per_distinct(s, fn, dtype)
        if fail:
            bad = ~ok & self.ok
            if callable(reason) and bad.any():
                # reasons that depend on the value (e.g. "not an IP protocol: arp"), grouped by reason
                groups: dict[str, list[str]] = {}
                for text in pc.filter(s, pa.array(bad)).unique().to_pylist():
                    groups.setdefault(reason(text), []).append(text)
                for why, texts in groups.items():
                    self.fail(bad & _np_bool(pc.is_in(s, value_set=pa.array(texts, s.type))), why)
            self.fail(~ok, reason if isinstance(reason, str) else f"bad {name}")
        return values, ok


def _blank(s: pa.Array, unset: Sequence[str]) -> np.ndarray:
    blank = _np_bool(pc.equal(s, ""))
    for token in unset:
        blank |= _np_bool(pc.equal(s, token))
    return blank


def _per_distinct(s: pa.Array, fn: Callable[[str], int | None], dtype, mask: np.ndarray | None = None):
    """``fn`` applied once per distinct string; (values, ok) per row.  ``mask`` limits the rows."""
    n = len(s)
    if mask is not None:
        s = pc.if_else(pa.array(mask), s, pa.scalar(None, s.type))
    encoded = pc.dictionary_encode(s)
    words = encoded.dictionary.to_pylist()
    results = []
    for word in words:
        try:
            results.append(fn(word))
        except (ValueError, OverflowError, TypeError):
            results.append(None)
    ok_d = np.array([r is not None for r in results] + [False], dtype=bool)
    val_d = np.array([r if r is not None else 0 for r in results] + [0], dtype=dtype)
    index = pc.fill_null(encoded.indices, len(words)).to_numpy(zero_copy_only=False) if n else np.zeros(0, dtype=np.int64)
    return val_d[index], ok_d[index]


def _per_distinct_bytes(s: pa.Array, fn: Callable[[str], bytes | None], mask: np.ndarray):
    subset = pc.if_else(pa.array(mask), s, pa.scalar(None, s.type))
    encoded = pc.dictionary_encode(subset)
    words = encoded.dictionary.to_pylist()
    table = np.zeros((len(words) + 1, 16), dtype=np.uint8)
    ok_d = np.zeros(len(words) + 1, dtype=bool)
    for i, word in enumerate(words):
        raw = fn(word)
        if raw is not None:
            table[i] = np.frombuffer(raw, dtype=np.uint8)
            ok_d[i] = True
    index = pc.fill_null(encoded.indices, len(words)).to_numpy(zero_copy_only=False)
    return table[index], ok_d[index]


def _ipv6_bytes(text: str) -> bytes | None:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None


def _integer_ipv6_bytes(text: str) -> bytes | None:
    value = int(text)
    return value.to_bytes(16, "big") if value < (1 << 128) else None


# --- protocols, ICMP, TCP flags ------------------------------------------------------------------

# nfdump's protocol abbreviations (nfdump 1.6/1.7 output.h, index = protocol number); where a
# name is printed for two numbers (IPIP 4/94, IDPR 35/38) the first wins.  Numbers >= 138 print
# as digits.
_NFDUMP_PROTOCOLS = (
    "0 ICMP IGMP GGP IPIP ST TCP CBT EGP IGP BBN NVPII PUP ARGUS ENCOM XNET CHAOS UDP MUX DCN HMP PRM "
    "XNS Trnk1 Trnk2 Leaf1 Leaf2 RDP IRTP ISO-4 NETBK MFESP MEINP DCCP 3PC IDPR XTP DDP IDPR TP++ IL IPv6 "
    "SDRP Rte6 Frag6 IDRP RSVP GRE MHRP BNA ESP AH INLSP SWIPE NARP MOBIL TLSP SKIP ICMP6 NOHE6 OPTS6 "
    "HOST CFTP NET SATNT KLAN RVD IPPC FS SATM VISA IPCV CPNX CPHB WSN PVP BSATM SUNND WBMON WBEXP ISOIP "
    "VMTP SVMTP VINES TTP NSIGP DGP TCF EIGRP OSPF S-RPC LARP MTP AX.25 IPIP MICP SCCSP ETHIP ENCAP 99 "
    "GMTP IFMP PNNI PIM ARIS SCPS QNX A/N IPcmp SNP CpqPP IPXIP VRRP PGM 0hop L2TP DDX IATP STP SRP UTI "
    "SMP SM PTP ISIS4 FIRE CRTP CRUDP 128 IPLT SPS PIPE SCTP FC 134 MHEAD UDP-L MPLS"
).split()
_NFDUMP_BY_NAME: dict[str, int] = {}
for _number, _name in enumerate(_NFDUMP_PROTOCOLS):
    _NFDUMP_BY_NAME.setdefault(_name.upper(), _number)

# Argus labels some UDP flows by the application it recognised, and prints non-IP records too.
_ARGUS_UDP_LABELS = {"rtp": 17, "rtcp": 17, "udt": 17}
_NON_IP = frozenset({"arp", "rarp", "llc", "ipx/spx", "ipx", "stp", "lldp", "802.1q", "802.3", "ether", "man", "esp/ah"})


@lru_cache(maxsize=1)
def _protocol_names() -> dict[str, int]:
    """Lower-case protocol keyword -> number, from the protocol registry (IANA's and the system's)."""
    import warnings

    from ..registries import RegistryWarning, protocols

    with warnings.catch_warnings():  # a missing /etc/protocols: IANA's names and the ones below serve
        warnings.simplefilter("ignore", RegistryWarning)
        names = dict(protocols().numbers())
    for word, number in (("tcp", 6), ("udp", 17), ("icmp", 1), ("ipv6-icmp", 58), ("icmp6", 58), ("icmpv6", 58), ("igmp", 2)):
        names.setdefault(word, number)
    return names


def _protocol_number(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        return value if value <= 255 else None
    lower = text.lower()
    if lower in _ARGUS_UDP_LABELS:
        return _ARGUS_UDP_LABELS[lower]
    return _protocol_names().get(lower)


def _nfdump_protocol(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        return value if value <= 255 else None
    found = _NFDUMP_BY_NAME.get(text.upper())
    return found if found is not None else _protocol_names().get(text.lower())


def _protocol_reason(text: str) -> str:
    if text.lower() in _NON_IP:
        return f"not an IP protocol: {text.lower()}"
    return "unknown protocol name"


# Request/reply pairs whose reverse flow carries the counterpart type (as Zeek's ICMP analyzer
# pairs them); other ICMP messages are one-way: their "reverse" keeps the type and code.
_ICMP4_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_COUNTERPART = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130,
                      139: 140, 140: 139, 144: 145, 145: 144}
_CP4 = np.full(256, -1, dtype=np.int64)
_CP6 = np.full(256, -1, dtype=np.int64)
for _k, _v in _ICMP4_COUNTERPART.items():
    _CP4[_k] = _v
for _k, _v in _ICMP6_COUNTERPART.items():
    _CP6[_k] = _v


def _counterpart(icmp_type: np.ndarray, v6: np.ndarray) -> np.ndarray:
    """The counterpart type of each ICMP type (-1: one-way message)."""
    t = np.clip(np.asarray(icmp_type, dtype=np.int64), 0, 255)
    return np.where(v6, _CP6[t], _CP4[t])


def _reverse_icmp_port(dport: np.ndarray, v6: np.ndarray) -> np.ndarray:
    """dPort (type*256+code) of the reverse direction: the counterpart type with code 0, or unchanged."""
    icmp_type = np.asarray(dport, dtype=np.int64) >> 8
    cp = _counterpart(icmp_type, v6)
    return np.where(cp >= 0, cp * 256, dport)


def _flag_letters(text: str) -> int | None:
    """'...AP.SF', '.AP.SF', 'FS PA', 'fspa', '0x1b' or '27' -> flag byte; '' -> 0."""
    if text.isdigit():
        value = int(text)
        return value if value <= 255 else None
    if text[:2].lower() == "0x":
        value = int(text, 16)
        return value if value <= 255 else None
    value = 0
    for ch in text.upper():
        if ch in " .":
            continue
        bit = FLAG_BITS.get(ch)
        if bit is None:
            return None
        value |= bit
    return value


_FLAG_SET = re.compile(r"^[FSRPAUEC]*$")


def _letters_or_none(text: str) -> int | None:
    if not _FLAG_SET.match(text):
        return None
    return _flag_letters(text)


# Zeek conn_state -> (originator flags, responder flags), used when there is no history.
_S, _A, _F, _R = SYN, ACK, FIN, RST
_ZEEK_STATES = {
    "S0": (_S, 0), "S1": (_S | _A, _S | _A), "SF": (_S | _A | _F, _S | _A | _F), "REJ": (_S, _R | _A),
    "S2": (_S | _A | _F, _S | _A), "S3": (_S | _A, _S | _A | _F), "RSTO": (_S | _A | _R, _S | _A),
    "RSTR": (_S | _A, _S | _A | _R), "RSTOS0": (_S | _R, 0), "RSTRH": (0, _S | _A | _R),
    "SH": (_S | _F, 0), "SHR": (0, _S | _A | _F), "OTH": (0, 0),
}
# Zeek history letters (upper case: originator, lower case: responder) -> flags.
_HISTORY_FLAGS = {"S": _S, "H": _S | _A, "A": _A, "D": PSH | _A, "F": _F, "R": _R}
# Argus TCP states (ra without -Z) -> (source flags, destination flags).
_ARGUS_STATES = {"REQ": (_S, 0), "ACC": (_S, _S | _A), "CON": (_S | _A, _S | _A), "EST": (_S | _A, _S | _A),
                 "CLO": (_S | _A | _F, _S | _A | _F), "FIN": (_S | _A | _F, _S | _A | _F)}


def _zeek_flags(key: str) -> int | None:
    """'history\\x1fconn_state' -> orig flags | resp flags << 8."""
    history, _, state = key.partition("\x1f")
    if history and history not in ("-", "(empty)"):
        orig = resp = 0
        for ch in history:
            bits = _HISTORY_FLAGS.get(ch.upper(), 0)
            if ch.isupper():
                orig |= bits
            else:
                resp |= bits
        return orig | (resp << 8)
    pair = _ZEEK_STATES.get(state)
    return None if pair is None else pair[0] | (pair[1] << 8)


def _argus_flags(state: str) -> int | None:
    """Argus State -> source flags | destination flags << 8; None when it names no TCP flags."""
    if "_" in state:
        src, _, dst = state.partition("_")
        a, b = _letters_or_none(src), _letters_or_none(dst)
        if a is not None and b is not None:
            return a | (b << 8)
    pair = _ZEEK_STATES.get(state) or _ARGUS_STATES.get(state)
    return None if pair is None else pair[0] | (pair[1] << 8)


# --- assembling records ---------------------------------------------------------------------------


def _v6_column(raw: np.ndarray, valid: np.ndarray) -> pa.Array:
    n = len(valid)
    data = pa.py_buffer(np.ascontiguousarray(raw, dtype=np.uint8).tobytes())
    bitmap = pa.py_buffer(np.packbits(np.asarray(valid, dtype=bool), bitorder="little").tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(IPV6_TYPE, n, [bitmap, data], null_count=int(n - np.count_nonzero(valid)))


def _flow_table(cols: dict[str, np.ndarray]) -> pa.Table:
    n = len(cols["sTime"])
    v6 = np.asarray(cols.get("v6", np.zeros(n, dtype=bool)), dtype=bool)
    arrays = []
    for f in FLOW_SCHEMA:
        if f.name in IPV6_FIELDS:
            raw = cols.get(f.name)
            valid = v6 & np.asarray(cols.get(f.name + "_valid", v6), dtype=bool)
            if raw is None or not valid.any():
                arrays.append(pa.nulls(n, IPV6_TYPE))
            else:
                arrays.append(_v6_column(raw, valid))
            continue
        dtype = np.dtype(f.type.to_pandas_dtype())
        values = cols.get(f.name)
        values = np.zeros(n, dtype=dtype) if values is None else np.asarray(values).astype(dtype)
        if f.name == "attributes":
            values = values | np.where(v6, ATTR_IPV6, 0).astype(dtype)
        if f.name in ("sIP", "dIP", "nhIP"):
            values = np.where(v6, 0, values).astype(dtype)
        arrays.append(pa.array(values, type=f.type))
    return conform(pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA))


BATCH_ROWS = 262_144  # rows converted at a time: memory stays bounded whatever the file size


@dataclass
class _Partial:
    flows: pa.Table
    quarantine: pa.Table
    produced: int  # lines that gave records
    empty: np.ndarray  # line indices that were good but gave no record
    notes: Counter


def _run(lines: _Lines, fmt: str, convert: Callable[[_Rows], list[tuple[np.ndarray, dict]]], *, old_times: str,
         no_record_key: str = "lines_without_records", file_notes: dict[str, int] | None = None) -> ImportResult:
    """Convert the remaining lines batch by batch and account for every line."""
    if old_times not in OLD_TIME_POLICIES:
        raise ValueError(f"old_times must be one of {', '.join(OLD_TIME_POLICIES)}, not {old_times!r}")
    index = lines.remaining()
    partials = []
    for start in range(0, max(len(index), 1), BATCH_ROWS):
        rows = _Rows(lines, index[start:start + BATCH_ROWS])
        partials.append(_partial(rows, convert(rows) if rows.n else [], old_times))
    empty = np.concatenate([p.empty for p in partials])
    if len(empty):
        mask = np.zeros(lines.n, dtype=bool)
        mask[empty] = True
        lines.skip(mask, no_record_key)
    flows = pa.concat_tables([p.flows for p in partials])
    quarantine = pa.concat_tables([p.quarantine for p in partials])
    notes: Counter = Counter()
    for p in partials:
        notes.update(p.notes)
    counts: dict[str, int] = {
        "lines": lines.n,
        "data_lines": sum(p.produced for p in partials),
        "skipped_lines": int(lines.skipped_mask.sum()),
        "quarantined_lines": quarantine.num_rows,
        "records": flows.num_rows,
    }
    counts.update(sorted(lines.skipped.items()))
    counts.update(sorted(notes.items()))
    counts.update(file_notes or {})
    if old_times == "keep" and flows.num_rows:
        early_records = int(np.count_nonzero(flows.column("sTime").to_numpy() < TIME_1990_MS))
        if early_records:
            counts["times_before_1990"] = early_records
    assert counts["lines"] == counts["data_lines"] + counts["skipped_lines"] + counts["quarantined_lines"], counts
    return ImportResult(flows, quarantine, counts, lines.origin, fmt)


def _partial(rows: _Rows, parts: list[tuple[np.ndarray, dict]], old_times: str) -> _Partial:
    """The records of every (emit mask, columns) part of a batch in line order, and its quarantine."""
    emits = [np.asarray(e, dtype=bool) for e, _ in parts]
    early = np.zeros(rows.n, dtype=bool)
    late = np.zeros(rows.n, dtype=bool)
    for emit, (_, cols) in zip(emits, parts):
        start = np.asarray(cols["sTime"])
        early |= emit & (start < TIME_1990_MS)
        late |= emit & (start + np.asarray(cols.get("duration", 0)) >= TIME_AFTER_LAST_MS)
    rows.fail(late, "time after the year 9999 (not a time any clock gives)")
    if old_times == "quarantine":
        rows.fail(early, "start time before 1990 (exporter clock not set?)")
    ok = rows.ok
    picked = [np.flatnonzero(emit & ok) for emit in emits]
    keys = [take * len(parts) + p for p, take in enumerate(picked)]
    order = np.argsort(np.concatenate(keys), kind="stable") if keys else np.zeros(0, dtype=np.int64)
    names = set().union(*[set(cols) for _, cols in parts]) if parts else set()
    merged: dict[str, np.ndarray] = {}
    for name in names:
        pieces = []
        for take, (_, cols) in zip(picked, parts):
            value = cols.get(name)
            if value is None:
                value = np.zeros((rows.n, 16) if name in IPV6_FIELDS else rows.n, dtype=np.uint8 if name in IPV6_FIELDS else np.int64)
            pieces.append(np.asarray(value)[take])
        merged[name] = np.concatenate(pieces)[order]
    merged.setdefault("sTime", np.zeros(0, dtype=np.int64))
    produced = np.zeros(rows.n, dtype=bool)
    for emit in emits:
        produced |= emit
    produced &= ok
    bad = ~ok
    quarantine = _quarantine(rows.lines.origin, rows.index[bad] + 1, rows.text.filter(pa.array(bad)),
                             [rows.reason_texts[i] for i in rows.reason[bad]])
    return _Partial(_flow_table(merged), quarantine, int(produced.sum()), rows.index[ok & ~produced], rows.notes)


def _quarantine(origin: str, line_numbers: np.ndarray, texts: pa.Array, reasons: list[str]) -> pa.Table:
    if not len(line_numbers):
        return QUARANTINE_SCHEMA.empty_table()
    origins = pc.binary_join_element_wise(pa.scalar(origin), pc.cast(pa.array(line_numbers, pa.int64()), pa.string()), ":")
    records = [json.dumps(t, ensure_ascii=False) for t in texts.to_pylist()]  # quarantined lines only
    return pa.table({"origin": origins, "reason": pa.array(reasons, pa.string()), "record": pa.array(records, pa.string())},
                    schema=QUARANTINE_SCHEMA)


def _check_family(rows: _Rows, src: _Addr, dst: _Addr) -> np.ndarray:
    rows.fail(src.is_v6 != dst.is_v6, "IPv4 and IPv6 addresses in one record")
    return src.is_v6


def _check_volumes(rows: _Rows, packets: np.ndarray, nbytes: np.ndarray, emit: np.ndarray, label: str = "") -> None:
    rows.fail(np.asarray(emit, dtype=bool) & (packets > nbytes), "more packets than bytes" + label)


def _check_duration(rows: _Rows, duration: np.ndarray) -> np.ndarray:
    rows.fail((duration < 0) | (duration > 0xFFFFFFFF), "duration out of range (0 to 49.7 days)")
    return np.clip(duration, 0, 0xFFFFFFFF)


def _columns(src: _Addr, dst: _Addr, v6: np.ndarray, **values) -> dict:
    cols = {"sIP": src.v4, "dIP": dst.v4, "sIPv6": src.v6, "dIPv6": dst.v6, "v6": v6}
    cols.update(values)
    return cols


def _reversed(cols: dict, **values) -> dict:
    out = dict(cols)
    out.update(sIP=cols["dIP"], dIP=cols["sIP"], sIPv6=cols["dIPv6"], dIPv6=cols["sIPv6"])
    out.update(sPort=cols.get("dPort"), dPort=cols.get("sPort"))
    out.update(values)
    return {k: v for k, v in out.items() if v is not None}


def _icmp_ports(protocol: np.ndarray, v6: np.ndarray) -> np.ndarray:
    return (protocol == PROTO_ICMP) | ((protocol == PROTO_ICMPV6) & v6)


# --- nfdump ------------------------------------------------------------------------------------

NFDUMP_CSV_COLUMNS = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,"
    "svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,"
    "ra,eng,exid,tr"
).split(",")
_NFDUMP_USED = {"ts", "td", "sa", "da", "sp", "dp", "pr", "flg", "ipkt", "ibyt", "opkt", "obyt", "in", "out", "nh"}
_NFDUMP_SUMMARY_PREFIXES = ("Summary", "flows,bytes,packets", "Time window:", "Total flows processed:", "Sys:",
                            "No matching flows", "Aggregated flows")


def _nfdump_summary(lines: _Lines) -> np.ndarray:
    summary = np.zeros(lines.n, dtype=bool)
    for prefix in _NFDUMP_SUMMARY_PREFIXES:
        summary |= lines.startswith(prefix)
    return summary


def parse_nfdump_csv(data: bytes | str, origin: str = "<nfdump-csv>", *, old_times: str | None = None,
                     tz: str | None = None) -> ImportResult:
    """``nfdump -o csv`` text -> flows.  ``ts`` is read as UTC (run nfdump with ``TZ=UTC``), or as
    wall-clock time in the zone ``tz``.

    Columns are located by the header line's names (the 48-column layout when there is none);
    ``pr`` is nfdump's protocol abbreviation (``TCP``, ``ICMP6``, ``Rte6``...) or a number;
    ``flg`` letters in any layout (``...AP.SF``, ``.AP.SF``); ICMP ``dp`` is type*256+code (or
    ``type.code``).  ``opkt``/``obyt`` > 0 gives a reversed second flow (``biflows_split``).
    Counts add ``summary_flows``: the flow count of the trailing ``Summary`` block(s), to compare
    with ``data_lines + quarantined_lines``.
    """
    lines = _Lines(data, origin)
    lines.skip_blank()
    header = lines.startswith("ts,te,")
    columns = NFDUMP_CSV_COLUMNS
    if header.any():
        columns = [c.strip() for c in lines.line(int(np.flatnonzero(header)[0])).split(",")]
    lines.skip(header, "header_lines")
    summary = _nfdump_summary(lines)
    summary_flows = 0
    for i in np.flatnonzero(lines.startswith("flows,bytes,packets")):
        if i + 1 < lines.n:  # the values line of the Summary block
            values = lines.line(int(i) + 1).split(",")
            if values and values[0].strip().isdigit():
                summary[i + 1] = True
                summary_flows += int(values[0])
    lines.skip(summary, "summary_lines")
    missing = [c for c in ("ts", "td", "sa", "da", "sp", "dp", "pr", "flg", "ipkt", "ibyt") if c not in columns]
    if missing:
        raise ImportFormatError(f"{origin}: nfdump csv header lacks column(s) {', '.join(missing)}")

    def convert(rows: _Rows):
        used = [i for i, c in enumerate(columns) if c in _NFDUMP_USED]
        cells = {c: v for c, v in zip(columns, rows.split(",", len(columns), keep=used)) if v is not None}
        src = rows.addresses(cells["sa"], "sa")
        dst = rows.addresses(cells["da"], "da")
        v6 = _check_family(rows, src, dst)
        protocol, _ = rows.lookup(cells["pr"], "pr", _nfdump_protocol, reason=_protocol_reason)
        s_time = rows.times_ms(cells["ts"], "ts", ["%Y-%m-%d %H:%M:%S"], tz=tz)
        duration = _check_duration(rows, rows.seconds_ms(cells["td"], "td"))
        sport = rows.uint(cells["sp"], "sp", 0xFFFF)
        dp_text = _filled(cells["dp"])
        dotted = _np_bool(pc.match_substring_regex(dp_text, r"^[0-9]{1,3}\.[0-9]{1,3}$"))  # ICMP type.code
        dport = rows.uint(pc.if_else(pa.array(dotted), pa.scalar("0", pa.large_string()), dp_text), "dp", 0xFFFF)
        if dotted.any():
            tc, good = _per_distinct(dp_text, _type_dot_code, np.int64, mask=dotted)
            rows.fail(dotted & ~good, "bad dp: not a port or ICMP type.code")
            dport = np.where(dotted & good, tc, dport)
        flags, _ = rows.lookup(cells["flg"], "flg", _flag_letters, reason="bad flg: not TCP flags")
        flags = np.where(protocol == PROTO_TCP, flags, 0)
        ipkt = rows.uint(cells["ipkt"], "ipkt", 2**63 - 1)
        ibyt = rows.uint(cells["ibyt"], "ibyt", 2**63 - 1)
        zeros = np.zeros(rows.n, dtype=np.int64)
        opkt = rows.uint(cells["opkt"], "opkt", 2**63 - 1, empty=0) if "opkt" in cells else zeros
        obyt = rows.uint(cells["obyt"], "obyt", 2**63 - 1, empty=0) if "obyt" in cells else zeros
        interfaces = {}
        for name in ("in", "out"):
            if name in cells:
                value = rows.uint(cells[name], name, 2**32 - 1, empty=0)
                wide = value > 0xFFFF
                rows.note("interfaces_over_65535_set_to_0", wide & rows.ok)
                interfaces[name] = np.where(wide, 0, value)
        extra = {}
        if "nh" in cells:
            nh = rows.addresses(cells["nh"], "nh", empty_ok=True)
            same = nh.is_v6 == v6
            rows.note("next_hops_of_other_family_dropped", ~same & nh.present & rows.ok)
            extra = {"nhIP": np.where(same & ~v6, nh.v4, 0), "nhIPv6": nh.v6, "nhIPv6_valid": same & v6 & nh.present}
        rows.fail((ipkt == 0) & (opkt == 0), "zero packets")
        _check_volumes(rows, ipkt, ibyt, ipkt > 0)
        _check_volumes(rows, opkt, obyt, opkt > 0, " (reverse)")
        icmp = _icmp_ports(protocol, v6)
        fwd = _columns(src, dst, v6, sPort=np.where(icmp, 0, sport), dPort=dport, protocol=protocol, packets=ipkt,
                       bytes=ibyt, flags=flags, sTime=s_time, duration=duration, **interfaces, **extra)
        rev = _reversed(fwd, packets=opkt, bytes=obyt, sPort=np.where(icmp, 0, dport),
                        dPort=np.where(icmp, _reverse_icmp_port(dport, v6), sport),
                        nhIP=np.zeros(rows.n, dtype=np.uint32), nhIPv6_valid=np.zeros(rows.n, dtype=bool))
        if interfaces:
            rev["in"], rev["out"] = interfaces.get("out", zeros), interfaces.get("in", zeros)
        rows.note("biflows_split", (ipkt > 0) & (opkt > 0) & rows.ok)
        return [(ipkt > 0, fwd), (opkt > 0, rev)]

    return _run(lines, "nfdump-csv", convert, old_times=old_times or DEFAULT_OLD_TIMES.get("nfdump-csv", "quarantine"),
                file_notes={"summary_flows": summary_flows} if summary_flows else None)


def _type_dot_code(text: str) -> int | None:
    icmp_type, code = (int(x) for x in text.split("."))
    return icmp_type << 8 | code if icmp_type <= 255 and code <= 255 else None


def parse_nfdump_pipe(data: bytes | str, origin: str = "<nfdump-pipe>", *, old_times: str | None = None) -> ImportResult:
    """``nfdump -q -o pipe`` text -> flows (what :func:`import_nfcapd` reads).

    Layout (nfdump's output_pipe.c): af|first ms|last ms|proto|sa0|sa1|sa2|sa3|sport|da0|da1|da2|
    da3|dport|srcas|dstas|in|out|flags|tos|packets|bytes; addresses as four 32-bit words, IPv4 in
    the last one; af 2 = IPv4, 10 = IPv6.
    """
    lines = _Lines(data, origin)
    lines.skip_blank()
    lines.skip(_nfdump_summary(lines), "summary_lines")

    def convert(rows: _Rows):
        c = rows.split("|", 22)
        af = rows.uint(c[0], "af", 255)
        rows.fail((af != 2) & (af != 10), "bad af: not 2 (IPv4) or 10 (IPv6)")
        v6 = af == 10
        first = rows.uint(c[1], "first", 2**62)
        last = rows.uint(c[2], "last", 2**62)
        protocol = rows.uint(c[3], "proto", 255)

        def address(words, name) -> _Addr:
            w = [rows.uint(words[i], name, 0xFFFFFFFF) for i in range(4)]
            rows.fail(~v6 & ((w[0] | w[1] | w[2]) != 0), f"IPv6 address where IPv4 expected ({name})")
            raw = np.stack(w, axis=1).astype(">u4").view(np.uint8).reshape(-1, 16)
            return _Addr(w[3].astype(np.uint32), raw, v6, np.ones(rows.n, dtype=bool))

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
        duration = _check_duration(rows, last - first)
        rows.fail(packets == 0, "zero packets")
        _check_volumes(rows, packets, nbytes, np.ones(rows.n, dtype=bool))
        icmp = _icmp_ports(protocol, v6)
        cols = _columns(src, dst, v6, sPort=np.where(icmp, 0, sport), dPort=dport, protocol=protocol, packets=packets,
                        bytes=nbytes, flags=np.where(protocol == PROTO_TCP, flags, 0), sTime=first, duration=duration,
                        **{"in": np.where(in_ > 0xFFFF, 0, in_), "out": np.where(out > 0xFFFF, 0, out)})
        return [(np.ones(rows.n, dtype=bool), cols)]

    return _run(lines, "nfcapd", convert, old_times=old_times or DEFAULT_OLD_TIMES.get("nfcapd", "quarantine"))


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


# --- Argus binetflow ------------------------------------------------------------------------------

BINETFLOW_COLUMNS = "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label".split(",")
_BINETFLOW_USED = {"StartTime", "Dur", "Proto", "SrcAddr", "Sport", "Dir", "DstAddr", "Dport", "State", "TotPkts", "TotBytes",
                   "SrcBytes", "SrcPkts"}
_DIRECTIONS = {"->": 0, "?>": 0, "<->": 0, "<?>": 0, "who": 0, "<-": 1, "<?": 1}
# Who opened the biflow, where Argus is sure: 1 the source (->, <->), 2 the destination (<-); the
# question-marked directions say Argus could not tell.
_ARGUS_OPENER = {"->": 1, "<->": 1, "<-": 2}


def parse_binetflow(data: bytes | str, origin: str = "<binetflow>", *, old_times: str | None = None,
                    tz: str | None = None) -> ImportResult:
    """Argus bidirectional CSV -> unidirectional flows.

    Split rule: the src->dst flow gets ``SrcBytes`` and ``SrcPkts``; the dst->src flow gets
    ``TotBytes - SrcBytes`` and ``TotPkts - SrcPkts``.  Without a ``SrcPkts`` column the packets
    are apportioned by bytes: all to the side that has bytes when only one has, else
    ``round(TotPkts * SrcBytes / TotBytes)`` (half up) to src->dst, kept within 1..TotPkts-1 and
    never above either side's bytes (``packets_apportioned_by_bytes``).  A direction with 0
    packets gives no flow.  When both sides have bytes but ``TotPkts`` is 1 the counts cannot be
    split: one flow with the totals goes in the direction ``Dir`` names (``<-``/``<?``: dst->src,
    else src->dst), counted as ``biflows_unsplit``.

    Both flows start at ``StartTime`` and last ``Dur`` (Argus gives no per-direction times).  Where
    ``Dir`` is sure who opened the connection (``->``, ``<->``: the source; ``<-``: the
    destination), both flows carry the port it opened to in SiLK's ``application`` field.
    ``StartTime`` is read as UTC.  Ports may be hex (``0x0008``).  ICMP: Argus keeps type and code
    in ``Sport`` (low byte type, high byte code: ``0x0008`` echo, ``0x0303`` port unreachable),
    or, when both ports are two hex digits, type in ``Sport`` and code in ``Dport``; the reverse
    flow of a request carries the reply type.  TCP flags from ``State``: ``SRC_DST`` letter sets
    (``FSPA_FSRPA``), Zeek connection states (``S0``, ``SF``...) or Argus state names (``REQ``,
    ``ACC``, ``CON``, ``CLO``, ``FIN``); other states give no flags (``tcp_states_without_flags``).
    Non-IP records (``arp``...) are quarantined.
    """
    lines = _Lines(data, origin)
    lines.skip_blank()
    header = lines.startswith("StartTime,")
    columns = BINETFLOW_COLUMNS
    if header.any():
        columns = [c.strip() for c in lines.line(int(np.flatnonzero(header)[0])).split(",")]
    lines.skip(header, "header_lines")
    required = ("StartTime", "Dur", "Proto", "SrcAddr", "Sport", "Dir", "DstAddr", "Dport", "State", "TotPkts", "TotBytes", "SrcBytes")
    missing = [c for c in required if c not in columns]
    if missing:
        raise ImportFormatError(f"{origin}: binetflow header lacks column(s) {', '.join(missing)}")

    def convert(rows: _Rows):
        used = [i for i, c in enumerate(columns) if c in _BINETFLOW_USED]
        split = rows.split(",", len(columns), extra_in_last=columns[-1] == "Label", keep=used)
        cells = {c: v for c, v in zip(columns, split) if v is not None}
        s_time = rows.times_ms(cells["StartTime"], "StartTime", ["%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"], tz=tz)
        duration = _check_duration(rows, rows.seconds_ms(cells["Dur"], "Dur"))
        protocol, _ = rows.lookup(cells["Proto"], "Proto", _protocol_number, reason=_protocol_reason)
        src = rows.addresses(cells["SrcAddr"], "SrcAddr")
        dst = rows.addresses(cells["DstAddr"], "DstAddr")
        v6 = _check_family(rows, src, dst)
        direction, _ = rows.lookup(cells["Dir"], "Dir", _DIRECTIONS.get, reason="bad Dir: not ->, <-, <->, ?>, <?, <?> or who")
        backwards = direction == 1
        sport = rows.uint(cells["Sport"], "Sport", 0xFFFF, empty=0, hex_ok=True)
        dport = rows.uint(cells["Dport"], "Dport", 0xFFFF, empty=0, hex_ok=True)
        tot_pkts = rows.uint(cells["TotPkts"], "TotPkts", 2**62)
        tot_bytes = rows.uint(cells["TotBytes"], "TotBytes", 2**62)
        src_bytes = rows.uint(cells["SrcBytes"], "SrcBytes", 2**62)
        rows.fail(src_bytes > tot_bytes, "SrcBytes exceeds TotBytes")
        rows.fail(tot_pkts == 0, "zero packets")
        rows.fail(tot_pkts > tot_bytes, "more packets than bytes")
        fb = np.minimum(src_bytes, tot_bytes)
        rb = tot_bytes - fb
        unsplit = np.zeros(rows.n, dtype=bool)
        if "SrcPkts" in cells:
            src_pkts = rows.uint(cells["SrcPkts"], "SrcPkts", 2**62)
            rows.fail(src_pkts > tot_pkts, "SrcPkts exceeds TotPkts")
            fp = np.minimum(src_pkts, tot_pkts)
            rp = tot_pkts - fp
            rows.fail((fp > fb) | (rp > rb), "SrcPkts and SrcBytes disagree (more packets than bytes in one direction)")
            rows.fail(((fp == 0) & (fb > 0)) | ((rp == 0) & (rb > 0)), "SrcPkts and SrcBytes disagree (bytes without packets)")
        else:
            both = (fb > 0) & (rb > 0)
            share = np.floor(tot_pkts * (fb / np.maximum(tot_bytes, 1)) + 0.5).astype(np.int64)
            fp = np.where(rb == 0, tot_pkts, np.where(fb == 0, 0, np.clip(share, 1, np.maximum(tot_pkts - 1, 1))))
            fp = np.where(both, np.minimum(fp, fb), fp)  # never more packets than bytes on either side
            fp = np.where(both & (tot_pkts - fp > rb), tot_pkts - rb, fp)
            unsplit = both & (tot_pkts < 2)
            rows.note("packets_apportioned_by_bytes", both & ~unsplit & rows.ok)
            fp = np.where(unsplit, np.where(backwards, 0, tot_pkts), fp)
            fb = np.where(unsplit, np.where(backwards, 0, tot_bytes), fb)
            rb = tot_bytes - fb
            rp = tot_pkts - fp
        icmp = _icmp_ports(protocol, v6)
        short_hex = _np_bool(pc.match_substring_regex(_filled(cells["Sport"]), r"^0[xX][0-9a-fA-F]{1,2}$")) & _np_bool(
            pc.match_substring_regex(_filled(cells["Dport"]), r"^0[xX][0-9a-fA-F]{1,2}$"))
        icmp_type = np.where(short_hex, sport, sport & 0xFF)
        icmp_code = np.where(short_hex, dport, sport >> 8)
        icmp_port = icmp_type * 256 + np.minimum(icmp_code, 255)
        flag_pair, known = rows.lookup(cells["State"], "State", _argus_flags, fail=False)
        tcp = protocol == PROTO_TCP
        rows.note("tcp_states_without_flags", tcp & ~known & rows.ok)
        fwd_flags = np.where(tcp & known, flag_pair & 0xFF, 0)
        rev_flags = np.where(tcp & known, (flag_pair >> 8) & 0xFF, 0)
        # the opener Argus is sure of: its service port goes into SiLK's application field of both
        # flows (as the Zeek importer does), so the opener's flow is the one whose dPort it is
        opener, _ = rows.lookup(cells["Dir"], "Dir", _ARGUS_OPENER.get, fail=False)
        service = np.where(icmp, 0, np.where(opener == 1, dport, np.where(opener == 2, sport, 0)))
        fwd = _columns(src, dst, v6, sPort=np.where(icmp, 0, sport), dPort=np.where(icmp, icmp_port, dport), protocol=protocol,
                       packets=fp, bytes=fb, flags=np.where(unsplit & ~backwards, fwd_flags | rev_flags, fwd_flags),
                       sTime=s_time, duration=duration, application=service)
        rev = _reversed(fwd, packets=rp, bytes=rb, flags=np.where(unsplit & backwards, fwd_flags | rev_flags, rev_flags),
                        sPort=np.where(icmp, 0, dport), dPort=np.where(icmp, _reverse_icmp_port(icmp_port, v6), sport))
        ok = rows.ok
        rows.note("biflows_split", (fp > 0) & (rp > 0) & ok)
        rows.note("biflows_one_way", ((fp > 0) != (rp > 0)) & ~unsplit & ok)
        rows.note("biflows_unsplit", unsplit & ok)
        return [(fp > 0, fwd), (rp > 0, rev)]

    return _run(lines, "binetflow", convert, old_times=old_times or DEFAULT_OLD_TIMES.get("binetflow", "quarantine"))


# --- Zeek conn.log ---------------------------------------------------------------------------------

_ZEEK_FIELDS = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "duration", "orig_bytes", "resp_bytes",
                "conn_state", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")
_ZEEK_REQUIRED = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "orig_pkts", "resp_pkts")
_ZEEK_PROTOCOLS = {"tcp": PROTO_TCP, "udp": 17, "icmp": PROTO_ICMP}


def parse_zeek(data: bytes | str, origin: str = "<zeek>", *, old_times: str | None = None) -> ImportResult:
    """Zeek conn.log (TSV with ``#`` headers, or JSON lines) -> unidirectional flows.

    Each connection gives an orig->resp flow (``orig_pkts``, ``orig_ip_bytes``) and a resp->orig
    flow (``resp_pkts``, ``resp_ip_bytes``); a direction with 0 packets gives no flow, and a
    connection without packets in either direction gives none (counted as
    ``connections_without_packets``).  Bytes are the IP-level ``*_ip_bytes`` (what NetFlow and
    SiLK count); only when those are absent the payload ``*_bytes`` are used
    (``bytes_from_payload``).  Both flows start at ``ts`` and last ``duration``.

    TCP flags from ``history`` (upper case: originator, lower case: responder): S SYN, H SYN+ACK,
    A ACK, D PSH+ACK (data), F FIN, R RST; other letters (T W C I Q G ^ ...) add none.  Without a
    history, ``conn_state`` gives them (S0: orig S; REJ: orig S, resp RA; SF: both SAF; ...).

    ICMP (``proto`` icmp; protocol 58 for IPv6 addresses): ``id.orig_p`` is the type; for
    request/reply types ``id.resp_p`` is Zeek's counterpart type (the reply), for one-way types
    the code.  The orig->resp flow gets dPort type*256+code, the resp->orig flow the counterpart
    type.  Times before 1990 (Zeek reading a capture with relative time) are kept by default and
    counted as ``times_before_1990``.

    The originator is kept: both TCP and UDP flows of a connection carry ``id.resp_p`` in SiLK's
    ``application`` field (the service port), so the orig->resp flow is the one whose dPort it is.

    TSV: the ``#separator``, ``#unset_field`` and ``#empty_field`` directives are honoured (also
    after stray white space), and several header blocks (concatenated logs) may each bring their
    own ``#fields``.  JSON lines go through Arrow's JSON reader; a batch it rejects (a malformed
    line, a field changing type) is parsed line by line with ``json.loads``.
    """
    lines = _Lines(data, origin)
    lines.skip_blank()
    first = lines.first_remaining()
    policy = old_times or DEFAULT_OLD_TIMES.get("zeek", "quarantine")
    if first is not None and lines.line(first).lstrip().startswith("{"):
        return _run(lines, "zeek", lambda rows: _zeek_records(rows, _zeek_json_columns(rows), ["-", "(empty)"]),
                    old_times=policy, no_record_key="connections_without_packets")
    return _zeek_tsv(lines, policy)


def _zeek_escape(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _zeek_tsv(lines: _Lines, policy: str) -> ImportResult:
    comment = lines.startswith("#")
    header_rows = np.flatnonzero(comment)
    lines.skip(comment, "header_lines")
    separator, unset, empty = "\t", "-", "(empty)"
    segments: list[tuple[int, list[str], str, str, str]] = []  # (#fields line, fields, separator, unset, empty)
    for i in header_rows:
        text = lines.line(int(i)).lstrip()
        directive, _, value = text.partition(" " if text.startswith("#separator") else separator)
        directive = directive.strip()
        if directive == "#separator":
            separator = _zeek_escape(value.strip()) or "\t"
        elif directive == "#unset_field":
            unset = value
        elif directive == "#empty_field":
            empty = value
        elif directive == "#fields":
            segments.append((int(i), value.split(separator), separator, unset, empty))
    if not segments:
        if not len(lines.remaining()):
            return _run(lines, "zeek", lambda rows: [], old_times=policy)
        raise ImportFormatError(f"{lines.origin}: Zeek TSV without a #fields header")
    missing = [f for f in _ZEEK_REQUIRED if f not in segments[0][1]]
    if missing:
        raise ImportFormatError(f"{lines.origin}: Zeek #fields lacks {', '.join(missing)}")
    unset_tokens = sorted({t for seg in segments for t in seg[3:]})
    starts = [seg[0] for seg in segments]

    def convert(rows: _Rows):
        rows.fail(rows.index < starts[0], "data before the #fields header")
        columns: dict[str, pa.Array] = {}
        segment_of = np.searchsorted(starts, rows.index, side="right") - 1
        for k, (_, fields, sep, _, _) in enumerate(segments):
            member = (segment_of == k) & rows.ok
            if not member.any():
                continue
            sub = _Rows(rows.lines, rows.index[member])
            cells = sub.split(sep, len(fields), keep=[i for i, f in enumerate(fields) if f in _ZEEK_FIELDS])
            if sub.reason_texts:
                rows.fail(_scatter_mask(member, ~sub.ok), sub.reason_texts[0])
            for name in _ZEEK_FIELDS:
                if name in fields:
                    columns[name] = _scatter(columns.get(name), cells[fields.index(name)], member, rows.n)
        for name in _ZEEK_FIELDS:
            columns.setdefault(name, pa.nulls(rows.n, pa.large_string()))
        return _zeek_records(rows, columns, unset_tokens)

    return _run(lines, "zeek", convert, old_times=policy, no_record_key="connections_without_packets")


def _scatter_mask(member: np.ndarray, sub_mask: np.ndarray) -> np.ndarray:
    out = np.zeros(len(member), dtype=bool)
    out[np.flatnonzero(member)] = sub_mask
    return out


def _scatter(existing: pa.Array | None, values: pa.Array, member: np.ndarray, n: int) -> pa.Array:
    index = np.zeros(n, dtype=np.int64)
    index[np.flatnonzero(member)] = np.arange(int(member.sum()))
    placed = values.cast(pa.large_string()).take(pa.array(index))
    base = existing if existing is not None else pa.nulls(n, pa.large_string())
    return pc.if_else(pa.array(member), placed, base)


def _json_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    return ""


def _zeek_json_columns(rows: _Rows) -> dict[str, pa.Array]:
    """The Zeek fields of a batch of JSON lines, as strings: Arrow's reader, or json.loads per line."""
    columns: dict[str, pa.Array] | None = None
    offsets = pa.array([0, rows.n], pa.int64())
    joined = pc.binary_join(pa.LargeListArray.from_arrays(offsets, rows.text), pa.scalar("\n", pa.large_string()))
    payload = joined[0].as_buffer()
    try:
        table = pajson.read_json(pa.BufferReader(payload), read_options=pajson.ReadOptions(block_size=max(1 << 20, payload.size + 1)))
        if table.num_rows == rows.n:
            columns = {}
            for name in _ZEEK_FIELDS:
                if name in table.column_names:
                    col = table.column(name)
                    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_string(col.type)
                            or pa.types.is_null(col.type)):
                        raise pa.ArrowInvalid(f"unexpected type for {name}")
                    columns[name] = col.cast(pa.large_string()).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        columns = None
    if columns is None:
        # Arrow's reader rejected the batch: every line through json.loads (a loop per record)
        raw: dict[str, list] = {name: [] for name in _ZEEK_FIELDS}
        not_object = np.zeros(rows.n, dtype=bool)
        for i, text in enumerate(rows.text.to_pylist()):
            try:
                obj = json.loads(text)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                not_object[i] = True
                obj = {}
            for name in _ZEEK_FIELDS:
                raw[name].append(_json_text(obj.get(name)))
        rows.fail(not_object, "not a JSON object")
        rows.note("json_lines_parsed_one_by_one", rows.n)
        columns = {name: pa.array(values, pa.large_string()) for name, values in raw.items()}
    for name in _ZEEK_FIELDS:
        columns.setdefault(name, pa.nulls(rows.n, pa.large_string()))
    return columns


def _zeek_records(rows: _Rows, cols: dict[str, pa.Array], unset: list[str]):
    ts_text = _filled(cols["ts"])
    numeric_ts = _np_bool(pc.match_substring_regex(ts_text, r"^[0-9.eE+-]+$"))
    s_time = rows.seconds_ms(pc.if_else(pa.array(numeric_ts), ts_text, pa.scalar("0", pa.large_string())), "ts")
    if (~numeric_ts).any():  # JSON logs written with JSON::TS_FORMAT=ISO8601
        iso = _Rows(rows.lines, rows.index)
        iso_ms = iso.times_ms(ts_text, "ts", ["%Y-%m-%dT%H:%M:%S"])
        rows.fail(~numeric_ts & ~iso.ok, "bad ts: not a time")
        s_time = np.where(numeric_ts, s_time, iso_ms)
    duration = _check_duration(rows, rows.seconds_ms(cols["duration"], "duration", empty=0, unset=unset))
    src = rows.addresses(cols["id.orig_h"], "id.orig_h")
    dst = rows.addresses(cols["id.resp_h"], "id.resp_h")
    v6 = _check_family(rows, src, dst)
    proto_name = pc.utf8_lower(_filled(cols["proto"]))
    protocol, _ = rows.lookup(proto_name, "proto", _ZEEK_PROTOCOLS.get, reason="bad proto: not tcp, udp or icmp")
    protocol = np.where((protocol == PROTO_ICMP) & v6, PROTO_ICMPV6, protocol)
    orig_p = rows.uint(cols["id.orig_p"], "id.orig_p", 0xFFFF)
    resp_p = rows.uint(cols["id.resp_p"], "id.resp_p", 0xFFFF)
    orig_pkts = rows.uint(cols["orig_pkts"], "orig_pkts", 2**62, empty=0, unset=unset)
    resp_pkts = rows.uint(cols["resp_pkts"], "resp_pkts", 2**62, empty=0, unset=unset)
    volumes = []
    for side, pkts in (("orig", orig_pkts), ("resp", resp_pkts)):
        ip_text = _filled(cols[f"{side}_ip_bytes"])
        have_ip = ~_blank(ip_text, unset)
        ip_bytes = rows.uint(ip_text, f"{side}_ip_bytes", 2**62, empty=0, unset=unset)
        payload = rows.uint(cols[f"{side}_bytes"], f"{side}_bytes", 2**62, empty=0, unset=unset)
        rows.note("bytes_from_payload", ~have_ip & (pkts > 0) & rows.ok)
        volumes.append(np.where(have_ip, ip_bytes, payload))
    orig_bytes, resp_bytes = volumes
    _check_volumes(rows, orig_pkts, orig_bytes, orig_pkts > 0, " (orig)")
    _check_volumes(rows, resp_pkts, resp_bytes, resp_pkts > 0, " (resp)")
    icmp = _icmp_ports(protocol, v6)
    rows.fail(icmp & (orig_p > 255), "bad ICMP type in id.orig_p")
    rows.fail(icmp & (resp_p > 255), "bad ICMP code in id.resp_p")
    counterpart = _counterpart(orig_p, v6)
    two_way = counterpart >= 0
    fwd_icmp = orig_p * 256 + np.where(two_way, 0, resp_p)
    rev_icmp = np.where(two_way, counterpart * 256, fwd_icmp)
    key = pc.binary_join_element_wise(_filled(cols["history"]), _filled(cols["conn_state"]), pa.scalar("\x1f", pa.large_string()))
    pair, known = rows.lookup(key, "history", _zeek_flags, fail=False)
    tcp = protocol == PROTO_TCP
    rows.note("tcp_connections_without_flags", tcp & ~known & rows.ok)
    orig_flags = np.where(tcp & known, pair & 0xFF, 0)
    resp_flags = np.where(tcp & known, (pair >> 8) & 0xFF, 0)
    # Zeek knows who opened the connection: both flows carry the responder's port as SiLK's
    # application (the service port the flow generator recognised), so the originator's flow is
    # the one whose dPort is it (analysis.port_tables decides who opened a matched session so)
    service = np.where(icmp, 0, resp_p)
    fwd = _columns(src, dst, v6, sPort=np.where(icmp, 0, orig_p), dPort=np.where(icmp, fwd_icmp, resp_p), protocol=protocol,
                   packets=orig_pkts, bytes=orig_bytes, flags=orig_flags, sTime=s_time, duration=duration,
                   application=service)
    rev = _reversed(fwd, packets=resp_pkts, bytes=resp_bytes, flags=resp_flags, sPort=np.where(icmp, 0, resp_p),
                    dPort=np.where(icmp, rev_icmp, orig_p))
    rows.note("connections_both_ways", (orig_pkts > 0) & (resp_pkts > 0) & rows.ok)
    return [(orig_pkts > 0, fwd), (resp_pkts > 0, rev)]


# --- rwcut text ---------------------------------------------------------------------------------------

_RWCUT_TIME_FORMATS = ("%Y/%m/%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
# SiLK's TCP state attribute letters (rwcut's attributes column)
_ATTRIBUTE_BITS = {"T": 0x20, "C": 0x40, "F": 0x08, "S": 0x10}


def _title_field(title: str) -> str | None:
    """A title cell -> canonical field name: a name or alias, or a unique prefix of one (rwcut
    cuts titles to the column width: ``pro``, ``dur``, ``sen``, ``sessionF``, ``attribut``)."""
    from ..fields import FIELDS, FieldError, field

    text = title.strip()
    if not text or text.isdigit():  # field numbers are for --fields, never titles
        return None
    if text.replace(" ", "").lower() in ("<->match#", "match"):
        return "match"
    try:
        return field(text).name
    except FieldError:
        pass
    if len(text) < 3:
        return None
    lower = text.lower()
    hits = {f.name for f in FIELDS for key in (f.name, *f.aliases) if key.lower().startswith(lower)}
    return hits.pop() if len(hits) == 1 else None


def _rwcut_fields(fields: str | Sequence[str]) -> list[str]:
    from ..fields import FieldError, parse_fields

    items = fields.split(",") if isinstance(fields, str) else list(fields)
    names = []
    for item in items:
        text = item.strip()
        if text.lower() == "match":
            names.append("match")
            continue
        try:
            names.extend(f.name for f in parse_fields(text))
        except FieldError as exc:
            raise ImportFormatError(f"bad --fields: {exc}") from None
    return names


def _attributes(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        return value if value <= 255 else None
    value = 0
    for ch in text.upper():
        if ch == " ":
            continue
        if ch not in _ATTRIBUTE_BITS:
            return None
        value |= _ATTRIBUTE_BITS[ch]
    return value


def parse_rwcut(data: bytes | str, origin: str = "<rwcut>", *, fields: str | Sequence[str] | None = None,
                delimiter: str | None = None, old_times: str | None = None, tz: str | None = None,
                sensor_names: Sequence[str] | None = None, keep_types: bool = False) -> ImportResult:
    """rwcut text -> flows.

    Separator: ``delimiter``, else ``|`` or a tab, whichever the first line holds (the study's
    sample tables are tab-separated).  Cells may be padded; a trailing separator is allowed.  The
    columns come from the title line (names as rwcut prints them, cut to the column width:
    ``pro``, ``dur``...) or from ``fields`` (rwcut's ``--fields``: names, numbers, ranges).
    Values as rwcut prints them with any option: dotted, IPv6 or integer addresses; flags as
    letters (``FS PA``, ``FSPA``) or integers; times ``YYYY/MM/DDTHH:MM:SS.sss``, iso, m/d/y or
    epoch, with or without milliseconds; duration in seconds.  ``duration`` may come from
    ``eTime``; ``class``, ``type``, ``iType``, ``iCode`` (when ``dPort`` is there) and cutmatch's
    ``match`` are ignored (flowtypes are assigned by the pipeline); sensor names (not numbers)
    become sensor 0 (``sensor_names_dropped``).  ``vlf tuc`` keeps the ``type`` column
    (``keep_types``) and reads sensor names through the site's ``sensor_names``.
    """
    lines = _Lines(data, origin)
    lines.skip_blank()
    policy = old_times or DEFAULT_OLD_TIMES.get("rwcut", "quarantine")
    first = lines.first_remaining()
    if first is None:
        return _run(lines, "rwcut", lambda rows: [], old_times=policy)
    first_text = lines.line(first)
    sep = delimiter or ("|" if "|" in first_text else "\t" if "\t" in first_text else None)
    if sep is None:
        raise ImportFormatError(f"{origin}: no '|' or tab separator on the first line; give the separator (--column-separator)")
    cells = first_text.split(sep)
    final = len(cells) > 1 and cells[-1].strip() == ""
    titles = [_title_field(c) for c in (cells[:-1] if final else cells)]
    has_titles = all(t is not None for t in titles)
    if has_titles:
        lines.skip(lines.equals_stripped(first_text), "title_lines")
    if fields is not None:
        names = _rwcut_fields(fields)
    elif has_titles:
        names = titles
    else:
        raise ImportFormatError(f"{origin}: rwcut text without a title line: give its columns (--fields)")
    missing = [f for f in ("sIP", "dIP", "sPort", "protocol", "packets", "bytes", "sTime") if f not in names]
    if "dPort" not in names and not {"iType", "iCode"} <= set(names):
        missing.append("dPort")
    if missing:
        raise ImportFormatError(f"{origin}: rwcut columns lack {', '.join(missing)}")

    def convert(rows: _Rows):
        col = dict(zip(names, rows.split(sep, len(names), final_sep=True)))
        src = rows.addresses(col["sIP"], "sIP", integer_ok=True)
        dst = rows.addresses(col["dIP"], "dIP", integer_ok=True)
        v6 = _check_family(rows, src, dst)
        protocol, _ = rows.lookup(col["protocol"], "protocol", _protocol_number, reason=_protocol_reason)
        sport = rows.uint(col["sPort"], "sPort", 0xFFFF)
        if "dPort" in col:
            dport = rows.uint(col["dPort"], "dPort", 0xFFFF)
        else:
            dport = rows.uint(col["iType"], "iType", 255, empty=0) * 256 + rows.uint(col["iCode"], "iCode", 255, empty=0)
        packets = rows.uint(col["packets"], "packets", 2**63 - 1)
        nbytes = rows.uint(col["bytes"], "bytes", 2**63 - 1)
        s_time = rows.times_ms(col["sTime"], "sTime", _RWCUT_TIME_FORMATS, epoch=True, tz=tz)
        if "duration" in col:
            duration = rows.seconds_ms(col["duration"], "duration")
        elif "eTime" in col:
            duration = rows.times_ms(col["eTime"], "eTime", _RWCUT_TIME_FORMATS, epoch=True, tz=tz) - s_time
        else:
            duration = np.zeros(rows.n, dtype=np.int64)
        duration = _check_duration(rows, duration)
        extra: dict[str, np.ndarray] = {}
        for name in ("flags", "initialFlags", "sessionFlags"):
            if name in col:
                extra[name], _ = rows.lookup(col[name], name, _flag_letters, reason=f"bad {name}: not TCP flags")
        if "attributes" in col:
            extra["attributes"], _ = rows.lookup(col["attributes"], "attributes", _attributes, reason="bad attributes")
        for name in ("in", "out", "application"):
            if name in col:
                extra[name] = rows.uint(col[name], name, 0xFFFF, empty=0)
        if "sensor" in col:
            text = _filled(col["sensor"])
            numeric = _np_bool(pc.match_substring_regex(text, r"^[0-9]{1,5}$"))
            extra["sensor"] = rows.uint(pc.if_else(pa.array(numeric), text, pa.scalar("0", pa.large_string())), "sensor", 0xFFFF)
            if sensor_names is not None:  # vlf tuc: names of the site's sensors, as rwtuc reads silk.conf's
                index = {name: i for i, name in enumerate(sensor_names)}
                named, known = rows.lookup(pc.if_else(pa.array(numeric), pa.scalar("", pa.large_string()), text), "sensor",
                                           lambda t: index.get(t, 0 if t == "" else None), reason="unknown sensor name")
                extra["sensor"] = np.where(numeric, extra["sensor"], named)
            else:
                rows.note("sensor_names_dropped", ~numeric & rows.ok)
        if keep_types and "type" in col:  # vlf tuc keeps the type column, as rwtuc does
            from ..flowtypes import TYPE_IDS

            extra["flowtype"], _ = rows.lookup(col["type"], "type", TYPE_IDS.get, reason="unknown flow type")
        if "nhIP" in col:
            nh = rows.addresses(col["nhIP"], "nhIP", integer_ok=True, empty_ok=True)
            same = nh.is_v6 == v6
            rows.note("next_hops_of_other_family_dropped", ~same & nh.present & rows.ok)
            extra.update(nhIP=np.where(same & ~v6, nh.v4, 0), nhIPv6=nh.v6, nhIPv6_valid=same & v6 & nh.present)
        rows.fail(packets == 0, "zero packets")
        _check_volumes(rows, packets, nbytes, np.ones(rows.n, dtype=bool))
        cols = _columns(src, dst, v6, sPort=sport, dPort=dport, protocol=protocol, packets=packets, bytes=nbytes,
                        sTime=s_time, duration=duration, **extra)
        return [(np.ones(rows.n, dtype=bool), cols)]

    return _run(lines, "rwcut", convert, old_times=policy)


# --- files, sniffing, landing ------------------------------------------------------------------------

_PARSERS = {"nfdump-csv": parse_nfdump_csv, "binetflow": parse_binetflow, "zeek": parse_zeek, "rwcut": parse_rwcut}


def sniff_format(data: bytes) -> str | None:
    """The format of an input from its first bytes and lines, or None."""
    if data[:2] == NFCAPD_MAGIC:
        return "nfcapd"
    if data[:4] == SILK_MAGIC:
        return "silk"
    head = data[:65536].decode("utf-8", errors="replace")
    lines = [line.strip() for line in head.splitlines() if line.strip()][:20]
    if not lines:
        return None
    first = lines[0]
    if first.startswith("ts,te,td,") or re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?,\d{4}-\d\d-\d\d ", first):
        return "nfdump-csv"
    if first.startswith("StartTime,") or (re.match(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(\.\d+)?,", first) and first.count(",") >= 13):
        return "binetflow"
    if first.startswith("#"):
        return "zeek" if any(line.startswith("#fields") for line in lines) else None
    if first.startswith("{"):
        return "zeek" if '"id.orig_h"' in first else None
    for sep in ("|", "\t"):
        if sep in first:
            cells = first.split(sep)
            if len(cells) > 1 and cells[-1].strip() == "":
                cells = cells[:-1]
            if all(_title_field(c) for c in cells):
                return "rwcut"
            if re.match(r"^[0-9a-fA-F:.]+$", cells[0].strip()):
                return "rwcut"
    return None


# Formats whose times are date-time text, which --tz reinterprets (the others carry epoch times).
LOCAL_TIME_FORMATS = ("nfdump-csv", "binetflow", "rwcut")


def check_time_zone(tz: str) -> str:
    """An IANA zone name pyarrow's zone database knows, e.g. ``Europe/Prague``."""
    try:
        pc.assume_timezone(pa.array([0], pa.timestamp("s")), timezone=tz)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ImportFormatError(f"unknown time zone {tz!r} ({str(exc).splitlines()[0]})") from None
    return tz


def import_file(path: str | Path, format: str = "auto", *, fields: str | Sequence[str] | None = None,
                delimiter: str | None = None, old_times: str | None = None, tz: str | None = None) -> ImportResult:
    """Import one file; ``format`` is one of :data:`FORMATS` or ``auto`` (sniffed).

    ``tz`` reads the date-time text of :data:`LOCAL_TIME_FORMATS` as wall-clock time in that zone."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if format == "auto":
        sniffed = sniff_format(head)
        if sniffed is None:
            raise ImportFormatError(f"{path}: cannot tell its format; give --format ({', '.join(FORMATS)})")
        format = sniffed
    if tz is not None:
        check_time_zone(tz)
        if format not in LOCAL_TIME_FORMATS:
            raise ImportFormatError(f"{path}: --tz applies to {', '.join(LOCAL_TIME_FORMATS)} text; {format} times are epoch times")
    if format == "nfcapd":
        return import_nfcapd(path, old_times=old_times)
    if format == "netflow-pcap":
        return import_netflow_pcap(path)
    if format == "silk":
        return import_silk(path)
    if format not in _PARSERS:
        raise ImportFormatError(f"unknown format {format!r}: expected auto or one of {', '.join(FORMATS)}")
    if head[:2] == NFCAPD_MAGIC or b"\0" in head[:4096]:
        raise ImportFormatError(f"{path}: binary data, not {format} text")
    data = path.read_bytes()
    if format == "rwcut":
        return parse_rwcut(data, str(path), fields=fields, delimiter=delimiter, old_times=old_times, tz=tz)
    if tz is not None:
        return _PARSERS[format](data, str(path), old_times=old_times, tz=tz)
    return _PARSERS[format](data, str(path), old_times=old_times)


def import_silk(path: str | Path) -> ImportResult:
    """A SiLK flow file (rwtuc, rwcat, rwfilter or rwsort output): its records as SiLK stored them,
    sensor and flowtype ids kept (the site's sensor list names the ids)."""
    from ..silkfile import SilkFileError, read_silk_file

    try:
        flows = read_silk_file(path)
    except SilkFileError as exc:
        raise ImportFormatError(str(exc)) from None
    from ..ingest import empty_quarantine

    return ImportResult(flows, empty_quarantine(), {"records": flows.num_rows}, origin=str(path), format="silk")


def import_netflow_pcap(path: str | Path) -> ImportResult:
    """NetFlow v5/v9/IPFIX export datagrams captured in a pcap, through the collector's decoder.

    Rejected datagrams and records are quarantined with their exporter and sequence number."""
    from ..sources.netflow import import_pcap, quarantine_table

    try:
        flows, accounting = import_pcap(path)
    except ValueError as exc:
        raise ImportFormatError(f"{path}: {exc}") from None
    quarantine = quarantine_table(accounting.quarantine, origin=f"pcap:{path}")
    counts = {"datagrams": accounting.datagrams, "records": accounting.records, "undecodable": accounting.undecodable,
              "lost_records": accounting.lost, "held_sets": accounting.held_sets}
    return ImportResult(flows, quarantine, counts, origin=str(path), format="netflow-pcap")


_SOURCE_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def source_name(path: str | Path) -> str:
    """A landing source name from a file name: its base name, other characters as ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).name).lstrip(".") or "import"
    return name


def check_source_name(name: str) -> str:
    if not _SOURCE_OK.match(name or "") or len(name) > 200:
        raise ValueError(f"invalid source name {name!r}: use letters, digits, '.', '_' and '-' (not starting with '.' or '-')")
    return name


@dataclass
class LandResult:
    source: str
    files: list[Path]
    hours: dict[datetime, int]
    quarantine: Path
    removed: list[Path]

    @property
    def records(self) -> int:
        return sum(self.hours.values())


def land(result: ImportResult | Iterable[ImportResult], data_dir: str | Path, source_name: str) -> LandResult:
    """Write an import's records into the landing area, one file per start hour, and its quarantine.

    ``landing/dt=YYYY-MM-DD/hour=HH/<source_name>.parquet`` (atomic writes, sorted by sTime) and
    ``quarantine/import/<source_name>.parquet``.  Files this source landed before in other hours
    are removed, so re-importing a file replaces its records and never duplicates them.
    Several results (e.g. the files of one ``--source``) land together.
    """
    check_source_name(source_name)
    results = [result] if isinstance(result, ImportResult) else list(result)
    flows = pa.concat_tables([r.flows for r in results]) if results else FLOW_SCHEMA.empty_table()
    quarantine = pa.concat_tables([r.quarantine for r in results]) if results else QUARANTINE_SCHEMA.empty_table()
    data_dir = Path(data_dir)
    files: list[Path] = []
    hours: dict[datetime, int] = {}
    if flows.num_rows:
        s_time = flows.column("sTime").to_numpy()
        order = np.argsort(s_time, kind="stable")
        flows = flows.take(pa.array(order))
        hour_index = s_time[order] // MS_PER_HOUR
        starts = np.flatnonzero(np.r_[True, hour_index[1:] != hour_index[:-1]])
        ends = np.r_[starts[1:], len(hour_index)]
        for start, end in zip(starts, ends):
            hour = _hour_datetime(int(hour_index[start]))
            path = landing_dir(data_dir, hour) / f"{source_name}.parquet"
            write_parquet(flows.slice(int(start), int(end - start)), path)
            files.append(path)
            hours[hour] = int(end - start)
    keep = {p.resolve() for p in files}
    removed = []
    for old in sorted((data_dir / "landing").glob(f"dt=*/hour=*/{source_name}.parquet")):
        if old.resolve() not in keep:
            old.unlink()
            removed.append(old)
    quarantine_file = write_parquet(quarantine, data_dir / "quarantine" / "import" / f"{source_name}.parquet")
    return LandResult(source_name, files, hours, quarantine_file, removed)
