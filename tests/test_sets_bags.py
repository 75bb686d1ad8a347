import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import flows, ip
from vlf_dagster.flows import bags
from vlf_dagster.flows.sets import IPSet, SetFileError
from vlf_dagster.flows.storage import write_parquet


def test_ipset_algebra_and_membership():
    a = IPSet.from_strings(["10.1.24.0/30", "2001:db8::1"])
    b = IPSet.from_strings(["10.1.24.2", "10.1.24.9", "2001:db8::1", "2001:db8::2"])
    assert len(a) == 5 and "10.1.24.3" in a and "10.1.24.4" not in a and "2001:db8::1" in a
    assert sorted(map(int, (a & b).ipv4_array())) == [ip("10.1.24.2")]
    assert (a & b).ipv6_ints() == [int(__import__("ipaddress").IPv6Address("2001:db8::1"))]
    assert len(a | b) == 7
    assert len(a - b) == 3  # .0 .1 .3
    assert len(a ^ b) == 5  # .0 .1 .3 .9 and 2001:db8::2
    values = np.array([ip("10.1.24.1"), ip("10.1.24.9"), ip("1.2.3.4")], dtype=np.uint32)
    assert a.contains_ipv4(values).tolist() == [True, False, False]


def test_ipset_file_round_trip_and_corruption(tmp_path):
    s = IPSet.from_strings(["192.168.0.0/16", "2001:db8::/126"])
    path = s.write(tmp_path / "x.set")
    assert IPSet.read(path) == s
    data = path.read_bytes()
    (tmp_path / "bad.set").write_bytes(b"NOTSET" + data[6:])
    with pytest.raises(SetFileError, match="bad.set: not an IP set file"):
        IPSet.read(tmp_path / "bad.set")
    (tmp_path / "short.set").write_bytes(data[:30])
    with pytest.raises(SetFileError, match="short.set"):
        IPSet.read(tmp_path / "short.set")


def _flow_file(tmp_path, rows):
    return write_parquet(flows(rows), tmp_path / f"f{len(list(tmp_path.iterdir()))}.parquet")


def test_bag_counts_records_packets_bytes(tmp_path):
    f = _flow_file(tmp_path, [
        {"sIP": "1.1.1.1", "dIP": "10.1.24.1", "packets": 2, "bytes": 100},
        {"sIP": "1.1.1.1", "dIP": "10.1.24.2", "packets": 3, "bytes": 200},
        {"sIP": "2.2.2.2", "dIP": "10.1.24.1", "packets": 1, "bytes": 40},
    ])
    out = bags.bag_from_flows([f], tmp_path / "b.parquet", ["sIP"], ["records", "packets", "bytes"])
    t = pq.read_table(out).to_pylist()
    assert [(r["sIP"], r["records"], r["packets"], r["bytes"]) for r in t] == [
        (ip("1.1.1.1"), 2, 5, 300), (ip("2.2.2.2"), 1, 1, 40)]
    assert bags.read_info(out) == bags.BagInfo(("sIP",), ("records", "packets", "bytes"))
    pairs = bags.bag_from_flows([f], tmp_path / "p.parquet", ["sIP", "dIP"], ["records"])
    assert pq.read_table(pairs).num_rows == 3


def test_bag_counter_saturates_and_add_overflow_is_an_error(tmp_path):
    big = 2**63
    f = _flow_file(tmp_path, [
        {"sIP": "1.1.1.1", "dIP": "10.1.24.1", "packets": big, "bytes": big},
        {"sIP": "1.1.1.1", "dIP": "10.1.24.1", "packets": big, "bytes": big},
    ])
    out = bags.bag_from_flows([f], tmp_path / "b.parquet", ["sIP"], ["bytes"])
    assert pq.read_table(out).column("bytes").to_pylist() == [bags.COUNTER_MAX]  # 2^64 saturates at 2^64-2
    half = bags.bag_from_flows([_flow_file(tmp_path, [{"sIP": "1.1.1.1", "packets": big, "bytes": big}])], tmp_path / "h.parquet", ["sIP"], ["bytes"])
    with pytest.raises(bags.BagOverflowError, match="overflow"):
        bags.add_bags([half, half], tmp_path / "sum.parquet")


def test_add_bags_with_hour_counts_and_coverset(tmp_path):
    h1 = bags.bag_from_flows([_flow_file(tmp_path, [{"sIP": "1.1.1.1"}, {"sIP": "2.2.2.2"}])], tmp_path / "h1.parquet", ["sIP"])
    h2 = bags.bag_from_flows([_flow_file(tmp_path, [{"sIP": "1.1.1.1"}, {"sIP": "1.1.1.1"}])], tmp_path / "h2.parquet", ["sIP"])
    total = bags.add_bags([h1, h2], tmp_path / "t.parquet", extra={"hours": "count(*)"})
    rows = {r["sIP"]: (r["records"], r["hours"]) for r in pq.read_table(total).to_pylist()}
    assert rows == {ip("1.1.1.1"): (3, 2), ip("2.2.2.2"): (1, 1)}
    assert sorted(bags.coverset(total, max_counter=1).ipv4_array().tolist()) == [ip("2.2.2.2")]
    assert len(bags.coverset(total, counter="hours", min_counter=2)) == 1
    with pytest.raises(bags.BagError, match="no counter"):
        bags.coverset(total, counter="bytes")


def test_empty_inputs_give_empty_bags(tmp_path):
    out = bags.bag_from_flows([], tmp_path / "e.parquet", ["sIP"], ["records"])
    assert pq.read_table(out).num_rows == 0
    assert len(bags.coverset(out)) == 0
    with pytest.raises(bags.BagError, match="not a bag"):
        bags.read_info(_flow_file(tmp_path, [{"sIP": "1.1.1.1"}]))
