"""Cross-source identity checks: one person, seen by several identity sources.

A leaver disabled in Okta but still a member of the GitHub organisation, or still
enabled in Google Workspace, is the offboarding failure auditors look for under A.5.18
(access rights) and A.6.5 (responsibilities after termination). No single connector
can see it, so it is judged here, **after** the identity connectors' runs, from what
they stored.

Design:

* It is an analyzer (core/analyzer.py, entry point ``identity`` in the group
  ``annexa.analyzers``): its input is the store — the current evidence of the account
  resource types of every configured identity source, including items deleted in the
  source (tombstoned by a clean read → state ``removed``) — read through the read-only
  :class:`core.analyzer.EvidenceView` the collector hands it (``collector/analysis.py``).
  Its records go through the ordinary run engine as its own run with its own digest
  chain (source ``identity-correlation`` by default), configured by an optional
  ``[[connectors]] type = "identity"`` table.
* It knows no source: each identity or HR connector class declares its account hook
  (``accounts``, :class:`core.accounts.AccountSource`) and the analyzer reads every
  configured instance whose class has one. A new identity source touches no file here.
* Its one unit, ``people/global/person``, is ``ok`` only when every input source's
  identity units were read cleanly in their latest run: then people no longer
  correlated are closed; otherwise the findings are computed on the latest known data,
  the unit is an ``error`` naming the stale sources, and nothing is closed.

HR sources (``bamboohr``, ``hr``) are sources of *people*, not of access: their records
(employee id, work e-mail, hire and termination dates) join the accounts of the same
person like any other source, and two checks judge accounts against them — a leaver
whose accounts are still active after the offboarding SLA (A.5.18), and an account
usable before the person's hire date. An HR record is never itself an account held
("still active", "not linked to an IdP"), and a person known only to HR is not emitted.

Matching: accounts are joined when they share an e-mail address (logins and primary
e-mails of the IdPs; pseudonyms match too when every source uses the same
``pseudonymise_key``), and/or through a declarative identity map (TOML, see
``docs/identity-map.example.toml``) that names each person's account ids per source
type — the only way to link GitHub accounts, which expose no e-mail.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from connectors.kit import GLOBAL, EvidenceMissing, Pseudonymiser, require
from core.accounts import Account, AccountReader, AccountRef
from core.analyzer import Analyzer, EvidenceView
from core.checks import Verdict, check, failed, not_applicable, passed
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
    available_connectors,
)
from core.records import Coverage, Evidence, Record
from core.times import days_since, full_time, parse_time
from core.tomlfile import read_toml, table_array

PERSON_TYPE = "identity.person.link"
SCOPE = "people"
SERVICE = "person"
DEFAULT_NAME = "identity-correlation"


# --------------------------------------------------------------------------- source kinds


@dataclass(frozen=True)
class IdentityKind:
    """How one connector type's identity evidence is read (from its account hook)."""

    connector_type: str
    resource_types: tuple[str, ...]
    services: tuple[str, ...]  # the units that read them
    idp: bool  # an identity provider (its "disabled" ends employment-level access)
    hr: bool = False  # a source of people (employment dates), not of access
    read: AccountReader | None = None


def kind_of(cls: type[Connector]) -> IdentityKind | None:
    """The identity kind a connector class declares (``accounts``), or None."""
    src = getattr(cls, "accounts", None)
    if src is None:
        return None
    return IdentityKind(cls.type, src.resource_types, src.services, src.idp, src.hr, src.read)


def identity_kinds(instances: Mapping[str, type[Connector]]) -> dict[str, IdentityKind]:
    """Instance name → kind, for every instance whose class has an account hook."""
    return {n: k for n, cls in instances.items() if (k := kind_of(cls)) is not None}


def installed_identity_types() -> list[str]:
    """Connector types installed with an account hook (the keys of the identity map)."""
    return sorted(t for t, cls in available_connectors().items() if kind_of(cls) is not None)


def account_from(
    kind: IdentityKind, source: str, resource_type: str, resource_id: str,
    payload: Mapping[str, Any],
) -> Account:
    """An :class:`Account` from one stored identity payload, by the source's own hook."""
    assert kind.read is not None
    return kind.read(AccountRef(source, kind.connector_type, resource_type, resource_id), payload)


# --------------------------------------------------------------------------- identity map


class IdentityMapError(ValueError):
    """A problem in the identity map file: ``file: entry: reason``."""

    def __init__(self, file: str, entry: str, reason: str) -> None:
        super().__init__(f"{file}: {entry}: {reason}")


_MAP_FIELDS = ("id", "emails", "note")


@dataclass
class Person:
    id: str
    emails: tuple[str, ...] = ()
    accounts: dict[str, tuple[str, ...]] = field(default_factory=dict)


def load_identity_map(path: Path, kinds: Iterable[str] | None = None) -> list[Person]:
    """``[[person]]`` tables: ``id`` (unique), ``emails``, and per source type (``okta``,
    ``entra``, ``workspace``, ``github``… ``kinds``: by default every installed connector
    type with an account hook) the account ids, logins or e-mails."""
    kinds = tuple(installed_identity_types() if kinds is None else kinds)
    allowed_keys = (*_MAP_FIELDS, *kinds)
    shown = str(path)
    data = read_toml(path, IdentityMapError)
    extra = sorted(set(data) - {"person"})
    if extra:
        raise IdentityMapError(
            shown, "<file>", f"unknown top-level key {extra[0]!r} (allowed: person)"
        )
    people = table_array(shown, data, "person", IdentityMapError)
    out: list[Person] = []
    seen_ids: dict[str, int] = {}
    owner: dict[tuple[str, str], str] = {}
    for i, item in enumerate(people):
        entry = f"person[{i}]"
        if not isinstance(item, dict):
            raise IdentityMapError(shown, entry, "must be a table")
        unknown = sorted(set(item) - set(allowed_keys))
        if unknown:
            raise IdentityMapError(
                shown, entry, f"unknown key {unknown[0]!r} (allowed: {', '.join(allowed_keys)})"
            )
        pid = item.get("id")
        if not isinstance(pid, str) or not pid.strip():
            raise IdentityMapError(shown, entry, "id must be a non-empty string")
        if pid in seen_ids:
            raise IdentityMapError(
                shown, entry, f"duplicate id {pid!r} (also person[{seen_ids[pid]}])"
            )
        seen_ids[pid] = i
        values: dict[str, tuple[str, ...]] = {}
        for key in ("emails", *kinds):
            raw = item.get(key, [])
            raw = [raw] if isinstance(raw, str) else raw
            if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
                raise IdentityMapError(
                    shown, f"{entry}.{key}", "must be a string or a list of strings"
                )
            values[key] = tuple(v.strip().lower() for v in raw)
        for key in kinds:
            for v in values[key]:
                prev = owner.setdefault((key, v), pid)
                if prev != pid:
                    raise IdentityMapError(
                        shown, f"{entry}.{key}", f"{v!r} is already mapped to person {prev!r}"
                    )
        if not any(values.values()):
            raise IdentityMapError(shown, entry, f"person {pid!r} names no e-mail and no account")
        out.append(Person(pid, values["emails"], {k: values[k] for k in kinds if values[k]}))
    return out


# --------------------------------------------------------------------------- matching


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def correlate(
    accounts: Sequence[Account],
    people: Sequence[Person] = (),
    *,
    match_by_email: bool = True,
    pseudo: Pseudonymiser | None = None,
    pseudonymise_ids: bool = False,
    emit_unlinked: bool = True,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(person id, payload) for every person worth judging: seen in two or more sources,
    or (``emit_unlinked``) holding only non-IdP accounts that no IdP account is linked to.

    ``pseudo`` (keyed) also matches identity-map values against pseudonymised accounts;
    with ``pseudonymise_ids`` the person ids it makes (map ids, e-mails, account ids)
    are pseudonymised too.
    """
    hide = pseudo if pseudonymise_ids and pseudo is not None and pseudo.enabled else None
    uf = _UnionFind(len(accounts))
    by_email: dict[str, int] = {}
    matched_by: dict[int, set[str]] = defaultdict(set)
    if match_by_email:
        for i, acc in enumerate(accounts):
            for e in acc.emails:
                j = by_email.setdefault(e.lower(), i)
                if j != i:
                    uf.union(i, j)
                    matched_by[i].add("email")
                    matched_by[j].add("email")
    # Identity map: each value may be an account id, a login or an e-mail, raw or pseudonymised.
    index: dict[tuple[str, str], list[int]] = defaultdict(list)
    email_index: dict[str, list[int]] = defaultdict(list)
    for i, acc in enumerate(accounts):
        keys = {acc.id.lower(), *(e.lower() for e in acc.emails)}
        if acc.login:
            keys.add(acc.login.lower())
        for k in keys:
            index[(acc.kind, k)].append(i)
        for e in acc.emails:
            email_index[e.lower()].append(i)
    label: dict[int, str] = {}

    def forms(value: str) -> set[str]:
        out = {value}
        if pseudo is not None and pseudo.enabled:
            out.add(str(pseudo(value)))
        return out

    for person in people:
        members: list[int] = []
        for kind, values in person.accounts.items():
            for v in values:
                for f in forms(v):
                    members.extend(index.get((kind, f), ()))
        for e in person.emails:
            for f in forms(e):
                members.extend(email_index.get(f, ()))
        for i in members:
            uf.union(members[0], i)
            matched_by[i].add("identity_map")
        if members:
            label.setdefault(uf.find(members[0]), person.id)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(accounts)):
        groups[uf.find(i)].append(i)
    # Labels were attached to roots that later unions may have merged: re-root them.
    labels: dict[int, list[str]] = defaultdict(list)
    for root, pid in label.items():
        labels[uf.find(root)].append(pid)
    for root, members in groups.items():
        accs = [accounts[i] for i in members]
        if all(a.hr for a in accs):
            continue  # known to HR only: no account to judge
        sources = {a.source for a in accs}
        has_idp = any(a.idp for a in accs)
        if len(sources) < 2 and (has_idp or not emit_unlinked):
            continue
        names = sorted(labels.get(root, []))
        if names:
            pid = names[0]
        elif any(a.emails for a in accs):
            pid = min(e.lower() for a in accs for e in a.emails)
        else:
            first = min(accs, key=lambda a: (a.source, a.id))
            pid = f"{first.source}:{first.id}"
        if hide is not None and not pid.startswith(Pseudonymiser.PREFIX):
            pid = str(hide(pid))
        how = sorted({m for i in members for m in matched_by.get(i, ())})
        payload = {
            "person": pid,
            "also_mapped_as": [hide(n) if hide else n for n in names[1:]],
            "matched_by": how,
            "accounts": sorted(
                (a.as_payload() for a in accs), key=lambda a: (a["source"], a["type"], a["id"])
            ),
        }
        yield pid, payload


# --------------------------------------------------------------------------- checks


def _label(a: Mapping[str, Any]) -> str:
    who = f", {a['login']}" if a.get("login") and a.get("login") != a.get("id") else ""
    return f"{a.get('source')} {a.get('type')} {a.get('id')}{who}"


@check(
    id="identity.person.offboarded_but_active",
    title="A person offboarded in an identity provider has no active account elsewhere",
    severity="high",
    resource_type=PERSON_TYPE,
    rationale=(
        "Disabling a leaver in the identity provider does not end access held directly "
        "in other systems; a GitHub membership or a second IdP account that stays "
        "active after termination is access the person should no longer have."
    ),
    remediation=(
        "Remove the person from the GitHub organisation (or disable the other account) "
        "now, review what the account did since the offboarding date, and connect the "
        "system to the IdP's de-provisioning (SCIM / SAML SSO with enforced membership)."
    ),
    parameters={"grace_days": 1},
)
def offboarded_but_active(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    accounts = require(payload, "accounts")
    by_source: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for a in accounts:
        by_source[str(a.get("source"))].append(a)
    offboarded: list[Mapping[str, Any]] = []
    recent: list[Mapping[str, Any]] = []
    for accs in by_source.values():
        if not any(a.get("idp") for a in accs) or any(a.get("state") == "active" for a in accs):
            continue
        for a in accs:
            if a.get("state") not in ("offboarded", "removed"):
                continue
            late = not a.get("since") or days_since(a["since"]) > params["grace_days"]
            (offboarded if late else recent).append(a)
    who = payload.get("person")
    if not offboarded:
        if recent:
            return passed(
                f"{who}: offboarded ({'; '.join(_label(a) for a in recent)}) within the "
                f"{params['grace_days']}-day grace period for de-provisioning elsewhere"
            )
        return passed(f"{who}: not offboarded in any identity provider")
    off_sources = {a.get("source") for a in offboarded}
    still = [
        a
        for a in accounts
        if a.get("state") == "active" and a.get("source") not in off_sources and not a.get("hr")
    ]
    if not still:
        where = ", ".join(sorted(map(str, off_sources)))
        return passed(f"{who}: offboarded in {where} and active nowhere else")
    gone_text = "; ".join(
        f"{_label(a)} is {a.get('status')}" + (f" since {a['since']}" if a.get("since") else "")
        for a in offboarded
    )
    return failed(
        f"{who}: offboarded ({gone_text}) but still active: "
        + "; ".join(f"{_label(a)} ({a.get('status')})" for a in still)
    )


@check(
    id="identity.person.account_linked_to_idp",
    title="Every code-hosting account is linked to a person managed in an identity provider",
    severity="medium",
    resource_type=PERSON_TYPE,
    rationale=(
        "An account that no identity-provider identity stands behind escapes the "
        "joiner-mover-leaver process: nobody will remove it when its owner leaves."
    ),
    remediation=(
        "Add the account to the identity map with its owner's IdP account, or enforce "
        "SAML SSO / Enterprise Managed Users so GitHub accounts are tied to the IdP; "
        "remove accounts nobody owns."
    ),
)
def account_linked_to_idp(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    accounts = [a for a in require(payload, "accounts") if not a.get("hr")]
    idp = [a for a in accounts if a.get("idp")]
    who = payload.get("person")
    if idp:
        return passed(f"{who} is linked to {', '.join(_label(a) for a in idp)}")
    return failed(
        f"{', '.join(_label(a) for a in accounts)}: linked to no identity-provider account "
        "(by e-mail or the identity map)"
    )


_Rows = list[Mapping[str, Any]]
#: How a check of a person against HR judges: (who, HR records, other accounts, params).
_HrJudge = Callable[[Any, _Rows, _Rows, Mapping[str, Any]], Verdict]


def _against_hr(judge: _HrJudge) -> Callable[[Mapping[str, Any], Mapping[str, Any]], Verdict]:
    """A check of a person's accounts against their HR records: not applicable to a
    person no HR record is linked to; ``judge`` gets the records split."""

    @functools.wraps(judge)
    def check_person(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
        accounts = require(payload, "accounts")
        hr = [a for a in accounts if a.get("hr")]
        who = payload.get("person")
        if not hr:
            return not_applicable(f"{who}: no HR record is linked to this person")
        return judge(who, hr, [a for a in accounts if not a.get("hr")], params)

    return check_person


@check(
    id="identity.person.leaver_access_removed",
    title="A leaver recorded in HR has no active account in any identity source after the SLA",
    severity="high",
    resource_type=PERSON_TYPE,
    rationale=(
        "The HR termination date is when access must end. Accounts still active in the "
        "identity provider or held directly in other systems (GitHub) after the "
        "offboarding SLA are access rights a leaver should no longer have, whatever any "
        "single system says about the person."
    ),
    remediation=(
        "Disable or remove every account named now, review what they did since the "
        "termination date, and drive de-provisioning from the HR termination (HR → IdP "
        "→ SCIM to every connected system)."
    ),
    parameters={"sla_days": 1},
)
@_against_hr
def leaver_access_removed(who: Any, hr: _Rows, others: _Rows, params: Mapping[str, Any]) -> Verdict:
    employed = [a for a in hr if a.get("state") != "offboarded"]
    if employed:
        return passed(f"{who}: employed per {', '.join(_label(a) for a in employed)}")
    ends = [a.get("termination_date") for a in hr]
    if not all(ends):
        raise EvidenceMissing(
            f"{who}: terminated in HR ({', '.join(_label(a) for a in hr)}) with no "
            "termination date to judge the SLA by"
        )
    end = max(str(e) for e in ends)
    active = [a for a in others if a.get("state") == "active"]
    if not active:
        return passed(f"{who}: left on {end}; no account is active in any identity source")
    listed = "; ".join(f"{_label(a)} ({a.get('status')})" for a in active)
    age = days_since(end)
    if age <= params["sla_days"]:
        return passed(
            f"{who}: leaves on {end}; still active within the {params['sla_days']}-day "
            f"SLA: {listed}"
        )
    return failed(
        f"{who}: left on {end} ({', '.join(_label(a) for a in hr)}) and is still active "
        f"{int(age)} full day(s) later (SLA: {params['sla_days']} day(s)): {listed}"
    )


@check(
    id="identity.person.no_access_before_hire",
    title="No account of a person was usable before their hire date",
    severity="medium",
    resource_type=PERSON_TYPE,
    rationale=(
        "Access is granted to people under contract: an account usable before the hire "
        "date gives someone access before screening, terms and NDA are in place, and "
        "often points to an account reused or created outside the joiner process."
    ),
    remediation=(
        "Keep joiners' accounts staged (not activated) until the start date, driven by "
        "the HR hire date; review what an early account did before the start."
    ),
    parameters={"days_before_hire": 0},
)
@_against_hr
def no_access_before_hire(who: Any, hr: _Rows, others: _Rows, params: Mapping[str, Any]) -> Verdict:
    hires = [str(a["hire_date"]) for a in hr if a.get("hire_date")]
    if not hires:
        raise EvidenceMissing(f"{who}: the HR record has no hire date to judge by")
    hire = min(hires)
    limit = date.fromisoformat(hire) - timedelta(days=params["days_before_hire"])
    judged = [a for a in others if a.get("active_from")]
    if not judged:
        return not_applicable(
            f"{who}: no account with a known activation date (e.g. GitHub memberships)"
        )
    early = [a for a in judged if parse_time(a["active_from"]).date() < limit]
    if early:
        return failed(
            f"{who}: hired on {hire} but usable earlier: "
            + "; ".join(f"{_label(a)} active from {a['active_from']}" for a in early)
        )
    return passed(f"{who}: hired on {hire}; {len(judged)} account(s) usable only from then on")


# --------------------------------------------------------------------------- the analyzer


class IdentityOptions(ConnectorOptions):
    """Options of ``[[connectors]] type = "identity"`` (all optional)."""

    sources: list[str] = Field(
        default_factory=list,
        description="identity connector instances to correlate (default: every one configured)",
    )
    identity_map: str | None = Field(
        None, description="TOML file mapping account ids per source to people"
    )
    match_by_email: bool = True
    pseudonymise: bool = Field(False, description="pseudonymise the person ids it stores")
    pseudonymise_key: SecretRef | None = Field(
        None,
        description="the key the identity sources pseudonymise with: identity-map values "
        "are matched in that form too",
    )

    @model_validator(mode="after")
    def _pseudonym_key(self) -> IdentityOptions:
        if self.pseudonymise and self.pseudonymise_key is None:
            raise ValueError("pseudonymise = true needs pseudonymise_key")
        return self


def chosen_sources(
    options: IdentityOptions, instances: Mapping[str, type[Connector]]
) -> tuple[dict[str, IdentityKind], list[str]]:
    """(the identity instances to correlate, names in ``sources`` that are none)."""
    kinds = identity_kinds(instances)
    missing = [n for n in options.sources if n not in kinds]
    if options.sources:
        kinds = {n: k for n, k in kinds.items() if n in options.sources}
    return kinds, missing


class IdentityAnalyzer(Analyzer):
    """Correlates the stored identity evidence of the configured identity sources."""

    type = "identity"
    prefix = "identity"
    scope = SCOPE
    default_name = DEFAULT_NAME
    order = 10
    Options: ClassVar[type[ConnectorOptions]] = IdentityOptions

    options: IdentityOptions

    def analyze(self, view: EvidenceView, ctx: CollectContext) -> Iterator[Record]:
        try:
            yield from self._analyze(view, ctx)
        except (IdentityMapError, SecretUnavailableError) as exc:
            yield Coverage(SCOPE, GLOBAL, SERVICE, ok=False, error=str(exc))

    def _analyze(self, view: EvidenceView, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        pseudo = Pseudonymiser(opts.pseudonymise_key.get() if opts.pseudonymise_key else None)
        kinds, missing = chosen_sources(opts, view.instances)
        people: list[Person] = []
        if opts.identity_map:
            path = Path(opts.identity_map)
            map_kinds = {*installed_identity_types(), *(k.connector_type for k in kinds.values())}
            people = load_identity_map(
                path if path.is_absolute() else view.base_dir / path, sorted(map_kinds)
            )
        kind_of_type = {rt: k for k in kinds.values() for rt in k.resource_types}
        accounts: list[Account] = []
        problems = [f"{n}: no such identity connector is configured" for n in missing]
        for name, kind in sorted(kinds.items()):
            for row in view.current(kind.resource_types, [name]):
                if row["payload"] is None:
                    continue
                accounts.append(
                    account_from(
                        kind, name, row["resource_type"], row["resource_id"], row["payload"]
                    )
                )
        idp_sources = [n for n, k in kinds.items() if k.idp]
        idp_types = [rt for n in idp_sources for rt in kinds[n].resource_types]
        for row in view.removed(idp_types, idp_sources):
            acc = account_from(
                kind_of_type[row["resource_type"]],
                row["source"],
                row["resource_type"],
                row["resource_id"],
                row["payload"],
            )
            # Offboarded before it was deleted: the offboarding date is what counts.
            if not (acc.state == "offboarded" and acc.since):
                acc.since = full_time(row["removed_at"])
            acc.state, acc.status = "removed", "deleted"
            accounts.append(acc)
        services = {s for k in kinds.values() for s in k.services} | {"*"}
        states = view.unit_states(list(kinds), services)
        problems += _stale_sources(kinds, states)
        if ctx.cancelled():
            return
        for pid, payload in correlate(
            accounts,
            people,
            match_by_email=opts.match_by_email,
            pseudo=pseudo,
            pseudonymise_ids=opts.pseudonymise,
            emit_unlinked="identity.person.account_linked_to_idp" in self.enabled_checks,
        ):
            yield Evidence(SCOPE, GLOBAL, PERSON_TYPE, pid, payload)
            if ctx.cancelled():
                return
        if problems:
            yield Coverage(SCOPE, GLOBAL, SERVICE, ok=False, error="; ".join(problems))
        else:
            yield Coverage(SCOPE, GLOBAL, SERVICE, ok=True)

    def inputs(self, instances: Mapping[str, type[Connector]]) -> set[str]:
        """The identity sources to correlate: none unless there are two or more."""
        kinds, _ = chosen_sources(self.options, instances)
        return set(kinds) if len(kinds) >= 2 else set()


def _stale_sources(kinds: Mapping[str, IdentityKind], states: Iterable[Any]) -> list[str]:
    """Why the correlation's input is not a clean, current read of every source."""
    latest: dict[tuple[str, str], Any] = {}
    star: dict[str, Any] = {}
    for s in states:
        if s.service == "*":
            if s.source not in star or s.finished_at > star[s.source].finished_at:
                star[s.source] = s
            continue
        key = (s.source, s.service)
        # Several scopes of one service: any failing scope counts.
        if key not in latest or not s.ok:
            latest[key] = s
    problems = []
    for name, kind in sorted(kinds.items()):
        for service in kind.services:
            s = latest.get((name, service))
            auth = star.get(name)
            if s is None:
                problems.append(f"{name}: {service} has never been read")
            elif not s.ok:
                problems.append(f"{name}: {service} was not read cleanly ({s.error})")
            elif auth is not None and not auth.ok and auth.finished_at > s.finished_at:
                problems.append(f"{name}: its latest run could not authenticate ({auth.error})")
    return problems
