"""The one resource every asset uses: where the data lives and which site it describes."""


import time
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Iterable

import dagster as dg
from pydantic import PrivateAttr

from ... import artifacts
from ...artifacts import Artifact
from ...flows import objectstore, storage
from ...flows.flowtypes import INBOUND_TYPES
from ...flows.site import Site, resolve_site


class VlfStore(dg.ConfigurableResource):
    """Data directory (landing, archive, bags, sets, reports) and the site configuration."""

    data_dir: str = "data"
    site_config: str = ""  # path of a site TOML; empty: site.resolve_site's lookup ($VLF_SITE_CONFIG, data_dir/site.toml, packaged)
    quarantine_implausible: bool = True  # reject zero-packet and packets>bytes records at ingest
    # URL of the data's durable copy on object storage (flows.objectstore); empty: $VLF_OBJECT_STORE, else none
    object_store: str = ""

    # Files this execution handed out; those written since it began go to the object store at its end.
    _handed: set = PrivateAttr(default_factory=set)
    _began_ns: int = PrivateAttr(default_factory=time.time_ns)

    @property
    def base(self) -> Path:
        return Path(self.data_dir)

    @cached_property
    def site(self) -> Site:
        return resolve_site(self.site_config or None, self.base)

    @cached_property
    def remote(self) -> "objectstore.ObjectStore | None":
        return objectstore.from_setting(self.object_store, self.base)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._began_ns = time.time_ns() - 1_000_000_000  # a file written in this second counts as written

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Upload what the execution wrote (its steps succeeded or not: each file is whole)."""
        if self.remote is not None:
            written = [p for p in self._handed if _modified_since(p, self._began_ns)]
            sent = self.remote.push(sorted(written), changed=True)
            if context.log is not None and sent:
                context.log.info(f"{sent} file(s) uploaded to {self.remote.url}")

    def _hand(self, paths: Iterable[Path]) -> None:
        if self.remote is not None:
            self._handed.update(paths)

    def written(self, paths: Iterable[Path]) -> None:
        """Files a step wrote without asking for their path here (the archive's publish)."""
        self._hand(map(Path, paths))

    def path(self, artifact: Artifact, at: datetime | None = None) -> Path:
        """The artifact's file (or segmented folder) of the hour or month ``at``; fetched from the
        object store first when the local copy is missing or older."""
        path = artifact.path(self.base, at)
        if self.remote is not None:
            # An hour's file is read through existing() (one listing for all the hours): here it is
            # an output, and one request per hour of a week's batch would only find it absent.
            if artifact.grain != artifacts.HOURLY:
                self.remote.pull([path])
            self._hand([path])
        return path

    def existing(self, artifact: Artifact, start: datetime | None = None, end: datetime | None = None) -> list[Path]:
        if self.remote is not None:
            if artifact.grain == artifacts.WINDOW:
                self.remote.pull([artifact.path(self.base)])
            else:  # one listing of the artifact's folder, not one request per hour
                listed = self.remote.infos(self.base / artifact.name)
                if artifact.grain == artifacts.HOURLY:
                    hours = {artifact.path(self.base, h) for h in storage.hours_between(start, end)}
                    listed = {p: i for p, i in listed.items() if p in hours}
                self.remote.pull_listed(listed)
        return artifact.existing(self.base, start, end)

    def state_dir(self, step: Artifact | str) -> Path:
        return storage.state_dir(self.base, str(step))

    def fetch(self, inputs: Iterable[Artifact]) -> None:
        """Bring the inputs' files (the archive's: the site's window) into the local copy, for a
        step that reads them by the data directory's layout rather than through this resource."""
        if self.remote is None:
            return
        site = self.site
        for artifact in inputs:
            if artifact.format == "archive":
                self._pull_archive(storage.hours_between(site.start, site.window_end()), None)
            elif artifact.format != "landing":
                self.existing(artifact, site.start, site.window_end())

    def inbound_files(self, hour: datetime) -> list[Path]:
        return self.archive_files([hour], list(INBOUND_TYPES))

    def archive_files(self, hours: list[datetime], flowtypes: list[int] | None = None) -> list[Path]:
        if self.remote is not None:
            self._pull_archive(hours, flowtypes)
        return storage.archive_files(self.base, hours, flowtypes)

    def _pull_archive(self, hours: list[datetime], flowtypes: list[int] | None) -> None:
        """Fetch the archive files of these hours the local copy lacks: one listing per type and day."""
        stamps = {f"{h:%Y%m%d.%H}" for h in hours}
        for folder in storage.archive_day_folders(self.base, hours, flowtypes):
            listed = self.remote.infos(folder)
            self.remote.pull_listed({p: i for p, i in listed.items() if p.stem.rsplit("_", 1)[-1] in stamps})

    def report_dir(self) -> Path:
        return artifacts.report_dir(self.base, self.site)


def _modified_since(path: Path, since_ns: int) -> bool:
    try:
        if path.is_dir():
            return any(p.stat().st_mtime_ns >= since_ns for p in path.rglob("*") if p.is_file())
        return path.stat().st_mtime_ns >= since_ns
    except FileNotFoundError:
        return False
