"""Notifications reach real (fake) webhook and Jira servers once per status change,
and the daemon's endpoints answer over HTTP — an in-process daemon, both engines."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import Engine, func, select

from collector.config import Settings
from collector.daemon import Daemon
from mappings.loader import MappingIndex
from store.engine import make_engine
from store.migrate import upgrade
from store.schema import runs
from store.schema_daemon import control_states
from tests.daemon_fixtures import (
    JiraWriteFake,
    http_get,
    paced_settings,
    wait_for,
)
from tests.fakes import index

__all__ = ["index"]  # a fixture, imported for the tests below

JIRA_TOKEN = "jira-token-0123456789abcdef"


def _settings(db_url: str, tmp_path: Path, httpserver: HTTPServer, mfa_file: Path) -> Settings:
    return paced_settings(
        db_url,
        tmp_path / "spool",
        options={"records": 2, "mfa_file": str(mfa_file)},
        notifications={
            "webhooks": [{"url": httpserver.url_for("/hook")}],
            "jira": {
                "url": httpserver.url_for("/jira"),
                "project": "SEC",
                "user": "bot@example.com",
                "token": {"env": "ANNEXA_TEST_JIRA_TOKEN"},
            },
        },
    )


def _runs(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(runs).where(runs.c.status == "succeeded")
        ).scalar_one()


def _state(engine: Engine, control: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            select(control_states.c.status).where(control_states.c.control == control)
        ).scalar()


def test_fail_pass_fail_one_message_each_naming_the_change_and_the_jira_issue_follows(
    engine: Engine,
    db_url: str,
    index: MappingIndex,
    httpserver: HTTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANNEXA_TEST_JIRA_TOKEN", JIRA_TOKEN)
    httpserver.no_handler_status_code = 418
    # The first delivery attempt fails: it is retried with backoff, not lost or doubled.
    httpserver.expect_oneshot_request("/hook", method="POST").respond_with_data("busy", 503)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    jira = JiraWriteFake(httpserver, "bot@example.com", JIRA_TOKEN)
    mfa = tmp_path / "mfa"
    mfa.write_text("pass")
    settings = _settings(db_url, tmp_path, httpserver, mfa)
    daemon = Daemon(settings, index, engine, replica_id="replica-1")
    daemon.start()
    try:
        # Endpoints over real HTTP.
        base = f"http://127.0.0.1:{daemon.port}"
        assert http_get(base + "/healthz") == (200, "ok\n")
        code, body = http_get(base + "/readyz")
        assert code == 200 and json.loads(body)["scheduler"] == "running"
        assert http_get(base + "/nope")[0] == 404
        wait_for(lambda: _state(engine, "A.8.5") == "pass", 10, "a first passing run")
        n = _runs(engine)
        for status in ("fail", "pass", "fail"):
            mfa.write_text(status)
            wait_for(lambda s=status: _state(engine, "A.8.5") == s, 10, f"A.8.5 to {status}")
            wait_for(lambda n=n: _runs(engine) >= n + 2, 10, "more runs")
            n = _runs(engine)
            assert daemon.notifier.drain(10)
        metrics = http_get(base + "/metrics")[1]
        assert 'annexa_notifications_total{channel="webhook",outcome="sent"} 3.0' in metrics
        assert 'annexa_notifications_total{channel="jira",outcome="sent"} 3.0' in metrics
    finally:
        daemon.shutdown()
    # A restarted (or second) replica on the same database does not repeat anything.
    again = Daemon(settings, index, engine, replica_id="replica-2")
    again.start()
    try:
        wait_for(lambda: _runs(engine) >= n + 2, 10, "runs of the second replica")
        assert again.notifier.drain(10)
    finally:
        again.shutdown()

    hooks = [r for r, _ in httpserver.log if r.path == "/hook"]
    texts = [
        json.loads(r.data)["text"]
        for r, resp in httpserver.log
        if r.path == "/hook" and resp.status_code == 200
    ]
    assert len(hooks) == 4 and len(texts) == 3, texts  # one retried
    failing, passing, relapse = texts
    for text in (failing, relapse):
        assert "A.8.5" in text and "FAILING (was pass)" in text
        assert "alice (fake.user.mfa)" in text and "Severity: high." in text
        # What changed, field by field, and where to see it.
        assert "fake.user.mfa alice [high] fail: alice has no MFA — mfa: true → false" in text
        assert "See the evidence: annexa findings --control A.8.5" in text
    assert "passes again" in passing and "(was fail)" in passing
    assert "mfa: false → true" in passing
    run_ids = [re.search(r"Run: ([0-9a-f-]{36})\.", t).group(1) for t in texts]
    with engine.connect() as conn:
        known = set(conn.execute(select(runs.c.id)).scalars())
    assert set(run_ids) <= known and len(set(run_ids)) == 3

    # Jira: opened at the failure, commented and resolved at the pass, reopened and
    # commented at the relapse; nothing else, and never the token in a body.
    assert list(jira.issues) == ["SEC-1"]
    issue = jira.issues["SEC-1"]
    assert issue["status"] == "To Do"
    fields = issue["fields"]
    assert fields["project"] == {"key": "SEC"} and fields["issuetype"] == {"name": "Task"}
    assert fields["summary"].startswith("[Annexa] A.8.5") and "fail (was pass)" in fields["summary"]
    assert "mfa: true → false" in fields["description"]
    assert "A.8.5" in fields["labels"]
    assert len(issue["comments"]) == 2
    assert issue["comments"][0].startswith("The control passes again; resolving.")
    assert issue["comments"][1].startswith("Reopened by Annexa: the control relapsed.")
    assert "mfa: true → false" in issue["comments"][1]
    assert [c for c in jira.calls if c[0] == "POST"] == [
        ("POST", "/rest/api/2/issue"),
        ("POST", "/rest/api/2/issue/SEC-1/comment"),
        ("POST", "/rest/api/2/issue/SEC-1/transitions"),
        ("POST", "/rest/api/2/issue/SEC-1/transitions"),
        ("POST", "/rest/api/2/issue/SEC-1/comment"),
    ]
    assert JIRA_TOKEN not in json.dumps(jira.issues)


def test_unreachable_webhook_never_blocks_collection(
    index: MappingIndex,
    httpserver: HTTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'annexa.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    monkeypatch.setenv("ANNEXA_TEST_JIRA_TOKEN", JIRA_TOKEN)
    httpserver.expect_request("/hook").respond_with_data("down", 503)
    httpserver.expect_request("/jira/rest/api/2/issue").respond_with_data("down", 503)
    mfa = tmp_path / "mfa"
    mfa.write_text("pass")
    daemon = Daemon(_settings(db_url, tmp_path, httpserver, mfa), index, engine)
    daemon.start()
    try:
        wait_for(lambda: _state(engine, "A.8.5") == "pass", 10, "a first run")
        mfa.write_text("fail")
        wait_for(lambda: _state(engine, "A.8.5") == "fail", 10, "A.8.5 to fail")
        n = _runs(engine)
        t0 = time.monotonic()
        wait_for(lambda: _runs(engine) >= n + 2, 5, "runs while deliveries are retried")
        assert time.monotonic() - t0 < 4
    finally:
        daemon.shutdown()
