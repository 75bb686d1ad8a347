"""Shared helpers: small hand-built flow tables and a site for tests."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pyarrow as pa
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from vlf_dagster.flows.schema import FLOW_SCHEMA, conform, ipv4_to_int
from vlf_dagster.flows.site import site_from_mapping
from vlf_dagster.flows.storage import hour_ms, landing_dir, write_parquet

START = datetime(2006, 4, 1, tzinfo=timezone.utc)


def ip(text: str) -> int:
    return ipv4_to_int(text)


def flows(rows: list[dict]) -> pa.Table:
    """A flow table from dicts with dotted-quad sIP/dIP; unspecified fields default to 0."""
    cols: dict[str, list] = {}
    defaults = {"sIP": "4.3.2.1", "dIP": "10.1.24.1", "sPort": 1025, "dPort": 80, "protocol": 6, "packets": 1, "bytes": 40, "sTime": hour_ms(START)}
    keys = sorted({k for r in rows for k in r} | set(defaults))
    for key in keys:
        values = []
        for r in rows:
            v = r.get(key, defaults.get(key, None if key.endswith("v6") else 0))
            values.append(ip(v) if key in ("sIP", "dIP", "nhIP") and isinstance(v, str) else v)
        cols[key] = pa.array(values, type=FLOW_SCHEMA.field(key).type)
    return conform(pa.table(cols))


def write_landing(data_dir, hour: datetime, table: pa.Table, name: str = "test.parquet"):
    return write_parquet(table, landing_dir(data_dir, hour) / name)


@pytest.fixture
def site():
    return site_from_mapping(
        {"internal_networks": ["10.1.24.0/22"], "sensors": ["S0", "S1"], "start": "2006-04-01T00:00", "end": "2006-04-01T03:00"}
    )


@pytest.fixture
def site_file(tmp_path, site):
    data = tmp_path / "data"
    data.mkdir()
    (data / "site.toml").write_text(site.to_toml())
    return data
