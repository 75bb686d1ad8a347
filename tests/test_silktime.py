"""One SiLK time parser for filter's time windows and count's start/end, taking what SiLK 3.19.1's
rwfilter --stime and rwcount --start-time take (checked against both tools)."""

import pytest

from vlf_dagster.flows.silktime import SilkTimeError, parse_silk_time, window_end

T = 1_146_272_400_000  # 2006-04-29 01:00:00 UTC


@pytest.mark.parametrize("text, ms, precision", [
    ("2006/04/29", T - 3_600_000, "day"),
    ("2006/04/29T01", T, "hour"),
    ("2006/04/29:01", T, "hour"),
    ("2006/4/29:1:02", T + 120_000, "minute"),
    ("2006/04/29:01:02:03", T + 123_000, "second"),
    ("2006/04/29:01:02:03.123456", T + 123_123, "ms"),  # SiLK cuts a long fraction to milliseconds
    ("1146272400", T, "second"),
    ("1146272400.5", T + 500, "ms"),
    ("1146272400.1234", T + 123, "ms"),  # rwcount takes four digits too
])
def test_silk_times(text, ms, precision):
    assert parse_silk_time(text) == (ms, precision)


@pytest.mark.parametrize("text", ["2006-04-29T01", "2006-04-29 01", "2006/13/01", "29/04/2006", "", "1146272400.5.1"])
def test_what_silk_refuses(text):
    with pytest.raises(SilkTimeError):
        parse_silk_time(text)


def test_a_window_ends_at_the_last_millisecond_its_precision_covers():
    assert window_end(*parse_silk_time("2006/04/29")) == T - 3_600_000 + 86_400_000 - 1
    assert window_end(*parse_silk_time("1146272400")) == T + 999
    assert window_end(*parse_silk_time("1146272400.5")) == T + 500
