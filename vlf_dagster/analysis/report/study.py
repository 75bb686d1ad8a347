"""Every table and figure of the study, as report parts over the window's artifacts.

:data:`PARTS` lists them in the study's order; the Dagster layer turns each into an asset and the
HTML report shows them in this order.  A part reads only the artifacts its ``deps`` name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from ...flows.flowtypes import INBOUND_TYPES, OUTBOUND_TYPES
from ...flows.sets import IPSet
from ...flows.site import Site
from ... import artifacts as A
from ...flows.storage import archive_files, hours_between, state_dir, write_bytes
from ..tables import figures as fig
from ..tables.bursts import port_bursts
from ..tables.categories import category_counts, without_scanners
from ..tables.destinations import contact_surface_of_counts, where_do_they_go
from ..tables.flags import flags_by_port, flags_for_top_ports, unmatched_tcp_flags
from ..tables.geography import geographic_distribution, geographic_side_by_side
from ..tables.ports import NUMEROLOGY_MIN_RATIO, overall_port_usage, port_numerology, ports_by_flow_bucket
from ..tables.protocols import icmp_table, other_protocols
from ..tables.returns import backtest_table, figure_of_merit, retirement_summary
from ..tables.sessions import matched_port_direction_counts, matched_ports, refresh_sessions
from ..steps import contacts
from ..tables import samples
from ...flows import registries
from .parts import PartResult, Piece
from ..steps.vlf import per_host_flow_distribution


@dataclass
class StudyInputs:
    """Lazy access to the window's artifacts for the report parts."""

    data_dir: Path
    site: Site
    folder: Path  # where the part writes its figures
    country_of: Callable[[np.ndarray], np.ndarray] | None = None  # uint32 -> country codes; None: no GeoIP
    geoip_status: str = ""
    extra: dict = field(default_factory=dict)

    def path(self, artifact: A.Artifact) -> Path:
        """A window artifact's file (or segmented folder)."""
        return artifact.path(self.data_dir)

    @cached_property
    def hours(self):
        return hours_between(self.site.start, self.site.window_end())

    def archive(self, flowtypes=None) -> list[Path]:
        return archive_files(self.data_dir, self.hours, flowtypes)

    def months(self, artifact: A.Artifact) -> list[Path]:
        """The window's files of a monthly ``artifact`` (one per month the window touches)."""
        months = sorted({f"{h:%Y-%m}" for h in self.hours})
        paths = (artifact.path(self.data_dir, datetime.strptime(m, "%Y-%m").replace(tzinfo=timezone.utc)) for m in months)
        return [p for p in paths if p.exists()]

    @property
    def inbound_files(self) -> list[Path]:
        return self.archive(list(INBOUND_TYPES))

    @property
    def outbound_files(self) -> list[Path]:
        return self.archive(list(OUTBOUND_TYPES))

    # The parts query these files in DuckDB, which reads only the columns each query names: no
    # part loads the 23 M categorized flows or the 30 M matched records whole.
    @property
    def categories(self) -> Path:
        return self.path(A.VLF_CATEGORIES)

    @property
    def matched(self) -> Path:
        return self.path(A.MATCHED_VLF_FLOWS)

    @cached_property
    def sessions(self) -> Path:
        """The matched sessions, kept per source and refreshed by the matched output's change log."""
        return refresh_sessions(self.matched, state_dir(self.data_dir, "matched_sessions")).directory

    @cached_property
    def active_inside(self) -> IPSet:
        return IPSet.read(self.path(A.ACTIVE_INSIDE_SET))

    def figure(self, name: str) -> Path:
        return self.folder / f"{name}.png"


@dataclass(frozen=True)
class Part:
    name: str
    title: str
    deps: tuple[A.Artifact, ...]  # what the part reads: its asset's deps
    build: Callable[[StudyInputs], list[Piece]]
    description: str = ""
    notes: tuple[str, ...] = ()
    geo: bool = False  # needs the GeoIP database

    def run(self, inputs: StudyInputs) -> PartResult:
        pieces = [piece.said_when_empty() for piece in self.build(inputs)]
        return PartResult(self.name, self.title, pieces, list(self.notes))


# --- parts -------------------------------------------------------------------------------------


def _per_host(inputs: StudyInputs) -> list[Piece]:
    df = per_host_flow_distribution(inputs.path(A.SOURCE_FLOW_BAG), inputs.site.vlf.max_flows)
    return [Piece("Per Host Flow Distribution", table=df, empty="No inbound flow from an outside source in the window.")]


def _vlf_sets(inputs: StudyInputs) -> list[Piece]:
    t = inputs.site.vlf
    rows = [
        ("VLF-f", f"1..{t.max_flows} flows", len(IPSet.read(inputs.path(A.VLF_F_SET)))),
        ("VLF-d", "exactly 1 destination" if t.max_destinations == 1 else f"1..{t.max_destinations} destinations", len(IPSet.read(inputs.path(A.VLF_D_SET)))),
        ("VLF-fd", "both", len(IPSet.read(inputs.path(A.VLF_FD_SET)))),
        ("active inside", "inside addresses that answered or originated", len(inputs.active_inside)),
    ]
    return [Piece("VLF sets", table=pd.DataFrame(rows, columns=["Set", "Definition", "Addresses"]))]


def _categories(inputs: StudyInputs) -> list[Piece]:
    pieces = [Piece("Flows of VLF sources by type of data", table=category_counts(inputs.categories))]
    found, among, table = without_scanners(inputs.categories, inputs.path(A.SCANNERS))
    if table is None:
        pieces.append(Piece("Read without scanners", empty=(
            f"rwscan's models call {found:,} sources of the window scanners; none of them is a VLF source, so the "
            "VLF tables read the same without scanners. (A VLF-fd source cannot be one: TRW needs misses on four "
            "distinct hosts, the logistic model 32 records; raising vlf.max_destinations can change that.)")))
    else:
        pieces.append(Piece(f"Without the {among:,} VLF sources rwscan calls scanners (of {found:,} scanners)", table=table))
    return pieces


def _port_usage(inputs: StudyInputs) -> list[Piece]:
    usage = overall_port_usage(inputs.months(A.MONTHLY_PORT_USAGE))  # the archive's counts, summarised by month
    return [Piece("Overall Port Usage (top 20 by flows, inbound and outbound)", table=usage,
                  empty="No TCP or UDP flow crossed the border in the window.")]


def _unmatched_flags(inputs: StudyInputs) -> list[Piece]:
    return [Piece("Unmatched TCP flag combinations", table=unmatched_tcp_flags(inputs.categories),
                  empty=_NO_UNMATCHED.format(label="TCP"))]


def _tcp_buckets(inputs: StudyInputs) -> list[Piece]:
    return [Piece("VLF TCP destination ports by flows per source (unmatched TCP)",
                  table=ports_by_flow_bucket(inputs.categories, "unmatched TCP"), empty=_NO_UNMATCHED.format(label="TCP"))]


def _udp_buckets(inputs: StudyInputs) -> list[Piece]:
    return [Piece("VLF UDP destination ports by flows per source (unmatched UDP)",
                  table=ports_by_flow_bucket(inputs.categories, "unmatched UDP"), empty=_NO_UNMATCHED.format(label="UDP"))]


def _flags_top_ports(inputs: StudyInputs) -> list[Piece]:
    long = flags_for_top_ports(inputs.categories, top_ports=10, bucket=1)
    return [Piece("TCP flags of the ten busiest unmatched TCP ports among sources with a single flow",
                  table=flags_by_port(long),
                  empty="No unmatched TCP flow of a VLF source that sent a single flow in the window.")]


def _where(inputs: StudyInputs) -> list[Piece]:
    pieces = []
    for protocol, label, category in ((6, "TCP", "unmatched TCP"), (17, "UDP", "unmatched UDP")):
        for buckets, text in (((1, 1), "1 flow per host"), ((1, 10), "1-10 flows per host")):
            df = where_do_they_go(inputs.categories, inputs.active_inside, protocol=protocol, buckets=buckets, category=category)
            pieces.append(Piece(f"Where do they go: unmatched {label}, {text}", table=df,
                                empty=f"No unmatched {label} flow of a VLF source with {text} in the window."))
    return pieces


def _matched_ports(inputs: StudyInputs) -> list[Piece]:
    return [Piece(f"Top 20 matched {label} ports (1 - 10 flows)", table=matched_ports(inputs.sessions, protocol=p),
                  empty=f"No {label} flow of a VLF source was answered in the window.")
            for p, label in ((6, "TCP"), (17, "UDP"))]


def _numerology(inputs: StudyInputs) -> list[Piece]:
    return [Piece(f"Port numerology: matched {label} ports that stand out from their neighbours",
                  table=port_numerology(inputs.matched, protocol=p),
                  empty=f"No matched {label} port counts {NUMEROLOGY_MIN_RATIO:g} times the median of its occurring "
                        "neighbours (within 10 port numbers), or no flow was matched.")
            for p, label in ((17, "UDP"), (6, "TCP"))]



def _traffic(inputs: StudyInputs) -> list[Piece]:
    path = fig.traffic_volumes(inputs.months(A.MONTHLY_TRAFFIC_VOLUMES), inputs.figure("traffic_volumes"))
    return [Piece("Flows, packets and bytes per hour (all flowtypes)", figure=path)]


def _contact_surface(inputs: StudyInputs) -> list[Piece]:
    # the figure reads the months' pair bags in DuckDB; the count and the table come from the
    # distinct destinations per source (no second pass over the pairs, no pairs in pandas)
    counts = inputs.path(A.SOURCE_DESTINATION_COUNT_BAG)
    network = inputs.site.first_ipv4_network
    kept = contacts.contact_raster(A.SOURCE_DESTINATION_COUNT_BAG.state(inputs.data_dir), counts, network)
    if kept is not None and kept[1] > fig.SCATTER_LIMIT:  # the raster the bag's refresh keeps: no pass over the pairs
        path = fig.save_png(fig.contact_surface_raster_figure(*kept, network), inputs.figure("contact_surface"))
    else:
        path = fig.contact_surface(inputs.months(A.MONTHLY_CONTACT_PAIRS), inputs.figure("contact_surface"), inputs.site)
    table = contact_surface_of_counts(counts)
    pairs = int((table["Destinations"] * table["Sources"]).sum())
    return [Piece(f"Contact surface: {pairs:,} unique (outside sIP, inside dIP) pairs", figure=path),
            Piece("Sources by number of inside destinations contacted", table=table,
                  empty="No outside source reached an inside address in the window.")]


def _samples(inputs: StudyInputs) -> list[Piece]:
    ones = samples.one_flow_sample_table(inputs.categories)
    candidates = samples.refresh_sample_candidates(inputs.matched, state_dir(inputs.data_dir, "report_samples"))
    matched = samples.matched_sample_of_candidates(candidates)
    return [Piece("A small sample of 1 flow / host data",
                  text=samples.one_flow_text(ones) if ones.num_rows else None,
                  empty="No VLF source sent a single flow in the window."),
            Piece("A sample of matched flows", text=matched if candidates.rows else None,
                  note="-> query (outside to inside), <- response; the number is the match id.",
                  empty="No flow of a VLF source in the window, so no matched flows to sample.")]


def _top_ports(inputs: StudyInputs, category: str, n: int) -> list[int]:
    table = ports_by_flow_bucket(inputs.categories, category, top=n)
    return [int(p) for p in table["Port (1 - 10 flows)"].tolist() if pd.notna(p) and p != ""]


def _timelines(inputs: StudyInputs) -> list[Piece]:
    pieces = []
    for protocol, label, category in ((6, "TCP", "unmatched TCP"), (17, "UDP", "unmatched UDP")):
        ports = _top_ports(inputs, category, 10)
        path = fig.port_timeline(inputs.categories, ports, inputs.figure(f"timeline_{label.lower()}"),
                                 protocol=protocol, category=category, title=f"Unmatched {label}: top 10 ports over time")
        pieces.append(Piece(f"When did they happen? Unmatched {label}, top 10 ports", figure=path))
    return pieces


def _transient(inputs: StudyInputs) -> list[Piece]:
    pieces = []
    for protocol, label, category in ((6, "TCP", "unmatched TCP"), (17, "UDP", "unmatched UDP")):
        ports = _top_ports(inputs, category, 10)
        bursts, hourly = port_bursts(inputs.categories, ports, inputs.site.start, inputs.site.window_end(),
                                     protocol=protocol, category=category, country_of=inputs.country_of,
                                     cache=state_dir(inputs.data_dir, "port_bursts") / label.lower())
        spans = bursts.attrs.pop("hours")
        path = fig.plot_port_bursts(hourly, spans, inputs.figure(f"bursts_{label.lower()}"),
                                    title=f"Unmatched {label}: bursts of the top 10 ports")
        pieces.append(Piece(f"Bursts of the top 10 unmatched {label} ports", table=bursts,
                            empty=f"No burst: the flows per hour of the top 10 unmatched {label} ports never rose "
                                  "well above their baseline for less than half the window.",
                            note=inputs.geoip_status if inputs.country_of is not None else
                            f"Countries not available: {inputs.geoip_status}"))
        pieces.append(Piece(f"Unmatched {label}: the top 10 ports hour by hour, bursts boxed", figure=path))
    return pieces


def _direction_plots(inputs: StudyInputs) -> list[Piece]:
    pieces = []
    for protocol, label in ((6, "TCP"), (17, "UDP")):
        counts = matched_port_direction_counts(inputs.sessions, protocol=protocol)
        counts = counts.rename(columns={"O->E": "OtoE", "E->O": "EtoO"})
        path = fig.port_direction_plot(counts, inputs.figure(f"ports_{label.lower()}_direction"), label)
        pieces.append(Piece(f"Matched {label} sessions per port, by who opened them", figure=path))
    return pieces


def _near_matches(inputs: StudyInputs) -> list[Piece]:
    # a near match answers a VLF source: vlf_outbound_flows holds every outbound flow to one. The
    # window's near matches are kept per source and searched again only where the flows changed.
    groups = samples.refresh_near_matches(inputs.path(A.VLF_FLOWS), inputs.path(A.VLF_OUTBOUND_FLOWS),
                                          state_dir(inputs.data_dir, "report_malformed"),
                                          time_delta_ms=inputs.site.vlf.match_delta_ms)
    found = samples.first_near_matches(groups, 20)
    return [Piece("Near matches: answers whose ports do not mirror the query",
                  text=samples.near_matches_text(found) if found.num_rows else None,
                  empty="No near match: every outbound flow to a VLF source within the match delta mirrors its query's ports.")]



NO_INFORMATION = "No information available."
_NO_UNMATCHED = "No unmatched {label} flow of a VLF source in the window."


def _port_descriptions(inputs: StudyInputs) -> list[Piece]:
    pieces = []
    for protocol, label, category in ((6, "TCP", "unmatched TCP"), (17, "UDP", "unmatched UDP")):
        rows = []
        for port in _top_ports(inputs, category, 10):
            found = registries.describe_port(port, protocol)
            rows.append((port, found.name or "", found.description or found.name or NO_INFORMATION, found.source or ""))
        pieces.append(Piece(f"Top 10 unmatched {label} ports",
                            table=pd.DataFrame(rows, columns=["Port", "Service", "Description", "Source"]),
                            empty=_NO_UNMATCHED.format(label=label) + " No port to describe.",
                            note="IANA: the IANA port registry as Debian's netbase ships it (/etc/services), asked "
                                 "first; Nmap: Nmap's list of ports seen in use, with well-known unofficial ones "
                                 "(Debian's nmap-common, /usr/share/nmap/nmap-services)."))
    return pieces


def _countries(inputs: StudyInputs) -> Callable[[np.ndarray], np.ndarray]:
    if inputs.country_of is not None:
        return inputs.country_of
    return lambda ips: np.full(len(ips), "-", dtype=object)


def _geography(inputs: StudyInputs) -> list[Piece]:
    if inputs.country_of is None:
        return [Piece("Geographical distribution", text=f"Not available: {inputs.geoip_status}")]
    ports = _top_ports(inputs, "unmatched TCP", 10)
    long = geographic_distribution(inputs.categories, inputs.country_of, ports, top=10)
    pieces = []
    for chunk in (ports[:5], ports[5:10]):
        if chunk:
            pieces.append(Piece(f"Top 10 countries for ports {', '.join(map(str, chunk))} (unmatched TCP, 1-10 flows)",
                                table=geographic_side_by_side(long[long["Port"].isin(chunk)])))
    if not pieces:
        return [Piece("Geographical distribution", text="No unmatched TCP flows of VLF sources in the window.")]
    pieces[-1].note = inputs.geoip_status
    return pieces


def _icmp(inputs: StudyInputs) -> list[Piece]:
    return [Piece("ICMP type and code of VLF flows", table=icmp_table(inputs.categories, registries.icmp_meaning),
                  empty="No ICMP flow from a VLF source in the window.",
                  note="Meanings from the IANA ICMP parameters registry; codes the registry does not define are invalid.")]


def _other_protocols(inputs: StudyInputs) -> list[Piece]:
    describe = lambda n: registries.protocol_description(n) or registries.protocol_name(n)  # noqa: E731
    return [Piece("Other protocols", table=other_protocols(inputs.categories, describe, _countries(inputs)),
                  empty="No VLF source sent anything but TCP, UDP and ICMP in the window.",
                  note="Implausible: fewer than 20 or more than 65535 bytes per packet, or more than a million packets in a flow. "
                  "Names from IANA's protocol numbers registry and Debian's /etc/protocols.")]


def _returns(inputs: StudyInputs) -> list[Piece]:
    import json

    from ..steps.returns import CALIBRATION_FILE, METRICS_FILE

    folder = inputs.path(A.RETURN_MODEL)
    metrics = json.loads((folder / METRICS_FILE).read_text())
    return [
        Piece("Backtest: the model beside the rules", table=backtest_table(metrics), note=figure_of_merit(metrics),
              empty=f"No backtest: {metrics['status']}."),
        # the figure return_model drew of the same bins, copied into the part's folder
        Piece("Calibration at the last backtest cutoff",
              figure=write_bytes((folder / CALIBRATION_FILE).read_bytes(), inputs.figure("calibration")))
        if metrics["backtest"] else Piece("Calibration at the last backtest cutoff", empty="No backtest, no calibration."),
        Piece("Retirement set at the data's end", table=retirement_summary(inputs.path(A.RETIREMENT_SET))),
    ]


PARTS: list[Part] = [
    Part("report_traffic_volumes", "Overall Traffic Volumes", (A.MONTHLY_TRAFFIC_VOLUMES,), _traffic,
         "Flows, packets and bytes over time."),
    Part("report_overall_port_usage", "Overall Port Usage", (A.MONTHLY_PORT_USAGE,), _port_usage,
         "Top 20 TCP and UDP source and destination ports by flows over the whole window."),
    Part("report_per_host_flow_distribution", "Per Host Flow Distribution", (A.SOURCE_FLOW_BAG,), _per_host,
         "Sources and flows for 1..10 flows per source, 1...100, > 100 and the total.",
         ("Outside sources by the number of inbound flows they sent over the window.",
          "As in the study, the 1...100 and > 100 rows repeat their own share in the cumulative columns.")),
    Part("report_vlf_sets", "VLF sets", (A.VLF_F_SET, A.VLF_D_SET, A.VLF_FD_SET, A.ACTIVE_INSIDE_SET), _vlf_sets,
         "Sizes of the VLF sets and of the active inside set."),
    Part("report_contact_surface", "Contact surface", (A.MONTHLY_CONTACT_PAIRS, A.SOURCE_DESTINATION_COUNT_BAG), _contact_surface,
         "Unique (outside sIP, inside dIP) pairs over the window (figure) and sources by number of destinations."),
    Part("report_samples", "Samples", (A.VLF_CATEGORIES, A.MATCHED_VLF_FLOWS), _samples,
         "A sample of 1-flow sources in rwcut layout and of matched flows in cutmatch layout."),
    Part("report_vlf_categories", "Details by type of data", (A.VLF_CATEGORIES, A.SCANNERS), _categories,
         "VLF flows split into unmatched TCP, unmatched UDP, matched TCP, matched UDP, ICMP and other."),
    Part("report_unmatched_tcp_flags", "Unmatched TCP flag combinations", (A.VLF_CATEGORIES,), _unmatched_flags,
         "Rank, flags, count and percent of the unmatched TCP flows of VLF sources."),
    Part("report_unmatched_tcp_ports", "Unmatched TCP port usage", (A.VLF_CATEGORIES,), _tcp_buckets,
         "Top 20 destination ports of unmatched TCP by the source's flow bucket (1, 2-4, 5-7, 8-10, 1-10)."),
    Part("report_tcp_flags_top_ports", "TCP flags for the top 10 ports at 1 flow / host", (A.VLF_CATEGORIES,), _flags_top_ports,
         "Flag combinations of the ten busiest unmatched TCP ports among 1-flow sources."),
    Part("report_port_descriptions", "Port usage for the top ports", (A.VLF_CATEGORIES,), _port_descriptions,
         "Service names of the top unmatched TCP and UDP ports from a real registry."),
    Part("report_where_do_they_go", "Where do they go", (A.VLF_CATEGORIES, A.ACTIVE_INSIDE_SET), _where,
         "Per port: flows, hits (destination exists), misses, distinct destinations and those that exist.",
         ("A hit is a flow whose destination is in active_inside_set (inside addresses that ever answered or originated).",)),
    Part("report_port_timelines", "Temporal distribution", (A.VLF_CATEGORIES,), _timelines,
         "Flows per day (or hour) of the top unmatched TCP and UDP ports over the window."),
    Part("report_transient_ports", "Transient port activity", (A.VLF_CATEGORIES,), _transient,
         "Bursts of the top unmatched TCP and UDP ports: when each starts, peaks and ends, and its sources and countries.",
         ("Found by change-point detection (ruptures' bottom-up segmentation, least squares) on the Anscombe "
          "transform 2 sqrt(y + 3/8) of each port's flows per hour, a break costing 3 sigma^2 ln(hours) (sigma: the "
          "noise, from the hour-to-hour differences, at least 1). A burst is a run of segments whose mean is 4 "
          "standard errors above the median level and whose flows per hour are 1.5 times the baseline's (runs 2 hours "
          "apart or less joined), its ends placed again by the exact fit of two breaks around it (ruptures' Dynp); "
          "kept when shorter than half the window, with 20 flows above the baseline and 10 sources or more.",
          "Start: its first hour; End: the hour after its last (UTC); Peak: its busiest hour. Baseline: the port's "
          "median flows per hour outside its bursts. Top sources: address (flows in the burst); Top countries: "
          "code (sources in the burst)."), geo=True),
    Part("report_geography", "Geographical distribution", (A.VLF_CATEGORIES,), _geography,
         "Top 10 source countries per top unmatched TCP port (GeoIP2 country database).", geo=True),
    Part("report_udp_ports", "UDP per port volumes", (A.VLF_CATEGORIES,), _udp_buckets,
         "Top 20 destination ports of unmatched UDP by the source's flow bucket."),
    Part("report_matched_ports", "Matched TCP and UDP", (A.MATCHED_VLF_FLOWS,), _matched_ports,
         "Matched sessions per port with who originated them (O: outside, E: enterprise).",
         ("O: the outside host opened the session, E: the inside (enterprise) host did; the port is the one it "
          "opened the session to. The opener is the side the exporter names (SiLK's application field: the "
          "service port; the Zeek importer keeps Zeek's originator so), else the earlier start, else the first "
          "packet's SYN without ACK, else the side going from an ephemeral port to a well-known one. "
          "O count / E count are distinct outside / inside addresses.",)),
    Part("report_port_directions", "Matched sessions per port, by who opened them", (A.MATCHED_VLF_FLOWS,), _direction_plots,
         "Matched low-frequency sessions per port by who originated them."),
    Part("report_port_numerology", "Port numerology", (A.MATCHED_VLF_FLOWS,), _numerology,
         "Ports whose counts stand out from their neighbours in the matched low-frequency data, scored for interesting numbers.",
         ("A port stands out when its matched records (counted under source and destination port) number at least "
          "3 times the median of the occurring ports within 10 port numbers of it (Ratio).",
          "Interest scores the numbers a person picks: 1 point per trailing zero; one per digit when all are equal, "
          "else 1 per digit of a run of 3 or more beyond the second; palindromes and counting sequences of 3 digits or "
          "more: their length less 2; a repeated 2- or 3-digit block: 2; special numbers (65535, 1024, 32768, ...): 3; "
          "powers of two and 2^k - 1: 2. Rows are ranked by Interest, then Ratio, so 55555 or 52525 lead ordinary "
          "ports that merely stand out.")),
    Part("report_icmp", "ICMP", (A.VLF_CATEGORIES,), _icmp,
         "ICMP type, code, count, rank and meaning; invalid codes marked."),
    Part("report_other_protocols", "Other protocols", (A.VLF_CATEGORIES,), _other_protocols,
         "Protocols other than TCP, UDP and ICMP: countries, flows, packets, bytes; implausible volumes flagged.", geo=True),
    Part("report_malformed", "Malformed traffic", (A.VLF_FLOWS, A.VLF_OUTBOUND_FLOWS), _near_matches,
         "Near matches in cutmatch layout: a response whose ports do not mirror the query's."),
    Part("report_returns", "Sources that will not return", (A.RETURN_MODEL, A.RETIREMENT_SET), _returns,
         "Which outside sources are not seen again within the horizon: the model's backtest beside two rules, its "
         "calibration, and how far retiring its predictions shrinks the tracked state.",
         ("Cutoffs every returns.horizon_days days from the window's first midnight; each source seen before a cutoff "
          "is a row, labelled by whether it is seen again within the horizon after it. Each backtest cutoff is judged by "
          "a model trained only on cutoffs whose horizon had passed by then, on a sample of the sources (about "
          "returns.sample_sources per cutoff, by a hash of the address).",
          "Precision: of the retired, the share not seen within the horizon; Recall: of those not seen, the share "
          "retired; AUC: of each method's score for \"will not return\" (the model's 1 - p_return, the rules' "
          "one-flow flag and hours since last seen). State shrink: the share of the tracked sources retired; missed "
          "returns: retired sources seen again within the horizon. The model retires a source when its predicted "
          "return probability is below returns.retire_below.")),
]
