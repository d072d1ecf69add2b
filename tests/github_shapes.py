"""GitHub REST API objects as GitHub's OpenAPI description documents them.

Source: ``@octokit/openapi`` 23.0.2 ``generated/api.github.com.json`` (GitHub's
rest-api-description, API version 2022-11-28); every required property of
``simple-user``, ``simple-repository``/``minimal-repository``, ``organization-full``,
``pull-request-simple``/``pull-request``, ``pull-request-review``, ``check-run``,
``combined-commit-status``, ``status-check-policy``, ``dependabot-alert-with-repository``,
``code-scanning-organization-alert-items`` and ``organization-secret-scanning-alert`` is
present with its documented type, so the fakes of tests/test_github.py and
tests/test_github_pulls.py validate against tests/vendor/github (see
tests/vendor_schemas.py). Only the fields a test varies are parameters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

API = "https://api.github.com"
WEB = "https://github.com"
NOW = datetime.now(UTC)


def ts(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def simple_user(login: str, uid: int = 1, kind: str = "User") -> dict[str, Any]:
    u = f"{API}/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": f"MDQ6VXNlcj{uid}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "",
        "url": u,
        "html_url": f"{WEB}/{login}",
        "followers_url": f"{u}/followers",
        "following_url": f"{u}/following{{/other_user}}",
        "gists_url": f"{u}/gists{{/gist_id}}",
        "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{u}/subscriptions",
        "organizations_url": f"{u}/orgs",
        "repos_url": f"{u}/repos",
        "events_url": f"{u}/events{{/privacy}}",
        "received_events_url": f"{u}/received_events",
        "type": kind,
        "site_admin": False,
        "user_view_type": "public",
    }


_REPO_URLS = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


def simple_repository(full_name: str, rid: int = 7, *, private: bool = True) -> dict[str, Any]:
    """``simple-repository`` (what alerts embed)."""
    owner, _, name = full_name.partition("/")
    base = f"{API}/repos/{full_name}"
    repo: dict[str, Any] = {
        "id": rid,
        "node_id": f"R_kgDO{rid:06d}",
        "name": name,
        "full_name": full_name,
        "owner": simple_user(owner, 1, "Organization"),
        "private": private,
        "html_url": f"{WEB}/{full_name}",
        "description": None,
        "fork": False,
        "url": base,
    }
    repo.update({k: base + suffix for k, suffix in _REPO_URLS.items()})
    return repo


def full_repository(full_name: str, rid: int = 7, **fields: Any) -> dict[str, Any]:
    """``full-repository`` / the ``repository`` of a pull request's head and base, which
    also satisfies ``minimal-repository`` (``GET /orgs/{org}/repos`` items)."""
    repo = simple_repository(full_name, rid, private=fields.get("private", True))
    base = repo["url"]
    repo.update(
        {
            "clone_url": f"{WEB}/{full_name}.git",
            "git_url": f"git://github.com/{full_name}.git",
            "ssh_url": f"git@github.com:{full_name}.git",
            "svn_url": f"{WEB}/{full_name}",
            "mirror_url": None,
            "homepage": None,
            "language": "Python",
            "forks": 0,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "size": 1024,
            "default_branch": "main",
            "open_issues": 0,
            "open_issues_count": 0,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "private",
            "pushed_at": ts(0.1),
            "created_at": ts(800),
            "updated_at": ts(0.1),
            "permissions": {
                "admin": True,
                "maintain": True,
                "push": True,
                "triage": True,
                "pull": True,
            },
            "allow_forking": False,
            "web_commit_signoff_required": False,
            "license": None,
            "network_count": 0,
            "subscribers_count": 3,
            "hooks_url": f"{base}/hooks",
        }
    )
    repo.update(fields)
    repo["visibility"] = "private" if repo["private"] else "public"
    return repo


def organization_full(login: str, **fields: Any) -> dict[str, Any]:
    base = f"{API}/orgs/{login}"
    org: dict[str, Any] = {
        "login": login,
        "id": 1,
        "node_id": "O_kgDOAAAAAQ",
        "url": base,
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events",
        "hooks_url": f"{base}/hooks",
        "issues_url": f"{base}/issues",
        "members_url": f"{base}/members{{/member}}",
        "public_members_url": f"{base}/public_members{{/member}}",
        "avatar_url": "https://avatars.githubusercontent.com/u/1?v=4",
        "description": None,
        "name": login.title(),
        "html_url": f"{WEB}/{login}",
        "has_organization_projects": True,
        "has_repository_projects": True,
        "public_repos": 0,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "type": "Organization",
        "created_at": ts(2000),
        "updated_at": ts(3),
        "archived_at": None,
        "plan": {"name": "enterprise", "space": 976562499, "private_repos": 999999},
        "default_repository_permission": "read",
        "members_can_create_repositories": False,
        "members_can_create_public_repositories": False,
        "two_factor_requirement_enabled": True,
    }
    org.update(fields)
    return org


# --------------------------------------------------------------------------- pull requests


def _branch(full_name: str, ref: str, sha: str) -> dict[str, Any]:
    owner = full_name.partition("/")[0]
    return {
        "label": f"{owner}:{ref}",
        "ref": ref,
        "sha": sha,
        "user": simple_user(owner, 1, "Organization"),
        "repo": full_repository(full_name),
    }


def pull_request_simple(
    full_name: str,
    number: int,
    *,
    author: str,
    title: str,
    head_sha: str,
    base_ref: str,
    created_at: str,
    updated_at: str,
    merged_at: str | None,
    merge_commit_sha: str | None,
    labels: list[str] = (),
) -> dict[str, Any]:
    """``pull-request-simple`` (``GET /repos/{o}/{r}/pulls`` items)."""
    url = f"{API}/repos/{full_name}/pulls/{number}"
    html = f"{WEB}/{full_name}/pull/{number}"
    issue = f"{API}/repos/{full_name}/issues/{number}"
    return {
        "url": url,
        "id": 100000 + number,
        "node_id": f"PR_kwDO{number:08d}",
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": issue,
        "commits_url": f"{url}/commits",
        "review_comments_url": f"{url}/comments",
        "review_comment_url": f"{API}/repos/{full_name}/pulls/comments{{/number}}",
        "comments_url": f"{issue}/comments",
        "statuses_url": f"{API}/repos/{full_name}/statuses/{head_sha}",
        "number": number,
        "state": "closed",
        "locked": False,
        "title": title,
        "user": simple_user(author, 10 + number),
        "body": None,
        "labels": [
            {
                "id": 200 + i,
                "node_id": f"LA_{i}",
                "url": f"{API}/repos/{full_name}/labels/{name}",
                "name": name,
                "description": "",
                "color": "ededed",
                "default": False,
            }
            for i, name in enumerate(labels)
        ],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": created_at,
        "updated_at": updated_at,
        "closed_at": merged_at or updated_at,
        "merged_at": merged_at,
        "merge_commit_sha": merge_commit_sha,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": _branch(full_name, f"feature-{number}", head_sha),
        "base": _branch(full_name, base_ref, "b" * 40),
        "_links": {
            "self": {"href": url},
            "html": {"href": html},
            "issue": {"href": issue},
            "comments": {"href": f"{issue}/comments"},
            "review_comments": {"href": f"{url}/comments"},
            "review_comment": {"href": f"{API}/repos/{full_name}/pulls/comments{{/number}}"},
            "commits": {"href": f"{url}/commits"},
            "statuses": {"href": f"{API}/repos/{full_name}/statuses/{head_sha}"},
        },
        "author_association": "MEMBER",
        "auto_merge": None,
        "draft": False,
    }


def pull_request(simple: dict[str, Any], *, merged_by: str | None) -> dict[str, Any]:
    """``pull-request`` (``GET /repos/{o}/{r}/pulls/{n}``) from its listed form."""
    return {
        **simple,
        "merged": simple["merged_at"] is not None,
        "mergeable": None,
        "rebaseable": None,
        "mergeable_state": "unknown",
        "merged_by": simple_user(merged_by, 500) if merged_by else None,
        "comments": 7,
        "review_comments": 2,
        "maintainer_can_modify": False,
        "commits": 3,
        "additions": 10,
        "deletions": 2,
        "changed_files": 1,
    }


def review(
    full_name: str,
    number: int,
    rid: int,
    *,
    login: str,
    state: str,
    submitted_at: str,
    commit_id: str | None,
    association: str,
) -> dict[str, Any]:
    """``pull-request-review``."""
    html = f"{WEB}/{full_name}/pull/{number}#pullrequestreview-{rid}"
    return {
        "id": rid,
        "node_id": f"PRR_kwDO{rid:08d}",
        "user": simple_user(login, 300 + rid % 1000),
        "body": "",
        "state": state,
        "html_url": html,
        "pull_request_url": f"{API}/repos/{full_name}/pulls/{number}",
        "_links": {
            "html": {"href": html},
            "pull_request": {"href": f"{API}/repos/{full_name}/pulls/{number}"},
        },
        "submitted_at": submitted_at,
        "commit_id": commit_id,
        "author_association": association,
    }


def _app() -> dict[str, Any]:
    return {
        "id": 15368,
        "slug": "github-actions",
        "node_id": "MDM6QXBwMTUzNjg=",
        "owner": simple_user("github", 9919, "Organization"),
        "name": "GitHub Actions",
        "description": "Automate your workflow from idea to production",
        "external_url": "https://help.github.com/en/actions",
        "html_url": f"{WEB}/apps/github-actions",
        "created_at": "2018-07-30T09:30:17Z",
        "updated_at": "2024-04-10T20:33:16Z",
        "permissions": {"checks": "write", "contents": "write", "metadata": "read"},
        "events": ["check_run", "check_suite", "pull_request", "push"],
    }


def check_run(
    full_name: str, rid: int, *, name: str, head_sha: str, status: str, conclusion: str | None
) -> dict[str, Any]:
    """``check-run``."""
    return {
        "id": rid,
        "node_id": f"CR_kwDO{rid:08d}",
        "head_sha": head_sha,
        "external_id": "",
        "url": f"{API}/repos/{full_name}/check-runs/{rid}",
        "html_url": f"{WEB}/{full_name}/runs/{rid}",
        "details_url": f"{WEB}/{full_name}/actions/runs/{rid}/job/{rid}",
        "status": status,
        "conclusion": conclusion,
        "started_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:05:00Z" if status == "completed" else None,
        "output": {
            "title": None,
            "summary": None,
            "text": None,
            "annotations_count": 0,
            "annotations_url": f"{API}/repos/{full_name}/check-runs/{rid}/annotations",
        },
        "name": name,
        "check_suite": {"id": 9000 + rid},
        "app": _app(),
        "pull_requests": [],
    }


def commit_status(full_name: str, sid: int, *, context: str, state: str) -> dict[str, Any]:
    """``simple-commit-status``."""
    return {
        "id": sid,
        "node_id": f"SC_kwDO{sid:08d}",
        "url": f"{API}/repos/{full_name}/statuses/{'a' * 40}",
        "avatar_url": None,
        "state": state,
        "description": None,
        "target_url": None,
        "context": context,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:05:00Z",
        "required": None,
    }


def combined_status(full_name: str, sha: str, statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """``combined-commit-status``."""
    states = {s["state"] for s in statuses}
    state = (
        "pending"
        if not statuses or "pending" in states
        else "failure"
        if states - {"success"}
        else "success"
    )
    return {
        "state": state,
        "sha": sha,
        "total_count": len(statuses),
        "statuses": statuses,
        "repository": full_repository(full_name),
        "commit_url": f"{API}/repos/{full_name}/commits/{sha}",
        "url": f"{API}/repos/{full_name}/commits/{sha}/status",
    }


def status_check_policy(full_name: str, branch: str, contexts: list[str]) -> dict[str, Any]:
    url = f"{API}/repos/{full_name}/branches/{branch}/protection/required_status_checks"
    return {
        "url": url,
        "strict": True,
        "contexts": list(contexts),
        "contexts_url": f"{url}/contexts",
        "checks": [{"context": c, "app_id": None} for c in contexts],
    }


# --------------------------------------------------------------------------- alerts


def dependabot_alert(full_name: str, number: int, severity: str, created: str) -> dict[str, Any]:
    """``dependabot-alert-with-repository`` (``GET /orgs/{org}/dependabot/alerts``)."""
    pkg = {"ecosystem": "npm", "name": "lodash"}
    vulnerability = {
        "package": pkg,
        "severity": severity,
        "vulnerable_version_range": "< 4.17.21",
        "first_patched_version": {"identifier": "4.17.21"},
    }
    ghsa = f"GHSA-{number:04d}-abcd-efgh"
    return {
        "number": number,
        "state": "open",
        "dependency": {
            "package": pkg,
            "manifest_path": "package-lock.json",
            "scope": "runtime",
            "relationship": "direct",
        },
        "security_advisory": {
            "ghsa_id": ghsa,
            "cve_id": f"CVE-2026-{number:04d}",
            "summary": "Prototype pollution",
            "description": "…",
            "vulnerabilities": [vulnerability],
            "severity": severity,
            "cvss": {"score": 7.4, "vector_string": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N"},
            "cwes": [{"cwe_id": "CWE-1321", "name": "Prototype Pollution"}],
            "identifiers": [{"value": ghsa, "type": "GHSA"}],
            "references": [{"url": f"https://github.com/advisories/{ghsa}"}],
            "published_at": created,
            "updated_at": created,
            "withdrawn_at": None,
        },
        "security_vulnerability": vulnerability,
        "url": f"{API}/repos/{full_name}/dependabot/alerts/{number}",
        "html_url": f"{WEB}/{full_name}/security/dependabot/{number}",
        "created_at": created,
        "updated_at": created,
        "dismissed_at": None,
        "dismissed_by": None,
        "dismissed_reason": None,
        "dismissed_comment": None,
        "fixed_at": None,
        "auto_dismissed_at": None,
        "repository": simple_repository(full_name),
    }


def code_scanning_alert(
    full_name: str,
    number: int,
    *,
    created: str,
    security_severity: str | None,
    severity: str = "warning",
    tool: str = "CodeQL",
) -> dict[str, Any]:
    """``code-scanning-organization-alert-items`` (``GET /orgs/{org}/code-scanning/alerts``)."""
    return {
        "number": number,
        "created_at": created,
        "updated_at": created,
        "url": f"{API}/repos/{full_name}/code-scanning/alerts/{number}",
        "html_url": f"{WEB}/{full_name}/security/code-scanning/{number}",
        "instances_url": f"{API}/repos/{full_name}/code-scanning/alerts/{number}/instances",
        "state": "open",
        "fixed_at": None,
        "dismissed_by": None,
        "dismissed_at": None,
        "dismissed_reason": None,
        "dismissed_comment": None,
        "rule": {
            "id": "js/sql-injection",
            "name": "js/sql-injection",
            "severity": severity,
            "security_severity_level": security_severity,
            "description": "Database query built from user-controlled sources",
            "tags": ["security", "external/cwe/cwe-089"],
        },
        "tool": {"name": tool, "guid": None, "version": "2.19.0"},
        "most_recent_instance": {
            "ref": "refs/heads/main",
            "analysis_key": ".github/workflows/codeql.yml:analyze",
            "environment": "{}",
            "category": ".github/workflows/codeql.yml:analyze/language:javascript",
            "state": "open",
            "commit_sha": "c" * 40,
            "message": {"text": "This query depends on a user-provided value."},
            "location": {
                "path": "src/db.js",
                "start_line": 10,
                "end_line": 10,
                "start_column": 5,
                "end_column": 30,
            },
            "classifications": [],
        },
        "repository": simple_repository(full_name),
    }


def secret_scanning_alert(
    full_name: str, number: int, *, created: str, value: str, validity: str = "active"
) -> dict[str, Any]:
    """``organization-secret-scanning-alert`` (``GET /orgs/{org}/secret-scanning/alerts``)."""
    return {
        "number": number,
        "created_at": created,
        "updated_at": created,
        "url": f"{API}/repos/{full_name}/secret-scanning/alerts/{number}",
        "html_url": f"{WEB}/{full_name}/security/secret-scanning/{number}",
        "locations_url": f"{API}/repos/{full_name}/secret-scanning/alerts/{number}/locations",
        "state": "open",
        "resolution": None,
        "resolved_at": None,
        "resolved_by": None,
        "secret_type": "aws_access_key_id",
        "secret_type_display_name": "AWS Access Key ID",
        "provider": "AWS",
        "provider_slug": "aws",
        "secret": value,
        "repository": simple_repository(full_name),
        "push_protection_bypassed": False,
        "push_protection_bypassed_by": None,
        "push_protection_bypassed_at": None,
        "push_protection_bypass_request_reviewer": None,
        "push_protection_bypass_request_reviewer_comment": None,
        "push_protection_bypass_request_comment": None,
        "push_protection_bypass_request_html_url": None,
        "resolution_comment": None,
        "validity": validity,
        "publicly_leaked": False,
        "multi_repo": False,
        "is_base64_encoded": False,
        "first_location_detected": None,
        "has_more_locations": False,
        "assigned_to": None,
    }


# --------------------------------------------------------------------------- rulesets


def _ruleset(ruleset_id: int, source: str) -> dict[str, Any]:
    kind = "Repository" if "/" in source else "Organization"
    return {"ruleset_source_type": kind, "ruleset_source": source, "ruleset_id": ruleset_id}


def rule(kind: str, ruleset_id: int, source: str) -> dict[str, Any]:
    """A parameterless ``repository-rule-detailed`` (``deletion``, ``non_fast_forward``…)."""
    return {"type": kind, **_ruleset(ruleset_id, source)}


def rule_pull_request(ruleset_id: int, source: str, reviews: int) -> dict[str, Any]:
    return {
        "type": "pull_request",
        "parameters": {
            "required_approving_review_count": reviews,
            "dismiss_stale_reviews_on_push": True,
            "require_code_owner_review": False,
            "require_last_push_approval": False,
            "required_review_thread_resolution": False,
            "allowed_merge_methods": ["merge", "squash", "rebase"],
        },
        **_ruleset(ruleset_id, source),
    }


def rule_required_checks(ruleset_id: int, source: str, contexts: list[str]) -> dict[str, Any]:
    return {
        "type": "required_status_checks",
        "parameters": {
            "required_status_checks": [{"context": c, "integration_id": 15368} for c in contexts],
            "strict_required_status_checks_policy": False,
        },
        **_ruleset(ruleset_id, source),
    }


# --------------------------------------------------------------------------- code scanning


def code_scanning_default_setup(configured: bool) -> dict[str, Any]:
    """``code-scanning-default-setup`` (``GET /repos/{o}/{r}/code-scanning/default-setup``)."""
    return {
        "state": "configured" if configured else "not-configured",
        "languages": ["python"] if configured else [],
        "runner_type": "standard" if configured else None,
        "runner_label": None,
        "query_suite": "default",
        "threat_model": "remote",
        "updated_at": ts(30) if configured else None,
        "schedule": "weekly" if configured else None,
    }


def code_scanning_analysis(full_name: str, aid: int, tool: str = "Semgrep") -> dict[str, Any]:
    """``code-scanning-analysis`` (``GET /repos/{o}/{r}/code-scanning/analyses`` items)."""
    return {
        "ref": "refs/heads/main",
        "commit_sha": "d" * 40,
        "analysis_key": ".github/workflows/semgrep.yml:scan",
        "environment": "{}",
        "category": ".github/workflows/semgrep.yml:scan",
        "error": "",
        "created_at": ts(1),
        "results_count": 3,
        "rules_count": 120,
        "id": aid,
        "url": f"{API}/repos/{full_name}/code-scanning/analyses/{aid}",
        "sarif_id": "6c81cd8e-b078-4ac3-a3be-1dad7dbd0b53",
        "tool": {"name": tool, "guid": None, "version": "1.90.0"},
        "deletable": True,
        "warning": "",
    }


#: Repository role → the ``permissions`` flags GitHub reports for it.
_ROLE_PERMISSIONS = {
    "admin": ("admin", "maintain", "push", "triage", "pull"),
    "maintain": ("maintain", "push", "triage", "pull"),
    "write": ("push", "triage", "pull"),
    "triage": ("triage", "pull"),
    "read": ("pull",),
}


def collaborator(login: str, uid: int, role: str) -> dict[str, Any]:
    """``collaborator`` (``GET /repos/{owner}/{repo}/collaborators``): a simple user
    with ``permissions`` (pull, triage, push, maintain, admin) and ``role_name``."""
    flags = _ROLE_PERMISSIONS[role]
    return {**simple_user(login, uid),
            "permissions": {p: p in flags for p in ("pull", "triage", "push", "maintain",
                                                    "admin")},
            "role_name": role}
