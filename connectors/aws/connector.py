"""The AWS connector: options, the plan of units for an account, and ``collect``.

Units are named ``<account id>/<region>/<service>``: ``global`` for IAM, S3 (listing,
evidence in each bucket's region), S3 Control and CloudTrail (every region read inside
the one unit); one per enabled region for regional readers (EC2: EBS encryption by
default).
They run on a bounded thread pool and every unit ends with one ``Coverage`` record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from connectors.aws import cloudtrail, ec2, iam, s3, s3control
from connectors.aws.common import AWS_ERRORS, describe_error
from connectors.aws.session import (
    GLOBAL,
    Account,
    ClientSettings,
    RoleToAssume,
    base_session,
    check_endpoint_url,
    open_account,
)
from connectors.aws.units import ReaderSpec, Unit, stream_units
from connectors.base import CollectContext, Connector, ConnectorOptions
from connectors.checks import REGISTRY, CheckSpec
from connectors.records import Coverage, Record

SERVICE_MODULES = (iam, s3, s3control, cloudtrail, ec2)
READERS: tuple[ReaderSpec, ...] = tuple(r for m in SERVICE_MODULES for r in m.READERS)

#: Every API operation the connector may call → the IAM action it needs (None: no
#: permission needed). ``docs/permissions/aws.json`` lists exactly the actions.
ACTIONS: dict[str, str | None] = {
    "sts:GetCallerIdentity": None,  # needs no permission
    "sts:AssumeRole": None,  # granted by the role's trust policy, not the audit policy
}
for _module in SERVICE_MODULES:
    ACTIONS.update(_module.ACTIONS)

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")


class AwsOptions(ConnectorOptions):
    """``[connectors.options]`` of an ``aws`` connector."""

    profile: str | None = None
    regions: list[str] | None = Field(
        default=None, description="Regions to read; None = the account's enabled regions."
    )
    role_arn: str | None = None
    external_id: str | None = None
    session_name: str = "annexa"
    endpoint_url: str | None = Field(
        default=None,
        description="Custom endpoint for every service; else boto3 honours AWS_ENDPOINT_URL.",
    )
    connect_timeout: float = Field(default=3, gt=0, le=120)
    read_timeout: float = Field(default=20, gt=0, le=600)
    max_attempts: int = Field(default=5, ge=1, le=20)
    max_workers: int = Field(default=8, ge=1, le=64)

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("regions must not be empty (omit it to use every enabled region)")
        bad = [r for r in value if not _REGION.match(r)]
        if bad:
            raise ValueError(f"not AWS region names: {', '.join(bad)}")
        return list(dict.fromkeys(value))

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.match(value):
            raise ValueError(f"not an IAM role ARN: {value!r}")
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
    def _external_id_needs_role(self) -> AwsOptions:
        if self.external_id is not None and self.role_arn is None:
            raise ValueError("external_id is only used with role_arn")
        return self


def plan_units(
    account: Account,
    regions: Sequence[str] | None,
    readers: Sequence[ReaderSpec] = READERS,
) -> tuple[list[Unit], list[Coverage]]:
    """The units to read in ``account``, and Coverage errors for units that cannot run
    because the account's regions could not be discovered."""
    if regions is None and any(r.regional or r.needs_regions for r in readers):
        try:
            regions = ec2.discover_regions(account)
        except AWS_ERRORS as exc:
            error = f"region discovery failed: {describe_error(exc)}"
            problems = [account.coverage(GLOBAL, ec2.SERVICE, error)]
            problems += [
                account.coverage(GLOBAL, r.service, error)
                for r in readers
                if r.needs_regions and r.service != ec2.SERVICE
            ]
            units = [
                Unit(account, GLOBAL, r.service, r.read)
                for r in readers
                if not r.regional and not r.needs_regions
            ]
            return units, problems
    units: list[Unit] = []
    for r in readers:
        if r.regional:
            continue
        read = partial(r.read, regions=list(regions or ())) if r.needs_regions else r.read
        units.append(Unit(account, GLOBAL, r.service, read))
    units += [
        Unit(account, region, r.service, r.read)
        for region in regions or ()
        for r in readers
        if r.regional
    ]
    return units, []


def collect_account(
    account: Account,
    regions: Sequence[str] | None,
    *,
    max_workers: int,
    cancelled: Callable[[], bool],
) -> Iterator[Record]:
    """Every record of one account: its units on a bounded pool, as they complete."""
    units, problems = plan_units(account, regions)
    yield from problems
    yield from stream_units(units, max_workers=max_workers, cancelled=cancelled)


class AwsConnector(Connector):
    """Reads IAM, S3, S3 Control, CloudTrail and EC2 settings of one AWS account."""

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

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        services = dict.fromkeys(r.service for r in READERS)
        return [spec for svc in services for spec in REGISTRY.for_service(cls.prefix, svc)]

    def client_settings(self) -> ClientSettings:
        o = self.options
        return ClientSettings(
            endpoint_url=o.endpoint_url,
            connect_timeout=o.connect_timeout,
            read_timeout=o.read_timeout,
            max_attempts=o.max_attempts,
            max_pool_connections=max(10, o.max_workers * 2),
        )

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        o = self.options
        self.operations_called = set()
        role = (
            RoleToAssume(o.role_arn, o.session_name, o.external_id) if o.role_arn else None
        )
        try:
            account = open_account(
                base_session(o.profile),
                self.client_settings(),
                role=role,
                on_call=self.operations_called.add,
            )
        except (*AWS_ERRORS, ValueError) as exc:
            error = (
                "AWS_ENDPOINT_URL must be https, or plain http to a loopback host"
                if isinstance(exc, ValueError)  # raised only for the environment variable
                else describe_error(exc)
            )
            ctx.log.warning("aws account could not be opened", connector=self.name, error=error)
            yield Coverage(scope=self.name, region=GLOBAL, service="*", ok=False, error=error)
            return
        ctx.log.info("aws account opened", connector=self.name, account=account.account_id)
        yield Coverage(scope=self.name, region=GLOBAL, service="*", ok=True)
        yield from collect_account(
            account, o.regions, max_workers=o.max_workers, cancelled=ctx.cancelled
        )

