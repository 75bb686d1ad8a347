"""`vlf uniq`: SiLK's rwuniq -- bin flows by key fields and print each bin's aggregate values."""

from __future__ import annotations

import argparse

from .common import HelpFormatter
from .text_options import FIELDS_HELP, VALUES_HELP, OptionalValue, add_input_argument, add_text_options, is_number, read_input, text_options, wide_addresses, write_lines


class _Legacy(argparse.Action):
    """rwuniq's deprecated value switches: bare = add the value, with MIN[-MAX] = a threshold."""

    def __call__(self, parser, namespace, values, option_string=None):
        if isinstance(values, str) and values != self.const and not values.replace("-", "").strip().isdigit():
            # not MIN[-MAX]: argparse took the next word (an input file) as the optional value
            namespace.spilled_files = list(getattr(namespace, "spilled_files", None) or []) + [values]
            values = self.const
        items = list(getattr(namespace, "legacy", None) or [])
        items.append((self.const, values))
        namespace.legacy = items


_LEGACY = {  # switch -> value name
    "--bytes": "bytes",
    "--packets": "packets",
    "--flows": "records",
    "--sip-distinct": "sip-distinct",
    "--dip-distinct": "dip-distinct",
    "--stime": "stime-earliest",
    "--etime": "etime-latest",
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "uniq",
        help="bin flows by key fields and print each bin's counts (rwuniq)",
        formatter_class=HelpFormatter,
        description=(
            "Group flow records by the --fields key and print, for each bin, the --values\n"
            "(default: the number of records), in rwuniq's layout: right-aligned columns\n"
            "separated by '|' (also after the last one); keys shown as rwcut shows them.\n"
            "Without --sort-output bins come in no particular order, as in SiLK.\n\n"
            "example (the VLF study): vlf uniq --fields=sip --values=flows,distinct:dip --threshold=flows=1-10 FILE"
        ),
    )
    add_input_argument(p)
    p.add_argument("--fields", required=True, metavar="KEYS", help=FIELDS_HELP)
    p.add_argument("--values", metavar="VALUES", help=VALUES_HELP)
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="VALUE=MIN[-MAX]",
        help="print only bins whose VALUE (records/flows, packets, bytes, sIP-Distinct, dIP-Distinct or "
        "distinct:FIELD) is at least MIN and, if given, at most MAX; a MIN of 0 counts as 1; repeat for "
        "several values (all must hold); a VALUE not in --values is appended to them (SiLK 3.17 semantics)",
    )
    p.add_argument("--sort-output", action="store_true", help="print the bins sorted by key (numerically, key fields in order)")
    p.add_argument(
        "--bin-time",
        action=OptionalValue,
        accept=is_number,
        const="60",
        metavar="SECONDS",
        help="floor the sTime and eTime keys to SECONDS-long bins (default 1; bare switch: 60); a fractional "
        "SECONDS (>= 0.001) keeps milliseconds in times, durations and sTime-Earliest/eTime-Latest. With "
        "both sTime and eTime keys, duration is shown as eTime - sTime of the binned times",
    )
    p.add_argument("--presorted-input", action="store_true", help="accepted for SiLK compatibility; has no effect")
    legacy = p.add_argument_group("deprecated value switches (rwuniq's older spelling)")
    legacy.add_argument("--all-counts", action=_Legacy, nargs=0, const="all", help="add bytes, packets, records, sTime-Earliest, eTime-Latest")
    for switch, value in _LEGACY.items():
        if value.endswith(("-earliest", "-latest")):
            legacy.add_argument(switch, action=_Legacy, nargs=0, const=value, help=f"add {value} to the values")
        else:
            legacy.add_argument(
                switch,
                action=_Legacy,
                nargs="?",
                const=value,
                metavar="MIN[-MAX]",
                help=f"bare: add {value} to the values; with MIN[-MAX]: same as --threshold={value}=MIN[-MAX]",
            )
    add_text_options(p)
    p.set_defaults(func=run, legacy=[])


def _values_and_thresholds(args: argparse.Namespace) -> tuple[list, list]:
    from ..flows.tools.stats.keys import Threshold, parse_range, parse_threshold, parse_value, parse_values, value_id

    values = parse_values(args.values) if args.values else []
    thresholds = [parse_threshold(t) for t in args.threshold]
    present = {value_id(v) for v in values}

    def add(name: str) -> None:
        value = parse_value(name)
        if value_id(value) not in present:
            present.add(value_id(value))
            values.append(value)

    for name, arg in args.legacy:
        if name == "all":
            for item in ("bytes", "packets", "records", "stime-earliest", "etime-latest"):
                add(item)
        elif isinstance(arg, str) and arg != name:
            low, high = parse_range(arg, f"--{name}")
            thresholds.append(Threshold(parse_value(name), low, high))
        else:
            add(name)
    return values, thresholds


def run(args: argparse.Namespace) -> int:
    from ..flows.tools.stats.keys import make_plan
    from ..flows.tools.stats.text import format_uniq
    from ..flows.tools.stats.uniq import uniq_plan

    opts = text_options(args)
    values, thresholds = _values_and_thresholds(args)
    make_plan(args.fields, values, thresholds, bin_time=args.bin_time)  # check before reading input
    table = read_input(args)
    plan, result = uniq_plan(table, args.fields, values, thresholds, bin_time=args.bin_time, sort=args.sort_output, wide=wide_addresses(args))
    write_lines(format_uniq(result, plan, opts), args)
    return 0


