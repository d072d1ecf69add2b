"""Network exposure by set arithmetic: which ports prioritised allow/deny rules open to
the internet.

One implementation for every cloud's packet filters (Azure network security groups,
Google Cloud VPC firewall rules, SQL firewalls and authorised networks). Nothing here
compares literals such as ``"0.0.0.0/0"`` or ``"0-65535"``: rules are parsed into sets
and the question "is TCP 22 reachable from the internet?" is answered by union and
difference of

* **port sets** — the union of every port spec of a rule (``"*"``, ``"22"``,
  ``"1-65535"``, lists of them), as :class:`Intervals` of integers;
* **address sets** — the union of every source of a rule (CIDRs and single addresses
  of either family, ``*``/``Any``, service tags such as ``Internet``), as
  :class:`Addresses` (one :class:`Intervals` per family), computed with
  :mod:`ipaddress`;
* **protocols** by name and by IANA number (``"Tcp"``, ``"6"``, ``"all"``, ``"*"``).

Rules are evaluated the way the platforms evaluate them: in priority order (lower
number first; at equal priority a deny before an allow), the first rule matching a
packet decides. So for every port, the addresses a rule *allows* are its sources
minus what every earlier rule already decided (allowed or denied). A source set is
"the internet" when the public addresses it holds are at least as many as in a
``/internet_prefix`` (default ``/8`` for IPv4, ``/32`` for IPv6): ``0.0.0.0/0``,
``Internet``, ``*``, ``0.0.0.0/1`` + ``128.0.0.0/1`` or a /7 of public space all are;
``10.0.0.0/8`` or Google's IAP range ``35.235.240.0/20`` are not.

All functions are pure and raise :class:`ValueError` on input they cannot interpret
(a check then reports ``error``, never ``pass``).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

MAX_PORT = 65535

# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Intervals:
    """A set of integers as sorted, disjoint, non-adjacent closed intervals."""

    spans: tuple[tuple[int, int], ...] = ()

    @staticmethod
    def of(*spans: tuple[int, int]) -> Intervals:
        return Intervals(_normalise(spans))

    def __or__(self, other: Intervals) -> Intervals:
        return Intervals(_normalise(self.spans + other.spans))

    def __and__(self, other: Intervals) -> Intervals:
        out: list[tuple[int, int]] = []
        i = j = 0
        a, b = self.spans, other.spans
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if lo <= hi:
                out.append((lo, hi))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return Intervals(tuple(out))

    def __sub__(self, other: Intervals) -> Intervals:
        out: list[tuple[int, int]] = []
        cut = list(other.spans)
        for lo, hi in self.spans:
            start = lo
            for clo, chi in cut:
                if chi < start or clo > hi:
                    continue
                if clo > start:
                    out.append((start, clo - 1))
                start = max(start, chi + 1)
                if start > hi:
                    break
            if start <= hi:
                out.append((start, hi))
        return Intervals(tuple(out))

    def __bool__(self) -> bool:
        return bool(self.spans)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and any(lo <= value <= hi for lo, hi in self.spans)

    def size(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.spans)

    def covers(self, other: Intervals) -> bool:
        return not (other - self)


def _normalise(spans: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(s for s in spans if s[0] <= s[1]):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


# --------------------------------------------------------------------------- ports

ALL_PORTS = Intervals.of((0, MAX_PORT))
#: Every usable port: port 0 is reserved and no service listens on it, so a rule
#: opening 1-65535 opens "every port" as much as 0-65535 does.
EVERY_USABLE_PORT = Intervals.of((1, MAX_PORT))


def parse_ports(specs: Iterable[object] | None) -> Intervals:
    """The union of port specs: ``"*"`` / ``""`` / ``None`` (every port), ``"22"``,
    ``"1000-2000"``, integers. No specs at all means every port (as both Azure's
    ``*`` and Google's omitted ``ports`` do)."""
    values = [str(s).strip() for s in specs or []]
    if not values:
        return ALL_PORTS
    spans: list[tuple[int, int]] = []
    for spec in values:
        if spec in ("*", "", "any", "Any"):
            return ALL_PORTS
        first, sep, last = spec.partition("-")
        try:
            lo, hi = int(first), int(last) if sep else int(first)
        except ValueError:
            raise ValueError(f"not a port or port range: {spec!r}") from None
        if not (0 <= lo <= hi <= MAX_PORT):
            raise ValueError(f"port range out of bounds: {spec!r}")
        spans.append((lo, hi))
    return Intervals.of(*spans)


def describe_ports(ports: Intervals, limit: int = 6) -> str:
    parts = [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in ports.spans]
    if len(parts) > limit:
        parts = [*parts[:limit], f"… ({len(ports.spans) - limit} more ranges)"]
    return ", ".join(parts) or "none"


# --------------------------------------------------------------------------- protocols

#: IANA protocol numbers of the names the vendors document (Azure NSG: Tcp, Udp, Icmp,
#: Esp, Ah; Google Cloud: tcp, udp, icmp, esp, ah, ipip, sctp — or any number).
PROTOCOL_NUMBERS: Mapping[str, int] = {
    "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "udp": 17, "gre": 47, "esp": 50,
    "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132,
}
PROTOCOL_NAMES: Mapping[int, str] = {n: name.upper() for name, n in PROTOCOL_NUMBERS.items()
                                     if name != "ipv6-icmp"}
#: Protocols whose rules carry ports.
PORT_PROTOCOLS = frozenset({6, 17, 132})
TCP, UDP = 6, 17
#: Words meaning "every protocol".
ANY_PROTOCOL = frozenset({"*", "all", "any"})


def parse_protocol(value: object) -> int | None:
    """IANA number of a protocol given by name or number; None means every protocol."""
    text = str(value if value is not None else "*").strip().lower()
    if text in ANY_PROTOCOL:
        return None
    if text in PROTOCOL_NUMBERS:
        return PROTOCOL_NUMBERS[text]
    if text.isdigit() and 0 <= int(text) <= 255:
        return int(text)
    raise ValueError(f"unknown IP protocol {value!r}")


def protocol_label(number: int) -> str:
    return PROTOCOL_NAMES.get(number, f"protocol {number}")


# --------------------------------------------------------------------------- addresses

_V4_ALL = Intervals.of((0, 2**32 - 1))
_V6_ALL = Intervals.of((0, 2**128 - 1))


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


def _span(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    return int(net.network_address), int(net.broadcast_address)


#: IPv4 space that is not reachable from the internet (IANA special-purpose registry:
#: "this network", private-use, shared address space, loopback, link-local, IETF
#: protocol assignments, documentation, benchmarking, multicast, reserved).
_V4_NOT_PUBLIC = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
                  "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24",
                  "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
                  "224.0.0.0/4", "240.0.0.0/4")
#: IPv6 global unicast space (2000::/3) without the documentation prefix.
_V6_PUBLIC = Intervals.of(_span(_net("2000::/3"))) - Intervals.of(_span(_net("2001:db8::/32")))
_V4_PUBLIC = _V4_ALL - Intervals.of(*(_span(_net(n)) for n in _V4_NOT_PUBLIC))


@dataclass(frozen=True)
class Addresses:
    """A set of IPv4 and IPv6 addresses."""

    v4: Intervals = field(default_factory=Intervals)
    v6: Intervals = field(default_factory=Intervals)

    def __or__(self, other: Addresses) -> Addresses:
        return Addresses(self.v4 | other.v4, self.v6 | other.v6)

    def __sub__(self, other: Addresses) -> Addresses:
        return Addresses(self.v4 - other.v4, self.v6 - other.v6)

    def __and__(self, other: Addresses) -> Addresses:
        return Addresses(self.v4 & other.v4, self.v6 & other.v6)

    def __bool__(self) -> bool:
        return bool(self.v4) or bool(self.v6)

    def public(self) -> Addresses:
        """The part of the set that is routable on the internet."""
        return self & PUBLIC

    def describe(self, limit: int = 4) -> str:
        nets: list[str] = []
        for spans, cls in ((self.v4.spans, ipaddress.IPv4Address),
                           (self.v6.spans, ipaddress.IPv6Address)):
            for lo, hi in spans:
                nets += [str(n) for n in ipaddress.summarize_address_range(cls(lo), cls(hi))]
        if len(nets) > limit:
            nets = [*nets[:limit], f"… ({len(nets) - limit} more)"]
        return ", ".join(nets) or "no address"


ANY = Addresses(_V4_ALL, _V6_ALL)
PUBLIC = Addresses(_V4_PUBLIC, _V6_PUBLIC)
NOWHERE = Addresses()


def parse_cidr(text: str) -> Addresses:
    """One CIDR or single address of either family."""
    net = _net(text.strip())
    span = Intervals.of(_span(net))
    return Addresses(v4=span) if net.version == 4 else Addresses(v6=span)


def address_range(start: str, end: str) -> Addresses:
    """An inclusive range of addresses (SQL firewall rules give start and end)."""
    a, b = ipaddress.ip_address(start.strip()), ipaddress.ip_address(end.strip())
    if a.version != b.version:
        raise ValueError(f"range mixes address families: {start} - {end}")
    span = Intervals.of((int(a), int(b)))
    return Addresses(v4=span) if a.version == 4 else Addresses(v6=span)


def parse_sources(values: Iterable[object],
                  names: Callable[[str], Addresses | None] | None = None) -> Addresses:
    """The union of sources: CIDRs and single addresses of either family, and names
    (service tags, ``*``…) resolved by ``names``; a value that is neither raises
    ValueError, so an unknown source is never silently taken as "nowhere"."""
    out = NOWHERE
    for value in values:
        text = str(value).strip()
        if not text:
            continue
        try:
            out = out | parse_cidr(text)
            continue
        except ValueError:
            pass
        resolved = names(text) if names else None
        if resolved is None:
            raise ValueError(f"unknown source {text!r}")
        out = out | resolved
    return out


@dataclass(frozen=True)
class Wide:
    """When a set of sources counts as "the internet": it holds at least as many public
    addresses as a /``v4_prefix`` (IPv4) or a /``v6_prefix`` (IPv6)."""

    v4_prefix: int = 8
    v6_prefix: int = 32

    def __post_init__(self) -> None:
        if not (0 <= self.v4_prefix <= 32 and 0 <= self.v6_prefix <= 128):
            raise ValueError("internet prefix lengths must be 0-32 (IPv4) and 0-128 (IPv6)")

    def holds(self, addresses: Addresses) -> bool:
        pub = addresses.public()
        return (pub.v4.size() >= 2 ** (32 - self.v4_prefix)
                or pub.v6.size() >= 2 ** (128 - self.v6_prefix))


def wide_from(params: Mapping[str, object]) -> Wide:
    """The :class:`Wide` threshold of a check's ``internet_prefix_v4``/``_v6`` params."""
    return Wide(int(str(params.get("internet_prefix_v4", 8))),
                int(str(params.get("internet_prefix_v6", 32))))


#: The parameters every exposure check declares (names and defaults of :class:`Wide`).
WIDE_PARAMETERS: Mapping[str, int] = {"internet_prefix_v4": 8, "internet_prefix_v6": 32}

# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One packet-filter rule, already parsed.

    ``protocol`` None = every protocol; ``ports`` applies to port protocols only;
    ``priority``: lower is evaluated first; at equal priority deny goes first.
    """

    name: str
    priority: int
    allow: bool
    protocol: int | None
    ports: Intervals
    sources: Addresses

    def matches(self, protocol: int) -> bool:
        return self.protocol is None or self.protocol == protocol


@dataclass(frozen=True)
class Opening:
    """Ports of one protocol reachable from ``sources`` because of ``rules``."""

    protocol: int
    ports: Intervals
    sources: Addresses
    rules: tuple[str, ...]


def _order(rules: Iterable[Rule]) -> list[Rule]:
    return sorted(rules, key=lambda r: (r.priority, r.allow))


def openings(rules: Iterable[Rule], protocol: int) -> list[Opening]:
    """For ``protocol``: each run of ports with the same set of allowed source
    addresses, and the allow rules that admit them. First match wins per packet."""
    ordered = [r for r in _order(rules) if r.matches(protocol)]
    if protocol in PORT_PROTOCOLS:
        cuts = {0, MAX_PORT + 1}
        for r in ordered:
            for lo, hi in r.ports.spans:
                cuts.update((lo, hi + 1))
        bounds = sorted(c for c in cuts if 0 <= c <= MAX_PORT + 1)
        pieces = [(lo, hi - 1) for lo, hi in itertools.pairwise(bounds)]
    else:
        pieces = [(0, MAX_PORT)]  # ports do not exist for this protocol
    out: list[Opening] = []
    for lo, hi in pieces:
        decided, allowed = NOWHERE, NOWHERE
        names: list[str] = []
        for r in ordered:
            if protocol in PORT_PROTOCOLS and lo not in r.ports:
                continue  # pieces never straddle a rule's port boundary
            fresh = r.sources - decided
            if r.allow and fresh:
                allowed = allowed | fresh
                names.append(r.name)
            decided = decided | r.sources
        if not allowed:
            continue
        prev = out[-1] if out else None
        if (prev and prev.sources == allowed and prev.rules == tuple(names)
                and prev.ports.spans[-1][1] + 1 == lo):
            out[-1] = Opening(protocol, prev.ports | Intervals.of((lo, hi)), allowed,
                              prev.rules)
        else:
            out.append(Opening(protocol, Intervals.of((lo, hi)), allowed, tuple(names)))
    return out


@dataclass(frozen=True)
class Exposure:
    """What the internet reaches through a set of rules, for one protocol."""

    protocol: int
    ports: Intervals
    rules: tuple[str, ...]


def internet_exposure(rules: Sequence[Rule], protocol: int, wide: Wide) -> Exposure:
    """Ports of ``protocol`` that an internet-wide set of sources reaches."""
    ports = Intervals()
    names: list[str] = []
    for o in openings(rules, protocol):
        if wide.holds(o.sources):
            ports = ports | o.ports
            names += [n for n in o.rules if n not in names]
    return Exposure(protocol, ports, tuple(names))


def reaches(rules: Sequence[Rule], protocol: int, port: int, wide: Wide) -> Exposure:
    """Whether the internet reaches ``port`` of ``protocol`` (for protocols without
    ports, the protocol itself); the exposure names the rules that admit it, and has no
    ports when nothing does."""
    for o in openings(rules, protocol):
        if (protocol not in PORT_PROTOCOLS or port in o.ports) and wide.holds(o.sources):
            return Exposure(protocol, Intervals.of((port, port)), o.rules)
    return Exposure(protocol, Intervals(), ())


#: "Every port" for the all-ports checks: at least this many of the 65,535 usable ports
#: reached. A deny of a few ports (22, 3389) ahead of an allow-all leaves every other
#: service open, which is what the checks are about; 64,512 tolerates up to 1,023
#: closed ports (as many as the well-known range).
EVERY_PORT_MIN = 64512


def every_port_open(rules: Sequence[Rule], wide: Wide, min_ports: int = EVERY_PORT_MIN
                    ) -> list[Exposure]:
    """Exposures of TCP and UDP that reach at least ``min_ports`` usable ports."""
    out = []
    for protocol in (TCP, UDP):
        e = internet_exposure(rules, protocol, wide)
        if (e.ports & EVERY_USABLE_PORT).size() >= min_ports:
            out.append(e)
    return out


def describe_every_port(e: Exposure) -> str:
    """"every TCP port" or "65,534 of 65,535 TCP ports (not 22)"."""
    label = protocol_label(e.protocol)
    reached = e.ports & EVERY_USABLE_PORT
    if reached.covers(EVERY_USABLE_PORT):
        return f"every {label} port"
    closed = EVERY_USABLE_PORT - reached
    return (f"{reached.size()} of {MAX_PORT} {label} ports (all but "
            f"{describe_ports(closed)})")
