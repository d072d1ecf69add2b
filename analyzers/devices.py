"""Cross-source device checks: every active person has a managed device, every device
belongs to an active person, and leavers' devices come back.

A device-management source knows devices and an e-mail per device; identity providers
(and, later, HR) know who is employed. Neither can tell alone that a leaver still has a
laptop (A.5.11) or that a device belongs to nobody the organisation knows (A.5.9), so the
join is judged here, after the sources' runs, from what they stored — exactly as the
identity correlation (:mod:`analyzers.identity`) does, and through the same machinery:
an analyzer (entry point ``device_owners`` in ``annexa.analyzers``) reading the store
through :class:`core.analyzer.EvidenceView`, with its own run, digest chain and checks.

People sources are the configured instances whose connector class declares an account
hook (``accounts``, :class:`core.accounts.AccountSource`), reduced by :func:`person_fact`
to a :class:`PersonFact` (join e-mails, employment state, since when): an identity
provider's account suspended / deprovisioned / deleted is a leaver; an HR record's
termination date (:func:`hr_person`) outranks an IdP account left enabled. Sources that
are neither (GitHub: no e-mails) cannot join devices and are left out.

One evidence per person (``devices.person.assets``), keyed by e-mail, listing the
person's accounts and devices; devices without any user become their own record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import Field

from analyzers.identity import IdentityKind, _stale_sources, account_from, identity_kinds
from connectors.devices import email_of
from connectors.kit import GLOBAL, require
from core.accounts import Account
from core.analyzer import Analyzer, EvidenceView
from core.checks import Verdict, check, failed, not_applicable, passed
from core.connector import CollectContext, Connector, ConnectorOptions
from core.records import Coverage, Evidence, Record
from core.times import days_since, full_time, parse_time

PERSON_TYPE = "devices.person.assets"
SCOPE = "people"
SERVICE = "assets"
DEFAULT_NAME = "device-ownership"


@dataclass(frozen=True)
class PersonFact:
    """What one people source says about one person."""

    emails: tuple[str, ...]
    state: str  # active | leaver | pending
    since: str | None = None  # when they left, if known
    #: An employment record (HR): its termination outranks an account left enabled.
    authoritative: bool = False


def person_fact(acc: Account) -> PersonFact:
    """What an identity provider's account says about its person."""
    state = {"active": "active", "offboarded": "leaver", "removed": "leaver"}.get(
        acc.state, "pending"
    )
    return PersonFact(acc.emails, state, acc.since)


def hr_person(acc: Account) -> PersonFact:
    """An HR record: a leaver once the termination date has passed (a future date is
    still an employee who has a laptop to return later), or terminated without a date."""
    email = email_of(acc.login)
    ended = acc.termination_date
    left = parse_time(ended) <= datetime.now(UTC) if ended else acc.state == "offboarded"
    state = "leaver" if left else "active"
    return PersonFact((email,) if email else (), state, full_time(ended), authoritative=True)


def people_kinds(instances: Mapping[str, type[Connector]]) -> dict[str, IdentityKind]:
    """The people sources among ``instances``: identity providers and HR sources."""
    return {n: k for n, k in identity_kinds(instances).items() if k.idp or k.hr}


def _fact(kind: IdentityKind, source: str, row: Mapping[str, Any]) -> PersonFact:
    acc = account_from(kind, source, row["resource_type"], row["resource_id"], row["payload"])
    return hr_person(acc) if kind.hr else person_fact(acc)


#: Device sources: connector type → (resource types, unit).
DEVICE_KINDS: dict[str, IdentityKind] = {
    "intune": IdentityKind("intune", ("intune.device.managed",), ("device",), False),
    "jamf": IdentityKind("jamf", ("jamf.computer.inventory",), ("computer",), False),
}


# --------------------------------------------------------------------------- the join


@dataclass
class _Person:
    state: str = "unknown"
    since: str | None = None
    authoritative: bool = False  # the state comes from an HR record
    accounts: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)


_RANK = {"active": 3, "leaver": 2, "pending": 1, "unknown": 0}


def join(
    people: Iterable[tuple[str, str, PersonFact]],
    devices: Iterable[tuple[str, str, Mapping[str, Any]]],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(person id, payload) for every person known to a people source or owning a device.

    A person is ``active`` when any source says so (an HR termination wins over an IdP
    account left enabled: that is A.5.18's failure, not this one's), ``leaver`` when
    every source says they left, ``unknown`` when only a device names them.
    """
    by_email: dict[str, _Person] = {}
    for source, rid, fact in people:
        for email in fact.emails:
            p = by_email.setdefault(email, _Person())
            p.accounts.append({"source": source, "id": rid, "state": fact.state})
            if fact.authoritative and not p.authoritative:
                p.state, p.since, p.authoritative = fact.state, fact.since, True
            elif fact.authoritative == p.authoritative and _RANK[fact.state] > _RANK[p.state]:
                p.state, p.since = fact.state, fact.since
            elif fact.authoritative == p.authoritative and fact.state == p.state == "leaver":
                p.since = max(p.since or "", fact.since or "") or None
    unassigned = []
    for source, rid, d in devices:
        summary = {
            "source": source,
            "id": rid,
            "name": d.get("name"),
            "platform": d.get("platform"),
            "last_check_in": d.get("last_check_in"),
        }
        email = email_of(d.get("user_email"))
        if email is None:
            unassigned.append(summary)
        else:
            by_email.setdefault(email, _Person()).devices.append(summary)
    for email in sorted(by_email):
        p = by_email[email]
        yield (
            email,
            {
                "person": email,
                "state": p.state,
                "since": p.since,
                "accounts": sorted(p.accounts, key=lambda a: (a["source"], a["id"])),
                "devices": sorted(p.devices, key=lambda d: (d["source"], d["id"])),
            },
        )
    for d in unassigned:
        pid = f"unassigned:{d['source']}:{d['id']}"
        yield pid, {"person": None, "state": "unassigned", "since": None, "accounts": [],
                    "devices": [d]}  # fmt: skip


# --------------------------------------------------------------------------- checks


def _devices_text(devices: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(
        f"{d.get('source')} {d.get('name') or d.get('id')} ({d.get('platform')}, last check-in "
        f"{str(d.get('last_check_in') or 'never')[:10]})"
        for d in devices
    )


@check(
    id="devices.person.has_managed_device",
    title="Every active person uses at least one managed device",
    severity="medium",
    resource_type=PERSON_TYPE,
    rationale=(
        "A person with no device under management works on something the organisation "
        "neither inventories nor protects: an unmanaged or personal machine."
    ),
    remediation=(
        "Enrol the person's device in the MDM (or record why they need none, e.g. a "
        "service identity, in the exempt parameter)."
    ),
    parameters={"exempt": []},
)
def has_managed_device(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    who = payload.get("person")
    if require(payload, "state") != "active":
        return not_applicable(f"{who or 'device'} is not an active person")
    if who in {str(e).lower() for e in params["exempt"]}:
        return not_applicable(f"{who} is exempt from device management")
    devices = require(payload, "devices")
    if devices:
        return passed(f"{who} uses {len(devices)} managed device(s): {_devices_text(devices)}")
    sources = ", ".join(sorted({a["source"] for a in payload.get("accounts") or []}))
    return failed(f"{who} is active ({sources}) but has no device in any device-management source")


@check(
    id="devices.person.device_owner_active",
    title="Every managed device belongs to a known, active person",
    severity="medium",
    resource_type=PERSON_TYPE,
    rationale=(
        "A device assigned to nobody, or to an address no identity source knows, is an "
        "inventory entry without an owner: nobody answers for it or returns it."
    ),
    remediation=(
        "Assign the device to its user in the MDM, or retire it; fix the user's e-mail "
        "if it does not match their identity-provider account."
    ),
)
def device_owner_active(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    devices = require(payload, "devices")
    state = require(payload, "state")
    who = payload.get("person")
    if not devices:
        return not_applicable(f"{who} has no device")
    if state == "active":
        return passed(f"{who} is active and uses {_devices_text(devices)}")
    if state == "leaver":
        return not_applicable(f"{who} left: judged by devices.person.leaver_devices_returned")
    if state == "unassigned":
        return failed(f"{_devices_text(devices)}: assigned to no user")
    return failed(
        f"{_devices_text(devices)}: assigned to {who}, whom no people source knows ({state})"
    )


@check(
    id="devices.person.leaver_devices_returned",
    title="A leaver's devices are returned (no longer enrolled to them)",
    severity="high",
    resource_type=PERSON_TYPE,
    rationale=(
        "A laptop still enrolled to someone who left is an asset not returned: it holds "
        "company data and cached credentials outside the organisation's control."
    ),
    remediation=(
        "Recover the device, wipe and re-assign or retire it in the MDM; lock or wipe it "
        "remotely when it cannot be recovered."
    ),
    parameters={"grace_days": 7},
)
def leaver_devices_returned(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    who = payload.get("person")
    if require(payload, "state") != "leaver":
        return not_applicable(f"{who or 'device'} is not a leaver")
    devices = require(payload, "devices")
    since = payload.get("since")
    left = f" (left {str(since)[:10]})" if since else ""
    if not devices:
        return passed(f"leaver {who}{left} has no device enrolled")
    if since and days_since(since) <= params["grace_days"]:
        return passed(
            f"leaver {who}{left} still has {_devices_text(devices)}, within the "
            f"{params['grace_days']}-day return period"
        )
    return failed(f"leaver {who}{left} still has {_devices_text(devices)} enrolled")


# --------------------------------------------------------------------------- the analyzer


class DeviceOwnersOptions(ConnectorOptions):
    """Options of ``[[connectors]] type = "device_owners"`` (all optional)."""

    people: list[str] = Field(
        default_factory=list,
        description="people sources (identity / HR connector instances); default: all",
    )
    devices: list[str] = Field(
        default_factory=list, description="device connector instances; default: all"
    )


def chosen_sources(
    options: DeviceOwnersOptions, instances: Mapping[str, type[Connector]]
) -> tuple[dict[str, IdentityKind], dict[str, IdentityKind], list[str]]:
    """(people sources, device sources, names in the options that are neither)."""
    people = people_kinds(instances)
    devices = {n: DEVICE_KINDS[c.type] for n, c in instances.items() if c.type in DEVICE_KINDS}
    missing = [
        n for n in [*options.people, *options.devices] if n not in people and n not in devices
    ]
    if options.people:
        people = {n: k for n, k in people.items() if n in options.people}
    if options.devices:
        devices = {n: k for n, k in devices.items() if n in options.devices}
    return people, devices, missing


class DeviceOwnershipAnalyzer(Analyzer):
    """Joins stored devices with stored people (see the module docstring)."""

    type = "device_owners"
    prefix = "devices"
    scope = SCOPE
    default_name = DEFAULT_NAME
    order = 20
    Options: ClassVar[type[ConnectorOptions]] = DeviceOwnersOptions

    options: DeviceOwnersOptions

    def analyze(self, view: EvidenceView, ctx: CollectContext) -> Iterator[Record]:
        people_src, device_src, missing = chosen_sources(self.options, view.instances)
        problems = [f"{n}: no such people or device connector is configured" for n in missing]
        people: list[tuple[str, str, PersonFact]] = []
        devices: list[tuple[str, str, Mapping[str, Any]]] = []
        for name, kind in sorted(people_src.items()):
            for row in view.current(kind.resource_types, [name]):
                if row["payload"] is not None:
                    people.append((name, row["resource_id"], _fact(kind, name, row)))
            if kind.idp:
                for row in view.removed(kind.resource_types, [name]):
                    fact = _fact(kind, name, row)
                    since = fact.since or full_time(row["removed_at"])
                    people.append(
                        (name, row["resource_id"], PersonFact(fact.emails, "leaver", since))
                    )
        for name, kind in sorted(device_src.items()):
            for row in view.current(kind.resource_types, [name]):
                if row["payload"] is not None:
                    devices.append((name, row["resource_id"], row["payload"]))
        kinds = {**device_src, **people_src}
        services = {s for k in kinds.values() for s in k.services} | {"*"}
        problems += _stale_sources(kinds, view.unit_states(list(kinds), services))
        for pid, payload in join(people, devices):
            if ctx.cancelled():
                return
            yield Evidence(SCOPE, GLOBAL, PERSON_TYPE, pid, payload)
        yield Coverage(SCOPE, GLOBAL, SERVICE, ok=not problems, error="; ".join(problems) or None)

    def inputs(self, instances: Mapping[str, type[Connector]]) -> set[str]:
        """The people and device sources: none unless there is one of each."""
        people, devices, _ = chosen_sources(self.options, instances)
        return set(people) | set(devices) if people and devices else set()
