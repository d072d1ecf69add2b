"""Helpers the identity and SaaS connectors (Okta, Entra, GitHub, Workspace…) share.

Their vendors answer with deep JSON documents; each reads one scope (org, tenant,
customer) unit after unit behind one credential, and a unit may feed a later one (admin
roles and API tokens are copied onto each user's evidence). The look-up, the sign-in
before the units, the unit sequence, the scope-wide coverage, the copy of an earlier
unit's result onto each user and the inactivity verdict live here once instead of in
every source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any, ClassVar

from connectors.http import AuthHeaders, HttpClient, SourceError
from connectors.kit import GLOBAL, PseudonymiseOptions, Pseudonymiser, run_unit
from core.checks import Verdict, failed, passed
from core.connector import CollectContext, Connector, SecretUnavailableError
from core.records import Coverage, Evidence, Record
from core.times import days_since

#: A unit of a scope: its service name and the call that reads it.
UnitRead = tuple[str, Callable[[], Iterable[Evidence]]]


def dig(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]…``, or ``None`` as soon as a step is missing or not an
    object (vendors omit empty sub-objects, or send ``null`` for them)."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


class RecordingReader:
    """A unit reader whose result a later unit needs: its subclass reads in ``_read`` and
    fills its own result attribute; when the read raises, ``error`` keeps why, so the
    later unit can say why that part of its evidence is missing."""

    def __init__(self, http: HttpClient, scope: str) -> None:
        self.http = http
        self.scope = scope
        self.error: str | None = None

    def read(self) -> Iterator[Evidence]:
        try:
            yield from self._read()
        except Exception as exc:
            self.error = str(exc) if str(exc) else type(exc).__name__
            raise

    def _read(self) -> Iterator[Evidence]:
        raise NotImplementedError


def carry_over(
    payload: dict[str, Any],
    errors: dict[str, str],
    key: str,
    found: Mapping[str, list[Any]] | None,
    uid: str,
    error: str | None,
    *,
    unread: str,
    arrange: Callable[[list[Any]], list[Any]] = list,
) -> None:
    """Copies the user's share of what an earlier unit read (``found``: user id → values,
    e.g. the admin roles) to ``payload[key]``, arranged; when that unit did not complete
    (``found`` is ``None``), ``errors[key]`` says why instead (its ``error``, else
    ``unread``), so a check on ``key`` shows ``error`` rather than a false pass."""
    if found is not None:
        payload[key] = arrange(found.get(uid, []))
    else:
        errors[key] = error or unread


def last_sign_in_verdict(who: str, last: str, limit: float) -> Verdict:
    """Passes when the account's last sign-in ``last`` is at most ``limit`` days ago
    (``who`` names the account in the message: "user alice@example.com")."""
    age = days_since(last)
    if age > limit:
        return failed(f"{who} last signed in on {last} ({int(age)} days ago, limit {limit})")
    return passed(f"{who} last signed in on {last}")


def units_in_turn(
    scope: str, units: Iterable[UnitRead], cancelled: Callable[[], bool], *, source: str
) -> Iterator[Record]:
    """Each unit's records and ``Coverage``, one unit after the other (so a unit may use
    what an earlier reader kept), until the run is cancelled."""
    for service, read in units:
        if cancelled():
            return
        yield from run_unit(scope, service, read, cancelled, source=source)


def reopening(
    scope: str, records: Iterable[Record], cancelled: Callable[[], bool]
) -> Iterator[Record]:
    """``records``, then ``Coverage(scope, GLOBAL, "*", ok=True)`` when one of their units
    was read: the scope opened, which closes the "could not authenticate" error of an
    earlier run. (Only then, so a run that read nothing stays failed.)"""
    opened = False
    for rec in records:
        opened = opened or (isinstance(rec, Coverage) and rec.ok)
        yield rec
    if opened and not cancelled():
        yield Coverage(scope, GLOBAL, "*", ok=True)


def refused(scope: str, services: Iterable[str], error: str) -> Iterator[Coverage]:
    """One failed ``Coverage`` per service: the credential failed before anything was read."""
    for service in services:
        yield Coverage(scope, GLOBAL, service, ok=False, error=error)


class SignInConnector(Connector):
    """A source read behind one sign-in per run (GitHub, Okta, Jamf): ``_auth`` builds the
    auth callable and fetches a first token, so a refused credential fails the run once,
    up front, as one failed ``Coverage`` per ``refused_services``; otherwise ``_collect``
    reads the units through the ``_client`` signed in with it (closed after the run)."""

    #: The services a refused sign-in fails: ``("*",)`` is the whole scope at once.
    refused_services: ClassVar[tuple[str, ...]] = ("*",)

    options: PseudonymiseOptions

    @property
    def scope(self) -> str:
        raise NotImplementedError

    def _auth(self, ctx: CollectContext, stack: ExitStack) -> AuthHeaders:
        """The auth callable; a client it needs for its tokens goes on ``stack``."""
        raise NotImplementedError

    def _client(self, ctx: CollectContext, auth: AuthHeaders | None) -> HttpClient:
        """The source's API client (``auth`` None: the one that fetches tokens)."""
        raise NotImplementedError

    def _collect(
        self, ctx: CollectContext, http: HttpClient, pseudo: Pseudonymiser
    ) -> Iterator[Record]:
        raise NotImplementedError

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        with ExitStack() as stack:
            try:
                auth = self._auth(ctx, stack)
                pseudo = self.options.pseudonymiser()
            except (SecretUnavailableError, SourceError) as exc:
                yield from refused(self.scope, self.refused_services, str(exc))
                return
            http = stack.enter_context(self._client(ctx, auth))
            yield from self._collect(ctx, http, pseudo)
