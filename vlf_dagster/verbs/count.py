"""`vlf count`: SiLK's rwcount -- records, bytes and packets per time bin."""

from __future__ import annotations

import argparse

from .common import HelpFormatter
from .text_options import add_input_argument, add_text_options, read_input, text_options, write_lines

SCHEME_HELP = (
    "how a flow spanning several bins is counted, by name (any unique prefix) or number: "
    "time-proportional (4, default): each bin gets the share of the flow's time spent in it, so counts "
    "can be fractional; bin-uniform (0): an equal share per bin touched; start-spike (1) / end-spike (2) "
    "/ middle-spike (3): everything in the bin holding the start / end / midpoint; maximum-volume (5): "
    "the whole flow in every bin touched; minimum-volume (6): the record in every bin touched, bytes and "
    "packets only when the flow fits in one bin"
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "count",
        help="records, bytes and packets per time bin (rwcount)",
        formatter_class=HelpFormatter,
        description=(
            "Spread flow records over fixed time bins and print one row per bin in rwcount's layout,\n"
            "Date|Records|Bytes|Packets| with two decimals. Times are UTC.\n\n"
            "Without --start-time the first row is the first bin holding bytes, and bins are anchored on the\n"
            "UTC day of the earliest start time (like rwcount, which anchors on the first record it reads).\n"
            "Without --end-time the last row is the last bin holding bytes. Empty bins in between are\n"
            "printed unless --skip-zeroes.\n\n"
            "example: vlf count --bin-size=3600 --load-scheme=start-spike FILE"
        ),
    )
    add_input_argument(p)
    p.add_argument("--bin-size", default="30", metavar="SECONDS", help="bin length in seconds, fractional allowed, at least 0.001 (default 30)")
    p.add_argument("--load-scheme", default="time-proportional", metavar="SCHEME", help=SCHEME_HELP)
    p.add_argument(
        "--start-time",
        metavar="TIME",
        help="the first bin starts exactly at TIME: YYYY/MM/DD[:HH[:MM[:SS[.sss]]]] (or T before the hour) "
        "or epoch seconds, UTC; flow time before it is not counted",
    )
    p.add_argument(
        "--end-time",
        metavar="TIME",
        help="the last bin is the one holding TIME, with unspecified hour, minute, second and millisecond "
        "set to their maximum (same formats as --start-time); flow time after it is not counted",
    )
    p.add_argument("--skip-zeroes", action="store_true", help="do not print bins that received no records")
    p.add_argument("--epoch-slots", action="store_true", help="label bins with epoch seconds (same as --timestamp-format=epoch)")
    add_text_options(p, keys=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..flows.tools.stats.count import count_bins, parse_bin_size, parse_load_scheme, parse_time
    from ..flows.tools.stats.text import format_count

    if args.epoch_slots:
        args.timestamp_format = "epoch"
    opts = text_options(args)
    # check every argument before reading the input
    parse_bin_size(args.bin_size)
    scheme = parse_load_scheme(args.load_scheme)
    if args.start_time is not None:
        parse_time(args.start_time, "--start-time")
    if args.end_time is not None:
        parse_time(args.end_time, "--end-time")
    table = read_input(args)
    result = count_bins(
        table,
        args.bin_size,
        scheme,
        start_time=args.start_time,
        end_time=args.end_time,
        skip_zeroes=args.skip_zeroes,
    )
    write_lines(format_count(result, args.bin_size, opts), args)
    return 0
