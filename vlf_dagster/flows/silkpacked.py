"""SiLK's packed hourly flow formats (what rwflowpack writes into a repository): not read yet."""

from __future__ import annotations

from .silkfile import Header, SilkFileError

READERS: dict[int, object] = {}  # file format id -> its record decoder


def read_packed(header: Header, body: bytes, label: str):
    raise SilkFileError(f"{label}: {header.name} is not read yet")
