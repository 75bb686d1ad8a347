"""Stages 1 and 2a, one step per batch of hours: landing input -> the SiLK-layout hourly archive,
its blocking quality checks, and the hourly bags and sets derived from the same records.

One multi-asset materializes ``hourly_flows``, ``hourly_source_bags``, ``hourly_contact_pairs``
and ``hourly_active_hosts`` (separate assets in the catalog, each hour with its own figures): the
bags are computed from the records the step has just archived, in memory, instead of reading
~8 archive files per hour back.  Both checks are blocking: when one fails, the bags are not
written and not materialized, as a downstream step would be skipped.
"""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from ... import artifacts as A
from ...analysis.steps import vlf
from ...analysis.steps.expectations import validate_table
from ...flows.archive import pack_batch
from ...flows.flowtypes import INBOUND_TYPES
from ...flows.storage import hours_between
from ..resources import VlfStore
from .automation import CHECK_CONDITION
from .clock import multi_asset
from .metadata import FLOW_COLUMNS
from ..partitions import StudyPartitions

HOURLY_BATCH = 168  # hours per run in backfills: a week per run, 14 months in ~61 runs

VALIDITY_CHECK = "archive_records_valid"
EXPECTATIONS_CHECK = "archive_expectations"

HOURLY_FLOWS = A.HOURLY_FLOWS.name
HOURLY_SOURCE_BAGS = A.HOURLY_SOURCE_BAGS.name
HOURLY_CONTACT_PAIRS = A.HOURLY_CONTACT_PAIRS.name
HOURLY_ACTIVE_HOSTS = A.HOURLY_ACTIVE_HOSTS.name


def _hours(context) -> list:
    window = context.partition_time_window
    return hours_between(window.start, window.end)


def build(parts: StudyPartitions) -> list:
    def spec(artifact: A.Artifact, **kwargs) -> dg.AssetSpec:
        return dg.AssetSpec(artifact.name, group_name=artifact.group, kinds=artifact.kinds,
                            description=artifact.asset_description, **kwargs)

    derived = dict(deps=[HOURLY_FLOWS], skippable=True)

    @multi_asset(
        name="hourly_archive",
        partitions_def=parts.hourly,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=HOURLY_BATCH),
        specs=[
            spec(A.HOURLY_FLOWS, metadata=FLOW_COLUMNS, deps=[A.LANDING_FLOWS.name]),
            spec(A.HOURLY_SOURCE_BAGS, **derived),
            spec(A.HOURLY_CONTACT_PAIRS, **derived),
            spec(A.HOURLY_ACTIVE_HOSTS, **derived),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                VALIDITY_CHECK, asset=HOURLY_FLOWS, blocking=True, automation_condition=CHECK_CONDITION,
                description="Archive records have the flow schema (so ports and protocol are in range), "
                "packets <= bytes, packets > 0 and every sTime inside its file's hour.",
            ),
            dg.AssetCheckSpec(
                EXPECTATIONS_CHECK, asset=HOURLY_FLOWS, blocking=True, automation_condition=CHECK_CONDITION,
                description="A great-expectations 1.x suite over the run's archive records "
                "(non-null fields, port/protocol/flowtype ranges, a positive row count).",
            ),
        ],
        can_subset=False,
    )
    def hourly_archive(context: dg.AssetExecutionContext, store: VlfStore):
        hours = _hours(context)
        keys = context.partition_keys
        batch = pack_batch(store.base, hours, store.site, plausibility=store.quarantine_implausible)
        store.written([p for r in batch.results for p in [*r.archive_files, r.quarantine_file] if p is not None])
        violations, checked_records, files = Counter(), 0, 0
        for key, result in zip(keys, batch.results):
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
                asset_key=HOURLY_FLOWS, partition_key=key,
            )
            violations.update(result.check.violations)
            checked_records += result.check.records
            files += result.check.files
        valid = not any(violations.values())
        validity = dg.AssetCheckResult(
            asset_key=HOURLY_FLOWS, check_name=VALIDITY_CHECK, passed=valid, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"records_checked": checked_records, "files_checked": files, "hours": len(hours),
                      **{k: v for k, v in violations.items()}},
        )
        outcome = validate_table(batch.flows)  # the records just written, all of them
        expectations = dg.AssetCheckResult(
            asset_key=HOURLY_FLOWS, check_name=EXPECTATIONS_CHECK, passed=outcome.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={**outcome.statistics, "failed_expectations": outcome.failed, "files": files},
        )
        flows_result = dg.MaterializeResult(asset_key=HOURLY_FLOWS,
                                            metadata={"archive_root": dg.MetadataValue.path(str(store.base / "archive"))})
        if not (valid and outcome.success):
            context.log.error("a blocking check of hourly_flows failed: the hourly bags and sets are not built")
            yield from (flows_result, validity, expectations)
            return
        # The checks' verdicts come last: until then automation sees them in progress, and a monthly
        # rollup waits for the hour's blocking checks (monthly_condition), so it never starts between
        # the archive and the bags of a run.
        yield flows_result
        yield from _derived(context, store, batch.flows, hours, keys)
        yield from (validity, expectations)

    def _derived(context, store: VlfStore, flows, hours: list, keys: list):
        """The hourly bags and the active-host sets of the records just archived."""

        def per_hour(asset: str, label: str, counts) -> None:
            for key, count in zip(keys, counts):
                context.add_asset_metadata({label: int(count), "dagster/row_count": int(count)},
                                           asset_key=asset, partition_key=key)

        rows = vlf.hourly_bags(flows, hours, [store.path(A.HOURLY_SOURCE_BAGS, h) for h in hours], ["sIP"],
                               vlf.SOURCE_COUNTERS, flowtypes=INBOUND_TYPES)
        per_hour(HOURLY_SOURCE_BAGS, "sources", rows)
        yield dg.MaterializeResult(asset_key=HOURLY_SOURCE_BAGS)
        rows = vlf.hourly_bags(flows, hours, [store.path(A.HOURLY_CONTACT_PAIRS, h) for h in hours], ["sIP", "dIP"],
                               ["records"], flowtypes=INBOUND_TYPES)
        per_hour(HOURLY_CONTACT_PAIRS, "pairs", rows)
        yield dg.MaterializeResult(asset_key=HOURLY_CONTACT_PAIRS)
        sets = vlf.hourly_active_hosts(flows, hours)
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda job: job[0].write(store.path(A.HOURLY_ACTIVE_HOSTS, job[1])), zip(sets, hours)))
        per_hour(HOURLY_ACTIVE_HOSTS, "active_hosts", [len(s) for s in sets])
        yield dg.MaterializeResult(asset_key=HOURLY_ACTIVE_HOSTS)

    landing = dg.AssetSpec(A.LANDING_FLOWS.name, partitions_def=parts.hourly, group_name=A.LANDING_FLOWS.group,
                           kinds=A.LANDING_FLOWS.kinds, description=A.LANDING_FLOWS.asset_description)
    return [landing, hourly_archive]
