"""A fake of AWS Config's ``SelectAggregateResourceConfig`` in front of moto (which lacks it).

An HTTP server on 127.0.0.1 reached through ``AWS_ENDPOINT_URL_CONFIG_SERVICE``: it
answers ``StarlingDoveService.SelectAggregateResourceConfig`` and forwards every other
request (the Config operations moto and :mod:`annexa_demo.aws.fakes` serve) unchanged.
The wire format follows botocore's service model of ``config`` 2014-11-12 (JSON 1.1,
``X-Amz-Target``): request ``Expression``, ``ConfigurationAggregatorName``, ``Limit``
(0-100), ``NextToken``; response ``Results`` (a list of JSON *strings*, one per item,
holding the selected fields), ``QueryInfo.SelectFields`` ([{"Name"}]), ``NextToken``;
errors ``NoSuchConfigurationAggregatorException``, ``InvalidExpressionException``,
``InvalidLimitException``, ``InvalidNextTokenException`` as ``{"__type", "message"}``.

The items are built from the moto estate the direct path reads (moto runs in this
process): the aggregator must exist in moto (``PutConfigurationAggregator``) in the
caller's account and the request's region, and its sources (account ids and regions,
or the whole organisation) select the buckets. Each bucket's item is moto's own AWS
Config rendering (``FakeBucket.to_config_dict``: the supplementary configuration
``PublicAccessBlockConfiguration`` as a JSON string, ``AccessControlList`` double
encoded, ``BucketPolicy`` / ``BucketLoggingConfiguration`` as objects), completed with
the two keys moto leaves out, in the documented shape of the AWS::S3::Bucket item:
``ServerSideEncryptionConfiguration`` (``{"rules": [{"applyServerSideEncryptionByDefault":
{"sseAlgorithm", "kmsMasterKeyID"}, "bucketKeyEnabled"}]}``) and
``BucketVersioningConfiguration`` (``{"status": "Off"|"Enabled"|"Suspended",
"isMfaDeleteEnabled"}``). ``configurationItemCaptureTime`` is :data:`CAPTURED`.

It also answers ``StarlingDoveService.DescribeConfigurationAggregatorSourcesStatus``
(same model: request ``ConfigurationAggregatorName``, ``UpdateStatus``, ``Limit``
(0-100), ``NextToken``; response ``AggregatedSourceStatusList[]`` of ``SourceId``,
``SourceType`` (``ACCOUNT``|``ORGANIZATION``), ``AwsRegion``, ``LastUpdateStatus``
(``SUCCEEDED``|``FAILED``|``OUTDATED``), ``LastUpdateTime`` (epoch seconds, as JSON 1.1
sends timestamps), ``LastErrorCode``, ``LastErrorMessage``; ``NextToken``). One entry
per source account and region: an account aggregator's listed accounts, an organisation
aggregator's accounts (moto's) with ``SourceType = ORGANIZATION``; regions the listed
ones, or :data:`ALL_REGIONS` for ``AllAwsRegions``. Every source ``SUCCEEDED`` at
``synced`` unless ``source_status[(account, region)]`` overrides fields (or is None:
no entry); ``deny_status`` answers AccessDeniedException; ``status_requests`` logs each
call answered; ``status_max_page`` caps a page.

Only the query shape the connector sends is understood — ``SELECT <fields> WHERE
resourceType = '<type>'`` — anything else is ``InvalidExpressionException``.

Test hooks: ``corrupt[bucket name] = function(entry JSON string) -> str`` rewrites one
bucket's ``Results`` entry (hostile input); ``extra_entries`` are appended verbatim;
``drop`` leaves buckets out (not recorded); ``deny`` answers AccessDeniedException;
``requests`` logs each query answered.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from annexa_demo.aws.fakes import FrontingFake, _signature_scope, account_of

TARGET = "StarlingDoveService.SelectAggregateResourceConfig"
STATUS_TARGET = "StarlingDoveService.DescribeConfigurationAggregatorSourcesStatus"
CAPTURED = "2026-01-01T00:00:00.000Z"
#: Default LastUpdateTime of every source (epoch seconds: 2026-12-01T06:00:00Z).
SYNCED = 1796104800.0
#: The regions an ``AllAwsRegions`` source reports (where the test estates live).
ALL_REGIONS = ("eu-west-1", "us-east-1")
_STATUSES = {"FAILED", "SUCCEEDED", "OUTDATED"}
MAX_LIMIT = 100
_QUERY = re.compile(r"^\s*SELECT\s+(?P<fields>.+?)\s+WHERE\s+resourceType\s*=\s*"
                    r"'(?P<type>[A-Za-z0-9:]+)'\s*$", re.IGNORECASE | re.DOTALL)
_FIELDS = {"accountId", "awsRegion", "resourceId", "resourceName", "resourceType", "arn",
           "configuration", "supplementaryConfiguration", "configurationItemCaptureTime",
           "configurationItemStatus", "tags", "resourceCreationTime", "availabilityZone"}
_AGGREGATOR = re.compile(r"^[\w-]{1,256}$")


@dataclass(frozen=True)
class Query:
    account: str
    region: str
    aggregator: str
    limit: int
    token: str | None


def _error(code: str, message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"__type": code, "message": message}


def _limit_error(limit: Any) -> tuple[int, dict[str, Any]] | None:
    """AWS's answer to a Limit outside 0-100 (0: the service's own page size), else None."""
    if not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
        return _error("InvalidLimitException", "Limit must be 0-100")
    return None


def _aggregator(
    account: str, region: str, name: str, *, denied: bool, action: str
) -> tuple[Any, tuple[int, dict[str, Any]] | None]:
    """moto's aggregator ``name`` in the account and region, or AWS's error: access denied to
    ``config:<action>`` when ``denied`` (checked first, as AWS does), or no such aggregator."""
    if denied:
        return None, _error("AccessDeniedException", f"not authorized to perform config:{action}")
    from moto.config.models import config_backends

    aggregator = config_backends[account][region].config_aggregators.get(name)
    if aggregator is None:
        return None, _error("NoSuchConfigurationAggregatorException",
                            f"The configuration aggregator does not exist: {name}")
    return aggregator, None


class _Acl:
    """moto's ACL rendering for AWS Config fails on grantees of the ``global`` groups
    (AllUsers, AuthenticatedUsers: it splits on ``/groups/s3/``); AWS names a group
    grantee by its last path segment, which is what this renders."""

    def __init__(self, acl: Any) -> None:
        self.acl = acl

    def to_config_dict(self) -> dict[str, Any]:
        from moto.s3.models import CAMEL_CASED_PERMISSIONS, OWNER

        grants = []
        for grant in self.acl.grants if self.acl else []:
            permissions = grant.permissions if isinstance(grant.permissions, list) \
                else [grant.permissions]
            for permission in permissions:
                for grantee in grant.grantees:
                    who: Any = grantee.uri.rsplit("/", 1)[1] if grantee.uri else {
                        "id": grantee.id, "displayName": grantee.display_name or None}
                    grants.append({"grantee": who,
                                   "permission": CAMEL_CASED_PERMISSIONS[permission]})
        return {"grantSet": None, "owner": {"displayName": None, "id": OWNER},
                "grantList": grants}


def _moto_bucket_item(account: str, bucket: Any) -> dict[str, Any]:
    """moto's AWS Config rendering of a bucket, plus what moto leaves out."""
    from moto.core.utils import ensure_boolean

    view = copy.copy(bucket)  # moto's bucket itself is left untouched
    view.acl = _Acl(bucket.acl)
    item = view.to_config_dict()
    item["accountId"] = account
    item["configurationItemCaptureTime"] = CAPTURED
    supplementary = item["supplementaryConfiguration"]
    if bucket.encryption:
        rule = bucket.encryption["Rule"]
        default = rule["ApplyServerSideEncryptionByDefault"]
        supplementary["ServerSideEncryptionConfiguration"] = {"rules": [{
            "applyServerSideEncryptionByDefault": {
                "sseAlgorithm": default["SSEAlgorithm"],
                "kmsMasterKeyID": default.get("KMSMasterKeyID")},
            "bucketKeyEnabled": ensure_boolean(rule.get("BucketKeyEnabled"))}]}
    supplementary["BucketVersioningConfiguration"] = {
        "status": bucket.versioning_status or "Off", "isMfaDeleteEnabled": None}
    return item


class ConfigSelectFake(FrontingFake):
    """The ``SelectAggregateResourceConfig`` server (see the module docstring)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[Query] = []
        self.corrupt: dict[str, Callable[[str], str]] = {}
        self.extra_entries: list[str] = []
        self.drop: set[str] = set()
        self.max_page = MAX_LIMIT
        self.deny = False  # answer AccessDeniedException (a caller without the permission)
        self.synced = SYNCED
        self.source_status: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.deny_status = False
        self.status_requests: list[Query] = []
        self.status_max_page = MAX_LIMIT
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- the estate -------------------------------------------------------------------
    @staticmethod
    def _sources(aggregator: Any) -> tuple[set[str] | None, set[str] | None]:
        """(account ids or None = every account, regions or None = every region)."""
        org = aggregator.organization_aggregation_source
        if org is not None:
            return None, None if org.all_aws_regions else set(org.aws_regions or ())
        accounts: set[str] = set()
        regions: set[str] | None = set()
        for source in aggregator.account_aggregation_sources or []:
            accounts |= set(source.account_ids or ())
            if source.all_aws_regions:
                regions = None
            elif regions is not None:
                regions |= set(source.aws_regions or ())
        return accounts, regions

    def items(self, aggregator: Any, resource_type: str) -> list[dict[str, Any]]:
        from moto.s3.models import s3_backends

        if resource_type != "AWS::S3::Bucket":
            return []
        accounts, regions = self._sources(aggregator)
        out = []
        for account in sorted(s3_backends.keys()):
            if accounts is not None and account not in accounts:
                continue
            backend = s3_backends[account].get("aws")
            if backend is None:
                continue
            for name, bucket in sorted(backend.buckets.items()):
                if name in self.drop or (regions is not None
                                         and bucket.region_name not in regions):
                    continue
                out.append(_moto_bucket_item(account, bucket))
        return out

    def source_entries(self, aggregator: Any) -> list[dict[str, Any]]:
        """One ``AggregatedSourceStatus`` per source account and region."""
        from moto.s3.models import s3_backends

        accounts, regions = self._sources(aggregator)
        kind = "ACCOUNT" if accounts is not None else "ORGANIZATION"
        if accounts is None:
            accounts = {a for a in s3_backends if s3_backends[a].get("aws") is not None}
        out = []
        for account in sorted(accounts):
            for region in sorted(regions if regions is not None else ALL_REGIONS):
                entry: dict[str, Any] = {
                    "SourceId": account, "SourceType": kind, "AwsRegion": region,
                    "LastUpdateStatus": "SUCCEEDED", "LastUpdateTime": self.synced}
                if (account, region) in self.source_status:
                    override = self.source_status[(account, region)]
                    if override is None:
                        continue
                    entry.update(override)
                out.append(entry)
        return out

    def sources_status(self, account: str, region: str, body: dict[str, Any]
                       ) -> tuple[int, dict[str, Any]]:
        name = body.get("ConfigurationAggregatorName")
        if not isinstance(name, str) or not _AGGREGATOR.match(name):
            return _error("ValidationException", "ConfigurationAggregatorName is invalid")
        limit = body.get("Limit") or 0
        if bad_limit := _limit_error(limit):
            return bad_limit
        wanted = body.get("UpdateStatus")
        if wanted is not None and (not isinstance(wanted, list) or not wanted
                                   or any(w not in _STATUSES for w in wanted)):
            return _error("ValidationException", "UpdateStatus is invalid")
        aggregator, refused = _aggregator(account, region, name, denied=self.deny_status,
                                          action="DescribeConfigurationAggregatorSourcesStatus")
        if refused:
            return refused
        with self._lock:
            self.status_requests.append(Query(account, region, name, limit,
                                              body.get("NextToken")))
        entries = [e for e in self.source_entries(aggregator)
                   if wanted is None or e.get("LastUpdateStatus") in wanted]
        start = self._offset(body.get("NextToken"), STATUS_TARGET, name)
        if start is None:
            return _error("InvalidNextTokenException", "The NextToken is invalid")
        size = min(limit or self.status_max_page, self.status_max_page)
        answer: dict[str, Any] = {"AggregatedSourceStatusList": entries[start:start + size]}
        if start + size < len(entries):
            answer["NextToken"] = self._token(start + size, STATUS_TARGET, name)
        return 200, answer

    # -- the operation ----------------------------------------------------------------
    def select(self, account: str, region: str, body: dict[str, Any]
               ) -> tuple[int, dict[str, Any]]:
        expression, name = body.get("Expression"), body.get("ConfigurationAggregatorName")
        if not isinstance(name, str) or not _AGGREGATOR.match(name):
            return _error("ValidationException", "ConfigurationAggregatorName is invalid")
        if not isinstance(expression, str) or not 1 <= len(expression) <= 4096:
            return _error("ValidationException", "Expression must be 1-4096 characters")
        limit = body.get("Limit") or body.get("MaxResults") or 0
        if bad_limit := _limit_error(limit):
            return bad_limit
        aggregator, refused = _aggregator(account, region, name, denied=self.deny,
                                          action="SelectAggregateResourceConfig")
        if refused:
            return refused
        query = _QUERY.match(expression)
        fields = [f.strip() for f in query.group("fields").split(",")] if query else []
        if not query or not fields or any(f not in _FIELDS for f in fields):
            return _error("InvalidExpressionException", "unsupported expression")
        with self._lock:
            self.requests.append(Query(account, region, name, limit,
                                       body.get("NextToken")))
        entries = [self._entry(item, fields)
                   for item in self.items(aggregator, query.group("type"))]
        entries += self.extra_entries
        start = self._offset(body.get("NextToken"), expression, name)
        if start is None:
            return _error("InvalidNextTokenException", "The NextToken is invalid")
        size = min(limit or self.max_page, self.max_page)
        answer: dict[str, Any] = {
            "Results": entries[start:start + size],
            "QueryInfo": {"SelectFields": [{"Name": f} for f in fields]},
        }
        if start + size < len(entries):
            answer["NextToken"] = self._token(start + size, expression, name)
        return 200, answer

    def _entry(self, item: dict[str, Any], fields: list[str]) -> str:
        entry = json.dumps({f: item[f] for f in fields if f in item})
        hook = self.corrupt.get(str(item.get("resourceName")))
        return hook(entry) if hook else entry

    @staticmethod
    def _digest(expression: str, name: str) -> str:
        return hashlib.sha256(f"{name}\0{expression}".encode()).hexdigest()[:16]

    def _token(self, offset: int, expression: str, name: str) -> str:
        raw = json.dumps({"o": offset, "q": self._digest(expression, name)})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    def _offset(self, token: Any, expression: str, name: str) -> int | None:
        if token is None:
            return 0
        try:
            doc = json.loads(base64.urlsafe_b64decode(str(token).encode()))
            offset = int(doc["o"])
        except (ValueError, KeyError, TypeError):
            return None
        return offset if doc.get("q") == self._digest(expression, name) and offset >= 0 \
            else None

    # -- HTTP -------------------------------------------------------------------------
    def handle(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        target = handler.headers.get("X-Amz-Target", "")
        if target not in (TARGET, STATUS_TARGET):
            return self._forward(handler, raw)
        access_key, region, _service = _signature_scope(handler.headers)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            status, doc = _error("SerializationException", "body is not a JSON object")
        else:
            operation = self.select if target == TARGET else self.sources_status
            status, doc = operation(account_of(access_key), region, body)
        return status, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(
            doc).encode()


@contextmanager
def config_select_fake(upstream: str) -> Iterator[ConfigSelectFake]:
    fake = ConfigSelectFake(upstream)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
