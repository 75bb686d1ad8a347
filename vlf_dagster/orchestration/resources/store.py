"""The one resource every asset uses: where the data lives and which site it describes."""


from datetime import datetime
from functools import cached_property
from pathlib import Path

import dagster as dg

from ... import artifacts
from ...artifacts import Artifact
from ...flows import storage
from ...flows.flowtypes import INBOUND_TYPES
from ...flows.site import Site, resolve_site


class VlfStore(dg.ConfigurableResource):
    """Data directory (landing, archive, bags, sets, reports) and the site configuration."""

    data_dir: str = "data"
    site_config: str = ""  # path of a site TOML; empty: site.resolve_site's lookup ($VLF_SITE_CONFIG, data_dir/site.toml, packaged)
    quarantine_implausible: bool = True  # reject zero-packet and packets>bytes records at ingest

    @property
    def base(self) -> Path:
        return Path(self.data_dir)

    @cached_property
    def site(self) -> Site:
        return resolve_site(self.site_config or None, self.base)

    def path(self, artifact: Artifact, at: datetime | None = None) -> Path:
        """The artifact's file (or segmented folder) of the hour or month ``at``."""
        return artifact.path(self.base, at)

    def existing(self, artifact: Artifact, start: datetime | None = None, end: datetime | None = None) -> list[Path]:
        return artifact.existing(self.base, start, end)

    def state_dir(self, step: Artifact | str) -> Path:
        return storage.state_dir(self.base, str(step))

    def inbound_files(self, hour: datetime) -> list[Path]:
        return storage.archive_files(self.base, [hour], list(INBOUND_TYPES))

    def archive_files(self, hours: list[datetime], flowtypes: list[int] | None = None) -> list[Path]:
        return storage.archive_files(self.base, hours, flowtypes)

    def report_dir(self) -> Path:
        return artifacts.report_dir(self.base, self.site)
