"""Rendering of study tables: Markdown for the Dagster UI, HTML for the report, CSV for tools.

A table's CSV is written with its columns' types (:func:`column_types`, kept in the part's manifest)
and read back with them (:func:`read_csv`), so the report formats a column by what it holds, never by
what its text looks like.  HTML comes from the Jinja2 templates in ``templates/`` (:data:`TEMPLATES`).
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup


PERCENT_COLUMNS = ("%", "percent", "pct.")


def _is_percent(column: str) -> bool:
    return any(mark in str(column).lower() for mark in PERCENT_COLUMNS)


# Columns whose numbers name something (a port, a protocol, an ICMP type or code, a rank): written
# as they are; every other whole number is a count and gets thousands separators.
IDENTIFIER_WORDS = ("port", "p'col", "protocol", "type", "code", "rank")


def _is_identifier(column: str) -> bool:
    words = re.findall(r"[a-z']+", re.sub(r"\(.*?\)", "", str(column).lower()))  # "Port (2 - 4 flows)" names ports
    return bool(words) and words[-1] in IDENTIFIER_WORDS


def _cell(value, column: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""  # side-by-side tables pad their shorter columns
    if isinstance(value, float):
        return f"{value:.2f}%" if _is_percent(column) else f"{value:,.2f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value) if _is_identifier(column) else f"{value:,}"
    return "" if value is None else str(value)


def formatted(df: pd.DataFrame) -> list[list[str]]:
    return [[_cell(v, c) for v, c in zip(row, df.columns)] for row in df.itertuples(index=False, name=None)]


def to_markdown(df: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    align = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else ":---" for c in df.columns) + "|"
    body = ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in formatted(df)]
    return "\n".join([header, align, *body])


def _escaped(value) -> Markup:
    # everything the templates print is escaped as html.escape does (&quot; &#x27;), the entities the
    # page has always had, rather than markupsafe's (&#34; &#39;); Markup (a rendered table) passes as is
    return value if hasattr(value, "__html__") else Markup(html.escape(str(value)))


TEMPLATES = Environment(loader=PackageLoader(__package__, "templates"), autoescape=True, finalize=_escaped,
                        undefined=StrictUndefined)


def to_html(df: pd.DataFrame) -> Markup:
    """The table as HTML (``templates/table.html.j2``): number columns (by dtype) right-aligned."""
    kinds = ["num" if pd.api.types.is_numeric_dtype(df.iloc[:, i]) else "txt" for i in range(df.shape[1])]
    rows = [list(zip(row, kinds)) for row in formatted(df)]
    return Markup(TEMPLATES.get_template("table.html.j2").render(columns=list(df.columns), rows=rows))


TEMPLATES.filters["html_table"] = to_html


def to_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.2f")


def column_types(df: pd.DataFrame) -> list[str]:
    """The type of each column, in order, as the CSV cannot say it: "int", "float", "bool" or "text"."""
    types = []
    for i in range(df.shape[1]):
        column = df.iloc[:, i]
        if pd.api.types.is_bool_dtype(column):
            types.append("bool")
        elif pd.api.types.is_integer_dtype(column):
            types.append("int")
        elif pd.api.types.is_float_dtype(column):
            types.append("float")
        else:
            types.append("text")
    return types


def read_csv(path: Path, types: list[str] | None) -> pd.DataFrame:
    """A table written by :func:`to_csv`, its columns typed by ``types`` (:func:`column_types` of the
    table written); a blank number cell is missing.  Without types (a part filed before tables kept
    them) every cell is the text written."""
    df = pd.read_csv(path, keep_default_na=False, dtype=str)
    for i, kind in enumerate(types or ()):
        df.isetitem(i, _typed(df.iloc[:, i], kind))
    return df


def _typed(column: pd.Series, kind: str) -> pd.Series:
    if kind == "text":
        return column
    if kind == "bool":
        return column.map({"True": True, "False": False})
    blank = column == ""
    numbers = pd.to_numeric(column.mask(blank))  # raises on a cell that is no number: the part said it was one
    if kind == "int":
        return numbers.astype("Int64" if blank.any() else "int64")
    return numbers.astype("float64")
