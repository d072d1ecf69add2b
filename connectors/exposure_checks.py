"""The internet-exposure checks every cloud's packet filter gets: SSH, RDP, every port.

One implementation for Azure network security groups and Google Cloud firewall rules
(and any later packet filter): a connector supplies how its evidence becomes
:class:`connectors.exposure.Rule` objects and how to name their sources, and
:func:`register` declares ``<prefix>.network.ssh_open_to_internet``,
``…rdp_open_to_internet`` and ``…all_ports_open_to_internet`` with the same logic,
parameters and messages. The arithmetic is in :mod:`connectors.exposure`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from connectors import exposure
from core.checks import Verdict, check, failed, passed

RulesOf = Callable[[Mapping[str, Any]], Sequence[exposure.Rule]]
SourcesOf = Callable[[Mapping[str, Any], Sequence[str]], str]

ADMIN_PORTS = (("ssh", "SSH", 22), ("rdp", "RDP", 3389))
_ADMIN_RISK = {
    "SSH": "SSH reachable from the internet is brute-forced and exploited within hours",
    "RDP": "RDP reachable from the internet is a leading ransomware entry point",
}


def _rules_phrase(names: Sequence[str], verb: str) -> str:
    noun = "Rule" if len(names) == 1 else "Rules"
    return f"{noun} {', '.join(names)} {verb if len(names) == 1 else verb.removesuffix('s')}"


def port_verdict(rules: Sequence[exposure.Rule], port: int, label: str,
                 params: Mapping[str, Any], sources: Callable[[Sequence[str]], str]
                 ) -> Verdict:
    """Fail when the internet reaches TCP ``port`` through ``rules``."""
    found = exposure.reaches(rules, exposure.TCP, port, exposure.wide_from(params))
    if found.rules:
        return failed(f"{_rules_phrase(found.rules, 'allows')} {label} (TCP {port}) from "
                      f"the internet ({sources(found.rules)})")
    return passed(f"No rule allows {label} (TCP {port}) from the internet")


def every_port_verdict(rules: Sequence[exposure.Rule], params: Mapping[str, Any]) -> Verdict:
    """Fail when the internet reaches (nearly) every TCP or UDP port."""
    opened = exposure.every_port_open(rules, exposure.wide_from(params),
                                      int(params["min_open_ports"]))
    if opened:
        what = " and ".join(exposure.describe_every_port(e) for e in opened)
        names = sorted({n for e in opened for n in e.rules})
        return failed(f"{_rules_phrase(names, 'opens')} {what} to the internet")
    return passed("No rule opens (nearly) every port to the internet")


def register(*, prefix: str, resource_type: str, subject: str, rules_of: RulesOf,
             sources_of: SourcesOf, admin_access: str, restrict: str) -> None:
    """Declare the three exposure checks of one packet filter.

    ``subject`` names the resource in titles ("network security group"),
    ``admin_access`` the safe way in ("Azure Bastion or just-in-time VM access") and
    ``restrict`` how to narrow a rule ("restrict the inbound rule's sources").
    """
    for key, label, port in ADMIN_PORTS:

        def judge(payload: Mapping[str, Any], params: Mapping[str, Any], *,
                  _port: int = port, _label: str = label) -> Verdict:
            return port_verdict(rules_of(payload), _port, _label, params,
                                lambda names: sources_of(payload, names))

        check(
            id=f"{prefix}.network.{key}_open_to_internet",
            title=f"No {subject} allows {label} ({port}) from the internet",
            severity="high",
            resource_type=resource_type,
            rationale=f"{_ADMIN_RISK[label]}; administrative access should come through "
            f"{admin_access} or allow-listed ranges. Rules are evaluated as the platform "
            "does (priority order, the first match decides), with port, protocol and "
            "address sets rather than literals.",
            remediation=f"{restrict.capitalize()} for TCP {port} (or delete the rule); use "
            f"{admin_access}.",
            parameters=dict(exposure.WIDE_PARAMETERS),
        )(judge)

    def judge_all(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
        return every_port_verdict(rules_of(payload), params)

    check(
        id=f"{prefix}.network.all_ports_open_to_internet",
        title=f"No {subject} allows every port from the internet",
        severity="critical",
        resource_type=resource_type,
        rationale="Rules opening (nearly) every port to the internet expose every service "
        "on the machines behind them, including ones never meant to be reachable; a deny "
        "of a few ports ahead of an allow-all leaves the rest open.",
        remediation="Replace the rule with rules for the specific ports and sources needed.",
        parameters={**exposure.WIDE_PARAMETERS, "min_open_ports": exposure.EVERY_PORT_MIN},
    )(judge_all)
