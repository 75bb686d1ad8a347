"""Who owns the study's assets, how they are tagged, and where their code is: applied to every asset at once.

:func:`annotate` gives each asset (in :func:`definitions.build_definitions`, rather than in each asset
file) the :data:`OWNERS`, a ``grain`` tag (``hourly``, ``monthly`` or ``window``: the artifact
catalogue's; the report's parts are window) and a ``stage`` tag (the study's stage, numbered as in
the catalogue: 1 archive, 2 bags, 3 VLF sets and flows, 4 matching, 5 report, 6 SQL catalog), so that
the UI's catalogue filters by ``tag:grain=monthly`` or ``owner:team:vlf-study`` across groups.
Every asset also gets a code reference: the function that computes it, or for an asset made outside
Dagster, the function that reports it; those become links to the hosted repository where the
checkout has an ``origin`` remote on GitHub or GitLab.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable

import dagster as dg

from .. import artifacts as A

OWNERS = ["team:vlf-study"]

# asset group -> the study's stage (artifacts.py's "stage N" headings)
STAGES = {"archive": "1", "bags": "2", "vlf": "3", "scanners": "3", "returns": "3", "matching": "4", "reports": "5", "catalog": "6"}

_REPOSITORY = Path(__file__).resolve().parents[2]  # the checkout holding vlf_dagster/, if it is one


def tags_for(spec: dg.AssetSpec) -> dict[str, str]:
    """The ``grain`` and ``stage`` tags of one asset (the report's parts are no artifacts: window)."""
    artifact = A.BY_NAME.get(spec.key.to_user_string())
    return {"grain": artifact.grain if artifact else A.WINDOW, "stage": STAGES[spec.group_name]}


def _owned(spec: dg.AssetSpec) -> dg.AssetSpec:
    return spec.replace_attributes(owners=OWNERS).merge_attributes(tags=tags_for(spec))


def _reference(fn: Callable, label: str | None = None) -> dg.LocalFileCodeReference:
    fn = inspect.unwrap(fn)  # the asset's own function, not clock.timed's wrapper around it
    return dg.LocalFileCodeReference(file_path=str(Path(inspect.getsourcefile(fn)).resolve()),
                                     line_number=inspect.getsourcelines(fn)[1], label=label)


def _referenced(spec: dg.AssetSpec, reference: dg.LocalFileCodeReference) -> dg.AssetSpec:
    return spec.merge_attributes(metadata={
        "dagster/code_references": dg.CodeReferencesMetadataValue(code_references=[reference])})


def annotate(assets: list, reported_by: dict[str, Callable]) -> list:
    """``assets`` with owners, tags and code references on every asset (checks-only definitions as they are).

    ``reported_by`` names, for each asset made outside Dagster (a bare :class:`dg.AssetSpec`, which
    has no function of its own), the function that records its materializations.
    """
    # with_source_code_references and the code reference types are beta in Dagster 1.13: the
    # warning would be printed on every load of the code location, and says nothing we can act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        annotated = []
        for item in assets:
            if isinstance(item, dg.AssetSpec):
                fn = reported_by[item.key.to_user_string()]
                item = _referenced(_owned(item), _reference(fn, f"reported by {fn.__name__}"))
            elif isinstance(item, dg.AssetsDefinition) and item.specs:  # not a checks-only definition
                item = item.map_asset_specs(_owned)
                if isinstance(item.node_def, dg.OpDefinition):
                    # not dg.with_source_code_references: through clock.timed's functools.wraps it
                    # names clock.py with the line of the asset's function in its own file
                    compute = item.node_def.compute_fn
                    reference = _reference(getattr(compute, "decorated_fn", compute))
                    item = item.map_asset_specs(lambda spec: _referenced(spec, reference))
                else:
                    item = dg.with_source_code_references([item])[0]
            annotated.append(item)
        return _linked_to_git(annotated)


def _linked_to_git(assets: list) -> list:
    """The local code references as links into the hosted repository, where there is one.

    Only where ``git remote get-url origin`` works in this checkout and names GitHub or GitLab (the
    hosts Dagster links to); elsewhere (no remote, as in a checkout made for a site, or an installed
    package) the references stay local files, which the UI opens in the editor.
    """
    remote = _remote()
    if remote is None:
        return assets
    url, platform, ref = remote
    mapping = dg.AnchorBasedFilePathMapping(local_file_anchor=_REPOSITORY / "pyproject.toml",
                                            file_anchor_path_in_repository="pyproject.toml")
    tree = f"{url}/-/tree/{ref}" if platform == "gitlab" else f"{url}/tree/{ref}"

    def linked(spec: dg.AssetSpec) -> dg.AssetSpec:  # an external asset: link_code_references_to_git skips specs
        references = [dg.UrlCodeReference(url=f"{tree}/{mapping.convert_to_source_control_path(Path(r.file_path))}"
                                              f"#L{r.line_number}", label=r.label)
                      for r in spec.metadata["dagster/code_references"].code_references]
        return spec.merge_attributes(metadata={
            "dagster/code_references": dg.CodeReferencesMetadataValue(code_references=references)})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.link_code_references_to_git(assets, git_url=url, git_branch=ref, file_path_mapping=mapping,
                                                platform=platform)
        return [linked(item) if isinstance(item, dg.AssetSpec) else item for item in assets]


@lru_cache(maxsize=1)
def _remote() -> tuple[str, str, str] | None:
    """(web URL, platform, branch or commit) of this checkout's ``origin``, or None."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(_REPOSITORY), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != _REPOSITORY:
            return None  # the package sits inside some other repository (a site-packages in a checkout)
        remote = git("remote", "get-url", "origin")
        ref = git("rev-parse", "--abbrev-ref", "HEAD")
        if ref == "HEAD":  # detached: the commit itself
            ref = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    web = web_url(remote)
    return None if web is None else (*web, ref)


def web_url(remote: str) -> tuple[str, str] | None:
    """(web URL, platform) of a GitHub or GitLab remote, else None: git@host:owner/repo.git,
    ssh://git@host[:port]/owner/repo.git and https://host/owner/repo.git all give https://host/owner/repo."""
    match = re.fullmatch(r"(?:[a-z+]+://)?(?:[^@/]+@)?([^:/]+)(?::\d+(?=/))?[:/](.+?)(?:\.git)?/?", remote)
    if match is None:
        return None
    host, path = match.groups()
    platform = "github" if "github" in host else "gitlab" if "gitlab" in host else None
    return None if platform is None else (f"https://{host}/{path}", platform)
