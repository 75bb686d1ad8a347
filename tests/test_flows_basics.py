import numpy as np
import pyarrow as pa
import pytest

from conftest import flows, ip
from vlf_dagster.flows import flowtypes as ft
from vlf_dagster.flows.storage import ROW_GROUP_ROWS, write_parquet, write_parquet_batches
from vlf_dagster.flows.flags import FlagsError, flag_strings, flags_to_string, match_high_mask, parse_flags, parse_high_mask
from vlf_dagster.flows.schema import FLOW_SCHEMA, SchemaError, conform, ipv4_strings
from vlf_dagster.flows.site import SiteConfigError, load_site, site_from_mapping


def test_flag_strings_follow_fsrpauec_with_fixed_columns():
    value = parse_flags("FS PA")
    assert value == 1 + 2 + 8 + 16
    assert flags_to_string(value) == "FS PA   "
    assert flags_to_string(value, columns=False) == "FSPA"
    assert list(flag_strings(np.array([2, 18, 0]))) == ["S", "SA", ""]
    assert parse_flags("sa") == 18


def test_high_mask_pairs_or_together_and_skip_protocol():
    pairs = parse_high_mask("S/SA,R/R")
    assert pairs == [(2, 18), (4, 4)]
    values = np.array([2, 18, 4, 20, 0], dtype=np.uint8)  # S, SA, R, RA, none
    assert match_high_mask(values, pairs).tolist() == [True, False, True, True, False]
    # no protocol check: a UDP flow (flags 0) passes /S
    assert match_high_mask(np.array([0], dtype=np.uint8), parse_high_mask("/S")).tolist() == [True]
    with pytest.raises(FlagsError):
        parse_high_mask("SA/S")  # HIGH not inside MASK
    with pytest.raises(FlagsError):
        parse_flags("SX")


def test_conform_fills_defaults_and_rejects_bad_tables():
    t = conform(pa.table({"sIP": [1], "dIP": [2], "sPort": [3], "dPort": [4], "protocol": [6], "packets": [1], "bytes": [40], "sTime": [0]}))
    assert t.schema.equals(FLOW_SCHEMA, check_metadata=False)
    assert t.column("sIPv6").null_count == 1 and t.column("flowtype").to_pylist() == [0]
    with pytest.raises(SchemaError, match="missing required"):
        conform(pa.table({"sIP": [1]}))
    with pytest.raises(SchemaError, match="sPort"):
        conform(pa.table({"sIP": [1], "dIP": [2], "sPort": [70000], "dPort": [4], "protocol": [6], "packets": [1], "bytes": [40], "sTime": [0]}))


def test_ipv4_strings_vectorised():
    assert list(ipv4_strings(np.array([ip("10.1.24.7"), 0, 2**32 - 1], dtype=np.uint32))) == ["10.1.24.7", "0.0.0.0", "255.255.255.255"]


def test_classify_every_flowtype(site):
    t = flows(
        [
            {"sIP": "4.2.2.1", "dIP": "10.1.24.5", "dPort": 445},  # in
            {"sIP": "10.1.24.5", "dIP": "4.2.2.1", "sPort": 445, "dPort": 3000},  # out
            {"sIP": "4.2.2.1", "dIP": "10.1.24.5", "dPort": 8080},  # inweb
            {"sIP": "10.1.24.5", "dIP": "4.2.2.1", "sPort": 443},  # outweb
            {"sIP": "4.2.2.1", "dIP": "10.1.24.5", "protocol": 1, "sPort": 0, "dPort": 2048},  # inicmp
            {"sIP": "10.1.27.255", "dIP": "4.2.2.1", "protocol": 1, "sPort": 0, "dPort": 0},  # outicmp
            {"sIP": "10.1.24.1", "dIP": "10.1.26.1"},  # int2int
            {"sIP": "4.2.2.1", "dIP": "8.8.8.8"},  # ext2ext
            {"sIP": "0.0.0.0", "dIP": "10.1.24.5"},  # other
            {"sIP": "4.2.2.1", "dIP": "10.1.24.5", "protocol": 17, "dPort": 80},  # UDP 80 is not web: in
            {"sIP": "10.1.28.0", "dIP": "10.1.24.5", "dPort": 25},  # just outside the /22: in
        ]
    )
    got = [ft.type_name(x) for x in ft.classify(t, site)]
    assert got == ["in", "out", "inweb", "outweb", "inicmp", "outicmp", "int2int", "ext2ext", "other", "in", "in"]


def test_null_interface_and_icmp_split_are_configurable():
    s = site_from_mapping({"internal_networks": ["10.0.0.0/8"], "null_interface": 0, "icmp_split": False})
    t = flows([
        {"sIP": "4.2.2.1", "dIP": "10.1.1.1", "out": 0},
        {"sIP": "4.2.2.1", "dIP": "10.1.1.1", "out": 3, "protocol": 1},
    ])
    assert [ft.type_name(x) for x in ft.classify(t, s)] == ["innull", "in"]


def test_classify_ipv6_records():
    import ipaddress

    s = site_from_mapping({"internal_networks": ["10.1.24.0/22", "2001:db8:1::/48"]})
    inside = ipaddress.IPv6Address("2001:db8:1::5").packed
    outside = ipaddress.IPv6Address("2001:db8:2::9").packed
    t = conform(pa.table({
        "sIP": pa.array([0, 0], pa.uint32()), "dIP": pa.array([0, 0], pa.uint32()),
        "sIPv6": pa.array([outside, inside], pa.binary(16)), "dIPv6": pa.array([inside, outside], pa.binary(16)),
        "sPort": [1, 2], "dPort": [3, 4], "protocol": [58, 6], "packets": [1, 1], "bytes": [60, 60], "sTime": [0, 0],
        "attributes": pa.array([0x80, 0x80], pa.uint8()),
    }))
    assert [ft.type_name(x) for x in ft.classify(t, s)] == ["inicmp", "out"]


def test_site_config_errors_are_clear(tmp_path):
    bad = tmp_path / "site.toml"
    bad.write_text('internal_networks = ["10.1.24.0/33"]\n')
    with pytest.raises(SiteConfigError, match="site.toml: internal_networks"):
        load_site(bad)
    bad.write_text('start = "2006-04-01T00:30"\n')
    with pytest.raises(SiteConfigError, match="whole hour"):
        load_site(bad)
    bad.write_text('colour = "blue"\n')
    with pytest.raises(SiteConfigError, match="unknown setting"):
        load_site(bad)


def test_packaged_default_site_and_round_trip(tmp_path, monkeypatch):
    monkeypatch.delenv("VLF_SITE_CONFIG", raising=False)
    monkeypatch.setenv("VLF_DATA_DIR", str(tmp_path))
    default = load_site()
    assert default.source.startswith("<packaged")
    assert [str(n) for n in default.internal_networks] == ["10.1.24.0/22"]
    assert (default.vlf.max_flows, default.vlf.max_destinations) == (10, 1)
    (tmp_path / "site.toml").write_text(default.to_toml().replace("max_flows = 10", "max_flows = 5"))
    again = load_site()
    assert again.source == str(tmp_path / "site.toml")
    assert (again.internal_networks, again.start, again.end) == (default.internal_networks, default.start, default.end)
    assert again.vlf.max_flows == 5


@pytest.mark.parametrize("rows, pieces", [(0, 1), (5, 3), (2 * ROW_GROUP_ROWS + 17, 7)])
def test_batches_written_one_by_one_give_write_parquets_bytes(tmp_path, rows, pieces):
    table = pa.table({"a": np.arange(rows, dtype=np.int64) % 1009, "b": np.arange(rows, dtype=np.float64)})
    cuts = np.linspace(0, rows, pieces + 1).astype(int)
    parts = [table.slice(int(a), int(b - a)) for a, b in zip(cuts[:-1], cuts[1:])]
    assert write_parquet_batches(iter(parts), tmp_path / "streamed.parquet", table.schema) == rows
    write_parquet(table, tmp_path / "whole.parquet")
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()


def test_conform_moves_blob_addresses_into_16_byte_values():
    """DuckDB writes IPv6 columns as BLOB: conform turns them into the schema's 16-byte type as a
    cast would, sliced and chunked columns included, and names a value of the wrong size."""
    from vlf_dagster.flows.schema import IPV6_TYPE, SchemaError, conform

    v6 = b"\x20\x01" + b"\0" * 13 + b"\x07"
    blob = pa.array([None, v6, None, b"\x01" * 16], pa.binary())
    for column in (blob, blob.slice(1), pa.chunked_array([blob.slice(0, 2), blob.slice(2)])):
        base = flows([dict(sIP="4.0.0.1")] * len(column))
        table = conform(base.drop_columns(["sIPv6"]).append_column("sIPv6", column))
        assert table.schema.field("sIPv6").type == IPV6_TYPE
        assert table.column("sIPv6").to_pylist() == column.to_pylist() == column.cast(IPV6_TYPE).to_pylist()
    bad = flows([dict(sIP="4.0.0.1")]).drop_columns(["sIPv6"]).append_column("sIPv6", pa.array([b"abc"], pa.binary()))
    with pytest.raises(SchemaError, match="field sIPv6: an address of 3 bytes"):
        conform(bad, source="x.parquet")


def test_ipv6_words_of_a_blob_column_equal_those_of_16_byte_values():
    from vlf_dagster.flows.schema import IPV6_TYPE, SchemaError, ipv6_words

    v6 = b"\x20\x01" + b"\0" * 13 + b"\x07"
    blob = pa.array([None, v6, b"\x01" * 16], pa.binary())
    got, want = ipv6_words(blob), ipv6_words(blob.cast(IPV6_TYPE))
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert (int(got[0][1]), int(got[1][1])) == (0x2001 << 48, 7)
    with pytest.raises(SchemaError, match=r"not an IPv6 address column \(an address of 3 bytes"):
        ipv6_words(pa.array([b"abc"], pa.binary()))


def test_footers_tell_whether_any_ipv6_address_is_held(tmp_path):
    """storage.ipv6_columns_empty: the footers' null counts prove an IPv4-only file (no scan); one
    IPv6 record in any of the files says otherwise."""
    import ipaddress

    from vlf_dagster.flows import duck
    from vlf_dagster.flows.schema import ATTR_IPV6
    from vlf_dagster.flows.storage import ipv6_columns_empty

    v4 = write_parquet(flows([dict(sIP="1.0.0.1"), dict(sIP="1.0.0.2")]), tmp_path / "v4.parquet")
    v6 = flows([dict(sIP="1.0.0.3")])
    v6 = v6.set_column(v6.schema.get_field_index("sIPv6"), "sIPv6",
                       pa.array([ipaddress.IPv6Address("2001:db8::1").packed], pa.binary(16)))
    v6 = v6.set_column(v6.schema.get_field_index("attributes"), "attributes", pa.array([ATTR_IPV6], pa.uint8()))
    v6 = write_parquet(v6, tmp_path / "v6.parquet")
    con = duck.probe()
    assert ipv6_columns_empty([v4], con) is True
    assert ipv6_columns_empty([v4, v6], con) is False


def test_one_site_lookup_for_the_toolbox_the_store_and_the_code_location(tmp_path, monkeypatch):
    """site.resolve_site is the one order: an explicit file, else $VLF_SITE_CONFIG, else the data
    directory's site.toml, else the packaged default; the store and the definitions agree with it."""
    from vlf_dagster.orchestration.definitions import build_definitions
    from vlf_dagster.flows.site import resolve_site
    from vlf_dagster.orchestration.resources.store import VlfStore

    def site_named(name: str, path, days: int = 1):
        path.write_text(site_from_mapping({"name": name, "internal_networks": ["10.0.0.0/8"], "sensors": ["S0"],
                                           "start": "2006-04-01T00:00", "end": f"2006-04-0{1 + days}T00:00"}).to_toml())
        return path

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.delenv("VLF_SITE_CONFIG", raising=False)
    monkeypatch.setenv("VLF_DATA_DIR", str(tmp_path / "elsewhere"))
    assert resolve_site(None, data).name == load_site(None).name  # nothing anywhere: the packaged default
    site_named("in-data", data / "site.toml")
    env = site_named("from-env", tmp_path / "env.toml", days=2)
    explicit = site_named("explicit", tmp_path / "explicit.toml")
    assert resolve_site(None, data).name == "in-data"
    monkeypatch.setenv("VLF_SITE_CONFIG", str(env))
    assert resolve_site(None, data).name == "from-env"
    assert resolve_site(explicit, data).name == "explicit"
    assert VlfStore(data_dir=str(data)).site.name == "from-env"
    assert VlfStore(data_dir=str(data), site_config=str(explicit)).site.name == "explicit"
    hours = build_definitions(data).resolve_job_def("hourly_job").partitions_def.get_partition_keys()
    assert len(hours) == 48  # the code location's partitions are the environment's site's two days
