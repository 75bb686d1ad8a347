"""The month files a window step last read, kept as hard links in its state.

A monthly rollup replaces its file by a rename, so a hard link made when a window step read the
month still holds that version afterwards.  The next refresh compares each month's fingerprint
with the one it recorded: an unchanged month needs no reading, and a changed one can be diffed
against its old version (what changed in it, not the whole window, is redone).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ...flows.storage import fingerprint, write_text

VERSION = 1


@dataclass(frozen=True)
class MonthChanges:
    changed: list[Path]  # current month files that differ from (or are new since) the last refresh
    old: dict[str, Path]  # month name -> the version the last refresh read, for changed and gone months
    gone: list[str]  # months the last refresh read that are no longer there

    @property
    def any(self) -> bool:
        return bool(self.changed or self.gone)

    def before(self, months: Sequence[Path]) -> list[Path]:
        """The month files as the last refresh read them."""
        return [self.old.get(m.name, m) for m in months if m not in self.changed or m.name in self.old] + \
            [self.old[name] for name in self.gone]


class MonthLinks:
    def __init__(self, folder: Path):
        self.folder = folder
        self.meta = folder / "state.json"

    def link(self, name: str) -> Path:
        return self.folder / "months" / name

    def changes(self, months: Sequence[Path], settings: dict) -> MonthChanges | None:
        """What changed since the last :meth:`record` under the same ``settings``; None when
        there is no usable record (the step must then redo everything)."""
        try:
            meta = json.loads(self.meta.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if meta.get("version") != VERSION or meta.get("settings") != settings:
            return None
        recorded = meta.get("months", {})
        if not all(self.link(name).is_file() and fingerprint(self.link(name)) == print_ for name, print_ in recorded.items()):
            return None
        changed = [m for m in months if recorded.get(m.name) != fingerprint(m)]
        names = {m.name for m in months}
        gone = [name for name in recorded if name not in names]
        old = {m.name: self.link(m.name) for m in changed if m.name in recorded} | {name: self.link(name) for name in gone}
        return MonthChanges(changed, old, gone)

    def record(self, months: Sequence[Path], settings: dict) -> None:
        """Link each month file as it is now and record the settings the step ran with."""
        (self.folder / "months").mkdir(parents=True, exist_ok=True)
        names = {m.name for m in months}
        for month in months:
            link = self.link(month.name)
            if link.exists() and os.path.samefile(link, month):
                continue
            staged = link.with_name(f".{month.name}.tmp")
            staged.unlink(missing_ok=True)
            try:
                os.link(month, staged)
            except OSError:  # no hard links here: a copy with the same size and time
                shutil.copy2(month, staged)
            os.replace(staged, link)
        for stale in (self.folder / "months").glob("*.parquet"):
            if stale.name not in names:
                stale.unlink()
        write_text(json.dumps({"version": VERSION, "settings": settings,
                               "months": {m.name: fingerprint(m) for m in months}}, indent=1, sort_keys=True) + "\n",
                   self.meta)
