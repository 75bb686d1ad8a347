"""``nfdump-csv``: ``nfdump -r FILE -o csv`` text -> flow records.

nfdump 1.6/1.7 write 48 columns ``ts,te,td,sa,da,sp,dp,pr,flg,...``, then a ``Summary`` block
unless ``-q``.  Columns are found by the header line's names.  ``ts`` has no milliseconds and is
in nfdump's local time: produce it with ``TZ=UTC`` (or give the zone, ``tz``).  ``opkt``/``obyt``
(NSEL and other bidirectional records) become a second, reversed flow.  nfcapd files themselves
are read through nfdump's pipe output (:mod:`.nfcapd`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import PROTO_TCP
from .formats import DEFAULT_OLD_TIMES
from .result import ImportFormatError, ImportResult, ReadOptions
from .text import (Lines, Rows, check_duration, check_family, check_volumes, convert_lines, filled, flow_columns,
                   icmp_ports, flag_letters, np_bool, per_distinct, protocol_names, protocol_reason, read_text,
                   reverse_icmp_port, reversed_flow)

# nfdump's protocol abbreviations (nfdump 1.6/1.7 output.h, index = protocol number); where a
# name is printed for two numbers (IPIP 4/94, IDPR 35/38) the first wins.  Numbers >= 138 print
# as digits.
_NFDUMP_PROTOCOLS = (
    "0 ICMP IGMP GGP IPIP ST TCP CBT EGP IGP BBN NVPII PUP ARGUS ENCOM XNET CHAOS UDP MUX DCN HMP PRM "
    "XNS Trnk1 Trnk2 Leaf1 Leaf2 RDP IRTP ISO-4 NETBK MFESP MEINP DCCP 3PC IDPR XTP DDP IDPR TP++ IL IPv6 "
    "SDRP Rte6 Frag6 IDRP RSVP GRE MHRP BNA ESP AH INLSP SWIPE NARP MOBIL TLSP SKIP ICMP6 NOHE6 OPTS6 "
    "HOST CFTP NET SATNT KLAN RVD IPPC FS SATM VISA IPCV CPNX CPHB WSN PVP BSATM SUNND WBMON WBEXP ISOIP "
    "VMTP SVMTP VINES TTP NSIGP DGP TCF EIGRP OSPF S-RPC LARP MTP AX.25 IPIP MICP SCCSP ETHIP ENCAP 99 "
    "GMTP IFMP PNNI PIM ARIS SCPS QNX A/N IPcmp SNP CpqPP IPXIP VRRP PGM 0hop L2TP DDX IATP STP SRP UTI "
    "SMP SM PTP ISIS4 FIRE CRTP CRUDP 128 IPLT SPS PIPE SCTP FC 134 MHEAD UDP-L MPLS"
).split()
_NFDUMP_BY_NAME: dict[str, int] = {}
for _number, _name in enumerate(_NFDUMP_PROTOCOLS):
    _NFDUMP_BY_NAME.setdefault(_name.upper(), _number)


def _nfdump_protocol(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        return value if value <= 255 else None
    found = _NFDUMP_BY_NAME.get(text.upper())
    return found if found is not None else protocol_names().get(text.lower())


NFDUMP_CSV_COLUMNS = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,"
    "svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,"
    "ra,eng,exid,tr"
).split(",")
_NFDUMP_USED = {"ts", "td", "sa", "da", "sp", "dp", "pr", "flg", "ipkt", "ibyt", "opkt", "obyt", "in", "out", "nh"}
_NFDUMP_SUMMARY_PREFIXES = ("Summary", "flows,bytes,packets", "Time window:", "Total flows processed:", "Sys:",
                            "No matching flows", "Aggregated flows")


def nfdump_summary(lines: Lines) -> np.ndarray:
    summary = np.zeros(lines.n, dtype=bool)
    for prefix in _NFDUMP_SUMMARY_PREFIXES:
        summary |= lines.startswith(prefix)
    return summary


def parse_nfdump_csv(data: bytes | str, origin: str = "<nfdump-csv>", *, old_times: str | None = None,
                     tz: str | None = None) -> ImportResult:
    """``nfdump -o csv`` text -> flows.  ``ts`` is read as UTC (run nfdump with ``TZ=UTC``), or as
    wall-clock time in the zone ``tz``.

    Columns are located by the header line's names (the 48-column layout when there is none);
    ``pr`` is nfdump's protocol abbreviation (``TCP``, ``ICMP6``, ``Rte6``...) or a number;
    ``flg`` letters in any layout (``...AP.SF``, ``.AP.SF``); ICMP ``dp`` is type*256+code (or
    ``type.code``).  ``opkt``/``obyt`` > 0 gives a reversed second flow (``biflows_split``).
    Counts add ``summary_flows``: the flow count of the trailing ``Summary`` block(s), to compare
    with ``data_lines + quarantined_lines``.
    """
    lines = Lines(data, origin)
    lines.skip_blank()
    columns = lines.header_columns("ts,te,", NFDUMP_CSV_COLUMNS)
    summary = nfdump_summary(lines)
    summary_flows = 0
    for i in np.flatnonzero(lines.startswith("flows,bytes,packets")):
        if i + 1 < lines.n:  # the values line of the Summary block
            values = lines.line(int(i) + 1).split(",")
            if values and values[0].strip().isdigit():
                summary[i + 1] = True
                summary_flows += int(values[0])
    lines.skip(summary, "summary_lines")
    missing = [c for c in ("ts", "td", "sa", "da", "sp", "dp", "pr", "flg", "ipkt", "ibyt") if c not in columns]
    if missing:
        raise ImportFormatError(f"{origin}: nfdump csv header lacks column(s) {', '.join(missing)}")

    def convert(rows: Rows):
        used = [i for i, c in enumerate(columns) if c in _NFDUMP_USED]
        cells = {c: v for c, v in zip(columns, rows.split(",", len(columns), keep=used)) if v is not None}
        src = rows.addresses(cells["sa"], "sa")
        dst = rows.addresses(cells["da"], "da")
        v6 = check_family(rows, src, dst)
        protocol, _ = rows.lookup(cells["pr"], "pr", _nfdump_protocol, reason=protocol_reason)
        s_time = rows.times_ms(cells["ts"], "ts", ["%Y-%m-%d %H:%M:%S"], tz=tz)
        duration = check_duration(rows, rows.seconds_ms(cells["td"], "td"))
        sport = rows.uint(cells["sp"], "sp", 0xFFFF)
        dp_text = filled(cells["dp"])
        dotted = np_bool(pc.match_substring_regex(dp_text, r"^[0-9]{1,3}\.[0-9]{1,3}$"))  # ICMP type.code
        dport = rows.uint(pc.if_else(pa.array(dotted), pa.scalar("0", pa.large_string()), dp_text), "dp", 0xFFFF)
        if dotted.any():
            tc, good = per_distinct(dp_text, _type_dot_code, np.int64, mask=dotted)
            rows.fail(dotted & ~good, "bad dp: not a port or ICMP type.code")
            dport = np.where(dotted & good, tc, dport)
        flags, _ = rows.lookup(cells["flg"], "flg", flag_letters, reason="bad flg: not TCP flags")
        flags = np.where(protocol == PROTO_TCP, flags, 0)
        ipkt = rows.uint(cells["ipkt"], "ipkt", 2**63 - 1)
        ibyt = rows.uint(cells["ibyt"], "ibyt", 2**63 - 1)
        zeros = np.zeros(rows.n, dtype=np.int64)
        opkt = rows.uint(cells["opkt"], "opkt", 2**63 - 1, empty=0) if "opkt" in cells else zeros
        obyt = rows.uint(cells["obyt"], "obyt", 2**63 - 1, empty=0) if "obyt" in cells else zeros
        interfaces = {}
        for name in ("in", "out"):
            if name in cells:
                value = rows.uint(cells[name], name, 2**32 - 1, empty=0)
                wide = value > 0xFFFF
                rows.note("interfaces_over_65535_set_to_0", wide & rows.ok)
                interfaces[name] = np.where(wide, 0, value)
        extra = {}
        if "nh" in cells:
            nh = rows.addresses(cells["nh"], "nh", empty_ok=True)
            same = nh.is_v6 == v6
            rows.note("next_hops_of_other_family_dropped", ~same & nh.present & rows.ok)
            extra = {"nhIP": np.where(same & ~v6, nh.v4, 0), "nhIPv6": nh.v6, "nhIPv6_valid": same & v6 & nh.present}
        rows.fail((ipkt == 0) & (opkt == 0), "zero packets")
        check_volumes(rows, ipkt, ibyt, ipkt > 0)
        check_volumes(rows, opkt, obyt, opkt > 0, " (reverse)")
        icmp = icmp_ports(protocol, v6)
        fwd = flow_columns(src, dst, v6, sPort=np.where(icmp, 0, sport), dPort=dport, protocol=protocol, packets=ipkt,
                       bytes=ibyt, flags=flags, sTime=s_time, duration=duration, **interfaces, **extra)
        rev = reversed_flow(fwd, packets=opkt, bytes=obyt, sPort=np.where(icmp, 0, dport),
                        dPort=np.where(icmp, reverse_icmp_port(dport, v6), sport),
                        nhIP=np.zeros(rows.n, dtype=np.uint32), nhIPv6_valid=np.zeros(rows.n, dtype=bool))
        if interfaces:
            rev["in"], rev["out"] = interfaces.get("out", zeros), interfaces.get("in", zeros)
        rows.note("biflows_split", (ipkt > 0) & (opkt > 0) & rows.ok)
        return [(ipkt > 0, fwd), (opkt > 0, rev)]

    return convert_lines(lines, "nfdump-csv", convert, old_times=old_times or DEFAULT_OLD_TIMES["nfdump-csv"],
                file_notes={"summary_flows": summary_flows} if summary_flows else None)


def _type_dot_code(text: str) -> int | None:
    icmp_type, code = (int(x) for x in text.split("."))
    return icmp_type << 8 | code if icmp_type <= 255 and code <= 255 else None


def sniff(lines: list[str]) -> bool:
    first = lines[0]
    return first.startswith("ts,te,td,") or bool(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?,\d{4}-\d\d-\d\d ", first))


def read(path: Path, head: bytes, options: ReadOptions) -> ImportResult:
    return parse_nfdump_csv(read_text(path, head, "nfdump-csv"), str(path), old_times=options.old_times, tz=options.tz)
