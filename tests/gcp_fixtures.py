"""A fake of Google Cloud on 127.0.0.1: Resource Manager v3 (REST) and the REST APIs the
connector reads, plus an OAuth token endpoint for service-account keys.

One real HTTP server (``ThreadingHTTPServer``) serves:

* Resource Manager at the root, as ``google-cloud-resource-manager`` 1.19 calls it with
  ``transport="rest"``: ``GET /v3/projects:search`` (``pageToken``), ``GET /v3/projects/
  <id>``, ``GET /v3/organizations:search``, ``GET /v3/folders?parent=…``, ``GET /v3/
  folders/<n>``, ``POST /v3/<resource>:getIamPolicy`` (the client adds ``$alt=json;
  enum-encoding=int``: routing is on the path only);
* each other API under its own prefix, which the connector gets as its endpoint
  (``<url>/iam``, ``<url>/storage``, ``<url>/compute``, ``<url>/sqladmin``,
  ``<url>/cloudkms``, ``<url>/logging``, ``<url>/scc``), with Google's list shapes:
  ``{<key>: [...], "nextPageToken": "…"}``, empty lists omitted, ``aggregated`` lists
  keyed by ``regions/<name>``;
* Cloud Asset Inventory (``<url>/cloudasset``): ``GET /v1/<parent>/assets`` (``assets.list``
  of the ``cloudasset.v1`` discovery document shipped in google-api-python-client:
  ``contentType`` RESOURCE | IAM_POLICY, repeated ``assetTypes``, ``pageSize``/
  ``pageToken``; ``ListAssetsResponse`` {``assets``, ``nextPageToken``, ``readTime``};
  ``Asset`` {``name``, ``assetType``, ``ancestors``, ``updateTime``, ``resource``
  {``version``, ``discoveryDocumentUri``, ``discoveryName``, ``parent``, ``location``,
  ``data``} | ``iamPolicy``}) built from the same planted estate as the direct APIs:
  buckets and their ``…/iam`` policies, firewalls, networks and aggregated subnetworks
  of every project under the parent (asset names as in Google's "Resource name format"
  page: ``//storage.googleapis.com/<bucket>``, ``//compute.googleapis.com/projects/<id>/
  global/firewalls/<name>``);
* ``POST /token``: the JWT-bearer grant of a service-account key; the assertion's
  signature is verified with the key's public half.

Every request must carry ``Authorization: Bearer <token>``. ``denied`` projects answer
403 ``PERMISSION_DENIED`` on every path that names them; ``faults`` script answers.
:func:`build_estate` plants a known estate in an organisation → folder → folder tree and
returns the failures it expects the checks to find.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest

from tests.raw_http import KeepAliveJsonHandler, Seen, ServedFake, send_json

GCP_TOKEN = "ya29.gcp-test-token-0123456789"
ORG = "organizations/100"
ENG = "folders/200"
PROD = "folders/201"
APIS = ("iam", "storage", "compute", "sqladmin", "cloudkms", "logging", "scc",
        "securitycenter", "dlp", "cloudbilling", "billingbudgets", "orgpolicy", "cloudasset")


def ts(days_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


@dataclass
class Fault:
    pattern: re.Pattern[str]
    status: int
    times: int = 1_000_000
    hits: int = 0


class GcpFake(ServedFake):
    """The fake's estate and server (context manager)."""

    def __init__(self, *, page_size: int = 2, token: str = GCP_TOKEN, record: bool = True,
                 public_key_pem: bytes | None = None, asset_page_size: int = 1000) -> None:
        self.page_size = page_size
        #: Cloud Asset Inventory pages: the caller's pageSize, at most this.
        self.asset_page_size = asset_page_size
        #: Every asset's ``updateTime`` (its last change), and the listings' ``readTime``
        #: (the snapshot time; None: the time of the request, as Google answers a listing
        #: made without ``readTime``).
        self.asset_update_time = "2026-01-01T00:00:00Z"
        self.asset_read_time: str | None = None
        self.token = token
        self.record = record
        self.public_key_pem = public_key_pem
        self.organizations: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.projects: dict[str, dict[str, Any]] = {}  # by project id
        self.policies: dict[str, dict[str, Any]] = {}  # by resource name
        self.lists: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.denied: set[str] = set()
        self.faults: list[Fault] = []
        self.requests: list[Seen] = []
        self.token_grants: list[dict[str, Any]] = []
        self.request_count = 0
        self.self_signed_jwts = 0
        #: Answers that break the discovery document's schema, and paths no documented
        #: method matches (see :meth:`validate`).
        self.schema_violations: list[str] = []
        self.unvalidated: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- estate

    def add_org(self, name: str, display: str) -> None:
        self.organizations[name] = {"name": name, "displayName": display, "state": "ACTIVE",
                                    "directoryCustomerId": "C0abc123",
                                    "createTime": "2020-01-01T00:00:00Z", "etag": "x"}

    def add_folder(self, name: str, parent: str, display: str) -> None:
        self.folders[name] = {"name": name, "parent": parent, "displayName": display,
                              "state": "ACTIVE", "createTime": "2020-01-01T00:00:00Z",
                              "etag": "x"}

    def add_project(self, pid: str, number: int, parent: str,
                    labels: dict[str, str] | None = None) -> None:
        """A ``Project`` of cloudresourcemanager.v3."""
        self.projects[pid] = {"name": f"projects/{number}", "parent": parent,
                              "projectId": pid, "state": "ACTIVE", "displayName": pid,
                              "createTime": "2021-01-01T00:00:00Z", "etag": "x",
                              "labels": labels if labels is not None else {"env": "test"}}

    def put_list(self, path: str, key: str, items: list[dict[str, Any]]) -> None:
        self.lists[path] = (key, items)

    def put(self, path: str, doc: dict[str, Any]) -> None:
        self.docs[path] = doc

    def fault(self, pattern: str, status: int, times: int = 1_000_000) -> Fault:
        f = Fault(re.compile(pattern), status, times)
        self.faults.append(f)
        return f

    # -- server

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def endpoints(self) -> dict[str, str]:
        return {api: f"{self.url}/{api}" for api in APIS}

    def start(self) -> GcpFake:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    # -- routing

    def answer(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        self.see(method, path, query, headers)
        if path == "/token" and method == "POST":
            return self._token(body)
        if not self._authorised(headers.get("authorization") or ""):
            return 401, _error(401, "UNAUTHENTICATED", "Request had invalid credentials.")
        for f in self.faults:
            if f.hits < f.times and f.pattern.search(path):
                f.hits += 1
                return f.status, _error(f.status, "FAULT", f"injected {f.status}")
        for denied in self.denied:
            if re.search(rf"(^|/)projects/{re.escape(denied)}(/|:|$)", path) or (
                    query.get("project") == [denied]):
                return 403, _error(403, "PERMISSION_DENIED",
                                   f"The caller does not have permission on {denied}")
        if path.startswith("/v3/"):
            return self._resource_manager(method, path[4:], query)
        api, _, rest = path[1:].partition("/")
        if api not in APIS:
            return 404, _error(404, "NOT_FOUND", path)
        return self._api(f"/{rest}", query)

    def validate(self, method: str, path: str, doc: Any) -> None:
        """Check a 200 answer against the discovery document of its API and method."""
        from tests.gcp_discovery import DOCUMENTS, UNDOCUMENTED

        if path == "/token":
            return
        if path.startswith("/v3/"):
            api, rest = "resourcemanager", path
        else:
            api, _, rest = path[1:].partition("/")
            rest = "/" + rest
        if api in UNDOCUMENTED:
            self.unvalidated.add(f"{api}: {rest}")
            return
        disco = _discovery(DOCUMENTS[api])
        found = disco.method(method, rest)
        if found is None or found.response is None:
            self.unvalidated.add(f"{api}: {method} {rest}")
            return
        with self._lock:
            self.schema_violations += [f"{found.id}: {v}"
                                       for v in disco.violations(found.response, doc)]

    def _authorised(self, header: str) -> bool:
        """The token the fake issued, or a self-signed JWT of the service-account key
        (Google's client libraries send those instead of exchanging them for a token)."""
        import google.auth.jwt

        if header == f"Bearer {self.token}":
            return True
        if not header.startswith("Bearer ") or self.public_key_pem is None:
            return False
        try:
            google.auth.jwt.decode(header[7:], certs=self.public_key_pem)
        except Exception:  # noqa: BLE001 - anything else is not authorised
            return False
        self.self_signed_jwts += 1
        return True

    def _token(self, body: bytes) -> tuple[int, Any]:
        import google.auth.jwt

        form = parse_qs(body.decode())
        self.token_grants.append(form)
        assertion = (form.get("assertion") or [""])[0]
        try:
            # google-auth signs the grant for Google's token endpoint whatever token_uri
            # says (as Google's own endpoint expects); the fake accepts that or its own.
            claims = google.auth.jwt.decode(
                assertion, certs=self.public_key_pem,
                audience=["https://oauth2.googleapis.com/token", f"{self.url}/token"])
        except Exception as exc:  # noqa: BLE001 - any invalid assertion
            return 400, {"error": "invalid_grant", "error_description": str(exc)[:100]}
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type"}
        return 200, {"access_token": self.token, "expires_in": 3599, "token_type": "Bearer",
                     "scope_seen": claims.get("scope")}

    def _page(self, key: str, items: list[Any], query: dict[str, list[str]]) -> dict[str, Any]:
        start = int((query.get("pageToken") or ["0"])[0] or 0)
        page = items[start:start + self.page_size]
        body: dict[str, Any] = {}
        if page:
            body[key] = page
        if start + self.page_size < len(items):
            body["nextPageToken"] = str(start + self.page_size)
        return body

    def _resource_manager(self, method: str, path: str, query: dict[str, list[str]]
                          ) -> tuple[int, Any]:
        if path == "projects:search" and method == "GET":
            flt = (query.get("query") or [""])[0]
            items = [p for p in self.projects.values()
                     if "state:ACTIVE" not in flt or p["state"] == "ACTIVE"]
            return 200, self._page("projects", items, query)
        if path == "organizations:search":
            return 200, self._page("organizations", list(self.organizations.values()), query)
        if path == "folders" and method == "GET":
            parent = (query.get("parent") or [""])[0]
            items = [f for f in self.folders.values() if f["parent"] == parent]
            return 200, self._page("folders", items, query)
        m = re.fullmatch(r"(projects|folders|organizations)/([^/:]+):getIamPolicy", path)
        if m and method == "POST":
            kind, ident = m.groups()
            resource = f"{kind}/{ident}"
            if kind == "projects" and ident not in self.projects:
                return 403, _error(403, "PERMISSION_DENIED", "no such project or no access")
            return 200, self.policies.get(resource, {"version": 1, "etag": "BwXa"})
        m = re.fullmatch(r"projects/([^/:]+)", path)
        if m and m.group(1) in self.projects:
            return 200, self.projects[m.group(1)]
        if path in self.folders:
            return 200, self.folders[path]
        return 404 if method == "GET" else 405, _error(404, "NOT_FOUND", path)

    # -- Cloud Asset Inventory, from the planted estate

    def _ancestors(self, pid: str) -> list[str]:
        project = self.projects[pid]
        chain = [project["name"]]
        node = project.get("parent")
        while node:
            chain.append(node)
            node = (self.folders.get(node) or {}).get("parent")
        return chain

    def _estate_assets(self, pid: str) -> Iterator[tuple[str, str, dict[str, Any],
                                                          dict[str, Any] | None]]:
        """``(asset name, asset type, resource data, IAM policy)`` of one project."""
        compute = "//compute.googleapis.com"
        for b in self.lists.get(f"/storage/v1/b?project={pid}", ("", []))[1]:
            pol = self.docs.get(f"/storage/v1/b/{b['name']}/iam")
            yield (f"//storage.googleapis.com/{b['name']}", "storage.googleapis.com/Bucket",
                   b, pol)
        base = f"/compute/v1/projects/{pid}"
        for kind, atype in (("firewalls", "Firewall"), ("networks", "Network")):
            for r in self.lists.get(f"{base}/global/{kind}", ("", []))[1]:
                yield (f"{compute}/projects/{pid}/global/{kind}/{r['name']}",
                       f"compute.googleapis.com/{atype}", r, None)
        for scoped in (self.docs.get(f"{base}/aggregated/subnetworks") or {}).get(
                "items", {}).values():
            for r in scoped.get("subnetworks") or []:
                region = str(r.get("region", "")).rsplit("/", 1)[-1]
                yield (f"{compute}/projects/{pid}/regions/{region}/subnetworks/{r['name']}",
                       "compute.googleapis.com/Subnetwork", r, None)

    def _assets(self, parent: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        content = (query.get("contentType") or ["CONTENT_TYPE_UNSPECIFIED"])[0]
        types = set(query.get("assetTypes") or [])
        kind, _, ident = parent.partition("/")
        if kind == "projects":
            ident = next((p["name"] for pid, p in self.projects.items()
                          if ident in (pid, p["name"].split("/")[1])), "")
            parent = ident
        if not ident or (kind == "organizations" and parent not in self.organizations) or (
                kind == "folders" and parent not in self.folders):
            return 403, _error(403, "PERMISSION_DENIED", f"no access to {parent}")
        assets: list[dict[str, Any]] = []
        for pid in self.projects:
            ancestors = self._ancestors(pid)
            if parent not in ancestors:
                continue
            for name, atype, data, pol in self._estate_assets(pid):
                if types and atype not in types:
                    continue
                asset: dict[str, Any] = {"name": name, "assetType": atype,
                                         "ancestors": ancestors,
                                         "updateTime": self.asset_update_time}
                if content == "RESOURCE":
                    service, _, short = atype.partition("/")
                    api = service.split(".")[0]
                    asset["resource"] = {
                        "version": "v1", "discoveryName": short,
                        "discoveryDocumentUri": f"https://www.googleapis.com/discovery/v1/"
                                                f"apis/{api}/v1/rest",
                        "parent": f"//cloudresourcemanager.googleapis.com/{ancestors[0]}",
                        "data": data}
                    if data.get("location"):
                        asset["resource"]["location"] = str(data["location"]).lower()
                elif content == "IAM_POLICY":
                    if pol is None:
                        continue
                    asset["iamPolicy"] = {"version": 1, "etag": "BwXa", "bindings": [
                        {"role": b["role"], "members": b["members"]}
                        for b in pol.get("bindings") or []]}
                else:
                    return 400, _error(400, "INVALID_ARGUMENT",
                                       f"contentType {content} is not served by the fake")
                assets.append(asset)
        size = min(int((query.get("pageSize") or ["100"])[0]), 1000, self.asset_page_size)
        start = int((query.get("pageToken") or ["0"])[0] or 0)
        read = self.asset_read_time or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body: dict[str, Any] = {"readTime": read}
        if assets[start:start + size]:
            body["assets"] = assets[start:start + size]
        if start + size < len(assets):
            body["nextPageToken"] = str(start + size)
        return 200, body

    def _api(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        m = re.fullmatch(r"/v1/((?:organizations|folders|projects)/[^/]+)/assets", path)
        if m:
            return self._assets(m.group(1), query)
        if path == "/storage/v1/b":  # buckets are listed with ?project=
            key, items = self.lists.get(f"/storage/v1/b?project={query['project'][0]}",
                                        ("items", []))
            return 200, {"kind": "storage#buckets", **self._page(key, items, query)}
        if path in self.lists:
            key, items = self.lists[path]
            return 200, self._page(key, items, query)
        if path in self.docs:
            return 200, self.docs[path]
        m = re.fullmatch(r"/storage/v1/b/([^/]+)", path)
        if m:  # buckets.get of a bucket planted in a project's listing
            for key, (_, items) in self.lists.items():
                if key.startswith("/storage/v1/b?project="):
                    found = [b for b in items if b.get("name") == m.group(1)]
                    if found:
                        return 200, found[0]
        if re.search(r"/(serviceAccounts|firewalls|networks|instances|locations|keyRings|"
                     r"cryptoKeys|sinks|securityCenterServices|findings|jobTriggers|"
                     r"discoveryConfigs|targetSslProxies|budgets|getXpnHost)$", path):
            return 200, {}  # Google omits empty lists (and getXpnHost: no host)
        m = re.fullmatch(r"/v1/projects/([^/]+)/billingInfo", path)
        if m:  # a project without a billing account
            return 200, {"name": f"projects/{m.group(1)}/billingInfo",
                         "projectId": m.group(1), "billingEnabled": False}
        m = re.fullmatch(r"/v2/(projects/[^/]+/policies/[^/:]+):getEffectivePolicy", path)
        if m:  # nothing set anywhere: a policy without a spec (not enforced)
            return 200, {"name": m.group(1)}
        if path.endswith("/keys"):
            return 200, {}
        if "/aggregated/" in path:
            return 200, {"items": {"regions/us-east1": {"warning": {
                "code": "NO_RESULTS_ON_PAGE", "message": "none"}}}}
        return 404, _error(404, "NOT_FOUND", f"{path} not found")


@functools.cache
def _discovery(name: str) -> Any:
    from tests.gcp_discovery import Discovery

    return Discovery(name)


def _make_handler(fake: GcpFake) -> type[BaseHTTPRequestHandler]:
    class Handler(KeepAliveJsonHandler):
        def serve(self, method: str) -> None:
            parts, query, headers, body = self.request_parts()
            path = unquote(parts.path)
            status, doc = fake.answer(method, path, query, headers, body)
            if status == 200:
                fake.validate(method, path, doc)
            send_json(self, status, doc, "application/json; charset=UTF-8")

    return Handler


# --------------------------------------------------------------------------- estate


@dataclass
class Estate:
    fake: GcpFake
    expected_failures: set[tuple[str, str]] = field(default_factory=set)

    def expect(self, check_id: str, resource_id: str) -> None:
        self.expected_failures.add((check_id, resource_id))


def audit_config(*types: str, exempted: tuple[str, ...] = ()) -> dict[str, Any]:
    configs = []
    for t in types:
        c: dict[str, Any] = {"logType": t}
        if exempted and t == "DATA_READ":
            c["exemptedMembers"] = list(exempted)
        configs.append(c)
    return {"service": "allServices", "auditLogConfigs": configs}


FULL_AUDIT = audit_config("ADMIN_READ", "DATA_READ", "DATA_WRITE")

#: Bounded, near-instant retries: a fault the fake plants costs milliseconds, not seconds.
FAST = {"max_attempts": 2, "retry_min_wait": 0, "retry_max_wait": 0.01, "timeout": 5,
        "connect_timeout": 2}


def fake_options(fake: GcpFake, *, key: bool = False, **extra: Any) -> dict[str, Any]:
    """``[connectors.options]`` that point every GCP API at ``fake`` (REST resource
    manager, no retry budget), with ``extra`` on top; ``key`` adds service-account-key
    auth from ``ANNEXA_TEST_GCP_KEY``, its JWT grant sent to the fake's token endpoint."""
    auth = {
        "auth": "service_account_key",
        "service_account_key": {"env": "ANNEXA_TEST_GCP_KEY"},
        "oauth_url": f"{fake.url}/token",
    } if key else {}
    return {
        **auth,
        "resource_manager_transport": "rest",
        "resource_manager_endpoint": fake.url,
        "resource_manager_retry_timeout": 0,
        "endpoints": fake.endpoints(),
        "http": FAST,
        **extra,
    }


def policy(bindings: dict[str, list[str]], audit: list[dict[str, Any]] | None = None
           ) -> dict[str, Any]:
    out: dict[str, Any] = {"version": 1, "etag": "BwYjU2z3xAE=",
                           "bindings": [{"role": r, "members": m} for r, m in bindings.items()]}
    if audit:
        out["auditConfigs"] = audit
    return out


def service_account(project: str, name: str) -> dict[str, Any]:
    email = f"{name}@{project}.iam.gserviceaccount.com"
    return {"name": f"projects/{project}/serviceAccounts/{email}", "projectId": project,
            "uniqueId": str(abs(hash(email)) % 10**20), "email": email,
            "displayName": name, "etag": "MDEwMjE5MjA=", "oauth2ClientId": "1234567890"}


def sa_key(email: str, key_id: str, age_days: float, *, disabled: bool = False
           ) -> dict[str, Any]:
    key: dict[str, Any] = {
        "name": f"projects/p/serviceAccounts/{email}/keys/{key_id}",
        "validAfterTime": ts(age_days), "validBeforeTime": "9999-12-31T23:59:59Z",
        "keyAlgorithm": "KEY_ALG_RSA_2048", "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": "USER_MANAGED",
    }
    if disabled:
        key["disabled"] = True
    return key


def bucket(name: str, *, pap: str = "enforced", ubla: bool = True,
           retention: dict[str, Any] | None = None, location: str = "EU",
           delete_after: int | None = None,
           labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A ``Bucket`` (storage.v1 discovery schema); ``labels`` default to a level of the
    default classification scheme, ``{}`` leaves them out as the API does."""
    b: dict[str, Any] = {
        "kind": "storage#bucket", "selfLink": f"https://www.googleapis.com/storage/v1/b/{name}",
        "id": name, "name": name, "projectNumber": "1", "metageneration": "3",
        "location": location, "storageClass": "STANDARD", "etag": "CAM=",
        "timeCreated": "2023-03-01T10:00:00.000Z", "updated": ts(1),
        "iamConfiguration": {
            "bucketPolicyOnly": {"enabled": ubla},
            "uniformBucketLevelAccess": {"enabled": ubla},
            "publicAccessPrevention": pap,
        },
        "locationType": "multi-region",
        "softDeletePolicy": {"retentionDurationSeconds": "604800",
                             "effectiveTime": "2024-03-01T07:00:00.000Z"},
    }
    labels = {"data-classification": "confidential"} if labels is None else labels
    if labels:
        b["labels"] = labels
    if retention is not None:
        b["retentionPolicy"] = retention
    if delete_after is not None:
        b["lifecycle"] = {"rule": [
            {"action": {"type": "SetStorageClass", "storageClass": "COLDLINE"},
             "condition": {"age": 90}},
            {"action": {"type": "Delete"}, "condition": {"age": delete_after}}]}
    return b


def firewall(project: str, name: str, network: str, ranges: list[str],
             allowed: list[dict[str, Any]], *, direction: str = "INGRESS",
             disabled: bool = False) -> dict[str, Any]:
    """A ``Firewall`` of the compute.v1 discovery document; like the API, empty lists
    (``sourceRanges``, ``allowed``) are left out."""
    rule: dict[str, Any] = {
        "kind": "compute#firewall", "id": str(abs(hash(name)) % 10**18),
        "creationTimestamp": "2023-01-01T00:00:00.000-08:00", "name": name,
        "network": f"https://www.googleapis.com/compute/v1/projects/{project}/global/networks/"
                   f"{network}",
        "priority": 1000, "sourceRanges": ranges, "allowed": allowed, "direction": direction,
        "logConfig": {"enable": False}, "disabled": disabled,
        "selfLink": f"https://www.googleapis.com/compute/v1/projects/{project}/global/"
                    f"firewalls/{name}",
    }
    return {k: v for k, v in rule.items() if v != []}


def vpc(project: str, name: str, auto: bool = False) -> dict[str, Any]:
    return {"kind": "compute#network", "id": "1", "name": name,
            "creationTimestamp": "2023-01-01T00:00:00.000-08:00",
            "selfLink": f"https://www.googleapis.com/compute/v1/projects/{project}/global/"
                        f"networks/{name}",
            "autoCreateSubnetworks": auto, "subnetworks": ["a", "b"],
            "routingConfig": {"routingMode": "REGIONAL"},
            "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL"}


def subnet(project: str, name: str, region: str, *, flow_logs: bool | None,
           purpose: str = "PRIVATE") -> dict[str, Any]:
    s: dict[str, Any] = {
        "kind": "compute#subnetwork", "id": "2", "name": name, "ipCidrRange": "10.0.0.0/24",
        "network": f"https://www.googleapis.com/compute/v1/projects/{project}/global/networks/x",
        "region": f"https://www.googleapis.com/compute/v1/projects/{project}/regions/{region}",
        "purpose": purpose, "privateIpGoogleAccess": True, "stackType": "IPV4_ONLY",
        "fingerprint": "abc=",
    }
    if flow_logs is not None:
        s["logConfig"] = {"enable": flow_logs, "aggregationInterval": "INTERVAL_5_SEC",
                          "flowSampling": 0.5, "metadata": "INCLUDE_ALL_METADATA"}
    return s


def sql_instance(project: str, name: str, *, backups: bool = True, retained: int = 14,
                 public: bool = False, networks: list[str] | None = None,
                 ssl_mode: str | None = "ENCRYPTED_ONLY", replica: bool = False
                 ) -> dict[str, Any]:
    ip: dict[str, Any] = {"ipv4Enabled": public, "privateNetwork": "projects/x/global/networks/y",
                          "authorizedNetworks": [{"value": n, "name": f"n{i}",
                                                  "kind": "sql#aclEntry"}
                                                 for i, n in enumerate(networks or [])]}
    if ssl_mode:
        ip["sslMode"] = ssl_mode
    else:
        ip["requireSsl"] = True
    addresses = [{"type": "PRIVATE", "ipAddress": "10.1.0.3"}]
    if public:
        addresses.append({"type": "PRIMARY", "ipAddress": "34.1.2.3"})
    return {
        "kind": "sql#instance", "state": "RUNNABLE", "databaseVersion": "POSTGRES_15",
        "settings": {
            "authorizedGaeApplications": [], "tier": "db-custom-2-7680", "kind": "sql#settings",
            "availabilityType": "REGIONAL", "pricingPlan": "PER_USE", "settingsVersion": "12",
            "ipConfiguration": ip,
            "backupConfiguration": {"startTime": "03:00", "kind": "sql#backupConfiguration",
                                    "enabled": backups, "pointInTimeRecoveryEnabled": backups,
                                    "backupRetentionSettings": {"retentionUnit": "COUNT",
                                                                "retainedBackups": retained}},
            "deletionProtectionEnabled": True,
        },
        "etag": "abc", "ipAddresses": addresses,
        "serverCaCert": {"kind": "sql#sslCert", "cert": "-----BEGIN CERTIFICATE-----x"},
        "instanceType": "READ_REPLICA_INSTANCE" if replica else "CLOUD_SQL_INSTANCE",
        "project": project, "region": "europe-west1", "gceZone": "europe-west1-b",
        "backendType": "SECOND_GEN", "name": name,
        "connectionName": f"{project}:europe-west1:{name}",
    }


def crypto_key(ring: str, name: str, *, rotation: str | None = "7776000s",
               purpose: str = "ENCRYPT_DECRYPT") -> dict[str, Any]:
    key: dict[str, Any] = {
        "name": f"{ring}/cryptoKeys/{name}",
        "primary": {"name": f"{ring}/cryptoKeys/{name}/cryptoKeyVersions/3",
                    "state": "ENABLED", "createTime": ts(10), "protectionLevel": "SOFTWARE",
                    "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION", "generateTime": ts(10)},
        "purpose": purpose, "createTime": "2023-01-01T00:00:00Z",
        "versionTemplate": {"protectionLevel": "SOFTWARE",
                            "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION"},
        "destroyScheduledDuration": "86400s",
    }
    if purpose != "ENCRYPT_DECRYPT":
        key.pop("primary")
        key["versionTemplate"]["algorithm"] = "RSA_SIGN_PSS_2048_SHA256"
    if rotation:
        key["rotationPeriod"] = rotation
        key["nextRotationTime"] = "2030-01-01T00:00:00Z"
    return key


def sink(parent: str, name: str, *, flt: str = "", include_children: bool = False,
         destination: str = "storage.googleapis.com/central-logs") -> dict[str, Any]:
    s: dict[str, Any] = {"name": name, "destination": destination,
                         "writerIdentity": "serviceAccount:service-1@gcp-sa-logging.iam",
                         "createTime": "2023-01-01T00:00:00Z", "updateTime": ts(3)}
    if flt:
        s["filter"] = flt
    if include_children:
        s["includeChildren"] = True
    return s


def exclusion(name: str, flt: str, *, disabled: bool = False) -> dict[str, Any]:
    """A ``LogExclusion`` (logging.v2 discovery document) of a sink's ``exclusions[]``."""
    return {"name": name, "filter": flt, "disabled": disabled,
            "createTime": "2024-01-01T00:00:00Z", "updateTime": "2024-01-01T00:00:00Z"}


def builtin_sinks(project: str) -> list[dict[str, Any]]:
    bucket_base = f"logging.googleapis.com/projects/{project}/locations/global/buckets"
    return [sink(f"projects/{project}", "_Default", destination=f"{bucket_base}/_Default",
                 flt='NOT LOG_ID("cloudaudit.googleapis.com/activity")'),
            sink(f"projects/{project}", "_Required", destination=f"{bucket_base}/_Required",
                 flt='LOG_ID("cloudaudit.googleapis.com/activity")')]


def scc_services(project: str, sha: str = "ENABLED", *, vmtd: bool = False
                 ) -> list[dict[str, Any]]:
    """``SecurityCenterService`` items of the Security Command Center Management API
    (REST reference, projects.locations.securityCenterServices.list; no discovery
    document ships for it)."""
    base = f"projects/{project}/locations/global/securityCenterServices"
    out = [
        {"name": f"{base}/security-health-analytics", "intendedEnablementState": "INHERITED",
         "effectiveEnablementState": sha, "updateTime": ts(2)},
        {"name": f"{base}/event-threat-detection", "intendedEnablementState": "INHERITED",
         "effectiveEnablementState": "ENABLED", "updateTime": ts(2)},
    ]
    if vmtd:
        out.append({"name": f"{base}/vm-threat-detection", "intendedEnablementState": "ENABLED",
                    "effectiveEnablementState": "ENABLED", "updateTime": ts(2)})
    return out


def scc_finding(project: str, fid: str, category: str, severity: str, days: float, *,
                finding_class: str = "VULNERABILITY", mute: str = "UNDEFINED"
                ) -> dict[str, Any]:
    """A ``ListFindingsResult`` of securitycenter.v1 (finding + resource)."""
    resource = f"//compute.googleapis.com/projects/{project}/zones/europe-west1-b/instances/vm1"
    return {"finding": {
        "name": f"organizations/100/sources/4417/findings/{fid}",
        "parent": "organizations/100/sources/4417", "resourceName": resource,
        "state": "ACTIVE", "category": category, "severity": severity,
        "findingClass": finding_class, "mute": mute, "createTime": ts(days),
        "eventTime": ts(0.5), "canonicalName": f"projects/1/sources/4417/findings/{fid}"},
        "resource": {"name": resource, "projectName": f"//cloudresourcemanager.googleapis.com/"
                     f"projects/{project}", "type": "google.compute.Instance"},
        "stateChange": "UNCHANGED"}


def armor_policy(name: str, *, waf: bool) -> dict[str, Any]:
    """A Cloud Armor ``SecurityPolicy`` (compute.v1)."""
    rules: list[dict[str, Any]] = [{
        "kind": "compute#securityPolicyRule", "priority": 2147483647, "action": "allow",
        "preview": False, "description": "default rule",
        "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}]
    if waf:
        rules.insert(0, {"kind": "compute#securityPolicyRule", "priority": 1000,
                         "action": "deny(403)", "preview": False,
                         "match": {"expr": {"expression":
                                            "evaluatePreconfiguredWaf('sqli-v33-stable')"}}})
    return {"kind": "compute#securityPolicy", "id": "1", "name": name, "type": "CLOUD_ARMOR",
            "creationTimestamp": "2024-01-01T00:00:00.000-08:00", "fingerprint": "x=",
            "selfLink": f"https://www.googleapis.com/compute/v1/projects/p/global/"
                        f"securityPolicies/{name}", "rules": rules}


def backend_service(project: str, name: str, scheme: str, armor: str | None = None
                    ) -> dict[str, Any]:
    """A global ``BackendService`` (compute.v1)."""
    base = f"https://www.googleapis.com/compute/v1/projects/{project}/global"
    b: dict[str, Any] = {"kind": "compute#backendService", "id": "2", "name": name,
                         "creationTimestamp": "2024-01-01T00:00:00.000-08:00",
                         "selfLink": f"{base}/backendServices/{name}", "protocol": "HTTPS",
                         "loadBalancingScheme": scheme, "timeoutSec": 30, "port": 443,
                         "portName": "https", "fingerprint": "y=",
                         "healthChecks": [f"{base}/healthChecks/hc"]}
    if armor:
        b["securityPolicy"] = f"{base}/securityPolicies/{armor}"
    return b


def ssl_policy(project: str, name: str, profile: str, min_tls: str) -> dict[str, Any]:
    """An ``SslPolicy`` (compute.v1)."""
    return {"kind": "compute#sslPolicy", "id": "3", "name": name, "profile": profile,
            "minTlsVersion": min_tls, "fingerprint": "z=",
            "creationTimestamp": "2024-01-01T00:00:00.000-08:00",
            "enabledFeatures": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
            "selfLink": f"https://www.googleapis.com/compute/v1/projects/{project}/global/"
                        f"sslPolicies/{name}"}


def https_proxy(project: str, name: str, policy: str | None) -> dict[str, Any]:
    """A global ``TargetHttpsProxy`` (compute.v1)."""
    base = f"https://www.googleapis.com/compute/v1/projects/{project}/global"
    p: dict[str, Any] = {"kind": "compute#targetHttpsProxy", "id": "4", "name": name,
                         "creationTimestamp": "2024-01-01T00:00:00.000-08:00",
                         "selfLink": f"{base}/targetHttpsProxies/{name}",
                         "urlMap": f"{base}/urlMaps/web", "fingerprint": "w=",
                         "sslCertificates": [f"{base}/sslCertificates/web"]}
    if policy:
        p["sslPolicy"] = f"{base}/sslPolicies/{policy}"
    return p


def aggregated_global(key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """An ``…AggregatedList`` answer with ``items`` in its ``global`` scope."""
    return {"kind": f"compute#{key}AggregatedList", "id": "projects/x/aggregated",
            "items": {"global": {key: items},
                      "regions/us-east1": {"warning": {"code": "NO_RESULTS_ON_PAGE",
                                                       "message": "none"}}}}


def budget(account: str, bid: str, *, projects: list[str] | None = None,
           threshold: float | None = 0.8, notify: bool = True) -> dict[str, Any]:
    """A ``GoogleCloudBillingBudgetsV1Budget`` (billingbudgets.v1)."""
    b: dict[str, Any] = {
        "name": f"{account}/budgets/{bid}", "displayName": f"budget {bid}", "etag": "e",
        "budgetFilter": {"projects": projects or [], "creditTypesTreatment":
                         "INCLUDE_ALL_CREDITS", "calendarPeriod": "MONTH"},
        "amount": {"specifiedAmount": {"currencyCode": "EUR", "units": "1000"}},
        "notificationsRule": {"disableDefaultIamRecipients": not notify,
                              "schemaVersion": "1.0"},
        "ownershipScope": "ALL_USERS"}
    if threshold is not None:
        b["thresholdRules"] = [{"thresholdPercent": threshold, "spendBasis": "CURRENT_SPEND"}]
    return b


def enforced_policy(project: str, constraint: str) -> dict[str, Any]:
    """A ``GoogleCloudOrgpolicyV2Policy`` (orgpolicy.v2) enforcing a boolean constraint."""
    return {"name": f"projects/{project}/policies/{constraint}",
            "spec": {"rules": [{"enforce": True}], "etag": "x",
                     "updateTime": "2024-01-01T00:00:00Z"}}


ACCOUNT = "billingAccounts/01A2B3-C4D5E6-F7G8H9"


def add_good_project(e: Estate, pid: str, number: int, parent: str) -> None:
    f = e.fake
    f.add_project(pid, number, parent, {"owner": "platform", "environment": "production"})
    f.put_list(f"/v1/projects/{pid}/sources/-/findings", "listFindingsResults", [
        scc_finding(pid, "f1", "OS_VULNERABILITY", "HIGH", 10),
        scc_finding(pid, "f2", "MALWARE_BAD_DOMAIN", "CRITICAL", 100, finding_class="THREAT"),
    ])
    f.put(f"/v2/projects/{pid}/locations/global/discoveryConfigs", {"discoveryConfigs": [{
        "name": f"projects/{pid}/locations/global/discoveryConfigs/profile-all",
        "displayName": "profile everything", "status": "RUNNING",
        "targets": [{"cloudStorageTarget": {}}, {"bigQueryTarget": {}}],
        "createTime": "2024-01-01T00:00:00Z", "lastRunTime": ts(1)}]})
    base = f"/compute/v1/projects/{pid}"
    f.put(f"{base}/aggregated/securityPolicies", aggregated_global(
        "securityPolicies", [armor_policy("edge-waf", waf=True)]))
    f.put(f"{base}/aggregated/backendServices", aggregated_global("backendServices", [
        backend_service(pid, "web", "EXTERNAL_MANAGED", armor="edge-waf"),
        backend_service(pid, "internal-api", "INTERNAL_MANAGED")]))
    f.put(f"{base}/aggregated/sslPolicies", aggregated_global(
        "sslPolicies", [ssl_policy(pid, "modern", "MODERN", "TLS_1_2")]))
    f.put(f"{base}/aggregated/targetHttpsProxies", aggregated_global(
        "targetHttpsProxies", [https_proxy(pid, "web", "modern")]))
    f.put(f"/v1/projects/{pid}/billingInfo", {"name": f"projects/{pid}/billingInfo",
                                              "projectId": pid, "billingAccountName": ACCOUNT,
                                              "billingEnabled": True})
    for constraint in ("iam.disableServiceAccountKeyCreation",
                       "iam.automaticIamGrantsForDefaultServiceAccounts",
                       "compute.skipDefaultNetworkCreation", "compute.requireOsLogin",
                       "compute.disableSerialPortAccess", "storage.uniformBucketLevelAccess",
                       "storage.publicAccessPrevention", "sql.restrictPublicIp"):
        f.put(f"/v2/projects/{pid}/policies/{constraint}:getEffectivePolicy",
              enforced_policy(pid, constraint))
    f.policies[f"projects/{pid}"] = policy({
        "roles/compute.admin": ["group:platform@acme.example"],
        "roles/viewer": ["user:auditor@acme.example"],
        "roles/cloudsql.client": [f"serviceAccount:app@{pid}.iam.gserviceaccount.com"],
    })
    app = service_account(pid, "app")
    ci = service_account(pid, "ci")
    legacy = service_account(pid, "legacy")
    f.put_list(f"/v1/projects/{pid}/serviceAccounts", "accounts", [app, ci, legacy])
    f.put(f"/v1/{ci['name']}/keys", {"keys": [sa_key(ci["email"], "k-young", 10)]})
    f.put(f"/v1/{legacy['name']}/keys",
          {"keys": [sa_key(legacy["email"], "k-old-off", 500, disabled=True)]})
    e.expect("gcp.iam.no_user_managed_keys", ci["email"])  # a young key is still a key
    f.put_list(f"/v2/projects/{pid}/sinks", "sinks",
               [*builtin_sinks(pid), sink(f"projects/{pid}", "to-central") | {
                   "exclusions": [exclusion("paused", "severity<=DEBUG", disabled=True)]}])
    data, logs = bucket(f"{pid}-data", delete_after=365), bucket(
        f"{pid}-audit-logs", retention={"retentionPeriod": "31536000", "isLocked": True,
                                        "effectiveTime": "2024-01-01T00:00:00Z"},
        delete_after=2555)
    f.put_list(f"/storage/v1/b?project={pid}", "items", [data, logs])
    for b in (data, logs):
        f.put(f"/storage/v1/b/{b['name']}/iam", {"kind": "storage#policy", "bindings": [
            {"role": "roles/storage.legacyBucketOwner", "members": [f"projectOwner:{pid}"]}],
            "etag": "CAE=", "resourceId": f"projects/_/buckets/{b['name']}"})
    base = f"/compute/v1/projects/{pid}"
    f.put_list(f"{base}/global/firewalls", "items", [
        firewall(pid, "allow-https", "prod-vpc", ["0.0.0.0/0"],
                 [{"IPProtocol": "tcp", "ports": ["443"]}]),
        firewall(pid, "allow-iap-ssh", "prod-vpc", ["35.235.240.0/20"],
                 [{"IPProtocol": "tcp", "ports": ["22", "3389"]}]),
    ])
    f.put_list(f"{base}/global/networks", "items", [vpc(pid, "prod-vpc")])
    f.put(f"{base}/aggregated/subnetworks", {"items": {
        "regions/europe-west1": {"subnetworks": [
            subnet(pid, "prod-ew1", "europe-west1", flow_logs=True),
            subnet(pid, "proxy-ew1", "europe-west1", flow_logs=None,
                   purpose="REGIONAL_MANAGED_PROXY")]},
        "regions/us-east1": {"warning": {"code": "NO_RESULTS_ON_PAGE"}},
    }})
    f.put_list(f"/v1/projects/{pid}/instances", "items", [sql_instance(pid, "pg-prod")])
    f.put_list(f"/v1/projects/{pid}/locations", "locations", [
        {"name": f"projects/{pid}/locations/{loc}", "locationId": loc}
        for loc in ("global", "europe-west1")])
    ring = f"projects/{pid}/locations/europe-west1/keyRings/app"
    f.put_list(f"/v1/projects/{pid}/locations/europe-west1/keyRings", "keyRings",
               [{"name": ring, "createTime": "2023-01-01T00:00:00Z"}])
    f.put_list(f"/v1/{ring}/cryptoKeys", "cryptoKeys", [
        crypto_key(ring, "data"), crypto_key(ring, "signing", rotation=None,
                                             purpose="ASYMMETRIC_SIGN")])
    f.put_list(f"/v1/projects/{pid}/locations/global/securityCenterServices",
               "securityCenterServices", scc_services(pid, vmtd=True))


def add_bad_project(e: Estate, pid: str, number: int, parent: str) -> None:
    f = e.fake
    # A development project on production's Shared VPC.
    f.add_project(pid, number, parent, {"owner": "app-team", "environment": "dev"})
    res = f"projects/{pid}"
    f.put(f"/compute/v1/projects/{pid}/getXpnHost", {
        "kind": "compute#project", "id": "1001", "name": "acme-good",
        "xpnProjectStatus": "HOST",
        "selfLink": "https://www.googleapis.com/compute/v1/projects/acme-good"})
    e.expect("gcp.governance.environments_separated", res)
    f.put_list(f"/v1/projects/{pid}/sources/-/findings", "listFindingsResults", [
        scc_finding(pid, "b1", "OS_VULNERABILITY", "CRITICAL", 20),
        scc_finding(pid, "b2", "PUBLIC_BUCKET_ACL", "HIGH", 5,
                    finding_class="MISCONFIGURATION", mute="MUTED"),
    ])
    e.expect("gcp.scc.findings_within_sla", f"{res}/sources/-/findings")
    e.expect("gcp.scc.vm_threat_detection_enabled",
             f"{res}/locations/global/securityCenterServices")
    f.put(f"/v2/projects/{pid}/locations/global/jobTriggers", {"jobTriggers": [{
        "name": f"projects/{pid}/locations/global/jobTriggers/nightly",
        "displayName": "nightly", "status": "PAUSED",
        "triggers": [{"schedule": {"recurrencePeriodDuration": "86400s"}}],
        "inspectJob": {"storageConfig": {"cloudStorageOptions": {
            "fileSet": {"url": "gs://acme-bad-public/**"}}}},
        "createTime": "2024-01-01T00:00:00Z", "updateTime": "2024-01-01T00:00:00Z"}]})
    e.expect("gcp.dlp.inspection_scheduled", f"{res}/dlp")
    base = f"/compute/v1/projects/{pid}"
    f.put(f"{base}/aggregated/securityPolicies", aggregated_global(
        "securityPolicies", [armor_policy("allow-all", waf=False)]))
    f.put(f"{base}/aggregated/backendServices", aggregated_global("backendServices", [
        backend_service(pid, "shop", "EXTERNAL"),
        backend_service(pid, "blog", "EXTERNAL_MANAGED", armor="allow-all")]))
    f.put(f"{base}/aggregated/sslPolicies", aggregated_global(
        "sslPolicies", [ssl_policy(pid, "legacy", "COMPATIBLE", "TLS_1_0")]))
    f.put(f"{base}/aggregated/targetHttpsProxies", aggregated_global(
        "targetHttpsProxies", [https_proxy(pid, "shop", None)]))
    f.put(f"{base}/global/targetSslProxies", {"kind": "compute#targetSslProxyList",
                                             "id": "x", "items": [{
        "kind": "compute#targetSslProxy", "id": "5", "name": "tcp-tls",
        "creationTimestamp": "2024-01-01T00:00:00.000-08:00", "proxyHeader": "NONE",
        "service": f"https://www.googleapis.com/compute/v1/projects/{pid}/global/"
                   "backendServices/shop",
        "sslPolicy": f"https://www.googleapis.com/compute/v1/projects/{pid}/global/"
                     "sslPolicies/legacy",
        "selfLink": f"https://www.googleapis.com/compute/v1/projects/{pid}/global/"
                    "targetSslProxies/tcp-tls"}]})
    for b in ("global/shop", "global/blog"):
        e.expect("gcp.loadbalancing.backend_cloud_armor", b)
    for p_ in ("global/shop", "global/tcp-tls"):
        e.expect("gcp.loadbalancing.ssl_policy_modern", p_)
    f.put(f"/v1/projects/{pid}/billingInfo", {"name": f"projects/{pid}/billingInfo",
                                              "projectId": pid, "billingAccountName": ACCOUNT,
                                              "billingEnabled": True})
    e.expect("gcp.billing.budget_alerts", f"{res}/budgets")
    e.expect("gcp.orgpolicy.constraints_enforced", f"{res}/policies")
    compute_sa = f"serviceAccount:{number}-compute@developer.gserviceaccount.com"
    f.policies[res] = policy({
        "roles/editor": ["user:dev@acme.example", compute_sa],
        "roles/owner": ["domain:acme.example"],
        "roles/viewer": ["allAuthenticatedUsers"],
    })
    for c in ("user_no_primitive_roles", "service_account_no_primitive_roles",
              "no_public_bindings", "data_access_audit_logs"):
        e.expect(f"gcp.iam.{c}", res)
    old = service_account(pid, "old-key")
    f.put_list(f"/v1/projects/{pid}/serviceAccounts", "accounts", [old])
    f.put(f"/v1/{old['name']}/keys", {"keys": [sa_key(old["email"], "k1", 400),
                                               sa_key(old["email"], "k2", 20)]})
    e.expect("gcp.iam.no_user_managed_keys", old["email"])
    e.expect("gcp.iam.access_key_rotated", old["email"])
    f.put_list(f"/v2/projects/{pid}/sinks", "sinks", [
        *builtin_sinks(pid),
        sink(res, "disabled-all", destination="bigquery.googleapis.com/x") | {"disabled": True},
        sink(res, "errors-only", flt="severity>=ERROR"),
    ])
    e.expect("gcp.logging.sink_all_logs", f"{res}/sinks")
    e.expect("gcp.logging.sink_destination_locked", f"{res}/sinks")
    public = bucket(f"{pid}-public", pap="inherited", ubla=False, labels={})
    logs = bucket(f"{pid}-logs", retention={"retentionPeriod": "86400", "isLocked": False},
                  labels={"data-classification": "top-secret"})  # not a level of the scheme
    e.expect("gcp.storage.bucket_classified", public["name"])  # no labels at all
    e.expect("gcp.storage.bucket_classified", logs["name"])
    unnamed = bucket(f"{pid}-audit", location="US-CENTRAL1")  # no retention at all
    f.put_list(f"/storage/v1/b?project={pid}", "items", [public, logs, unnamed])
    f.put(f"/storage/v1/b/{public['name']}/iam", {"bindings": [
        {"role": "roles/storage.objectViewer", "members": ["allUsers"]}]})
    f.put(f"/storage/v1/b/{logs['name']}/iam", {"bindings": []})
    f.put(f"/storage/v1/b/{unnamed['name']}/iam", {"bindings": []})
    for c in ("bucket_public_access_block", "bucket_not_public",
              "bucket_uniform_access"):
        e.expect(f"gcp.storage.{c}", public["name"])
    e.expect("gcp.storage.bucket_retention_lock", logs["name"])
    e.expect("gcp.storage.bucket_retention_lock", unnamed["name"])
    for b in (public, logs, unnamed):
        e.expect("gcp.storage.bucket_lifecycle_delete", b["name"])
    base = f"/compute/v1/projects/{pid}"
    f.put_list(f"{base}/global/firewalls", "items", [
        firewall(pid, "default-allow-ssh", "default", ["0.0.0.0/0"],
                 [{"IPProtocol": "tcp", "ports": ["22"]}]),
        firewall(pid, "default-allow-rdp", "default", ["0.0.0.0/0"],
                 [{"IPProtocol": "tcp", "ports": ["3000-4000"]}]),
        firewall(pid, "allow-all-v6", "default", ["::/0"], [{"IPProtocol": "all"}]),
        firewall(pid, "old-ssh-off", "default", ["0.0.0.0/0"],
                 [{"IPProtocol": "tcp", "ports": ["22"]}], disabled=True),
        firewall(pid, "egress-any", "default", ["0.0.0.0/0"], [{"IPProtocol": "all"}],
                 direction="EGRESS"),
        firewall(pid, "udp-all", "default", ["0.0.0.0/0"], [{"IPProtocol": "udp"}]),
        # The protocol as its IANA number, and the internet in two halves: both are
        # documented forms (compute.v1 Firewall.allowed[].IPProtocol, sourceRanges).
        firewall(pid, "ssh-by-number", "default", ["0.0.0.0/0"],
                 [{"IPProtocol": "6", "ports": ["22"]}]),
        firewall(pid, "rdp-halves", "default", ["0.0.0.0/1", "128.0.0.0/1"],
                 [{"IPProtocol": "tcp", "ports": ["3389"]}]),
        firewall(pid, "tagged-only", "default", [], [{"IPProtocol": "all"}])
        | {"sourceTags": ["bastion"]},
    ])
    e.expect("gcp.network.ssh_open_to_internet", "default/ssh-by-number")
    e.expect("gcp.network.rdp_open_to_internet", "default/rdp-halves")
    e.expect("gcp.network.ssh_open_to_internet", "default/default-allow-ssh")
    e.expect("gcp.network.rdp_open_to_internet", "default/default-allow-rdp")
    for c in ("ssh_open_to_internet", "rdp_open_to_internet", "all_ports_open_to_internet"):
        e.expect(f"gcp.network.{c}", "default/allow-all-v6")
    e.expect("gcp.network.all_ports_open_to_internet", "default/udp-all")
    f.put_list(f"{base}/global/networks", "items", [vpc(pid, "default", auto=True)])
    e.expect("gcp.network.default_network_absent", "default")
    f.put(f"{base}/aggregated/subnetworks", {"items": {"regions/us-central1": {"subnetworks": [
        subnet(pid, "default", "us-central1", flow_logs=None)]}}})
    e.expect("gcp.network.flow_logs_enabled", "us-central1/default")
    halves = sql_instance(pid, "pg-halves", public=True, networks=["20.0.0.0/9",
                                                                   "20.128.0.0/9"])
    e.expect("gcp.sql.not_publicly_accessible", "pg-halves")
    e.expect("gcp.sql.firewall_open_to_internet", "pg-halves")
    f.put_list(f"/v1/projects/{pid}/instances", "items", [
        halves,
        sql_instance(pid, "mysql-open", backups=False, public=True,
                     networks=["0.0.0.0/0", "198.51.100.0/24"],
                     ssl_mode="ALLOW_UNENCRYPTED_AND_ENCRYPTED"),
        sql_instance(pid, "pg-few", retained=3),
        sql_instance(pid, "replica", backups=False, ssl_mode=None, replica=True),
    ])
    for c in ("backups_enabled", "backup_retention", "not_publicly_accessible",
              "firewall_open_to_internet", "ssl_required"):
        e.expect(f"gcp.sql.{c}", "mysql-open")
    e.expect("gcp.sql.backup_retention", "pg-few")
    ring = f"projects/{pid}/locations/global/keyRings/legacy"
    f.put_list(f"/v1/projects/{pid}/locations", "locations", [
        {"name": f"projects/{pid}/locations/global", "locationId": "global"}])
    f.put_list(f"/v1/projects/{pid}/locations/global/keyRings", "keyRings", [{"name": ring}])
    f.put_list(f"/v1/{ring}/cryptoKeys", "cryptoKeys", [
        crypto_key(ring, "never", rotation=None), crypto_key(ring, "yearly",
                                                             rotation="31536000s")])
    e.expect("gcp.kms.key_rotation", f"{ring}/cryptoKeys/never")
    e.expect("gcp.kms.key_rotation", f"{ring}/cryptoKeys/yearly")
    f.put_list(f"/v1/projects/{pid}/locations/global/securityCenterServices",
               "securityCenterServices", scc_services(pid, sha="DISABLED"))
    e.expect("gcp.scc.enabled", f"{res}/locations/global/securityCenterServices")


def add_third_project(e: Estate, pid: str, number: int, parent: str) -> None:
    """A nearly empty project directly under the organisation, with its own audit
    configuration and an export sink; unlabelled, without billing."""
    f = e.fake
    f.add_project(pid, number, parent)
    res = f"projects/{pid}"
    for c in ("project_labelled", "project_in_folder", "environments_separated"):
        e.expect(f"gcp.governance.{c}", res)
    e.expect("gcp.scc.vm_threat_detection_enabled",
             f"{res}/locations/global/securityCenterServices")
    e.expect("gcp.dlp.inspection_scheduled", f"{res}/dlp")
    e.expect("gcp.orgpolicy.constraints_enforced", f"{res}/policies")
    e.expect("gcp.logging.sink_destination_locked", f"{res}/sinks")
    f.policies[f"projects/{pid}"] = policy({
        "roles/browser": ["group:all@acme.example"],
        "roles/owner": [f"principalSet://cloudresourcemanager.googleapis.com/projects/{number}"
                        "/type/ServiceAccount"],
    }, [FULL_AUDIT])
    e.expect("gcp.iam.service_account_no_primitive_roles", f"projects/{pid}")
    # No filter, but an enabled exclusion drops debug entries: not every log is exported.
    f.put_list(f"/v2/projects/{pid}/sinks", "sinks", [
        sink(f"projects/{pid}", "all") | {"exclusions": [
            exclusion("no-debug", "severity<=DEBUG"),
            exclusion("old-off", "resource.type=gce_instance", disabled=True)]}])
    e.expect("gcp.logging.sink_all_logs", f"projects/{pid}/sinks")
    f.put_list(f"/v1/projects/{pid}/locations/global/securityCenterServices",
               "securityCenterServices", scc_services(pid))


def build_estate(fake: GcpFake, *, denied: bool = True) -> Estate:
    """organizations/100 ─ folders/200 (engineering) ─┬ acme-bad
                                                     ├ folders/201 (production) ─ acme-good
                                                     └ acme-denied (403 everywhere)
                      └ acme-third (directly under the organisation)"""
    e = Estate(fake)
    fake.add_org(ORG, "acme.example")
    fake.add_folder(ENG, ORG, "engineering")
    fake.add_folder(PROD, ENG, "production")
    fake.policies[ORG] = policy({"roles/resourcemanager.organizationAdmin":
                                 ["group:admins@acme.example"],
                                 "roles/owner": ["user:founder@acme.example"]})
    e.expect("gcp.iam.user_no_primitive_roles", ORG)
    e.expect("gcp.iam.data_access_audit_logs", ORG)
    fake.policies[ENG] = policy({
        "roles/viewer": ["group:eng@acme.example"],
        "roles/editor": ["principalSet://iam.googleapis.com/locations/global/workforcePools/"
                         "contractors/*"],
    })
    e.expect("gcp.iam.data_access_audit_logs", ENG)
    e.expect("gcp.iam.user_no_primitive_roles", ENG)
    fake.policies[PROD] = policy({"roles/owner": ["group:sre@acme.example"]},
                                 [FULL_AUDIT])
    e.expect("gcp.iam.user_no_primitive_roles", PROD)
    fake.put_list(f"/v2/{PROD}/sinks", "sinks",
                  [sink(PROD, "prod-all", include_children=True)])
    fake.put_list(f"/v1/{ACCOUNT}/budgets", "budgets", [
        budget(ACCOUNT, "good", projects=["projects/1001"]),
        budget(ACCOUNT, "bad-muted", projects=["projects/1002"], notify=False)])
    fake.put("/storage/v1/b/central-logs", bucket(
        "central-logs", retention={"retentionPeriod": "34560000", "isLocked": True,
                                   "effectiveTime": "2024-01-01T00:00:00Z"}))
    add_good_project(e, "acme-good", 1001, PROD)
    add_bad_project(e, "acme-bad", 1002, ENG)
    add_third_project(e, "acme-third", 1003, ORG)
    if denied:
        fake.add_project("acme-denied", 1004, ENG)
        fake.denied.add("acme-denied")
    return e


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class ServiceAccountKey:
    json: str
    public_pem: bytes
    private_pem: str


@pytest.fixture(scope="session")
def sa_key_material() -> ServiceAccountKey:
    """An RSA key pair shaped as a service-account key JSON (token_uri set per test)."""
    from tests.keys import public_pem, throwaway_rsa

    private, key = throwaway_rsa()
    public = public_pem(key)
    doc = {"type": "service_account", "project_id": "acme-audit",
           "private_key_id": "0123456789abcdef", "private_key": private,
           "client_email": "annexa@acme-audit.iam.gserviceaccount.com",
           "client_id": "1234567890", "token_uri": "https://oauth2.googleapis.com/token"}
    return ServiceAccountKey(json.dumps(doc), public, private)


@pytest.fixture
def gcp_fake(sa_key_material: ServiceAccountKey) -> Iterator[GcpFake]:
    with GcpFake(public_key_pem=sa_key_material.public_pem) as fake:
        yield fake


class StaticTokenCredentials:
    """Minimal google-auth credentials: a fixed bearer token that never expires
    (what ``google.oauth2.credentials.Credentials(token=…)`` does, without refresh)."""

    def __new__(cls, token: str = GCP_TOKEN) -> Any:
        from google.oauth2.credentials import Credentials

        return Credentials(token=token)
