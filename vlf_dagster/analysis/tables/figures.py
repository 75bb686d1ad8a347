"""The study's figures as PNG files: one data function, one figure builder and one writer each.

==========================  ================================  ==================================
figure (the study's title)  data (what is plotted)            writer ``(inputs..., out) -> Path``
==========================  ================================  ==================================
Overall Traffic Volumes     :func:`traffic_volume_data`       :func:`traffic_volumes`
Contact Surface             :func:`contact_surface_data`      :func:`contact_surface`
Temporal distribution       :func:`port_timeline_data`        :func:`port_timeline`
Transient port activity     :func:`.bursts.port_bursts`       :func:`plot_port_bursts`
Overall TCP/UDP ports       :func:`port_direction_data`       :func:`port_direction_plot`
==========================  ================================  ==================================

The data functions aggregate with DuckDB (Parquet is streamed, never loaded whole) and return
small pandas DataFrames, which the asset can also keep as CSV.  ``*_figure(data)`` builds the
:class:`matplotlib.figure.Figure` from that data (tests read the plotted values back from its
artists), and ``plot_*(data, out)`` writes it.  The writers do all three steps.

Rendering: matplotlib's Agg canvas on explicit ``Figure`` objects (no pyplot, no global state),
:data:`WIDTH_IN` x :data:`DPI` = 960 px wide, constrained layout, UTC time axes, labelled axes
and titles.  The PNG is written through :func:`~vlf_dagster.flows.storage.atomic_path` without
the "Software" text chunk, so the same data gives the same bytes.  An empty input gives a figure
that says "no data" instead of raising.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence, Union

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.colors import LogNorm
from matplotlib.patches import StepPatch
from matplotlib.ticker import EngFormatter, FixedLocator, LogLocator, MaxNLocator, MultipleLocator, NullFormatter

from ..steps import contacts
from ...flows.storage import atomic_path
from ...flows import duck

Source = Union[pa.Table, pd.DataFrame, str, Path, Sequence[Union[str, Path]]]

DPI = 100
WIDTH_IN = 9.6  # 960 px
HEIGHTS_IN = {"traffic": 7.2, "contact": 6.0, "timeline": 5.4, "direction": 5.4}
NO_DATA = "no data"
PNG_MODE = 0o644
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
BINS_MS = {"hour": MS_PER_HOUR, "day": MS_PER_DAY}
MIN_BINS = 7  # port_timeline: "auto" uses days when the window holds at least this many


class FigureError(ValueError):
    """A bad figure request (unknown bin, bad network, missing columns)."""


# --- shared helpers ------------------------------------------------------------------------------


def _ms(value: datetime | int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(round(value.timestamp() * 1000))
    return int(value)


def _within(where: list[str], params: list, lo: int | None, hi: int | None) -> None:
    """Add the SQL conditions (and their parameters) of sTime in [lo, hi), either end open."""
    if lo is not None:
        where.append("sTime >= ?")
        params.append(lo)
    if hi is not None:
        where.append("sTime < ?")
        params.append(hi)


def _utc_dates(ms: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(ms, dtype=np.int64), unit="ms", utc=True))


def _plot_dates(dates: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Naive UTC datetime64 for matplotlib (the axes are told the zone explicitly)."""
    return pd.DatetimeIndex(dates).tz_convert("UTC").tz_localize(None).to_numpy()


def _new_figure(kind: str) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, HEIGHTS_IN[kind]), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _no_data(ax, message: str = NO_DATA) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=16, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _time_axis(ax) -> None:
    locator = mdates.AutoDateLocator(tz=timezone.utc, minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=timezone.utc))


def save_png(fig: Figure, out: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``out`` atomically (no timestamp or version chunk)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
        os.chmod(tmp, PNG_MODE)  # mkstemp makes 0600 files; reports are meant to be read
    return out


def figure_size_px(kind: str) -> tuple[int, int]:
    """(width, height) in pixels of a figure kind: traffic, contact, timeline or direction."""
    return round(WIDTH_IN * DPI), round(HEIGHTS_IN[kind] * DPI)


# --- 1. Overall Traffic Volumes ------------------------------------------------------------------

TRAFFIC_COLUMNS = ("Date", "Flows", "Packets", "Bytes")


def traffic_volume_data(
    archive_files: Source,
    bin_hours: int = 1,
    *,
    flowtypes: Iterable[int] | None = None,
    start: datetime | int | None = None,
    end: datetime | int | None = None,
) -> pd.DataFrame:
    """Flows, packets and bytes per ``bin_hours`` bin of flow start time (rwcount's start-spike
    load scheme, bins aligned on UTC midnight when ``bin_hours`` divides 24).

    One DuckDB GROUP BY over the files: archive files, or the monthly volume summaries of
    :mod:`analysis.traffic` (hourly bins with a ``flows`` count).  Bins between the first and the last (or ``start`` and
    ``end``, end exclusive) that got no flow are listed with zeros.  ``flowtypes`` restricts the
    records (e.g. the inbound types).  Returns Date (UTC), Flows (int64), Packets, Bytes (float64).
    """
    if bin_hours <= 0 or int(bin_hours) != bin_hours:
        raise FigureError(f"bin_hours must be a positive integer, not {bin_hours!r}")
    size = int(bin_hours) * MS_PER_HOUR
    lo, hi = _ms(start), _ms(end)
    where, params = ["TRUE"], [size]
    if flowtypes is not None:
        types = [int(t) for t in flowtypes]
        where.append(f"flowtype IN ({', '.join('?' for _ in types)})" if types else "FALSE")
        params += types
    _within(where, params, lo, hi)
    with duck.connect() as con:
        columns = duck.register(con, "flows", archive_files)
        if columns is not None:
            # archive records count one each; monthly volume summaries (analysis.traffic) carry their count
            count = "sum(flows)" if "flows" in columns else "count(*)"
            raw = con.sql(
                f"SELECT (sTime // ?)::BIGINT AS b, {count}::BIGINT AS f, sum(packets)::DOUBLE AS p, sum(bytes)::DOUBLE AS y "
                f"FROM flows WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1",
                params=params,
            ).df()
        else:
            raw = pd.DataFrame({"b": [], "f": [], "p": [], "y": []})
    bins = raw["b"].to_numpy(dtype=np.int64)
    first = lo // size if lo is not None else (int(bins[0]) if len(bins) else None)
    last = (hi - 1) // size if hi is not None else (int(bins[-1]) if len(bins) else None)
    if first is None or last is None or last < first:
        return pd.DataFrame({"Date": _utc_dates(np.zeros(0)), "Flows": np.zeros(0, np.int64),
                             "Packets": np.zeros(0), "Bytes": np.zeros(0)})
    n = last - first + 1
    pos = bins - first
    flows, packets, octets = np.zeros(n, np.int64), np.zeros(n), np.zeros(n)
    flows[pos] = raw["f"].to_numpy(dtype=np.int64)
    packets[pos] = raw["p"].to_numpy(dtype=np.float64)
    octets[pos] = raw["y"].to_numpy(dtype=np.float64)
    dates = _utc_dates((np.arange(first, last + 1, dtype=np.int64)) * size)
    out = pd.DataFrame({"Date": dates, "Flows": flows, "Packets": packets, "Bytes": octets})
    out.attrs["bin_hours"] = int(bin_hours)
    return out


def _stairs(ax, values: np.ndarray, edges: np.ndarray, *, color, fill: bool = False, **style) -> None:
    """``ax.stairs`` for non-negative values, with the data limits set from the extremes: stairs'
    own add_patch walks the path a vertex at a time in Python (2.4 s for 10,200 hours)."""
    ax.xaxis.update_units(edges)  # dates: the axis takes the date converter, as stairs' unit handling does
    edges = np.asarray(ax.convert_xunits(edges))
    style["facecolor" if fill else "edgecolor"] = color  # as stairs colours a filled or an outline step
    patch = StepPatch(values, edges, baseline=0, fill=fill, **style)
    ax.add_artist(patch)
    patch.sticky_edges.y.append(0)
    top = float(np.nanmax(values)) if len(values) else 0.0
    ax.update_datalim([(edges[0], 0.0), (edges[-1], max(top, 0.0))])
    ax.autoscale_view()


SPIKE_RATIO = 20  # a bin this many times the median bin is a spike, drawn as a marker above the scale
SPIKE_SHARE = 0.1  # spikes only while they are this share of the bins or fewer


def spike_scale(values: np.ndarray) -> float | None:
    """The top of the y axis that shows the bulk of ``values`` when a few bins (at most
    :data:`SPIKE_SHARE` of them) exceed :data:`SPIKE_RATIO` times the median bin; None when the
    full scale reads well."""
    positive = values[values > 0]
    if len(positive) < 20:
        return None
    spikes = values > SPIKE_RATIO * float(np.median(positive))
    if not spikes.any() or spikes.sum() > SPIKE_SHARE * len(values):
        return None
    return float(values[~spikes].max()) * 1.15


def traffic_volume_figure(data: pd.DataFrame, bin_hours: int | None = None) -> Figure:
    """Three stacked panels sharing the UTC time axis: flows, packets and bytes per bin."""
    bin_hours = bin_hours or data.attrs.get("bin_hours", 1)
    fig = _new_figure("traffic")
    axes = fig.subplots(3, 1, sharex=True)
    unit = "hour" if bin_hours == 1 else f"{bin_hours} h"
    fig.suptitle("Overall Traffic Volumes", fontsize=14)
    if data.empty:
        for ax, what in zip(axes, ("flows", "packets", "bytes")):
            ax.set_ylabel(f"{what} / {unit}")
            _no_data(ax)
        axes[-1].set_xlabel("time (UTC)")
        return fig
    size = np.timedelta64(int(bin_hours), "h")
    x = _plot_dates(data["Date"])
    edges = np.append(x, x[-1] + size)  # close the last bin
    formatter = EngFormatter(sep="")
    for ax, column, colour in zip(axes, ("Flows", "Packets", "Bytes"), ("tab:blue", "tab:orange", "tab:green")):
        y = data[column].to_numpy(dtype=np.float64)
        _stairs(ax, y, edges, color=colour, linewidth=0.9, fill=True, alpha=0.35)
        _stairs(ax, y, edges, color=colour, linewidth=0.9)
        ax.set_ylabel(f"{column.lower()} / {unit}")
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.yaxis.set_major_formatter(formatter)
        ax.set_ylim(bottom=0)
        scale = spike_scale(y)
        if scale is not None:  # a few spikes (implausible flows) would flatten the rest: scale to the rest
            above = y > scale
            ax.set_ylim(0, scale)
            ax.plot(x[above] + size / 2, np.full(int(above.sum()), scale), linestyle="none", marker="^",
                    markersize=7, color="tab:red", clip_on=False, zorder=5)
            bins = f"{int(above.sum())} {unit}s" if unit == "hour" else f"{int(above.sum())} bins of {unit}"
            ax.text(0.005, 0.9, f"\u25b2 {bins} above the scale, up to {EngFormatter(places=1, sep='')(float(y.max()))}",
                    transform=ax.transAxes, va="top", fontsize=9, color="tab:red",
                    bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.5})
        ax.grid(True, linewidth=0.4, alpha=0.5)
    axes[0].set_title(
        f"flows that started in each {unit} bin, {int(data['Flows'].sum()):,} flows in total", fontsize=10
    )
    axes[-1].set_xlim(edges[0], edges[-1])
    _time_axis(axes[-1])
    axes[-1].set_xlabel("time (UTC)")
    return fig


def plot_traffic_volumes(data: pd.DataFrame, out: str | Path, bin_hours: int | None = None) -> Path:
    return save_png(traffic_volume_figure(data, bin_hours), out)


def traffic_volumes(archive_files: Source, out: str | Path, bin_hours: int = 1, **kwargs) -> Path:
    """"Overall Traffic Volumes" of the archive files as a PNG at ``out`` (see
    :func:`traffic_volume_data` for ``flowtypes``, ``start`` and ``end``)."""
    return plot_traffic_volumes(traffic_volume_data(archive_files, bin_hours, **kwargs), out, bin_hours)


# --- 2. Contact Surface --------------------------------------------------------------------------


def _network(inside_network) -> ipaddress.IPv4Network:
    if hasattr(inside_network, "first_ipv4_network"):  # a Site
        v4 = inside_network.first_ipv4_network
        if v4 is None:
            raise FigureError("the site has no IPv4 internal network for the contact surface")
        return v4
    try:
        net = ipaddress.ip_network(inside_network, strict=False)
    except (TypeError, ValueError) as exc:
        raise FigureError(f"invalid inside network {inside_network!r}: {exc}") from None
    if net.version != 4:
        raise FigureError("the contact surface plots an IPv4 inside network")
    return net


def _inside_v4_pairs(con: duckdb.DuckDBPyConnection, pairs: Source) -> str | None:
    """Register ``pairs`` as view "pairs"; the SQL predicate that keeps its IPv4 rows, or None
    when there are no pairs at all."""
    cols = duck.register(con, "pairs", pairs)
    if cols is None:
        return None
    if not {"sIP", "dIP"} <= cols:
        raise FigureError(f"contact pairs need sIP and dIP columns (got {', '.join(sorted(cols))})")
    return " AND ".join(f"{c} IS NULL" for c in ("sIPv6", "dIPv6") if c in cols) or "TRUE"


def _contact_axes(ax, net, size: int) -> None:
    """Ticks of a contact surface: /8s along the outside address, /24s along a small inside network."""
    ax.xaxis.set_major_locator(FixedLocator([k << 24 for k in range(0, 257, 32)]))
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{int(round(v)) >> 24}/8")
    if 512 <= size <= 256 * 16:  # one tick per /24, labelled with its address
        ax.yaxis.set_major_locator(FixedLocator(list(range(0, size, 256))))
        ax.yaxis.set_major_formatter(lambda v, _pos: f"{net.network_address + int(v)} ({int(v)})")


def contact_surface_data(pairs: Source, inside_network) -> pd.DataFrame:
    """The distinct (outside sIP, inside dIP) pairs with dIP inside ``inside_network``, as
    columns sIP (the outside address as a number) and Offset (dIP minus the network address),
    sorted.  ``pairs``: a table, DataFrame or Parquet file(s) with sIP and dIP (e.g. the contact
    pairs bag); IPv6 rows (non-null sIPv6/dIPv6) are left out.  ``inside_network``: CIDR text,
    an ``IPv4Network`` or a Site (its first IPv4 network)."""
    net = _network(inside_network)
    base, size = int(net.network_address), net.num_addresses
    with duck.connect() as con:
        v4 = _inside_v4_pairs(con, pairs)
        if v4 is None:
            out = pd.DataFrame({"sIP": np.zeros(0, np.int64), "Offset": np.zeros(0, np.int64)})
            out.attrs["network"] = str(net)
            return out
        out = con.sql(
            "SELECT DISTINCT sIP::BIGINT AS sIP, (dIP::BIGINT - ?) AS Offset FROM pairs "
            f"WHERE dIP::BIGINT >= ? AND dIP::BIGINT < ? AND {v4} ORDER BY 1, 2",
            params=[base, base, base + size],
        ).df()
    out = out.astype({"sIP": np.int64, "Offset": np.int64})
    out.attrs["network"] = str(net)
    return out


def _marker_style(n: int) -> tuple[float, float]:
    """(marker size, alpha): smaller and fainter as the cloud grows."""
    if n <= 2_000:
        return 4.0, 0.8
    if n <= 50_000:
        return 2.0, 0.5
    if n <= 500_000:
        return 1.5, 0.35
    return 1.0, 0.25


def contact_surface_figure(data: pd.DataFrame, inside_network=None) -> Figure:
    """One point per (sIP, dIP) pair: x = outside address (ticks at /8s), y = inside offset."""
    net = _network(inside_network if inside_network is not None else data.attrs.get("network", "0.0.0.0/0"))
    size = net.num_addresses
    fig = _new_figure("contact")
    ax = fig.add_subplot()
    fig.suptitle("Contact Surface", fontsize=14)
    ax.set_title(f"{len(data):,} distinct (outside sIP, inside dIP) pairs, inside network {net}", fontsize=10)
    ax.set_xlabel("outside address sIP (ticks: /8 networks)")
    ax.set_ylabel(f"inside address dIP: offset in {net}")
    if data.empty:
        _no_data(ax)
        return fig
    ms, alpha = _marker_style(len(data))
    ax.plot(data["sIP"].to_numpy(dtype=np.float64), data["Offset"].to_numpy(dtype=np.float64),
            linestyle="none", marker=".", markersize=ms, markeredgewidth=0, alpha=alpha, color="tab:blue")
    ax.set_xlim(0, 2**32)
    _contact_axes(ax, net, size)
    ax.xaxis.set_minor_locator(MultipleLocator(8 << 24))
    ax.set_ylim(-0.5, size - 0.5)
    if 512 <= size <= 256 * 16:
        ax.yaxis.set_minor_locator(MultipleLocator(64))
    ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    return fig


def plot_contact_surface(data: pd.DataFrame, out: str | Path, inside_network=None) -> Path:
    return save_png(contact_surface_figure(data, inside_network), out)


# Up to this many distinct pairs the figure draws one point per pair; beyond, a density raster
# (a scatter of 60 M points takes ~40 s to draw and shows a solid smear).
SCATTER_LIMIT = 200_000


def contact_surface_raster(pairs: Source, inside_network) -> tuple[np.ndarray, int]:
    """Distinct (outside sIP, inside dIP) pairs counted per cell of the raster
    (:func:`contacts.raster_shape`: rows inside offset, columns outside address), computed in
    DuckDB; and the pair count."""
    net = _network(inside_network)
    grid = np.zeros(contacts.raster_shape(net), dtype=np.int64)
    with duck.connect() as con:
        v4 = _inside_v4_pairs(con, pairs)
        if v4 is None:
            return grid, 0
        contacts.add_cells(grid, con, f"SELECT DISTINCT sIP, NULL::BLOB AS sIPv6, dIP, NULL::BLOB AS dIPv6 FROM pairs WHERE {v4}", net)
    return grid, int(grid.sum())


def contact_surface_raster_figure(grid: np.ndarray, pairs: int, inside_network) -> Figure:
    """The contact surface as density: distinct pairs per cell, on a log colour scale."""
    from matplotlib.colors import LogNorm

    net = _network(inside_network)
    size = net.num_addresses
    fig = _new_figure("contact")
    ax = fig.add_subplot()
    fig.suptitle("Contact Surface", fontsize=14)
    per_row = max(1, size // grid.shape[0])
    ax.set_title(f"{pairs:,} distinct (outside sIP, inside dIP) pairs, inside network {net}; density: "
                 f"pairs per /10 x {per_row} inside address{'es' if per_row > 1 else ''}", fontsize=10)
    ax.set_xlabel("outside address sIP (ticks: /8 networks)")
    ax.set_ylabel(f"inside address dIP: offset in {net}")
    if pairs == 0:
        _no_data(ax)
        return fig
    shown = np.ma.masked_equal(grid, 0)
    image = ax.imshow(shown, origin="lower", aspect="auto", interpolation="nearest", cmap="viridis",
                      norm=LogNorm(vmin=1, vmax=max(2, int(grid.max()))), extent=(0, 2**32, -0.5, size - 0.5))
    fig.colorbar(image, ax=ax, label="distinct pairs per cell")
    _contact_axes(ax, net, size)
    return fig


def contact_surface(pairs: Source, out: str | Path, inside_network, *, scatter_limit: int = SCATTER_LIMIT) -> Path:
    """"Contact Surface" of the distinct (sIP, dIP) pairs as a PNG at ``out``: a point per pair up
    to ``scatter_limit`` pairs, a density raster beyond."""
    grid, pairs_count = contact_surface_raster(pairs, inside_network)
    if pairs_count <= scatter_limit:
        return plot_contact_surface(contact_surface_data(pairs, inside_network), out, inside_network)
    return save_png(contact_surface_raster_figure(grid, pairs_count, inside_network), out)


# --- 3. Temporal distribution of the top ports ---------------------------------------------------


def choose_bin(span_ms: int, bin: str = "auto") -> str:
    """``auto``: days when the span holds at least :data:`MIN_BINS` days, else hours."""
    if bin == "auto":
        return "day" if span_ms >= MIN_BINS * MS_PER_DAY else "hour"
    if bin not in BINS_MS:
        raise FigureError(f"invalid bin {bin!r} (auto, day or hour)")
    return bin


def port_timeline_data(
    categories: Source,
    ports: Sequence[int],
    bin: str = "auto",
    *,
    protocol: int | None = None,
    category: str | Sequence[str] | None = None,
    start: datetime | int | None = None,
    end: datetime | int | None = None,
) -> pd.DataFrame:
    """Flows per time bin for each of ``ports`` (destination port of the inbound VLF flow).

    ``categories``: the ``vlf_categories`` table (DataFrame, Arrow or Parquet) or any flow table
    with dPort and sTime.  ``protocol`` / ``category`` restrict the rows (e.g. 6 and
    ``"unmatched TCP"``).  Bins are UTC hours or days (``bin``: auto, day, hour); the window is
    ``start``..``end`` (end exclusive) when given, else the span of the selected rows; ``auto``
    uses days when that window holds at least 7 of them.  Returns a DataFrame with Date and one
    int64 column per port (named by the port number, in the order given), zeros included;
    ``attrs['bin']`` is the bin used.
    """
    ports = [int(p) for p in ports]
    lo, hi = _ms(start), _ms(end)
    where, params = ["TRUE"], []
    if ports:
        where.append(f"dPort IN ({', '.join('?' for _ in ports)})")
        params += ports
    else:
        where.append("FALSE")
    if protocol is not None:
        where.append("protocol = ?")
        params.append(int(protocol))
    if category is not None:
        cats = [category] if isinstance(category, str) else list(category)
        where.append(f"category IN ({', '.join('?' for _ in cats)})" if cats else "FALSE")
        params += cats
    _within(where, params, lo, hi)
    sql_where = " AND ".join(where)
    with duck.connect() as con:
        if duck.register(con, "cats", categories) is not None:
            span = con.sql(f"SELECT min(sTime), max(sTime) FROM cats WHERE {sql_where}", params=params).fetchall()[0]
        else:
            span = (None, None)
        first_ms = lo if lo is not None else span[0]
        last_ms = (hi - 1) if hi is not None else span[1]
        if first_ms is None or last_ms is None or last_ms < first_ms:
            out = pd.DataFrame({"Date": _utc_dates(np.zeros(0)), **{p: np.zeros(0, np.int64) for p in ports}})
            out.attrs["bin"] = "day" if bin == "auto" else choose_bin(0, bin)
            return out
        unit = choose_bin(int(last_ms) + 1 - int(first_ms), bin)
        size = BINS_MS[unit]
        b0, b1 = int(first_ms) // size, int(last_ms) // size
        raw = con.sql(
            f"SELECT dPort::INTEGER AS port, (sTime // ?)::BIGINT AS b, count(*)::BIGINT AS n FROM cats "
            f"WHERE {sql_where} GROUP BY 1, 2",
            params=[size, *params],
        ).df()
    n = b1 - b0 + 1
    grid = np.zeros((len(ports), n), dtype=np.int64)
    column_of = {p: i for i, p in enumerate(ports)}
    if len(raw):
        rows = raw["port"].map(column_of).to_numpy(dtype=np.int64)
        grid[rows, raw["b"].to_numpy(dtype=np.int64) - b0] = raw["n"].to_numpy(dtype=np.int64)
    out = pd.DataFrame({"Date": _utc_dates(np.arange(b0, b1 + 1, dtype=np.int64) * size)})
    for p, i in column_of.items():
        out[p] = grid[i]
    out.attrs["bin"] = unit
    return out


def port_timeline_figure(data: pd.DataFrame, title: str = "Temporal distribution of the top ports") -> Figure:
    """A port x time heatmap: one row per port (in the order given, the busiest first), one cell
    per time bin, coloured by flows on a log scale (empty bins blank); each row is labelled with
    its port and its total.  Ten overlapping lines over a week's hours could not be read."""
    unit = data.attrs.get("bin", "day")
    ports = [c for c in data.columns if c != "Date"]
    fig = _new_figure("timeline")
    ax = fig.add_subplot()
    fig.suptitle(title, fontsize=14)
    ax.set_ylabel("destination port (total flows)")
    ax.set_xlabel("time (UTC)")
    if data.empty or not ports:
        _no_data(ax)
        return fig
    x = _plot_dates(data["Date"])
    step = (x[1] - x[0]) if len(x) > 1 else np.timedelta64(1, "D" if unit == "day" else "h")
    edges = np.append(x, x[-1] + step)
    counts = data[ports].to_numpy(dtype=np.float64).T  # ports x bins
    total = int(counts.sum())
    ax.set_title(f"flows per {unit} to each of the {len(ports)} top ports, {total:,} flows in {len(data)} {unit} bins",
                 fontsize=10)
    if total == 0:
        _no_data(ax)
        return fig
    mesh = ax.pcolormesh(edges, np.arange(len(ports) + 1), np.ma.masked_equal(counts, 0), cmap="viridis",
                         norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)), shading="flat")
    ax.set_yticks(np.arange(len(ports)) + 0.5, [f"{p} ({int(n):,})" for p, n in zip(ports, counts.sum(axis=1))])
    ax.invert_yaxis()  # the busiest port on top
    ax.set_xlim(edges[0], edges[-1])
    _time_axis(ax)
    fig.colorbar(mesh, ax=ax, label=f"flows per {unit} (log scale)", pad=0.01)
    return fig


def plot_port_timeline(data: pd.DataFrame, out: str | Path, title: str | None = None) -> Path:
    return save_png(port_timeline_figure(data, title or "Temporal distribution of the top ports"), out)


def port_timeline(categories: Source, ports: Sequence[int], out: str | Path, bin: str = "auto",
                  *, title: str | None = None, **kwargs) -> Path:
    """"Temporal distribution" of ``ports`` as a PNG at ``out`` (see :func:`port_timeline_data`
    for ``protocol``, ``category``, ``start`` and ``end``)."""
    return plot_port_timeline(port_timeline_data(categories, ports, bin, **kwargs), out, title)


def port_bursts_figure(data: pd.DataFrame, bursts: Sequence[tuple[int, int, int, int]],
                       title: str = "Transient port activity") -> Figure:
    """The hourly heatmap of :func:`port_timeline_figure` with each burst boxed in red on its port's
    row and its busiest hour marked; ``bursts``: (port, first bin, end bin, peak bin) indices into ``data``."""
    fig = port_timeline_figure(data, title)
    ports = [c for c in data.columns if c != "Date"]
    ax = fig.axes[0]
    if data.empty or not ports or not len(bursts):
        return fig
    x = _plot_dates(data["Date"])
    step = (x[1] - x[0]) if len(x) > 1 else np.timedelta64(1, "h")
    edges = np.append(x, x[-1] + step)
    for port, a, b, peak in bursts:
        r = ports.index(port)
        x0, x1 = edges[a], edges[b]
        ax.plot([x0, x1, x1, x0, x0], [r + 0.08, r + 0.08, r + 0.92, r + 0.92, r + 0.08], color="red", lw=1.6)
        ax.plot([edges[peak] + step / 2], [r + 0.5], marker="v", color="red", markersize=7, linestyle="none")
    ax.set_title(ax.get_title() + f"; {len(bursts)} burst(s) boxed in red, \u25bc its busiest hour", fontsize=10)
    return fig


def plot_port_bursts(data: pd.DataFrame, bursts: Sequence[tuple[int, int, int, int]], out: str | Path,
                     title: str | None = None) -> Path:
    return save_png(port_bursts_figure(data, bursts, title or "Transient port activity"), out)


# --- 4. Overall TCP/UDP ports, O->E and E->O -----------------------------------------------------

DIRECTION_COLUMNS = ("Port", "OtoE", "EtoO")


def port_direction_data(direction_counts: pd.DataFrame | pa.Table) -> pd.DataFrame:
    """Port, OtoE, EtoO (int64) summed per port, sorted by port, rows with both counts 0 dropped."""
    df = direction_counts.to_pandas() if isinstance(direction_counts, pa.Table) else pd.DataFrame(direction_counts)
    missing = [c for c in DIRECTION_COLUMNS if c not in df.columns]
    if missing:
        raise FigureError(f"direction counts need columns {', '.join(DIRECTION_COLUMNS)} (missing {', '.join(missing)})")
    df = df[list(DIRECTION_COLUMNS)].astype("int64")
    if ((df["Port"] < 0) | (df["Port"] > 65535)).any():
        raise FigureError("ports must be 0..65535")
    df = df.groupby("Port", as_index=False, sort=True).sum()
    df = df[(df["OtoE"] > 0) | (df["EtoO"] > 0)].reset_index(drop=True)
    return df


def port_direction_figure(data: pd.DataFrame, protocol_label: str, max_flows: int = 10) -> Figure:
    """Counts per port on a log axis: O->E as open circles, E->O as plus signs."""
    fig = _new_figure("direction")
    ax = fig.add_subplot()
    fig.suptitle(f"Matched {protocol_label} sessions per port, by who opened them "
                 f"(VLF sources with 1 to {max_flows} flows)", fontsize=14)
    ax.set_xlabel("the port the session was opened to")
    ax.set_ylabel("sessions (log scale)")
    if data.empty:
        _no_data(ax)
        return fig
    ports = data["Port"].to_numpy(dtype=np.float64)
    for column, marker, colour, label, face in (
        ("OtoE", "o", "tab:blue", "opened by the outside host", "none"),
        ("EtoO", "+", "tab:red", "opened by the inside host", "tab:red"),
    ):
        y = data[column].to_numpy(dtype=np.float64)
        keep = y > 0
        ax.plot(ports[keep], y[keep], linestyle="none", marker=marker, markersize=4, markeredgewidth=0.8,
                markerfacecolor=face, color=colour, alpha=0.8, label=f"{label} ({int(keep.sum()):,} ports)")
    ax.set_yscale("log")
    top = float(max(data["OtoE"].max(), data["EtoO"].max()))
    subs = (1.0, 2.0, 5.0) if top < 1000 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}" if v >= 1 else "")
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0.7, top * 1.5)
    ax.set_xlim(-500, 66035)
    ax.xaxis.set_major_locator(FixedLocator([0, 8192, 16384, 24576, 32768, 40960, 49152, 57344, 65535]))
    ax.xaxis.set_minor_locator(MultipleLocator(1024))
    ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    ax.legend(loc="upper right", fontsize=9)
    ax.set_title(f"{int(data['OtoE'].sum()):,} sessions opened from outside (o), "
                 f"{int(data['EtoO'].sum()):,} from inside (+)", fontsize=10)
    return fig


def plot_port_directions(data: pd.DataFrame, out: str | Path, protocol_label: str, max_flows: int = 10) -> Path:
    return save_png(port_direction_figure(data, protocol_label, max_flows), out)


def port_direction_plot(direction_counts: pd.DataFrame | pa.Table, out: str | Path, protocol_label: str,
                        max_flows: int = 10) -> Path:
    """The study's "Overall {TCP|UDP} ports (1 - 10 F) o OtoE, + EtoO", titled in words, as a PNG at ``out``; input columns
    Port, OtoE, EtoO."""
    return plot_port_directions(port_direction_data(direction_counts), out, protocol_label, max_flows)


def plot_calibration(bins: Sequence[dict], out: str | Path) -> Path:
    """The return model's calibration: observed return rate against the predicted probability,
    per bin of prediction (``bins``: rows with ``predicted``, ``observed`` and ``rows``)."""
    fig = _new_figure("direction")
    ax = fig.add_subplot()
    if not bins:
        _no_data(ax, "no backtest: not enough history")
        return save_png(fig, out)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    predicted = [b["predicted"] for b in bins]
    observed = [b["observed"] for b in bins]
    ax.plot(predicted, observed, marker="o", color="tab:blue", label="return model")
    for x, y, b in zip(predicted, observed, bins):
        ax.annotate(f"{b['rows']:,}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8, color="0.3")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability of returning within the horizon")
    ax.set_ylabel("observed share that returned")
    ax.set_title("Calibration of the return model at the last backtest cutoff (rows per bin annotated)")
    ax.legend(loc="upper left")
    return save_png(fig, out)
