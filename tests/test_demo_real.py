"""`vlf demo-real`: a real Zeek conn.log through import and the whole asset graph."""

from pathlib import Path

import pandas as pd
import pytest

from vlf_dagster.cli import main

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "zeek" / "ctu-008-conn.log.labeled"


@pytest.mark.skipif(not REAL.exists(), reason=f"shared real data not found at {REAL}")
def test_demo_real_runs_the_study_on_a_zeek_log(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    code = main(["demo-real", str(REAL), "--internal", "147.32.0.0/16", "--data-dir", str(tmp_path / "data"),
                 "--dagster-home", str(tmp_path / "home")])
    assert code == 0
    report = next((tmp_path / "data" / "reports").glob("*/index.html"))
    assert report.parent.name == "20220612-20220613"  # the log's hours: window 2022-06-12 17:00 .. 06-13 22:00
    table = pd.read_csv(next((report.parent / "report_per_host_flow_distribution").glob("*.csv")))
    total = table[table["Flows/host"] == "Total"].iloc[0]
    # 5,663 connections -> 7,109 unidirectional flows; 5,604 of them enter 147.32.0.0/16 from outside
    assert int(total["Flows"]) == 5604 and int(total["Sources"]) == 1753
    assert table.iloc[0]["% sources"] > 50  # most outside sources are seen once: the VLF shape
    # the inside host browsed: Zeek names it the originator of the HTTPS sessions, and so does the table
    matched = pd.read_csv(next((report.parent / "report_matched_ports").glob("*tcp*.csv")))
    assert matched.iloc[0][["Port", "O/E"]].tolist() == [443, "E"] and matched.iloc[0]["Sessions"] > 300
    assert not ((matched["O/E"] == "O") & (matched["Port"] >= 49152)).any()  # no ephemeral port "opened" from outside
