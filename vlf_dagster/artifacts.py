"""The artifact catalogue: every file the study writes, declared once.

Each :class:`Artifact` says its name (which is also its Dagster asset key and, but for the archive,
its folder or file under the data directory), its grain (``hourly``, ``monthly`` or ``window``),
its format and what it holds.  Everything else derives from here: the store's paths
(:meth:`Artifact.path`), the SQL catalog's views (:meth:`Artifact.glob`), the report's inputs, the
asset keys, deps and groups, and the jobs' selections (:func:`of_grain`).

The layouts themselves (``dt=YYYY-MM-DD/hour=HH``, ``month=YYYY-MM``, SiLK's archive tree) are
:mod:`flows.storage`'s; this module imports no dagster, so the toolbox and the analysis may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .flows import storage

HOURLY, MONTHLY, WINDOW = "hourly", "monthly", "window"

# format -> file extension ("segmented" and "archive" are folders of Parquet files)
_EXTENSIONS = {"parquet": "parquet", "set": "set", "json": "json", "duckdb": "duckdb", "html": "html"}
# format -> the kinds the UI shows on the asset
_KINDS = {"set": "roaring", "segmented": "parquet", "archive": "parquet", "landing": "file", "model": "scikitlearn"}


@dataclass(frozen=True)
class Artifact:
    name: str
    grain: str  # HOURLY, MONTHLY or WINDOW
    format: str  # parquet, set (roaring IP set), json, segmented (flows/segments.py), archive, landing, duckdb, html,
    # model (a folder: the fitted classifier, its training rows, metrics and calibration figure)
    group: str  # the asset group in the UI
    description: str  # what it holds: the catalog's text, and the first sentence of the asset's
    detail: str = ""  # how it is made: the rest of the asset's description
    asset: bool = True  # False: a by-product of another asset (the quarantine), in the catalog only
    external: bool = False  # made outside Dagster (the landing input): an asset no job materializes
    file: str = ""  # a window artifact's file name under the data directory, where it is not NAME.EXT

    def __str__(self) -> str:
        return self.name

    @property
    def ext(self) -> str:
        return _EXTENSIONS.get(self.format, "parquet")

    @property
    def kinds(self) -> set[str]:
        return {_KINDS.get(self.format, self.format)}

    @property
    def asset_description(self) -> str:
        return f"{self.description} {self.detail}".strip()

    def path(self, base: str | Path, at: datetime | None = None) -> Path:
        """The file (or, for a segmented artifact, the folder) of the hour or month ``at``."""
        if self.grain == HOURLY and self.format not in ("archive", "landing"):
            return storage.hourly_path(base, self.name, _needs(at, self), self.ext)
        if self.grain == MONTHLY:
            return storage.monthly_path(base, self.name, _needs(at, self), self.ext)
        if self.file:
            return Path(base) / self.file
        if self.format == "segmented":
            return storage.segmented_path(base, self.name)
        if self.grain == WINDOW:
            return storage.window_path(base, self.name, self.ext)
        raise ValueError(f"{self.name}: files of the {self.format} layout are found with flows.storage")

    def glob(self) -> str:
        """Every file of the artifact, as a glob under the data directory."""
        if self.format == "archive":
            return storage.ARCHIVE_GLOB
        if self.grain == HOURLY:
            return storage.hourly_glob(self.name, self.ext)
        if self.grain == MONTHLY:
            return storage.monthly_glob(self.name, self.ext)
        return self.path(".").name

    def existing(self, base: str | Path, start: datetime | None = None, end: datetime | None = None) -> list[Path]:
        """The artifact's files that exist: an hourly one's in [start, end), every month's."""
        if self.grain == HOURLY:
            paths = (self.path(base, h) for h in storage.hours_between(start, end))
            return [p for p in paths if p.exists()]
        if self.grain == MONTHLY:
            return sorted(Path(base).glob(self.glob()))
        path = self.path(base)
        return [path] if path.exists() else []

    def state(self, base: str | Path) -> Path:
        """What the step that refreshes the artifact keeps between refreshes."""
        return storage.state_dir(base, self.name)


def _needs(at: datetime | None, artifact: Artifact) -> datetime:
    if at is None:
        raise ValueError(f"{artifact.name} is {artifact.grain}: which {artifact.grain.removesuffix('ly')}?")
    return at


# --- stage 1: the archive ------------------------------------------------------------------------

LANDING_FLOWS = Artifact(
    "landing_flows", HOURLY, "landing", "archive",
    "The hour's landing input (landing/dt=YYYY-MM-DD/hour=HH/: collector spools and imports), made outside Dagster.",
    "The landing sensor records a materialization for every hour whose files are new or changed; hourly_flows "
    "follows it.", external=True)
HOURLY_FLOWS = Artifact(
    "hourly_flows", HOURLY, "archive", "archive",
    "Every archived flow record (SiLK fields). One file per flowtype, sensor and hour.",
    "The hour's landing input packed into SiLK's archive layout, split by flowtype with the site's internal "
    "networks: archive/TYPE/YYYY/MM/DD/FLOWTYPE-SENSOR_YYYYMMDD.HH.parquet (e.g. "
    "archive/in/2006/04/01/in-S0_20060401.00.parquet); rejected records go to quarantine/.")
QUARANTINE = Artifact(
    storage.QUARANTINE_DIR, HOURLY, "parquet", "archive",
    "Landing records rejected at ingest, with the reason and the file:row they came from.", asset=False)

# --- stage 2: bags --------------------------------------------------------------------------------

HOURLY_SOURCE_BAGS = Artifact(
    "hourly_source_bags", HOURLY, "parquet", "bags",
    "Per outside source and hour: inbound records, packets, bytes.",
    "From the hour's inbound flows (in, inweb, inicmp), computed with the archive.")
HOURLY_CONTACT_PAIRS = Artifact(
    "hourly_contact_pairs", HOURLY, "parquet", "bags",
    "Per hour: the distinct (outside sIP, inside dIP) pairs with their flow counts.",
    "Exact, where SiLK needed a Bloom-filter plug-in.")
HOURLY_ACTIVE_HOSTS = Artifact(
    "hourly_active_hosts", HOURLY, "set", "bags",
    "Inside addresses active in the hour (sources of outbound and int2int flows), as an IP set file.")
MONTHLY_SOURCE_BAGS = Artifact(
    "monthly_source_bags", MONTHLY, "parquet", "bags",
    "Per outside source and month: records, packets, bytes, active hours.",
    "The month's hourly source bags added up; `hours` counts the hours each source was active.")
MONTHLY_CONTACT_PAIRS = Artifact(
    "monthly_contact_pairs", MONTHLY, "parquet", "bags",
    "Per month: the distinct (sIP, dIP) pairs with their flow counts.")
MONTHLY_ACTIVE_HOSTS = Artifact(
    "monthly_active_hosts", MONTHLY, "set", "bags", "Inside addresses active at some hour of the month.")
MONTHLY_TRAFFIC_VOLUMES = Artifact(
    "monthly_traffic_volumes", MONTHLY, "parquet", "bags",
    "Flows, packets and bytes per hour (sTime, ms) and flowtype: the archive summarised.",
    "What the Overall Traffic Volumes figure plots, without rescanning the archive.")
MONTHLY_PORT_USAGE = Artifact(
    "monthly_port_usage", MONTHLY, "parquet", "bags",
    "Flows per flowtype, protocol, side (s source port, d destination port) and port.",
    "Of the month's archive: what the Overall Port Usage table ranks.")
STUDY_MONTHS = Artifact(
    "study_months", WINDOW, "json", "bags",
    "The months rolled up so far, each monthly file with its size, rows and modification time.",
    "The one unpartitioned input of the window assets besides the months themselves. It follows every monthly "
    "materialization at once, so a month rolled up again shows the window assets as stale in the UI until their "
    "next refresh (Dagster tracks no staleness from a monthly asset to an unpartitioned one).")
SOURCE_FLOW_BAG = Artifact(
    "source_flow_bag", WINDOW, "parquet", "bags", "Flows per outside source over the window.",
    "(bag sIP -> records)")
SOURCE_HOUR_COUNT_BAG = Artifact(
    "source_hour_count_bag", WINDOW, "parquet", "bags",
    "Hours in which each outside source was active over the window.", "(the count-1 bags added up)")
SOURCE_DESTINATION_COUNT_BAG = Artifact(
    "source_destination_count_bag", WINDOW, "parquet", "bags",
    "Distinct inside destinations per outside source over the window.",
    "A refresh counts again only the sources whose pairs changed in a changed month, and keeps the "
    "contact-surface raster with it (.state/source_destination_count_bag).")

# --- stage 3: VLF sets and flows ----------------------------------------------------------------------

VLF_F_SET = Artifact(
    "vlf_f_set", WINDOW, "set", "vlf", "VLF-f: sources with 1..max_flows flows.",
    "Over the window (rwbagtool --maxcounter=10 --coverset).")
VLF_D_SET = Artifact(
    "vlf_d_set", WINDOW, "set", "vlf", "VLF-d: sources with 1..max_destinations destinations.",
    "Outside sources that contacted 1..max_destinations inside addresses.")
VLF_FD_SET = Artifact("vlf_fd_set", WINDOW, "set", "vlf", "VLF-fd: VLF-f and VLF-d.", "(rwsettool --intersect)")
ACTIVE_INSIDE_SET = Artifact(
    "active_inside_set", WINDOW, "set", "vlf", "Inside addresses that ever answered or originated.",
    "In the window: the months' active hosts united.")
LOW_FREQUENCY_FLOWS = Artifact(
    "monthly_low_frequency_flows", MONTHLY, "parquet", "vlf",
    "The month's inbound flows of every source with at most max_flows inbound flows that month.",
    "A VLF source has at most max_flows over the window, so at most that many in each month, and all its flows "
    "are here. vlf_flows reads these instead of the archive.")
LOW_FREQUENCY_ANSWERS = Artifact(
    "monthly_low_frequency_answers", MONTHLY, "parquet", "vlf",
    "The month's outbound flows to any address that is not a heavy source of the month.",
    "(more than max_flows inbound flows): every possible answer to a VLF source.")
VLF_FLOWS = Artifact(
    "vlf_flows", WINDOW, "segmented", "vlf", "Every inbound flow of the VLF-fd sources.",
    "Extracted by set membership (rwfilter --sipset=VLF-fd.set) from the months' low-frequency flows, which hold "
    "all of them: the window never rescans the archive. Kept segmented (data/vlf_flows/: base, removed rows, "
    "delta): a refresh extracts again only the sources that entered or left VLF-fd or whose flows changed in a "
    "changed month.")
VLF_OUTBOUND_FLOWS = Artifact(
    "vlf_outbound_flows", WINDOW, "segmented", "vlf", "Every outbound flow to the VLF-fd sources.",
    "(rwfilter --type=out,outweb,outicmp --dipset=VLF-fd.set), from the months' possible answers: what matching "
    "and the near-match search read. Segmented and refreshed by source like vlf_flows.")

# --- stage 4: matching ----------------------------------------------------------------------------

MATCHED_VLF_FLOWS = Artifact(
    "matched_vlf_flows", WINDOW, "segmented", "matching",
    "VLF flows and the outbound flows answering them, with rwmatch ids in nhIP.",
    "rwmatch of every VLF flow (query) with the outbound flows that answer it (response): reversed addresses and "
    "ports, same protocol, within the site's match_delta_ms. nhIP carries the match id (top byte 0x00 query, "
    "0xFF response; unmatched queries 0.0.0.0), so `vlf cut --fields=match,...` prints it in cutmatch layout. "
    "Segmented: a refresh matches again only the sources whose queries or answers changed (rwmatch's groups never "
    "mix sources), numbering their groups above every id given so far; the groups equal a full run's.")
VLF_CATEGORIES = Artifact(
    "vlf_categories", WINDOW, "segmented", "matching",
    "Each VLF flow's category: unmatched/matched TCP or UDP, ICMP, other.",
    "One row per VLF flow with its match id, its category and its source's flow count over the window. "
    "Segmented: a refresh categorizes again only the sources whose matched records changed.")

# --- scan detection (rwscan's models) ----------------------------------------------------------------

MONTHLY_SCANNERS = Artifact(
    "monthly_scanners", MONTHLY, "parquet", "scanners",
    "The month's scanning sources, one rwscan row each: sIP, proto, stime, etime, flows, packets, bytes, "
    "scan_model, scan_prob.",
    "rwscan's hybrid model (Threshold Random Walk, then logistic regression) over the month's inbound TCP, UDP "
    "and ICMP records, with the month's active inside hosts as TRW's internal set (vlf scan --scan-model=0).")
SCANNERS = Artifact(
    "scanners", WINDOW, "parquet", "scanners",
    "Every scanning source of the window: the months' rows with their month, by sIP and month.",
    "A source is a scanner of the window if some month calls it one; its rows say which months.")

# --- sources that will not return (the study's future work) -------------------------------------------

MONTHLY_SOURCE_PROFILES = Artifact(
    "monthly_source_profiles", MONTHLY, "parquet", "returns",
    "Per outside source and UTC day of the month: first and last seen, records, packets, bytes, hours, inside "
    "destinations, destination ports, TCP/UDP/ICMP records, and the outbound records answering it.",
    "From the month's inbound and outbound archive files, day by day: a refresh reads again only the days whose "
    "files changed. What the return model learns from.")
RETURN_MODEL = Artifact(
    "return_model", WINDOW, "model", "returns",
    "Which outside sources are seen again within returns.horizon_days: a gradient-boosted classifier "
    "(scikit-learn) over each source's history, with its training rows, metrics and calibration figure.",
    "Cutoffs every horizon_days from the window's first midnight; a row per source seen before a cutoff, labelled "
    "by whether it is seen within the horizon after it. The last backtest_cutoffs cutoffs are each judged by a model "
    "trained only on cutoffs whose horizon had passed (never peeking ahead), beside two rules: a one-flow source "
    "never returns, and a source unseen for the horizon will not return. Folder data/return_model/: model.pkl, "
    "training.parquet, metrics.json, calibration.png.", file="return_model")
RETIREMENT_SET = Artifact(
    "retirement_set", WINDOW, "parquet", "returns",
    "Sources predicted not to return within the horizon: address, first and last seen, flows, p_return and the "
    "confidence (1 - p_return).",
    "Every source seen before the data's last midnight whose predicted return probability is below "
    "returns.retire_below: what the live study can stop tracking.")

# --- stages 5 and 6: the report and the SQL catalog ---------------------------------------------------

VLF_REPORT = Artifact(
    "vlf_report", WINDOW, "html", "reports",
    "One HTML page with every table and figure of the study, with a table of contents.",
    "`data/reports/WINDOW/index.html` (WINDOW: the window's first and last day, YYYYMMDD-YYYYMMDD).",
    file="reports")  # the folder of every window's report; Site.report_folder names the window's
SQL_CATALOG = Artifact(
    "sql_catalog", WINDOW, "duckdb", "catalog",
    "data/catalog.duckdb: views over the archive (`flows`), the quarantine, the hourly, monthly and window bags and "
    "the VLF flows, the IP sets as a table, and macros (ip_text, flag_text, ms_time).",
    "Views read the Parquet files at query time; open it read-only: `vlf sql \"SELECT ...\"` or "
    "`duckdb -readonly data/catalog.duckdb`.", file="catalog.duckdb")

ARTIFACTS: tuple[Artifact, ...] = tuple(v for v in dict(globals()).values() if isinstance(v, Artifact))
BY_NAME = {a.name: a for a in ARTIFACTS}


def of_grain(grain: str) -> list[Artifact]:
    """The assets of one grain, in declaration order: a job's selection."""
    return [a for a in ARTIFACTS if a.grain == grain and a.asset and not a.external]


def names(artifacts) -> list[str]:
    return [a.name for a in artifacts]


def report_dir(base: str | Path, site) -> Path:
    """The folder of the report of ``site``'s window (its first and last day; an open window: now)."""
    end = f"{site.end:%Y%m%d}" if site.end else "now"
    return VLF_REPORT.path(base) / f"{site.start:%Y%m%d}-{end}"
