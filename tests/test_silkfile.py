"""SiLK's own flow files, as real SiLK 3.19.1 wrote them (tests/silk/files/, made by
bench/silk_golden.py), read by every verb: the same records as the flows they were made from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from vlf_dagster.flows.schema import conform
from vlf_dagster.flows.silkfile import SilkFileError, read_silk_file

HERE = Path(__file__).resolve().parent / "silk"
FILES = HERE / "files"


@pytest.fixture(scope="module")
def first_300():
    return conform(pq.read_table(HERE / "flows.parquet")).slice(0, 300)


@pytest.mark.parametrize("name", ["routing.rw", "routing-zlib.rw", "routing-snappy.rw", "routing-lzo1x.rw",
                                  "routing-big-endian.rw", "generic-ipv4.rw"])
def test_silk_files_hold_the_records_they_were_made_from(name, first_300):
    table = read_silk_file(FILES / name)
    assert table.schema.equals(first_300.schema, check_metadata=False)
    assert table.equals(first_300)


def test_a_file_sorted_by_rwsort_keeps_rwsorts_order(first_300):
    table = read_silk_file(FILES / "sorted-by-dport.rw")
    order = pc.sort_indices(first_300, sort_keys=[("dPort", "ascending"), ("sTime", "ascending")])
    assert table.column("dPort").to_pylist() == first_300.take(order).column("dPort").to_pylist()
    assert sorted(table.column("sTime").to_pylist()) == sorted(first_300.column("sTime").to_pylist())


def test_ipv6_records_and_their_addresses(capsys):
    from vlf_dagster.cli import main

    table = read_silk_file(FILES / "mixed.rw")
    assert [bool(a & 0x80) for a in table.column("attributes").to_pylist()] == [False, True, True, True, False]
    assert main(["cut", "--fields=sip,dip,nhip", "--ipv6-policy=mix", str(FILES / "mixed.rw")]) == 0
    golden = (HERE / "golden" / "cut-mixed-policy-mix.txt").read_text().splitlines()
    ours = capsys.readouterr().out.splitlines()
    assert [line.split("|")[:3] for line in ours] == [line.split("|")[:3] for line in golden]  # as rwcut printed them


def test_every_verb_reads_a_silk_file_as_the_parquet_it_came_from(tmp_path, capsys):
    from vlf_dagster.cli import main

    subset = tmp_path / "first.parquet"
    pq.write_table(conform(pq.read_table(HERE / "flows.parquet")).slice(0, 300), subset)
    for verb in (["cut", "--num-recs=20"], ["uniq", "--fields=sip,proto", "--sort-output"], ["stats", "--fields=dport", "--count=5"],
                 ["count", "--bin-size=3600"], ["filter", "--proto=6", "--print-statistics"]):
        outputs = []
        for path in (FILES / "routing-zlib.rw", subset):
            assert main([*verb, str(path)]) == 0, verb
            captured = capsys.readouterr()
            outputs.append(captured.out + captured.err)
        assert outputs[0] == outputs[1] and outputs[0], verb
    assert main(["set", f"--sip-file={tmp_path / 'a.set'}", str(FILES / "routing.rw")]) == 0
    assert main(["set", f"--sip-file={tmp_path / 'b.set'}", str(subset)]) == 0
    assert (tmp_path / "a.set").read_bytes() == (tmp_path / "b.set").read_bytes()


def test_what_is_not_read_is_one_line_naming_the_file(tmp_path, capsys):
    from vlf_dagster.cli import main

    unknown = tmp_path / "method4.rw"
    raw = bytearray((FILES / "routing.rw").read_bytes())
    raw[7] = 4  # the compression method byte: no SiLK method has 4
    unknown.write_bytes(bytes(raw))
    with pytest.raises(SilkFileError, match="compression method 4 is unknown"):
        read_silk_file(unknown)
    packed = tmp_path / "scan.rw"
    raw = bytearray((FILES / "routing.rw").read_bytes())
    raw[5] = 0x19  # FT_RWSCAN: rwscan's output, not flow records
    packed.write_bytes(bytes(raw))
    truncated = tmp_path / "truncated.rw"
    shutil.copy(FILES / "routing.rw", truncated)
    with open(truncated, "r+b") as handle:
        handle.truncate(truncated.stat().st_size - 10)
    for path, why in ((unknown, "compression method 4 is unknown"), (packed, "FT_RWSCAN version 1 is not read yet"),
                      (truncated, "trailing byte(s) after the last whole record")):
        assert main(["cut", str(path)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(path) in err and why in err, err


def test_vlf_import_lands_a_silk_file_by_hour(tmp_path, capsys, first_300):
    from vlf_dagster.cli import main
    from vlf_dagster.flows.storage import landing_hours

    data = tmp_path / "data"
    assert main(["import", "--data-dir", str(data), str(FILES / "routing-zlib.rw")]) == 0  # sniffed: DEADBEEF
    assert "[silk]: 300 records, 0 quarantined; 2 hours" in capsys.readouterr().out
    landed = conform(pq.read_table(sorted((data / "landing").rglob("routing-zlib.rw.parquet"))[0]))
    hours = landing_hours(data)
    assert len(hours) == 2
    files = sorted((data / "landing").rglob("*.parquet"))
    total = sum(pq.read_metadata(f).num_rows for f in files)
    assert total == 300 and landed.num_rows > 0
    assert sorted(conform(pq.read_table(files[0])).column("sTime").to_pylist() + conform(pq.read_table(files[1])).column("sTime").to_pylist()) \
        == sorted(first_300.column("sTime").to_pylist())


SILK_SETS = ["sip-v2.set", "setbuild-v4.set", "ipv6-v3.set", "ipv6-v4.set", "ipv6-v5.set", "setbuild-zlib.set"]
SILK_BAGS = ["sip-flows.bag", "dport-bytes.bag", "sensor-packets.bag", "flags-flows.bag", "sipv6-bytes.bag"]


@pytest.mark.parametrize("name", SILK_SETS)
def test_silk_ip_sets_print_as_rwsetcat_prints_them(name, capsys):
    """Record versions 2 (/24 bitmaps), 3 (radix tree), 4 (blocks and bitmaps) and 5 (IPv6 by /64),
    IPv4 and IPv6, zlib."""
    from vlf_dagster.cli import main

    assert main(["setcat", "--cidr-blocks", str(FILES / name)]) == 0
    assert capsys.readouterr().out == (FILES / f"{name}.txt").read_text()


@pytest.mark.parametrize("name", SILK_BAGS)
def test_silk_bags_print_as_rwbagcat_prints_them(name, capsys, monkeypatch):
    from vlf_dagster.cli import main

    monkeypatch.setenv("VLF_SITE_CONFIG", str(HERE / "site.toml"))
    assert main(["bagcat", str(FILES / name)]) == 0
    assert capsys.readouterr().out == (FILES / f"{name}.txt").read_text()


def test_silk_sets_and_bags_work_in_the_tools(tmp_path, capsys, first_300):
    """A SiLK set as filter's --sipset and in settool; a SiLK bag in bagtool, next to vlf's own."""
    from vlf_dagster.cli import main

    subset = tmp_path / "first.parquet"
    pq.write_table(first_300, subset)
    assert main(["filter", f"--sipset={FILES / 'sip-v2.set'}", "--print-statistics", str(subset)]) == 0
    assert "Pass        300." in capsys.readouterr().err  # every record's source is in its own set
    assert main(["set", f"--sip-file={tmp_path / 'ours.set'}", str(subset)]) == 0
    assert main(["settool", "--symmetric-difference", str(FILES / "sip-v2.set"), str(tmp_path / "ours.set"),
                 "--output-path", str(tmp_path / "none.set")]) == 0
    assert main(["setcat", "--count-ips", str(tmp_path / "none.set")]) == 0
    assert capsys.readouterr().out.strip() == "0"
    assert main(["bag", f"--sip-flows={tmp_path / 'ours.bag'}", str(subset)]) == 0
    assert main(["bagtool", "--subtract", str(FILES / "sip-flows.bag"), str(tmp_path / "ours.bag"),
                 "--output-path", str(tmp_path / "diff.bag")]) == 0
    assert main(["bagcat", str(tmp_path / "diff.bag")]) == 0
    assert capsys.readouterr().out == ""  # SiLK's counts equal ours, key for key


def test_written_silk_files_hold_silks_own_record_bytes(first_300, tmp_path, capsys):
    """vlf cat --silk writes FT_RWIPV6ROUTING v1 records byte for byte as SiLK's rwcat wrote them."""
    from vlf_dagster.cli import main
    from vlf_dagster.flows.silkfile import read_header, silk_flow_bytes

    silk = (FILES / "routing.rw").read_bytes()
    ours = silk_flow_bytes(first_300)
    assert ours[read_header(ours, "ours").offset:] == silk[read_header(silk, "silk").offset:]
    assert read_silk_file_bytes(ours).equals(first_300)
    subset = tmp_path / "first.parquet"
    pq.write_table(first_300, subset)
    assert main(["cat", "--silk", str(subset), "--output-path", str(tmp_path / "out.rw")]) == 0
    assert (tmp_path / "out.rw").read_bytes() == ours
    mixed = read_silk_file(FILES / "mixed.rw")
    assert read_silk_file_bytes(silk_flow_bytes(mixed)).equals(mixed)


def read_silk_file_bytes(data: bytes):
    from vlf_dagster.flows.silkfile import read_silk_flows

    return read_silk_flows(data, "<test>")


def _body(data: bytes) -> tuple[bytes, dict]:
    """A SiLK file's records and its header entries but the invocation (entry 2: SiLK's command line)."""
    from vlf_dagster.flows.silkfile import read_header

    header = read_header(data, "<test>")
    entries = {k: v for k, v in header.entries.items() if k not in (0, 2)}
    return data[header.offset:], {"format": header.format, "version": header.rec_version, "size": header.rec_size,
                                  "compression": header.compression, **entries}


@pytest.mark.parametrize("argv, silk_file", [
    (["set", "--silk", "--sip-file={out}", str(FILES / "routing.rw")], "sip-v2.set"),
    (["setbuild", "--record-version=4", str(HERE / "setbuild.txt"), "{out}"], "setbuild-v4.set"),
    (["setbuild", "--record-version=4", str(HERE / "ipv6.txt"), "{out}"], "ipv6-v4.set"),
    (["setbuild", "--silk", str(HERE / "ipv6.txt"), "{out}"], "ipv6-v4.set"),  # SiLK's default for IPv6: v3, here 4
    (["bag", "--silk", "--bag-file=sIPv4,flows,{out}", str(FILES / "routing.rw")], "sip-flows.bag"),
    (["bag", "--silk", "--bag-file=dPort,sum-bytes,{out}", str(FILES / "routing.rw")], "dport-bytes.bag"),
    (["bag", "--silk", "--bag-file=sensor,sum-packets,{out}", str(FILES / "routing.rw")], "sensor-packets.bag"),
    (["bag", "--silk", "--bag-file=flags,flows,{out}", str(FILES / "routing.rw")], "flags-flows.bag"),
    (["bag", "--silk", "--bag-file=sIPv6,sum-bytes,{out}", str(FILES / "mixed.rw")], "sipv6-bytes.bag"),
])
def test_sets_and_bags_written_for_silk_equal_what_silk_wrote(argv, silk_file, tmp_path):
    """`--silk` sets and bags: the same header fields, layout entry and record bytes as the file real
    SiLK 3.19.1 wrote from the same input (only SiLK's command-line header entry is left out)."""
    from vlf_dagster.cli import main

    out = tmp_path / "out"
    assert main([a.format(out=out) for a in argv]) == 0
    ours, theirs = _body(out.read_bytes()), _body((FILES / silk_file).read_bytes())
    assert ours[1] == theirs[1]
    assert ours[0] == theirs[0]


def test_written_silk_sets_and_bags_read_back_and_refuse_what_silk_cannot_hold(tmp_path, capsys):
    """A set with IPv6 round-trips through record version 4; version 2 cannot hold IPv6, and a
    composite-key bag is no SiLK bag: one-line errors.  bagtool --coverset --silk writes a SiLK set."""
    from vlf_dagster.cli import main
    from vlf_dagster.flows.bags import Bag
    from vlf_dagster.flows.sets import IPSet

    v6 = tmp_path / "v6.set"
    assert main(["setbuild", "--silk", str(HERE / "ipv6.txt"), str(v6)]) == 0
    assert IPSet.read(v6) == IPSet.from_text((HERE / "ipv6.txt").read_text())
    capsys.readouterr()
    assert main(["setbuild", "--record-version=2", str(HERE / "ipv6.txt"), str(tmp_path / "no.set")]) == 1
    assert "record version 2" in capsys.readouterr().err and not (tmp_path / "no.set").exists()
    assert main(["bag", "--silk", f"--bag-file=sIPv4+dIPv4,flows,{tmp_path / 'pair.bag'}", str(FILES / "routing.rw")]) == 1
    assert "one key and one counter" in capsys.readouterr().err
    bag = tmp_path / "sip.bag"
    assert main(["bag", "--silk", f"--sip-flows={bag}", str(FILES / "routing.rw")]) == 0
    assert Bag.read(bag).table.num_rows == Bag.from_bytes((FILES / "sip-flows.bag").read_bytes()).table.num_rows
    cover = tmp_path / "cover.set"
    assert main(["bagtool", "--coverset", "--silk", str(bag), "--output-path", str(cover)]) == 0
    assert _body(cover.read_bytes())[0] == _body((FILES / "sip-v2.set").read_bytes())[0]


def test_sets_and_bags_in_every_compression_read_as_uncompressed():
    """SiLK's snappy and lzo1x block compression (its optional methods) in sets and bags too."""
    from vlf_dagster.flows.bags import Bag
    from vlf_dagster.flows.sets import IPSet

    assert IPSet.read(FILES / "setbuild-snappy.set") == IPSet.read(FILES / "setbuild-v4.set")
    assert Bag.read(FILES / "sip-flows-lzo.bag").table.equals(Bag.read(FILES / "sip-flows.bag").table)


@pytest.mark.parametrize("name", ["routing-zlib.rw", "routing-snappy.rw", "routing-lzo1x.rw"])
def test_a_damaged_compressed_block_is_one_line_naming_the_file(name, tmp_path):
    from vlf_dagster.flows.silkfile import read_header

    data = bytearray((FILES / name).read_bytes())
    offset = read_header(bytes(data), name).offset
    data[offset + 8 : offset + 40] = bytes(range(32))  # garble the start of the first block
    damaged = tmp_path / name
    damaged.write_bytes(bytes(data))
    with pytest.raises(SilkFileError) as caught:
        read_silk_file(damaged)
    message = str(caught.value)
    assert str(damaged) in message and "\n" not in message and ("damaged" in message or "holds" in message)


def test_flow_writing_verbs_write_silk_flow_files_with_silk(tmp_path, capsys):
    """--silk on filter, sort, tuc and match (as on cat): a SiLK flow file holding the same records
    as the verb's own output, and the bytes SiLK's rwcat writes (vlf cat --silk is checked against
    them above)."""
    from vlf_dagster.cli import main

    flows = HERE / "flows.parquet"
    runs = {
        "filter": ["filter", "--proto=17", "--pass-destination={out}", str(flows)],
        "sort": ["sort", "--fields=dport,stime", "--output-path={out}", str(FILES / "routing.rw")],
        "tuc": ["tuc", "--output-path={out}", str(HERE / "tuc.txt")],
        "match": ["match", "--relate=sip,dip", "--relate=dip,sip", str(flows), str(flows), "{out}"],
    }
    for verb, argv in runs.items():
        plain, silk = tmp_path / f"{verb}.arrow", tmp_path / f"{verb}.rw"
        assert main([a.format(out=plain) for a in argv]) == 0, verb
        assert main([a.format(out=silk) for a in argv] + ["--silk"]) == 0, verb
        assert silk.read_bytes()[:4] == b"\xde\xad\xbe\xef", verb
        ours = read_silk_file(silk)
        assert main(["cat", "--silk", str(plain), "--output-path", str(tmp_path / f"{verb}.cat.rw")]) == 0
        assert silk.read_bytes() == (tmp_path / f"{verb}.cat.rw").read_bytes(), verb
        assert ours.num_rows > 0, verb
    capsys.readouterr()


@pytest.mark.parametrize("name, damage, complaint", [
    ("sip-v2.set", lambda d, h: d[:-5], "trailing byte(s)"),
    ("setbuild-v4.set", lambda d, h: d[:-17], "truncated IP set bitmap"),
    ("setbuild-v4.set", lambda d, h: d[: h + 4] + b"\x40" + d[h + 5:], "unknown IP set block kind 0x40"),
    ("routing-lzo1x.rw", lambda d, h: d[:h + 4] + b"\x7f\xff\xff\xff" + d[h + 8:], "claims 2,147,483,647 bytes"),
    ("routing-zlib.rw", lambda d, h: d[:h + 4] + b"\x7f\xff\xff\xff" + d[h + 8:], "claims 2,147,483,647 bytes"),
])
def test_damaged_silk_sets_and_blocks_are_one_line_errors(name, damage, complaint, tmp_path):
    """A cut or garbled SiLK set, or a compressed block claiming 2 GB (SiLK refuses blocks over
    1 MiB): one line naming the file, no traceback, and no 2 GB allocation."""
    from vlf_dagster.flows.sets import IPSet, SetFileError
    from vlf_dagster.flows.silkfile import read_header

    data = (FILES / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(damage(data, read_header(data, name).offset))
    with pytest.raises((SilkFileError, SetFileError)) as caught:
        IPSet.read(path) if name.endswith(".set") else read_silk_file(path)
    assert str(path) in str(caught.value) and complaint in str(caught.value) and "\n" not in str(caught.value)
