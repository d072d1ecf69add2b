"""Microsoft Entra directory roles and who holds them (Global Administrators above all).

API calls (Microsoft Graph, ``@odata.nextLink`` paging):

* ``GET /directoryRoles`` — the roles activated in the tenant, with ``roleTemplateId``;
* ``GET /directoryRoles/{id}/members`` — users, service principals and role-assignable
  groups holding the role (active assignments);
* ``GET /groups/{id}/transitiveMembers/microsoft.graph.user`` — the people a group
  member stands for, so a Global Administrator through a group is counted too.

One summary evidence (``entra.role.summary``) lists every role with its members, so the
count checks judge the whole set; each user's roles are also copied onto their
``entra.user.account`` evidence for the per-person checks. PIM *eligible* assignments
are not listed by these endpoints (see docs/permissions/entra.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from connectors.http import HttpClient, MalformedResponseError
from connectors.identityshared import RecordingReader
from connectors.kit import GLOBAL, Pseudonymiser, require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

ROLE_TYPE = "entra.role.summary"
SUMMARY_ID = "directory-roles"

GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"

_MEMBER_SELECT = "id,userPrincipalName,accountEnabled"
_TYPES = {
    "#microsoft.graph.user": "user",
    "#microsoft.graph.group": "group",
    "#microsoft.graph.servicePrincipal": "servicePrincipal",
}


def _kind(obj: Mapping[str, Any]) -> str:
    return _TYPES.get(str(obj.get("@odata.type")), str(obj.get("@odata.type") or "unknown"))


class RoleReader(RecordingReader):
    """Reads directory roles; after a complete read ``roles_by_user`` maps a user's object
    id to the roles they hold (directly or through a group), otherwise it stays ``None``
    and ``error`` says why."""

    def __init__(self, http: HttpClient, scope: str, pseudo: Pseudonymiser) -> None:
        super().__init__(http, scope)
        self.pseudo = pseudo
        self.roles_by_user: dict[str, list[dict[str, str]]] | None = None

    def _users_of_group(self, group_id: str) -> Iterator[Mapping[str, Any]]:
        path = f"/groups/{quote(group_id, safe='')}/transitiveMembers/microsoft.graph.user"
        for user in self.http.paginate_next_url(path, params={"$select": _MEMBER_SELECT}):
            if isinstance(user, Mapping) and user.get("id"):
                yield user

    def _member(self, obj: Mapping[str, Any], via: str | None) -> dict[str, Any]:
        return {
            "id": str(obj["id"]),
            "type": "user" if via else _kind(obj),
            "upn": self.pseudo(obj.get("userPrincipalName")),
            "enabled": obj.get("accountEnabled"),
            "via_group": via,
        }

    def _read(self) -> Iterator[Evidence]:
        roles_out: list[dict[str, Any]] = []
        by_user: dict[str, list[dict[str, str]]] = {}
        for role in self.http.paginate_next_url("/directoryRoles"):
            if not isinstance(role, Mapping) or not role.get("id"):
                raise MalformedResponseError("a directory role without an id in /directoryRoles")
            template = str(role.get("roleTemplateId") or role["id"])
            name = str(role.get("displayName") or template)
            members: list[dict[str, Any]] = []
            path = f"/directoryRoles/{quote(str(role['id']), safe='')}/members"
            for obj in self.http.paginate_next_url(path, params={"$select": _MEMBER_SELECT}):
                if not isinstance(obj, Mapping) or not obj.get("id"):
                    raise MalformedResponseError(f"a role member without an id in {path}")
                members.append(self._member(obj, None))
                if _kind(obj) == "group":
                    members.extend(
                        self._member(u, str(obj["id"])) for u in self._users_of_group(obj["id"])
                    )
            members.sort(key=lambda m: (m["id"], m["via_group"] or ""))
            for m in members:
                if m["type"] == "user":
                    held = by_user.setdefault(m["id"], [])
                    if not any(r["template_id"] == template for r in held):
                        held.append({"template_id": template, "name": name})
            roles_out.append({"template_id": template, "name": name, "members": members})
        roles_out.sort(key=lambda r: (r["name"], r["template_id"]))
        for held in by_user.values():
            held.sort(key=lambda r: (r["name"], r["template_id"]))
        self.roles_by_user = by_user
        yield Evidence(self.scope, GLOBAL, ROLE_TYPE, SUMMARY_ID, {"roles": roles_out})


# --------------------------------------------------------------------------- checks


def _enabled_users(role: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Distinct enabled people holding ``role`` (directly or through groups)."""
    seen: dict[str, Mapping[str, Any]] = {}
    for m in role.get("members", []):
        if m.get("type") == "user" and m.get("enabled") is not False:
            seen.setdefault(str(m.get("id")), m)
    return list(seen.values())


@check("entra.role.global_admin_count")
def global_admin_count(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    roles = require(payload, "roles")
    role = next((r for r in roles if r.get("template_id") == GLOBAL_ADMINISTRATOR), {})
    admins = _enabled_users(role)
    names = ", ".join(sorted(str(a.get("upn") or a.get("id")) for a in admins))
    high, low = params["max_global_admins"], params["min_global_admins"]
    others = [m for m in role.get("members", []) if m.get("type") not in ("user", "group")]
    extra = f" (and {len(others)} service principal(s))" if others else ""
    if len(admins) > high:
        return failed(
            f"{len(admins)} enabled Global Administrators (maximum {high}){extra}: {names}"
        )
    if len(admins) < low:
        return failed(
            f"{len(admins)} enabled Global Administrator(s) (minimum {low} for break-glass)"
            f"{extra}: {names or 'none'}"
        )
    return passed(f"{len(admins)} enabled Global Administrators (between {low} and {high}){extra}")
