"""`vlf sql`: ad-hoc DuckDB SQL over the study's catalog (data/catalog.duckdb), read-only."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from .common import HelpFormatter, VerbError

# DuckDB is imported where it is used: building the parser (and --help) stays light.

DESCRIPTION = """\
Run SQL on the catalog the sql_catalog asset writes (data/catalog.duckdb): views `flows` (the
archive, with flowtype_name), `quarantine`, `hourly_source_bags`, `hourly_contact_pairs` (with
their `hour`), `monthly_*` (with their `month`), the window bags, `vlf_flows`,
`matched_vlf_flows`, `vlf_categories`, the IP sets (`ip_sets`, `vlf_fd_set`, ...) and a
`catalog` table describing them.  Macros: ipv4_text(sIP), ip_text(sIP, sIPv6), flag_text(flags),
ms_time(sTime).  The catalog is opened read-only; several readers may run at once.  Only
queries run (SELECT, EXPLAIN, DESCRIBE, SHOW, SUMMARIZE), and they read the data folder's files
and no other: no COPY ... TO, no read_text('/etc/...'), no ATTACH, no SET.

  vlf sql "SELECT ip_text(sIP, sIPv6) AS source, count(*) FROM vlf_flows GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
"""


# Statements that only read: anything else (COPY ... TO, SET, ATTACH, INSTALL, ...) is refused
# before it runs; the connection itself reads only the data folder's files (analysis.catalog).
QUERY_STATEMENTS = ("SELECT", "EXPLAIN")  # duckdb.StatementType names


def register(subparsers) -> None:
    p = subparsers.add_parser("sql", help="ad-hoc SQL over the study's DuckDB catalog (read-only)",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("query", nargs="?", metavar="QUERY", help="the SQL (default: read from stdin; none: list the catalog)")
    p.add_argument("--data-dir", help="data folder holding catalog.duckdb (default: $VLF_DATA_DIR or data)")
    p.add_argument("--catalog", metavar="PATH", help="a catalog file elsewhere")
    p.add_argument("--delimited", nargs="?", const=",", metavar="C",
                   help="print every row as delimited text with a header, separator C (default ','; write --delimited=C)")
    p.add_argument("--num-recs", type=int, default=40, metavar="N", help="rows shown in the table layout (default 40)")
    p.set_defaults(func=run)


def run(args) -> int:
    import duckdb

    from ..analysis.steps.catalog import CatalogError, connect

    query, delimiter = args.query, args.delimited
    if delimiter is not None and len(delimiter) != 1 and query is None:
        # `--delimited "SELECT ..."`: argparse took the query as the separator; write --delimited=C
        query, delimiter = delimiter, ","
    if query is None and not sys.stdin.isatty():
        query = sys.stdin.read()
    if not query or not query.strip():
        query = "SELECT name, kind, rows_at_refresh, description FROM catalog ORDER BY rowid"
    base = Path(args.data_dir or os.environ.get("VLF_DATA_DIR", "data"))
    try:
        con = connect(base, args.catalog)
    except CatalogError as exc:
        raise VerbError(str(exc)) from None
    try:
        refused = [s.type.name for s in duckdb.extract_statements(query) if s.type.name not in QUERY_STATEMENTS]
        if refused:
            raise VerbError(f"vlf sql runs queries only (SELECT, EXPLAIN, DESCRIBE, SHOW, SUMMARIZE), not {refused[0]}")
        if delimiter is not None:
            cursor = con.execute(query)  # streams: rows are fetched in chunks, never all at once
            if cursor.description is None:
                return 0
            writer = csv.writer(sys.stdout, delimiter=delimiter, lineterminator="\n")
            writer.writerow([column[0] for column in cursor.description])
            while rows := cursor.fetchmany(10_000):
                writer.writerows(rows)
        elif (relation := con.sql(query)) is not None:
            relation.show(max_rows=args.num_recs, max_width=10_000)
    except duckdb.Error as exc:
        raise VerbError(str(exc).strip().splitlines()[0]) from None
    finally:
        con.close()
    return 0
