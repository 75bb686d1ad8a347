"""`vlf filter`: SiLK's rwfilter over the archive, flow files or a stdin stream."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import (SILK_OUTPUT_HELP, HelpFormatter, check_clobber, damaged_parquet_file, parquet_flow_files, read_flows,
                     write_flows)

if TYPE_CHECKING:
    from ..flows.tools.filter.spec import FilterSpec
    from ..flows.site import Site

# The engine (DuckDB, pyarrow) is imported inside the functions that run it, so that building the
# parser (and --help) stays light.

DESCRIPTION = """\
Partition flow records into pass and fail streams (SiLK's rwfilter).

Input is either the archive, chosen with the selection switches (--data-dir, --start-date,
--end-date, --type/--flowtypes/--class, --sensors), or the flow files named as arguments
(Parquet, Arrow IPC file or stream; '-' or 'stdin' reads an Arrow IPC stream from stdin).  With
files, --type/--flowtypes/--class and --sensors become per-record tests.

Every partitioning switch is a test and a record passes when it passes all of them; the items of
one switch's list are alternatives.  Each test is compiled into one parameterised DuckDB WHERE
clause.  Outputs: --pass-destination, --fail-destination, --all-destination (repeatable; '-' or
'stdout' is an Arrow IPC stream on stdout), --print-statistics, --print-volume-statistics.
Option names may be abbreviated to any unique prefix (--pass, --proto).

Unlike rwfilter, an archive pull needs no partitioning switch: with only selection switches
every selected record passes.  Files and stdin still need at least one test (or only
--all-destination).

Dates are UTC.  --start-date/--end-date take YYYY/MM/DD[:HH] or epoch seconds: both with hours
select every hour between them; a start without an hour selects whole days (the end's hour is
ignored); a start with an hour and an end without one reuses the start's hour; a start alone is
that day or that hour; a selection switch without dates (--type, --sensors, --data-dir) means
today; with neither files nor a selection switch there is no input (an error); an end without a
start is an error.
Time windows (--stime, --etime, --active-time) are START[-END] with each side
YYYY/MM/DD[:HH[:MM[:SS[.sss]]]] or epoch seconds; missing start parts are 0, missing end parts
23:59:59.999, and a single time is a 1 ms window.

examples:
  vlf filter --start-date 2006/04/01 --end-date 2006/04/03 --type all --proto 6 \\
      --flags-all S/SA --pass syn-only.parquet --print-statistics
  vlf filter --sipset vlf_fd_set.set --type in,inweb --pass - | vlf filter - --dport 22 --pass ssh.parquet
"""

# Switches that take one value and may be given once (as rwfilter: "Switch used multiple times").
_SINGLE = (
    "saddress", "daddress", "any_address", "next_hop_id",
    "scidr", "dcidr", "any_cidr", "nhcidr",
    "sipset", "dipset", "anyset", "nhipset",
)  # fmt: skip
_SPEC_SINGLE = (
    [s for stem in _SINGLE for s in (stem, "not_" + stem)]
    + ["sport", "dport", "aport", "protocol", "icmp_type", "icmp_code", "application", "input_index",
       "output_index", "any_index", "ip_version", "tcp_flags", "attributes", "packets", "bytes",
       "bytes_per_packet", "duration", "stime", "etime", "active_time"]
)  # fmt: skip
_FLAG_NAMES = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")
_SELECTION_SINGLE = ("start_date", "end_date", "data_dir", "site_config_file", "klass", "type", "flowtypes", "sensors")


def register(subparsers) -> None:
    from ..flows.flowtypes import DEFAULT_TYPES, TYPE_IDS

    p = subparsers.add_parser(
        "filter",
        help="partition flow records into pass and fail streams (rwfilter)",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    p.add_argument("inputs", nargs="*", metavar="FILE", help="flow files to read instead of the archive ('-' or 'stdin': stdin)")

    once = dict(action="append")

    g = p.add_argument_group("selection switches (archive input; with FILEs the type/sensor switches test each record)")
    g.add_argument("--data-dir", "--data-rootdir", dest="data_dir", metavar="DIR", **once,
                   help="data directory holding archive/ (default: $VLF_DATA_DIR or ./data)")
    g.add_argument("--site-config-file", metavar="FILE", **once,
                   help="site configuration (default: $VLF_SITE_CONFIG, else DIR/site.toml, else the packaged default)")
    g.add_argument("--start-date", metavar="YYYY/MM/DD[:HH]", **once, help="first day or hour to read (UTC; or epoch seconds)")
    g.add_argument("--end-date", metavar="YYYY/MM/DD[:HH]", **once, help="last day or hour to read; needs --start-date")
    g.add_argument("--class", dest="klass", metavar="CLASS", **once, help="flow class; the only class is 'all'")
    g.add_argument("--type", metavar="TYPES", **once,
                   help=f"comma list of types or 'all' (types: {', '.join(TYPE_IDS)}; default {','.join(DEFAULT_TYPES)})")
    g.add_argument("--flowtypes", metavar="CLASS/TYPE,...", **once, help="class/type pairs, e.g. all/in,all/outweb or all/all")
    g.add_argument("--sensors", metavar="SENSORS", **once, help="sensor names, ids and id ranges, e.g. S0,S2 or 0-3 (default: all)")
    g.add_argument("--print-filenames", action="store_true", help="print the name of each input file to stderr")

    g = p.add_argument_group("output switches (at least one is required)")
    g.add_argument("--pass-destination", action="append", default=[], metavar="PATH",
                   help="write records that pass every test here ('-' or 'stdout': Arrow IPC stream; *.parquet: Parquet); repeatable")
    g.add_argument("--fail-destination", action="append", default=[], metavar="PATH", help="write records that fail any test here; repeatable")
    g.add_argument("--all-destination", action="append", default=[], metavar="PATH", help="write every record read here; repeatable")
    g.add_argument("--print-statistics", nargs="?", const="stderr", metavar="FILE",
                   help="print files, records read, passed and failed to stderr, or with =FILE to FILE (stdout: standard output)")
    g.add_argument("--print-volume-statistics", nargs="?", const="stderr", metavar="FILE",
                   help="print records, packets and bytes for total, pass and fail (and files) to stderr, or with =FILE to FILE")
    g.add_argument("--silk", action="store_true", help=SILK_OUTPUT_HELP)
    g.add_argument("--max-pass-records", type=str, metavar="N", **once, help="write at most N records to each pass destination")
    g.add_argument("--max-fail-records", type=str, metavar="N", **once, help="write at most N records to each fail destination")

    g = p.add_argument_group("address switches (each has a --not- form; a switch and its --not- form exclude each other)")
    for family, who in (("s", "source"), ("d", "destination"), ("any", "source or destination"), ("nh", "next-hop")):
        address = {"s": "saddress", "d": "daddress", "any": "any-address", "nh": "next-hop-id"}[family]
        cidr = {"s": "scidr", "d": "dcidr", "any": "any-cidr", "nh": "nhcidr"}[family]
        ipset = {"s": "sipset", "d": "dipset", "any": "anyset", "nh": "nhipset"}[family]
        for not_, verb in (("", "matches"), ("not-", "does not match")):
            g.add_argument(f"--{not_}{address}", metavar="IP_WILDCARD", **once,
                           help=f"pass if the {who} address {verb} one IP, CIDR block or wildcard (10.x.1-2.4,5; ::ffff:0:x)")
            g.add_argument(f"--{not_}{cidr}", metavar="IP_OR_CIDR_LIST", **once,
                           help=f"pass if the {who} address {verb} a comma list of IPv4/IPv6 addresses and CIDR blocks")
            g.add_argument(f"--{not_}{ipset}", metavar="IP_SET_FILE", **once,
                           help=f"pass if the {who} address {'is' if not not_ else 'is not'} in this IP set file")

    g = p.add_argument_group("port, protocol and other integer switches (INTEGER_LIST: 1,3,5-10,1024-)")
    g.add_argument("--sport", metavar="INTEGER_LIST", **once, help="source port in the list (0-65535)")
    g.add_argument("--dport", metavar="INTEGER_LIST", **once, help="destination port in the list (raw value: type*256+code for ICMP)")
    g.add_argument("--aport", metavar="INTEGER_LIST", **once, help="source or destination port in the list")
    g.add_argument("--protocol", metavar="INTEGER_LIST", **once, help="IP protocol in the list (0-255)")
    g.add_argument("--icmp-type", metavar="INTEGER_LIST", **once,
                   help="ICMP type in the list (0-255); the record must be ICMP (protocol 1, or 58 on IPv6)")
    g.add_argument("--icmp-code", metavar="INTEGER_LIST", **once, help="ICMP code in the list (0-255); the record must be ICMP")
    g.add_argument("--application", metavar="INTEGER_LIST", **once, help="application (appLabel port) in the list")
    g.add_argument("--input-index", metavar="INTEGER_LIST", **once, help="'in' interface in the list")
    g.add_argument("--output-index", metavar="INTEGER_LIST", **once, help="'out' interface in the list")
    g.add_argument("--any-index", metavar="INTEGER_LIST", **once, help="'in' or 'out' interface in the list")
    g.add_argument("--ip-version", metavar="4|6|4,6", **once, help="IP version of the record")

    g = p.add_argument_group("TCP flag and attribute switches (letters F S R P A U E C; HIGH/MASK: HIGH on, rest of MASK off)")
    g.add_argument("--flags-all", action="append", default=[], metavar="HIGH/MASK,...",
                   help="any pair matches the OR of all packets' flags (S/SA, S/S,A/A, /F); repeatable; no protocol check")
    g.add_argument("--flags-initial", action="append", default=[], metavar="HIGH/MASK,...", help="as --flags-all on the first packet's flags")
    g.add_argument("--flags-session", action="append", default=[], metavar="HIGH/MASK,...", help="as --flags-all on packets 2..n")
    g.add_argument("--tcp-flags", metavar="FLAGS", **once, help="legacy: any of these flags is set")
    for name in _FLAG_NAMES:
        g.add_argument(f"--{name}-flag", dest=f"flag_{name}", metavar="0|1", **once, help=f"legacy: the {name.upper()} flag is off (0) or on (1)")
    g.add_argument("--attributes", metavar="HIGH/MASK,...", **once, help="attribute HIGH/MASK pairs over S, T, C, F (e.g. T/T)")

    g = p.add_argument_group("volume and time switches")
    g.add_argument("--packets", metavar="MIN-MAX", **once, help="packet count in MIN-MAX, MIN- or exactly N")
    g.add_argument("--bytes", metavar="MIN-MAX", **once, help="byte count in MIN-MAX, MIN- or exactly N")
    g.add_argument("--bytes-per-packet", metavar="MIN-MAX", **once, help="bytes/packets in this decimal range")
    g.add_argument("--duration", metavar="MIN-MAX", **once, help="duration in seconds in this decimal range (5.0-10.031, 1.5-, 2)")
    g.add_argument("--stime", metavar="TIME_WINDOW", **once, help="start time inside the window")
    g.add_argument("--etime", metavar="TIME_WINDOW", **once, help="end time (sTime+duration) inside the window")
    g.add_argument("--active-time", metavar="TIME_WINDOW", **once, help="the flow was active during the window (sTime <= max, eTime >= min)")
    p.set_defaults(func=run)


def _one(args, name: str):
    """The value of a once-only switch (stored as a list to notice repeats)."""
    from ..flows.tools.filter.spec import FilterError, option_name

    values = getattr(args, name, None)
    if not values:
        return None
    if len(values) > 1:
        flag = "--class" if name == "klass" else option_name(name)
        raise FilterError(f"{flag}: switch used multiple times")
    return values[0]


def spec_from_args(args) -> FilterSpec:
    from ..flows.tools.filter.spec import FilterSpec

    spec = FilterSpec()
    for name in _SPEC_SINGLE:
        setattr(spec, name, _one(args, name))
    spec.flags_all = list(args.flags_all)
    spec.flags_initial = list(args.flags_initial)
    spec.flags_session = list(args.flags_session)
    spec.flag_bits = {n: v for n in _FLAG_NAMES if (v := _one(args, f"flag_{n}")) is not None}
    return spec


def _types(args) -> list[int] | None:
    """Flowtype ids from --class/--type/--flowtypes, or None when none is given."""
    from ..flows.tools.filter.selection import parse_flowtypes, parse_type_list
    from ..flows.tools.filter.spec import FilterError

    klass, types, flowtypes = _one(args, "klass"), _one(args, "type"), _one(args, "flowtypes")
    if klass is not None and klass != "all":
        raise FilterError(f"--class: unknown class {klass!r} (the only class is 'all')")
    if flowtypes is not None:
        if klass is not None or types is not None:
            raise FilterError("--flowtypes cannot be used with --class or --type")
        return parse_flowtypes(flowtypes)
    if types is not None:
        return parse_type_list(types)
    if klass is not None:
        return parse_type_list(None)
    return None


def _site(args, data_dir: Path | None) -> Site:
    from ..flows.site import resolve_site

    return resolve_site(_one(args, "site_config_file"), data_dir)


def _max_records(args, name: str) -> int | None:
    from ..flows.tools.filter.spec import FilterError, option_name

    value = _one(args, name)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise FilterError(f"{option_name(name)}: invalid count {value!r}")
    return int(value) or None  # 0 means no limit, as rwfilter


def _destinations(values: list[str]) -> list[str]:
    return ["-" if v == "stdout" else v for v in values]


def _scanned_straight_out(passes, fails, alls, stats_wanted, max_pass, compiled) -> bool:
    """Whether the only output is one pass destination that the records can go to as DuckDB scans
    them, in input order: a Parquet file DuckDB writes itself, or batches for write_flows.

    Set tests are joins, whose output order DuckDB does not keep: those go through execute(),
    which numbers the rows and sorts them back."""
    return (len(passes) == 1 and not fails and not alls and not stats_wanted and max_pass is None
            and not compiled.tables)


def run(args) -> int:
    import duckdb
    import pyarrow as pa

    from ..flows.tools.filter.compiler import compile_filter
    from ..flows.tools.filter.run import execute, filtered_batches, write_filtered
    from ..flows.tools.filter.selection import parse_sensors, select_archive_files
    from ..flows.tools.filter.spec import FilterError, option_name
    from ..flows.storage import write_text

    spec = spec_from_args(args)
    for name in _SELECTION_SINGLE:
        _one(args, name)  # reject repeated selection switches early
    passes = _destinations(args.pass_destination)
    fails = _destinations(args.fail_destination)
    alls = _destinations(args.all_destination)
    stats_wanted = args.print_statistics or args.print_volume_statistics
    if not (passes or fails or alls or stats_wanted):
        raise FilterError("no output: give --pass-destination, --fail-destination, --all-destination or --print-statistics")
    if args.print_statistics and args.print_volume_statistics:
        raise FilterError("--print-statistics and --print-volume-statistics cannot be used together")
    if sum(d == "-" for d in passes + fails + alls) > 1:
        raise FilterError("only one destination may be the standard output")
    statistics_file = [t for t in (args.print_statistics, args.print_volume_statistics) if t and t not in ("stderr", "stdout", "-")]
    for dest in passes + fails + alls + statistics_file:
        check_clobber(dest)  # as rwfilter: an existing file is replaced only with SILK_CLOBBER set
    max_pass, max_fail = _max_records(args, "max_pass_records"), _max_records(args, "max_fail_records")

    types = _types(args)
    sensors_text = _one(args, "sensors")
    inputs = ["-" if name == "stdin" else name for name in args.inputs]
    if inputs:
        for name in ("start_date", "end_date", "data_dir"):
            if _one(args, name) is not None:
                raise FilterError(f"{option_name(name)} cannot be used with input files")
        if inputs.count("-") > 1:
            raise FilterError("the standard input can be read only once")
        spec.types = types
        if sensors_text is not None:
            spec.sensors = parse_sensors(sensors_text, _site(args, None))
    else:
        selection = [n for n in ("start_date", "end_date", "data_dir", "klass", "type", "flowtypes", "sensors") if _one(args, n) is not None]
        if not selection:
            raise FilterError(
                "no input: name flow files ('-' for stdin) or select archive files with "
                "--start-date, --type, --sensors or --data-dir"
            )

    # rwfilter insists on a partitioning switch for --pass/--fail.  Here an archive pull (the
    # selection switches alone) passes every selected record; files or stdin still need a test.
    if inputs and not spec.has_tests() and (passes or fails or not alls):
        which = "--pass-destination" if passes else "--fail-destination" if fails else "--print-statistics without --all-destination"
        raise FilterError(f"must specify partitioning rules when using {which}")
    compiled = compile_filter(spec)  # validate every test before reading anything

    want = dict(passed=bool(passes), failed=bool(fails), everything=bool(alls), stats=bool(stats_wanted))
    if inputs:
        if args.print_filenames:
            for name in inputs:
                print(name, file=sys.stderr)
        files = parquet_flow_files(inputs)  # None: stdin or Arrow input, read into one table
    else:
        data_dir = Path(_one(args, "data_dir") or os.environ.get("VLF_DATA_DIR", "data"))
        site = _site(args, data_dir)
        files = select_archive_files(
            data_dir, site, _one(args, "start_date"), _one(args, "end_date"),
            types, sensors_text,
        )  # fmt: skip
        if args.print_filenames:
            for path in files:
                print(path, file=sys.stderr)
    try:
        if files is not None and _scanned_straight_out(passes, fails, alls, stats_wanted, max_pass, compiled):
            if passes[0].endswith(".parquet") and not args.silk:
                # DuckDB copies the passing records file to file, in input order
                write_filtered(files, compiled, passes[0], order_by=None)
            else:
                # an Arrow stream out (a pipe to the next verb, or a file) goes batch by batch as
                # DuckDB scans: memory stays flat and the reader downstream starts at once
                write_flows(filtered_batches(files, compiled), passes[0], silk=args.silk)
            return 0
        if files is None:
            result = execute(compiled, table=read_flows(inputs), **want)
        else:
            result = execute(compiled, files=files, **want)
    except (FilterError, duckdb.Error, pa.ArrowException, OSError):  # the engine turns DuckDB's errors into FilterError
        damaged = damaged_parquet_file(files) if files else None
        if damaged is None:
            raise
        raise FilterError(damaged) from None
    if inputs and result.stats is not None:
        result.stats.files = len(inputs)

    passed, failed = result.passed, result.failed
    if passed is not None and max_pass is not None:
        passed = passed.slice(0, max_pass)
    if failed is not None and max_fail is not None:
        failed = failed.slice(0, max_fail)
    # stdout last, so a downstream reader sees a complete stream only after the files are written
    outputs = [(d, passed) for d in passes] + [(d, failed) for d in fails] + [(d, result.everything) for d in alls]
    for dest, records in sorted(outputs, key=lambda o: o[0] == "-"):
        write_flows(records, dest, silk=args.silk)
    if result.stats is not None:
        text = result.stats.volume() if args.print_volume_statistics else result.stats.summary()
        target = args.print_volume_statistics or args.print_statistics
        if target not in ("stderr", "stdout", "-"):
            write_text(text + "\n", target)  # rwfilter's --print-statistics=FILE
            return 0
        if target in ("stdout", "-"):
            print(text)
            return 0
        print(text, file=sys.stderr)
    return 0
