"""Monthly summaries of the whole archive, so the window's traffic figures never rescan it.

One DuckDB pass over a month's archive files (GROUPING SETS) gives two small tables:

- volumes: flows, packets and bytes per hour and flowtype (``sTime`` is the hour's first ms), what
  the Overall Traffic Volumes figure plots;
- ports: flows per flowtype, protocol, side (``s`` source port, ``d`` destination port) and port,
  what the Overall Port Usage table ranks.

Both add up across months exactly (they are counts), so the window's figures read 14 small files
instead of ~80,000 archive files, and a month is summarised again only when its hours change.
Readers: :func:`figures.traffic_volume_data` and :func:`ports.overall_port_usage` take them
in place of archive files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from ...flows import duck
from ...flows.schema import MS_PER_HOUR
from ...flows.sql import path_list
from ...flows.storage import write_parquet

VOLUME_SCHEMA = pa.schema([
    pa.field("sTime", pa.int64(), nullable=False),  # the hour, ms since the epoch
    pa.field("flowtype", pa.uint8(), nullable=False),
    pa.field("flows", pa.uint64(), nullable=False),
    pa.field("packets", pa.uint64(), nullable=False),
    pa.field("bytes", pa.uint64(), nullable=False),
])
PORT_SCHEMA = pa.schema([
    pa.field("flowtype", pa.uint8(), nullable=False),
    pa.field("protocol", pa.uint8(), nullable=False),
    pa.field("side", pa.string(), nullable=False),  # 's': counted under sPort, 'd': under dPort
    pa.field("port", pa.uint16(), nullable=False),
    pa.field("flows", pa.uint64(), nullable=False),
])


def monthly_traffic(archive_files: Sequence[Path], volumes_out: Path, ports_out: Path) -> tuple[int, int]:
    """Summarise ``archive_files`` (a month's) into the two tables; returns their row counts."""
    if archive_files:
        with duck.connect() as con:
            table = con.sql(
                "SELECT grouping(h, protocol, sPort, dPort) AS g, h, flowtype, protocol, sPort, dPort, "
                "count(*)::UBIGINT AS flows, sum(packets)::UBIGINT AS packets, sum(bytes)::UBIGINT AS bytes FROM "
                f"(SELECT (sTime // {MS_PER_HOUR}) * {MS_PER_HOUR} AS h, flowtype, protocol, sPort, dPort, packets, bytes "
                f" FROM read_parquet({path_list(archive_files)})) "
                "GROUP BY GROUPING SETS ((h, flowtype), (flowtype, protocol, sPort), (flowtype, protocol, dPort))"
            ).to_arrow_table()
    else:
        table = None
    volumes, ports = _split(table)
    write_parquet(volumes, volumes_out)
    write_parquet(ports, ports_out)
    return volumes.num_rows, ports.num_rows


def _split(table: pa.Table | None) -> tuple[pa.Table, pa.Table]:
    if table is None or table.num_rows == 0:
        return VOLUME_SCHEMA.empty_table(), PORT_SCHEMA.empty_table()
    g = table.column("g").to_numpy()
    # grouping() bits, first argument highest: h=8, protocol=4, sPort=2, dPort=1 (1 = not grouped)
    by_hour, by_sport, by_dport = g == 0b0111, g == 0b1001, g == 0b1010
    v = table.filter(pa.array(by_hour))
    order = np.lexsort((v.column("flowtype").to_numpy(), v.column("h").to_numpy()))
    volumes = pa.Table.from_arrays(
        [v.column("h").cast(pa.int64()).take(order), v.column("flowtype").cast(pa.uint8()).take(order),
         v.column("flows").take(order), v.column("packets").take(order), v.column("bytes").take(order)],
        schema=VOLUME_SCHEMA)
    parts = []
    for mask, side, column in ((by_sport, "s", "sPort"), (by_dport, "d", "dPort")):
        p = table.filter(pa.array(mask))
        parts.append(pa.Table.from_arrays(
            [p.column("flowtype").cast(pa.uint8()), p.column("protocol").cast(pa.uint8()),
             pa.array(np.full(p.num_rows, side, dtype=object), pa.string()), p.column(column).cast(pa.uint16()),
             p.column("flows")], schema=PORT_SCHEMA))
    ports = pa.concat_tables(parts)
    order = np.lexsort((ports.column("port").to_numpy(), ports.column("protocol").to_numpy(),
                        ports.column("flowtype").to_numpy(), ports.column("side").to_numpy(zero_copy_only=False)))
    return volumes, ports.take(order)
