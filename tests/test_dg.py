"""`dg` works from the repository root: pyproject.toml's [tool.dg] finds the code location.

dagster-dg-cli is a pinned dependency, so a missing `dg` fails here rather than being skipped.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from vlf_dagster import artifacts as A

ROOT = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).parent / "dg"


def _dg(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([str(DG), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_dg_checks_and_lists_the_definitions(tmp_path):
    assert DG.exists(), f"{DG} missing: run make install (dagster-dg-cli is in pyproject.toml)"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # VIRTUAL_ENV: the venv dg runs from is the project's, as when it is activated (else dg warns)
    env = {**os.environ, "VLF_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(home),
           "VIRTUAL_ENV": sys.prefix}
    env.pop("VLF_SITE_CONFIG", None)
    # the instance's SQLite storage made once first: two dg processes creating it at the same moment
    # race on its schema table (seen once under two test workers)
    import dagster as dg
    with dg.DagsterInstance.from_config(str(home)):
        pass
    # both at once: each loads the code location in a process of its own (about 10 s each)
    check, listing = _dg("check", "defs", env=env), _dg("list", "defs", "--json", env=env)
    check_out, check_err = check.communicate(timeout=120)
    list_out, list_err = listing.communicate(timeout=120)
    assert check.returncode == 0, check_out + check_err
    assert "All definitions loaded successfully" in check_out + check_err
    assert listing.returncode == 0, list_err

    listed = json.loads(list_out)
    assets = {a["asset_key"]: a for a in listed["assets"]}
    expected = {a.name for a in A.ARTIFACTS if a.asset}
    assert expected <= set(assets)
    assert any(name.startswith("report_") for name in assets)
    hourly = assets[A.HOURLY_FLOWS.name]
    assert hourly["owners"] == [{"team": "vlf-study"}]
    assert {"key": "grain", "value": "hourly"} in hourly["tags"]
    assert listed["jobs"] and listed["schedules"] and listed["sensors"] and listed["asset_checks"]
