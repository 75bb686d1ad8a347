"""`vlf bag`, `vlf bagbuild`, `vlf bagtool`, `vlf bagcat`: rwbag, rwbagbuild, rwbagtool, rwbagcat."""

from __future__ import annotations

import ipaddress
import math
import sys
from typing import TYPE_CHECKING

from ..flows.site import sensor_labels, sensor_width
from .common import (HelpFormatter, VerbError, check_clobber, parquet_flow_files, read_binary_input, read_flow_source, read_flows,
                     write_binary_output)
from .sets import read_set, set_bytes

if TYPE_CHECKING:
    import numpy as np

    from ..flows.bags import Bag

# numpy, pyarrow and the engines are imported where they are used: building the parser (and
# --help) stays light.


def read_bag_input(name: str) -> Bag:
    from ..flows.bags import Bag

    data, label = read_binary_input(name)
    return Bag.from_bytes(data, source=label)


def _write(bag_or_bytes, path: str, args=None) -> None:
    """Write a bag (vlf's file, or SiLK's with --silk) or already encoded bytes."""
    from ..flows.bags import BagError

    check_clobber(path)
    if isinstance(bag_or_bytes, bytes):
        data = bag_or_bytes
    elif getattr(args, "silk", False):
        try:
            data = bag_or_bytes.to_silk_bytes()
        except BagError as exc:
            raise VerbError(str(exc)) from None
    else:
        data = bag_or_bytes.to_bytes()
    write_binary_output(data, path)


def _add_silk_option(parser, what: str = "bag") -> None:
    parser.add_argument("--silk", action="store_true",
                        help=f"write SiLK's {what} file format (rwbagcat and every SiLK tool read it) instead of vlf's "
                        "own: one key and one counter, 4-byte keys, or 16-byte keys when an address is IPv6")


# --- vlf bag ----------------------------------------------------------------------------------


def run_bag(args) -> int:
    import duckdb
    import numpy as np
    import pyarrow as pa

    from ..flows import bags as B

    specs = []
    for item in args.bag_file or []:
        parts = item.rsplit(",", 2)
        if len(parts) != 3:
            raise VerbError(f"--bag-file={item}: expected KEY,COUNTER,PATH")
        specs.append((B.parse_key(parts[0]), B.parse_counter(parts[1]), parts[2]))
    for legacy, key, counter in (("sip_flows", "sIP", "records"), ("dip_flows", "dIP", "records"), ("sport_flows", "sPort", "records"),
                                 ("dport_flows", "dPort", "records"), ("proto_flows", "protocol", "records"),
                                 ("sip_packets", "sIP", "packets"), ("sip_bytes", "sIP", "bytes")):
        if getattr(args, legacy):
            specs.append(((key,), counter, getattr(args, legacy)))
    if not specs:
        raise VerbError("give at least one --bag-file=KEY,COUNTER,PATH")
    if sum(path == "-" for *_, path in specs) > 1:
        raise VerbError("only one bag may be written to stdout")
    if len(specs) == 1:  # one bag: DuckDB scans Parquet files itself, or takes a stdin stream as it comes
        paths = parquet_flow_files(args.files)
        source = paths if paths is not None else read_flow_source(args.files)
    else:  # several bags: read once, count in memory
        source = read_flows(args.files)
    try:
        built = B.bags_from_table(source, [(keys, [counter]) for keys, counter, _ in specs])
    except duckdb.Error as exc:  # a stream on stdin that breaks off while DuckDB reads it
        if not isinstance(source, pa.RecordBatchReader):
            raise
        raise VerbError(f"<stdin>: damaged Arrow stream ({str(exc).splitlines()[0].split(': ', 1)[-1]})") from None
    for bag, (_, counter, path) in zip(built, specs):
        saturated = int(np.count_nonzero(bag.table.column(counter).to_numpy() == B.COUNTER_MAX)) if len(bag) else 0
        if saturated:
            print(f"vlf bag: warning: {saturated} counter(s) of {path} saturated at {B.COUNTER_MAX}", file=sys.stderr)
        _write(bag, path, args)
    return 0


# --- vlf bagbuild -----------------------------------------------------------------------------


def _parse_bag_text(text: str, delimiter: str, label: str) -> tuple[list[int], list[bytes | None], list[int], bool]:
    """key[|count] lines -> (v4 keys, v6 keys, counts, keys_are_ips)."""
    from ..flows import bags as B

    v4, v6, counts, ip_keys, int_keys = [], [], [], False, False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(delimiter)]
        key, count = parts[0], parts[1] if len(parts) > 1 and parts[1] else "1"
        try:
            value = int(count)
        except ValueError:
            raise VerbError(f"{label}:{number}: invalid count {count!r}") from None
        if not 1 <= value <= B.COUNTER_MAX:
            raise VerbError(f"{label}:{number}: count {value} is outside 1..{B.COUNTER_MAX}")
        if key.isdigit():
            int_keys = True
            v4.append(int(key)), v6.append(None), counts.append(value)
            continue
        try:
            net = ipaddress.ip_network(key, strict=False)
        except ValueError:
            raise VerbError(f"{label}:{number}: invalid key {key!r} (integer, IP address or CIDR block)") from None
        ip_keys = True
        if net.num_addresses > 1 << 24:
            raise VerbError(f"{label}:{number}: block {key} is too large")
        for address in net:  # a block adds every address in it, as rwbagbuild
            if address.version == 4:
                v4.append(int(address)), v6.append(None)
            else:
                v4.append(0), v6.append(address.packed)
            counts.append(value)
    if ip_keys and int_keys:
        raise VerbError(f"{label}: mixes integer and IP keys")
    return v4, v6, counts, ip_keys


def run_bagbuild(args) -> int:
    import pyarrow as pa

    from ..flows import bags as B
    from ..flows.bags import Bag, BagInfo
    from ..flows.schema import IPV6_TYPE

    if bool(args.set_input) == bool(args.bag_input):
        raise VerbError("give exactly one of --set-input or --bag-input")
    if args.default_count is not None and not 1 <= args.default_count <= B.COUNTER_MAX:
        raise VerbError(f"--default-count={args.default_count} is outside 1..{B.COUNTER_MAX}")
    if args.set_input:
        bag = B.bag_from_set(read_set(args.set_input), default_count=args.default_count or 1)
    else:
        data, label = read_binary_input(args.bag_input)
        v4, v6, counts, ip_keys = _parse_bag_text(data.decode("utf-8", errors="replace"), args.delimiter, label)
        if args.default_count is not None:
            counts = [args.default_count] * len(counts)  # a key seen k times gets k * N
        if ip_keys:
            table = pa.table({"sIP": pa.array(v4, pa.uint32()), "sIPv6": pa.array(v6, IPV6_TYPE), "records": pa.array(counts, pa.uint64())})
            info = BagInfo(("sIP",), ("records",))
        else:
            table = pa.table({"value": pa.array(v4, pa.uint64()), "records": pa.array(counts, pa.uint64())})
            info = BagInfo(("value",), ("records",))
        bag = B.add([Bag(table, info)])  # sums repeated keys, errors on overflow
    _write(bag, args.output_path, args)
    return 0


# --- vlf bagtool ------------------------------------------------------------------------------

OPERATIONS = ("add", "subtract", "minimize", "maximize", "divide", "scalar_multiply", "compare")


def _parse_key_bound(text: str | None) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        raise VerbError(f"invalid key bound {text!r} (an integer or a dotted quad)") from None


def run_bagtool(args) -> int:
    from ..flows import bags as B

    chosen = [o for o in OPERATIONS if getattr(args, o) not in (None, False)]
    if len(chosen) > 1:
        raise VerbError(f"give one operation, not {', '.join('--' + c.replace('_', '-') for c in chosen)}")
    op = chosen[0] if chosen else "add"
    inputs = [read_bag_input(n) for n in (args.files or ["-"])]
    if op == "add":
        result = B.add(inputs)
    elif op == "subtract":
        result = B.subtract(inputs)
    elif op == "minimize":
        result = B.minimize(inputs)
    elif op == "maximize":
        result = B.maximize(inputs)
    elif op == "divide":
        result = B.divide(inputs)
    elif op == "scalar_multiply":
        if len(inputs) != 1:
            raise VerbError("--scalar-multiply takes one bag")
        result = B.scalar_multiply(inputs[0], args.scalar_multiply)
    else:
        result = B.compare(inputs, args.compare)
    result = B.filter_bag(
        result,
        min_counter=args.mincounter, max_counter=args.maxcounter,
        min_key=_parse_key_bound(args.minkey), max_key=_parse_key_bound(args.maxkey),
        intersect=read_set(args.intersect) if args.intersect else None,
        complement=read_set(args.complement_intersect) if args.complement_intersect else None,
    )
    if args.invert:
        result = B.invert(result)
    if args.coverset:
        _write(set_bytes(B.coverset_of(result), args), args.output_path)
    else:
        _write(result, args.output_path, args)
    return 0


# --- vlf bagcat -------------------------------------------------------------------------------


_FLAG_KEYS = ("flags", "initialFlags", "sessionFlags")


def key_strings(bag: Bag, sensor_names: tuple[str, ...] | None = None, *, integer: bool = False) -> list[tuple[np.ndarray, int]]:
    """Printable key columns and their widths, as rwbagcat prints each key type: dotted quads (15)
    or IPv6 text (39) for IP keys, TCP flags and attributes as letters (8), sTime/eTime as times
    (19), sensors by name (at least 3), other integers 10 wide; ``integer``: every key a number."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..flows import bags as B
    from ..flows.flags import attribute_strings, flag_strings
    from ..flows.schema import ipv4_strings

    out = []
    for key in bag.info.keys:
        columns = B.KEYS[key]
        values = bag.table.column(columns[0][0]).to_numpy()
        if integer and key in B.IP_KEYS and bag.table.column(columns[1][0]).null_count < len(bag):
            v6 = bag.table.column(columns[1][0]).to_pylist()
            text = [str(int.from_bytes(p, "big")) if p is not None else str(0xFFFF00000000 | int(v)) for p, v in zip(v6, values)]
            out.append((np.array(text, dtype=object), 39))
        elif integer:
            out.append((values.astype(np.uint64).astype(str).astype(object), 10))
        elif key in B.IP_KEYS:
            text = ipv4_strings(values).astype(object)
            v6 = bag.table.column(columns[1][0])
            width = 15
            if v6.null_count < len(v6):
                # a bag holding IPv6 keys prints its IPv4 keys mapped into ::ffff:0:0/96, as rwbagcat does
                text = np.char.add("::ffff:", text.astype(str)).astype(object)
                for i, packed in enumerate(v6.to_pylist()):  # IPv6 keys only
                    if packed is not None:
                        text[i] = str(ipaddress.IPv6Address(packed))
                width = 39
            out.append((text, width))
        elif key in _FLAG_KEYS:
            out.append((flag_strings(values.astype(np.uint8), columns=False), 8))
        elif key == "attributes":
            out.append((attribute_strings(values), 8))
        elif key in ("sTime", "eTime"):
            stamps = pa.array(values.astype(np.int64), pa.int64()).cast(pa.timestamp("s", tz="UTC"))
            out.append((np.asarray(pc.strftime(stamps, format="%Y/%m/%dT%H:%M:%S").to_pylist(), dtype=object), 19))
        elif key == "sensor" and sensor_names is not None:
            out.append((sensor_labels(values, sensor_names), sensor_width(sensor_names)))
        else:
            out.append((values.astype(str).astype(object), 10))
    return out


def _key_order(bag: Bag) -> np.ndarray:
    """Rows in key order.  The bag is stored in (IPv4, IPv6) column order; a one-IP-key bag that
    holds IPv6 keys is printed in 128-bit order, its IPv4 keys at ::ffff:a.b.c.d."""
    import numpy as np

    from ..flows import bags as B
    from ..flows.schema import IPV6_TYPE, ipv6_words

    rows = np.arange(len(bag))
    if len(bag.info.keys) != 1 or bag.info.keys[0] not in B.IP_KEYS:
        return rows
    v4_column, v6_column = (col for col, _ in B.KEYS[bag.info.keys[0]])
    v6 = bag.table.column(v6_column)
    if v6.null_count == len(v6):
        return rows
    is_v6 = v6.is_valid().to_numpy(zero_copy_only=False)
    hi, lo = ipv6_words(v6.cast(IPV6_TYPE))
    v4 = bag.table.column(v4_column).to_numpy().astype(np.uint64)
    lo = np.where(is_v6, lo, v4 | np.uint64(0xFFFF_0000_0000))
    return np.lexsort((lo, hi))


def _bins(counters: np.ndarray, mode: str) -> list[tuple[str, int]]:
    import numpy as np

    if mode == "linear":
        values, counts = np.unique(counters, return_counts=True)
        return [(str(v), int(c)) for v, c in zip(values, counts)]
    if mode == "binary":
        exps = np.floor(np.log2(counters.astype(np.float64))).astype(int)
        values, counts = np.unique(exps, return_counts=True)
        return [(f"2^{e:02d} to 2^{e + 1:02d}-1", int(c)) for e, c in zip(values, counts)]
    # decimal: counters below 100 get a bin each; larger ones share bins 1/100 of a decade wide
    small = counters < 100
    rows = [(str(v), int(c)) for v, c in zip(*np.unique(counters[small], return_counts=True))]
    big = counters[~small].astype(np.float64)
    if len(big):
        bins = np.floor((np.log10(big) - 1) * 100).astype(int)
        for b, c in zip(*np.unique(bins, return_counts=True)):
            lo, hi = math.ceil(10 ** (b / 100 + 1)), math.ceil(10 ** ((b + 1) / 100 + 1)) - 1
            rows.append((str((lo + hi) // 2), int(c)))
    return rows


def _g4(value: float) -> str:
    """C's %.4g, with glibc's spelling of an undefined value (0/0)."""
    return "-nan" if math.isnan(value) else f"{value:.4g}"


def _statistics_text(bag: Bag, args) -> str:
    """rwbagcat --print-statistics' block: SiLK's labels and number formats, keys printed as the
    key type prints (dotted quads for IP keys).  Left out: SiLK's two lines about its tree's
    internals ("nodes allocated", "counter density"), which describe no property of the data."""
    from ..flows import bags as B

    stats = B.statistics(bag)
    rows = [("number of keys", str(stats["keys"])), ("sum of counters", str(stats["sum"]))]
    if stats["keys"]:
        texts, _ = key_strings(bag, _sensor_names(args) if "sensor" in bag.info.keys else None, integer=args.integer_keys)[0]
        order = _key_order(bag)
        rows += [("minimum key", str(texts[order[0]])), ("maximum key", str(texts[order[-1]])),
                 ("minimum counter", str(stats["min_counter"])), ("maximum counter", str(stats["max_counter"]))]
        rows += [(label, _g4(stats[key])) for label, key in (("mean", "mean"), ("variance", "variance"),
                 ("standard deviation", "standard_deviation"), ("skew", "skew"), ("kurtosis", "kurtosis"))]
    return "\nStatistics\n" + "".join(f"{label:>18}:  {value}\n" for label, value in rows)


def _sensor_names(args) -> tuple[str, ...] | None:
    """The site's sensor names for a sensor-keyed bag (None with --integer-keys: numbers)."""
    if getattr(args, "integer_keys", False):
        return None
    from ..flows.site import load_site

    return tuple(load_site(getattr(args, "site_config_file", None)).sensors)


def run_bagcat(args) -> int:
    import numpy as np

    from ..flows import bags as B
    from ..flows.bags import Bag, BagInfo
    from ..flows.tools.netstruct import ipv6_left_out, network_structure
    from ..flows.schema import IPV6_TYPE, ipv6_words

    out = sys.stdout
    for name in args.files or ["-"]:
        bag = read_bag_input(name)
        if len(bag.info.counters) != 1:
            bag = Bag(bag.table.select(list(bag.info.key_columns) + [bag.info.counters[0]]), BagInfo(bag.info.keys, bag.info.counters[:1]))
        bag = B.filter_bag(
            bag, min_counter=args.mincounter, max_counter=args.maxcounter,
            min_key=_parse_key_bound(args.minkey), max_key=_parse_key_bound(args.maxkey),
            intersect=read_set(args.mask_set) if args.mask_set else None,
        )
        counters = bag.table.column(bag.info.counter).to_numpy()
        if args.print_statistics:
            out.write(_statistics_text(bag, args))
            continue
        if args.network_structure is not None:
            if bag.info.keys[0] not in B.IP_KEYS or len(bag.info.keys) != 1:
                raise VerbError(f"{name}: --network-structure needs a bag with one IP key")
            v4_column, v6_column = (col for col, _ in B.KEYS[bag.info.keys[0]])
            v6_rows = bag.table.column(v6_column).is_valid().to_numpy(zero_copy_only=False)
            hi, lo = ipv6_words(bag.table.column(v6_column).cast(IPV6_TYPE))
            v4 = bag.table.column(v4_column).to_numpy()
            out.write("\n".join(network_structure(
                v4[~v6_rows], args.network_structure, counters[~v6_rows],
                ipv6=(hi[v6_rows], lo[v6_rows]), ipv6_counters=counters[v6_rows])) + "\n")
            if note := ipv6_left_out(args.network_structure, (hi[v6_rows], lo[v6_rows])):
                print(f"vlf bagcat: {name}: {note}", file=sys.stderr)
            continue
        if args.bin_ips:
            for label, count in _bins(counters, args.bin_ips):
                out.write(f"{label:>20}|{count:>20}|\n")
            continue
        keys = key_strings(bag, _sensor_names(args) if "sensor" in bag.info.keys else None, integer=args.integer_keys)
        order = _key_order(bag)
        if args.sort_counters:  # ties go to the smaller key (a stable sort of the key order)
            by_counter = counters[order] if args.sort_counters == "increasing" else -counters[order].astype(np.float64)
            order = order[np.argsort(by_counter, kind="stable")]
        for i in order:
            cells = "".join(f"{text[i]:>{width}}|" for text, width in keys)
            out.write(f"{cells}{counters[i]:>20}|\n")
    return 0


def register(sub) -> None:
    p = sub.add_parser("bag", help="rwbag: count flows by key into bag files", formatter_class=HelpFormatter,
                       description="Build bags from flow records in one pass over the input.\n\n"
                       "KEY: sIPv4 sIPv6 dIPv4 dIPv6 nhIPv4 nhIPv6 (v4 and v6 names accept both families), sPort dPort\n"
                       "protocol packets bytes flags initialFlags sessionFlags attributes application sensor input output\n"
                       "sTime eTime duration (1 s resolution); composite keys join names with + (e.g. sIPv4+dIPv4).\n"
                       "COUNTER: records|flows, sum-packets|packets, sum-bytes|bytes, distinct:FIELD (exact distinct count).\n"
                       "Counters saturate at 2^64-2 with a warning. PATH `-` writes the bag to stdout.")
    p.add_argument("files", nargs="*", help="flow files; none or `-` reads stdin")
    p.add_argument("--bag-file", action="append", metavar="KEY,COUNTER,PATH", help="a bag to build (repeatable)")
    for legacy in ("sip-flows", "dip-flows", "sport-flows", "dport-flows", "proto-flows", "sip-packets", "sip-bytes"):
        p.add_argument(f"--{legacy}", metavar="PATH", help=f"legacy form of --bag-file ({legacy.replace('-', ' ')})")
    _add_silk_option(p)
    p.set_defaults(func=run_bag)

    p = sub.add_parser("bagbuild", help="rwbagbuild: a bag from an IP set or from text", formatter_class=HelpFormatter,
                       description="--set-input gives every address a count of 1 (or --default-count).\n"
                       "--bag-input reads `key[|count]` lines: # starts a comment, a missing count is 1, repeated keys\n"
                       "are summed, a key is an integer, an IP address or a CIDR block (adding every address in it).")
    p.add_argument("--set-input", metavar="SET", help="IP set file (`-` = stdin)")
    p.add_argument("--bag-input", metavar="TEXT", help="text file of key|count lines (`-` = stdin)")
    p.add_argument("--default-count", type=int, help="use this count for every key (a key seen k times gets k*N)")
    p.add_argument("--delimiter", default="|", help="key/count delimiter of --bag-input (default |)")
    p.add_argument("--output-path", default="-", help="output bag (default stdout)")
    _add_silk_option(p)
    p.set_defaults(func=run_bagbuild)

    p = sub.add_parser("bagtool", help="rwbagtool: add, subtract, ..., filter, coverset", formatter_class=HelpFormatter,
                       description="One operation (default --add), then the filters, then the output.\n"
                       "--add errors on counter overflow; --subtract drops keys that end at or below zero;\n"
                       "--divide rounds half up and drops results below 0.5; --scalar-multiply warns and wraps on overflow.")
    p.add_argument("files", nargs="*", help="bag files; `-` reads stdin")
    p.add_argument("--add", action="store_true", help="sum the bags (default)")
    p.add_argument("--subtract", action="store_true", help="the first bag minus the others")
    p.add_argument("--minimize", action="store_true", help="keys in every bag, smallest counter")
    p.add_argument("--maximize", action="store_true", help="all keys, largest counter")
    p.add_argument("--divide", action="store_true", help="first bag / second bag (every key of the first must be in the second)")
    p.add_argument("--scalar-multiply", type=int, metavar="V", help="multiply every counter by V (1..2^64-1)")
    p.add_argument("--compare", metavar="OP", help="lt|le|eq|ge|gt: keys in both bags where counter1 OP counter2, counter 1")
    p.add_argument("--intersect", metavar="SET", help="keep only keys in this IP set")
    p.add_argument("--complement-intersect", metavar="SET", help="keep only keys not in this IP set")
    p.add_argument("--mincounter", type=int, help="keep counters >= this")
    p.add_argument("--maxcounter", type=int, help="keep counters <= this")
    p.add_argument("--minkey", help="keep keys >= this (integer or dotted quad)")
    p.add_argument("--maxkey", help="keep keys <= this (integer or dotted quad)")
    p.add_argument("--invert", action="store_true", help="output counter -> number of keys")
    p.add_argument("--coverset", action="store_true", help="output the IP keys as an IP set")
    p.add_argument("--output-path", default="-", help="output file (default stdout; existing files need SILK_CLOBBER)")
    _add_silk_option(p, "bag (or with --coverset, IPset)")
    p.set_defaults(func=run_bagtool)

    p = sub.add_parser("bagcat", help="rwbagcat: print bags", formatter_class=HelpFormatter,
                       description="Print `key|counter|` rows in key order, or a network structure, bins or statistics.")
    p.add_argument("files", nargs="*", help="bag files; `-` reads stdin")
    p.add_argument("--network-structure", nargs="?", const="TS", metavar="LIST[/SUMMARY]",
                   help="per-netblock counter sums, in rwbagcat's layout, e.g. `16,24`, `TS` or `T,16,24/27` (see setcat); "
                   "IPv6: `v6:48,64` or `v6:TS` (summary /48,/64)")
    p.add_argument("--bin-ips", nargs="?", const="linear", choices=["linear", "binary", "decimal"],
                   help="invert while printing: number of keys per counter (bin)")
    p.add_argument("--sort-counters", nargs="?", const="decreasing", choices=["decreasing", "increasing"],
                   help="order rows by counter; ties go to the smaller key")
    p.add_argument("--print-statistics", action="store_true", help="keys, sum, min/max, mean, variance, sd, skew, kurtosis")
    p.add_argument("--integer-keys", action="store_true", help="print every key as an integer (rwbagcat's --key-format=decimal)")
    p.add_argument("--site-config-file", metavar="PATH", help="site TOML for sensor names of a sensor-keyed bag (default: the site lookup)")
    p.add_argument("--mincounter", type=int, help="print counters >= this")
    p.add_argument("--maxcounter", type=int, help="print counters <= this")
    p.add_argument("--minkey", help="print keys >= this")
    p.add_argument("--maxkey", help="print keys <= this")
    p.add_argument("--mask-set", metavar="SET", help="print only keys in this IP set")
    p.set_defaults(func=run_bagcat)
