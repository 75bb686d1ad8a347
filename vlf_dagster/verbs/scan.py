"""`vlf scan`: find scanning sources, as SiLK's rwscan does with its TRW model."""

from __future__ import annotations

import argparse

from .common import HelpFormatter, VerbError, read_flows

DESCRIPTION = """\
Detect scanning sources in flow records as SiLK's rwscan does, and print one row per scanner in
rwscan's layout: sip|proto|stime|etime|flows|packets|bytes| (plus scan_model|scan_prob with
--model-fields).

Models (--scan-model), rwscan's numbers:
  0  Threshold Random Walk for TCP, then Bayesian logistic regression (BLR) for what TRW leaves
     benign or unknown and for ICMP and UDP (the default, as rwscan's);
  1  Threshold Random Walk only (Jung et al., 2004): each TCP source is judged by its first
     contact with each destination: a bare SYN to an address outside --trw-internal-set (the hosts
     that exist) is a miss, anything else a hit; four misses in a row (default thetas) make a
     scanner, four hits clear it. It finds horizontal scans (many hosts), not one host's ports;
  2  BLR only: rwscan's TCP, UDP and ICMP coefficients, for events of 32 records or more.

Differs from rwscan, on purpose or not yet:
  - the input need not be sorted: records are grouped by sIP and protocol and ordered by dIP here
    (rwscan wants rwsort --fields=sip,proto,dip first, and splits a source whose records are not
    together);
  - --threads, --queue-depth and the --verbose-* switches are not offered (one vectorised pass).
Like rwscan, IPv4 only: IPv6 records are skipped. Byte for byte rwscan's output on TCP, UDP and
ICMP records (tests/test_scan.py, against SiLK 3.19.1).

Examples:
  vlf scan --trw-internal-set=inside.set flows.parquet
  vlf filter --type=in,inweb --pass=- | vlf scan --trw-internal-set=active_inside_set.set --scandb
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("scan", help="find scanning sources with TRW (rwscan)", description=DESCRIPTION,
                              formatter_class=HelpFormatter)
    p.add_argument("files", nargs="*", metavar="FILES", help="flow files; '-' or none reads stdin")
    p.add_argument("--scan-model", type=int, default=0, metavar="N",
                   help="0: TRW then BLR (default), 1: TRW only, 2: BLR only")
    p.add_argument("--trw-internal-set", "--trw-sip-set", dest="trw_internal_set", metavar="PATH",
                   help="IP set of ALL valid internal addresses (required: TRW's hits)")
    p.add_argument("--trw-theta0", type=float, default=0.8, metavar="P",
                   help="probability that a benign source's connection succeeds (default 0.8)")
    p.add_argument("--trw-theta1", type=float, default=0.2, metavar="P",
                   help="probability that a scanner's connection succeeds (default 0.2)")
    p.add_argument("--output-path", metavar="PATH", help="write the scan records here (default: stdout)")
    p.add_argument("--no-titles", action="store_true", help="do not print column headers")
    p.add_argument("--no-columns", action="store_true", help="no fixed-width columns")
    p.add_argument("--column-separator", default="|", metavar="C", help="separator character (default |)")
    p.add_argument("--delimited", nargs="?", const=True, default=False, metavar="C",
                   help="--no-columns --no-final-delimiter, with separator C if given (write --delimited=C)")
    p.add_argument("--no-final-delimiter", action="store_true", help="no separator at the end of a line")
    p.add_argument("--integer-ips", action="store_true", help="print IP addresses as integers")
    p.add_argument("--model-fields", action="store_true", help="add the scan_model and scan_prob columns")
    p.add_argument("--scandb", action="store_true",
                   help="for loading into a database: --no-titles --no-columns --model-fields --no-final-delimiter --integer-ips")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..flows.sets import IPSet, SetFileError
    from ..flows.tools.scan import COLUMNS, TrwModel, find_scanners
    from .text_options import delimited_and_files, write_lines

    args.delimited, args.files = delimited_and_files(args.delimited, args.files)
    if args.scan_model not in (0, 1, 2):
        raise VerbError(f"invalid --scan-model {args.scan_model}: 0 (TRW then BLR), 1 (TRW) or 2 (BLR)")
    if args.scan_model != 2 and not args.trw_internal_set:
        raise VerbError("TRW scan model enabled, but --trw-internal-set not specified")
    for name in ("trw_theta0", "trw_theta1"):
        value = getattr(args, name)
        if not 0 < value < 1:
            raise VerbError(f"invalid --{name.replace('_', '-')} {value}: must be between 0 and 1")
    try:
        internal = IPSet.read(args.trw_internal_set) if args.trw_internal_set else IPSet.from_strings([])
    except SetFileError as exc:
        raise VerbError(str(exc)) from None
    scanners = find_scanners(read_flows(args.files, columns=COLUMNS), internal, TrwModel(args.trw_theta0, args.trw_theta1),
                            scan_model=args.scan_model)
    write_lines(format_scanners(scanners, args), args)
    return 0


# rwscan_db.c's field_defs: (column, title, width); the last two only with --model-fields
FIELDS = [("sIP", "sip", 16), ("proto", "proto", 6), ("stime", "stime", 24), ("etime", "etime", 24),
          ("flows", "flows", 10), ("packets", "packets", 10), ("bytes", "bytes", 10),
          ("scan_model", "scan_model", 12), ("scan_prob", "scan_prob", 10)]


def format_scanners(scanners, args: argparse.Namespace) -> list[str]:
    """rwscan's text: titles, right-aligned columns of its widths, '|' after every column."""
    import numpy as np

    from ..flows.iptext import ipv4_text

    no_columns, final, separator = args.no_columns, not args.no_final_delimiter, args.column_separator[:1] or "|"
    titles, model_fields, integer_ips = not args.no_titles, args.model_fields, args.integer_ips
    if args.delimited is not False:
        no_columns, final = True, False
        if isinstance(args.delimited, str):
            separator = args.delimited[:1]
    if args.scandb:
        titles, no_columns, model_fields, final, integer_ips = False, True, True, False, True
    fields = FIELDS if model_fields else FIELDS[:7]
    columns = []
    for name, title, width in fields:
        values = scanners.column(name).to_numpy()
        if name == "sIP":
            text = values.astype(str) if integer_ips else ipv4_text(values).to_numpy(zero_copy_only=False)
        elif name in ("stime", "etime"):
            text = [t.replace("T", " ") for t in np.datetime_as_string(values.astype("datetime64[s]"), unit="s").tolist()]
        elif name == "scan_prob":
            text = np.array([f"{v:f}" for v in values.tolist()], dtype=object)  # printf's %f, one per scanner
        else:
            text = values.astype(str)
        w = 0 if no_columns else width
        columns.append(([title.rjust(w)], [str(t).rjust(w) for t in text]))
    end = separator if final else ""
    lines = [separator.join(c[0][0] for c in columns) + end] if titles else []
    lines += [separator.join(row) + end for row in zip(*(c[1] for c in columns))]
    return lines
