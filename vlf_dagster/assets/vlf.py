"""Stage 3: the VLF sets of the window and the flows of the VLF sources."""


import dagster as dg

from ..analysis import consistency, vlf
from ..flows.bags import coverset
from ..flows.filter import FilterSpec, write_filtered
from ..flows.flowtypes import INBOUND_TYPES, OUTBOUND_TYPES
from ..flows.sets import IPSet
from ..flows.storage import hours_between
from ..resources import VlfStore
from .metadata import FLOW_COLUMNS, parquet_metadata
from .clock import asset


def _set_result(ipset: IPSet, path, **extra) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"ipv4": len(ipset.v4), "ipv6": len(ipset.v6), "path": dg.MetadataValue.path(str(path)), **extra}
    )


def build() -> list:
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

    @asset(group_name="vlf", kinds={"parquet", "duckdb"}, deps=[vlf_fd_set, "hourly_flows"], metadata=FLOW_COLUMNS,
           description="Every inbound flow of the VLF-fd sources, extracted from the archive by set "
           "membership (rwfilter --sipset=VLF-fd.set).")
    def vlf_flows(store: VlfStore) -> dg.MaterializeResult:
        site = store.site
        files = store.archive_files(hours_between(site.start, site.window_end()), list(INBOUND_TYPES))
        sources = IPSet.read(store.window("vlf_fd_set", "set"))
        out = store.window("vlf_flows")
        count = write_filtered(files, FilterSpec(sipset=sources), out)  # rwfilter --sipset
        return dg.MaterializeResult(metadata={"flows": count, "archive_files_read": len(files), **parquet_metadata(out)})

    @asset(group_name="vlf", kinds={"parquet", "duckdb"}, deps=[vlf_fd_set, "hourly_flows"], metadata=FLOW_COLUMNS,
           description="Every outbound flow to a VLF-fd source, extracted from the archive by set membership "
           "(rwfilter --type=out,outweb,outicmp --dipset=VLF-fd.set): the only answers matching and the "
           "near-match search need, read once instead of rescanning the archive for each.")
    def vlf_outbound_flows(store: VlfStore) -> dg.MaterializeResult:
        site = store.site
        files = store.archive_files(hours_between(site.start, site.window_end()), list(OUTBOUND_TYPES))
        sources = IPSet.read(store.window("vlf_fd_set", "set"))
        out = store.window("vlf_outbound_flows")
        count = write_filtered(files, FilterSpec(dipset=sources), out)  # rwfilter --dipset
        return dg.MaterializeResult(metadata={"flows": count, "archive_files_read": len(files), **parquet_metadata(out)})

    @dg.asset_check(asset=vlf_fd_set, name="vlf_fd_is_f_and_d", blocking=True,
                    description="VLF-fd holds exactly the sources in both VLF-f and VLF-d.")
    def vlf_fd_is_f_and_d(store: VlfStore) -> dg.AssetCheckResult:
        read = lambda name: IPSet.read(store.window(name, "set"))  # noqa: E731
        verdict = consistency.intersection_holds(read("vlf_f_set"), read("vlf_d_set"), read("vlf_fd_set"))
        return dg.AssetCheckResult(passed=verdict.passed, metadata=verdict.metadata)

    @dg.asset_check(asset=vlf_flows, name="vlf_flows_match_the_bag", blocking=True,
                    description="The extracted VLF flows are the flows source_flow_bag counts for the VLF-fd "
                    "sources, and no other source's.")
    def vlf_flows_match_the_bag(store: VlfStore) -> dg.AssetCheckResult:
        verdict = consistency.vlf_flows_match_bag(store.window("vlf_flows"), store.window("source_flow_bag"),
                                                  IPSet.read(store.window("vlf_fd_set", "set")))
        return dg.AssetCheckResult(passed=verdict.passed, metadata=verdict.metadata)

    return [vlf_f_set, vlf_d_set, vlf_fd_set, active_inside_set, vlf_flows, vlf_outbound_flows, vlf_fd_is_f_and_d, vlf_flows_match_the_bag]
