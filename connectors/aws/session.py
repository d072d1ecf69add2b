"""boto3 sessions, clients and the account being read.

One :class:`Account` per AWS account: its id, a boto3 session (the profile's, or an
assumed role's with refreshable credentials), the botocore client configuration
(timeouts, adaptive retries) and a thread-safe client cache. Service modules only ever
ask an ``Account`` for clients and for ready-made records, so the organisation-wide
fan-out (one ``Account`` per member account, opened by assuming a role) reuses them
unchanged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials

from connectors.aws.common import OperationNotOffered, not_offered
from connectors.kit import GLOBAL
from core.net import is_loopback
from core.records import Coverage, Evidence, normalise

#: Used for global API calls when neither the profile nor the environment names a region.
DEFAULT_HOME_REGION = "us-east-1"


def check_endpoint_url(url: str) -> str:
    """``url`` if it is an acceptable endpoint: https, or plain http to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint URL must be http(s)://host[:port], got {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"plain http:// endpoints are allowed only for loopback hosts, got {url!r}"
        )
    return url


@dataclass(frozen=True)
class ClientSettings:
    """How every client talks to AWS.

    ``endpoint_account_prefix``: with a custom endpoint, whether S3 Control may put the
    account id in front of its host (``<account>.<endpoint host>``), as it does on
    AWS's own endpoints. Off by default: one custom endpoint (a proxy, a private
    gateway, a test server) serves every account at one host name, and the account is
    in the request's ``x-amz-account-id`` header anyway.
    """

    endpoint_url: str | None = None
    connect_timeout: float = 3
    read_timeout: float = 20
    max_attempts: int = 5
    max_pool_connections: int = 10
    endpoint_account_prefix: bool = False

    def botocore_config(self, *, custom_endpoint: bool = False) -> Config:
        return Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            # total attempts, first one included (botocore's "max_attempts" counts retries)
            retries={"mode": "adaptive", "total_max_attempts": self.max_attempts},
            max_pool_connections=self.max_pool_connections,
            user_agent_extra="annexa",
            # operations whose model has a "hostPrefix" (e.g. "{AccountId}.") would
            # otherwise call hosts a custom endpoint does not answer to
            inject_host_prefix=not custom_endpoint or self.endpoint_account_prefix,
        )


#: Environment variables through which boto3 takes a custom endpoint for every service.
_ENDPOINT_ENV = "AWS_ENDPOINT_URL"


def custom_endpoint_in_effect(settings: ClientSettings, service_env: str) -> bool:
    """Whether the client will talk to a custom endpoint (option or environment)."""
    if settings.endpoint_url:
        return True
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return False
    return bool(os.environ.get(f"{_ENDPOINT_ENV}_{service_env}") or os.environ.get(_ENDPOINT_ENV))


def _refuse_retry_when_not_offered(
    response: Any = None, operation: Any = None, **_: Any
) -> None:
    """``needs-retry`` hook (runs before botocore's): raise at once on "not offered"."""
    if not response:
        return
    http, parsed = response
    status = getattr(http, "status_code", None)
    code = str((parsed or {}).get("Error", {}).get("Code") or "") or None
    if status is not None and status >= 500 and not_offered(status, code):
        error = {
            "Error": {"Code": "OperationNotOffered",
                      "Message": "the endpoint does not implement this operation"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        raise OperationNotOffered(error, getattr(operation, "name", "") or "")


def _strip_account_prefix(endpoint_host: str) -> Callable[..., None]:
    """``before-sign`` hook: S3 Control's ``<account>.<host>`` back to the endpoint's host.

    Needed besides ``inject_host_prefix=False``: S3 Control's endpoint rules (not only
    its operation models) put the account id in front of a custom endpoint's host.
    """

    def strip(request: Any = None, **_: Any) -> None:
        parts = urlsplit(request.url)
        head, _, rest = parts.netloc.partition(".")
        if head.isdigit() and rest == endpoint_host:
            request.url = parts._replace(netloc=rest).geturl()

    return strip


def make_client(
    session: boto3.Session,
    service: str,
    region: str,
    settings: ClientSettings,
    on_call: Callable[[str], None] | None = None,
) -> Any:
    """A boto3 client; ``on_call("service:Operation")`` is told of every API call made."""
    # boto3's per-service variable is AWS_ENDPOINT_URL_<service id, "_" for " " and "-">
    service_id = session._session.get_service_model(service).service_id
    env_name = service_id.hyphenize().upper().replace("-", "_")
    custom = custom_endpoint_in_effect(settings, env_name)
    kwargs: dict[str, Any] = {
        "region_name": region, "config": settings.botocore_config(custom_endpoint=custom)
    }
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    client = session.client(service, **kwargs)
    client.meta.events.register_first("needs-retry", _refuse_retry_when_not_offered)
    if custom and service == "s3control" and not settings.endpoint_account_prefix:
        host = urlsplit(client.meta.endpoint_url).netloc
        client.meta.events.register("before-sign.s3-control", _strip_account_prefix(host))
    if on_call is not None:
        name = client.meta.service_model.service_name

        def record(model: Any, **_: Any) -> None:
            on_call(f"{name}:{model.name}")

        client.meta.events.register("before-call", record)
    return client


@dataclass
class Account:
    """One AWS account being read.

    Clients are created lazily and cached per (service, region). Units hold a
    reference on their account (:meth:`retain` / :meth:`release`); when the last one
    finishes the client cache is dropped, so an organisation-wide run keeps clients
    only for the few accounts being read at the moment.
    """

    account_id: str
    session: boto3.Session
    settings: ClientSettings
    home_region: str
    on_call: Callable[[str], None] | None = None
    partition: str = "aws"
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _users: int = field(default=0, repr=False)

    def client(self, service: str, region: str | None = None) -> Any:
        """A cached client; global services use the home region."""
        region = self.home_region if region in (None, GLOBAL) else region
        key = (service, region)
        with self._lock:  # boto3 sessions are not thread-safe; clients are
            client = self._clients.get(key)
            if client is None:
                client = make_client(self.session, service, region, self.settings, self.on_call)
                self._clients[key] = client
        return client

    def retain(self, count: int) -> None:
        with self._lock:
            self._users += count

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users <= 0:
                self._users = 0
                self._clients.clear()

    def arn(self, service: str, region: str, resource: str) -> str:
        """``arn:<partition>:<service>:<region>:<account>:<resource>``."""
        return f"arn:{self.partition}:{service}:{region}:{self.account_id}:{resource}"

    def evidence(
        self, resource_type: str, resource_id: str, region: str, payload: dict[str, Any]
    ) -> Evidence:
        """Evidence of this account; the payload is normalised as it will be stored."""
        return Evidence(
            scope=self.account_id,
            region=region,
            resource_type=resource_type,
            resource_id=resource_id,
            payload=normalise(payload),
        )

    def coverage(self, region: str, service: str, error: str | None = None) -> Coverage:
        return Coverage(
            scope=self.account_id, region=region, service=service, ok=error is None, error=error
        )


@dataclass(frozen=True)
class RoleToAssume:
    role_arn: str
    session_name: str = "annexa"
    external_id: str | None = None


def base_session(profile: str | None) -> boto3.Session:
    """The profile's session (or the default credential chain)."""
    return boto3.Session(profile_name=profile) if profile else boto3.Session()


def partition_of(arn: str) -> str:
    """``aws``, ``aws-cn``, ``aws-us-gov``… from any ARN."""
    parts = arn.split(":")
    return parts[1] if len(parts) > 2 and parts[0] == "arn" and parts[1] else "aws"


def assume_role_session(
    sts: Any,
    role: RoleToAssume,
    region: str,
    loader_from: boto3.Session | None = None,
) -> boto3.Session:
    """A session whose credentials come from ``sts:AssumeRole`` and refresh themselves.

    ``sts`` is a client of the source credentials (AssumeRole is called once now, then
    again shortly before expiry). The new session shares the source session's data
    loader, so the service models parsed for one account are not parsed and held again
    for every other account. The returned credentials live only in memory; they are
    never put in a payload.
    """

    def fetch() -> dict[str, str]:
        kwargs: dict[str, Any] = {
            "RoleArn": role.role_arn,
            "RoleSessionName": role.session_name,
        }
        if role.external_id:
            kwargs["ExternalId"] = role.external_id
        creds = sts.assume_role(**kwargs)["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
    )
    core = botocore.session.Session()
    if loader_from is not None:
        core.register_component(
            "data_loader", loader_from._session.get_component("data_loader")
        )
    core._credentials = credentials  # botocore has no public setter for this
    core.set_config_variable("region", region)
    return boto3.Session(botocore_session=core, region_name=region)


def _check_env_endpoint(settings: ClientSettings) -> None:
    if settings.endpoint_url is None and os.environ.get("AWS_ENDPOINT_URL"):
        check_endpoint_url(os.environ["AWS_ENDPOINT_URL"])


def open_account(
    session: boto3.Session,
    settings: ClientSettings,
    *,
    home_region: str | None = None,
    role: RoleToAssume | None = None,
    on_call: Callable[[str], None] | None = None,
) -> Account:
    """Assume ``role`` if given, then ask STS who we are. Raises botocore errors."""
    _check_env_endpoint(settings)
    region = home_region or session.region_name or DEFAULT_HOME_REGION
    if role is not None:
        sts = make_client(session, "sts", region, settings, on_call)
        session = assume_role_session(sts, role, region, loader_from=session)
    sts = make_client(session, "sts", region, settings, on_call)
    identity = sts.get_caller_identity()
    return Account(
        account_id=identity["Account"],
        session=session,
        settings=settings,
        home_region=region,
        on_call=on_call,
        partition=partition_of(identity.get("Arn", "")),
    )


def open_member(caller: Account, account_id: str, role: RoleToAssume) -> Account:
    """The member account ``account_id``, opened by assuming ``role`` from ``caller``.

    The account id is known from the organisation's listing and the role's ARN, so no
    further identity call is made. Raises botocore errors (AccessDenied on the role…).
    """
    session = assume_role_session(
        caller.client("sts"), role, caller.home_region, loader_from=caller.session
    )
    return Account(
        account_id=account_id,
        session=session,
        settings=caller.settings,
        home_region=caller.home_region,
        on_call=caller.on_call,
        partition=caller.partition,
    )
