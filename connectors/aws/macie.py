"""Amazon Macie: is sensitive-data discovery on, with classification jobs, per region.

Regional units (service ``macie``, client ``macie2``): ``GetMacieSession`` — Macie's
answer ``AccessDeniedException`` with "Macie is not enabled" is its way of saying it
is off (recorded as ``{"Session": null}``), as is ``ResourceNotFoundException`` — and
``ListClassificationJobs`` (partial: a failure is recorded under ``_errors``).

Resource type ``aws.macie.status`` (id = region)::

    {"Session": {"status", "findingPublishingFrequency"} | null,
     "Jobs": [{"jobId", "name", "jobType", "jobStatus"}]}

Job statuses are Macie's (``RUNNING | PAUSED | CANCELLED | COMPLETE | IDLE |
USER_PAUSED``, botocore macie2 2020-01-01): a ``SCHEDULED`` job that is ``RUNNING`` or
``IDLE`` keeps classifying new data; a ``ONE_TIME`` job that is ``COMPLETE`` classified
once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError

from connectors.aws.common import MISSING, actions, error_code, paginate, read_partial
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import require, with_errors
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

SERVICE = "macie"
STATUS = "aws.macie.status"

ACTIONS = actions("macie2:GetMacieSession", "macie2:ListClassificationJobs")

NOT_ENABLED = ("AccessDeniedException", "ResourceNotFoundException")
ONGOING = ("RUNNING", "IDLE")


def get_session(client: Any) -> dict[str, Any] | None:
    try:
        answer = client.get_macie_session()
    except ClientError as exc:
        # Macie answers "Macie is not enabled" as AccessDeniedException (403); a real
        # permission problem gives the same code, so the message decides.
        message = str(exc.response.get("Error", {}).get("Message", "")).lower()
        if error_code(exc) in NOT_ENABLED and "not enabled" in message:
            return None
        raise
    return {k: answer.get(k) for k in ("status", "findingPublishingFrequency")}


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("macie2", region)
    payload: dict[str, Any] = {"Session": get_session(client)}
    errors: dict[str, str] = {}
    if payload["Session"] is not None:
        jobs = read_partial(errors, "Jobs", lambda: [
            {k: j.get(k) for k in ("jobId", "name", "jobType", "jobStatus")}
            for j in paginate(client, "list_classification_jobs", "items")])
        if jobs is not MISSING:
            payload["Jobs"] = jobs
    else:
        payload["Jobs"] = []
    yield account.evidence(STATUS, region, region, with_errors(payload, errors))


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check("aws.macie.classification_jobs")
def classification_jobs(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    session = require(payload, "Session")
    if session is None or session.get("status") != "ENABLED":
        state = "not enabled" if session is None else str(session.get("status")).lower()
        return failed(f"Macie is {state} in the region")
    jobs = require(payload, "Jobs")
    if params["require_scheduled_job"]:
        ongoing = [j for j in jobs if j.get("jobType") == "SCHEDULED"
                   and j.get("jobStatus") in ONGOING]
        if not ongoing:
            seen = ", ".join(f"{j.get('name')} ({j.get('jobType')} {j.get('jobStatus')})"
                             for j in jobs) or "no job"
            return failed(f"Macie is enabled but no scheduled classification job runs: {seen}")
        return passed("Scheduled classification jobs: "
                      + ", ".join(str(j.get("name")) for j in ongoing))
    if not jobs:
        return failed("Macie is enabled but has no classification job")
    return passed("Classification jobs: " + ", ".join(str(j.get("name")) for j in jobs))
