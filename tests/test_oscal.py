"""The audit package's OSCAL, judged by implementations Annexa did not write.

Every file is validated against NIST's JSON schema of its model (OSCAL 1.2.1, stored
under tests/oscal/ with its source) and loaded with compliance-trestle. The links are
then followed through trestle's objects, as a GRC tool would: the results import the
plan, the plan the SSP, the SSP the profile, the profile the catalogs — each href found
in the package — and every control id, subject, origin and piece of evidence they use
resolves.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
from sqlalchemy import Engine
from trestle.oscal.assessment_plan import AssessmentPlan
from trestle.oscal.assessment_results import AssessmentResults
from trestle.oscal.catalog import Catalog
from trestle.oscal.profile import Profile
from trestle.oscal.ssp import SystemSecurityPlan

from core.records import Evidence, Finding, utcnow
from exports.package import build_package
from exports.verify import verify_package
from mappings.loader import MappingIndex, load_mappings
from mappings.soa import load_scope
from store.writer import RunWriter
from tests.test_auditor_history import History, build_history, run

pytestmark = pytest.mark.clock

SCHEMAS = Path(__file__).parent / "oscal"
MODELS = {
    "catalog.json": ("catalog", Catalog),
    "additional-controls.json": ("catalog", Catalog),
    "profile.json": ("profile", Profile),
    "ssp.json": ("ssp", SystemSecurityPlan),
    "assessment-plan.json": ("assessment-plan", AssessmentPlan),
    "assessment-results.json": ("assessment-results", AssessmentResults),
}
OKTA_CHECK = "okta.user.deprovisioned_no_access"
SOA = """
[meta]
organisation = "Example Ltd"
scope = "SaaS platform and corporate identity"
version = "4"
approved_by = "CEO, J. Doe"
approved_on = 2026-11-01

[defaults]
applicable = true
justification = "Selected in the risk treatment plan (RTP-2026)"

[[control]]
id = "A.8.24"
applicable = true
justification = "Customer data at rest (R-7)"
status = "implemented"
owner = "Head of IT"
implementation = "Default encryption on every bucket; KMS keys rotated yearly"
risks = ["R-7"]
policies = ["cryptography-policy"]

[[control]]
id = "A.7.4"
applicable = false
justification = "No premises of our own: offices and data centres are providers'"

[[additional]]
id = "X.1"
title = "Customer data residency"
applicable = true
justification = "Contractual obligation to EU customers"
status = "planned"
"""


def v(x: Any) -> Any:
    """A trestle field's value (enumerated fields are Enum members, tokens root models)."""
    return getattr(x, "value", getattr(x, "root", x))


def validator(model: str) -> jsonschema.protocols.Validator:
    """NIST's schema as published. Python's ``re`` lacks ``\\p{L}``/``\\p{N}``; they are
    rewritten to the equivalent ``re`` classes (letters: ``[^\\W\\d_]``, digits: ``\\d``)."""
    raw = (SCHEMAS / f"oscal_{model}_schema-1.2.1.json").read_text()
    raw = raw.replace("\\\\p{L}", "[^\\\\W\\\\d_]").replace("\\\\p{N}", "\\\\d")
    schema = json.loads(raw)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture(scope="module")
def index() -> MappingIndex:
    return load_mappings()


def _okta_run(engine: Engine, index: MappingIndex) -> None:
    """A second connector: a failing user with evidence, and a verdict with none (a
    resource known only from its finding must still be named)."""
    w = RunWriter(engine, source="okta-main", connector_type="okta", config_digest="c" * 64,
                  mapping_digest=index.digest, agent_version="test")
    w.start()
    h = w.add_evidence(Evidence("example.okta.com", "global", "okta.user", "00u-leaver",
                                {"status": "DEPROVISIONED", "apps": 3}))
    controls = index.controls_for(OKTA_CHECK)
    w.add_finding(Finding(OKTA_CHECK, "example.okta.com", "global", "okta.user", "00u-leaver",
                          "fail", "high", "deprovisioned user still assigned 3 apps",
                          evidence_hash=h, controls=controls))
    w.add_finding(Finding(OKTA_CHECK, "example.okta.com", "global", "okta.user", "00u-ghost",
                          "error", "high", "user could not be read: 403", controls=controls))
    w.finish("partial")


@pytest.fixture
def package(engine: Engine, index: MappingIndex, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    h: History = build_history(engine, index, tmp_path)
    run(engine, index, {"logs": "pass", "legacy-export-1": "fail"})  # failing again at the end
    _okta_run(engine, index)
    soa = tmp_path / "soa.toml"
    soa.write_text(SOA)
    scope = load_scope(soa, index.catalog)
    end = utcnow()
    pkg = tmp_path / "audit.zip"
    build_package(engine, index, start=h.start, end=end, out=pkg, freshness=timedelta(days=7),
                  exceptions=h.rules, scope=scope, agent_version="test")
    out = tmp_path / "unpacked"
    with zipfile.ZipFile(pkg) as zf:
        zf.extractall(out)
    yield pkg, out


def _load(out: Path) -> dict[str, Any]:
    docs = {}
    for name, (_schema, model) in MODELS.items():
        docs[name] = model.oscal_read(out / "oscal" / name)
        assert docs[name] is not None, name
    return docs


def test_every_oscal_file_is_valid_for_nist_and_trestle(package: tuple[Path, Path]) -> None:
    pkg, out = package
    assert verify_package(pkg).ok, verify_package(pkg).problems
    for name, (schema, _model) in MODELS.items():
        doc = json.loads((out / "oscal" / name).read_text())
        errors = sorted(validator(schema).iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, (name, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]])
        assert next(iter(doc.values()))["metadata"]["oscal-version"] == "1.2.1"
    docs = _load(out)
    assert len(docs["assessment-results.json"].results) == 1  # one result for the period


def _resolve(out: Path, importer: str, href: str) -> Path:
    """An href relative to the importing file, which must be a file of the package."""
    assert "://" not in href and not href.startswith("/"), href
    target = (out / "oscal" / importer).parent / href
    assert target.resolve().is_relative_to(out.resolve()), href
    assert target.is_file(), f"{importer} imports {href}: not in the package"
    return target


def test_the_catalog_reference_resolves_through_the_chain(package: tuple[Path, Path]) -> None:
    _, out = package
    docs = _load(out)
    ar, ap = docs["assessment-results.json"], docs["assessment-plan.json"]
    ssp, profile = docs["ssp.json"], docs["profile.json"]
    assert _resolve(out, "assessment-results.json", ar.import_ap.href).name == \
        "assessment-plan.json"
    assert _resolve(out, "assessment-plan.json", ap.import_ssp.href).name == "ssp.json"
    assert _resolve(out, "ssp.json", ssp.import_profile.href).name == "profile.json"
    catalogs = [Catalog.oscal_read(_resolve(out, "profile.json", i.href))
                for i in profile.imports]
    assert len(catalogs) == 2  # Annex A and the SoA's additional controls

    def controls(cat: Catalog) -> dict[str, Any]:
        found = {c.id: c for c in cat.controls or []}
        for g in cat.groups or []:
            found.update({c.id: c for c in g.controls or []})
        return found

    defined = {cid: c for cat in catalogs for cid, c in controls(cat).items()}
    annex = controls(docs["catalog.json"])
    assert len(annex) == 93 and annex["A.5.1"].title == "Policies for information security"
    assert {g.title for g in docs["catalog.json"].groups} == {
        "Organizational controls", "People controls", "Physical controls",
        "Technological controls"}
    guidance = [p for p in annex["A.5.1"].parts if p.name == "guidance"]
    assert guidance and "policy" in guidance[0].prose.lower()

    selected = [cid for i in profile.imports for inc in i.include_controls or []
                for cid in inc.with_ids]
    assert "A.7.4" not in selected and "X.1" in selected and "A.8.24" in selected
    excluded = [p for p in profile.metadata.props if p.name == "excluded-control"]
    assert [(p.value, p.remarks) for p in excluded] == [
        ("A.7.4", "No premises of our own: offices and data centres are providers'")]
    requirements = {r.control_id: r for r in
                    ssp.control_implementation.implemented_requirements}
    for cid in [*selected, *requirements]:
        assert cid in defined, f"control id {cid} is not in the catalogs"
    assert set(requirements) == set(selected)
    a824 = requirements["A.8.24"]
    (by,) = a824.by_components
    assert by.description.startswith("Default encryption") and \
        v(by.implementation_status.state) == "implemented"
    roles = {r.id: r.title for r in ssp.metadata.roles}
    assert [roles[r.role_id] for r in a824.responsible_roles] == ["Head of IT"]

    objectives = {p.id: cid for cid, c in defined.items() for p in c.parts or []
                  if p.name == "assessment-objective"}
    result = ar.results[0]
    uuids = {r.uuid: cid for cid, r in requirements.items()}
    for f in result.findings:
        assert v(f.target.type) == "objective-id" and f.target.target_id in objectives
        assert uuids[f.implementation_statement_uuid] == objectives[f.target.target_id]


def _failing_at_end(out: Path) -> dict[str, set[str]]:
    """Control → resource ids failing at the end of the period, from findings.csv."""
    failing: dict[str, set[str]] = {}
    with (out / "findings.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["valid_to"] == "" and row["status"] in ("fail", "error"):
                for cid in json.loads(row["controls"]):
                    failing.setdefault(cid, set()).add(row["resource_id"])
    return failing


def test_observations_have_subjects_and_failing_controls_name_their_resources(
    package: tuple[Path, Path],
) -> None:
    _, out = package
    docs = _load(out)
    ar, ap = docs["assessment-results.json"], docs["assessment-plan.json"]
    result = ar.results[0]
    items = {i.uuid: i for i in result.local_definitions.inventory_items}
    resources = {r.uuid: r for r in ar.back_matter.resources}
    tasks = {t.uuid: t for t in result.local_definitions.tasks}
    tools = {c.uuid for c in ap.assessment_assets.components}
    runs = {r["id"]: r for r in json.loads((out / "runs.json").read_text())}

    def resource_ids(obs: Any) -> set[str]:
        out_ids = set()
        for s in obs.subjects:
            if v(s.type) == "inventory-item":
                props = {p.name: p.value for p in items[s.subject_uuid].props}
                out_ids.add(props["resource-id"])
            else:
                assert v(s.type) == "resource" and s.subject_uuid in resources
                out_ids.add(s.title)
        return out_ids

    observations = {o.uuid: o for o in result.observations}
    assert observations
    for o in observations.values():
        assert o.subjects, f"observation {o.title} has no subjects"
        assert resource_ids(o)
        (origin,) = o.origins
        assert next(a.actor_uuid for a in origin.actors if v(a.type) == "tool") in tools
        for t in origin.related_tasks:
            props = {p.name: p.value for p in tasks[t.task_uuid].props}
            assert runs[props["run-id"]]["digest"] == props["run-digest"]

    failing = _failing_at_end(out)
    assert failing["A.8.24"] == {"legacy-export-1"}
    assert failing[index_controls_of_okta()] >= {"00u-leaver", "00u-ghost"}
    by_control = {f.target.target_id.removesuffix("_obj"): f for f in result.findings}
    for cid, expected in failing.items():
        f = by_control[cid]
        assert v(f.target.status.state) == "not-satisfied", cid
        named = set().union(*(resource_ids(observations[r.observation_uuid])
                              for r in f.related_observations))
        assert expected <= named, (cid, expected - named)
        for rid in expected:
            assert rid in f.target.status.remarks  # the reasons name it, with the message
    assert "encryption fail" in by_control["A.8.24"].target.status.remarks
    assert "403" in by_control[index_controls_of_okta()].target.status.remarks
    passing = by_control["A.8.24"]
    assert {p.name: p.value for p in passing.props}["annexa-status"] == "fail"


def index_controls_of_okta() -> str:
    return load_mappings().controls_for(OKTA_CHECK)[0]


def test_evidence_and_manual_documents_are_linked_and_back_matter_is_all_cited(
    package: tuple[Path, Path],
) -> None:
    _, out = package
    ar = _load(out)["assessment-results.json"]
    result = ar.results[0]
    resources = {r.uuid: r for r in ar.back_matter.resources}
    bodies = {json.loads(line)["hash"] for line in
              (out / "evidence.jsonl").read_text().splitlines()}
    cited: set[str] = set()
    for o in result.observations:
        for ev in o.relevant_evidence or []:
            hashes = {p.value for p in ev.props or [] if p.name == "content-hash"}
            assert hashes <= bodies | _removed(out)
            if ev.href:
                assert ev.href.startswith("#") and ev.href[1:] in resources
                cited.add(ev.href[1:])
    assert set(resources) == cited, "a back-matter resource nobody cites"
    for r in resources.values():
        (link,) = r.rlinks
        target = _resolve(out, "assessment-results.json", link.href)
        for h in link.hashes or []:
            assert hashlib.sha256(target.read_bytes()).hexdigest() == h.value

    # The documents recorded for A.5.2 and A.8.24 are relevant evidence of their findings.
    observations = {o.uuid: o for o in result.observations}
    by_control = {f.target.target_id.removesuffix("_obj"): f for f in result.findings}
    for cid, name in (("A.5.2", "policy.pdf"), ("A.8.24", "crypto-policy.pdf")):
        docs = []
        for rel in by_control[cid].related_observations:
            for ev in observations[rel.observation_uuid].relevant_evidence or []:
                res = resources.get((ev.href or "#")[1:])
                if res is not None and res.rlinks[0].href.startswith("../manual/"):
                    docs.append(res)
        assert [PurePosixPath(d.rlinks[0].href).name for d in docs] == [name], cid
        data = _resolve(out, "assessment-results.json", docs[0].rlinks[0].href).read_bytes()
        assert data.startswith(b"%PDF-1.4")
        assert docs[0].rlinks[0].hashes[0].value == hashlib.sha256(data).hexdigest()


def _removed(out: Path) -> set[str]:
    rows = csv.DictReader(io.StringIO((out / "evidence.csv").read_text()))
    return {r["content_hash"] for r in rows if r["body_removed"] == "True"}
