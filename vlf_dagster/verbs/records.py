"""`vlf cat`, `vlf sort` and `vlf tuc`: SiLK's rwcat, rwsort and rwtuc over flow records.

Inputs are flow files (Parquet, Arrow IPC, SiLK flow files) or an Arrow IPC stream on stdin; the
output is a flow file (``.parquet``: Parquet, else an Arrow IPC stream) or stdout (an Arrow IPC
stream, or `vlf cut` text on a terminal).  Output files must not exist unless SILK_CLOBBER is set.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .common import SILK_OUTPUT_HELP, HelpFormatter, VerbError, check_clobber, read_binary_input, read_flows, write_flows

if TYPE_CHECKING:
    import pyarrow as pa

# numpy, pyarrow and the engines are imported where they are used: building the parser (and
# --help) stays light.


def _output(path: str | None) -> str:
    dest = "-" if path in (None, "-", "stdout") else path
    check_clobber(dest)
    return dest


def _inputs(files: list[str]) -> list[str]:
    return ["-" if f == "stdin" else f for f in files] or ["-"]


# --- cat ---------------------------------------------------------------------------------------


def run_cat(args) -> int:
    dest = _output(args.output_path)
    table = read_flows(_inputs(args.files))
    write_flows(table, dest, silk=args.silk)
    return 0


# --- sort --------------------------------------------------------------------------------------


def sort_flows(table: pa.Table, fields: str, *, reverse: bool = False) -> pa.Table:
    """rwsort: records ordered by ``fields`` (rwcut's names and numbers), ties in input order.

    Addresses order as 128-bit values, IPv4 at ::ffff:a.b.c.d (where an IPv6-enabled SiLK puts
    them); eTime is sTime + duration; iType/iCode order non-ICMP records first."""
    import pyarrow as pa

    from ..flows import duck
    from ..flows.fields import FieldError, parse_fields
    from ..flows.sql import ident

    try:
        chosen = parse_fields(fields)
    except FieldError as exc:
        raise VerbError(str(exc)) from None
    keys = []
    for field in chosen:
        if field.kind == "ip":
            v4, v6 = ident(field.name), ident(field.name + "v6")
            keys.append(f"CASE WHEN {v6} IS NOT NULL THEN {v6}::BLOB "
                        f"ELSE unhex('00000000000000000000ffff' || lpad(to_hex({v4}), 8, '0')) END")
        else:
            keys.append(f"({field.sql})")
    direction = " DESC" if reverse else ""
    order = ", ".join(f"{k}{direction} NULLS FIRST" for k in keys)
    con = duck.connect()
    try:
        con.register("flows", table.append_column("__vlf_row", pa.array(range(table.num_rows), pa.int64())))
        rows = con.sql(f"SELECT __vlf_row FROM flows ORDER BY {order}, __vlf_row").fetchnumpy()["__vlf_row"]
    finally:
        con.close()
    return table.take(pa.array(rows))


def run_sort(args) -> int:
    dest = _output(args.output_path)
    write_flows(sort_flows(read_flows(_inputs(args.files)), args.fields, reverse=args.reverse), dest, silk=args.silk)
    return 0


# --- tuc ---------------------------------------------------------------------------------------


def run_tuc(args) -> int:
    from ..flows.importers.result import ImportFormatError
    from ..flows.importers.rwcut import parse_rwcut

    data, label = read_binary_input(_inputs([args.file] if args.file else [])[0], "rwcut text")
    dest = _output(args.output_path)
    fields = args.fields
    if args.no_titles and not fields:
        from ..flows.tools.cut import DEFAULT_FIELDS

        fields = DEFAULT_FIELDS
    from ..flows.site import load_site

    site = load_site(args.site_config_file)
    try:
        result = parse_rwcut(data, label, fields=fields if args.no_titles or fields else None, delimiter=args.column_separator,
                             sensor_names=site.sensors, keep_types=True)
    except ImportFormatError as exc:
        raise VerbError(str(exc)) from None
    for reason, count in result.reasons():
        print(f"vlf tuc: {label}: {count:,} line(s) skipped: {reason}", file=sys.stderr)
    write_flows(result.flows, dest, silk=args.silk)
    return 0


OUTPUT_HELP = "output file (.parquet: Parquet, else Arrow IPC; default stdout)"


def _add_output_options(parser) -> None:
    parser.add_argument("--output-path", metavar="PATH", help=OUTPUT_HELP)
    parser.add_argument("--silk", action="store_true", help=SILK_OUTPUT_HELP)


def register(sub) -> None:
    p = sub.add_parser("cat", help="rwcat: concatenate flow files into one", formatter_class=HelpFormatter,
                       description="Concatenate flow files (Parquet, Arrow IPC, SiLK flow files; stdin) into one output, in input order.")
    p.add_argument("files", nargs="*", help="flow files; none or `-` reads stdin")
    _add_output_options(p)
    p.set_defaults(func=run_cat)

    p = sub.add_parser("sort", help="rwsort: sort flow records by fields", formatter_class=HelpFormatter,
                       description="Sort flow records by --fields (rwcut's names, unique prefixes and numbers), in order.\n"
                       "Addresses sort as 128-bit values with IPv4 at ::ffff:a.b.c.d; records with equal keys keep their\n"
                       "input order (rwsort does not promise one).")
    p.add_argument("files", nargs="*", help="flow files; none or `-` reads stdin")
    p.add_argument("--fields", required=True, help="sort keys, e.g. sip,dport,stime or 1-5")
    p.add_argument("--reverse", action="store_true", help="largest first")
    _add_output_options(p)
    p.set_defaults(func=run_sort)

    p = sub.add_parser("tuc", help="rwtuc: flow records from rwcut text", formatter_class=HelpFormatter,
                       description="Make flow records from rwcut text ('|' or tab separated, padded or not). The title line\n"
                       "names the columns; without one give --fields (and --no-titles). Lines that cannot be read are\n"
                       "counted on stderr by reason; the others are written. Sensor names are the site's; flow types SiLK's\n"
                       "(in, out, inweb, ...).")
    p.add_argument("file", nargs="?", metavar="FILE", help="rwcut text ('-' or none: stdin)")
    p.add_argument("--fields", help="the columns, when the text has no title line (rwcut --fields syntax)")
    p.add_argument("--no-titles", action="store_true", help="the first line is a record, not titles")
    p.add_argument("--column-separator", metavar="C", help="the separator (default: '|' or tab, sniffed)")
    p.add_argument("--site-config-file", metavar="PATH", help="site TOML naming the sensors (default: the site lookup)")
    _add_output_options(p)
    p.set_defaults(func=run_tuc)
