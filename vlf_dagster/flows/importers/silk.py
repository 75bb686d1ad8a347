"""``silk``: SiLK's own binary flow files -> flow records, read by :mod:`..silkfile`.

Every flow format SiLK 3.19.1 writes (rwtuc, rwcat, rwfilter and rwsort output, rwflowpack's
packed hourly repository files), uncompressed, zlib, lzo1x or snappy; sniffed by its magic
(:data:`.formats.SILK_MAGIC`).
"""

from __future__ import annotations

from pathlib import Path

from .result import ImportFormatError, ImportResult, ReadOptions


def import_silk(path: str | Path) -> ImportResult:
    """A SiLK flow file (rwtuc, rwcat, rwfilter or rwsort output): its records as SiLK stored them,
    sensor and flowtype ids kept (the site's sensor list names the ids)."""
    from ..silkfile import SilkFileError, read_silk_file

    try:
        flows = read_silk_file(path)
    except SilkFileError as exc:
        raise ImportFormatError(str(exc)) from None
    from ..ingest import empty_quarantine

    return ImportResult(flows, empty_quarantine(), {"records": flows.num_rows}, origin=str(path), format="silk")


def read(path: Path, head: bytes, options: ReadOptions) -> ImportResult:
    return import_silk(path)
