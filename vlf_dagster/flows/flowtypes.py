"""SiLK flowtypes (class ``all`` of the twoway site) and the classification of flows into them.

Direction comes from the site's internal networks: outside -> inside is inbound, inside ->
outside outbound.  Inbound and outbound flows are then split into web (TCP with either port in
the site's web ports), ICMP (when the site splits ICMP) and null (leaving on the null interface).
Traffic with an unspecified (all-zero) address goes to ``other``.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from .site import Site

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# numpy and pyarrow are imported by the functions that classify: the names below are what every
# verb's parser needs (`vlf filter --help` lists the types), and they must not cost 0.3 s.

# id -> (type name, flowtype name used in archive file names), as in SiLK's twoway silk.conf.
FLOWTYPES: dict[int, tuple[str, str]] = {
    0: ("in", "in"),
    1: ("out", "out"),
    2: ("inweb", "iw"),
    3: ("outweb", "ow"),
    4: ("innull", "innull"),
    5: ("outnull", "outnull"),
    6: ("int2int", "int2int"),
    7: ("ext2ext", "ext2ext"),
    8: ("inicmp", "inicmp"),
    9: ("outicmp", "outicmp"),
    10: ("other", "other"),
}
TYPE_IDS: dict[str, int] = {name: i for i, (name, _) in FLOWTYPES.items()}
IN, OUT, INWEB, OUTWEB, INNULL, OUTNULL, INT2INT, EXT2EXT, INICMP, OUTICMP, OTHER = range(11)

# The flowtypes whose records travel outside -> inside (SiLK's default types are in, inweb, inicmp).
INBOUND_TYPES = (IN, INWEB, INICMP)
OUTBOUND_TYPES = (OUT, OUTWEB, OUTICMP)
DEFAULT_TYPES = ("in", "inweb", "inicmp")


class FlowtypeError(ValueError):
    pass


def type_name(flowtype_id: int) -> str:
    return FLOWTYPES[int(flowtype_id)][0]


def file_prefix(flowtype_id: int) -> str:
    return FLOWTYPES[int(flowtype_id)][1]


def parse_types(text: str) -> list[int]:
    """rwfilter's ``--type`` list: comma-separated type names or ``all``."""
    if text.strip() == "all":
        return sorted(FLOWTYPES)
    ids = []
    for name in (t.strip() for t in text.split(",")):
        if name not in TYPE_IDS:
            raise FlowtypeError(f"unknown flow type {name!r} (known: {', '.join(TYPE_IDS)}, all)")
        ids.append(TYPE_IDS[name])
    return ids


def _internal_v4(addresses: np.ndarray, site: Site) -> np.ndarray:
    import numpy as np

    inside = np.zeros(addresses.shape, dtype=bool)
    for network, mask in site.ipv4_networks:
        inside |= (addresses & np.uint32(mask)) == np.uint32(network)
    return inside


def _internal_v6(column: pa.ChunkedArray | pa.Array, site: Site) -> np.ndarray:
    import numpy as np

    from .schema import ipv6_words

    high, low = ipv6_words(column)
    inside = np.zeros(high.shape, dtype=bool)
    for net in site.ipv6_networks:
        net_int, mask_int = int(net.network_address), int(net.netmask)
        m_hi, m_lo = np.uint64(mask_int >> 64), np.uint64(mask_int & (2**64 - 1))
        n_hi, n_lo = np.uint64(net_int >> 64), np.uint64(net_int & (2**64 - 1))
        inside |= ((high & m_hi) == n_hi) & ((low & m_lo) == n_lo)
    return inside


def is_internal(table: pa.Table, column: str, site: Site) -> np.ndarray:
    """Whether each record's ``column`` address ('sIP' or 'dIP') is inside the site."""
    import numpy as np

    from .schema import ATTR_IPV6

    v4 = table.column(column).to_numpy()
    v6_rows = (table.column("attributes").to_numpy() & ATTR_IPV6) != 0
    inside = _internal_v4(v4, site)
    if v6_rows.any():
        inside = np.where(v6_rows, _internal_v6(table.column(column + "v6"), site), inside)
    return inside


def _is_unspecified(table: pa.Table, column: str) -> np.ndarray:
    import numpy as np

    from .schema import ATTR_IPV6, ipv6_words

    v6_rows = (table.column("attributes").to_numpy() & ATTR_IPV6) != 0
    zero = table.column(column).to_numpy() == 0
    if v6_rows.any():
        high, low = ipv6_words(table.column(column + "v6"))
        zero = np.where(v6_rows, (high == 0) & (low == 0), zero)
    return zero


def classify(table: pa.Table, site: Site) -> np.ndarray:
    """The flowtype id of each record of a flow-schema table, as a uint8 array."""
    import numpy as np

    from .schema import PROTO_TCP, is_icmp

    src_in = is_internal(table, "sIP", site)
    dst_in = is_internal(table, "dIP", site)
    protocol = table.column("protocol").to_numpy()
    attributes = table.column("attributes").to_numpy()
    s_port = table.column("sPort").to_numpy()
    d_port = table.column("dPort").to_numpy()
    web_ports = np.array(site.web_ports, dtype=np.uint16)
    web = (protocol == PROTO_TCP) & (np.isin(s_port, web_ports) | np.isin(d_port, web_ports))
    icmp = is_icmp(protocol, attributes) if site.icmp_split else np.zeros(len(protocol), dtype=bool)
    null = (
        table.column("out").to_numpy() == site.null_interface
        if site.null_interface >= 0
        else np.zeros(len(protocol), dtype=bool)
    )
    inbound = ~src_in & dst_in
    outbound = src_in & ~dst_in
    result = np.full(len(protocol), OTHER, dtype=np.uint8)
    result[src_in & dst_in] = INT2INT
    result[~src_in & ~dst_in] = EXT2EXT
    for mask, null_t, icmp_t, web_t, plain_t in (
        (inbound, INNULL, INICMP, INWEB, IN),
        (outbound, OUTNULL, OUTICMP, OUTWEB, OUT),
    ):
        result[mask] = np.select(
            [null[mask], icmp[mask], web[mask]], [null_t, icmp_t, web_t], default=plain_t
        ).astype(np.uint8)
    unspecified = _is_unspecified(table, "sIP") | _is_unspecified(table, "dIP")
    result[unspecified] = OTHER
    return result


def describe_networks(site: Site) -> str:
    return ", ".join(str(ipaddress.ip_network(n)) for n in site.internal_networks)
