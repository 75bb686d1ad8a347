"""Stage 1: landing input -> SiLK-layout hourly archive, with blocking quality checks."""


from collections import Counter

import dagster as dg

from ..flows.archive import pack_hours
from ..flows.storage import hours_between
from ..resources import VlfStore
from .metadata import FLOW_COLUMNS
from .partitions import StudyPartitions
from .clock import asset

HOURLY_BATCH = 168  # hours per run in backfills: a week per run, 14 months in ~61 runs

VALIDITY_CHECK = "archive_records_valid"
EXPECTATIONS_CHECK = "archive_expectations"


def _hours(context) -> list:
    window = context.partition_time_window
    return hours_between(window.start, window.end)


def build(parts: StudyPartitions) -> list:
    @asset(
        partitions_def=parts.hourly,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=HOURLY_BATCH),
        group_name="archive",
        kinds={"parquet"},
        metadata=FLOW_COLUMNS,
        check_specs=[
            dg.AssetCheckSpec(
                VALIDITY_CHECK,
                asset="hourly_flows",
                blocking=True,
                description="Archive files have the flow schema (so ports and protocol are in range), "
                "packets <= bytes, packets > 0 and every sTime inside the file's hour.",
            )
        ],
        description="The hour's landing input packed into SiLK's archive layout "
        "archive/<type>/YYYY/MM/DD/<flowtype>-<sensor>_YYYYMMDD.HH.parquet, split by flowtype "
        "with the site's internal networks; rejected records go to quarantine/.",
    )
    def hourly_flows(context: dg.AssetExecutionContext, store: VlfStore):
        hours = _hours(context)
        packed = pack_hours(store.base, hours, store.site, plausibility=store.quarantine_implausible)
        violations, checked_records, files = Counter(), 0, 0
        for key, result in zip(context.partition_keys, packed):
            if result.quarantined:
                context.log.warning(
                    f"{result.hour:%Y-%m-%d %H}:00: {result.quarantined} record(s) quarantined in "
                    f"{result.quarantine_file}: {dict(result.reasons)}"
                )
            context.add_asset_metadata(
                {
                    "flows": result.flows,
                    "dagster/row_count": result.flows,
                    "quarantined": result.quarantined,
                    "by_flowtype": dict(sorted(result.by_flowtype.items())),
                    "quarantine_reasons": dict(result.reasons),
                    "archive_files": len(result.archive_files),
                    "landing_files": len(result.landing_files),
                },
                partition_key=key,
            )
            violations.update(result.check.violations)
            checked_records += result.check.records
            files += result.check.files
        yield dg.MaterializeResult(metadata={"archive_root": dg.MetadataValue.path(str(store.base / "archive"))})
        yield dg.AssetCheckResult(
            check_name=VALIDITY_CHECK,
            passed=not any(violations.values()),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"records_checked": checked_records, "files_checked": files, "hours": len(hours),
                      **{k: v for k, v in violations.items()}},
        )

    @dg.asset_check(
        asset=hourly_flows,
        name=EXPECTATIONS_CHECK,
        blocking=True,
        description="A great-expectations 1.x suite over the run's archive records "
        "(non-null fields, port/protocol/flowtype ranges, a positive row count).",
    )
    def archive_expectations(context: dg.AssetCheckExecutionContext, store: VlfStore) -> dg.AssetCheckResult:
        from ..analysis.expectations import validate_archive

        window = context.op_execution_context.partition_time_window
        files = store.archive_files(hours_between(window.start, window.end))
        outcome = validate_archive(files)
        return dg.AssetCheckResult(
            passed=outcome.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={**outcome.statistics, "failed_expectations": outcome.failed, "files": len(files)},
        )

    return [hourly_flows, archive_expectations]


