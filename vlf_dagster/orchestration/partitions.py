"""Partitions of the study: UTC hours of the site's window, and the months that roll them up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import dagster as dg

from ..flows.site import Site

HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"


def _month_floor(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(moment: datetime) -> datetime:
    return _month_floor(_month_floor(moment) + timedelta(days=32))


@dataclass(frozen=True)
class StudyPartitions:
    hourly: dg.HourlyPartitionsDefinition
    monthly: dg.MonthlyPartitionsDefinition


def study_partitions(site: Site) -> StudyPartitions:
    hourly = dg.HourlyPartitionsDefinition(
        start_date=site.start.strftime(HOUR_KEY_FORMAT),
        end_date=site.end.strftime(HOUR_KEY_FORMAT) if site.end else None,
        timezone="UTC",
    )
    month_end = None
    if site.end is not None:  # the month holding the window's last hour is a (partial) partition too
        last_hour = site.end - timedelta(hours=1)
        month_end = _next_month(last_hour).strftime("%Y-%m-%d")
    monthly = dg.MonthlyPartitionsDefinition(
        start_date=_month_floor(site.start).strftime("%Y-%m-%d"),
        end_date=month_end,
        timezone="UTC",
        end_offset=0 if month_end else 1,  # a live site's current month is already useful
    )
    return StudyPartitions(hourly, monthly)


def hour_of_key(key: str) -> datetime:
    return datetime.strptime(key, HOUR_KEY_FORMAT).replace(tzinfo=timezone.utc)
