"""The study's jobs, one per grain: their selections come from the artifact catalogue."""

from __future__ import annotations

import dagster as dg

from .. import artifacts as A

HOURLY_ASSETS = A.names(A.of_grain(A.HOURLY))  # one step: the archive and the bags made with it
MONTHLY_ASSETS = A.names(A.of_grain(A.MONTHLY))


def build_jobs() -> list:
    hourly_job = dg.define_asset_job(
        "hourly_job", selection=dg.AssetSelection.assets(*HOURLY_ASSETS),
        description="Pack an hour (or a range of hours) into the archive and build its bags and sets.",
    )
    monthly_job = dg.define_asset_job(
        "monthly_job", selection=dg.AssetSelection.assets(*MONTHLY_ASSETS),
        description="Roll a month of hourly bags and sets up.",
    )
    window_job = dg.define_asset_job(
        "window_job",
        selection=dg.AssetSelection.all() - dg.AssetSelection.assets(*HOURLY_ASSETS, *MONTHLY_ASSETS),
        description="Window-level bags, VLF sets, VLF flows and the report.",
    )
    return [hourly_job, monthly_job, window_job]
