"""Stage 3: the VLF sets of the window and the flows of the VLF sources."""


import dagster as dg

from ... import artifacts as A
from ...analysis.steps import consistency, vlf
from ...analysis.steps.extraction import extract_by_set
from ...flows.tools.filter.run import write_filtered
from ...flows.tools.filter.spec import FilterSpec
from ...flows.flowtypes import INBOUND_TYPES, OUTBOUND_TYPES
from ...flows.segments import SOURCE_IS_DIP, SOURCE_IS_SIP, Segmented, SourceKey
from ...flows.sets import IPSet
from ...flows.storage import hours_between
from ..resources import VlfStore
from .metadata import FLOW_COLUMNS
from .automation import CHECK_CONDITION
from .clock import asset, multi_asset
from ..partitions import StudyPartitions


def _set_result(ipset: IPSet, path, **extra) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"ipv4": len(ipset.v4), "ipv6": len(ipset.v6), "path": dg.MetadataValue.path(str(path)), **extra}
    )


def _read(store: VlfStore, artifact: A.Artifact) -> IPSet:
    return IPSet.read(store.path(artifact))


def _of_vlf_sources(store: VlfStore, extracts: A.Artifact, key: SourceKey, artifact: A.Artifact) -> dg.MaterializeResult:
    """The rows of the monthly ``extracts`` whose source (``key``) is in VLF-fd, refreshed by source."""
    target = Segmented(store.path(artifact), key)
    refresh = extract_by_set(store.existing(extracts), _read(store, A.VLF_FD_SET), target, store.state_dir(artifact))
    return dg.MaterializeResult(metadata={
        "flows": refresh.rows, "dagster/row_count": refresh.rows, "sources_changed": refresh.sources_changed,
        "monthly_files_digested": refresh.months_read, "incremental": refresh.incremental,
        "generation": target.generation, "path": dg.MetadataValue.path(str(target.directory))})


def _window(artifact: A.Artifact, *deps, **kwargs) -> dict:
    return dict(name=artifact.name, group_name=artifact.group, kinds=artifact.kinds, deps=[str(d) for d in deps],
                description=artifact.asset_description, **kwargs)


def build(parts: StudyPartitions) -> list:
    @asset(**_window(A.VLF_F_SET, A.SOURCE_FLOW_BAG))
    def vlf_f_set(store: VlfStore) -> dg.MaterializeResult:
        ipset = vlf.vlf_f_set(store.path(A.SOURCE_FLOW_BAG), store.site.vlf)
        return _set_result(ipset, ipset.write(store.path(A.VLF_F_SET)), max_flows=store.site.vlf.max_flows)

    @asset(**_window(A.VLF_D_SET, A.SOURCE_DESTINATION_COUNT_BAG))
    def vlf_d_set(store: VlfStore) -> dg.MaterializeResult:
        ipset = vlf.vlf_d_set(store.path(A.SOURCE_DESTINATION_COUNT_BAG), store.site.vlf)
        return _set_result(ipset, ipset.write(store.path(A.VLF_D_SET)), max_destinations=store.site.vlf.max_destinations)

    @asset(**_window(A.VLF_FD_SET, A.VLF_F_SET, A.VLF_D_SET))
    def vlf_fd_set(store: VlfStore) -> dg.MaterializeResult:
        ipset = vlf.vlf_fd_set(_read(store, A.VLF_F_SET), _read(store, A.VLF_D_SET))
        return _set_result(ipset, ipset.write(store.path(A.VLF_FD_SET)))

    @asset(**_window(A.ACTIVE_INSIDE_SET, A.MONTHLY_ACTIVE_HOSTS))
    def active_inside_set(store: VlfStore) -> dg.MaterializeResult:
        ipset = vlf.union_sets(store.existing(A.MONTHLY_ACTIVE_HOSTS))
        return _set_result(ipset, ipset.write(store.path(A.ACTIVE_INSIDE_SET)))

    @multi_asset(
        name="monthly_low_frequency",
        partitions_def=parts.monthly,
        specs=[
            dg.AssetSpec(a.name, group_name=a.group, kinds=a.kinds, metadata=FLOW_COLUMNS,
                         deps=[A.HOURLY_FLOWS.name, A.MONTHLY_SOURCE_BAGS.name], description=a.asset_description)
            for a in (A.LOW_FREQUENCY_FLOWS, A.LOW_FREQUENCY_ANSWERS)
        ],
    )
    def monthly_low_frequency(context: dg.AssetExecutionContext, store: VlfStore):
        window = context.partition_time_window
        hours = hours_between(window.start, window.end)
        heavy = vlf.heavy_sources(store.path(A.MONTHLY_SOURCE_BAGS, window.start), store.site.vlf)
        inbound = store.archive_files(hours, list(INBOUND_TYPES))
        flows = write_filtered(inbound, FilterSpec(not_sipset=heavy), store.path(A.LOW_FREQUENCY_FLOWS, window.start))
        outbound = store.archive_files(hours, list(OUTBOUND_TYPES))
        answers = write_filtered(outbound, FilterSpec(not_dipset=heavy), store.path(A.LOW_FREQUENCY_ANSWERS, window.start))
        yield dg.MaterializeResult(asset_key=A.LOW_FREQUENCY_FLOWS.name, metadata={
            "flows": flows, "dagster/row_count": flows, "heavy_sources": len(heavy), "archive_files_read": len(inbound)})
        yield dg.MaterializeResult(asset_key=A.LOW_FREQUENCY_ANSWERS.name, metadata={
            "flows": answers, "dagster/row_count": answers, "archive_files_read": len(outbound)})

    @asset(**_window(A.VLF_FLOWS, A.VLF_FD_SET, A.LOW_FREQUENCY_FLOWS, metadata=FLOW_COLUMNS))
    def vlf_flows(store: VlfStore) -> dg.MaterializeResult:
        return _of_vlf_sources(store, A.LOW_FREQUENCY_FLOWS, SOURCE_IS_SIP, A.VLF_FLOWS)  # rwfilter --sipset

    @asset(**_window(A.VLF_OUTBOUND_FLOWS, A.VLF_FD_SET, A.LOW_FREQUENCY_ANSWERS, metadata=FLOW_COLUMNS))
    def vlf_outbound_flows(store: VlfStore) -> dg.MaterializeResult:
        return _of_vlf_sources(store, A.LOW_FREQUENCY_ANSWERS, SOURCE_IS_DIP, A.VLF_OUTBOUND_FLOWS)  # rwfilter --dipset

    @dg.asset_check(asset=vlf_fd_set, name="vlf_fd_is_f_and_d", blocking=True, automation_condition=CHECK_CONDITION,
                    description="VLF-fd holds exactly the sources in both VLF-f and VLF-d.")
    def vlf_fd_is_f_and_d(store: VlfStore) -> dg.AssetCheckResult:
        verdict = consistency.intersection_holds(_read(store, A.VLF_F_SET), _read(store, A.VLF_D_SET),
                                                 _read(store, A.VLF_FD_SET))
        return dg.AssetCheckResult(passed=verdict.passed, metadata=verdict.metadata)

    @dg.asset_check(asset=vlf_flows, name="vlf_flows_match_the_bag", blocking=True, automation_condition=CHECK_CONDITION,
                    description="The extracted VLF flows are the flows source_flow_bag counts for the VLF-fd "
                    "sources, and no other source's.")
    def vlf_flows_match_the_bag(store: VlfStore) -> dg.AssetCheckResult:
        verdict = consistency.vlf_flows_match_bag(store.path(A.VLF_FLOWS), store.path(A.SOURCE_FLOW_BAG),
                                                  _read(store, A.VLF_FD_SET))
        return dg.AssetCheckResult(passed=verdict.passed, metadata=verdict.metadata)

    return [vlf_f_set, vlf_d_set, vlf_fd_set, active_inside_set, monthly_low_frequency, vlf_flows, vlf_outbound_flows,
            vlf_fd_is_f_and_d, vlf_flows_match_the_bag]
