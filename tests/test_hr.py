"""The generic HR connector: a fake SCIM 2.0 service provider on 127.0.0.1, and CSV files.

The SCIM fake follows RFC 7644 §3.4.2 (``GET /Users`` with ``startIndex`` (1-based) and
``count``; a ``ListResponse`` with ``totalResults``, ``itemsPerPage``, ``startIndex`` and
``Resources``; the server may return fewer than ``count``), RFC 7643 §4.1 and §4.3 (core
``User`` and the enterprise extension: ``employeeNumber``, ``department``, ``manager``),
§3.12 errors (``urn:ietf:params:scim:api:messages:2.0:Error`` with ``status`` as a
string) for ``401``, and ``429`` with ``Retry-After`` for throttling. Employment dates
live in a custom extension, as SCIM defines none.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.hr.scim import ENTERPRISE, HR_EXTENSION
from tests.engine_run import run_engine
from tests.test_bamboohr import day

pytestmark = pytest.mark.clock

TOKEN = "scim-bearer-token-for-tests-0123456789"
FAST = {"max_attempts": 3, "retry_min_wait": 0.0, "retry_max_wait": 0.01, "timeout": 5}
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SCREENED = "hr.employee.screened_before_start"
TERMS = "hr.employee.terms_signed_before_start"
NDA = "hr.employee.nda_signed_before_start"


def scim_user(
    uid: str,
    email: str,
    *,
    active: bool = True,
    hire: str | None = "2024-03-01",
    bg: str | None = "2024-02-10",
    contract: str | None = "2024-02-01",
    nda: str | None = "2024-02-01",
    terminated: str | None = None,
) -> dict[str, Any]:
    hr = {
        "hireDate": hire,
        "backgroundCheckDate": bg,
        "contractSignedDate": contract,
        "ndaSignedDate": nda,
        "terminationDate": terminated,
    }
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE, HR_EXTENSION],
        "id": uid,
        "externalId": f"ext-{uid}",
        "userName": email,
        "name": {"formatted": email.split("@")[0].title(), "familyName": "Example"},
        "displayName": email.split("@")[0].title(),
        "active": active,
        "emails": [{"value": email, "type": "work", "primary": True}],
        ENTERPRISE: {
            "employeeNumber": uid.upper(),
            "department": "Engineering",
            "manager": {"value": "boss-id", "displayName": "Big Boss"},
        },
        HR_EXTENSION: {k: v for k, v in hr.items() if v is not None},
        "meta": {"resourceType": "User", "location": f"https://hr.example/scim/v2/Users/{uid}"},
    }


class FakeScim:
    """A SCIM 2.0 service provider: users, paging, bearer auth, scripted faults."""

    def __init__(self, server: HTTPServer, max_page: int = 1000) -> None:
        self.server = server
        self.users: list[dict[str, Any]] = []
        self.max_page = max_page
        self.faults: dict[str, list[tuple[int, str, dict[str, str]]]] = defaultdict(list)
        self.requests: list[dict[str, str]] = []
        server.expect_request("/scim/v2/Users").respond_with_handler(self.handle)

    @property
    def url(self) -> str:
        return self.server.url_for("/scim/v2")

    def _scim(self, body: Any, status: int = 200, headers: dict[str, str] | None = None):
        return Response(
            json.dumps(body),
            status=status,
            headers=headers or {},
            content_type="application/scim+json",
        )

    def handle(self, request: Request) -> Response:
        self.requests.append(dict(request.args))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._scim({"schemas": [ERROR], "status": "401", "detail": "Unauthorized"}, 401)
        if self.faults["/Users"]:
            status, text, headers = self.faults["/Users"].pop(0)
            return Response(text, status=status, headers=headers)
        start = max(1, int(request.args.get("startIndex", 1)))
        count = min(self.max_page, int(request.args.get("count", 100)))
        page = self.users[start - 1 : start - 1 + count]
        return self._scim(
            {
                "schemas": [LIST],
                "totalResults": len(self.users),
                "itemsPerPage": len(page),
                "startIndex": start,
                "Resources": page,
            }
        )


@pytest.fixture
def scim(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeScim:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_SCIM_TOKEN", TOKEN)
    fake = FakeScim(httpserver, max_page=2)
    fake.users += [
        scim_user("u1", "ok@acme.example"),
        scim_user("u2", "latecheck@acme.example", bg="2024-04-01"),
        scim_user("u3", "nocontract@acme.example", contract=None),
        scim_user("u4", "latenda@acme.example", nda="2024-03-02T09:00:00Z"),
        scim_user("u5", "leaver@acme.example", active=False, terminated=day(-30)),
        scim_user("u6", "nohire@acme.example", hire=None),
    ]
    return fake


def scim_options(fake: FakeScim, **over: Any) -> dict[str, Any]:
    return {
        "source": "scim",
        "scim_url": fake.url,
        "token": {"env": "ANNEXA_TEST_SCIM_TOKEN"},
        "page_size": 5,
        "http": FAST,
        **over,
    }


def test_scim_people_fail_exactly_their_checks(scim: FakeScim) -> None:
    run = run_engine("hr", scim_options(scim))
    assert run.status == "succeeded", run.errors
    assert run.ids("fail") == {(SCREENED, "U2"), (TERMS, "U3"), (NDA, "U4")}
    # No hire date: nothing can be judged, and it says so.
    assert run.ids("error") == {(SCREENED, "U6"), (TERMS, "U6"), (NDA, "U6")}
    assert "no hire date" in run.one(TERMS, "U6").message
    assert set(run.one(NDA, "U4").controls) == {"A.6.2", "A.6.6"}
    leaver = run.payload("hr.employee.record", "U5")
    assert leaver["terminated"] is True and leaver["termination_date"] == day(-30)
    assert leaver["work_email"] == "leaver@acme.example" and leaver["scim_id"] == "u5"
    assert leaver["manager"] == "Big Boss" and leaver["department"] == "Engineering"


def test_scim_paging_follows_start_index_even_when_the_server_caps_the_page(
    scim: FakeScim,
) -> None:
    run = run_engine("hr", scim_options(scim))
    assert len(run.evidence) == 6
    # The server returns 2 per page although 5 were asked for: startIndex advances by 2.
    assert [r["startIndex"] for r in scim.requests] == ["1", "3", "5"]
    assert {r["count"] for r in scim.requests} == {"5"}


def test_scim_throttling_and_auth(scim: FakeScim, monkeypatch: pytest.MonkeyPatch) -> None:
    scim.faults["/Users"].append((429, "", {"Retry-After": "0"}))
    run = run_engine("hr", scim_options(scim))
    assert run.status == "succeeded" and len(run.evidence) == 6
    assert len(scim.requests) == 4
    monkeypatch.setenv("ANNEXA_TEST_SCIM_TOKEN", "wrong")
    run = run_engine("hr", scim_options(scim))
    assert run.status == "failed" and not run.evidence
    [cov] = [c for c in run.coverage if c.service == "employee"]
    assert "401" in cov.error and "Unauthorized" in cov.error


def test_scim_attribute_paths_are_configurable(scim: FakeScim) -> None:
    for u in scim.users:
        u[ENTERPRISE]["startDate"] = "2020-01-01"
    run = run_engine("hr", scim_options(scim, attributes={"hire_date": f"{ENTERPRISE}:startDate"}))
    # Every check was signed in 2024, after a 2020 start: all late (U3 never signed).
    assert run.ids("fail", TERMS) == {(TERMS, f"U{i}") for i in range(1, 7)}


# --------------------------------------------------------------------------- CSV

HEADER = (
    "employee_id,work_email,name,employment_status,hire_date,termination_date,"
    "department,manager,background_check_date,contract_signed_date,nda_signed_date\n"
)


def csv_file(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "people.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def test_csv_people_are_judged_and_a_malformed_row_is_named_by_file_and_line(
    tmp_path: Path,
) -> None:
    path = csv_file(
        tmp_path,
        [
            "c1,ok@acme.example,Ok,Active,2024-03-01,,Eng,Boss,2024-02-01,2024-02-01,2024-02-01",
            "c2,late@acme.example,Late,Active,2024-03-01,,Eng,Boss,2024-03-09,2024-02-01,2024-02-01",
            "c3,bad@acme.example,Bad,Active,2024-13-45,,Eng,Boss,2024-02-01,2024-02-01,2024-02-01",
            "c4,short@acme.example,Short,Active,2024-03-01",
            '"c5",left@acme.example,"Left, Person",Terminated,2024-03-01,'
            + day(-30)
            + ",Eng,Boss,2024-02-01,2024-02-01,2024-04-01",
            "c1,dup@acme.example,Dup,Active,2024-03-01,,Eng,Boss,2024-02-01,2024-02-01,2024-02-01",
        ],
    )
    run = run_engine("hr", {"source": "csv", "path": str(path)})
    # The good rows are all there and judged: nothing else of the run is lost.
    assert {e.resource_id for e in run.evidence} == {"c1", "c2", "c5"}
    assert run.ids("fail") == {(SCREENED, "c2"), (NDA, "c5")}
    assert run.status == "failed"  # the one unit could not be read cleanly
    [cov] = [c for c in run.coverage if c.service == "employee"]
    assert not cov.ok
    assert f"{path}:4: column hire_date: '2024-13-45' is not a valid date" in cov.error
    assert f"{path}:5: too few fields" in cov.error
    assert f"{path}:7: duplicate employee_id 'c1' (first on line 2)" in cov.error
    assert cov.error.startswith("3 malformed row(s) skipped")
    left = run.payload("hr.employee.record", "c5")
    assert left["terminated"] is True and left["name"] == "Left, Person"
    # Unit-level error findings stand for what could not be read (never a pass).
    assert {f.check_id for f in run.findings if f.resource_id.startswith("hr:")} == {
        SCREENED,
        TERMS,
        NDA,
    }


def test_csv_missing_columns_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,email\n1,a@b.example\n", encoding="utf-8")
    run = run_engine("hr", {"source": "csv", "path": str(path)})
    [cov] = [c for c in run.coverage if c.service == "employee"]
    assert f"{path}:1: missing column(s) employee_id, hire_date (header: id, email)" == cov.error
    run = run_engine("hr", {"source": "csv", "path": str(tmp_path / "nope.csv")})
    [cov] = [c for c in run.coverage if c.service == "employee"]
    assert "nope.csv: cannot be read" in cov.error


def test_options_are_validated() -> None:
    from pydantic import ValidationError

    from connectors.hr import HrOptions

    with pytest.raises(ValidationError, match='source = "scim" needs scim_url and token'):
        HrOptions.model_validate({"source": "scim"})
    with pytest.raises(ValidationError, match='source = "csv" needs path'):
        HrOptions.model_validate({"source": "csv"})
    with pytest.raises(ValidationError, match="unknown date 'start'"):
        HrOptions.model_validate(
            {
                "source": "scim",
                "scim_url": "https://hr.example/scim/v2",
                "token": {"env": "T"},
                "attributes": {"start": "x"},
            }
        )
