"""`vlf scan` (issue 15): rwscan's TRW and TCP BLR models, byte for byte against SiLK's rwscan, and
the simulator's planted scanners found."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import START, flows
from vlf_dagster.cli import main
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.storage import hour_ms
from vlf_dagster.flows.tools.scan import HYBRID, TRW, find_scanners

GOLDEN = Path(__file__).resolve().parent / "silk" / "scan"  # written by bench/rwscan_golden.py with SiLK 3.19.1
LAYOUTS = {"plain": [], "scandb": ["--scandb"], "delimited": ["--delimited=,", "--integer-ips"],
           "no-titles": ["--no-titles", "--no-final-delimiter", "--column-separator=;"]}


@pytest.mark.parametrize("model", [0, 1, 2])
def test_each_model_prints_what_rwscan_printed(model, tmp_path, capsys):
    out = tmp_path / "scan.txt"
    assert main(["scan", f"--scan-model={model}", f"--trw-internal-set={GOLDEN / 'inside.set'}", "--model-fields",
                 f"--output-path={out}", str(GOLDEN / "flows.rw")]) == 0
    assert out.read_bytes() == (GOLDEN / f"rwscan-model{model}.txt").read_bytes()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_text_options_lay_out_rows_as_rwscan(layout, tmp_path):
    out = tmp_path / "scan.txt"
    assert main(["scan", "--scan-model=2", f"--trw-internal-set={GOLDEN / 'inside.set'}", *LAYOUTS[layout],
                 f"--output-path={out}", str(GOLDEN / "flows.rw")]) == 0
    assert out.read_bytes() == (GOLDEN / f"rwscan-{layout}.txt").read_bytes()


def _walk(dips: list[str], flags: int = 0x02, sip: str = "4.0.0.1") -> pa.Table:
    t = hour_ms(START)
    return flows([{"sIP": sip, "dIP": d, "flags": flags, "sTime": t + 1000 * i, "duration": 500}
                  for i, d in enumerate(dips)])


def test_four_misses_make_a_scanner_four_hits_clear_a_source():
    inside = IPSet.from_strings(["10.1.24.1", "10.1.24.2", "10.1.24.3", "10.1.24.4"])
    misses = [f"10.1.25.{i}" for i in range(1, 5)]
    found = find_scanners(_walk(misses), inside, scan_model=TRW).to_pylist()
    assert [(r["flows"], round(r["scan_prob"], 6), r["scan_model"]) for r in found] == [(4, 256.0, TRW)]  # 4 x 4
    assert found[0]["stime"] == hour_ms(START) // 1000 and found[0]["etime"] == hour_ms(START) // 1000 + 3
    assert find_scanners(_walk(misses[:3]), inside, scan_model=TRW).num_rows == 0  # 4^3 = 64 < 99
    # hits first: four hits clear the source before the misses come
    assert find_scanners(_walk(["10.1.24.1", "10.1.24.2", "10.1.24.3", "10.1.24.4"] + misses), inside,
                        scan_model=TRW).num_rows == 0
    # not bare SYNs (an answered connection): TRW counts hits and never decides while they come
    assert find_scanners(_walk(misses, flags=0x12), inside, scan_model=TRW).num_rows == 0
    # the same destination again is no new trial
    assert find_scanners(_walk(misses[:3] + misses[:3]), inside, scan_model=TRW).num_rows == 0


BINETFLOW = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "binetflow" / "test11-portscan.binetflow"


@pytest.mark.skipif(not BINETFLOW.exists(), reason="the shared real data is not here")
def test_the_port_scanning_host_of_a_real_capture_is_found():
    """CTU's test11 capture: 10.8.0.69 probes 20 ports of one host and pings 26 times. TRW cannot
    call it (one destination host), TCP BLR does not judge it (20 records, under 32); ICMP BLR does,
    as SiLK's rwscan does on the same records (rwscan printed this row: scan_model 2, 0.650997)."""
    from vlf_dagster.flows.importers.readers import import_file

    records = import_file(BINETFLOW).flows
    found = find_scanners(records, IPSet.from_strings([])).to_pylist()
    assert [(str(ipaddress.ip_address(r["sIP"])), r["proto"], r["flows"], r["scan_model"], f"{r['scan_prob']:f}")
            for r in found] == [("10.8.0.69", 1, 46, 2, "0.650997")]


def test_trw_judges_tcp_only_and_blr_needs_32_records():
    """The walk that makes a TCP scanner is no UDP scan: TRW judges TCP alone, and BLR (which
    judges UDP, as the goldens show) needs 32 records."""
    inside = IPSet.from_strings(["10.1.24.1"])
    table = _walk([f"10.1.25.{i}" for i in range(1, 9)])
    as_udp = table.set_column(table.schema.get_field_index("protocol"), "protocol", pa.array([17] * 8, pa.uint8()))
    assert find_scanners(as_udp, inside, scan_model=HYBRID).num_rows == 0
    assert find_scanners(table, inside, scan_model=HYBRID).num_rows == 1


def test_bad_options_and_inputs_give_one_line(tmp_path, capsys):
    flows_file = str(GOLDEN / "flows.rw")
    assert main(["scan", flows_file]) == 1
    assert "TRW scan model enabled, but --trw-internal-set not specified" in capsys.readouterr().err
    assert main(["scan", "--scan-model=3", flows_file]) == 1
    assert "invalid --scan-model 3" in capsys.readouterr().err
    bad = tmp_path / "bad.set"
    bad.write_bytes(b"not a set")
    assert main(["scan", f"--trw-internal-set={bad}", flows_file]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and len(err.strip().splitlines()) == 1


def test_the_simulators_planted_scanners_are_found(tmp_path, monkeypatch):
    """Recall of the planted scanners is 1; every source flagged is a planted scanner or a
    low-frequency scanning probe (a scan by TRW's own definition: four misses), never another
    population."""
    from vlf_dagster.flows.site import load_site
    from vlf_dagster.simulate import SimulationConfig, simulate

    site = load_site(Path(__file__).resolve().parents[1] / "vlf_dagster" / "site.default.toml")
    site = site.with_window(START, START + timedelta(days=1))
    data = tmp_path / "data"
    data.mkdir()
    summary = simulate(site, SimulationConfig(days=1, sources=6000, seed=11), data)
    records = pa.concat_tables(pq.read_table(p) for p in sorted((data / "landing").rglob("*.parquet")))
    # the hosts that exist: inside addresses that sent traffic (the pipeline's active inside set)
    sources = {int(a) for a in set(records.column("sIP").to_pylist())}
    networks = [ipaddress.ip_network(n) for n in site.internal_networks]
    inside = IPSet.from_strings([str(ipaddress.ip_address(a)) for a in sources
                                 if any(ipaddress.ip_address(a) in n for n in networks)])
    truth = pq.read_table(summary.ground_truth_path).to_pandas().set_index("sIP")
    found = set(find_scanners(records, inside, scan_model=HYBRID).column("sIP").to_pylist())
    planted = set(truth.index[truth.population == "scanner"])
    assert len(planted) >= 10
    assert planted <= found  # recall 1
    assert set(truth.loc[sorted(found), "population"]) <= {"scanner", "vlf_scan"}
    # the monthly asset's step judges sources in buckets by a hash of sIP: the same rows as one pass
    from vlf_dagster.analysis.steps import scanners as step
    whole = find_scanners(records, inside).select(["sIP", "proto", "flows", "scan_model"])
    monkeypatch.setattr(step, "BUCKET_ROWS", 5_000)
    landing = sorted((data / "landing").rglob("*.parquet"))
    bucketed = step.month_scanners(landing, inside, tmp_path / "month.parquet")
    assert records.num_rows > 5 * 5_000
    assert bucketed.select(["sIP", "proto", "flows", "scan_model"]).equals(whole)


def test_end_times_follow_rwscans_record_by_record_rule():
    """rwscan's event end time, record by record: the first record's end, then the end of each record
    that starts after the end so far; vlf finds the same chain without walking the records."""
    import numpy as np

    from vlf_dagster.flows.tools.scan import _rwscan_etime

    rng = np.random.default_rng(0)
    for trial in range(200):
        sizes = rng.integers(1, 40, rng.integers(1, 8))
        start = rng.integers(0, 100, sizes.sum())
        if trial % 3 == 0:
            start = np.sort(start)  # a sweep in time order: every record moves the end
        end = start + rng.integers(0, 30, sizes.sum())
        offsets = np.r_[0, np.cumsum(sizes)[:-1]]
        expected = []
        for first, size in zip(offsets, sizes):
            etime = end[first]
            for k in range(first + 1, first + size):
                if start[k] > etime:
                    etime = end[k]
            expected.append(etime)
        assert _rwscan_etime(start, end, offsets).tolist() == expected


def test_the_category_table_reads_without_scanners(tmp_path):
    """The report's "Details by type of data" beside its reading without rwscan's scanners."""
    from vlf_dagster.analysis.tables.categories import category_counts, without_scanners

    categories = pa.table({"sIP": pa.array([1, 1, 2, 3], pa.uint32()), "sIPv6": pa.array([None] * 4, pa.binary(16)),
                           "category": ["unmatched TCP", "unmatched TCP", "ICMP", "unmatched UDP"]})
    pq.write_table(categories, tmp_path / "categories.parquet")
    scanners = pa.table({"sIP": pa.array([1, 9], pa.uint32())})
    pq.write_table(scanners, tmp_path / "scanners.parquet")
    found, among, table = without_scanners(tmp_path / "categories.parquet", tmp_path / "scanners.parquet")
    assert (found, among) == (2, 1)
    full = category_counts(tmp_path / "categories.parquet").set_index("Category")
    kept = table.set_index("Category")
    assert kept.loc["unmatched TCP", "Flows"] == 0 and full.loc["unmatched TCP", "Flows"] == 2
    assert kept.loc["Total", "Flows"] == 2 and kept.loc["Total", "Sources"] == 2
    # no VLF source among the scanners: no second table
    pq.write_table(pa.table({"sIP": pa.array([9], pa.uint32())}), tmp_path / "scanners.parquet")
    assert without_scanners(tmp_path / "categories.parquet", tmp_path / "scanners.parquet") == (1, 0, None)
