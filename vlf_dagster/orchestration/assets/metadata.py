"""Catalog metadata the UI shows for Parquet-backed assets: column schema, row count, path."""

from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from ...flows.schema import FIELD_DESCRIPTIONS, FLOW_SCHEMA


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(field.name, str(field.type), description=FIELD_DESCRIPTIONS.get(field.name),
                       constraints=dg.TableColumnConstraints(nullable=field.nullable))
        for field in schema
    ])


# Known before the first run: the assets whose files hold flow records.
FLOW_COLUMNS = {"dagster/column_schema": column_schema(FLOW_SCHEMA)}


def parquet_metadata(path: str | Path) -> dict:
    """Columns and rows of a written Parquet file, read from its footer (no data pages)."""
    meta = pq.ParquetFile(path).metadata
    return {
        "dagster/column_schema": column_schema(meta.schema.to_arrow_schema()),
        "dagster/row_count": meta.num_rows,
        "path": dg.MetadataValue.path(str(Path(path).resolve())),
    }
