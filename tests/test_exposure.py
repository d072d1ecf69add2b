"""The shared network-exposure arithmetic (connectors/exposure.py), against oracles.

Interval algebra is compared with Python sets, address classification with
:mod:`ipaddress`, and rule evaluation with a brute-force first-match simulation of every
(port, address) pair in a small universe — the way a packet filter decides.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import exposure
from connectors.exposure import (
    ANY,
    PUBLIC,
    Addresses,
    Intervals,
    Rule,
    Wide,
    openings,
    parse_ports,
    parse_protocol,
    parse_sources,
)

# No deadline: hypothesis's default fails an example that takes over 200 ms, a wall-time
# assertion a loaded CI machine breaks (seen: 319 ms once, 1 ms on the rerun).
settings.register_profile("annexa", deadline=None)
settings.load_profile("annexa")

spans = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)).map(sorted).map(tuple),
                 max_size=6)


def as_set(i: Intervals) -> set[int]:
    return {n for lo, hi in i.spans for n in range(lo, hi + 1)}


def from_spans(s: list[tuple[int, int]]) -> Intervals:
    return Intervals.of(*s)


@given(spans, spans)
def test_interval_algebra_matches_sets(a: list[tuple[int, int]], b: list[tuple[int, int]]
                                       ) -> None:
    x, y = from_spans(a), from_spans(b)
    sx, sy = as_set(x), as_set(y)
    assert as_set(x | y) == sx | sy
    assert as_set(x & y) == sx & sy
    assert as_set(x - y) == sx - sy
    assert x.size() == len(sx)
    assert x.covers(y) == (sy <= sx)
    # Normal form: sorted, disjoint, not adjacent.
    for (_, hi), (lo, _) in zip((x | y).spans, (x | y).spans[1:], strict=False):
        assert hi + 1 < lo


@given(st.lists(st.one_of(
    st.integers(0, 65535).map(str),
    st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(sorted)
    .map(lambda t: f"{t[0]}-{t[1]}")), min_size=1, max_size=5))
def test_port_specs_are_united(specs: list[str]) -> None:
    expected: set[int] = set()
    for spec in specs:
        lo, _, hi = spec.partition("-")
        expected |= set(range(int(lo), int(hi or lo) + 1))
    got = parse_ports(specs)
    assert got.size() == len(expected)
    assert all(p in got for p in list(expected)[:50])


def test_port_words_and_bad_specs() -> None:
    assert parse_ports(["*"]) == exposure.ALL_PORTS
    assert parse_ports([]) == exposure.ALL_PORTS
    assert parse_ports(None) == exposure.ALL_PORTS
    assert parse_ports(["1-1024", "1025-65535"]).covers(exposure.EVERY_USABLE_PORT)
    for bad in ("ssh", "10-5", "70000", "-1"):
        with pytest.raises(ValueError):
            parse_ports([bad])


def test_protocols_by_name_and_number() -> None:
    assert parse_protocol("Tcp") == parse_protocol("tcp") == parse_protocol("6") == 6
    assert parse_protocol("UDP") == parse_protocol("17") == 17
    assert parse_protocol("Icmp") == 1 and parse_protocol("Esp") == 50
    assert parse_protocol("Ah") == 51 and parse_protocol("sctp") == 132
    assert parse_protocol("ipip") == 4
    for every in ("*", "all", "Any", None):
        assert parse_protocol(every) is None
    for bad in ("tcpx", "256", ""):
        with pytest.raises(ValueError):
            parse_protocol(bad)


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1))
def test_public_ipv4_matches_ipaddress(n: int) -> None:
    addr = ipaddress.IPv4Address(n)
    if addr in ipaddress.ip_network("192.0.0.0/24"):
        return  # IETF assignments: judged wholesale as not public here
    expected = addr.is_global and not addr.is_multicast
    assert (n in PUBLIC.v4) == expected


@settings(max_examples=200)
@given(st.integers(0, 2**128 - 1))
def test_public_ipv6_is_global_unicast(n: int) -> None:
    addr = ipaddress.IPv6Address(n)
    expected = addr in ipaddress.ip_network("2000::/3") and \
        addr not in ipaddress.ip_network("2001:db8::/32")
    assert (n in PUBLIC.v6) == expected


def test_sources_and_the_internet_threshold() -> None:
    wide = Wide()
    halves = parse_sources(["0.0.0.0/1", "128.0.0.0/1"])
    assert halves == parse_sources(["0.0.0.0/0"])
    assert wide.holds(halves)
    assert wide.holds(parse_sources(["::/0"]))
    assert wide.holds(parse_sources(["8.0.0.0/7"]))
    assert not wide.holds(parse_sources(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]))
    assert not wide.holds(parse_sources(["35.235.240.0/20"]))
    assert not wide.holds(parse_sources(["20.0.0.0/9"]))
    assert Wide(v4_prefix=9).holds(parse_sources(["20.0.0.0/9"]))
    assert wide.holds(parse_sources(["Internet"], lambda n: PUBLIC if n == "Internet"
                                     else None))
    with pytest.raises(ValueError, match="unknown source"):
        parse_sources(["Internet"])
    with pytest.raises(ValueError):
        Wide(v4_prefix=33)
    assert "0.0.0.0/1" in halves.describe() or "0.0.0.0/0" in halves.describe()


# --------------------------------------------------------------------------- rule oracle

BASE = int(ipaddress.IPv4Address("20.0.0.0"))
ADDRS = range(16)  # 20.0.0.0 .. 20.0.0.15
PORTS = range(0, 22)

rule_strategy = st.builds(
    lambda name, prio, allow, proto, plo, phi, alo, ahi: Rule(
        name=name, priority=prio, allow=allow, protocol=proto,
        ports=Intervals.of((min(plo, phi), max(plo, phi))),
        sources=Addresses(v4=Intervals.of((BASE + min(alo, ahi), BASE + max(alo, ahi))))),
    st.sampled_from("abcdefgh"), st.integers(1, 5), st.booleans(),
    st.sampled_from([6, 17, None]), st.integers(0, 21), st.integers(0, 21),
    st.integers(0, 15), st.integers(0, 15))


def first_match(rules: list[Rule], protocol: int, port: int, addr: int) -> bool:
    for r in sorted(rules, key=lambda r: (r.priority, r.allow)):
        if r.matches(protocol) and port in r.ports and (BASE + addr) in r.sources.v4:
            return r.allow
    return False  # the implied deny at the end of every list


@settings(max_examples=300)
@given(st.lists(rule_strategy, max_size=6), st.sampled_from([6, 17]))
def test_openings_equal_first_match_evaluation(rules: list[Rule], protocol: int) -> None:
    found = openings(rules, protocol)
    for port in PORTS:
        allowed = exposure.NOWHERE
        for o in found:
            if port in o.ports:
                allowed = allowed | o.sources
        for addr in ADDRS:
            assert ((BASE + addr) in allowed.v4) == first_match(rules, protocol, port, addr), \
                (port, addr)


def test_deny_before_allow_at_equal_priority_and_every_port() -> None:
    allow_all = Rule("allow", 100, True, None, exposure.ALL_PORTS, ANY)
    deny_ssh = Rule("deny-ssh", 100, False, 6, parse_ports(["22"]), ANY)
    assert not exposure.reaches([allow_all, deny_ssh], 6, 22, Wide()).rules
    assert exposure.reaches([allow_all, deny_ssh], 6, 23, Wide()).rules == ("allow",)
    assert exposure.reaches([allow_all], 1, 0, Wide()).rules == ("allow",)  # ICMP
    every = exposure.every_port_open([allow_all, deny_ssh], Wide())
    assert [e.protocol for e in every] == [6, 17]
    assert exposure.describe_every_port(every[0]) == \
        "65534 of 65535 TCP ports (all but 22)"
    assert exposure.describe_every_port(every[1]) == "every UDP port"
    one_to_max = Rule("r", 1, True, 6, parse_ports(["1-65535"]), ANY)
    assert exposure.every_port_open([one_to_max], Wide())
    narrow = Rule("r", 1, True, 6, parse_ports(["1-60000"]), ANY)
    assert not exposure.every_port_open([narrow], Wide())
