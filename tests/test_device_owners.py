"""Devices joined with people (analyzers/devices.py): A.5.9, A.5.11, A.8.1.

End to end: ``annexa collect`` (a subprocess, as an operator runs it) collects an Okta
tenant (tests/test_okta.py's fake) and a Jamf Pro server (tests/device_fakes.py), stores
both runs, then runs the device-ownership join from the store. A leaver deprovisioned in
Okta, and an HR leaver (CSV export of the ``hr`` connector) still active in Okta, whose
MacBooks are still enrolled fail A.5.11; an active person without a device,
a Mac assigned to an unknown address and a Mac assigned to nobody fail their checks.
The pure tests drive the join and the HR hook on hand-made facts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from analyzers.devices import (
    DeviceOwnershipAnalyzer,
    DeviceOwnersOptions,
    PersonFact,
    join,
)
from analyzers.devices import hr_person as hr_fact
from collector.plugins import analyzer_run
from connectors.hr.accounts import hr_account
from core.accounts import AccountRef
from core.checks import REGISTRY
from core.connector import CollectContext
from store.queries import evidence_at, findings_at
from tests import clock
from tests import test_okta as okta_fakes
from tests.configs import connector_table, secret_env, write_config
from tests.device_fakes import JAMF_PASSWORD, JAMF_USER, FakeJamf, jamf_computer

pytestmark = pytest.mark.clock

NOW = datetime.now(UTC)


def test_annexa_collect_joins_devices_with_people(httpserver: HTTPServer, engine, db_url, tmp_path):
    httpserver.no_handler_status_code = 418
    okta = okta_fakes.FakeOkta(httpserver)
    user = okta_fakes.okta_user
    okta.add_user(user("00u0alice", "alice@acme.example"), [okta_fakes.factor("push")])
    okta.add_user(user("00u1bob", "bob@acme.example"), [okta_fakes.factor("push")])
    okta.add_user(
        user("00u2gone", "gone@acme.example", "DEPROVISIONED", status_changed=30, last_login=31)
    )
    # Left 20 days ago per HR, still ACTIVE in Okta: HR's termination is authoritative.
    okta.add_user(user("00u3hrleaver", "hrleaver@acme.example"), [okta_fakes.factor("push")])
    left = (NOW - timedelta(days=20)).date().isoformat()
    soon = (NOW + timedelta(days=20)).date().isoformat()
    (tmp_path / "hr.csv").write_text(
        "employee_id,work_email,name,employment_status,hire_date,termination_date\n"
        "1,alice@acme.example,Alice,active,2020-01-06,\n"
        "2,bob@acme.example,Bob,active,2021-03-01,\n"
        f"3,hrleaver@acme.example,Hal,terminated,2019-05-02,{left}\n"
        f"4,notice@acme.example,Nia,active,2022-09-12,{soon}\n",
        encoding="utf-8",
    )
    macs = [
        jamf_computer(0, NOW, email="alice@acme.example"),
        jamf_computer(1, NOW, email="Gone@acme.example"),  # case differs: still matched
        jamf_computer(2, NOW, email="stranger@acme.example"),
        jamf_computer(3, NOW, email=""),
        jamf_computer(4, NOW, email="hrleaver@acme.example"),
        jamf_computer(5, NOW, email="notice@acme.example"),  # leaves in 20 days
    ]
    cfg = tmp_path / "annexa.toml"
    with FakeJamf(len(macs), macs.__getitem__) as jamf:
        write_config(
            cfg,
            db_url,
            connector_table("okta", "okta-prod", {
                "org_url": httpserver.url_for("/").rstrip("/"),
                "api_token": secret_env("ANNEXA_TEST_OKTA_TOKEN"),
            }),
            connector_table("jamf", "jamf-macs", {
                "url": jamf.url, "auth": "basic", "username": JAMF_USER,
                "password": secret_env("ANNEXA_TEST_JAMF_PASSWORD"), "page_size": 2,
            }),
            connector_table("hr", "hr-export", {"source": "csv", "path": tmp_path / "hr.csv"}),
            json_logs=True,
        )
        env = clock.env(
            {
                **os.environ,
                "ANNEXA_TEST_OKTA_TOKEN": okta_fakes.TOKEN,
                "ANNEXA_TEST_JAMF_PASSWORD": JAMF_PASSWORD,
            }
        )
        proc = subprocess.run(
            clock.command(
                [sys.executable, "-m", "collector", "collect", "-c", str(cfg), "-f", "json"]
            ),
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr
    runs = {r["connector"]: r["status"] for r in json.loads(proc.stdout)}
    assert runs == {
        "okta-prod": "succeeded",
        "jamf-macs": "succeeded",
        "hr-export": "succeeded",
        "identity-correlation": "succeeded",
        "device-ownership": "succeeded",
    }
    with engine.connect() as conn:
        failing = {
            (f["check_id"], f["resource_id"]): f
            for f in findings_at(conn, source="device-ownership", status="fail")
        }
        people = {
            e["resource_id"]: e["payload"] for e in evidence_at(conn, source="device-ownership")
        }
    assert set(failing) == {
        ("devices.person.has_managed_device", "bob@acme.example"),
        ("devices.person.device_owner_active", "stranger@acme.example"),
        ("devices.person.device_owner_active", "unassigned:jamf-macs:4"),
        ("devices.person.leaver_devices_returned", "gone@acme.example"),
        ("devices.person.leaver_devices_returned", "hrleaver@acme.example"),
    }
    hal = failing[("devices.person.leaver_devices_returned", "hrleaver@acme.example")]
    assert "A.5.11" in hal["controls"] and "MAC-000004" in hal["message"]
    assert f"left {left}" in hal["message"]
    leaver = failing[("devices.person.leaver_devices_returned", "gone@acme.example")]
    assert "A.5.11" in leaver["controls"]
    assert "MAC-000001" in leaver["message"] and "still has" in leaver["message"]
    assert people["alice@acme.example"]["state"] == "active"
    assert [d["name"] for d in people["alice@acme.example"]["devices"]] == ["MAC-000000"]
    assert people["gone@acme.example"]["state"] == "leaver"
    assert people["notice@acme.example"]["state"] == "active"  # still employed
    assert {a["source"] for a in people["hrleaver@acme.example"]["accounts"]} == {
        "okta-prod",
        "hr-export",
    }


# --------------------------------------------------------------------------- pure


def judge(payload: dict[str, Any], check_id: str, **params: Any) -> Any:
    spec = REGISTRY.get(check_id)
    return spec.func(payload, spec.params_with(params))


def _device(rid: str, email: str | None) -> tuple[str, str, dict[str, Any]]:
    return ("intune", rid, {"name": rid, "platform": "windows", "user_email": email})


def hr_person(source: str, rtype: str, rid: str, payload: dict) -> PersonFact:
    """An HR record through the HR connectors' own account hook, as the analyzer reads it."""
    return hr_fact(hr_account(AccountRef(source, rtype.split(".")[0], rtype, rid), payload))


def test_join_states_and_the_hr_hook():
    left = (NOW - timedelta(days=20)).date().isoformat()
    later = (NOW + timedelta(days=20)).date().isoformat()
    hr_left = hr_person(
        "hr:bamboo",
        "bamboohr.employee.record",
        "7",
        {"work_email": "Zoe@acme.example", "termination_date": left},
    )
    hr_future = hr_person(
        "hr:bamboo",
        "bamboohr.employee.record",
        "8",
        {"work_email": "yan@acme.example", "termination_date": later},
    )
    assert hr_left.state == "leaver" and hr_left.emails == ("zoe@acme.example",)
    assert hr_future.state == "active"
    undated = hr_person(
        "hr", "hr.employee.record", "9", {"work_email": "u@acme.example", "terminated": True}
    )
    assert undated.state == "leaver" and undated.since is None
    people = [
        ("okta", "00u1", PersonFact(("zoe@acme.example",), "active")),  # IdP not yet off
        ("hr:bamboo", "7", hr_left),
        ("okta", "00u2", PersonFact(("yan@acme.example",), "active")),
        ("okta", "00u3", PersonFact(("xi@acme.example",), "leaver", None)),
    ]
    out = dict(join(people, [_device("d1", "zoe@acme.example"), _device("d2", "xi@acme.example")]))
    assert out["zoe@acme.example"]["state"] == "leaver"  # HR termination wins
    assert judge(out["zoe@acme.example"], "devices.person.leaver_devices_returned").status == "fail"
    # A leaver within the return period passes; without a date, the period has passed.
    assert (
        judge(
            out["zoe@acme.example"], "devices.person.leaver_devices_returned", grace_days=30
        ).status
        == "pass"
    )
    assert judge(out["xi@acme.example"], "devices.person.leaver_devices_returned").status == "fail"
    yan = judge(out["yan@acme.example"], "devices.person.has_managed_device")
    assert yan.status == "fail" and "okta" in yan.message
    assert (
        judge(
            out["yan@acme.example"],
            "devices.person.has_managed_device",
            exempt=["yan@acme.example"],
        ).status
        == "not_applicable"
    )


def test_missing_state_is_an_error_and_standalone_runs_report_it():
    with pytest.raises(KeyError):
        judge({"person": "a@b.example", "devices": []}, "devices.person.has_managed_device")
    conn = analyzer_run(DeviceOwnershipAnalyzer)("x", DeviceOwnersOptions())
    (cov,) = list(conn.collect(CollectContext(run_id="r")))
    assert not cov.ok and "runs after the sources whose stored evidence it reads" in cov.error
