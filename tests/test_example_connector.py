"""The guide's connector (tests/example_connector.py) end to end: its fake on
tests/fakehttp.py, its verdicts and controls from the product's run engine
(tests/harness.py) with its own mapping directory — a connector defined outside
``connectors/`` that needs no core file. docs/writing-a-connector.md quotes this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug import Request, Response

from tests.example_connector import ExampleConnector, ExampleOptions, mfa_enrolled
from tests.fakehttp import FAST_HTTP, FakeHTTP, json_response, token_page
from tests.harness import run_built

TOKEN = "acme-directory-token-0123456789"
MAPPINGS = Path(__file__).parent / "data" / "example_mappings"
CHECK = "example.user.mfa_enrolled"


class FakeDirectory(FakeHTTP):
    """The fictional Acme Directory API of tests/example_connector.py: cursor pages of
    users, Bearer auth, a 401 ``{"error": ...}`` on a bad token."""

    def __init__(self) -> None:
        super().__init__()
        self.users: list[dict[str, Any]] = []
        self.route(r"/api/v1/users", self._users)

    def authorised(self, request: Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {TOKEN}"

    def unauthorised(self, request: Request) -> Response:
        return json_response({"error": "invalid_token"}, 401)

    def _users(self, request: Request, _: re.Match[str]) -> Response:
        size = min(int(request.args.get("limit", 100)), 2)  # the server pages at 2
        chunk, cursor = token_page(self.users, request.args.get("cursor"), size)
        return json_response({"users": chunk, "next_cursor": cursor or ""})


def user(uid: str, *, mfa: bool | None, kind: str = "human") -> dict[str, Any]:
    out = {"id": uid, "email": f"{uid}@acme.example", "kind": kind,
           "last_login": "2026-11-30T08:00:00Z", "etag": f"W/{uid}"}
    if mfa is not None:
        out["mfa_enrolled"] = mfa
    return out


@pytest.fixture
def directory(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDirectory]:
    monkeypatch.setenv("ANNEXA_TEST_EXAMPLE_TOKEN", TOKEN)
    with FakeDirectory() as fake:
        fake.users += [
            user("u1alice", mfa=True),
            user("u2bob", mfa=False),
            user("u3svc", mfa=False, kind="service"),
            user("u4carol", mfa=True),
            user("u5dan", mfa=True),
        ]
        yield fake


def connector(fake: FakeDirectory, **options: Any) -> ExampleConnector:
    opts = {"base_url": fake.base, "api_token": {"env": "ANNEXA_TEST_EXAMPLE_TOKEN"},
            "http": FAST_HTTP, **options}
    return ExampleConnector("example-test", ExampleOptions.model_validate(opts))


def test_check_on_payloads() -> None:
    defaults = {"exempt_service_accounts": False}
    assert mfa_enrolled({"email": "a@x", "mfa_enrolled": True}, defaults).status == "pass"
    assert mfa_enrolled({"email": "b@x", "mfa_enrolled": False}, defaults).status == "fail"
    exempt = {"exempt_service_accounts": True}
    assert mfa_enrolled({"email": "s@x", "kind": "service", "mfa_enrolled": False},
                        exempt).status == "pass"
    with pytest.raises(KeyError):  # missing evidence is never a pass
        mfa_enrolled({"email": "c@x"}, defaults)


def test_collects_checks_and_maps_every_page(directory: FakeDirectory) -> None:
    run = run_built(connector(directory, page_size=50), mapping_dirs=[MAPPINGS])
    assert run.status == "succeeded", run.errors
    assert run.ids("fail") == {(CHECK, "u2bob"), (CHECK, "u3svc")}
    assert run.ids("pass") == {(CHECK, "u1alice"), (CHECK, "u4carol"), (CHECK, "u5dan")}
    assert set(run.one(CHECK, "u2bob").controls) == {"A.5.17", "A.8.5"}
    assert "u2bob@acme.example has no MFA" in run.one(CHECK, "u2bob").message
    # Five users at two a page: three requests, each with the token as Bearer.
    assert directory.count("/api/v1/users") == 3
    assert {e.headers["Authorization"] for e in directory.log} == {f"Bearer {TOKEN}"}
    # The transform keeps what the check and an auditor need, not the vendor's etag.
    assert "etag" not in run.payload("example.user.account", "u1alice")


def test_parameters_come_from_the_config(directory: FakeDirectory) -> None:
    run = run_built(connector(directory),
                    checks={CHECK: {"exempt_service_accounts": True}})
    assert run.ids("fail") == {(CHECK, "u2bob")}
    assert "exempt by configuration" in run.one(CHECK, "u3svc").message


def test_throttling_is_retried(directory: FakeDirectory) -> None:
    directory.throttle("/api/v1/users", times=2, retry_after="0")
    run = run_built(connector(directory))
    assert run.status == "succeeded"
    assert run.ids("fail") == {(CHECK, "u2bob"), (CHECK, "u3svc")}
    assert directory.count("/api/v1/users") == 3 + 2


def test_refused_token_is_an_error_for_every_check_never_a_pass(
    directory: FakeDirectory,
) -> None:
    directory.fail_auth()
    run = run_built(connector(directory))
    assert run.status == "failed"
    (unit,) = [c for c in run.coverage if not c.ok]
    assert unit.service == "user" and "401" in (unit.error or "")
    assert run.ids("pass") == set()
    (err,) = run.findings
    assert (err.status, err.resource_id) == ("error", f"example:{unit.unit}")
    assert err.message.startswith(f"could not read {unit.unit}:")


def test_missing_secret_fails_the_whole_scope(
    directory: FakeDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANNEXA_TEST_EXAMPLE_TOKEN")
    run = run_built(connector(directory))
    assert run.status == "failed"
    assert {(f.check_id, f.status) for f in run.findings} == {(CHECK, "error")}
    assert "ANNEXA_TEST_EXAMPLE_TOKEN" in run.findings[0].message
    assert directory.log == []  # nothing was sent without credentials


def test_a_missing_field_is_an_error_for_that_user_only(directory: FakeDirectory) -> None:
    directory.users.append(user("u6eve", mfa=None))
    run = run_built(connector(directory))
    assert run.ids("error") == {(CHECK, "u6eve")}
    assert run.ids("fail") == {(CHECK, "u2bob"), (CHECK, "u3svc")}
