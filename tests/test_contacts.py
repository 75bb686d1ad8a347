"""Distinct destinations per source and the contact-surface raster refreshed by changed months
equal a full count."""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlf_dagster.analysis.steps import contacts
from vlf_dagster.analysis.tables import figures
from vlf_dagster.flows.storage import write_parquet

NET = ipaddress.ip_network("10.1.24.0/22")
V6 = ipaddress.IPv6Address("2001:db8::9").packed


def _pairs(rows) -> pa.Table:
    """Monthly contact pairs: (outside, inside offset, records); an outside of None is an IPv6 pair."""
    return pa.table({
        "sIP": pa.array([0 if s is None else int(ipaddress.IPv4Address(s)) for s, _, _ in rows], pa.uint32()),
        "sIPv6": pa.array([V6 if s is None else None for s, _, _ in rows], pa.binary(16)),
        "dIP": pa.array([0 if s is None else int(NET.network_address) + d for s, d, _ in rows], pa.uint32()),
        "dIPv6": pa.array([V6 if s is None else None for s, _, _ in rows], pa.binary(16)),
        "records": pa.array([n for *_, n in rows], pa.uint64()),
    })


def _write(folder, months: dict) -> list:
    for name, rows in months.items():
        path = folder / f"month={name}.parquet"
        if rows is None:
            path.unlink(missing_ok=True)
        else:
            write_parquet(_pairs(rows), path)
    return sorted(folder.glob("month=*.parquet"))


def _bag(path) -> list:
    return sorted(pq.read_table(path).to_pylist(), key=str)


def test_a_refresh_equals_a_full_count_through_new_changed_and_withdrawn_months(tmp_path):
    rng = np.random.default_rng(4)
    sources = [f"4.{k % 250}.{k // 250}.1" for k in range(1, 300)]
    months = {m: [(str(rng.choice(sources)), int(rng.integers(0, 1024)), 1) for _ in range(400)] for m in ("2007-01", "2007-02")}
    folder = tmp_path / "monthly"
    folder.mkdir()
    bag, state = tmp_path / "bag.parquet", tmp_path / "state"
    first = contacts.refresh_contacts(_write(folder, months), bag, state, NET)
    assert not first.incremental
    steps = [
        lambda m: {"2007-02": m["2007-02"] + [(sources[0], 5, 1), (sources[1], 6, 2), (None, 0, 1)]},  # an IPv6 pair too
        lambda m: {"2007-01": m["2007-01"][50:]},  # a month replaced: some pairs gone
        lambda m: {"2007-03": [(sources[2], 7, 1), (sources[2], 7, 3)]},  # a new month
        lambda m: {"2007-01": None},  # a month withdrawn
        lambda m: {"2007-02": [(s, d, n + 1) for s, d, n in m["2007-02"]]},  # records change, pairs do not
    ]
    for i, step in enumerate(steps):
        change = step(months)
        months.update(change)
        files = _write(folder, {k: v for k, v in months.items() if k in change})
        refresh = contacts.refresh_contacts(files, bag, state, NET)
        assert refresh.incremental, i
        full_bag, full_state = tmp_path / f"full{i}.parquet", tmp_path / f"full-state{i}"
        contacts.refresh_contacts(files, full_bag, full_state, NET)
        assert _bag(bag) == _bag(full_bag), i
        grid, pairs = contacts.contact_raster(state, bag, NET)
        expected, expected_pairs = figures.contact_surface_raster(files, NET)
        assert np.array_equal(grid, expected) and pairs == expected_pairs, i
        assert bag.read_bytes() == full_bag.read_bytes(), i  # the same bytes as a full count
    assert refresh.sources_changed == 0  # the last step moved no pair


def test_an_unchanged_window_reads_nothing_and_a_stale_state_counts_again(tmp_path):
    folder = tmp_path / "monthly"
    folder.mkdir()
    files = _write(folder, {"2007-01": [("4.0.0.1", 1, 1), ("4.0.0.1", 2, 1), ("4.0.0.2", 1, 1)]})
    bag, state = tmp_path / "bag.parquet", tmp_path / "state"
    contacts.refresh_contacts(files, bag, state, NET)
    assert contacts.refresh_contacts(files, bag, state, NET) == contacts.ContactRefresh(0, 0, True)
    assert {r["destinations"] for r in pq.read_table(bag).to_pylist()} == {1, 2}
    write_parquet(pq.read_table(bag).slice(0, 1), bag)  # the bag rewritten behind the state's back
    assert contacts.contact_raster(state, bag, NET) is None
    assert not contacts.refresh_contacts(files, bag, state, NET).incremental
    assert not contacts.refresh_contacts(files, bag, state, ipaddress.ip_network("10.9.0.0/24")).incremental  # other network
    assert len(pq.read_table(bag)) == 2


def test_window_counter_bags_refreshed_by_changed_months_equal_a_full_sum(tmp_path):
    from vlf_dagster.analysis.steps.vlf import refresh_counter_bag, window_counter_bag
    from vlf_dagster.flows.bags import BagInfo, write_bag

    info = BagInfo(("sIP",), ("records", "packets", "bytes", "hours"))
    folder = tmp_path / "monthly"

    def month(name, rows):
        path = folder / f"month={name}.parquet"
        if rows is None:
            path.unlink()
            return
        table = pa.table({"sIP": pa.array([0 if s is None else int(ipaddress.IPv4Address(s)) for s, _ in rows], pa.uint32()),
                          "sIPv6": pa.array([V6 if s is None else None for s, _ in rows], pa.binary(16)),
                          **{c: pa.array([n for _, n in rows], pa.uint64()) for c in info.counters}})
        write_bag(table, path, info)

    folder.mkdir()
    month("2007-01", [("4.0.0.1", 3), ("4.0.0.2", 1)])
    month("2007-02", [("4.0.0.1", 2), (None, 1)])
    out, state = tmp_path / "bag.parquet", tmp_path / "state"
    assert not refresh_counter_bag(sorted(folder.glob("*.parquet")), "records", out, state)
    for i, (name, rows) in enumerate([("2007-02", [("4.0.0.1", 5), (None, 1), ("4.0.0.3", 1)]),  # more flows, a newcomer
                                      ("2007-01", [("4.0.0.1", 3)]),  # 4.0.0.2's only flow withdrawn: it leaves the bag
                                      ("2007-03", [("4.0.0.2", 4)]),  # a new month
                                      ("2007-02", None)]):  # a month withdrawn
        month(name, rows)
        files = sorted(folder.glob("*.parquet"))
        assert refresh_counter_bag(files, "records", out, state), i
        window_counter_bag(files, "records", tmp_path / "full.parquet")
        assert out.read_bytes() == (tmp_path / "full.parquet").read_bytes(), i  # the same bytes as a full sum
    assert refresh_counter_bag(files, "records", out, state)  # nothing changed: nothing to do
    assert not refresh_counter_bag(files, "hours", out, state)  # another counter: a full sum
