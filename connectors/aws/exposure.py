"""Network exposure of a security group, judged by set arithmetic on its ingress rules.

A rule admits a set of sources (IPv4 and IPv6 CIDR blocks, and the CIDR blocks of the
managed prefix lists it references) on a set of ports of one protocol. Whether the
*internet* reaches a port is a question about the union of the sources of every rule
that admits that port, not about any one literal: ``0.0.0.0/1`` and ``128.0.0.0/1``
in two rules are the whole internet, as are ``tcp 0-32767`` and ``tcp 32768-65535``
for "all ports", and ``tcp 1-65535`` is every usable port.

"The internet" is every globally routable address: the sources reach it when their
union, together with the address space that is not global (private, loopback,
link-local, shared, documentation, multicast and reserved blocks of the IANA
special-purpose registries), covers the whole address space of the family.

Protocols are matched by name or number as EC2 returns them (``IpProtocol``: ``-1``
for all, ``tcp``/``6``, ``udp``/``17``, ``icmp``/``1``, ``icmpv6``/``58`` or any other
protocol number, which EC2 opens on all ports). Security-group references
(``UserIdGroupPairs``) admit other groups' members, never the internet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Every IPv4 block that is not globally routable (IANA IPv4 special-purpose registry).
NOT_GLOBAL_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
))
#: IPv6 outside global unicast (2000::/3).
NOT_GLOBAL_V6 = tuple(ipaddress.IPv6Network(n) for n in ("::/3", "4000::/2", "8000::/1"))
_WHOLE = {4: ipaddress.IPv4Network("0.0.0.0/0"), 6: ipaddress.IPv6Network("::/0")}

_NAMES = {"-1": "all", "all": "all", "tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp",
          "icmp": "icmp", "1": "icmp", "icmpv6": "icmpv6", "58": "icmpv6"}
PORTED = ("tcp", "udp")
#: Ports that count as "every port": port 0 is not a usable TCP/UDP port.
ALL_PORTS = (1, 65535)


def protocol_of(permission: Mapping[str, Any]) -> str:
    """``all``, ``tcp``, ``udp``, ``icmp``, ``icmpv6``, or the protocol number."""
    raw = str(permission.get("IpProtocol", "")).lower()
    return _NAMES.get(raw, raw)


def port_range(permission: Mapping[str, Any]) -> tuple[int, int]:
    """The rule's ports; all of them when the protocol has none or the range is absent."""
    low, high = permission.get("FromPort"), permission.get("ToPort")
    if protocol_of(permission) not in PORTED or low in (None, -1) or high in (None, -1):
        return 0, 65535
    return int(low), int(high)


def sources(
    permission: Mapping[str, Any], prefix_lists: Mapping[str, Sequence[str]]
) -> tuple[list[IPNetwork], list[str]]:
    """The CIDR blocks a rule admits, and the prefix lists whose entries are unknown."""
    blocks: list[str] = [r.get("CidrIp", "") for r in permission.get("IpRanges") or []]
    blocks += [r.get("CidrIpv6", "") for r in permission.get("Ipv6Ranges") or []]
    unknown: list[str] = []
    for ref in permission.get("PrefixListIds") or []:
        pl = str(ref.get("PrefixListId", ""))
        if pl in prefix_lists:
            blocks += list(prefix_lists[pl])
        else:
            unknown.append(pl)
    networks = []
    for block in blocks:
        try:
            networks.append(ipaddress.ip_network(block, strict=False))
        except ValueError:
            continue  # not a CIDR block: admits no address
    return networks, unknown


def reaches_internet(networks: Iterable[IPNetwork]) -> list[str]:
    """The families (``0.0.0.0/0``, ``::/0``) whose every global address is admitted."""
    out = []
    for version, not_global in ((4, NOT_GLOBAL_V4), (6, NOT_GLOBAL_V6)):
        mine = [n for n in networks if n.version == version]
        if not mine:
            continue
        union = list(ipaddress.collapse_addresses([*mine, *not_global]))  # type: ignore[misc]
        if union == [_WHOLE[version]]:
            out.append(str(_WHOLE[version]))
    return out


class Exposure:
    """What one security group admits from the internet, by protocol and port."""

    def __init__(
        self, permissions: Iterable[Mapping[str, Any]], prefix_lists: Mapping[str, Sequence[str]]
    ) -> None:
        self.rules: list[tuple[str, tuple[int, int], list[IPNetwork]]] = []
        self.unknown: list[str] = []
        for permission in permissions:
            networks, unknown = sources(permission, prefix_lists)
            self.unknown += unknown
            self.rules.append((protocol_of(permission), port_range(permission), networks))

    def _admitting(self, protocol: str, port: int) -> list[IPNetwork]:
        return [
            n
            for proto, (low, high), networks in self.rules
            if proto in ("all", protocol) and low <= port <= high
            for n in networks
        ]

    def port_open(self, protocol: str, port: int) -> list[str]:
        """The families from which the whole internet reaches ``protocol``/``port``."""
        return reaches_internet(self._admitting(protocol, port))

    def all_ports_open(self, protocol: str) -> list[str]:
        """Families from which the internet reaches every port 1-65535 of ``protocol``."""
        cuts = {ALL_PORTS[0], ALL_PORTS[1] + 1}
        for proto, (low, high), _ in self.rules:
            if proto in ("all", protocol):
                cuts.update((low, high + 1))
        points = sorted(p for p in cuts if ALL_PORTS[0] <= p <= ALL_PORTS[1] + 1)
        families: set[str] | None = None
        for start in points[:-1]:  # each elementary interval, judged at its first port
            open_here = set(self.port_open(protocol, start))
            families = open_here if families is None else families & open_here
            if not families:
                return []
        return sorted(families or ())
