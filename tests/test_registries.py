"""Port, protocol and ICMP names come from registries; expectations read off the registries
(netbase's /etc/services and /etc/protocols, IANA's XML) and the study's ICMP table."""

from pathlib import Path

import numpy as np
import pytest

from vlf_dagster.flows import registries as reg

needs_services = pytest.mark.skipif(not Path("/etc/services").exists(), reason="no /etc/services (Debian netbase)")
needs_protocols = pytest.mark.skipif(not Path("/etc/protocols").exists(), reason="no /etc/protocols (Debian netbase)")


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    monkeypatch.delenv(reg.SERVICES_ENV, raising=False)
    monkeypatch.delenv(reg.PROTOCOLS_ENV, raising=False)
    monkeypatch.delenv(reg.NMAP_SERVICES_ENV, raising=False)
    reg.clear_caches()
    yield
    reg.clear_caches()


@needs_services
@needs_protocols
def test_system_services():
    assert reg.service_name(445, 6) == "microsoft-ds"
    assert reg.service_description(445, 6) == "Microsoft Naked CIFS"
    assert reg.service_name(25, 6) == "smtp"
    assert reg.service_name(25, "tcp") == "smtp"
    assert reg.service_name(53, 17) == "domain"
    assert reg.service_name(1434, 17) == "ms-sql-m"
    # eDonkey (4662) and the Half-Life/Steam port 27015 are not in netbase: no name, no guess.
    assert reg.service_name(4662, 6) is None
    assert reg.service_name(27015, 17) is None
    assert reg.service_name(445, 17) is None  # netbase lists 445 for tcp only
    assert reg.services().port("smtp", 6) == 25


@needs_services
@needs_protocols
def test_bulk_service_names_match_single_lookups():
    ports = np.array([445, 25, 445, 4662, 25, 80], dtype=np.uint16)
    assert reg.service_names(ports, 6) == ["microsoft-ds", "smtp", "microsoft-ds", None, "smtp", "http"]
    protos = np.array([6, 6, 17, 6, 17, 6], dtype=np.uint8)
    assert reg.service_names(ports, protos) == ["microsoft-ds", "smtp", None, None, None, "http"]
    assert reg.service_names([], 6) == []


SERVICES = """\
# a comment line
smtp		25/tcp		mail		# Simple Mail Transfer
smtp-dup	25/tcp				# a later duplicate never wins
domain		53/tcp				# Domain Name Server [RFC1035]
domain		53/udp
odd		notaport/tcp
x-range		6000-6007/tcp
bare
"""


def test_services_parser_on_a_small_file(tmp_path):
    path = tmp_path / "services"
    path.write_text(SERVICES)
    s = reg.ServiceRegistry.load(path)
    assert len(s) == 3  # (25,tcp), (53,tcp), (53,udp); malformed lines skipped
    assert s.name(25, "tcp") == "smtp" and s.entry(25, "tcp").aliases == ("mail",)
    assert s.description(25, "tcp") == "Simple Mail Transfer"
    assert s.description(53, "tcp") == "Domain Name Server"  # bracketed reference dropped
    assert s.entry(53, "tcp").comment == "Domain Name Server [RFC1035]"
    assert s.description(53, "udp") is None
    assert s.port("mail", "tcp") == 25  # aliases resolve like getservbyname
    assert s.names([25, 53, 53, 80], ["tcp", "tcp", "udp", "tcp"]) == ["smtp", "domain", "domain", None]
    # the path override of the module-level API, and the environment variable
    assert reg.service_name(25, "tcp", path=path) == "smtp"


def test_services_env_override(tmp_path, monkeypatch):
    path = tmp_path / "services"
    path.write_text("only\t7/tcp\n")
    monkeypatch.setenv(reg.SERVICES_ENV, str(path))
    assert reg.service_name(7, "tcp") == "only"
    assert reg.service_name(25, "tcp") is None


def test_missing_registry_warns_once_and_answers_none(tmp_path):
    missing = tmp_path / "no-services"
    with pytest.warns(reg.RegistryWarning, match=f"services registry {missing} not found"):
        assert reg.service_name(25, "tcp", path=missing) is None
    reg._services.cache_clear()  # reparse: the file is still missing, but no second warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reg.service_names([25, 80], "tcp", path=missing) == [None, None]


def test_protocols_parser_and_iana_ranges(tmp_path):
    etc = tmp_path / "protocols"
    etc.write_text(
        "# comment\n"
        "ip\t0\tIP\t\t# internet protocol, pseudo protocol number\n"
        "hopopt\t0\tHOPOPT\t\t# IPv6 Hop-by-Hop Option [RFC1883]\n"
        "esp\t50\tIPSEC-ESP\t# Encap Security Payload [RFC2406]\n"
        "weird\tx\n"
    )
    p = reg.protocols(etc)
    assert p.name(0) == "ip"  # first line wins, as getprotobynumber
    esp = p.info(50)
    assert (esp.keyword, esp.description, esp.iana_keyword, esp.aliases, esp.status) == (
        "esp", "Encap Security Payload", "ESP", ("IPSEC-ESP",), "assigned",
    )
    # not in this /etc/protocols: IANA's keyword, lowercased
    assert p.name(25) == "leaf-1" and p.description(25) == "Leaf-1"
    assert p.name(200) is None and p.description(200) == "Unassigned" and p.info(200).status == "unassigned"
    assert p.name(255) is None and p.description(255) == "Reserved"
    assert p.info(253).status == "experimental"
    assert p.info(256) is None and p.info(-1) is None


def test_protocols_without_any_registry_file(tmp_path):
    with pytest.warns(reg.RegistryWarning):
        p = reg.protocols(tmp_path / "none", iana_path=tmp_path / "none.xml")
    assert p.name(50) is None and p.description(50) is None


@needs_protocols
def test_system_protocols_and_the_studys_other_protocols_table():
    assert reg.protocol_name(50) == "esp"
    assert reg.protocol_description(50) == "Encap Security Payload"
    assert reg.protocol_name(6) == "tcp" and reg.protocol_name(17) == "udp" and reg.protocol_name(1) == "icmp"
    # the study's descriptions for protocols netbase leaves out
    assert reg.protocol_description(0) == "IPv6 Hop-by-Hop Option"
    assert reg.protocol_description(54) == "NBMA Address Resolution Protocol"
    assert reg.protocol_description(64) == "SATNET and Backroom EXPAK"
    assert reg.protocol_description(96) == "Semaphore Communications Sec. Pro."
    assert reg.protocol_description(128) == "SSCOPMCE"
    assert reg.protocol_description(132) == "Stream Control Transmission Protocol"
    # 153, 160, 192 were unassigned in 2008 and still are; 255 is reserved
    for n in (153, 160, 192):
        assert reg.protocol_name(n) is None and reg.protocol_description(n) == "Unassigned"
    assert reg.protocol_name(255) is None and reg.protocol_description(255) == "Reserved"


# The study's ICMP table: (type, code) -> Meaning, all from the IANA registry.
STUDY_ICMP = [
    (3, 3, "Port Unreachable"),
    (3, 1, "Host Unreachable"),
    (3, 13, "Communication Administratively Prohibited"),
    (3, 0, "Net Unreachable"),
    (3, 10, "Communication with Destination Host is Administratively Prohibited"),
    (3, 4, "Fragmentation Needed and Don't Fragment was Set"),
    (3, 2, "Protocol Unreachable"),
    (3, 9, "Communication with Destination Network is Administratively Prohibited"),
    (3, 7, "Destination Host Unknown"),
    (3, 6, "Destination Network Unknown"),
    (8, 0, "Echo"),
    (11, 0, "Time to Live exceeded in Transit"),
    (11, 1, "Fragment Reassembly Time Exceeded"),
    (5, 1, "Redirect Datagram for the Host"),
    (5, 0, "Redirect Datagram for the Network (or subnet)"),
    (4, 0, "Source Quench"),
    (0, 0, "Echo Reply"),
    (14, 0, "Timestamp Reply"),
    (12, 0, "Parameter Problem - Pointer indicates the error"),
]


@pytest.mark.parametrize("icmp_type,code,meaning", STUDY_ICMP)
def test_icmp_meanings_of_the_study(icmp_type, code, meaning):
    assert reg.icmp_meaning(icmp_type, code) == (meaning, True)


def test_icmp_invalid_codes_and_unassigned_types():
    assert reg.icmp_meaning(3, 44) == ("(Invalid code)", False)
    assert reg.icmp_meaning(3, 255) == ("(Invalid code)", False)
    assert reg.icmp_meaning(8, 1) == ("(Invalid code)", False)
    assert reg.icmp_meaning(42, 1) == ("(Invalid code)", False)  # registered as "Unassigned"
    assert reg.icmp_meaning(1, 0) == ("Unassigned type", False)
    assert reg.icmp_meaning(100, 0) == ("Unassigned type", False)  # inside 44-252
    assert reg.icmp_meaning(255, 0) == ("Reserved", False)
    assert reg.icmp_meaning(30, 0) == ("Traceroute", True)  # no code registry: any code
    assert reg.icmp_meaning(9, 16) == ("Router Advertisement - Does not route common traffic", True)
    r = reg.icmp_registry()
    assert r.types[4].description == "Source Quench (Deprecated)" and r.types[4].deprecated
    assert r.code_name(3, 3) == "Port Unreachable" and r.type_name(11) == "Time Exceeded"


def test_icmp_meanings_vectorised_from_dport():
    dport = np.array([3 * 256 + 3, 8 * 256, 3 * 256 + 44, 3 * 256 + 3, 200 * 256 + 1], dtype=np.uint16)
    types, codes = reg.icmp_type_code(dport)
    assert types.tolist() == [3, 8, 3, 3, 200] and codes.tolist() == [3, 0, 44, 3, 1]
    text, valid = reg.icmp_meanings(types, codes)
    assert text.tolist() == ["Port Unreachable", "Echo", "(Invalid code)", "Port Unreachable", "Unassigned type"]
    assert valid.tolist() == [True, True, False, True, False]


def test_icmp_registry_missing_file(tmp_path):
    with pytest.warns(reg.RegistryWarning, match="ICMP registry"):
        r = reg.icmp_registry(tmp_path / "icmp.xml")
    assert r.meaning(3, 3) == ("Unassigned type", False)


def test_icmp_parser_on_a_small_registry():
    xml = """<registry xmlns="http://www.iana.org/assignments" id="icmp-parameters">
      <registry id="icmp-parameters-types">
        <record><value>0</value><description>Echo Reply</description></record>
        <record><value>1-2</value><description>Unassigned</description></record>
        <record><value>3</value><description>Destination
          Unreachable</description></record>
      </registry>
      <registry id="icmp-parameters-codes">
        <registry id="icmp-parameters-codes-0"><record><value>0</value><description>No Code</description></record></registry>
        <registry id="icmp-parameters-codes-3">
          <record><value>0</value><description>Net Unreachable</description></record>
          <record><value>1-255</value><description>Unassigned</description></record>
        </registry>
      </registry></registry>"""
    r = reg.IcmpRegistry.parse(xml)
    assert sorted(r.types) == [0, 1, 2, 3] and r.types[3].description == "Destination Unreachable"
    assert r.meaning(0, 0) == ("Echo Reply", True)
    assert r.meaning(2, 0) == ("Unassigned type", False)
    assert r.meaning(3, 0) == ("Net Unreachable", True)
    assert r.meaning(3, 1) == ("(Invalid code)", False)


def test_ports_iana_leaves_out_come_from_nmap_with_their_source(tmp_path, monkeypatch):
    services = tmp_path / "services"
    services.write_text("microsoft-ds\t445/tcp\t\t\t# Microsoft Naked CIFS\nhttp\t80/tcp\twww\n")
    nmap = tmp_path / "nmap-services"
    nmap.write_text("# Nmap services\nhttp\t80/tcp\t0.484143\t# World Wide Web HTTP\n"
                    "edonkey\t4662/tcp\t0.000828\t# eDonkey file sharing (Donkey)\n"
                    "unknown\t4663/tcp\t0.000100\nhalflife\t27015/udp\t0.002432\t# Half-life game server\n")
    assert reg.describe_port(445, 6, services, nmap) == reg.PortDescription("microsoft-ds", "Microsoft Naked CIFS", "IANA")
    assert reg.describe_port(80, 6, services, nmap).source == "IANA"  # IANA first, even when Nmap knows it too
    assert reg.describe_port(4662, 6, services, nmap) == reg.PortDescription("edonkey", "eDonkey file sharing (Donkey)", "Nmap")
    assert reg.describe_port(27015, 17, services, nmap).description == "Half-life game server"
    assert reg.describe_port(4663, 6, services, nmap) == reg.PortDescription(None, None, None)  # Nmap's "unknown"
    assert reg.nmap_services(nmap).port("halflife", "udp") == 27015  # the frequency is no alias
    with pytest.warns(reg.RegistryWarning, match="nmap-common"):
        assert reg.describe_port(4662, 6, services, tmp_path / "missing").source is None


@pytest.mark.skipif(not Path(reg.NMAP_SERVICES_FILE).exists(), reason="Debian's nmap-common is not installed")
def test_the_installed_nmap_services_describe_the_studys_p2p_and_game_ports():
    assert reg.describe_port(4662, 6).description.startswith("oms | eDonkey")
    assert reg.describe_port(27015, 17).name == "halflife"
