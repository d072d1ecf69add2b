"""Who may use the console, and as what: the access file, roles, login throttling, CSRF.

The access file (``annexa serve --auth FILE``, TOML) lists people and the role each
has — ``viewer`` reads, ``auditor`` also records comments and evidence requests,
``admin`` also verifies the whole store on demand. A token is never written in the file:
it is given by reference (``token = { env = "VAR" }`` or ``{ file = "/path" }``) or as
its SHA-256 (``sha256 = "…"``, from ``annexa serve --hash-token``). Only digests are
kept in memory; no token is ever rendered or logged.

Sessions are cookies signed with itsdangerous (Starlette's ``SessionMiddleware``);
every form carries a per-session CSRF token; failed logins are throttled per client.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import tomllib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from core.connector import SecretRef, SecretUnavailableError

ROLES = ("viewer", "auditor", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}


class AccessFileError(ValueError):
    """The access file is unreadable or invalid (``annexa serve`` exits 2)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenEntry(_Strict):
    user: str
    role: Literal["viewer", "auditor", "admin"]
    token: SecretRef | None = None
    sha256: str | None = None

    @model_validator(mode="after")
    def _one(self) -> TokenEntry:
        if (self.token is None) == (self.sha256 is None):
            raise ValueError('give exactly one of token = { env = "VAR" } or sha256 = "…"')
        if self.sha256 is not None and (
            len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256)
        ):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        return self


class OidcEntry(_Strict):
    """An OpenID provider: users log in there; their role comes from ``roles``."""

    issuer: str
    client_id: str
    client_secret: SecretRef
    #: e-mail or subject → role; someone not listed gets ``default_role`` (or is refused).
    roles: dict[str, Literal["viewer", "auditor", "admin"]] = {}
    default_role: Literal["viewer", "auditor", "admin"] | None = None


class AccessFile(_Strict):
    session_secret: SecretRef | None = None
    session_hours: float = 8.0
    https_only: bool = False
    tokens: list[TokenEntry] = []
    oidc: OidcEntry | None = None
    #: Failed logins allowed per client within ``login_window_seconds``.
    login_attempts: int = 5
    login_window_seconds: float = 300.0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Person:
    user: str
    role: str

    def can(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


@dataclass
class Access:
    """The loaded access file: token digests → people, the session secret, limits."""

    people: list[tuple[str, Person]]
    session_secret: str
    session_hours: float = 8.0
    https_only: bool = False
    oidc: OidcEntry | None = None
    login_attempts: int = 5
    login_window_seconds: float = 300.0

    @property
    def anonymous(self) -> bool:
        """No access file: everyone on loopback is a viewer (the server refuses other hosts)."""
        return not self.people and self.oidc is None

    def check_token(self, presented: str) -> Person | None:
        """The person whose token this is; every entry is compared (constant time)."""
        digest = hash_token(presented)
        found = None
        for want, person in self.people:
            if hmac.compare_digest(want, digest):
                found = person
        return found


def open_access() -> Access:
    """No access file: anonymous read-only viewing, a fresh session secret per process."""
    return Access(people=[], session_secret=secrets.token_urlsafe(32))


def load_access(path: Path) -> Access:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AccessFileError(f"{path}: {exc}") from None
    try:
        model = AccessFile.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '<file>'}: {e['msg']}" for e in exc.errors()
        ]
        raise AccessFileError(f"{path}:\n" + "\n".join(lines)) from None
    people = []
    try:
        for t in model.tokens:
            digest = t.sha256 if t.sha256 is not None else hash_token(t.token.get())  # type: ignore[union-attr]
            people.append((digest, Person(t.user, t.role)))
        secret = (
            model.session_secret.get() if model.session_secret else secrets.token_urlsafe(32)
        )
    except SecretUnavailableError as exc:
        raise AccessFileError(f"{path}: {exc}") from None
    if len(secret) < 16:
        raise AccessFileError(f"{path}: session_secret must be at least 16 characters")
    if not people and model.oidc is None:
        raise AccessFileError(f"{path}: no [[tokens]] and no [oidc]: nobody could log in")
    return Access(
        people=people,
        session_secret=secret,
        session_hours=model.session_hours,
        https_only=model.https_only,
        oidc=model.oidc,
        login_attempts=model.login_attempts,
        login_window_seconds=model.login_window_seconds,
    )


@dataclass
class LoginLimiter:
    """At most ``attempts`` failed logins per client within ``window`` seconds.

    ``clock`` is injectable (monotonic by default) so that the window is testable
    without waiting.
    """

    attempts: int = 5
    window: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, client: str) -> deque[float]:
        q = self._failures.setdefault(client, deque())
        now = self.clock()
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again; 0 when it may now."""
        q = self._recent(client)
        if len(q) < self.attempts:
            return 0
        return max(1, int(q[0] + self.window - self.clock()) + 1)

    def failed(self, client: str) -> None:
        self._recent(client).append(self.clock())
        if len(self._failures) > 10_000:  # bounded memory under a flood of addresses
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, created on first use."""
    tok = session.get("csrf")
    if not isinstance(tok, str):
        tok = session["csrf"] = secrets.token_urlsafe(32)
    return tok


def csrf_ok(session: dict[str, Any], presented: Any) -> bool:
    want = session.get("csrf")
    return (
        isinstance(want, str)
        and isinstance(presented, str)
        and hmac.compare_digest(want.encode(), presented.encode())
    )
