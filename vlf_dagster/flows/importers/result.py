"""What every importer returns: an :class:`ImportResult`, or :class:`ImportFormatError` when the
input cannot be read as its format at all; and the :class:`ReadOptions` a format module reads by."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import MS_PER_HOUR


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


@dataclass(frozen=True)
class ReadOptions:
    """The options of `vlf import` a format module may use (each takes what applies to it)."""

    fields: str | Sequence[str] | None = None  # rwcut text without a title line: its columns
    delimiter: str | None = None  # rwcut text: the column separator
    old_times: str | None = None  # records starting before 1990: "keep" or "quarantine" (None: the format's default)
    tz: str | None = None  # date-time text: the IANA zone it was written in (None: UTC)


def _hour_counts(flows: pa.Table) -> dict[datetime, int]:
    if not flows.num_rows:
        return {}
    hours, counts = np.unique(flows.column("sTime").to_numpy() // MS_PER_HOUR, return_counts=True)
    return {hour_datetime(int(h)): int(c) for h, c in zip(hours, counts)}


def hour_datetime(hour_index: int) -> datetime:
    return datetime.fromtimestamp(hour_index * 3600, tz=timezone.utc)

