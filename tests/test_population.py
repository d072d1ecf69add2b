"""Ticket evidence through the run engine into the store, and ``annexa population``.

The connectors run through ``collector.runner.run_connector`` against the fakes of
``tests.test_jira``, ``tests.test_servicenow`` and ``tests.test_github_pulls`` into the
``engine`` fixture (SQLite and PostgreSQL); the ``annexa population`` command runs as a
real subprocess on the same database, as an auditor would run it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
from collector.runner import run_connector
from connectors.github_pulls import GitHubPullsConnector, GitHubPullsOptions
from connectors.jira import JiraConnector
from connectors.servicenow import ServiceNowConnector, ServiceNowOptions
from core.connector import Connector
from mappings.loader import load_mappings
from store.populations import parse_period, population, sla_met
from store.queries import findings_at
from store.schema import evidence
from tests import clock
from tests import test_github_pulls as ghp
from tests import test_jira as tj
from tests import test_servicenow as tsn
from tests.configs import connector_table, secret_env, write_config

pytestmark = pytest.mark.clock

H1 = "2026-01-01..2026-06-30"


def annexa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        clock.command([sys.executable, "-m", "collector", *args]),
        capture_output=True,
        text=True,
        env=clock.env(dict(os.environ)),
        timeout=120,
    )


def population_cli(
    cfg: Path, process: str, period: str, *more: str
) -> subprocess.CompletedProcess[str]:
    """``annexa population`` over ``cfg`` for one process and period, then ``more`` options."""
    options = ("--config", str(cfg), "--process", process, "--period", period, *more)
    return annexa("population", *options)


def loaded(db_url: str, cls: type[Connector], name: str, options: Any) -> tuple[Settings, Any]:
    raw = options.model_dump(mode="json")
    cfg = ConnectorConfig(type=cls.type, name=name, options=raw)
    settings = Settings(AnnexaConfig(database={"url": db_url}, connectors=[cfg]), None)
    lc = LoadedConnector(cfg, cls, options)
    settings.connectors = [lc]
    return settings, lc


def config_file(tmp_path: Path, db_url: str) -> Path:
    cfg = tmp_path / "annexa.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n\n[log]\nformat = "json"\n')
    return cfg


def versions(engine: Engine, resource_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(evidence)
            .where(evidence.c.resource_id == resource_id, evidence.c.content_hash.is_not(None))
        ).scalar_one()


@pytest.fixture
def jira(httpserver, monkeypatch) -> tj.FakeJira:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_JIRA_TOKEN", tj.TOKEN)
    return tj.FakeJira(httpserver)


def test_edited_ticket_adds_one_version_and_past_population_is_unchanged(
    jira: tj.FakeJira, engine: Engine, db_url: str, tmp_path: Path
) -> None:
    tj.plant(jira)
    settings, lc = loaded(db_url, JiraConnector, "jira-prod", tj.options(jira))
    index = load_mappings([])
    first = run_connector(settings, lc, engine, index)
    assert first.status == "succeeded", first.errors
    assert versions(engine, "CHG-1") == 1
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)

    # Nothing changed: a second run adds no evidence at all.
    again = run_connector(settings, lc, engine, index)
    assert again.counts["evidence_written"] == 0

    # The ticket is edited (title) and gains a comment-like change: one new version only.
    jira.issues["CHG-1"].summary = "Upgrade TLS to 1.3 on the edge"
    jira.issues["CHG-1"].noise(3, "2026-07-01T00:00:00")  # untracked fields
    second = run_connector(settings, lc, engine, index)
    assert second.status == "succeeded"
    assert second.counts["evidence_written"] == 1
    assert versions(engine, "CHG-1") == 2
    assert versions(engine, "CHG-2") == 1

    # Findings are mapped to Annex A and carry the evidence they were judged on.
    with engine.connect() as conn:
        fails = {(f["check_id"], f["resource_id"]): f for f in findings_at(conn, status="fail")}
    late = fails[("jira.change.approved_before_implemented", "CHG-2")]
    assert "A.8.32" in late["controls"]
    assert "A.5.3" in fails[("jira.change.approver_not_implementer", "CHG-3")]["controls"]

    # In-process query: as recorded between the runs, the old title; now, the new one.
    with engine.connect() as conn:
        then = population(conn, "change", parse_period(H1), at=between)
        now = population(conn, "change", parse_period(H1), at=datetime.now(UTC))
    assert [r["key"] for r in then.rows] == ["CHG-1", "CHG-2", "CHG-3"]  # CHG-4 not done
    assert then.rows[0]["title"] == "Upgrade TLS on the edge"
    assert now.rows[0]["title"] == "Upgrade TLS to 1.3 on the edge"
    assert then.rows[0]["evidence_hash"] != now.rows[0]["evidence_hash"]

    # The real CLI, as an auditor runs it.
    cfg = config_file(tmp_path, db_url)
    proc = population_cli(cfg, "change", H1, "--at", between.isoformat(), "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["key"] for r in rows] == ["CHG-1", "CHG-2", "CHG-3"]
    chg1, chg2, chg3 = rows
    assert chg1["title"] == "Upgrade TLS on the edge"
    assert chg1["approved_by"] == "Carol (acc-carol)"
    assert chg1["approved_at"] == "2026-01-05T10:00:00Z"
    assert chg1["implemented_at"] == "2026-01-06T09:00:00Z"
    assert chg1["checks_failed"] == "" and chg1["source"] == "jira-prod"
    assert chg2["checks_failed"] == "jira.change.approved_before_implemented"
    assert chg3["checks_failed"] == "jira.change.approver_not_implementer"
    assert "3 item(s)" in proc.stderr

    proc = population_cli(cfg, "incident", H1, "--at", "now", "--format", "json")
    incidents = {r["key"]: r for r in json.loads(proc.stdout)}
    assert incidents["INC-2"]["sla_met"] == "no" and incidents["INC-1"]["sla_met"] == "yes"
    assert incidents["INC-3"]["checks_failed"] == ["jira.incident.post_incident_review"]
    assert incidents["INC-1"]["severity"] == "High"

    # The period's own end (default instant) precedes every run: nothing was recorded then.
    proc = population_cli(cfg, "change", H1)
    assert proc.returncode == 0
    assert "no change evidence had been collected by 2026-06-30" in " ".join(proc.stderr.split())


def test_all_sources_in_one_population_and_dropped_items_stay_in_the_past(
    httpserver, monkeypatch, engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """Jira, ServiceNow and GitHub changes in one population; a ticket that leaves the
    source's query is closed by the next clean run but stays in earlier populations."""
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_JIRA_TOKEN", tj.TOKEN)
    monkeypatch.setenv("ANNEXA_TEST_SN_PASSWORD", tsn.PASSWORD)
    monkeypatch.setenv("ANNEXA_TEST_GH_PULLS_TOKEN", ghp.TOKEN)
    jira = tj.FakeJira(httpserver)
    tj.plant(jira)
    index = load_mappings([])
    s1, jira_lc = loaded(
        db_url, JiraConnector, "jira", tj.options(jira, processes=[tj.processes()[0]])
    )
    assert run_connector(s1, jira_lc, engine, index).status == "succeeded"

    from pytest_httpserver import HTTPServer

    with HTTPServer(host="127.0.0.1") as sn_server, HTTPServer(host="127.0.0.1") as gh_server:
        sn_server.no_handler_status_code = 418
        gh_server.no_handler_status_code = 418
        snow = tsn.FakeServiceNow(sn_server)
        tsn.plant(snow)
        sn_opts = ServiceNowOptions.model_validate(
            {
                "instance_url": snow.base,
                "username": tsn.USER,
                "password": {"env": "ANNEXA_TEST_SN_PASSWORD"},
                "processes": [{"kind": "change"}],
                "http": tsn.FAST_HTTP,
            }
        )
        s2, sn_lc = loaded(db_url, ServiceNowConnector, "snow", sn_opts)
        assert run_connector(s2, sn_lc, engine, index).status == "succeeded"
        gh = ghp.FakeGitHub(gh_server)
        ghp.plant(gh)
        gh_opts = GitHubPullsOptions.model_validate(
            {
                "api_url": gh.api_url,
                "token": {"env": "ANNEXA_TEST_GH_PULLS_TOKEN"},
                "processes": [{"kind": "change", "repos": ["acme/api"], "since": "2026-01-01"}],
                "http": ghp.FAST_HTTP,
            }
        )
        s3, gh_lc = loaded(db_url, GitHubPullsConnector, "github", gh_opts)
        assert run_connector(s3, gh_lc, engine, index).status == "succeeded"

    time.sleep(0.05)
    between = datetime.now(UTC)
    del jira.issues["CHG-3"]  # re-keyed / moved out of the JQL
    second = run_connector(s1, jira_lc, engine, index)
    assert second.counts["evidence_closed"] == 1

    with engine.connect() as conn:
        then = population(conn, "change", parse_period(H1), at=between)
        now = population(conn, "change", parse_period(H1), at=datetime.now(UTC))
        only_sn = population(conn, "change", parse_period("2026-Q1"), at=between, source="snow")
    keys = {(r["source"], r["key"]) for r in then.rows}
    assert ("jira", "CHG-3") in keys and ("jira", "CHG-3") not in {
        (r["source"], r["key"]) for r in now.rows
    }
    assert {s for s, _ in keys} == {"jira", "snow", "github"}
    assert ("github", "acme/api#3") in keys and ("snow", "CHG0000002") in keys
    gh3 = next(r for r in then.rows if r["key"] == "acme/api#3")
    assert gh3["checks_failed"] == ["github_pulls.change.approver_not_implementer"]
    assert gh3["implemented_by"] == ["alice", "bob"]
    assert {r["source"] for r in only_sn.rows} == {"snow"}
    # Sorted by implementation date.
    dates = [r["implemented_at"] for r in then.rows]
    assert dates == sorted(dates)


def test_unit_error_is_reported_with_the_population(
    jira: tj.FakeJira, engine: Engine, db_url: str
) -> None:
    tj.plant(jira)
    settings, lc = loaded(
        db_url, JiraConnector, "jira", tj.options(jira, processes=[tj.processes()[0]])
    )
    index = load_mappings([])
    assert run_connector(settings, lc, engine, index).status == "succeeded"
    jira.fault("/rest/api/3/search/jql", *[(503, "{}", {})] * 4)
    assert run_connector(settings, lc, engine, index).status == "failed"
    with engine.connect() as conn:
        result = population(conn, "change", parse_period(H1), at=datetime.now(UTC))
    # Nothing was closed by the failed run; the gap is named.
    assert [r["key"] for r in result.rows] == ["CHG-1", "CHG-2", "CHG-3"]
    assert any("could not be read" in w for w in result.warnings)


def test_period_parsing_and_sla_at_instant() -> None:
    assert parse_period("2026-Q2").start == date(2026, 4, 1)
    assert parse_period("2026-Q2").end == date(2026, 6, 30)
    assert parse_period("2026-H2").end == date(2026, 12, 31)
    assert parse_period("2026-02").end == date(2026, 2, 28)
    assert parse_period("2026").start == date(2026, 1, 1)
    assert parse_period(H1).end_instant.isoformat() == "2026-06-30T23:59:59.999999+00:00"
    for bad in ("2026-13", "Q1", "2026-06-30..2026-01-01", "yesterday"):
        with pytest.raises(ValueError):
            parse_period(bad)
    d = {"due_at": "2026-01-10T00:00:00Z", "resolved_at": None}
    assert sla_met("incident", d, datetime(2026, 1, 5, tzinfo=UTC)) == "pending"
    assert sla_met("incident", d, datetime(2026, 1, 11, tzinfo=UTC)) == "no"
    d["resolved_at"] = "2026-01-09T00:00:00Z"
    assert sla_met("incident", d, datetime(2026, 1, 11, tzinfo=UTC)) == "yes"
    # Resolved after the instant asked about: at that instant it was still open.
    assert sla_met("incident", d, datetime(2026, 1, 8, tzinfo=UTC)) == "pending"


def test_cli_usage_errors(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, f"sqlite:///{tmp_path / 'a.db'}")
    proc = annexa("population", "--config", str(cfg), "--process", "deploy", "--period", "2026")
    assert proc.returncode == 2 and "--process must be one of" in proc.stderr
    proc = annexa("population", "--config", str(cfg), "--process", "change", "--period", "H1")
    assert proc.returncode == 2 and "--period" in proc.stderr
    proc = annexa(
        "population", "--config", str(cfg), "--process", "change", "--period", "2026", "--by", "x"
    )
    assert proc.returncode == 2


def test_every_ticketing_check_is_mapped_to_annex_a() -> None:
    from core.checks import REGISTRY
    from mappings.clauses import builtin_clauses

    index = load_mappings([])
    mine = [s for s in REGISTRY if s.id.split(".")[0] in ("jira", "servicenow", "github_pulls")]
    assert len(mine) == 37  # 17 Jira, 17 ServiceNow, 3 GitHub pull requests
    clauses = builtin_clauses().values()
    for spec in mine:
        # Management-review checks evidence clause 9.3 (the clause catalog), not Annex A.
        judged = index.controls_for(spec.id) or [c.id for c in clauses if c.judges(spec.id)]
        assert judged, f"{spec.id} is not mapped"
    assert index.controls_for("jira.access_review.every_period") == ("A.5.18",)
    assert index.controls_for("servicenow.vulnerability.closed_within_sla") == ("A.8.8",)


def test_config_collect_and_population_end_to_end(
    jira: tj.FakeJira, db_url: str, tmp_path: Path
) -> None:
    """config.toml → entry point ``jira`` → ``annexa collect`` twice (a ticket edited in
    between) → ``annexa population``: all real subprocesses, as an operator runs them."""
    tj.plant(jira)
    cfg = tmp_path / "annexa.toml"
    write_config(
        cfg,
        db_url,
        connector_table("jira", "jira-e2e", {
            "url": jira.base, "email": tj.EMAIL, "token": secret_env("ANNEXA_TEST_JIRA_TOKEN"),
            "http": {"max_attempts": 2, "retry_min_wait": 0.0, "retry_max_wait": 0.01},
            "processes": [{
                "kind": "change", "jql": "project = CHG",
                "approved_states": ["Approved"], "implemented_states": ["Done"],
            }],
        }),
        json_logs=True,
    )
    first = annexa("collect", "--config", str(cfg), "--format", "json")
    assert first.returncode == 0, first.stderr
    [run] = json.loads(first.stdout)
    assert run["status"] == "succeeded" and run["new_evidence"] == 5  # 4 changes + summary
    time.sleep(0.05)
    between = datetime.now(UTC).isoformat()
    jira.issues["CHG-2"].summary = "Firewall rule change (retitled)"
    second = annexa("collect", "--config", str(cfg), "--format", "json")
    [run] = json.loads(second.stdout)
    assert run["new_evidence"] == 1
    controls = {
        c["control"]: c
        for c in json.loads(annexa("controls", "--config", str(cfg), "--format", "json").stdout)
    }
    assert controls["A.8.32"]["status"] == "fail" and controls["A.5.3"]["status"] == "fail"
    for at, title in (
        (between, "Firewall rule change"),
        ("now", "Firewall rule change (retitled)"),
    ):
        proc = population_cli(cfg, "change", "2026-Q1", "--at", at, "--format", "json")
        assert proc.returncode == 0, proc.stderr
        rows = {r["key"]: r for r in json.loads(proc.stdout)}
        assert rows["CHG-2"]["title"] == title
        assert rows["CHG-2"]["checks_failed"] == ["jira.change.approved_before_implemented"]
