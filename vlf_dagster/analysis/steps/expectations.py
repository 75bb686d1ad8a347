"""A great-expectations 1.x suite over archive records (called from a Dagster asset check).

GX is imported lazily: it costs ~2 s and ~300 MB once per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from ...flows import duck
from ...flows.flowtypes import FLOWTYPES
from ...flows.sql import path_list

NOT_NULL = ("sIP", "dIP", "sPort", "dPort", "protocol", "packets", "bytes", "sTime", "flowtype")


@dataclass
class SuiteOutcome:
    success: bool
    statistics: dict
    failed: list[str] = field(default_factory=list)


def archive_suite():
    import great_expectations as gx

    suite = gx.ExpectationSuite(name="archive_records")
    for column in NOT_NULL:
        suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeBetween(column="sPort", min_value=0, max_value=65535))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeBetween(column="dPort", min_value=0, max_value=65535))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeBetween(column="protocol", min_value=0, max_value=255))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeBetween(column="packets", min_value=1))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeInSet(column="flowtype", value_set=sorted(FLOWTYPES)))
    suite.add_expectation(gx.expectations.ExpectTableRowCountToBeBetween(min_value=1))
    return suite


def validate_archive(files: Sequence[Path]) -> SuiteOutcome:
    """Run :func:`archive_suite` over the records of ``files`` (an hour or a batch of hours)."""
    if not files:
        return SuiteOutcome(True, {"evaluated_expectations": 0, "note": "no archive files in this range"})
    with duck.connect() as con:
        df = con.execute(f"SELECT {', '.join(NOT_NULL)} FROM read_parquet({path_list(files)})").fetchdf()
    return validate_frame(df)


def validate_table(flows: pa.Table) -> SuiteOutcome:
    """Run :func:`archive_suite` over records a step holds in memory (what it just archived)."""
    if flows.num_rows == 0:
        return SuiteOutcome(True, {"evaluated_expectations": 0, "note": "no archive records in this range"})
    return validate_frame(flows.select(list(NOT_NULL)).to_pandas())


def validate_frame(df) -> SuiteOutcome:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars in run logs
    batch_definition = (
        context.data_sources.add_pandas("archive")
        .add_dataframe_asset("records")
        .add_batch_definition_whole_dataframe("run")
    )
    result = batch_definition.get_batch(batch_parameters={"dataframe": df}).validate(archive_suite())
    failed = [
        f"{r.expectation_config.type}({r.expectation_config.kwargs.get('column', '')})"
        for r in result.results
        if not r.success
    ]
    stats = {k: (float(v) if isinstance(v, float) else v) for k, v in dict(result.statistics).items() if v is not None}
    stats["rows"] = len(df)
    return SuiteOutcome(bool(result.success), stats, failed)
