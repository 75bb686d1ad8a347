"""Stage 6: the SQL catalog, DuckDB views over everything the study wrote, for ad-hoc questions."""

import dagster as dg
import pandas as pd

from ... import artifacts as A
from ...analysis.steps import catalog
from ...analysis.report import render as tables
from ..resources import VlfStore
from .clock import asset


def build() -> list:
    @asset(name=A.SQL_CATALOG.name, group_name=A.SQL_CATALOG.group, kinds=A.SQL_CATALOG.kinds,
           deps=catalog.VIEWED, description=A.SQL_CATALOG.asset_description)
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
