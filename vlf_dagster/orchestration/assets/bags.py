"""Stage 2: the hourly bags' monthly rollups (the hourly ones come with the archive, archive.py),
the monthly traffic summaries and the window-level bags."""


import json

import dagster as dg

from ...analysis.steps import consistency, contacts, traffic, vlf
from ...flows.flowtypes import INBOUND_TYPES
from ...flows.sql import glob_escaped
from ...flows.storage import hours_between, write_text
from ..resources import VlfStore
from .metadata import parquet_metadata
from ..partitions import StudyPartitions
from .automation import CHECK_CONDITION, STUDY_MONTHS
from .clock import asset, multi_asset
from .vlf import LOW_FREQUENCY_ANSWERS, LOW_FREQUENCY_FLOWS
from ...flows import duck

CONSERVATION_CHECK = "window_bag_conserves_flows"

# Every monthly asset, with the extension of its files.
MONTHLY_FILES = {"monthly_source_bags": "parquet", "monthly_contact_pairs": "parquet", "monthly_active_hosts": "set",
                 "monthly_traffic_volumes": "parquet", "monthly_port_usage": "parquet",
                 LOW_FREQUENCY_FLOWS: "parquet", LOW_FREQUENCY_ANSWERS: "parquet"}
MONTHLY_ASSETS = list(MONTHLY_FILES)


def _hours(context):
    window = context.partition_time_window
    return hours_between(window.start, window.end)


def _file_metadata(path, rows_label: str) -> dict:
    """The file's catalog metadata, its row count also under the asset's own name for it."""
    meta = parquet_metadata(path)
    return {rows_label: meta["dagster/row_count"], **meta}


def build(parts: StudyPartitions) -> list:
    monthly = dict(partitions_def=parts.monthly, group_name="bags")

    def _month_inputs(context, store, asset, ext="parquet"):
        window = context.partition_time_window
        return window.start, store.existing_hourly(asset, window.start, window.end, ext)

    @asset(**monthly, deps=["hourly_source_bags"], kinds={"parquet"},
           description="The month's hourly source bags added up; `hours` counts the hours each source was active.")
    def monthly_source_bags(context: dg.AssetExecutionContext, store: VlfStore) -> dg.MaterializeResult:
        month, inputs = _month_inputs(context, store, "hourly_source_bags")
        out = vlf.rollup_source_bags(inputs, store.monthly("monthly_source_bags", month))
        return dg.MaterializeResult(metadata={"hours_read": len(inputs), **_file_metadata(out, "sources")})

    @asset(**monthly, deps=["hourly_contact_pairs"], kinds={"parquet"},
           description="The month's distinct (sIP, dIP) pairs with their flow counts.")
    def monthly_contact_pairs(context: dg.AssetExecutionContext, store: VlfStore) -> dg.MaterializeResult:
        month, inputs = _month_inputs(context, store, "hourly_contact_pairs")
        out = vlf.rollup_contact_pairs(inputs, store.monthly("monthly_contact_pairs", month))
        return dg.MaterializeResult(metadata={"hours_read": len(inputs), **_file_metadata(out, "pairs")})

    @asset(**monthly, deps=["hourly_active_hosts"], kinds={"roaring"},
           description="Inside addresses active at some hour of the month.")
    def monthly_active_hosts(context: dg.AssetExecutionContext, store: VlfStore) -> dg.MaterializeResult:
        month, inputs = _month_inputs(context, store, "hourly_active_hosts", "set")
        active = vlf.union_sets(inputs)
        active.write(store.monthly("monthly_active_hosts", month, "set"))
        return dg.MaterializeResult(metadata={"hours_read": len(inputs), "active_hosts": len(active)})

    @multi_asset(
        specs=[
            dg.AssetSpec("monthly_traffic_volumes", deps=["hourly_flows"], group_name="bags", kinds={"parquet"},
                         partitions_def=parts.monthly,
                         description="Flows, packets and bytes per hour and flowtype of the month's archive: what "
                         "the Overall Traffic Volumes figure plots, without rescanning the archive."),
            dg.AssetSpec("monthly_port_usage", deps=["hourly_flows"], group_name="bags", kinds={"parquet"},
                         partitions_def=parts.monthly,
                         description="Flows per flowtype, protocol, side (s: source port, d: destination port) and "
                         "port of the month's archive: what the Overall Port Usage table ranks."),
        ],
        partitions_def=parts.monthly,
    )
    def monthly_traffic(context: dg.AssetExecutionContext, store: VlfStore):
        window = context.partition_time_window
        files = store.archive_files(hours_between(window.start, window.end))
        volumes = store.monthly("monthly_traffic_volumes", window.start)
        ports = store.monthly("monthly_port_usage", window.start)
        traffic.monthly_traffic(files, volumes, ports)  # one pass over the month for both
        yield dg.MaterializeResult(asset_key="monthly_traffic_volumes",
                                   metadata={"archive_files_read": len(files), **_file_metadata(volumes, "hour_rows")})
        yield dg.MaterializeResult(asset_key="monthly_port_usage",
                                   metadata={"archive_files_read": len(files), **_file_metadata(ports, "port_rows")})

    @asset(group_name="bags", kinds={"json"}, deps=MONTHLY_ASSETS,
           description="The months rolled up so far, each monthly file with its size, rows and modification "
           "time: the one unpartitioned input of the window assets besides the months themselves. It follows "
           "every monthly materialization at once, so a month rolled up again shows the window assets as "
           "stale in the UI until their next refresh (Dagster tracks no staleness from a monthly asset to an "
           "unpartitioned one).")
    def study_months(store: VlfStore) -> dg.MaterializeResult:
        months: dict[str, dict] = {}
        for name, ext in MONTHLY_FILES.items():
            for path in store.existing_monthly(name, ext):
                stat = path.stat()
                entry = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
                if ext == "parquet":
                    entry["rows"] = parquet_metadata(path)["dagster/row_count"]
                months.setdefault(path.stem.removeprefix("month="), {})[name] = entry
        index = {month: months[month] for month in sorted(months)}
        path = write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", store.window(STUDY_MONTHS, "json"))
        rows = [f"| {m} | {e.get('monthly_source_bags', {}).get('rows', 0):,} | "
                f"{e.get(LOW_FREQUENCY_FLOWS, {}).get('rows', 0):,} |" for m, e in index.items()]
        table = "| month | sources | low-frequency flows |\n|---|---:|---:|\n" + "\n".join(rows)
        return dg.MaterializeResult(metadata={"months": len(index), "path": dg.MetadataValue.path(str(path.resolve())),
                                              "index": dg.MetadataValue.md(table)})

    window = dict(group_name="bags", kinds={"parquet"})

    @asset(**window, deps=[monthly_source_bags],
           description="Flows per outside source over the whole window (bag sIP -> records).")
    def source_flow_bag(store: VlfStore) -> dg.MaterializeResult:
        out = store.window("source_flow_bag")
        vlf.refresh_counter_bag(store.existing_monthly("monthly_source_bags"), "records", out, store.state_dir("source_flow_bag"))
        return dg.MaterializeResult(metadata=_file_metadata(out, "sources"))

    @asset(**window, deps=[monthly_source_bags],
           description="Hours in which each outside source was active over the window (the count-1 bags added up).")
    def source_hour_count_bag(store: VlfStore) -> dg.MaterializeResult:
        out = store.window("source_hour_count_bag")
        vlf.refresh_counter_bag(store.existing_monthly("monthly_source_bags"), "hours", out, store.state_dir("source_hour_count_bag"))
        in_1_to_5 = duck.connect().execute(
            "SELECT avg((hours BETWEEN 1 AND 5)::INT) FROM read_parquet(?)", [glob_escaped(out)]
        ).fetchone()[0]
        return dg.MaterializeResult(metadata={"share_active_1_to_5_hours": float(in_1_to_5 or 0),
                                              **_file_metadata(out, "sources")})

    @asset(**window, deps=[monthly_contact_pairs],
           description="Distinct inside destinations per outside source over the window. A refresh counts again "
           "only the sources whose pairs changed in a changed month, and keeps the contact-surface raster with it "
           "(.state/source_destination_count_bag).")
    def source_destination_count_bag(store: VlfStore) -> dg.MaterializeResult:
        out = store.window("source_destination_count_bag")
        refresh = contacts.refresh_contacts(store.existing_monthly("monthly_contact_pairs"), out,
                                            store.state_dir("source_destination_count_bag"), store.site.first_ipv4_network)
        single = duck.connect().execute(
            "SELECT count(*) FILTER (WHERE destinations = 1), count(*) FROM read_parquet(?)", [glob_escaped(out)]
        ).fetchone()
        return dg.MaterializeResult(metadata={
            "sources": single[1], "single_destination_sources": single[0], "incremental": refresh.incremental,
            "sources_counted_again": refresh.sources_changed if refresh.sources_changed is not None else "all",
            **parquet_metadata(out)})

    @dg.asset_check(asset=source_flow_bag, name=CONSERVATION_CHECK, blocking=True, automation_condition=CHECK_CONDITION,
                    description="The window's flows per source add up to the inbound records in the archive: "
                    "no month left out of the rollup, no hour counted twice.")
    def flows_conserved(store: VlfStore) -> dg.AssetCheckResult:
        site = store.site
        inbound = store.archive_files(hours_between(site.start, site.window_end()), list(INBOUND_TYPES))
        verdict = consistency.flows_conserved(inbound, store.window("source_flow_bag"),
                                              row_cache=store.state_dir(CONSERVATION_CHECK) / "row_counts.parquet")
        return dg.AssetCheckResult(passed=verdict.passed, metadata=verdict.metadata)

    return [
        monthly_source_bags, monthly_contact_pairs, monthly_active_hosts, monthly_traffic, study_months,
        source_flow_bag, source_hour_count_bag, source_destination_count_bag, flows_conserved,
    ]
