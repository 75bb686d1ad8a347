"""Country lookups against databases the tests write themselves, the build from tor-geoipdb
ranges, and a check against the real test databases in ../shared/data/geoip."""

import ipaddress
from pathlib import Path

import geoip2.database
import numpy as np
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from conftest import ip
from vlf_dagster.analysis.tables import geo
from vlf_dagster.analysis.tables.geo import CountryLookup, GeoIPError, build_country_mmdb
from vlf_dagster.flows.sets import range_cidrs

SHARED_GEOIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "geoip"
needs_shared = pytest.mark.skipif(
    not SHARED_GEOIP.is_dir(), reason=f"real GeoIP test databases not present ({SHARED_GEOIP} is absent)"
)


def write_mmdb(path, networks: dict[str, str], database_type="GeoLite2-Country"):
    """A tiny database: {"81.2.69.0/24": "GB", ...} with GeoIP2-Country records."""
    writer = MMDBWriter(ip_version=6, database_type=database_type, ipv4_compatible=True)
    for cidr, cc in networks.items():
        writer.insert_network(IPSet([cidr]), {"country": {"iso_code": cc}})
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def tiny_db(tmp_path):
    return write_mmdb(
        tmp_path / "tiny.mmdb",
        {"81.2.69.0/24": "GB", "1.0.0.0/24": "AU", "1.0.1.0/24": "CN", "2001:db8::/32": "FR"},
    )


def test_countries_of_ipv4_and_ipv6(tiny_db):
    with CountryLookup(tiny_db) as lookup:
        addrs = np.array([ip("81.2.69.142"), ip("1.0.0.255"), ip("1.0.1.0"), ip("8.8.8.8"), ip("81.2.70.1")], dtype=np.uint32)
        codes = lookup.countries(addrs)
        assert codes.dtype == np.dtype("<U2")
        assert codes.tolist() == ["gb", "au", "cn", "-", "-"]
        assert lookup.countries(np.array([], dtype=np.uint32)).tolist() == []
        assert lookup.countries(addrs.reshape(1, 5)).shape == (1, 5)
        assert lookup.country("81.2.69.1") == "gb" and lookup.country(ip("1.0.1.9")) == "cn"
        assert lookup.country("2001:db8::1") == "fr" and lookup.country("2001:db9::1") == "-"
        v6 = [
            ipaddress.IPv6Address("2001:db8:1::5").packed,  # 16-byte value as in sIPv6
            "2001:db8::2",
            None,
            ipaddress.IPv6Address("::ffff:81.2.69.9").packed,  # IPv4-mapped: looked up as IPv4
            "2a00::1",
        ]
        assert lookup.countries_ipv6(v6).tolist() == ["fr", "fr", "-", "gb", "-"]
        with pytest.raises(TypeError):
            lookup.countries(np.array(["81.2.69.1"]))


def test_each_distinct_network_is_looked_up_once(tiny_db, monkeypatch):
    lookup = CountryLookup(tiny_db)
    calls = []
    real = lookup._get
    monkeypatch.setattr(lookup, "_get", lambda address: calls.append(address) or real(address))
    few = np.array([ip("81.2.69.142"), ip("1.0.0.7"), ip("8.8.8.8")], dtype=np.uint32)
    many = np.tile(few, 50_000)
    codes = lookup.countries(many)
    assert len(calls) == 3 and codes[:3].tolist() == ["gb", "au", "-"] and (codes == np.tile(codes[:3], 50_000)).all()
    calls.clear()
    # 256 distinct addresses of one /24 cost one lookup; the answers equal one-by-one lookups
    block = (np.arange(256, dtype=np.uint32) + ip("81.2.69.0"))[::-1]
    assert (lookup.countries(block) == "gb").all() and len(calls) == 1
    calls.clear()
    spread = np.array([ip("1.0.0.0"), ip("1.0.0.255"), ip("1.0.1.0"), ip("1.0.2.0"), ip("0.0.0.0"), 0xFFFFFFFF], dtype=np.uint32)
    assert lookup.countries(spread).tolist() == [lookup.country(ipaddress.IPv4Address(int(a)).compressed) for a in spread]
    lookup.close()


def test_missing_and_corrupt_databases_raise_geoip_error(tmp_path):
    missing = tmp_path / "nowhere.mmdb"
    with pytest.raises(GeoIPError, match=f"GeoIP database {missing} not found"):
        CountryLookup(missing)
    corrupt = tmp_path / "corrupt.mmdb"
    corrupt.write_bytes(b"this is not a MaxMind DB" * 100)
    with pytest.raises(GeoIPError, match=f"GeoIP database {corrupt} is not a readable MaxMind DB"):
        CountryLookup(corrupt)
    assert issubclass(GeoIPError, ValueError)
    asn = write_mmdb(tmp_path / "asn.mmdb", {"1.0.0.0/24": "AU"}, database_type="GeoLite2-ASN")
    with pytest.raises(GeoIPError, match="not a country database"):
        CountryLookup(asn)
    assert "countries show as '-'" in geo.geoip_status(corrupt)
    assert geo.geoip_status(missing).startswith(f"no GeoIP database at {missing}: run `make geoip`")


TOR_V4 = f"""\
# This file has been converted from the IPFire Location database
# Generated:  Thu, 25 Jun 2026 04:33:59 GMT
# License:   CC BY-SA 4.0
15726992,15726999,??
{ip("1.0.0.0")},{ip("1.0.0.255")},AU
{ip("1.0.1.0")},{ip("1.0.1.127")},CN
{ip("1.0.1.128")},{ip("1.0.3.255")},CN
{ip("81.2.69.0")},{ip("81.2.69.255")},GB
not,a,line
"""
TOR_V6 = """\
# IPv6 ranges
2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,FR
2001::,2001:0:ffff:ffff:ffff:ffff:ffff:ffff,??
2a00::,2a00:0:0:0:0:0:0:ff,DE
"""


def test_build_country_mmdb_from_tor_ranges(tmp_path):
    (tmp_path / "geoip").write_text(TOR_V4)
    (tmp_path / "geoip6").write_text(TOR_V6)
    out = tmp_path / "out" / "country.mmdb"
    result = build_country_mmdb(tmp_path / "geoip", tmp_path / "geoip6", out)
    assert (result.ipv4_ranges, result.ipv6_ranges) == (4, 2)  # "??" and malformed lines dropped
    assert result.merged_ranges == 5  # the two adjacent CN ranges became one
    # 1.0.1.0-1.0.3.255 = 1.0.1.0/24 + 1.0.2.0/23; plus 1.0.0.0/24, 81.2.69.0/24, the /32 and the /120
    assert result.networks == 6 and result.countries == 5
    assert result.generated == "Thu, 25 Jun 2026 04:33:59 GMT" and result.size == out.stat().st_size
    assert [p.name for p in out.parent.iterdir()] == ["country.mmdb"]  # no temporary file left
    with geoip2.database.Reader(str(out)) as reader:  # the GeoIP2 Country layout
        assert reader.metadata().database_type == "GeoLite2-Country"
        assert reader.country("81.2.69.142").country.iso_code == "GB"
        assert reader.country("1.0.3.1").country.iso_code == "CN"
        assert reader.country("2001:db8::1").country.iso_code == "FR"
    with CountryLookup(out) as lookup:
        addrs = np.array([ip("1.0.0.1"), ip("1.0.2.200"), ip("1.0.4.0"), ip("0.239.249.144")], dtype=np.uint32)
        assert lookup.countries(addrs).tolist() == ["au", "cn", "-", "-"]
        assert lookup.countries_ipv6(["2a00::ff", "2a00::100", "2001::1"]).tolist() == ["de", "-", "-"]


def test_range_helpers():
    assert range_cidrs(ip("1.0.1.0"), ip("1.0.3.255"), 32) == [(ip("1.0.1.0"), 24), (ip("1.0.2.0"), 23)]
    assert range_cidrs(0, 2**32 - 1, 32) == [(0, 0)]
    assert range_cidrs(5, 5, 32) == [(5, 32)]
    assert geo.merge_ranges([(10, 19, "FR"), (0, 9, "FR"), (20, 29, "DE"), (25, 40, "DE"), (41, 50, "FR")]) == [
        (0, 19, "FR"), (20, 40, "DE"), (41, 50, "FR"),
    ]


def test_build_cli(tmp_path, capsys):
    missing = tmp_path / "geoip"
    assert geo.main(["build", "--ipv4", str(missing), "--ipv6", "", "--out", str(tmp_path / "x.mmdb")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err and "tor-geoipdb" in err
    missing.write_text(TOR_V4)
    out = tmp_path / "x.mmdb"
    assert geo.main(["build", "--ipv4", str(missing), "--ipv6", "", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"built {out}" in printed and "CC BY-SA 4.0" in printed and "IPFire" in printed
    assert geo.main(["lookup", "--db", str(out), "81.2.69.1", "9.9.9.9", "nonsense"]) == 0
    assert capsys.readouterr().out.splitlines() == ["81.2.69.1\tgb", "9.9.9.9\t-", "nonsense\t-\t(not an IP address)"]


@needs_shared
def test_maxmind_test_databases():
    for name, kind in (("GeoIP2-Country-Test.mmdb", "GeoIP2-Country"), ("GeoLite2-Country-Test.mmdb", "GeoLite2-Country")):
        with CountryLookup(SHARED_GEOIP / name) as lookup:
            assert lookup.database_type == kind
            addrs = np.array([ip("81.2.69.142"), ip("89.160.20.112"), ip("216.160.83.56"), ip("8.8.8.8")], dtype=np.uint32)
            assert lookup.countries(addrs).tolist() == ["gb", "se", "us", "-"]


@needs_shared
def test_dbip_country_lite():
    with CountryLookup(SHARED_GEOIP / "dbip-country-lite.mmdb") as lookup:
        assert lookup.database_type == "DBIP-Country-Lite"
        addrs = np.array([ip("8.8.8.8"), ip("193.51.24.1"), ip("81.2.69.142"), ip("10.0.0.1")], dtype=np.uint32)
        assert lookup.countries(np.repeat(addrs, 1000)).reshape(4, 1000)[:, 0].tolist() == ["us", "fr", "gb", "-"]


def test_geoip_resource_never_raises(tmp_path, monkeypatch, tiny_db):
    from vlf_dagster.orchestration.resources.geoip import GEOIP_ENV, GeoIPResource

    monkeypatch.delenv(GEOIP_ENV, raising=False)
    missing = tmp_path / "missing.mmdb"
    res = GeoIPResource(path=str(missing))
    assert res.lookup() is None
    assert res.status().startswith(f"no GeoIP database at {missing}: run `make geoip`")
    corrupt = tmp_path / "corrupt.mmdb"
    corrupt.write_bytes(b"\0" * 64)
    assert GeoIPResource(path=str(corrupt)).lookup() is None
    assert "unusable" in GeoIPResource(path=str(corrupt)).status()
    # the environment variable replaces the default path, not an explicit one
    monkeypatch.setenv(GEOIP_ENV, str(tiny_db))
    default = GeoIPResource()
    assert default.resolved_path() == tiny_db
    assert default.lookup().country("81.2.69.1") == "gb" and default.lookup() is default.lookup()
    assert default.status() == f"GeoIP database {tiny_db} (GeoLite2-Country, built {default.lookup().build_time:%Y-%m-%d})"
    assert GeoIPResource(path=str(missing)).resolved_path() == missing


def test_kept_ipv4_ranges_answer_as_the_walk_does(tiny_db, tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    edges = [ip(a) + d for a in ("81.2.69.0", "81.2.70.0", "1.0.0.0", "1.0.1.0", "1.0.2.0") for d in (-1, 0, 1, 255)]
    addrs = np.concatenate([rng.integers(0, 1 << 32, 2000, dtype=np.uint64).astype(np.uint32),
                            rng.integers(ip("1.0.0.0"), ip("1.0.2.0"), 500).astype(np.uint32),
                            np.array(edges + [0, 0xFFFFFFFF], dtype=np.int64).astype(np.uint32)])
    walked = CountryLookup(tiny_db).countries(addrs)
    cache = tmp_path / "ranges"
    kept = CountryLookup(tiny_db, cache)
    assert kept.countries(addrs).tolist() == walked.tolist()
    assert {"gb", "au", "cn", "-"} <= set(walked.tolist())
    assert [p.name.startswith("ipv4-ranges-") for p in cache.iterdir()] == [True]  # kept, no temporary left
    # a second process reads the kept arrays and never walks the database
    again = CountryLookup(tiny_db, cache)
    monkeypatch.setattr(again, "_reader", None)
    assert again.countries(addrs.reshape(2, -1)).ravel().tolist() == walked.tolist()
    # a rebuilt database gets its own arrays, and the old ones go
    write_mmdb(tiny_db, {"81.2.69.0/24": "DE"})
    assert CountryLookup(tiny_db, cache).countries(np.array([ip("81.2.69.1"), ip("1.0.0.1")], np.uint32)).tolist() == ["de", "-"]
    assert len(list(cache.iterdir())) == 1
