"""Scan detection: each month's scanners (rwscan's hybrid model) and the window's."""

import dagster as dg

from ... import artifacts as A
from ...analysis.steps.scanners import month_scanners, window_scanners
from ...flows.flowtypes import INBOUND_TYPES
from ...flows.sets import IPSet
from ...flows.storage import hours_between
from ..partitions import StudyPartitions
from ..resources import VlfStore
from .clock import asset


def build(parts: StudyPartitions) -> list:
    monthly = A.MONTHLY_SCANNERS

    @asset(name=monthly.name, group_name=monthly.group, kinds=monthly.kinds, partitions_def=parts.monthly,
           deps=[A.HOURLY_FLOWS.name, A.MONTHLY_ACTIVE_HOSTS.name], description=monthly.asset_description)
    def monthly_scanners(context: dg.AssetExecutionContext, store: VlfStore) -> dg.MaterializeResult:
        window = context.partition_time_window
        inbound = store.archive_files(hours_between(window.start, window.end), list(INBOUND_TYPES))
        internal = IPSet.read(store.path(A.MONTHLY_ACTIVE_HOSTS, window.start))  # the hosts that exist
        out = store.path(monthly, window.start)
        found = month_scanners(inbound, internal, out)
        models = found.column("scan_model").to_pylist()
        return dg.MaterializeResult(metadata={
            "scanners": found.num_rows, "dagster/row_count": found.num_rows, "by_trw": models.count(1),
            "by_blr": models.count(2), "inside_hosts": len(internal.v4), "archive_files_read": len(inbound),
            "path": dg.MetadataValue.path(str(out))})

    window = A.SCANNERS

    @asset(name=window.name, group_name=window.group, kinds=window.kinds, deps=[monthly.name],
           description=window.asset_description)
    def scanners(store: VlfStore) -> dg.MaterializeResult:
        out = store.path(window)
        table = window_scanners(store.existing(monthly), out)
        return dg.MaterializeResult(metadata={
            "rows": table.num_rows, "dagster/row_count": table.num_rows,
            "scanners": len(set(table.column("sIP").to_pylist())), "path": dg.MetadataValue.path(str(out))})

    return [monthly_scanners, scanners]
