"""The study report: one self-contained HTML page with a table of contents.

The page is ``templates/report.html.j2`` filled with :class:`Section` s; the sections are rebuilt from
the parts' folders (:func:`.parts.section_from_folder`), the tables in them typed as the parts wrote them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from .render import TEMPLATES


@dataclass
class ShownPiece:
    """One piece of a section as the page shows it (a part's piece read back from its folder)."""

    title: str
    heading: str | None = None  # None: a one-piece part named like its section needs no sub-heading
    table: pd.DataFrame | None = None  # typed as the part wrote it (render.read_csv)
    image: str | None = None  # relative link to a PNG
    text: str | None = None  # preformatted text
    note: str = ""


@dataclass
class Section:
    title: str
    pieces: list[ShownPiece] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # relative links (CSV, PNG)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def render_report(title: str, subtitle: str, sections: list[Section], warnings: list[str] = ()) -> str:
    return TEMPLATES.get_template("report.html.j2").render(
        title=title, subtitle=subtitle, sections=sections, warnings=list(warnings)
    )
