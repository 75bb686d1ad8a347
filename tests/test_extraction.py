"""vlf_flows' and vlf_outbound_flows' extraction refreshed by source equals a full extraction."""

from __future__ import annotations

import ipaddress
import json

import pyarrow as pa

from conftest import flows
from vlf_dagster.analysis.steps.extraction import extract_by_set
from vlf_dagster.flows.segments import SOURCE_IS_DIP, SOURCE_IS_SIP, Segmented
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.storage import write_parquet

T0 = 1_175_385_600_000  # 2007-04-01 00:00 UTC
V6 = ipaddress.IPv6Address("2001:db8::5").packed
V6_INSIDE = ipaddress.IPv6Address("2001:db8:ffff::1").packed


def _flow(source: str, n: int, **extra) -> dict:
    record = dict(sIP=source, dIP="10.1.24.7", sPort=1025 + n, dPort=445, protocol=6, sTime=T0 + 1000 * n, bytes=40 + n)
    record.update(extra)
    return record


def _v6_flow(n: int) -> dict:
    return _flow("0.0.0.0", n, dIP="0.0.0.0", attributes=0x80, sIPv6=V6, dIPv6=V6_INSIDE)


def _ordered(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: (r["sTime"], r["sIP"], r["sPort"], str(r["sIPv6"])))


def _months(tmp_path, by_month: dict[str, list[dict]]) -> list:
    paths = []
    for month, records in by_month.items():
        path = tmp_path / "monthly" / f"month={month}.parquet"
        if records is None:
            path.unlink(missing_ok=True)
            continue
        write_parquet(flows(records), path)
        paths.append(path)
    return sorted(p for p in (tmp_path / "monthly").glob("*.parquet"))


def _full(tmp_path, months, sources, key, tag) -> pa.Table:
    target = Segmented(tmp_path / f"full-{tag}", key)
    extract_by_set(months, sources, target, tmp_path / f"state-full-{tag}")
    return target.read()


def test_a_refresh_equals_a_full_extraction_through_entries_exits_late_and_replaced_months(tmp_path):
    A, B, C, D, E = (f"4.0.0.{i}" for i in range(1, 6))
    months_data = {
        "2007-02": [_flow(A, 1), _flow(B, 2), _v6_flow(3)],
        "2007-03": [_flow(B, 10), _flow(C, 11), _flow(D, 12)],
    }
    sources = IPSet.from_strings([A, B, C, "2001:db8::5"])  # D: not VLF
    target = Segmented(tmp_path / "vlf_flows", SOURCE_IS_SIP)
    state = tmp_path / "state"
    first = extract_by_set(_months(tmp_path, months_data), sources, target, state)
    assert not first.incremental and first.rows == 5

    steps = [
        # C's 11th flow arrives: C leaves the set; a new source E enters with a first flow in April
        ({"2007-04": [_flow(C, 20), _flow(E, 21)]}, IPSet.from_strings([A, B, E, "2001:db8::5"])),
        # B's first flow lands late, in February; nothing else moves
        ({"2007-02": months_data["2007-02"] + [_flow(B, 0)]}, None),
        # March is replaced: D's flow goes, B's March flow changes its bytes; the IPv6 source gets a second flow
        ({"2007-03": [_flow(B, 10, bytes=999), _flow(C, 11)], "2007-04": [_flow(C, 20), _flow(E, 21), _v6_flow(22)]}, None),
        # D becomes VLF; April's file is withdrawn
        ({"2007-04": None}, IPSet.from_strings([A, B, D, "2001:db8::5"])),
    ]
    for i, (change, new_sources) in enumerate(steps):
        months_data.update(change)
        sources = new_sources or sources
        months = _months(tmp_path, months_data)
        refresh = extract_by_set(months, sources, target, state)
        assert refresh.incremental, i
        assert _ordered(target.read()) == _ordered(_full(tmp_path, months, sources, SOURCE_IS_SIP, i)), i
        assert refresh.rows == target.rows == target.read().num_rows
    assert refresh.sources_changed <= 3  # C, E and D at most: not every source


def _two_months_extracted(tmp_path):
    """Two months of one source each, both in the set, extracted once: (months, sources, target)."""
    months = _months(tmp_path, {"2007-02": [_flow("4.0.0.1", 1)], "2007-03": [_flow("4.0.0.2", 2)]})
    sources = IPSet.from_strings(["4.0.0.1", "4.0.0.2"])
    target = Segmented(tmp_path / "t", SOURCE_IS_SIP)
    extract_by_set(months, sources, target, tmp_path / "s")
    return months, sources, target


def test_only_changed_months_are_read_and_an_idle_refresh_changes_nothing(tmp_path):
    months, sources, target = _two_months_extracted(tmp_path)
    g = target.generation
    idle = extract_by_set(months, sources, target, tmp_path / "s")
    assert (idle.months_read, idle.sources_changed) == (0, 0)
    assert target.changes_since(g).num_rows == 0
    months = _months(tmp_path, {"2007-03": [_flow("4.0.0.2", 2), _flow("4.0.0.2", 3)]})
    refresh = extract_by_set(months, sources, target, tmp_path / "s")
    assert (refresh.months_read, refresh.sources_changed) == (1, 1)
    assert target.changes_since(g + 1).column("ip").to_pylist() == [int(ipaddress.IPv4Address("4.0.0.2"))]


def test_answers_are_keyed_by_their_destination(tmp_path):
    answer = lambda outside, n: dict(sIP="10.1.24.7", dIP=outside, sPort=445, dPort=1025, protocol=6, sTime=T0 + n)  # noqa: E731
    months = _months(tmp_path, {"2007-03": [answer("4.0.0.1", 1), answer("4.0.0.2", 2)]})
    target = Segmented(tmp_path / "out", SOURCE_IS_DIP)
    extract_by_set(months, IPSet.from_strings(["4.0.0.1"]), target, tmp_path / "s")
    assert [r["dIP"] for r in target.read().to_pylist()] == [int(ipaddress.IPv4Address("4.0.0.1"))]
    extract_by_set(months, IPSet.from_strings(["4.0.0.2"]), target, tmp_path / "s")
    assert [r["dIP"] for r in target.read().to_pylist()] == [int(ipaddress.IPv4Address("4.0.0.2"))]


def test_a_lost_or_stale_state_means_a_full_extraction(tmp_path):
    months = _months(tmp_path, {"2007-03": [_flow("4.0.0.1", 1)]})
    sources = IPSet.from_strings(["4.0.0.1"])
    target = Segmented(tmp_path / "t", SOURCE_IS_SIP)
    extract_by_set(months, sources, target, tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "state.json").read_text())
    for digest in (tmp_path / "s" / "digests").glob("*.parquet"):
        digest.unlink()
    assert not extract_by_set(months, sources, target, tmp_path / "s").incremental  # digests gone
    target.touch()  # the artifact moved on without the state
    assert not extract_by_set(months, sources, target, tmp_path / "s").incremental
    assert meta["version"] == 1


def test_two_refreshes_at_once_take_turns(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    _, sources, target = _two_months_extracted(tmp_path)
    g = target.generation
    months = _months(tmp_path, {"2007-03": [_flow("4.0.0.2", 2), _flow("4.0.0.2", 3)]})
    with ThreadPoolExecutor(2) as pool:  # a manual launch beside automation's run
        results = list(pool.map(lambda _: extract_by_set(months, sources, Segmented(tmp_path / "t", SOURCE_IS_SIP),
                                                         tmp_path / "s"), range(2)))
    assert sorted(r.sources_changed for r in results) == [0, 1]  # one refreshed, the other found nothing left
    assert target.generation == g + 2
    assert _ordered(target.read()) == _ordered(_full(tmp_path, months, sources, SOURCE_IS_SIP, "both"))
