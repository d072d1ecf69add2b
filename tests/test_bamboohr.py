"""The BambooHR connector against a fake BambooHR company on 127.0.0.1 (pytest-httpserver).

The fake answers as BambooHR's API v1 documents (documentation.bamboohr.com: "Get
Employee Directory", "Request a custom report", the field list of
bamboohr.com/api/documentation/employees.php, and "Past changes to the API" for custom
field aliases such as ``customBackgroundCheckDate``):

* ``GET /api/gateway.php/{company}/v1/employees/directory`` → ``{"fields": [...],
  "employees": [...]}`` with the current employees only;
* ``POST /api/gateway.php/{company}/v1/reports/custom?format=JSON&onlyCurrent=false``
  with ``{"title", "fields": [...]}`` → ``{"title", "fields": [{"id","type","name"}],
  "employees": [{"id", <field>: value…}]}``, only the requested fields that exist, every
  employee (past ones too with ``onlyCurrent=false``), empty dates as ``0000-00-00``;
* HTTP Basic auth with the API key as user name (any password), else ``401`` with an
  ``X-BambooHR-Error-Message`` header; throttling as ``429`` or ``503`` with
  ``Retry-After`` (scripted per path with :meth:`FakeBambooHR.fault`).

Planted people fail exactly their checks through the real run engine
(:func:`tests.engine_run.run_engine` → ``collector.runner.drive``).
"""

from __future__ import annotations

import base64
import json
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.engine_run import run_engine

pytestmark = pytest.mark.clock

API_KEY = "bamboo-test-key-0123456789abcdef0123456789"
COMPANY = "acme"
FAST = {"max_attempts": 3, "retry_min_wait": 0.0, "retry_max_wait": 0.01, "timeout": 5}
BG, CONTRACT, NDA = "customBackgroundCheckDate", "customContractSigned", "customNDASigned"
EMPTY = "0000-00-00"

#: Field id → (type, name) as the report's "fields" list describes them.
FIELD_INFO = {
    "id": ("int", "Employee #"),
    "employeeNumber": ("text", "Employee #"),
    "displayName": ("text", "Display name"),
    "firstName": ("text", "First name"),
    "lastName": ("text", "Last name"),
    "workEmail": ("email", "Work Email"),
    "jobTitle": ("list", "Job title"),
    "status": ("status", "Status"),
    "employmentHistoryStatus": ("list", "Employment Status"),
    "hireDate": ("date", "Hire date"),
    "terminationDate": ("date", "Termination Date"),
    "department": ("list", "Department"),
    "supervisor": ("employee", "Supervisor name"),
    "supervisorEId": ("int", "Supervisor ID"),
    BG: ("date", "Background Check Date"),
    CONTRACT: ("date", "Contract Signed"),
    NDA: ("date", "NDA Signed"),
}
DIRECTORY_FIELDS = ("displayName", "firstName", "lastName", "jobTitle", "workEmail",
                    "department", "supervisor")  # fmt: skip


def day(offset_days: int, now: datetime | None = None) -> str:
    """A day relative to today (negative: past)."""
    return ((now or datetime.now(UTC)).date() + timedelta(days=offset_days)).isoformat()


def employee(
    eid: int,
    email: str,
    *,
    hire: str = "2024-03-01",
    bg: str = "2024-02-10",
    contract: str = "2024-02-01",
    nda: str = "2024-02-01",
    terminated: str | None = None,
    department: str = "Engineering",
) -> dict[str, Any]:
    first = email.split("@")[0].title()
    return {
        "id": str(eid),
        "employeeNumber": f"E{eid}",
        "displayName": f"{first} Example",
        "firstName": first,
        "lastName": "Example",
        "workEmail": email,
        "jobTitle": "Engineer",
        "status": "Inactive" if terminated else "Active",
        "employmentHistoryStatus": "Terminated" if terminated else "Full-Time",
        "hireDate": hire,
        "terminationDate": terminated or EMPTY,
        "department": department,
        "supervisor": "Boss, Big",
        "supervisorEId": "1",
        BG: bg,
        CONTRACT: contract,
        NDA: nda,
    }


class FakeBambooHR:
    """A BambooHR company: employees plus a handler routing like the real API."""

    def __init__(self, server: HTTPServer, company: str = COMPANY) -> None:
        self.server = server
        self.company = company
        self.employees: list[dict[str, Any]] = []
        self.faults: dict[str, list[tuple[int, str, dict[str, str]]]] = defaultdict(list)
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        prefix = f"/api/gateway.php/{company}/v1/"
        server.expect_request(re.compile(f"^{re.escape(prefix)}.*")).respond_with_handler(
            self.handle
        )
        self.prefix = prefix

    @property
    def base(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def fault(self, path: str, *answers: tuple[int, str, dict[str, str]]) -> None:
        """Answer the next requests to ``path`` (after the prefix) with ``answers``."""
        self.faults[self.prefix + path].extend(answers)

    def _json(self, body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")

    def handle(self, request: Request) -> Response:
        body = request.get_data(as_text=True)
        self.requests.append((request.method, request.path, dict(request.args), body))
        auth = request.headers.get("Authorization", "")
        user = ""
        if auth.startswith("Basic "):
            user = base64.b64decode(auth[6:]).decode().partition(":")[0]
        if user != API_KEY:
            return Response("", status=401, headers={"X-BambooHR-Error-Message": "Unauthorized"})
        if self.faults.get(request.path):
            status, text, headers = self.faults[request.path].pop(0)
            return Response(text, status=status, headers=headers, content_type="application/json")
        path = request.path[len(self.prefix) :]
        if path == "employees/directory" and request.method == "GET":
            current = [e for e in self.employees if e["status"] == "Active"]
            return self._json(
                {
                    "fields": [
                        {"id": f, "type": FIELD_INFO[f][0], "name": FIELD_INFO[f][1]}
                        for f in DIRECTORY_FIELDS
                    ],
                    "employees": [
                        {"id": e["id"], **{f: e.get(f) for f in DIRECTORY_FIELDS}} for e in current
                    ],
                }
            )
        if path == "reports/custom" and request.method == "POST":
            if request.args.get("format", "").upper() != "JSON":
                return Response("<report/>", status=200, content_type="application/xml")
            spec = json.loads(body)
            fields = [f for f in spec.get("fields", []) if f in FIELD_INFO]
            rows = self.employees
            if request.args.get("onlyCurrent", "true") != "false":
                rows = [e for e in rows if e["status"] == "Active"]
            return self._json(
                {
                    "title": spec.get("title", "Report"),
                    "fields": [
                        {"id": f, "type": FIELD_INFO[f][0], "name": FIELD_INFO[f][1]}
                        for f in fields
                    ],
                    "employees": [{"id": e["id"], **{f: e.get(f) for f in fields}} for e in rows],
                }
            )
        return Response("", status=404)


def options(fake: FakeBambooHR, **over: Any) -> dict[str, Any]:
    return {
        "company_domain": fake.company,
        "api_key": {"env": "ANNEXA_TEST_BAMBOOHR_KEY"},
        "api_url": fake.base,
        "background_check_field": BG,
        "contract_signed_field": CONTRACT,
        "nda_signed_field": NDA,
        "http": FAST,
        **over,
    }


@pytest.fixture
def bamboo(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeBambooHR:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_BAMBOOHR_KEY", API_KEY)
    fake = FakeBambooHR(httpserver)
    fake.employees += [
        employee(101, "ok@acme.example"),
        employee(102, "latecheck@acme.example", bg="2024-03-15"),
        employee(103, "nocontract@acme.example", contract=EMPTY),
        employee(104, "latenda@acme.example", nda="2024-03-04"),
        employee(105, "leaver@acme.example", terminated=day(-30)),
        employee(106, "joiner@acme.example", hire=day(60), bg=EMPTY, contract=EMPTY, nda=EMPTY),
        employee(107, "baddate@acme.example", bg="31/02/2024"),
    ]
    return fake


SCREENED = "bamboohr.employee.screened_before_start"
TERMS = "bamboohr.employee.terms_signed_before_start"
NDA_CHECK = "bamboohr.employee.nda_signed_before_start"


def test_planted_people_fail_exactly_their_checks(bamboo: FakeBambooHR) -> None:
    run = run_engine("bamboohr", options(bamboo))
    assert run.status == "succeeded", run.errors
    assert run.ids("fail") == {(SCREENED, "102"), (TERMS, "103"), (NDA_CHECK, "104")}
    assert run.ids("error") == {(SCREENED, "107")}
    assert run.ids("not_applicable") == {(SCREENED, "106"), (TERMS, "106"), (NDA_CHECK, "106")}
    assert len(run.ids("pass")) == 7 * 3 - 3 - 1 - 3
    late = run.one(SCREENED, "102")
    assert "background check dated 2024-03-15, 14 day(s) after the start on 2024-03-01" in (
        late.message
    )
    assert "latecheck@acme.example" in late.message
    assert "'31/02/2024' is not a date" in run.one(SCREENED, "107").message
    assert (
        "started on 2024-03-01 with no signed employment contract" in run.one(TERMS, "103").message
    )
    # Controls resolved from the shipped mapping.
    assert set(late.controls) == {"A.6.1"}
    assert set(run.one(NDA_CHECK, "104").controls) == {"A.6.2", "A.6.6"}
    assert set(run.one(TERMS, "103").controls) == {"A.6.2"}


def test_two_requests_basic_auth_and_the_report_asks_for_every_field(
    bamboo: FakeBambooHR,
) -> None:
    run = run_engine("bamboohr", options(bamboo))
    assert run.status == "succeeded"
    assert [(m, p.rsplit("/v1/", 1)[1]) for m, p, _, _ in bamboo.requests] == [
        ("GET", "employees/directory"),
        ("POST", "reports/custom"),
    ]
    _, _, args, body = bamboo.requests[1]
    assert args == {"format": "JSON", "onlyCurrent": "false"}
    fields = json.loads(body)["fields"]
    for f in ("hireDate", "terminationDate", "status", "department", "supervisor", BG, NDA):
        assert f in fields
    # The payload carries what a device check joins on later (employee id, e-mail, end date).
    leaver = run.payload("bamboohr.employee.record", "105")
    assert leaver["employee_id"] == "105" and leaver["work_email"] == "leaver@acme.example"
    assert leaver["terminated"] is True and leaver["termination_date"] == day(-30)
    assert leaver["in_directory"] is False  # the directory lists current employees only
    ok = run.payload("bamboohr.employee.record", "101")
    assert ok["terminated"] is False and ok["termination_date"] is None
    assert ok["in_directory"] is True and ok["manager"] == "Boss, Big"
    assert all(API_KEY not in json.dumps(e.payload) for e in run.evidence)


def test_throttling_is_retried_after_retry_after(bamboo: FakeBambooHR) -> None:
    bamboo.fault("reports/custom", (429, "", {"Retry-After": "0"}))
    bamboo.fault("employees/directory", (503, "", {"Retry-After": "0"}))
    run = run_engine("bamboohr", options(bamboo))
    assert run.status == "succeeded", run.errors
    assert len(bamboo.requests) == 4
    assert len(run.evidence) == 7


def test_a_wrong_key_is_a_unit_error_and_judges_nobody(
    bamboo: FakeBambooHR, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANNEXA_TEST_BAMBOOHR_KEY", "not-the-key")
    run = run_engine("bamboohr", options(bamboo))
    assert run.status == "failed"
    assert not run.evidence and not run.ids("pass") and not run.ids("fail")
    [cov] = [c for c in run.coverage if c.service == "employee"]
    assert not cov.ok and "401" in cov.error
    # Every check is an error on the unit, none silently passes.
    assert {f.check_id for f in run.findings if f.status == "error"} == {
        SCREENED,
        TERMS,
        NDA_CHECK,
    }


def test_an_unconfigured_custom_field_makes_its_check_an_error(bamboo: FakeBambooHR) -> None:
    run = run_engine("bamboohr", options(bamboo, nda_signed_field=None))
    assert run.status == "succeeded"
    errors = {r for c, r in run.ids("error") if c == NDA_CHECK}
    # Everyone, the future joiner included: the date cannot be read, so nothing is judged.
    assert errors == {str(i) for i in range(101, 108)}
    assert "option nda_signed_field" in run.one(NDA_CHECK, "101").message
    # A field the report does not know is named too.
    run = run_engine("bamboohr", options(bamboo, contract_signed_field="customNoSuchField"))
    assert "no field 'customNoSuchField'" in run.one(TERMS, "101").message


def test_a_truncated_report_is_a_unit_error_after_what_was_read(bamboo: FakeBambooHR) -> None:
    rows = [{"id": "101", "hireDate": "2024-03-01"}]
    text = json.dumps({"title": "x", "fields": [], "employees": rows})[:-3]
    bamboo.fault("reports/custom", (200, text, {}))
    run = run_engine("bamboohr", options(bamboo))
    assert run.status == "failed"
    [cov] = [c for c in run.coverage if c.service == "employee"]
    assert not cov.ok and "POST /reports/custom" in cov.error
    assert "unexpected end of document" in cov.error or "invalid JSON" in cov.error


def test_options_are_validated() -> None:
    from pydantic import ValidationError

    from connectors.bamboohr import BambooHROptions

    with pytest.raises(ValidationError, match="plain http:// is allowed only for loopback"):
        BambooHROptions.model_validate(
            {"company_domain": "acme", "api_key": {"env": "K"}, "api_url": "http://x.example"}
        )
    with pytest.raises(ValidationError, match="api_key"):
        BambooHROptions.model_validate({"company_domain": "acme", "api_key": "inline-secret"})


def test_future_joiner_is_judged_from_the_start_day_on() -> None:
    """The only clock-dependent part: before the start day a missing record is not late."""
    from connectors.hr.checks import _started

    now = datetime(2027, 1, 1, 0, 5, tzinfo=UTC)
    assert _started("2027-01-01", now) and _started("2026-12-31", now)
    assert not _started("2027-01-02", now)
    assert date.fromisoformat(day(1, now)) == date(2027, 1, 2)
