"""A local stand-in for the AWS operations moto does not implement.

Used by ``annexa demo`` and the tests, never by a real collection. One HTTP server on
127.0.0.1 speaks the real wire protocols of the operations below, taken from their
botocore service models (``botocore/data/<service>/<version>/service-2.json``: HTTP
method and path, JSON member names, ``X-Amz-Target`` prefixes), and forwards every
other request of the same services to moto unchanged. boto3 and the connector are
unchanged: the standard per-service endpoint variables (``AWS_ENDPOINT_URL_GUARDDUTY``…,
see :data:`ENDPOINT_VARIABLES`) point those services at it.

=================  ====================================================================
service            operations served here
=================  ====================================================================
Access Analyzer    CreateAnalyzer, ListAnalyzers (REST-JSON ``/analyzer``; moto has none)
GuardDuty          CreateMalwareProtectionPlan, ListMalwareProtectionPlans,
                   GetMalwareProtectionPlan (REST-JSON ``/malware-protection-plan``);
                   CreateThreatIntelSet, ListThreatIntelSets, GetThreatIntelSet
                   (``/detector/{DetectorId}/threatintelset``)
Macie              CreateClassificationJob, ListClassificationJobs (``/jobs``,
                   ``/jobs/list``)
Route 53 Resolver  AssociateFirewallRuleGroup, ListFirewallRuleGroupAssociations
                   (JSON 1.1, ``Route53Resolver.*``)
Config             PutConformancePack, DescribeConformancePacks,
                   GetConformancePackComplianceSummary (JSON 1.1,
                   ``StarlingDoveService.*``)
Backup             CreateRestoreTestingPlan, ListRestoreTestingPlans,
                   CreateRestoreTestingSelection, ListRestoreTestingSelections
                   (REST-JSON ``/restore-testing/plans``)
=================  ====================================================================

A conformance pack's compliance comes from AWS Config evaluating its rules; the fake
has no rules, so the pack's input parameter ``AnnexaFakeCompliance`` (``COMPLIANT``,
``NON_COMPLIANT`` or ``INSUFFICIENT_DATA``; default ``COMPLIANT``) sets it — a
convention of this fake only.

The account of a request is the account of its access key, looked up in the moto
server running in this process (as in the demo and the tests); a key moto does not
know belongs to moto's default account. The region is read from the request signature.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_ACCOUNT = "123456789012"
#: Per-service endpoint variables (boto3: ``AWS_ENDPOINT_URL_<service id>``) → signing name.
ENDPOINT_VARIABLES = {
    "AWS_ENDPOINT_URL_ACCESSANALYZER": "access-analyzer",
    "AWS_ENDPOINT_URL_GUARDDUTY": "guardduty",
    "AWS_ENDPOINT_URL_MACIE2": "macie2",
    "AWS_ENDPOINT_URL_ROUTE53RESOLVER": "route53resolver",
    "AWS_ENDPOINT_URL_CONFIG_SERVICE": "config",
    "AWS_ENDPOINT_URL_BACKUP": "backup",
}
_CREATED = datetime(2026, 1, 5, tzinfo=UTC)

Answer = tuple[int, dict[str, Any]]


def _signature_scope(headers: Any) -> tuple[str, str, str]:
    """(access key id, region, signing service) from a SigV4 ``Authorization`` header."""
    auth = headers.get("Authorization", "")
    if "Credential=" not in auth:
        return "", "us-east-1", ""
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    return (scope[0], scope[2] if len(scope) > 2 else "us-east-1",
            scope[3] if len(scope) > 3 else "")


def account_of(access_key: str) -> str:
    """The moto account that issued ``access_key`` (moto in this process), else default."""
    try:
        from moto.iam.models import get_account_id_from
    except ImportError:  # pragma: no cover - moto is present wherever the fake is used
        return DEFAULT_ACCOUNT
    return str(get_account_id_from(access_key)) if access_key else DEFAULT_ACCOUNT


def _not_found(what: str) -> Answer:
    return 404, {"__type": "ResourceNotFoundException", "message": f"{what} not found"}


class FrontingFake:
    """A fake in front of moto on 127.0.0.1: ``handle`` answers what the fake owns and hands
    the rest to ``_forward``, which relays it to ``upstream`` (moto's URL)."""

    upstream: str
    url: str
    _server: ThreadingHTTPServer | None

    def handle(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes
                 ) -> tuple[int, dict[str, str], bytes]:
        if not self.upstream:
            return 404, {"Content-Type": "application/json"}, b'{"message": "no upstream"}'
        up = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items()
                       if k.lower() not in ("connection", "proxy-connection")}
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            out = {k: v for k, v in response.getheaders()
                   if k.lower() not in ("transfer-encoding", "connection", "content-length")}
            return response.status, out, data
        finally:
            conn.close()

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                status, headers, data = fake.handle(self)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _any

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class MotoGapsFake(FrontingFake):
    """In-memory state of the operations moto lacks, per (account, region)."""

    def __init__(self, upstream: str = "") -> None:
        self.upstream = upstream  # moto's URL, for every other operation
        self.state: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, str]] = []  # (account, region, operation)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- state ---------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.state.clear()
            self.requests.clear()

    def items(self, account: str, region: str, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return self.state.setdefault((account, region, kind), [])

    def _add(self, account: str, region: str, kind: str, item: dict[str, Any]) -> None:
        with self._lock:
            self.state.setdefault((account, region, kind), []).append(item)

    @property
    def analyzers(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Access Analyzer analyzers by (account, region)."""
        with self._lock:
            return {(a, r): v for (a, r, k), v in self.state.items() if k == "analyzer"}

    def add(self, account: str, region: str, name: str, type_: str = "ACCOUNT",
            status: str = "ACTIVE") -> dict[str, Any]:
        """An Access Analyzer analyzer."""
        analyzer = {
            "arn": f"arn:aws:access-analyzer:{region}:{account}:analyzer/{name}",
            "name": name, "type": type_, "createdAt": _CREATED.isoformat().replace(
                "+00:00", "Z"), "status": status, "tags": {},
        }
        self._add(account, region, "analyzer", analyzer)
        return analyzer

    # -- operations ----------------------------------------------------------------
    def _access_analyzer(self, c: _Call) -> Answer | None:
        if c.path.rstrip("/") != "/analyzer":
            return _not_found("path")
        if c.method == "GET":
            c.log("ListAnalyzers")
            wanted = c.query.get("type", [None])[0]
            return 200, {"analyzers": [a for a in c.items("analyzer")
                                       if wanted in (None, a["type"])]}
        if c.method == "PUT":
            c.log("CreateAnalyzer")
            analyzer = self.add(c.account, c.region, c.body["analyzerName"],
                                c.body.get("type", "ACCOUNT"))
            return 200, {"arn": analyzer["arn"]}
        return None

    def _threat_intel(self, c: _Call) -> Answer | None:
        """Threat intel sets by detector id (the detector itself lives in moto)."""
        found = re.fullmatch(r"/detector/([^/]+)/threatintelset(?:/([^/]+))?", c.path)
        if not found:
            return None
        detector, set_id = found.groups()
        sets = [t for t in c.items("threat-intel-set") if t["detectorId"] == detector]
        if set_id is None and c.method == "POST":
            c.log("CreateThreatIntelSet")
            new_id = uuid.uuid4().hex
            c.add("threat-intel-set", {
                "detectorId": detector, "threatIntelSetId": new_id,
                "name": c.body.get("name"), "format": c.body.get("format"),
                "location": c.body.get("location"),
                "status": "ACTIVE" if c.body.get("activate") else "INACTIVE",
                "tags": c.body.get("tags") or {}})
            return 200, {"threatIntelSetId": new_id}
        if set_id is None and c.method == "GET":
            c.log("ListThreatIntelSets")
            return 200, {"threatIntelSetIds": [t["threatIntelSetId"] for t in sets]}
        if c.method == "GET":
            c.log("GetThreatIntelSet")
            got = next((t for t in sets if t["threatIntelSetId"] == set_id), None)
            if got is None:
                return _not_found("threat intel set")
            return 200, {k: got[k] for k in ("name", "format", "location", "status", "tags")}
        return None

    def _guardduty(self, c: _Call) -> Answer | None:
        if c.path.startswith("/detector/") and "/threatintelset" in c.path:
            return self._threat_intel(c)
        if c.path == "/malware-protection-plan" and c.method == "POST":
            c.log("CreateMalwareProtectionPlan")
            plan_id = uuid.uuid4().hex[:20]
            c.add("malware-plan", {
                "malwareProtectionPlanId": plan_id,
                "arn": f"arn:aws:guardduty:{c.region}:{c.account}:malware-protection-plan/"
                       f"{plan_id}",
                "role": c.body.get("role"), "protectedResource": c.body.get("protectedResource"),
                "actions": c.body.get("actions", {"tagging": {"status": "DISABLED"}}),
                "createdAt": _CREATED.timestamp(), "status": "ACTIVE", "tags": {}})
            return 200, {"malwareProtectionPlanId": plan_id}
        if c.path == "/malware-protection-plan" and c.method == "GET":
            c.log("ListMalwareProtectionPlans")
            return 200, {"malwareProtectionPlans": [
                {"malwareProtectionPlanId": p["malwareProtectionPlanId"]}
                for p in c.items("malware-plan")]}
        found = re.fullmatch(r"/malware-protection-plan/([^/]+)", c.path)
        if found and c.method == "GET":
            c.log("GetMalwareProtectionPlan")
            plan = next((p for p in c.items("malware-plan")
                         if p["malwareProtectionPlanId"] == found.group(1)), None)
            if plan is None:
                return _not_found("malware protection plan")
            return 200, {k: v for k, v in plan.items() if k != "malwareProtectionPlanId"}
        return None

    def _macie2(self, c: _Call) -> Answer | None:
        if c.path == "/jobs" and c.method == "POST":
            c.log("CreateClassificationJob")
            job_id = uuid.uuid4().hex
            c.add("macie-job", {
                "jobId": job_id, "name": c.body.get("name"), "jobType": c.body.get("jobType"),
                "jobStatus": "RUNNING" if c.body.get("jobType") == "SCHEDULED" else "COMPLETE",
                "createdAt": _CREATED.isoformat().replace("+00:00", "Z"),
                "bucketDefinitions": (c.body.get("s3JobDefinition") or {}).get(
                    "bucketDefinitions", [])})
            return 200, {"jobId": job_id,
                         "jobArn": f"arn:aws:macie2:{c.region}:{c.account}:classification-job/"
                                   f"{job_id}"}
        if c.path == "/jobs/list" and c.method == "POST":
            c.log("ListClassificationJobs")
            return 200, {"items": c.items("macie-job")}
        return None

    def _route53resolver(self, c: _Call) -> Answer | None:
        if c.target == "Route53Resolver.AssociateFirewallRuleGroup":
            c.log("AssociateFirewallRuleGroup")
            assoc_id = f"rslvr-frgassoc-{uuid.uuid4().hex[:17]}"
            association = {
                "Id": assoc_id,
                "Arn": f"arn:aws:route53resolver:{c.region}:{c.account}:"
                       f"firewall-rule-group-association/{assoc_id}",
                "FirewallRuleGroupId": c.body["FirewallRuleGroupId"], "VpcId": c.body["VpcId"],
                "Name": c.body["Name"], "Priority": c.body["Priority"],
                "MutationProtection": c.body.get("MutationProtection", "DISABLED"),
                "Status": "COMPLETE", "CreatorRequestId": c.body["CreatorRequestId"],
                "CreationTime": _CREATED.isoformat(), "ModificationTime": _CREATED.isoformat()}
            c.add("firewall-association", association)
            return 200, {"FirewallRuleGroupAssociation": association}
        if c.target == "Route53Resolver.ListFirewallRuleGroupAssociations":
            c.log("ListFirewallRuleGroupAssociations")
            return 200, {"FirewallRuleGroupAssociations": [
                a for a in c.items("firewall-association")
                if c.body.get("VpcId") in (None, a["VpcId"])]}
        return None

    def _config(self, c: _Call) -> Answer | None:
        if c.target == "StarlingDoveService.PutConformancePack":
            c.log("PutConformancePack")
            name = c.body["ConformancePackName"]
            arn = f"arn:aws:config:{c.region}:{c.account}:conformance-pack/{name}/" \
                  f"conformance-pack-{uuid.uuid4().hex[:8]}"
            c.add("conformance-pack", {
                "ConformancePackName": name, "ConformancePackArn": arn,
                "ConformancePackId": arn.rsplit("/", 1)[1],
                "ConformancePackInputParameters": c.body.get("ConformancePackInputParameters",
                                                             []),
                "LastUpdateRequestedTime": _CREATED.timestamp()})
            return 200, {"ConformancePackArn": arn}
        if c.target == "StarlingDoveService.DescribeConformancePacks":
            c.log("DescribeConformancePacks")
            names = c.body.get("ConformancePackNames")
            return 200, {"ConformancePackDetails": [
                p for p in c.items("conformance-pack")
                if not names or p["ConformancePackName"] in names]}
        if c.target == "StarlingDoveService.GetConformancePackComplianceSummary":
            c.log("GetConformancePackComplianceSummary")
            packs = {p["ConformancePackName"]: p for p in c.items("conformance-pack")}
            summary = []
            for name in c.body.get("ConformancePackNames", []):
                if name not in packs:
                    return 400, {"__type": "NoSuchConformancePackException",
                                 "message": f"{name} not found"}
                params = {x["ParameterName"]: x["ParameterValue"]
                          for x in packs[name]["ConformancePackInputParameters"]}
                summary.append({"ConformancePackName": name,
                                "ConformancePackComplianceStatus": params.get(
                                    "AnnexaFakeCompliance", "COMPLIANT")})
            return 200, {"ConformancePackComplianceSummaryList": summary}
        return None

    def _backup(self, c: _Call) -> Answer | None:
        if c.path == "/restore-testing/plans" and c.method == "PUT":
            c.log("CreateRestoreTestingPlan")
            plan = c.body["RestoreTestingPlan"]
            name = plan["RestoreTestingPlanName"]
            arn = f"arn:aws:backup:{c.region}:{c.account}:restore-testing-plan:{name}-" \
                  f"{uuid.uuid4().hex[:6]}"
            c.add("restore-plan", {
                "RestoreTestingPlanName": name, "RestoreTestingPlanArn": arn,
                "ScheduleExpression": plan.get("ScheduleExpression"),
                "CreationTime": _CREATED.timestamp()})
            return 201, {"RestoreTestingPlanName": name, "RestoreTestingPlanArn": arn,
                         "CreationTime": _CREATED.timestamp()}
        if c.path == "/restore-testing/plans" and c.method == "GET":
            c.log("ListRestoreTestingPlans")
            return 200, {"RestoreTestingPlans": c.items("restore-plan")}
        found = re.fullmatch(r"/restore-testing/plans/([^/]+)/selections", c.path)
        if found:
            name = unquote(found.group(1))
            plan = next((p for p in c.items("restore-plan")
                         if p["RestoreTestingPlanName"] == name), None)
            if plan is None:
                return _not_found("restore testing plan")
            if c.method == "PUT":
                c.log("CreateRestoreTestingSelection")
                selection = c.body["RestoreTestingSelection"]
                c.add(f"restore-selection:{name}", {
                    "RestoreTestingPlanName": name, "CreationTime": _CREATED.timestamp(),
                    "IamRoleArn": selection["IamRoleArn"],
                    "ProtectedResourceType": selection["ProtectedResourceType"],
                    "RestoreTestingSelectionName": selection["RestoreTestingSelectionName"]})
                return 201, {"RestoreTestingPlanName": name,
                             "RestoreTestingPlanArn": plan["RestoreTestingPlanArn"],
                             "RestoreTestingSelectionName":
                                 selection["RestoreTestingSelectionName"],
                             "CreationTime": _CREATED.timestamp()}
            if c.method == "GET":
                c.log("ListRestoreTestingSelections")
                return 200, {"RestoreTestingSelections": c.items(f"restore-selection:{name}")}
        return None

    # -- HTTP ----------------------------------------------------------------------
    def _routes(self) -> dict[str, Callable[[_Call], Answer | None]]:
        return {"access-analyzer": self._access_analyzer, "guardduty": self._guardduty,
                "macie2": self._macie2, "route53resolver": self._route53resolver,
                "config": self._config, "backup": self._backup}

    def handle(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        access_key, region, service = _signature_scope(handler.headers)
        parts = urlsplit(handler.path)
        call = _Call(self, account_of(access_key), region, handler.command, parts.path,
                     parse_qs(parts.query), handler.headers.get("X-Amz-Target", ""), raw)
        route = self._routes().get(service)
        answer = route(call) if route is not None else None
        if answer is None:
            return self._forward(handler, raw)
        status, document = answer
        json_1_1 = service in ("route53resolver", "config")
        headers = {"Content-Type": "application/x-amz-json-1.1" if json_1_1
                   else "application/json"}
        if status >= 400 and not json_1_1:
            headers["x-amzn-ErrorType"] = document.get("__type", "Error")
        return status, headers, json.dumps(document).encode()

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc


class _Call:
    """One request to the fake, as the operation handlers see it."""

    def __init__(self, fake: MotoGapsFake, account: str, region: str, method: str, path: str,
                 query: dict[str, list[str]], target: str, raw: bytes) -> None:
        self.fake, self.account, self.region = fake, account, region
        self.method, self.path, self.query, self.target = method, path, query, target
        try:
            self.body: dict[str, Any] = json.loads(raw) if raw else {}
        except ValueError:
            self.body = {}

    def log(self, operation: str) -> None:
        self.fake.requests.append((self.account, self.region, operation))

    def items(self, kind: str) -> list[dict[str, Any]]:
        return list(self.fake.items(self.account, self.region, kind))

    def add(self, kind: str, item: dict[str, Any]) -> None:
        self.fake._add(self.account, self.region, kind, item)


#: The name the tests and the demo knew first.
AccessAnalyzerFake = MotoGapsFake


@contextmanager
def moto_gaps_fake(upstream: str = "") -> Iterator[MotoGapsFake]:
    fake = MotoGapsFake(upstream)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
