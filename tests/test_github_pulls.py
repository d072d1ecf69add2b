"""The GitHub pull-requests connector against a fake GitHub REST API (pytest-httpserver).

The fake serves the shapes of GitHub's OpenAPI description (``@octokit/openapi``, built
by tests/github_shapes.py; ``test_fake_responses_match_the_openapi_description`` validates
every body served): ``full-repository`` with ``default_branch``, ``pull-request-simple``
lists (``state=closed&base=…&sort=updated&direction=desc``, ``Link`` pages of 2),
``pull-request`` details with ``merged_by``, ``pull-request-review``s with every documented
``state`` and ``author_association`` and their own ``commit_id``, ``check-run``s with
every documented ``conclusion``, the ``combined-commit-status``, ruleset rules for a
branch, and classic protection's ``status-check-policy`` (404 when unprotected, 403
without admin rights).
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

from connectors.github_pulls import GitHubPullsConnector, GitHubPullsOptions
from core.records import Coverage, Evidence, Record
from tests import github_shapes as shapes
from tests.fakehttp import FAST_HTTP
from tests.harness import by_check, run_built, run_engine
from tests.harness import stream as collect
from tests.vendor_schemas import assert_all_served_valid, openapi_schema

pytestmark = pytest.mark.clock

TOKEN = "ghp_PullsTestToken0123456789abcdefXYZ01"


@dataclass
class FakePR:
    """One pull request. ``reviews``: ``(who, state, at)`` optionally followed by the
    ``author_association`` (default MEMBER) and the reviewed ``commit_id`` (default the
    head); ``runs``: ``(name, conclusion)`` or ``(name, conclusion, status)``."""

    number: int
    author: str
    merged_at: str | None
    merged_by: str | None = None
    reviews: list[tuple[Any, ...]] = field(default_factory=list)
    runs: list[tuple[Any, ...]] = field(default_factory=lambda: [("ci", "success")])
    statuses: list[tuple[str, str]] = field(default_factory=list)
    title: str = ""
    updated_at: str = ""
    created_at: str = "2026-01-01T09:00:00Z"

    @property
    def head(self) -> str:
        return f"{self.number:040x}"

    def listed(self, repo: str, base: str) -> dict[str, Any]:
        return shapes.pull_request_simple(
            repo,
            self.number,
            author=self.author,
            title=self.title or f"PR {self.number}",
            head_sha=self.head,
            base_ref=base,
            created_at=self.created_at,
            updated_at=self.updated_at or (self.merged_at or self.created_at),
            merged_at=self.merged_at,
            merge_commit_sha=f"{self.number + 1000:040x}" if self.merged_at else None,
            labels=["change"],
        )


class FakeGitHub:
    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.repos: dict[str, dict[str, Any]] = {}
        self.pulls: dict[str, list[FakePR]] = defaultdict(list)
        self.rules: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.protection: dict[str, Any] = {}
        self.faults: dict[str, list[tuple[int, str, dict[str, str]]]] = defaultdict(list)
        self.requests: list[str] = []
        #: (path, body) of every successful JSON answer, for the schema test.
        self.served: list[tuple[str, Any]] = []
        self.page_cap = 2
        server.expect_request(re.compile(r"^/.*")).respond_with_handler(self.handle)

    @property
    def api_url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def repo(self, full: str, branch: str = "main") -> None:
        self.repos[full] = shapes.full_repository(
            full, len(self.repos) + 1, default_branch=branch, pushed_at="2026-11-01T00:00:00Z"
        )

    def fault(self, path: str, *answers: tuple[int, str, dict[str, str]]) -> None:
        self.faults[path].extend(answers)

    def _json(self, body: Any, status: int = 200, link: str | None = None) -> Response:
        if status == 200:
            self.served.append((self.requests[-1], body))
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
            return self._json(shapes.status_check_policy(repo, info["default_branch"], list(prot)))
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
            listed = pr.listed(repo, info["default_branch"])
            return self._json(shapes.pull_request(listed, merged_by=pr.merged_by))
        if mm := re.fullmatch(r"/pulls/(\d+)/reviews", rest):
            pr = prs[int(mm[1])]
            reviews = [
                shapes.review(
                    repo,
                    pr.number,
                    500 + i,
                    login=who,
                    state=state,
                    submitted_at=at,
                    association=(rest[0] if rest else "MEMBER"),
                    commit_id=(rest[1] if len(rest) > 1 else pr.head),
                )
                for i, (who, state, at, *rest) in enumerate(pr.reviews)
            ]
            return self._page(request, reviews)
        if mm := re.fullmatch(r"/commits/([0-9a-f]{40})/check-runs", rest):
            pr = next(p for p in self.pulls[repo] if p.head == mm[1])
            runs = [
                shapes.check_run(
                    repo,
                    900 + i,
                    name=name,
                    head_sha=pr.head,
                    status=(rest[0] if rest else "completed"),
                    conclusion=concl,
                )
                for i, (name, concl, *rest) in enumerate(pr.runs)
            ]
            return self._page(request, runs, wrap="check_runs")
        if mm := re.fullmatch(r"/commits/([0-9a-f]{40})/status", rest):
            pr = next(p for p in self.pulls[repo] if p.head == mm[1])
            statuses = [
                shapes.commit_status(repo, 700 + i, context=c, state=st)
                for i, (c, st) in enumerate(pr.statuses)
            ]
            return self._json(shapes.combined_status(repo, pr.head, statuses))
        return self._json({"message": "Not Found (fake)"}, 418)


def plant(gh: FakeGitHub) -> dict[str, set[str]]:
    gh.repo("acme/api")
    gh.rules["acme/api"] = [
        shapes.rule_pull_request(7, "acme/api", 1),
        shapes.rule_required_checks(7, "acme/api", ["ci"]),
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
    run = run_built(connector(gh))
    records = run.records
    cov = {r.scope: r for r in records if isinstance(r, Coverage)}
    assert set(cov) == {"acme/api", "acme/web"} and all(c.ok for c in cov.values())
    found = run.findings
    assert by_check(found) == expected
    assert by_check(found, "error") == {}
    passing = by_check(found, "pass")
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
    found = run_built(connector(gh, merger_is_implementer=False)).findings
    expected.pop("github_pulls.change.approver_not_implementer")
    assert by_check(found) == expected


def test_configured_required_check_that_never_ran_fails(gh):
    plant(gh)
    found = run_built(connector(gh, required_checks=["security-scan"])).findings
    fails = by_check(found)["github_pulls.change.required_checks_passed"]
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
    run = run_built(connector(gh))
    records = run.records
    cov = {r.scope: r for r in records if isinstance(r, Coverage)}
    assert cov["acme/api"].ok and not cov["acme/web"].ok
    found = run.findings
    errs = by_check(found, "error")
    assert errs["github_pulls.change.approved_before_implemented"] >= {"acme/api#1"}
    assert "acme/api#1" not in by_check(found).get(
        "github_pulls.change.approved_before_implemented", set()
    )
    assert (
        by_check(found)["github_pulls.change.approver_not_implementer"]
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


# --------------------------------------------------------------------------- real shapes
# Vendor-shaped pull requests judged by the run engine (tests/harness.py).

APPROVED = "github_pulls.change.approved_before_implemented"
SOD = "github_pulls.change.approver_not_implementer"
CHECKS = "github_pulls.change.required_checks_passed"


def engine_options(gh: FakeGitHub, **process: Any) -> dict[str, Any]:
    return {
        "api_url": gh.api_url,
        "token": {"env": "ANNEXA_TEST_GH_PULLS_TOKEN"},
        "processes": [{"kind": "change", "repos": ["acme/svc"], "since": "2026-01-01", **process}],
        "max_workers": 2,
        "http": {"max_attempts": 2, "retry_min_wait": 0.0, "retry_max_wait": 0.01},
    }


def svc_repo(gh: FakeGitHub) -> None:
    gh.repo("acme/svc")
    gh.rules["acme/svc"] = [shapes.rule_required_checks(9, "acme/svc", ["ci"])]


def merged(n: int, reviews: list[tuple[Any, ...]], **kw: Any) -> FakePR:
    return FakePR(n, "alice", f"2026-02-{n:02d}T12:00:00Z", "alice", reviews=reviews, **kw)


def test_approvals_count_only_from_write_access_on_the_merged_head(gh):
    """``author_association`` (all eight documented values), ``commit_id`` and review
    states: before the fix an approval by a user with no write access (NONE…) or of an
    older commit than the merged head counted as an independent approval."""
    svc_repo(gh)
    at = "2026-02-{:02d}T11:00:00Z".format
    older = "e" * 40
    cases = {
        1: ("OWNER", None, "pass"),
        2: ("MEMBER", None, "pass"),
        3: ("COLLABORATOR", None, "pass"),
        4: ("NONE", None, "fail"),
        5: ("CONTRIBUTOR", None, "fail"),
        6: ("FIRST_TIME_CONTRIBUTOR", None, "fail"),
        7: ("FIRST_TIMER", None, "fail"),
        8: ("MANNEQUIN", None, "fail"),
        9: ("MEMBER", older, "fail"),  # approved an earlier push, not what was merged
    }
    for n, (assoc, commit, _) in cases.items():
        review = ("bob", "APPROVED", at(n), assoc, *([commit] if commit else []))
        gh.pulls["acme/svc"].append(merged(n, [review]))
    # Dismissed approval; approval withdrawn by a later change request; approval after
    # the merge; the author's own approval (the API refuses it, a COMMENTED stands in).
    gh.pulls["acme/svc"].append(merged(10, [("bob", "DISMISSED", at(10))]))
    gh.pulls["acme/svc"].append(
        merged(
            11,
            [("bob", "APPROVED", "2026-02-11T10:00:00Z"), ("bob", "CHANGES_REQUESTED", at(11))],
        )
    )
    gh.pulls["acme/svc"].append(merged(12, [("bob", "APPROVED", "2026-02-12T13:00:00Z")]))
    gh.pulls["acme/svc"].append(merged(13, [("alice", "COMMENTED", at(13))]))
    run = run_engine("github_pulls", engine_options(gh))
    assert run.status == "succeeded", run.errors
    expected_fail = {f"acme/svc#{n}" for n, (_, _, v) in cases.items() if v == "fail"}
    expected_fail |= {"acme/svc#10", "acme/svc#11", "acme/svc#12", "acme/svc#13"}
    assert {rid for cid, rid in run.ids("fail") if cid == APPROVED} == expected_fail
    assert {rid for cid, rid in run.ids("pass") if cid == APPROVED} == {
        "acme/svc#1",
        "acme/svc#2",
        "acme/svc#3",
    }
    msg = run.one(APPROVED, "acme/svc#4").message
    assert "author_association NONE (no write access)" in msg
    assert "not the merged head" in run.one(APPROVED, "acme/svc#9").message
    derived = run.payload("github_pulls.change.pull_request", "acme/svc#4")["derived"]
    assert derived["approved_by"] == [] and derived["discounted_approvals"][0]["by"]["id"] == "bob"
    # No counted approval: nothing to segregate, never a pass.
    assert (SOD, "acme/svc#4") not in run.ids("pass")
    # An operator who accepts approvals of earlier commits says so.
    relaxed = run_engine("github_pulls", engine_options(gh, approval_must_cover_merged_head=False))
    assert relaxed.one(APPROVED, "acme/svc#9").status == "pass"


def test_every_documented_conclusion_is_judged_for_required_checks(gh):
    """A required check passes only with conclusion ``success`` by default (neutral and
    skipped mean nothing was tested; before the fix they passed); ``passing_conclusions``
    follows GitHub's branch protection when an operator wants it."""
    svc_repo(gh)
    approval = [("bob", "APPROVED", "2026-02-01T10:00:00Z")]
    conclusions = [
        "success",
        "neutral",
        "skipped",
        "failure",
        "cancelled",
        "timed_out",
        "action_required",
        "stale",
        "startup_failure",
    ]
    for i, conclusion in enumerate(conclusions, start=1):
        gh.pulls["acme/svc"].append(merged(i, approval, runs=[("ci", conclusion)]))
    gh.pulls["acme/svc"].append(merged(20, approval, runs=[("ci", None, "in_progress")]))
    run = run_engine("github_pulls", engine_options(gh))
    assert {rid for cid, rid in run.ids("pass") if cid == CHECKS} == {"acme/svc#1"}
    assert {rid for cid, rid in run.ids("fail") if cid == CHECKS} == {
        f"acme/svc#{i}" for i in [*range(2, len(conclusions) + 1), 20]
    }
    assert "ci (neutral)" in run.one(CHECKS, "acme/svc#2").message
    lenient = run_engine(
        "github_pulls",
        engine_options(gh, passing_conclusions=["success", "neutral", "skipped"]),
    )
    assert {rid for cid, rid in lenient.ids("pass") if cid == CHECKS} == {
        "acme/svc#1",
        "acme/svc#2",
        "acme/svc#3",
    }


def test_undocumented_association_or_conclusion_is_refused(gh):
    with pytest.raises(ValueError, match="author_association"):
        connector(gh, approver_associations=["OWNER", "WRITER"])
    with pytest.raises(ValueError, match="conclusion"):
        connector(gh, passing_conclusions=["green"])


def test_fake_responses_match_the_openapi_description(gh):
    """Every body the fake served in a full run validates against GitHub's description."""
    plant(gh)
    gh.protection["acme/api"] = ["ci"]
    run_engine(
        "github_pulls",
        {
            **engine_options(gh),
            "processes": [
                {"kind": "change", "repos": ["acme/api", "acme/web"], "since": "2026-01-01"}
            ],
        },
    )
    schemas = [
        (r"/repos/[^/]+/[^/]+", openapi_schema("github", "full-repository")),
        (
            r"/repos/[^/]+/[^/]+/rules/branches/[^/]+",
            openapi_schema("github", "repository-rule-detailed", array=True),
        ),
        (
            r"/repos/[^/]+/[^/]+/branches/[^/]+/protection/required_status_checks",
            openapi_schema("github", "status-check-policy"),
        ),
        (r"/repos/[^/]+/[^/]+/pulls", openapi_schema("github", "pull-request-simple", array=True)),
        (r"/repos/[^/]+/[^/]+/pulls/\d+", openapi_schema("github", "pull-request")),
        (
            r"/repos/[^/]+/[^/]+/pulls/\d+/reviews",
            openapi_schema("github", "pull-request-review", array=True),
        ),
        (
            r"/repos/[^/]+/[^/]+/commits/[0-9a-f]+/check-runs",
            openapi_schema("github", "check-run", list_key="check_runs"),
        ),
        (
            r"/repos/[^/]+/[^/]+/commits/[0-9a-f]+/status",
            openapi_schema("github", "combined-commit-status"),
        ),
    ]
    assert_all_served_valid(gh.served, schemas)
