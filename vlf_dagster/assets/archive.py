"""Stage 1: landing input -> SiLK-layout hourly archive, with blocking quality checks."""


from collections import Counter

import dagster as dg

from ..flows.archive import check_archive_hour, pack_hour
from ..flows.storage import hours_between
from ..resources import VlfStore
from .metadata import FLOW_COLUMNS
from .partitions import StudyPartitions

HOURLY_BATCH = 24  # hours per run in backfills: a month is ~31 runs, not 744

VALIDITY_CHECK = "archive_records_valid"
EXPECTATIONS_CHECK = "archive_expectations"


def _hours(context) -> list:
    window = context.partition_time_window
    return hours_between(window.start, window.end)


def build(parts: StudyPartitions) -> list:
    @dg.asset(
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
        totals, reasons, violations = Counter(), Counter(), Counter()
        flows = quarantined = files = checked_records = 0
        for hour in _hours(context):
            packed = pack_hour(store.base, hour, store.site, plausibility=store.quarantine_implausible)
            flows += packed.flows
            quarantined += packed.quarantined
            totals.update(packed.by_flowtype)
            reasons.update(packed.reasons)
            if packed.quarantined:
                context.log.warning(
                    f"{hour:%Y-%m-%d %H}:00: {packed.quarantined} record(s) quarantined in "
                    f"{packed.quarantine_file}: {dict(packed.reasons)}"
                )
            check = check_archive_hour(packed.archive_files, hour)
            files += check.files
            checked_records += check.records
            violations.update(check.violations)
        yield dg.MaterializeResult(
            metadata={
                "flows": flows,
                "dagster/row_count": flows,
                "quarantined": quarantined,
                "by_flowtype": dict(sorted(totals.items())),
                "quarantine_reasons": dict(reasons),
                "archive_files": files,
                "archive_root": dg.MetadataValue.path(str(store.base / "archive")),
            }
        )
        yield dg.AssetCheckResult(
            check_name=VALIDITY_CHECK,
            passed=not any(violations.values()),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"records_checked": checked_records, "files_checked": files, **{k: v for k, v in violations.items()}},
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


