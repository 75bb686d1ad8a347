"""`vlf cut`: print flow records as text, as SiLK's rwcut does."""

from __future__ import annotations


from .common import HelpFormatter, VerbError, parquet_flow_files, read_flows, stdout_binary
from .text_options import IPV6_POLICY_HELP, delimited_and_files

DESCRIPTION = """\
Print flow records (Arrow IPC stream on stdin, or Parquet / Arrow files) as text, in rwcut's
layout: right-aligned columns of rwcut's widths, titles cut to the width, '|' after every column.

Fields (--fields): names or rwcut numbers and ranges, e.g. 1-5,stime,iType,iCode,type, plus
`match`, the cutmatch column (<->Match#) that shows what `vlf match` wrote in nhIP.
Default: sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,duration,eTime,sensor.

Examples:
  vlf cut flows.parquet --fields=1-5,flags --num-recs=10
  vlf match --relate=1,2 --relate=2,1 q.parquet r.parquet - | vlf cut --fields=match,1-5,stime
  vlf cut flows.parquet --delimited=, --timestamp-format=epoch
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cut", help="print flow records as text (rwcut)", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    p.add_argument("files", nargs="*", metavar="FILES", help="flow files; '-' or none reads stdin")
    p.add_argument("--fields", help="columns to print (names, numbers, ranges, match)")
    p.add_argument("--num-recs", type=int, default=0, metavar="N", help="print at most N records (0: all)")
    p.add_argument(
        "--timestamp-format", default="default", metavar="FORMAT",
        help="default (YYYY/MM/DDThh:mm:ss.sss), iso, m/d/y or epoch; add ',no-msec' to drop milliseconds",
    )
    p.add_argument("--epoch-time", action="store_true", help="same as --timestamp-format=epoch")
    p.add_argument("--integer-ips", action="store_true", help="print IP addresses as integers (--ip-format=decimal)")
    p.add_argument("--ipv6-policy", metavar="POLICY", help=IPV6_POLICY_HELP)
    p.add_argument("--ip-format", metavar="FORMAT", help="canonical (default), decimal or hexadecimal, optionally ,zero-padded "
                   "(e.g. decimal,zero-padded), as rwcut's --ip-format")
    p.add_argument("--integer-tcp-flags", action="store_true", help="print TCP flags as integers")
    p.add_argument("--integer-sensors", action="store_true", help="print sensor ids instead of names")
    p.add_argument("--no-titles", action="store_true", help="do not print the title line")
    p.add_argument("--no-columns", action="store_true", help="no fixed-width columns")
    p.add_argument("--column-separator", default="|", metavar="C", help="separator character (default |)")
    p.add_argument("--no-final-delimiter", action="store_true", help="no separator after the last column")
    p.add_argument(
        "--delimited", nargs="?", const=True, default=False, metavar="C",
        help="--no-columns --no-final-delimiter, with separator C if given (write --delimited=C)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the title line only")
    p.add_argument("--site-config-file", metavar="PATH", help="site TOML for sensor names (default: the site lookup)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..flows.tools.cut import format_flow_files, format_text
    from ..flows.schema import empty_table
    from ..flows.site import load_site

    delimited, files = delimited_and_files(args.delimited, args.files)
    if args.num_recs < 0:
        raise VerbError(f"invalid --num-recs {args.num_recs}: must be >= 0")
    timestamp_format = "epoch" if args.epoch_time else args.timestamp_format
    from ..flows.iptext import IpFormatError, parse_ip_format
    from ..flows.ipv6policy import Ipv6PolicyError, resolve_policy

    site = load_site(args.site_config_file)
    try:
        parse_ip_format(args.ip_format)
        policy = resolve_policy(args.ipv6_policy)
    except (IpFormatError, Ipv6PolicyError) as exc:
        raise VerbError(str(exc)) from None
    options = dict(
        columns=not args.no_columns,
        delimiter=args.column_separator,
        delimited=delimited,
        no_titles=args.no_titles,
        no_final_delimiter=args.no_final_delimiter,
        num_recs=args.num_recs,
        timestamp_format=timestamp_format,
        integer_ips=args.integer_ips,
        integer_tcp_flags=args.integer_tcp_flags,
        integer_sensors=args.integer_sensors,
        site=site,
        ip_format=parse_ip_format(args.ip_format, integer_ips=args.integer_ips),
        ipv6_policy=policy,
    )
    if args.dry_run:
        blocks = format_text(empty_table(), args.fields, **options)
    else:
        # validate the options before reading stdin, so a typo fails fast
        list(format_text(empty_table(), args.fields, **{**options, "no_titles": True}))
        paths = parquet_flow_files(files)
        if paths is not None:  # streamed from the files: flat memory however many records
            blocks = format_flow_files(paths, args.fields, **options)
        else:
            blocks = format_text(read_flows(files or ["-"]), args.fields, **options)
    out = stdout_binary()
    for block in blocks:
        out.write(block)
    out.flush()
    return 0
