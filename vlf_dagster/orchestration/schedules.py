"""The hourly schedule: a fallback for sites whose landing files cannot be watched."""

from __future__ import annotations

import dagster as dg


def build_hourly_schedule(hourly_job) -> dg.ScheduleDefinition:
    # Off by default: the landing sensor and the automation conditions already bring each hour in;
    # this is for a site whose landing files cannot be watched (it packs the closed hour regardless).
    return dg.build_schedule_from_partitioned_job(
        hourly_job, minute_of_hour=5, default_status=dg.DefaultScheduleStatus.STOPPED,
        description="At :05 past each hour, materialize the hour that just closed (off by default: the "
        "landing sensor and the automation conditions bring each hour in as it lands).",
    )
