"""Cross-source device checks: every active person has a managed device, every device
belongs to an active person, and leavers' devices come back.

A device-management source knows devices and an e-mail per device; identity providers
(and, later, HR) know who is employed. Neither can tell alone that a leaver still has a
laptop (A.5.11) or that a device belongs to nobody the organisation knows (A.5.9), so the
join is judged here, after the sources' runs, from what they stored — exactly as the
identity correlation (:mod:`collector.correlate`) does, and through the same machinery:
an ordinary connector (entry point ``device_owners``) whose store snapshot is injected
(:func:`run_device_ownership`), its own run, digest chain and checks.

People sources are declared in :data:`PEOPLE_KINDS`: each maps a connector type to the
resource types holding its people and a function reducing one stored payload to a
:class:`PersonFact` (join e-mails, employment state, since when). The identity sources
reuse :func:`collector.correlate.account_from` (an account suspended / deprovisioned /
deleted in the IdP is a leaver); the HR sources (``bamboohr``, ``hr``: ``work_email``,
``termination_date``) are read by :func:`hr_person`, and an HR termination outranks an
IdP account left enabled.

One evidence per person (``devices.person.assets``), keyed by e-mail, listing the
person's accounts and devices; devices without any user become their own record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import Field
from sqlalchemy import Engine

from collector.config import ConnectorConfig, LoadedConnector, Settings
from collector.correlate import KINDS, IdentityKind, _stale_sources, account_from
from connectors.common import GLOBAL, require
from connectors.devices import email_of
from core.checks import REGISTRY, CheckSpec, Verdict, check, failed, not_applicable, passed
from core.connector import CollectContext, Connector, ConnectorOptions
from core.records import Coverage, Evidence, Record
from core.times import days_since, full_time, parse_time
from mappings.loader import MappingIndex
from store.writer import RunSummary

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


@dataclass(frozen=True)
class PeopleKind:
    connector_type: str
    resource_types: tuple[str, ...]
    services: tuple[str, ...]
    read: Callable[[str, str, str, Mapping[str, Any]], PersonFact]
    idp: bool = True


def _identity_person(kind: str) -> Callable[[str, str, str, Mapping[str, Any]], PersonFact]:
    def read(source: str, rtype: str, rid: str, payload: Mapping[str, Any]) -> PersonFact:
        acc = account_from(source, kind, rtype, rid, payload)
        state = {"active": "active", "offboarded": "leaver", "removed": "leaver"}.get(
            acc.state, "pending"
        )
        return PersonFact(acc.emails, state, acc.since)

    return read


def hr_person(source: str, rtype: str, rid: str, payload: Mapping[str, Any]) -> PersonFact:
    """An HR record (``connectors/hr/model.py``: ``work_email``, ``termination_date``,
    ``terminated``): a leaver once the termination date has passed (a future date is
    still an employee who has a laptop to return later), or terminated without a date."""
    email = email_of(payload.get("work_email"))
    ended = payload.get("termination_date")
    if ended:
        left = parse_time(ended) <= datetime.now(UTC)
    else:
        left = payload.get("terminated") is True
    state = "leaver" if left else "active"
    return PersonFact((email,) if email else (), state, full_time(ended), authoritative=True)


#: People sources by connector type (GitHub has no e-mails, so it cannot join devices):
#: the identity providers, whose suspended / deprovisioned / deleted accounts are
#: leavers, and the HR sources (bamboohr, hr), whose termination dates are authoritative.
PEOPLE_KINDS: dict[str, PeopleKind] = {
    **{
        t: PeopleKind(t, k.resource_types, k.services, _identity_person(t))
        for t, k in KINDS.items()
        if k.idp
    },
    **{
        t: PeopleKind(t, k.resource_types, k.services, hr_person, idp=False)
        for t, k in KINDS.items()
        if k.hr
    },
}

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


# --------------------------------------------------------------------------- the connector


class DeviceOwnersOptions(ConnectorOptions):
    """Options of ``[[connectors]] type = "device_owners"`` (all optional)."""

    people: list[str] = Field(
        default_factory=list,
        description="people sources (identity / HR connector instances); default: all",
    )
    devices: list[str] = Field(
        default_factory=list, description="device connector instances; default: all"
    )


@dataclass
class Snapshot:
    engine: Engine
    people: dict[str, str]  # instance name → connector type
    devices: dict[str, str]
    missing: list[str] = field(default_factory=list)


class DeviceOwnershipConnector(Connector):
    """Joins stored devices with stored people (see the module docstring)."""

    type = "device_owners"
    prefix = "devices"
    Options: ClassVar[type[ConnectorOptions]] = DeviceOwnersOptions

    def __init__(
        self, name: str, options: ConnectorOptions, snapshot: Snapshot | None = None
    ) -> None:
        super().__init__(name, options)
        self._snapshot = snapshot

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        return [s for s in REGISTRY if s.id.startswith("devices.")]

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        snap = self._snapshot
        if snap is None:
            yield Coverage(
                SCOPE, GLOBAL, "*", ok=False,
                error="device ownership runs after the device and people connectors "
                "(annexa collect), not on its own",
            )  # fmt: skip
            return
        yield from self._collect(snap, ctx)

    def _collect(self, snap: Snapshot, ctx: CollectContext) -> Iterator[Record]:
        from store.identities import current_identities, latest_unit_states, removed_identities

        problems = [f"{n}: no such people or device connector is configured" for n in snap.missing]
        people: list[tuple[str, str, PersonFact]] = []
        devices: list[tuple[str, str, Mapping[str, Any]]] = []
        with snap.engine.connect() as conn:
            for name, t in sorted(snap.people.items()):
                kind = PEOPLE_KINDS[t]
                for row in current_identities(conn, kind.resource_types, [name]):
                    if row["payload"] is not None:
                        fact = kind.read(
                            name, row["resource_type"], row["resource_id"], row["payload"]
                        )
                        people.append((name, row["resource_id"], fact))
                if kind.idp:
                    for row in removed_identities(conn, kind.resource_types, [name]):
                        fact = kind.read(
                            name, row["resource_type"], row["resource_id"], row["payload"]
                        )
                        since = fact.since or full_time(row["removed_at"])
                        people.append(
                            (name, row["resource_id"], PersonFact(fact.emails, "leaver", since))
                        )
            for name, t in sorted(snap.devices.items()):
                for row in current_identities(conn, DEVICE_KINDS[t].resource_types, [name]):
                    if row["payload"] is not None:
                        devices.append((name, row["resource_id"], row["payload"]))
            kinds: dict[str, IdentityKind] = {n: DEVICE_KINDS[t] for n, t in snap.devices.items()}
            for n, t in snap.people.items():
                pk = PEOPLE_KINDS[t]
                kinds[n] = IdentityKind(t, pk.resource_types, pk.services, pk.idp)
            services = {s for k in kinds.values() for s in k.services} | {"*"}
            states = latest_unit_states(conn, list(kinds), services)
        problems += _stale_sources(kinds, states)
        for pid, payload in join(people, devices):
            if ctx.cancelled():
                return
            yield Evidence(SCOPE, GLOBAL, PERSON_TYPE, pid, payload)
        yield Coverage(SCOPE, GLOBAL, SERVICE, ok=not problems, error="; ".join(problems) or None)


# --------------------------------------------------------------------------- collector step


class _Bound(LoadedConnector):
    def __init__(self, base: LoadedConnector, snapshot: Snapshot) -> None:
        super().__init__(base.cfg, base.cls, base.options)
        self.snapshot = snapshot

    def build(self) -> Connector:
        return DeviceOwnershipConnector(self.cfg.name, self.options, snapshot=self.snapshot)


def ownership_instance(settings: Settings) -> LoadedConnector | None:
    for c in settings.connectors:
        if c.cfg.type == DeviceOwnershipConnector.type:
            return c if c.cfg.enabled else None
    cfg = ConnectorConfig(type=DeviceOwnershipConnector.type, name=DEFAULT_NAME)
    return LoadedConnector(cfg, DeviceOwnershipConnector, DeviceOwnersOptions())


def bind_ownership(settings: Settings, lc: LoadedConnector, engine: Engine) -> LoadedConnector:
    """``lc`` ready to run: a ``device_owners`` instance gets its store snapshot
    injected (for schedulers that run each configured instance themselves, e.g. the
    daemon); any other instance is returned unchanged."""
    if lc.cfg.type != DeviceOwnershipConnector.type:
        return lc
    return _Bound(lc, _snapshot(settings, lc, engine))


def without_ownership(chosen: Iterable[LoadedConnector]) -> list[LoadedConnector]:
    return [c for c in chosen if c.cfg.type != DeviceOwnershipConnector.type]


def _snapshot(settings: Settings, lc: LoadedConnector, engine: Engine) -> Snapshot:
    opts: DeviceOwnersOptions = lc.options
    enabled = [c for c in settings.connectors if c.cfg.enabled]
    people = {c.name: c.cfg.type for c in enabled if c.cfg.type in PEOPLE_KINDS}
    devices = {c.name: c.cfg.type for c in enabled if c.cfg.type in DEVICE_KINDS}
    missing = [n for n in [*opts.people, *opts.devices] if n not in people and n not in devices]
    if opts.people:
        people = {n: t for n, t in people.items() if n in opts.people}
    if opts.devices:
        devices = {n: t for n, t in devices.items() if n in opts.devices}
    return Snapshot(engine=engine, people=people, devices=devices, missing=missing)


def run_device_ownership(
    settings: Settings,
    engine: Engine,
    index: MappingIndex,
    chosen: Iterable[LoadedConnector] | None = None,
) -> RunSummary | None:
    """Run the join as its own run when a device source and a people source are
    configured and this invocation collected one of them (None: nothing to do)."""
    from collector.runner import run_connector

    lc = ownership_instance(settings)
    if lc is None:
        return None
    snap = _snapshot(settings, lc, engine)
    if not snap.people or not snap.devices:
        return None
    if chosen is not None:
        names = {c.name for c in chosen}
        if lc.name not in names and not names & (set(snap.people) | set(snap.devices)):
            return None
    return run_connector(settings, _Bound(lc, snap), engine, index)
