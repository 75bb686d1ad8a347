"""Port, protocol and ICMP names from real registries, never from a hand-typed list.

* Services (port -> name): Debian netbase's ``/etc/services`` (IANA-derived), first entry per
  (port, protocol) wins as with ``getservbyport``; ``$VLF_SERVICES_FILE`` or a ``path`` argument
  overrides the file.
* IP protocols (number -> name, description): the system keyword from ``/etc/protocols``
  (``$VLF_PROTOCOLS_FILE``), the description and the assigned/unassigned/reserved ranges from
  IANA's "Assigned Internet Protocol Numbers" registry shipped as package data
  (``vlf_dagster/data/protocol-numbers.xml``): netbase leaves out historical protocols
  (25 LEAF-1, 54 NARP, 64 SAT-EXPAK, ...) that the study's "other protocols" table names.
* ICMP types and codes: IANA's icmp-parameters registry shipped as package data
  (``vlf_dagster/data/icmp-parameters.xml``).

Every registry is parsed once and cached.  A missing or unreadable registry file gives one
:class:`RegistryWarning` per path and empty (``None``) answers, never an exception.
"""

from __future__ import annotations

import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SERVICES_FILE = "/etc/services"
PROTOCOLS_FILE = "/etc/protocols"
ICMP_REGISTRY_FILE = DATA_DIR / "icmp-parameters.xml"
PROTOCOL_REGISTRY_FILE = DATA_DIR / "protocol-numbers.xml"
SERVICES_ENV = "VLF_SERVICES_FILE"
# Nmap's list of ports seen in use, with the well-known unofficial ones IANA leaves out (eDonkey
# 4662, Half-Life 27015): Debian's nmap-common.  The second source, after IANA's.
NMAP_SERVICES_FILE = "/usr/share/nmap/nmap-services"
NMAP_SERVICES_ENV = "VLF_NMAP_SERVICES_FILE"
IANA_SOURCE = "IANA"
NMAP_SOURCE = "Nmap"
PROTOCOLS_ENV = "VLF_PROTOCOLS_FILE"

INVALID_CODE = "(Invalid code)"
UNASSIGNED_TYPE = "Unassigned type"
UNASSIGNED = "Unassigned"

_IANA_NS = "{http://www.iana.org/assignments}"
_REFERENCE = re.compile(r"\s*\[[^\]]*\]")
_DEPRECATED = re.compile(r"\s*\((?i:deprecated)\)\s*$")
_WORD = re.compile(r"[a-z]+")
_STOPWORDS = frozenset({"the", "for", "and", "with", "was", "not", "any"})


class RegistryWarning(UserWarning):
    """A registry file is missing or unreadable: lookups from it answer ``None``."""


_warned: set[str] = set()


def _read_text(path: Path, kind: str, hint: str) -> str | None:
    """The file's text, or None with a one-time warning naming the path."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        key = f"{kind}:{path}"
        if key not in _warned:
            _warned.add(key)
            reason = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc.strerror or exc})"
            warnings.warn(
                f"{kind} registry {path} {reason}: {hint}; {kind} names will be empty",
                RegistryWarning,
                stacklevel=4,
            )
        return None


def _squash(text: str | None) -> str:
    return " ".join((text or "").split())


def _range(value: str) -> range:
    """'3' -> range(3, 4); '20-29' -> range(20, 30)."""
    lo, _, hi = value.strip().partition("-")
    return range(int(lo), int(hi or lo) + 1)


# --------------------------------------------------------------------------------------------
# services
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One ``/etc/services`` line: ``name port/protocol aliases... # comment``."""

    name: str
    port: int
    protocol: str  # "tcp", "udp", ...
    aliases: tuple[str, ...] = ()
    comment: str | None = None

    @property
    def description(self) -> str | None:
        """The comment without bracketed references, e.g. 'Microsoft Naked CIFS'."""
        text = _squash(_REFERENCE.sub("", self.comment or ""))
        return text or None


class ServiceRegistry:
    """Services by (port, protocol) and by name; the first line for a key wins."""

    def __init__(self, entries: Iterable[Service] = (), source: str = "<services>"):
        self.source = source
        self._by_port: dict[tuple[int, str], Service] = {}
        self._by_name: dict[tuple[str, str], Service] = {}
        for entry in entries:
            self._by_port.setdefault((entry.port, entry.protocol), entry)
            for name in (entry.name, *entry.aliases):
                self._by_name.setdefault((name, entry.protocol), entry)

    @classmethod
    def parse(cls, text: str, source: str = "<text>", *, nmap: bool = False) -> ServiceRegistry:
        """``/etc/services`` lines, or with ``nmap`` nmap-services lines (``name port/proto
        frequency # comment``: no aliases; the ports Nmap names ``unknown`` are left out)."""
        entries = []
        for line in text.splitlines():
            body, _, comment = line.partition("#")
            fields = body.split()
            if len(fields) < 2 or (nmap and fields[0] == "unknown"):
                continue
            port, slash, proto = fields[1].partition("/")
            if not slash or not port.isdigit() or not proto:
                continue
            aliases = () if nmap else tuple(fields[2:])
            entries.append(Service(fields[0], int(port), proto.lower(), aliases, comment.strip() or None))
        return cls(entries, source)

    @classmethod
    def load(cls, path: str | os.PathLike, *, nmap: bool = False) -> ServiceRegistry:
        hint = ("install Debian's nmap-common or set $" + NMAP_SERVICES_ENV) if nmap else \
            ("install Debian's netbase or set $" + SERVICES_ENV)
        text = _read_text(Path(path), "nmap services" if nmap else "services", hint)
        return cls.parse(text or "", str(path), nmap=nmap)

    def __len__(self) -> int:
        return len(self._by_port)

    def entry(self, port: int, protocol: int | str) -> Service | None:
        proto = _proto_keyword(protocol)
        return None if proto is None else self._by_port.get((int(port), proto))

    def name(self, port: int, protocol: int | str) -> str | None:
        entry = self.entry(port, protocol)
        return entry.name if entry else None

    def description(self, port: int, protocol: int | str) -> str | None:
        entry = self.entry(port, protocol)
        return entry.description if entry else None

    def port(self, name: str, protocol: int | str) -> int | None:
        """``getservbyname``: the port of a service name or alias."""
        proto = _proto_keyword(protocol)
        entry = self._by_name.get((name, proto)) if proto else None
        return entry.port if entry else None

    def names(self, ports, protocol) -> list[str | None]:
        """Names for many ports; ``protocol`` is one value or one per port.  Each distinct
        (port, protocol) pair is looked up once."""
        ports = np.asarray(ports, dtype=np.int64).ravel()
        protos = np.broadcast_to(np.asarray(protocol), ports.shape)
        if ports.size == 0:
            return []
        if protos.dtype.kind in "iu":
            keys = ports * 256 + protos.astype(np.int64)
            uniq, inverse = np.unique(keys, return_inverse=True)
            looked = [self.name(int(k) >> 8, int(k) & 0xFF) for k in uniq]
        else:  # protocol keywords given as strings
            pairs = np.array([f"{p}/{q}" for p, q in zip(ports.tolist(), protos.tolist())])
            uniq, inverse = np.unique(pairs, return_inverse=True)
            looked = [self.name(int(k.split("/", 1)[0]), k.split("/", 1)[1]) for k in uniq]
        table = np.array(looked + [None], dtype=object)[:-1]
        return table[inverse.ravel()].tolist()


# --------------------------------------------------------------------------------------------
# IP protocols
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """What the registries say about one IP protocol number."""

    number: int
    keyword: str | None  # the system's keyword (/etc/protocols), else IANA's, lowercased
    description: str  # IANA's description, e.g. "Encap Security Payload"; "Unassigned" when free
    status: str  # "assigned", "unassigned", "reserved" or "experimental"
    iana_keyword: str | None = None  # e.g. "ESP"
    aliases: tuple[str, ...] = ()  # /etc/protocols aliases, e.g. ("IPSEC-ESP",)
    comment: str | None = None  # /etc/protocols comment


def _parse_etc_protocols(text: str) -> dict[int, tuple[str, tuple[str, ...], str | None]]:
    table: dict[int, tuple[str, tuple[str, ...], str | None]] = {}
    for line in text.splitlines():
        body, _, comment = line.partition("#")
        fields = body.split()
        if len(fields) < 2 or not fields[1].isdigit():
            continue
        table.setdefault(int(fields[1]), (fields[0], tuple(fields[2:]), comment.strip() or None))
    return table


def _parse_iana_protocols(text: str) -> dict[int, tuple[str | None, str | None]]:
    """number -> (IANA keyword, IANA description) from the protocol-numbers XML registry."""
    root = ET.fromstring(text)
    table: dict[int, tuple[str | None, str | None]] = {}
    for record in root.iter(f"{_IANA_NS}record"):
        value = record.findtext(f"{_IANA_NS}value")
        if not value:
            continue
        name = _squash(record.findtext(f"{_IANA_NS}name")) or None
        desc = _squash(record.findtext(f"{_IANA_NS}description")) or None
        for number in _range(value):
            table.setdefault(number, (name, desc))
    return table


class ProtocolRegistry:
    def __init__(self, etc: dict, iana: dict, source: str = "<protocols>"):
        self.source = source
        self._etc = etc
        self._iana = iana
        self._cache: dict[int, Protocol | None] = {}

    @classmethod
    def parse(cls, etc_text: str, iana_xml: str | None = None, source: str = "<text>") -> ProtocolRegistry:
        return cls(_parse_etc_protocols(etc_text or ""), _parse_iana_protocols(iana_xml) if iana_xml else {}, source)

    @classmethod
    def load(cls, path: str | os.PathLike, iana_path: str | os.PathLike = PROTOCOL_REGISTRY_FILE) -> ProtocolRegistry:
        etc = _read_text(Path(path), "protocols", "install Debian's netbase or set $" + PROTOCOLS_ENV)
        iana = _read_text(Path(iana_path), "IANA protocol-numbers", "reinstall vlf_dagster (package data)")
        return cls.parse(etc or "", iana, str(path))

    def info(self, number: int) -> Protocol | None:
        """Everything known about ``number``; None outside 0..255 or when no registry knows it."""
        number = int(number)
        if number in self._cache:
            return self._cache[number]
        etc = self._etc.get(number)
        iana_name, iana_desc = self._iana.get(number, (None, None))
        result: Protocol | None
        if etc is None and iana_name is None and iana_desc is None:
            result = (
                Protocol(number, None, UNASSIGNED, "unassigned") if 0 <= number <= 255 and self._iana else None
            )
        else:
            label = iana_desc or iana_name or ""
            if label.lower().startswith("unassigned"):
                status = "unassigned"
            elif label.lower().startswith("reserved"):
                status = "reserved"
            elif label.lower().startswith("use for experimentation"):
                status = "experimental"
            else:
                status = "assigned"
            keyword = etc[0] if etc else None
            if keyword is None and status == "assigned" and iana_name:
                keyword = _DEPRECATED.sub("", iana_name).lower()
            description = iana_desc or iana_name
            if description is None and etc and etc[2]:
                description = _squash(_REFERENCE.sub("", etc[2]))
            result = Protocol(
                number,
                keyword,
                description or (etc[1][0] if etc and etc[1] else keyword or UNASSIGNED),
                status,
                iana_name,
                etc[1] if etc else (),
                etc[2] if etc else None,
            )
        self._cache[number] = result
        return result

    def name(self, number: int) -> str | None:
        info = self.info(number)
        return info.keyword if info else None

    def numbers(self) -> dict[str, int]:
        """Lower-case protocol name -> number: IANA's keywords, then the system's keywords and
        aliases (what an exporter's text names a protocol by: ``tcp``, ``esp``, ``ipv6-icmp``)."""
        names: dict[str, int] = {}
        for number, (iana_name, _) in sorted(self._iana.items()):
            if iana_name and 0 <= number <= 255:
                names.setdefault(iana_name.strip().lower(), number)
        for number, (keyword, aliases, _) in sorted(self._etc.items()):
            for word in (keyword, *aliases):
                names.setdefault(word.lower(), number)
        return names

    def description(self, number: int) -> str | None:
        info = self.info(number)
        return info.description if info else None


# --------------------------------------------------------------------------------------------
# ICMP
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IcmpType:
    number: int
    description: str  # registry text, e.g. "Source Quench (Deprecated)"
    codes: dict[int, str] = field(default_factory=dict)  # assigned codes only

    @property
    def name(self) -> str:
        """The description without the "(Deprecated)" marker, e.g. "Source Quench"."""
        return _DEPRECATED.sub("", self.description)

    @property
    def deprecated(self) -> bool:
        return bool(_DEPRECATED.search(self.description))

    @property
    def assigned(self) -> bool:
        return not self.description.lower().startswith(("unassigned", "reserved"))


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _STOPWORDS}


class IcmpRegistry:
    """IANA's ICMP type numbers and per-type code fields."""

    def __init__(self, types: dict[int, IcmpType], source: str = "<icmp>"):
        self.types = types
        self.source = source

    @classmethod
    def parse(cls, xml_text: str, source: str = "<text>") -> IcmpRegistry:
        root = ET.fromstring(xml_text)
        descriptions: dict[int, str] = {}
        codes: dict[int, dict[int, str]] = {}
        for registry in root.iter(f"{_IANA_NS}registry"):
            rid = registry.get("id", "")
            if rid == "icmp-parameters-types":
                for record in registry.findall(f"{_IANA_NS}record"):
                    desc = _squash(record.findtext(f"{_IANA_NS}description"))
                    for number in _range(record.findtext(f"{_IANA_NS}value") or ""):
                        descriptions.setdefault(number, desc)
            elif m := re.fullmatch(r"icmp-parameters-codes-(\d+)", rid):
                table = codes.setdefault(int(m.group(1)), {})
                for record in registry.findall(f"{_IANA_NS}record"):
                    desc = _squash(record.findtext(f"{_IANA_NS}description"))
                    if desc.lower().startswith("unassigned"):
                        continue
                    for code in _range(record.findtext(f"{_IANA_NS}value") or ""):
                        table.setdefault(code, desc)
        types = {n: IcmpType(n, d, codes.get(n, {})) for n, d in descriptions.items()}
        return cls(types, source)

    @classmethod
    def load(cls, path: str | os.PathLike = ICMP_REGISTRY_FILE) -> IcmpRegistry:
        text = _read_text(Path(path), "ICMP", "reinstall vlf_dagster (package data)")
        return cls.parse(text, str(path)) if text else cls({}, str(path))

    def type_name(self, icmp_type: int) -> str | None:
        entry = self.types.get(int(icmp_type))
        return entry.name if entry else None

    def code_name(self, icmp_type: int, code: int) -> str | None:
        entry = self.types.get(int(icmp_type))
        return entry.codes.get(int(code)) if entry else None

    def meaning(self, icmp_type: int, code: int) -> tuple[str, bool]:
        """The study's "Meaning" column and whether (type, code) is a registered combination.

        * unknown or unassigned type: ("Unassigned type", False); reserved type: its text, False
        * a code the type's registry does not list: ("(Invalid code)", False)
        * "No Code" (the only code of Echo, Source Quench, ...): the type name ("Echo")
        * a code that names its own type (shares a word with it, e.g. "Time to Live exceeded
          in Transit") or any Destination Unreachable code (each names why): the code text
        * other codes are qualified by the type: "Parameter Problem - Pointer indicates the error"
        * a type whose registry lists no codes (Traceroute, experiments): the type name, valid.
        """
        icmp_type, code = int(icmp_type), int(code)
        entry = self.types.get(icmp_type)
        if entry is None or entry.description.lower().startswith("unassigned"):
            return UNASSIGNED_TYPE, False
        if not entry.assigned:
            return entry.name, False
        if not entry.codes:
            return entry.name, True
        text = entry.codes.get(code)
        if text is None:
            return INVALID_CODE, False
        if text.lower() == "no code":
            return entry.name, True
        if icmp_type == 3 or _words(text) & _words(entry.name):
            return text, True
        return f"{entry.name} - {text}", True

    def meanings(self, types, codes) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`meaning`: (object array of texts, bool array), one lookup per pair."""
        types = np.asarray(types, dtype=np.int64).ravel()
        codes = np.broadcast_to(np.asarray(codes, dtype=np.int64), types.shape)
        uniq, inverse = np.unique(types * 256 + codes, return_inverse=True)
        looked = [self.meaning(int(k) >> 8, int(k) & 0xFF) for k in uniq]
        text = np.array([t for t, _ in looked] + [None], dtype=object)[:-1]
        valid = np.array([v for _, v in looked], dtype=bool)
        inverse = inverse.ravel()
        return text[inverse], valid[inverse]


# --------------------------------------------------------------------------------------------
# cached defaults and the module-level API
# --------------------------------------------------------------------------------------------


def _services_path(path) -> str:
    return str(path or os.environ.get(SERVICES_ENV) or SERVICES_FILE)


def _protocols_path(path) -> str:
    return str(path or os.environ.get(PROTOCOLS_ENV) or PROTOCOLS_FILE)


@lru_cache(maxsize=8)
def _services(path: str) -> ServiceRegistry:
    return ServiceRegistry.load(path)


@lru_cache(maxsize=8)
def _nmap_services(path: str) -> ServiceRegistry:
    return ServiceRegistry.load(path, nmap=True)


@lru_cache(maxsize=8)
def _protocols(path: str, iana_path: str) -> ProtocolRegistry:
    return ProtocolRegistry.load(path, iana_path)


@lru_cache(maxsize=8)
def _icmp(path: str) -> IcmpRegistry:
    return IcmpRegistry.load(path)


def services(path: str | os.PathLike | None = None) -> ServiceRegistry:
    """The services registry (parsed once per path)."""
    return _services(_services_path(path))


def protocols(path: str | os.PathLike | None = None, iana_path: str | os.PathLike | None = None) -> ProtocolRegistry:
    """The protocols registry: /etc/protocols keywords plus IANA descriptions and ranges."""
    return _protocols(_protocols_path(path), str(iana_path or PROTOCOL_REGISTRY_FILE))


def icmp_registry(path: str | os.PathLike | None = None) -> IcmpRegistry:
    return _icmp(str(path or ICMP_REGISTRY_FILE))


def clear_caches() -> None:
    """Forget parsed registries and which missing files were already warned about."""
    _services.cache_clear()
    _nmap_services.cache_clear()
    _protocols.cache_clear()
    _icmp.cache_clear()
    _warned.clear()


def _proto_keyword(protocol: int | str) -> str | None:
    """6 -> "tcp", 17 -> "udp" (through the protocols registry); strings pass through."""
    if isinstance(protocol, str):
        return protocol.lower()
    return protocols().name(int(protocol))


def service_name(port: int, protocol: int | str, path: str | os.PathLike | None = None) -> str | None:
    """``service_name(445, 6) == "microsoft-ds"``; None when the registry has no such entry."""
    return services(path).name(port, protocol)


def service_description(port: int, protocol: int | str, path: str | os.PathLike | None = None) -> str | None:
    return services(path).description(port, protocol)


def nmap_services(path: str | os.PathLike | None = None) -> ServiceRegistry:
    """Nmap's services list (``$VLF_NMAP_SERVICES_FILE`` or Debian's nmap-common)."""
    return _nmap_services(str(path or os.environ.get(NMAP_SERVICES_ENV) or NMAP_SERVICES_FILE))


@dataclass(frozen=True)
class PortDescription:
    name: str | None
    description: str | None
    source: str | None  # IANA_SOURCE, NMAP_SOURCE, or None when neither knows the port


def describe_port(port: int, protocol: int | str, path: str | os.PathLike | None = None,
                  nmap_path: str | os.PathLike | None = None) -> PortDescription:
    """The port's service from IANA's registry (``/etc/services``) first, else from Nmap's list;
    the source says which answered."""
    for registry, source in ((services(path), IANA_SOURCE), (nmap_services(nmap_path), NMAP_SOURCE)):
        entry = registry.entry(port, protocol)
        if entry is not None:
            return PortDescription(entry.name, entry.description, source)
    return PortDescription(None, None, None)


def service_names(ports, protocol, path: str | os.PathLike | None = None) -> list[str | None]:
    """Bulk :func:`service_name`: one answer per port, each distinct pair looked up once."""
    return services(path).names(ports, protocol)


def protocol_name(number: int) -> str | None:
    """``protocol_name(50) == "esp"``; None for unassigned or reserved numbers."""
    return protocols().name(number)


def protocol_description(number: int) -> str | None:
    """``protocol_description(50) == "Encap Security Payload"``; "Unassigned" for free numbers
    (146-252 today), "Reserved" for 255; None outside 0..255."""
    return protocols().description(number)


def protocol_info(number: int) -> Protocol | None:
    return protocols().info(number)


def icmp_meaning(icmp_type: int, code: int) -> tuple[str, bool]:
    """``icmp_meaning(3, 3) == ("Port Unreachable", True)``; see :meth:`IcmpRegistry.meaning`."""
    return icmp_registry().meaning(icmp_type, code)


def icmp_meanings(types, codes) -> tuple[np.ndarray, np.ndarray]:
    return icmp_registry().meanings(types, codes)


def icmp_type_code(dport):
    """SiLK keeps ICMP type and code in dPort as ``type*256 + code``: returns (type, code)."""
    dport = np.asarray(dport)
    return dport >> 8, dport & 0xFF
