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


def test_a_table_read_back_for_the_report_is_typed_as_written_not_guessed_from_its_text(tmp_path):
    from vlf_dagster.analysis.report.page import render_report
    from vlf_dagster.analysis.report.parts import PartResult, Piece, section_from_folder, write_part

    # text that looks like numbers stays text; numbers that look whole stay what they are
    df = pd.DataFrame({"Country": ["1E5", "US"], "Label": ["0080", "22"], "Port": [80, 22], "Flows": [12345, 7],
                       "Percent": [100.0, 0.0], "Ratio": [2.0, None], "Implausible": [True, False]})
    write_part(PartResult("p", "P", [Piece("Countries", table=df, note="the window's <data>")]), tmp_path / "p")
    assert "0080" in (tmp_path / "p" / "countries.csv").read_text()
    section = section_from_folder(tmp_path / "p", tmp_path)
    back = section.pieces[0].table
    assert tables.formatted(back) == tables.formatted(df) == [
        ["1E5", "0080", "80", "12,345", "100.00%", "2.00", "yes"], ["US", "22", "22", "7", "0.00%", "", "no"]]
    page = render_report("VLF", "site", [section])
    assert '<td class="txt">1E5</td><td class="txt">0080</td><td class="num">80</td><td class="num">12,345</td>' in page
    assert tables.to_html(back) in page
    assert '<p class="note">the window&#x27;s &lt;data&gt;</p>' in page  # escaped as html.escape does, as always
