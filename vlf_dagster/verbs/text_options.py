"""The options `vlf uniq`, `vlf stats` and `vlf count` share: inputs, SiLK's text-output switches,
and writing the text.

Light to import (no pyarrow, no DuckDB): a verb's parser is built from it, and `--help` is fast.
"""

from __future__ import annotations

import os

import argparse

from .common import VerbError, check_clobber, parquet_flow_files, read_flows, write_binary_output

FIELDS_HELP = (
    "Key fields, comma-separated names or rwcut numbers with N-M ranges (case-insensitive): "
    "sIP 1, dIP 2, sPort 3, dPort 4, protocol 5, packets 6, bytes 7, flags 8, sTime 9, duration 10, "
    "eTime 11, sensor 12, in 13, out 14, nhIP 15, class 20, type 21, iType, iCode, initialFlags 26, "
    "sessionFlags 27, attributes 28, application 29 (aliases such as sip, dport, proto, stime work). "
    "Each field at most once."
)
VALUES_HELP = (
    "Aggregate values per bin, comma-separated, case-insensitive, any unique prefix: records (alias "
    "flows), packets, bytes, sTime-Earliest, eTime-Latest, sIP-Distinct, dIP-Distinct, distinct:FIELD "
    "(FIELD may not also be a key). Default: records."
)


IPV6_POLICY_HELP = ("ignore, asv4, mix, force or only, as SiLK's (default $SILK_IPV6_POLICY; unset: IPv4-only input "
                    "prints 15 wide as asv4, input holding IPv6 39 wide as mix)")


def add_input_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="flow files (Parquet, Arrow IPC file or stream); '-' or 'stdin' reads an Arrow IPC stream "
        "from standard input, which is also the default",
    )


class OptionalValue(argparse.Action):
    """A switch with an optional ``=VALUE`` (SiLK requires the ``=`` form for those).

    argparse would take the next word as the value even without ``=``, swallowing a file name
    (``--delimited flows.parquet``); a word that ``accept`` rejects is handed back as an input file.
    """

    def __init__(self, *args, accept=lambda text: True, **kwargs):
        self.accept = accept
        super().__init__(*args, nargs="?", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if values is not None and not self.accept(values):
            namespace.spilled_files = list(getattr(namespace, "spilled_files", None) or []) + [values]
            values = self.const
        setattr(namespace, self.dest, values)


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def add_text_options(parser: argparse.ArgumentParser, *, keys: bool = True) -> None:
    """The SiLK text-output switches (keys=False for rwcount, which prints no key fields)."""
    g = parser.add_argument_group("output")
    g.add_argument("--no-titles", action="store_true", help="do not print the title line(s)")
    g.add_argument("--no-columns", action="store_true", help="no fixed-width columns: do not pad values")
    g.add_argument("--column-separator", metavar="C", default=None, help="character between columns and at the end of each line (default '|')")
    g.add_argument("--no-final-delimiter", action="store_true", help="do not print the separator after the last column")
    g.add_argument(
        "--delimited",
        action=OptionalValue,
        accept=lambda text: len(text) == 1 and text != "-",
        const="|",
        metavar="C",
        help="shortcut for --no-columns --no-final-delimiter --column-separator=C; write --delimited=C "
        "(C defaults to '|')",
    )
    g.add_argument(
        "--timestamp-format",
        default="default",
        metavar="FORMAT",
        help="how times are printed, always in UTC: default YYYY/MM/DDThh:mm:ss, iso 'YYYY-MM-DD hh:mm:ss', "
        "m/d/y 'MM/DD/YYYY hh:mm:ss', epoch seconds",
    )
    if keys:
        g.add_argument("--integer-tcp-flags", action="store_true", help="print TCP flag fields as numbers, not letters")
        g.add_argument("--integer-ips", action="store_true", help="print IP addresses as integers, not dotted quads")
        g.add_argument("--ip-format", metavar="FORMAT", help="canonical (default), decimal or hexadecimal, optionally ,zero-padded")
        g.add_argument("--integer-sensors", action="store_true", help="print sensors as numbers, not the site's sensor names")
        g.add_argument("--site-config-file", metavar="PATH", help="site TOML for sensor names (default: the site lookup)")
        g.add_argument("--ipv6-policy", metavar="POLICY", help=IPV6_POLICY_HELP)
    g.add_argument("--output-path", metavar="PATH", help="write the text to PATH instead of standard output")


def text_options(args: argparse.Namespace):
    """The parsed switches as the formatter's ``TextOptions``."""
    from ..flows.silktime import TIMESTAMP_FORMATS
    from ..flows.tools.stats.text import TextOptions

    separator = args.column_separator if args.column_separator is not None else "|"
    columns, final = not args.no_columns, not args.no_final_delimiter
    if args.delimited is not None:
        separator, columns, final = args.delimited, False, False
    if len(separator) != 1:
        raise VerbError(f"invalid column separator {separator!r}: give exactly one character")
    if args.timestamp_format not in TIMESTAMP_FORMATS:
        raise VerbError(
            f"invalid timestamp format {args.timestamp_format!r} (choose from {', '.join(TIMESTAMP_FORMATS)})"
        )
    return TextOptions(
        columns=columns,
        titles=not args.no_titles,
        separator=separator,
        final_delimiter=final,
        integer_flags=getattr(args, "integer_tcp_flags", False),
        integer_ips=getattr(args, "integer_ips", False),
        timestamp_format=args.timestamp_format,
        sensor_names=_sensor_names(args),
        ip_format=_ip_format(args),
        mapped_as_ipv4=ipv6_policy(args) not in ("force", "only"),
    )


def _ip_format(args: argparse.Namespace):
    from ..flows.iptext import IpFormatError, parse_ip_format

    try:
        return parse_ip_format(getattr(args, "ip_format", None), integer_ips=getattr(args, "integer_ips", False))
    except IpFormatError as exc:
        raise VerbError(str(exc)) from None


def _sensor_names(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The site's sensor names for a sensor key column, as rwuniq prints them (None: numbers)."""
    from ..flows.fields import FieldError, parse_fields
    from ..flows.site import load_site

    if not hasattr(args, "integer_sensors") or args.integer_sensors or not getattr(args, "fields", None):
        return None
    try:
        if not any(f.kind == "sensor" for f in parse_fields(args.fields)):
            return None
    except FieldError:
        return None  # the verb itself reports the bad list

    site = load_site(args.site_config_file)
    return tuple(site.sensors)


def ipv6_policy(args: argparse.Namespace) -> str | None:
    """--ipv6-policy, else $SILK_IPV6_POLICY, else None (vlf's adaptive width)."""
    if not hasattr(args, "ipv6_policy"):
        return None  # count has no address columns
    from ..flows.ipv6policy import Ipv6PolicyError, resolve_policy

    try:
        return resolve_policy(args.ipv6_policy)
    except Ipv6PolicyError as exc:
        raise VerbError(str(exc)) from None


def wide_addresses(args: argparse.Namespace) -> bool | None:
    """Whether address columns are 128-bit under the policy (None: as the input needs)."""
    from ..flows.ipv6policy import WIDE

    policy = ipv6_policy(args)
    return None if policy is None else policy in WIDE


def read_input(args: argparse.Namespace):
    """Parquet paths DuckDB scans itself (reading only the columns it needs), or a flow table: the
    records --ipv6-policy reads, converted as it converts them."""
    files = ["-" if f == "stdin" else f for f in list(args.files) + list(getattr(args, "spilled_files", None) or [])]
    policy = ipv6_policy(args)
    paths = parquet_flow_files(files)
    if paths is not None and policy in (None, "mix"):
        return paths
    table = read_flows(paths if paths is not None else files)
    if policy in (None, "mix"):
        return table
    from ..flows.ipv6policy import apply_policy

    return apply_policy(table, policy)


def write_lines(lines, args: argparse.Namespace) -> None:
    """Write lines (a list, or the formatter's ``TextLines``) with a newline after each, to
    --output-path (an existing file needs SILK_CLOBBER, as in SiLK) or stdout."""
    to_bytes = getattr(lines, "to_bytes", None)
    data = to_bytes() if to_bytes is not None else "".join(line + "\n" for line in lines).encode("utf-8")
    dest = "-" if args.output_path in (None, "", "-", "stdout") else args.output_path
    check_clobber(dest)
    try:
        write_binary_output(data, dest)  # a file: temp file, then rename (a FIFO or device: written through)
    except OSError as exc:
        raise VerbError(f"{dest}: cannot write: {exc.strerror}") from None

def delimited_and_files(delimited, files: list[str]) -> tuple[bool | str, list[str]]:
    """``--delimited FILE``: argparse took the file as the separator (SiLK wants --delimited=C);
    give the file back to the inputs and keep the default separator."""
    files = list(files)
    if isinstance(delimited, str) and (len(delimited) != 1 or delimited == "-" or os.path.exists(delimited)):
        return True, [delimited] + files
    return delimited, files
