"""Rendering of study tables: Markdown for the Dagster UI, HTML for the report, CSV for tools."""

from __future__ import annotations

import html
import math
import re

import pandas as pd


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


def to_html(df: pd.DataFrame) -> str:
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for row in formatted(df):
        cells = "".join(
            f'<td class="{"num" if num else "txt"}">{html.escape(cell)}</td>' for cell, num in zip(row, numeric)
        )
        rows.append(f"<tr>{cells}</tr>")
    return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def to_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.2f")
