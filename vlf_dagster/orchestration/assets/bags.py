"""Stage 2: the hourly bags' monthly rollups (the hourly ones come with the archive, archive.py),
the monthly traffic summaries and the window-level bags."""


import json

import dagster as dg

from ... import artifacts as A
from ...analysis.steps import consistency, contacts, traffic, vlf
from ...flows.flowtypes import INBOUND_TYPES
from ...flows.storage import hours_between, month_of, write_text
from ..resources import VlfStore
from .metadata import parquet_metadata
from ..partitions import StudyPartitions
from .automation import CHECK_CONDITION
from .clock import asset, multi_asset

CONSERVATION_CHECK = "window_bag_conserves_flows"


def _hours(context):
    window = context.partition_time_window
    return hours_between(window.start, window.end)


def _file_metadata(path, rows_label: str) -> dict:
    """The file's catalog metadata, its row count also under the asset's own name for it."""
    meta = parquet_metadata(path)
    return {rows_label: meta["dagster/row_count"], **meta}


def build(parts: StudyPartitions) -> list:
    def monthly(artifact: A.Artifact, upstream: A.Artifact) -> dict:
        return dict(name=artifact.name, partitions_def=parts.monthly, group_name=artifact.group, deps=[upstream.name],
                    kinds=artifact.kinds, description=artifact.asset_description)

    def _month_inputs(context, store, hourly: A.Artifact):
        window = context.partition_time_window
        return window.start, store.existing(hourly, window.start, window.end)

    @asset(**monthly(A.MONTHLY_SOURCE_BAGS, A.HOURLY_SOURCE_BAGS))
    def monthly_source_bags(context: dg.AssetExecutionContext, store: VlfStore) -> dg.MaterializeResult:
        month, inputs = _month_inputs(context, store, A.HOURLY_SOURCE_BAGS)
        out = vlf.rollup_source_bags(inputs, store.path(A.MONTHLY_SOURCE_BAGS, month))
        return dg.MaterializeResult(metadata={"hours_read": len(inputs), **_file_metadata(out, "sources")})

    @asset(**monthly(A.MONTHLY_CONTACT_PAIRS, A.HOURLY_CONTACT_PAIRS))
    def monthly_contact_pairs(context: dg.AssetExecutionContext, store: VlfStore) -> dg.MaterializeResult:
        month, inputs = _month_inputs(context, store, A.HOURLY_CONTACT_PAIRS)
        out = vlf.rollup_contact_pairs(inputs, store.path(A.MONTHLY_CONTACT_PAIRS, month))
        return dg.MaterializeResult(metadata={"hours_read": len(inputs), **_file_metadata(out, "pairs")})

    @asset(**monthly(A.MONTHLY_ACTIVE_HOSTS, A.HOURLY_ACTIVE_HOSTS))
    def monthly_active_hosts(context: dg.AssetExecutionContext, store: VlfStore) -> dg.MaterializeResult:
        month, inputs = _month_inputs(context, store, A.HOURLY_ACTIVE_HOSTS)
        active = vlf.union_sets(inputs)
        active.write(store.path(A.MONTHLY_ACTIVE_HOSTS, month))
        return dg.MaterializeResult(metadata={"hours_read": len(inputs), "active_hosts": len(active)})

    @multi_asset(
        specs=[
            dg.AssetSpec(a.name, deps=[A.HOURLY_FLOWS.name], group_name=a.group, kinds=a.kinds,
                         partitions_def=parts.monthly, description=a.asset_description)
            for a in (A.MONTHLY_TRAFFIC_VOLUMES, A.MONTHLY_PORT_USAGE)
        ],
        partitions_def=parts.monthly,
    )
    def monthly_traffic(context: dg.AssetExecutionContext, store: VlfStore):
        window = context.partition_time_window
        files = store.archive_files(hours_between(window.start, window.end))
        volumes = store.path(A.MONTHLY_TRAFFIC_VOLUMES, window.start)
        ports = store.path(A.MONTHLY_PORT_USAGE, window.start)
        traffic.monthly_traffic(files, volumes, ports)  # one pass over the month for both
        yield dg.MaterializeResult(asset_key=A.MONTHLY_TRAFFIC_VOLUMES.name,
                                   metadata={"archive_files_read": len(files), **_file_metadata(volumes, "hour_rows")})
        yield dg.MaterializeResult(asset_key=A.MONTHLY_PORT_USAGE.name,
                                   metadata={"archive_files_read": len(files), **_file_metadata(ports, "port_rows")})

    @asset(name=A.STUDY_MONTHS.name, group_name=A.STUDY_MONTHS.group, kinds=A.STUDY_MONTHS.kinds,
           deps=A.names(A.of_grain(A.MONTHLY)), description=A.STUDY_MONTHS.asset_description)
    def study_months(store: VlfStore) -> dg.MaterializeResult:
        months: dict[str, dict] = {}
        for artifact in A.of_grain(A.MONTHLY):
            name = artifact.name
            for path in store.existing(artifact):
                stat = path.stat()
                entry = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
                if artifact.format == "parquet":
                    entry["rows"] = parquet_metadata(path)["dagster/row_count"]
                months.setdefault(month_of(path), {})[name] = entry
        index = {month: months[month] for month in sorted(months)}
        path = write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", store.path(A.STUDY_MONTHS))
        rows = [f"| {m} | {e.get(A.MONTHLY_SOURCE_BAGS.name, {}).get('rows', 0):,} | "
                f"{e.get(A.LOW_FREQUENCY_FLOWS.name, {}).get('rows', 0):,} |" for m, e in index.items()]
        table = "| month | sources | low-frequency flows |\n|---|---:|---:|\n" + "\n".join(rows)
        return dg.MaterializeResult(metadata={"months": len(index), "path": dg.MetadataValue.path(str(path.resolve())),
                                              "index": dg.MetadataValue.md(table)})

    def window(artifact: A.Artifact, upstream) -> dict:
        return dict(name=artifact.name, group_name=artifact.group, kinds=artifact.kinds, deps=[upstream],
                    description=artifact.asset_description)

    @asset(**window(A.SOURCE_FLOW_BAG, monthly_source_bags))
    def source_flow_bag(store: VlfStore) -> dg.MaterializeResult:
        out = store.path(A.SOURCE_FLOW_BAG)
        vlf.refresh_counter_bag(store.existing(A.MONTHLY_SOURCE_BAGS), "records", out, store.state_dir(A.SOURCE_FLOW_BAG))
        return dg.MaterializeResult(metadata=_file_metadata(out, "sources"))

    @asset(**window(A.SOURCE_HOUR_COUNT_BAG, monthly_source_bags))
    def source_hour_count_bag(store: VlfStore) -> dg.MaterializeResult:
        out = store.path(A.SOURCE_HOUR_COUNT_BAG)
        vlf.refresh_counter_bag(store.existing(A.MONTHLY_SOURCE_BAGS), "hours", out, store.state_dir(A.SOURCE_HOUR_COUNT_BAG))
        return dg.MaterializeResult(metadata={"share_active_1_to_5_hours": vlf.share_active_1_to_5_hours(out),
                                              **_file_metadata(out, "sources")})

    @asset(**window(A.SOURCE_DESTINATION_COUNT_BAG, monthly_contact_pairs))
    def source_destination_count_bag(store: VlfStore) -> dg.MaterializeResult:
        out = store.path(A.SOURCE_DESTINATION_COUNT_BAG)
        refresh = contacts.refresh_contacts(store.existing(A.MONTHLY_CONTACT_PAIRS), out,
                                            store.state_dir(A.SOURCE_DESTINATION_COUNT_BAG), store.site.first_ipv4_network)
        sources, single = vlf.destination_counts(out)
        return dg.MaterializeResult(metadata={
            "sources": sources, "single_destination_sources": single, "incremental": refresh.incremental,
            "sources_counted_again": refresh.sources_changed if refresh.sources_changed is not None else "all",
            **parquet_metadata(out)})

    @dg.asset_check(asset=source_flow_bag, name=CONSERVATION_CHECK, blocking=True, automation_condition=CHECK_CONDITION,
                    description="The window's flows per source add up to the inbound records in the archive: "
                    "no month left out of the rollup, no hour counted twice.")
    def flows_conserved(store: VlfStore) -> dg.AssetCheckResult:
        site = store.site
        inbound = store.archive_files(hours_between(site.start, site.window_end()), list(INBOUND_TYPES))
        verdict = consistency.flows_conserved(inbound, store.path(A.SOURCE_FLOW_BAG),
                                              row_cache=store.state_dir(CONSERVATION_CHECK) / "row_counts.parquet")
        return dg.AssetCheckResult(passed=verdict.passed, metadata=verdict.metadata)

    return [
        monthly_source_bags, monthly_contact_pairs, monthly_active_hosts, monthly_traffic, study_months,
        source_flow_bag, source_hour_count_bag, source_destination_count_bag, flows_conserved,
    ]
