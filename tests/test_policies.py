"""The policies connector on a real git repository of Markdown policies in a temp dir,
judged by the real run engine (tests/engine_run.py → collector.runner.drive).

Planted: a policy past its review date, one without an approver, one approved by its
own owner, one with malformed front matter, and an employee who acknowledged an old
version; everything else passes. Dates are relative to the test's own ``now`` with
margins of weeks, so no verdict depends on the hour or the date of the run.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.policies.frontmatter import add_interval, interval_days, parse
from tests.engine_run import EngineRun, run_engine

pytestmark = [
    pytest.mark.clock,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI"),
]


def day(now: datetime, days_ago: int) -> str:
    return (now - timedelta(days=days_ago)).date().isoformat()


def policy(title: str, **fields: Any) -> str:
    lines = ["---", f"title: {title}"]
    for k, v in fields.items():
        lines.append(f"{k}: {v}")
    return "\n".join([*lines, "---", "", f"# {title}", "", "Text of the policy.", ""])


def git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Policy Bot",
        "GIT_AUTHOR_EMAIL": "bot@acme.example",
        "GIT_COMMITTER_NAME": "Policy Bot",
        "GIT_COMMITTER_EMAIL": "bot@acme.example",
    }
    subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)


def ack(email: str, policy: str, version: str, at: str) -> dict[str, str]:
    """One row of the acknowledgements CSV."""
    return {"email": email, "policy": policy, "version": version, "acknowledged_at": at}


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, Any]:
    now = datetime.now(UTC)
    root = tmp_path / "policies"
    (root / "procedures").mkdir(parents=True)
    files = {
        "isp.md": policy(
            "Information Security Policy",
            owner="ciso@acme.example",
            approver="ceo@acme.example",
            approved_on=day(now, 100),
            review_interval="12 months",
            version='"3.0"',
            controls="[A.5.1]",
        ),
        "access-control.md": policy(
            "Access Control Policy",
            owner="ciso@acme.example",
            approver="cto@acme.example",
            approved_on=day(now, 400),
            review_interval="P1Y",
            version='"2"',
            controls="[A.5.15, A.5.18]",
        ),
        "procedures/backup.md": policy(
            "Backup Procedure",
            owner="ops@acme.example",
            approved_on=day(now, 20),
            review_interval="6 months",
            version='"1"',
            controls="[A.8.13, A.5.37]",
            acknowledgement_required="false",
        ),
        "acceptable-use.md": policy(
            "Acceptable Use Policy",
            owner="ciso@acme.example",
            approver="CISO@acme.example",
            approved_on=day(now, 50),
            review_interval="1 year",
            version='"1"',
            controls="[A.5.10]",
        ),
        "broken.md": "---\ntitle: Cryptography Policy\nowner: [ciso@acme.example\n"
        "approver: ceo@acme.example\n---\n\n# Cryptography\n",
        "README.md": "# Our policies\n\nNo front matter here, and that is fine.\n",
    }
    for rel, text in files.items():
        (root / rel).write_text(text, encoding="utf-8")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "policies")
    acks = write_csv(
        tmp_path / "acks.csv",
        [
            ack("alice@acme.example", "isp", "3.0", day(now, 90)),
            ack("alice@acme.example", "Access Control Policy", "2", day(now, 300)),
            ack("Alice@Acme.example", "acceptable-use.md", "1", day(now, 40)),
            ack("bob@acme.example", "isp", "2.0", day(now, 200)),
            ack("bob@acme.example", "access-control", "2", day(now, 300)),
            ack("bob@acme.example", "acceptable-use", "1", day(now, 30)),
        ],
    )
    roster = write_csv(
        tmp_path / "roster.csv",
        [
            {"email": "alice@acme.example", "status": "Active", "start_date": day(now, 900)},
            {"email": "bob@acme.example", "status": "active", "start_date": day(now, 400)},
            {"email": "carol@acme.example", "status": "active", "start_date": day(now, 5)},
            {"email": "dave@acme.example", "status": "terminated", "start_date": day(now, 800)},
        ],
    )
    return {"root": root, "acks": acks, "roster": roster}


def options(repo: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "path": str(repo["root"]),
        "acknowledgements": {"csv": str(repo["acks"]), "version_column": "version"},
        "employees": {
            "csv": str(repo["roster"]),
            "status_column": "status",
            "start_date_column": "start_date",
        },
        **extra,
    }


def run(repo: dict[str, Any], **extra: Any) -> EngineRun:
    return run_engine("policies", options(repo, **extra), name="policies")


def test_planted_policies_and_people_fail_exactly_their_checks(repo):
    result = run(repo)
    doc = {(c, r) for c, r in result.ids("fail") if c.startswith("policies.document.")}
    assert doc == {
        ("policies.document.approved", "procedures/backup.md"),
        ("policies.document.approved", "acceptable-use.md"),
        ("policies.document.reviewed", "access-control.md"),
    }
    ack = {(c, r) for c, r in result.ids("fail") if c.startswith("policies.acknowledgement.")}
    assert ack == {("policies.acknowledgement.complete", "bob@acme.example")}
    bob = result.one("policies.acknowledgement.complete", "bob@acme.example").message
    assert "isp.md v3.0 (last acknowledged v2.0" in bob and "access-control" not in bob
    assert result.one("policies.acknowledgement.complete", "alice@acme.example").status == "pass"
    carol = result.one("policies.acknowledgement.complete", "carol@acme.example")
    assert carol.status == "pass" and "due within 30 days" in carol.message
    assert not [f for f in result.findings if f.resource_id == "dave@acme.example"]
    assert result.one("policies.document.approved", "isp.md").status == "pass"
    assert result.one("policies.document.reviewed", "isp.md").status == "pass"
    assert (
        "has no approver"
        in result.one("policies.document.approved", "procedures/backup.md").message
    )
    assert (
        "approved by its own owner"
        in result.one("policies.document.approved", "acceptable-use.md").message
    )
    # Controls resolved from the shipped mapping.
    assert set(result.one("policies.document.reviewed", "isp.md").controls) == {"A.5.1", "A.5.37"}
    assert set(result.one("policies.acknowledgement.complete", "bob@acme.example").controls) == {
        "A.5.1",
        "A.6.2",
    }
    # The front matter is the evidence, with the commit that last changed the file.
    isp = result.payload("policies.document.policy", "isp.md")
    assert isp["approver"] == "ceo@acme.example" and isp["controls"] == ["A.5.1"]
    assert isp["review_days"] == 365 and len(isp["last_commit"]["sha"]) == 40
    assert not [e for e in result.evidence if e.resource_id == "README.md"]


def test_malformed_front_matter_is_an_error_naming_the_file_and_loses_nothing_else(repo):
    result = run(repo)
    broken = [f for f in result.findings if f.resource_id == "broken.md"]
    assert {f.status for f in broken} == {"error"} and len(broken) == 2
    for f in broken:
        assert "broken.md: front matter is not valid YAML at line" in f.message
    # Every other policy is judged; the document unit was read.
    judged = {f.resource_id for f in result.findings if f.check_id.startswith("policies.document")}
    assert judged == {
        "isp.md",
        "access-control.md",
        "procedures/backup.md",
        "acceptable-use.md",
        "broken.md",
    }
    units = {c.service: c for c in result.coverage if c.service != "*"}
    assert units["document"].ok
    # Whether broken.md needs acknowledging is unknown: that unit says so (naming it),
    # and the people are still judged on the policies that could be read.
    assert not units["acknowledgement"].ok and "broken.md" in units["acknowledgement"].error
    assert ("policies.acknowledgement.complete", "bob@acme.example") in result.ids("fail")


def test_without_the_broken_file_every_unit_is_clean(repo):
    (repo["root"] / "broken.md").unlink()
    result = run(repo)
    assert result.status == "succeeded"
    assert result.ids("error") == set()


def test_missing_directory_and_unreadable_csv_are_unit_errors(repo, tmp_path):
    gone = run(repo, path=str(tmp_path / "nowhere"))
    assert gone.status == "failed"
    err = {c.service: c.error for c in gone.coverage if not c.ok}
    assert "does not exist" in err["document"]
    assert {f.status for f in gone.findings} == {"error"}
    bad = options(repo)
    bad["employees"]["email_column"] = "mail"
    result = run_engine("policies", bad, name="policies")
    err = {c.service: c.error for c in result.coverage if not c.ok}
    assert "column(s) mail not in the header" in err["acknowledgement"]
    assert ("policies.document.reviewed", "access-control.md") in result.ids("fail")


def test_approver_may_equal_owner_when_the_parameter_allows_it(repo):
    result = run_engine(
        "policies",
        options(repo),
        name="policies",
        checks={"policies.document.approved": {"approver_differs_from_owner": False}},
    )
    assert result.one("policies.document.approved", "acceptable-use.md").status == "pass"


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("12 months", 365),
        ("1 year", 365),
        ("P1Y", 365),
        ("P6M", 183),
        ("90 days", 90),
        ("P2W", 14),
        ("2 years", 730),
    ],
)
def test_review_intervals(text, days):
    assert interval_days(text) == days


@pytest.mark.parametrize(
    ("start", "text", "due"),
    [
        ("2024-01-01", "12 months", "2025-01-01"),
        ("2024-01-01", "P1Y", "2025-01-01"),
        ("2025-01-31", "1 month", "2025-02-28"),
        ("2024-02-29", "1 year", "2025-02-28"),
        ("2025-11-15", "P1Y2M10D", "2027-01-25"),
        ("2025-12-20", "2 weeks", "2026-01-03"),
    ],
)
def test_review_due_dates_follow_the_calendar(start, text, due):
    from datetime import date

    assert add_interval(date.fromisoformat(start), text).isoformat() == due


def test_front_matter_errors_name_the_file_and_the_field():
    p = parse("x/y.md", "no front matter\n")
    assert p["_errors"]["approver"] == (
        "x/y.md: no YAML front matter (a '---' block at the top of the file)"
    )
    p = parse("z.md", "---\ntitle: T\nreview_interval: fortnightly\napprover: a\n---\n")
    assert set(p["_errors"]) == {"review_interval"} and "z.md: review_interval" in str(p)
    assert p["approver"] == "a"
    p = parse("c.md", "---\ncontrols: [A.5.1, B.1]\n---\n")
    assert "not Annex A control ids: B.1" in p["_errors"]["controls"]
    p = parse("o.md", "---\ntitle: open\n")
    assert "never closed" in p["_errors"]["title"]


# --------------------------------------------------------------------------- documented part


def _store_run(engine: Any, repo: dict[str, Any]) -> None:
    from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
    from collector.runner import run_connector
    from connectors.policies import PoliciesConnector, PoliciesOptions

    cfg = ConnectorConfig(type="policies", name="policies", options=options(repo))
    settings = Settings(AnnexaConfig(database={"url": "sqlite://"}, connectors=[cfg]), None)
    lc = LoadedConnector(cfg, PoliciesConnector, PoliciesOptions.model_validate(cfg.options))
    settings.connectors = [lc]
    run_connector(settings, lc, engine, _index())


def _index() -> Any:
    from mappings.loader import load_mappings

    return load_mappings()


def test_an_approved_in_date_policy_is_the_recorded_document_of_its_controls(engine, repo):
    """isp.md (approved 100 days ago, yearly review) lists A.5.1: it is A.5.1's valid
    document. access-control.md lists A.5.15/A.5.18 but is past its review: an expired
    document. acceptable-use.md lists A.5.10 but is approved by its own owner: no document.
    backup.md lists A.8.13/A.5.37 but has no approver: no document."""
    from store.status import control_statuses

    _store_run(engine, repo)
    st = {c.id: c for c in control_statuses(engine, _index())}
    a51 = st["A.5.1"]
    assert a51.document == "valid", a51
    [doc] = [d for d in a51.manual_evidence if d["state"] == "valid"]
    assert doc["filename"] == "isp.md" and "approved by ceo@acme.example" in doc["note"]
    # Its checks fail (access-control.md is overdue, two approvals fail): still fail.
    assert a51.status == "fail"
    assert st["A.5.15"].document == "expired" and st["A.5.18"].document == "expired"
    assert st["A.5.10"].document == "missing"
    assert st["A.8.13"].document == "missing" and st["A.5.37"].document == "missing"
    # Nothing that no approved policy lists gets a document from the repository.
    assert st["A.8.24"].document == "missing"


def test_a_valid_policy_makes_a_manual_control_pass(engine, repo):
    (repo["root"] / "broken.md").unlink()
    text = (repo["root"] / "acceptable-use.md").read_text(encoding="utf-8")
    (repo["root"] / "acceptable-use.md").write_text(
        text.replace("approver: CISO@acme.example", "approver: ceo@acme.example"),
        encoding="utf-8",
    )
    _store_run(engine, repo)
    from store.status import control_statuses

    st = {c.id: c for c in control_statuses(engine, _index())}
    # A.5.10 (acceptable use) has no check: its recorded document is its evidence.
    assert st["A.5.10"].manual and st["A.5.10"].status == "pass"
    assert st["A.5.10"].document == "valid"


def test_timelines_replay_policy_documents_as_control_statuses_does(engine, repo):
    """A manual control documented only by a policy: undocumented before the run, pass
    after it, and the same answer from the timeline replay as from control_statuses."""
    from store.status import control_statuses
    from store.timelines import control_timelines

    (repo["root"] / "broken.md").unlink()
    text = (repo["root"] / "acceptable-use.md").read_text(encoding="utf-8")
    (repo["root"] / "acceptable-use.md").write_text(
        text.replace("approver: CISO@acme.example", "approver: ceo@acme.example"),
        encoding="utf-8",
    )
    before = datetime.now(UTC) - timedelta(seconds=1)
    _store_run(engine, repo)
    after = datetime.now(UTC) + timedelta(seconds=1)
    index = _index()
    timelines = control_timelines(engine, index, before, after, controls=["A.5.10", "A.5.1"])
    now = {c.id: c.status for c in control_statuses(engine, index, after)}
    for cid in ("A.5.10", "A.5.1"):
        assert timelines[cid].status_at(after) == now[cid], cid
    assert timelines["A.5.10"].status_at(before) == "manual"
    assert timelines["A.5.10"].status_at(after) == "pass"


def test_a_file_that_is_not_utf8_is_an_error_naming_it(repo):
    (repo["root"] / "broken.md").unlink()
    (repo["root"] / "latin1.md").write_bytes(
        "---\ntitle: Politique d'accès\n---\n".encode("latin-1")
    )
    result = run(repo)
    bad = [f for f in result.findings if f.resource_id == "latin1.md"]
    assert {f.status for f in bad} == {"error"} and len(bad) == 2
    assert all("latin1.md: cannot be read as UTF-8 text" in f.message for f in bad)
    assert result.one("policies.document.approved", "isp.md").status == "pass"


# --------------------------------------------------------------------------- from GitHub


class FakeGitHubRepo:
    """A repository as GitHub's REST API serves it (docs.github.com/rest: "Get a tree"
    ``{sha, url, tree: [{path, mode, type, sha, size, url}], truncated}``, "Get a blob"
    ``{content, encoding: "base64", url, sha, size}``, "List commits"
    ``[{sha, commit: {author, committer: {name, email, date}, message}}]``); Bearer auth
    (401 ``{"message": "Bad credentials"}``) and 429 with ``Retry-After`` on demand."""

    TOKEN = "github_pat_for_tests_0123456789"

    def __init__(self, server: HTTPServer, files: dict[str, bytes]) -> None:
        self.files = {rel: (hashlib.sha1(data).hexdigest(), data) for rel, data in files.items()}
        self.throttle = 0
        self.requests: list[str] = []
        self.base = server.url_for("/").rstrip("/")
        server.expect_request(re.compile(r"^/repos/.*")).respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
            return Response(
                json.dumps(body),
                status=status,
                headers=headers or {},
                content_type="application/json",
            )

        self.requests.append(request.path)
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return reply(
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
                401,
            )
        if self.throttle:
            self.throttle -= 1
            return reply({"message": "API rate limit exceeded"}, 429, {"Retry-After": "1"})
        if re.fullmatch(r"/repos/acme/policies/git/trees/main", request.path):
            tree = [
                {
                    "path": "procedures",
                    "mode": "040000",
                    "type": "tree",
                    "sha": "d" * 40,
                    "url": "https://api.github.com/x",
                }
            ]
            tree += [
                {
                    "path": rel,
                    "mode": "100644",
                    "type": "blob",
                    "sha": sha,
                    "size": len(data),
                    "url": f"https://api.github.com/x/{sha}",
                }
                for rel, (sha, data) in sorted(self.files.items())
            ]
            return reply(
                {
                    "sha": "e" * 40,
                    "url": "https://api.github.com/x",
                    "tree": tree,
                    "truncated": False,
                }
            )
        if m := re.fullmatch(r"/repos/acme/policies/git/blobs/([0-9a-f]{40})", request.path):
            for sha, data in self.files.values():
                if sha == m[1]:
                    return reply(
                        {
                            "sha": sha,
                            "node_id": "B_1",
                            "size": len(data),
                            "url": "https://api.github.com/x",
                            "content": base64.encodebytes(data).decode(),
                            "encoding": "base64",
                        }
                    )
            return reply({"message": "Not Found"}, 404)
        if request.path == "/repos/acme/policies/commits":
            return reply(
                [
                    {
                        "sha": "c" * 40,
                        "node_id": "C_1",
                        "commit": {
                            "author": {
                                "name": "Policy Bot",
                                "email": "bot@acme.example",
                                "date": "2026-01-02T03:04:05Z",
                            },
                            "committer": {
                                "name": "Policy Bot",
                                "email": "bot@acme.example",
                                "date": "2026-01-02T03:04:05Z",
                            },
                            "message": f"approve {request.args['path']}",
                        },
                    }
                ]
            )
        return reply({"message": "Not Found"}, 404)


@pytest.fixture
def github_repo(
    httpserver: HTTPServer, repo: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> FakeGitHubRepo:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_POLICIES_GH", FakeGitHubRepo.TOKEN)
    root: Path = repo["root"]
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.parts
    }
    return FakeGitHubRepo(httpserver, files)


def github_options(fake: FakeGitHubRepo) -> dict[str, Any]:
    return {
        "github": {
            "repository": "acme/policies",
            "api_url": fake.base,
            "token": {"env": "ANNEXA_TEST_POLICIES_GH"},
            "http": {
                "max_attempts": 3,
                "retry_min_wait": 0.0,
                "retry_max_wait": 0.01,
                "max_retry_after": 5,
            },
        }
    }


def test_policies_read_from_github_fail_exactly_like_the_clone(github_repo):
    github_repo.throttle = 1  # the first call is answered 429 + Retry-After, then served
    result = run_engine("policies", github_options(github_repo), name="policies-gh")
    assert {(c, r) for c, r in result.ids("fail")} == {
        ("policies.document.approved", "procedures/backup.md"),
        ("policies.document.approved", "acceptable-use.md"),
        ("policies.document.reviewed", "access-control.md"),
    }
    assert {f.resource_id for f in result.findings if f.status == "error"} == {"broken.md"}
    isp = result.payload("policies.document.policy", "isp.md")
    assert isp["last_commit"] == {"sha": "c" * 40, "committed_at": "2026-01-02T03:04:05Z"}
    assert result.status == "succeeded"
    assert github_repo.requests.count("/repos/acme/policies/git/trees/main") == 2


def test_github_bad_credentials_make_the_document_unit_an_error(github_repo, monkeypatch):
    monkeypatch.setenv("ANNEXA_TEST_POLICIES_GH", "wrong")
    result = run_engine("policies", github_options(github_repo), name="policies-gh")
    bad = {c.service: c.error for c in result.coverage if not c.ok}
    assert "401" in bad["document"] and "Bad credentials" in bad["document"]
    assert result.ids("pass") == set() and result.ids("fail") == set()


def test_exactly_one_source_is_required(repo):
    from pydantic import ValidationError

    from connectors.policies import PoliciesOptions

    with pytest.raises(ValidationError, match="exactly one of path"):
        PoliciesOptions.model_validate({})
    with pytest.raises(ValidationError, match="exactly one of path"):
        PoliciesOptions.model_validate(
            {"path": "/x", "github": {"repository": "acme/policies", "token": {"env": "X"}}}
        )


def test_the_hr_connectors_csv_export_serves_as_the_roster(repo, tmp_path):
    """Columns of connectors/hr/csvsource.py: a leaver (termination date passed) is not
    asked to acknowledge; someone leaving next month still is."""
    now = datetime.now(UTC)
    hr = write_csv(
        tmp_path / "hr.csv",
        [
            {
                "employee_id": "1",
                "work_email": "alice@acme.example",
                "name": "Alice",
                "employment_status": "Active",
                "hire_date": day(now, 900),
                "termination_date": "",
            },
            {
                "employee_id": "2",
                "work_email": "bob@acme.example",
                "name": "Bob",
                "employment_status": "Active",
                "hire_date": day(now, 400),
                "termination_date": day(now, -30),
            },
            {
                "employee_id": "3",
                "work_email": "erin@acme.example",
                "name": "Erin",
                "employment_status": "Terminated",
                "hire_date": day(now, 700),
                "termination_date": day(now, 20),
            },
        ],
    )
    opts = options(repo)
    opts["employees"] = {
        "csv": str(hr),
        "email_column": "work_email",
        "start_date_column": "hire_date",
        "termination_date_column": "termination_date",
    }
    result = run_engine("policies", opts, name="policies")
    people = {
        e.resource_id
        for e in result.evidence
        if e.resource_type == "policies.acknowledgement.person"
    }
    assert people == {"alice@acme.example", "bob@acme.example"}
    assert ("policies.acknowledgement.complete", "bob@acme.example") in result.ids("fail")


def test_the_approved_versions_by_key_range_are_those_of_a_scan_by_check(engine, repo):
    """Timelines read the approved-policy history by key range of the (source, key)
    index: the same rows, in the same order, as selecting the check over the history."""
    from sqlalchemy import select

    from store.policy_documents import APPROVED_CHECK, _approved_versions
    from store.schema import findings, sealed

    _store_run(engine, repo)
    (repo["root"] / "broken.md").unlink()
    isp = repo["root"] / "isp.md"
    isp.write_text(isp.read_text(encoding="utf-8") + "\nA new paragraph.\n", encoding="utf-8")
    _store_run(engine, repo)
    f = findings.c
    scan = (
        select(f.observed_at, f.source, f.resource_id, f.status, f.evidence_hash)
        .where(f.check_id == APPROVED_CHECK, sealed(findings))
        .order_by(f.observed_at, f.id)
    )
    with engine.connect() as conn:
        expected = [tuple(r) for r in conn.execute(scan)]
        got = _approved_versions(conn)
    assert len(expected) > len({r[2] for r in expected}) > 1  # several files, re-judged
    assert got == expected
