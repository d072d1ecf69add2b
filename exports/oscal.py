"""OSCAL 1.2.1: the documents an assessment result imports, and the links between them.

OSCAL resolves a result the way an auditor does: the assessment results say which
assessment plan they carry out (``import-ap``), the plan names the system it assesses
(``import-ssp``), the system security plan says which baseline it implements
(``import-profile``), and the profile selects controls from a catalog. The audit
package ships that whole chain under ``oscal/``, every ``href`` relative to the file
that holds it:

``catalog.json``
    The 93 ISO/IEC 27001:2022 Annex A controls (ids and titles as in
    ``mappings/catalogs/iso27001-2022.toml``), grouped by theme. No text of the standard
    is reproduced: each control has its title, Annexa's summary of the evidence an
    auditor expects (``guidance``, from ``mappings/controls.toml``) and an
    ``assessment-objective`` part (``<id>_obj``) that findings target.
``additional-controls.json``
    Controls outside Annex A that the Statement of Applicability adds (6.1.3 b), if any.
``profile.json``
    The baseline: the controls applicable per the Statement of Applicability; the
    excluded ones are named with their justification.
``ssp.json``
    A minimal system security plan whose ``control-implementation`` is the SoA: per
    applicable control, the owner's declared status, the owner and how it is implemented.
``assessment-plan.json``
    Continuous assessment by Annexa: the connector instances are its tools.
``assessment-results.json``
    See :mod:`exports.oscal_results`.

The version is the one compliance-trestle (an independent implementation, used by the
tests) reads: 1.2.1, for every file. UUIDs are version-5 UUIDs derived from stable
identifiers, so the same history exported twice yields the same identifiers.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

OSCAL_VERSION = "1.2.1"
NS = "https://annexa.dev/ns/oscal"
_ROOT = uuid.uuid5(uuid.NAMESPACE_URL, NS)

#: Package paths of the chain, from the results back to the catalog.
FOLDER = "oscal"
CATALOG = "catalog.json"
ADDITIONAL = "additional-controls.json"
PROFILE = "profile.json"
SSP = "ssp.json"
PLAN = "assessment-plan.json"
RESULTS = "assessment-results.json"
#: Root key of each model, and the key of the href it imports.
MODELS = {
    CATALOG: ("catalog", None),
    ADDITIONAL: ("catalog", None),
    PROFILE: ("profile", "imports"),
    SSP: ("system-security-plan", "import-profile"),
    PLAN: ("assessment-plan", "import-ssp"),
    RESULTS: ("assessment-results", "import-ap"),
}

THEMES = {
    "organizational": ("A.5", "Organizational controls"),
    "people": ("A.6", "People controls"),
    "physical": ("A.7", "Physical controls"),
    "technological": ("A.8", "Technological controls"),
}
#: The SoA's declared status → OSCAL implementation state. OSCAL has no "not
#: implemented": that is a token of Annexa's namespace (the schema allows other tokens).
DECLARED_STATE = {
    "implemented": "implemented",
    "partially": "partial",
    "planned": "planned",
    "not_implemented": "not-implemented",
}


def uid(*parts: object) -> str:
    return str(uuid.uuid5(_ROOT, "|".join(str(p) for p in parts)))


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prop(name: str, value: object, **extra: str) -> dict[str, str]:
    """An Annexa property (OSCAL property values must not be empty)."""
    text = str(value).strip() or "-"
    return {"name": name, "ns": NS, "value": text, **extra}


def token(text: str) -> str:
    """``text`` as an OSCAL token (ids of roles and groups)."""
    t = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "x"
    return t if re.match(r"[A-Za-z_]", t) else f"x-{t}"


def objective_id(control: str) -> str:
    """The assessment objective of ``control`` in the catalog (what findings target)."""
    return f"{control}_obj"


def metadata(title: str, generated: datetime, version: str, **more: Any) -> dict[str, Any]:
    return {
        "title": title,
        "last-modified": iso(generated),
        "version": version or "-",
        "oscal-version": OSCAL_VERSION,
        **{k.replace("_", "-"): v for k, v in more.items() if v},
    }


def _organisation(name: str) -> dict[str, Any]:
    return {"parties": [{"uuid": uid("party", name), "type": "organization", "name": name}]}


# -- catalog and profile -------------------------------------------------------------------


def _objective(control: str, documented: Any, checks: int) -> str:
    if documented is not None and documented.automated_sufficient:
        return (
            f"Every automated check mapped to {control} passes ({checks} check(s)); "
            f"no document of its own is expected: {documented.rationale}"
        )
    if checks:
        return (
            f"A record of the documented part of {control} is in force, and every "
            f"automated check mapped to it passes ({checks} check(s))."
        )
    return (
        f"A record of the documented part of {control} is in force (no automated "
        "check evidences this control)."
    )


def catalog(index: Any, generated: datetime) -> dict[str, Any]:
    """The Annex A catalog of the loaded mapping (93 controls, grouped by theme)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for cid, c in index.catalog.items():
        try:
            documented = index.documented(cid)
        except KeyError:
            documented = None
        parts = []
        if documented is not None:
            parts.append(
                {
                    "id": f"{cid}_gdn",
                    "name": "guidance",
                    "title": "Expected evidence (documented part)",
                    "prose": documented.expected_evidence,
                }
            )
        parts.append(
            {
                "id": objective_id(cid),
                "name": "assessment-objective",
                "prose": _objective(cid, documented, len(index.checks_for(cid))),
            }
        )
        groups.setdefault(c.theme, []).append(
            {
                "id": cid,
                "class": "annex-a",
                "title": c.title,
                "props": [{"name": "label", "value": cid}],
                "parts": parts,
            }
        )
    return {
        "catalog": {
            "uuid": uid("catalog", "iso27001-2022"),
            "metadata": metadata(
                "ISO/IEC 27001:2022 Annex A",
                generated,
                "2022",
                remarks="Control ids and titles of ISO/IEC 27001:2022 Table A.1. The text "
                "of the standard is not reproduced; guidance parts are Annexa's summaries "
                "of the evidence an auditor expects.",
            ),
            "groups": [
                {
                    "id": token(theme),
                    "class": "theme",
                    "title": THEMES.get(theme, (theme, theme))[1],
                    "props": [{"name": "label", "value": THEMES.get(theme, (theme,))[0]}],
                    "controls": controls,
                }
                for theme, controls in groups.items()
            ],
        }
    }


def additional_catalog(scope: Any, generated: datetime) -> dict[str, Any] | None:
    """The SoA's controls outside Annex A, as a catalog of their own (None: there are none)."""
    extra = getattr(scope, "additional", {})
    if not extra:
        return None
    return {
        "catalog": {
            "uuid": uid("catalog", "additional", scope.organisation),
            "metadata": metadata(
                f"Additional controls of {scope.organisation or 'the ISMS'}",
                generated,
                scope.version or "-",
            ),
            "controls": [
                {
                    "id": cid,
                    "class": "additional",
                    "title": a.title or cid,
                    "parts": [
                        {
                            "id": objective_id(cid),
                            "name": "assessment-objective",
                            "prose": f"{cid} is implemented as the Statement of "
                            "Applicability declares.",
                        }
                    ],
                }
                for cid, a in extra.items()
            ],
        }
    }


def profile(index: Any, scope: Any, generated: datetime) -> dict[str, Any]:
    """The baseline: applicable controls per the SoA (exclusions named, justified)."""
    annex = [c for c in index.catalog if c in scope.applicable]
    extra = [c for c, a in getattr(scope, "additional", {}).items() if a.applicable]
    imports: list[dict[str, Any]] = []
    if annex:
        imports.append({"href": CATALOG, "include-controls": [{"with-ids": annex}]})
    if extra:
        imports.append({"href": ADDITIONAL, "include-controls": [{"with-ids": extra}]})
    if not imports:  # nothing applicable: import the catalog, select nothing
        imports.append({"href": CATALOG, "exclude-controls": [{"with-ids": list(index.catalog)}]})
    excluded = [
        prop("excluded-control", cid, remarks=a.justification)
        for cid, a in scope.controls.items()
        if not a.applicable
    ]
    meta = scope.meta() if hasattr(scope, "meta") else {}
    props = [
        prop(k.replace("_", "-"), meta[k]) for k in ("approved_by", "approved_on") if meta.get(k)
    ]
    return {
        "profile": {
            "uuid": uid("profile", scope.organisation, meta.get("version")),
            "metadata": metadata(
                "Statement of Applicability: the applicable controls",
                generated,
                meta.get("version") or "unversioned",
                props=props + excluded,
                **(_organisation(scope.organisation) if scope.organisation else {}),
            ),
            "imports": imports,
            "merge": {"as-is": True},
        }
    }


# -- system security plan and assessment plan ------------------------------------------------

THIS_SYSTEM = "this-system"


def ssp(scope: Any, generated: datetime) -> dict[str, Any]:
    """A minimal SSP: the ISMS scope as the system, the SoA as its control implementation."""
    org = scope.organisation or "The organisation"
    meta = scope.meta() if hasattr(scope, "meta") else {}
    owners = sorted({a.owner for a in scope.controls.values() if a.applicable and a.owner})
    system = uid("component", THIS_SYSTEM, org)
    requirements = []
    for cid, a in scope.controls.items():
        if not a.applicable:
            continue
        by_component: dict[str, Any] = {
            "component-uuid": system,
            "uuid": uid("by-component", cid),
            "description": a.implementation
            or "How it is implemented is not described in the Statement of Applicability.",
        }
        if a.status:
            by_component["implementation-status"] = {"state": DECLARED_STATE[a.status]}
        req: dict[str, Any] = {
            "uuid": implementation_uuid(cid),
            "control-id": cid,
            "props": [
                prop("declared-status", a.status or "not declared"),
                *(prop("risk", r) for r in a.risks),
                *(prop("policy", p) for p in a.policies),
            ],
            "by-components": [by_component],
            "remarks": f"Included: {a.justification}",
        }
        if a.owner:
            req["responsible-roles"] = [{"role-id": token(f"owner-{a.owner}")}]
        requirements.append(req)
    soa = f"version {meta.get('version')}" if meta.get("version") else "(unversioned)"
    approval = (
        f", approved by {meta['approved_by']} on {meta.get('approved_on') or '?'}"
        if meta.get("approved_by")
        else ", not approved"
    )
    description = scope.description or "The scope of the information security management system."
    return {
        "system-security-plan": {
            "uuid": uid("ssp", org, meta.get("version")),
            "metadata": metadata(
                f"{org}: information security management system",
                generated,
                meta.get("version") or "unversioned",
                roles=[{"id": token(f"owner-{o}"), "title": o} for o in owners],
                **(_organisation(scope.organisation) if scope.organisation else {}),
            ),
            "import-profile": {"href": PROFILE},
            "system-characteristics": {
                "system-ids": [{"identifier-type": NS, "id": uid("system", org)}],
                "system-name": org,
                "description": description,
                "system-information": {
                    "information-types": [
                        {
                            "uuid": uid("information", org),
                            "title": "Information within the ISMS scope",
                            "description": description,
                        }
                    ]
                },
                "status": {"state": "operational"},
                "authorization-boundary": {"description": description},
            },
            "system-implementation": {
                "components": [
                    {
                        "uuid": system,
                        "type": THIS_SYSTEM,
                        "title": f"{org} ISMS",
                        "description": description,
                        "status": {"state": "operational"},
                    }
                ]
            },
            "control-implementation": {
                "description": f"The Statement of Applicability {soa}{approval}: for each "
                "applicable control the owner's declared implementation status, the owner "
                "and how it is implemented. Annexa's measured status is in the assessment "
                "results.",
                "implemented-requirements": requirements,
            },
        }
    }


def implementation_uuid(control: str) -> str:
    return uid("implemented-requirement", control)


def tool_uuid(source: str) -> str:
    """The assessment tool that is one connector instance (``runs.source``)."""
    return uid("tool", source)


PLATFORM = uid("assessment-platform", "annexa")


def assessment_plan(
    scope: Any, tools: Mapping[str, str], generated: datetime, agent_version: str
) -> dict[str, Any]:
    """Continuous assessment: the connector instances (``source`` → connector type)."""
    components = [
        {
            "uuid": tool_uuid(src),
            "type": "software",
            "title": f"Connector instance {src}",
            "description": f"Annexa {kind} connector instance {src}: reads configuration and "
            "records evidence; checks judge it.",
            "props": [prop("connector-type", kind)],
            "status": {"state": "operational"},
        }
        for src, kind in sorted(tools.items())
    ]
    platform: dict[str, Any] = {"uuid": PLATFORM, "title": f"Annexa {agent_version}"}
    if components:
        platform["uses-components"] = [{"component-uuid": c["uuid"]} for c in components]
    assets: dict[str, Any] = {"assessment-platforms": [platform]}
    if components:
        assets["components"] = components
    return {
        "assessment-plan": {
            "uuid": uid("assessment-plan", scope.organisation),
            "metadata": metadata("Annexa continuous assessment", generated, agent_version),
            "import-ssp": {"href": SSP},
            "reviewed-controls": {
                "description": "Every control of the baseline: its checks run on every "
                "collection, its documented part is examined when recorded.",
                "control-selections": [{"include-all": {}}],
            },
            "assessment-assets": assets,
        }
    }


# -- the chain, checked -----------------------------------------------------------------------


def import_hrefs(doc: Mapping[str, Any]) -> list[str]:
    """The hrefs a document imports (the next links of the chain)."""
    for root, key in MODELS.values():
        if root in doc:
            if key is None:
                return []
            value = doc[root].get(key)
            items = value if isinstance(value, list) else [value]
            return [str(i["href"]) for i in items if isinstance(i, dict) and "href" in i]
    return []


def check_chain(data: Mapping[str, bytes]) -> list[tuple[str, str]]:
    """(file, problem) for each OSCAL file of a package that does not parse as its model
    or imports a file the package does not hold (hrefs are relative to ``oscal/``; a
    fragment ``#uuid`` points into the document's own back-matter)."""
    problems: list[tuple[str, str]] = []
    for name, (root, _key) in MODELS.items():
        path = f"{FOLDER}/{name}"
        if path not in data:
            continue  # an import that needs it names it below
        try:
            doc = json.loads(data[path])
            doc[root]["uuid"]
        except (ValueError, KeyError, TypeError):
            problems.append((path, f"not an OSCAL {root} document"))
            continue
        for href in import_hrefs(doc):
            if not href.startswith("#") and f"{FOLDER}/{href}" not in data:
                problems.append((path, f"imports {href}, which the package does not hold"))
    return problems


def dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8")


def chain_documents(
    index: Any, scope: Any, tools: Mapping[str, str], generated: datetime, agent_version: str
) -> dict[str, dict[str, Any]]:
    """Every document the results import, by file name under ``oscal/``."""
    docs = {
        CATALOG: catalog(index, generated),
        PROFILE: profile(index, scope, generated),
        SSP: ssp(scope, generated),
        PLAN: assessment_plan(scope, tools, generated, agent_version),
    }
    extra = additional_catalog(scope, generated)
    if extra is not None:
        docs[ADDITIONAL] = extra
    return docs


def control_ids(docs: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every control id the catalogs among ``docs`` define."""
    out: set[str] = set()

    def walk(controls: Iterable[Mapping[str, Any]]) -> None:
        for c in controls:
            out.add(c["id"])
            walk(c.get("controls", []))

    for d in docs:
        cat = d.get("catalog")
        if cat:
            walk(cat.get("controls", []))
            for g in cat.get("groups", []):
                walk(g.get("controls", []))
    return out
