"""How study tables read: counts with thousands separators, ports and other identifiers as they are."""

import pandas as pd

from vlf_dagster.analysis.report import render as tables


def test_counts_get_separators_and_identifiers_stay_as_they_are():
    df = pd.DataFrame({"P'col": [132], "Port (2 - 4 flows)": [27015], "Flows (2 - 4 flows)": [2282],
                       "Port 4662 count": [12345], "Packets": [2_000_000], "Ratio": [2282.0], "% Hit": [12.5],
                       "Rank": [1], "Type": [3], "Code": [10], "Implausible": [True]})
    assert tables.formatted(df) == [["132", "27015", "2,282", "12,345", "2,000,000", "2,282.00", "12.50%", "1", "3", "10", "yes"]]
    html = tables.to_html(df)
    assert "<td class=\"num\">2,282</td>" in html and "True" not in html
