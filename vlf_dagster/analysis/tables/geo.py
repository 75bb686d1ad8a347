"""Country of an address from a GeoIP2-style country database, and building one from Debian data.

* :class:`CountryLookup` reads any MaxMind DB with a ``country.iso_code`` record (GeoIP2/GeoLite2
  Country or City, DB-IP country lite, or the database :func:`build_country_mmdb` writes) and maps
  uint32 IPv4 arrays to lowercase ISO codes (``"fr"``, ``"us"``; ``"-"`` when not found).  Each
  distinct address is looked up at most once, and every address that falls in a network already
  found is answered from that network: the cost follows the distinct networks touched.  Given a
  ``ranges_dir``, it answers instead from the database's IPv4 networks as sorted arrays (built
  once per database file and kept there): a binary search per address, whatever their number.
* :func:`build_country_mmdb` writes a GeoIP2-Country-layout ``.mmdb`` from Debian's
  ``tor-geoipdb`` ranges (IPFire Location data, CC BY-SA 4.0) with mmdb-writer.

Command line::

    python -m vlf_dagster.analysis.tables.geo build [--ipv4 /usr/share/tor/geoip] \
        [--ipv6 /usr/share/tor/geoip6] --out data/geoip/country.mmdb
    python -m vlf_dagster.analysis.tables.geo lookup --db data/geoip/country.mmdb 81.2.69.142 2001:db8::1
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import maxminddb
import numpy as np

from ...flows.sets import range_cidrs
from ...flows.storage import atomic_path

UNKNOWN = "-"
DEFAULT_DB = "data/geoip/country.mmdb"
TOR_GEOIP = "/usr/share/tor/geoip"
TOR_GEOIP6 = "/usr/share/tor/geoip6"
DATABASE_TYPE = "GeoLite2-Country"  # the layout geoip2.database.Reader.country() expects
ATTRIBUTION = (
    "Country data: IPFire Location database (https://location.ipfire.org/) via Debian's "
    "tor-geoipdb, licensed CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/)"
)
CODE_DTYPE = np.dtype("<U2")
_CC = re.compile(r"^[A-Za-z]{2}$")


class GeoIPError(ValueError):
    """A GeoIP database is missing, unreadable or not a country database."""


# --------------------------------------------------------------------------------------------
# lookups
# --------------------------------------------------------------------------------------------


def _iso(record) -> str:
    if not isinstance(record, dict):
        return UNKNOWN
    for key in ("country", "registered_country"):
        code = (record.get(key) or {}).get("iso_code")
        if code:
            return str(code).lower()[:2]
    return UNKNOWN


RANGES_VERSION = 1


class CountryLookup:
    """Country codes from a MaxMind DB country database (opened memory-mapped)."""

    def __init__(self, path: str | os.PathLike, ranges_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        self.ranges_dir = Path(ranges_dir) if ranges_dir is not None else None
        self._ranges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if not self.path.is_file():
            raise GeoIPError(f"GeoIP database {self.path} not found")
        try:
            self._reader = maxminddb.open_database(str(self.path), maxminddb.MODE_AUTO)
            meta = self._reader.metadata()
        except (maxminddb.InvalidDatabaseError, ValueError, OSError) as exc:
            raise GeoIPError(f"GeoIP database {self.path} is not a readable MaxMind DB file: {exc}") from exc
        self.database_type: str = meta.database_type
        self.ip_version: int = meta.ip_version
        self.build_time = datetime.fromtimestamp(meta.build_epoch, tz=timezone.utc)
        self.description: str = (meta.description or {}).get("en", "")
        if not re.search("country|city", self.database_type, re.IGNORECASE):
            self._reader.close()
            raise GeoIPError(
                f"GeoIP database {self.path} is a {self.database_type!r} database, not a country database"
            )

    def __enter__(self) -> CountryLookup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    def describe(self) -> str:
        """e.g. "GeoLite2-Country, built 2026-06-27"."""
        return f"{self.database_type}, built {self.build_time:%Y-%m-%d}"

    def _get(self, address) -> tuple[str, int]:
        try:
            record, prefix = self._reader.get_with_prefix_len(address)
        except ValueError:  # an IPv6 address in an IPv4-only database
            return UNKNOWN, 0
        return _iso(record), prefix

    def country(self, address: str | int | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        """One address (dotted quad, IPv6 text, or a uint32 IPv4 integer)."""
        if isinstance(address, (int, np.integer)):
            return str(self.countries(np.array([address], dtype=np.uint64))[0])
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return self._get(ip)[0]

    def countries(self, ipv4) -> np.ndarray:
        """Lowercase ISO codes (dtype ``<U2``, ``"-"`` when unknown) for uint32 IPv4 addresses."""
        values = np.asarray(ipv4)
        if values.size == 0:
            return np.empty(values.shape, dtype=CODE_DTYPE)
        if values.dtype.kind not in "iu":
            raise TypeError(f"IPv4 addresses must be integers (uint32), not {values.dtype}")
        if values.min() < 0 or values.max() > 0xFFFFFFFF:
            raise ValueError("IPv4 addresses must lie in 0..2**32-1")
        flat = values.astype(np.uint32, copy=False).ravel()
        if self.ranges_dir is not None:
            starts, ends, codes = self.ipv4_ranges()
            at = np.searchsorted(starts, flat, side="right") - 1
            found = (at >= 0) & (flat <= ends[np.maximum(at, 0)])
            return np.where(found, codes[np.maximum(at, 0)], UNKNOWN).astype(CODE_DTYPE).reshape(values.shape)
        if flat.size > 1 and bool((flat[1:] > flat[:-1]).all()):  # already distinct and sorted: no unique pass
            uniq, inverse = flat, np.arange(flat.size)
        else:
            uniq, inverse = np.unique(flat, return_inverse=True)
        codes = np.empty(uniq.size, dtype=CODE_DTYPE)
        i, n = 0, uniq.size
        while i < n:
            address = int(uniq[i])
            code, prefix = self._get(ipaddress.IPv4Address(address))
            prefix = min(max(int(prefix), 0), 32)
            last = address | ((1 << (32 - prefix)) - 1)  # the network's last address
            j = int(np.searchsorted(uniq, np.uint32(last), side="right")) if prefix < 32 else i + 1
            codes[i:j] = code
            i = max(j, i + 1)
        return codes[inverse.reshape(values.shape)]

    def ipv4_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The database's IPv4 networks as sorted (first address, last address, code) arrays,
        read from ``ranges_dir`` when this database file's were kept there, else built by one
        walk over its networks (~2.5 s for 560,000 of them) and kept."""
        if self._ranges is not None:
            return self._ranges
        stat = self.path.stat()
        name = f"ipv4-ranges-v{RANGES_VERSION}-{self.path.name}-{stat.st_size}-{stat.st_mtime_ns}.npz"
        kept = self.ranges_dir / name if self.ranges_dir is not None else None
        if kept is not None and kept.is_file():
            with np.load(kept) as data:
                self._ranges = (data["starts"], data["ends"], data["codes"])
            return self._ranges
        starts, ends, codes = [], [], []
        for network, record in self._reader:
            if network.version == 6:  # the walk is in address order: IPv4 (::/96) comes first
                break
            starts.append(int(network.network_address))
            ends.append(int(network.broadcast_address))
            codes.append(_iso(record))
        self._ranges = (np.array(starts, np.uint32), np.array(ends, np.uint32), np.array(codes, CODE_DTYPE))
        order = np.argsort(self._ranges[0], kind="stable")
        self._ranges = tuple(a[order] for a in self._ranges)
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            for stale in kept.parent.glob(f"ipv4-ranges-*-{self.path.name}-*.npz"):
                stale.unlink(missing_ok=True)  # a rebuilt database's old arrays
            with atomic_path(kept) as tmp, open(tmp, "wb") as out:
                np.savez(out, starts=self._ranges[0], ends=self._ranges[1], codes=self._ranges[2])
        return self._ranges

    def countries_ipv6(self, addresses: Iterable) -> np.ndarray:
        """Codes for IPv6 addresses given as 16-byte values (the flow schema's ``sIPv6``), text or
        ``ipaddress`` objects; ``None`` gives ``"-"``.  IPv4-mapped addresses are looked up as IPv4."""
        if hasattr(addresses, "to_pylist"):  # a pyarrow array
            addresses = addresses.to_pylist()
        items = list(addresses)
        seen: dict = {}
        out = np.empty(len(items), dtype=CODE_DTYPE)
        for k, item in enumerate(items):
            key = bytes(item) if isinstance(item, (bytes, bytearray, memoryview)) else item
            code = seen.get(key)
            if code is None:
                code = seen[key] = self._lookup_v6(key)
            out[k] = code
        return out

    def _lookup_v6(self, item) -> str:
        if item is None:
            return UNKNOWN
        try:
            ip = ipaddress.IPv6Address(item) if isinstance(item, (bytes, int)) else ipaddress.ip_address(item)
        except ValueError:
            return UNKNOWN
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return self._get(ip)[0]


def geoip_status(path: str | os.PathLike) -> str:
    """One line for reports and logs; never raises."""
    path = Path(path)
    if not path.exists():
        return (
            f"no GeoIP database at {path}: run `make geoip` (builds it from Debian's tor-geoipdb) "
            "or set VLF_GEOIP_DB to a GeoLite2/DB-IP country .mmdb; countries show as '-'"
        )
    try:
        with CountryLookup(path) as lookup:
            return f"GeoIP database {path} ({lookup.describe()})"
    except GeoIPError as exc:
        return f"GeoIP database unusable: {exc}; countries show as '-'"


# --------------------------------------------------------------------------------------------
# building a country database from tor-geoipdb
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    path: Path
    ipv4_ranges: int  # source lines with a country
    ipv6_ranges: int
    merged_ranges: int  # after joining adjacent ranges of one country
    networks: int  # CIDR blocks written
    countries: int
    seconds: float
    size: int  # bytes
    generated: str | None  # the source's "Generated:" header, if any

    def summary(self) -> str:
        gen = f", source generated {self.generated}" if self.generated else ""
        return (
            f"built {self.path} ({self.size / 1e6:.1f} MB, {DATABASE_TYPE} layout) in {self.seconds:.1f} s: "
            f"{self.ipv4_ranges:,} IPv4 + {self.ipv6_ranges:,} IPv6 ranges -> {self.merged_ranges:,} merged "
            f"ranges, {self.networks:,} networks, {self.countries} countries{gen}"
        )


def _generated(header_lines: list[str]) -> str | None:
    for line in header_lines:
        m = re.match(r"#\s*Generated:\s*(.+)", line)
        if m:
            return m.group(1).strip()
    return None


def read_tor_ranges(path: str | os.PathLike, family: int) -> tuple[list[tuple[int, int, str]], str | None]:
    """(low, high, CC) integer ranges from a tor geoip file (``family`` 4: integers, 6: IPv6
    text); unknown ("??") or malformed lines are skipped.  Also returns the "Generated:" date."""
    ranges: list[tuple[int, int, str]] = []
    header: list[str] = []
    with open(path, encoding="ascii", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                if len(header) < 64:
                    header.append(line)
                continue
            parts = line.split(",")
            if len(parts) != 3 or not _CC.match(parts[2]):
                continue
            try:
                if family == 4:
                    lo, hi = int(parts[0]), int(parts[1])
                else:
                    lo, hi = int(ipaddress.IPv6Address(parts[0])), int(ipaddress.IPv6Address(parts[1]))
            except ValueError:
                continue
            if lo <= hi:
                ranges.append((lo, hi, parts[2].upper()))
    return ranges, _generated(header)


def merge_ranges(ranges: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Sort and join ranges of one country that touch (``hi + 1 == next lo``); overlaps keep the
    first range's country for the overlapped part.

    Not netaddr's: an ``IPSet`` per country joins a country's ranges but leaves two countries
    claiming an overlap (the writer would give it to the one inserted last), and building those
    sets takes ~18 s for the IPv4 ranges alone, against ~0.3 s here for all of them."""
    merged: list[tuple[int, int, str]] = []
    for lo, hi, cc in sorted(ranges):
        if merged:
            plo, phi, pcc = merged[-1]
            if lo <= phi:  # overlap: keep what is already there
                if hi <= phi:
                    continue
                lo = phi + 1
            if cc == pcc and lo == phi + 1:
                merged[-1] = (plo, hi, cc)
                continue
        merged.append((lo, hi, cc))
    return merged


def build_country_mmdb(
    ipv4_csv: str | os.PathLike | None,
    ipv6_csv: str | os.PathLike | None,
    out_path: str | os.PathLike,
) -> BuildResult:
    """Write a GeoIP2-Country-layout database (records ``{"country": {"iso_code": "FR"}}``) from
    tor-geoipdb range files; either source may be None.  Written to a temporary file beside
    ``out_path``, checked, then renamed into place."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPNetwork, IPSet

    class Blocks(IPSet):
        """mmdb-writer takes an IPSet only to iterate its CIDRs; ours are already disjoint and
        minimal, so netaddr's re-merge (half the build time) is skipped."""

        def __init__(self, cidrs: list):
            super().__init__()
            self._blocks = cidrs

        def iter_cidrs(self):
            return iter(self._blocks)

    start = time.perf_counter()
    v4, gen4 = read_tor_ranges(ipv4_csv, 4) if ipv4_csv else ([], None)
    v6, gen6 = read_tor_ranges(ipv6_csv, 6) if ipv6_csv else ([], None)
    v6 = [r for r in v6 if r[0] >= 1 << 32]  # ::/96 is where the IPv4 tree lives
    merged4, merged6 = merge_ranges(v4), merge_ranges(v6)

    by_country: dict[str, list] = {}
    networks = 0
    for merged, bits, version in ((merged4, 32, 4), (merged6, 128, 6)):
        for lo, hi, cc in merged:
            for net, plen in range_cidrs(lo, hi, bits):
                by_country.setdefault(cc, []).append(IPNetwork((net, plen), version=version))
                networks += 1

    generated = gen4 or gen6
    writer = MMDBWriter(
        ip_version=6,
        database_type=DATABASE_TYPE,
        languages=["en"],
        description={"en": f"Country ranges from the IPFire Location database via tor-geoipdb"
                     f"{' (generated ' + generated + ')' if generated else ''}; CC BY-SA 4.0"},
        ipv4_compatible=True,
    )
    for cc in sorted(by_country):
        writer.insert_network(Blocks(by_country[cc]), {"country": {"iso_code": cc}})

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        writer.to_db_file(str(tmp))
        with CountryLookup(tmp):  # a database that does not open is never put in place
            pass
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return BuildResult(
        out, len(v4), len(v6), len(merged4) + len(merged6), networks, len(by_country),
        time.perf_counter() - start, out.stat().st_size, generated,
    )


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlf_dagster.analysis.tables.geo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build a country .mmdb from Debian's tor-geoipdb ranges")
    build.add_argument("--ipv4", default=TOR_GEOIP, help=f"tor geoip file (default {TOR_GEOIP})")
    build.add_argument("--ipv6", default=TOR_GEOIP6, help=f"tor geoip6 file (default {TOR_GEOIP6}; '' to skip)")
    build.add_argument("--out", required=True, help=f"database to write, e.g. {DEFAULT_DB}")
    look = sub.add_parser("lookup", help="print the country of addresses")
    look.add_argument("--db", default=os.environ.get("VLF_GEOIP_DB") or DEFAULT_DB)
    look.add_argument("addresses", nargs="+")
    args = parser.parse_args(argv)

    if args.command == "build":
        sources = [p for p in (args.ipv4, args.ipv6) if p]
        missing = [p for p in sources if not Path(p).is_file()]
        if missing or not sources:
            print(
                f"geo build: {', '.join(missing) or 'no source'} not found: "
                "install Debian's tor-geoipdb (apt-get install -y tor-geoipdb)",
                file=sys.stderr,
            )
            return 1
        result = build_country_mmdb(args.ipv4 or None, args.ipv6 or None, args.out)
        print(result.summary())
        print(ATTRIBUTION)
        return 0

    try:
        lookup = CountryLookup(args.db)
    except GeoIPError as exc:
        print(f"geo lookup: {exc}", file=sys.stderr)
        return 1
    with lookup:
        for address in args.addresses:
            try:
                print(f"{address}\t{lookup.country(address)}")
            except ValueError:
                print(f"{address}\t{UNKNOWN}\t(not an IP address)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
