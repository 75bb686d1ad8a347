"""Site configuration: internal networks, sensors, the time window and VLF thresholds.

Loaded from TOML.  Lookup order: an explicit path, ``$VLF_SITE_CONFIG``, ``$VLF_DATA_DIR/site.toml``
(``data/site.toml`` by default), then the packaged ``site.default.toml``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

DEFAULT_CONFIG_NAME = "site.default.toml"


class SiteConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class VlfThresholds:
    max_flows: int = 10
    max_destinations: int = 1
    match_delta_ms: int = 2000  # rwmatch --time-delta for pairing VLF queries with answers

    def __post_init__(self):
        if self.max_flows < 1 or self.max_destinations < 1:
            raise SiteConfigError("vlf.max_flows and vlf.max_destinations must be >= 1")
        if self.match_delta_ms < 0:
            raise SiteConfigError("vlf.match_delta_ms must be >= 0")


@dataclasses.dataclass(frozen=True)
class ReturnSettings:
    """The return model (``return_model`` / ``retirement_set``): which sources will not be seen again."""

    horizon_days: int = 30  # a source "returns" when seen again within this many days of a cutoff
    retire_below: float = 0.1  # sources whose predicted return probability is below this are retired
    sample_sources: int = 100_000  # about this many sources per cutoff are sampled to train and test on
    backtest_cutoffs: int = 3  # the last cutoffs each judged by a model trained on the cutoffs before

    def __post_init__(self):
        if self.horizon_days < 1:
            raise SiteConfigError("returns.horizon_days must be >= 1")
        if not 0 < self.retire_below < 1:
            raise SiteConfigError("returns.retire_below must be between 0 and 1")
        if self.sample_sources < 100 or self.backtest_cutoffs < 1:
            raise SiteConfigError("returns.sample_sources must be >= 100 and returns.backtest_cutoffs >= 1")


@dataclasses.dataclass(frozen=True)
class AutomationSettings:
    """How the study keeps itself current where a Dagster daemon runs (``make ui``)."""

    enabled: bool = True  # the landing sensor and the automation sensor start running by themselves
    # Window assets (bags, sets, VLF flows, matching, report, catalog) refresh at most once per tick
    # of this cron, as soon as a month they read has changed.
    window_cron: str = "*/15 * * * *"
    landing_check_seconds: int = 60  # how often the landing sensor looks for new or changed hours
    evaluation_seconds: int = 30  # how often the automation conditions are evaluated

    def __post_init__(self):
        if len(str(self.window_cron).split()) != 5:
            raise SiteConfigError(f"automation.window_cron {self.window_cron!r}: expected five cron fields")
        if self.landing_check_seconds < 1 or self.evaluation_seconds < 1:
            raise SiteConfigError("automation.landing_check_seconds and evaluation_seconds must be >= 1")


@dataclasses.dataclass(frozen=True)
class Site:
    name: str
    internal_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    sensors: tuple[str, ...]
    start: datetime
    end: datetime | None
    web_ports: tuple[int, ...] = (80, 443, 8080)
    icmp_split: bool = True
    null_interface: int = -1
    vlf: VlfThresholds = VlfThresholds()
    returns: ReturnSettings = ReturnSettings()
    automation: AutomationSettings = AutomationSettings()
    source: str = "<defaults>"

    @property
    def ipv4_networks(self) -> list[tuple[int, int]]:
        """(network, netmask) integer pairs of the IPv4 internal networks."""
        return [
            (int(n.network_address), int(n.netmask))
            for n in self.internal_networks
            if n.version == 4
        ]

    @property
    def first_ipv4_network(self) -> ipaddress.IPv4Network | None:
        """The network the contact surface plots: the first IPv4 internal network, if any."""
        return next((n for n in self.internal_networks if n.version == 4), None)

    @property
    def ipv6_networks(self) -> list[ipaddress.IPv6Network]:
        return [n for n in self.internal_networks if n.version == 6]

    def sensor_id(self, name: str) -> int:
        try:
            return self.sensors.index(name)
        except ValueError:
            raise SiteConfigError(f"unknown sensor {name!r} (site sensors: {', '.join(self.sensors)})") from None

    def sensor_name(self, sensor_id: int) -> str:
        if 0 <= sensor_id < len(self.sensors):
            return self.sensors[sensor_id]
        return f"S{sensor_id}"

    def window_end(self) -> datetime:
        """The exclusive end of the window: ``end``, or the current hour for a live site."""
        return self.end or datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)

    def with_window(self, start: datetime, end: datetime | None) -> "Site":
        return dataclasses.replace(self, start=start, end=end)

    def with_horizon_for(self, days: int) -> "Site":
        """The site with a return horizon the window can learn: the model needs a few horizons of
        history, so a window shorter than four horizons gets one of a seventh of its days (at least
        one): a week's demo learns day by day, the study's 14 months keep their 30 days."""
        if days >= 4 * self.returns.horizon_days:
            return self
        return dataclasses.replace(self, returns=dataclasses.replace(self.returns, horizon_days=max(1, days // 7)))

    def to_toml(self) -> str:
        nets = ", ".join(f'"{n}"' for n in self.internal_networks)
        sensors = ", ".join(f'"{s}"' for s in self.sensors)
        lines = [
            f'name = "{self.name}"',
            f"internal_networks = [{nets}]",
            f"sensors = [{sensors}]",
            f'start = "{self.start:%Y-%m-%dT%H:%M}"',
        ]
        if self.end is not None:
            lines.append(f'end = "{self.end:%Y-%m-%dT%H:%M}"')
        lines += [
            f"web_ports = [{', '.join(str(p) for p in self.web_ports)}]",
            f"icmp_split = {'true' if self.icmp_split else 'false'}",
            f"null_interface = {self.null_interface}",
            "",
            "[vlf]",
            f"max_flows = {self.vlf.max_flows}",
            f"max_destinations = {self.vlf.max_destinations}",
            f"match_delta_ms = {self.vlf.match_delta_ms}",
            "",
            "[returns]",
            f"horizon_days = {self.returns.horizon_days}",
            f"retire_below = {self.returns.retire_below}",
            f"sample_sources = {self.returns.sample_sources}",
            f"backtest_cutoffs = {self.returns.backtest_cutoffs}",
            "",
            "[automation]",
            f"enabled = {'true' if self.automation.enabled else 'false'}",
            f'window_cron = "{self.automation.window_cron}"',
            f"landing_check_seconds = {self.automation.landing_check_seconds}",
            f"evaluation_seconds = {self.automation.evaluation_seconds}",
        ]
        return "\n".join(lines) + "\n"


def parse_utc(text: str, *, what: str = "time") -> datetime:
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        raise SiteConfigError(f"invalid {what} {text!r}: expected YYYY-MM-DDTHH:MM") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    if value.minute or value.second or value.microsecond:
        raise SiteConfigError(f"invalid {what} {text!r}: must fall on a whole hour")
    return value


def _section(settings: type, data: dict, name: str, source: str):
    """One [section] of the site file as its settings class; an unknown key or a bad value names the file."""
    try:
        return settings(**data.get(name, {}))
    except TypeError as exc:
        raise SiteConfigError(f"{source}: [{name}]: {exc}") from None
    except SiteConfigError as exc:
        raise SiteConfigError(f"{source}: {exc}") from None


def site_from_mapping(data: dict, *, source: str = "<mapping>") -> Site:
    known = {"name", "internal_networks", "sensors", "start", "end", "web_ports", "icmp_split", "null_interface", "vlf", "returns", "automation"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SiteConfigError(f"{source}: unknown setting(s): {', '.join(unknown)}")
    try:
        networks = tuple(ipaddress.ip_network(n, strict=True) for n in data.get("internal_networks", ["10.1.24.0/22"]))
    except ValueError as exc:
        raise SiteConfigError(f"{source}: internal_networks: {exc}") from None
    sensors = tuple(str(s) for s in data.get("sensors", ["S0"]))
    if not sensors or len(set(sensors)) != len(sensors):
        raise SiteConfigError(f"{source}: sensors must be a non-empty list of distinct names")
    start = parse_utc(data.get("start", "2006-04-01T00:00"), what=f"{source}: start")
    end = parse_utc(data["end"], what=f"{source}: end") if data.get("end") else None
    if end is not None and end <= start:
        raise SiteConfigError(f"{source}: end {end:%Y-%m-%dT%H:%M} is not after start {start:%Y-%m-%dT%H:%M}")
    vlf = _section(VlfThresholds, data, "vlf", source)
    returns = _section(ReturnSettings, data, "returns", source)
    automation = _section(AutomationSettings, data, "automation", source)
    return Site(
        name=str(data.get("name", "site")),
        internal_networks=networks,
        sensors=sensors,
        start=start,
        end=end,
        web_ports=tuple(int(p) for p in data.get("web_ports", (80, 443, 8080))),
        icmp_split=bool(data.get("icmp_split", True)),
        null_interface=int(data.get("null_interface", -1)),
        vlf=vlf,
        returns=returns,
        automation=automation,
        source=source,
    )


def data_dir() -> Path:
    return Path(os.environ.get("VLF_DATA_DIR", "data"))


SITE_FILE_NAME = "site.toml"  # the site of a data directory, as `vlf simulate` and `vlf demo-real` write it


def data_site_file(data: str | Path) -> Path:
    return Path(data) / SITE_FILE_NAME


def packaged_site() -> Site:
    """The packaged default site, whatever $VLF_SITE_CONFIG says."""
    return load_site(Path(str(resources.files("vlf_dagster").joinpath(DEFAULT_CONFIG_NAME))))


def site_config_path(explicit: str | Path | None = None, data: str | Path | None = None) -> Path | None:
    """The one lookup of the site file, for every part of vlf: ``explicit`` (an option or an
    argument), else ``$VLF_SITE_CONFIG``, else ``site.toml`` in the data directory (``data``, else
    ``$VLF_DATA_DIR`` or ``./data``), else None: the packaged default."""
    if explicit:
        return Path(explicit)
    if os.environ.get("VLF_SITE_CONFIG"):
        return Path(os.environ["VLF_SITE_CONFIG"])
    candidate = data_site_file(data if data is not None else data_dir())
    return candidate if candidate.exists() else None


def resolve_site(explicit: str | Path | None = None, data: str | Path | None = None) -> Site:
    """The site :func:`site_config_path` finds, loaded."""
    return load_site(site_config_path(explicit, data))


def load_site(path: str | Path | None = None) -> Site:
    path = Path(path) if path is not None else site_config_path()
    if path is None:
        text = resources.files("vlf_dagster").joinpath(DEFAULT_CONFIG_NAME).read_text()
        source = f"<packaged {DEFAULT_CONFIG_NAME}>"
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise SiteConfigError(f"cannot read site configuration {path}: {exc.strerror}") from None
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteConfigError(f"{source}: {exc}") from None
    return site_from_mapping(data, source=source)


SENSOR_MIN_WIDTH = 3  # rwcut's "sen": a sensor column is never narrower


def sensor_labels(ids, names):
    """:meth:`Site.sensor_name` over an array of sensor ids (a table lookup): an object array."""
    import numpy as np  # here, not at the top: the CLI imports this module before any verb

    ids = np.asarray(ids, dtype=np.int64)
    top = int(ids.max()) if len(ids) else 0
    labels = np.array(list(names) + [f"S{i}" for i in range(len(names), top + 1)], dtype=object)
    return labels[ids]


def sensor_width(names) -> int:
    """The width of a column of sensor names, as rwcut sizes it."""
    return max(SENSOR_MIN_WIDTH, max(map(len, names), default=0))
