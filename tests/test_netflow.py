"""NetFlow v5 / v9 / IPFIX decoders: real router exports, round trips, bad input, fuzzing, pcaps."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlf_dagster.flows.sources.netflow.accounting import BYTE_CATEGORIES, quarantine_table
from vlf_dagster.flows.sources.netflow.decoder import Decoder, decode_datagrams
from vlf_dagster.flows.sources.pcap import PcapError, import_pcap, read_pcap
from vlf_dagster.flows.schema import ATTR_IPV6, FLOW_SCHEMA, int_to_ipv4, ipv4_to_int

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
EXPORTS = REAL / "netflow-exports"
if not EXPORTS.is_dir():
    EXPORTS = Path("/work/shared/data/real/netflow-exports")
needs_exports = pytest.mark.skipif(not EXPORTS.is_dir(), reason=f"real NetFlow/IPFIX export captures not found ({EXPORTS})")

# --- encoders (test fixtures are written by the tests themselves) ----------------------------

V5_RECORD = struct.Struct(">IIIHHIIIIHHBBBBHHBBH")


def v5_record(sip="10.0.0.1", dip="10.0.0.2", nh="0.0.0.0", inp=1, out=2, packets=1, octets=40, first=0, last=0,
              sport=1024, dport=80, flags=0x02, proto=6, tos=0):
    return V5_RECORD.pack(ipv4_to_int(sip), ipv4_to_int(dip), ipv4_to_int(nh), inp, out, packets, octets, first, last,
                          sport, dport, 0, flags, proto, tos, 0, 0, 0, 0, 0)


def v5_datagram(records: list[bytes], *, uptime=100_000, secs=1_700_000_000, nsecs=0, sequence=0, count=None, engine=(0, 0)):
    count = len(records) if count is None else count
    return struct.pack(">HHIIIIBBH", 5, count, uptime, secs, nsecs, sequence, engine[0], engine[1], 0) + b"".join(records)


def field_spec(ie, length, pen=0):
    if pen:
        return struct.pack(">HHI", ie | 0x8000, length, pen)
    return struct.pack(">HH", ie, length)


def template_record(tid, fields, *, ipfix=True):
    return struct.pack(">HH", tid, len(fields)) + b"".join(field_spec(*f) if ipfix else struct.pack(">HH", f[0], f[1]) for f in fields)


def set_bytes(set_id, body, pad=0):
    body = body + b"\0" * pad
    return struct.pack(">HH", set_id, len(body) + 4) + body


def ipfix_message(sets: list[bytes], *, export=1_700_000_000, sequence=0, domain=1, length=None):
    body = b"".join(sets)
    length = 16 + len(body) if length is None else length
    return struct.pack(">HHIII", 10, length, export, sequence, domain) + body


def v9_packet(sets: list[bytes], *, count=None, uptime=1_000_000, secs=1_700_000_000, sequence=0, source_id=0):
    return struct.pack(">HHIIII", 9, len(sets) if count is None else count, uptime, secs, sequence, source_id) + b"".join(sets)


def pack_value(value: int, length: int) -> bytes:
    return int(value).to_bytes(length, "big")


def ip_text(row: dict, which: str) -> str:
    if row["attributes"] & ATTR_IPV6:
        return str(ipaddress.IPv6Address(row[f"{which}v6"]))
    return int_to_ipv4(row[which])


def decode_files(*names: str, decoder: Decoder | None = None):
    """Feed captures in order (templates before data) through one decoder."""
    decoder = decoder or Decoder()
    tables, quarantine, datagrams = [], [], 0
    for name in names:
        for packet in read_pcap(EXPORTS / name):
            out = decoder.feed([packet.payload], (packet.src, packet.sport))
            tables.append(out.table)
            quarantine += out.quarantine
            datagrams += 1
    rest = decoder.finish()
    tables.append(rest.table)
    quarantine += rest.quarantine
    return pa.concat_tables(tables), decoder.accounting, quarantine, datagrams


def assert_accounted(acc, datagrams=None):
    assert acc.bytes_balanced(), dict(acc.bytes)
    assert all(acc.bytes[c] >= 0 for c in BYTE_CATEGORIES), dict(acc.bytes)
    assert not any(r.startswith("internal") for r in acc.reasons), acc.reasons
    if datagrams is not None:
        assert acc.datagrams == datagrams


# --- real router exports -----------------------------------------------------------------------

REAL_GROUPS = [
    ("nfv5.pcap",),
    ("template.pcap", "data.pcap"),
    ("options-template.pcap", "options-data.pcap", "template.pcap", "data.pcap"),
    ("data+templates.pcap",),
    ("icmp-template.pcap", "icmp-data.pcap"),
    ("samplingrate-template.pcap", "samplingrate-data.pcap"),
    ("multiplesamplingrates-options-template.pcap", "multiplesamplingrates-options-data.pcap",
     "multiplesamplingrates-template.pcap", "multiplesamplingrates-data.pcap"),
    ("datalink-template.pcap", "datalink-data.pcap"),
    ("ethernet-over-mpls-with-control-word-template.pcap", "ethernet-over-mpls-with-control-word-data.pcap"),
    ("ipfix-srv6-template.pcap", "ipfix-srv6-data.pcap"),
    ("ipfixprobe-templates.pcap", "ipfixprobe-data.pcap"),
    ("juniper-cpid-template.pcap", "juniper-cpid-data.pcap"),
    ("mpls.pcap",),
    ("nat.pcap",),
    ("physicalinterfaces.pcap",),
]
# records each group yields (flows; options records; RFC 5103 reverse records included)
REAL_RECORDS = {
    "nfv5.pcap": 29, "data.pcap": 4, "options-data.pcap": 4, "data+templates.pcap": 21, "icmp-data.pcap": 4,
    "samplingrate-data.pcap": 6, "multiplesamplingrates-data.pcap": 12, "datalink-data.pcap": 1,
    "ethernet-over-mpls-with-control-word-data.pcap": 10, "ipfix-srv6-data.pcap": 1, "ipfixprobe-data.pcap": 6,
    "juniper-cpid-data.pcap": 1, "mpls.pcap": 2, "nat.pcap": 9, "physicalinterfaces.pcap": 8,
}


@needs_exports
def test_every_real_capture_is_covered():
    covered = {name for group in REAL_GROUPS for name in group}
    assert covered == {p.name for p in EXPORTS.glob("*.pcap")}


@needs_exports
@pytest.mark.parametrize("group", REAL_GROUPS, ids=lambda g: g[-1])
def test_real_exports_decode_and_account(group):
    table, acc, quarantine, datagrams = decode_files(*group)
    assert table.schema.equals(FLOW_SCHEMA)
    assert_accounted(acc, datagrams)
    assert acc.undecodable == 0 and not quarantine, [q.reason for q in quarantine]
    assert table.num_rows == REAL_RECORDS[group[-1]]
    assert acc.records == table.num_rows
    assert acc.held_sets == 0 and acc.expired_sets == 0


@needs_exports
def test_nfv5_hand_checked():
    table, acc, _, _ = decode_files("nfv5.pcap")
    assert table.num_rows == 29 and acc.lost == 0
    first = table.slice(0, 1).to_pylist()[0]
    assert (ip_text(first, "sIP"), ip_text(first, "dIP"), ip_text(first, "nhIP")) == ("161.202.212.212", "202.152.70.24", "61.6.255.150")
    assert (first["sPort"], first["dPort"], first["protocol"], first["flags"]) == (30104, 11963, 6, 0x18)
    assert (first["packets"], first["bytes"], first["in"], first["out"]) == (1, 133, 117, 86)
    # header: sysUptime 2874339000 ms at unix_secs 1680626679; record First = 2874324000 -> 15 s earlier
    assert first["sTime"] == 1_680_626_679_000 - 15_000 and first["duration"] == 0
    second = table.slice(1, 1).to_pylist()[0]
    assert (second["packets"], second["bytes"], second["duration"]) == (7, 10262, 9000)


@needs_exports
def test_v9_cisco_template_then_data_hand_checked():
    table, acc, _, _ = decode_files("template.pcap", "data.pcap")
    rows = table.to_pylist()
    assert [ip_text(r, "sIP") for r in rows] == ["198.38.121.178", "198.38.121.219", "173.194.190.106", "74.125.100.234"]
    r = rows[0]
    assert (ip_text(r, "dIP"), ip_text(r, "nhIP"), r["in"], r["out"]) == ("91.170.143.87", "194.149.174.63", 335, 450)
    assert (r["sPort"], r["dPort"], r["protocol"], r["flags"], r["packets"], r["bytes"]) == (443, 19624, 6, 0x10, 1, 1500)
    # FIRST_SWITCHED 944948659 against sysUptime 944951609 at unix_secs 1647285928
    assert r["sTime"] == 1_647_285_928_000 - (944_951_609 - 944_948_659)


@needs_exports
def test_v9_data_before_template_is_held_then_decoded():
    decoder = Decoder()
    data = [p.payload for p in read_pcap(EXPORTS / "data.pcap")]
    template = [p.payload for p in read_pcap(EXPORTS / "template.pcap")]
    out = decoder.feed(data, ("192.0.2.100", 47873))
    assert out.records == 0 and decoder.accounting.held_sets == 1 and decoder.accounting.bytes["held"] > 0
    assert decoder.accounting.bytes_balanced()
    out = decoder.feed(template, ("192.0.2.100", 47873))
    assert out.records == 4 and decoder.accounting.held_records == 4 and decoder.accounting.held_sets == 0
    assert decoder.accounting.bytes["held"] == 0 and decoder.accounting.bytes_balanced()


@needs_exports
def test_data_without_its_template_is_counted_not_lost():
    table, acc, quarantine, _ = decode_files("datalink-data.pcap")
    assert table.num_rows == 0
    assert acc.expired_sets == 1 and acc.reasons["template id undefined"] == 1
    assert [q.reason.split(":")[0] for q in quarantine] == ["template id undefined"]
    assert_accounted(acc)


@needs_exports
def test_icmp_type_code_into_dport_and_ipv6():
    table, _, _, _ = decode_files("icmp-template.pcap", "icmp-data.pcap")
    rows = table.to_pylist()
    assert [r["dPort"] for r in rows] == [128 * 256, 129 * 256, 8 * 256, 0]
    assert [r["protocol"] for r in rows] == [58, 58, 1, 1]
    assert [bool(r["attributes"] & ATTR_IPV6) for r in rows] == [True, True, False, False]
    assert (ip_text(rows[0], "sIP"), ip_text(rows[0], "dIP")) == ("2001:db8::", "2001:db8::1")
    assert rows[0]["sIP"] == 0 and rows[2]["sIPv6"] is None


@needs_exports
def test_ipfix_biflows_sampled_packets_and_options():
    table, acc, _, _ = decode_files("ipfixprobe-templates.pcap", "ipfixprobe-data.pcap")
    pairs = sorted((ip_text(r, "sIP"), ip_text(r, "dIP"), r["packets"], r["bytes"]) for r in table.to_pylist())
    assert ("10.10.1.1", "10.10.1.4", 1, 128) in pairs and ("10.10.1.4", "10.10.1.1", 1, 62) in pairs  # a biflow's two directions
    assert ("74.53.140.153", "10.10.1.4", 25, 1546) in pairs
    table, acc, _, _ = decode_files("datalink-template.pcap", "datalink-data.pcap")
    r = table.to_pylist()[0]  # 5-tuple read from the dataLinkFrameSection
    assert (ip_text(r, "sIP"), ip_text(r, "dIP"), r["sPort"], r["dPort"], r["protocol"], r["bytes"], r["in"]) == (
        "51.51.51.51", "52.52.52.52", 55501, 11777, 17, 96, 582)
    table, acc, _, _ = decode_files("mpls.pcap")
    assert [(ip_text(r, "dIP"), r["packets"], r["bytes"]) for r in table.to_pylist()] == [("fd00::1:0:1:5:1", 1, 89), ("fd00::1:0:1:6:1", 10, 890)]
    assert acc.option_records == 1 and acc.template_records == 2
    table, acc, _, _ = decode_files("multiplesamplingrates-options-template.pcap", "multiplesamplingrates-options-data.pcap",
                                    "multiplesamplingrates-template.pcap", "multiplesamplingrates-data.pcap")
    r = table.to_pylist()[0]
    assert (ip_text(r, "sIP"), ip_text(r, "dIP"), ip_text(r, "nhIP"), r["packets"], r["bytes"], r["in"], r["out"]) == (
        "ffff::68", "ffff::1a", "ffff::2", 18, 1348, 97, 6)
    assert acc.option_records == 2


@needs_exports
def test_import_pcap_of_real_exports():
    table, acc = import_pcap(EXPORTS / "nfv5.pcap")
    assert table.num_rows == 29 and acc.pcap["udp"] == 1 and acc.quarantine == []
    assert_accounted(acc, 1)


# --- round trips ------------------------------------------------------------------------------

v4 = st.integers(0, 2**32 - 1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(v4, v4, v4, st.integers(0, 65535), st.integers(0, 65535), st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1),
                  st.integers(0, 10**8), st.integers(0, 10**7), st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 255), st.integers(0, 255)),
        min_size=1, max_size=30),
    st.integers(10**8 + 1, 2**32 - 1), st.integers(10**9, 2 * 10**9), st.integers(0, 999_999_999), st.integers(0, 2**32 - 1),
)
def test_v5_round_trip(records, uptime, secs, nsecs, sequence):
    raw = []
    for sip, dip, nh, inp, out, pk, oc, ago, dur, sp, dp, fl, pr in records:
        first = uptime - ago
        raw.append(V5_RECORD.pack(sip, dip, nh, inp, out, pk, oc, first, (first + dur) & 0xFFFFFFFF, sp, dp, 0, fl, pr, 0, 0, 0, 0, 0, 0))
    table, acc, quarantine = decode_datagrams([v5_datagram(raw, uptime=uptime, secs=secs, nsecs=nsecs, sequence=sequence)])
    assert not quarantine and acc.records == len(records)
    export_ms = secs * 1000 + nsecs // 1_000_000
    for row, (sip, dip, nh, inp, out, pk, oc, ago, dur, sp, dp, fl, pr) in zip(table.to_pylist(), records):
        assert (row["sIP"], row["dIP"], row["nhIP"], row["in"], row["out"]) == (sip, dip, nh, inp, out)
        assert (row["packets"], row["bytes"], row["sPort"], row["dPort"], row["flags"], row["protocol"]) == (pk, oc, sp, dp, fl, pr)
        assert (row["sTime"], row["duration"]) == (export_ms - ago, dur)


IPFIX_FIELDS = {  # element -> (allowed lengths)
    1: (4, 8), 2: (4, 8), 4: (1,), 6: (1, 2), 7: (2,), 11: (2,), 10: (2, 4), 14: (2, 4), 152: (8,), 153: (8,),
    5: (1,), 136: (1,), 60: (1,),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_ipfix_and_v9_round_trip(data):
    ipfix = data.draw(st.booleans(), label="ipfix")
    family = data.draw(st.sampled_from([4, 6]), label="family")
    elements = data.draw(st.permutations(sorted(IPFIX_FIELDS)), label="order")
    fields = [(ie, data.draw(st.sampled_from(IPFIX_FIELDS[ie]))) for ie in elements]
    addresses = [(8, 4), (12, 4)] if family == 4 else [(27, 16), (28, 16)]
    at = data.draw(st.integers(0, len(fields)))
    fields[at:at] = addresses
    unknown = [(5000, 3, 12345)] if ipfix and data.draw(st.booleans()) else []  # an enterprise field is skipped
    fields += unknown
    n = data.draw(st.integers(1, 20), label="records")
    base_ms = 1_700_000_000_000
    rows, raw = [], b""
    for _ in range(n):
        v = {
            "sip": data.draw(st.integers(1, 2**32 - 1) if family == 4 else st.binary(min_size=16, max_size=16)),
            "dip": data.draw(st.integers(1, 2**32 - 1) if family == 4 else st.binary(min_size=16, max_size=16)),
            1: data.draw(st.integers(1, 2**32 - 1)), 2: data.draw(st.integers(1, 2**32 - 1)), 4: data.draw(st.integers(0, 255)),
            6: data.draw(st.integers(0, 255)), 7: data.draw(st.integers(0, 65535)), 11: data.draw(st.integers(0, 65535)),
            10: data.draw(st.integers(0, 65535)), 14: data.draw(st.integers(0, 65535)),
            152: base_ms + data.draw(st.integers(-10**9, 10**9)), 5: 0, 136: 1, 60: family,
        }
        v[153] = v[152] + data.draw(st.integers(0, 10**7))
        rows.append(v)
        for ie, length, *pen in fields:
            if ie in (8, 27):
                raw += v["sip"] if family == 6 else pack_value(v["sip"], 4)
            elif ie in (12, 28):
                raw += v["dip"] if family == 6 else pack_value(v["dip"], 4)
            elif pen:
                raw += b"\x01" * length
            else:
                raw += pack_value(v[ie], length)
    tid = data.draw(st.integers(256, 65535))
    export = base_ms // 1000 + 10**6 + 1  # exported after the last flow started
    if ipfix:
        messages = [ipfix_message([set_bytes(2, template_record(tid, fields))], sequence=0, export=export),
                    ipfix_message([set_bytes(tid, raw, pad=data.draw(st.integers(0, 3)))], sequence=0, export=export)]
    else:
        messages = [v9_packet([set_bytes(0, template_record(tid, fields, ipfix=False))], sequence=0, count=1, secs=export),
                    v9_packet([set_bytes(tid, raw)], sequence=1, count=n, secs=export)]
    table, acc, quarantine = decode_datagrams(messages, ("192.0.2.1", 2055))
    assert not quarantine, [q.reason for q in quarantine]
    assert acc.records == n and acc.lost == 0 and acc.warnings.get("v9 count differs from records", 0) == 0
    assert_accounted(acc, 2)
    for row, v in zip(table.to_pylist(), rows):
        if family == 4:
            assert (row["sIP"], row["dIP"], row["attributes"]) == (v["sip"], v["dip"], 0)
        else:
            assert (row["sIPv6"], row["dIPv6"], row["attributes"], row["sIP"]) == (v["sip"], v["dip"], ATTR_IPV6, 0)
        assert (row["bytes"], row["packets"], row["protocol"], row["flags"]) == (v[1], v[2], v[4], v[6])
        assert (row["sPort"], row["dPort"], row["in"], row["out"]) == (v[7], v[11], v[10], v[14])
        assert (row["sTime"], row["duration"]) == (v[152], v[153] - v[152])


def test_v9_uptime_relative_times_and_wrap():
    fields = [(8, 4), (12, 4), (22, 4), (21, 4), (2, 4), (1, 4)]
    # sysUptime wrapped past 2^32 after the flow started: FIRST_SWITCHED is "ahead" of it
    uptime = 5_000
    first, last = (2**32 - 10_000), 1_000
    record = pack_value(ipv4_to_int("10.0.0.1"), 4) + pack_value(ipv4_to_int("10.0.0.2"), 4) + pack_value(first, 4) + pack_value(last, 4) + pack_value(3, 4) + pack_value(120, 4)
    packet = v9_packet([set_bytes(0, template_record(300, fields, ipfix=False)), set_bytes(300, record)], uptime=uptime, secs=1_700_000_000, count=2)
    table, acc, quarantine = decode_datagrams([packet])
    row = table.to_pylist()[0]
    assert not quarantine
    assert row["sTime"] == 1_700_000_000_000 - (uptime + 10_000) and row["duration"] == 11_000


def test_ipfix_system_init_time_from_options():
    domain = 7
    options = [(144, 4), (160, 8)]  # scope exportingProcessId; systemInitTimeMilliseconds
    opt_template = struct.pack(">HHH", 400, 2, 1) + b"".join(field_spec(*f) for f in options)
    opt_data = pack_value(1, 4) + pack_value(1_700_000_000_000, 8)
    fields = [(8, 4), (12, 4), (22, 4), (21, 4), (2, 4), (1, 4)]
    record = pack_value(1, 4) + pack_value(2, 4) + pack_value(60_000, 4) + pack_value(61_500, 4) + pack_value(1, 4) + pack_value(40, 4)
    msg_no_init = ipfix_message([set_bytes(2, template_record(300, fields)), set_bytes(300, record)], domain=domain)
    msg = ipfix_message([set_bytes(3, opt_template), set_bytes(400, opt_data), set_bytes(300, record)], domain=domain, sequence=1)
    table, acc, quarantine = decode_datagrams([msg_no_init, msg])
    assert [q.reason.split(":")[0] for q in quarantine] == ["no time base"]
    assert table.num_rows == 1 and table.column("sTime")[0].as_py() == 1_700_000_060_000
    assert table.column("duration")[0].as_py() == 1_500 and acc.option_records == 1
    assert_accounted(acc, 2)


# --- sequence numbers ---------------------------------------------------------------------------


def test_v5_sequence_gaps_count_lost_records():
    recs = [v5_record()] * 10
    stream = [v5_datagram(recs, sequence=s) for s in (0, 10, 30, 40)]  # the datagram of 20..29 is missing
    _, acc, _ = decode_datagrams(stream, ("10.9.9.9", 1))
    assert acc.lost_records == 10 and acc.exporters["10.9.9.9"].lost_records == 10 and acc.out_of_order == 0
    _, acc, _ = decode_datagrams([v5_datagram(recs, sequence=s) for s in (2**32 - 10, 0, 10)])
    assert acc.lost == 0  # wraps modulo 2^32
    _, acc, _ = decode_datagrams([v5_datagram(recs, sequence=s) for s in (0, 10, 20, 10)])
    assert acc.lost == 0 and acc.out_of_order == 1  # a duplicate is not loss
    # a jump no exporter could lose between two datagrams (a restart, a mangled header) is a reset,
    # and the stream goes on from its new number: 1,700,000,000 records are not "lost"
    _, acc, _ = decode_datagrams([v5_datagram(recs, sequence=s) for s in (0, 10, 1_700_000_000, 1_700_000_010, 1_700_000_030)])
    assert acc.lost_records == 10 and acc.sequence_resets == 1 and list(acc.exporters.values())[0].sequence_resets == 1
    assert acc.to_dict()["sequence_resets"] == 1


def test_v9_and_ipfix_sequence_gaps():
    fields = [(8, 4), (12, 4), (2, 4), (1, 4), (152, 8)]
    record = pack_value(1, 4) + pack_value(2, 4) + pack_value(1, 4) + pack_value(40, 4) + pack_value(1_700_000_000_000, 8)
    tset = set_bytes(0, template_record(300, fields, ipfix=False))
    v9 = [v9_packet([tset, set_bytes(300, record * 3)], sequence=s, count=4) for s in (5, 6, 9, 10)]
    _, acc, _ = decode_datagrams(v9)
    assert acc.lost_datagrams == 2 and acc.lost_records == 0
    tset = set_bytes(2, template_record(300, fields))
    ipfix = [ipfix_message([tset, set_bytes(300, record * 3)], sequence=s) for s in (0, 3, 9, 12)]
    _, acc, _ = decode_datagrams(ipfix)
    assert acc.lost_records == 3 and acc.lost_datagrams == 0
    # softflowd's IPFIX counts the records *including* the message's own: learned, not reported as loss
    after = [ipfix_message([tset, set_bytes(300, record * k)], sequence=s) for k, s in ((3, 3), (2, 5), (5, 10), (1, 11))]
    _, acc, _ = decode_datagrams(after)
    assert acc.lost == 0


# --- bad input named in the issue ---------------------------------------------------------------


def reasons_of(quarantine):
    return [q.reason.split(":")[0] for q in quarantine]


def test_truncated_datagrams():
    good = v5_datagram([v5_record()] * 3)
    fields = [(8, 4), (12, 4), (2, 4), (1, 4)]
    msg = ipfix_message([set_bytes(2, template_record(300, fields)), set_bytes(300, b"\x01" * 32)])
    v9 = v9_packet([set_bytes(0, template_record(300, fields, ipfix=False)), set_bytes(300, b"\x01" * 32)], count=3)
    cases = [good[:1], good[:20], good[:24 + 48 + 10], msg[:10], msg[:-5], v9[:12], v9[:-6]]
    table, acc, quarantine = decode_datagrams(cases)
    assert table.num_rows == 0 or acc.partial
    assert reasons_of(quarantine).count("truncated") == len(cases)
    assert_accounted(acc, len(cases))


def test_wrong_versions():
    cases = [b"\x00\x07" + b"\0" * 40, b"\x00\x01" + b"\0" * 22, b"\xff\xff", b"", b"\x00\x0a"]
    table, acc, quarantine = decode_datagrams(cases)
    assert table.num_rows == 0 and acc.undecodable == 5
    assert reasons_of(quarantine) == ["wrong version", "wrong version", "wrong version", "truncated", "truncated"]
    assert_accounted(acc, 5)
    assert quarantine[0].data == cases[0]  # the bytes are kept


def test_lying_record_counts():
    recs = [v5_record()] * 3
    cases = [v5_datagram(recs, count=4), v5_datagram(recs, count=2), v5_datagram(recs, count=1000), v5_datagram(recs + [b"junk"], count=3)]
    table, acc, quarantine = decode_datagrams(cases)
    assert table.num_rows == 0 and acc.undecodable == 4
    assert reasons_of(quarantine) == ["count lying", "count lying", "count lying", "count lying"]
    # IPFIX message length lying, set lengths lying
    fields = [(8, 4), (12, 4), (2, 4), (1, 4)]
    msg = ipfix_message([set_bytes(2, template_record(300, fields))])
    bad_set = ipfix_message([struct.pack(">HH", 300, 2) + b"\0" * 8])
    _, acc, quarantine = decode_datagrams([msg[:2] + struct.pack(">H", 10) + msg[4:], msg[:2] + struct.pack(">H", 999) + msg[4:], bad_set])
    assert reasons_of(quarantine) == ["message length lying", "truncated", "set length lying"]
    assert_accounted(acc, 3)
    # a v9 header count that disagrees is noted, the records still decode
    v9 = v9_packet([set_bytes(0, template_record(300, fields, ipfix=False)), set_bytes(300, b"\x0a" * 16)], count=9)
    table, acc, quarantine = decode_datagrams([v9])
    assert table.num_rows == 1 and acc.warnings["v9 count differs from records"] == 1 and not quarantine


def test_undefined_template_ids():
    record = b"\x0a" * 16
    decoder = Decoder(max_held_sets=3)
    for s in range(5):
        decoder.feed([ipfix_message([set_bytes(999, record)], sequence=s)], ("10.1.1.1", 4739))
    assert decoder.accounting.held_sets == 3 and decoder.accounting.expired_sets == 2  # bounded
    out = decoder.finish()
    acc = decoder.accounting
    assert acc.held_sets == 0 and acc.expired_sets == 5 and acc.reasons["template id undefined"] == 5
    assert all("template 999" in q.reason for q in out.quarantine)
    assert_accounted(acc, 5)
    # templates are per exporter and observation domain
    fields = [(8, 4), (12, 4), (2, 4), (1, 4)]
    table, acc, quarantine = decode_datagrams(
        [ipfix_message([set_bytes(2, template_record(300, fields))], domain=1), ipfix_message([set_bytes(300, record)], domain=2)]
    )
    assert table.num_rows == 0 and reasons_of(quarantine) == ["template id undefined"]
    # reserved set ids and template ids below 256
    table, acc, quarantine = decode_datagrams([ipfix_message([set_bytes(100, record)]), ipfix_message([set_bytes(2, template_record(255, fields))])])
    assert reasons_of(quarantine) == ["reserved set id", "template id below 256"]
    assert_accounted(acc, 2)


def test_zero_length_fields():
    fields = [(8, 4), (12, 4), (2, 0), (1, 4)]
    table, acc, quarantine = decode_datagrams(
        [
            ipfix_message([set_bytes(2, template_record(300, fields)), set_bytes(300, b"\x01" * 12)]),
            v9_packet([set_bytes(0, template_record(301, fields, ipfix=False)), set_bytes(301, b"\x01" * 12)]),
        ]
    )
    assert table.num_rows == 0
    assert sorted(reasons_of(quarantine)) == ["template id undefined", "template id undefined", "zero-length field", "zero-length field"]
    assert_accounted(acc, 2)


def test_times_in_1970():
    recs = [v5_record(first=90_000, last=95_000)] * 2
    table, acc, quarantine = decode_datagrams([v5_datagram(recs, secs=0, uptime=100_000), v5_datagram(recs, secs=1_700_000_000, sequence=2)])
    assert table.num_rows == 2 and acc.quarantined_records == 2
    assert reasons_of(quarantine) == ["time in 1970", "time in 1970"]
    assert quarantine[0].record["sIP"] == ipv4_to_int("10.0.0.1")  # the decoded record is kept
    fields = [(8, 4), (12, 4), (2, 4), (1, 4), (152, 8), (153, 8)]
    rec = pack_value(1, 4) + pack_value(2, 4) + pack_value(1, 4) + pack_value(40, 4) + pack_value(0, 8) + pack_value(5, 8)
    table, acc, quarantine = decode_datagrams([ipfix_message([set_bytes(2, template_record(300, fields)), set_bytes(300, rec)])])
    assert table.num_rows == 0 and reasons_of(quarantine) == ["time in 1970"]
    assert_accounted(acc, 1)


def test_quarantine_table_layout():
    _, _, quarantine = decode_datagrams([b"\x00\x07junk"], ("10.2.3.4", 2055))
    table = quarantine_table(quarantine, origin="collector")
    assert table.column_names == ["origin", "reason", "record"]
    row = table.to_pylist()[0]
    assert row["origin"].startswith("collector:10.2.3.4:2055") and row["reason"].startswith("wrong version")
    assert '"hex": "00076a756e6b"' in row["record"]


# --- fuzzing ------------------------------------------------------------------------------------


def _seeds() -> list[bytes]:
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 8), (152, 8), (153, 8), (315, 65535)]
    rec = pack_value(1, 4) + pack_value(2, 4) + pack_value(80, 2) + pack_value(81, 2) + b"\x06" + pack_value(1, 4) + pack_value(40, 8) + pack_value(1_700_000_000_000, 8) * 2 + b"\x03abc"
    seeds = [
        v5_datagram([v5_record()] * 3),
        ipfix_message([set_bytes(2, template_record(300, fields)), set_bytes(300, rec * 2)]),
        v9_packet([set_bytes(0, template_record(301, [(8, 4), (12, 4), (22, 4), (21, 4)], ipfix=False)), set_bytes(301, b"\x01" * 32)]),
    ]
    if EXPORTS.is_dir():
        for path in sorted(EXPORTS.glob("*.pcap")):
            seeds += [p.payload for p in read_pcap(path)]
    return seeds


SEEDS = _seeds()


def _feed_and_check(decoder: Decoder, datagram: bytes):
    acc = decoder.accounting
    before = {k: acc.bytes[k] for k in ("input", *BYTE_CATEGORIES)}
    undecodable, datagrams = acc.undecodable, acc.datagrams
    out = decoder.feed([datagram], ("198.51.100.1", 2055))
    assert acc.datagrams == datagrams + 1
    assert acc.bytes["input"] - before["input"] == len(datagram)
    assert acc.bytes_balanced(), dict(acc.bytes)
    assert not any(r.startswith("internal") for r in acc.reasons), acc.reasons
    if acc.undecodable > undecodable:  # rejected whole: one entry with the whole datagram and a reason
        assert any(q.data == datagram and q.reason for q in out.quarantine)
    assert out.table.schema.equals(FLOW_SCHEMA)
    return out


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzz_random_bytes(data):
    _feed_and_check(Decoder(), data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_real_datagrams(data):
    decoder = Decoder(max_held_sets=8)
    for seed in SEEDS[:3] + [s for s in SEEDS if len(s) < 600][:6]:  # learn some templates first
        decoder.feed([seed], ("198.51.100.1", 2055))
    for _ in range(data.draw(st.integers(1, 4))):
        datagram = bytearray(data.draw(st.sampled_from(SEEDS)))
        for _ in range(data.draw(st.integers(0, 6))):
            at = data.draw(st.integers(0, max(0, len(datagram) - 1)))
            value = data.draw(st.sampled_from([0, 1, 2, 3, 4, 255, 256, 65535, data.draw(st.integers(0, 65535))]))
            if at + 2 <= len(datagram):
                datagram[at : at + 2] = value.to_bytes(2, "big")
        cut = data.draw(st.integers(0, len(datagram)))
        if data.draw(st.booleans()):
            datagram = datagram[:cut]
        _feed_and_check(decoder, bytes(datagram))
    decoder.finish()
    assert decoder.accounting.bytes_balanced() and decoder.accounting.held_sets == 0


# --- pcaps written by the test -------------------------------------------------------------------


def _frame_v4(payload: bytes, src="192.0.2.7", dst="192.0.2.1", sport=40000, dport=2055, ident=1, frag=None) -> list[bytes]:
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x81\x00\x00\x05\x08\x00"  # with a VLAN tag
    if frag is None:
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident, 0, 64, 17, 0, ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
        return [eth + ip + udp]
    frames, offset = [], 0
    while offset < len(udp):
        part = udp[offset : offset + frag]
        more = 0x2000 if offset + frag < len(udp) else 0
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(part), ident, more | (offset // 8), 64, 17, 0, ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
        frames.append(eth + ip + part)
        offset += frag
    return frames


def _frame_v6(payload: bytes, src="2001:db8::7", dst="2001:db8::1", sport=40001, dport=4739) -> bytes:
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(">IHBB16s16s", 6 << 28, len(udp), 17, 64, ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + ip + udp


def write_pcap(path: Path, frames: list[bytes]) -> Path:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, frame in enumerate(frames):
        out += struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame
    path.write_bytes(out)
    return path


def test_import_pcap_ipv4_ipv6_fragments_and_other_udp(tmp_path):
    recs = [v5_record(sip=f"10.0.0.{i}") for i in range(1, 31)]
    fields = [(27, 16), (28, 16), (2, 4), (1, 4), (152, 8)]
    rec6 = ipaddress.IPv6Address("2001:db8::5").packed + ipaddress.IPv6Address("2001:db8::6").packed + pack_value(2, 4) + pack_value(100, 4) + pack_value(1_700_000_000_000, 8)
    frames = (
        _frame_v4(v5_datagram(recs, sequence=0))
        + _frame_v4(v5_datagram(recs, sequence=30), ident=2, frag=512)  # fragmented, reassembled
        + [_frame_v6(ipfix_message([set_bytes(2, template_record(300, fields)), set_bytes(300, rec6)]))]
        + _frame_v4(b"\x12\x34 a DNS answer", dport=53, ident=3)  # other UDP: skipped
    )
    path = write_pcap(tmp_path / "exports.pcap", frames)
    table, acc = import_pcap(path)
    assert table.num_rows == 61 and acc.datagrams == 3 and acc.lost == 0
    assert acc.pcap["reassembled"] == 1 and acc.pcap["skipped_udp"] == 1
    assert sorted(acc.exporters) == ["192.0.2.7", "2001:db8::7"]
    v6 = table.filter(pa.compute.greater(table.column("attributes"), 0)).to_pylist()
    assert [(ip_text(r, "sIP"), r["bytes"]) for r in v6] == [("2001:db8::5", 100)]
    table, acc = import_pcap(path, ports=[4739])
    assert table.num_rows == 1
    (tmp_path / "x.pcapng").write_bytes(b"\x0a\x0d\x0d\x0a" + b"\0" * 40)
    with pytest.raises(PcapError, match="pcapng"):
        import_pcap(tmp_path / "x.pcapng")


# --- the batch paths decode exactly like the per-datagram path -------------------------------------

TEMPLATE_POOL = {  # template id -> alternative definitions (a redefinition changes the layout)
    300: [[(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (152, 8), (153, 8)],
          [(12, 4), (8, 4), (4, 1), (1, 8), (2, 8), (152, 8), (153, 8), (7, 2), (11, 2)]],
    301: [[(27, 16), (28, 16), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (152, 8), (153, 8)]],
}


def _record_bytes(fields, rng_values) -> bytes:
    out = b""
    for (ie, length), value in zip(fields, rng_values):
        if ie in (27, 28):
            out += value.to_bytes(16, "big")
        elif ie in (152, 153):
            out += pack_value(1_700_000_000_000 + value % 10**6, length)
        else:
            out += pack_value(value % (1 << (8 * length)), length)
    return out


@st.composite
def export_streams(draw):
    ipfix = draw(st.booleans())
    steps = draw(st.lists(st.sampled_from(["data", "data", "data", "data", "template", "mixed", "redefine", "unknown", "gap", "garbage", "options"]), min_size=4, max_size=40))
    defined = {}
    datagrams, sequence = [], 0
    for step in steps:
        sets, records = [], 0
        if step in ("template", "mixed", "redefine") or not defined:
            tid = draw(st.sampled_from(sorted(TEMPLATE_POOL)))
            choice = draw(st.integers(0, len(TEMPLATE_POOL[tid]) - 1)) if step == "redefine" else 0
            defined[tid] = TEMPLATE_POOL[tid][choice]
            sets.append(set_bytes(2 if ipfix else 0, template_record(tid, defined[tid], ipfix=ipfix)))
        if step == "options":
            fields = [(144, 4), (160, 8)] if ipfix else [(1, 4), (34, 4)]
            body = struct.pack(">HHH", 400, 2, 1) + b"".join(field_spec(*f) for f in fields) if ipfix else struct.pack(">HHH", 400, 4, 4) + b"".join(struct.pack(">HH", *f) for f in fields)
            sets.append(set_bytes(3 if ipfix else 1, body))
            sets.append(set_bytes(400, pack_value(1, 4) + pack_value(1_600_000_000_000 if ipfix else 100, 8 if ipfix else 4)))
            records += 1
        if step in ("data", "mixed", "redefine", "gap", "options", "template"):
            tid = draw(st.sampled_from(sorted(defined)))
            n = draw(st.integers(1, 6))
            values = draw(st.lists(st.integers(1, 2**64), min_size=len(defined[tid]) * n, max_size=len(defined[tid]) * n))
            raw = b"".join(_record_bytes(defined[tid], values[i * len(defined[tid]) : (i + 1) * len(defined[tid])]) for i in range(n))
            sets.append(set_bytes(tid, raw, pad=draw(st.integers(0, 3))))
            records += n
        if step == "unknown":
            sets.append(set_bytes(999, b"\x01" * 20))
        if step == "gap":
            sequence += draw(st.integers(1, 50))
        if ipfix:
            message = ipfix_message(sets, sequence=sequence & 0xFFFFFFFF, export=1_700_000_500)
            sequence += records if step != "unknown" else 0
        else:
            message = v9_packet(sets, sequence=sequence, secs=1_700_000_500, count=len(sets))
            sequence += 1
        if step == "garbage":
            message = message[: draw(st.integers(0, len(message) - 1))]
        datagrams.append(message)
    return datagrams


def _canonical(table: pa.Table) -> list:
    return sorted(tuple((k, v) for k, v in row.items()) for row in table.to_pylist())


def _same_decoding(datagrams: list[bytes]) -> None:
    one, batch = Decoder(), Decoder()
    tables_one = [one.feed([d], ("192.0.2.5", 2055)).table for d in datagrams] + [one.finish().table]
    tables_batch = [batch.feed(datagrams, ("192.0.2.5", 2055)).table, batch.finish().table]
    assert _canonical(pa.concat_tables(tables_one)) == _canonical(pa.concat_tables(tables_batch))
    a, b = one.accounting.to_dict(), batch.accounting.to_dict()
    for k in ("held_records", "warnings"):  # data ahead of its template inside one batch is not "held"
        a.pop(k), b.pop(k)
    a["exporters"]["192.0.2.5"].pop("records"), b["exporters"]["192.0.2.5"].pop("records")
    assert a == b
    assert batch.accounting.bytes_balanced()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(export_streams())
def test_batch_path_equals_datagram_path_v9_ipfix(datagrams):
    _same_decoding(datagrams)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.sampled_from(["ok", "ok", "ok", "gap", "back", "short", "engine"])), min_size=4, max_size=30))
def test_batch_path_equals_datagram_path_v5(steps):
    datagrams, sequence = [], 0
    for n, kind in steps:
        recs = [v5_record(sip=f"10.0.{n}.{i}", first=90_000, last=95_000) for i in range(n)]
        if kind == "gap":
            sequence += 7
        if kind == "back":
            sequence = max(0, sequence - 40)
        d = v5_datagram(recs, sequence=sequence, engine=(1, 1) if kind == "engine" else (0, 0))
        datagrams.append(d[:-5] if kind == "short" else d)
        sequence += n
    _same_decoding(datagrams)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_batches_decode_like_single_datagrams(data):
    family = data.draw(st.sampled_from([0, 5, 9, 10]))
    pool = [s for s in SEEDS if family == 0 or (len(s) > 1 and s[1] == family)] or SEEDS
    datagrams = []
    for _ in range(data.draw(st.integers(4, 12))):
        datagram = bytearray(data.draw(st.sampled_from(pool)))
        for _ in range(data.draw(st.integers(0, 3))):
            at = data.draw(st.integers(0, max(0, len(datagram) - 2)))
            datagram[at : at + 2] = data.draw(st.integers(0, 65535)).to_bytes(2, "big")
        if data.draw(st.booleans()):
            datagram = datagram[: data.draw(st.integers(0, len(datagram)))]
        datagrams.append(bytes(datagram))
    _same_decoding(datagrams)


# --- caps: a flood of made-up exporters, domains, templates or streams cannot grow the decoder -----


def test_observation_domains_per_exporter_are_capped():
    from vlf_dagster.flows.sources.netflow.templates import MAX_DOMAINS_PER_EXPORTER

    decoder = Decoder()
    template = set_bytes(2, template_record(300, [(8, 4), (12, 4)]))
    extra = 44
    for domain in range(MAX_DOMAINS_PER_EXPORTER + extra):
        decoder.feed([ipfix_message([template], domain=domain)], ("192.0.2.1", 4739))
    acc = decoder.accounting
    assert len(decoder.templates) == MAX_DOMAINS_PER_EXPORTER and acc.reasons["domain cap"] == extra
    assert_accounted(acc, MAX_DOMAINS_PER_EXPORTER + extra)
    # a template replaced in a domain already held passes, and another exporter has its own room
    decoder.feed([ipfix_message([template], domain=0)], ("192.0.2.1", 4739))
    decoder.feed([ipfix_message([template], domain=999)], ("192.0.2.2", 4739))
    assert acc.reasons["domain cap"] == extra and len(decoder.templates) == MAX_DOMAINS_PER_EXPORTER + 1
    # withdrawing a domain's templates frees its place
    decoder.feed([ipfix_message([set_bytes(2, struct.pack(">HH", 300, 0))], domain=0)], ("192.0.2.1", 4739))
    decoder.feed([ipfix_message([template], domain=5000)], ("192.0.2.1", 4739))
    assert acc.reasons["domain cap"] == extra and ("192.0.2.1", 10, 5000, 300) in decoder.templates


def test_templates_per_exporter_are_capped():
    from vlf_dagster.flows.sources.netflow.templates import MAX_TEMPLATES_PER_EXPORTER

    decoder = Decoder()
    records = b"".join(template_record(256 + i, [(8, 4)]) for i in range(MAX_TEMPLATES_PER_EXPORTER + 100))
    half = len(records) // 2 // 8 * 8  # two messages: a template set must fit in a datagram
    for sequence, body in enumerate((records[:half], records[half:])):
        decoder.feed([ipfix_message([set_bytes(2, body)], sequence=0)], ("192.0.2.1", 4739))
    acc = decoder.accounting
    assert len(decoder.templates) == MAX_TEMPLATES_PER_EXPORTER and acc.reasons["template cap"] == 1
    assert acc.template_records == MAX_TEMPLATES_PER_EXPORTER
    assert_accounted(acc, 2)


def test_exporters_are_capped():
    from vlf_dagster.flows.sources.netflow.decoder import MAX_EXPORTERS

    decoder = Decoder()
    datagram = v5_datagram([v5_record()])
    for i in range(MAX_EXPORTERS + 6):
        decoder.feed([datagram], (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 2055))
    acc = decoder.accounting
    assert len(acc.exporters) == MAX_EXPORTERS and acc.records == MAX_EXPORTERS
    assert acc.undecodable == 6 and acc.reasons["exporter cap"] == 6
    assert_accounted(acc, MAX_EXPORTERS + 6)
    # a known exporter is still decoded
    assert decoder.feed([datagram], ("10.0.0.0", 2055)).records == 1


def test_sequence_streams_are_capped(monkeypatch):
    from vlf_dagster.flows.sources.netflow import sequences as netflow

    monkeypatch.setattr(netflow, "MAX_STREAMS", 10)
    decoder = Decoder()
    for port in range(1000, 1030):
        decoder.feed([v5_datagram([v5_record()], sequence=5)], ("192.0.2.1", port))
    assert len(decoder.sequences) == 10
    assert [key[0] for key in decoder.sequences] == [f"192.0.2.1:{p}" for p in range(1020, 1030)]  # the newest stay
