"""``--network-structure`` of rwsetcat and rwbagcat: per-netblock host counts or counter sums.

Grammar: ``[v6:]LIST[/SUMMARY]`` or ``[v6:]LIST S``.  For IPv4, LIST holds prefix lengths 0-32 or
letters T (/0, printed as TOTAL), A (/8), B (/16), C (/24), X (/27), H (hosts, /32); ``S`` means the
summary 8,16,24,27.  For IPv6 (``v6:``), prefix lengths 0-128 or T and H (/128); ``S`` means 48,64.
SUMMARY lists the prefix lengths whose occupied blocks are counted inside each row, with the finer
listed levels; after a slash ``S`` is ignored (SiLK 3.19.1 does so: ``A/S`` counts hosts only).
Rows come in address order, the blocks inside a larger block printed before it, laid out as
rwsetcat/rwbagcat lay them out (one level right-aligned; several indented two per level, the
summary lengths finer than the first printed level taking a step too), checked byte for byte
against SiLK 3.19.1 (tests/test_silk_conformance.py).

An IPv4 structure counts the IPv4 members and the IPv6 members inside ::ffff:0:0/96 (the caller
reports the IPv6 members it leaves out); an IPv6 structure counts everything, IPv4 members mapped
into ::ffff:0:0/96 as SiLK does.  ``a.b.c.d`` and ``::ffff:a.b.c.d`` are one host.
Addresses are handled as two uint64 words, so every level is one vectorised pass.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

from ..schema import ipv4_mapped

LETTERS_V4 = {"T": 0, "A": 8, "B": 16, "C": 24, "X": 27, "H": 32}
LETTERS_V6 = {"T": 0, "H": 128}
SUMMARY_V4 = (8, 16, 24, 27)
SUMMARY_V6 = (48, 64)
V4_MAPPED = np.uint64(0xFFFF_0000_0000)  # ::ffff:0:0/96 in the low word


class NetworkStructureError(ValueError):
    pass


@dataclass(frozen=True)
class Structure:
    bits: int  # 32 or 128
    levels: tuple[int, ...]  # row prefix lengths
    summary: tuple[int, ...]  # prefix lengths counted inside each row
    described: bool = False  # rows say "N hosts in ...": a summary was asked for (``/...`` or ``S``)


def _lengths(text: str, bits: int) -> list[int]:
    letters = LETTERS_V4 if bits == 32 else LETTERS_V6
    out = []
    for item in (t.strip() for t in text.replace(",", " ").split()):
        if item.upper() in letters:
            out.append(letters[item.upper()])
        elif item.isdigit() and 0 <= int(item) <= bits:
            out.append(int(item))
        else:
            allowed = ",".join(letters)
            raise NetworkStructureError(f"invalid network structure item {item!r} (use 0-{bits} or {allowed})")
    return out


def parse_structure(spec: str) -> Structure:
    """The rows and summary of a --network-structure argument."""
    spec = spec.strip()
    bits = 32
    if spec.lower().startswith("v6:"):
        spec, bits = spec[3:].strip(), 128
    elif spec.lower().startswith("v4:"):
        spec = spec[3:].strip()
    spec = spec or "TS"
    default_summary = SUMMARY_V4 if bits == 32 else SUMMARY_V6
    summary: list[int] = []
    described = False
    if "/" in spec:  # as SiLK: after a slash, S is ignored and only the listed lengths are counted
        spec, summary_text = spec.split("/", 1)
        summary = [n for n in _lengths(summary_text.upper().replace("S", ""), bits)]
        described = True
        if spec.upper().endswith("S") and len(spec) > 1:
            spec = spec[:-1]  # "TS/": the S before a slash says nothing more
    elif spec.upper().endswith("S"):
        spec, summary, described = spec[:-1], list(default_summary), True
    levels = sorted(set(_lengths(",".join(spec.upper()) if spec.isalpha() else spec, bits)))
    if not levels:
        raise NetworkStructureError("empty network structure")
    return Structure(bits, tuple(levels), tuple(sorted(set(summary))), described)


def _plural(count: int, length: int) -> str:
    return f"{count} /{length}" + ("" if count == 1 else "s")


def _join(parts: list[str]) -> str:
    if len(parts) <= 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


def _block_starts(hi: np.ndarray, lo: np.ndarray, length: int) -> np.ndarray:
    """Indices where a new /length block (of 128 bits) begins in addresses sorted by (hi, lo)."""
    if not len(hi):
        return np.empty(0, dtype=np.int64)
    if length == 0:
        return np.zeros(1, dtype=np.int64)
    if length <= 64:
        key_hi, key_lo = hi >> np.uint64(64 - length), None
    else:
        key_hi, key_lo = hi, lo >> np.uint64(128 - length)
    change = key_hi[1:] != key_hi[:-1]
    if key_lo is not None:
        change |= key_lo[1:] != key_lo[:-1]
    return np.flatnonzero(np.concatenate([[True], change]))


def _label(start: int, length: int, bits: int) -> str:
    if length == 0:
        return "TOTAL"
    if bits == 32:
        text = str(ipaddress.IPv4Address(start))
    else:
        address = ipaddress.IPv6Address(start)
        text = f"::ffff:{address.ipv4_mapped}" if address.ipv4_mapped else str(address)  # SiLK's spelling
    return text if length == bits else f"{text}/{length}"


def network_structure(
    addresses: np.ndarray,
    spec: str = "TS",
    counters: np.ndarray | None = None,
    *,
    ipv6: tuple[np.ndarray, np.ndarray] | None = None,
    ipv6_counters: np.ndarray | None = None,
) -> list[str]:
    """Rows for unique IPv4 ``addresses`` (uint32) and IPv6 ``ipv6`` (hi, lo words).

    With ``counters`` (and ``ipv6_counters``), the members are bag keys and rows show sums.
    """
    structure = parse_structure(spec)
    bagged = counters is not None
    v4 = np.asarray(addresses, dtype=np.uint64)
    c4 = np.asarray(counters if bagged else np.zeros(len(v4)), dtype=np.uint64)
    h6, l6 = (np.asarray(w, np.uint64) for w in ipv6) if ipv6 is not None else (np.empty(0, np.uint64),) * 2
    c6 = np.asarray(ipv6_counters if bagged and ipv6_counters is not None else np.zeros(len(h6)), dtype=np.uint64)
    if structure.bits == 32:  # IPv4 members, and IPv6 members inside ::ffff:0:0/96 as the IPv4 they map
        mapped = ipv4_mapped(h6, l6)
        hi = np.zeros(len(v4) + int(mapped.sum()), np.uint64)
        lo = np.concatenate([v4, l6[mapped] & np.uint64(0xFFFF_FFFF)])
        values, offset = np.concatenate([c4, c6[mapped]]), 96
    else:
        hi = np.concatenate([np.zeros(len(v4), np.uint64), h6])
        lo = np.concatenate([v4 | V4_MAPPED, l6])
        values, offset = np.concatenate([c4, c6]), 0
    order = np.lexsort((lo, hi))
    hi, lo, values = hi[order], lo[order], values[order]
    if len(hi) > 1:  # a.b.c.d and ::ffff:a.b.c.d are one address: one host, counters added
        first = np.flatnonzero(np.concatenate([[True], (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])]))
        values = np.add.reduceat(values, first)
        hi, lo = hi[first], lo[first]
    full = lambda i: (int(hi[i]) << 64) | int(lo[i])  # noqa: E731

    bits = 32 if offset == 96 else 128
    address_width = 15 if bits == 32 else 39
    # rwsetcat's layout: one level is right-aligned in its label's width; several levels are
    # left-aligned, each indented two more than the level above it, in the widest row's width
    label_width = {n: 5 if n == 0 else address_width if n == bits else address_width + len(f"/{n}") for n in structure.levels}
    # as SiLK: a summary length finer than the first printed netblock level takes an indentation
    # step of its own between the printed levels; one coarser than it does not
    printed = [n for n in structure.levels if n > 0]
    stepped = sorted({*structure.levels, *(n for n in structure.summary if printed and n > min(printed))})
    indent = {n: 2 * stepped.index(n) for n in structure.levels}
    width = max(indent[n] + label_width[n] for n in structure.levels)
    single = len(structure.levels) == 1

    rows: list[tuple[int, int, str]] = []  # (block end, -length, text)
    for length in structure.levels:
        wide = length + offset  # the prefix length in 128-bit terms
        starts = _block_starts(hi, lo, wide)
        hosts = np.diff(np.append(starts, len(hi)))
        sums = np.add.reduceat(values, starts) if bagged and len(starts) else None
        inner = {}
        if structure.described:  # finer listed levels and summary lengths, counted per row
            bounds = np.append(starts, len(hi))
            for m in sorted({n for n in (*structure.levels, *structure.summary) if length < n < bits}):  # hosts are the count
                inner[m] = np.diff(np.searchsorted(_block_starts(hi, lo, m + offset), bounds))
        span = 1 << (128 - wide)
        for i, first in enumerate(starts.tolist()):
            start = full(first) & ~(span - 1)
            label = _label(start, length, 128) if offset == 0 else _label(start & 0xFFFF_FFFF, length, 32)
            text = label.rjust(width) if single else (" " * indent[length] + label).ljust(width)
            text += f"|{int(sums[i]):20d}|" if bagged else "|"
            if structure.described and length != bits:  # a host row is its address (and counter) alone
                text += f" {int(hosts[i])} host{'s' if hosts[i] != 1 else ''}"
                if inner:
                    text += " in " + _join([_plural(int(inner[m][i]), m) for m in inner])
            elif not bagged and length != bits:
                text += f" {int(hosts[i])}"
            rows.append((start + span - 1, -length, text))
        if length == 0 and not len(hi):
            total = "TOTAL".rjust(width) if single else "TOTAL".ljust(width)
            rows.append(((1 << 128) - 1, 0, total + (f"|{0:20d}|" if bagged else "| 0") + (" 0 hosts" if structure.described else "")))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]


def ipv6_left_out(spec: str, ipv6: tuple[np.ndarray, np.ndarray]) -> str | None:
    """The note to print when an IPv4 structure leaves IPv6 members uncounted (never silently);
    members inside ::ffff:0:0/96 are counted as IPv4."""
    hi, lo = (np.asarray(w, np.uint64) for w in ipv6)
    left_out = int((~ipv4_mapped(hi, lo)).sum())
    if left_out and parse_structure(spec).bits == 32:
        return f"{left_out} IPv6 address(es) not counted by an IPv4 structure; use --network-structure=v6:..."
    return None
