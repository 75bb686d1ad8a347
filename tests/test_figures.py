"""The study's figures: PNG files of the right size, plotted data equal to hand-computed values,
"no data" figures for empty inputs, byte-identical output for the same input."""

from __future__ import annotations

import struct
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import START, flows, ip
from vlf_dagster.analysis.tables import figures as fg
from vlf_dagster.flows.tools.stats.count import count_bins
from vlf_dagster.flows.storage import hour_ms

T0 = hour_ms(START)  # 2006/04/01T00:00 UTC
H = 3_600_000
D = 86_400_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_png(path, kind: str) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert png_size(path) == fg.figure_size_px(kind) == (960, round(fg.HEIGHTS_IN[kind] * 100))
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temporary file left behind


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [fig._suptitle.get_text()]


def utc(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


# --- 1. Overall Traffic Volumes --------------------------------------------------------------


@pytest.fixture
def archive(tmp_path):
    """Two hourly files: hour 0 has 2 flows (one outbound), hour 1 none, hour 2 three."""
    a = flows([
        dict(sTime=T0 + 5, packets=2, bytes=100),
        dict(sTime=T0 + 59 * 60_000, packets=1, bytes=40, flowtype=1, duration=7_200_000),  # spans 3 hours
    ])
    b = flows([
        dict(sTime=T0 + 2 * H, packets=3, bytes=50),
        dict(sTime=T0 + 2 * H + 1, packets=4, bytes=60),
        dict(sTime=T0 + 3 * H - 1, packets=5, bytes=70),
    ])
    pa_, pb = tmp_path / "in-S0_20060401.00.parquet", tmp_path / "in-S0_20060401.02.parquet"
    pq.write_table(a, pa_)
    pq.write_table(b, pb)
    return [pa_, pb]


def test_traffic_volume_data_per_hour(archive):
    data = fg.traffic_volume_data(archive)
    assert list(data.columns) == list(fg.TRAFFIC_COLUMNS)
    assert list(data["Date"]) == [utc(T0), utc(T0 + H), utc(T0 + 2 * H)]
    assert data["Flows"].tolist() == [2, 0, 3]
    assert data["Packets"].tolist() == [3.0, 0.0, 12.0]
    assert data["Bytes"].tolist() == [140.0, 0.0, 180.0]
    # the same as rwcount's start-spike scheme
    count = count_bins(archive, 3600, "start-spike").to_pandas()
    assert count["Records"].tolist() == [2.0, 0.0, 3.0]
    assert count["Bytes"].tolist() == data["Bytes"].tolist()


def test_traffic_volume_data_options(archive):
    two = fg.traffic_volume_data(archive, bin_hours=2)
    assert two["Flows"].tolist() == [2, 3] and list(two["Date"]) == [utc(T0), utc(T0 + 2 * H)]
    inbound = fg.traffic_volume_data(archive, flowtypes=[0])
    assert inbound["Flows"].tolist() == [1, 0, 3]
    window = fg.traffic_volume_data(archive, start=T0 - H, end=datetime(2006, 4, 1, 4, tzinfo=timezone.utc))
    assert window["Flows"].tolist() == [0, 2, 0, 3, 0]
    table = fg.traffic_volume_data(pa.concat_tables([pq.read_table(p) for p in archive]))
    assert table.equals(fg.traffic_volume_data(archive))
    with pytest.raises(fg.FigureError):
        fg.traffic_volume_data(archive, bin_hours=0)


def test_traffic_volumes_png(archive, tmp_path):
    out = fg.traffic_volumes(archive, tmp_path / "reports" / "traffic.png")
    assert out == tmp_path / "reports" / "traffic.png"
    assert_png(out, "traffic")
    assert out.stat().st_mode & 0o777 == fg.PNG_MODE
    fig = fg.traffic_volume_figure(fg.traffic_volume_data(archive))
    assert fig._suptitle.get_text() == "Overall Traffic Volumes"
    flows_ax, packets_ax, bytes_ax = fig.axes
    values, edges, _ = flows_ax.patches[0].get_data()
    assert values.tolist() == [2, 0, 3]
    assert len(edges) == 4  # the last bin is closed
    assert packets_ax.patches[0].get_data()[0].tolist() == [3, 0, 12]
    assert bytes_ax.get_xlabel() == "time (UTC)" and flows_ax.get_ylabel() == "flows / hour"
    # deterministic bytes
    again = fg.traffic_volumes(archive, tmp_path / "again.png")
    assert again.read_bytes() == out.read_bytes()


def test_traffic_volumes_empty(tmp_path):
    out = fg.traffic_volumes([], tmp_path / "empty.png")
    assert_png(out, "traffic")
    assert fg.NO_DATA in texts(fg.traffic_volume_figure(fg.traffic_volume_data([])))
    none = fg.traffic_volume_data(flows([dict(sTime=T0)]), flowtypes=[1])
    assert none.empty


# --- 2. Contact Surface ----------------------------------------------------------------------


def pairs_table() -> pa.Table:
    return pa.table({
        "sIP": pa.array([ip("4.3.2.1"), ip("4.3.2.1"), ip("200.1.1.1"), ip("4.3.2.1"), ip("9.9.9.9"), ip("0.0.0.1")], pa.uint32()),
        "dIP": pa.array([ip("10.1.24.1"), ip("10.1.24.1"), ip("10.1.27.255"), ip("10.1.25.0"), ip("10.1.28.0"), ip("10.1.24.0")], pa.uint32()),
    })


def test_contact_surface_points():
    data = fg.contact_surface_data(pairs_table(), "10.1.24.0/22")
    # duplicates collapse, 10.1.28.0 is outside the /22; sorted by (sIP, offset)
    assert list(zip(data["sIP"], data["Offset"])) == [
        (1, 0), (ip("4.3.2.1"), 1), (ip("4.3.2.1"), 256), (ip("200.1.1.1"), 1023),
    ]
    fig = fg.contact_surface_figure(data, "10.1.24.0/22")
    (line,) = fig.axes[0].lines
    assert line.get_xdata().tolist() == [1, ip("4.3.2.1"), ip("4.3.2.1"), ip("200.1.1.1")]
    assert line.get_ydata().tolist() == [0, 1, 256, 1023]
    ax = fig.axes[0]
    assert ax.get_ylim() == (-0.5, 1023.5) and ax.get_xlim() == (0, 2**32)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[:3] == ["0/8", "32/8", "64/8"]
    assert [t.get_text() for t in ax.get_yticklabels()][1] == "10.1.25.0 (256)"


def test_contact_surface_beyond_the_scatter_limit_is_a_density_raster(tmp_path):
    grid, pairs = fg.contact_surface_raster(pairs_table(), "10.1.24.0/22")
    assert pairs == 4 and grid.shape == (1024, 1024)  # duplicates collapse, 10.1.28.0 is outside
    cell = lambda sip, offset: grid[offset, ip(sip) >> 22]  # noqa: E731 - one column per /10
    assert (cell("0.0.0.1", 0), cell("4.3.2.1", 1), cell("4.3.2.1", 256), cell("200.1.1.1", 1023)) == (1, 1, 1, 1)
    # a /20 inside network: 4096 addresses, four per raster row
    wide, _ = fg.contact_surface_raster(pairs_table(), "10.1.16.0/20")
    assert wide.shape == (1024, 1024) and wide[(ip("10.1.25.0") - ip("10.1.16.0")) // 4, ip("4.3.2.1") >> 22] == 1
    out = fg.contact_surface(pairs_table(), tmp_path / "dense.png", "10.1.24.0/22", scatter_limit=3)
    assert_png(out, "contact")
    fig = fg.contact_surface_raster_figure(grid, pairs, "10.1.24.0/22")
    assert not fig.axes[0].lines and fig.axes[0].images  # an image, not points
    assert "4 distinct" in fig.axes[0].get_title()


def test_contact_surface_bag_file_skips_ipv6(tmp_path):
    v6 = b"\x20\x01" + b"\x00" * 14
    bag = pa.table({
        "sIP": pa.array([ip("4.3.2.1"), 0], pa.uint32()),
        "sIPv6": pa.array([None, v6], pa.binary(16)),
        "dIP": pa.array([ip("10.1.24.7"), 0], pa.uint32()),
        "dIPv6": pa.array([None, v6], pa.binary(16)),
        "records": pa.array([3, 1], pa.uint64()),
    })
    path = tmp_path / "contact_pairs.parquet"
    pq.write_table(bag, path)
    data = fg.contact_surface_data(path, "10.1.24.0/22")
    assert list(zip(data["sIP"], data["Offset"])) == [(ip("4.3.2.1"), 7)]
    out = fg.contact_surface(path, tmp_path / "contact.png", "10.1.24.0/22")
    assert_png(out, "contact")
    with pytest.raises(fg.FigureError):
        fg.contact_surface_data(path, "2001:db8::/32")


def test_contact_surface_empty(tmp_path):
    empty = pairs_table().slice(0, 0)
    out = fg.contact_surface(empty, tmp_path / "c.png", "10.1.24.0/22")
    assert_png(out, "contact")
    assert fg.NO_DATA in texts(fg.contact_surface_figure(fg.contact_surface_data([], "10.1.24.0/22")))


# --- 3. Temporal distribution of the top ports -----------------------------------------------


def categories(rows: list[tuple[int, int, int, str]]) -> pd.DataFrame:
    """(sTime, dPort, protocol, category) rows of a vlf_categories-like DataFrame."""
    return pd.DataFrame({
        "sIP": np.full(len(rows), ip("4.3.2.1"), np.uint32),
        "dIP": np.full(len(rows), ip("10.1.24.1"), np.uint32),
        "sTime": np.array([r[0] for r in rows], np.int64),
        "dPort": np.array([r[1] for r in rows], np.uint16),
        "protocol": np.array([r[2] for r in rows], np.uint8),
        "category": [r[3] for r in rows],
        "source_flows": np.ones(len(rows), np.int64),
    })


U_TCP, U_UDP = "unmatched TCP", "unmatched UDP"
TEN_DAYS = categories([
    (T0 + 1, 445, 6, U_TCP), (T0 + 5 * H, 445, 6, U_TCP), (T0 + D, 4662, 6, U_TCP),
    (T0 + 3 * D + 7, 445, 6, U_TCP), (T0 + 9 * D + 23 * H, 4662, 6, U_TCP),
    (T0 + 2 * D, 80, 6, U_TCP),  # not a requested port
    (T0 + 4 * D, 445, 17, U_UDP),  # another protocol
])


def test_port_timeline_days():
    data = fg.port_timeline_data(TEN_DAYS, [445, 4662], protocol=6)
    assert data.attrs["bin"] == "day"
    assert list(data.columns) == ["Date", 445, 4662]
    assert list(data["Date"]) == [utc(T0 + k * D) for k in range(10)]
    assert data[445].tolist() == [2, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert data[4662].tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    both = fg.port_timeline_data(TEN_DAYS, [445], "day")  # "auto" would pick hours: 4 days only
    assert both[445].tolist() == [2, 0, 0, 1, 1]
    assert fg.port_timeline_data(TEN_DAYS, [445]).attrs["bin"] == "hour"
    assert fg.port_timeline_data(TEN_DAYS, [445], category=U_UDP)[445].sum() == 1
    hours = fg.port_timeline_data(TEN_DAYS, [445], "hour", protocol=6)
    assert hours.attrs["bin"] == "hour" and hours[445].sum() == 3 and len(hours) == 3 * 24 + 1


def test_port_timeline_short_window_uses_hours():
    short = categories([(T0 + 10, 25, 6, U_TCP), (T0 + 2 * H + 5, 25, 6, U_TCP), (T0 + 2 * H + 9, 7717, 17, U_UDP)])
    data = fg.port_timeline_data(short, [7717, 25])
    assert data.attrs["bin"] == "hour"
    assert list(data.columns) == ["Date", 7717, 25]
    assert data[25].tolist() == [1, 0, 1] and data[7717].tolist() == [0, 0, 1]
    pinned = fg.port_timeline_data(short, [25], start=T0, end=T0 + 8 * D)
    assert pinned.attrs["bin"] == "day" and pinned[25].tolist() == [2] + [0] * 7
    with pytest.raises(fg.FigureError):
        fg.port_timeline_data(short, [25], bin="week")


def test_port_timeline_png(tmp_path):
    path = tmp_path / "cats.parquet"
    pq.write_table(pa.Table.from_pandas(TEN_DAYS, preserve_index=False), path)
    out = fg.port_timeline(path, [445, 4662], tmp_path / "timeline.png", protocol=6)
    assert_png(out, "timeline")
    fig = fg.port_timeline_figure(fg.port_timeline_data(path, [445, 4662], protocol=6))
    ax = fig.axes[0]
    mesh, = ax.collections  # a port x day heatmap, one row per port, empty days blank
    cells = mesh.get_array()
    assert cells.shape == (2, 10)
    assert cells[0].filled(0).tolist() == [2, 0, 0, 1, 0, 0, 0, 0, 0, 0] and cells.mask[0].tolist().count(False) == 2
    assert [t.get_text() for t in ax.get_yticklabels()] == ["445 (3)", "4662 (2)"]
    assert ax.yaxis_inverted()  # the busiest port on top
    assert ax.get_xlabel() == "time (UTC)" and fig.axes[1].get_ylabel() == "flows per day (log scale)"


def test_port_timeline_empty(tmp_path):
    out = fg.port_timeline(TEN_DAYS.iloc[:0], [445], tmp_path / "t.png")
    assert_png(out, "timeline")
    assert fg.NO_DATA in texts(fg.port_timeline_figure(fg.port_timeline_data(TEN_DAYS, [1234])))
    assert fg.NO_DATA in texts(fg.port_timeline_figure(fg.port_timeline_data(TEN_DAYS, [])))


# --- 4. Overall TCP/UDP ports O->E, E->O -----------------------------------------------------


DIRECTIONS = pd.DataFrame({"Port": [6000, 25, 80, 80, 7], "OtoE": [0, 5, 1, 2, 0], "EtoO": [7, 0, 3, 0, 0]})


def test_port_direction_series(tmp_path):
    data = fg.port_direction_data(DIRECTIONS)
    assert data.to_dict("list") == {"Port": [25, 80, 6000], "OtoE": [5, 3, 0], "EtoO": [0, 3, 7]}
    fig = fg.port_direction_figure(data, "TCP")
    assert fig._suptitle.get_text() == "Matched TCP sessions per port, by who opened them (VLF sources with 1 to 10 flows)"
    ax = fig.axes[0]
    o, e = ax.lines
    assert (o.get_marker(), e.get_marker()) == ("o", "+")
    assert o.get_xdata().tolist() == [25, 80] and o.get_ydata().tolist() == [5, 3]
    assert e.get_xdata().tolist() == [80, 6000] and e.get_ydata().tolist() == [3, 7]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "the port the session was opened to"
    out = fg.port_direction_plot(pa.Table.from_pandas(DIRECTIONS), tmp_path / "udp.png", "UDP")
    assert_png(out, "direction")
    with pytest.raises(fg.FigureError):
        fg.port_direction_data(DIRECTIONS.drop(columns="EtoO"))


def test_port_direction_empty(tmp_path):
    out = fg.port_direction_plot(DIRECTIONS.iloc[:0], tmp_path / "none.png", "TCP")
    assert_png(out, "direction")
    zeros = pd.DataFrame({"Port": [1], "OtoE": [0], "EtoO": [0]})
    assert fg.NO_DATA in texts(fg.port_direction_figure(fg.port_direction_data(zeros), "UDP"))


def test_traffic_steps_draw_as_matplotlib_stairs(tmp_path):
    """The traffic panels' steps (set limits from the extremes, no per-vertex walk) render to the
    same pixels as ``Axes.stairs`` with the same style, filled and outlined, over dates."""
    edges = np.datetime64("2006-04-01T00") + np.arange(49) * np.timedelta64(1, "h")
    values = np.abs(np.sin(np.arange(48))) * 1000
    outputs = []
    for draw in ("stairs", "ours"):
        fig = fg._new_figure("traffic")
        ax = fig.subplots()
        for fill, alpha in ((True, 0.35), (False, None)):
            style = {"linewidth": 0.9, "fill": fill, **({"alpha": alpha} if alpha else {})}
            if draw == "stairs":
                ax.stairs(values, edges, color="tab:blue", **style)
            else:
                fg._stairs(ax, values, edges, color="tab:blue", **style)
        ax.set_ylim(bottom=0)
        outputs.append(fg.save_png(fig, tmp_path / f"{draw}.png").read_bytes())
    assert outputs[0] == outputs[1]
    assert ax.get_ylim()[1] > values.max()  # the top still autoscales to the data


def test_a_few_spikes_are_marked_above_a_scale_that_shows_the_rest():
    hours = pd.date_range("2006-04-01", periods=400, freq="h", tz="UTC")
    packets = np.full(400, 1000.0)
    packets[[50, 300]] = 250e6  # two implausible flows
    data = pd.DataFrame({"Date": hours, "Flows": np.full(400, 10), "Packets": packets, "Bytes": packets * 40})
    data.attrs["bin_hours"] = 1
    fig = fg.traffic_volume_figure(data)
    flows_ax, packets_ax, _ = fig.axes
    assert fg.spike_scale(data["Flows"].to_numpy(dtype=float)) is None and flows_ax.get_ylim()[1] > 10
    assert 1000 < packets_ax.get_ylim()[1] < 2000  # scaled to the bulk, not to 250 M
    marks, = [line for line in packets_ax.lines if line.get_marker() == "^"]
    assert len(marks.get_xdata()) == 2
    assert "2 hours above the scale, up to 250.0M" in [t.get_text() for t in packets_ax.texts][0]
    assert fg.spike_scale(np.full(400, 5.0)) is None  # nothing stands out: the full scale
