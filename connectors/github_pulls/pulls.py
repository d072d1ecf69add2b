"""Merged pull requests of one repository's default branch: reviews and status checks.

API calls (all reads), per configured repository:

* ``GET /repos/{o}/{r}`` — the default branch;
* ``GET /repos/{o}/{r}/rules/branches/{branch}`` — required status checks set by
  rulesets (readable with read access), and ``GET /repos/{o}/{r}/branches/{branch}/
  protection/required_status_checks`` — those of classic branch protection (needs
  *Administration: read*; a 403/404 is recorded, not an error);
* ``GET /repos/{o}/{r}/pulls?state=closed&base={branch}&sort=updated&direction=desc``
  (``Link`` pages), stopping at the first pull request last updated before ``since``;
  closed-unmerged ones are skipped;
* per merged pull request (a bounded thread pool): ``GET /pulls/{n}`` (``merged_by``),
  ``GET /pulls/{n}/reviews``, ``GET /commits/{sha}/check-runs`` and
  ``GET /commits/{sha}/status`` (combined status) for the head commit — the commit the
  required checks gate before merging — or the merge commit (``checks_commit``).

What counts as approval (GitHub's review states ``APPROVED``, ``CHANGES_REQUESTED``,
``COMMENTED``, ``DISMISSED``, ``PENDING``): each reviewer's latest deciding review
submitted before the merge; an ``APPROVED`` one is in force (``DISMISSED`` and a later
``CHANGES_REQUESTED`` withdraw it; comments and pending reviews do not count). It
counts as an approval only when its reviewer is not the author, their
``author_association`` is one of ``approver_associations`` (by default the three that
can hold write access: OWNER, MEMBER, COLLABORATOR) and — with
``approval_must_cover_merged_head`` (default) — its ``commit_id`` is the head commit that
was merged. Approvals that do not count are kept in ``derived.discounted_approvals``
with the reason. The author and — with ``merger_is_implementer`` (default) — whoever
merged are the implementers, so a pull request merged by its only approver fails
segregation of duties.

Required checks pass only with a check-run ``conclusion`` in ``passing_conclusions``
(default ``success``; GitHub documents success, failure, neutral, cancelled, skipped,
timed_out, action_required, stale and startup_failure) after ``status`` ``completed``,
or a commit status ``state`` of ``success``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from connectors.github_pulls.approvals import pr_derived
from connectors.http import HttpClient, MalformedResponseError, SourceError
from connectors.kit import ERRORS_KEY, GLOBAL, EvidenceMissing, batches
from connectors.process import (
    ProcessBase,
    history_entry,
    iso,
    person,
    sort_history,
    stream_population,
)
from core.checks import CheckSpec, Verdict, check, failed, passed
from core.records import Evidence

PREFIX = "github_pulls"
ITEM_TYPE = f"{PREFIX}.change.pull_request"
#: Check-run conclusions (the OpenAPI ``check-run`` enum plus ``stale`` and
#: ``startup_failure``, which GitHub documents for check suites and Actions runs).
CHECK_CONCLUSIONS: tuple[str, ...] = (
    "success",
    "failure",
    "neutral",
    "cancelled",
    "skipped",
    "timed_out",
    "action_required",
    "stale",
    "startup_failure",
)


def gh_person(user: Any) -> dict[str, Any] | None:
    if not isinstance(user, Mapping):
        return None
    return person(user.get("login"))


def required_checks(http: HttpClient, base: str, branch: str) -> tuple[list[str], list[str]]:
    """Required status-check names of ``branch`` and where they were read from."""
    names: set[str] = set()
    sources: list[str] = []
    qb = quote(branch, safe="")
    for rule in http.paginate_links(f"{base}/rules/branches/{qb}", params={"per_page": 100}):
        if isinstance(rule, Mapping) and rule.get("type") == "required_status_checks":
            params = rule.get("parameters") if isinstance(rule.get("parameters"), Mapping) else {}
            for item in params.get("required_status_checks") or []:
                if isinstance(item, Mapping) and item.get("context"):
                    names.add(str(item["context"]))
            sources.append(f"ruleset:{rule.get('ruleset_id')}")
    resp = http.get(
        f"{base}/branches/{qb}/protection/required_status_checks", allow_status={403, 404}
    )
    if resp.status_code == 200:
        body = resp.json()
        if isinstance(body, Mapping):
            names.update(str(c) for c in body.get("contexts") or [])
            for item in body.get("checks") or []:
                if isinstance(item, Mapping) and item.get("context"):
                    names.add(str(item["context"]))
        sources.append("branch_protection")
    else:
        sources.append(f"branch_protection:unreadable (HTTP {resp.status_code})")
    return sorted(names), sorted(set(sources))


class RepoReader:
    """Reads one repository's merged pull requests (thread-safe)."""

    def __init__(self, http: HttpClient, process: Any, repo: str) -> None:
        self.http = http
        self.process = process
        self.repo = repo
        owner, _, name = repo.partition("/")
        self.base = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
        self.required: list[str] = []
        self.required_from: list[str] = []
        self.required_error: str | None = None
        self.branch = ""

    def prepare(self) -> None:
        """Default branch (a failure fails the unit) and its required checks."""
        body = self.http.get_json(self.base)
        if not isinstance(body, Mapping) or not body.get("default_branch"):
            raise MalformedResponseError(f"repository {self.repo} has no default_branch")
        self.branch = str(body["default_branch"])
        try:
            found, self.required_from = required_checks(self.http, self.base, self.branch)
        except SourceError as exc:
            found, self.required_error = [], str(exc)
        self.required = sorted({*found, *self.process.required_checks})

    def merged(self, since: datetime | None) -> Iterator[Mapping[str, Any]]:
        """Merged pull requests into the default branch, newest update first."""
        for pr in self.http.paginate_links(
            f"{self.base}/pulls",
            params={
                "state": "closed",
                "base": self.branch,
                "sort": "updated",
                "direction": "desc",
                "per_page": 100,
            },
        ):
            if not isinstance(pr, Mapping) or not isinstance(pr.get("number"), int):
                raise MalformedResponseError(f"a pull request without a number in {self.repo}")
            try:
                updated = datetime.fromisoformat(str(pr.get("updated_at")).replace("Z", "+00:00"))
            except ValueError:
                updated = None
            if since is not None and updated is not None and updated < since:
                return  # sorted by update time: everything after is older
            if not pr.get("merged_at"):
                continue
            if since is not None and iso(pr["merged_at"]) < iso(since):  # type: ignore[operator]
                continue
            yield pr

    def build(self, listed: Mapping[str, Any]) -> Evidence:
        number = int(listed["number"])
        key = f"{self.repo}#{number}"
        errors: dict[str, str] = {}
        pr: Mapping[str, Any] = listed
        try:
            detail = self.http.get_json(f"{self.base}/pulls/{number}")
            if isinstance(detail, Mapping):
                pr = detail
        except SourceError as exc:
            errors["history"] = f"pull request details: {exc}"
        reviews: list[dict[str, Any]] = []
        try:
            for r in self.http.paginate_links(
                f"{self.base}/pulls/{number}/reviews", params={"per_page": 100}
            ):
                if not isinstance(r, Mapping) or r.get("state") == "PENDING":
                    continue
                reviews.append(
                    {
                        "id": str(r.get("id")),
                        "by": gh_person(r.get("user")),
                        "state": str(r.get("state")),
                        "at": iso(r.get("submitted_at")),
                        "commit": r.get("commit_id"),
                        "association": r.get("author_association"),
                    }
                )
        except SourceError as exc:
            errors["history"] = f"reviews: {exc}"
        except (TypeError, ValueError) as exc:
            errors["history"] = f"malformed review: {exc}"
        head = (pr.get("head") or {}).get("sha") if isinstance(pr.get("head"), Mapping) else None
        sha = head if self.process.checks_commit == "head" else pr.get("merge_commit_sha")
        runs, statuses = [], []
        if not sha:
            errors["checks"] = f"no {self.process.checks_commit} commit sha"
        else:
            try:
                for run in self.http.paginate_links(
                    f"{self.base}/commits/{sha}/check-runs",
                    params={"per_page": 100},
                    items_key="check_runs",
                ):
                    if isinstance(run, Mapping):
                        runs.append(
                            {
                                "name": str(run.get("name")),
                                "status": run.get("status"),
                                "conclusion": run.get("conclusion"),
                                "app": ((run.get("app") or {}).get("slug")),
                            }
                        )
                combined = self.http.get_json(f"{self.base}/commits/{sha}/status")
                for st in (
                    combined.get("statuses") if isinstance(combined, Mapping) else None
                ) or []:
                    if isinstance(st, Mapping):
                        statuses.append(
                            {"context": str(st.get("context")), "state": st.get("state")}
                        )
            except SourceError as exc:
                errors["checks"] = str(exc)
        if self.required_error:
            errors["required_checks"] = self.required_error
        ticket = {
            "key": key,
            "id": str(number),
            "title": pr.get("title"),
            "url": pr.get("html_url"),
            "type": "pull_request",
            "status": "merged",
            "severity": None,
            "created": iso(pr.get("created_at")),
            "resolved": iso(pr.get("merged_at")),
            "requested_by": gh_person(pr.get("user")),
            "assignee": None,
            "merged_by": gh_person(pr.get("merged_by")),
            "repo": self.repo,
            "base": self.branch,
            "head_sha": head,
            "merge_commit_sha": pr.get("merge_commit_sha"),
            "labels": sorted(
                str(lb.get("name")) for lb in pr.get("labels") or [] if isinstance(lb, Mapping)
            ),
            "links": [],
        }
        history = [
            history_entry(at=r["at"], by=r["by"], field="review", to=r["state"], entry_id=r["id"])
            for r in reviews
            if r["at"]
        ]
        history.append(
            history_entry(
                at=ticket["resolved"], by=ticket["merged_by"], field="merged", to="merged"
            )
        )
        payload: dict[str, Any] = {
            "process": "change",
            "ticket": ticket,
            "history": sort_history(history),
            "derived": pr_derived(self.process, ticket, reviews),
            "checks_commit": sha,
            "check_runs": sorted(runs, key=lambda r: (r["name"], str(r["conclusion"]))),
            "statuses": sorted(statuses, key=lambda s: (s["context"], str(s["state"]))),
            "required_checks": self.required,
            "required_checks_from": self.required_from,
            "passing_conclusions": sorted(self.process.passing_conclusions),
        }
        if errors:
            payload[ERRORS_KEY] = dict(sorted(errors.items()))
        return Evidence(self.repo, GLOBAL, ITEM_TYPE, key, payload)


def read_repo(
    http: HttpClient,
    process: ProcessBase,
    repo: str,
    item_checks: list[CheckSpec],
    *,
    max_workers: int,
    cancelled: Callable[[], bool],
) -> Iterator[Evidence]:
    """Every merged pull request of ``repo`` since ``process.since``, then the summary."""
    reader = RepoReader(http, process, repo)
    reader.prepare()
    since_day: date | None = getattr(process, "since", None)
    since = (
        datetime(since_day.year, since_day.month, since_day.day, tzinfo=UTC) if since_day else None
    )
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="github-pulls") as pool:
        pages = (pool.map(reader.build, batch) for batch in batches(reader.merged(since), 50))
        yield from stream_population(
            process, item_checks, pages, cancelled,
            scope=repo, resource_type=f"{PREFIX}.change.population",
        )


# --------------------------------------------------------------------------- checks


def _outcomes(payload: Mapping[str, Any]) -> dict[str, bool]:
    passing = set(payload.get("passing_conclusions") or ("success",))
    out: dict[str, bool] = {}
    for run in payload.get("check_runs") or []:
        ok = run.get("status") == "completed" and run.get("conclusion") in passing
        out[run["name"]] = out.get(run["name"], True) and ok
    for st in payload.get("statuses") or []:
        out[st["context"]] = out.get(st["context"], True) and st.get("state") == "success"
    return out


def _states(payload: Mapping[str, Any], name: str) -> str:
    found = [
        str(r.get("conclusion") or r.get("status"))
        for r in payload.get("check_runs") or []
        if r.get("name") == name
    ]
    found += [
        str(s.get("state")) for s in payload.get("statuses") or [] if s.get("context") == name
    ]
    return f"{name} ({', '.join(found)})"


@check("github_pulls.change.required_checks_passed")
def required_checks_passed(payload: Mapping[str, Any], _params: Mapping[str, Any]) -> Verdict:
    errors = payload.get(ERRORS_KEY) or {}
    if errors.get("checks"):
        raise EvidenceMissing(f"status checks could not be read: {errors['checks']}")
    key = (payload.get("ticket") or {}).get("key", "pull request")
    outcomes = _outcomes(payload)
    required = payload.get("required_checks") or []
    if required:
        missing = [n for n in required if n not in outcomes]
        bad = [n for n in required if n in outcomes and not outcomes[n]]
        if missing or bad:
            parts = []
            if bad:
                parts.append(f"not passed: {', '.join(_states(payload, n) for n in bad)}")
            if missing:
                parts.append(f"never ran: {', '.join(missing)}")
            return failed(f"{key} merged with required checks not passing ({'; '.join(parts)})")
        return passed(f"{key}: required checks passed ({', '.join(required)})")
    if not outcomes:
        return failed(f"{key} merged with no status check at all (none required, none ran)")
    bad = sorted(n for n, ok in outcomes.items() if not ok)
    if bad:
        return failed(
            f"{key} merged with checks not passing: {', '.join(_states(payload, n) for n in bad)}"
        )
    return passed(f"{key}: all {len(outcomes)} checks passed (none marked required)")
