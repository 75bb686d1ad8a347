"""The landing sensor: notices landing input (collector spools, imports) and reports its hours.

For every hour whose landing files are new or changed it records a runless materialization of
``landing_flows`` (the external asset the hourly assets depend on); their automation condition
then packs the hour.  A file that lands or is replaced after its hour was packed therefore re-packs
that hour, and its month and the window follow.

The cursor stays small whatever the history: a watermark (the newest modification time seen) and
the fingerprints (files, bytes, newest modification) of the hours touched within ``SETTLE`` of it.
Only hours with a file newer than ``watermark - SETTLE`` are looked at again, so a file whose
modification time is older than one already seen (a slow spool renamed into place) is still
noticed if it lands within ``SETTLE``.  A landing file deleted without a replacement is not a change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timezone

import dagster as dg

from .assets.archive import HOURLY_FLOWS
from .assets.automation import LANDING_FLOWS
from .partitions import HOUR_KEY_FORMAT
from ..flows.site import AutomationSettings
from ..flows.storage import landing_folders

SETTLE_NS = 15 * 60 * 10**9  # how far behind the watermark a late-stamped file is still noticed


@dataclass(frozen=True)
class LandingHour:
    files: int
    bytes: int
    newest_ns: int

    @property
    def fingerprint(self) -> str:
        return f"{self.files}:{self.bytes}:{self.newest_ns}"


def landing_state(data_dir) -> dict[str, LandingHour]:
    """Partition key -> the hour's landing files: how many, their bytes, the newest modification."""
    state = {}
    for hour, files in landing_folders(data_dir):
        stats = [p.stat() for p in files]
        key = hour.astimezone(timezone.utc).strftime(HOUR_KEY_FORMAT)
        state[key] = LandingHour(len(stats), sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats))
    return state


def changed_hours(state: dict[str, LandingHour], cursor: dict, packed: set[str]) -> tuple[list[str], dict]:
    """The hours to report and the next cursor.

    ``packed``: the hours the instance already holds, taken as seen on the first look (no cursor),
    so that a sensor switched on over an archive built by ``vlf materialize`` re-packs nothing.
    """
    if cursor:
        since = cursor["watermark_ns"] - SETTLE_NS
        recent = cursor["recent"]
        changed = sorted(k for k, h in state.items() if h.newest_ns > since and recent.get(k) != h.fingerprint)
    else:
        changed = sorted(k for k in state if k not in packed)
    watermark = max((h.newest_ns for h in state.values()), default=cursor.get("watermark_ns", 0) if cursor else 0)
    recent = {k: h.fingerprint for k, h in state.items() if h.newest_ns > watermark - SETTLE_NS}
    return changed, {"watermark_ns": watermark, "recent": recent}


def build_landing_sensor(data_dir, partitions: dg.PartitionsDefinition, settings: AutomationSettings):
    status = dg.DefaultSensorStatus.RUNNING if settings.enabled else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        minimum_interval_seconds=settings.landing_check_seconds,
        default_status=status,
        description="Records a landing_flows materialization for every hour whose landing files are new or "
        "changed (collector spools, imports); the hourly assets follow by their automation condition. "
        "On by default; [automation] enabled = false in the site file leaves it stopped.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext):
        state = landing_state(data_dir)
        cursor = json.loads(context.cursor) if context.cursor else {}
        packed = set() if cursor else set(context.instance.get_materialized_partitions(dg.AssetKey(HOURLY_FLOWS)))
        changed, new_cursor = changed_hours(state, cursor, packed)
        outside = [k for k in changed if not partitions.has_partition_key(k)]
        if outside:
            context.log.warning(f"landing hours outside the site's window are ignored: {', '.join(outside[:5])}")
        events = [
            dg.AssetMaterialization(
                asset_key=LANDING_FLOWS, partition=key,
                metadata={"landing_files": state[key].files, "bytes": state[key].bytes,
                          "newest_file_utc": dg.MetadataValue.timestamp(state[key].newest_ns / 1e9)},
            )
            for key in changed if key not in outside
        ]
        return dg.SensorResult(asset_events=events, cursor=json.dumps(new_cursor, sort_keys=True))

    return landing_sensor
