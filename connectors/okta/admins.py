"""Okta administrator role assignments.

``GET /api/v1/iam/assignees/users`` lists the users holding any admin role (HAL
``_links.next`` pagination); for each, ``GET /api/v1/users/{id}/roles`` gives the role
assignments (direct or through a group) and ``GET /api/v1/users/{id}`` the login and
status. One summary evidence (``okta.admin.summary``) lists every admin with role types,
so the count checks judge the whole set; each person's roles are also copied onto their
``okta.user.account`` evidence for per-person checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from connectors.http import HttpClient, MalformedResponseError
from connectors.identityshared import RecordingReader
from connectors.kit import GLOBAL, Pseudonymiser, require
from connectors.okta.common import INACTIVE_STATUSES
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

ADMIN_TYPE = "okta.admin.summary"
SUMMARY_ID = "admin-roles"


def _role_name(role: Mapping[str, Any]) -> str:
    kind = str(role.get("type") or "UNKNOWN")
    if kind == "CUSTOM":
        return f"CUSTOM:{role.get('label') or role.get('role') or role.get('id')}"
    return kind


class AdminReader(RecordingReader):
    """Reads admin assignments; after a complete read, ``roles_by_user`` maps user id →
    role names (otherwise it stays ``None`` and ``error`` says why)."""

    def __init__(self, http: HttpClient, scope: str, pseudo: Pseudonymiser) -> None:
        super().__init__(http, scope)
        self.pseudo = pseudo
        self.roles_by_user: dict[str, list[str]] | None = None

    def _read(self) -> Iterator[Evidence]:
        admins: list[dict[str, Any]] = []
        roles_by_user: dict[str, list[str]] = {}
        assignees = self.http.paginate_next_url(
            "/api/v1/iam/assignees/users",
            params={"limit": 100},
            items_key="value",
            next_key="_links.next.href",
        )
        for assignee in assignees:
            if not isinstance(assignee, Mapping) or not assignee.get("id"):
                raise MalformedResponseError("an assignee without an id in /api/v1/iam/assignees")
            uid = str(assignee["id"])
            if uid in roles_by_user:
                continue
            qid = quote(uid, safe="")
            roles = self.http.get_json(f"/api/v1/users/{qid}/roles")
            if not isinstance(roles, list):
                raise MalformedResponseError(f"roles of user {uid} are not a list")
            names = sorted(
                {
                    _role_name(r)
                    for r in roles
                    if isinstance(r, Mapping) and r.get("status", "ACTIVE") == "ACTIVE"
                }
            )
            user = self.http.get_json(f"/api/v1/users/{qid}")
            profile = user.get("profile") if isinstance(user, Mapping) else None
            profile = profile if isinstance(profile, Mapping) else {}
            roles_by_user[uid] = names
            admins.append(
                {
                    "id": uid,
                    "login": self.pseudo(profile.get("login")),
                    "status": user.get("status") if isinstance(user, Mapping) else None,
                    "roles": names,
                }
            )
        admins.sort(key=lambda a: a["id"])
        self.roles_by_user = roles_by_user
        yield Evidence(
            scope=self.scope,
            region=GLOBAL,
            resource_type=ADMIN_TYPE,
            resource_id=SUMMARY_ID,
            payload={"admins": admins},
        )


def _active_admins(payload: Mapping[str, Any], role: str | None = None) -> list[Mapping]:
    """Admins who are not deactivated or suspended: those who can sign in, and those
    pending activation (or in a status Okta may add later), who hold the role too."""
    return [
        a
        for a in require(payload, "admins")
        if a.get("status") not in INACTIVE_STATUSES and (role is None or role in a.get("roles", []))
    ]


def _names(admins: list[Mapping]) -> str:
    return ", ".join(str(a.get("login") or a.get("id")) for a in admins)


@check("okta.admin.count")
def admin_count(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    admins = _active_admins(payload)
    limit = params["max_admins"]
    if len(admins) > limit:
        return failed(
            f"{len(admins)} active users hold admin roles (maximum {limit}): {_names(admins)}"
        )
    return passed(f"{len(admins)} active users hold admin roles (maximum {limit})")


@check("okta.admin.super_admin_count")
def super_admin_count(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    supers = _active_admins(payload, "SUPER_ADMIN")
    limit = params["max_super_admins"]
    if len(supers) > limit:
        return failed(
            f"{len(supers)} active super administrators (maximum {limit}): {_names(supers)}"
        )
    return passed(f"{len(supers)} active super administrators (maximum {limit})")
