"""SiLK's flow formats, read as SiLK reads them: the packed hourly ones rwflowpack writes into a
repository, and FT_RWIPV6ROUTING and FT_RWGENERIC (what the other tools write) in every version.

tests/silk/files/formats/ holds files real SiLK 3.19.1 wrote: the records of source.txt in every
flow format and record version, little- and big-endian uncompressed, plus the newest version
big-endian and zlib-compressed; and, per format and version, what SiLK's rwcut prints of them
(FT_<format>-v<version>.txt).  Each file must print the same through ``vlf cut``.  source.txt
covers: TCP with and without separate initial/session flags, non-TCP flags, every web port on
either side and a non-web one in the web formats, ICMP (one with its type/code in sPort, which
libsilk moves to dPort on read), a packet count past 2^20 (the x64 flag) and past 2^26, a
fractional bytes-per-packet, durations past the 11- and 12-bit limits, a start past the hour's
4096 s, interfaces past 255, attributes, application, a sensor unlike the file's, IPv6 records.
Packed formats drop the records they cannot hold, as rwflowpack would.

Regenerate from the repository root (SiLK 3.19.1 built in /work/silk); SILK_ICMP_SPORT_HANDLER=none
keeps the ICMP record's sPort as written, so the files exercise libsilk's fix-up on read:

    export PATH=/work/silk/bin:$PATH SILK_DATA_ROOTDIR=/work/silk/data
    out=$PWD/tests/silk/files/formats; cd $(mktemp -d)
    rwtuc --stop-on-error --output-path=source.rw $out/source.txt
    SILK_ICMP_SPORT_HANDLER=none rwallformats --no-invocation source.rw 2>/dev/null
    for f in RWIPV6 RWAUGMENTED RWAUGWEB RWAUGROUTING RWAUGSNMPOUT RWSPLIT RWWWW RWROUTED RWNOTROUTED RWFILTER FLOWCAP \
             RWIPV6ROUTING RWGENERIC; do
      cp FT_$f-v*-c0-?.dat $(ls FT_$f-v*-c1-B.dat | tail -1) $out/; done
    cut="rwcut --fields=1-15,20-21,25-29 --ipv6-policy=mix --timestamp-format=epoch --integer-tcp-flags --integer-sensors --delimited"
    for f in $out/*-c0-L.dat; do $cut $f > ${f%-c0-L.dat}.txt; done
    for f in $out/*.dat; do $cut $f | cmp - ${f%-c?-?.dat}.txt; done   # every byte order and compression prints alike

(Fields 22-24 are left out: with epoch timestamps they print exactly as 9-11.)
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from vlf_dagster.flows.schema import ATTR_IPV6, FLOW_SCHEMA
from vlf_dagster.flows.silkfile import SilkFileError, read_silk_file

HERE = Path(__file__).resolve().parent / "silk"
FORMATS = HERE / "files" / "formats"
FILES = sorted(FORMATS.glob("*.dat"))
CUT_OPTIONS = ["--fields=1-15,20-21,25-29", "--ipv6-policy=mix", "--timestamp-format=epoch", "--integer-tcp-flags",
               "--integer-sensors", "--delimited"]
RECORD_VERSION_AT = 14  # bytes 14-15 of a SiLK header: the record version (network order)
RECORD_SIZE_AT = 12


def silk_text(path: Path) -> str:
    """What SiLK's rwcut printed of this file (the same for every byte order and compression)."""
    return (FORMATS / (re.sub(r"-c\d-[BL]$", "", path.stem) + ".txt")).read_text()


def vlf_cut(path: Path, capsys) -> str:
    from vlf_dagster.cli import main

    capsys.readouterr()
    assert main(["cut", *CUT_OPTIONS, str(path)]) == 0
    return capsys.readouterr().out


@pytest.fixture(autouse=True)
def _site(monkeypatch):
    monkeypatch.setenv("VLF_SITE_CONFIG", str(HERE / "site.toml"))  # sensors S0 and S1, as SiLK's silk.conf
    monkeypatch.delenv("SILK_IPV6_POLICY", raising=False)


def test_every_flow_format_and_version_is_here():
    names = {re.sub(r"-c\d-[BL]$", "", path.stem) for path in FILES}
    expected = {f"FT_RWIPV6-v{v}" for v in (1, 2)} | {f"FT_FLOWCAP-v{v}" for v in range(2, 7)} | {
        f"FT_RWIPV6ROUTING-v{v}" for v in (1, 2, 3)} | {f"FT_RWGENERIC-v{v}" for v in range(6)} | {
        f"FT_{fmt}-v{v}" for fmt in ("RWAUGMENTED", "RWAUGWEB", "RWAUGROUTING", "RWAUGSNMPOUT", "RWSPLIT", "RWWWW",
                                     "RWROUTED", "RWNOTROUTED", "RWFILTER") for v in range(1, 6)}
    assert names == expected
    assert {p.name[-9:] for p in FILES} == {"-c0-L.dat", "-c0-B.dat", "-c1-B.dat"}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_each_format_prints_as_silk_prints_it(path, capsys):
    ours, theirs = vlf_cut(path, capsys).splitlines(), silk_text(path).splitlines()
    assert len(ours) == len(theirs), f"{path.name}: SiLK printed {len(theirs) - 1} records, vlf {len(ours) - 1}"
    for number, (mine, silks) in enumerate(zip(ours, theirs)):
        mine_fields, silk_fields = mine.split("|"), silks.split("|")
        assert mine_fields == silk_fields, f"{path.name} line {number + 1}\n  SiLK: {silks}\n  vlf:  {mine}"


@pytest.mark.parametrize("name", ["FT_FLOWCAP-v6-c0-L.dat", "FT_RWFILTER-v1-c0-B.dat"])
def test_class_of_an_unknown_flowtype_prints_as_silk_prints_it(name, capsys):
    assert vlf_cut(FORMATS / name, capsys) == silk_text(FORMATS / name)


def test_records_take_sensor_and_flowtype_from_the_packed_header():
    table = read_silk_file(FORMATS / "FT_RWAUGMENTED-v4-c0-B.dat")
    assert table.schema.equals(FLOW_SCHEMA, check_metadata=False)
    assert set(table.column("sensor").to_pylist()) == {3}  # source.txt has one record of sensor 5
    assert set(table.column("flowtype").to_pylist()) == {7}  # ext2ext, the first record's
    v1 = read_silk_file(FORMATS / "FT_RWIPV6-v1-c0-L.dat")  # v1 stores its own
    assert set(v1.column("sensor").to_pylist()) == {3, 5}


def test_ipv6_records_of_ft_rwipv6():
    for name in ("FT_RWIPV6-v1-c0-B.dat", "FT_RWIPV6-v2-c1-B.dat"):
        table = read_silk_file(FORMATS / name)
        v6 = [bool(a & ATTR_IPV6) for a in table.column("attributes").to_pylist()]
        assert sum(v6) == 4
        addresses = table.column("sIPv6").to_pylist()
        assert bytes.fromhex("20010db8000000000000000000000001") in addresses
        assert all((a is not None) == is_v6 for a, is_v6 in zip(addresses, v6))
        assert all(ip == 0 for ip, is_v6 in zip(table.column("sIP").to_pylist(), v6) if is_v6)


def patched(tmp_path: Path, name: str, at: int, value: int) -> Path:
    """A copy of a test file with one header uint16 (network order) changed."""
    data = bytearray((FORMATS / name).read_bytes())
    struct.pack_into(">H", data, at, value)
    target = tmp_path / name
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("name, version", [("FT_RWAUGMENTED-v5-c0-L.dat", 6), ("FT_RWIPV6-v2-c0-B.dat", 3),
                                           ("FT_RWAUGWEB-v1-c0-L.dat", 0), ("FT_FLOWCAP-v2-c0-L.dat", 1)])
def test_a_record_version_silk_lacks_is_a_one_line_error_naming_the_file(tmp_path, name, version):
    path = patched(tmp_path, name, RECORD_VERSION_AT, version)
    with pytest.raises(SilkFileError) as caught:
        read_silk_file(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)) and f"record version {version} is not read" in message


def test_a_record_size_unlike_the_formats_is_a_one_line_error(tmp_path):
    path = patched(tmp_path, "FT_RWAUGROUTING-v4-c0-L.dat", RECORD_SIZE_AT, 40)
    with pytest.raises(SilkFileError, match=r"FT_RWAUGROUTING v4 records are 36 bytes, the header says 40$"):
        read_silk_file(path)


@pytest.mark.parametrize("name, complaint", [("FT_RWAUGSNMPOUT-v4-c0-L.dat", "trailing byte"),
                                             ("FT_RWIPV6-v2-c1-B.dat", "truncated compressed block")])
def test_a_truncated_packed_file_is_a_one_line_error(tmp_path, capsys, name, complaint):
    from vlf_dagster.cli import main

    path = tmp_path / name
    path.write_bytes((FORMATS / name).read_bytes()[:-5])
    with pytest.raises(SilkFileError, match=complaint):
        read_silk_file(path)
    capsys.readouterr()
    assert main(["cut", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and complaint in err and "Traceback" not in err
