"""Importers (flows/importers/) and `vlf import`: real exports from ../shared/data/real, small
hand-written inputs for every rule, bad input, and a fuzz of every parser.

Every expected count is derived independently: by the file's own summary (nfdump's Summary block
and `nfdump -I`), or by counting the file here with the csv/json modules and the split rule the
importer documents.  Fixed numbers are stated with their derivation next to them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlf_dagster.cli import main
from vlf_dagster.flows.importers import readers as im
from vlf_dagster.flows.importers import text as text_engine
from vlf_dagster.flows.importers.argus import parse_binetflow
from vlf_dagster.flows.importers.formats import NFCAPD_MAGIC
from vlf_dagster.flows.importers.nfcapd import import_nfcapd, parse_nfdump_pipe
from vlf_dagster.flows.importers.nfdump import NFDUMP_CSV_COLUMNS, parse_nfdump_csv
from vlf_dagster.flows.importers.result import ImportFormatError, ImportResult
from vlf_dagster.flows.importers.rwcut import parse_rwcut
from vlf_dagster.flows.importers.zeek import parse_zeek
from vlf_dagster.flows.tools.cut import format_records
from vlf_dagster.flows.flags import ACK, FIN, PSH, RST, SYN
from vlf_dagster.flows.ingest import QUARANTINE_SCHEMA, read_landing_file
from vlf_dagster.flows.schema import ATTR_IPV6, FLOW_SCHEMA, conform, ipv4_to_int
from vlf_dagster.flows.storage import hour_ms, landing_dir, landing_hours

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
needs_shared = pytest.mark.skipif(not REAL.is_dir(), reason=f"shared real data not found at {REAL}")
NFDUMP = shutil.which("nfdump")
needs_nfdump = pytest.mark.skipif(NFDUMP is None, reason="nfdump is not installed (apt-get install nfdump)")
NFCAPD = REAL / "nfdump" / "test1-malicious.nfdump"


def accounted(result: ImportResult, lines: int | None = None) -> ImportResult:
    """The importer's promise: every line is data, skipped or quarantined; records are plausible."""
    c = result.counts
    assert c["lines"] == c["data_lines"] + c["skipped_lines"] + c["quarantined_lines"], c
    assert c["quarantined_lines"] == result.quarantine.num_rows
    assert c["records"] == result.flows.num_rows >= c["data_lines"]
    if lines is not None:
        assert c["lines"] == lines
    assert result.flows.schema.equals(FLOW_SCHEMA, check_metadata=False)
    assert result.quarantine.schema.equals(QUARANTINE_SCHEMA)
    for origin, reason in zip(result.quarantine.column("origin").to_pylist(), result.quarantine.column("reason").to_pylist()):
        assert origin.startswith(result.origin + ":") and origin.rsplit(":", 1)[1].isdigit() and reason
    if result.flows.num_rows:
        packets = result.flows.column("packets").to_numpy()
        assert (packets >= 1).all() and (packets <= result.flows.column("bytes").to_numpy()).all()
    return result


def rows(result: ImportResult) -> list[dict]:
    return result.flows.to_pylist()


def ip(text: str) -> int:
    return ipv4_to_int(text)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


def origins(result) -> list[str]:
    return result.quarantine.column("origin").to_pylist()


def reasons(result) -> list[str]:
    return result.quarantine.column("reason").to_pylist()


# --- nfdump ---------------------------------------------------------------------------------------


def nfdump_info(path: Path) -> dict[str, int]:
    """`nfdump -I`: the file's own statistics block (Flows, Packets, Bytes, First, msec_first...)."""
    out = subprocess.run([NFDUMP, "-r", str(path), "-I"], capture_output=True, text=True, check=True).stdout
    return {k.strip(): int(v) for k, _, v in (line.partition(":") for line in out.splitlines()) if v.strip().isdigit()}


@needs_shared
@needs_nfdump
def test_nfcapd_real_file_matches_nfdumps_own_statistics():
    info = nfdump_info(NFCAPD)
    result = accounted(im.import_file(NFCAPD))  # auto: the 0xA50C magic says nfcapd
    assert result.format == "nfcapd"
    # 4,593 flows -> 4,593 records (nfcapd flows are unidirectional), none quarantined
    assert info["Flows"] == 4593 == result.records == result.counts["data_lines"]
    assert result.quarantined == 0
    flows = result.flows
    assert int(pc.sum(flows.column("packets")).as_py()) == info["Packets"]  # 4,652
    assert int(pc.sum(flows.column("bytes")).as_py()) == info["Bytes"]  # 241,025
    assert flows.column("sTime").to_numpy().min() == info["First"] * 1000 + info["msec_first"]  # milliseconds kept
    proto = flows.column("protocol").to_numpy()
    assert (proto == 6).sum() == info["Flows_tcp"] and (proto == 17).sum() == info["Flows_udp"]
    first = rows(result)[0]  # 147.32.80.119:52324 -> 147.32.82.62:902 SYN, then the RST/ACK answer
    assert (first["sIP"], first["dIP"], first["dPort"], first["flags"]) == (ip("147.32.80.119"), ip("147.32.82.62"), 902, SYN)
    assert rows(result)[1]["flags"] == ACK | RST


@needs_shared
@needs_nfdump
def test_nfdump_csv_of_the_real_file_agrees_with_its_summary_and_with_nfcapd(tmp_path):
    text = subprocess.run([NFDUMP, "-r", str(NFCAPD), "-o", "csv"], capture_output=True, env=dict(os.environ, TZ="UTC"), check=True).stdout
    path = tmp_path / "flows.csv"
    path.write_bytes(text)
    # independent count: the csv module, data rows are those before the "Summary" line
    lines = list(csv.reader(io.StringIO(text.decode())))
    summary_at = next(i for i, row in enumerate(lines) if row == ["Summary"])
    data_rows = [r for r in lines[1:summary_at] if r]
    summary_flows = int(lines[summary_at + 2][0])
    result = accounted(im.import_file(path))  # auto: "ts,te,td," header
    assert result.format == "nfdump-csv"
    assert len(data_rows) == summary_flows == result.records == result.counts["summary_flows"] == 4593
    assert result.counts["header_lines"] == 1 and result.counts["summary_lines"] == 3  # Summary, names, values
    # the same records as through nfcapd, except that csv times have no milliseconds
    direct = import_nfcapd(NFCAPD).flows
    for name in FLOW_SCHEMA.names:
        if name == "sTime":
            assert (direct.column(name).to_numpy() // 1000 * 1000 == result.flows.column(name).to_numpy()).all()
        else:
            assert direct.column(name).equals(result.flows.column(name)), name


NFDUMP_HEADER = ",".join(NFDUMP_CSV_COLUMNS)


def nf_line(ts="2018-01-12 15:37:30", td="1.250", sa="10.0.0.1", da="10.0.0.2", sp="1234", dp="80", pr="TCP", flg="...AP.SF",
            ipkt="5", ibyt="400", opkt="0", obyt="0", inp="3", out="4", nh="0.0.0.0") -> str:
    values = dict(ts=ts, te=ts, td=td, sa=sa, da=da, sp=sp, dp=dp, pr=pr, flg=flg, ipkt=ipkt, ibyt=ibyt, opkt=opkt, obyt=obyt,
                  **{"in": inp, "out": out}, nh=nh)
    return ",".join(values.get(c, "0") for c in NFDUMP_CSV_COLUMNS)


def test_nfdump_csv_rules():
    text = "\n".join([
        NFDUMP_HEADER,
        nf_line(),  # 2: TCP with ...AP.SF
        nf_line(pr="ICMP", sp="0", dp="2048", flg="........", ipkt="1", ibyt="84"),  # 3: echo request
        nf_line(sa="2001:db8::1", da="2001:db8::2", pr="ICMP6", sp="0", dp="34560", flg="........", nh="::"),  # 4: IPv6 NS
        nf_line(pr="UDP", sp="53", dp="5353", opkt="2", obyt="300", flg="........"),  # 5: NSEL-style biflow
        nf_line(pr="ICMP", dp="8.0", sp="0", flg="........"),  # 6: type.code form
        nf_line(pr="47"),  # 7: GRE by number
        "Summary",
        "flows,bytes,packets,avg_bps,avg_pps,avg_bpp",
        "6,1,1,1,1,1",
        "",
    ])
    result = accounted(parse_nfdump_csv(text, "t.csv"), lines=10)  # the last "" only ends line 10
    r = rows(result)
    # 6 data lines, line 5 is bidirectional -> 7 records
    assert result.records == 7 and result.counts["summary_flows"] == 6 and result.counts["biflows_split"] == 1
    assert r[0]["flags"] == FIN | SYN | PSH | ACK and r[0]["in"] == 3 and r[0]["out"] == 4
    assert r[0]["sTime"] == ms("2018-01-12 15:37:30") and r[0]["duration"] == 1250
    assert (r[1]["protocol"], r[1]["dPort"], r[1]["flags"]) == (1, 2048, 0)
    assert r[2]["protocol"] == 58 and r[2]["attributes"] & ATTR_IPV6 and r[2]["sIPv6"] == bytes.fromhex("20010db8" + "0" * 23 + "1")
    assert r[2]["sIP"] == 0 and r[2]["dPort"] == 34560
    forward, backward = r[3], r[4]
    assert (forward["sPort"], forward["dPort"], forward["packets"], forward["bytes"]) == (53, 5353, 5, 400)
    assert (backward["sIP"], backward["sPort"], backward["dPort"], backward["packets"], backward["bytes"]) == (ip("10.0.0.2"), 5353, 53, 2, 300)
    assert (backward["in"], backward["out"]) == (4, 3)
    assert r[5]["dPort"] == 8 * 256 and r[6]["protocol"] == 47


def test_nfdump_csv_bad_lines_are_quarantined_and_good_ones_land():
    text = "\n".join([
        NFDUMP_HEADER,
        nf_line(),  # 2 good
        "this is not a flow",  # 3 garbage
        nf_line() + ",extra",  # 4 wrong number of columns
        nf_line(ipkt="many"),  # 5 non-numeric count
        nf_line(ts="1970-01-01 00:00:05"),  # 6 exporter clock not set
        nf_line(sa="10.0.0.1", da="2001:db8::1"),  # 7 IPv6 where IPv4 expected (mixed families)
        nf_line(pr="NOPE"),  # 8 unknown protocol name
        nf_line(ipkt="500", ibyt="400"),  # 9 more packets than bytes
        nf_line(flg="..?.S.."),  # 10 bad flags
        nf_line(),  # 11 good
    ])
    result = accounted(parse_nfdump_csv(text, "bad.csv"), lines=11)
    assert result.records == 2 and result.counts["data_lines"] == 2
    assert origins(result) == [f"bad.csv:{n}" for n in range(3, 11)]
    assert reasons(result) == [
        "wrong number of fields (expected 48)", "wrong number of fields (expected 48)", "bad ipkt: not an integer in 0..9223372036854775807",
        "start time before 1990 (exporter clock not set?)", "IPv4 and IPv6 addresses in one record", "unknown protocol name",
        "more packets than bytes", "bad flg: not TCP flags",
    ]
    assert json.loads(result.quarantine.column("record")[0].as_py()) == "this is not a flow"
    # the same 1970 line is kept, and counted, when asked
    kept = accounted(parse_nfdump_csv(NFDUMP_HEADER + "\n" + nf_line(ts="1970-01-01 00:00:05"), "k.csv", old_times="keep"))
    assert kept.records == 1 and kept.counts["times_before_1990"] == 1


def test_nfdump_pipe_layout():
    v4 = "2|1515771450942|1515771451000|6|0|0|0|2468368503|52324|0|0|0|2468368958|902|0|0|1|2|18|0|2|120"
    v6 = "10|1520628556520|1520628556520|58|4269801472|0|13780369|1452196817|0|4278321152|0|0|2|34048|0|0|0|0|0|0|1|48"
    bad = "2|1515771450942|1515771451000|6|1|0|0|2468368503|52324|0|0|0|2468368958|902|0|0|1|2|18|0|2|120"
    result = accounted(parse_nfdump_pipe("\n".join([v4, v6, bad, "No matching flows", ""]), "p"), lines=4)
    a, b = rows(result)
    assert (a["sIP"], a["dIP"], a["sTime"], a["duration"], a["flags"], a["in"], a["out"]) == (
        ip("147.32.80.119"), ip("147.32.82.62"), 1515771450942, 58, SYN | ACK, 1, 2)
    assert b["attributes"] & ATTR_IPV6 and b["sIPv6"] == bytes.fromhex("fe80000000000000" + "00d24591568ec3d1") and b["dPort"] == 34048
    assert b["dIPv6"] == bytes.fromhex("ff020000000000000000000000000002")
    assert reasons(result) == ["IPv6 address where IPv4 expected (sa)"] and origins(result) == ["p:3"]
    assert result.counts["summary_lines"] == 1


def test_nfcapd_needs_nfdump(tmp_path, monkeypatch):
    path = tmp_path / "nfcapd.201801121530"
    path.write_bytes(NFCAPD_MAGIC + b"\0" * 200)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ImportFormatError, match="needs nfdump, which is not installed"):
        im.import_file(path)
    other = tmp_path / "x.nfcapd"
    other.write_bytes(b"hello")
    with pytest.raises(ImportFormatError, match="not an nfcapd file"):
        import_nfcapd(other)


# --- Argus binetflow ---------------------------------------------------------------------------------


def expected_binetflow(path: Path) -> tuple[int, int, int, int]:
    """(records, quarantined lines, packets, bytes) by the documented split rule, counted with csv."""
    records = quarantined = packets = nbytes = 0
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            if row["Proto"] == "arp" or row["Dir"].strip() not in ("->", "<-", "<->", "<?>", "?>", "<?", "who"):
                quarantined += 1
                continue
            tot_p, tot_b, src_b = int(row["TotPkts"]), int(row["TotBytes"]), int(row["SrcBytes"])
            if row.get("SrcPkts") not in (None, ""):
                src_p = int(row["SrcPkts"])
                records += (src_p > 0) + (tot_p - src_p > 0)
            else:  # packets apportioned by bytes; each side with bytes gets >= 1 packet when TotPkts >= 2
                both = src_b > 0 and tot_b - src_b > 0
                records += 2 if both and tot_p >= 2 else 1
            packets += tot_p
            nbytes += tot_b
    return records, quarantined, packets, nbytes


@needs_shared
@pytest.mark.parametrize("name, records, quarantined", [
    ("test11-portscan.binetflow", 86, 0),  # 66 rows with SrcPkts: 20 TCP rows both ways, 46 ICMP one way
    ("test2-malicious.binetflow", 13412, 0),  # 6,751 rows: 6,661 both ways (x2) + 90 one way
    ("test3-mixed.binetflow", 140, 1),  # 89 rows; line 58 has Dir " get_message  ->"; 52 x2 + 36
    ("test4-malicious.binetflow", 512, 2),  # 394 rows, no SrcPkts; lines 29 and 226 are ARP; 120 x2 + 272
])
def test_binetflow_real_files(name, records, quarantined):
    path = REAL / "binetflow" / name
    expect = expected_binetflow(path)
    result = accounted(im.import_file(path), lines=sum(1 for _ in open(path)))
    assert result.format == "binetflow"
    assert (result.records, result.quarantined) == (records, quarantined) == expect[:2]
    assert result.counts["header_lines"] == 1
    assert int(pc.sum(result.flows.column("packets")).as_py()) == expect[2]  # splitting keeps every packet
    assert int(pc.sum(result.flows.column("bytes")).as_py()) == expect[3]  # ... and every byte
    if name == "test3-mixed.binetflow":
        assert origins(result) == [f"{path}:58"] and reasons(result)[0].startswith("bad Dir")
        assert (result.flows.column("attributes").to_numpy() & ATTR_IPV6).any()  # its IPv6 rows land as IPv6
    if name == "test4-malicious.binetflow":
        assert origins(result) == [f"{path}:29", f"{path}:226"] and set(reasons(result)) == {"not an IP protocol: arp"}


BINETFLOW_HEADER = "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,SrcPkts,Label"


def test_binetflow_split_direction_flags_and_hex_ports():
    text = "\n".join([
        BINETFLOW_HEADER,
        "2019/04/04 16:23:00.325010,0.027947,udp,10.8.0.69,48427,  <->,8.8.8.8,53,CON,0,0,2,142,63,1,",  # 2
        "2019/04/04 16:24:47.672448,63.822830,tcp,10.8.0.69,56101,   ->,14.1.11.113,999,FSPA_FSRPA,0,0,31,8764,1887,15,flow=x,y",  # 3
        "2018/12/18 14:00:11.171480,0.000515,icmp,168.1.206.67,0x0008,  <->,147.32.87.1,0x0f72,ECO,164,164,2,220,110,1,",  # 4
        "2018/12/18 14:00:12.000000,0,icmp,5.202.176.1,0x03,   ->,192.168.2.12,0x03,URP,0,,2,200,200,2,",  # 5
        "2018/12/18 14:00:13.000000,1.5,tcp,10.0.0.1,80,   <-,10.0.0.2,4000,S_RA,0,,1,60,0,0,",  # 6: only dst->src traffic
        "2018/12/18 14:00:14.000000,0,ipv6-icmp,2001:db8::1,0x0080,   ->,2001:db8::2,0x0001,ECO,0,,1,104,104,1,",  # 7
        "2018/12/18 14:00:15.000000,2,tcp,10.0.0.1,1025,   ->,10.0.0.2,445,S0,0,,3,180,180,3,",  # 8: Zeek state
    ])
    result = accounted(parse_binetflow(text, "b"), lines=8)
    r = rows(result)
    assert result.records == 10
    dns, answer = r[0], r[1]
    assert (dns["sIP"], dns["dPort"], dns["packets"], dns["bytes"], dns["protocol"]) == (ip("10.8.0.69"), 53, 1, 63, 17)
    assert (answer["sIP"], answer["sPort"], answer["dPort"], answer["packets"], answer["bytes"]) == (ip("8.8.8.8"), 53, 48427, 1, 79)
    assert dns["sTime"] == answer["sTime"] == ms("2019-04-04 16:23:00.325") and dns["duration"] == 27
    tcp, tcp_back = r[2], r[3]  # FSPA_FSRPA: source side FSPA, destination side FSRPA; label with a comma kept out
    assert (tcp["packets"], tcp["bytes"], tcp["flags"]) == (15, 1887, FIN | SYN | PSH | ACK)
    assert (tcp_back["packets"], tcp_back["bytes"], tcp_back["flags"]) == (16, 8764 - 1887, FIN | SYN | RST | PSH | ACK)
    echo, reply = r[4], r[5]  # 0x0008: type 8 (low byte), code 0; the reverse flow is the echo reply
    assert (echo["sPort"], echo["dPort"], reply["dPort"], reply["sIP"]) == (0, 8 * 256, 0, ip("147.32.87.1"))
    assert r[6]["dPort"] == 3 * 256 + 3 and r[6]["packets"] == 2  # 0x03 / 0x03: type 3, code 3 (port unreachable)
    back = r[7]  # Dir <- with all bytes from the destination: one flow dst->src with the RA side's flags
    assert (back["sIP"], back["sPort"], back["dIP"], back["dPort"], back["packets"], back["bytes"], back["flags"]) == (
        ip("10.0.0.2"), 4000, ip("10.0.0.1"), 80, 1, 60, RST | ACK)
    assert r[8]["protocol"] == 58 and r[8]["attributes"] & ATTR_IPV6 and r[8]["dPort"] == 128 * 256
    assert r[9]["flags"] == SYN and result.counts["biflows_split"] == 3


def test_binetflow_packets_apportioned_without_srcpkts():
    header = "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label"
    text = "\n".join([
        header,
        "2018/09/27 22:40:52.362768,193.831726,tcp,192.168.2.1,52893,  <?>,192.168.2.12,22,CON,16,16,35,3766,1224,",
        "2018/09/27 22:40:53,0,udp,192.168.2.1,53,  <->,192.168.2.12,53,CON,0,0,10,1000,250,",
        "2018/09/27 22:40:54,0,udp,192.168.2.1,53,  <->,192.168.2.12,53,CON,0,0,1,100,50,",  # 1 packet, bytes both ways
        "2018/09/27 22:40:55,0,udp,192.168.2.1,53,  <?,192.168.2.12,53,CON,0,0,1,100,50,",  # same, Dir reversed
        "2018/09/27 22:40:56,0,tcp,192.168.2.1,1,   ->,192.168.2.12,2,REQ,0,0,2,120,120,",
    ])
    result = accounted(parse_binetflow(text, "b4"))
    r = rows(result)
    # 35 * 1224 / 3766 = 11.4 -> 11 packets src->dst, 24 back; 10 * 250/1000 = 2.5 -> 3 (half up), 7 back
    assert [(x["packets"], x["bytes"]) for x in r[:4]] == [(11, 1224), (24, 3766 - 1224), (3, 250), (7, 750)]
    assert r[0]["flags"] == r[1]["flags"] == SYN | ACK  # Argus CON: connected
    # one packet cannot go both ways: one flow with the totals, in the direction Dir names
    assert (r[4]["sIP"], r[4]["packets"], r[4]["bytes"]) == (ip("192.168.2.1"), 1, 100)
    assert (r[5]["sIP"], r[5]["packets"], r[5]["bytes"]) == (ip("192.168.2.12"), 1, 100)
    assert (r[6]["flags"], r[6]["packets"]) == (SYN, 2) and len(r) == 7
    assert result.counts["biflows_unsplit"] == 2 and result.counts["packets_apportioned_by_bytes"] == 2


def test_binetflow_bad_lines():
    text = "\n".join([
        BINETFLOW_HEADER,
        "2019/04/04 16:23:00.325010,0.02,udp,10.8.0.69,48427,  <->,8.8.8.8,53,CON,0,0,2,142,63,1,",  # 2 good
        "2019/04/04 16:23:00,0.02,udp,10.8.0.69,48427,  <->,8.8.8.8,53,CON,0,0,two,142,63,1,",  # 3 non-numeric
        "2019/04/04 16:23:00,0.02,udp,10.8.0.69,48427,  <->,8.8.8.8",  # 4 too few fields
        "garbage",  # 5
        "1970/01/01 00:00:01,0.02,udp,10.8.0.69,48427,  <->,8.8.8.8,53,CON,0,0,2,142,63,1,",  # 6 1970
        "2019/04/04 16:23:00,0.02,udp,10.8.0.69,48427,  <->,2001:db8::8,53,CON,0,0,2,142,63,1,",  # 7 mixed families
        "2019/04/04 16:23:00,0.02,udp,10.8.0.69,48427,  <->,8.8.8.8,53,CON,0,0,2,142,200,1,",  # 8 SrcBytes > TotBytes
        "2019/04/04 16:23:00,0.02,udp,10.8.0.69,0xZZ,  <->,8.8.8.8,53,CON,0,0,2,142,63,1,",  # 9 bad hex port
        "2019/04/04 16:23:00,0.02,udp,10.8.0.69,48427,  <->,8.8.8.8,53,CON,0,0,2,142,63,1,",  # 10 good
    ])
    result = accounted(parse_binetflow(text, "bb"), lines=10)
    assert result.records == 4 and origins(result) == [f"bb:{n}" for n in range(3, 10)]
    assert reasons(result) == [
        "bad TotPkts: not an integer in 0..4611686018427387904", "wrong number of fields (expected 16)",
        "wrong number of fields (expected 16)", "start time before 1990 (exporter clock not set?)",
        "IPv4 and IPv6 addresses in one record", "SrcBytes exceeds TotBytes", "bad Sport: not an integer in 0..65535",
    ]


# --- Zeek ---------------------------------------------------------------------------------------


def expected_zeek(path: Path) -> tuple[int, int, int, int, int]:
    """(connections, records, without packets, packets, ip bytes): one record per direction with packets."""
    conns = records = empty = packets = nbytes = 0
    if path.name.endswith(".json.log"):
        entries = [json.loads(line) for line in open(path) if line.strip()]
    else:
        fields, entries = None, []
        for line in open(path):
            line = line.rstrip("\n")
            if line.lstrip().startswith("#"):
                if line.startswith("#fields"):
                    fields = line.split("\t")[1:]
                continue
            entries.append(dict(zip(fields, line.split("\t"))))
    for e in entries:
        conns += 1
        o, r = int(e["orig_pkts"]), int(e["resp_pkts"])
        records += (o > 0) + (r > 0)
        empty += o == 0 and r == 0
        packets += o + r
        nbytes += int(e["orig_ip_bytes"]) * (o > 0) + int(e["resp_ip_bytes"]) * (r > 0)
    return conns, records, empty, packets, nbytes


@needs_shared
@pytest.mark.parametrize("name, conns, records, headers", [
    ("ctu-008-conn.log.labeled", 5663, 7109, 8),  # 4,203 one-way + 1,453 both ways + 7 with no packets (history C)
    ("slips-test10-conn.log", 141, 223, 9),  # 59 one-way + 82 both ways; header incl. #close, stray tab on line 1
    ("slips-test9-conn.json.log", 576, 1107, 0),  # JSON lines, 45 one-way + 531 both ways
])
def test_zeek_real_files(name, conns, records, headers):
    path = REAL / "zeek" / name
    expect = expected_zeek(path)
    result = accounted(im.import_file(path), lines=sum(1 for _ in open(path)))
    assert result.format == "zeek" and result.quarantined == 0
    assert (conns, records) == expect[:2] and result.records == records
    assert result.counts["data_lines"] + result.counts.get("connections_without_packets", 0) == conns
    assert result.counts.get("connections_without_packets", 0) == expect[2]
    assert result.counts.get("header_lines", 0) == headers
    assert int(pc.sum(result.flows.column("packets")).as_py()) == expect[3]
    assert int(pc.sum(result.flows.column("bytes")).as_py()) == expect[4]
    if name.startswith("slips-test9"):  # relative capture times: imported as given, flagged
        assert result.counts["times_before_1990"] == records
        assert (result.flows.column("attributes").to_numpy() & ATTR_IPV6).sum() > 0  # the link-local IPv6 traffic
    else:
        assert "times_before_1990" not in result.counts


ZEEK_FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes resp_bytes conn_state "
               "local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts resp_ip_bytes tunnel_parents").split()


def zeek_header() -> list[str]:
    return ["\t#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn",
            "#fields\t" + "\t".join(ZEEK_FIELDS), "#types\t" + "\t".join(["string"] * len(ZEEK_FIELDS))]


def zeek_line(ts="1601998366.785668", oh="10.0.0.1", op="1025", rh="10.0.0.2", rp="80", proto="tcp", duration="0.5",
              state="SF", history="ShADadFf", opk="5", oipb="300", rpk="4", ripb="500", obytes="10", rbytes="20") -> str:
    values = dict(ts=ts, uid="C1", **{"id.orig_h": oh, "id.orig_p": op, "id.resp_h": rh, "id.resp_p": rp}, proto=proto,
                  service="-", duration=duration, orig_bytes=obytes, resp_bytes=rbytes, conn_state=state, local_orig="-",
                  local_resp="-", missed_bytes="0", history=history, orig_pkts=opk, orig_ip_bytes=oipb, resp_pkts=rpk,
                  resp_ip_bytes=ripb, tunnel_parents="(empty)")
    return "\t".join(values[f] for f in ZEEK_FIELDS)


def test_zeek_tsv_rules():
    text = "\n".join(zeek_header() + [
        zeek_line(),  # 8: full handshake both ways
        zeek_line(history="Sr", state="REJ", rpk="1", ripb="40", opk="1", oipb="60"),  # 9: rejected
        zeek_line(history="-", state="REJ", rpk="1", ripb="40", opk="1", oipb="60"),  # 10: no history: conn_state
        zeek_line(proto="icmp", op="8", rp="0", history="-", state="OTH", opk="2", oipb="168", rpk="2", ripb="168"),  # 11 echo
        zeek_line(proto="icmp", op="3", rp="1", history="-", state="OTH", rpk="0", ripb="0"),  # 12: host unreachable
        zeek_line(oh="fe80::1", rh="ff02::1:3", proto="udp", op="5355", rp="5355", history="D", state="S0", rpk="0", ripb="0"),  # 13
        zeek_line(oh="fe80::1", rh="fe80::2", proto="icmp", op="128", rp="129", history="-", state="OTH", rpk="1", ripb="104"),  # 14
        zeek_line(opk="0", oipb="0", rpk="0", ripb="0", history="C", state="OTH"),  # 15: no packets at all
        zeek_line(duration="-", history="S", state="S0", rpk="0", ripb="0"),  # 16: unset duration
        "#close\t2020-10-06-17-33-29",
    ])
    result = accounted(parse_zeek(text, "z"), lines=17)
    r = rows(result)
    assert result.counts["header_lines"] == 8 and result.counts["connections_without_packets"] == 1
    assert len(r) == 13
    orig, resp = r[0], r[1]
    assert orig["flags"] == SYN | ACK | PSH | FIN and resp["flags"] == SYN | ACK | PSH | FIN  # S A D F / h a d f
    assert (orig["packets"], orig["bytes"], resp["packets"], resp["bytes"]) == (5, 300, 4, 500)  # IP-level bytes
    assert (resp["sIP"], resp["sPort"], resp["dPort"]) == (ip("10.0.0.2"), 80, 1025)
    assert orig["sTime"] == resp["sTime"] == 1601998366785 and orig["duration"] == 500
    assert (r[2]["flags"], r[3]["flags"]) == (SYN, RST)  # Sr: orig SYN, resp RST
    assert (r[4]["flags"], r[5]["flags"]) == (SYN, RST | ACK)  # REJ
    assert (r[6]["protocol"], r[6]["sPort"], r[6]["dPort"], r[7]["dPort"]) == (1, 0, 8 * 256, 0)  # echo, reply
    assert r[8]["dPort"] == 3 * 256 + 1 and r[8]["flags"] == 0
    assert r[9]["attributes"] & ATTR_IPV6 and r[9]["protocol"] == 17 and r[9]["flags"] == 0
    assert (r[10]["protocol"], r[10]["dPort"], r[11]["dPort"]) == (58, 128 * 256, 129 * 256)  # ICMPv6 echo
    assert r[12]["duration"] == 0 and r[12]["flags"] == SYN


def test_zeek_bad_lines_multiple_headers_and_1970():
    second = ["#separator \\x09", "#fields\tts\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes"]
    text = "\n".join(zeek_header() + [
        zeek_line(),  # 8 good (2 records)
        zeek_line()[:40],  # 9 cut short
        zeek_line(opk="x"),  # 10 non-numeric packets
        zeek_line(rh="2001:db8::1"),  # 11 mixed families
        zeek_line(proto="unknown_transport"),  # 12
        zeek_line(opk="50", oipb="40"),  # 13 more packets than bytes
        zeek_line(ts="12.5"),  # 14 relative time: kept by default
    ] + second + [
        "1601998400.5\t10.0.0.9\t53\t10.0.0.1\t5353\tudp\t1\t80\t0\t0",  # 17: a second log with other columns
    ])
    result = accounted(parse_zeek(text, "z2"), lines=17)
    assert origins(result) == [f"z2:{n}" for n in (9, 10, 11, 12, 13)]
    assert reasons(result) == ["wrong number of fields (expected 21)", "bad orig_pkts: not an integer in 0..4611686018427387904",
                               "IPv4 and IPv6 addresses in one record", "bad proto: not tcp, udp or icmp", "more packets than bytes (orig)"]
    assert result.records == 5 and result.counts["times_before_1990"] == 2
    assert rows(result)[-1]["sIP"] == ip("10.0.0.9") and rows(result)[-1]["sTime"] == 1601998400500
    strict = accounted(parse_zeek(text, "z3", old_times="quarantine"))
    assert "start time before 1990 (exporter clock not set?)" in reasons(strict) and strict.records == 3


def test_zeek_json_lines_fast_and_slow_paths():
    good = {"ts": 1601998366.785668, "id.orig_h": "10.0.0.1", "id.orig_p": 1025, "id.resp_h": "10.0.0.2", "id.resp_p": 443,
            "proto": "tcp", "duration": 0.25, "conn_state": "S0", "history": "S", "orig_pkts": 2, "orig_ip_bytes": 120,
            "resp_pkts": 0, "resp_ip_bytes": 0}
    lines = [json.dumps(good), json.dumps(dict(good, ts=1601998367, duration=1))]
    fast = accounted(parse_zeek("\n".join(lines) + "\n", "j"))  # Arrow's JSON reader: no per-line loop
    assert fast.records == 2 and "json_lines_parsed_one_by_one" not in fast.counts
    assert [r["sTime"] for r in rows(fast)] == [1601998366785, 1601998367000]
    assert rows(fast)[0]["flags"] == SYN and rows(fast)[0]["duration"] == 250
    iso = accounted(parse_zeek(json.dumps(dict(good, ts="2020-10-06T15:32:46.785668Z")), "iso"))  # JSON::TS_FORMAT=ISO8601
    assert rows(iso)[0]["sTime"] == 1601998366785
    broken = lines + ['{"ts": 1601998366.7, "id.orig_h": ', "[1, 2]", json.dumps(dict(good, orig_pkts="lots"))]
    slow = accounted(parse_zeek("\n".join(broken), "j2"), lines=5)  # Arrow rejects the file: json.loads per line
    assert slow.records == 2 and slow.counts["json_lines_parsed_one_by_one"] == 5
    assert origins(slow) == ["j2:3", "j2:4", "j2:5"]
    assert reasons(slow) == ["not a JSON object", "not a JSON object", "bad orig_pkts: not an integer in 0..4611686018427387904"]


# --- rwcut --------------------------------------------------------------------------------------


def sample_flows() -> pa.Table:
    v6 = bytes.fromhex("20010db8000000000000000000000001"), bytes.fromhex("20010db8000000000000000000000002")
    table = pa.table({
        "sIP": pa.array([ip("4.227.17.37"), ip("211.192.232.210"), 0], pa.uint32()),
        "dIP": pa.array([ip("10.1.24.202"), ip("10.1.25.225"), 0], pa.uint32()),
        "sPort": pa.array([4137, 0, 5353], pa.uint16()),
        "dPort": pa.array([445, 2048, 53], pa.uint16()),
        "protocol": pa.array([6, 1, 17], pa.uint8()),
        "packets": pa.array([3, 1, 7], pa.uint64()),
        "bytes": pa.array([144, 28, 1200], pa.uint64()),
        "flags": pa.array([SYN | FIN | PSH | ACK, 0, 0], pa.uint8()),
        "sTime": pa.array([ms("2006-04-01 00:07:48.123"), ms("2006-04-01 00:00:13"), ms("2006-04-01 01:59:59.999")], pa.int64()),
        "duration": pa.array([9000, 0, 1500], pa.uint32()),
        "attributes": pa.array([0, 0, ATTR_IPV6], pa.uint8()),
        "sIPv6": pa.array([None, None, v6[0]], pa.binary(16)),
        "dIPv6": pa.array([None, None, v6[1]], pa.binary(16)),
    })
    return conform(table)


@pytest.mark.parametrize("options", [
    {},  # rwcut's default: columns, titles, '|' after every column
    {"columns": False},  # --no-columns: compact flags
    {"delimited": True},  # --delimited: no final separator
    {"timestamp_format": "iso"},
    {"timestamp_format": "epoch"},
    {"timestamp_format": "m/d/y"},
    {"integer_ips": True, "integer_tcp_flags": True},
    {"delimiter": "\t", "columns": False},
])
def test_rwcut_round_trip_through_vlf_cut(options):
    table = sample_flows()
    fields = "sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,duration"
    text = "\n".join(format_records(table, fields, **options)) + "\n"
    result = accounted(parse_rwcut(text, "cut.txt", delimiter=options.get("delimiter")), lines=4)
    assert result.counts["title_lines"] == 1
    assert result.flows.equals(table), (text, result.flows.to_pylist())


def test_rwcut_without_titles_needs_fields():
    table = sample_flows()
    text = "\n".join(format_records(table, "1-10", no_titles=True)) + "\n"
    with pytest.raises(ImportFormatError, match="without a title line"):
        parse_rwcut(text, "untitled")
    result = accounted(parse_rwcut(text, "untitled", fields="1-10"), lines=3)
    assert result.flows.equals(table) and "title_lines" not in result.counts
    # eTime instead of duration, and extra columns rwcut prints
    text = "\n".join(format_records(table, "sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,eTime,sensor,type,iType,iCode"))
    assert accounted(parse_rwcut(text, "e")).flows.equals(table)


def test_rwcut_study_sample_table_with_tabs():
    # the talk's "A small sample of 1 flow / host data": tab-separated, titles `pro` and `dur`, empty flags cells
    text = (
        "sIP\tdIP\tsPort\tdPort\tpro\tpackets\tbytes\tflags\tsTime\tdur\n"
        "211.192.232.210\t10.1.25.225\t0\t2048\t1\t1\t28\t\t2006/04/01T00:00:13.000\t0.000\n"
        "4.227.17.37\t10.1.24.202\t4137\t445\t6\t3\t144\tS\t2006/04/01T00:07:48.000\t9.000\n"
        "216.123.177.141\t10.1.24.69\t4289\t25\t6\t15\t1518\tFS PA\t2006/04/01T00:15:55.000\t6.000\n"
    )
    assert im.sniff_format(text.encode()) == "rwcut"
    result = accounted(parse_rwcut(text, "seed"), lines=4)
    r = rows(result)
    assert [(x["dPort"], x["protocol"], x["flags"], x["duration"]) for x in r] == [
        (2048, 1, 0, 0), (445, 6, SYN, 9000), (25, 6, FIN | SYN | PSH | ACK, 6000)]
    assert r[0]["sTime"] == ms("2006-04-01 00:00:13")


@needs_shared
def test_rwcut_the_studys_own_sample_table():
    seed = REAL.parents[1] / "seed" / "000_a3da8b55eba57450.txt"
    if not seed.is_file():
        pytest.skip(f"study text not found at {seed}")
    lines = seed.read_text().splitlines()
    start = lines.index("A small sample of 1 flow / host data") + 2
    end = lines.index("", start)
    result = accounted(parse_rwcut("\n".join(lines[start:end]), "seed"))
    assert result.records == end - start - 1 == 13 and result.quarantined == 0  # 13 sample flows under one title row


def test_rwcut_bad_lines():
    good = "      4.227.17.37|    10.1.24.202| 4137|  445|  6|         3|       144| S      |2006/04/01T00:07:48.000|    9.000|"
    text = "\n".join([
        "            sIP|            dIP|sPort|dPort|pro|   packets|     bytes|   flags|                  sTime| duration|",
        good,
        "garbage",  # 3
        good.replace("4.227.17.37", "2001:db8::1"),  # 4 IPv6 source, IPv4 destination
        good.replace("2006/04/01", "1970/01/01"),  # 5
        good.replace("         3|", "     three|"),  # 6
        good.replace(" S      |", " SX     |"),  # 7
        good.replace("|    9.000|", "|    9.000|  1|"),  # 8 one column too many
        good,
    ])
    result = accounted(parse_rwcut(text, "r"), lines=9)
    assert result.records == 2 and origins(result) == [f"r:{n}" for n in range(3, 9)]
    assert reasons(result) == ["wrong number of fields (expected 10)", "IPv4 and IPv6 addresses in one record",
                               "start time before 1990 (exporter clock not set?)", "bad packets: not an integer in 0..9223372036854775807",
                               "bad flags: not TCP flags", "wrong number of fields (expected 10)"]


# --- batches and encodings ------------------------------------------------------------------------


def test_batches_give_the_same_result_as_one_pass(monkeypatch):
    # rows are converted BATCH_ROWS at a time (bounded memory); tiny batches must change nothing
    header = "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label"
    body = [f"2018/09/27 22:{m:02d}:52.3,0.5,tcp,192.168.2.{m % 7},{1000 + m},  <->,10.0.0.{m % 5},22,CON,0,0,{2 + m},{200 + 10 * m},{50 + m},"
            for m in range(40)]
    body[7] = "garbage"
    body[23] = body[23].replace("tcp", "arp")
    inputs = [
        (parse_binetflow, "\n".join([header, *body])),
        (parse_zeek, "\n".join(zeek_header() + [zeek_line(op=str(1024 + i)) if i % 9 else "bad" for i in range(30)])),
        (parse_zeek, "\n".join([VALID["zeek-json"][1]] * 12 + ["{broken"] + [VALID["zeek-json"][0]] * 12)),
        (parse_nfdump_csv, "\n".join([NFDUMP_HEADER] + [nf_line(sp=str(i)) if i % 6 else "x" for i in range(25)])),
    ]
    whole = [parse(text, "b") for parse, text in inputs]
    monkeypatch.setattr(text_engine, "BATCH_ROWS", 4)
    for (parse, text), one in zip(inputs, whole):
        batched = accounted(parse(text, "b"))
        assert batched.flows.equals(one.flows) and batched.quarantine.equals(one.quarantine)
        assert {k: v for k, v in batched.counts.items() if k != "json_lines_parsed_one_by_one"} == {
            k: v for k, v in one.counts.items() if k != "json_lines_parsed_one_by_one"}
        assert one.quarantined > 0 and one.records > 0


def test_non_utf8_bytes_and_crlf_line_ends():
    text = (NFDUMP_HEADER + "\r\n" + nf_line() + "\r\n").encode() + b"\xff\xfe broken \x80\r\n" + nf_line().encode()
    result = accounted(parse_nfdump_csv(text, "enc"), lines=4)
    assert result.records == 2 and origins(result) == ["enc:3"]
    assert json.loads(result.quarantine.column("record")[0].as_py()) == "\ufffd\ufffd broken \ufffd"


# --- sniffing, landing, the verb ---------------------------------------------------------------------


def test_sniff_format():
    assert im.sniff_format(NFCAPD_MAGIC + b"\x01\x00") == "nfcapd"
    assert im.sniff_format((NFDUMP_HEADER + "\n").encode()) == "nfdump-csv"
    assert im.sniff_format((nf_line() + "\n").encode()) == "nfdump-csv"
    assert im.sniff_format((BINETFLOW_HEADER + "\n").encode()) == "binetflow"
    assert im.sniff_format("\n".join(zeek_header()).encode()) == "zeek"
    assert im.sniff_format(b'{"ts":1.0,"id.orig_h":"10.0.0.1"}\n') == "zeek"
    assert im.sniff_format("\n".join(format_records(sample_flows(), "1-10", no_titles=True)).encode()) == "rwcut"
    assert im.sniff_format(b"hello world\n") is None
    assert im.sniff_format(b"") is None


def two_hour_csv() -> str:
    return "\n".join([NFDUMP_HEADER, nf_line(ts="2018-01-12 15:59:59"), nf_line(ts="2018-01-12 16:00:00"),
                      nf_line(ts="2018-01-12 15:00:00"), "junk", ""])


def test_land_splits_by_start_hour_and_replaces_on_reimport(tmp_path):
    data = tmp_path / "data"
    result = parse_nfdump_csv(two_hour_csv(), "x.csv")
    outcome = im.land(result, data, "x.csv")
    h15, h16 = (datetime(2018, 1, 12, h, tzinfo=timezone.utc) for h in (15, 16))
    assert outcome.hours == {h15: 2, h16: 1} and landing_hours(data) == [h15, h16]
    landed = pq.read_table(landing_dir(data, h15) / "x.csv.parquet")
    assert landed.column("sTime").to_pylist() == [ms("2018-01-12 15:00:00"), ms("2018-01-12 15:59:59")]  # sorted
    assert read_landing_file(landing_dir(data, h15) / "x.csv.parquet", hour_start_ms=hour_ms(h15)).rejected == 0
    quarantine = pq.read_table(data / "quarantine" / "import" / "x.csv.parquet")
    assert quarantine.column("origin").to_pylist() == ["x.csv:5"]
    im.land(result, data, "x.csv")  # again: same files, same records, nothing doubled
    assert sum(pq.read_table(p).num_rows for p in (data / "landing").rglob("*.parquet")) == 3
    smaller = parse_nfdump_csv("\n".join([NFDUMP_HEADER, nf_line(ts="2018-01-12 15:10:00")]), "x.csv")
    again = im.land(smaller, data, "x.csv")  # the file changed: its hour 16 is gone
    assert again.removed == [landing_dir(data, h16) / "x.csv.parquet"] and landing_hours(data) == [h15]
    assert pq.read_table(data / "quarantine" / "import" / "x.csv.parquet").num_rows == 0
    with pytest.raises(ValueError, match="invalid source name"):
        im.land(result, data, "../evil")


def test_vlf_import_verb(tmp_path, capsys):
    data = tmp_path / "data"
    path = tmp_path / "flows.csv"
    path.write_text(two_hour_csv())
    assert main(["import", "--data-dir", str(data), str(path)]) == 0
    out = capsys.readouterr().out
    assert "flows.csv [nfdump-csv]: 5 lines -> 3 records from 3 data lines; 1 skipped, 1 quarantined; 2 hours" in out
    assert "quarantined: wrong number of fields (expected 48) (1)" in out and "landed 3 records as flows.csv.parquet" in out
    assert main(["import", "--data-dir", str(data), str(path)]) == 0  # idempotent
    assert sum(pq.read_table(p).num_rows for p in (data / "landing").rglob("*.parquet")) == 3
    # unknown and unreadable input: exit 1 with one line
    odd = tmp_path / "odd.txt"
    odd.write_text("hello\n")
    assert main(["import", "--data-dir", str(data), str(odd)]) == 1
    assert main(["import", "--data-dir", str(data), str(tmp_path / "missing.csv")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "cannot tell its format" in err[0] and "cannot read" in err[1]
    # nothing readable in a readable file: exit 1 too
    bad = tmp_path / "bad.csv"
    bad.write_text(NFDUMP_HEADER + "\nnot,a,flow\n")
    assert main(["import", "--data-dir", str(data), "--format", "nfdump-csv", str(bad)]) == 1
    assert f"nothing landed from {bad}" in capsys.readouterr().err
    # a re-import that fails (the file emptied) leaves what the earlier import landed
    path.write_text(NFDUMP_HEADER + "\n")
    assert main(["import", "--data-dir", str(data), "--format", "nfdump-csv", str(path)]) == 1
    assert "an earlier import under that name is kept" in capsys.readouterr().err
    assert sum(pq.read_table(p).num_rows for p in (data / "landing").rglob("flows.csv.parquet")) == 3
    path.write_text(two_hour_csv())
    # --source lands several files as one; --dry-run writes nothing
    other = tmp_path / "more.csv"
    other.write_text("\n".join([NFDUMP_HEADER, nf_line(ts="2018-01-12 17:00:00")]))
    assert main(["import", "--data-dir", str(data), "--source", "site1", str(path), str(other)]) == 0
    assert (landing_dir(data, datetime(2018, 1, 12, 17, tzinfo=timezone.utc)) / "site1.parquet").is_file()
    # two files with the same base name land together, neither replaces the other
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "same.csv").write_text("\n".join([NFDUMP_HEADER, nf_line(ts="2018-01-12 18:00:00")]))
    (tmp_path / "b" / "same.csv").write_text("\n".join([NFDUMP_HEADER, nf_line(ts="2018-01-12 18:30:00")]))
    assert main(["import", "--data-dir", str(data), str(tmp_path / "a" / "same.csv"), str(tmp_path / "b" / "same.csv")]) == 0
    assert pq.read_table(landing_dir(data, datetime(2018, 1, 12, 18, tzinfo=timezone.utc)) / "same.csv.parquet").num_rows == 2
    dry = tmp_path / "dry"
    assert main(["import", "--data-dir", str(dry), "--dry-run", str(path)]) == 0 and not dry.exists()
    # rwcut text without titles, ';'-separated: --fields and --column-separator
    cut = tmp_path / "cut.txt"
    cut.write_text("\n".join(format_records(sample_flows(), "1-10", no_titles=True, delimited=";")) + "\n")
    assert main(["import", "--data-dir", str(data), "--format", "rwcut", str(cut)]) == 1
    assert "give the separator (--column-separator)" in capsys.readouterr().err
    assert main(["import", "--data-dir", str(data), "--format", "rwcut", "--column-separator", ";", str(cut)]) == 1
    assert "without a title line: give its columns (--fields)" in capsys.readouterr().err
    assert main(["import", "--data-dir", str(data), "--format", "rwcut", "--fields", "1-10", "--column-separator", ";", str(cut)]) == 0
    assert "cut.txt [rwcut]: 3 lines -> 3 records" in capsys.readouterr().out


@needs_shared
def test_vlf_import_all_real_text_files_land_and_ingest(tmp_path, capsys):
    files = sorted((REAL / "binetflow").glob("*.binetflow")) + sorted((REAL / "zeek").glob("*"))
    data = tmp_path / "data"
    assert main(["import", "--data-dir", str(data), *map(str, files)]) == 0
    expected = 86 + 13412 + 140 + 512 + 7109 + 223 + 1107  # the per-file counts asserted above
    total = rejected = 0
    for hour in landing_hours(data):  # the pipeline's own reader with its hour and plausibility checks
        for path in landing_dir(data, hour).glob("*.parquet"):
            ingested = read_landing_file(path, hour_start_ms=hour_ms(hour))
            total += ingested.flows.num_rows
            rejected += ingested.rejected
    assert (total, rejected) == (expected, 0)


# --- fuzz ------------------------------------------------------------------------------------------

VALID = {
    "nfdump-csv": (NFDUMP_HEADER, nf_line()),
    "nfcapd": ("No matching flows", "2|1515771450942|1515771451000|6|0|0|0|2468368503|52324|0|0|0|2468368958|902|0|0|1|2|18|0|2|120"),
    "binetflow": (BINETFLOW_HEADER, "2019/04/04 16:23:00.325010,0.027947,udp,10.8.0.69,48427,  <->,8.8.8.8,53,CON,0,0,2,142,63,1,"),
    "zeek": ("\n".join(zeek_header()), zeek_line()),
    "zeek-json": ('{"ts":1.0,"id.orig_h":"10.0.0.1","id.orig_p":1,"id.resp_h":"10.0.0.2","id.resp_p":2,"proto":"udp",'
                  '"orig_pkts":1,"orig_ip_bytes":40,"resp_pkts":0,"resp_ip_bytes":0}',
                  '{"ts":2.5,"id.orig_h":"fe80::1","id.orig_p":5353,"id.resp_h":"ff02::fb","id.resp_p":5353,"proto":"udp",'
                  '"orig_pkts":2,"orig_ip_bytes":200,"resp_pkts":1,"resp_ip_bytes":90,"history":"Dd"}'),
    "rwcut": ("sIP|dIP|sPort|dPort|protocol|packets|bytes|flags|sTime|duration|",
              "4.227.17.37|10.1.24.202|4137|445|6|3|144|S|2006/04/01T00:07:48.000|9.000|"),
}
PARSE = {
    "nfdump-csv": parse_nfdump_csv, "nfcapd": parse_nfdump_pipe, "binetflow": parse_binetflow,
    "zeek": parse_zeek, "zeek-json": parse_zeek, "rwcut": parse_rwcut,
}
ALPHABET = st.characters(blacklist_characters="\n", blacklist_categories=("Cs",))


@st.composite
def mutated_lines(draw, kind):
    valid = VALID[kind][1]
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.text(ALPHABET, max_size=80))  # random text
    if choice == 1:
        return valid
    sep = {"nfcapd": "|", "rwcut": "|", "zeek": "\t"}.get(kind, ",")
    if choice == 2:  # replace one field by random text (or drop / duplicate it)
        cells = valid.split(sep)
        i = draw(st.integers(0, len(cells) - 1))
        action = draw(st.sampled_from(["replace", "drop", "dup"]))
        if action == "replace":
            cells[i] = draw(st.text(ALPHABET, max_size=12))
        elif action == "drop":
            del cells[i]
        else:
            cells.insert(i, cells[i])
        return sep.join(cells)
    # character-level mutation
    chars = list(valid)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(chars) - 1))
        op = draw(st.sampled_from(["set", "del", "ins"]))
        c = draw(ALPHABET)
        if op == "set":
            chars[i] = c
        elif op == "del" and len(chars) > 1:
            del chars[i]
        else:
            chars.insert(i, c)
    return "".join(chars)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_fuzz_every_parser_accounts_for_every_line(kind):
    header = VALID[kind][0]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.lists(mutated_lines(kind), max_size=12), st.booleans())
    def check(body, trailing_newline):
        text = "\n".join([header, *body]) + ("\n" if trailing_newline else "")
        lines_in = text.count("\n") + (not text.endswith("\n"))  # as `wc -l` counts, plus an unterminated last line
        result = PARSE[kind](text, "fuzz")  # no exception may escape
        # lines in == lines that gave records + skipped lines + quarantined lines (biflows may give 2 records a line)
        accounted(result, lines=lines_in)

    check()


@pytest.mark.skipif(not (SHARED_NETFLOW := Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "netflow-exports" / "nfv5.pcap").exists(),
                    reason="shared NetFlow export captures not found")
def test_netflow_pcap_import_goes_through_the_collector_decoder(tmp_path):
    from vlf_dagster.flows.importers.readers import import_file, land
    from vlf_dagster.flows.sources.pcap import import_pcap

    result = import_file(SHARED_NETFLOW, "netflow-pcap")
    direct, accounting = import_pcap(SHARED_NETFLOW)
    assert result.records == direct.num_rows == accounting.records > 0
    assert result.counts["datagrams"] == accounting.datagrams
    landed = land(result, tmp_path, "nfv5")
    assert sum(pq.read_metadata(f).num_rows for f in landed.files) == result.records


# --- --tz: wall-clock text in a named zone ----------------------------------------------------------


def test_tz_reads_local_wall_clock_times_across_daylight_saving(tmp_path, capsys):
    ms = lambda y, mo, d, h, mi: int(datetime(y, mo, d, h, mi, tzinfo=timezone.utc).timestamp() * 1000)  # noqa: E731
    text = "\n".join([
        BINETFLOW_HEADER,
        "2011/08/10 09:46:59.607,0.5,udp,10.8.0.69,48427,   ->,8.8.8.8,53,CON,0,0,1,60,60,1,",  # CEST, UTC+2
        "2011/01/10 09:46:00,0.5,udp,10.8.0.69,48427,   ->,8.8.8.8,53,CON,0,0,1,60,60,1,",  # CET, UTC+1
        "2011/10/30 02:30:00,0.5,udp,10.8.0.69,48427,   ->,8.8.8.8,53,CON,0,0,1,60,60,1,",  # repeated hour: first (CEST)
        "2011/03/27 02:30:00,0.5,udp,10.8.0.69,48427,   ->,8.8.8.8,53,CON,0,0,1,60,60,1,",  # skipped hour: quarantined
    ])
    result = accounted(parse_binetflow(text, "cz", tz="Europe/Prague"), lines=5)
    assert result.flows.column("sTime").to_pylist() == [
        ms(2011, 8, 10, 7, 46) + 59_607, ms(2011, 1, 10, 8, 46), ms(2011, 10, 30, 0, 30)]
    assert origins(result) == ["cz:5"] and "daylight-saving gap" in reasons(result)[0]
    # without --tz the same text is UTC
    utc = parse_binetflow(text, "cz")
    assert utc.flows.column("sTime").to_pylist()[:2] == [ms(2011, 8, 10, 9, 46) + 59_607, ms(2011, 1, 10, 9, 46)]
    # rwcut text takes it too; epoch formats and unknown zones are clear errors
    rw = parse_rwcut("sIP|dIP|sPort|dPort|protocol|packets|bytes|sTime|\n1.2.3.4|10.1.24.1|1|2|6|1|40|2011/08/10T09:46:59.607|\n",
                        "rw", tz="America/New_York")
    assert rw.flows.column("sTime").to_pylist() == [ms(2011, 8, 10, 13, 46) + 59_607]  # EDT, UTC-4
    src = tmp_path / "flows.binetflow"
    src.write_text(text)
    with pytest.raises(ImportFormatError, match="unknown time zone 'Mars/Olympus'"):
        im.import_file(src, "binetflow", tz="Mars/Olympus")
    conn = tmp_path / "conn.log"
    conn.write_text("#fields\tts\tuid\n1.0\tC1\n")
    with pytest.raises(ImportFormatError, match="--tz applies to"):
        im.import_file(conn, "zeek", tz="Europe/Prague")
    assert main(["import", "--format", "binetflow", "--tz", "Europe/Prague", "--dry-run", "--data-dir", str(tmp_path / "d"), str(src)]) == 0
    assert "3 records" in capsys.readouterr().out


def test_a_time_past_the_year_9999_is_quarantined_not_a_traceback():
    text = ("#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tconn_state\t"
            "orig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\n"
            "253402300800\tC1\t4.3.2.1\t1\t10.1.24.5\t22\ttcp\tS0\t1\t40\t0\t0\n"
            "1655071198.4\tC2\t4.3.2.1\t1\t10.1.24.5\t22\ttcp\tS0\t1\t40\t0\t0\n")
    result = accounted(parse_zeek(text.encode(), "y10k.log"))
    assert origins(result) == ["y10k.log:3"] and reasons(result) == ["time after the year 9999 (not a time any clock gives)"]
    assert result.records == 1 and [h.year for h in result.hours()] == [2022]


def test_vlf_import_says_which_hours_the_site_window_leaves_out(tmp_path, capsys, site):
    data = tmp_path / "data"
    data.mkdir()
    (data / "site.toml").write_text(site.to_toml())  # 2006-04-01 00:00 .. 03:00
    path = tmp_path / "flows.csv"
    path.write_text(two_hour_csv())  # 2018-01-12 15:00 and 16:00
    assert main(["import", "--data-dir", str(data), str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning: 2 hours (2018-01-12 15:00 .. 2018-01-12 16:00 UTC) lie outside the site's window 2006-04-01 00:00 .. 2006-04-01 03:00" in err
