"""The artifact catalogue (vlf_dagster/artifacts.py) is the one home of each artifact's name, grain,
format and description: the Dagster assets, the jobs, the SQL catalog and the report derive from it."""

import fnmatch
import subprocess
import sys
from datetime import datetime, timezone

import dagster as dg
import pytest

from vlf_dagster import artifacts as A
from vlf_dagster.analysis.report.study import PARTS
from vlf_dagster.analysis.steps.catalog import SETS, SOURCES, VIEWED
from vlf_dagster.orchestration.definitions import build_definitions
from vlf_dagster.orchestration.jobs import HOURLY_ASSETS, MONTHLY_ASSETS

HOUR = datetime(2006, 4, 1, 13, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    return build_definitions(tmp_path_factory.mktemp("data"))


def _assets(defs) -> dict[str, tuple]:
    """asset key -> (group, description, kinds) of every asset of the code location"""
    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): (node.group_name, node.description, set(node.kinds))
            for key in graph.get_all_asset_keys() for node in [graph.get(key)]}


def test_every_asset_is_an_artifact_or_a_report_part_and_nothing_else(defs):
    declared = {a.name for a in A.ARTIFACTS if a.asset} | {p.name for p in PARTS}
    assert set(_assets(defs)) == declared


def test_each_asset_takes_its_group_description_and_kinds_from_its_artifact(defs):
    assets = _assets(defs)
    for artifact in A.ARTIFACTS:
        if artifact.asset:
            group, description, kinds = assets[artifact.name]
            assert (group, description) == (artifact.group, artifact.asset_description), artifact.name
            assert artifact.kinds <= kinds, artifact.name


def test_the_jobs_select_the_artifacts_of_their_grain(defs):
    assert HOURLY_ASSETS == ["hourly_flows", "hourly_source_bags", "hourly_contact_pairs", "hourly_active_hosts"]
    assert set(MONTHLY_ASSETS) == {a.name for a in A.ARTIFACTS if a.grain == A.MONTHLY}
    graph = defs.resolve_asset_graph()
    hourly = defs.resolve_job_def("hourly_job").asset_layer.selected_asset_keys
    assert {k.to_user_string() for k in hourly} == set(HOURLY_ASSETS)
    assert all(graph.get(dg.AssetKey(n)).partitions_def is not None for n in HOURLY_ASSETS + MONTHLY_ASSETS)


def test_every_file_an_artifact_writes_matches_the_glob_the_catalog_reads(tmp_path):
    for artifact in A.ARTIFACTS:
        if artifact.format in ("archive", "landing"):
            continue  # their layouts (flowtype, sensor) are flows.storage's
        path = artifact.path(tmp_path, HOUR if artifact.grain != A.WINDOW else None)
        assert fnmatch.fnmatch(path.relative_to(tmp_path).as_posix(), artifact.glob()), artifact.name
        assert path.suffix in ("", f".{artifact.ext}"), artifact.name


def test_a_dated_artifact_asks_for_its_hour_or_month(tmp_path):
    with pytest.raises(ValueError, match="hourly_source_bags is hourly"):
        A.HOURLY_SOURCE_BAGS.path(tmp_path)
    assert A.MONTHLY_SOURCE_BAGS.path(tmp_path, HOUR).name == "month=2006-04.parquet"


def test_existing_lists_the_files_of_a_range_of_hours(tmp_path):
    for hour in (HOUR, HOUR.replace(hour=15)):
        path = A.HOURLY_ACTIVE_HOSTS.path(tmp_path, hour)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert A.HOURLY_ACTIVE_HOSTS.existing(tmp_path, HOUR, HOUR.replace(hour=15)) == [A.HOURLY_ACTIVE_HOSTS.path(tmp_path, HOUR)]


def test_the_catalog_views_and_the_report_parts_read_declared_artifacts_only(defs):
    assert {s.artifact for s in SOURCES} | set(SETS) <= set(A.ARTIFACTS)
    assert set(VIEWED) <= {a.name for a in A.ARTIFACTS if a.asset}
    for part in PARTS:
        assert part.deps and set(part.deps) <= set(A.ARTIFACTS), part.name


def test_the_catalogue_imports_no_dagster():
    code = "import sys, vlf_dagster.artifacts; print('dagster' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
