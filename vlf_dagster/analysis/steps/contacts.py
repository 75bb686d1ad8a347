"""The window's distinct (outside source, inside destination) pairs, refreshed by the months that
changed: ``source_destination_count_bag`` and the contact-surface raster.

Both count distinct pairs over every month, so neither adds up month by month.  A refresh keeps,
in its state, a hard link to each month's pair file as it last read it (the rollup replaces a
month's file by a rename, so the link still holds the old version).  For a changed month it finds
the sources whose pairs differ between the old and new versions; only their pairs are read again,
over every month: their new destination counts replace theirs in the bag, and the raster loses
their old pairs' cells and gains their new ones.  The results equal a full count's (tested).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ...flows import duck
from ...flows.bags import BagInfo, empty_bag_table, write_bag, write_bag_query
from ...flows.sql import path_literal, path_list
from ...flows.storage import fingerprint, holds_state_lock
from .month_links import MonthLinks

STATE_VERSION = 1
DESTINATIONS = BagInfo(("sIP",), ("destinations",))
RASTER_COLUMNS = 1024  # outside address bins: one per /10
RASTER_ROWS = 1024  # inside address bins at most (one per address up to a /22)


@dataclass(frozen=True)
class ContactRefresh:
    sources_changed: int | None  # sources counted again (None: a full count)
    months_changed: int
    incremental: bool


def raster_shape(network: ipaddress.IPv4Network | None) -> tuple[int, int]:
    """Rows (inside offsets) by columns (outside addresses); none without an IPv4 inside network."""
    return (min(network.num_addresses, RASTER_ROWS), RASTER_COLUMNS) if network is not None else (0, 0)


def _cells_sql(pairs: str, network: ipaddress.IPv4Network) -> str:
    """(y, x, n): distinct IPv4 pairs per raster cell of ``pairs`` (a relation of distinct pairs)."""
    base, size = int(network.network_address), network.num_addresses
    rows, _ = raster_shape(network)
    return (f"SELECT ((dIP::BIGINT - {base}) * {rows} // {size})::INT AS y, (sIP::BIGINT // {2**32 // RASTER_COLUMNS})::INT AS x, "
            f"count(*) AS n FROM ({pairs}) WHERE sIPv6 IS NULL AND dIPv6 IS NULL AND dIP::BIGINT >= {base} "
            f"AND dIP::BIGINT < {base + size} GROUP BY ALL")


def add_cells(grid: np.ndarray, con, pairs: str, network, sign: int = 1) -> None:
    if network is None:
        return
    cells = con.sql(_cells_sql(pairs, network)).fetchnumpy()
    if len(cells["n"]):
        np.add.at(grid, (cells["y"].astype(np.int64), cells["x"].astype(np.int64)), sign * cells["n"].astype(np.int64))


def _distinct(files: Sequence[Path | str]) -> str:
    return f"SELECT DISTINCT sIP, sIPv6, dIP, dIPv6 FROM read_parquet({path_list([str(f) for f in files])})"


def _settings(bag: Path, network) -> dict:
    return {"contacts": STATE_VERSION, "network": str(network), "bag": fingerprint(bag) if bag.exists() else None}


def _raster_path(state: Path) -> Path:
    return state / "raster.npy"


def _save_raster(state: Path, grid: np.ndarray) -> None:
    state.mkdir(parents=True, exist_ok=True)
    tmp = state / ".raster.npy.tmp"
    with open(tmp, "wb") as handle:
        np.save(handle, grid)
    os.replace(tmp, _raster_path(state))


def _write_merged(con, kept: str, bag: Path) -> None:
    """The bag: ``kept`` rows, then table ``counted``.  A full count writes through here too (from
    no rows kept), and both sides go through tables first: DuckDB marks a column read straight
    from Parquet NOT NULL when the file's statistics show no null, and the two would then
    differ in their bytes."""
    con.execute(f"CREATE TEMP TABLE kept AS {kept}")
    write_bag_query(con, "SELECT * FROM kept UNION ALL SELECT * FROM counted", [], bag, DESTINATIONS)


@holds_state_lock("state")
def refresh_contacts(months: Sequence[Path], bag: Path, state: Path, network: ipaddress.IPv4Network | None) -> ContactRefresh:
    """Keep ``bag`` (distinct inside destinations per source over ``months``' pair files) and the
    raster in ``state`` (see :func:`contact_raster`) equal to a full count."""
    months = sorted(months)
    links = MonthLinks(state)
    seen = links.changes(months, _settings(bag, network)) if _raster_path(state).exists() else None
    with duck.connect() as con:
        if seen is None or not months:
            grid = np.zeros(raster_shape(network), np.int64)
            if not months:
                write_bag(empty_bag_table(DESTINATIONS), bag, DESTINATIONS)
            else:
                con.execute(f"CREATE TEMP TABLE counted AS SELECT sIP, sIPv6, count(*)::UBIGINT AS destinations "
                            f"FROM ({_distinct(months)}) GROUP BY ALL")
                con.register("no_bag", empty_bag_table(DESTINATIONS))
                _write_merged(con, "SELECT * FROM no_bag", bag)
                add_cells(grid, con, _distinct(months), network)
            _save_raster(state, grid)
            links.record(months, _settings(bag, network))
            return ContactRefresh(None, len(months), False)
        if not seen.any:
            return ContactRefresh(0, 0, True)
        # the sources whose pairs differ between the old and new version of a changed month
        pairs = lambda path: _distinct([path])  # noqa: E731
        diffs = [f"(({pairs(m)}) EXCEPT ({pairs(seen.old[m.name])})) UNION ALL (({pairs(seen.old[m.name])}) EXCEPT ({pairs(m)}))"
                 if m.name in seen.old else pairs(m) for m in seen.changed]
        diffs += [pairs(seen.old[name]) for name in seen.gone]
        con.execute("CREATE TEMP TABLE touched AS SELECT DISTINCT sIP, sIPv6 FROM ("
                    + " UNION ALL ".join(f"SELECT * FROM ({d})" for d in diffs) + ")")
        touched = con.sql("SELECT count(*) FROM touched").fetchall()[0][0]
        # the touched sources' rows first, then distinct: DuckDB does not push the semi join below
        # a DISTINCT (over the 63 M pairs of the seed's size: 14.6 s against 0.4 s)
        of_touched = lambda files: (  # noqa: E731
            f"SELECT DISTINCT p.sIP, p.sIPv6, p.dIP, p.dIPv6 FROM read_parquet({path_list([str(f) for f in files])}) p "
            "SEMI JOIN touched t ON p.sIP = t.sIP AND p.sIPv6 IS NOT DISTINCT FROM t.sIPv6")
        grid = np.load(_raster_path(state))
        before = seen.before(months)
        if before:
            add_cells(grid, con, of_touched(before), network, -1)
        add_cells(grid, con, of_touched(months), network)
        con.execute(f"CREATE TEMP TABLE counted AS SELECT sIP, sIPv6, count(*)::UBIGINT AS destinations "
                    f"FROM ({of_touched(months)}) GROUP BY ALL")
        _write_merged(con, f"SELECT b.* FROM read_parquet({path_literal(str(bag))}) b ANTI JOIN touched t "
                      "ON b.sIP = t.sIP AND b.sIPv6 IS NOT DISTINCT FROM t.sIPv6", bag)
    _save_raster(state, grid)
    links.record(months, _settings(bag, network))
    return ContactRefresh(int(touched), len(seen.changed) + len(seen.gone), True)


def contact_raster(state: Path, bag: Path, network: ipaddress.IPv4Network | None) -> tuple[np.ndarray, int] | None:
    """The raster :func:`refresh_contacts` keeps (distinct pairs per cell, RASTER_ROWS x
    RASTER_COLUMNS at most) and its pair count, if it describes ``bag`` as it is."""
    if not _raster_path(state).exists() or MonthLinks(state).changes([], _settings(bag, network)) is None:
        return None
    grid = np.load(_raster_path(state))
    return grid, int(grid.sum())
