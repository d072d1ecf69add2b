"""The generic HR connector: people from a SCIM 2.0 endpoint or a CSV export.

For HR systems Annexa has no connector for (BambooHR has its own:
:mod:`connectors.bamboohr`). Configuration (``[[connectors]] type = "hr"``)::

    [connectors.options]
    source = "scim"                               # or "csv"
    scim_url = "https://hr.example.com/scim/v2"
    token = { env = "HR_SCIM_TOKEN" }             # sent as "Authorization: Bearer …"
    # attributes = { hire_date = "urn:…:User:startDate" }   # where SCIM keeps each date
    # source = "csv" and path = "/data/hr/people.csv" instead of scim_url/token

One unit, ``employee`` (resource type ``hr.employee.record``, one per person), in
region ``global`` of scope = the SCIM host, or the CSV file's name. The records feed the
HR checks (:mod:`connectors.hr.checks`) and the identity correlation (leavers still
active elsewhere, accounts active before the hire date).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from connectors.hr import checks
from connectors.hr.accounts import hr_accounts
from connectors.hr.csvsource import read_csv
from connectors.hr.model import SERVICE, evidence, record_type
from connectors.hr.scim import DEFAULT_ATTRIBUTES, read_users
from connectors.http import HttpOptions, check_url, token_auth
from connectors.identityshared import refused
from connectors.kit import PseudonymiseOptions, run_client, run_unit
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from core.records import Record

PREFIX = "hr"
RECORD_TYPE = record_type(PREFIX)
#: SCIM servers answer ``application/scim+json``; some only plain JSON.
SCIM_HEADERS = {"Accept": "application/scim+json, application/json"}
checks.register(PREFIX, "HR via SCIM or CSV")


class HrOptions(PseudonymiseOptions):
    source: Literal["scim", "csv"] = Field(description="where the HR records are read from")
    scim_url: str | None = Field(None, description="SCIM 2.0 base URL (…/scim/v2)")
    token: SecretRef | None = Field(None, description="SCIM bearer token (read-only)")
    attributes: dict[str, str] = Field(
        default_factory=dict,
        description="SCIM attribute path of each date (hire_date, termination_date, "
        "background_check_date, contract_signed_date, nda_signed_date)",
    )
    page_size: int = Field(100, ge=1, le=1000, description="SCIM users per page (count)")
    path: str | None = Field(None, description="CSV export (header row, see docs)")
    terminated_statuses: list[str] = Field(
        default_factory=lambda: ["terminated", "inactive"],
        description="CSV employment_status values meaning the person has left",
    )
    http: HttpOptions = Field(default_factory=HttpOptions)

    @field_validator("scim_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return check_url(v).rstrip("/") if v else v

    @field_validator("attributes")
    @classmethod
    def _known(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(DEFAULT_ATTRIBUTES))
        if unknown:
            raise ValueError(
                f"unknown date {unknown[0]!r} (known: {', '.join(DEFAULT_ATTRIBUTES)})"
            )
        return v

    @model_validator(mode="after")
    def _source(self) -> HrOptions:
        if self.source == "scim":
            if not self.scim_url or self.token is None:
                raise ValueError('source = "scim" needs scim_url and token')
            if self.path:
                raise ValueError('path is for source = "csv"')
        else:
            if not self.path:
                raise ValueError('source = "csv" needs path')
            if self.scim_url or self.token is not None or self.attributes:
                raise ValueError('scim_url, token and attributes are for source = "scim"')
        return self


class HrConnector(Connector):
    type = "hr"
    prefix = PREFIX
    Options: ClassVar[type[ConnectorOptions]] = HrOptions
    #: Its employee records, for the identity analyzers (core/accounts.py).
    accounts = hr_accounts(RECORD_TYPE)

    options: HrOptions

    @property
    def scope(self) -> str:
        o = self.options
        if o.source == "scim":
            return urlsplit(o.scim_url or "").hostname or str(o.scim_url)
        return Path(o.path or "").name

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = self.scope
        try:
            pseudo = opts.pseudonymiser()
            auth = token_auth("Bearer", opts.token.get()) if opts.token is not None else None
        except SecretUnavailableError as exc:
            yield from refused(scope, (SERVICE,), str(exc))
            return
        if opts.source == "csv":
            path = Path(opts.path or "")
            people = lambda: read_csv(path, str(path), opts.terminated_statuses)  # noqa: E731
            yield from run_unit(
                scope,
                SERVICE,
                lambda: evidence(people(), scope, RECORD_TYPE, pseudo),
                ctx.cancelled,
                source=self.type,
            )
            return
        attributes = {**DEFAULT_ATTRIBUTES, **opts.attributes}
        with run_client(opts.scim_url or "", auth, opts.http, ctx, SCIM_HEADERS) as http:
            yield from run_unit(
                scope,
                SERVICE,
                lambda: evidence(
                    read_users(http, attributes, opts.page_size), scope, RECORD_TYPE, pseudo
                ),
                ctx.cancelled,
                source=self.type,
            )
