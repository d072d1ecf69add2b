"""GitHub repositories: default-branch protection (classic or rulesets) and security features.

API calls, per repository of ``GET /orgs/{org}/repos?type=all`` (archived repositories
are recorded but not inspected further: they are read-only):

* ``GET /repos/{o}/{r}/branches/{default}/protection`` — classic branch protection
  (404 "Branch not protected"; 403 "Upgrade to GitHub Pro…" on plans without it);
* ``GET /repos/{o}/{r}/rules/branches/{default}`` — active ruleset rules for the branch,
  whether set on the repository or the organisation;
* ``GET /repos/{o}/{r}/vulnerability-alerts`` — 204 when Dependabot alerts are on, 404 off;
* ``GET /repos/{o}/{r}/collaborators?affiliation=outside`` — outside collaborators with
  their ``role_name`` and strongest ``permissions`` flag;
* ``GET /repos/{o}/{r}/code-scanning/default-setup`` — ``state`` ``configured`` or
  ``not-configured``; when not configured, ``GET /repos/{o}/{r}/code-scanning/analyses
  ?per_page=1`` shows whether an advanced setup (a workflow or third-party upload)
  analyses the code. A 403 saying code scanning / Advanced Security is not enabled, or a
  404 "no analysis found", means no code scanning; any other refusal is an error.

``security_and_analysis`` (secret scanning, push protection, Dependabot security updates)
comes with the repository listing when the token may administer the repository.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from connectors.http import HttpClient, HTTPStatusError, MalformedResponseError, SourceError
from connectors.kit import ERRORS_KEY, GLOBAL, EvidenceMissing, batches, require
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

REPO_TYPE = "github.repo.repository"

_PLAN_UNAVAILABLE = "upgrade to github pro"
#: 403 messages meaning "code scanning is not enabled here", not "you may not look".
_CODE_SCANNING_OFF = ("advanced security must be enabled", "code scanning is not enabled")


def _enabled(sa: Mapping[str, Any], key: str) -> bool:
    """A ``security_and_analysis`` feature status; absent means not available/enabled."""
    entry = sa.get(key)
    return isinstance(entry, Mapping) and entry.get("status") == "enabled"


def _flag(obj: Any, key: str) -> bool | None:
    entry = obj.get(key) if isinstance(obj, Mapping) else None
    return entry.get("enabled") if isinstance(entry, Mapping) else None


def branch_summary(classic: Mapping[str, Any] | None, rules: list[Mapping[str, Any]]) -> dict:
    """Effective protection of a branch from classic protection and ruleset rules."""
    reviews: list[int] = []
    sources: list[str] = []
    force_push_blocked = False
    deletion_blocked = False
    if classic is not None:
        sources.append("branch_protection")
        pr = classic.get("required_pull_request_reviews")
        if isinstance(pr, Mapping):
            reviews.append(int(pr.get("required_approving_review_count") or 0))
        force_push_blocked = _flag(classic, "allow_force_pushes") is not True
        deletion_blocked = _flag(classic, "allow_deletions") is not True
    for rule in rules:
        kind = rule.get("type")
        rid = rule.get("ruleset_id")
        if rid is not None and f"ruleset:{rid}" not in sources:
            sources.append(f"ruleset:{rid}")
        if kind == "pull_request":
            params = rule.get("parameters") if isinstance(rule.get("parameters"), Mapping) else {}
            reviews.append(int(params.get("required_approving_review_count") or 0))
        elif kind == "non_fast_forward":
            force_push_blocked = True
        elif kind == "deletion":
            deletion_blocked = True
    return {
        "sources": sources,
        "pull_request_required": bool(reviews),
        "required_approving_reviews": max(reviews) if reviews else 0,
        "force_push_blocked": force_push_blocked,
        "deletion_blocked": deletion_blocked,
        "admins_enforced": _flag(classic, "enforce_admins") if classic is not None else None,
    }


def _read_protection(http: HttpClient, repo: Mapping[str, Any]) -> dict[str, Any]:
    """Branch protection and Dependabot-alerts state of one repository; read failures are
    recorded under ``_errors`` so only this repository's findings become ``error``."""
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    full = str(repo["full_name"])
    owner, _, name = full.partition("/")
    base = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
    branch = repo.get("default_branch")
    classic: Mapping[str, Any] | None = None
    rules: list[Mapping[str, Any]] = []
    if branch:
        qb = quote(str(branch), safe="")
        try:
            resp = http.get(f"{base}/branches/{qb}/protection", allow_status={403, 404})
            if resp.status_code == 200:
                body = resp.json()
                classic = body if isinstance(body, Mapping) else None
            elif resp.status_code == 403:
                msg = str(resp.json().get("message", "")) if resp.content else ""
                if _PLAN_UNAVAILABLE not in msg.lower():
                    errors["branch_protection"] = f"HTTP 403: {msg or 'forbidden'}"
                else:
                    out["classic_protection_unavailable"] = True
        except SourceError as exc:
            errors["branch_protection"] = str(exc)
        try:
            rules = [
                r
                for r in http.paginate_links(
                    f"{base}/rules/branches/{qb}", params={"per_page": 100}
                )
                if isinstance(r, Mapping)
            ]
        except SourceError as exc:
            errors["rulesets"] = str(exc)
    out["default_branch_protection"] = branch_summary(classic, rules)
    try:
        resp = http.get(f"{base}/vulnerability-alerts", allow_status={404})
        out["dependabot_alerts_enabled"] = resp.status_code == 204 or resp.status_code == 200
    except SourceError as exc:
        errors["dependabot_alerts_enabled"] = str(exc)
    try:
        out["code_scanning_setup"] = _code_scanning_setup(http, base)
    except SourceError as exc:
        errors["code_scanning_setup"] = str(exc)
    try:
        out["outside_collaborators"] = _outside_collaborators(http, base)
    except SourceError as exc:
        errors["outside_collaborators"] = str(exc)
    if errors:
        out[ERRORS_KEY] = errors
    return out


#: Repository permissions from strongest to weakest (``collaborator.permissions``).
_PERMISSION_ORDER = ("admin", "maintain", "push", "triage", "pull")


def _outside_collaborators(http: HttpClient, base: str) -> list[dict[str, Any]]:
    """Outside collaborators of one repository with their effective permission
    (``GET …/collaborators?affiliation=outside``: login, ``role_name`` — a base or
    custom role — and the ``permissions`` booleans)."""
    out = []
    for c in http.paginate_links(f"{base}/collaborators",
                                 params={"affiliation": "outside", "per_page": 100}):
        if not isinstance(c, Mapping) or not c.get("login"):
            raise MalformedResponseError(f"a collaborator without login in {base}/collaborators")
        perms = c.get("permissions") if isinstance(c.get("permissions"), Mapping) else {}
        strongest = next((p for p in _PERMISSION_ORDER if perms.get(p) is True), None)
        out.append({"login": c["login"], "role_name": c.get("role_name"),
                    "permission": strongest})
    return sorted(out, key=lambda c: str(c["login"]).lower())


def _message(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    return str(body.get("message", "")) if isinstance(body, Mapping) else ""


def _code_scanning_setup(http: HttpClient, base: str) -> str | None:
    """``"default"``, ``"advanced"`` or None (no code scanning) for one repository."""
    resp = http.get(f"{base}/code-scanning/default-setup", allow_status={403, 404})
    if resp.status_code == 200:
        body = resp.json()
        if isinstance(body, Mapping) and body.get("state") == "configured":
            return "default"
    elif resp.status_code == 403:
        msg = _message(resp)
        if any(m in msg.lower() for m in _CODE_SCANNING_OFF):
            return None
        raise HTTPStatusError(
            f"code scanning default setup refused: {msg or 'forbidden'}",
            url=str(resp.url),
            status=403,
        )
    resp = http.get(
        f"{base}/code-scanning/analyses", params={"per_page": 1}, allow_status={403, 404}
    )
    if resp.status_code == 200:
        body = resp.json()
        return "advanced" if isinstance(body, list) and body else None
    msg = _message(resp)
    if resp.status_code == 404 or any(m in msg.lower() for m in _CODE_SCANNING_OFF):
        return None
    raise HTTPStatusError(
        f"code scanning analyses refused: {msg or 'forbidden'}", url=str(resp.url), status=403
    )


def repo_payload(repo: Mapping[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "full_name": repo.get("full_name"),
        "name": repo.get("name"),
        "private": repo.get("private"),
        "visibility": repo.get("visibility"),
        "archived": repo.get("archived"),
        "fork": repo.get("fork"),
        "default_branch": repo.get("default_branch"),
    }
    sa = repo.get("security_and_analysis")
    if isinstance(sa, Mapping):
        payload["secret_scanning_enabled"] = _enabled(sa, "secret_scanning")
        payload["push_protection_enabled"] = _enabled(sa, "secret_scanning_push_protection")
        payload["dependabot_security_updates_enabled"] = _enabled(sa, "dependabot_security_updates")
    else:
        reason = (
            "security_and_analysis not returned (the token needs admin rights on the "
            "repository, or organisation owner)"
        )
        payload[ERRORS_KEY] = {
            k: reason
            for k in (
                "secret_scanning_enabled",
                "push_protection_enabled",
                "dependabot_security_updates_enabled",
            )
        }
    return payload


def read_repos(
    http: HttpClient,
    org: str,
    *,
    include_archived: bool,
    max_workers: int,
    cancelled: Callable[[], bool],
    pseudo: Callable[[str | None], str | None] | None = None,
) -> Iterator[Evidence]:
    q = quote(org, safe="")

    def repos() -> Iterator[Mapping[str, Any]]:
        for repo in http.paginate_links(
            f"/orgs/{q}/repos", params={"type": "all", "per_page": 100}
        ):
            if not isinstance(repo, Mapping) or not repo.get("full_name"):
                raise MalformedResponseError(f"a repository without full_name in /orgs/{org}/repos")
            if repo.get("archived") and not include_archived:
                continue
            yield repo

    def inspect(repo: Mapping[str, Any]) -> dict[str, Any]:
        payload = repo_payload(repo)
        if repo.get("archived"):
            return payload
        extra = _read_protection(http, repo)
        if pseudo is not None:  # logins are personal data: pseudonymised like members'
            for person in extra.get("outside_collaborators") or []:
                person["login"] = pseudo(person["login"])
        errors = {**payload.pop(ERRORS_KEY, {}), **extra.pop(ERRORS_KEY, {})}
        payload.update(extra)
        if errors:
            payload[ERRORS_KEY] = errors
        return payload

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="github-repos") as pool:
        for batch in batches(repos(), 100):
            if cancelled():
                return
            for repo, payload in zip(batch, pool.map(inspect, batch), strict=True):
                yield Evidence(org, GLOBAL, REPO_TYPE, str(repo["full_name"]), payload)


# --------------------------------------------------------------------------- checks


def _skip_archived(payload: Mapping[str, Any]) -> Verdict | None:
    if payload.get("archived"):
        return not_applicable(f"{payload.get('full_name')} is archived (read-only)")
    return None


def _protection(
    payload: Mapping[str, Any], ok: Callable[[Mapping[str, Any]], bool]
) -> tuple[Mapping[str, Any], bool]:
    """The branch summary and whether ``ok`` holds; raises when a failing verdict could be
    due to protection that could not be read."""
    summary = require(payload, "default_branch_protection")
    good = ok(summary)
    errors = payload.get(ERRORS_KEY) or {}
    unread = [k for k in ("branch_protection", "rulesets") if k in errors]
    if not good and unread:
        raise EvidenceMissing(
            f"{' and '.join(unread)} could not be read: " + "; ".join(errors[k] for k in unread)
        )
    return summary, good


@check("github.repo.branch_protection")
def repo_branch_protection(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _skip_archived(payload)) is not None:
        return na
    need = params["min_approvals"]
    summary, good = _protection(
        payload,
        lambda s: (
            bool(s.get("pull_request_required"))
            and int(s.get("required_approving_reviews") or 0) >= need
        ),
    )
    name, branch = payload.get("full_name"), payload.get("default_branch")
    if good:
        return passed(
            f"{name}:{branch} requires a pull request with "
            f"{summary['required_approving_reviews']} approval(s) ({', '.join(summary['sources'])})"
        )
    if not summary.get("pull_request_required"):
        return failed(f"{name}:{branch} can be pushed to without a pull request")
    return failed(
        f"{name}:{branch} requires {summary.get('required_approving_reviews')} approval(s), "
        f"fewer than {need}"
    )


@check("github.repo.force_push_blocked")
def repo_force_push_blocked(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _skip_archived(payload)) is not None:
        return na
    _, good = _protection(payload, lambda s: bool(s.get("force_push_blocked")))
    name, branch = payload.get("full_name"), payload.get("default_branch")
    if good:
        return passed(f"{name}:{branch} blocks force pushes")
    return failed(f"{name}:{branch} accepts force pushes")


def _feature(payload: Mapping[str, Any], key: str, what: str) -> Verdict:
    if (na := _skip_archived(payload)) is not None:
        return na
    if require(payload, key) is True:
        return passed(f"{what} is enabled on {payload.get('full_name')}")
    return failed(f"{what} is not enabled on {payload.get('full_name')}")


@check("github.repo.secret_scanning")
def repo_secret_scanning(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _feature(payload, "secret_scanning_enabled", "secret scanning")


@check("github.repo.secret_scanning_push_protection")
def repo_push_protection(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _feature(payload, "push_protection_enabled", "secret scanning push protection")


@check("github.repo.dependabot_alerts")
def repo_dependabot_alerts(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _feature(payload, "dependabot_alerts_enabled", "Dependabot alerts")


@check("github.repo.dependabot_security_updates")
def repo_dependabot_updates(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _feature(payload, "dependabot_security_updates_enabled", "Dependabot security updates")


@check("github.repo.code_scanning")
def repo_code_scanning(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _skip_archived(payload)) is not None:
        return na
    setup = require(payload, "code_scanning_setup")
    if setup:
        return passed(f"code scanning ({setup} setup) analyses {payload.get('full_name')}")
    return failed(f"no code scanning analyses {payload.get('full_name')}")


@check("github.repo.outside_collaborators_no_admin")
def repo_outside_collaborators_no_admin(
    payload: Mapping[str, Any], params: Mapping[str, Any]
) -> Verdict:
    if (na := _skip_archived(payload)) is not None:
        return na
    people = require(payload, "outside_collaborators")
    forbidden = {str(p).lower() for p in params["forbidden_permissions"]}
    allowed = {str(a).lower() for a in params["allowed_logins"]}
    too_strong = [f"{c['login']} ({c.get('role_name') or c.get('permission')})"
                  for c in people
                  if str(c.get("permission")).lower() in forbidden
                  and str(c["login"]).lower() not in allowed]
    name = payload.get("full_name")
    if too_strong:
        return failed(f"{name}: outside collaborators with {'/'.join(sorted(forbidden))} "
                      f"permission: {', '.join(too_strong)}")
    if not people:
        return passed(f"{name} has no outside collaborators")
    return passed(f"{name}: {len(people)} outside collaborator(s), with permission "
                  + ", ".join(sorted({str(c.get('permission')) for c in people})))
