"""The BambooHR connector: every employee's hire, termination and onboarding dates.

Configuration (``[[connectors]] type = "bamboohr"``)::

    [connectors.options]
    company_domain = "acme"                       # https://acme.bamboohr.com
    api_key = { env = "BAMBOOHR_API_KEY" }        # HTTP Basic: the key is the user name
    background_check_field = "customBackgroundCheckDate"   # custom field aliases
    contract_signed_field = "customContractSigned"
    nda_signed_field = "customNDASigned"

API calls (BambooHR API v1, ``{api_url}/api/gateway.php/{company_domain}/v1``):

* ``GET /employees/directory`` — the company directory (current employees): read for
  the ids it lists, stored per person as ``in_directory``;
* ``POST /reports/custom?format=JSON&onlyCurrent=false`` with the fields the checks
  need (``hireDate``, ``terminationDate``, ``status``, ``employmentHistoryStatus``,
  ``department``, ``supervisor``, ``workEmail``… and the configured custom fields) for
  every employee, past ones included.

Both answer with one document and no paging, so each body is spooled to a temporary
file and streamed back item by item (:mod:`connectors.jsonstream`): two requests and
flat memory whatever the head count. One unit, ``employee`` (``bamboohr.employee.record``),
scope = the company domain. A custom field left unconfigured makes its check ``error``
for every person (named in ``_errors``), never a guessed verdict.
"""

from __future__ import annotations

import io
import tempfile
from array import array
from bisect import bisect_left
from collections.abc import Container, Iterable, Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import Field

from connectors.hr import checks
from connectors.hr.accounts import hr_accounts
from connectors.hr.model import SERVICE, HrPerson, evidence, record_type, text
from connectors.http import HttpClient, HttpOptions, MalformedResponseError, basic_auth
from connectors.identityshared import refused
from connectors.jsonstream import iter_list
from connectors.kit import PseudonymiseOptions, Pseudonymiser, SourceURL, run_client, run_unit
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from core.records import Evidence, Record

PREFIX = "bamboohr"
RECORD_TYPE = record_type(PREFIX)
checks.register(PREFIX, "BambooHR")

#: Standard BambooHR fields read by the custom report (see the API's field list).
STANDARD_FIELDS = (
    "id",
    "employeeNumber",
    "displayName",
    "workEmail",
    "status",
    "employmentHistoryStatus",
    "hireDate",
    "terminationDate",
    "department",
    "supervisor",
    "supervisorEId",
)
#: Our date → the option naming its BambooHR custom field.
CUSTOM_DATES = {
    "background_check_date": "background_check_field",
    "contract_signed_date": "contract_signed_field",
    "nda_signed_date": "nda_signed_field",
}


class BambooHROptions(PseudonymiseOptions):
    company_domain: str = Field(min_length=1, description="the {company} of acme.bamboohr.com")
    api_key: SecretRef = Field(description="API key of a read-only user (Basic auth user name)")
    api_url: SourceURL = Field("https://api.bamboohr.com", description="API host")
    background_check_field: str | None = Field(
        None, min_length=1, description="custom field (alias) holding the background-check date"
    )
    contract_signed_field: str | None = Field(
        None, min_length=1, description="custom field holding the contract signature date"
    )
    nda_signed_field: str | None = Field(
        None, min_length=1, description="custom field holding the NDA signature date"
    )
    terminated_statuses: list[str] = Field(
        default_factory=lambda: ["Terminated"],
        description="employmentHistoryStatus values meaning the person has left",
    )
    http: HttpOptions = Field(default_factory=HttpOptions)



def person_from_row(
    row: Mapping[str, Any],
    custom: Mapping[str, str | None],
    terminated_statuses: frozenset[str],
    directory: Container[str],
) -> HrPerson:
    """An :class:`HrPerson` from one custom-report row (field id → value)."""
    emp = str(row.get("id"))
    status = text(row.get("status"))
    history = text(row.get("employmentHistoryStatus"))
    p = HrPerson(
        employee_id=emp,
        work_email=text(row.get("workEmail")),
        name=text(row.get("displayName")),
        employment_status=history or status,
        department=text(row.get("department")),
        manager=text(row.get("supervisor")),
        extra={
            "employee_number": text(row.get("employeeNumber")),
            "status": status,
            "in_directory": emp in directory,
        },
    )
    p.set_date("hire_date", row.get("hireDate"), "hireDate")
    p.set_date("termination_date", row.get("terminationDate"), "terminationDate")
    for name, option in CUSTOM_DATES.items():
        alias = custom.get(option)
        if alias is None:
            p.missing(name, f"no BambooHR field is configured for it (option {option})")
        elif alias not in row:
            p.missing(name, f"the report returned no field {alias!r} ({option})")
        else:
            p.set_date(name, row.get(alias), alias)
    p.terminated = (
        (status or "").lower() == "inactive"
        or (history or "").lower() in terminated_statuses
        or bool(p.dates.get("termination_date"))
    )
    return p


class IdSet:
    """Employee ids of the directory, compact: BambooHR ids are integers, so they are kept
    in a sorted ``array`` (8 bytes each, not ~90 in a set of strings); any other id in a
    set. Memory must stay flat as the company grows (see benchmarks/hr.py)."""

    def __init__(self, ids: Iterable[str]) -> None:
        numbers = array("q")
        others: set[str] = set()
        for i in ids:
            if i.isdigit() and len(i) < 18:
                numbers.append(int(i))
            else:
                others.add(i)
        self._numbers = array("q", sorted(numbers))
        self._others = others

    def __contains__(self, value: object) -> bool:
        text = str(value)
        if text.isdigit() and len(text) < 18:
            n = int(text)
            k = bisect_left(self._numbers, n)
            return k < len(self._numbers) and self._numbers[k] == n
        return text in self._others


class BambooHRConnector(Connector):
    type = "bamboohr"
    prefix = PREFIX
    Options: ClassVar[type[ConnectorOptions]] = BambooHROptions
    #: Its employee records, for the identity analyzers (core/accounts.py).
    accounts = hr_accounts(RECORD_TYPE)

    options: BambooHROptions

    @property
    def base(self) -> str:
        return f"/api/gateway.php/{quote(self.options.company_domain, safe='')}/v1"

    def report_fields(self) -> list[str]:
        o = self.options
        custom = [getattr(o, opt) for opt in CUSTOM_DATES.values()]
        return list(dict.fromkeys([*STANDARD_FIELDS, *(c for c in custom if c)]))

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = opts.company_domain
        try:
            # BambooHR's Basic auth: the API key as user name, any password ("x").
            auth = basic_auth(opts.api_key.get(), "x")
            pseudo = opts.pseudonymiser()
        except SecretUnavailableError as exc:
            yield from refused(scope, (SERVICE,), str(exc))
            return
        with run_client(opts.api_url, auth, opts.http, ctx) as http:
            yield from run_unit(
                scope, SERVICE, lambda: self._read(http, pseudo), ctx.cancelled, source=self.type
            )

    def _read(self, http: HttpClient, pseudo: Pseudonymiser) -> Iterator[Evidence]:
        opts = self.options
        scope = opts.company_domain
        directory = IdSet(
            str(e.get("id")) for e in self._stream(http, "GET", "/employees/directory")
        )
        custom = {opt: getattr(opts, opt) for opt in CUSTOM_DATES.values()}
        terminated = frozenset(s.lower() for s in opts.terminated_statuses)
        body = {"title": "Annexa HR evidence", "fields": self.report_fields()}
        rows = self._stream(
            http,
            "POST",
            "/reports/custom",
            params={"format": "JSON", "onlyCurrent": "false"},
            body=body,
        )
        people = (person_from_row(row, custom, terminated, directory) for row in rows)
        yield from evidence(people, scope, RECORD_TYPE, pseudo)

    def _stream(
        self,
        http: HttpClient,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Iterator[Mapping[str, Any]]:
        """The ``employees`` of one BambooHR document, spooled to disk and streamed."""
        with tempfile.TemporaryFile() as spool:
            http.request(method, f"{self.base}{path}", params=params, json_body=body, sink=spool)
            spool.seek(0)
            reader = io.TextIOWrapper(spool, encoding="utf-8")
            try:
                for item in iter_list(reader, "employees", what=f"{method} {path}"):
                    if isinstance(item, Mapping) and item.get("id") is not None:
                        yield item
            except UnicodeDecodeError as exc:
                raise MalformedResponseError(
                    f"{method} {path}: body is not UTF-8: {exc.reason}"
                ) from None
            finally:
                reader.detach()
