"""TCP flags: SiLK's bit values, its FSRPAUEC display order, and HIGH/MASK tests."""

from __future__ import annotations

import numpy as np

FLAG_ORDER = "FSRPAUEC"
FLAG_BITS = {letter: 1 << i for i, letter in enumerate(FLAG_ORDER)}  # F=1 S=2 R=4 P=8 A=16 U=32 E=64 C=128
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = (FLAG_BITS[c] for c in FLAG_ORDER)


class FlagsError(ValueError):
    pass


def flags_to_string(value: int, *, columns: bool = True) -> str:
    """SiLK's rendering: fixed 8 columns with spaces for unset flags, or only the set letters."""
    if columns:
        return "".join(c if value & FLAG_BITS[c] else " " for c in FLAG_ORDER)
    return "".join(c for c in FLAG_ORDER if value & FLAG_BITS[c])


_COLUMNS_LUT = np.array([flags_to_string(v, columns=True) for v in range(256)], dtype=object)
_COMPACT_LUT = np.array([flags_to_string(v, columns=False) for v in range(256)], dtype=object)


def flag_strings(values: np.ndarray, *, columns: bool = False) -> np.ndarray:
    """Vectorised :func:`flags_to_string` over an array of flag bytes (a table lookup, no loop)."""
    lut = _COLUMNS_LUT if columns else _COMPACT_LUT
    return lut[np.asarray(values, dtype=np.uint8)]


# SiLK's attributes (skTCPStateString): T timed out, C continuation, F FIN followed by more, S
# uniform packet sizes; padded to 8 columns, as flags are.
ATTRIBUTE_LETTERS = (("T", 0x20), ("C", 0x40), ("F", 0x08), ("S", 0x10))


def attributes_to_string(value: int, *, columns: bool = True) -> str:
    if columns:
        return "".join(c if value & bit else " " for c, bit in ATTRIBUTE_LETTERS).ljust(8)
    return "".join(c for c, bit in ATTRIBUTE_LETTERS if value & bit)


_ATTR_COLUMNS_LUT = np.array([attributes_to_string(v, columns=True) for v in range(256)], dtype=object)
_ATTR_COMPACT_LUT = np.array([attributes_to_string(v, columns=False) for v in range(256)], dtype=object)


def attribute_strings(values: np.ndarray, *, columns: bool = False) -> np.ndarray:
    """Vectorised :func:`attributes_to_string` over an array of attribute bytes."""
    lut = _ATTR_COLUMNS_LUT if columns else _ATTR_COMPACT_LUT
    return lut[np.asarray(values, dtype=np.uint8)]


def parse_flags(text: str) -> int:
    """'FS PA' or 'fspa' -> bit value; spaces are ignored, case is not significant."""
    value = 0
    for ch in text.upper():
        if ch == " ":
            continue
        if ch not in FLAG_BITS:
            raise FlagsError(f"invalid TCP flag {ch!r} in {text!r} (expected letters of {FLAG_ORDER})")
        value |= FLAG_BITS[ch]
    return value


def parse_high_mask(text: str) -> list[tuple[int, int]]:
    """Parse rwfilter's ``HIGH/MASK[,HIGH/MASK...]`` list into (high, mask) pairs.

    HIGH must be a subset of MASK.  A pair matches a flag byte when ``flags & mask == high``.
    """
    pairs = []
    for item in text.split(","):
        item = item.strip()
        if "/" not in item:
            raise FlagsError(f"invalid HIGH/MASK pair {item!r}: expected e.g. S/SA")
        high_s, mask_s = item.split("/", 1)
        high, mask = parse_flags(high_s), parse_flags(mask_s)
        if mask == 0:
            raise FlagsError(f"invalid HIGH/MASK pair {item!r}: MASK is empty")
        if high & ~mask:
            raise FlagsError(f"invalid HIGH/MASK pair {item!r}: HIGH flags must also be in MASK")
        pairs.append((high, mask))
    return pairs


def match_high_mask(values: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """True where any pair matches; like SiLK there is no protocol check."""
    v = np.asarray(values, dtype=np.uint8)
    out = np.zeros(v.shape, dtype=bool)
    for high, mask in pairs:
        out |= (v & mask) == high
    return out
