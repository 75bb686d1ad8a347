"""What one rwfilter invocation asks for: :class:`FilterSpec` (its partitioning tests, in
rwfilter's argument syntax), the switches that exclude their ``--not-`` form, and
:class:`FilterError`, which every malformed argument raises."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ...sets import IPSet


class FilterError(ValueError):
    """A malformed filter argument; the message names the switch and the value."""


@dataclass
class FilterSpec:
    """The partitioning tests of one rwfilter invocation.

    Every field is optional; strings use rwfilter's argument syntax (e.g. ``sport="1024-"``,
    ``flags_all=["S/SA"]``, ``stime="2009/02/12:00-2009/02/12:05"``).  Set fields take a path to
    a ``.set`` file or an :class:`~vlf_dagster.flows.sets.IPSet`.  ``types`` and ``sensors`` are
    per-record tests (flowtype ids, sensor ids), used when the records come from files rather
    than the archive.
    """

    # IP wildcards / single address / CIDR
    saddress: str | None = None
    not_saddress: str | None = None
    daddress: str | None = None
    not_daddress: str | None = None
    any_address: str | None = None
    not_any_address: str | None = None
    next_hop_id: str | None = None
    not_next_hop_id: str | None = None
    # IP and CIDR lists
    scidr: str | None = None
    not_scidr: str | None = None
    dcidr: str | None = None
    not_dcidr: str | None = None
    any_cidr: str | None = None
    not_any_cidr: str | None = None
    nhcidr: str | None = None
    not_nhcidr: str | None = None
    # IP sets
    sipset: str | Path | IPSet | None = None
    not_sipset: str | Path | IPSet | None = None
    dipset: str | Path | IPSet | None = None
    not_dipset: str | Path | IPSet | None = None
    anyset: str | Path | IPSet | None = None
    not_anyset: str | Path | IPSet | None = None
    nhipset: str | Path | IPSet | None = None
    not_nhipset: str | Path | IPSet | None = None
    # integer lists
    sport: str | None = None
    dport: str | None = None
    aport: str | None = None
    protocol: str | None = None
    icmp_type: str | None = None
    icmp_code: str | None = None
    application: str | None = None
    input_index: str | None = None
    output_index: str | None = None
    any_index: str | None = None
    ip_version: str | None = None
    # TCP flags and attributes
    flags_all: list[str] = field(default_factory=list)
    flags_initial: list[str] = field(default_factory=list)
    flags_session: list[str] = field(default_factory=list)
    tcp_flags: str | None = None
    flag_bits: dict[str, str] = field(default_factory=dict)  # {"syn": "1", "ack": "0"}
    attributes: str | None = None
    # volume and time
    packets: str | None = None
    bytes: str | None = None
    bytes_per_packet: str | None = None
    duration: str | None = None
    stime: str | None = None
    etime: str | None = None
    active_time: str | None = None
    # selection switches acting as per-record tests (files / stdin input)
    types: list[int] | None = None
    sensors: list[int] | None = None

    def has_tests(self) -> bool:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None and value != [] and value != {}:
                return True
        return False


# Spec fields that cannot be combined with their own --not- form.
NEGATABLE = (
    "saddress", "daddress", "any_address", "next_hop_id",
    "scidr", "dcidr", "any_cidr", "nhcidr",
    "sipset", "dipset", "anyset", "nhipset",
)  # fmt: skip


def option_name(spec_field: str) -> str:
    return "--" + spec_field.replace("_", "-")
