"""The Statement of Applicability as ISO/IEC 27001:2022 6.1.3 d) asks for it.

For every Annex A control — and every additional control the organisation chose — the
SoA states whether it is included, why (inclusion and exclusion alike), and whether it
is implemented; this file adds who owns it, how it is implemented, the risks it treats
and the policies behind it. The SoA as a whole has a version and an approval.

Format (TOML)::

    [meta]
    organisation = "Example Ltd"
    scope = "SaaS platform, production AWS accounts and corporate identity"
    version = "4"
    approved_by = "CEO, J. Doe"
    approved_on = 2026-11-01

    [defaults]                     # optional: controls not listed below
    applicable = true
    justification = "Selected in the risk treatment plan (RTP-2026)"

    [[control]]
    id = "A.5.15"
    applicable = true
    justification = "Access to customer data is the main risk (R-3)"
    status = "implemented"         # implemented | partially | planned | not_implemented
    owner = "Head of IT"
    implementation = "Okta SSO for every application; quarterly access reviews"
    risks = ["R-3"]
    policies = ["access-control-policy"]

    [[additional]]                 # controls outside Annex A (6.1.3 b)
    id = "X.1"
    title = "Customer data residency"
    applicable = true
    justification = "Contractual obligation to EU customers"
    status = "implemented"

Without ``[defaults]`` every catalog control must be listed. Every entry needs a
justification. The SoA is recorded as decisions (store/decisions.py) when Annexa first
sees it: ``annexa soa --at`` shows the SoA in force then, not today's file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from core.tomlfile import check_table, read_toml, table_array
from mappings.loader import MappingError, control_sort_key

#: Implementation status an owner may declare.
DECLARED = ("implemented", "partially", "planned", "not_implemented")
_CONTROL_KEYS = {
    "id", "applicable", "justification", "status", "owner", "implementation", "risks",
    "policies",
}
_ADDITIONAL_KEYS = _CONTROL_KEYS | {"title"}
_META_KEYS = {"organisation", "scope", "version", "approved_by", "approved_on"}


@dataclass(frozen=True)
class Applicability:
    control: str
    applicable: bool
    justification: str
    declared: bool  # False: taken from [defaults]
    status: str | None = None
    owner: str | None = None
    implementation: str | None = None
    risks: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    #: Additional controls (outside the catalog) carry their own title.
    title: str | None = None
    additional: bool = False

    def as_payload(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "applicable": self.applicable,
            "justification": self.justification,
            "declared": self.declared,
            "status": self.status,
            "owner": self.owner,
            "implementation": self.implementation,
            "risks": list(self.risks),
            "policies": list(self.policies),
            "title": self.title,
            "additional": self.additional,
        }

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> Applicability:
        return cls(
            control=str(p["control"]),
            applicable=bool(p["applicable"]),
            justification=str(p["justification"]),
            declared=bool(p.get("declared", True)),
            status=p.get("status"),
            owner=p.get("owner"),
            implementation=p.get("implementation"),
            risks=tuple(p.get("risks") or ()),
            policies=tuple(p.get("policies") or ()),
            title=p.get("title"),
            additional=bool(p.get("additional", False)),
        )


@dataclass(frozen=True)
class Scope:
    organisation: str
    description: str
    file: str
    controls: dict[str, Applicability]
    version: str | None = None
    approved_by: str | None = None
    approved_on: str | None = None

    @property
    def applicable(self) -> set[str]:
        return {c for c, a in self.controls.items() if a.applicable}

    @property
    def additional(self) -> dict[str, Applicability]:
        return {c: a for c, a in self.controls.items() if a.additional}

    def meta(self) -> dict[str, Any]:
        return {
            "organisation": self.organisation,
            "description": self.description,
            "version": self.version,
            "approved_by": self.approved_by,
            "approved_on": self.approved_on,
        }


def _text(file: str, entry: str, item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise MappingError(file, entry, f"{key!r} must be a non-empty string")
    return value


def _names(file: str, entry: str, item: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = item.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise MappingError(file, entry, f"{key!r} must be a list of names")
    return tuple(value)


def _entry(
    file: str, entry: str, item: Any, allowed: set[str], *, additional: bool
) -> Applicability:
    check_table(file, entry, item, allowed, MappingError)
    if not isinstance(item.get("applicable"), bool):
        raise MappingError(file, entry, "'applicable' must be true or false")
    just = item.get("justification")
    if not isinstance(just, str) or not just.strip():
        raise MappingError(file, entry, "missing or empty 'justification'")
    status = item.get("status")
    if status is not None and status not in DECLARED:
        raise MappingError(
            file, entry, f"status {status!r} is not one of {', '.join(DECLARED)}"
        )
    title = _text(file, entry, item, "title")
    if additional and title is None:
        raise MappingError(file, entry, "an additional control needs a 'title'")
    return Applicability(
        control=str(item["id"]),
        applicable=item["applicable"],
        justification=just,
        declared=True,
        status=status,
        owner=_text(file, entry, item, "owner"),
        implementation=_text(file, entry, item, "implementation"),
        risks=_names(file, entry, item, "risks"),
        policies=_names(file, entry, item, "policies"),
        title=title,
        additional=additional,
    )


def load_scope(path: Path, catalog: Mapping[str, Any]) -> Scope:
    """Parse and validate a SoA file; every catalog control gets an applicability."""
    file = str(path)
    doc = read_toml(path, MappingError)
    for key in doc:
        if key not in ("meta", "defaults", "control", "additional"):
            raise MappingError(
                file, "<file>",
                f"unknown top-level key {key!r} (allowed: additional, control, defaults, meta)",
            )
    meta = check_table(file, "meta", doc.get("meta", {}), _META_KEYS, MappingError)
    approved_on = meta.get("approved_on")
    if approved_on is not None and not isinstance(approved_on, (date, datetime)):
        raise MappingError(file, "meta", "'approved_on' must be a date (2026-11-01)")
    defaults = doc.get("defaults")
    if defaults is not None:
        if not isinstance(defaults, dict) or set(defaults) - {"applicable", "justification"}:
            raise MappingError(file, "defaults", "must hold only applicable and justification")
        if not isinstance(defaults.get("applicable"), bool):
            raise MappingError(file, "defaults", "'applicable' must be true or false")
        if not isinstance(defaults.get("justification"), str) or not defaults[
            "justification"
        ].strip():
            raise MappingError(file, "defaults", "missing or empty 'justification'")
    out: dict[str, Applicability] = {}
    for section, allowed, additional in (
        ("control", _CONTROL_KEYS, False),
        ("additional", _ADDITIONAL_KEYS, True),
    ):
        for n, item in enumerate(table_array(file, doc, section, MappingError), start=1):
            entry = f"{section}[{n}]"
            cid = item.get("id") if isinstance(item, dict) else None
            if not isinstance(cid, str) or not cid.strip():
                raise MappingError(file, entry, "missing 'id'")
            if additional and cid in catalog:
                raise MappingError(
                    file, f"{entry} ({cid})",
                    f"{cid} is an Annex A control: list it under [[control]]",
                )
            if not additional and cid not in catalog:
                raise MappingError(
                    file, entry,
                    f"unknown control {cid!r} (not in the 2022 catalog; a control of your own "
                    "goes under [[additional]] with a title)",
                )
            entry = f"{entry} ({cid})"
            if cid in out:
                raise MappingError(file, entry, f"duplicate entry for {cid}")
            out[cid] = _entry(file, entry, item, allowed, additional=additional)
    missing = [c for c in catalog if c not in out]
    if missing and defaults is None:
        raise MappingError(
            file, "<file>",
            f"{len(missing)} control(s) not listed and no [defaults]: {', '.join(missing[:8])}"
            + ("…" if len(missing) > 8 else ""),
        )
    for cid in missing:
        assert defaults is not None
        out[cid] = Applicability(cid, defaults["applicable"], defaults["justification"], False)
    ordered = {c: out[c] for c in sorted(out, key=control_sort_key)}
    return Scope(
        organisation=str(meta.get("organisation", "")),
        description=str(meta.get("scope", "")),
        file=file,
        controls=ordered,
        version=str(meta["version"]) if meta.get("version") is not None else None,
        approved_by=meta.get("approved_by"),
        approved_on=approved_on.isoformat() if approved_on is not None else None,
    )


def default_scope(catalog: Mapping[str, Any]) -> Scope:
    """Every control applicable, justification to be written: used when no SoA is given."""
    return Scope(
        organisation="",
        description="",
        file="<none>",
        controls={
            c: Applicability(c, True, "no scope file configured (audit.scope_file)", False)
            for c in catalog
        },
    )


def contradiction(declared: str | None, measured: str, applicable: bool) -> str | None:
    """Why the owner's declaration and Annexa's measurement disagree, or None.

    Declared implemented (or partially), measured failing or without evidence: the
    declaration is not supported. Declared not implemented, measured passing: the SoA
    understates — also worth an auditor's question.
    """
    if not applicable or declared is None:
        return None
    unsupported = {"fail", "error", "stale", "undocumented", "no_evidence", "manual"}
    if declared in ("implemented", "partially") and measured in unsupported:
        return f"declared {declared}, measured {measured}"
    if declared in ("planned", "not_implemented") and measured == "pass":
        return f"declared {declared}, measured pass"
    return None
