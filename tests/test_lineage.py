"""A snapshot of the asset graph: every asset's upstream assets, group and partitioning; and what
every asset carries (owners, grain and stage tags, code references).

A change to the study's lineage must be a deliberate edit here, not an accident of a refactor.
"""

import re
from pathlib import Path

import dagster as dg

from vlf_dagster import artifacts as A
from vlf_dagster.orchestration import ownership
from vlf_dagster.orchestration.definitions import build_definitions
from vlf_dagster.orchestration.ownership import OWNERS, STAGES

WINDOW_SOURCES = ["hourly_contact_pairs", "hourly_flows", "hourly_source_bags", "monthly_contact_pairs",
                  "monthly_port_usage", "monthly_source_bags", "monthly_traffic_volumes", "source_destination_count_bag",
                  "source_flow_bag", "source_hour_count_bag"]

MONTHLY = ["monthly_source_bags", "monthly_contact_pairs", "monthly_active_hosts", "monthly_traffic_volumes",
           "monthly_port_usage", "monthly_low_frequency_flows", "monthly_low_frequency_answers", "monthly_scanners",
           "monthly_source_profiles"]

LINEAGE = {
    # asset: (group, partitioning, upstream assets)
    "landing_flows": ("archive", "hourly", []),  # external: reported by the landing sensor
    "hourly_flows": ("archive", "hourly", ["landing_flows"]),
    "hourly_source_bags": ("bags", "hourly", ["hourly_flows"]),
    "hourly_contact_pairs": ("bags", "hourly", ["hourly_flows"]),
    "hourly_active_hosts": ("bags", "hourly", ["hourly_flows"]),
    "monthly_source_bags": ("bags", "monthly", ["hourly_source_bags"]),
    "monthly_contact_pairs": ("bags", "monthly", ["hourly_contact_pairs"]),
    "monthly_active_hosts": ("bags", "monthly", ["hourly_active_hosts"]),
    "monthly_traffic_volumes": ("bags", "monthly", ["hourly_flows"]),
    "monthly_port_usage": ("bags", "monthly", ["hourly_flows"]),
    "study_months": ("bags", None, sorted(MONTHLY)),
    "source_flow_bag": ("bags", None, ["monthly_source_bags", "study_months"]),
    "source_hour_count_bag": ("bags", None, ["monthly_source_bags", "study_months"]),
    "source_destination_count_bag": ("bags", None, ["monthly_contact_pairs", "study_months"]),
    "monthly_scanners": ("scanners", "monthly", ["hourly_flows", "monthly_active_hosts"]),
    "scanners": ("scanners", None, ["monthly_scanners", "study_months"]),
    "monthly_source_profiles": ("returns", "monthly", ["hourly_flows"]),
    "return_model": ("returns", None, ["monthly_source_profiles", "study_months"]),
    "retirement_set": ("returns", None, ["monthly_source_profiles", "return_model", "study_months"]),
    "report_returns": ("reports", None, ["retirement_set", "return_model"]),
    "vlf_f_set": ("vlf", None, ["source_flow_bag"]),
    "vlf_d_set": ("vlf", None, ["source_destination_count_bag"]),
    "vlf_fd_set": ("vlf", None, ["vlf_d_set", "vlf_f_set"]),
    "active_inside_set": ("vlf", None, ["monthly_active_hosts", "study_months"]),
    "monthly_low_frequency_flows": ("vlf", "monthly", ["hourly_flows", "monthly_source_bags"]),
    "monthly_low_frequency_answers": ("vlf", "monthly", ["hourly_flows", "monthly_source_bags"]),
    "vlf_flows": ("vlf", None, ["monthly_low_frequency_flows", "study_months", "vlf_fd_set"]),
    "vlf_outbound_flows": ("vlf", None, ["monthly_low_frequency_answers", "study_months", "vlf_fd_set"]),
    "matched_vlf_flows": ("matching", None, ["vlf_fd_set", "vlf_flows", "vlf_outbound_flows"]),
    "vlf_categories": ("matching", None, ["matched_vlf_flows", "source_flow_bag"]),
    "report_contact_surface": ("reports", None, ["monthly_contact_pairs", "source_destination_count_bag", "study_months"]),
    "report_geography": ("reports", None, ["vlf_categories"]),
    "report_icmp": ("reports", None, ["vlf_categories"]),
    "report_malformed": ("reports", None, ["vlf_flows", "vlf_outbound_flows"]),
    "report_matched_ports": ("reports", None, ["matched_vlf_flows"]),
    "report_other_protocols": ("reports", None, ["vlf_categories"]),
    "report_overall_port_usage": ("reports", None, ["monthly_port_usage", "study_months"]),
    "report_per_host_flow_distribution": ("reports", None, ["source_flow_bag"]),
    "report_port_descriptions": ("reports", None, ["vlf_categories"]),
    "report_port_directions": ("reports", None, ["matched_vlf_flows"]),
    "report_port_numerology": ("reports", None, ["matched_vlf_flows"]),
    "report_port_timelines": ("reports", None, ["vlf_categories"]),
    "report_samples": ("reports", None, ["matched_vlf_flows", "vlf_categories"]),
    "report_tcp_flags_top_ports": ("reports", None, ["vlf_categories"]),
    "report_traffic_volumes": ("reports", None, ["monthly_traffic_volumes", "study_months"]),
    "report_transient_ports": ("reports", None, ["vlf_categories"]),
    "report_udp_ports": ("reports", None, ["vlf_categories"]),
    "report_unmatched_tcp_flags": ("reports", None, ["vlf_categories"]),
    "report_unmatched_tcp_ports": ("reports", None, ["vlf_categories"]),
    "report_vlf_categories": ("reports", None, ["scanners", "vlf_categories"]),
    "report_vlf_sets": ("reports", None, ["active_inside_set", "vlf_d_set", "vlf_f_set", "vlf_fd_set"]),
    "report_where_do_they_go": ("reports", None, ["active_inside_set", "vlf_categories"]),
    "sql_catalog": ("catalog", None, sorted(WINDOW_SOURCES + ["active_inside_set", "study_months", "matched_vlf_flows", "scanners", "vlf_categories",
                                                              "monthly_source_profiles", "retirement_set",
                                                              "vlf_d_set", "vlf_f_set", "vlf_fd_set", "vlf_flows",
                                                              "vlf_outbound_flows"])),
}
LINEAGE["vlf_report"] = ("reports", None, sorted(k for k in LINEAGE if k.startswith("report_")))


def _partitioning(node) -> str | None:
    parts = node.partitions_def
    if parts is None:
        return None
    return {"0 * * * *": "hourly", "0 0 1 * *": "monthly"}[parts.get_cron_schedule()]


def test_asset_graph_matches_the_snapshot(tmp_path):
    graph = build_definitions(tmp_path).resolve_asset_graph()
    actual = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        actual[key.to_user_string()] = (node.group_name, _partitioning(node), sorted(p.to_user_string() for p in node.parent_keys))
    assert actual == LINEAGE


def test_every_asset_is_described_and_typed(tmp_path):
    defs = build_definitions(tmp_path)
    for node in defs.resolve_asset_graph().asset_nodes:
        assert len(node.description or "") > 30, node.key
        # the UI renders descriptions as Markdown, where <window> would be an HTML tag and vanish
        assert not re.search(r"<[A-Za-z/][^>]*>", node.description), (node.key, node.description)
        assert node.kinds, node.key
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {"archive_records_valid", "archive_expectations", "window_bag_conserves_flows",
                      "vlf_fd_is_f_and_d", "vlf_flows_match_the_bag"}
    assert dg.AssetKey("hourly_flows") in defs.resolve_asset_graph().get_all_asset_keys()


def test_each_stage_has_its_automation_condition(tmp_path):
    """Hours follow their landing input, months their hours, study_months the months, and every
    window asset the site's window_cron; every check runs with its asset."""
    graph = build_definitions(tmp_path).resolve_asset_graph()
    labels = {}
    for node in graph.asset_nodes:
        if node.is_materializable:
            labels[node.key.to_user_string()] = node.automation_condition.get_label()
    stage = {name: part for name, (_, part, _) in LINEAGE.items()}
    for name, label in labels.items():
        expected = {"hourly": "new or changed landing input", "monthly": "an hour of the month changed"}.get(
            stage[name], "a month was rolled up" if name == "study_months" else "inputs changed, at most once per */15 * * * *")
        assert label == expected, name
    assert "landing_flows" not in labels  # external: nothing to run
    for key in graph.asset_check_keys:
        assert graph.get(key).automation_condition.get_label() == "with its asset", key


def test_definitions_load_without_warnings(tmp_path):
    """Loading the code location (every UI reload) warns of nothing the project does."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_definitions(tmp_path)
    ours = [f"{w.category.__name__}: {w.message}" for w in caught if "vlf_dagster" in (w.filename or "")]
    assert ours == []


def test_every_asset_has_owners_tags_and_a_code_reference(tmp_path):
    """Owners and the grain and stage tags on every asset, the grain its artifact's (the report's
    parts are window), and a code reference to a file of the checkout."""
    graph = build_definitions(tmp_path).resolve_asset_graph()
    root = Path(__file__).resolve().parents[1]
    for node in graph.asset_nodes:
        name = node.key.to_user_string()
        assert node.owners == OWNERS, name
        artifact = A.BY_NAME.get(name)
        assert artifact is not None or name.startswith("report_"), name
        assert node.tags["grain"] == (artifact.grain if artifact else A.WINDOW), name
        assert node.tags["stage"] == STAGES[node.group_name], name
        references = node.metadata["dagster/code_references"].code_references
        assert references, name
        for reference in references:
            if isinstance(reference, dg.UrlCodeReference):  # a checkout with a GitHub or GitLab origin
                path = re.sub(r"^https://[^/]+/.+?/tree/[^/]+/|#L\d+$", "", reference.url)
                assert (root / path).is_file(), (name, reference.url)
            else:
                assert Path(reference.file_path).is_file() and reference.line_number, (name, reference)
    assert graph.get(dg.AssetKey("hourly_flows")).tags["grain"] == "hourly"
    assert graph.get(dg.AssetKey("monthly_port_usage")).tags["grain"] == "monthly"


def test_code_references_link_to_the_hosted_repository(tmp_path, monkeypatch):
    """With a GitHub origin, each reference is a link to the line in the branch's tree."""
    assert ownership.web_url("git@github.com:owner/repo.git") == ("https://github.com/owner/repo", "github")
    assert ownership.web_url("ssh://git@gitlab.example.org:2222/team/repo.git") == (
        "https://gitlab.example.org/team/repo", "gitlab")
    assert ownership.web_url("https://github.com/owner/repo") == ("https://github.com/owner/repo", "github")
    assert ownership.web_url("/srv/git/repo.git") is None
    monkeypatch.setattr(ownership, "_remote", lambda: ("https://github.com/owner/repo", "github", "main"))
    graph = build_definitions(tmp_path).resolve_asset_graph()
    root = Path(__file__).resolve().parents[1]
    for node in graph.asset_nodes:
        [reference] = node.metadata["dagster/code_references"].code_references
        assert isinstance(reference, dg.UrlCodeReference), node.key
        match = re.fullmatch(r"https://github\.com/owner/repo/tree/main/(vlf_dagster/\S+\.py)#L\d+", reference.url)
        assert match and (root / match.group(1)).is_file(), reference.url
    landing = graph.get(dg.AssetKey("landing_flows")).metadata["dagster/code_references"].code_references[0]
    assert "/vlf_dagster/orchestration/sensors.py#L" in landing.url
