"""A fake of Azure Resource Manager (and of the Entra token endpoint) on 127.0.0.1.

:class:`ArmFake` is a real HTTP(S) server (``ThreadingHTTPServer``, TLS through a
trustme CA when asked) holding an in-memory estate:

* ``collections``: list endpoints (``/subscriptions/<id>/providers/Microsoft.Storage/
  storageAccounts`` …) answered as ARM does — ``{"value": [...], "nextLink": "…"}``,
  ``page_size`` items a page, the next-page link carrying ``$skiptoken`` and the
  ``api-version``;
* ``documents``: single resources (``…/auditingSettings/default``); unknown → 404 with
  an ARM error body;
* ``GET /subscriptions/<id>/resources?$filter=…``: the generic resource list with the
  ``resourceType eq`` / ``tagName eq … and tagValue eq`` filters ARM supports;
* ``denied``: subscriptions answering 403 ``AuthorizationFailed`` to everything;
* ``faults``: scripted answers (status, headers, count) for matching paths;
* Azure Resource Graph, ``POST /providers/Microsoft.ResourceGraph/resources``
  (resourcegraph stable/2022-10-01 ``QueryRequest``/``QueryResponse``): rows of the
  ``Resources`` table built from the same planted resources the ARM listings serve
  (``type`` lower-cased, ``subscriptionId``/``resourceGroup``/``tenantId`` added,
  absent fields null or ""), ``ResourceContainers`` rows for the readable
  subscriptions; denied subscriptions are left out silently, as Resource Graph leaves
  out what the caller cannot read. Only the query shape the connector sends is
  understood (``<table> | where type in~ (...) [| project cols] [| order by id asc]``);
  anything else is a 400 ``BadRequest``/``InvalidQuery`` as the service answers a
  query it cannot parse. ``$top`` (1..1000) and ``$skipToken`` page the rows
  (``graph_page_size`` caps a page further); ``graph_truncate`` answers a truncated
  page without a ``$skipToken``; ``graph_rows`` post-processes the rows (hostile rows);
* Entra: ``GET /<tenant>/v2.0/.well-known/openid-configuration`` and
  ``POST /<tenant>/oauth2/v2.0/token`` (client-credentials grant), so the real
  ``azure.identity.ClientSecretCredential`` can authenticate against it over TLS.

Every ARM request must carry ``Authorization: Bearer <token>`` and an ``api-version``.
``requests`` records what was asked. :func:`build_estate` plants a known estate and
returns the failures it expects the checks to find.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest

from tests.raw_http import KeepAliveJsonHandler, Seen, ServedFake, send_json

ARM_TOKEN = "arm-test-token-0123456789abcdef"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0c4bd8a6-2d5a-4f6c-9a4e-7c9a1c1f0e11"
CLIENT_SECRET = "s3cr3t-client-value-for-tests"


@dataclass
class Fault:
    pattern: re.Pattern[str]
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1_000_000
    hits: int = 0


class StaticCredential:
    """Any object with ``get_token`` is a credential: this one returns a fixed token."""

    def __init__(self, token: str = ARM_TOKEN, expires_in: int = 3600) -> None:
        self.token = token
        self.expires_in = expires_in
        self.calls = 0
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        import time

        from azure.core.credentials import AccessToken

        self.calls += 1
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + self.expires_in)


_EMPTY_LIST = re.compile(
    r"^/subscriptions/[^/]+/providers/[^/]+/[^/]+$"
    r"|^/subscriptions/[^/]+/resourcegroups$"
    r"|/(backuppolicies|firewallrules|databases|diagnosticsettings)$"
)


def _arm_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class ArmFake(ServedFake):
    """The fake's state and server. Use as a context manager or via the fixtures."""

    def __init__(
        self,
        *,
        page_size: int = 2,
        token: str = ARM_TOKEN,
        ssl_context: ssl.SSLContext | None = None,
        record: bool = True,
    ) -> None:
        self.page_size = page_size
        self.token = token
        self.ssl_context = ssl_context
        self.record = record
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.collections: dict[str, list[dict[str, Any]]] = {}
        self.documents: dict[str, dict[str, Any]] = {}
        self.resources: dict[str, list[dict[str, Any]]] = {}  # per subscription
        self.denied: set[str] = set()
        self.faults: list[Fault] = []
        self.requests: list[Seen] = []
        self.token_requests: list[dict[str, list[str]]] = []
        self.request_count = 0
        self.graph_page_size = 1000
        self.graph_truncate = False
        self.graph_rows: Any = None  # callable(rows) -> rows, applied before paging
        self.graph_queries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- estate

    def add_subscription(self, sub: str, name: str, state: str = "Enabled",
                         tags: dict[str, str] | None = None) -> None:
        """A subscription as ``GetSubscription.json`` shows it (resources
        stable/2022-12-01), ``tags`` included."""
        self.subscriptions[sub] = {
            "tags": dict(tags or {}),
            "id": f"/subscriptions/{sub}",
            "authorizationSource": "RoleBased",
            "managedByTenants": [],
            "subscriptionId": sub,
            "tenantId": TENANT,
            "displayName": name,
            "state": state,
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                     "quotaId": "PayAsYouGo_2014-09-01",
                                     "spendingLimit": "Off"},
        }

    def add(self, collection: str, resource: dict[str, Any], *, generic: bool = True) -> None:
        """Add ``resource`` to a list endpoint (and to the generic resource list)."""
        self.collections.setdefault(collection.lower(), []).append(resource)
        sub = resource["id"].split("/")[2].lower()
        if generic and "type" in resource:
            self.resources.setdefault(sub, []).append(resource)

    def put_list(self, path: str, items: list[dict[str, Any]]) -> None:
        self.collections[path.lower()] = items

    def put(self, path: str, doc: dict[str, Any]) -> None:
        self.documents[path.lower()] = doc

    def fault(self, pattern: str, status: int, *, code: str = "Fault", times: int = 1_000_000,
              headers: dict[str, str] | None = None) -> Fault:
        f = Fault(re.compile(pattern, re.IGNORECASE), status, _arm_error(code, f"HTTP {status}"),
                  dict(headers or {}), times)
        self.faults.append(f)
        return f

    # -- server

    @property
    def url(self) -> str:
        assert self._server is not None
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ArmFake:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if self.ssl_context is not None:
            self._server.socket = self.ssl_context.wrap_socket(
                self._server.socket, server_side=True
            )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    # -- routing

    def answer(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        self.see(method, path, query, headers)
        for f in self.faults:
            if f.hits < f.times and f.pattern.search(path):
                f.hits += 1
                return f.status, f.body, f.headers
        # Entra endpoints
        m = re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", path)
        if m and method == "GET":
            base = f"{self.url}/{m.group(1)}"
            return 200, {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "response_types_supported": ["code", "id_token", "token"],
                "tenant_region_scope": "EU",
            }, {}
        m = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", path)
        if m and method == "POST":
            form = parse_qs(body.decode())
            self.token_requests.append(form)
            if form.get("client_secret") != [CLIENT_SECRET]:
                return 401, {"error": "invalid_client",
                             "error_description": "AADSTS7000215: Invalid client secret."}, {}
            return 200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                         "access_token": self.token}, {}
        # ARM
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, _arm_error("InvalidAuthenticationToken", "bad token"), {}
        if not query.get("api-version"):
            return 400, _arm_error("MissingApiVersionParameter", "api-version missing"), {}
        if path.rstrip("/").lower() == "/providers/microsoft.resourcegraph/resources":
            if method != "POST":
                return 405, _arm_error("MethodNotAllowed", method), {}
            return self._graph(query, body)
        # Read-only POST queries (policy compliance summaries) are answered from the
        # documents like GETs; every other POST is refused.
        if method != "GET" and not (method == "POST" and path.lower().endswith("/summarize")):
            return 405, _arm_error("MethodNotAllowed", method), {}
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0].lower() == "subscriptions":
            sub = parts[1].lower()
            if sub in self.denied:
                return 403, _arm_error(
                    "AuthorizationFailed",
                    f"The client does not have authorization over scope /subscriptions/{sub}",
                ), {}
            if len(parts) == 3 and parts[2].lower() == "resources":
                return 200, self._page(path, query, self._filtered(sub, query)), {}
        if path.rstrip("/").lower() == "/subscriptions":
            return 200, self._page(path, query, list(self.subscriptions.values())), {}
        if len(parts) == 2 and parts[0].lower() == "subscriptions":
            found = self.subscriptions.get(parts[1].lower())
            if found:
                return 200, found, {}
        key = path.rstrip("/").lower()
        if key in self.collections:
            return 200, self._page(path, query, self.collections[key]), {}
        if key in self.documents:
            return 200, self.documents[key], {}
        if _EMPTY_LIST.search(key):  # ARM lists what exists: nothing is an empty list
            return 200, {"value": []}, {}
        if key.endswith("/policystates/latest/summarize"):  # nothing assigned
            return 200, policy_summary([]), {}
        return 404, _arm_error("ResourceNotFound", f"{path} not found"), {}

    # -- Resource Graph

    def _graph(self, query: dict[str, list[str]], raw: bytes
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            req = json.loads(raw or b"null")
        except ValueError:
            return 400, _arm_error("BadRequest", "request body is not JSON"), {}
        if not isinstance(req, dict) or not isinstance(req.get("query"), str):
            return 400, _arm_error("BadRequest", "QueryRequest.query is required"), {}
        self.graph_queries.append(req)
        opts = req.get("options") or {}
        top = opts.get("$top", 100)
        if not isinstance(top, int) or not 1 <= top <= 1000:
            return 400, _arm_error("BadRequest", "$top must be between 1 and 1000"), {}
        if opts.get("resultFormat", "objectArray") != "objectArray":
            return 400, _arm_error("BadRequest", "the fake answers objectArray only"), {}
        parsed = parse_graph_query(req["query"])
        if parsed is None:
            return 400, {"error": {"code": "BadRequest", "message": "Please provide below "
                                   "info when asking for support: timestamp, correlationId",
                                   "details": [{"code": "InvalidQuery", "message": "Query is "
                                                "invalid. Please refer to the documentation "
                                                "for the Azure Resource Graph service and "
                                                "fix the error before retrying."}]}}, {}
        table, types, columns = parsed
        subs = [str(s).lower() for s in req.get("subscriptions") or []]
        readable = [s for s in subs if s not in self.denied]
        if table == "resources":
            rows = [graph_row(r) for s in readable for r in self.resources.get(s, [])
                    if r["type"].lower() in types]
        else:
            rows = [{"id": f"/subscriptions/{s}", "name": s, "subscriptionId": s,
                     "type": "microsoft.resources/subscriptions", "tenantId": TENANT,
                     "properties": {"state": self.subscriptions[s]["state"]}}
                    for s in readable if s in self.subscriptions
                    and "microsoft.resources/subscriptions" in types]
        if columns is not None:
            unknown = [c for c in columns if c not in GRAPH_COLUMNS]
            if unknown:
                return 400, _arm_error("BadRequest", f"Failed to resolve column {unknown[0]}"), {}
            rows = [{c: r.get(c) for c in columns} for r in rows]
        rows.sort(key=lambda r: str(r.get("id", "")))
        if self.graph_rows is not None:
            rows = self.graph_rows(rows)
        token = opts.get("$skipToken")
        start = int(base64.b64decode(token).decode().split(":", 1)[1]) if token else 0
        size = min(top, self.graph_page_size)
        page = rows[start:start + size]
        body: dict[str, Any] = {"totalRecords": len(rows), "count": len(page),
                                "resultTruncated": "false", "facets": [], "data": page}
        if start + size < len(rows):
            if self.graph_truncate:
                body["resultTruncated"] = "true"
            else:
                body["$skipToken"] = base64.b64encode(f"offset:{start + size}".encode()).decode()
        return 200, body, {}

    def _filtered(self, sub: str, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        items = self.resources.get(sub, [])
        flt = (query.get("$filter") or [""])[0]
        types = {t.lower() for t in re.findall(r"resourceType eq '([^']+)'", flt)}
        tag = re.search(r"tagName eq '([^']+)' and tagValue eq '([^']*)'", flt)
        out = []
        for r in items:
            if types and r["type"].lower() not in types:
                continue
            if tag and (r.get("tags") or {}).get(tag.group(1)) != tag.group(2):
                continue
            out.append({k: r[k] for k in ("id", "name", "type", "location", "tags") if k in r})
        return out

    def _page(self, path: str, query: dict[str, list[str]],
              items: list[dict[str, Any]]) -> dict[str, Any]:
        start = int((query.get("$skiptoken") or ["0"])[0])
        page = items[start:start + self.page_size]
        body: dict[str, Any] = {"value": page}
        if start + self.page_size < len(items):
            params = {"api-version": query["api-version"][0]}
            if query.get("$filter"):
                params["$filter"] = query["$filter"][0]
            params["$skiptoken"] = str(start + self.page_size)
            body["nextLink"] = f"{self.url}{path}?{urlencode(params)}"
        return body


def _make_handler(fake: ArmFake) -> type[BaseHTTPRequestHandler]:
    class Handler(KeepAliveJsonHandler):
        def serve(self, method: str) -> None:
            parts, query, headers, body = self.request_parts()
            status, doc, extra = fake.answer(method, parts.path, query, headers, body)
            content_type = "application/json; charset=utf-8"
            send_json(self, status, doc, content_type, {"x-ms-request-id": "fake", **extra})

    return Handler


#: The one query shape the fake understands (the connector's): a table, a ``type in~``
#: filter, optionally a projection and an ``order by id asc``.
_GRAPH_QUERY = re.compile(
    r"^\s*(?P<table>Resources|ResourceContainers)\s*"
    r"\|\s*where\s+type\s+in~\s*\((?P<types>\s*'[^']+'(\s*,\s*'[^']+')*\s*)\)\s*"
    r"(\|\s*project\s+(?P<cols>\w+(\s*,\s*\w+)*)\s*)?"
    r"(\|\s*order\s+by\s+id\s+asc\s*)?$",
    re.IGNORECASE,
)


#: The ``Resources`` / ``ResourceContainers`` columns (what ``getschema`` lists).
GRAPH_COLUMNS = frozenset({"id", "name", "type", "tenantId", "kind", "location",
                           "resourceGroup", "subscriptionId", "managedBy", "sku", "plan",
                           "properties", "tags", "identity", "zones", "extendedLocation"})


def parse_graph_query(text: str) -> tuple[str, set[str], list[str] | None] | None:
    """(table, lower-cased types, projected columns or None), or None: not understood."""
    m = _GRAPH_QUERY.match(text)
    if m is None:
        return None
    types = {t.lower() for t in re.findall(r"'([^']+)'", m.group("types"))}
    cols = [c.strip() for c in m.group("cols").split(",")] if m.group("cols") else None
    return m.group("table").lower(), types, cols


def graph_row(resource: dict[str, Any]) -> dict[str, Any]:
    """A ``Resources`` row of an ARM resource: the table's columns, ``type`` lower-cased
    (as in ResourcesFirstPageQuery.json), the string columns "" and the dynamic ones null
    where the resource has no such field."""
    parts = resource["id"].split("/")
    return {
        "id": resource["id"], "name": resource.get("name", ""),
        "type": resource["type"].lower(), "tenantId": TENANT,
        "kind": resource.get("kind", ""), "location": resource.get("location", ""),
        "resourceGroup": parts[4].lower() if len(parts) > 4 else "",
        "subscriptionId": parts[2].lower(), "managedBy": resource.get("managedBy", ""),
        "sku": resource.get("sku"), "plan": resource.get("plan"),
        "properties": resource.get("properties"), "tags": resource.get("tags"),
        "identity": resource.get("identity"), "zones": resource.get("zones"),
        "extendedLocation": resource.get("extendedLocation"),
    }


# --------------------------------------------------------------------------- estate

SUB_A = "11111111-aaaa-4aaa-8aaa-111111111111"
SUB_B = "22222222-bbbb-4bbb-8bbb-222222222222"
SUB_C = "33333333-cccc-4ccc-8ccc-333333333333"
SUB_DENIED = "44444444-dddd-4ddd-8ddd-444444444444"


def rid(sub: str, rg: str, provider: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider}/{name}"


@dataclass
class Estate:
    """What :func:`build_estate` planted: failing (check id, lower-cased resource id)."""

    fake: ArmFake
    expected_failures: set[tuple[str, str]] = field(default_factory=set)
    resource_ids: set[str] = field(default_factory=set)

    groups: dict[str, list[str]] = field(default_factory=dict)
    under_root: list[str] = field(default_factory=list)

    def expect(self, check_id: str, resource_id: str) -> None:
        self.expected_failures.add((check_id, resource_id.lower()))

    def place(self, sub: str, group: str | None) -> None:
        """Put ``sub`` in management group ``group`` (None: directly under the tenant
        root group) and serve the tenant's tree accordingly."""
        if group is None:
            self.under_root.append(sub)
        else:
            self.groups.setdefault(group, []).append(sub)
        self.fake.put(f"/providers/Microsoft.Management/managementGroups/{TENANT}",
                      management_tree(self.groups, self.under_root))


def storage_account(sub: str, name: str, *, rg: str = "rg-data", https: bool | None = True,
                    public: bool | None = False, tls: str | None = "TLS1_2",
                    shared_key: bool | None = False, default_action: str | None = "Deny",
                    tags: dict[str, str] | None = None) -> dict[str, Any]:
    """A storage account as ``StorageAccountList.json`` lists one (Azure REST API specs,
    storage stable/2023-05-01); ``None`` leaves a property out, as real accounts that
    never set it do (no ``allowBlobPublicAccess``, ``minimumTlsVersion``,
    ``allowSharedKeyAccess``, ``networkAcls`` or ``supportsHttpsTrafficOnly``)."""
    props: dict[str, Any] = {
        "keyCreationTime": {"key1": "2025-01-01T10:00:00.0000000Z",
                            "key2": "2025-01-01T10:00:00.0000000Z"},
        "privateEndpointConnections": [],
        "networkAcls": {"bypass": "AzureServices", "virtualNetworkRules": [],
                        "ipRules": [], "defaultAction": default_action},
        "supportsHttpsTrafficOnly": https,
        "encryption": {"requireInfrastructureEncryption": False,
                       "services": {"file": {"keyType": "Account", "enabled": True},
                                    "blob": {"keyType": "Account", "enabled": True}},
                       "keySource": "Microsoft.Storage"},
        "accessTier": "Hot",
        "provisioningState": "Succeeded",
        "creationTime": "2024-06-01T09:12:44.1234567Z",
        "primaryEndpoints": {"blob": f"https://{name}.blob.core.windows.net/"},
        "primaryLocation": "westeurope",
        "statusOfPrimary": "available",
    }
    if https is None:
        del props["supportsHttpsTrafficOnly"]
    if default_action is None:
        del props["networkAcls"]
    if public is not None:
        props["allowBlobPublicAccess"] = public
    if tls is not None:
        props["minimumTlsVersion"] = tls
    if shared_key is not None:
        props["allowSharedKeyAccess"] = shared_key
    return {
        "sku": {"name": "Standard_LRS", "tier": "Standard"},
        "kind": "StorageV2",
        "id": rid(sub, rg, "Microsoft.Storage/storageAccounts", name),
        "name": name,
        "type": "Microsoft.Storage/storageAccounts",
        "location": "westeurope",
        # Labelled with a level of the default classification scheme unless told.
        "tags": tags if tags is not None else {"data-classification": "internal"},
        "properties": props,
    }


def storage_account_from_example(sub: str, name: str, *, rg: str = "res9407"
                                 ) -> dict[str, Any]:
    """Account ``sto8596`` of ``StorageAccountList.json`` (Azure REST API specs,
    specification/storage/resource-manager/Microsoft.Storage/stable/2023-05-01/examples,
    commit c93887028b4d), renamed into ``sub``: what a real account of the list looks
    like — no ``minimumTlsVersion``, ``allowBlobPublicAccess``,
    ``allowSharedKeyAccess`` or ``publicNetworkAccess``; ``networkAcls`` with a resource
    access rule; a customer-managed key."""
    return {
        "id": rid(sub, rg, "Microsoft.Storage/storageAccounts", name),
        "identity": {"principalId": "911871cc-ffd1-4fc4-ac11-7a316433ea66",
                     "tenantId": TENANT, "type": "SystemAssigned"},
        "kind": "Storage",
        "location": "eastus2(stage)",
        "name": name,
        "properties": {
            "geoReplicationStats": {"status": "Live", "lastSyncTime": "2018-10-30T00:25:34Z",
                                    "canFailover": True},
            "isHnsEnabled": True,
            "creationTime": "2017-06-01T02:42:41.7633306Z",
            "networkAcls": {
                "resourceAccessRules": [{
                    "tenantId": TENANT,
                    "resourceId": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/"
                                  "Microsoft.Synapse/workspaces/testworkspace"}],
                "bypass": "AzureServices", "defaultAction": "Allow", "ipRules": [],
                "virtualNetworkRules": [],
            },
            "primaryEndpoints": {"blob": f"https://{name}.blob.core.windows.net/",
                                 "dfs": f"https://{name}.dfs.core.windows.net/"},
            "primaryLocation": "eastus2(stage)",
            "provisioningState": "Succeeded",
            "routingPreference": {"routingChoice": "MicrosoftRouting",
                                  "publishMicrosoftEndpoints": True,
                                  "publishInternetEndpoints": True},
            "encryption": {
                "services": {
                    "file": {"keyType": "Account", "enabled": True,
                             "lastEnabledTime": "2019-12-11T20:49:31.7036140Z"},
                    "blob": {"keyType": "Account", "enabled": True,
                             "lastEnabledTime": "2019-12-11T20:49:31.7036140Z"}},
                "keySource": "Microsoft.Keyvault",
                "keyvaultproperties": {
                    "keyvaulturi": "https://myvault8569.vault.azure.net",
                    "keyname": "wrappingKey", "keyversion": "",
                    "currentVersionedKeyIdentifier": "https://myvault8569.vault.azure.net/"
                    "keys/wrappingKey/0682afdd9c104f4285df20107e956cad",
                    "lastKeyRotationTimestamp": "2019-12-13T20:36:23.7023290Z"}},
            "secondaryLocation": "northcentralus(stage)",
            "statusOfPrimary": "available",
            "statusOfSecondary": "available",
            "supportsHttpsTrafficOnly": False,
        },
        "sku": {"name": "Standard_GRS", "tier": "Standard"},
        "tags": {"key1": "value1", "key2": "value2"},
        "type": "Microsoft.Storage/storageAccounts",
    }


def nsg_rule(name: str, priority: int, port: str | list[str], source: str | list[str] = "*",
             *, access: str = "Allow", protocol: str = "Tcp", direction: str = "Inbound"
             ) -> dict[str, Any]:
    """A security rule shaped as in ``NetworkSecurityGroupGet.json`` (Azure REST API
    specs, network stable/2023-09-01): a single port/prefix goes in
    ``destinationPortRange``/``sourceAddressPrefix``, several in the plural list field,
    and fields that are not set are absent (not empty lists)."""
    p: dict[str, Any] = {"provisioningState": "Succeeded", "protocol": protocol,
                         "sourcePortRange": "*", "destinationAddressPrefix": "*",
                         "access": access, "priority": priority, "direction": direction}
    if isinstance(port, list):
        p["destinationPortRanges"] = port
    else:
        p["destinationPortRange"] = port
    if isinstance(source, list):
        p["sourceAddressPrefixes"] = source
    else:
        p["sourceAddressPrefix"] = source
    return {"name": name, "id": f".../securityRules/{name}", "properties": p}


def nsg(sub: str, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "id": rid(sub, "rg-net", "Microsoft.Network/networkSecurityGroups", name),
        "etag": 'W/"11111111-0000-0000-0000-000000000000"',
        "type": "Microsoft.Network/networkSecurityGroups",
        "location": "northeurope",
        "properties": {
            "provisioningState": "Succeeded",
            "resourceGuid": "7a8b9c0d-0000-0000-0000-000000000000",
            "securityRules": rules,
            "defaultSecurityRules": [
                nsg_rule("AllowVnetInBound", 65000, "*", "VirtualNetwork"),
                nsg_rule("AllowAzureLoadBalancerInBound", 65001, "*", "AzureLoadBalancer"),
                nsg_rule("DenyAllInBound", 65500, "*", "*", access="Deny", protocol="*"),
            ],
            "networkInterfaces": [{"id": f"/subscriptions/{sub}/.../networkInterfaces/nic1"}],
        },
    }


PLANS = ("VirtualMachines", "SqlServers", "AppServices", "StorageAccounts", "KeyVaults",
         "Arm", "Containers", "CosmosDbs", "Api")


#: Plan extensions as ``ListPricings_example.json`` shows them (Azure REST API specs,
#: security stable/2024-01-01): ``isEnabled`` is the string "True"/"False".
EXTENSIONS = {
    "VirtualMachines": [{"name": "AgentlessVmScanning", "isEnabled": "True"}],
    "StorageAccounts": [{"name": "OnUploadMalwareScanning", "isEnabled": "True",
                         "additionalExtensionProperties": {"capGBPerMonthPerStorageAccount": 10}},
                        {"name": "SensitiveDataDiscovery", "isEnabled": "True"}],
}


def pricings(sub: str, off: tuple[str, ...] = (), *, sensitive_data: bool = True
             ) -> list[dict[str, Any]]:
    """Defender plans shaped as in ``ListPricings_example.json`` (security
    stable/2024-01-01)."""
    out = []
    for plan in PLANS:
        tier = "Free" if plan in off else "Standard"
        p: dict[str, Any] = {"pricingTier": tier, "freeTrialRemainingTime": "PT0S",
                             "enforce": "False"}
        if tier == "Standard":
            p["enablementTime"] = "2025-02-03T04:05:06.789Z"
            if plan == "VirtualMachines":
                p["subPlan"] = "P2"
            if plan == "StorageAccounts":
                p["subPlan"] = "DefenderForStorageV2"
            extensions = [dict(e) for e in EXTENSIONS.get(plan, [])]
            if not sensitive_data:
                extensions = [e for e in extensions if e["name"] != "SensitiveDataDiscovery"]
            if extensions:
                p["extensions"] = extensions
        out.append({
            "id": f"/subscriptions/{sub}/providers/Microsoft.Security/pricings/{plan}",
            "name": plan, "type": "Microsoft.Security/pricings", "properties": p,
        })
    return out


def security_settings(sub: str, *, endpoint: bool = True) -> list[dict[str, Any]]:
    """``GetSettings_example.json`` (security stable/2022-05-01): the integrations."""
    base = f"/subscriptions/{sub}/providers/Microsoft.Security/settings"
    return [{"id": f"{base}/{name}", "name": name, "kind": kind,
             "type": "Microsoft.Security/settings", "properties": {"enabled": enabled}}
            for name, kind, enabled in (("MCAS", "DataExportSettings", True),
                                        ("WDATP", "DataExportSettings", endpoint),
                                        ("Sentinel", "AlertSyncSettings", False))]


def security_contact(sub: str, *, emails: str = "soc@contoso.example", legacy: bool = False,
                     alerts: str | None = "Medium", by_role: bool = True) -> dict[str, Any]:
    """A ``Microsoft.Security/securityContacts`` item: the 2023-12-01-preview shape
    (``isEnabled``, ``notificationsSources``; securityContacts ``GetSecurityContact``
    example) or, with ``legacy``, the 2020-01-01-preview ``alertNotifications`` one.
    ``alerts`` None: alert mails off."""
    props: dict[str, Any] = {
        "emails": emails, "phone": "+1-555-0100",
        "notificationsByRole": {"state": "On" if by_role else "Off", "roles": ["Owner"]},
    }
    if legacy:
        props["alertNotifications"] = {"state": "On" if alerts else "Off",
                                       "minimalSeverity": alerts or "High"}
    else:
        props["isEnabled"] = True
        props["notificationsSources"] = (
            [{"sourceType": "Alert", "minimalSeverity": alerts}] if alerts else []
        ) + [{"sourceType": "AttackPath", "minimalRiskLevel": "Critical"}]
    return {"id": f"/subscriptions/{sub}/providers/Microsoft.Security/securityContacts/default",
            "name": "default", "type": "Microsoft.Security/securityContacts",
            "properties": props}


def masking_policy(db_id: str, state: str) -> dict[str, Any]:
    """``DataMaskingPolicyGet.json`` (sql stable/2021-11-01 examples), for ``db_id``."""
    return {"id": f"{db_id}/dataMaskingPolicies/Default", "name": "Default",
            "type": "Microsoft.Sql/servers/databases/dataMaskingPolicies",
            "location": "West Europe", "kind": None,
            "properties": {"dataMaskingState": state, "exemptPrincipals": "testuser;",
                           "applicationPrincipals": "", "maskingLevel": ""}}


def masking_rule(db_id: str, table: str, column: str, state: str = "Enabled",
                 function: str = "Text") -> dict[str, Any]:
    """A rule of ``DataMaskingRuleListByDatabase.json`` (sql stable/2021-11-01)."""
    return {"id": f"{db_id}/dataMaskingPolicies/Default/rules/", "name": "",
            "type": "Microsoft.Sql/servers/databases/dataMaskingPolicies/rules",
            "location": "West Europe", "kind": None,
            "properties": {"id": f"dbo_{table}_{column}", "ruleState": state,
                           "schemaName": "dbo", "tableName": table, "columnName": column,
                           "aliasName": None, "maskingFunction": function,
                           "numberFrom": None, "numberTo": None, "prefixSize": "1",
                           "suffixSize": "0", "replacementString": "xxxx"}}


def assessment(sub: str, resource: str, key: str, name: str, code: str, *,
               severity: str = "High", days: float = 5) -> dict[str, Any]:
    """An assessment as ``ListAssessments_example.json`` (security stable/2021-06-01)
    lists it, with the ``status`` dates of ``AssessmentStatusResponse`` and the
    ``metadata`` that ``$expand=metadata`` adds."""
    from datetime import UTC, datetime, timedelta

    changed = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "id": f"{resource}/providers/Microsoft.Security/assessments/{key}",
        "name": key, "type": "Microsoft.Security/assessments",
        "properties": {
            "resourceDetails": {"source": "Azure", "id": resource},
            "displayName": name,
            "status": {"code": code, "firstEvaluationDate": "2024-01-01T00:00:00.000Z",
                       "statusChangeDate": changed},
            "metadata": {"displayName": name, "severity": severity,
                         "assessmentType": "BuiltIn"},
        },
    }


def diag_setting(name: str, *, workspace: str | None = None, storage: str | None = None,
                 categories: tuple[str, ...] = ("Administrative", "Security", "Policy",
                                                "Alert"),
                 group: str | None = None) -> dict[str, Any]:
    logs: list[dict[str, Any]] = [{"category": c, "enabled": True} for c in categories]
    if group:
        logs = [{"categoryGroup": group, "enabled": True}]
    props: dict[str, Any] = {"logs": logs}
    if workspace:
        props["workspaceId"] = workspace
    if storage:
        props["storageAccountId"] = storage
    return {"id": f".../diagnosticSettings/{name}", "name": name, "properties": props}


def key_vault(sub: str, name: str, *, soft_delete: bool | None = True, purge: bool = True,
              rg: str = "rg-sec") -> dict[str, Any]:
    """A vault shaped as in ``listVaultByResourceGroup.json`` (Azure REST API specs,
    keyvault stable/2023-07-01): ``enablePurgeProtection`` is absent unless it was turned
    on, and ``softDeleteRetentionInDays`` may be absent (ARM's default, 90)."""
    props: dict[str, Any] = {
        "sku": {"family": "A", "name": "standard"},
        "tenantId": TENANT,
        "accessPolicies": [{"tenantId": TENANT, "objectId": "o1",
                            "permissions": {"keys": ["get"], "secrets": ["get"]}}],
        "enabledForDeployment": False,
        "enableSoftDelete": soft_delete,
        "enableRbacAuthorization": True,
        "vaultUri": f"https://{name}.vault.azure.net/",
        "provisioningState": "Succeeded",
        "publicNetworkAccess": "Enabled",
    }
    if soft_delete is None:
        del props["enableSoftDelete"]
    if purge:
        props["enablePurgeProtection"] = True
    return {"id": rid(sub, rg, "Microsoft.KeyVault/vaults", name), "name": name,
            "type": "Microsoft.KeyVault/vaults", "location": "westeurope", "tags": {},
            "systemData": {"createdBy": "keyVaultUser1", "createdByType": "User",
                           "createdAt": "2020-01-01T12:00:00.0000000Z",
                           "lastModifiedBy": "keyVaultUser2", "lastModifiedByType": "User",
                           "lastModifiedAt": "2020-01-01T12:00:00.0000000Z"},
            "properties": props}


def sql_server(sub: str, name: str, *, public: str = "Disabled", tls: str | None = "1.2"
               ) -> dict[str, Any]:
    props: dict[str, Any] = {
        "administratorLogin": "sqladmin", "version": "12.0", "state": "Ready",
        "fullyQualifiedDomainName": f"{name}.database.windows.net",
        "privateEndpointConnections": [], "publicNetworkAccess": public,
        "restrictOutboundNetworkAccess": "Disabled",
    }
    if tls is not None:
        props["minimalTlsVersion"] = tls
    return {"kind": "v12.0", "id": rid(sub, "rg-sql", "Microsoft.Sql/servers", name),
            "name": name, "type": "Microsoft.Sql/servers", "location": "westeurope",
            "properties": props}


def vm(sub: str, name: str, *, managed: bool = True) -> dict[str, Any]:
    os_disk: dict[str, Any] = {"osType": "Linux", "name": f"{name}-os",
                               "createOption": "FromImage", "caching": "ReadWrite",
                               "diskSizeGB": 30}
    if managed:
        os_disk["managedDisk"] = {
            "storageAccountType": "Premium_LRS",
            "id": rid(sub, "rg-vm", "Microsoft.Compute/disks", f"{name}-os"),
        }
    else:
        os_disk["vhd"] = {"uri": f"https://legacy.blob.core.windows.net/vhds/{name}.vhd"}
    return {
        "name": name, "id": rid(sub, "rg-vm", "Microsoft.Compute/virtualMachines", name),
        "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
        "properties": {
            "vmId": "0f0e0d0c-0000-0000-0000-000000000000",
            "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
            "storageProfile": {"osDisk": os_disk, "dataDisks": []},
            "osProfile": {"computerName": name, "adminUsername": "azureuser",
                          "linuxConfiguration": {"disablePasswordAuthentication": True}},
            "provisioningState": "Succeeded",
        },
    }


def disk(sub: str, name: str, *, encryption: str | None = "EncryptionAtRestWithPlatformKey"
         ) -> dict[str, Any]:
    props: dict[str, Any] = {"osType": "Linux", "diskSizeGB": 30, "diskState": "Attached",
                             "timeCreated": "2024-06-01T09:12:44.1234567+00:00",
                             "provisioningState": "Succeeded"}
    if encryption:
        props["encryption"] = {"type": encryption}
    return {"name": name, "id": rid(sub, "rg-vm", "Microsoft.Compute/disks", name),
            "type": "Microsoft.Compute/disks", "location": "westeurope",
            "managedBy": rid(sub, "rg-vm", "Microsoft.Compute/virtualMachines", "vm"),
            "sku": {"name": "Premium_LRS", "tier": "Premium"}, "properties": props}


def rs_vault(sub: str, name: str, *, soft_delete: str = "AlwaysON",
             immutability: str = "Locked") -> dict[str, Any]:
    return {
        "id": rid(sub, "rg-bcdr", "Microsoft.RecoveryServices/vaults", name), "name": name,
        "type": "Microsoft.RecoveryServices/vaults", "location": "westeurope",
        "sku": {"name": "RS0", "tier": "Standard"},
        "properties": {
            "provisioningState": "Succeeded",
            "securitySettings": {
                "softDeleteSettings": {"softDeleteState": soft_delete,
                                       "softDeleteRetentionPeriodInDays": 14,
                                       "enhancedSecurityState": "Enabled"},
                "immutabilitySettings": {"state": immutability},
                "multiUserAuthorization": "Disabled",
            },
            "publicNetworkAccess": "Enabled",
        },
    }


def vm_policy(vault_id: str, name: str, daily_days: int, weekly_weeks: int | None = None
              ) -> dict[str, Any]:
    retention: dict[str, Any] = {
        "retentionPolicyType": "LongTermRetentionPolicy",
        "dailySchedule": {"retentionTimes": ["2024-01-01T02:00:00Z"],
                          "retentionDuration": {"count": daily_days, "durationType": "Days"}},
    }
    if weekly_weeks:
        retention["weeklySchedule"] = {"daysOfTheWeek": ["Sunday"],
                                       "retentionTimes": ["2024-01-01T02:00:00Z"],
                                       "retentionDuration": {"count": weekly_weeks,
                                                             "durationType": "Weeks"}}
    return {
        "id": f"{vault_id}/backupPolicies/{name}", "name": name,
        "type": "Microsoft.RecoveryServices/vaults/backupPolicies",
        "properties": {
            "backupManagementType": "AzureIaasVM", "instantRpRetentionRangeInDays": 2,
            "schedulePolicy": {"schedulePolicyType": "SimpleSchedulePolicy",
                               "scheduleRunFrequency": "Daily",
                               "scheduleRunTimes": ["2024-01-01T02:00:00Z"]},
            "retentionPolicy": retention, "timeZone": "UTC", "protectedItemsCount": 1,
        },
    }


def lock(scope: str, name: str, level: str = "CanNotDelete") -> dict[str, Any]:
    return {"id": f"{scope}/providers/Microsoft.Authorization/locks/{name}",
            "type": "Microsoft.Authorization/locks", "name": name,
            "properties": {"level": level, "notes": "protect"}}


def vnet(sub: str, name: str, subnets: dict[str, bool]) -> dict[str, Any]:
    """A virtual network as ``VirtualNetworkGet.json`` shows it (network
    stable/2023-09-01); ``subnets``: name → whether an NSG is associated."""
    vid = rid(sub, "rg-net", "Microsoft.Network/virtualNetworks", name)
    nsg_id = rid(sub, "rg-net", "Microsoft.Network/networkSecurityGroups", f"{name}-nsg")
    out = []
    for i, (sname, with_nsg) in enumerate(subnets.items()):
        sp: dict[str, Any] = {"addressPrefix": f"10.0.{i}.0/24", "provisioningState": "Succeeded",
                              "privateEndpointNetworkPolicies": "Disabled",
                              "privateLinkServiceNetworkPolicies": "Enabled",
                              "ipConfigurations": [{"id": f"{vid}/nic{i}/ipConfigurations/c"}]}
        if with_nsg:
            sp["networkSecurityGroup"] = {"id": nsg_id}
        out.append({"name": sname, "id": f"{vid}/subnets/{sname}", "properties": sp,
                    "type": "Microsoft.Network/virtualNetworks/subnets"})
    return {"name": name, "id": vid, "type": "Microsoft.Network/virtualNetworks",
            "location": "westeurope",
            "properties": {"provisioningState": "Succeeded",
                           "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                           "subnets": out, "virtualNetworkPeerings": [],
                           "enableDdosProtection": False}}


def azure_firewall(sub: str, name: str, *, mode: str | None = "Alert",
                   policy: str | None = None) -> dict[str, Any]:
    """A firewall as ``AzureFirewallListBySubscription.json`` lists it (network
    stable/2023-09-01), rule collections left empty."""
    props: dict[str, Any] = {
        "provisioningState": "Succeeded",
        "sku": {"name": "AZFW_VNet", "tier": "Premium" if policy else "Standard"},
        "ipConfigurations": [{"name": "ipconfig", "id": "x", "properties": {
            "privateIPAddress": "10.0.0.4",
            "subnet": {"id": rid(sub, "rg-net", "Microsoft.Network/virtualNetworks",
                                 "hub/subnets/AzureFirewallSubnet")}}}],
        "applicationRuleCollections": [], "natRuleCollections": [],
        "networkRuleCollections": [], "ipGroups": [], "additionalProperties": {},
    }
    if mode is not None:
        props["threatIntelMode"] = mode
    if policy:
        props["firewallPolicy"] = {"id": policy}
    return {"name": name, "id": rid(sub, "rg-net", "Microsoft.Network/azureFirewalls", name),
            "type": "Microsoft.Network/azureFirewalls", "location": "westeurope", "zones": [],
            "properties": props}


def firewall_policy(sub: str, name: str, mode: str | None) -> dict[str, Any]:
    """``FirewallPolicyGet.json`` (network stable/2023-09-01), trimmed."""
    props: dict[str, Any] = {"provisioningState": "Succeeded", "sku": {"tier": "Premium"},
                             "dnsSettings": {"servers": [], "enableProxy": True},
                             "intrusionDetection": {"mode": "Deny"}}
    if mode is not None:
        props["threatIntelMode"] = mode
    return {"name": name, "id": rid(sub, "rg-net", "Microsoft.Network/firewallPolicies", name),
            "type": "Microsoft.Network/FirewallPolicies", "location": "westeurope",
            "properties": props}


def app_gateway(sub: str, name: str, *, tier: str = "WAF_v2", public: bool = True,
                https: bool = True, ssl_policy: dict[str, Any] | None = None,
                waf: dict[str, Any] | None = None, waf_policy: str | None = None
                ) -> dict[str, Any]:
    """An Application Gateway as ``ApplicationGatewayList.json`` lists it (network
    stable/2023-09-01): frontends, listeners, TLS policy, WAF configuration."""
    gid = rid(sub, "rg-web", "Microsoft.Network/applicationGateways", name)
    frontend: dict[str, Any] = {"name": "appGatewayFrontendIP", "id": f"{gid}/fe", "properties": (
        {"publicIPAddress": {"id": rid(sub, "rg-web", "Microsoft.Network/publicIPAddresses",
                                       f"{name}-pip")}}
        if public else {"privateIPAddress": "10.0.3.10", "privateIPAllocationMethod": "Static",
                        "subnet": {"id": f"{gid}/subnet"}})}
    listener = {"name": "listener", "id": f"{gid}/httpListeners/l", "properties": {
        "frontendIPConfiguration": {"id": f"{gid}/fe"}, "frontendPort": {"id": f"{gid}/p"},
        "protocol": "Https" if https else "Http", "requireServerNameIndication": False}}
    props: dict[str, Any] = {
        "provisioningState": "Succeeded", "operationalState": "Running",
        "sku": {"name": tier, "tier": tier, "capacity": 2},
        "frontendIPConfigurations": [frontend], "httpListeners": [listener],
        "sslProfiles": [],
    }
    if ssl_policy is not None:
        props["sslPolicy"] = ssl_policy
    if waf is not None:
        props["webApplicationFirewallConfiguration"] = waf
    if waf_policy:
        props["firewallPolicy"] = {"id": waf_policy}
    return {"name": name, "id": gid, "type": "Microsoft.Network/applicationGateways",
            "location": "westeurope", "properties": props}


def waf_policy(sub: str, name: str, *, mode: str = "Prevention", state: str = "Enabled"
               ) -> dict[str, Any]:
    """``WafPolicyGet.json`` (network stable/2023-09-01), trimmed."""
    return {"name": name, "id": rid(sub, "rg-web", "Microsoft.Network/"
                                    "ApplicationGatewayWebApplicationFirewallPolicies", name),
            "type": "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies",
            "location": "westeurope",
            "properties": {"provisioningState": "Succeeded", "resourceState": "Enabled",
                           "policySettings": {"state": state, "mode": mode,
                                              "requestBodyCheck": True},
                           "managedRules": {"managedRuleSets": [
                               {"ruleSetType": "OWASP", "ruleSetVersion": "3.2"}]},
                           "customRules": []}}


def budget(sub: str, name: str, *, threshold: float = 80, enabled: bool = True,
           emails: int = 1, roles: tuple[str, ...] = ("Contributor", "Reader")
           ) -> dict[str, Any]:
    """A budget as ``BudgetsList.json`` lists it (consumption stable/2023-05-01)."""
    return {"id": f"/subscriptions/{sub}/providers/Microsoft.Consumption/budgets/{name}",
            "name": name, "type": "Microsoft.Consumption/budgets", "eTag": '"1d34d016a593709"',
            "properties": {
                "category": "Cost", "amount": 100.65, "timeGrain": "Monthly",
                "timePeriod": {"startDate": "2024-01-01T00:00:00Z",
                               "endDate": "2030-12-31T00:00:00Z"},
                "currentSpend": {"amount": 80.89, "unit": "EUR"},
                "notifications": {f"Actual_GreaterThan_{int(threshold)}_Percent": {
                    "enabled": enabled, "operator": "GreaterThan", "threshold": threshold,
                    "locale": "en-us",
                    "contactEmails": [f"owner{i}@acme.example" for i in range(emails)],
                    "contactRoles": list(roles), "contactGroups": [],
                    "thresholdType": "Actual"}}}}


def policy_summary(assignments: list[tuple[str, int]]) -> dict[str, Any]:
    """``PolicyStates_SummarizeSubscriptionScope.json`` (policyinsights
    stable/2019-10-01): ``(assignment name, non-compliant resources)``."""
    rows = [{"policyAssignmentId": f"/subscriptions/x/providers/microsoft.authorization/"
                                   f"policyassignments/{name}",
             "policySetDefinitionId": "/providers/microsoft.authorization/policysetdefinitions/"
                                      "1f3afdf9-d0c9-4c3d-847f-89da613e70a8",
             "results": {"queryResultsUri": "https://management.azure.com/x",
                         "nonCompliantResources": bad, "nonCompliantPolicies": 1 if bad else 0},
             "policyDefinitions": []} for name, bad in assignments]
    return {"@odata.context": "https://management.azure.com/x/$metadata#summary",
            "@odata.count": 1,
            "value": [{"@odata.id": None,
                       "@odata.context": "https://management.azure.com/x/$metadata#summary/$entity",
                       "results": {"queryResultsUri": "https://management.azure.com/x",
                                   "nonCompliantResources": sum(b for _, b in assignments),
                                   "nonCompliantPolicies": sum(1 for _, b in assignments if b)},
                       "policyAssignments": rows}]}


def resource_group(sub: str, name: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"id": f"/subscriptions/{sub}/resourceGroups/{name}", "name": name,
            "type": "Microsoft.Resources/resourceGroups", "location": "westeurope",
            "properties": {"provisioningState": "Succeeded"}, "tags": tags}


def management_tree(children: dict[str, list[str]], under_root: list[str]) -> dict[str, Any]:
    """The tenant root group expanded with ``$expand=children&$recurse=true``, shaped as
    ``GetManagementGroupWithExpand.json`` (managementgroups stable/2021-04-01):
    ``children`` maps a group name to its subscriptions; ``under_root`` are
    subscriptions directly under the root."""
    def sub_node(sub: str) -> dict[str, Any]:
        return {"id": f"/subscriptions/{sub}", "type": "/subscriptions", "name": sub,
                "displayName": f"Subscription {sub[:8]}"}

    groups = [{"id": f"/providers/Microsoft.Management/managementGroups/{g}",
               "type": "Microsoft.Management/managementGroups", "name": g, "displayName": g,
               "children": [sub_node(x) for x in subs]} for g, subs in children.items()]
    return {"id": f"/providers/Microsoft.Management/managementGroups/{TENANT}",
            "type": "Microsoft.Management/managementGroups", "name": TENANT,
            "properties": {"tenantId": TENANT, "displayName": "Tenant Root Group",
                           "details": {"version": 1, "updatedTime": "2024-01-01T00:00:00.00Z",
                                       "updatedBy": "admin"},
                           "children": groups + [sub_node(x) for x in under_root]}}


def lifecycle(account_id: str, days: int) -> dict[str, Any]:
    """``StorageAccountGetManagementPolicy.json`` (storage stable/2023-05-01)."""
    return {"id": f"{account_id}/managementPolicies/default", "name": "DefaultManagementPolicy",
            "type": "Microsoft.Storage/storageAccounts/managementPolicies",
            "properties": {"policy": {"rules": [{
                "enabled": True, "name": "expire", "type": "Lifecycle",
                "definition": {"filters": {"blobTypes": ["blockBlob", "appendBlob"]},
                               "actions": {"baseBlob": {"tierToCool": {
                                   "daysAfterModificationGreaterThan": 30},
                                   "delete": {"daysAfterModificationGreaterThan": days}},
                                   "snapshot": {"delete": {
                                       "daysAfterCreationGreaterThan": 30}}}}}]},
                "lastModifiedTime": "2024-06-08T03:01:55.7168089Z"}}


def activity_container(account_id: str, state: str | None, days: int = 0) -> dict[str, Any]:
    """The insights-activity-logs container as
    ``BlobContainersGetWithAllowProtectedAppendWritesAll.json`` shows one (storage
    stable/2023-05-01), with a time-based retention policy in ``state`` (None: none)."""
    props: dict[str, Any] = {"publicAccess": "None", "leaseStatus": "Unlocked",
                             "leaseState": "Available", "lastModifiedTime": "2024-03-26T05:06:14Z",
                             "hasImmutabilityPolicy": state is not None, "hasLegalHold": False}
    if state is not None:
        props["immutabilityPolicy"] = {"etag": '"8d592d74cb3011a"', "properties": {
            "immutabilityPeriodSinceCreationInDays": days, "allowProtectedAppendWritesAll": True,
            "state": state}, "updateHistory": []}
    return {"id": f"{account_id}/blobServices/default/containers/insights-activity-logs",
            "name": "insights-activity-logs",
            "type": "Microsoft.Storage/storageAccounts/blobServices/containers",
            "etag": '"0x8D592D74CC20EBA"', "properties": props}


def _p(sub: str, provider_path: str) -> str:
    return f"/subscriptions/{sub}/providers/{provider_path}"


def add_good_subscription(e: Estate, sub: str, name: str, *, prefix: str) -> None:
    """A subscription where every check passes (workspace and locked-storage
    destinations, locks by RG)."""
    f = e.fake
    f.add_subscription(sub, name, tags={"Owner": "platform-team", "environment": "production"})
    e.place(sub, "production")
    f.put_list(f"/subscriptions/{sub}/resourcegroups", [
        resource_group(sub, "rg-data", {"environment": "prod"}),
        resource_group(sub, "rg-net", {"Environment": "Production"}),
        resource_group(sub, "NetworkWatcherRG", {})])
    sa = storage_account(sub, f"{prefix}data")
    # Secure transfer not reported: the documented default (API 2019-04-01+) is on.
    defaults = storage_account(sub, f"{prefix}defaults", https=None)
    archive = storage_account(sub, f"{prefix}archive")
    for account in (sa, defaults, archive):
        f.add(_p(sub, "Microsoft.Storage/storageAccounts"), account)
        f.put(f"{account['id']}/managementPolicies/default", lifecycle(account["id"], 2555))
    f.put(f"{archive['id']}/blobServices/default/containers/insights-activity-logs",
          activity_container(archive["id"], "Locked", 400))
    f.put(archive["id"], archive)
    f.put_list(_p(sub, "Microsoft.Security/settings"), security_settings(sub))
    vm_id = rid(sub, "rg-vm", "Microsoft.Compute/virtualMachines", f"{prefix}-vm")
    f.put_list(_p(sub, "Microsoft.Security/assessments"), [
        assessment(sub, vm_id, "a1", "Machines should have vulnerability findings resolved",
                   "Unhealthy", severity="High", days=10),
        assessment(sub, vm_id, "a2", "Install endpoint protection", "Healthy"),
        assessment(sub, vm_id, "a3", "Disk encryption", "NotApplicable", severity="Low"),
    ])
    f.add(_p(sub, "Microsoft.Network/virtualNetworks"), vnet(sub, f"{prefix}-vnet", {
        "app": True, "data": True, "GatewaySubnet": False, "AzureFirewallSubnet": False}))
    policy = firewall_policy(sub, f"{prefix}-fwpolicy", "Deny")
    f.put(policy["id"], policy)
    f.add(_p(sub, "Microsoft.Network/azureFirewalls"),
          azure_firewall(sub, f"{prefix}-fw", mode=None, policy=policy["id"]))
    wp = waf_policy(sub, f"{prefix}-waf")
    f.put(wp["id"], wp)
    f.add(_p(sub, "Microsoft.Network/applicationGateways"), app_gateway(
        sub, f"{prefix}-agw", ssl_policy={"policyType": "Predefined",
                                          "policyName": "AppGwSslPolicy20220101"},
        waf_policy=wp["id"]))
    f.add(_p(sub, "Microsoft.Network/applicationGateways"), app_gateway(
        sub, f"{prefix}-agw-custom", ssl_policy={"policyType": "CustomV2",
                                                 "minProtocolVersion": "TLSv1_3"},
        waf={"enabled": True, "firewallMode": "Prevention", "ruleSetType": "OWASP",
             "ruleSetVersion": "3.2"}))
    f.put_list(_p(sub, "Microsoft.Consumption/budgets"), [budget(sub, "monthly")])
    f.put(_p(sub, "Microsoft.PolicyInsights/policyStates/latest/summarize"),
          policy_summary([("mcsb", 0), ("tags", 0)]))
    f.add(_p(sub, "Microsoft.Network/networkSecurityGroups"), nsg(sub, f"{prefix}-web", [
        nsg_rule("allow-https", 100, "443"),
        nsg_rule("allow-ssh-office", 110, "22", "203.0.113.0/24"),
        nsg_rule("deny-rdp", 120, "3389", "Internet", access="Deny"),
        nsg_rule("ssh-vnet", 130, "22", "VirtualNetwork"),
        nsg_rule("rdp-lb", 140, "3389", ["AzureLoadBalancer", "10.0.0.0/8"]),
    ]))
    f.put_list(_p(sub, "Microsoft.Security/pricings"), pricings(sub))
    f.put_list(_p(sub, "Microsoft.Security/securityContacts"), [security_contact(sub)])
    ws = rid(sub, "rg-log", "Microsoft.OperationalInsights/workspaces", f"{prefix}-law")
    f.put(ws, {"id": ws, "name": f"{prefix}-law", "properties": {"retentionInDays": 400}})
    f.put_list(_p(sub, "Microsoft.Insights/diagnosticSettings"),
               [diag_setting("to-law", workspace=ws),
                diag_setting("to-archive", storage=archive["id"])])
    kv = key_vault(sub, f"{prefix}-kv")
    f.add(_p(sub, "Microsoft.KeyVault/vaults"), kv)
    f.put_list(f"{kv['id']}/providers/Microsoft.Insights/diagnosticSettings",
               [diag_setting("kv-audit", workspace=ws, group="audit")])
    srv = sql_server(sub, f"{prefix}-sql")
    f.add(_p(sub, "Microsoft.Sql/servers"), srv)
    f.put(f"{srv['id']}/auditingSettings/default",
          {"id": f"{srv['id']}/auditingSettings/Default", "name": "Default",
           "properties": {"state": "Enabled", "retentionDays": 0,
                          "isAzureMonitorTargetEnabled": True,
                          "auditActionsAndGroups": ["BATCH_COMPLETED_GROUP"]}})
    f.put_list(f"{srv['id']}/firewallRules", [
        {"id": "x", "name": "AllowAllWindowsAzureIps",
         "properties": {"startIpAddress": "0.0.0.0", "endIpAddress": "0.0.0.0"}}])
    db = {"id": f"{srv['id']}/databases/appdb", "name": "appdb",
          "type": "Microsoft.Sql/servers/databases", "location": "westeurope",
          "sku": {"name": "GP_S_Gen5", "tier": "GeneralPurpose"},
          "tags": {"data-classification": "confidential"},
          "properties": {"status": "Online", "collation": "SQL_Latin1_General_CP1_CI_AS"}}
    master = {**db, "id": f"{srv['id']}/databases/master", "name": "master"}
    f.put_list(f"{srv['id']}/databases", [master, db])
    f.put(f"{db['id']}/dataMaskingPolicies/Default", masking_policy(db["id"], "Enabled"))
    f.put_list(f"{db['id']}/dataMaskingPolicies/Default/rules",
               [masking_rule(db["id"], "customers", "email", function="Email")])
    f.put(f"{db['id']}/transparentDataEncryption/current",
          {"id": "x", "name": "current", "properties": {"state": "Enabled"}})
    f.add(_p(sub, "Microsoft.Compute/virtualMachines"), vm(sub, f"{prefix}-vm"))
    f.add(_p(sub, "Microsoft.Compute/disks"), disk(sub, f"{prefix}-vm-os"))
    vault = rs_vault(sub, f"{prefix}-rsv")
    f.add(_p(sub, "Microsoft.RecoveryServices/vaults"), vault)
    f.put_list(f"{vault['id']}/backupPolicies",
               [vm_policy(vault["id"], "daily-30", 30, 12)])
    rg_scope = f"/subscriptions/{sub}/resourceGroups"
    f.put_list(_p(sub, "Microsoft.Authorization/locks"), [
        lock(f"{rg_scope}/rg-data", "data-lock"),
        lock(f"{rg_scope}/rg-sec", "sec-lock"),
        lock(f"{rg_scope}/rg-sql", "sql-lock"),
        lock(vault["id"], "vault-lock"),  # on the resource itself
        lock(f"{rg_scope}/rg-net", "net-readonly", "ReadOnly"),
    ])


def add_bad_subscription(e: Estate, sub: str, name: str) -> None:
    """A subscription with one good resource of each kind and planted failures."""
    f = e.fake
    # Owner but no environment tag; directly under the tenant root group; production
    # and development resource groups side by side.
    f.add_subscription(sub, name, tags={"owner": "app-team", "costcenter": "42"})
    e.place(sub, None)
    f.put_list(f"/subscriptions/{sub}/resourcegroups", [
        resource_group(sub, "rg-app-prod", {"environment": "prod"}),
        resource_group(sub, "rg-app-dev", {"environment": "dev"})])
    gov = f"/subscriptions/{sub}"
    for c in ("subscription_tagged", "subscription_in_management_group",
              "environments_separated"):
        e.expect(f"azure.governance.{c}", gov)
    coll = _p(sub, "Microsoft.Storage/storageAccounts")
    good = storage_account(sub, "bgood")
    f.add(coll, good)
    f.put(f"{good['id']}/managementPolicies/default", lifecycle(good["id"], 365))
    http = storage_account(sub, "bhttp", https=False)
    f.add(coll, http)
    e.expect("azure.storage.account_tls_only", http["id"])
    loose = storage_account(sub, "bloose", public=True, tls="TLS1_0", shared_key=None,
                            default_action="Allow", tags={"owner": "team-b"})
    f.add(coll, loose)
    e.expect("azure.storage.account_classified", loose["id"])  # no classification tag
    for c in ("account_public_access_block", "minimum_tls_version",
              "shared_key_access_disabled", "default_network_access_deny"):
        e.expect(f"azure.storage.{c}", loose["id"])
    legacy = storage_account(sub, "blegacy", public=None, tls=None,  # defaults: TLS1_0
                             tags={"Data-Classification": "secret"})  # not a level
    f.add(coll, legacy)
    e.expect("azure.storage.account_classified", legacy["id"])
    e.expect("azure.storage.minimum_tls_version", legacy["id"])
    e.expect("azure.storage.account_public_access_block", legacy["id"])
    # The vendor's example account: nothing set, plain HTTP allowed (rg-data: locked).
    example = storage_account_from_example(sub, "bexample", rg="rg-data")
    f.add(coll, example)
    for c in ("account_tls_only", "account_public_access_block", "minimum_tls_version",
              "shared_key_access_disabled", "default_network_access_deny"):
        e.expect(f"azure.storage.{c}", example["id"])
    e.expect("azure.storage.account_classified", example["id"])  # tags key1/key2 only
    # Deny by default, but the IP rules admit the internet in two halves.
    halves = storage_account(sub, "bhalves")
    halves["properties"]["networkAcls"]["ipRules"] = [
        {"value": "0.0.0.0/1", "action": "Allow"}, {"value": "128.0.0.0/1", "action": "Allow"}]
    f.add(coll, halves)
    e.expect("azure.storage.default_network_access_deny", halves["id"])
    for account in (http, loose, legacy, example, halves):  # no lifecycle policy
        e.expect("azure.storage.lifecycle_delete_rule", account["id"])

    coll = _p(sub, "Microsoft.Network/networkSecurityGroups")
    ssh = nsg(sub, "ssh-open", [nsg_rule("ssh", 100, "22")])
    rdp = nsg(sub, "rdp-open", [nsg_rule("rdp", 100, "3380-3390", "Internet")])
    every = nsg(sub, "all-open", [nsg_rule("any", 100, "*", "0.0.0.0/0", protocol="*")])
    shadow = nsg(sub, "ssh-shadowed", [
        nsg_rule("deny-ssh", 100, "22", "*", access="Deny"),
        nsg_rule("allow-tcp", 200, "0-65535", "Internet"),
    ])
    fine = nsg(sub, "outbound-only", [nsg_rule("out", 100, "*", direction="Outbound")])
    # Vendor-shaped rules the literal comparisons missed: 1-65535 from "*" with protocol
    # "*"; SSH from the internet in two halves; RDP from every Azure customer.
    wide = nsg(sub, "wide-range", [nsg_rule("rule1", 130, "1-65535", protocol="*")])
    halves = nsg(sub, "halves", [nsg_rule("ssh", 100, "22", ["0.0.0.0/1", "128.0.0.0/1"])])
    cloud = nsg(sub, "azurecloud", [nsg_rule("rdp", 100, ["3389", "5985-5986"], "AzureCloud")])
    for g in (ssh, rdp, every, shadow, fine, wide, halves, cloud):
        f.add(coll, g)
    for c in ("ssh_open_to_internet", "rdp_open_to_internet", "all_ports_open_to_internet"):
        e.expect(f"azure.network.{c}", wide["id"])
    e.expect("azure.network.ssh_open_to_internet", halves["id"])
    e.expect("azure.network.rdp_open_to_internet", cloud["id"])
    e.expect("azure.network.ssh_open_to_internet", ssh["id"])
    e.expect("azure.network.rdp_open_to_internet", rdp["id"])
    for c in ("ssh_open_to_internet", "rdp_open_to_internet", "all_ports_open_to_internet"):
        e.expect(f"azure.network.{c}", every["id"])
    e.expect("azure.network.rdp_open_to_internet", shadow["id"])
    e.expect("azure.network.all_ports_open_to_internet", shadow["id"])

    f.put_list(_p(sub, "Microsoft.Security/pricings"),
               pricings(sub, off=("KeyVaults",), sensitive_data=False))
    f.put_list(_p(sub, "Microsoft.Security/settings"), security_settings(sub, endpoint=False))
    # Alert mails switched off (2020-01-01-preview shape): no contact is told.
    f.put_list(_p(sub, "Microsoft.Security/securityContacts"),
               [security_contact(sub, legacy=True, alerts=None)])
    pricing_id = f"/subscriptions/{sub}/providers/Microsoft.Security/pricings"
    for c in ("defender_plans_enabled", "malware_protection_enabled",
              "sensitive_data_discovery_enabled", "contacts_configured"):
        e.expect(f"azure.security.{c}", pricing_id)
    vm_id = rid(sub, "rg-vm", "Microsoft.Compute/virtualMachines", "b-vm-vhd")
    f.put_list(_p(sub, "Microsoft.Security/assessments"), [
        assessment(sub, vm_id, "b1", "Machines should have vulnerability findings resolved",
                   "Unhealthy", severity="High", days=45),
        assessment(sub, vm_id, "b2", "Secure transfer to storage accounts", "Unhealthy",
                   severity="Low", days=45),
    ])
    e.expect("azure.security.assessments_within_sla",
             f"/subscriptions/{sub}/providers/Microsoft.Security/assessments")

    flat = vnet(sub, "b-vnet", {"app": False, "db": True, "GatewaySubnet": False})
    f.add(_p(sub, "Microsoft.Network/virtualNetworks"), flat)
    e.expect("azure.network.subnet_nsg_attached", flat["id"])
    classic = azure_firewall(sub, "b-fw-alert", mode="Alert")
    off_policy = firewall_policy(sub, "b-fwpolicy-off", "Off")
    f.put(off_policy["id"], off_policy)
    managed = azure_firewall(sub, "b-fw-managed", mode="Deny", policy=off_policy["id"])
    for fw in (classic, managed):
        f.add(_p(sub, "Microsoft.Network/azureFirewalls"), fw)
        e.expect("azure.gateway.firewall_threat_intel_deny", fw["id"])
    old_agw = app_gateway(sub, "b-agw-old", tier="Standard_v2")
    detect = app_gateway(sub, "b-agw-detect", ssl_policy={
        "policyType": "Predefined", "policyName": "AppGwSslPolicy20170401"},
        waf={"enabled": True, "firewallMode": "Detection", "ruleSetType": "OWASP",
             "ruleSetVersion": "3.2"})
    internal = app_gateway(sub, "b-agw-internal", tier="Standard_v2", public=False,
                           https=False)
    for gw in (old_agw, detect, internal):
        f.add(_p(sub, "Microsoft.Network/applicationGateways"), gw)
    for gw in (old_agw, detect):
        e.expect("azure.gateway.app_gateway_tls_policy", gw["id"])
        e.expect("azure.gateway.app_gateway_waf_enabled", gw["id"])
    f.put_list(_p(sub, "Microsoft.Consumption/budgets"), [
        budget(sub, "muted", enabled=False), budget(sub, "nobody", emails=0, roles=())])
    e.expect("azure.consumption.budget_alerts",
             f"/subscriptions/{sub}/providers/Microsoft.Consumption/budgets")
    f.put(_p(sub, "Microsoft.PolicyInsights/policyStates/latest/summarize"),
          policy_summary([("mcsb", 7), ("tags", 0)]))
    e.expect("azure.policy.compliance", f"/subscriptions/{sub}/providers/"
             "microsoft.policyinsights/policystates/latest")

    # Activity log to storage whose lifecycle deletes after 30 days.
    sa_log = storage_account(sub, "blogs")
    f.add(_p(sub, "Microsoft.Storage/storageAccounts"), sa_log)
    f.put(f"{sa_log['id']}/managementPolicies/default", {
        "id": "x", "name": "DefaultManagementPolicy", "properties": {"policy": {"rules": [
            {"enabled": True, "name": "expire", "type": "Lifecycle", "definition": {
                "filters": {"blobTypes": ["appendBlob"], "prefixMatch": ["insights-"]},
                "actions": {"baseBlob": {"delete": {"daysAfterModificationGreaterThan": 30}}},
            }}]}}})
    f.put_list(_p(sub, "Microsoft.Insights/diagnosticSettings"),
               [diag_setting("to-storage", storage=sa_log["id"])])
    f.put(sa_log["id"], sa_log)
    f.put(f"{sa_log['id']}/blobServices/default/containers/insights-activity-logs",
          activity_container(sa_log["id"], "Unlocked", 30))
    for c in ("activity_log_retention", "activity_log_immutable"):
        e.expect(f"azure.monitor.{c}",
                 f"/subscriptions/{sub}/providers/microsoft.insights/activitylog")

    coll = _p(sub, "Microsoft.KeyVault/vaults")
    kv_good = key_vault(sub, "b-kv-good", rg="rg-locked")
    kv_nopurge = key_vault(sub, "b-kv-nopurge", purge=False, rg="rg-locked")
    kv_nolog = key_vault(sub, "b-kv-nolog", rg="rg-locked")
    kv_nosoft = key_vault(sub, "b-kv-nosoft", soft_delete=False, purge=False, rg="rg-open")
    # Soft delete not reported: older API versions created vaults without it.
    kv_unset = key_vault(sub, "b-kv-unset", soft_delete=None, purge=False, rg="rg-locked")
    e.expect("azure.keyvault.soft_delete_enabled", kv_unset["id"])
    e.expect("azure.keyvault.purge_protection_enabled", kv_unset["id"])
    for kv in (kv_good, kv_nopurge, kv_nolog, kv_nosoft, kv_unset):
        f.add(coll, kv)
        path = f"{kv['id']}/providers/Microsoft.Insights/diagnosticSettings"
        f.put_list(path, [] if kv is kv_nolog else [diag_setting("audit", storage=sa_log["id"],
                                                                 categories=("AuditEvent",))])
    e.expect("azure.keyvault.purge_protection_enabled", kv_nopurge["id"])
    e.expect("azure.keyvault.logging_enabled", kv_nolog["id"])
    e.expect("azure.keyvault.soft_delete_enabled", kv_nosoft["id"])
    e.expect("azure.keyvault.purge_protection_enabled", kv_nosoft["id"])
    e.expect("azure.locks.critical_resource_locked", kv_nosoft["id"])

    srv = sql_server(sub, "b-sql-open", public="Enabled", tls="1.0")
    f.add(_p(sub, "Microsoft.Sql/servers"), srv)
    f.put(f"{srv['id']}/auditingSettings/default",
          {"id": "x", "name": "Default", "properties": {"state": "Disabled", "retentionDays": 0}})
    f.put_list(f"{srv['id']}/firewallRules", [
        {"id": "x", "name": "office", "properties": {"startIpAddress": "203.0.113.1",
                                                     "endIpAddress": "203.0.113.254"}},
        {"id": "y", "name": "everyone", "properties": {"startIpAddress": "0.0.0.0",
                                                       "endIpAddress": "255.255.255.255"}},
    ])
    db = {"id": f"{srv['id']}/databases/plain", "name": "plain",
          "type": "Microsoft.Sql/servers/databases", "location": "westeurope",
          "properties": {"status": "Online"}}
    f.put_list(f"{srv['id']}/databases", [db])
    f.put(f"{db['id']}/transparentDataEncryption/current",
          {"id": "x", "name": "current", "properties": {"state": "Disabled"}})
    # Unclassified, masking never configured (the policy answers Disabled, no rules).
    f.put(f"{db['id']}/dataMaskingPolicies/Default", masking_policy(db["id"], "Disabled"))
    f.put_list(f"{db['id']}/dataMaskingPolicies/Default/rules", [])
    e.expect("azure.sql.database_data_masking", db["id"])
    for c in ("auditing_enabled", "not_publicly_accessible", "minimum_tls_version",
              "firewall_open_to_internet"):
        e.expect(f"azure.sql.{c}", srv["id"])
    e.expect("azure.sql.storage_encrypted", db["id"])
    e.expect("azure.locks.critical_resource_locked", srv["id"])  # rg-sql not locked here
    # "Allow Azure services and resources to access this server" (0.0.0.0): every Azure
    # customer's resources may connect (FirewallRuleList.json, sql stable/2021-11-01).
    azsrv = sql_server(sub, "b-sql-azure", public="Enabled")
    f.add(_p(sub, "Microsoft.Sql/servers"), azsrv)
    f.put(f"{azsrv['id']}/auditingSettings/default",
          {"id": "x", "name": "Default", "properties": {"state": "Enabled", "retentionDays": 0,
                                                        "isAzureMonitorTargetEnabled": True}})
    f.put_list(f"{azsrv['id']}/firewallRules", [
        {"id": f"{azsrv['id']}/firewallRules/AllowAllWindowsAzureIps",
         "name": "AllowAllWindowsAzureIps", "type": "Microsoft.Sql/servers/firewallRules",
         "properties": {"startIpAddress": "0.0.0.0", "endIpAddress": "0.0.0.0"}}])
    for c in ("not_publicly_accessible", "firewall_open_to_internet"):
        e.expect(f"azure.sql.{c}", azsrv["id"])
    e.expect("azure.locks.critical_resource_locked", azsrv["id"])

    legacy_vm = vm(sub, "b-vm-vhd", managed=False)
    f.add(_p(sub, "Microsoft.Compute/virtualMachines"), legacy_vm)
    e.expect("azure.compute.vm_disk_encryption", legacy_vm["id"])
    old_disk = disk(sub, "b-disk-noenc", encryption=None)
    f.add(_p(sub, "Microsoft.Compute/disks"), old_disk)
    e.expect("azure.compute.volume_encrypted", old_disk["id"])

    vault = rs_vault(sub, "b-rsv", soft_delete="Disabled", immutability="Disabled")
    f.add(_p(sub, "Microsoft.RecoveryServices/vaults"), vault)
    short = vm_policy(vault["id"], "daily-7", 7)
    f.put_list(f"{vault['id']}/backupPolicies", [short, vm_policy(vault["id"], "long", 7, 8)])
    e.expect("azure.recoveryservices.vault_soft_delete", vault["id"])
    e.expect("azure.recoveryservices.vault_immutability", vault["id"])
    e.expect("azure.recoveryservices.backup_retention", short["id"])

    rg_scope = f"/subscriptions/{sub}/resourceGroups"
    f.put_list(_p(sub, "Microsoft.Authorization/locks"), [
        lock(f"/subscriptions/{sub}/resourceGroups/rg-locked", "kv-lock"),
        lock(vault["id"], "vault-lock"),
        lock(f"{rg_scope}/rg-data", "sub-data"),
    ])
    # Storage accounts are in rg-data: locked. The SQL server (rg-sql) and the vault in
    # rg-open are not.


def add_unexported_subscription(e: Estate, sub: str, name: str) -> None:
    """A bare subscription in a management group: nothing exported, no tags, no budget,
    no policy assigned, no Defender integrations reported."""
    f = e.fake
    f.add_subscription(sub, name)
    e.place(sub, "sandbox")
    f.put_list(_p(sub, "Microsoft.Security/pricings"), pricings(sub))
    f.put_list(_p(sub, "Microsoft.Insights/diagnosticSettings"),
               [diag_setting("partial", workspace="/subscriptions/x/w",
                             categories=("Administrative",))])
    path = f"/subscriptions/{sub}/providers/microsoft.insights/activitylog"
    for c in ("activity_log_exported", "activity_log_retention", "activity_log_immutable"):
        e.expect(f"azure.monitor.{c}", path)
    for c in ("malware_protection_enabled", "contacts_configured"):  # no contact at all
        e.expect(f"azure.security.{c}",
                 f"/subscriptions/{sub}/providers/Microsoft.Security/pricings")
    for c in ("subscription_tagged", "environments_separated"):
        e.expect(f"azure.governance.{c}", f"/subscriptions/{sub}")
    e.expect("azure.consumption.budget_alerts",
             f"/subscriptions/{sub}/providers/Microsoft.Consumption/budgets")
    e.expect("azure.policy.compliance", f"/subscriptions/{sub}/providers/"
             "microsoft.policyinsights/policystates/latest")


def build_estate(fake: ArmFake) -> Estate:
    """Subscriptions A (clean), B (planted failures), C (no activity-log export) and a
    fourth one that answers 403 to everything."""
    e = Estate(fake)
    add_good_subscription(e, SUB_A, "prod-a", prefix="a")
    add_bad_subscription(e, SUB_B, "prod-b")
    add_unexported_subscription(e, SUB_C, "prod-c")
    fake.add_subscription(SUB_DENIED, "no-access")
    fake.denied.add(SUB_DENIED)
    return e


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def arm_fake() -> Iterator[ArmFake]:
    """A plain-HTTP ARM fake on 127.0.0.1 (loopback http is allowed by the HTTP layer)."""
    with ArmFake() as fake:
        yield fake


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A trustme CA and its PEM file."""
    import trustme

    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture
def arm_tls_fake(tls_ca: tuple[Any, Path]) -> Iterator[ArmFake]:
    """The fake over HTTPS with a certificate for 127.0.0.1 issued by ``tls_ca``."""
    ca, _ = tls_ca
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with ArmFake(ssl_context=ctx) as fake:
        yield fake


def collect_all(connector: Any) -> list[Any]:
    """Every record of one ``collect`` run."""
    from core.connector import CollectContext

    return list(connector.collect(CollectContext(run_id="test")))
