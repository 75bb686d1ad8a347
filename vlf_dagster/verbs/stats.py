"""`vlf stats`: SiLK's rwstats (top-N / bottom-N mode) -- rank bins by their first value."""

from __future__ import annotations

import argparse

from .common import HelpFormatter
from .text_options import FIELDS_HELP, OptionalValue, add_input_argument, add_text_options, is_number, read_input, text_options, wide_addresses, write_lines


def _non_negative_int(text: str | None, switch: str) -> int | None:
    from ..flows.tools.stats.keys import StatsError

    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise StatsError(f"invalid {switch} {text!r}: expected a non-negative integer")
    return value


def _percentage(text: str | None) -> float | None:
    from ..flows.tools.stats.keys import StatsError

    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 100.0:
        raise StatsError(f"invalid --percentage {text!r}: expected a number from 0 to 100")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "stats",
        help="top-N or bottom-N bins by a value, with percentages (rwstats)",
        formatter_class=HelpFormatter,
        description=(
            "Group flow records by the --fields key, compute the --values for each bin and print the\n"
            "bins ranked by the FIRST value (the primary value), largest first (--top, the default) or\n"
            "smallest first (--bottom), in rwstats' layout:\n\n"
            "  INPUT: N Records for M Bins and T Total <value>\n"
            "  OUTPUT: Top K Bins by <value>\n"
            "  key|values|%<value>|cumul_%|\n\n"
            "%<value> is the bin's share of the total of the primary value over all records (for a distinct\n"
            "count: of the number of distinct values overall, so cumul_% can pass 100); cumul_% adds them up.\n"
            "Ties: bins with the same primary value are printed in key order, smaller key first, so the output\n"
            "is deterministic (SiLK leaves their order arbitrary, so the Nth bin may differ from SiLK's).\n"
            "Exactly one of --count, --threshold, --percentage is required.\n\n"
            "example: vlf stats --fields=dport --values=flows,distinct:sip --count=20 FILE"
        ),
    )
    add_input_argument(p)
    p.add_argument("--fields", required=True, metavar="KEYS", help=FIELDS_HELP)
    p.add_argument(
        "--values",
        metavar="VALUES",
        help="aggregate values per bin, comma-separated, case-insensitive, any unique prefix: records (alias "
        "flows), packets, bytes, sIP-Distinct, dIP-Distinct, distinct:FIELD (FIELD may not also be a key); "
        "sTime-Earliest and eTime-Latest may follow but cannot rank. The first value ranks the bins. "
        "Default: records",
    )
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("--count", metavar="N", help="print the N bins with the largest (smallest) primary value; 0 prints all bins")
    limit.add_argument(
        "--threshold",
        metavar="N",
        help="print the bins whose primary value is at least N (with --bottom: at most N)",
    )
    limit.add_argument(
        "--percentage",
        metavar="P",
        help="print the bins whose primary value is at least (--bottom: at most) P percent of the total, "
        "0-100, fractional allowed; the cut-off is P*total/100 truncated to an integer, as in SiLK",
    )
    direction = p.add_mutually_exclusive_group()
    direction.add_argument("--top", dest="bottom", action="store_false", help="largest values first (default)")
    direction.add_argument("--bottom", dest="bottom", action="store_true", help="smallest values first")
    p.add_argument("--no-percents", action="store_true", help="do not print the %%<value> and cumul_%% columns")
    p.add_argument(
        "--bin-time",
        action=OptionalValue,
        accept=is_number,
        const="60",
        metavar="SECONDS",
        help="floor the sTime and eTime keys to SECONDS-long bins (default 1; bare switch: 60; fractional "
        "values keep milliseconds)",
    )
    p.add_argument("--presorted-input", action="store_true", help="accepted for SiLK compatibility; has no effect")
    add_text_options(p)
    p.set_defaults(func=run, bottom=False)


def run(args: argparse.Namespace) -> int:
    from ..flows.tools.stats.keys import StatsError, make_plan
    from ..flows.tools.stats.text import format_top
    from ..flows.tools.stats.top import top_n

    opts = text_options(args)
    limits = {
        "count": _non_negative_int(args.count, "--count"),
        "threshold": _non_negative_int(args.threshold, "--threshold"),
        "percentage": _percentage(args.percentage),
    }
    if all(v is None for v in limits.values()):
        raise StatsError("give one of --count=N, --threshold=N or --percentage=P")
    plan = make_plan(args.fields, args.values, bin_time=args.bin_time)  # check before reading input
    if plan.values[0].kind in ("stime", "etime"):
        raise StatsError(f"{plan.values[0].title} cannot be the first (ranking) value of stats")
    table = read_input(args)
    result = top_n(table, args.fields, args.values, bottom=args.bottom, bin_time=args.bin_time, **limits, wide=wide_addresses(args))
    write_lines(format_top(result, opts, percents=not args.no_percents), args)
    return 0
