"""The account hook: how an identity or HR connector's evidence becomes a normalised account.

Each identity source (an IdP, a code host, an HR system) stores its accounts in its own
shape. The identity analyzer (and the device-ownership analyzer) must read them all
without knowing any of them, so each connector class declares, beside its checks, an
:class:`AccountSource`: which resource types hold its accounts, which units read them,
what kind of source it is, and a function reducing one stored payload to an
:class:`Account`. A new identity or HR source therefore touches no core file and no
analyzer: it sets ``accounts = AccountSource(...)`` on its connector class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Prefix of a keyed pseudonym (``connectors.kit.Pseudonymiser.PREFIX``; the two are
#: held equal by tests/test_correlate.py): pseudonyms are match keys like e-mails.
PSEUDONYM_PREFIX = "pseud:"


@dataclass(frozen=True, slots=True)
class AccountRef:
    """Which stored item an account comes from: instance name, connector type, resource."""

    source: str
    kind: str
    resource_type: str
    id: str


@dataclass(slots=True)
class Account:
    """One account of one source, reduced to what matching and the checks need.

    ``state`` is ``active`` (usable), ``offboarded`` (disabled, suspended, terminated),
    ``pending`` (staged, never usable yet) or — set by the analyzer for items deleted in
    the source — ``removed``. ``emails`` are the match keys (see :func:`match_keys`).
    """

    source: str
    kind: str
    resource_type: str
    id: str
    login: str | None
    state: str
    status: str
    since: str | None  # when it was offboarded, if known
    idp: bool
    emails: tuple[str, ...] = ()
    active_from: str | None = None  # first moment the account could be used, if known
    hr: bool = False
    hire_date: str | None = None
    termination_date: str | None = None

    def as_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "kind": self.kind,
            "type": self.resource_type,
            "id": self.id,
            "login": self.login,
            "state": self.state,
            "status": self.status,
            "since": self.since,
            "idp": self.idp,
        }
        if self.active_from is not None:
            out["active_from"] = self.active_from
        if self.hr:
            out["hr"] = True
            out["hire_date"] = self.hire_date
            out["termination_date"] = self.termination_date
        return out


def match_keys(*values: Any) -> tuple[str, ...]:
    """Match keys: e-mail-like values (or pseudonyms of them), trimmed and lower-cased."""
    out = []
    for v in values:
        if isinstance(v, str) and ("@" in v or v.startswith(PSEUDONYM_PREFIX)):
            out.append(v.strip().lower())
    return tuple(sorted(set(out)))


#: ``read(ref, payload)``: the account of one stored payload of ``ref.resource_type``.
AccountReader = Callable[[AccountRef, Mapping[str, Any]], Account]


@dataclass(frozen=True)
class AccountSource:
    """A connector's account hook (the class attribute ``accounts``).

    * ``resource_types``: the evidence types holding one account (or HR record) each;
    * ``services``: the units that read them (the analyzer's input is current only when
      each was read cleanly in the source's latest run);
    * ``idp``: an identity provider — disabling the account there ends access that
      depends on it, and its deleted accounts are kept as ``removed``;
    * ``hr``: a source of people (employment dates), not of access: its records set
      ``hr=True``, ``hire_date`` and ``termination_date`` and are never an account held;
    * ``read``: the reduction of one payload (see :data:`AccountReader`).
    """

    resource_types: tuple[str, ...]
    services: tuple[str, ...]
    read: AccountReader
    idp: bool = False
    hr: bool = False
