"""The package's layout holds: the layers import in one direction, and no module grows past ~800
lines without saying why (issue 13)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vlf_dagster"
MAX_LINES = 800
NO_DAGSTER = ("flows", "analysis", "simulate", "verbs", "artifacts.py")


def _modules(*parts: str) -> list[Path]:
    found = []
    for part in parts:
        path = PACKAGE / part
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


def _imported(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, lazy imports included."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = module[:-1] if module[-1] != "__init__" else module[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            names.add(".".join(base + ([node.module] if node.module else [])))
    return names


@pytest.mark.parametrize("path", _modules(*NO_DAGSTER), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_toolbox_and_the_analysis_never_import_dagster_or_the_orchestration(path):
    imported = _imported(path)
    assert not {n for n in imported if n == "dagster" or n.startswith(("dagster.", "dagster_"))}
    assert not {n for n in imported if n.startswith("vlf_dagster.orchestration")}


@pytest.mark.parametrize("path", _modules("flows"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_record_library_never_imports_the_analysis_or_the_verbs(path):
    assert not {n for n in _imported(path) if n.startswith(("vlf_dagster.analysis", "vlf_dagster.verbs"))}


def test_no_module_exceeds_800_lines_without_saying_why():
    long = {}
    for path in _modules("."):
        lines = path.read_text().count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "Size:" not in docstring:
            long[str(path.relative_to(PACKAGE))] = lines
    assert not long, f"over {MAX_LINES} lines with no 'Size:' paragraph in the docstring: {long}"


def test_every_package_says_what_belongs_in_it():
    silent = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("__init__.py") if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not silent
