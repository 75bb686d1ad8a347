"""Dagster assets of the study, built for one site's partitions."""

from __future__ import annotations

from . import archive, bags, catalog, matching, reports, returns, scanners, vlf
from ..partitions import StudyPartitions


def build_assets(parts: StudyPartitions) -> list:
    return [*archive.build(parts), *bags.build(parts), *vlf.build(parts), *scanners.build(parts), *returns.build(parts), *matching.build(), *reports.build(), *catalog.build()]
