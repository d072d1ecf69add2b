"""The GitHub pull-requests connector against a fake GitHub REST API (pytest-httpserver).

The fake serves the real shapes: repositories with ``default_branch``, ``pulls`` lists
(``state=closed&base=…&sort=updated&direction=desc``, ``Link`` pages of 2), pull request
details with ``merged_by``, reviews (``APPROVED``/``CHANGES_REQUESTED``/``COMMENTED``/
``DISMISSED`` with ``submitted_at``), ``check-runs`` (``{"total_count", "check_runs"}``),
the combined ``status``, ruleset rules for a branch, and classic protection's
``required_status_checks`` (404 when unprotected, 403 without admin rights).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.base import CollectContext
from connectors.checks import evaluate
from connectors.github_pulls import GitHubPullsConnector, GitHubPullsOptions
from connectors.http import HttpOptions
from connectors.records import Coverage, Evidence, Finding, Record, service_of

pytestmark = pytest.mark.clock

TOKEN = "ghp_PullsTestToken0123456789abcdefXYZ01"


def login(name: str, uid: int = 1) -> dict[str, Any]:
    return {
        "login": name,
        "id": uid,
        "type": "User",
        "site_admin": False,
        "avatar_url": f"https://avatars.example/{name}",
    }


@dataclass
class FakePR:
    number: int
    author: str
    merged_at: str | None
    merged_by: str | None = None
    reviews: list[tuple[str, str, str]] = field(default_factory=list)  # (who, state, at)
    runs: list[tuple[str, str]] = field(default_factory=lambda: [("ci", "success")])
    statuses: list[tuple[str, str]] = field(default_factory=list)
    title: str = ""
    updated_at: str = ""
    created_at: str = "2026-01-01T09:00:00Z"

    @property
    def head(self) -> str:
        return f"{self.number:040x}"

    def listed(self, repo: str, base: str) -> dict[str, Any]:
        return {
            "url": f"https://api.github.com/repos/{repo}/pulls/{self.number}",
            "html_url": f"https://github.com/{repo}/pull/{self.number}",
            "number": self.number,
            "state": "closed",
            "title": self.title or f"PR {self.number}",
            "user": login(self.author),
            "labels": [{"name": "change", "color": "fff"}],
            "created_at": self.created_at,
            "updated_at": self.updated_at or (self.merged_at or self.created_at),
            "closed_at": self.merged_at or self.created_at,
            "merged_at": self.merged_at,
            "merge_commit_sha": f"{self.number + 1000:040x}" if self.merged_at else None,
            "head": {"ref": f"feature-{self.number}", "sha": self.head},
            "base": {"ref": base, "sha": "b" * 40},
            "draft": False,
            "comments": 7,  # volatile: must not reach the evidence
        }


class FakeGitHub:
    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.repos: dict[str, dict[str, Any]] = {}
        self.pulls: dict[str, list[FakePR]] = defaultdict(list)
        self.rules: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.protection: dict[str, Any] = {}
        self.faults: dict[str, list[tuple[int, str, dict[str, str]]]] = defaultdict(list)
        self.requests: list[str] = []
        self.page_cap = 2
        server.expect_request(re.compile(r"^/.*")).respond_with_handler(self.handle)

    @property
    def api_url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def repo(self, full: str, branch: str = "main") -> None:
        self.repos[full] = {
            "id": len(self.repos) + 1,
            "full_name": full,
            "name": full.split("/")[1],
            "default_branch": branch,
            "pushed_at": "2026-11-01T00:00:00Z",
        }

    def fault(self, path: str, *answers: tuple[int, str, dict[str, str]]) -> None:
        self.faults[path].extend(answers)

    def _json(self, body: Any, status: int = 200, link: str | None = None) -> Response:
        headers = {"X-RateLimit-Remaining": "4999", "X-RateLimit-Reset": "9999999999"}
        if link:
            headers["Link"] = link
        return Response(
            json.dumps(body), status=status, headers=headers, content_type="application/json"
        )

    def _page(self, request: Request, items: list[Any], wrap: str | None = None) -> Response:
        size = min(int(request.args.get("per_page", 30)), self.page_cap)
        page = int(request.args.get("page", 1))
        chunk = items[(page - 1) * size : page * size]
        link = None
        if page * size < len(items):
            args = {**request.args.to_dict(), "page": page + 1}
            link = f'<{self.server.url_for(request.path)}?{urlencode(args)}>; rel="next"'
        body: Any = {"total_count": len(items), wrap: chunk} if wrap else chunk
        return self._json(body, link=link)

    def handle(self, request: Request) -> Response:
        path = request.path
        self.requests.append(path)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._json({"message": "Bad credentials"}, 401)
        if self.faults.get(path):
            status, body, headers = self.faults[path].pop(0)
            return Response(body, status=status, headers=headers, content_type="application/json")
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
        if not m or m[1] not in self.repos:
            return self._json({"message": "Not Found"}, 404)
        repo, rest = m[1], m[2] or ""
        info = self.repos[repo]
        prs = {p.number: p for p in self.pulls[repo]}
        if rest == "":
            return self._json(info)
        if rest == f"/rules/branches/{info['default_branch']}":
            return self._page(request, self.rules[repo])
        if rest == f"/branches/{info['default_branch']}/protection/required_status_checks":
            prot = self.protection.get(repo)
            if prot == "forbidden":
                return self._json({"message": "Must have admin rights to Repository."}, 403)
            if prot is None:
                return self._json({"message": "Branch not protected"}, 404)
            return self._json(
                {
                    "strict": True,
                    "contexts": prot,
                    "checks": [{"context": c, "app_id": None} for c in prot],
                }
            )
        if rest == "/pulls":
            assert request.args.get("state") == "closed"
            assert request.args.get("base") == info["default_branch"]
            assert request.args.get("sort") == "updated"
            ordered = sorted(
                self.pulls[repo], key=lambda p: p.listed(repo, "")["updated_at"], reverse=True
            )
            return self._page(request, [p.listed(repo, info["default_branch"]) for p in ordered])
        if mm := re.fullmatch(r"/pulls/(\d+)", rest):
            pr = prs[int(mm[1])]
            body = pr.listed(repo, info["default_branch"])
            body.update(
                {
                    "merged": bool(pr.merged_at),
                    "merged_by": login(pr.merged_by) if pr.merged_by else None,
                    "commits": 3,
                    "additions": 10,
                    "deletions": 2,
                    "mergeable": None,
                }
            )
            return self._json(body)
        if mm := re.fullmatch(r"/pulls/(\d+)/reviews", rest):
            pr = prs[int(mm[1])]
            reviews = [
                {
                    "id": 500 + i,
                    "user": login(who),
                    "body": "",
                    "state": state,
                    "submitted_at": at,
                    "commit_id": pr.head,
                    "author_association": "MEMBER",
                }
                for i, (who, state, at) in enumerate(pr.reviews)
            ]
            return self._page(request, reviews)
        if mm := re.fullmatch(r"/commits/([0-9a-f]{40})/check-runs", rest):
            pr = next(p for p in self.pulls[repo] if p.head == mm[1])
            runs = [
                {
                    "id": 900 + i,
                    "name": name,
                    "head_sha": pr.head,
                    "status": "completed",
                    "conclusion": concl,
                    "started_at": "2026-01-01T00:00:00Z",
                    "completed_at": "2026-01-01T00:05:00Z",
                    "app": {"slug": "github-actions"},
                }
                for i, (name, concl) in enumerate(pr.runs)
            ]
            return self._page(request, runs, wrap="check_runs")
        if mm := re.fullmatch(r"/commits/([0-9a-f]{40})/status", rest):
            pr = next(p for p in self.pulls[repo] if p.head == mm[1])
            statuses = [
                {
                    "context": c,
                    "state": s,
                    "description": "",
                    "target_url": None,
                    "updated_at": "2026-11-27T00:00:00Z",
                }
                for c, s in pr.statuses
            ]
            state = "success" if all(s == "success" for _, s in pr.statuses) else "failure"
            return self._json(
                {
                    "state": state if statuses else "pending",
                    "sha": pr.head,
                    "total_count": len(statuses),
                    "statuses": statuses,
                }
            )
        return self._json({"message": "Not Found (fake)"}, 418)


def plant(gh: FakeGitHub) -> dict[str, set[str]]:
    gh.repo("acme/api")
    gh.rules["acme/api"] = [
        {
            "type": "pull_request",
            "ruleset_id": 7,
            "parameters": {"required_approving_review_count": 1},
        },
        {
            "type": "required_status_checks",
            "ruleset_id": 7,
            "ruleset_source_type": "Repository",
            "parameters": {
                "required_status_checks": [{"context": "ci", "integration_id": 15368}],
                "strict_required_status_checks_policy": False,
            },
        },
    ]
    add = gh.pulls["acme/api"].append
    add(
        FakePR(
            1,
            "alice",
            "2026-01-10T12:00:00Z",
            "alice",
            reviews=[
                ("bob", "COMMENTED", "2026-01-10T10:00:00Z"),
                ("bob", "APPROVED", "2026-01-10T11:00:00Z"),
            ],
        )
    )
    add(FakePR(2, "alice", "2026-01-11T12:00:00Z", "alice"))  # merged without review
    add(
        FakePR(
            3,
            "alice",
            "2026-01-12T12:00:00Z",
            "bob",  # merged by its own approver
            reviews=[("bob", "APPROVED", "2026-01-12T11:00:00Z")],
        )
    )
    add(
        FakePR(
            4,
            "carol",
            "2026-01-13T12:00:00Z",
            "carol",
            reviews=[("dave", "APPROVED", "2026-01-13T11:00:00Z")],
            runs=[("ci", "failure"), ("lint", "success")],
        )
    )  # required check failed
    add(
        FakePR(
            5, "carol", None, created_at="2026-01-14T09:00:00Z", updated_at="2026-01-14T10:00:00Z"
        )
    )  # closed, not merged
    add(
        FakePR(
            6,
            "erin",
            "2026-01-15T12:00:00Z",
            "erin",
            reviews=[
                ("frank", "APPROVED", "2026-01-15T09:00:00Z"),
                ("frank", "CHANGES_REQUESTED", "2026-01-15T10:00:00Z"),
            ],
        )
    )
    add(
        FakePR(7, "erin", "2025-06-01T12:00:00Z", "erin", updated_at="2025-06-02T00:00:00Z")
    )  # before `since`: not even fetched
    gh.repo("acme/web", branch="trunk")
    gh.protection["acme/web"] = "forbidden"
    gh.pulls["acme/web"].append(
        FakePR(
            1,
            "gina",
            "2026-02-01T12:00:00Z",
            "gina",
            reviews=[("harry", "APPROVED", "2026-02-01T11:00:00Z")],
            runs=[],
            statuses=[("ci/jenkins", "success")],
        )
    )
    return {
        "github_pulls.change.approved_before_implemented": {"acme/api#2", "acme/api#6"},
        "github_pulls.change.approver_not_implementer": {"acme/api#3"},
        "github_pulls.change.required_checks_passed": {"acme/api#4"},
    }


FAST_HTTP = HttpOptions(
    max_attempts=4,
    retry_min_wait=0.0,
    retry_max_wait=0.01,
    max_retry_after=2,
    timeout=10,
    connect_timeout=2,
)


def connector(gh: FakeGitHub, **process: Any) -> GitHubPullsConnector:
    proc = {"kind": "change", "repos": ["acme/api", "acme/web"], "since": "2026-01-01", **process}
    opts = {
        "api_url": gh.api_url,
        "token": {"env": "ANNEXA_TEST_GH_PULLS_TOKEN"},
        "processes": [proc],
        "max_workers": 2,
        "http": FAST_HTTP,
    }
    return GitHubPullsConnector("gh-pulls", GitHubPullsOptions.model_validate(opts))


def collect(conn: GitHubPullsConnector) -> list[Record]:
    return list(conn.collect(CollectContext(run_id="test")))


def findings(records: list[Record]) -> list[Finding]:
    specs = GitHubPullsConnector.checks()
    by_type: dict[str, list] = defaultdict(list)
    for s in specs:
        by_type[s.resource_type].append(s)
    out: list[Finding] = []
    for rec in records:
        if isinstance(rec, Evidence):
            out.extend(evaluate(rec, by_type[rec.resource_type], {s.id: {} for s in specs}))
        elif isinstance(rec, Coverage) and not rec.ok:
            out.extend(
                Finding(
                    s.id,
                    rec.scope,
                    rec.region,
                    s.resource_type,
                    f"unit:{rec.unit}",
                    "error",
                    s.severity,
                    rec.error or "",
                )
                for s in specs
                if service_of(s.resource_type) == rec.service
            )
    return out


def by_status(found: list[Finding], status: str = "fail") -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for f in found:
        if f.status == status:
            out[f.check_id].add(f.resource_id)
    return dict(out)


def prs(records: list[Record]) -> dict[str, Evidence]:
    return {
        r.resource_id: r
        for r in records
        if isinstance(r, Evidence) and r.resource_type.endswith(".pull_request")
    }


@pytest.fixture
def gh(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_GH_PULLS_TOKEN", TOKEN)
    return FakeGitHub(httpserver)


def test_planted_pull_requests_fail_exactly_their_checks(gh):
    expected = plant(gh)
    records = collect(connector(gh))
    cov = {r.scope: r for r in records if isinstance(r, Coverage)}
    assert set(cov) == {"acme/api", "acme/web"} and all(c.ok for c in cov.values())
    found = findings(records)
    assert by_status(found) == expected
    assert by_status(found, "error") == {}
    passing = by_status(found, "pass")
    assert passing["github_pulls.change.approved_before_implemented"] == {
        "acme/api#1",
        "acme/api#3",
        "acme/api#4",
        "acme/web#1",
    }
    assert passing["github_pulls.change.approver_not_implementer"] == {
        "acme/api#1",
        "acme/api#4",
        "acme/web#1",
    }
    assert passing["github_pulls.change.required_checks_passed"] == {
        "acme/api#1",
        "acme/api#2",
        "acme/api#3",
        "acme/api#6",
        "acme/web#1",
    }
    ev = prs(records)
    assert set(ev) == {
        "acme/api#1",
        "acme/api#2",
        "acme/api#3",
        "acme/api#4",
        "acme/api#6",
        "acme/web#1",
    }
    # The listing stopped at the first PR updated before `since`: #7 never fetched.
    assert not any(p.endswith("/pulls/7") for p in gh.requests)
    p = ev["acme/api#3"].payload
    assert p["required_checks"] == ["ci"] and p["derived"]["approved_by"] == [
        {"id": "bob", "name": None}
    ]
    assert p["ticket"]["merged_by"]["id"] == "bob"
    assert "comments" not in ev["acme/api#3"].body()
    web = ev["acme/web#1"].payload
    assert web["required_checks"] == []
    assert "branch_protection:unreadable (HTTP 403)" in web["required_checks_from"]


def test_merger_may_approve_when_configured(gh):
    expected = plant(gh)
    found = findings(collect(connector(gh, merger_is_implementer=False)))
    expected.pop("github_pulls.change.approver_not_implementer")
    assert by_status(found) == expected


def test_configured_required_check_that_never_ran_fails(gh):
    plant(gh)
    found = findings(collect(connector(gh, required_checks=["security-scan"])))
    fails = by_status(found)["github_pulls.change.required_checks_passed"]
    assert "acme/api#1" in fails and "acme/web#1" in fails
    msg = next(
        f.message
        for f in found
        if f.resource_id == "acme/api#1" and f.check_id.endswith("required_checks_passed")
    )
    assert "never ran: security-scan" in msg


def test_errors_are_per_pull_request_or_per_repo(gh):
    expected = plant(gh)
    gh.fault("/repos/acme/api/pulls/1/reviews", *[(502, "{}", {})] * 4)
    gh.fault("/repos/acme/web", (429, "{}", {"Retry-After": "0"}), *[(500, "{}", {})] * 4)
    records = collect(connector(gh))
    cov = {r.scope: r for r in records if isinstance(r, Coverage)}
    assert cov["acme/api"].ok and not cov["acme/web"].ok
    found = findings(records)
    errs = by_status(found, "error")
    assert errs["github_pulls.change.approved_before_implemented"] >= {"acme/api#1"}
    assert "acme/api#1" not in by_status(found).get(
        "github_pulls.change.approved_before_implemented", set()
    )
    assert (
        by_status(found)["github_pulls.change.approver_not_implementer"]
        == expected["github_pulls.change.approver_not_implementer"]
    )


def test_malformed_pull_list_is_a_unit_error(gh):
    plant(gh)
    gh.fault("/repos/acme/api/pulls", (200, '[{"title": "no number"}]', {}))
    cov = {r.scope: r for r in collect(connector(gh)) if isinstance(r, Coverage)}
    assert not cov["acme/api"].ok and "without a number" in (cov["acme/api"].error or "")
    assert cov["acme/web"].ok


def test_options_validation(gh):
    with pytest.raises(ValueError, match="owner/name"):
        connector(gh, repos=["not a repo"])
    with pytest.raises(ValueError, match="kind"):
        connector(gh, kind="incident")
