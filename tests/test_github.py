"""The GitHub connector against a fake GitHub REST API served by pytest-httpserver.

The fake answers with the shapes of GitHub's OpenAPI description (``@octokit/openapi``,
built by tests/github_shapes.py; ``test_fake_responses_match_the_openapi_description``
validates every body served): ``organization-full``, ``simple-user`` members (with the
``2fa_disabled`` and ``2fa_insecure`` filters), ``minimal-repository`` listings with
``security_and_analysis``, ``branch-protection``, ``repository-rule-detailed`` rules for
a branch, code-scanning default setup and analyses, and Dependabot, code-scanning and
secret-scanning alerts with their ``repository``. It paginates with ``Link`` headers
(page numbers for lists, ``after`` cursors for alerts) at a small server-side page size,
sends the rate-limit headers GitHub sends, restricts owner-only data to an owner token,
and can inject faults per path (429/403 rate limits, 5xx bursts, malformed JSON, loops).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.github import GitHubConnector, GitHubOptions
from core.records import Finding
from tests import github_shapes as shapes
from tests.fakehttp import FAST_HTTP
from tests.harness import by_status, judge_payload, run_built, run_engine
from tests.harness import coverage_by_service as coverage
from tests.harness import evidence_of as evidence
from tests.harness import stream as collect
from tests.vendor_schemas import assert_all_served_valid, openapi_schema

pytestmark = pytest.mark.clock

TOKEN = "ghp_TestTokenForAnnexa0123456789abcdefXYZ"
LEAKED = "AKIAIOSFODNN7EXAMPLE-leaked-value-0123456789"
KEY = "pseudonym-key-for-tests-0123456789"
NOW = datetime.now(UTC)
ORG = "acme"


def ts(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- shapes


def simple_user(login: str, uid: int) -> dict[str, Any]:
    return shapes.simple_user(login, uid)


def repository(
    name: str,
    rid: int,
    *,
    archived: bool = False,
    private: bool = True,
    scanning: str | None = "enabled",
    push: str | None = "enabled",
    updates: str | None = "enabled",
    sa: bool = True,
) -> dict[str, Any]:
    """A ``minimal-repository`` as ``GET /orgs/{org}/repos`` lists it; the
    ``security_and_analysis`` object only for a token that may administer it."""
    repo = shapes.full_repository(f"{ORG}/{name}", rid, private=private, archived=archived)
    if sa:
        feats: dict[str, Any] = {"advanced_security": {"status": "enabled"}}
        for key, status in (
            ("secret_scanning", scanning),
            ("secret_scanning_push_protection", push),
            ("dependabot_security_updates", updates),
        ):
            if status is not None:
                feats[key] = {"status": status}
        repo["security_and_analysis"] = feats
    return repo


def classic_protection(name: str, *, reviews: int | None = 1, force: bool = False) -> dict:
    url = f"https://api.github.com/repos/{ORG}/{name}/branches/main/protection"
    prot: dict[str, Any] = {
        "url": url,
        "required_status_checks": {
            "url": url + "/required_status_checks",
            "strict": True,
            "contexts": ["ci"],
            "checks": [{"context": "ci", "app_id": None}],
        },
        "enforce_admins": {"url": url + "/enforce_admins", "enabled": True},
        "required_linear_history": {"enabled": False},
        "allow_force_pushes": {"enabled": force},
        "allow_deletions": {"enabled": False},
        "block_creations": {"enabled": False},
        "required_conversation_resolution": {"enabled": False},
        "lock_branch": {"enabled": False},
        "allow_fork_syncing": {"enabled": False},
    }
    if reviews is not None:
        prot["required_pull_request_reviews"] = {
            "url": url + "/required_pull_request_reviews",
            "dismiss_stale_reviews": True,
            "require_code_owner_reviews": False,
            "required_approving_review_count": reviews,
            "require_last_push_approval": False,
        }
    return prot


def ruleset_rules(ruleset_id: int = 42, reviews: int = 1) -> list[dict[str, Any]]:
    return [
        shapes.rule("deletion", ruleset_id, ORG),
        shapes.rule("non_fast_forward", ruleset_id, ORG),
        shapes.rule_pull_request(ruleset_id, ORG, reviews),
    ]


def dependabot_alert(repo: str, number: int, severity: str, days: float) -> dict[str, Any]:
    return shapes.dependabot_alert(f"{ORG}/{repo}", number, severity, ts(days))


def code_alert(repo: str, number: int, severity: str | None, days: float) -> dict[str, Any]:
    return shapes.code_scanning_alert(
        f"{ORG}/{repo}",
        number,
        created=ts(days),
        security_severity=severity,
        severity="warning" if severity is None else "error",
    )


def secret_alert(repo: str, number: int, days: float) -> dict[str, Any]:
    return shapes.secret_scanning_alert(f"{ORG}/{repo}", number, created=ts(days), value=LEAKED)


# --------------------------------------------------------------------------- the fake


class FakeGitHub:
    def __init__(self, server: HTTPServer, prefix: str = "") -> None:
        self.server = server
        self.prefix = prefix
        self.page_cap = 2  # the server caps per_page, as real servers may
        self.owner_token = True
        self.org: dict[str, Any] = shapes.organization_full(ORG)
        self.members: list[dict] = []
        self.owners: set[str] = set()
        self.no_2fa: set[str] = set()
        self.insecure_2fa: set[str] = set()
        self.collaborators: list[dict] = []
        self.repos: list[dict] = []
        self.protection: dict[str, Any] = {}
        self.rules: dict[str, list[dict]] = defaultdict(list)
        self.vuln_alerts: dict[str, bool] = defaultdict(lambda: True)
        self.dependabot: list[dict] = []
        self.code_alerts: list[dict] = []
        self.secrets: list[dict] = []
        #: Code scanning per repository: "default" (default setup configured),
        #: "advanced" (analyses uploaded by a workflow), "none", or "off" (403, not enabled).
        self.code_scanning: dict[str, str] = defaultdict(lambda: "default")
        #: Outside collaborators per repository: (login, role) with role one of
        #: admin, maintain, write, triage, read.
        self.repo_outside: dict[str, list[tuple[str, str]]] = defaultdict(list)
        #: (path, body) of every successful JSON answer, for the schema test.
        self.served: list[tuple[str, Any]] = []
        self.faults: dict[str, list[tuple[int, str, dict[str, str]]]] = defaultdict(list)
        self.looping: set[str] = set()
        self.requests: list[str] = []
        server.expect_request(
            re.compile(rf"^{re.escape(prefix)}/(orgs|repos)/.*")
        ).respond_with_handler(self.handle)

    @property
    def api_url(self) -> str:
        return self.server.url_for(self.prefix or "/").rstrip("/")

    def member(self, login: str, *, owner: bool = False, two_factor: bool = True) -> None:
        self.members.append(simple_user(login, 100 + len(self.members)))
        if owner:
            self.owners.add(login)
        if not two_factor:
            self.no_2fa.add(login)

    def fault(self, path: str, *answers: tuple[int, str, dict[str, str]]) -> None:
        self.faults[self.prefix + path].extend(answers)

    # -- HTTP

    def _json(self, body: Any, status: int = 200, link: str | None = None) -> Response:
        if status == 200:
            self.served.append((self.requests[-1].removeprefix(self.prefix), body))
        resp = Response(json.dumps(body), status=status, content_type="application/json")
        resp.headers.update(
            {
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": "4990",
                "X-RateLimit-Used": "10",
                "X-RateLimit-Resource": "core",
                "X-RateLimit-Reset": str(int(NOW.timestamp()) + 3600),
                "X-GitHub-Media-Type": "github.v3; format=json",
            }
        )
        if link:
            resp.headers["Link"] = link
        return resp

    def _pages(self, request: Request, items: list[Any]) -> Response:
        """Page-number pagination with rel=next/last links, like GitHub list endpoints."""
        size = min(int(request.args.get("per_page", 30)), self.page_cap)
        page = int(request.args.get("page", 1))
        chunk = items[(page - 1) * size : page * size]
        base = self.server.url_for(request.path)
        args = {k: v for k, v in request.args.items() if k != "page"}
        last = max(1, -(-len(items) // size))
        links = []
        if request.path in self.looping:
            links.append(f'<{base}?{urlencode({**args, "page": 1})}>; rel="next"')
        elif page < last:
            links.append(f'<{base}?{urlencode({**args, "page": page + 1})}>; rel="next"')
            links.append(f'<{base}?{urlencode({**args, "page": last})}>; rel="last"')
        return self._json(chunk, link=", ".join(links) or None)

    def _cursor(self, request: Request, items: list[dict]) -> Response:
        """Cursor pagination (``after``) used by the alert endpoints."""
        size = min(int(request.args.get("per_page", 30)), self.page_cap)
        after = request.args.get("after")
        start = int(after.removeprefix("Y3Vyc29y")) if after else 0
        chunk = items[start : start + size]
        link = None
        if start + size < len(items):
            args = {k: v for k, v in request.args.items() if k != "after"}
            cursor = f"Y3Vyc29y{start + size}"
            nxt = f"{self.server.url_for(request.path)}?{urlencode({**args, 'after': cursor})}"
            link = f'<{nxt}>; rel="next"'
        return self._json(chunk, link=link)

    def handle(self, request: Request) -> Response:
        full = request.path
        self.requests.append(full)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._json(
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
                401,
            )
        if self.faults.get(full):
            status, body, headers = self.faults[full].pop(0)
            return Response(body, status=status, headers=headers, content_type="application/json")
        path = full.removeprefix(self.prefix)
        args = request.args
        if path == f"/orgs/{ORG}":
            body = dict(self.org)
            if not self.owner_token:
                body.pop("two_factor_requirement_enabled", None)
                body.pop("default_repository_permission", None)
            return self._json(body)
        if path == f"/orgs/{ORG}/members":
            if args.get("filter") in ("2fa_disabled", "2fa_insecure"):
                if not self.owner_token:
                    return self._json(
                        {"message": "Only owners can use this filter.", "documentation_url": "…"},
                        422,
                    )
                chosen = self.no_2fa if args["filter"] == "2fa_disabled" else self.insecure_2fa
                people = [m for m in self.members if m["login"] in chosen]
            elif args.get("role") == "admin":
                people = [m for m in self.members if m["login"] in self.owners]
            else:
                people = self.members
            return self._pages(request, people)
        if path == f"/orgs/{ORG}/outside_collaborators":
            people = self.collaborators
            if args.get("filter") == "2fa_disabled":
                people = [m for m in people if m["login"] in self.no_2fa]
            elif args.get("filter") == "2fa_insecure":
                people = [m for m in people if m["login"] in self.insecure_2fa]
            return self._pages(request, people)
        if path == f"/orgs/{ORG}/repos":
            return self._pages(request, self.repos)
        if path == f"/orgs/{ORG}/dependabot/alerts":
            sev = set(args.get("severity", "").split(",")) - {""}
            items = [
                a
                for a in self.dependabot
                if a["state"] == args.get("state", "open")
                and (not sev or a["security_advisory"]["severity"] in sev)
            ]
            return self._cursor(request, items)
        if path == f"/orgs/{ORG}/code-scanning/alerts":
            return self._cursor(request, [a for a in self.code_alerts if a["state"] == "open"])
        if m := re.fullmatch(rf"/repos/{ORG}/([^/]+)/code-scanning/default-setup", path):
            mode = self.code_scanning[m[1]]
            if mode == "off":
                return self._json(
                    {
                        "message": "Advanced Security must be enabled for this repository "
                        "to use code scanning.",
                        "documentation_url": "…",
                    },
                    403,
                )
            return self._json(shapes.code_scanning_default_setup(mode == "default"))
        if m := re.fullmatch(rf"/repos/{ORG}/([^/]+)/code-scanning/analyses", path):
            if self.code_scanning[m[1]] == "advanced":
                return self._json([shapes.code_scanning_analysis(f"{ORG}/{m[1]}", 201)])
            return self._json({"message": "no analysis found", "documentation_url": "…"}, 404)
        if path == f"/orgs/{ORG}/secret-scanning/alerts":
            return self._cursor(request, [a for a in self.secrets if a["state"] == "open"])
        if m := re.fullmatch(rf"/repos/{ORG}/([^/]+)/branches/main/protection", path):
            prot = self.protection.get(m[1])
            if prot == "plan":
                return self._json(
                    {
                        "message": "Upgrade to GitHub Pro or make this repository "
                        "public to enable this feature.",
                        "documentation_url": "…",
                    },
                    403,
                )
            if prot is None:
                return self._json(
                    {"message": "Branch not protected", "documentation_url": "…"}, 404
                )
            return self._json(prot)
        if m := re.fullmatch(rf"/repos/{ORG}/([^/]+)/rules/branches/main", path):
            return self._pages(request, self.rules[m[1]])
        if m := re.fullmatch(rf"/repos/{ORG}/([^/]+)/collaborators", path):
            if args.get("affiliation") != "outside":
                return self._json({"message": "fake serves affiliation=outside only",
                                   "documentation_url": "…"}, 418)
            people = [shapes.collaborator(login, 700 + i, role)
                      for i, (login, role) in enumerate(self.repo_outside[m[1]])]
            return self._pages(request, people)
        if m := re.fullmatch(rf"/repos/{ORG}/([^/]+)/vulnerability-alerts", path):
            if self.vuln_alerts[m[1]]:
                return Response(status=204)
            return self._json({"message": "Not Found", "documentation_url": "…"}, 404)
        return self._json({"message": "Not Found (fake)", "documentation_url": "…"}, 418)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def gh(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("ANNEXA_TEST_PSEUDONYM_KEY", KEY)
    return FakeGitHub(httpserver)


def healthy_org(gh: FakeGitHub) -> None:
    gh.member("octo-owner", owner=True)
    gh.member("second-owner", owner=True)
    for i in range(3):
        gh.member(f"dev{i}")
    gh.collaborators.append(simple_user("contractor", 900))
    gh.repos.append(repository("api", 1))
    gh.protection["api"] = classic_protection("api", reviews=2)
    gh.repos.append(repository("web", 2))
    gh.rules["web"] = ruleset_rules()  # protected by an organisation ruleset only
    gh.repos.append(repository("legacy", 3, archived=True, sa=False))
    gh.repo_outside["api"] = [("contractor", "write")]  # contributes, does not administer
    gh.dependabot.append(dependabot_alert("api", 1, "high", days=10))


def connector(gh: FakeGitHub, **options: Any) -> GitHubConnector:
    opts = {
        "organization": ORG,
        "api_url": gh.api_url,
        "token": {"env": "ANNEXA_TEST_GITHUB_TOKEN"},
        "max_workers": 2,
        "http": FAST_HTTP.model_copy(update={"secondary_rate_limit_wait": 0.01}),
        **options,
    }
    return GitHubConnector("github-test", GitHubOptions.model_validate(opts))


# --------------------------------------------------------------------------- tests


def test_healthy_org_passes_everything(gh):
    healthy_org(gh)
    run = run_built(connector(gh))
    records = run.records
    cov = coverage(records)
    assert set(cov) == {
        "org",
        "member",
        "collaborator",
        "repo",
        "dependabot",
        "codescanning",
        "secretscanning",
    }
    assert all(c.ok for c in cov.values()), cov
    found = run.findings
    assert by_status(found, "fail") == set() and by_status(found, "error") == set()
    members = {e.resource_id: e.payload for e in evidence(records, "github.member.account")}
    assert len(members) == 5  # three pages at the fake's page size of 2
    # all members (3 pages), owners (read once for the org and member units),
    # 2fa_disabled, 2fa_insecure
    assert gh.requests.count(f"/orgs/{ORG}/members") == 3 + 1 + 1 + 1
    assert members["octo-owner"]["role"] == "owner" and members["dev0"]["role"] == "member"
    web = next(
        e.payload
        for e in evidence(records, "github.repo.repository")
        if e.resource_id == f"{ORG}/web"
    )
    assert web["default_branch_protection"]["sources"] == ["ruleset:42"]
    assert web["default_branch_protection"]["force_push_blocked"] is True
    # Archived repositories are recorded, judged not applicable, and not inspected further.
    assert not any("/legacy/" in p for p in gh.requests)
    legacy = [f for f in found if f.resource_id == f"{ORG}/legacy"]
    assert legacy and {f.status for f in legacy} == {"not_applicable"}
    assert {e.scope for e in evidence(records)} == {ORG}


def test_planted_problems_fail_exactly_their_checks(gh):
    healthy_org(gh)
    gh.member("third-owner", owner=True)
    gh.member("no2fa")
    gh.no_2fa.add("no2fa")
    gh.collaborators.append(simple_user("vendor-no2fa", 901))
    gh.no_2fa.add("vendor-no2fa")
    gh.repos.append(repository("naked", 4))  # no protection, no rules
    gh.repos.append(repository("forcy", 5, scanning="disabled", push=None))
    gh.protection["forcy"] = classic_protection("forcy", reviews=1, force=True)
    gh.repos.append(repository("plan", 6))
    gh.protection["plan"] = "plan"  # private repo on a plan without protection
    gh.rules["plan"] = ruleset_rules(reviews=2)  # …but an org ruleset covers it
    gh.vuln_alerts["plan"] = False
    gh.repo_outside["naked"] = [("contractor", "admin")]
    gh.repo_outside["forcy"] = [("auditor", "read"), ("vendor-no2fa", "maintain")]
    gh.dependabot.append(dependabot_alert("api", 2, "critical", days=20))
    gh.dependabot.append(dependabot_alert("web", 3, "high", days=29))
    gh.secrets.append(secret_alert("web", 1, days=9))
    run = run_built(connector(gh), checks={"github.org.owner_count": {"max_owners": 2}})
    assert all(c.ok for c in coverage(run.records).values())
    found = run.findings
    assert by_status(found, "fail") == {
        ("github.org.owner_count", ORG),
        ("github.member.two_factor", "no2fa"),
        ("github.collaborator.two_factor", "vendor-no2fa"),
        ("github.repo.branch_protection", f"{ORG}/naked"),
        ("github.repo.force_push_blocked", f"{ORG}/naked"),
        ("github.repo.force_push_blocked", f"{ORG}/forcy"),
        ("github.repo.secret_scanning", f"{ORG}/forcy"),
        ("github.repo.secret_scanning_push_protection", f"{ORG}/forcy"),
        ("github.repo.dependabot_alerts", f"{ORG}/plan"),
        ("github.repo.outside_collaborators_no_admin", f"{ORG}/naked"),
        ("github.repo.outside_collaborators_no_admin", f"{ORG}/forcy"),
        ("github.dependabot.alerts_within_sla", f"{ORG}/api#2"),
        ("github.secretscanning.alerts_within_sla", f"{ORG}/web#1"),
    }
    assert by_status(found, "error") == set()


def test_rate_limits_and_5xx_burst_are_absorbed(gh):
    healthy_org(gh)
    gh.fault(f"/orgs/{ORG}", (429, '{"message": "secondary rate limit"}', {"Retry-After": "0"}))
    gh.fault(
        f"/orgs/{ORG}/outside_collaborators",
        (403, '{"message": "You have exceeded a secondary rate limit."}', {}),
    )
    gh.fault(
        f"/repos/{ORG}/api/branches/main/protection",
        (502, "<html>Bad gateway</html>", {}),
        (503, "", {}),
        (500, "", {}),
    )
    run = run_built(connector(gh))
    records = run.records
    assert all(c.ok for c in coverage(records).values())
    found = run.findings
    assert by_status(found, "fail") == set() and by_status(found, "error") == set()
    assert gh.requests.count(f"/repos/{ORG}/api/branches/main/protection") == 4


def test_malformed_json_fails_only_its_unit(gh):
    healthy_org(gh)
    gh.fault(f"/orgs/{ORG}/repos", (200, '[{"full_name": "acme/api", ', {}))
    run = run_built(connector(gh))
    records = run.records
    cov = coverage(records)
    assert not cov["repo"].ok and "malformed JSON" in cov["repo"].error
    assert all(c.ok for s, c in cov.items() if s != "repo")
    errors = {f.check_id for f in run.findings if f.status == "error"}
    assert errors == {s.id for s in GitHubConnector.checks() if s.id.startswith("github.repo.")}


def test_unreadable_protection_is_an_error_for_that_repo_only(gh):
    healthy_org(gh)
    gh.repos.append(repository("broken", 9))
    gh.fault(f"/repos/{ORG}/broken/rules/branches/main", (200, "{oops", {}))
    run = run_built(connector(gh))
    records = run.records
    assert coverage(records)["repo"].ok
    assert by_status(run.findings, "error") == {
        ("github.repo.branch_protection", f"{ORG}/broken"),
        ("github.repo.force_push_blocked", f"{ORG}/broken"),
    }


def test_non_owner_token_gives_errors_not_verdicts(gh):
    healthy_org(gh)
    gh.owner_token = False
    run = run_built(connector(gh))
    records = run.records
    assert all(c.ok for c in coverage(records).values())
    found = run.findings
    errors = by_status(found, "error")
    assert ("github.org.two_factor_required", ORG) in errors
    assert ("github.org.default_permission", ORG) in errors
    assert {("github.member.two_factor", m["login"]) for m in gh.members} <= errors
    msg = next(f.message for f in found if f.check_id == "github.org.two_factor_required")
    assert "owners" in msg
    assert by_status(found, "fail") == set()


def test_empty_org(gh):
    run = run_built(connector(gh))
    records = run.records
    assert all(c.ok for c in coverage(records).values())
    assert [e.resource_type for e in evidence(records)] == ["github.org.settings"]
    statuses = {(f.check_id, f.status) for f in run.findings}
    assert statuses == {
        ("github.org.two_factor_required", "pass"),
        ("github.org.owner_count", "pass"),
        ("github.org.default_permission", "pass"),
    }


def test_page_loop_is_a_unit_error(gh):
    healthy_org(gh)
    gh.looping.add(f"/orgs/{ORG}/outside_collaborators")
    records = collect(connector(gh))
    cov = coverage(records)
    assert not cov["collaborator"].ok and "loop" in cov["collaborator"].error
    assert cov["member"].ok and cov["repo"].ok


def test_leaked_secret_values_and_token_never_stored(gh):
    healthy_org(gh)
    gh.secrets.append(secret_alert("web", 1, days=1))
    records = collect(connector(gh))
    bodies = [e.body() for e in evidence(records)]
    assert all(LEAKED not in b and TOKEN not in b for b in bodies)
    assert all("[REDACTED]" not in b for b in bodies)
    alert = evidence(records, "github.secretscanning.alert")[0].payload
    assert alert["kind"] == "aws_access_key_id" and "secret" not in alert
    request, _ = gh.server.log[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"


def test_pseudonymised_logins(gh):
    healthy_org(gh)
    records = collect(
        connector(gh, pseudonymise=True, pseudonymise_key={"env": "ANNEXA_TEST_PSEUDONYM_KEY"})
    )
    bodies = " ".join(e.body() for e in evidence(records))
    assert "octo-owner" not in bodies and "contractor" not in bodies
    ids = {e.resource_id for e in evidence(records, "github.member.account")}
    assert all(i.startswith("pseud:") for i in ids)
    org = evidence(records, "github.org.settings")[0].payload
    assert set(org["owners"]) <= ids


def test_enterprise_server_base_path(httpserver, monkeypatch):
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_GITHUB_TOKEN", TOKEN)
    ghes = FakeGitHub(httpserver, prefix="/api/v3")
    healthy_org(ghes)
    records = collect(connector(ghes))
    assert all(c.ok for c in coverage(records).values())
    assert all(p.startswith("/api/v3/") for p in ghes.requests)


def test_options_validation():
    base = {"organization": "acme", "token": {"env": "X"}}
    assert GitHubOptions.model_validate(base).api_url == "https://api.github.com"
    for bad in (
        {**base, "api_url": "http://ghe.example.com/api/v3"},
        {**base, "organization": "bad org"},
        {"organization": "acme"},
        {**base, "pseudonymise": True},
    ):
        with pytest.raises(ValueError):
            GitHubOptions.model_validate(bad)


# --------------------------------------------------------------------------- pure checks


def judge(check_id: str, payload: dict, **params: Any) -> Finding:
    return judge_payload(ORG, check_id, payload, resource_id="r", **params)


def test_checks_on_payloads():
    repo = {
        "full_name": "acme/x",
        "default_branch": "main",
        "archived": False,
        "default_branch_protection": {
            "sources": [],
            "pull_request_required": False,
            "required_approving_reviews": 0,
            "force_push_blocked": False,
        },
    }
    # Unknown security_and_analysis → error, never fail.
    f = judge(
        "github.repo.secret_scanning",
        {**repo, "_errors": {"secret_scanning_enabled": "not returned"}},
    )
    assert f.status == "error"
    # Reviews present but too few.
    two = {
        **repo,
        "default_branch_protection": {
            "sources": ["ruleset:1"],
            "pull_request_required": True,
            "required_approving_reviews": 1,
            "force_push_blocked": True,
        },
    }
    assert judge("github.repo.branch_protection", two, min_approvals=2).status == "fail"
    assert judge("github.repo.branch_protection", two).status == "pass"
    # Dismissed alerts are not judged; every documented severity has its SLA; a severity
    # GitHub does not document is an error.
    alert = {"state": "open", "severity": "medium", "created_at": ts(400)}
    assert judge("github.dependabot.alerts_within_sla", alert).status == "fail"
    assert (
        judge("github.dependabot.alerts_within_sla", {**alert, "state": "dismissed"}).status
        == "not_applicable"
    )
    assert (
        judge("github.dependabot.alerts_within_sla", {**alert, "severity": "moderate"}).status
        == "error"
    )
    assert (
        judge(
            "github.dependabot.alerts_within_sla",
            {**alert, "severity": "critical", "created_at": ts(5)},
            sla_days_critical=3,
        ).status
        == "fail"
    )


def test_every_github_check_is_documented():
    specs = GitHubConnector.checks()
    assert len(specs) >= 10
    for s in specs:
        assert s.title and s.rationale and s.remediation and s.severity


# --------------------------------------------------------------------------- real shapes
# Judged by the run engine (tests/harness.py), as `annexa collect` would.


def engine_options(gh: FakeGitHub) -> dict[str, Any]:
    return {
        "organization": ORG,
        "api_url": gh.api_url,
        "token": {"env": "ANNEXA_TEST_GITHUB_TOKEN"},
        "max_workers": 2,
        "http": {"max_attempts": 2, "retry_min_wait": 0.0, "retry_max_wait": 0.01},
    }


def test_insecure_two_factor_methods_are_judged(gh):
    """``filter=2fa_insecure`` (documented beside ``2fa_disabled``): a member or outside
    collaborator whose only 2FA method GitHub calls insecure passed before the fix; it
    fails by default and ``allow_insecure_methods`` accepts it."""
    healthy_org(gh)
    gh.member("sms-user")
    gh.collaborators.append(simple_user("sms-vendor", 902))
    gh.insecure_2fa |= {"sms-user", "sms-vendor"}
    run = run_engine("github", engine_options(gh))
    assert run.status == "succeeded", run.errors
    assert run.ids("fail") == {
        ("github.member.two_factor", "sms-user"),
        ("github.collaborator.two_factor", "sms-vendor"),
    }
    assert "insecure" in run.one("github.member.two_factor", "sms-user").message
    member = run.payload("github.member.account", "sms-user")
    assert member["two_factor_enabled"] is True and member["two_factor_insecure"] is True
    relaxed = run_engine(
        "github",
        engine_options(gh),
        checks={
            "github.member.two_factor": {"allow_insecure_methods": True},
            "github.collaborator.two_factor": {"allow_insecure_methods": True},
        },
    )
    assert relaxed.ids("fail") == set()


def test_vulnerability_alerts_beyond_their_severity_sla(gh):
    """Dependabot alerts of every documented severity and code-scanning alerts by their
    rule's security severity, each against its SLA (15/30/90/180 days by default);
    non-security code-scanning alerts are not judged. Before the fix medium and low
    Dependabot alerts were not even read, and code scanning was not read at all."""
    healthy_org(gh)
    gh.dependabot += [
        dependabot_alert("api", 2, "critical", days=20),  # > 15
        dependabot_alert("api", 3, "medium", days=100),  # > 90
        dependabot_alert("web", 4, "medium", days=60),
        dependabot_alert("web", 5, "low", days=200),  # > 180
        dependabot_alert("web", 6, "low", days=100),
    ]
    gh.code_alerts += [
        code_alert("api", 1, "critical", days=20),  # > 15
        code_alert("api", 2, "high", days=10),
        code_alert("web", 3, "medium", days=95),  # > 90
        code_alert("web", 4, "low", days=30),
        code_alert("web", 5, None, days=400),  # a code-quality rule: not judged
    ]
    run = run_engine("github", engine_options(gh))
    assert run.status == "succeeded", run.errors
    assert run.ids("fail") == {
        ("github.dependabot.alerts_within_sla", f"{ORG}/api#2"),
        ("github.dependabot.alerts_within_sla", f"{ORG}/api#3"),
        ("github.dependabot.alerts_within_sla", f"{ORG}/web#5"),
        ("github.codescanning.alerts_within_sla", f"{ORG}/api#1"),
        ("github.codescanning.alerts_within_sla", f"{ORG}/web#3"),
    }
    assert run.ids("not_applicable", "github.codescanning") == {
        ("github.codescanning.alerts_within_sla", f"{ORG}/web#5")
    }
    code = run.one("github.codescanning.alerts_within_sla", f"{ORG}/api#1")
    assert set(code.controls) >= {"A.8.8", "A.8.28"}
    stricter = run_engine(
        "github",
        engine_options(gh),
        checks={"github.codescanning.alerts_within_sla": {"sla_days_high": 5}},
    )
    assert ("github.codescanning.alerts_within_sla", f"{ORG}/api#2") in stricter.ids("fail")


def test_code_scanning_per_repository(gh):
    """Default setup configured, an advanced setup (analyses uploaded), none at all, and
    Advanced Security off (403): the last two fail."""
    healthy_org(gh)
    for i, (name, mode) in enumerate(
        (
            ("cs-default", "default"),
            ("cs-advanced", "advanced"),
            ("cs-none", "none"),
            ("cs-off", "off"),
        )
    ):
        gh.repos.append(repository(name, 20 + i))
        gh.rules[name] = ruleset_rules()
        gh.code_scanning[name] = mode
    gh.code_scanning["api"] = "default"
    gh.code_scanning["web"] = "default"
    run = run_engine("github", engine_options(gh))
    assert run.ids("fail") == {
        ("github.repo.code_scanning", f"{ORG}/cs-none"),
        ("github.repo.code_scanning", f"{ORG}/cs-off"),
    }
    assert (
        run.payload("github.repo.repository", f"{ORG}/cs-advanced")["code_scanning_setup"]
        == "advanced"
    )
    assert "A.8.28" in run.one("github.repo.code_scanning", f"{ORG}/cs-none").controls


def test_outside_collaborator_permissions_through_the_run_engine(gh):
    """Every repository role GitHub documents (read, triage, write, maintain, admin) on
    an outside collaborator, judged by the run engine; ``allowed_logins`` approves one."""
    healthy_org(gh)
    roles = ["read", "triage", "write", "maintain", "admin"]
    for i, role in enumerate(roles):
        gh.repos.append(repository(f"r-{role}", 60 + i))
        gh.rules[f"r-{role}"] = ruleset_rules()
        gh.repo_outside[f"r-{role}"] = [(f"ext-{role}", role)]
    gh.repos.append(repository("r-approved", 70))
    gh.rules["r-approved"] = ruleset_rules()
    gh.repo_outside["r-approved"] = [("break-glass-vendor", "admin")]
    check = "github.repo.outside_collaborators_no_admin"
    run = run_engine("github", engine_options(gh),
                     checks={check: {"allowed_logins": ["Break-Glass-Vendor"]}})
    assert run.status == "succeeded", run.errors
    assert run.ids("fail", check) == {(check, f"{ORG}/r-maintain"), (check, f"{ORG}/r-admin")}
    assert {(check, f"{ORG}/r-{r}") for r in ("read", "triage", "write")} | {
        (check, f"{ORG}/r-approved"), (check, f"{ORG}/api"), (check, f"{ORG}/web")
    } == run.ids("pass", check)
    f = run.one(check, f"{ORG}/r-admin")
    assert "ext-admin (admin)" in f.message and tuple(f.controls) == ("A.8.30",)
    assert run.payload("github.repo.repository", f"{ORG}/r-write")["outside_collaborators"] == [
        {"login": "ext-write", "role_name": "write", "permission": "push"}]
    # A refused listing is an error for that repository, never a pass.
    gh.fault(f"/repos/{ORG}/r-read/collaborators",
             *[(403, json.dumps({"message": "Must have admin rights to Repository.",
                                 "documentation_url": "…"}), {})] * 4)
    again = run_engine("github", engine_options(gh))
    assert again.one(check, f"{ORG}/r-read").status == "error"


def test_refused_code_scanning_read_is_an_error_not_a_fail(gh):
    healthy_org(gh)
    gh.fault(
        f"/repos/{ORG}/api/code-scanning/default-setup",
        (403, '{"message": "Resource not accessible by integration"}', {}),
    )
    run = run_engine("github", engine_options(gh))
    assert run.ids("error") == {("github.repo.code_scanning", f"{ORG}/api")}


def test_fake_responses_match_the_openapi_description(gh):
    """Every body the fake served in a full run validates against GitHub's description."""
    healthy_org(gh)
    gh.code_alerts.append(code_alert("api", 1, "high", days=3))
    gh.code_alerts.append(code_alert("api", 2, None, days=3))
    gh.secrets.append(secret_alert("web", 1, days=1))
    gh.repos.append(repository("advanced", 30))
    gh.code_scanning["advanced"] = "advanced"
    gh.repo_outside["advanced"] = [("ext-admin", "admin"), ("ext-read", "read")]
    run_engine("github", engine_options(gh))
    user_list = openapi_schema("github", "simple-user", array=True)
    schemas = [
        (rf"/orgs/{ORG}", openapi_schema("github", "organization-full")),
        (rf"/orgs/{ORG}/members", user_list),
        (rf"/orgs/{ORG}/outside_collaborators", user_list),
        (r"/repos/[^/]+/[^/]+/collaborators", openapi_schema("github", "collaborator",
                                                             array=True)),
        (rf"/orgs/{ORG}/repos", openapi_schema("github", "minimal-repository", array=True)),
        (
            r"/repos/[^/]+/[^/]+/branches/[^/]+/protection",
            openapi_schema("github", "branch-protection"),
        ),
        (
            r"/repos/[^/]+/[^/]+/rules/branches/[^/]+",
            openapi_schema("github", "repository-rule-detailed", array=True),
        ),
        (
            r"/repos/[^/]+/[^/]+/code-scanning/default-setup",
            openapi_schema("github", "code-scanning-default-setup"),
        ),
        (
            r"/repos/[^/]+/[^/]+/code-scanning/analyses",
            openapi_schema("github", "code-scanning-analysis", array=True),
        ),
        (
            rf"/orgs/{ORG}/dependabot/alerts",
            openapi_schema("github", "dependabot-alert-with-repository", array=True),
        ),
        (
            rf"/orgs/{ORG}/code-scanning/alerts",
            openapi_schema("github", "code-scanning-organization-alert-items", array=True),
        ),
        (
            rf"/orgs/{ORG}/secret-scanning/alerts",
            openapi_schema("github", "organization-secret-scanning-alert", array=True),
        ),
    ]
    assert_all_served_valid(gh.served, schemas)


def test_owners_are_listed_once_per_run(gh, httpserver):
    """The org and member units both need the owners: one ``role=admin`` listing
    (benchmarks/calls.py found it read twice); both units still get them."""
    healthy_org(gh)
    run = run_built(connector(gh))
    owner_reads = [
        req for req, _ in httpserver.log
        if req.path == f"/orgs/{ORG}/members" and req.args.get("role") == "admin"
    ]
    assert len(owner_reads) == 1
    settings = next(e for e in run.evidence if e.resource_type == "github.org.settings")
    assert len(settings.payload["owners"]) == 2
    roles = Counter(e.payload.get("role") for e in run.evidence
                    if e.resource_type == "github.member.account")
    assert roles == {"owner": 2, "member": 3}

