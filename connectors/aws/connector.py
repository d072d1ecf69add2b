"""The AWS connector: options, the plan of units per account, and ``collect``.

Units are named ``<account id>/<region>/<service>``: ``global`` for IAM, S3 (listing,
evidence in each bucket's region), S3 Control, CloudTrail (every region read inside
the one unit), Organizations, CloudFront and Budgets; one per enabled region for the
regional services (EC2, VPC, CloudWatch Logs, KMS, RDS, GuardDuty, Config, Security
Hub, Backup, ELBv2, Access Analyzer, Inspector, ECR, Macie, Route 53 Resolver).

Scope
    *Single account* (default): the credential chain or ``profile``, optionally a
    ``role_arn`` assumed first. The scope-level ``Coverage`` is named after the
    connector instance (the account id is not known when opening fails).

    *Organisation mode* (``organization = true``): the caller (profile / chain /
    ``role_arn``, normally in the management or a delegated-administrator account)
    lists the organisation's active accounts, applies ``include_accounts`` /
    ``exclude_accounts`` / ``include_management_account``, and opens each account by
    assuming ``member_role_name`` there (``external_id`` and ``session_name`` apply);
    the caller's own account is read with the caller's credentials. An account whose
    role cannot be assumed becomes ``Coverage(<account>, "global", "*", ok=False)``
    (every check an ``error`` there) and the run goes on; ``ok=True`` once it opens.

Bulk inventory (``inventory = "config_aggregator"``, off by default): before the units
run, one AWS Config advanced query over the aggregator ``config_aggregator_name`` gives
the S3 buckets' configuration of every source account; the ``s3`` units take it from
there and read directly only what it lacks (:mod:`.configinventory`); each source's
sync time (``DescribeConfigurationAggregatorSourcesStatus``) dates that evidence. When
either call fails, a warning is logged and every unit reads directly.

Every account, region and service runs on one bounded pool (``max_workers``); opening
an account is a job on it too. Every unit ends with one ``Coverage`` record.

Daemon replicas (``[daemon] distribute = true``): :meth:`AwsConnector.plan_units` names
every unit ``collect`` would read and :meth:`AwsConnector.collect_unit` reads one on any
replica by the same path (caller, member role, :func:`layout`, :class:`AccountJob`).
What stays one unit, and why: docs/replicas.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from connectors.aws import (
    accessanalyzer,
    backup,
    budgets,
    cloudfront,
    cloudtrail,
    config,
    configinventory,
    ec2,
    ecr,
    elbv2,
    guardduty,
    iam,
    inspector2,
    kms,
    logs,
    macie,
    organizations,
    rds,
    route53resolver,
    s3,
    s3control,
    securityhub,
    vpc,
)
from connectors.aws.common import AWS_ERRORS, describe_error, paginate
from connectors.aws.session import (
    Account,
    ClientSettings,
    RoleToAssume,
    base_session,
    check_endpoint_url,
    open_account,
    open_member,
)
from connectors.aws.units import ReaderSpec, RegionBreaker, Unit
from connectors.cloudshared import all_match
from connectors.kit import GLOBAL, Job, stream_jobs
from core.connector import CollectContext, Connector, ConnectorOptions
from core.records import Coverage, Record

SERVICE_MODULES = (
    iam,
    s3,
    s3control,
    cloudtrail,
    ec2,
    vpc,
    logs,
    kms,
    rds,
    guardduty,
    config,
    securityhub,
    backup,
    elbv2,
    accessanalyzer,
    organizations,
    cloudfront,
    budgets,
    inspector2,
    ecr,
    macie,
    route53resolver,
)
READERS: tuple[ReaderSpec, ...] = tuple(r for m in SERVICE_MODULES for r in m.READERS)
SERVICES: tuple[str, ...] = tuple(dict.fromkeys(r.service for r in READERS))

#: Organisation listing (organisation mode only).
ORG_ACTIONS: dict[str, str | None] = {
    "organizations:DescribeOrganization": "organizations:DescribeOrganization",
    "organizations:ListAccounts": "organizations:ListAccounts",
}

#: Every API operation the connector may call → the IAM action it needs (None: no
#: permission needed). ``docs/permissions/aws.json`` lists exactly the actions.
ACTIONS: dict[str, str | None] = {
    "sts:GetCallerIdentity": None,  # needs no permission
    # only the caller's: role_arn, or each member's audit role in organisation mode
    # (docs/permissions/aws.json scopes it to roles in its own statement)
    "sts:AssumeRole": "sts:AssumeRole",
    **ORG_ACTIONS,
}
for _module in SERVICE_MODULES:
    ACTIONS.update(_module.ACTIONS)

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_ROLE_NAME = re.compile(r"^/?([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_AGGREGATOR = re.compile(r"^[\w-]{1,256}$", re.ASCII)


class AwsOptions(ConnectorOptions):
    """``[connectors.options]`` of an ``aws`` connector."""

    profile: str | None = None
    regions: list[str] | None = Field(
        default=None, description="Regions to read; None = each account's enabled regions."
    )
    services: list[str] | None = Field(
        default=None, description="Services to read; None = all of them."
    )
    role_arn: str | None = None
    external_id: str | None = None
    session_name: str = "annexa"
    organization: bool = Field(
        default=False, description="Read every account of the AWS Organization."
    )
    member_role_name: str | None = Field(
        default=None, description="Role assumed in each member account (organisation mode)."
    )
    include_accounts: list[str] | None = None
    exclude_accounts: list[str] = Field(default_factory=list)
    include_management_account: bool = True
    endpoint_url: str | None = Field(
        default=None,
        description="Custom endpoint for every service; else boto3 honours AWS_ENDPOINT_URL.",
    )
    endpoint_account_prefix: bool = Field(
        default=False,
        description="With a custom endpoint, let S3 Control call <account id>.<endpoint "
        "host> as it does on AWS's own endpoints (only for an endpoint whose DNS answers "
        "such names).",
    )
    connect_timeout: float = Field(default=3, gt=0, le=120)
    read_timeout: float = Field(default=20, gt=0, le=600)
    max_attempts: int = Field(default=5, ge=1, le=20)
    max_workers: int = Field(default=16, ge=1, le=128)
    inventory: Literal["direct", "config_aggregator"] = Field(
        default="direct",
        description="config_aggregator: read S3 buckets' configuration in bulk from an AWS "
        "Config aggregator (config_aggregator_name); direct: every resource's own API.",
    )
    config_aggregator_name: str | None = Field(
        default=None, description="The AWS Config configuration aggregator to query."
    )
    config_aggregator_region: str | None = Field(
        default=None, description="Region of the aggregator; default the home region."
    )

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("regions must not be empty (omit it to use every enabled region)")
        return list(dict.fromkeys(all_match(value, _REGION, "AWS region names")))

    @field_validator("config_aggregator_name")
    @classmethod
    def _aggregator_name(cls, value: str | None) -> str | None:
        if value is not None and not _AGGREGATOR.match(value):
            raise ValueError("config_aggregator_name must be 1-256 characters of "
                             f"[A-Za-z0-9_-] (an AWS Config aggregator name), got {value!r}")
        return value

    @field_validator("config_aggregator_region")
    @classmethod
    def _aggregator_region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION.match(value):
            raise ValueError(f"config_aggregator_region: not an AWS region name: {value!r}")
        return value

    @field_validator("services")
    @classmethod
    def _services(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("services must not be empty (omit it to read every service)")
        bad = [s for s in value if s not in SERVICES]
        if bad:
            raise ValueError(
                f"unknown services: {', '.join(bad)} (known: {', '.join(SERVICES)})"
            )
        return list(dict.fromkeys(value))

    @field_validator("include_accounts", "exclude_accounts")
    @classmethod
    def _accounts(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        bad = [a for a in value if not _ACCOUNT_ID.match(str(a))]
        if bad:
            raise ValueError(f"not 12-digit AWS account ids: {', '.join(map(str, bad))}")
        return list(dict.fromkeys(value))

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.match(value):
            raise ValueError(f"not an IAM role ARN: {value!r}")
        return value

    @field_validator("member_role_name")
    @classmethod
    def _member_role_name(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_NAME.match(value):
            raise ValueError(f"not an IAM role name (optionally with a path): {value!r}")
        return value

    @field_validator("session_name")
    @classmethod
    def _session_name(cls, value: str) -> str:
        if not _SESSION_NAME.match(value):
            raise ValueError("session_name must be 2-64 characters of [A-Za-z0-9_+=,.@-]")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        return None if value is None else check_endpoint_url(value)

    @model_validator(mode="after")
    def _consistent(self) -> AwsOptions:
        if self.external_id is not None and self.role_arn is None and not self.organization:
            raise ValueError("external_id is only used with role_arn or organization = true")
        if self.organization and not self.member_role_name:
            raise ValueError("organization = true needs member_role_name (the role to assume "
                             "in each account, e.g. \"OrganizationAccountAccessRole\")")
        org_only = ("member_role_name", "include_accounts")
        if not self.organization:
            given = [n for n in org_only if getattr(self, n) is not None]
            given += ["exclude_accounts"] if self.exclude_accounts else []
            if given:
                raise ValueError(f"{', '.join(given)} only apply with organization = true")
        self._check_inventory()
        if self.include_accounts and set(self.include_accounts) & set(self.exclude_accounts):
            both = sorted(set(self.include_accounts) & set(self.exclude_accounts))
            raise ValueError(f"accounts both included and excluded: {', '.join(both)}")
        return self

    def _check_inventory(self) -> None:
        """The bulk inventory options fit together (see :mod:`.configinventory`)."""
        if self.inventory == configinventory.MODE:
            if not self.config_aggregator_name:
                raise ValueError('inventory = "config_aggregator" needs config_aggregator_name '
                                 "(the AWS Config aggregator to query)")
            if self.services is not None and not configinventory.SERVICES & set(self.services):
                raise ValueError('inventory = "config_aggregator" replaces reads of the s3 '
                                 "service, which services leaves out: add \"s3\" or use "
                                 'inventory = "direct"')
            return
        given = [n for n in ("config_aggregator_name", "config_aggregator_region")
                 if getattr(self, n) is not None]
        if given:
            raise ValueError(f'{", ".join(given)} only apply with inventory = '
                             '"config_aggregator"')


def readers_for(services: Sequence[str] | None) -> tuple[ReaderSpec, ...]:
    if services is None:
        return READERS
    return tuple(r for r in READERS if r.service in services)


def layout(regions: Sequence[str], readers: Sequence[ReaderSpec]) -> list[tuple[str, ReaderSpec]]:
    """Where each reader runs in one account, in plan order: the global readers first
    (region ``global``), then every region's regional readers. The one ordering both
    :func:`plan_units` (collect) and :meth:`AwsConnector.plan_units` (replicas) use."""
    out = [(GLOBAL, r) for r in readers if not r.regional]
    out += [(region, r) for region in regions for r in readers if r.regional]
    return out


def needs_regions(readers: Sequence[ReaderSpec]) -> bool:
    return any(r.regional or r.needs_regions for r in readers)


def plan_units(
    account: Account,
    regions: Sequence[str] | None,
    readers: Sequence[ReaderSpec] = READERS,
    breaker: RegionBreaker | None = None,
) -> tuple[list[Unit], list[Coverage]]:
    """The units to read in ``account``, and Coverage errors for units that cannot run
    because the account's regions could not be discovered."""
    if regions is None and needs_regions(readers):
        try:
            regions = ec2.discover_regions(account)
        except AWS_ERRORS as exc:
            error = f"region discovery failed: {describe_error(exc)}"
            problems = [account.coverage(GLOBAL, r.service, error)
                        for r in readers if r.regional or r.needs_regions]
            problems = list({c.service: c for c in problems}.values())
            units = [
                Unit(account, GLOBAL, r.service, r.read, breaker)
                for r in readers
                if not r.regional and not r.needs_regions
            ]
            return units, problems
    every = list(regions or ())
    units = [
        Unit(account, region, r.service,
             partial(r.read, regions=every) if r.needs_regions else r.read, breaker)
        for region, r in layout(every, readers)
    ]
    return units, []


@dataclass(frozen=True)
class AccountJob:
    """Open one account (assume its role if needed), then yield its units."""

    account_id: str
    opener: Callable[[], Account]
    regions: Sequence[str] | None
    readers: Sequence[ReaderSpec]
    breaker: RegionBreaker
    log: Any

    @property
    def name(self) -> str:
        return f"open {self.account_id}"

    def run(self, cancelled: Callable[[], bool]) -> Iterator[Record | Job]:
        try:
            account = self.opener()
        except AWS_ERRORS as exc:
            error = f"account could not be opened: {describe_error(exc)}"
            self.log.warning("aws account could not be opened", account=self.account_id,
                             error=error)
            yield Coverage(scope=self.account_id, region=GLOBAL, service="*", ok=False,
                           error=error)
            return
        yield Coverage(scope=self.account_id, region=GLOBAL, service="*", ok=True)
        if cancelled():
            return
        yield from account_units(account, self.regions, self.readers, self.breaker)


def account_units(
    account: Account,
    regions: Sequence[str] | None,
    readers: Sequence[ReaderSpec],
    breaker: RegionBreaker,
) -> Iterator[Record | Job]:
    units, problems = plan_units(account, regions, readers, breaker)
    yield from problems
    account.retain(len(units))  # before any unit can finish and release
    yield from units


@dataclass(frozen=True)
class OrgAccount:
    id: str
    name: str
    status: str


def list_org_accounts(caller: Account) -> tuple[str, list[OrgAccount]]:
    """The management account id and every account of the organisation."""
    client = caller.client("organizations")
    management = client.describe_organization()["Organization"].get("MasterAccountId", "")
    accounts = [
        OrgAccount(a["Id"], a.get("Name", ""), a.get("State") or a.get("Status") or "ACTIVE")
        for a in paginate(client, "list_accounts", "Accounts")
    ]
    return management, accounts


class AwsConnector(Connector):
    """Reads the security configuration of one AWS account or a whole organisation."""

    type: ClassVar[str] = "aws"
    prefix: ClassVar[str] = "aws"
    Options: ClassVar[type[ConnectorOptions]] = AwsOptions

    def __init__(self, name: str, options: ConnectorOptions) -> None:
        if not isinstance(options, AwsOptions):
            options = AwsOptions.model_validate(options.model_dump())
        super().__init__(name, options)
        self.options: AwsOptions = options
        #: ``service:Operation`` of every API call made by the last ``collect``.
        self.operations_called: set[str] = set()
        #: The bulk inventory of the last ``collect`` (None: direct reads only).
        self.inventory: configinventory.Inventory | None = None

    def client_settings(self) -> ClientSettings:
        o = self.options
        return ClientSettings(
            endpoint_url=o.endpoint_url,
            connect_timeout=o.connect_timeout,
            read_timeout=o.read_timeout,
            max_attempts=o.max_attempts,
            max_pool_connections=max(10, o.max_workers * 2),
            endpoint_account_prefix=o.endpoint_account_prefix,
        )

    def _scope_error(self, ctx: CollectContext, error: str, what: str) -> Coverage:
        ctx.log.warning(what, connector=self.name, error=error)
        return Coverage(scope=self.name, region=GLOBAL, service="*", ok=False, error=error)

    def open_caller(self) -> Account:
        """The caller's account (profile / credential chain, ``role_arn`` assumed).

        Raises botocore errors, or :class:`ValueError` for an ``AWS_ENDPOINT_URL`` that
        is neither https nor plain http to a loopback host.
        """
        o = self.options
        role = RoleToAssume(o.role_arn, o.session_name, o.external_id) if o.role_arn else None
        return open_account(
            base_session(o.profile),
            self.client_settings(),
            role=role,
            on_call=self.operations_called.add,
        )

    @staticmethod
    def caller_error(exc: BaseException) -> str:
        if isinstance(exc, ValueError):  # raised only for the environment variable
            return "AWS_ENDPOINT_URL must be https, or plain http to a loopback host"
        return describe_error(exc)

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        o = self.options
        self.operations_called = set()
        try:
            caller = self.open_caller()
        except (*AWS_ERRORS, ValueError) as exc:
            yield self._scope_error(ctx, self.caller_error(exc), "aws account could not be opened")
            return
        readers = self.bulk_readers(ctx, caller, readers_for(o.services))
        breaker = RegionBreaker()
        if not o.organization:
            ctx.log.info("aws account opened", connector=self.name, account=caller.account_id)
            yield Coverage(scope=self.name, region=GLOBAL, service="*", ok=True)
            jobs: list[Job] | Iterator[Job] = [
                AccountJob(caller.account_id, lambda: caller, o.regions, readers, breaker,
                           ctx.log)
            ]
            yield from self._without_own_scope(
                stream_jobs(jobs, max_workers=o.max_workers, cancelled=ctx.cancelled, source="aws")
            )
            return
        try:
            management, accounts = list_org_accounts(caller)
        except AWS_ERRORS as exc:
            error = f"organisation accounts could not be listed: {describe_error(exc)}"
            yield self._scope_error(ctx, error, "aws organisation could not be listed")
            return
        yield Coverage(scope=self.name, region=GLOBAL, service="*", ok=True)
        selected, problems = self.select_accounts(management, accounts)
        ctx.log.info("aws organisation listed", connector=self.name, accounts=len(selected),
                     management=management, caller=caller.account_id)
        yield from problems
        jobs = (self.account_job(caller, a, readers, breaker, ctx) for a in selected)
        yield from stream_jobs(
            jobs, max_workers=o.max_workers, cancelled=ctx.cancelled, source="aws"
        )

    def bulk_readers(self, ctx: CollectContext, caller: Account,
                     readers: tuple[ReaderSpec, ...]) -> tuple[ReaderSpec, ...]:
        """``readers`` with the units the inventory covers reading from it; unchanged in
        direct mode, or (logged) when the aggregator cannot be queried."""
        o = self.options
        self.inventory = None
        if o.inventory != configinventory.MODE or o.config_aggregator_name is None:
            return readers
        region = o.config_aggregator_region or caller.home_region
        inv = configinventory.load(caller, o.config_aggregator_name, region)
        self.inventory = inv
        if inv.error is not None:
            ctx.log.warning("aws config aggregator could not be queried; reading directly",
                            connector=self.name, aggregator=inv.aggregator, region=region,
                            error=inv.error)
            return readers
        if inv.unattributed:
            ctx.log.warning("aws config aggregator entries naming no bucket were skipped",
                            connector=self.name, entries=inv.unattributed)
        for source in inv.unhealthy():
            # Its buckets keep the last sync time: their evidence goes stale, visibly.
            ctx.log.warning("aws config aggregator source not synced; its evidence is as "
                            "of the last sync", connector=self.name,
                            aggregator=inv.aggregator, source=source.source_id,
                            source_region=source.region, status=source.status,
                            error_code=source.error_code,
                            last_update=source.updated.isoformat() if source.updated
                            else None)
        ctx.log.info("aws config aggregator read", connector=self.name,
                     aggregator=inv.aggregator, buckets=len(inv.buckets), calls=inv.calls,
                     sources=len(inv.sources), status_calls=inv.status_calls)
        return configinventory.readers(readers, inv)

    @staticmethod
    def _without_own_scope(records: Iterator[Record]) -> Iterator[Record]:
        """Single-account mode: the scope-level Coverage is the connector's own (named
        after the instance, already yielded), not the account's."""
        for record in records:
            if isinstance(record, Coverage) and record.service == "*" and record.ok:
                continue
            yield record

    def select_accounts(
        self, management: str, accounts: Sequence[OrgAccount]
    ) -> tuple[list[OrgAccount], list[Coverage]]:
        """Active accounts after include/exclude; errors for included accounts not found."""
        o = self.options
        active = {a.id: a for a in accounts if a.status == "ACTIVE"}
        chosen = [a for a in accounts if a.id in active]
        problems: list[Coverage] = []
        if o.include_accounts is not None:
            wanted = set(o.include_accounts)
            chosen = [a for a in chosen if a.id in wanted]
            for missing in sorted(wanted - set(active)):
                problems.append(Coverage(
                    scope=missing, region=GLOBAL, service="*", ok=False,
                    error="account is not an active member of the organisation",
                ))
        chosen = [a for a in chosen if a.id not in set(o.exclude_accounts)]
        if not o.include_management_account:
            chosen = [a for a in chosen if a.id != management]
        return chosen, problems

    def opener(self, caller: Account, account_id: str) -> Callable[[], Account]:
        """How to open ``account_id``: the caller's own account as it is, any other by
        assuming ``member_role_name`` there from the caller."""
        if account_id == caller.account_id:
            return lambda: caller
        o = self.options
        path_name = (o.member_role_name or "").lstrip("/")
        role = RoleToAssume(
            f"arn:{caller.partition}:iam::{account_id}:role/{path_name}",
            o.session_name,
            o.external_id,
        )
        return partial(open_member, caller, account_id, role)

    def account_job(
        self,
        caller: Account,
        account: OrgAccount,
        readers: Sequence[ReaderSpec],
        breaker: RegionBreaker,
        ctx: CollectContext,
    ) -> AccountJob:
        return AccountJob(account.id, self.opener(caller, account.id), self.options.regions,
                          readers, breaker, ctx.log)

    # -- units for daemon replicas (Connector.plan_units / collect_unit) -------------

    def opening_unit(self, readers: Sequence[ReaderSpec]) -> tuple[str, str] | None:
        """(region, service) of the unit of each account that also reports the account's
        own ``Coverage(<account>, "global", "*")`` in organisation mode: its first unit
        in plan order. None when that needs the account's regions discovered (only
        regional services chosen and no ``regions``)."""
        first_global = next((r for r in readers if not r.regional), None)
        if first_global is not None:
            return GLOBAL, first_global.service
        if self.options.regions:
            return self.options.regions[0], readers[0].service
        return None

    def plan_units(self, ctx: CollectContext) -> list[tuple[str, str, str]] | None:
        """Every (account, region, service) unit ``collect`` would read.

        ``(<account>, "global", "*")`` is a whole account, read as ``collect`` reads it
        (opened, its regions discovered, every unit): planned for an account that could
        not be opened or whose regions could not be discovered now (reading it records
        why, as ``collect`` does), for an included account missing from the
        organisation, and for every account when the unit reporting the account's
        opening cannot be named without discovering regions (:meth:`opening_unit`).

        None in bulk-inventory mode: the aggregator's inventory is one query for the
        whole organisation, loaded once per run and shared by every account's ``s3``
        units; per unit it would be loaded once per unit, or not at all. Raises when the
        caller cannot be opened or the organisation cannot be listed: the distributor
        then reads the instance whole, which records that failure as ``collect`` does.
        """
        o = self.options
        if o.inventory == configinventory.MODE:
            return None
        try:
            caller = self.open_caller()
        except ValueError as exc:
            raise ValueError(self.caller_error(exc)) from None
        readers = readers_for(o.services)
        wholes: list[str] = []
        accounts = [caller.account_id]
        if o.organization:
            management, listed = list_org_accounts(caller)
            selected, problems = self.select_accounts(management, listed)
            wholes = [c.scope for c in problems]
            accounts = [a.id for a in selected]
            if self.opening_unit(readers) is None:
                return [(a, GLOBAL, "*") for a in wholes + accounts]

        def account_plan(account_id: str) -> list[tuple[str, str, str]]:
            regions = o.regions
            if regions is None and needs_regions(readers):
                try:
                    regions = ec2.discover_regions(self.opener(caller, account_id)())
                except AWS_ERRORS as exc:
                    ctx.log.warning("aws account planned whole", account=account_id,
                                    error=describe_error(exc))
                    return [(account_id, GLOBAL, "*")]
            return [(account_id, region, r.service)
                    for region, r in layout(list(regions or ()), readers)]

        units = [(a, GLOBAL, "*") for a in wholes]
        with ThreadPoolExecutor(max_workers=max(1, min(o.max_workers, len(accounts))),
                                thread_name_prefix="annexa-aws-plan") as pool:
            for part in pool.map(account_plan, accounts):
                units += part
        ctx.log.info("aws units planned", connector=self.name, accounts=len(accounts),
                     units=len(units))
        return units

    def collect_unit(
        self, ctx: CollectContext, scope: str, region: str, service: str
    ) -> Iterator[Record]:
        """Read one planned unit: open its account by the same path as ``collect`` (the
        caller, then the member role) and run the same reader, ending with its Coverage.

        In organisation mode the account's first unit (:meth:`opening_unit`) also
        reports the account's own ``Coverage(<account>, "global", "*")``, as ``collect``
        does once per account. The region breaker is this unit's own: a region found
        unreachable costs each of its units the connect timeout (each still ends in an
        error, never a pass).
        """
        o = self.options
        self.operations_called = set()
        if service == "*":
            yield from self.collect_account(ctx, scope)
            return

        def failed(error: str) -> Coverage:
            ctx.log.warning("aws unit failed", connector=self.name, scope=scope,
                            region=region, service=service, error=error)
            return Coverage(scope, region, service, ok=False, error=error)

        readers = readers_for(o.services)
        spec = next((r for r in readers if r.service == service), None)
        if spec is None or spec.regional == (region == GLOBAL):
            yield failed(f"not a unit this connector plans: {scope}/{region}/{service}")
            return
        try:
            caller = self.open_caller()
        except (*AWS_ERRORS, ValueError) as exc:
            yield failed(f"account could not be opened: {self.caller_error(exc)}")
            return
        if not o.organization and scope != caller.account_id:
            yield failed(f"the credentials open account {caller.account_id}, not {scope}")
            return
        opening = o.organization and self.opening_unit(readers) == (region, service)
        regions = [region] if spec.regional else o.regions
        job = AccountJob(scope, self.opener(caller, scope), regions, (spec,), RegionBreaker(),
                         ctx.log)
        for rec in stream_jobs([job], max_workers=1, cancelled=ctx.cancelled, source="aws"):
            if isinstance(rec, Coverage) and rec.service == "*":
                if opening:
                    yield rec
                if not rec.ok:
                    yield Coverage(scope, region, service, ok=False, error=rec.error)
                continue
            yield rec

    def collect_account(self, ctx: CollectContext, account_id: str) -> Iterator[Record]:
        """The whole-account unit ``(<account>, "global", "*")``: what ``collect``
        yields for that account (opened, regions discovered, every unit)."""
        o = self.options
        try:
            caller = self.open_caller()
        except (*AWS_ERRORS, ValueError) as exc:
            error = f"account could not be opened: {self.caller_error(exc)}"
            yield Coverage(account_id, GLOBAL, "*", ok=False, error=error)
            return
        readers = readers_for(o.services)
        if not o.organization:
            if account_id != caller.account_id:
                yield Coverage(account_id, GLOBAL, "*", ok=False, error=(
                    f"the credentials open account {caller.account_id}, not {account_id}"))
                return
            job = AccountJob(account_id, lambda: caller, o.regions, readers, RegionBreaker(),
                             ctx.log)
            yield from self._without_own_scope(stream_jobs(
                [job], max_workers=o.max_workers, cancelled=ctx.cancelled, source="aws"))
            return
        try:
            management, listed = list_org_accounts(caller)
        except AWS_ERRORS as exc:
            yield Coverage(account_id, GLOBAL, "*", ok=False, error=(
                f"organisation accounts could not be listed: {describe_error(exc)}"))
            return
        selected, problems = self.select_accounts(management, listed)
        problem = next((c for c in problems if c.scope == account_id), None)
        chosen = next((a for a in selected if a.id == account_id), None)
        if chosen is None:
            yield problem or Coverage(account_id, GLOBAL, "*", ok=False,
                                      error="not an account this connector reads")
            return
        job = self.account_job(caller, chosen, readers, RegionBreaker(), ctx)
        yield from stream_jobs([job], max_workers=o.max_workers, cancelled=ctx.cancelled,
                               source="aws")
