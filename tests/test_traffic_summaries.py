"""Monthly traffic summaries give the window's traffic figures exactly what the archive gives."""

from datetime import timedelta

import pandas as pd
import pyarrow.parquet as pq

from vlf_dagster.analysis.tables import figures as fig, ports as pt
from vlf_dagster.analysis.steps import traffic
from vlf_dagster.flows.archive import pack_hours
from vlf_dagster.flows.flowtypes import INBOUND_TYPES
from vlf_dagster.flows.site import load_site
from vlf_dagster.flows.storage import archive_files, hours_between
from vlf_dagster.simulate import SimulationConfig, simulate


def _site(tmp_path):
    site = load_site(None)
    return site.with_window(site.start.replace(day=30), site.start.replace(day=30) + timedelta(days=3))  # over a month's end


def test_summaries_equal_the_archive_for_volumes_and_port_usage(tmp_path):
    site = _site(tmp_path)
    simulate(site, SimulationConfig(days=3, sources=3000, seed=4), tmp_path)
    hours = hours_between(site.start, site.window_end())
    pack_hours(tmp_path, hours, site)
    months = sorted({(h.year, h.month) for h in hours})
    assert len(months) == 2  # the window crosses a month boundary: two summaries add up
    volumes, ports = [], []
    for year, month in months:
        month_hours = [h for h in hours if (h.year, h.month) == (year, month)]
        v, p = tmp_path / f"v{month}.parquet", tmp_path / f"p{month}.parquet"
        rows = traffic.monthly_traffic(archive_files(tmp_path, month_hours), v, p)
        assert rows[0] > 0 and rows[1] > 0
        volumes.append(v)
        ports.append(p)
    archive = archive_files(tmp_path, hours)
    pd.testing.assert_frame_equal(pt.overall_port_usage(ports), pt.overall_port_usage(archive))
    pd.testing.assert_frame_equal(pt.overall_port_usage(ports, flowtypes=INBOUND_TYPES),
                                  pt.overall_port_usage(archive, flowtypes=INBOUND_TYPES))
    pd.testing.assert_frame_equal(fig.traffic_volume_data(volumes), fig.traffic_volume_data(archive))
    pd.testing.assert_frame_equal(fig.traffic_volume_data(volumes, flowtypes=[0]), fig.traffic_volume_data(archive, flowtypes=[0]))
    total = sum(pq.read_table(v).column("flows").to_numpy().sum() for v in volumes)
    assert total == sum(pq.ParquetFile(f).metadata.num_rows for f in archive)


def test_an_empty_month_gives_empty_summaries(tmp_path):
    rows = traffic.monthly_traffic([], tmp_path / "v.parquet", tmp_path / "p.parquet")
    assert rows == (0, 0)
    assert pq.read_table(tmp_path / "v.parquet").schema.equals(traffic.VOLUME_SCHEMA)
    assert fig.traffic_volume_data([tmp_path / "v.parquet"]).empty
    assert pt.overall_port_usage([tmp_path / "p.parquet"]).empty
