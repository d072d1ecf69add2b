"""The KnowBe4 connector against a fake KnowBe4 Reporting API on 127.0.0.1, judged by the
real run engine (tests/engine_run.py → collector.runner.drive).

The fake serves the shapes of KnowBe4's Reporting API reference
(https://developer.knowbe4.com/rest/reporting: ``User``, ``TrainingCampaign``,
``TrainingEnrollment``, ``PhishingSecurityTest`` and ``PhishingSecurityTestRecipient``,
e.g. ``enrollment_id``/``module_name``/``campaign_name``/``enrollment_date``/
``completion_date``/``status: "Passed"`` and recipients with ``clicked_at``,
``data_entered_at``, ``reported_at``…), as also seen in the examples quoted by public
clients of that API. Like the real API it pages with ``page``/``per_page`` and a bare JSON
list (no next link: the last page is the first short one), wants
``Authorization: Bearer <Reporting API key>`` (401 otherwise) and can answer 429 with
``Retry-After``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from core.checks import REGISTRY
from tests.engine_run import EngineRun, run_engine

pytestmark = pytest.mark.clock

TOKEN = "kb4-reporting-key-for-tests-0123456789abcdef"
REQUIRED = "Security Awareness Training 2026"
REMEDIAL = "Phishing Remedial: Red Flags"


class FakeKnowBe4:
    """State plus a handler routing like the Reporting API."""

    def __init__(self, server: HTTPServer, now: datetime) -> None:
        self.now = now
        self.users: list[dict[str, Any]] = []
        self.enrollments: list[dict[str, Any]] = []
        self.campaigns: list[dict[str, Any]] = []
        self.tests: list[dict[str, Any]] = []
        self.recipients: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.faults: dict[str, list[tuple[int, str, dict[str, str]]]] = defaultdict(list)
        self.requests: list[str] = []
        #: Paths answered with page 1 whatever ``page`` says (a server ignoring paging).
        self.ignore_page: set[str] = set()
        self.server = server
        server.expect_request(re.compile(r"^/v1/.*")).respond_with_handler(self.handle)

    @property
    def base(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def ts(self, days_ago: float) -> str:
        return (self.now - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def day(self, days_ago: float) -> str:
        return (self.now - timedelta(days=days_ago)).strftime("%Y-%m-%d")

    # -- state

    def user(
        self,
        uid: int,
        email: str,
        *,
        start: float | None,
        joined: float = 900,
        status: str = "active",
    ) -> None:
        first = email.split("@")[0]
        self.users.append(
            {
                "id": uid,
                "employee_number": str(1000 + uid),
                "first_name": first.title(),
                "last_name": "Example",
                "job_title": "Engineer",
                "email": email,
                "phish_prone_percentage": 14.2,
                "phone_number": "",
                "extension": "",
                "mobile_phone_number": "",
                "location": "Berlin",
                "division": "R&D",
                "manager_name": "Boss",
                "manager_email": "boss@acme.example",
                "provisioning_managed": False,
                "provisioning_guid": None,
                "groups": [3264],
                "current_risk_score": 42.1,
                "aliases": [],
                "joined_on": self.ts(joined),
                "last_sign_in": self.ts(1),
                "status": status,
                "organization": "Acme",
                "department": "Engineering",
                "language": "English - United States",
                "comment": "",
                "employee_start_date": self.day(start) if start is not None else None,
                "archived_at": self.ts(3) if status == "archived" else None,
                "custom_field_1": None,
                "custom_date_1": None,
            }
        )

    def enrol(
        self,
        uid: int,
        module: str,
        *,
        enrolled: float,
        completed: float | None,
        campaign: str | None = None,
    ) -> None:
        user = next(u for u in self.users if u["id"] == uid)
        self.enrollments.append(
            {
                "enrollment_id": 1425500 + len(self.enrollments),
                "content_type": "Store Purchase",
                "module_name": module,
                "user": {
                    "id": uid,
                    "first_name": user["first_name"],
                    "last_name": user["last_name"],
                    "email": user["email"],
                },
                "campaign_name": campaign or module,
                "enrollment_date": self.ts(enrolled),
                "start_date": self.ts(enrolled),
                "completion_date": (self.ts(completed) if completed is not None else None),
                "status": "Passed" if completed is not None else "In Progress",
                "time_spent": 2340,
                "policy_acknowledged": False,
            }
        )

    def phishing_test(self, pst: int, *, started: float, status: str = "Closed") -> None:
        self.tests.append(
            {
                "campaign_id": 240000 + pst,
                "pst_id": pst,
                "status": status,
                "name": f"Corporate Test {pst}",
                "groups": [{"group_id": 16342, "name": "Corporate"}],
                "phish_prone_percentage": 0.5,
                "started_at": self.ts(started),
                "duration": 1,
                "categories": [{"category_id": 4237, "name": "Current Events"}],
                "template": {"id": 11428, "name": "CNN Breaking News"},
                "landing_page": {"id": 1842, "name": "SEI Landing Page"},
                "scheduled_count": 0,
                "delivered_count": 0,
                "opened_count": 0,
                "clicked_count": 0,
                "replied_count": 0,
                "attachment_open_count": 0,
                "macro_enabled_count": 0,
                "data_entered_count": 0,
                "qr_code_scanned_count": 0,
                "reported_count": 0,
                "bounced_count": 0,
            }
        )

    def recipient(self, pst: int, uid: int, delivered: float, **events: float | None) -> None:
        user = next(u for u in self.users if u["id"] == uid)
        r = {
            "recipient_id": 3077700 + sum(len(v) for v in self.recipients.values()),
            "pst_id": pst,
            "user": {
                "id": uid,
                "active_directory_guid": None,
                "first_name": user["first_name"],
                "last_name": user["last_name"],
                "email": user["email"],
            },
            "template": {"id": 2, "name": "Your Amazon Order"},
            "scheduled_at": self.ts(delivered),
            "delivered_at": self.ts(delivered),
            "opened_at": None,
            "clicked_at": None,
            "replied_at": None,
            "attachment_opened_at": None,
            "macro_enabled_at": None,
            "data_entered_at": None,
            "qr_code_scanned": None,
            "reported_at": None,
            "bounced_at": None,
            "ip": "XX.XX.XXX.XXX",
            "ip_location": "St.Petersburg, FL",
            "browser": "Chrome",
            "browser_version": "48.0",
            "os": "MacOSX",
        }
        for key, ago in events.items():
            assert key in r, key
            r[key] = self.ts(ago) if ago is not None else None
        self.recipients[pst].append(r)

    # -- HTTP

    def _json(self, body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        page = 1 if request.path in self.ignore_page else int(request.args.get("page", 1))
        per_page = min(int(request.args.get("per_page", 100)), 500)
        return self._json(items[(page - 1) * per_page : page * per_page])

    def handle(self, request: Request) -> Response:
        path = request.path
        self.requests.append(f"{path}?{request.query_string.decode()}")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._json({"message": "Unauthorized"}, 401)
        if self.faults.get(path):
            status, body, headers = self.faults[path].pop(0)
            return Response(body, status=status, headers=headers, content_type="application/json")
        if path == "/v1/users":
            return self._page(request, self.users)
        if path == "/v1/training/enrollments":
            return self._page(request, self.enrollments)
        if path == "/v1/training/campaigns":
            return self._page(request, self.campaigns)
        if path == "/v1/phishing/security_tests":
            return self._page(request, self.tests)
        if m := re.fullmatch(r"/v1/phishing/security_tests/(\d+)/recipients", path):
            return self._page(request, self.recipients.get(int(m[1]), []))
        return self._json({"message": "Not Found"}, 404)


@pytest.fixture
def kb4(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeKnowBe4:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_KB4_TOKEN", TOKEN)
    return FakeKnowBe4(httpserver, datetime.now(UTC))


def plant(kb: FakeKnowBe4) -> None:
    """Six people, two closed phishing tests read and one too old to read.

    Planted failures: bob trained late after hire; carol's last training is over a
    year old; bob and frank got no (timely) remedial training after failing a test;
    nobody reported test 2.
    """
    kb.campaigns.append(
        {
            "campaign_id": 3423,
            "name": REQUIRED,
            "groups": [{"group_id": 0, "name": "All Users"}],
            "status": "In Progress",
            "content": [
                {
                    "store_purchase_id": 7,
                    "content_type": "Store Purchase",
                    "name": "2026 Security Awareness Training",
                    "type": "Training Module",
                    "duration": 45,
                    "retired": False,
                }
            ],
            "duration_type": "Relative End Date",
            "start_date": kb.ts(500),
            "end_date": None,
            "relative_duration": "30 days",
            "auto_enroll": True,
            "allow_multiple_enrollments": False,
            "completion_percentage": 80,
        }
    )
    kb.user(1, "alice@acme.example", start=400)
    kb.user(2, "bob@acme.example", start=60)
    kb.user(3, "carol@acme.example", start=500)
    kb.user(4, "dan@acme.example", start=10)
    kb.user(5, "erin@acme.example", start=300, status="archived")
    kb.user(6, "frank@acme.example", start=None, joined=200)
    kb.enrol(1, "2026 Security Awareness Training", enrolled=120, completed=100, campaign=REQUIRED)
    kb.enrol(2, "2026 Security Awareness Training", enrolled=59, completed=10, campaign=REQUIRED)
    kb.enrol(3, "2025 Security Awareness Training", enrolled=420, completed=400, campaign=REQUIRED)
    kb.enrol(4, "2026 Security Awareness Training", enrolled=9, completed=None, campaign=REQUIRED)
    kb.enrol(6, "2026 Security Awareness Training", enrolled=100, completed=95, campaign=REQUIRED)
    kb.enrol(1, REMEDIAL, enrolled=40, completed=35)
    kb.enrol(6, REMEDIAL, enrolled=29, completed=5)
    kb.phishing_test(101, started=40)
    kb.recipient(101, 1, 40, clicked_at=40, reported_at=40)
    kb.recipient(101, 2, 40, opened_at=39, clicked_at=39, data_entered_at=39)
    kb.recipient(101, 3, 40, clicked_at=5)
    kb.recipient(101, 4, 40, reported_at=38)
    kb.recipient(101, 6, 40)
    kb.phishing_test(102, started=30)
    kb.recipient(102, 6, 30, clicked_at=30)
    kb.recipient(102, 1, 30)
    kb.recipient(102, 4, 30)
    kb.phishing_test(103, started=800)
    kb.recipient(103, 2, 800, clicked_at=800)


def options(kb: FakeKnowBe4, **extra: Any) -> dict[str, Any]:
    return {
        "url": kb.base,
        "token": {"env": "ANNEXA_TEST_KB4_TOKEN"},
        "page_size": 2,
        "http": {
            "max_attempts": 3,
            "retry_min_wait": 0.0,
            "retry_max_wait": 0.01,
            "max_retry_after": 5,
        },
        **extra,
    }


CHECK_PARAMS = {
    "knowbe4.user.training_on_hire": {"required": [REQUIRED]},
    "knowbe4.user.training_current": {"required": [REQUIRED]},
    "knowbe4.phishing.remedial_training": {"remedial": [REMEDIAL]},
}


def run(kb: FakeKnowBe4, **extra: Any) -> EngineRun:
    return run_engine("knowbe4", options(kb, **extra), name="kb4", checks=CHECK_PARAMS)


def test_planted_people_and_tests_fail_exactly_their_checks(kb4):
    plant(kb4)
    result = run(kb4)
    result.assert_fails_exactly({
        ("knowbe4.user.training_on_hire", "2"),
        ("knowbe4.user.training_current", "3"),
        ("knowbe4.phishing.remedial_training", "101/3077701"),
        ("knowbe4.phishing.remedial_training", "102/3077705"),
        ("knowbe4.phishing.reported", "102"),
    })
    assert result.ids("not_applicable") == {
        ("knowbe4.user.training_on_hire", "1"),
        ("knowbe4.user.training_on_hire", "3"),
        ("knowbe4.user.training_on_hire", "5"),
        ("knowbe4.user.training_current", "5"),
    }
    # Messages name the person and the reason.
    assert "completed on" in result.one("knowbe4.user.training_on_hire", "2").message
    assert "more than 365 days ago" in result.one("knowbe4.user.training_current", "3").message
    late = result.one("knowbe4.phishing.remedial_training", "102/3077705").message
    assert "frank@acme.example" in late and "after the 14-day limit" in late
    pending = result.one("knowbe4.phishing.remedial_training", "101/3077702")
    assert pending.status == "pass" and "due by" in pending.message
    # The reporting population of each test: reported vs failed (A.6.8).
    summary = result.payload("knowbe4.phishing.test", "101")
    assert (summary["delivered"], summary["failed"], summary["reported"]) == (5, 3, 2)
    assert summary["failed_and_reported"] == 1
    assert {
        c for f in result.findings if f.check_id == "knowbe4.phishing.reported" for c in f.controls
    } == {"A.6.8"}
    assert {
        c for f in result.findings if f.check_id.startswith("knowbe4.user.") for c in f.controls
    } == {"A.6.3"}
    # The programme itself (the campaign: content, audience, schedule) is evidence too.
    campaign = result.payload("knowbe4.training.campaign", "3423")
    assert campaign["content"] == ["2026 Security Awareness Training"]
    assert campaign["groups"] == ["All Users"] and campaign["auto_enroll"] is True
    # Tests older than the lookback are never read (the API's daily budget is small).
    assert not any("/security_tests/103/" in r for r in kb4.requests)
    # Volatile and network fields of the source are not stored.
    text = json.dumps([e.payload for e in result.evidence])
    assert "St.Petersburg" not in text and "current_risk_score" not in text


def test_paging_reads_every_page_and_stops_at_the_short_one(kb4):
    plant(kb4)
    run(kb4)
    users = [r for r in kb4.requests if r.startswith("/v1/users?")]
    # 6 users, 2 per page: pages 1-3 full, page 4 empty ends the listing.
    assert [re.search(r"page=(\d+)", r)[1] for r in users] == ["1", "2", "3", "4"]
    assert all("per_page=2" in r for r in users)


def test_429_with_retry_after_is_waited_out(kb4):
    plant(kb4)
    kb4.faults["/v1/users"].append((429, '{"message":"Rate limit exceeded"}', {"Retry-After": "1"}))
    result = run(kb4)
    assert result.status == "succeeded"
    assert len([r for r in kb4.requests if r.startswith("/v1/users?page=1")]) == 2
    assert ("knowbe4.user.training_current", "3") in result.ids("fail")


def test_429_asking_for_too_long_a_wait_is_a_unit_error_not_a_pass(kb4):
    plant(kb4)
    kb4.faults["/v1/users"].append(
        (429, '{"message":"Rate limit exceeded"}', {"Retry-After": "3600"})
    )
    result = run(kb4)
    assert result.status == "partial"
    bad = {c.service: c.error for c in result.coverage if not c.ok}
    assert set(bad) == {"user"} and "429" in bad["user"]
    assert {f.status for f in result.findings if f.check_id.startswith("knowbe4.user.")} == {
        "error"
    }
    # The phishing unit was still judged.
    assert ("knowbe4.phishing.reported", "102") in result.ids("fail")


def test_401_makes_every_unit_an_error(kb4, monkeypatch):
    plant(kb4)
    monkeypatch.setenv("ANNEXA_TEST_KB4_TOKEN", "wrong-key")
    result = run(kb4)
    assert result.status == "failed"
    assert {c.service for c in result.coverage if not c.ok} == {"training", "user", "phishing"}
    assert all("401" in c.error for c in result.coverage if not c.ok)
    assert result.ids("pass") == set() and result.ids("fail") == set()
    assert "wrong-key" not in json.dumps([c.error for c in result.coverage])


def test_unreadable_enrolments_make_remedial_checks_error_not_fail(kb4):
    plant(kb4)
    kb4.faults["/v1/training/enrollments"] += [(500, "", {})] * 3
    result = run(kb4)
    assert result.status == "partial"
    remedial = {
        f.status for f in result.findings if f.check_id == "knowbe4.phishing.remedial_training"
    }
    assert remedial == {"error"}
    assert ("knowbe4.phishing.reported", "102") in result.ids("fail")


def test_every_knowbe4_check_is_documented_and_mapped():
    from mappings.loader import load_mappings

    index = load_mappings()
    specs = [s for s in REGISTRY if s.id.startswith("knowbe4.")]
    assert len(specs) == 4
    for s in specs:
        assert s.rationale and s.remediation and s.title
        assert index.controls_for(s.id), s.id


def test_a_server_ignoring_page_is_a_unit_error_not_an_endless_loop(kb4):
    plant(kb4)
    kb4.ignore_page.add("/v1/users")
    result = run(kb4)
    bad = {c.service: c.error for c in result.coverage if not c.ok}
    assert set(bad) == {"user"} and "repeats the page before it" in bad["user"]
    assert len([r for r in kb4.requests if r.startswith("/v1/users?")]) == 2


def test_pseudonymise_replaces_emails_and_drops_names(kb4, monkeypatch):
    from connectors.kit import Pseudonymiser

    plant(kb4)
    monkeypatch.setenv("ANNEXA_TEST_KB4_PSEUDO", "pseudonym-key-for-tests-0123456789")
    result = run(kb4, pseudonymise=True, pseudonymise_key={"env": "ANNEXA_TEST_KB4_PSEUDO"})
    text = json.dumps([e.payload for e in result.evidence] + [f.message for f in result.findings])
    assert "@acme.example" not in text and "Alice" not in text
    pseudo = Pseudonymiser("pseudonym-key-for-tests-0123456789")
    assert result.payload("knowbe4.user.training", "2")["email"] == pseudo("bob@acme.example")
    # The verdicts do not change.
    assert ("knowbe4.user.training_on_hire", "2") in result.ids("fail")
