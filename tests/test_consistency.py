"""Cross-artifact checks: they pass on agreeing artifacts and name the difference when they do not."""

from datetime import timedelta

import pyarrow as pa

from conftest import START, flows, ip
from vlf_dagster.analysis.steps.consistency import flows_conserved, intersection_holds, vlf_flows_match_bag
from vlf_dagster.flows.bags import BagInfo, write_bag
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.storage import archive_path, hour_ms, write_parquet

H1 = START + timedelta(hours=1)


def _bag(path, counts: dict[str, int]):
    table = pa.table({"sIP": pa.array([ip(a) for a in counts], pa.uint32()),
                      "sIPv6": pa.array([None] * len(counts), pa.binary(16)),
                      "records": pa.array(list(counts.values()), pa.uint64())})
    return write_bag(table, path, BagInfo(("sIP",), ("records",)))


def test_flows_conserved_counts_every_inbound_record_once(tmp_path):
    files = [write_parquet(flows([dict(sIP="4.0.0.1"), dict(sIP="4.0.0.2")]), archive_path(tmp_path, 0, "S0", START)),
             write_parquet(flows([dict(sIP="4.0.0.1", sTime=hour_ms(H1))]), archive_path(tmp_path, 0, "S0", H1))]
    good = flows_conserved(files, _bag(tmp_path / "good.parquet", {"4.0.0.1": 2, "4.0.0.2": 1}))
    assert good.passed and good.metadata["inbound_archive_records"] == 3 and good.metadata["difference"] == 0
    stale = flows_conserved(files, _bag(tmp_path / "stale.parquet", {"4.0.0.1": 1, "4.0.0.2": 1}))  # hour 1 not rolled up
    assert not stale.passed and stale.metadata["difference"] == -1
    assert flows_conserved([], _bag(tmp_path / "empty.parquet", {})).passed


def test_vlf_flows_must_be_the_bag_s_flows_of_the_vlf_sources(tmp_path):
    bag = _bag(tmp_path / "bag.parquet", {"4.0.0.1": 2, "4.0.0.2": 1, "4.0.0.9": 50})
    fd = IPSet.from_strings(["4.0.0.1", "4.0.0.2"])
    extracted = write_parquet(flows([dict(sIP="4.0.0.1"), dict(sIP="4.0.0.1"), dict(sIP="4.0.0.2")]), tmp_path / "v.parquet")
    assert vlf_flows_match_bag(extracted, bag, fd).passed
    short = write_parquet(flows([dict(sIP="4.0.0.1"), dict(sIP="4.0.0.2")]), tmp_path / "short.parquet")
    verdict = vlf_flows_match_bag(short, bag, fd)
    assert not verdict.passed and verdict.metadata == {"vlf_flows": 2, "bag_records_of_vlf_fd_sources": 3, "sources_outside_vlf_fd": 0}
    stranger = write_parquet(flows([dict(sIP="4.0.0.1"), dict(sIP="4.0.0.9"), dict(sIP="4.0.0.2")]), tmp_path / "x.parquet")
    assert vlf_flows_match_bag(stranger, bag, fd).metadata["sources_outside_vlf_fd"] == 1
    # strangers are counted as distinct sources, IPv6 ones too
    v6 = b"\x20\x01" + b"\0" * 13 + b"\x07"
    mixed = write_parquet(flows([dict(sIP="4.0.0.9"), dict(sIP="4.0.0.9"), dict(sIP="4.0.0.8"),
                                 dict(sIP="0.0.0.0", attributes=0x80, sIPv6=v6, dIPv6=v6)]), tmp_path / "m.parquet")
    assert vlf_flows_match_bag(mixed, bag, fd).metadata["sources_outside_vlf_fd"] == 3


def test_intersection_holds_names_missing_and_extra_members():
    f, d = IPSet.from_strings(["1.1.1.1", "2.2.2.2", "2001:db8::1"]), IPSet.from_strings(["2.2.2.2", "3.3.3.3", "2001:db8::1"])
    assert intersection_holds(f, d, IPSet.from_strings(["2.2.2.2", "2001:db8::1"])).passed
    verdict = intersection_holds(f, d, IPSet.from_strings(["2.2.2.2", "3.3.3.3"]))
    assert not verdict.passed and verdict.metadata["missing_from_vlf_fd"] == 1 and verdict.metadata["extra_in_vlf_fd"] == 1


def test_conservation_with_a_row_cache_reads_only_changed_footers_and_stays_exact(tmp_path, monkeypatch):
    from vlf_dagster.flows import storage

    files = [write_parquet(flows([dict(sIP="4.0.0.1")] * n), tmp_path / f"in-{n}.parquet") for n in (1, 2)]
    bag = _bag(tmp_path / "bag.parquet", {"4.0.0.1": 3})
    cache = tmp_path / "state" / "rows.parquet"
    assert flows_conserved(files, bag, row_cache=cache).passed
    footers = []
    real = storage.ParquetRowCounts.rows
    monkeypatch.setattr(storage.ParquetRowCounts, "rows",
                        lambda self, con, fs: footers.extend(f for f in fs if f not in self.known) or real(self, con, fs))
    assert flows_conserved(files, bag, row_cache=cache).passed and footers == []  # every count from the cache
    write_parquet(flows([dict(sIP="4.0.0.1")] * 4), files[0])  # an hour re-packed with more records
    verdict = flows_conserved(files, bag, row_cache=cache)
    assert not verdict.passed and verdict.metadata["inbound_archive_records"] == 6
