"""The engine of the text importers: lines, cells and values to flow records, every line accounted for.

A format module cuts its input into :class:`Lines`, marks header, comment, blank and summary lines
skipped (each under its own count key), and gives :func:`convert_lines` a ``convert`` function:
from a batch of :class:`Rows` (the remaining lines) to ``(emit mask, columns)`` parts, one part per
flow a line may give (a biflow gives two).  The converters of :class:`Rows` (integers, seconds,
date-times, addresses, per-distinct lookups) fail a row with a reason instead of raising; the
failed rows are quarantined with ``FILE:LINE`` and the line as a JSON string.  The shared
vocabulary is here too: protocol names (from :mod:`..registries`), ICMP request/reply pairs and
TCP flag letters.

Parsing is vectorised with Arrow compute kernels rather than a CSV reader (a CSV reader cannot
say which *line* a bad row came from, nor tell a Summary block from a short row): lines are cut at
the newline offsets of the input's own buffer, cells by ``split_pattern``, numbers are validated
by regular expressions and cast as whole columns, times go through ``strptime``; rows are
converted ``BATCH_ROWS`` at a time so memory stays bounded.  Python loops run over *distinct*
values only (protocol names, flag strings, Zeek histories, Argus states, hex ports, IPv6
addresses: per record only when every address is distinct), over the few header lines, and over
quarantined lines (to JSON-quote them).
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ... import progress
from ..flags import FLAG_BITS
from ..ingest import QUARANTINE_SCHEMA
from ..schema import (ATTR_IPV6, FLOW_SCHEMA, IPV6_FIELDS, IPV6_TYPE, PROTO_ICMP, PROTO_ICMPV6, TIME_1990_MS,
                      conform)
from .formats import MAGICS, OLD_TIME_POLICIES
from .result import ImportFormatError, ImportResult

TIME_AFTER_LAST_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z: no datetime holds it
_U32 = np.uint64(0xFFFFFFFF)


def read_text(path: Path, head: bytes, fmt: str) -> bytes:
    """The whole of a text input, once its first bytes (``head``) show it is no binary file."""
    if head.startswith(MAGICS) or b"\0" in head[:4096]:
        raise ImportFormatError(f"{path}: binary data, not {fmt} text")
    return path.read_bytes()


# --- lines and rows ----------------------------------------------------------------------------


class Lines:
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

    def header_columns(self, prefix: str, default: Sequence[str]) -> list[str]:
        """The column names of the first line starting with ``prefix`` (a CSV header), else
        ``default``; every such line is skipped as a header line."""
        header = self.startswith(prefix)
        columns = list(default)
        if header.any():
            columns = [c.strip() for c in self.line(int(np.flatnonzero(header)[0])).split(",")]
        self.skip(header, "header_lines")
        return columns

    def skip(self, mask, key: str) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.skipped_mask
        if mask.any():
            self.skipped_mask |= mask
            self.skipped[key] += int(mask.sum())

    def matches(self, pattern: str) -> np.ndarray:
        return np_bool(pc.match_substring_regex(self.text, pattern))

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


def np_bool(array) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def filled(col: pa.Array) -> pa.Array:
    """Trimmed strings, nulls as empty strings."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_large_string(col.type):
        col = col.cast(pa.large_string())
    return pc.utf8_trim_whitespace(pc.fill_null(col, ""))


@dataclass
class Addr:
    v4: np.ndarray  # uint32
    v6: np.ndarray  # (n, 16) uint8
    is_v6: np.ndarray  # bool
    present: np.ndarray  # bool: a value was given


class Rows:
    """Candidate data lines: their text, cells and the first problem found on each."""

    def __init__(self, lines: Lines, index: np.ndarray):
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
            good |= (found == ncols + 1) & np_bool(pc.ends_with(self.text, sep))
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
        s = filled(col)
        ok = np_bool(pc.match_substring_regex(s, r"^[0-9]{1,19}$"))
        wide = pc.cast(pc.if_else(pa.array(ok), s, pa.scalar("0", pa.large_string())), pa.uint64()).to_numpy(zero_copy_only=False)
        ok &= wide <= np.uint64(max_value)
        values = np.where(ok, wide, np.uint64(0)).astype(np.int64)
        if hex_ok:
            is_hex = np_bool(pc.match_substring_regex(s, r"^0[xX][0-9a-fA-F]{1,8}$"))
            if is_hex.any():
                hex_values, _ = per_distinct(s, lambda t: int(t, 16), np.int64, mask=is_hex)
                values = np.where(is_hex, hex_values, values)
                ok |= is_hex & (hex_values <= max_value)
        if empty is not None:
            blank = is_blank(s, unset)
            values[blank] = empty
            ok |= blank
        bad = ~ok | (values > max_value)
        self.fail(bad, f"bad {name}: not an integer in 0..{max_value}")
        values[bad] = 0
        return values

    def seconds_ms(self, col, name: str, *, empty: int | None = None, unset: Sequence[str] = ()) -> np.ndarray:
        """Non-negative seconds (decimal, optionally with an exponent) -> int64 milliseconds, truncated."""
        s = filled(col)
        m = pc.extract_regex(s, r"^(?P<i>[0-9]{1,12})(?:\.(?P<f>[0-9]*))?$")
        ok = np_bool(m.is_valid())
        whole = pc.cast(pc.fill_null(pc.struct_field(m, "i"), "0"), pa.int64()).to_numpy(zero_copy_only=False)
        frac = pc.fill_null(pc.struct_field(m, "f"), "")
        frac = pc.utf8_rpad(pc.utf8_slice_codeunits(frac, 0, 3), width=3, padding="0")
        ms = whole * 1000 + pc.cast(frac, pa.int64()).to_numpy(zero_copy_only=False)
        exp = ~ok & np_bool(pc.match_substring_regex(s, r"^[0-9]*\.?[0-9]+[eE][-+]?[0-9]{1,3}$"))
        if exp.any():
            floats = pc.cast(pc.if_else(pa.array(exp), s, pa.scalar("0", pa.large_string())), pa.float64()).to_numpy(zero_copy_only=False)
            fine = exp & (floats < 1e15)
            ms = np.where(fine, np.floor(np.where(fine, floats, 0) * 1000.0).astype(np.int64), ms)
            ok |= fine
        if empty is not None:
            blank = is_blank(s, unset)
            ms = np.where(blank, empty, ms)
            ok |= blank
        self.fail(~ok, f"bad {name}: not a number of seconds")
        return np.where(ok, ms, 0).astype(np.int64)

    def times_ms(self, col, name: str, formats: Sequence[str], *, epoch: bool = False, tz: str | None = None) -> np.ndarray:
        """Date-times in one of ``formats`` with optional fraction -> ms since the epoch.

        Times are UTC, or wall-clock times in the IANA zone ``tz`` (daylight saving included: a
        repeated hour takes its first occurrence, a time inside a skipped hour is quarantined)."""
        s = pc.utf8_rtrim(filled(col), characters="Z")
        m = pc.extract_regex(s, r"^(?P<main>[^.]*)(?:\.(?P<f>[0-9]{1,9}))?$")
        main = pc.fill_null(pc.struct_field(m, "main"), "")
        frac = pc.utf8_rpad(pc.utf8_slice_codeunits(pc.fill_null(pc.struct_field(m, "f"), ""), 0, 3), width=3, padding="0")
        seconds = None
        for fmt in formats:
            parsed = pc.strptime(main, format=fmt, unit="s", error_is_null=True)
            seconds = parsed if seconds is None else pc.coalesce(seconds, parsed)
        ok = np_bool(seconds.is_valid())
        if tz is not None:
            first = pc.assume_timezone(seconds, timezone=tz, ambiguous="earliest", nonexistent="earliest")
            last = pc.assume_timezone(seconds, timezone=tz, ambiguous="earliest", nonexistent="latest")
            skipped = ok & ~np_bool(pc.fill_null(pc.equal(first, last), True))
            self.fail(skipped, f"bad {name}: not a valid time in {tz} (inside a daylight-saving gap)")
            ok &= ~skipped
            seconds = first
        secs = pc.fill_null(seconds.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        if epoch:
            digits = ~ok & np_bool(pc.match_substring_regex(main, r"^[0-9]{1,12}$"))
            if digits.any():
                as_int = pc.cast(pc.if_else(pa.array(digits), main, pa.scalar("0", pa.large_string())), pa.int64()).to_numpy(zero_copy_only=False)
                secs = np.where(digits, as_int, secs)
                ok |= digits
        ms = secs * 1000 + pc.cast(frac, pa.int64()).to_numpy(zero_copy_only=False)
        self.fail(~ok, f"bad {name}: not a date and time")
        self.fail(ok & (ms < 0), f"bad {name}: before 1970")
        return np.where(ok & (ms >= 0), ms, 0).astype(np.int64)

    def addresses(self, col, name: str, *, integer_ok: bool = False, empty_ok: bool = False) -> Addr:
        s = filled(col)
        n = self.n
        m = pc.extract_regex(s, r"^(?P<a>[0-9]{1,3})\.(?P<b>[0-9]{1,3})\.(?P<c>[0-9]{1,3})\.(?P<d>[0-9]{1,3})$")
        is_v4 = np_bool(m.is_valid())
        v4 = np.zeros(n, dtype=np.uint64)
        for part in "abcd":
            octet = pc.cast(pc.fill_null(pc.struct_field(m, part), "0"), pa.uint64()).to_numpy(zero_copy_only=False)
            is_v4 &= octet <= 255
            v4 = (v4 << np.uint64(8)) | octet
        v6 = np.zeros((n, 16), dtype=np.uint8)
        is_v6 = np.zeros(n, dtype=bool)
        candidates = ~is_v4 & np_bool(pc.match_substring(s, ":"))
        if candidates.any():
            raw, good = _per_distinct_bytes(s, _ipv6_bytes, candidates)
            v6[good] = raw[good]
            is_v6 |= good
        if integer_ok:
            digits = ~is_v4 & ~is_v6 & np_bool(pc.match_substring_regex(s, r"^[0-9]{1,39}$"))
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
            present = np_bool(pc.not_equal(s, "")) | is_v4 | is_v6
            is_v4 |= ~present
        self.fail(~(is_v4 | is_v6), f"bad {name}: not an IP address")
        v4 = np.where(is_v4, v4, 0).astype(np.uint32)
        return Addr(v4, v6, is_v6, present)

    def lookup(self, col, name: str, fn: Callable[[str], int | None], reason: str | Callable[[str], str] | None = None,
               dtype=np.int64, fail: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Map each distinct (trimmed) value through ``fn`` (None: not valid)."""
        s = filled(col)
        values, ok = per_distinct(s, fn, dtype)
        if fail:
            bad = ~ok & self.ok
            if callable(reason) and bad.any():
                # reasons that depend on the value (e.g. "not an IP protocol: arp"), grouped by reason
                groups: dict[str, list[str]] = {}
                for text in pc.filter(s, pa.array(bad)).unique().to_pylist():
                    groups.setdefault(reason(text), []).append(text)
                for why, texts in groups.items():
                    self.fail(bad & np_bool(pc.is_in(s, value_set=pa.array(texts, s.type))), why)
            self.fail(~ok, reason if isinstance(reason, str) else f"bad {name}")
        return values, ok


def is_blank(s: pa.Array, unset: Sequence[str]) -> np.ndarray:
    blank = np_bool(pc.equal(s, ""))
    for token in unset:
        blank |= np_bool(pc.equal(s, token))
    return blank


def per_distinct(s: pa.Array, fn: Callable[[str], int | None], dtype, mask: np.ndarray | None = None):
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

# Argus labels some UDP flows by the application it recognised, and prints non-IP records too.
_ARGUS_UDP_LABELS = {"rtp": 17, "rtcp": 17, "udt": 17}
_NON_IP = frozenset({"arp", "rarp", "llc", "ipx/spx", "ipx", "stp", "lldp", "802.1q", "802.3", "ether", "man", "esp/ah"})


@lru_cache(maxsize=1)
def protocol_names() -> dict[str, int]:
    """Lower-case protocol keyword -> number, from the protocol registry (IANA's and the system's)."""
    import warnings

    from ..registries import RegistryWarning, protocols

    with warnings.catch_warnings():  # a missing /etc/protocols: IANA's names and the ones below serve
        warnings.simplefilter("ignore", RegistryWarning)
        names = dict(protocols().numbers())
    for word, number in (("tcp", 6), ("udp", 17), ("icmp", 1), ("ipv6-icmp", 58), ("icmp6", 58), ("icmpv6", 58), ("igmp", 2)):
        names.setdefault(word, number)
    return names


def protocol_number(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        return value if value <= 255 else None
    lower = text.lower()
    if lower in _ARGUS_UDP_LABELS:
        return _ARGUS_UDP_LABELS[lower]
    return protocol_names().get(lower)


def protocol_reason(text: str) -> str:
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


def icmp_counterpart(icmp_type: np.ndarray, v6: np.ndarray) -> np.ndarray:
    """The counterpart type of each ICMP type (-1: one-way message)."""
    t = np.clip(np.asarray(icmp_type, dtype=np.int64), 0, 255)
    return np.where(v6, _CP6[t], _CP4[t])


def reverse_icmp_port(dport: np.ndarray, v6: np.ndarray) -> np.ndarray:
    """dPort (type*256+code) of the reverse direction: the counterpart type with code 0, or unchanged."""
    icmp_type = np.asarray(dport, dtype=np.int64) >> 8
    cp = icmp_counterpart(icmp_type, v6)
    return np.where(cp >= 0, cp * 256, dport)


def flag_letters(text: str) -> int | None:
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


def convert_lines(lines: Lines, fmt: str, convert: Callable[[Rows], list[tuple[np.ndarray, dict]]], *, old_times: str,
         no_record_key: str = "lines_without_records", file_notes: dict[str, int] | None = None) -> ImportResult:
    """Convert the remaining lines batch by batch and account for every line."""
    if old_times not in OLD_TIME_POLICIES:
        raise ValueError(f"old_times must be one of {', '.join(OLD_TIME_POLICIES)}, not {old_times!r}")
    index = lines.remaining()
    partials = []
    # The file's name, not its path: a long path would push the count off a narrow terminal.
    progress.start(len(index), "lines", f"importing {Path(lines.origin).name}")
    for start in range(0, max(len(index), 1), BATCH_ROWS):
        rows = Rows(lines, index[start:start + BATCH_ROWS])
        partials.append(_partial(rows, convert(rows) if rows.n else [], old_times))
        progress.advance(rows.n)
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


def _partial(rows: Rows, parts: list[tuple[np.ndarray, dict]], old_times: str) -> _Partial:
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


def check_family(rows: Rows, src: Addr, dst: Addr) -> np.ndarray:
    rows.fail(src.is_v6 != dst.is_v6, "IPv4 and IPv6 addresses in one record")
    return src.is_v6


def check_volumes(rows: Rows, packets: np.ndarray, nbytes: np.ndarray, emit: np.ndarray, label: str = "") -> None:
    rows.fail(np.asarray(emit, dtype=bool) & (packets > nbytes), "more packets than bytes" + label)


def check_duration(rows: Rows, duration: np.ndarray) -> np.ndarray:
    rows.fail((duration < 0) | (duration > 0xFFFFFFFF), "duration out of range (0 to 49.7 days)")
    return np.clip(duration, 0, 0xFFFFFFFF)


def flow_columns(src: Addr, dst: Addr, v6: np.ndarray, **values) -> dict:
    cols = {"sIP": src.v4, "dIP": dst.v4, "sIPv6": src.v6, "dIPv6": dst.v6, "v6": v6}
    cols.update(values)
    return cols


def reversed_flow(cols: dict, **values) -> dict:
    out = dict(cols)
    out.update(sIP=cols["dIP"], dIP=cols["sIP"], sIPv6=cols["dIPv6"], dIPv6=cols["sIPv6"])
    out.update(sPort=cols.get("dPort"), dPort=cols.get("sPort"))
    out.update(values)
    return {k: v for k, v in out.items() if v is not None}


def icmp_ports(protocol: np.ndarray, v6: np.ndarray) -> np.ndarray:
    return (protocol == PROTO_ICMP) | ((protocol == PROTO_ICMPV6) & v6)

