"""``--network-structure`` of rwsetcat and rwbagcat: per-netblock host counts or counter sums.

Grammar: ``LIST[/SUMMARY]`` or ``LIST S``.  LIST holds prefix lengths or letters
T (/0, printed as TOTAL), A (/8), B (/16), C (/24), X (/27), H (hosts, /32).  SUMMARY lists the
prefix lengths whose occupied blocks are counted inside each row; ``S`` means 8,16,24,27.
Rows come in address order with the blocks inside a larger block printed before it.
IPv4 only (a ``v6:`` structure is refused with a clear error).
"""

from __future__ import annotations

import ipaddress

import numpy as np

LETTERS = {"T": 0, "A": 8, "B": 16, "C": 24, "X": 27, "H": 32}
DEFAULT_SUMMARY = (8, 16, 24, 27)


class NetworkStructureError(ValueError):
    pass


def _lengths(text: str) -> list[int]:
    out = []
    for item in (t.strip() for t in text.replace(",", " ").split()):
        if item.upper() in LETTERS:
            out.append(LETTERS[item.upper()])
        elif item.isdigit() and 0 <= int(item) <= 32:
            out.append(int(item))
        else:
            raise NetworkStructureError(f"invalid network structure item {item!r} (use 0-32 or T,A,B,C,X,H)")
    return out


def parse_structure(spec: str) -> tuple[list[int], list[int]]:
    """(row prefix lengths, summary prefix lengths) of a --network-structure argument."""
    spec = spec.strip() or "TS"
    if spec.lower().startswith("v6:"):
        raise NetworkStructureError("IPv6 network structures are not supported yet")
    summary: list[int] = []
    if "/" in spec:
        spec, summary_text = spec.split("/", 1)
        summary_text = summary_text.strip()
        summary = list(DEFAULT_SUMMARY) if summary_text.upper() in ("", "S") else _lengths(summary_text)
    elif spec.upper().endswith("S"):
        spec, summary = spec[:-1], list(DEFAULT_SUMMARY)
    levels = sorted(set(_lengths(",".join(spec.upper()) if spec.isalpha() else spec)))
    if not levels:
        raise NetworkStructureError("empty network structure")
    return levels, sorted(set(summary))


def _plural(count: int, length: int) -> str:
    return f"{count} /{length}" + ("" if count == 1 else "s")


def _join(parts: list[str]) -> str:
    if len(parts) <= 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


def network_structure(addresses: np.ndarray, spec: str = "TS", counters: np.ndarray | None = None) -> list[str]:
    """Rows for IPv4 ``addresses`` (uint32, unique); with ``counters`` (a bag) rows show sums."""
    levels, summary = parse_structure(spec)
    addr = np.asarray(addresses, dtype=np.uint64)
    order = np.argsort(addr, kind="stable")
    addr = addr[order]
    if counters is not None:
        counters = np.asarray(counters, dtype=np.uint64)[order]
    rows: list[tuple[int, int, str]] = []  # (block end, -length, text)
    for length in levels:
        shift = np.uint64(32 - length)
        prefixes, inverse, hosts = np.unique(addr >> shift, return_inverse=True, return_counts=True)
        sums = None
        if counters is not None and len(addr):  # exact uint64 sums per block (addresses are sorted)
            sums = np.add.reduceat(np.asarray(counters, dtype=np.uint64), np.searchsorted(inverse, np.arange(len(prefixes))))
        inner: dict[int, np.ndarray] = {}
        for m in summary:
            if m > length:
                pairs = np.unique(np.stack([addr >> shift, addr >> np.uint64(32 - m)], axis=1), axis=0)
                inner[m] = np.searchsorted(pairs[:, 0], prefixes, side="right") - np.searchsorted(pairs[:, 0], prefixes, side="left")
        for i, prefix in enumerate(prefixes.tolist()):
            start = prefix << (32 - length)
            end = start + (1 << (32 - length)) - 1
            label = "TOTAL" if length == 0 else (str(ipaddress.IPv4Address(start)) if length == 32 else f"{ipaddress.IPv4Address(start)}/{length}")
            text = label if length == 0 else label + " "
            if counters is not None:
                text += f"| {int(sums[i])}|"
            if inner:
                described = _join([_plural(int(inner[m][i]), m) for m in sorted(inner)])
                text += f"{'' if counters is not None else '|'} {int(hosts[i])} host{'s' if hosts[i] != 1 else ''} in {described}"
            elif counters is None:
                text += f"| {int(hosts[i])}"
            rows.append((end, -length, text))
        if length == 0 and not len(addr):
            rows.append(((1 << 32) - 1, 0, "TOTAL| 0" if counters is None else "TOTAL| 0|"))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]
