"""The whole study on a simulated site: planted populations show up where the study found them,
and the HTML report renders with every section (in headless Chromium where it is installed)."""

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from conftest import START
from vlf_dagster.analysis.report.study import PARTS
from vlf_dagster.orchestration.definitions import build_definitions
from vlf_dagster.flows.site import load_site
from vlf_dagster.orchestration.runs import materialize_all
from vlf_dagster.simulate import SimulationConfig, simulate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    data = tmp_path_factory.mktemp("study") / "data"
    data.mkdir()
    site = load_site(ROOT / "vlf_dagster" / "site.default.toml").with_window(START, START + timedelta(days=3))
    (data / "site.toml").write_text(site.to_toml())
    simulate(site, SimulationConfig(days=3, sources=6000, seed=5), data)
    with dg.instance_for_test() as instance:
        materialize_all(build_definitions(data), instance, hours_per_run=72, echo=lambda *_: None)
    return next((data / "reports").iterdir())


def table(report_dir: Path, part: str, index: int = 0) -> pd.DataFrame:
    csvs = sorted((report_dir / part).glob("*.csv"), key=lambda p: p.stat().st_mtime)
    import json

    manifest = json.loads((report_dir / part / "part.json").read_text())
    name = [p["csv"] for p in manifest["pieces"] if "csv" in p][index]
    assert csvs, part
    return pd.read_csv(report_dir / part / name)


def test_planted_populations_show_up_where_the_study_found_them(study):
    flags = table(study, "report_unmatched_tcp_flags")
    assert flags.loc[0, "Flags"] == "S" and flags.loc[0, "Percent"] > 80  # SYN tops unmatched TCP (study: 92.4%)
    udp = table(study, "report_udp_ports")["Port (1 - 10 flows)"].head(5).tolist()
    assert 4672 in udp and 27015 in udp  # the P2P and game-server ports near the top of UDP
    where = table(study, "report_where_do_they_go", 1)  # unmatched TCP, 1-10 flows per host
    targeted = where[(where["# Dst"] == 1) & (where["% Hit"] == 100.0)]
    assert not targeted.empty  # a targeted port with a 100% hit rate on one live host (study: 35372)
    missed = where[(where["# Dst"] == 1) & (where["% Hit"] == 0.0)]
    assert not missed.empty  # and one that always misses (study: 9272)
    scanned = where[where["Port"] == 445].iloc[0]
    assert 5 < scanned["% Hit"] < 20 and scanned["# Dst"] > 50  # scanning hits ~10% of a 10% populated net
    categories = table(study, "report_vlf_categories").set_index("Category")
    assert categories.loc["unmatched TCP", "Flows"] > categories.loc["matched TCP", "Flows"] > 0
    matched = table(study, "report_matched_ports")
    assert 25 in matched["Port"].tolist()  # answered SMTP sessions
    assert {"O", "E"} <= set(matched["O/E"])  # sessions opened from outside and from the enterprise
    assert (matched[matched["O/E"] == "E"]["E count"] > 1).any()  # several inside hosts originate
    numerology = table(study, "report_port_numerology")  # matched UDP first
    assert {15001, 52525, 65535, 55555} & set(numerology["Port"])  # planted "interesting" source ports


def test_report_has_every_section(study):
    html = (study / "index.html").read_text()
    for part in PARTS:
        anchor = re.sub(r"[^a-z0-9]+", "-", part.title.lower()).strip("-")
        assert f'id="{anchor}"' in html, part.title
        assert (study / part.name / "part.json").exists()
    for png in re.findall(r'<img src="([^"]+)"', html):
        assert (study / png).stat().st_size > 5000
    assert "<pre>" in html and "&lt;-" in html  # cutmatch samples
    assert "nan" not in re.sub(r"<[^>]+>", " ", html).split()


def test_report_renders_in_headless_chromium(study, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1280,4000", f"--screenshot={shot}", (study / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 50_000, done.stderr[-2000:]
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", (study / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    assert dom.count("<section") == len(PARTS)


def test_sql_catalog_asset_answers_with_the_study_s_numbers(study):
    import pyarrow.parquet as pq

    from vlf_dagster.analysis.steps.catalog import connect
    from vlf_dagster.flows.sets import IPSet

    data = study.parents[1]
    con = connect(data)
    archived = sum(pq.ParquetFile(p).metadata.num_rows for p in (data / "archive").rglob("*.parquet"))
    assert con.sql("SELECT count(*) FROM flows").fetchall() == [(archived,)]
    assert con.sql("SELECT count(*) FROM vlf_fd_set").fetchall() == [(len(IPSet.read(data / "vlf_fd_set.set")),)]
    # the VLF flows are exactly the inbound archive flows of the VLF-fd sources
    assert con.sql("SELECT count(*) FROM flows f SEMI JOIN vlf_fd_set s ON f.sIP = s.ipv4 "
                   "WHERE flowtype_name IN ('in', 'inweb', 'inicmp')").fetchall() == \
        con.sql("SELECT count(*) FROM vlf_flows").fetchall()


def test_figures_show_inline_in_the_ui_markdown(study):
    import base64
    import io

    from PIL import Image

    from vlf_dagster.analysis.report.parts import UI_FIGURE_WIDTH, PartResult, Piece, markdown_of

    png = study / "report_traffic_volumes" / "traffic_volumes.png"
    md = markdown_of(PartResult("p", "P", [Piece("Overall Traffic Volumes", figure=png)]))
    match = re.search(r"!\[Overall Traffic Volumes\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert match, md[:200]
    with Image.open(io.BytesIO(base64.b64decode(match.group(1)))) as shown, Image.open(png) as full:
        assert shown.width == UI_FIGURE_WIDTH < full.width
        assert abs(shown.height - full.height * UI_FIGURE_WIDTH / full.width) <= 1
    assert len(match.group(1)) < 200_000  # a thumbnail: it is kept in every materialization event


def test_the_report_page_is_the_same_bytes_when_rendered_again(study):
    from vlf_dagster.analysis.report.page import render_report
    from vlf_dagster.analysis.report.parts import section_from_folder

    sections = [s for part in PARTS if (s := section_from_folder(study / part.name, study)) is not None]
    first = render_report("VLF", "site", sections, ["a warning"])
    assert first == render_report("VLF", "site", sections, ["a warning"])  # no clock in the page
    assert '<p class="warning">a warning</p>' in first
