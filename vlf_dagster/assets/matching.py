"""Stage 4: VLF flows matched with their answers, and the study's six categories."""

import dagster as dg

from ..analysis import matching, tables
from ..analysis.port_tables import category_counts
from ..resources import VlfStore
from .metadata import FLOW_COLUMNS, parquet_metadata
from .clock import asset


def build() -> list:
    @asset(group_name="matching", kinds={"parquet"}, deps=["vlf_flows", "vlf_outbound_flows", "vlf_fd_set"], metadata=FLOW_COLUMNS,
           description="rwmatch of every VLF flow (query) with the outbound flows that answer it (response): "
           "reversed addresses and ports, same protocol, within the site's match_delta_ms. nhIP carries the "
           "match id (top byte 0x00 query, 0xFF response; unmatched queries 0.0.0.0), so `vlf cut "
           "--fields=match,...` prints it in cutmatch layout. A refresh matches again only the sources whose "
           "queries or answers changed (rwmatch's groups never mix sources) and moves the others' ids: the "
           "result equals a full run's.")
    def matched_vlf_flows(store: VlfStore) -> dg.MaterializeResult:
        site = store.site
        outbound = [store.window("vlf_outbound_flows")]  # the outbound flows to VLF-fd sources, extracted once
        refresh = matching.match_vlf_flows(
            store.window("vlf_flows"), outbound, None,  # None: no second --dipset filter of those
            store.window("matched_vlf_flows"), time_delta_ms=site.vlf.match_delta_ms, state=store.state("matched_vlf_flows"),
        )
        return dg.MaterializeResult(metadata={
            "records": refresh.records, "sources": refresh.sources, "sources_rematched": refresh.rematched,
            "incremental": refresh.incremental, **parquet_metadata(store.window("matched_vlf_flows"))})

    @asset(group_name="matching", kinds={"parquet"}, deps=[matched_vlf_flows, "source_flow_bag"],
           description="One row per VLF flow with its match id, its category (unmatched TCP, unmatched UDP, "
           "matched TCP, matched UDP, ICMP, other) and its source's flow count over the window, in "
           "matched_vlf_flows' order (by source).")
    def vlf_categories(store: VlfStore) -> dg.MaterializeResult:
        out = store.window("vlf_categories")
        matching.write_categories(store.window("matched_vlf_flows"), store.window("source_flow_bag"), out)
        df = category_counts(out)
        counts = dict(zip(df["Category"], (int(v) for v in df["Flows"])))
        return dg.MaterializeResult(metadata={"categories": dg.MetadataValue.md(tables.to_markdown(df)), **counts,
                                              **parquet_metadata(store.window("vlf_categories"))})

    return [matched_vlf_flows, vlf_categories]
