"""The one resource every asset uses: where the data lives and which site it describes."""


from datetime import datetime
from functools import cached_property
from pathlib import Path

import dagster as dg

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

    def hourly(self, asset: str, hour: datetime, ext: str = "parquet") -> Path:
        return storage.hourly_path(self.base, asset, hour, ext)

    def monthly(self, asset: str, month: datetime, ext: str = "parquet") -> Path:
        return storage.monthly_path(self.base, asset, month, ext)

    def window(self, asset: str, ext: str = "parquet") -> Path:
        return storage.window_path(self.base, asset, ext)

    def state_dir(self, asset: str) -> Path:
        return storage.state_dir(self.base, asset)

    def segmented(self, asset: str) -> Path:
        return storage.segmented_path(self.base, asset)

    def existing_hourly(self, asset: str, start: datetime, end: datetime, ext: str = "parquet") -> list[Path]:
        paths = (self.hourly(asset, h, ext) for h in storage.hours_between(start, end))
        return [p for p in paths if p.exists()]

    def existing_monthly(self, asset: str, ext: str = "parquet") -> list[Path]:
        return sorted((self.base / asset).glob(f"month=*.{ext}"))

    def inbound_files(self, hour: datetime) -> list[Path]:
        return storage.archive_files(self.base, [hour], list(INBOUND_TYPES))

    def archive_files(self, hours: list[datetime], flowtypes: list[int] | None = None) -> list[Path]:
        return storage.archive_files(self.base, hours, flowtypes)

    def report_dir(self) -> Path:
        site = self.site
        end = f"{site.end:%Y%m%d}" if site.end else "now"
        return self.base / "reports" / f"{site.start:%Y%m%d}-{end}"
