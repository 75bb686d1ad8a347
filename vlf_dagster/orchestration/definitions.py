"""The Dagster code location: assets, checks, jobs, the hourly schedule and the store resource.

``dagster dev -w workspace.yaml`` loads :data:`defs`.  The site (and so the partitions) comes from
``$VLF_SITE_CONFIG``, else ``$VLF_DATA_DIR/site.toml`` (written by ``vlf simulate``), else the
packaged default.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .assets import build_assets
from .assets.automation import automation_sensor, with_automation
from .ownership import annotate
from .partitions import study_partitions
from ..flows.site import data_dir, resolve_site
from .resources import GeoIPResource, VlfStore
from .jobs import build_jobs
from .schedules import build_hourly_schedule
from .sensors import build_landing_sensor
from .. import artifacts as A


def build_definitions(data: str | Path | None = None, site_config: str | Path | None = None) -> dg.Definitions:
    data = Path(data) if data is not None else data_dir()
    site = resolve_site(site_config, data)
    parts = study_partitions(site)
    assets = with_automation(build_assets(parts), site.automation, site.source)
    # owners, grain and stage tags and code references, on every asset here rather than in each asset file
    assets = annotate(assets, reported_by={A.LANDING_FLOWS.name: build_landing_sensor})

    hourly_job, monthly_job, window_job = build_jobs()
    hourly_schedule = build_hourly_schedule(hourly_job)
    landing_sensor = build_landing_sensor(data, parts.hourly, site.automation)
    return dg.Definitions(
        assets=assets,
        jobs=[hourly_job, monthly_job, window_job],
        schedules=[hourly_schedule],
        sensors=[landing_sensor, automation_sensor(site.automation)],
        resources={
            "store": VlfStore(data_dir=str(data), site_config=str(site_config or "")),
            "geoip": GeoIPResource(),  # $VLF_GEOIP_DB or data/geoip/country.mmdb; missing: the report says so
        },
        executor=dg.in_process_executor,
    )


defs = build_definitions()
