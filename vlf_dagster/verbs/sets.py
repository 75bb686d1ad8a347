"""`vlf set`, `vlf settool`, `vlf setcat`: rwset, rwsettool and rwsetcat."""

from __future__ import annotations

import ipaddress
import sys
from typing import TYPE_CHECKING

from .common import HelpFormatter, VerbError, check_clobber, read_binary_input, read_flows, write_binary_output

if TYPE_CHECKING:
    from ..flows.sets import IPSet

# numpy, pyarrow and the engines are imported where they are used: building the parser (and
# --help) stays light.


def read_set(name: str) -> IPSet:
    from ..flows.sets import IPSet

    data, label = read_binary_input(name)
    return IPSet.from_bytes(data, source=label)


def add_set_output_options(parser) -> None:
    """--silk and --record-version: the IP set file format written."""
    g = parser.add_argument_group("output format")
    g.add_argument("--silk", action="store_true",
                   help="write SiLK's IPset file format (rwsetcat and every SiLK tool read it; record version as "
                   "SiLK's default: 2 for IPv4, 4 with IPv6) instead of vlf's own set file")
    g.add_argument("--record-version", type=int, choices=(0, 2, 4), metavar="{0,2,4}",
                   help="SiLK IPset record version (implies --silk): 0 SiLK's default, 2 /24 bitmaps (IPv4 only), "
                   "4 CIDR blocks and bitmaps (SiLK 3.7 and later); 3 and 5 are read, not written")


def set_bytes(ipset: IPSet, args) -> bytes:
    """The set file bytes in the format the options ask for."""
    from ..flows.sets import SetFileError

    if not (getattr(args, "silk", False) or getattr(args, "record_version", None) is not None):
        return ipset.to_bytes()
    try:
        return ipset.to_silk_bytes(getattr(args, "record_version", None) or 0)
    except SetFileError as exc:
        raise VerbError(str(exc)) from None


# --- vlf set ----------------------------------------------------------------------------------


def run_set(args) -> int:
    from ..flows.sets import IPSet

    outputs = [(c, p) for c, p in (("sIP", args.sip_file), ("dIP", args.dip_file), ("nhIP", args.nhip_file), ("any", args.any_file)) if p]
    if not outputs:
        raise VerbError("give at least one of --sip-file, --dip-file, --nhip-file, --any-file")
    if sum(p == "-" for _, p in outputs) > 1:
        raise VerbError("only one output may go to stdout")
    for _, path in outputs:
        check_clobber(path)
    wanted = {"sIP", "dIP"} if any(c == "any" for c, _ in outputs) else {c for c, _ in outputs}
    table = read_flows(args.files, ["attributes", *sorted(wanted), *sorted(c + "v6" for c in wanted)])
    for column, path in outputs:
        ipset = IPSet.from_flow_column(table, "sIP") | IPSet.from_flow_column(table, "dIP") if column == "any" else IPSet.from_flow_column(table, column)
        write_binary_output(set_bytes(ipset, args), path)
    return 0


# --- vlf settool ------------------------------------------------------------------------------


def run_settool(args) -> int:
    from ..flows import sets as S
    from ..flows.sets import IPSet

    ops = [o for o in ("union", "intersect", "difference", "symmetric_difference", "mask", "fill_blocks", "sample") if getattr(args, o) not in (None, False)]
    if ops[:1] == ["union"] and len(ops) == 2 and ops[1] in ("mask", "fill_blocks"):
        ops = ops[1:]  # as rwsettool: --union with --mask or --fill-blocks masks (fills) the union
    if len(ops) > 1:
        names = [f"--{o.replace('_', '-')}" for o in ops[:2]]
        raise VerbError(f"switches {names[0]} and {names[1]} are incompatible")
    if len(ops) != 1:
        raise VerbError("give exactly one of --union, --intersect, --difference, --symmetric-difference, --mask, --fill-blocks, --sample")
    op = ops[0]
    sets = [read_set(n) for n in (args.files or ["-"])]
    if op == "union":
        result = IPSet()
        for s in sets:
            result = result | s
    elif op == "intersect":
        result = sets[0]
        for s in sets[1:]:
            result = result & s
    elif op == "difference":
        result = sets[0]
        for s in sets[1:]:
            result = result - s
    elif op == "symmetric_difference":  # left to right, as SiLK 3.13+
        result = sets[0]
        for s in sets[1:]:
            result = result ^ s
    elif op == "mask":
        result = IPSet()
        for s in sets:
            result = result | S.mask(s, args.mask)
    elif op == "fill_blocks":
        result = IPSet()
        for s in sets:
            result = result | S.fill_blocks(s, args.fill_blocks)
    else:  # sample each input, then union the samples
        result = IPSet()
        for s in sets:
            result = result | S.sample(s, size=args.size, ratio=args.ratio, seed=args.seed)
    check_clobber(args.output_path)
    write_binary_output(set_bytes(result, args), args.output_path)
    return 0


# --- vlf setcat -------------------------------------------------------------------------------


def _share(label: str, count: int, bits: int) -> str:
    """rwsetcat's "label, pct% of 2^N" cell: the percentage right-aligned so that the two fill 25 columns."""
    return f"{label}{100 * count / 2**bits:{25 - len(label)}.6f}% of 2^{bits}"


def _statistics(ipset: IPSet) -> list[str]:
    """rwsetcat --print-statistics: IPv4 as SiLK prints an IPv4 set, IPv6 as it prints an IPv6 set.

    A vlf set may hold both families (a SiLK set holds one); then the IPv6 part follows the IPv4
    summary in SiLK's IPv6 layout."""
    import numpy as np

    from ..flows import sets as S

    lines = ["Network Summary"]
    v4 = ipset.ipv4_array()
    if len(v4):
        lines.append(f"\tminimumIP = {str(ipaddress.IPv4Address(int(v4[0]))):>15}")
        lines.append(f"\tmaximumIP = {str(ipaddress.IPv4Address(int(v4[-1]))):>15}")
        hosts = "hosts (/32s)," if len(v4) != 1 else "host (/32),"
        lines.append(f"\t{len(v4):10d} {_share(hosts, len(v4), 32)}")
        for n, count in S.ipv4_prefix_counts(ipset, (8, 16, 24, 27)).items():
            lines.append(f"\t{count:10d} {_share(f'occupied /{n}' + ('s,' if count != 1 else ','), count, n)}")
    if len(ipset.v6):
        ints = ipset.ipv6_ints()
        lines.append(f"\tminimumIP = {str(ipaddress.IPv6Address(ints[0])):>39}")
        lines.append(f"\tmaximumIP = {str(ipaddress.IPv6Address(ints[-1])):>39}")
        hi, lo = ipset.v6["hi"].astype(np.uint64), ipset.v6["lo"].astype(np.uint64)
        for n in range(8, 128, 8):
            if n <= 64:
                count = len(np.unique(hi >> np.uint64(64 - n)))
            else:
                count = len(np.unique(np.stack([hi, lo >> np.uint64(128 - n)], axis=1), axis=0))
            lines.append(f"\t{count:39d} occupied /{n}{'s' if count != 1 else ''}")
        lines.append(f"\t{len(ints):39d} {'hosts (/128s)' if len(ints) != 1 else 'host (/128)'}")
    if len(lines) == 1:
        lines.append("\t0 IPv4 hosts")
    return lines


def run_setcat(args) -> int:
    import numpy as np

    from ..flows import sets as S
    from ..flows.tools.netstruct import ipv6_left_out, network_structure
    from ..flows.sets import IPSet

    names = args.files or ["-"]
    out = sys.stdout
    for name in names:
        ipset = read_set(name)
        if args.count_ips:
            out.write(f"{name}:{len(ipset)}\n" if len(names) > 1 else f"{len(ipset)}\n")
            continue
        if args.print_statistics:
            out.write("\n".join(_statistics(ipset)) + "\n")
            continue
        if args.network_structure is not None:
            words = (ipset.v6["hi"].astype(np.uint64), ipset.v6["lo"].astype(np.uint64))
            out.write("\n".join(network_structure(ipset.ipv4_array(), args.network_structure, ipv6=words)) + "\n")
            if note := ipv6_left_out(args.network_structure, words):
                print(f"vlf setcat: {name}: {note}", file=sys.stderr)
            continue
        if args.ip_ranges:
            for start, end in S.ipv4_ranges(ipset):
                out.write(f"{end - start + 1:10d}|{str(ipaddress.IPv4Address(start)):>15}|{str(ipaddress.IPv4Address(end)):>15}|\n")
            for start, end in S.ipv6_ranges(ipset):
                out.write(f"{end - start + 1:39d}|{str(ipaddress.IPv6Address(start)):>39}|{str(ipaddress.IPv6Address(end)):>39}|\n")
            continue
        cidr = args.cidr_blocks
        v4_as_blocks = cidr == "1"
        v6_as_blocks = cidr != "0"  # IPv6 prints CIDR blocks unless --cidr-blocks=0
        if v4_as_blocks:
            for block in (b for b in S.cidr_blocks(IPSet(ipset.v4)) if ":" not in b):
                out.write(block.removesuffix("/32") + "\n")  # rwsetcat prints a lone host bare
        else:
            from ..flows.schema import ipv4_strings

            for text in ipv4_strings(ipset.ipv4_array()):
                out.write(text + "\n")
        if len(ipset.v6):
            if v6_as_blocks:
                for block in S.cidr_blocks(IPSet(v6=ipset.v6)):
                    out.write(block.removesuffix("/128") + "\n")
            else:
                for value in ipset.ipv6_ints():
                    out.write(str(ipaddress.IPv6Address(value)) + "\n")
    return 0


# --- vlf setbuild -----------------------------------------------------------------------------


def run_setbuild(args) -> int:
    from ..flows.sets import IPSet

    source = args.input or "-"
    data, label = read_binary_input("-" if source == "stdin" else source, "addresses")
    text = data.decode("utf-8", errors="replace")
    delimiter = args.ip_ranges
    if delimiter is not None and len(delimiter) != 1:
        raise VerbError(f"--ip-ranges delimiter must be one character, not {delimiter!r}")
    try:
        ipset = IPSet.from_text(text, label, ip_ranges=delimiter)
    except ValueError as exc:
        raise VerbError(str(exc)) from None
    output = args.output or "-"
    check_clobber(output)
    write_binary_output(set_bytes(ipset, args), output)
    return 0


def register(sub) -> None:
    p = sub.add_parser("set", help="rwset: IP sets of the addresses in flow records", formatter_class=HelpFormatter,
                       description="Build IP set files from flow records (files or an Arrow IPC stream on stdin).\n"
                       "Output files must not exist unless SILK_CLOBBER is set; `-` writes to stdout.")
    p.add_argument("files", nargs="*", help="flow files; none or `-` reads stdin")
    p.add_argument("--sip-file", help="write the set of source addresses here")
    p.add_argument("--dip-file", help="write the set of destination addresses here")
    p.add_argument("--nhip-file", help="write the set of next-hop addresses here")
    p.add_argument("--any-file", help="write the set of source and destination addresses here")
    add_set_output_options(p)
    p.set_defaults(func=run_set)

    p = sub.add_parser("settool", help="rwsettool: union, intersect, difference, mask, fill, sample", formatter_class=HelpFormatter,
                       description="Combine IP set files with one operation; the result goes to --output-path (default stdout).")
    p.add_argument("files", nargs="*", help="set files; `-` reads stdin")
    p.add_argument("--union", action="store_true", help="addresses in any input")
    p.add_argument("--intersect", action="store_true", help="addresses in every input")
    p.add_argument("--difference", action="store_true", help="addresses of the first set that are in none of the others")
    p.add_argument("--symmetric-difference", action="store_true", help="applied left to right (with 3 sets: in exactly one or in all three)")
    p.add_argument("--mask", type=int, metavar="N", help="each occupied /N block becomes its lowest address")
    p.add_argument("--fill-blocks", type=int, metavar="N", help="each occupied /N block is filled completely")
    p.add_argument("--sample", action="store_true", help="sample each input (with --size or --ratio), then union the samples")
    p.add_argument("--size", type=int, help="--sample: this many addresses per input")
    p.add_argument("--ratio", type=float, help="--sample: keep each address with this probability")
    p.add_argument("--seed", type=int, help="--sample: random seed")
    p.add_argument("--output-path", default="-", help="output set file (default: stdout)")
    add_set_output_options(p)
    p.set_defaults(func=run_settool)

    p = sub.add_parser("setbuild", help="rwsetbuild: an IP set from text", formatter_class=HelpFormatter,
                       description="Read IP addresses from text (one per line: an address, CIDR block, IPv4 integer or SiLK "
                       "wildcard such as 10.1.x.1-5; `#` comments) and write an IP set.\nINPUT_FILE and OUTPUT_FILE "
                       "default to stdin and stdout; the output must not exist unless SILK_CLOBBER is set.")
    p.add_argument("input", nargs="?", metavar="INPUT_FILE", help="text input ('-' or 'stdin': standard input)")
    p.add_argument("output", nargs="?", metavar="OUTPUT_FILE", help="set output ('-' or 'stdout': standard output)")
    p.add_argument("--ip-ranges", nargs="?", const="-", metavar="DELIM",
                   help="lines may hold LOW-HIGH ranges of addresses or integers (DELIM, default '-'); wildcards are then off")
    add_set_output_options(p)
    p.set_defaults(func=run_setbuild)

    p = sub.add_parser("setcat", help="rwsetcat: print IP sets", formatter_class=HelpFormatter,
                       description="Print IP set files: one IPv4 address per line and IPv6 as CIDR blocks by default.")
    p.add_argument("files", nargs="*", help="set files; `-` reads stdin")
    p.add_argument("--count-ips", action="store_true", help="print only the number of addresses (`file:count` with several files)")
    p.add_argument("--cidr-blocks", nargs="?", const="1", choices=["0", "1"], help="1: print CIDR blocks; 0: print single addresses")
    p.add_argument("--ip-ranges", action="store_true", help="print `count|start|end|` ranges")
    p.add_argument("--network-structure", nargs="?", const="TS", metavar="LIST[/SUMMARY]",
                   help="per-netblock host counts, in rwsetcat's layout: letters T A B C X H or prefix lengths, e.g. "
                   "`16,24`, `TS` (default: TOTAL with /8,/16,/24,/27 counted), `16,24/27` (/27s counted in each row; after "
                   "a slash S is ignored, as in SiLK); IPv6: `v6:` then T, H or 0-128, e.g. `v6:48,64` or `v6:TS` (/48,/64)")
    p.add_argument("--print-statistics", action="store_true", help="minimum/maximum address, host count, occupied /8,/16,/24,/27")
    p.set_defaults(func=run_setcat)
