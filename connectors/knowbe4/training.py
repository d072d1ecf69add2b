"""KnowBe4 users and their training enrolments; the on-hire and yearly training checks.

One evidence per person (``knowbe4.user.training``, id = KnowBe4 user id), because
auditors sample people: e-mail, status, start date (``employee_start_date``, else the
day the user joined KnowBe4) and every enrolment reduced to module, campaign, status,
enrolment and completion dates. Training campaigns are stored too
(``knowbe4.training.campaign``): the programme's content, audience and schedule, which is
what the documented part of A.6.3 describes.

API calls (Reporting API, all paged with ``page``/``per_page``):
``GET /v1/training/campaigns``, ``GET /v1/training/enrollments``, ``GET /v1/users``.
Enrolments are read first and grouped by user, so memory grows with the enrolments of
the account (a few per person), not with the number of requests.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.http import HttpClient, MalformedResponseError
from connectors.kit import GLOBAL, Pseudonymiser, require
from connectors.knowbe4.common import completions, enrolment_summary, matches, required_items
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence
from core.times import day_precision, parse_time

USER_TYPE = "knowbe4.user.training"
CAMPAIGN_TYPE = "knowbe4.training.campaign"


def read_campaigns(http: HttpClient, scope: str, page_size: int) -> Iterator[Evidence]:
    """Every training campaign, as the auditor's view of the programme."""
    for c in http.paginate_pages("/v1/training/campaigns", page_size=page_size):
        if not isinstance(c, Mapping) or c.get("campaign_id") is None:
            raise MalformedResponseError("a training campaign without campaign_id")
        content = c.get("content") if isinstance(c.get("content"), list) else []
        groups = c.get("groups") if isinstance(c.get("groups"), list) else []
        yield Evidence(
            scope=scope,
            region=GLOBAL,
            resource_type=CAMPAIGN_TYPE,
            resource_id=str(c["campaign_id"]),
            payload={
                "id": c["campaign_id"],
                "name": c.get("name"),
                "status": c.get("status"),
                "groups": sorted(str(g.get("name")) for g in groups if isinstance(g, Mapping)),
                "content": sorted(str(m.get("name")) for m in content if isinstance(m, Mapping)),
                "duration_type": c.get("duration_type"),
                "start_date": c.get("start_date"),
                "end_date": c.get("end_date"),
                "relative_duration": c.get("relative_duration"),
                "auto_enroll": c.get("auto_enroll"),
            },
        )


def read_enrolments(http: HttpClient, page_size: int) -> dict[str, list[dict[str, Any]]]:
    """Every enrolment of the account, reduced and grouped by KnowBe4 user id."""
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in http.paginate_pages("/v1/training/enrollments", page_size=page_size):
        user = e.get("user") if isinstance(e, Mapping) else None
        if not isinstance(user, Mapping) or user.get("id") is None:
            raise MalformedResponseError("a training enrollment without user.id")
        by_user[str(user["id"])].append(enrolment_summary(e))
    for items in by_user.values():
        items.sort(key=lambda x: (str(x["enrollment_date"]), str(x["module"]), str(x["id"])))
    return dict(by_user)


def user_payload(
    user: Mapping[str, Any],
    enrolments: list[dict[str, Any]] | None,
    error: str | None,
    pseudo: Pseudonymiser,
) -> dict[str, Any]:
    """Only what the checks and an auditor need (no risk score or sign-in: they move).

    Pseudonymised, the e-mail becomes its keyed pseudonym (still matching the other
    sources pseudonymised with the same key) and the name is left out."""
    email = user.get("email")
    name = " ".join(str(user.get(k)) for k in ("first_name", "last_name") if user.get(k))
    payload: dict[str, Any] = {
        "id": user["id"],
        "email": pseudo(email.strip().lower()) if isinstance(email, str) else None,
        "name": None if pseudo.enabled else name,
        "status": user.get("status"),
        "employee_start_date": user.get("employee_start_date"),
        "joined_on": user.get("joined_on"),
        "archived_at": user.get("archived_at"),
    }
    if enrolments is not None:
        payload["enrollments"] = enrolments
    else:
        payload["_errors"] = {"enrollments": error or "training enrollments were not read"}
    return payload


def read_users(
    http: HttpClient,
    scope: str,
    enrolments: Mapping[str, list[dict[str, Any]]] | None,
    enrolment_error: str | None,
    page_size: int,
    pseudo: Pseudonymiser,
) -> Iterator[Evidence]:
    for user in http.paginate_pages("/v1/users", page_size=page_size):
        if not isinstance(user, Mapping) or user.get("id") is None:
            raise MalformedResponseError("a user without an id in /v1/users")
        uid = str(user["id"])
        yield Evidence(
            scope=scope,
            region=GLOBAL,
            resource_type=USER_TYPE,
            resource_id=uid,
            payload=user_payload(
                user,
                None if enrolments is None else list(enrolments.get(uid, [])),
                enrolment_error,
                pseudo,
            ),
        )


# --------------------------------------------------------------------------- checks


def _who(p: Mapping[str, Any]) -> str:
    return str(p.get("email") or p.get("name") or p.get("id"))


def _start(p: Mapping[str, Any], enrolments: list[Mapping[str, Any]], name: str) -> datetime:
    """When the person's clock for ``name`` started: the hire date, else the first
    enrolment in it, else the day they were added to KnowBe4."""
    if p.get("employee_start_date"):
        return parse_time(p["employee_start_date"])
    enrolled = sorted(
        parse_time(e["enrollment_date"])
        for e in enrolments
        if matches(e, name) and e.get("enrollment_date")
    )
    if enrolled:
        return enrolled[0]
    return parse_time(require(p, "joined_on"))


def _active(p: Mapping[str, Any]) -> bool:
    return str(p.get("status") or "").casefold() == "active"


def _trainee(
    payload: Mapping[str, Any], params: Mapping[str, Any]
) -> tuple[str, list[Mapping[str, Any]], list[str]] | Verdict:
    """``(who, enrolments, required trainings)`` of a person the training checks judge,
    or the verdict when there is nothing to judge: an inactive user (not applicable), or
    one enrolled in no required training at all (failed)."""
    who = _who(payload)
    if not _active(payload):
        return not_applicable(f"{who} is {payload.get('status')} in KnowBe4")
    enrolments = require(payload, "enrollments")
    names = required_items(enrolments, params["required"])
    if not names:
        return failed(f"{who} is enrolled in no training at all")
    return who, enrolments, names


@check("knowbe4.user.training_on_hire")
def training_on_hire(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    trainee = _trainee(payload, params)
    if isinstance(trainee, Verdict):
        return trainee
    who, enrolments, names = trainee
    now = datetime.now(UTC)
    limit = timedelta(days=params["onboarding_days"])
    problems, pending, done = [], [], []
    for name in names:
        start = _start(payload, enrolments, name)
        if now - start > timedelta(days=params["judge_hires_within_days"]):
            continue
        finished = completions(enrolments, name)
        due = start + limit
        if finished and finished[0] <= due:
            done.append(f"{name} on {day_precision(finished[0])}")
        elif finished:
            late = (finished[0] - start).days
            problems.append(
                f"{name} completed on {day_precision(finished[0])}, {late} days after "
                f"{day_precision(start)} (limit {params['onboarding_days']})"
            )
        elif now <= due:
            pending.append(f"{name} due by {day_precision(due)}")
        else:
            problems.append(f"{name} not completed, due {day_precision(due)}")
    if problems:
        return failed(f"{who}: " + "; ".join(problems))
    if not done and not pending:
        return not_applicable(
            f"{who} started more than {params['judge_hires_within_days']} days ago "
            "(yearly training is judged by knowbe4.user.training_current)"
        )
    return passed(f"{who}: " + "; ".join(done + pending))


@check("knowbe4.user.training_current")
def training_current(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    trainee = _trainee(payload, params)
    if isinstance(trainee, Verdict):
        return trainee
    who, enrolments, names = trainee
    now = datetime.now(UTC)
    problems, ok = [], []
    for name in names:
        finished = completions(enrolments, name)
        start = _start(payload, enrolments, name)
        if finished and now - finished[-1] <= timedelta(days=params["refresh_days"]):
            ok.append(f"{name} on {day_precision(finished[-1])}")
        elif now - start <= timedelta(days=params["onboarding_days"]):
            ok.append(f"{name} not yet due (started {day_precision(start)})")
        elif finished:
            problems.append(
                f"{name} last completed on {day_precision(finished[-1])}, more than "
                f"{params['refresh_days']} days ago"
            )
        else:
            problems.append(f"{name} never completed")
    if problems:
        return failed(f"{who}: " + "; ".join(problems))
    return passed(f"{who}: " + "; ".join(ok))
