"""Stage 3: the VLF sets of the window and the flows of the VLF sources."""


import dagster as dg

from ...analysis.steps import consistency, vlf
from ...analysis.steps.extraction import extract_by_set
from ...flows.bags import coverset
from ...flows.tools.filter import FilterSpec, write_filtered
from ...flows.flowtypes import INBOUND_TYPES, OUTBOUND_TYPES
from ...flows.segments import SOURCE_IS_DIP, SOURCE_IS_SIP, Segmented, SourceKey
from ...flows.sets import IPSet
from ...flows.storage import hours_between
from ..resources import VlfStore
from .metadata import FLOW_COLUMNS
from .automation import CHECK_CONDITION
from .clock import asset, multi_asset
from ..partitions import StudyPartitions

LOW_FREQUENCY_FLOWS = "monthly_low_frequency_flows"
LOW_FREQUENCY_ANSWERS = "monthly_low_frequency_answers"


def _set_result(ipset: IPSet, path, **extra) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"ipv4": len(ipset.v4), "ipv6": len(ipset.v6), "path": dg.MetadataValue.path(str(path)), **extra}
    )


def _of_vlf_sources(store: VlfStore, extracts: str, key: SourceKey, name: str) -> dg.MaterializeResult:
    """The rows of the monthly ``extracts`` whose source (``key``) is in VLF-fd, refreshed by source."""
    files = store.existing_monthly(extracts)
    sources = IPSet.read(store.window("vlf_fd_set", "set"))
    target = Segmented(store.segmented(name), key)
    refresh = extract_by_set(files, sources, target, store.state_dir(name))
    return dg.MaterializeResult(metadata={
        "flows": refresh.rows, "dagster/row_count": refresh.rows, "sources_changed": refresh.sources_changed,
        "monthly_files_digested": refresh.months_read, "incremental": refresh.incremental,
        "generation": target.generation, "path": dg.MetadataValue.path(str(target.directory))})


def build(parts: StudyPartitions) -> list:
    common = dict(group_name="vlf", kinds={"roaring"})

    @asset(**common, deps=["source_flow_bag"],
           description="VLF-f: outside sources with 1..max_flows flows over the window "
           "(rwbagtool --maxcounter=10 --coverset).")
    def vlf_f_set(store: VlfStore) -> dg.MaterializeResult:
        t = store.site.vlf
        ipset = coverset(store.window("source_flow_bag"), min_counter=1, max_counter=t.max_flows)
        path = ipset.write(store.window("vlf_f_set", "set"))
        return _set_result(ipset, path, max_flows=t.max_flows)

    @asset(**common, deps=["source_destination_count_bag"],
           description="VLF-d: outside sources that contacted 1..max_destinations inside addresses.")
    def vlf_d_set(store: VlfStore) -> dg.MaterializeResult:
        t = store.site.vlf
        ipset = coverset(store.window("source_destination_count_bag"), min_counter=1, max_counter=t.max_destinations)
        path = ipset.write(store.window("vlf_d_set", "set"))
        return _set_result(ipset, path, max_destinations=t.max_destinations)

    @asset(**common, deps=[vlf_f_set, vlf_d_set],
           description="VLF-fd = VLF-f ∩ VLF-d (rwsettool --intersect).")
    def vlf_fd_set(store: VlfStore) -> dg.MaterializeResult:
        ipset = IPSet.read(store.window("vlf_f_set", "set")) & IPSet.read(store.window("vlf_d_set", "set"))
        return _set_result(ipset, ipset.write(store.window("vlf_fd_set", "set")))

    @asset(**common, deps=["monthly_active_hosts"],
           description="Inside addresses that ever answered or originated traffic in the window.")
    def active_inside_set(store: VlfStore) -> dg.MaterializeResult:
        ipset = vlf.union_sets(store.existing_monthly("monthly_active_hosts", "set"))
        return _set_result(ipset, ipset.write(store.window("active_inside_set", "set")))

    @multi_asset(
        name="monthly_low_frequency",
        partitions_def=parts.monthly,
        specs=[
            dg.AssetSpec(LOW_FREQUENCY_FLOWS, group_name="vlf", kinds={"parquet"}, metadata=FLOW_COLUMNS,
                         deps=["hourly_flows", "monthly_source_bags"],
                         description="The month's inbound flows of every source with at most max_flows inbound flows "
                         "that month: a VLF source has at most max_flows over the window, so at most that many in "
                         "each month, and all its flows are here. vlf_flows reads these instead of the archive."),
            dg.AssetSpec(LOW_FREQUENCY_ANSWERS, group_name="vlf", kinds={"parquet"}, metadata=FLOW_COLUMNS,
                         deps=["hourly_flows", "monthly_source_bags"],
                         description="The month's outbound flows to any address that is not a heavy source of the "
                         "month (more than max_flows inbound flows): every possible answer to a VLF source."),
        ],
    )
    def monthly_low_frequency(context: dg.AssetExecutionContext, store: VlfStore):
        window = context.partition_time_window
        hours = hours_between(window.start, window.end)
        # heavy this month: more than max_flows inbound flows, from the month's source bag
        heavy = coverset(store.monthly("monthly_source_bags", window.start), counter="records",
                         min_counter=store.site.vlf.max_flows + 1)
        inbound = store.archive_files(hours, list(INBOUND_TYPES))
        flows = write_filtered(inbound, FilterSpec(not_sipset=heavy), store.monthly(LOW_FREQUENCY_FLOWS, window.start))
        outbound = store.archive_files(hours, list(OUTBOUND_TYPES))
        answers = write_filtered(outbound, FilterSpec(not_dipset=heavy), store.monthly(LOW_FREQUENCY_ANSWERS, window.start))
        yield dg.MaterializeResult(asset_key=LOW_FREQUENCY_FLOWS, metadata={
            "flows": flows, "dagster/row_count": flows, "heavy_sources": len(heavy), "archive_files_read": len(inbound)})
        yield dg.MaterializeResult(asset_key=LOW_FREQUENCY_ANSWERS, metadata={
            "flows": answers, "dagster/row_count": answers, "archive_files_read": len(outbound)})

    @asset(group_name="vlf", kinds={"parquet", "duckdb"}, deps=[vlf_fd_set, LOW_FREQUENCY_FLOWS], metadata=FLOW_COLUMNS,
           description="Every inbound flow of the VLF-fd sources, extracted by set membership (rwfilter "
           "--sipset=VLF-fd.set) from the months' low-frequency flows, which hold all of them: the window "
           "never rescans the archive. Kept segmented (data/vlf_flows/: base, removed rows, delta): a refresh "
           "extracts again only the sources that entered or left VLF-fd or whose flows changed in a changed month.")
    def vlf_flows(store: VlfStore) -> dg.MaterializeResult:
        return _of_vlf_sources(store, LOW_FREQUENCY_FLOWS, SOURCE_IS_SIP, "vlf_flows")  # rwfilter --sipset

    @asset(group_name="vlf", kinds={"parquet", "duckdb"}, deps=[vlf_fd_set, LOW_FREQUENCY_ANSWERS], metadata=FLOW_COLUMNS,
           description="Every outbound flow to a VLF-fd source (rwfilter --type=out,outweb,outicmp "
           "--dipset=VLF-fd.set), from the months' possible answers: what matching and the near-match "
           "search read. Segmented and refreshed by source like vlf_flows.")
    def vlf_outbound_flows(store: VlfStore) -> dg.MaterializeResult:
        return _of_vlf_sources(store, LOW_FREQUENCY_ANSWERS, SOURCE_IS_DIP, "vlf_outbound_flows")  # rwfilter --dipset

    @dg.asset_check(asset=vlf_fd_set, name="vlf_fd_is_f_and_d", blocking=True, automation_condition=CHECK_CONDITION,
                    description="VLF-fd holds exactly the sources in both VLF-f and VLF-d.")
    def vlf_fd_is_f_and_d(store: VlfStore) -> dg.AssetCheckResult:
        read = lambda name: IPSet.read(store.window(name, "set"))  # noqa: E731
        verdict = consistency.intersection_holds(read("vlf_f_set"), read("vlf_d_set"), read("vlf_fd_set"))
        return dg.AssetCheckResult(passed=verdict.passed, metadata=verdict.metadata)

    @dg.asset_check(asset=vlf_flows, name="vlf_flows_match_the_bag", blocking=True, automation_condition=CHECK_CONDITION,
                    description="The extracted VLF flows are the flows source_flow_bag counts for the VLF-fd "
                    "sources, and no other source's.")
    def vlf_flows_match_the_bag(store: VlfStore) -> dg.AssetCheckResult:
        verdict = consistency.vlf_flows_match_bag(store.segmented("vlf_flows"), store.window("source_flow_bag"),
                                                  IPSet.read(store.window("vlf_fd_set", "set")))
        return dg.AssetCheckResult(passed=verdict.passed, metadata=verdict.metadata)

    return [vlf_f_set, vlf_d_set, vlf_fd_set, active_inside_set, monthly_low_frequency, vlf_flows, vlf_outbound_flows, vlf_fd_is_f_and_d, vlf_flows_match_the_bag]
