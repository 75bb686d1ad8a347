"""Report parts: what one study table or figure produced, and how it is filed on disk.

A part's output is a list of :class:`Piece` (a table, a figure or a block of text).  The part is
written into ``reports/<window>/<part>/`` (CSV / PNG / TXT per piece) with a ``part.json``
manifest, so the HTML report is assembled from files without recomputing anything.  The manifest
keeps each table's column types beside its CSV, so the report reads the table back as it was.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ...flows.storage import write_text
from . import render as tables
from .page import Section, ShownPiece


NOTHING_TO_SHOW = "Nothing in the window's data gives this table."


@dataclass
class Piece:
    title: str
    table: pd.DataFrame | None = None
    figure: Path | None = None  # a PNG already written into the part's folder
    text: str | None = None  # preformatted text (rwcut / cutmatch layouts)
    note: str = ""
    empty: str = ""  # the one sentence shown instead, when the piece has nothing to show: why

    @property
    def is_empty(self) -> bool:
        """A table without rows, or no table, figure or text at all."""
        if self.table is not None:
            return len(self.table) == 0
        return self.figure is None and not (self.text or "").strip()

    def said_when_empty(self) -> Piece:
        """The piece as the report shows it: an empty one becomes its sentence (a note), never a
        bare header."""
        if not self.is_empty:
            return self
        return Piece(self.title, note=self.empty or NOTHING_TO_SHOW)  # the sources of a table it does not show go too

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", self.title.lower()).strip("_") or "piece"


@dataclass
class PartResult:
    name: str
    title: str
    pieces: list[Piece]
    notes: list[str] = field(default_factory=list)


def write_part(result: PartResult, folder: Path) -> dict:
    """Write the pieces and a manifest; returns the manifest (also Dagster metadata material)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for piece in result.pieces:
        entry = {"title": piece.title, "note": piece.note}
        if piece.table is not None:
            entry["csv"] = write_text(tables.to_csv(piece.table), folder / f"{piece.slug}.csv").name
            entry["column_types"] = tables.column_types(piece.table)
        if piece.figure is not None:
            entry["png"] = Path(piece.figure).name
        if piece.text is not None:
            entry["txt"] = write_text(piece.text, folder / f"{piece.slug}.txt").name
        entries.append(entry)
    manifest = {"name": result.name, "title": result.title, "notes": result.notes, "pieces": entries}
    write_text(json.dumps(manifest, indent=1), folder / "part.json")
    # a refresh whose data no longer gives a piece leaves none of that piece behind
    kept = {"part.json"} | {entry[kind] for entry in entries for kind in ("csv", "png", "txt") if kind in entry}
    for stale in folder.iterdir():
        if stale.is_file() and stale.name not in kept and stale.suffix in (".csv", ".png", ".txt"):
            stale.unlink()
    return manifest


def markdown_of(result: PartResult) -> str:
    """The part as Markdown for the Dagster UI (tables as Markdown, text in code blocks)."""
    out = []
    for piece in result.pieces:
        out.append(f"**{piece.title}**")
        if piece.table is not None:
            out.append(tables.to_markdown(piece.table))
        if piece.text is not None:
            out.append("```\n" + piece.text.rstrip("\n") + "\n```")
        if piece.figure is not None:
            out.append(f"![{piece.title}]({figure_data_uri(piece.figure)})")
        if piece.note:
            out.append(f"_{piece.note}_")
    return "\n\n".join(out)


UI_FIGURE_WIDTH = 640  # pixels: the figures shown inline in the UI are scaled down to this width


def figure_data_uri(path: Path) -> str:
    """A PNG figure as a ``data:`` URI the Dagster UI's Markdown shows inline, scaled to
    :data:`UI_FIGURE_WIDTH` (a ~40 KB thumbnail: it is kept in every materialization event)."""
    import base64
    import io

    from PIL import Image

    with Image.open(path) as image:
        if image.width > UI_FIGURE_WIDTH:
            image = image.resize((UI_FIGURE_WIDTH, round(image.height * UI_FIGURE_WIDTH / image.width)), Image.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def section_from_folder(folder: Path, report_dir: Path) -> Section | None:
    """Rebuild a report section from a part's folder (None if the part has not run)."""
    manifest_path = folder / "part.json"
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text())
    rel = folder.relative_to(report_dir).as_posix()
    pieces, files = [], []
    for entry in manifest["pieces"]:
        shown = ShownPiece(entry["title"], note=entry.get("note", ""))
        if entry["title"] != manifest["title"]:  # a one-piece part named like its section needs no sub-heading
            shown.heading = entry["title"]
        if "csv" in entry:
            shown.table = tables.read_csv(folder / entry["csv"], entry.get("column_types"))
            files.append(f"{rel}/{entry['csv']}")
        if "png" in entry:
            shown.image = f"{rel}/{entry['png']}"
            files.append(shown.image)
        if "txt" in entry:
            shown.text = (folder / entry["txt"]).read_text()
        pieces.append(shown)
    return Section(manifest["title"], pieces, notes=manifest.get("notes", []), files=files)
