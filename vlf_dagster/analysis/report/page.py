"""The study report: one self-contained HTML page with a table of contents."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field


@dataclass
class Section:
    title: str
    body_html: str
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # relative links (CSV, PNG)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
nav { background: #f4f6f8; padding: 0.6rem 1.2rem; border-radius: 6px; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ccd; padding: 0.25rem 0.6rem; }
th { background: #e9eef4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
section { margin-top: 2.5rem; border-top: 1px solid #dde; padding-top: 0.5rem; overflow-x: auto; }
h3 { margin-bottom: 0.3rem; font-size: 1.05rem; }
.files { font-size: 0.85rem; color: #555; } .files a { margin-right: 1rem; display: inline-block; word-break: break-all; }
pre { background: #f7f7f9; border: 1px solid #e3e3ea; padding: 0.6rem; overflow-x: auto; font-size: 0.8rem; }
img { max-width: 100%; border: 1px solid #e3e3ea; }
.note { color: #555; font-size: 0.9rem; }
.warning { background: #fff4d6; border-left: 4px solid #d99a00; padding: 0.4rem 0.8rem; }
nav ol { columns: 2; margin: 0.3rem 0; }
"""


def render_report(title: str, subtitle: str, sections: list[Section], warnings: list[str] = ()) -> str:
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    parts = []
    for s in sections:
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in s.notes)
        files = "".join(f'<a href="{html.escape(f)}">{html.escape(f)}</a>' for f in s.files)
        parts.append(
            f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{notes}{s.body_html}'
            + (f'<p class="files">Files: {files}</p>' if files else "")
            + "</section>"
        )
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=\"meta\">{html.escape(subtitle)}</p>"
        + "".join(f'<p class="warning">{html.escape(w)}</p>' for w in warnings)
        + f"<nav><strong>Contents</strong><ol>{toc}</ol></nav>{''.join(parts)}</body></html>"
    )
