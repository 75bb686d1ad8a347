"""vlf cut (rwcut): layouts compared with hand-written text."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import flows
from vlf_dagster.flows.tools.cut import CutError, format_records, format_text
from vlf_dagster.flows.fields import FieldError

T0 = 1143850555000  # 2006/04/01T00:15:55.000 UTC
ROOT = Path(__file__).resolve().parents[1]

ROWS = [
    dict(sIP="216.123.177.141", dIP="10.1.24.69", sPort=4289, dPort=25, protocol=6, packets=15, bytes=1518,
         flags=27, sTime=T0, duration=6000, sensor=0, flowtype=0, nhIP="0.0.0.1"),
    dict(sIP="68.127.237.162", dIP="10.1.27.28", sPort=0, dPort=771, protocol=1, packets=1, bytes=112,
         flags=0, sTime=T0 + 402_000, duration=0, sensor=1, flowtype=8, nhIP="255.0.0.1"),
    dict(sIP="4.227.17.37", dIP="10.1.24.202", sPort=4137, dPort=445, protocol=6, packets=3, bytes=144,
         flags=2, sTime=T0 - 487_000, duration=9123, sensor=0, flowtype=3, nhIP="0.0.0.0"),
]


@pytest.fixture
def table():
    return flows(ROWS)


def test_default_layout_has_rwcut_titles_widths_and_trailing_separator(table, site):
    assert list(format_records(table, site=site)) == [
        "            sIP|            dIP|sPort|dPort|pro|   packets|     bytes|   flags|                  sTime| duration|                  eTime|sen|",
        "216.123.177.141|     10.1.24.69| 4289|   25|  6|        15|      1518|FS PA   |2006/04/01T00:15:55.000|    6.000|2006/04/01T00:16:01.000| S0|",
        " 68.127.237.162|     10.1.27.28|    0|  771|  1|         1|       112|        |2006/04/01T00:22:37.000|    0.000|2006/04/01T00:22:37.000| S1|",
        "    4.227.17.37|    10.1.24.202| 4137|  445|  6|         3|       144| S      |2006/04/01T00:07:48.000|    9.123|2006/04/01T00:07:57.123| S0|",
    ]


def test_without_a_site_sensors_print_as_integers_five_wide(table):
    lines = list(format_records(table, "sensor,protocol"))
    assert lines == ["senso|pro|", "    0|  6|", "    1|  1|", "    0|  6|"]


def test_no_columns_prints_only_set_flag_letters(table, site):
    lines = list(format_records(table, "1-5,flags,sensor", columns=False, site=site))
    assert lines == [
        "sIP|dIP|sPort|dPort|protocol|flags|sensor|",
        "216.123.177.141|10.1.24.69|4289|25|6|FSPA|S0|",
        "68.127.237.162|10.1.27.28|0|771|1||S1|",
        "4.227.17.37|10.1.24.202|4137|445|6|S|S0|",
    ]


def test_delimited_drops_padding_and_the_final_separator(table):
    assert list(format_records(table, "sip,dport,flags", delimited=",", num_recs=2)) == [
        "sIP,dPort,flags",
        "216.123.177.141,25,FSPA",
        "68.127.237.162,771,",
    ]
    assert list(format_records(table, "sip,dport", delimited=True, no_titles=True)) == [
        "216.123.177.141|25", "68.127.237.162|771", "4.227.17.37|445",
    ]
    assert list(format_records(table, "sport", delimiter=":", no_titles=True, num_recs=1)) == [" 4289:"]


def test_num_recs_limits_records_not_the_title(table):
    assert list(format_records(table, "dport", num_recs=1)) == ["dPort|", "   25|"]
    assert len(list(format_records(table, "dport", num_recs=0))) == 4  # 0: all, as rwcut


def test_itype_icode_are_empty_unless_icmp(table):
    assert list(format_records(table, "protocol,dPort,iType,iCode")) == [
        "pro|dPort|iTy|iCo|",
        "  6|   25|   |   |",
        "  1|  771|  3|  3|",
        "  6|  445|   |   |",
    ]


def test_epoch_iso_and_no_msec_timestamps(table):
    assert list(format_records(table, "stime,etime,dur", timestamp_format="epoch", num_recs=1)) == [
        "         sTime|         eTime| duration|",
        "1143850555.000|1143850561.000|    6.000|",
    ]
    assert list(format_records(table, "stime,etime", timestamp_format="iso", no_titles=True))[2] == (
        "2006-04-01 00:07:48.000|2006-04-01 00:07:57.123|"
    )
    assert list(format_records(table, "etime,dur", timestamp_format="m/d/y,no-msec", columns=False))[3] == "04/01/2006 00:07:57|9|"
    assert list(format_records(table, "stime", timestamp_format="epoch,no-msec", no_titles=True, num_recs=1)) == ["1143850555|"]
    with pytest.raises(CutError):
        list(format_records(table, "stime", timestamp_format="julian"))


def test_match_column_shows_direction_and_id(table):
    assert list(format_records(table, "match,sIP")) == [
        " <->Match#|            sIP|",
        "->       1|216.123.177.141|",
        "<-       1| 68.127.237.162|",
        "->        |    4.227.17.37|",
    ]
    big = flows([dict(nhIP="0.1.226.64"), dict(nhIP="255.0.0.0")])  # id 123456; an unmatched response
    assert list(format_records(big, "match", columns=False, no_titles=True)) == ["->  123456|", "<-        |"]


def test_integer_ips_and_flags_and_type_names(table):
    assert list(format_records(table, "sip,flags,type,class", integer_ips=True, integer_tcp_flags=True)) == [
        "       sIP|fla|   type|cla|",
        "3631985037| 27|     in|all|",
        "1149234594|  0| inicmp|all|",
        "  81989925|  2| outweb|all|",
    ]


def test_ipv6_records_print_ipv6_addresses_in_39_columns():
    v6 = ipaddress.IPv6Address("2001:db8::1").packed
    mapped = ipaddress.IPv6Address("::ffff:10.1.24.69").packed
    t = flows([
        dict(sIP="0.0.0.0", dIP="0.0.0.0", sIPv6=v6, dIPv6=mapped, attributes=0x80),
        dict(sIP="1.2.3.4", dIP="10.1.24.69", sIPv6=None, dIPv6=None),
    ])
    assert list(format_records(t, "sip,dip,attributes")) == [
        " " * 36 + "sIP|" + " " * 36 + "dIP|attribut|",
        " " * 28 + "2001:db8::1|" + " " * 22 + "::ffff:10.1.24.69|        |",
        " " * 32 + "1.2.3.4|" + " " * 29 + "10.1.24.69|        |",
    ]


def test_attributes_print_silk_letters():
    t = flows([dict(attributes=0x20 | 0x40), dict(attributes=0x08 | 0x10)])
    assert list(format_records(t, "attributes", no_titles=True)) == ["TC      |", "  FS    |"]
    assert list(format_records(t, "attributes", no_titles=True, columns=False)) == ["TC|", "FS|"]


def test_unknown_fields_raise_field_error(table):
    with pytest.raises(FieldError, match="bogus"):
        list(format_records(table, "sip,bogus"))


def test_text_blocks_equal_the_lines(table, site):
    text = b"".join(format_text(table, "match,1-12,type", site=site, batch_rows=2)).decode()
    assert text.splitlines() == list(format_records(table, "match,1-12,type", site=site))


# --- CLI -------------------------------------------------------------------------------------------


def vlf(*args, stdin=None):
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run([sys.executable, "-m", "vlf_dagster.cli", *args], input=stdin, capture_output=True, env=env, cwd=ROOT)


def test_cli_cut_reads_files_and_stdin(tmp_path, table):
    path = tmp_path / "flows.parquet"
    pq.write_table(table, path)
    res = vlf("cut", str(path), "--fields=sip,dport,flags", "--no-columns", "--num-recs=2")
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().splitlines() == ["sIP|dPort|flags|", "216.123.177.141|25|FSPA|", "68.127.237.162|771||"]
    # `--delimited FILE` (no '='): the file is still read, as rwcut needs --delimited=C for a separator
    res = vlf("cut", "--fields=sport", "--no-titles", "--delimited", str(path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().splitlines() == ["4289", "0", "4137"]
    res = vlf("cut", "--fields=match", "--dry-run")
    assert res.stdout.decode() == " <->Match#|\n"


def test_cli_unknown_field_is_one_line_exit_1(tmp_path, table):
    path = tmp_path / "flows.parquet"
    pq.write_table(table, path)
    res = vlf("cut", str(path), "--fields=sip,nosuchfield")
    assert res.returncode == 1
    assert res.stdout == b""
    assert res.stderr.decode().strip().splitlines() == ["vlf cut: unknown field 'nosuchfield'"]
