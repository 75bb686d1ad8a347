"""`vlf match`: label query and response flows that form conversations, as SiLK's rwmatch."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from .common import SILK_OUTPUT_HELP, HelpFormatter, VerbError, check_clobber, read_flows, write_flows

DESCRIPTION = """\
Match QUERY flows with RESPONSE flows and write the matched records to OUTPUT ('-': stdout,
an Arrow IPC stream, or text via `vlf cut` on a terminal), as rwmatch does: each match gets an
id in the low 24 bits of nhIP, with top byte 0 for query records and 255 for responses
(0.0.0.1 / 255.0.0.1 for match 1).  Print them with `vlf cut --fields=match,...`.

--relate=Q,R (repeatable, one-way): field Q of a query equals field R of a response.  For
TCP/UDP conversations give all of: --relate=1,2 --relate=4,3 --relate=2,1 --relate=3,4 --relate=5,5
Inputs need not be sorted: each side is sorted by its relate fields, then sTime.

Examples:
  vlf match --relate=1,2 --relate=4,3 --relate=2,1 --relate=3,4 --relate=5,5 in.parquet out.parquet matched.parquet
  vlf match --relate=sip,dip --relate=dip,sip --time-delta=0.5 --unmatched=b q.parquet r.parquet - | vlf cut --fields=match,1-5
"""


def parse_time_delta(text: str) -> int:
    """--time-delta=SECONDS (decimal) -> milliseconds, truncated as rwmatch does."""
    try:
        seconds = Decimal(str(text).strip())
    except InvalidOperation:
        raise VerbError(f"invalid --time-delta {text!r}: expected seconds, e.g. 0.5") from None
    if not seconds.is_finite() or seconds < 0 or seconds > 2**31 - 1:
        raise VerbError(f"invalid --time-delta {text!r}: expected seconds between 0 and {2**31 - 1}")
    return int(seconds * 1000)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "match", help="match query and response flows (rwmatch)", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    p.add_argument("query", metavar="QUERY", help="query flows ('-': stdin)")
    p.add_argument("response", metavar="RESPONSE", help="response flows ('-': stdin)")
    p.add_argument("output", metavar="OUTPUT", help="output file (.parquet or Arrow IPC stream), '-' for stdout")
    p.add_argument("--relate", action="append", required=True, metavar="Q,R", help="a query field and a response field that must be equal")
    p.add_argument("--time-delta", default="0", metavar="SECONDS", help="allowed time difference, decimal seconds (default 0)")
    p.add_argument("--symmetric-delta", action="store_true", help="also match responses that start before their query")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--absolute-delta", dest="delta_mode", action="store_const", const="absolute",
                      help="window ends time-delta after the first record's end (default)")
    mode.add_argument("--relative-delta", dest="delta_mode", action="store_const", const="relative",
                      help="window ends time-delta after the latest end time in the match")
    mode.add_argument("--infinite-delta", dest="delta_mode", action="store_const", const="infinite",
                      help="after the first pair, match on the relate fields alone")
    p.add_argument("--unmatched", metavar="q|r|b", help="also write unmatched query (q), response (r) or both (b) records")
    p.add_argument("--silk", action="store_true", help=SILK_OUTPUT_HELP + " (match ids in nhIP, as rwmatch keeps them)")
    p.set_defaults(func=run, delta_mode="absolute")


def run(args) -> int:
    from ..flows.tools.match import match

    if args.query == "-" and args.response == "-":
        raise VerbError("QUERY and RESPONSE cannot both be stdin")
    delta_ms = parse_time_delta(args.time_delta)
    unmatched = args.unmatched
    if unmatched is not None and unmatched.lower() not in ("q", "r", "b"):
        raise VerbError(f"invalid --unmatched {unmatched!r}: argument must be one of q, r, b")
    # check the relate pairs before reading any input
    from ..flows.tools.match import normalize_relate

    relate = normalize_relate(args.relate)
    check_clobber(args.output)  # as rwmatch: an existing file is replaced only with SILK_CLOBBER set
    query = read_flows([args.query])
    response = read_flows([args.response])
    table = match(
        query, response, relate, time_delta_ms=delta_ms, symmetric=args.symmetric_delta,
        delta_mode=args.delta_mode, unmatched=unmatched,
    )
    write_flows(table, args.output, silk=args.silk)
    return 0
