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


def test_a_tiny_capture_in_1970_says_why_each_empty_section_is_empty(tmp_path, monkeypatch, capsys):
    import json

    from vlf_dagster.analysis.steps.catalog import connect
    from vlf_dagster.analysis.report.parts import NOTHING_TO_SHOW

    # Zeek read a pcap with relative times: ts counts seconds from the capture's start (1970)
    log = tmp_path / "relative.log"
    rows = [("12.5", "C1", "4.3.2.1", "40001", "10.1.24.5", "22", "tcp", "S0", "1", "40", "0", "0"),
            ("100.0", "C2", "5.6.7.8", "40002", "10.1.24.5", "23", "tcp", "S0", "1", "40", "0", "0"),
            ("1500.25", "C3", "6.6.6.6", "40003", "10.1.24.9", "443", "tcp", "S0", "2", "80", "0", "0")]
    log.write_text("#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tconn_state\t"
                   "orig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\n" + "".join("\t".join(r) + "\n" for r in rows))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["demo-real", str(log), "--internal", "10.1.24.0/22", "--data-dir", str(tmp_path / "data"),
                 "--dagster-home", str(tmp_path / "home")]) == 0
    assert "3 records start before 1990" in capsys.readouterr().err
    report = next((tmp_path / "data" / "reports").glob("*/index.html"))
    page = report.read_text()
    assert '<p class="warning">Warning: The window starts before 1990' in page
    said = {}
    for manifest in report.parent.glob("*/part.json"):
        part = json.loads(manifest.read_text())
        for piece in part["pieces"]:
            shown = [k for k in ("csv", "png", "txt") if k in piece]
            if not shown:  # an empty piece says why, in its own words
                assert piece["note"] and not piece["note"].startswith(NOTHING_TO_SHOW), (part["name"], piece)
                said[(part["name"], piece["title"])] = piece["note"]
    assert said[("report_icmp", "ICMP type and code of VLF flows")] == "No ICMP flow from a VLF source in the window."
    assert said[("report_where_do_they_go", "Where do they go: unmatched UDP, 1 flow per host")].startswith("No unmatched UDP flow")
    assert said[("report_malformed", "Near matches: answers whose ports do not mirror the query")].startswith("No near match")
    assert ("report_unmatched_tcp_flags", "Unmatched TCP flag combinations") not in said  # three S0 connections: a table
    for table in page.split("<table")[1:]:  # no table is a bare header
        assert "<td" in table.split("</table>")[0]
    # nothing was quarantined, and the documented view still answers
    assert connect(tmp_path / "data").sql("SELECT count(*) FROM quarantine").fetchall() == [(0,)]


def test_a_file_without_records_is_one_line_and_no_study(tmp_path, capsys):
    """demo-real on a capture whose records all fail (here: only a header line): one line saying
    so, exit status 1, and nothing materialized."""
    empty = tmp_path / "empty.binetflow"
    empty.write_text("StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,SrcPkts,Label\n")
    data = tmp_path / "data"
    assert main(["demo-real", str(empty), "--internal", "10.0.0.0/8", "--format", "binetflow", "--data-dir", str(data),
                 "--dagster-home", str(tmp_path / "home")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vlf demo-real: ") and "no records imported" in err and "\n" not in err
    assert not (data / "site.toml").exists()
