"""Stage 4: VLF flows matched with their answers, and the study's six categories."""

import dagster as dg

from ... import artifacts as A
from ...analysis.steps import matching
from ...analysis.report import render as tables
from ...analysis.tables.categories import category_counts
from ..resources import VlfStore
from .metadata import FLOW_COLUMNS
from .clock import asset


def _asset(artifact: A.Artifact, *deps: A.Artifact, **kwargs) -> dict:
    return dict(name=artifact.name, group_name=artifact.group, kinds=artifact.kinds, deps=[d.name for d in deps],
                description=artifact.asset_description, **kwargs)


def build() -> list:
    @asset(**_asset(A.MATCHED_VLF_FLOWS, A.VLF_FLOWS, A.VLF_OUTBOUND_FLOWS, A.VLF_FD_SET, metadata=FLOW_COLUMNS))
    def matched_vlf_flows(store: VlfStore) -> dg.MaterializeResult:
        target = store.path(A.MATCHED_VLF_FLOWS)
        refresh = matching.match_vlf_flows(
            store.path(A.VLF_FLOWS), store.path(A.VLF_OUTBOUND_FLOWS), target,
            time_delta_ms=store.site.vlf.match_delta_ms, state=store.state_dir(A.MATCHED_VLF_FLOWS),
        )
        return dg.MaterializeResult(metadata={
            "records": refresh.records, "dagster/row_count": refresh.records,
            "sources_rematched": refresh.rematched if refresh.rematched is not None else "all",
            "incremental": refresh.incremental, "path": dg.MetadataValue.path(str(target))})

    @asset(**_asset(A.VLF_CATEGORIES, A.MATCHED_VLF_FLOWS, A.SOURCE_FLOW_BAG))
    def vlf_categories(store: VlfStore) -> dg.MaterializeResult:
        out = store.path(A.VLF_CATEGORIES)
        refresh = matching.write_categories(store.path(A.MATCHED_VLF_FLOWS), store.path(A.SOURCE_FLOW_BAG), out,
                                            state=store.state_dir(A.VLF_CATEGORIES))
        df = category_counts(out)
        counts = dict(zip(df["Category"], (int(v) for v in df["Flows"])))
        return dg.MaterializeResult(metadata={
            "categories": dg.MetadataValue.md(tables.to_markdown(df)), **counts, "dagster/row_count": refresh.rows,
            "sources_recategorized": refresh.recategorized if refresh.recategorized is not None else "all",
            "incremental": refresh.incremental, "path": dg.MetadataValue.path(str(out))})

    return [matched_vlf_flows, vlf_categories]
