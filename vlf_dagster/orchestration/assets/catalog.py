"""Stage 6: the SQL catalog, DuckDB views over everything the study wrote, for ad-hoc questions."""

import dagster as dg
import pandas as pd

from ...analysis.steps import catalog
from ...analysis.report import render as tables
from ..resources import VlfStore
from .clock import asset


def build() -> list:
    @asset(
        group_name="catalog", kinds={"duckdb"},
        deps=["hourly_flows", "hourly_source_bags", "hourly_contact_pairs", "monthly_source_bags",
           "monthly_contact_pairs", "monthly_traffic_volumes", "monthly_port_usage", "source_flow_bag",
           "source_hour_count_bag", "source_destination_count_bag",
           "vlf_f_set", "vlf_d_set", "vlf_fd_set", "active_inside_set", "vlf_flows", "vlf_outbound_flows", "matched_vlf_flows",
           "vlf_categories"],
        description="data/catalog.duckdb: views over the archive (`flows`), the quarantine, the hourly, monthly "
        "and window bags and the VLF flows, the IP sets as a table, and macros (ip_text, flag_text, ms_time). "
        "Views read the Parquet files at query time; open it read-only: `vlf sql \"SELECT ...\"` or "
        "`duckdb -readonly data/catalog.duckdb`.",
    )
    def sql_catalog(store: VlfStore) -> dg.MaterializeResult:
        summary = catalog.build_catalog(store.base)
        objects = pd.DataFrame({"Name": list(summary.objects), "Rows": list(summary.objects.values())})
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(summary.path)),
            "objects": dg.MetadataValue.md(tables.to_markdown(objects)),
            "flows": summary.objects.get("flows", 0),
            "not yet materialized": ", ".join(summary.missing) or "none",
        })

    return [sql_catalog]
