"""A sensor that notices landing input (from the collector or an import) and requests its hours.

Late data re-materializes its hour: the cursor remembers each hour's newest landing file time,
so a file that lands (or is replaced) after its hour was packed triggers that hour again.
"""

import json
from datetime import timezone

import dagster as dg

from .assets.partitions import HOUR_KEY_FORMAT
from .flows.storage import landing_files, landing_hours


def landing_state(data_dir) -> dict[str, float]:
    """Partition key -> newest modification time of the hour's landing files."""
    state = {}
    for hour in landing_hours(data_dir):
        files = landing_files(data_dir, hour)
        state[hour.astimezone(timezone.utc).strftime(HOUR_KEY_FORMAT)] = max(p.stat().st_mtime for p in files)
    return state


def build_landing_sensor(hourly_job, data_dir, partitions: dg.PartitionsDefinition):
    @dg.sensor(
        job=hourly_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Requests hourly_job for every hour whose landing input is new or changed "
        "(collector spools and imports). Off by default: switch it on in the UI (Automation).",
    )
    def landing_sensor(context: dg.SensorEvaluationContext):
        seen = json.loads(context.cursor) if context.cursor else {}
        state = landing_state(data_dir)
        valid = set(partitions.get_partition_keys())
        changed = sorted(k for k, mtime in state.items() if k in valid and seen.get(k) != mtime)
        skipped = sorted(k for k in state if k not in valid)
        for key in changed:
            yield dg.RunRequest(run_key=f"{key}@{state[key]}", partition_key=key)
        if skipped:
            context.log.warning(f"landing hours outside the site's window are ignored: {', '.join(skipped[:5])}")
        context.update_cursor(json.dumps(state))

    return landing_sensor
