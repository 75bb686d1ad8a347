"""vlf set/settool/setcat/bag/bagbuild/bagtool/bagcat, with hand-computed expected output."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import flows, ip
from vlf_dagster.cli import main
from vlf_dagster.flows.bags import COUNTER_MAX, Bag
from vlf_dagster.flows.sets import IPSet
from vlf_dagster.flows.storage import write_parquet

ROOT = Path(__file__).resolve().parents[1]


def vlf(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def make_set(tmp_path, name, *addresses):
    return IPSet.from_strings(addresses).write(tmp_path / name)


def members(path):
    return sorted(str(__import__("ipaddress").ip_address(a)) for a in IPSet.read(path).ipv4_array().tolist())


@pytest.fixture
def flow_file(tmp_path):
    return write_parquet(flows([
        {"sIP": "1.1.1.1", "dIP": "10.1.24.1", "dPort": 80, "packets": 2, "bytes": 100},
        {"sIP": "1.1.1.1", "dIP": "10.1.24.2", "dPort": 25, "packets": 3, "bytes": 200},
        {"sIP": "2.2.2.2", "dIP": "10.1.24.1", "dPort": 80, "packets": 1, "bytes": 40},
        {"sIP": "1.1.1.1", "dIP": "10.1.24.1", "dPort": 80, "packets": 1, "bytes": 40},
    ]), tmp_path / "flows.parquet")


def test_set_from_flows_and_no_clobber(tmp_path, capsys, flow_file):
    assert vlf(capsys, "set", flow_file, "--sip-file", tmp_path / "s.set", "--any-file", tmp_path / "a.set")[0] == 0
    assert members(tmp_path / "s.set") == ["1.1.1.1", "2.2.2.2"]
    assert members(tmp_path / "a.set") == ["1.1.1.1", "10.1.24.1", "10.1.24.2", "2.2.2.2"]
    code, _, err = vlf(capsys, "set", flow_file, "--sip-file", tmp_path / "s.set")
    assert code == 1 and "output file exists" in err


def test_settool_operations(tmp_path, capsys):
    a = make_set(tmp_path, "a.set", "10.0.0.1", "10.0.0.2", "10.0.0.3")
    b = make_set(tmp_path, "b.set", "10.0.0.2", "10.0.0.3", "10.0.0.4")
    c = make_set(tmp_path, "c.set", "10.0.0.3", "10.0.0.5")
    for op, expected in [
        ("--union", ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]),
        ("--intersect", ["10.0.0.3"]),
        ("--difference", ["10.0.0.1"]),
        # left to right: (a ^ b) ^ c = {1,4} ^ {3,5}: in exactly one set, or in all three (.3)
        ("--symmetric-difference", ["10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.5"]),
    ]:
        out = tmp_path / f"{op}.set"
        assert vlf(capsys, "settool", op, a, b, c, "--output-path", out)[0] == 0
        assert members(out) == expected, op
    wide = make_set(tmp_path, "w.set", "10.1.2.3", "10.1.2.200", "10.9.0.1")
    vlf(capsys, "settool", "--mask", "24", wide, "--output-path", tmp_path / "m.set")
    assert members(tmp_path / "m.set") == ["10.1.2.0", "10.9.0.0"]
    vlf(capsys, "settool", "--fill-blocks", "30", wide, "--output-path", tmp_path / "f.set")
    assert len(IPSet.read(tmp_path / "f.set")) == 12  # three occupied /30s, 4 addresses each
    vlf(capsys, "settool", "--sample", "--size", "2", "--seed", "3", wide, "--output-path", tmp_path / "r.set")
    assert len(set(members(tmp_path / "r.set")) & {"10.1.2.3", "10.1.2.200", "10.9.0.1"}) == 2
    assert vlf(capsys, "settool", "--union", "--intersect", a)[0] == 1


def test_setcat_views(tmp_path, capsys):
    s = make_set(tmp_path, "s.set", "10.1.2.1", "10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.200",
                 "10.1.3.1", "10.1.3.2", "10.1.3.3", "10.1.3.4", "10.1.3.5")
    assert vlf(capsys, "setcat", s)[1].splitlines()[:2] == ["10.1.2.1", "10.1.2.2"]
    assert vlf(capsys, "setcat", "--cidr-blocks", s)[1].splitlines() == [
        "10.1.2.1", "10.1.2.2/31", "10.1.2.4/31", "10.1.2.200", "10.1.3.1", "10.1.3.2/31", "10.1.3.4/31"]  # lone hosts bare, as rwsetcat
    assert vlf(capsys, "setcat", "--ip-ranges", s)[1].splitlines() == [
        "         5|       10.1.2.1|       10.1.2.5|", "         1|     10.1.2.200|     10.1.2.200|", "         5|       10.1.3.1|       10.1.3.5|"]
    assert vlf(capsys, "setcat", "--network-structure", s)[1] == "TOTAL| 11 hosts in 1 /8, 1 /16, 2 /24s, and 3 /27s\n"
    assert vlf(capsys, "setcat", "--network-structure=16,24", s)[1].splitlines() == [  # rwsetcat's indented layout
        "  10.1.2.0/24       | 6", "  10.1.3.0/24       | 5", "10.1.0.0/16         | 11"]
    other = make_set(tmp_path, "o.set", "1.2.3.4")
    assert vlf(capsys, "setcat", "--count-ips", s, other)[1].splitlines() == [f"{s}:11", f"{other}:1"]
    v6 = make_set(tmp_path, "v6.set", "2001:db8::/127", "10.0.0.1")
    assert vlf(capsys, "setcat", v6)[1].splitlines() == ["10.0.0.1", "2001:db8::/127"]


def test_bag_several_bags_in_one_pass(tmp_path, capsys, flow_file):
    code, _, _ = vlf(capsys, "bag", flow_file, "--bag-file", f"sIPv4,flows,{tmp_path / 'f.bag'}",
                     "--bag-file", f"sIPv4,sum-bytes,{tmp_path / 'b.bag'}", "--bag-file", f"sIPv4,distinct:dIP,{tmp_path / 'd.bag'}",
                     "--bag-file", f"sIPv4+dIPv4,records,{tmp_path / 'p.bag'}", "--dport-flows", tmp_path / "port.bag")
    assert code == 0
    rows = lambda name, col: {r[0]: r[1] for r in zip(pq.read_table(tmp_path / name).column(0).to_pylist(), pq.read_table(tmp_path / name).column(col).to_pylist())}
    assert rows("f.bag", "records") == {ip("1.1.1.1"): 3, ip("2.2.2.2"): 1}
    assert rows("b.bag", "bytes") == {ip("1.1.1.1"): 340, ip("2.2.2.2"): 40}
    assert rows("d.bag", "distinct:dIP") == {ip("1.1.1.1"): 2, ip("2.2.2.2"): 1}
    assert rows("port.bag", "records") == {25: 1, 80: 3}
    pairs = pq.read_table(tmp_path / "p.bag").to_pylist()
    assert sorted((r["sIP"], r["dIP"], r["records"]) for r in pairs) == sorted(
        [(ip("1.1.1.1"), ip("10.1.24.1"), 2), (ip("1.1.1.1"), ip("10.1.24.2"), 1), (ip("2.2.2.2"), ip("10.1.24.1"), 1)])
    assert vlf(capsys, "bagcat", tmp_path / "p.bag")[1].splitlines()[0] == "        1.1.1.1|      10.1.24.1|                   2|"
    assert vlf(capsys, "bag", flow_file, "--bag-file", "sIPv9,flows,x")[0] == 1


def _bag(tmp_path, name, text):
    src = tmp_path / f"{name}.txt"
    src.write_text(text)
    out = tmp_path / f"{name}.bag"
    assert main(["bagbuild", "--bag-input", str(src), "--output-path", str(out)]) == 0
    return out


def _content(path):
    bag = Bag.read(path)
    return dict(zip(bag.table.column(0).to_pylist(), bag.table.column(bag.info.counter).to_pylist()))


def test_bagbuild_text_and_set(tmp_path, capsys):
    b = _bag(tmp_path, "t", "# comment\n10.0.0.1|5\n10.0.0.1|2\n10.0.0.8/30\n10.0.0.20|\n")
    assert _content(b) == {ip("10.0.0.1"): 7, ip("10.0.0.8"): 1, ip("10.0.0.9"): 1, ip("10.0.0.10"): 1, ip("10.0.0.11"): 1, ip("10.0.0.20"): 1}
    s = make_set(tmp_path, "s.set", "10.0.0.1", "10.0.0.2")
    vlf(capsys, "bagbuild", "--set-input", s, "--default-count", "4", "--output-path", tmp_path / "s.bag")
    assert _content(tmp_path / "s.bag") == {ip("10.0.0.1"): 4, ip("10.0.0.2"): 4}
    (tmp_path / "bad.txt").write_text("10.0.0.1|5\nnot-an-ip|3\n")
    code, _, err = vlf(capsys, "bagbuild", "--bag-input", tmp_path / "bad.txt")
    assert code == 1 and "bad.txt:2: invalid key 'not-an-ip'" in err


def test_bagtool_arithmetic(tmp_path, capsys):
    a = _bag(tmp_path, "a", "1|10\n2|3\n3|7\n4|1\n")
    b = _bag(tmp_path, "b", "1|4\n2|3\n3|9\n5|6\n")
    def run(*argv):
        out = tmp_path / "out.bag"
        out.unlink(missing_ok=True)
        assert vlf(capsys, "bagtool", *argv, "--output-path", out)[0] == 0
        return _content(out)
    assert run("--add", a, b) == {1: 14, 2: 6, 3: 16, 4: 1, 5: 6}
    assert run("--subtract", a, b) == {1: 6, 4: 1}  # 2 ends at 0 and 3 below 0: both vanish
    assert run("--minimize", a, b) == {1: 4, 2: 3, 3: 7}
    assert run("--maximize", a, b) == {1: 10, 2: 3, 3: 9, 4: 1, 5: 6}
    assert run("--compare", "gt", a, b) == {1: 1}
    assert run("--mincounter", "3", "--maxcounter", "9", a) == {2: 3, 3: 7}
    assert run("--minkey", "2", "--maxkey", "3", a) == {2: 3, 3: 7}
    assert run("--invert", a) == {1: 1, 3: 1, 7: 1, 10: 1}
    num = _bag(tmp_path, "num", "1|7\n2|1\n3|5\n")
    den = _bag(tmp_path, "den", "1|2\n2|3\n3|10\n")
    assert run("--divide", num, den) == {1: 4, 3: 1}  # 3.5 -> 4, 0.33 dropped, 0.5 -> 1 (half up)
    code, _, err = vlf(capsys, "bagtool", "--divide", a, b)
    assert code == 1 and "not in the second bag" in err
    assert run("--scalar-multiply", "3", a) == {1: 30, 2: 9, 3: 21, 4: 3}


def test_bagtool_overflow_set_masks_and_coverset(tmp_path, capsys):
    big = _bag(tmp_path, "big", f"1|{COUNTER_MAX}\n")
    code, _, err = vlf(capsys, "bagtool", "--add", big, big)
    assert code == 1 and "overflow" in err
    code, _, err = vlf(capsys, "bagtool", "--scalar-multiply", "2", big, "--output-path", tmp_path / "w.bag")
    assert code == 0 and "wrapped" in err and _content(tmp_path / "w.bag") == {1: (2 * COUNTER_MAX) % 2**64}
    ips = _bag(tmp_path, "ips", "10.0.0.1|3\n10.0.0.2|12\n10.0.0.3|1\n")
    mask = make_set(tmp_path, "m.set", "10.0.0.1", "10.0.0.2")
    vlf(capsys, "bagtool", "--intersect", mask, ips, "--output-path", tmp_path / "i.bag")
    assert _content(tmp_path / "i.bag") == {ip("10.0.0.1"): 3, ip("10.0.0.2"): 12}
    vlf(capsys, "bagtool", "--complement-intersect", mask, ips, "--output-path", tmp_path / "c.bag")
    assert _content(tmp_path / "c.bag") == {ip("10.0.0.3"): 1}
    vlf(capsys, "bagtool", "--maxcounter", "10", "--coverset", ips, "--output-path", tmp_path / "v.set")
    assert members(tmp_path / "v.set") == ["10.0.0.1", "10.0.0.3"]


def test_bagcat_layouts(tmp_path, capsys):
    b = _bag(tmp_path, "c", "10.1.2.1|5\n10.1.2.2|9\n10.1.3.1|5\n172.16.0.1|1\n")
    assert vlf(capsys, "bagcat", b)[1].splitlines() == [
        "       10.1.2.1|                   5|", "       10.1.2.2|                   9|",
        "       10.1.3.1|                   5|", "     172.16.0.1|                   1|"]
    # ties (5) go to the smaller key
    assert [l.split("|")[0].strip() for l in vlf(capsys, "bagcat", "--sort-counters", b)[1].splitlines()] == [
        "10.1.2.2", "10.1.2.1", "10.1.3.1", "172.16.0.1"]
    # after a slash, SiLK ignores S: hosts only (what rwbagcat 3.19.1 prints for this bag)
    assert vlf(capsys, "bagcat", "--network-structure=A/S", b)[1].splitlines() == [
        "       10.0.0.0/8|                  19| 3 hosts", "      172.0.0.0/8|                   1| 1 host"]
    assert vlf(capsys, "bagcat", "--bin-ips", b)[1].splitlines() == [
        "                   1|                   1|", "                   5|                   2|", "                   9|                   1|"]
    stats = vlf(capsys, "bagcat", "--print-statistics", b)[1]
    assert "    number of keys:  4\n" in stats and "   sum of counters:  20\n" in stats and "              mean:  5\n" in stats
    assert "       minimum key:  10.1.2.1\n" in stats and "          variance:  10.67\n" in stats


def test_bad_files_give_one_line_and_pipeline_through_stdout(tmp_path, flow_file):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bad = tmp_path / "bad.set"
    bad.write_bytes(b"garbage")
    done = subprocess.run([sys.executable, "-m", "vlf_dagster.cli", "setcat", str(bad)], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "not an IP set file" in done.stderr
    done = subprocess.run([sys.executable, "-m", "vlf_dagster.cli", "bagcat", str(flow_file)], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and "not a bag file" in done.stderr and "Traceback" not in done.stderr
    pipeline = (f"{sys.executable} -m vlf_dagster.cli bag --bag-file sIPv4,flows,- {flow_file} "
                f"| {sys.executable} -m vlf_dagster.cli bagtool --maxcounter 1 --coverset "
                f"| {sys.executable} -m vlf_dagster.cli setcat")
    done = subprocess.run(pipeline, shell=True, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["2.2.2.2"]


def test_verbs_exit_with_their_own_status_not_an_abort_at_teardown(tmp_path, flow_file):
    # pyarrow's threaded in-memory Parquet read used to abort ~3% of processes at interpreter
    # exit (SIGABRT, status -6) after the verb had finished; a dozen concurrent runs caught it.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bag = tmp_path / "s.bag"
    assert main(["bag", "--bag-file", f"sIPv4,flows,{bag}", str(flow_file)]) == 0
    commands = [["bagcat", str(flow_file)], ["bagcat", str(bag)]] * 6
    procs = [subprocess.Popen([sys.executable, "-m", "vlf_dagster.cli", *c], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env) for c in commands]
    statuses = [(c[1] == str(bag), p.wait(), p.stderr.read().decode()) for c, p in zip(commands, procs)]
    for is_bag, status, err in statuses:
        assert status == (0 if is_bag else 1), err
        assert "terminate called" not in err


def test_ipv6_network_structure_of_sets_and_bags(tmp_path, capsys):
    # 2001:db8::/48 holds two /64s (::0 with 2 hosts, 0:0:1:: with 1); 2001:db9::/48 one host;
    # the IPv4 member maps into ::ffff:0:0/96, so it sits in ::/48 and ::/64, as SiLK counts it.
    s = make_set(tmp_path, "v6.set", "2001:db8::1", "2001:db8::2", "2001:db8:0:1::5", "2001:db9::1", "10.1.2.3")
    assert vlf(capsys, "setcat", "--network-structure=v6:TS", s)[1] == "TOTAL| 5 hosts in 3 /48s and 4 /64s\n"
    assert [line.rstrip() for line in vlf(capsys, "setcat", "--network-structure=v6:48,64", s)[1].splitlines()] == [
        "  ::/64                                     | 1", "::/48                                       | 1",
        "  2001:db8::/64                             | 2", "  2001:db8:0:1::/64                         | 1",
        "2001:db8::/48                               | 3", "  2001:db9::/64                             | 1",
        "2001:db9::/48                               | 1"]
    assert vlf(capsys, "setcat", "--network-structure=v6:H", s)[1].splitlines()[0] == "                        ::ffff:10.1.2.3|"
    # an IPv4 structure counts the IPv4 member and says what it left out
    code, out, err = vlf(capsys, "setcat", "--network-structure=TS", s)
    assert out == "TOTAL| 1 host in 1 /8, 1 /16, 1 /24, and 1 /27\n" and "4 IPv6 address(es) not counted" in err
    b = _bag(tmp_path, "b6", "2001:db8::1|5\n2001:db8::2|7\n2001:db9::|2\n10.1.2.3|1\n")
    assert vlf(capsys, "bagcat", "--network-structure=v6:48", b)[1].splitlines() == [
        "                                     ::/48|                   1|", "                             2001:db8::/48|                  12|",
        "                             2001:db9::/48|                   2|"]
    assert vlf(capsys, "bagcat", "--network-structure=v6:T/48", b)[1] == "TOTAL|                  15| 4 hosts in 3 /48s\n"
    code, out, err = vlf(capsys, "bagcat", "--network-structure=T", b)
    assert out == "TOTAL|                   1|\n" and "3 IPv6 address(es)" in err  # IPv6 keys are not summed as 0.0.0.0
    for bad in ("v6:A", "v6:129", "33"):
        code, _, err = vlf(capsys, "setcat", f"--network-structure={bad}", s)
        assert code == 1 and "invalid network structure item" in err and err.count("\n") == 1


def test_bagcat_of_a_mixed_bag_prints_ipv4_keys_mapped_in_128_bit_order(tmp_path, capsys):
    b = _bag(tmp_path, "mixed", "2001:db8::1|5\n10.1.2.3|1\n2001:db8::2|7\n1.0.0.1|3\n")
    assert [l.split("|")[0].strip() for l in vlf(capsys, "bagcat", b)[1].splitlines()] == [
        "::ffff:1.0.0.1", "::ffff:10.1.2.3", "2001:db8::1", "2001:db8::2"]
    # ties in --sort-counters still go to the smaller key in that order
    b = _bag(tmp_path, "ties", "2001:db8::1|5\n10.1.2.3|5\n2001:db8::2|7\n")
    assert [l.split("|")[0].strip() for l in vlf(capsys, "bagcat", "--sort-counters", b)[1].splitlines()] == [
        "2001:db8::2", "::ffff:10.1.2.3", "2001:db8::1"]


def test_an_address_and_its_ipv4_mapped_form_are_one_host(tmp_path, capsys):
    s = make_set(tmp_path, "m.set", "1.2.3.4", "::ffff:1.2.3.4", "2001:db8::1")
    assert vlf(capsys, "setcat", "--network-structure=v6:H", s)[1].splitlines() == [
        "                         ::ffff:1.2.3.4|", "                            2001:db8::1|"]
    assert vlf(capsys, "setcat", "--network-structure=v6:TS", s)[1] == "TOTAL| 2 hosts in 2 /48s and 2 /64s\n"
    code, out, err = vlf(capsys, "setcat", "--network-structure=H", s)  # the mapped member counts as IPv4
    assert out == "        1.2.3.4|\n" and "1 IPv6 address(es) not counted" in err
    b = _bag(tmp_path, "m", "1.2.3.4|5\n::ffff:1.2.3.4|2\n2001:db8::1|7\n")
    assert vlf(capsys, "bagcat", "--network-structure=H", b)[1] == "        1.2.3.4|                   7|\n"  # counters added


def test_settool_union_with_mask_or_fill_blocks_as_rwsettool(tmp_path, capsys):
    a = make_set(tmp_path, "a.set", "10.1.2.1", "10.1.2.200")
    b = make_set(tmp_path, "b.set", "10.1.3.7", "192.168.0.1")
    assert vlf(capsys, "settool", "--union", "--mask=24", a, b, "--output-path", tmp_path / "m.set")[0] == 0
    assert members(tmp_path / "m.set") == ["10.1.2.0", "10.1.3.0", "192.168.0.0"]  # the union, then masked
    assert vlf(capsys, "settool", "--union", "--fill-blocks=30", a, b, "--output-path", tmp_path / "f.set")[0] == 0
    assert len(members(tmp_path / "f.set")) == 16
    for other in ("--intersect", "--difference"):
        code, _, err = vlf(capsys, "settool", other, "--mask=24", a, b)
        assert code == 1 and f"switches {other} and --mask are incompatible" in err


def test_setbuild_reads_text_and_names_a_bad_line(tmp_path, capsys):
    text = tmp_path / "in.txt"
    text.write_text("10.1.2.1\n# a comment\n\n10.1.3.0/31  # block\n10.1.4.1-2\nbogus\n")
    code, _, err = vlf(capsys, "setbuild", text, tmp_path / "bad.set")
    assert code == 1 and err.strip() == f"vlf setbuild: {text}:6: invalid IP address, CIDR block or wildcard 'bogus'"
    assert not (tmp_path / "bad.set").exists()
    text.write_text("10.1.2.1\n10.1.3.0/31\n10.1.4.1-2\n")
    assert vlf(capsys, "setbuild", text, tmp_path / "ok.set")[0] == 0
    assert members(tmp_path / "ok.set") == ["10.1.2.1", "10.1.3.0", "10.1.3.1", "10.1.4.1", "10.1.4.2"]
    code, _, err = vlf(capsys, "setbuild", text, tmp_path / "ok.set")  # no clobbering, as SiLK
    assert code == 1 and "exists" in err


def test_a_bag_from_a_piped_stream_equals_the_bag_from_the_file(tmp_path):
    """`vlf filter ... --pass=- | vlf bag`: bag takes the Arrow stream batch by batch as it arrives
    (never whole: flat memory however long the pull); the bag equals the one built from the file,
    and a pipe that is no flow stream is one line."""
    flows_file = ROOT / "tests" / "silk" / "flows.parquet"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    vlf = [sys.executable, "-m", "vlf_dagster.cli"]
    direct, piped = tmp_path / "direct.bag", tmp_path / "piped.bag"
    assert main(["bag", f"--bag-file=sIPv4,flows,{direct}", str(flows_file)]) == 0
    pull = subprocess.Popen([*vlf, "filter", "--proto=0-255", "--pass=-", str(flows_file)], stdout=subprocess.PIPE, env=env)
    done = subprocess.run([*vlf, "bag", f"--bag-file=sIPv4,flows,{piped}"], stdin=pull.stdout, env=env,
                          capture_output=True, text=True, timeout=120)
    pull.wait(60)
    assert done.returncode == 0, done.stderr
    assert Bag.read(piped).table.equals(Bag.read(direct).table)
    whole = subprocess.run([*vlf, "filter", "--proto=0-255", "--pass=-", str(flows_file)], capture_output=True, env=env).stdout
    for broken in (b"\xff\xff\xff\xffgarbage", whole[: len(whole) // 2]):  # no stream; a stream cut in the middle
        bad = subprocess.run([*vlf, "bag", f"--bag-file=sIPv4,flows,{tmp_path / 'bad.bag'}"], input=broken,
                             env=env, capture_output=True, timeout=60)
        assert bad.returncode == 1 and bad.stderr.decode().count("\n") == 1 and not (tmp_path / "bad.bag").exists()
    assert main(["bag", f"--bag-file=anyIP,records,{tmp_path / 'any.bag'}", str(flows_file)]) == 1  # a key of added bags only
