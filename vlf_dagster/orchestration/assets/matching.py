"""Stage 4: VLF flows matched with their answers, and the study's six categories."""

import dagster as dg

from ...analysis.steps import matching
from ...analysis.report import render as tables
from ...analysis.tables.port_tables import category_counts
from ..resources import VlfStore
from .metadata import FLOW_COLUMNS
from .clock import asset


def build() -> list:
    @asset(group_name="matching", kinds={"parquet"}, deps=["vlf_flows", "vlf_outbound_flows", "vlf_fd_set"], metadata=FLOW_COLUMNS,
           description="rwmatch of every VLF flow (query) with the outbound flows that answer it (response): "
           "reversed addresses and ports, same protocol, within the site's match_delta_ms. nhIP carries the "
           "match id (top byte 0x00 query, 0xFF response; unmatched queries 0.0.0.0), so `vlf cut "
           "--fields=match,...` prints it in cutmatch layout. Segmented: a refresh matches again only the sources "
           "whose queries or answers changed (rwmatch's groups never mix sources), numbering their groups above "
           "every id given so far; the groups equal a full run's.")
    def matched_vlf_flows(store: VlfStore) -> dg.MaterializeResult:
        target = store.segmented("matched_vlf_flows")
        refresh = matching.match_vlf_flows(
            store.segmented("vlf_flows"), store.segmented("vlf_outbound_flows"), target,
            time_delta_ms=store.site.vlf.match_delta_ms, state=store.state_dir("matched_vlf_flows"),
        )
        return dg.MaterializeResult(metadata={
            "records": refresh.records, "dagster/row_count": refresh.records,
            "sources_rematched": refresh.rematched if refresh.rematched is not None else "all",
            "incremental": refresh.incremental, "path": dg.MetadataValue.path(str(target))})

    @asset(group_name="matching", kinds={"parquet"}, deps=[matched_vlf_flows, "source_flow_bag"],
           description="One row per VLF flow with its match id, its category (unmatched TCP, unmatched UDP, "
           "matched TCP, matched UDP, ICMP, other) and its source's flow count over the window. Segmented: "
           "a refresh categorizes again only the sources whose matched records changed.")
    def vlf_categories(store: VlfStore) -> dg.MaterializeResult:
        out = store.segmented("vlf_categories")
        refresh = matching.write_categories(store.segmented("matched_vlf_flows"), store.window("source_flow_bag"), out,
                                            state=store.state_dir("vlf_categories"))
        df = category_counts(out)
        counts = dict(zip(df["Category"], (int(v) for v in df["Flows"])))
        return dg.MaterializeResult(metadata={
            "categories": dg.MetadataValue.md(tables.to_markdown(df)), **counts, "dagster/row_count": refresh.rows,
            "sources_recategorized": refresh.recategorized if refresh.recategorized is not None else "all",
            "incremental": refresh.incremental, "path": dg.MetadataValue.path(str(out))})

    return [matched_vlf_flows, vlf_categories]
