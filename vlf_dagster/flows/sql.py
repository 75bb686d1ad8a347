"""Quoting for the few SQL fragments that cannot be bound parameters (DDL, COPY targets, file lists)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def literal_list(values: Sequence[str | Path]) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]"
