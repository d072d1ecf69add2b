"""ISMS clauses 4-10 and the risk register fed by the ticketing connectors, end to end.

Risks, nonconformities and management reviews are read by the real Jira and ServiceNow
connectors from their fakes (tests/test_jira.py, tests/test_servicenow.py) through the
real run engine into the store (``run_connector``); clause readiness and the register
are then read back as ``annexa isms`` / ``annexa risks`` read them. The audit package
carries both, and the report shows them with the monthly trends.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import Engine

from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
from collector.runner import run_connector
from core.connector import load_connector
from core.records import Evidence
from exports.package import build_package
from exports.verify import verify_package
from mappings.loader import MappingIndex, load_mappings
from mappings.soa import default_scope
from store.isms import clause_statuses
from store.manual import add_manual_evidence
from store.risk_input import RiskPolicy
from store.risks import register_at
from store.trends import month_points
from tests.fakes import FakeConnector, fake_settings
from tests.test_auditor_cli import annexa
from tests.test_jira import EMAIL, TOKEN, FakeIssue, FakeJira
from tests.test_servicenow import PASSWORD, USER, FakeServiceNow

pytestmark = pytest.mark.clock

NOW = datetime.now(UTC)


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).replace(tzinfo=None, microsecond=0).isoformat()


@pytest.fixture(scope="module")
def index() -> MappingIndex:
    return load_mappings()


def store_run(engine: Engine, index: MappingIndex, db_url: str, kind: str, options: dict):
    """One real collection of a ``kind`` connector into the store."""
    cfg = ConnectorConfig(type=kind, name=f"{kind}-1", options=options)
    cls = load_connector(kind)
    settings = Settings(AnnexaConfig(database={"url": db_url}, connectors=[cfg]), None)
    lc = LoadedConnector(cfg, cls, cls.Options.model_validate(options))
    summary = run_connector(settings, lc, engine, index)
    assert summary.status == "succeeded", summary.errors
    return summary


def register(engine: Engine, index: MappingIndex, at: datetime | None = None, appetite=6):
    policy = RiskPolicy.default()
    policy = RiskPolicy(appetite, policy.scales)
    rows, _, _ = register_at(engine, index, at or datetime.now(UTC), fallback=policy)
    return rows


def clauses(engine: Engine, rows, at: datetime | None = None) -> dict[str, Any]:
    return {c.id: c for c in clause_statuses(engine, at or datetime.now(UTC), register=rows)}


@dataclass
class RiskIssue(FakeIssue):
    """A Jira risk issue: its custom fields as Jira returns select lists and dates."""

    custom: dict[str, Any] = field(default_factory=dict)

    def as_json(self, base: str, changelog_cap: int | None) -> dict[str, Any]:
        body = super().as_json(base, changelog_cap)
        body["fields"].update(self.custom)
        return body


RISK_FIELDS = {
    "likelihood": "customfield_10301", "impact": "customfield_10302",
    "treatment": "customfield_10303", "controls": "customfield_10304",
    "residual_score": "customfield_10305", "review_date": "duedate",
}


def risk_fields(likelihood: str, impact: str, controls: list[str], review: str) -> dict:
    return {
        "customfield_10301": {"value": likelihood, "id": "1"},
        "customfield_10302": {"value": impact, "id": "2"},
        "customfield_10303": {"value": "Modify", "id": "3"},
        "customfield_10304": [{"value": c, "id": str(i)} for i, c in enumerate(controls)],
        "customfield_10305": 4.0,
        "duedate": review,
    }


@pytest.fixture
def jira(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeJira:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_JIRA_TOKEN", TOKEN)
    return FakeJira(httpserver)


def test_jira_risks_nonconformities_and_reviews_judge_the_register_and_clauses(
    jira: FakeJira, engine: Engine, index: MappingIndex, db_url: str
) -> None:
    future = (NOW + timedelta(days=200)).date().isoformat()
    jira.add(RiskIssue("RISK-1", "Stolen laptop", ago(60), "grc", "cto",
                       custom=risk_fields("Likely", "Major", ["A.8.24"], future)))
    jira.issues["RISK-1"].move(ago(50), "ceo", "Approved")  # the owner's acceptance
    jira.add(RiskIssue("RISK-2", "Phished admin", ago(60), "grc", "ciso",
                       custom=risk_fields("Possible", "Severe", ["A.8.5", "MFA app"],
                                          future)))
    jira.add(FakeIssue("NC-1", "Backups untested", ago(90), "audit", "it", priority="Major"))
    jira.issues["NC-1"].move(ago(30), "it", "Done")  # 60 days > 30: late
    jira.add(FakeIssue("NC-2", "Policy unsigned", ago(20), "audit", "hr", priority="Minor"))
    jira.add(FakeIssue("MR-1", "Management review", ago(40), "ceo", "ciso"))
    jira.issues["MR-1"].move(ago(35), "ciso", "Done")
    options = {
        "url": jira.base, "email": EMAIL, "token": {"env": "ANNEXA_TEST_JIRA_TOKEN"},
        "processes": [
            {"kind": "risk", "jql": "project = RISK", "approved_states": ["Approved"],
             "risk_fields": RISK_FIELDS},
            {"kind": "nonconformity", "jql": "project = NC", "resolved_states": ["Done"],
             "severity_field": "priority", "sla_days": {"Major": 30, "default": 90}},
            {"kind": "management_review", "jql": "project = MR", "resolved_states": ["Done"],
             "review_period": "annual", "periods_from": f"{NOW.year}-01-01",
             "close_within_days": 30},
        ],
        "http": {"max_attempts": 2, "retry_min_wait": 0.0, "retry_max_wait": 0.01},
    }
    before = datetime.now(UTC)
    store_run(engine, index, db_url, "jira", options)
    assert "customfield_10301" in next(
        r for r in jira.server.log if r[0].path == "/rest/api/3/search/jql"
    )[0].args["fields"]

    rows = {r.id: r for r in register(engine, index)}
    r1, r2 = rows["RISK-1"], rows["RISK-2"]
    assert (r1.source, r1.likelihood, r1.impact, r1.target_residual) == ("jira-1", 4, 4, 4)
    assert r1.controls == {"A.8.24": "no_evidence"}
    # Accepted in Jira 50 days ago, recorded now: the flags are accepted from now on…
    assert r1.accepted and r1.accepted_by == "Ceo" and r1.flags == []
    assert r1.accepted_flags == ["treatment_not_effective", "residual_above_appetite"]
    # …and raised before the collection that recorded it.
    assert register(engine, index, before) == []
    assert r2.flags == ["treatment_not_effective", "residual_above_appetite"]
    assert r2.additional_controls == ["MFA app"] and r2.url.endswith("/browse/RISK-2")
    # The owner accepts RISK-2 in Jira, dated 40 days back; the next collection records
    # it: flagged until then, accepted from then on.
    jira.issues["RISK-2"].move(ago(40), "ciso", "Approved")
    between = datetime.now(UTC)
    store_run(engine, index, db_url, "jira", options)
    assert {r.id: r for r in register(engine, index, between)}["RISK-2"].flags == [
        "treatment_not_effective", "residual_above_appetite"
    ]
    r2 = {r.id: r for r in register(engine, index)}["RISK-2"]
    assert r2.accepted and r2.flags == [] and r2.acceptance_recorded_at > between

    c = clauses(engine, list(rows.values()))
    assert c["10.2"].status == "fail"  # NC-1 corrected after its deadline
    assert c["10.2"].failing == ["NC-1 (jira.nonconformity.closed_within_sla)"]
    # Reviews on time, but no minutes recorded: passing process without its document.
    assert c["9.3"].status == "undocumented" and c["9.3"].counts["pass"] >= 1
    # One risk accepted, one unevidenced: never a pass (the worst by the shared order).
    assert c["8.3"].register == "excepted" and c["8.3"].status == "excepted"
    assert c["8.2"].status == "pass" and c["8.2"].document == "valid"  # the register
    assert c["6.1.2"].status == "undocumented"  # register current, no methodology
    assert c["4.3"].status == "manual"


@pytest.fixture
def snow(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeServiceNow:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_SN_PASSWORD", PASSWORD)
    fake = FakeServiceNow(httpserver)
    for value, label in (("11", "Draft"), ("12", "Accepted")):
        fake.tables["sys_choice"].append({
            "name": "sn_risk_risk", "element": "state", "value": value, "label": label,
            "inactive": "false", "language": "en", "sys_id": fake.sid(),
        })
    return fake


def test_servicenow_risks_and_nonconformities(
    snow: FakeServiceNow, engine: Engine, index: MappingIndex, db_url: str
) -> None:
    snow.record("sn_risk_risk", "RSK0001", ago(30), requested_by="grc", assigned_to="cto",
                state="12", events=[(ago(10), "ceo", "state", "12")],
                u_likelihood="2", u_impact="Minor", u_controls="A.5.15", u_residual="1")
    snow.record("sn_risk_risk", "RSK0002", ago(30), requested_by="grc", assigned_to="cto",
                state="11", u_likelihood="Often", u_impact="Minor", u_controls="", u_residual="")
    snow.record("sn_grc_issue", "ISS1", ago(40), requested_by="audit", assigned_to="it",
                priority="2", state="5", events=[(ago(35), "it", "state", "5")])
    options = {
        "instance_url": snow.base, "username": USER,
        "password": {"env": "ANNEXA_TEST_SN_PASSWORD"},
        "processes": [
            {"kind": "risk", "table": "sn_risk_risk", "approved_states": ["Accepted"],
             "risk_fields": {"likelihood": "u_likelihood", "impact": "u_impact",
                             "controls": "u_controls", "residual_score": "u_residual",
                             "treatment": "u_treatment"}},
            {"kind": "nonconformity", "table": "sn_grc_issue", "resolved_states": ["Closed"],
             "severity_field": "priority", "sla_days": {"2 - High": 30, "default": 90}},
        ],
        "http": {"max_attempts": 2, "retry_min_wait": 0.0, "retry_max_wait": 0.01},
    }
    # Without a treatment field the risk is refused by the register, not guessed.
    store_run(engine, index, db_url, "servicenow", options)
    rows = {r.id: r for r in register(engine, index)}
    assert rows["RSK0001"].status == "error" and "treatment" in rows["RSK0001"].notes[0]
    assert rows["RSK0002"].flags == ["unreadable"]
    for rec in snow.tables["sn_risk_risk"]:
        rec["u_treatment"] = "Mitigate"
    store_run(engine, index, db_url, "servicenow", options)
    rows = {r.id: r for r in register(engine, index)}
    r = rows["RSK0001"]
    assert (r.likelihood, r.impact, r.treatment, r.target_residual) == (2, 2, "modify", 1)
    assert r.accepted_by == "ceo" and r.accepted  # sys_audit names the user by user name
    assert "Often" in rows["RSK0002"].notes[0]
    c = clauses(engine, list(rows.values()))
    assert c["10.2"].counts == {"pass": 1} and c["10.2"].status == "undocumented"
    assert c["8.3"].status == "error"  # an unreadable risk is never a pass


def test_clause_documents_manual_and_policy_repository(
    engine: Engine, index: MappingIndex, db_url: str, tmp_path: Path
) -> None:
    doc = tmp_path / "audit-report-2026.pdf"
    doc.write_bytes(b"%PDF-1.4 internal audit report\n")
    now = datetime.now(UTC)
    add_manual_evidence(
        engine, control="9.2", file=doc, valid_from=now - timedelta(seconds=1),
        valid_until=now + timedelta(days=800), mapping_digest=index.digest,
        config_digest="c" * 64, agent_version="t", added_by="auditor",
        catalog=set(index.catalog) | {"9.2"},
    )
    # The policy-repository hook: front matter naming clauses; one past its review date.
    FakeConnector.script = [
        Evidence("repo", "global", "fake.policy.document", "isms-policy.md",
                 {"front_matter": {"clauses": ["5.2", "4.3"], "review_by": "2099-01-01"}}),
        Evidence("repo", "global", "fake.policy.document", "objectives.md",
                 {"clauses": ["6.2"], "review_by": "2020-01-01"}),
    ]
    settings = fake_settings(db_url)
    run_connector(settings, settings.connectors[0], engine, index)
    c = clauses(engine, [])
    assert c["9.2"].status == "pass" and c["9.2"].documents == ["manual: audit-report-2026.pdf"]
    # 365-day review interval caps the record: stale after a year.
    later = clauses(engine, [], now + timedelta(days=400))
    assert later["9.2"].status == "stale"
    assert c["5.2"].status == "pass" and c["4.3"].status == "pass"
    assert c["6.2"].status == "stale" and c["6.2"].document == "expired"
    assert c["7.5"].status == "manual"


def test_evidence_add_takes_clause_ids(engine: Engine, db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the CLI path is the same on both engines; one is enough")
    cfg = tmp_path / "annexa.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n[log]\nformat = "json"\n')
    doc = tmp_path / "minutes.pdf"
    doc.write_bytes(b"minutes")
    ok = annexa("evidence", "add", "-c", str(cfg), "--control", "9.3", "--file", str(doc),
                "--valid-until", "2099-01-01", "-f", "json")
    assert ok.returncode == 0, ok.stderr
    bad = annexa("evidence", "add", "-c", str(cfg), "--control", "9.9", "--file", str(doc),
                 "--valid-until", "2099-01-01")
    assert bad.returncode == 2 and "ISMS clause like 9.2" in " ".join(bad.stderr.split())
    out = json.loads(annexa("isms", "-c", str(cfg), "-f", "json").stdout)
    by = {r["clause"]: r for r in out}
    assert len(by) == 25 and by["9.3"]["status"] == "pass" and by["9.2"]["status"] == "manual"
    # Crosswalks see clause readiness: GV.RR-02 relies on clause 7.2 alone, GV.RR-03 on
    # 7.1 and 7.2; with only 7.2 evidenced, GV.RR-03 (one unevidenced clause) is not pass.
    doc.write_bytes(b"competence matrix")
    assert annexa("evidence", "add", "-c", str(cfg), "--control", "7.2", "--file", str(doc),
                  "--valid-until", "2099-01-01").returncode == 0
    csf = annexa("controls", "-c", str(cfg), "--framework", "nist-csf-2.0", "-f", "json")
    assert csf.returncode == 0, csf.stderr
    rows = {r["control"]: r for r in json.loads(csf.stdout)}
    assert len(rows) == 106
    assert rows["GV.RR-02"]["status"] == "pass"
    assert rows["GV.RR-03"]["status"] == "manual" and rows["GV.RR-03"]["unevidenced"] == 1
    assert rows["GV.RR-03"]["iso27001_2022"] == {"7.1": "manual", "7.2": "pass"}


def test_package_carries_isms_risks_and_monthly_trends(
    engine: Engine, index: MappingIndex, db_url: str, tmp_path: Path
) -> None:
    start = datetime.now(UTC) - timedelta(days=70)
    FakeConnector.script = [
        Evidence("repo", "global", "fake.policy.document", "isms-policy.md",
                 {"clauses": ["5.2"]}),
    ]
    settings = fake_settings(db_url)
    run_connector(settings, settings.connectors[0], engine, index)
    out = tmp_path / "audit.zip"
    end = datetime.now(UTC) + timedelta(seconds=1)
    build_package(engine, index, start=start, end=end, out=out, freshness=timedelta(days=7),
                  exceptions=[], scope=default_scope(index.catalog), agent_version="t")
    assert verify_package(out).ok
    with zipfile.ZipFile(out) as zf:
        isms = list(csv.DictReader(io.StringIO(zf.read("isms.csv").decode())))
        html = zf.read("report.html").decode()
        assert zf.read("risks.csv").decode().startswith("id,title,source")
    assert {r["clause"]: r["status"] for r in isms}["5.2"] == "pass"
    assert '<table id="isms">' in html and 'id="trend-controls"' in html
    assert html.count("<script") == 1  # the report's own filter script, nothing added
    points = month_points(start, end)
    assert 2 <= len(points) <= 4 and points[-1] == end
    assert html.count('<circle cx=') >= len(points)
