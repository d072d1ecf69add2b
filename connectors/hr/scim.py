"""HR records from a SCIM 2.0 service provider (RFC 7643 / RFC 7644).

Many HR systems without a supported API publish their people as SCIM ``User``
resources: ``GET {base_url}/Users?startIndex=1&count=N`` pages through a
``ListResponse`` (``totalResults``, ``startIndex``, ``itemsPerPage``, ``Resources``).
Identity and organisation come from the core schema and the enterprise extension
(``urn:ietf:params:scim:schemas:extension:enterprise:2.0:User``: ``employeeNumber``,
``department``, ``manager``); SCIM defines no employment dates, so each date is read
from a configurable attribute path (``urn:…:User:attribute``, RFC 7644 §3.10), by
default in the extension named by :data:`HR_EXTENSION`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.hr.model import HrPerson, text
from connectors.http import HttpClient

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
#: Where the default attribute paths look for employment dates (configurable per field).
HR_EXTENSION = "urn:annexa:params:scim:schemas:extension:hr:2.0:User"
DEFAULT_ATTRIBUTES: dict[str, str] = {
    "hire_date": f"{HR_EXTENSION}:hireDate",
    "termination_date": f"{HR_EXTENSION}:terminationDate",
    "background_check_date": f"{HR_EXTENSION}:backgroundCheckDate",
    "contract_signed_date": f"{HR_EXTENSION}:contractSignedDate",
    "nda_signed_date": f"{HR_EXTENSION}:ndaSignedDate",
}


def attribute(resource: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """(present, value) of ``path``: ``urn:…:User:attr[.sub]`` or a core ``attr[.sub]``."""
    node: Any = resource
    if path.startswith("urn:"):
        urn, _, rest = path.rpartition(":")
        node = resource.get(urn)
        if not isinstance(node, Mapping):
            return False, None
        path = rest
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _work_email(user: Mapping[str, Any]) -> str | None:
    emails = [e for e in user.get("emails") or [] if isinstance(e, Mapping) and e.get("value")]
    for pick in (
        lambda e: e.get("type") == "work" and e.get("primary"),
        lambda e: e.get("type") == "work",
        lambda e: e.get("primary"),
    ):
        found = next((e for e in emails if pick(e)), None)
        if found:
            return text(found["value"])
    name = text(user.get("userName"))
    return name if name and "@" in name else None


def person_from_user(user: Mapping[str, Any], attributes: Mapping[str, str]) -> HrPerson:
    """An :class:`HrPerson` from one SCIM ``User`` resource."""
    ent = user.get(ENTERPRISE) if isinstance(user.get(ENTERPRISE), Mapping) else {}
    manager = ent.get("manager") if isinstance(ent.get("manager"), Mapping) else {}
    name = user.get("name") if isinstance(user.get("name"), Mapping) else {}
    active = user.get("active")
    p = HrPerson(
        employee_id=text(ent.get("employeeNumber")) or str(user.get("id")),
        work_email=_work_email(user),
        name=text(user.get("displayName")) or text(name.get("formatted")),
        employment_status="active" if active is not False else "inactive",
        department=text(ent.get("department")),
        manager=text(manager.get("displayName")) or text(manager.get("value")),
        extra={"scim_id": str(user.get("id"))},
    )
    for field_name, path in attributes.items():
        present, value = attribute(user, path)
        if present:
            p.set_date(field_name, value, path)
        else:
            p.dates[field_name] = None
    p.terminated = active is False or bool(p.dates.get("termination_date"))
    return p


def read_users(
    http: HttpClient, attributes: Mapping[str, str], page_size: int
) -> Iterator[HrPerson]:
    """Every SCIM user as an :class:`HrPerson`, page by page (``startIndex``/``count``)."""
    for user in http.paginate_offset(
        "/Users",
        items_key="Resources",
        start_param="startIndex",
        size_param="count",
        page_size=page_size,
        last_key=None,
        total_key="totalResults",
        start=1,
    ):
        if isinstance(user, Mapping) and user.get("id") is not None:
            yield person_from_user(user, attributes)
