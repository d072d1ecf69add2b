"""`annexa config check [--connect]`: everything a run needs, checked before a run.

A secret reference to an unset variable used to surface only during a collection, as a
permanent ``failed`` run full of ``error`` findings with the reason in JSON logs. The
static part here (the file, every secret reference, the mapping files, the decision
files, the signing key) needs no network and runs before every ``collect``: a config
that cannot work is refused (exit 2) before anything is written.

``--connect`` then makes each connector's cheapest read-only calls and says, per call,
whether it works and which permission is missing when the source refuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from core.connector import SecretRef, SecretUnavailableError

if TYPE_CHECKING:
    from collector.config import LoadedConnector, Settings


@dataclass(frozen=True)
class Line:
    """One verdict of the check: ``what`` was checked, ``ok``, and why not."""

    what: str
    ok: bool
    detail: str = ""


def secret_refs(value: Any, path: str) -> Iterator[tuple[str, SecretRef]]:
    """Every :class:`SecretRef` inside a validated options model, with its config path."""
    if isinstance(value, SecretRef):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secret_refs(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from secret_refs(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from secret_refs(v, f"{path}[{i}]")


def _describe(ref: SecretRef) -> str:
    return f"env {ref.env}" if ref.env is not None else f"file {ref.file}"


def secret_lines(settings: Settings, connectors: list[LoadedConnector] | None = None) -> list[Line]:
    """Resolve every secret reference of ``connectors`` (default: all enabled ones), the
    signing key and the notification targets. Values are read, never printed."""
    chosen = connectors
    if chosen is None:
        chosen = [c for c in settings.connectors if c.cfg.enabled]
    refs: list[tuple[str, SecretRef]] = []
    for c in chosen:
        refs += secret_refs(c.options, f"connectors.{c.name}.options")
    model = settings.model
    for name in type(model).model_fields:
        if name != "connectors":  # raw tables; their validated options are above
            refs += secret_refs(getattr(model, name), name)
    lines = []
    for where, ref in refs:
        try:
            ref.get()
        except SecretUnavailableError as exc:
            lines.append(Line(f"secret {where} ({_describe(ref)})", False, str(exc)))
        else:
            lines.append(Line(f"secret {where} ({_describe(ref)})", True, "resolves"))
    return lines


#: Connector types whose SDK is an extra: (module to find, extra to install).
SDK_EXTRAS: dict[str, tuple[str, str]] = {
    "azure": ("azure.identity", "azure"),
    "entra": ("azure.identity", "entra"),
    "gcp": ("google.cloud.resourcemanager_v3", "gcp"),
    "workspace": ("google.oauth2", "workspace"),
}


def sdk_lines(connectors: list[LoadedConnector]) -> list[Line]:
    """A connector whose SDK is not installed (``pip install 'annexa[azure]'``…)."""
    import importlib.util

    lines = []
    for c in connectors:
        module, extra = SDK_EXTRAS.get(c.cfg.type, (None, None))
        if module is None:
            continue
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        detail = "installed" if found else f"{module} is missing: pip install 'annexa[{extra}]'"
        lines.append(Line(f"sdk of {c.name} ({c.cfg.type})", found, detail))
    return lines


# -- --connect: the cheapest read-only calls ---------------------------------------------------

#: AWS calls tried by ``--connect``: (service, operation, kwargs, IAM action). One per
#: service the collection starts with; each is a read that costs nothing.
AWS_PROBES: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("iam", "get_account_summary", {}, "iam:GetAccountSummary"),
    ("s3", "list_buckets", {}, "s3:ListAllMyBuckets"),
    ("ec2", "describe_regions", {}, "ec2:DescribeRegions"),
    ("cloudtrail", "describe_trails", {}, "cloudtrail:DescribeTrails"),
)
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden"}


def probe_aws(lc: LoadedConnector) -> list[Line]:
    from botocore.exceptions import BotoCoreError, ClientError

    from connectors.aws.common import describe_error, error_code
    from connectors.aws.session import RoleToAssume, base_session, open_account

    conn = lc.build()
    o = conn.options
    role = RoleToAssume(o.role_arn, o.session_name, o.external_id) if o.role_arn else None
    who = (
        f"sts:AssumeRole {o.role_arn} + sts:GetCallerIdentity"
        if role
        else ("sts:GetCallerIdentity")
    )
    try:
        account = open_account(base_session(o.profile), conn.client_settings(), role=role)
    except (ClientError, BotoCoreError, ValueError) as exc:
        return [Line(who, False, describe_error(exc))]
    lines = [Line(who, True, f"account {account.account_id}")]
    for service, op, kwargs, action in AWS_PROBES:
        try:
            getattr(account.client(service), op)(**kwargs)
        except ClientError as exc:
            code = error_code(exc) or ""
            if (
                code in _DENIED
                or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403
            ):
                lines.append(Line(action, False, f"missing permission {action} ({code})"))
            else:
                lines.append(Line(action, False, describe_error(exc)))
        except BotoCoreError as exc:
            lines.append(Line(action, False, describe_error(exc)))
        else:
            lines.append(Line(action, True, "allowed"))
    if o.inventory == "config_aggregator" and o.config_aggregator_name:
        region = o.config_aggregator_region or account.home_region
        lines.append(probe_aws_aggregator(account, o.config_aggregator_name, region))
        lines.append(probe_aws_aggregator_status(account, o.config_aggregator_name, region))
    return lines


def probe_aws_aggregator(account: Any, name: str, region: str) -> Line:
    """Whether the AWS Config aggregator of the bulk inventory mode answers a query."""
    from connectors.aws import configinventory

    ok, detail = configinventory.probe(account, name, region)
    if not ok:
        detail += " (the collection will read every resource directly)"
    return Line(configinventory.ACTION, ok, detail)


def probe_aws_aggregator_status(account: Any, name: str, region: str) -> Line:
    """Whether the aggregator reports its sources' sync status (what dates the data)."""
    from connectors.aws import configinventory

    ok, detail = configinventory.probe_status(account, name, region)
    if not ok:
        detail += " (the collection will read every resource directly)"
    return Line(configinventory.STATUS_ACTION, ok, detail)


#: Okta reads tried by ``--connect``: (path, OAuth scope / admin permission needed).
OKTA_PROBES: tuple[tuple[str, str], ...] = (
    ("/api/v1/users?limit=1", "okta.users.read"),
    ("/api/v1/policies?type=PASSWORD", "okta.policies.read"),
    ("/api/v1/iam/assignees/users?limit=1", "okta.roles.read"),
)


def probe_okta(lc: LoadedConnector) -> list[Line]:
    from contextlib import ExitStack

    from connectors.http import SourceError
    from core.connector import CollectContext

    conn: Any = lc.build()
    ctx = CollectContext(run_id="config-check")
    with ExitStack() as stack:
        try:
            auth = conn._auth(ctx, stack)
        except (SecretUnavailableError, SourceError) as exc:
            return [Line("okta authentication", False, str(exc))]
        http = stack.enter_context(conn._client(ctx, auth))
        lines = []
        for path, scope in OKTA_PROBES:
            what = f"GET {path.split('?')[0]} ({scope})"
            try:
                http.get_json(path)
            except SourceError as exc:
                if exc.status in (401, 403):
                    detail = f"missing permission {scope} (HTTP {exc.status})"
                else:
                    detail = str(exc)
                lines.append(Line(what, False, detail))
            else:
                lines.append(Line(what, True, "allowed"))
        return lines


def probe_azure(lc: LoadedConnector) -> list[Line]:
    """A token, the subscription listing, and — with ``inventory = "resource_graph"`` —
    one page of the Resource Graph query (is bulk mode going to work, or read
    directly?)."""
    from connectors.azure import resourcegraph
    from connectors.azure.arm import Arm, CredentialError, bearer_auth
    from connectors.azure.connector import Subscription, discover_subscriptions
    from connectors.azure.credentials import build_credential
    from connectors.http import HttpClient, SourceError

    conn: Any = lc.build()
    o = conn.options
    try:
        auth = bearer_auth(conn._credential or build_credential(o), o.scope_for_token)
        auth()
    except (SecretUnavailableError, ValueError, OSError, CredentialError) as exc:
        return [Line(f"Entra token for {o.scope_for_token}", False, str(exc))]
    lines = [Line(f"Entra token for {o.scope_for_token}", True, "issued")]
    with HttpClient(o.arm_url, auth=auth, options=o.http,
                    headers={"Accept": "application/json"}) as http:
        arm = Arm(http)
        action = "Microsoft.Resources/subscriptions/read"
        if o.subscriptions:
            subs = [Subscription(s) for s in o.subscriptions]
            lines.append(Line("subscriptions", True, f"{len(subs)} configured"))
        else:
            what = f"GET /subscriptions ({action})"
            try:
                subs = discover_subscriptions(arm)
            except SourceError as exc:
                return [*lines, Line(what, False, _arm_denied(exc, action))]
            lines.append(Line(what, True, f"{len(subs)} readable subscriptions"))
        if o.inventory == "resource_graph":
            what = f"POST {resourcegraph.PATH} ({resourcegraph.ACTIONS[0]})"
            if not subs:
                lines.append(Line(what, False, "no subscription to query"))
                return lines
            try:
                lines.append(Line(what, True, resourcegraph.probe(arm, [s.id for s in subs])))
            except SourceError as exc:
                detail = _arm_denied(exc, resourcegraph.ACTIONS[0])
                lines.append(Line(what, False, f"{detail}; inventory = \"resource_graph\" "
                                  "would read every subscription directly"))
    return lines


def _arm_denied(exc: Any, action: str) -> str:
    if getattr(exc, "status", None) in (401, 403):
        return f"missing permission {action} (HTTP {exc.status})"
    return str(exc)


PROBES: dict[str, Callable[[LoadedConnector], list[Line]]] = {
    "aws": probe_aws,
    "azure": probe_azure,
    "okta": probe_okta,
}


def connect_lines(lc: LoadedConnector) -> list[Line]:
    probe = PROBES.get(lc.cfg.type)
    if probe is None:
        return [Line("connect", True, f"no --connect probe for type {lc.cfg.type!r} yet")]
    try:
        return probe(lc)
    except Exception as exc:  # noqa: BLE001 - a probe must report, never crash the check
        return [Line("connect", False, f"{type(exc).__name__}: {exc}")]
