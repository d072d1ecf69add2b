"""Device-management connectors (Intune, Jamf Pro) through the product's run engine.

The fakes (tests/device_fakes.py) serve the vendors' documented shapes on 127.0.0.1 with
paging, authentication and 429 + Retry-After. Intune authenticates with the real
azure-identity ``ClientSecretCredential`` against a TLS token endpoint (the Entra
connector's credential code, reused). Planted devices must fail exactly their checks.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
import trustme

from connectors.devices import device_payload
from core.checks import REGISTRY
from tests.device_fakes import (
    BASELINE_POLICIES,
    JAMF_CLIENT,
    JAMF_PASSWORD,
    JAMF_SECRET,
    JAMF_USER,
    FakeIntune,
    FakeJamf,
    compliance_policy,
    intune_device,
    jamf_computer,
    protection_state,
)
from tests.engine_run import run_engine
from tests.test_entra import CLIENT, SECRET, TENANT, TOKEN, _TokenEndpoint

pytestmark = pytest.mark.clock

NOW = datetime.now(UTC)
FAST = {"max_attempts": 3, "retry_min_wait": 0, "retry_max_wait": 0.01, "max_retry_after": 2}


def day(days_ago: int) -> str:
    return (NOW - timedelta(days=days_ago)).date().isoformat()


#: Vendor security releases as the operator keeps them in config: all older than 30 days.
RELEASES = {
    "windows": [["10.0.26100.2605", day(60)]],
    "ios": [["18.6", day(60)]],
    "macos": [["15.7.2", day(60)], ["14.8.2", day(60)]],
}
PATCH = {"os_patched": {"releases": RELEASES, "patch_days": 30}}


def _params(prefix: str) -> dict[str, dict[str, Any]]:
    return {f"{prefix}.{k}": v for k, v in PATCH.items()}


# --------------------------------------------------------------------------- Intune


@pytest.fixture
def authority(tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    """A TLS token endpoint for azure-identity (the Entra tests' fake, reused)."""
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_path))
    monkeypatch.setenv("ANNEXA_TEST_ENTRA_SECRET", SECRET)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.seen, server.forms = [], []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {"authority": f"https://127.0.0.1:{server.server_address[1]}", "ca": str(ca_path)}
    finally:
        server.shutdown()
        server.server_close()


def intune_options(auth: dict[str, str], graph: FakeIntune, **extra: Any) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "client_secret": {"env": "ANNEXA_TEST_ENTRA_SECRET"},
        "authority": auth["authority"],
        "disable_instance_discovery": True,
        "authority_ca_bundle": auth["ca"],
        "graph_url": graph.url,
        "http": FAST,
        **extra,
    }


def planted_intune() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    devices = [
        intune_device(0, NOW),
        intune_device(1, NOW, os="iOS", version="18.6", jailbroken="False"),
        intune_device(2, NOW, os="macOS", version="15.7.2"),
        intune_device(3, NOW, encrypted=False, device_id="d-unencrypted"),
        intune_device(4, NOW, compliance="noncompliant", device_id="d-noncompliant"),
        intune_device(5, NOW, version="10.0.19045.5247", device_id="d-win10"),
        intune_device(6, NOW, synced_days=60, device_id="d-silent"),
        intune_device(7, NOW, os="iOS", version="18.6", jailbroken="True", device_id="d-jb"),
        intune_device(8, NOW, device_id="d-defender-off"),
        intune_device(9, NOW, version="10.0.26100.1742", device_id="d-unpatched"),
    ]
    states = {d["id"]: protection_state(d["id"]) for d in devices}
    states["d-defender-off"] = protection_state("d-defender-off", realtime=False)
    return devices, states


def test_intune_planted_devices_fail_exactly_their_checks(authority):
    devices, states = planted_intune()
    with FakeIntune(len(devices), devices.__getitem__, states.get, page_cap=3) as graph:
        graph.token = TOKEN
        graph.faults["/v1.0/deviceManagement/managedDevices"].append(
            (429, {"Retry-After": "1"}, '{"error":{"code":"TooManyRequests","message":"slow"}}')
        )
        run = run_engine(
            "intune", intune_options(authority, graph), checks=_params("intune.device")
        )
    run.assert_fails_exactly({
        ("intune.device.disk_encrypted", "d-unencrypted"),
        ("intune.device.screen_lock", "d-noncompliant"),
        ("intune.device.os_supported", "d-win10"),
        ("intune.device.os_patched", "d-win10"),
        ("intune.device.checked_in", "d-silent"),
        ("intune.device.not_jailbroken", "d-jb"),
        ("intune.device.anti_malware", "d-defender-off"),
        ("intune.device.os_patched", "d-unpatched"),
    })
    # 10 devices over pages of 3 after one 429: 1 + 4 listing calls, + 1 per Windows device.
    listing = [r for r in graph.requests if r.startswith("/v1.0/deviceManagement/managedDevices?")]
    windows = [d for d in devices if d["operatingSystem"] == "Windows"]
    assert len(listing) == 5
    assert len(graph.requests) == 5 + len(windows) + 1  # + the compliance policies
    policy = run.one("intune.tenant.passcode_policy", "compliance-policies")
    assert policy.status == "pass" and "ios: Baseline iosCompliancePolicy" in policy.message
    mac = run.one("intune.device.anti_malware", devices[2]["id"])
    assert mac.status == "not_applicable" and "Windows devices only" in mac.message
    assert (
        "real-time protection off"
        in run.one("intune.device.anti_malware", "d-defender-off").message
    )
    payload = run.payload("intune.device.managed", "d-jb")
    assert payload["user_email"] == "user7@acme.example" and payload["platform"] == "ios"
    controls = {
        c for f in run.findings if f.check_id.endswith("disk_encrypted") for c in f.controls
    }
    assert controls == {"A.7.9", "A.8.1"}
    assert set(run.one("intune.device.screen_lock", "d-noncompliant").controls) == {
        "A.7.7",
        "A.8.1",
    }


def test_intune_unreadable_defender_state_errors_only_that_check(authority):
    devices = [intune_device(0, NOW, device_id="d-nostate"), intune_device(1, NOW)]
    with FakeIntune(
        2, devices.__getitem__, lambda i: None if i == "d-nostate" else protection_state(i)
    ) as graph:
        graph.token = TOKEN
        run = run_engine(
            "intune", intune_options(authority, graph), checks=_params("intune.device")
        )
    assert run.status == "succeeded", run.errors
    assert run.ids("error") == {("intune.device.anti_malware", "d-nostate")}
    assert run.ids("fail") == set()
    assert "no Defender state" in run.one("intune.device.anti_malware", "d-nostate").message


def test_intune_wrong_secret_is_an_error_not_a_pass(authority, monkeypatch):
    monkeypatch.setenv("ANNEXA_TEST_ENTRA_SECRET", "wrong")
    devices, states = planted_intune()
    with FakeIntune(len(devices), devices.__getitem__, states.get) as graph:
        graph.token = TOKEN
        run = run_engine("intune", intune_options(authority, graph))
    assert run.status == "failed"
    assert not run.ids("pass") and not run.evidence
    assert graph.requests == []


# --------------------------------------------------------------------------- Jamf


def planted_jamf() -> list[dict[str, Any]]:
    return [
        jamf_computer(0, NOW),
        jamf_computer(1, NOW),
        jamf_computer(2, NOW, filevault="UNENCRYPTED"),
        jamf_computer(3, NOW, firewall=False),
        jamf_computer(4, NOW, gatekeeper="DISABLED"),
        jamf_computer(5, NOW, auto_login_disabled=False),
        jamf_computer(6, NOW, version="14.6"),
        jamf_computer(7, NOW, contact_days=45),
        jamf_computer(8, NOW, version="15.6"),
    ]


def jamf_options(fake: FakeJamf, **extra: Any) -> dict[str, Any]:
    return {"url": fake.url, "page_size": 2, "http": FAST, **extra}


def test_jamf_planted_computers_fail_exactly_their_checks(monkeypatch):
    monkeypatch.setenv("ANNEXA_TEST_JAMF_PASSWORD", JAMF_PASSWORD)
    macs = planted_jamf()
    with FakeJamf(len(macs), macs.__getitem__) as fake:
        fake.faults["/api/v1/computers-inventory"].append(
            (429, {"Retry-After": "1"}, '{"httpStatus":429,"errors":[]}')
        )
        run = run_engine(
            "jamf",
            jamf_options(
                fake,
                auth="basic",
                username=JAMF_USER,
                password={"env": "ANNEXA_TEST_JAMF_PASSWORD"},
            ),
            checks=_params("jamf.computer"),
        )
    run.assert_fails_exactly({
        ("jamf.computer.disk_encrypted", "3"),
        ("jamf.computer.firewall_enabled", "4"),
        ("jamf.computer.anti_malware", "5"),
        ("jamf.computer.screen_lock", "6"),
        ("jamf.computer.os_supported", "7"),
        ("jamf.computer.os_patched", "7"),
        ("jamf.computer.checked_in", "8"),
        ("jamf.computer.os_patched", "9"),
    })
    # One token for the run; 9 computers in pages of 2 = 5 pages, + the 429.
    assert fake.tokens_issued == 1
    assert len([r for r in fake.requests if "computers-inventory" in r]) == 6
    assert set(fake.sections_seen) == {
        ("GENERAL", "DISK_ENCRYPTION", "SECURITY", "OPERATING_SYSTEM", "USER_AND_LOCATION")
    }
    assert "FileVault UNENCRYPTED" in run.one("jamf.computer.disk_encrypted", "3").message
    assert "Gatekeeper disabled" in run.one("jamf.computer.anti_malware", "5").message
    assert "14.8.2" in run.one("jamf.computer.os_patched", "7").message


def test_jamf_api_client_auth_and_bad_secret(monkeypatch):
    macs = planted_jamf()[:2]
    with FakeJamf(len(macs), macs.__getitem__) as fake:
        monkeypatch.setenv("ANNEXA_TEST_JAMF_SECRET", JAMF_SECRET)
        opts = jamf_options(
            fake, client_id=JAMF_CLIENT, client_secret={"env": "ANNEXA_TEST_JAMF_SECRET"}
        )
        good = run_engine("jamf", opts, checks=_params("jamf.computer"))
        monkeypatch.setenv("ANNEXA_TEST_JAMF_SECRET", "wrong")
        bad = run_engine("jamf", opts)
    assert good.status == "succeeded" and len(good.evidence) == 2
    assert good.ids("fail") == set() and good.ids("error") == set()
    assert bad.status == "failed" and not bad.ids("pass") and not bad.evidence


def test_unreported_state_is_an_error_never_a_pass():
    payload = device_payload(id="x", name="X", platform="macos", managed=True)
    for cid in ("jamf.computer.disk_encrypted", "jamf.computer.firewall_enabled"):
        spec = REGISTRY.get(cid)
        with pytest.raises(KeyError, match="not reported"):
            spec.func(payload, spec.parameters)
    spec = REGISTRY.get("intune.device.os_patched")
    windows = device_payload(id="y", platform="windows", os_version="10.0.26100.1")
    with pytest.raises(KeyError, match="no release list configured for platform 'windows'"):
        spec.func(windows, spec.parameters)


def test_the_intune_fake_serves_graph_csdl_shapes():
    """What FakeIntune serves validates against the managedDevice and
    windowsProtectionState types of Microsoft Graph's v1.0 CSDL (tests/vendor/graph)."""
    import httpx

    from connectors.intune.devices import SELECT
    from tests.device_fakes import GRAPH_TOKEN
    from tests.vendor_schemas import assert_valid, graph_schema

    devices, states = planted_intune()
    with FakeIntune(len(devices), devices.__getitem__, states.get, page_cap=4) as graph:
        headers = {"Authorization": f"Bearer {GRAPH_TOKEN}"}
        page = httpx.get(
            f"{graph.url}/v1.0/deviceManagement/managedDevices",
            params={"$select": SELECT, "$top": 999},
            headers=headers,
        ).json()
        state = httpx.get(
            f"{graph.url}/v1.0/deviceManagement/managedDevices/d-jb/windowsProtectionState",
            headers=headers,
        ).json()
    assert len(page["value"]) == 4 and "%24skiptoken=4" in page["@odata.nextLink"]
    assert_valid(page, graph_schema("managedDevice", collection=True), "managedDevices page")
    assert_valid(state, graph_schema("windowsProtectionState"), "windowsProtectionState")
    bad = {**devices[0], "complianceState": "ok"}
    with pytest.raises(AssertionError, match="complianceState"):
        assert_valid({"value": [bad]}, graph_schema("managedDevice", collection=True))


def test_intune_policy_without_passcode_or_lock_fails_for_platforms_in_use(authority):
    """Only platforms with managed devices are judged: no Android device here, so the
    missing Android policy does not matter; iOS without a lock and an unassigned macOS
    policy fail."""
    devices, states = planted_intune()
    with FakeIntune(len(devices), devices.__getitem__, states.get) as graph:
        graph.token = TOKEN
        graph.policies = [
            compliance_policy("windows10CompliancePolicy"),
            compliance_policy("macOSCompliancePolicy", assigned=False),
            compliance_policy("iosCompliancePolicy", lock=None),
        ]
        run = run_engine(
            "intune", intune_options(authority, graph), checks=_params("intune.device")
        )
    f = run.one("intune.tenant.passcode_policy", "compliance-policies")
    assert f.status == "fail", f.message
    assert "for: ios, macos (devices: ios 2, macos 1)" in f.message
    assert set(f.controls) == {"A.7.7", "A.8.1"}
    assert len(BASELINE_POLICIES) == 4


def test_intune_policy_check_errors_when_devices_were_not_read(authority):
    devices, states = planted_intune()
    with FakeIntune(len(devices), devices.__getitem__, states.get) as graph:
        graph.token = TOKEN
        graph.faults["/v1.0/deviceManagement/managedDevices"].extend(
            [(500, {}, '{"error":{"code":"InternalServerError","message":"x"}}')] * 3
        )
        run = run_engine("intune", intune_options(authority, graph))
    assert run.status == "partial"
    f = run.one("intune.tenant.passcode_policy", "compliance-policies")
    assert f.status == "error" and "device unit was not read cleanly" in f.message


def test_page_number_paginator_without_a_total_stops_on_a_short_page(httpserver):
    """``HttpClient.paginate_pages`` (Jamf's paging): repeated parameters survive, and
    without ``totalCount`` a page shorter than ``page-size`` is the last."""
    from connectors.http import HttpClient, HttpOptions

    httpserver.no_handler_status_code = 418
    for page, items in ((0, [1, 2]), (1, [3])):
        httpserver.expect_ordered_request(
            "/items",
            query_string=f"section=A&section=B&page={page}&page-size=2",
        ).respond_with_json({"results": items})
    with HttpClient(httpserver.url_for("/"), options=HttpOptions(max_attempts=1)) as http:
        got = list(
            http.paginate_pages(
                "/items",
                params=[("section", "A"), ("section", "B")],
                items_key="results",
                size_param="page-size",
                first_page=0,
                total_key="totalCount",
                page_size=2,
            )
        )
    assert got == [1, 2, 3]
    assert len(httpserver.log) == 2


def test_jamf_reads_full_pages_by_default(monkeypatch):
    """The default page size is Jamf Pro's maximum (2000): 2,500 computers are two
    inventory calls, not five (benchmarks/calls.py flagged the former default of 500)."""
    monkeypatch.setenv("ANNEXA_TEST_JAMF_PASSWORD", JAMF_PASSWORD)
    macs = [jamf_computer(i, NOW) for i in range(2500)]
    with FakeJamf(len(macs), macs.__getitem__) as fake:
        opts = {k: v for k, v in jamf_options(fake).items() if k != "page_size"}
        run = run_engine("jamf", {**opts, "auth": "basic", "username": JAMF_USER,
                                  "password": {"env": "ANNEXA_TEST_JAMF_PASSWORD"}})
        assert len(fake.sections_seen) == 2
    computers = [e for e in run.evidence if e.resource_type == "jamf.computer.inventory"]
    assert len(computers) == 2500
