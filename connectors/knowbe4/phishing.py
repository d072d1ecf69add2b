"""KnowBe4 phishing security tests: who failed, whether they were retrained, who reported.

Two evidence types:

* ``knowbe4.phishing.failure`` — one per recipient who failed a test (id
  ``<pst_id>/<recipient_id>``): the test, the person, the failure events and their
  earliest time, whether they reported it, and the person's enrolments since the
  failure (the remedial training the check looks for).
* ``knowbe4.phishing.test`` — one per test: the population summary (delivered, failed,
  reported, failed and reported), the evidence that suspicious e-mail is reported.

API calls: ``GET /v1/phishing/security_tests`` then, for each test started within
``phishing_lookback_days``, ``GET /v1/phishing/security_tests/{pst_id}/recipients``
(paged with ``page``/``per_page``). Recipients are streamed: only the failures and the
counts are kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.http import HttpClient, MalformedResponseError
from connectors.kit import GLOBAL, Pseudonymiser, require
from connectors.knowbe4.common import completed_at, matches
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence
from core.times import day_precision, full_time, parse_time

FAILURE_TYPE = "knowbe4.phishing.failure"
TEST_TYPE = "knowbe4.phishing.test"

#: Recipient timestamps (``PhishingSecurityTestRecipient``) that count as failing a test.
DEFAULT_FAILURE_EVENTS: tuple[str, ...] = (
    "clicked_at",
    "data_entered_at",
    "attachment_opened_at",
    "macro_enabled_at",
    "replied_at",
    "qr_code_scanned",
)


def _failure_time(
    recipient: Mapping[str, Any], events: Sequence[str]
) -> tuple[datetime | None, list[str]]:
    hits = [(parse_time(recipient[k]), k) for k in events if recipient.get(k)]
    if not hits:
        return None, []
    return min(t for t, _ in hits), sorted(k for _, k in hits)


def _since(enrolments: Sequence[Mapping[str, Any]], moment: datetime) -> list[dict[str, Any]]:
    """Enrolments made or completed on or after the day of ``moment``."""
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for e in enrolments:
        times = [parse_time(e[k]) for k in ("enrollment_date", "completion_date") if e.get(k)]
        if any(t >= day for t in times):
            out.append(dict(e))
    return out


def read_tests(
    http: HttpClient,
    scope: str,
    *,
    enrolments: Mapping[str, list[dict[str, Any]]] | None,
    enrolment_error: str | None,
    lookback_days: int,
    failure_events: Sequence[str],
    page_size: int,
    cancelled: Any,
    pseudo: Pseudonymiser,
) -> Iterator[Evidence]:
    now = datetime.now(UTC)
    for test in http.paginate_pages("/v1/phishing/security_tests", page_size=page_size):
        if cancelled():
            return
        if not isinstance(test, Mapping) or test.get("pst_id") is None:
            raise MalformedResponseError("a phishing security test without pst_id")
        started = test.get("started_at")
        if started and now - parse_time(started) > timedelta(days=lookback_days):
            continue
        yield from _read_test(
            http, scope, test, enrolments, enrolment_error, failure_events, page_size, pseudo
        )


def _read_test(
    http: HttpClient,
    scope: str,
    test: Mapping[str, Any],
    enrolments: Mapping[str, list[dict[str, Any]]] | None,
    enrolment_error: str | None,
    failure_events: Sequence[str],
    page_size: int,
    pseudo: Pseudonymiser,
) -> Iterator[Evidence]:
    pst = test["pst_id"]
    counts = {"recipients": 0, "delivered": 0, "failed": 0, "reported": 0, "failed_and_reported": 0}
    path = f"/v1/phishing/security_tests/{int(pst)}/recipients"
    for r in http.paginate_pages(path, page_size=page_size):
        if not isinstance(r, Mapping) or r.get("recipient_id") is None:
            raise MalformedResponseError(f"a recipient of test {pst} without recipient_id")
        counts["recipients"] += 1
        counts["delivered"] += bool(r.get("delivered_at"))
        reported = bool(r.get("reported_at"))
        counts["reported"] += reported
        at, events = _failure_time(r, failure_events)
        if at is None:
            continue
        counts["failed"] += 1
        counts["failed_and_reported"] += reported
        user = r.get("user") if isinstance(r.get("user"), Mapping) else {}
        uid = str(user.get("id")) if user.get("id") is not None else None
        email = user.get("email")
        payload: dict[str, Any] = {
            "pst_id": pst,
            "test": test.get("name"),
            "recipient_id": r["recipient_id"],
            "user_id": uid,
            "email": pseudo(email.strip().lower()) if isinstance(email, str) else None,
            "failed_at": full_time(at),
            "events": events,
            "reported_at": full_time(r.get("reported_at")),
        }
        if enrolments is not None:
            payload["enrollments_since"] = _since(enrolments.get(uid or "", []), at)
        else:
            payload["_errors"] = {
                "enrollments_since": enrolment_error or "training enrollments were not read"
            }
        yield Evidence(scope, GLOBAL, FAILURE_TYPE, f"{pst}/{r['recipient_id']}", payload)
    yield Evidence(
        scope,
        GLOBAL,
        TEST_TYPE,
        str(pst),
        {
            "pst_id": pst,
            "name": test.get("name"),
            "status": test.get("status"),
            "started_at": test.get("started_at"),
            "campaign_id": test.get("campaign_id"),
            **counts,
        },
    )


# --------------------------------------------------------------------------- checks


@check("knowbe4.phishing.remedial_training")
def remedial_training(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    who = payload.get("email") or payload.get("user_id")
    failed_at = parse_time(require(payload, "failed_at"))
    since = require(payload, "enrollments_since")
    names = [n for n in params["remedial"] if isinstance(n, str) and n.strip()]
    due = failed_at + timedelta(days=params["remedial_days"])
    relevant = [e for e in since if not names or any(matches(e, n) for n in names)]
    done = sorted(t for e in relevant if (t := completed_at(e)) and t >= failed_at)
    what = (
        f"{who} failed '{payload.get('test')}' ({', '.join(payload.get('events') or [])}) "
        f"on {day_precision(failed_at)}"
    )
    wanted = " or ".join(names) if names else "any training"
    if done and done[0] <= due:
        return passed(f"{what}; remedial training completed on {day_precision(done[0])}")
    if done:
        return failed(
            f"{what}; remedial training completed only on {day_precision(done[0])}, "
            f"after the {params['remedial_days']}-day limit"
        )
    if datetime.now(UTC) <= due:
        return passed(f"{what}; remedial training ({wanted}) due by {day_precision(due)}")
    return failed(f"{what}; no remedial training ({wanted}) completed by {day_precision(due)}")


@check("knowbe4.phishing.reported")
def reported(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    name = f"'{payload.get('name')}' ({payload.get('pst_id')})"
    delivered = int(require(payload, "delivered"))
    if str(payload.get("status") or "").casefold() != "closed":
        return not_applicable(f"{name} is {payload.get('status')}: judged once closed")
    if delivered == 0:
        return not_applicable(f"{name} was delivered to nobody")
    rep, fail = int(payload.get("reported") or 0), int(payload.get("failed") or 0)
    share = 100.0 * rep / delivered
    text = (
        f"{name}: {rep} of {delivered} recipients reported it ({share:.0f}%), "
        f"{fail} failed, {payload.get('failed_and_reported', 0)} failed and then reported"
    )
    if share >= params["min_reported_percent"]:
        return passed(text)
    return failed(f"{text}; below {params['min_reported_percent']}%")
