"""Fakes of the device-management APIs on 127.0.0.1, for tests and benchmarks.

Both serve the vendors' documented shapes, page the way the real APIs do, demand their
authentication and can be told to answer 429 with ``Retry-After``:

* :class:`FakeIntune` — Microsoft Graph v1.0 ``/deviceManagement/managedDevices``
  (``managedDevice`` properties as typed in the Graph CSDL, microsoftgraph/msgraph-metadata
  ``schemas/v1.0-Prod.csdl``; ``@odata.nextLink`` paging with ``$skiptoken``, ``$top``
  capped) and ``/deviceManagement/managedDevices/{id}/windowsProtectionState``
  (``windowsProtectionState`` entity, same CSDL; Microsoft Learn "windowsProtectionState
  resource type"); bearer token required; Graph's error body ``{"error": {"code",
  "message"}}``.
* :class:`FakeJamf` — Jamf Pro API ``POST /api/v1/auth/token`` (HTTP Basic → ``{"token",
  "expires"}``), ``POST /api/oauth/token`` (client credentials → ``access_token``,
  ``expires_in``) and ``GET /api/v1/computers-inventory`` with repeated ``section``
  parameters, ``page``/``page-size`` from 0 and ``{"totalCount", "results"}`` bodies;
  section shapes (``ComputerGeneral``, ``ComputerDiskEncryption``, ``ComputerSecurity``
  with its ``sipStatus``/``gatekeeperStatus`` enums, ``ComputerOperatingSystem``,
  ``ComputerUserAndLocation``) as in Jamf Pro's OpenAPI schema (generated from a Jamf Pro
  server's ``/api/schema`` by PixarAnimationStudios/ruby-jss ``oapi_schemas``).

Devices are produced by a function of their index, so a benchmark fake of 100,000
devices holds none of them in memory.
"""

from __future__ import annotations

import base64
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlencode, urlsplit

from tests.raw_http import send_bytes, send_json

GRAPH_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-intune-token.sig0123456789"
JAMF_USER, JAMF_PASSWORD = "annexa-reader", "jamf-fake-password-0123456789"
JAMF_CLIENT, JAMF_SECRET = "c0ffee00-1111-4111-8111-000000000001", "jamf-client-secret-0123456789"
JAMF_TOKEN = "jamf-bearer-token-0123456789abcdef"


def stamp(now: datetime, days_ago: float, fraction: bool = True) -> str:
    moment = now - timedelta(days=days_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%S" + (".0000000Z" if fraction else "Z"))


def intune_device(
    i: int,
    now: datetime,
    *,
    os: str = "Windows",
    version: str = "10.0.26100.2605",
    email: str | None = None,
    encrypted: bool = True,
    compliance: str = "compliant",
    jailbroken: str = "Unknown",
    synced_days: float = 1.5,
    device_id: str | None = None,
) -> dict[str, Any]:
    """A ``managedDevice`` with the properties the connector selects."""
    email = email if email is not None else f"user{i}@acme.example"
    return {
        "id": device_id or f"{i:08d}-0000-4000-8000-00000000d0d0",
        "deviceName": f"DEV-{i:06d}",
        "operatingSystem": os,
        "osVersion": version,
        "complianceState": compliance,
        "isEncrypted": encrypted,
        "jailBroken": jailbroken,
        "lastSyncDateTime": stamp(now, synced_days),
        "enrolledDateTime": stamp(now, 400),
        "userPrincipalName": email,
        "emailAddress": email,
        "managedDeviceOwnerType": "company",
        "managementState": "managed",
    }


def protection_state(
    device_id: str, *, malware: bool = True, realtime: bool = True, overdue: bool = False
) -> dict[str, Any]:
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/"
        "managedDevices('x')/windowsProtectionState/$entity",
        "@odata.type": "#microsoft.graph.windowsProtectionState",
        "id": device_id,
        "malwareProtectionEnabled": malware,
        "deviceState": "clean",
        "realTimeProtectionEnabled": realtime,
        "networkInspectionSystemEnabled": True,
        "quickScanOverdue": False,
        "fullScanOverdue": False,
        "signatureUpdateOverdue": overdue,
        "rebootRequired": False,
        "fullScanRequired": False,
        "engineVersion": "1.1.24090.11",
        "signatureVersion": "1.421.292.0",
        "antiMalwareVersion": "4.18.24090.11",
        "lastQuickScanDateTime": None,
        "lastFullScanDateTime": None,
        "lastQuickScanSignatureVersion": None,
        "lastFullScanSignatureVersion": None,
        "lastReportedDateTime": None,
        "productStatus": "noStatus",
        "isVirtualMachine": False,
        "tamperProtectionEnabled": True,
    }


def compliance_policy(
    kind: str, *, required: bool = True, lock: int | None = 5, assigned: bool = True
) -> dict[str, Any]:
    """A ``deviceCompliancePolicy`` of OData type ``kind`` with its ``assignments``."""
    ios = kind == "iosCompliancePolicy"
    word = "passcode" if ios else "password"
    return {
        "@odata.type": f"#microsoft.graph.{kind}",
        "id": f"pol-{kind}",
        "displayName": f"Baseline {kind}",
        "description": None,
        "createdDateTime": "2026-01-05T10:00:00Z",
        "lastModifiedDateTime": "2026-06-01T10:00:00Z",
        "version": 3,
        f"{word}Required": required,
        f"{word}MinutesOfInactivityBeforeLock": lock,
        "assignments": [
            {
                "id": f"asg-{kind}",
                "target": {"@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget"},
            }
        ]
        if assigned
        else [],
    }


BASELINE_POLICIES = (
    "windows10CompliancePolicy",
    "macOSCompliancePolicy",
    "iosCompliancePolicy",
    "androidCompliancePolicy",
)


def jamf_computer(
    i: int,
    now: datetime,
    *,
    email: str | None = None,
    filevault: str = "ENCRYPTED",
    firewall: bool = True,
    gatekeeper: str = "APP_STORE_AND_IDENTIFIED_DEVELOPERS",
    sip: str = "ENABLED",
    auto_login_disabled: bool = True,
    version: str = "15.7.2",
    contact_days: float = 1.5,
    managed: bool = True,
) -> dict[str, Any]:
    """A computer of ``computers-inventory`` with the five sections the connector asks."""
    email = email if email is not None else f"mac{i}@acme.example"
    return {
        "id": str(i + 1),
        "udid": f"{i:08X}-0000-4000-8000-00000000CAFE",
        "general": {
            "name": f"MAC-{i:06d}",
            "platform": "Mac",
            "lastContactTime": stamp(now, contact_days, fraction=False),
            "reportDate": stamp(now, contact_days, fraction=False),
            "lastEnrolledDate": stamp(now, 300, fraction=False),
            "remoteManagement": {"managed": managed, "managementUsername": "jamfadmin"},
            "supervised": True,
        },
        "diskEncryption": {
            "bootPartitionEncryptionDetails": {
                "partitionName": "Macintosh HD (Boot Partition)",
                "partitionFileVault2State": filevault,
                "partitionFileVault2Percent": 100 if filevault == "ENCRYPTED" else 0,
            },
            "individualRecoveryKeyValidityStatus": "VALID",
            "institutionalRecoveryKeyPresent": False,
            "diskEncryptionConfigurationName": "FileVault",
            "fileVault2EnabledUserNames": ["user"],
        },
        "security": {
            "sipStatus": sip,
            "gatekeeperStatus": gatekeeper,
            "xprotectVersion": "5287",
            "autoLoginDisabled": auto_login_disabled,
            "remoteDesktopEnabled": False,
            "activationLockEnabled": False,
            "recoveryLockEnabled": False,
            "firewallEnabled": firewall,
            "secureBootLevel": "FULL_SECURITY",
            "externalBootLevel": "DISALLOW_BOOTING_FROM_EXTERNAL_MEDIA",
            "bootstrapTokenAllowed": True,
        },
        "operatingSystem": {
            "name": "macOS",
            "version": version,
            "build": "24G325",
            "supplementalBuildVersion": None,
            "rapidSecurityResponse": None,
            "activeDirectoryStatus": "Not Bound",
            "fileVault2Status": "BOOT_ENCRYPTED" if filevault == "ENCRYPTED" else "NOT_ENCRYPTED",
        },
        "userAndLocation": {
            "username": email.split("@")[0],
            "realname": f"User {i}",
            "email": email,
            "position": "Engineer",
            "phone": None,
        },
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.requests: list[str] = []
        self.lock = threading.Lock()
        #: path → answers to give before the real one: (status, headers, body).
        self.faults: dict[str, list[tuple[int, dict[str, str], str]]] = defaultdict(list)
        self.faults_served = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Any
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        send_json(self, status, body, headers=headers)

    def fault(self, path: str) -> bool:
        with self.server.lock:
            self.server.requests.append(self.path)
            queued = self.server.faults.get(path)
            answer = queued.pop(0) if queued else None
        if answer is None or answer[0] == 0:  # 0: this request passes (spacing faults)
            return False
        with self.server.lock:
            self.server.faults_served += 1
        status, headers, body = answer
        send_bytes(self, status, body.encode(), content_type=None, headers=headers)
        return True

    def admitted(self, token: str, refusal: Any) -> SplitResult | None:
        """The request's split URL, or None once it is answered: by an injected fault, or
        401 with ``refusal`` when it does not carry the bearer ``token``."""
        parts = urlsplit(self.path)
        if self.fault(parts.path):
            return None
        if self.headers.get("Authorization") != f"Bearer {token}":
            self.send_json(401, refusal)
            return None
        return parts

    def body_form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length", 0) or 0)
        return {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}


# --------------------------------------------------------------------------- Intune


class _GraphHandler(_Handler):
    def do_GET(self) -> None:
        srv: FakeIntune = self.server
        refusal = {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}
        parts = self.admitted(srv.token, {"error": refusal})
        if parts is None:
            return
        args = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/v1.0/deviceManagement/managedDevices":
            top = min(int(args.get("$top", 100)), srv.page_cap)
            start = int(args.get("$skiptoken", "0") or 0)
            select = set(args.get("$select", "").split(",")) - {""}
            rows = []
            for i in range(start, min(start + top, srv.count)):
                d = srv.device(i)
                rows.append({k: v for k, v in d.items() if not select or k in select})
            body: dict[str, Any] = {
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/"
                "managedDevices",
                "value": rows,
            }
            if start + top < srv.count:
                nxt = {**args, "$skiptoken": str(start + top)}
                body["@odata.nextLink"] = f"{srv.url}{parts.path}?{urlencode(nxt)}"
            self.send_json(200, body)
            return
        if parts.path == "/v1.0/deviceManagement/deviceCompliancePolicies":
            self.send_json(
                200,
                {
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/"
                    "deviceCompliancePolicies(assignments())",
                    "value": srv.policies
                    if args.get("$expand") == "assignments"
                    else [{k: v for k, v in p.items() if k != "assignments"} for p in srv.policies],
                },
            )
            return
        prefix, suffix = "/v1.0/deviceManagement/managedDevices/", "/windowsProtectionState"
        if parts.path.startswith(prefix) and parts.path.endswith(suffix):
            did = parts.path[len(prefix) : -len(suffix)]
            state = srv.protection(did)
            if state is None:
                self.send_json(
                    404, {"error": {"code": "ResourceNotFound", "message": "Resource not found"}}
                )
            else:
                self.send_json(200, state)
            return
        self.send_json(418, {"error": {"code": "NotFaked", "message": parts.path}})


class FakeIntune(_Server):
    """Graph's Intune device endpoints (see the module docstring for the sources)."""

    def __init__(
        self,
        count: int,
        device: Callable[[int], dict[str, Any]],
        protection: Callable[[str], dict[str, Any] | None] = protection_state,
        page_cap: int = 1000,
    ) -> None:
        super().__init__(_GraphHandler)
        self.count, self.device, self.protection, self.page_cap = (
            count,
            device,
            protection,
            page_cap,
        )
        self.token = GRAPH_TOKEN
        self.policies = [compliance_policy(k) for k in BASELINE_POLICIES]


# --------------------------------------------------------------------------- Jamf


class _JamfHandler(_Handler):
    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if self.fault(path):
            return
        srv: FakeJamf = self.server
        expires = datetime.now(UTC) + timedelta(minutes=20)
        if path == "/api/v1/auth/token":
            want = base64.b64encode(f"{JAMF_USER}:{JAMF_PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != f"Basic {want}":
                self.send_json(401, {"httpStatus": 401, "errors": []})
                return
            srv.tokens_issued += 1
            self.send_json(
                200,
                {
                    "token": JAMF_TOKEN,
                    "expires": expires.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                },
            )
            return
        if path == "/api/oauth/token":
            form = self.body_form()
            if (form.get("client_id"), form.get("client_secret")) != (JAMF_CLIENT, JAMF_SECRET):
                self.send_json(401, {"error": "invalid_client"})
                return
            srv.tokens_issued += 1
            self.send_json(
                200,
                {
                    "access_token": JAMF_TOKEN,
                    "scope": "api-role:2",
                    "token_type": "Bearer",
                    "expires_in": 1199,
                },
            )
            return
        self.send_json(404, {"httpStatus": 404, "errors": []})

    def do_GET(self) -> None:
        srv: FakeJamf = self.server
        refusal = {"code": "INVALID_TOKEN", "description": "Unauthorized", "id": "0", "field": None}
        parts = self.admitted(JAMF_TOKEN, {"httpStatus": 401, "errors": [refusal]})
        if parts is None:
            return
        if parts.path != "/api/v1/computers-inventory":
            self.send_json(404, {"httpStatus": 404, "errors": []})
            return
        q = parse_qs(parts.query)
        srv.sections_seen.append(tuple(q.get("section", [])))
        page = int(q.get("page", ["0"])[0])
        size = min(int(q.get("page-size", ["100"])[0]), srv.page_cap)
        start = page * size
        rows = [srv.computer(i) for i in range(start, min(start + size, srv.count))]
        self.send_json(200, {"totalCount": srv.count, "results": rows})


class FakeJamf(_Server):
    """Jamf Pro API token and inventory endpoints (see the module docstring)."""

    def __init__(
        self, count: int, computer: Callable[[int], dict[str, Any]], page_cap: int = 2000
    ) -> None:
        super().__init__(_JamfHandler)
        self.count, self.computer, self.page_cap = count, computer, page_cap
        self.tokens_issued = 0
        self.sections_seen: list[tuple[str, ...]] = []
