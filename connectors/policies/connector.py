"""The policies connector: Markdown policies with YAML front matter in a git repository.

Configuration (``[[connectors]] type = "policies"``)::

    [connectors.options]
    path = "/srv/annexa/policies"        # a local clone, kept current by `git pull`
    include = ["**/*.md"]
    exclude = ["README.md", "CHANGELOG.md", "templates/*"]

    [connectors.options.acknowledgements]   # optional: e-signature / LMS export
    csv = "/srv/annexa/exports/policy-acknowledgements.csv"
    email_column = "email"
    policy_column = "policy"               # path, file name without .md, or title
    date_column = "acknowledged_at"
    version_column = "version"             # optional

    [connectors.options.employees]          # with acknowledgements: who must acknowledge
    csv = "/srv/annexa/exports/hr-roster.csv"
    email_column = "email"
    status_column = "status"
    active_values = ["active"]
    start_date_column = "start_date"       # optional: grace period for new hires

Units (scope = ``scope`` or the directory's name, region ``global``): ``document``
(``policies.document.policy``, one per file) and ``acknowledgement``
(``policies.acknowledgement.person``, one per active employee). A file whose front
matter is malformed still yields its evidence; its checks are ``error`` naming the file
and the reason, and the other policies are judged as usual. A missing directory or an
unreadable CSV makes its unit ``error``.

Nothing is fetched from the network: keep the clone current with ``git pull`` before the
run (e.g. in the container's entrypoint or a cron job), so what is judged is exactly
what the repository's history shows as approved.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import CollectContext, Connector, ConnectorOptions
from connectors.checks import REGISTRY, CheckSpec
from connectors.common import GLOBAL, run_unit
from connectors.policies import acknowledgements, documents
from connectors.policies.acknowledgements import Policy
from connectors.records import Coverage, Evidence, Record

PREFIX = "policies"


class AcknowledgementCsv(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csv: str = Field(min_length=1, description="CSV export of acknowledgements")
    email_column: str = "email"
    policy_column: str = "policy"
    date_column: str = "acknowledged_at"
    version_column: str | None = None


class EmployeesCsv(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csv: str = Field(min_length=1, description="CSV roster of employees (HR export)")
    email_column: str = "email"
    status_column: str | None = None
    active_values: list[str] = Field(default_factory=lambda: ["active"], min_length=1)
    start_date_column: str | None = None


class PoliciesOptions(ConnectorOptions):
    path: str = Field(min_length=1, description="local directory (git clone) of the policies")
    scope: str | None = Field(None, description="scope name (default: the directory's name)")
    include: list[str] = Field(default_factory=lambda: ["**/*.md"], min_length=1)
    exclude: list[str] = Field(default_factory=lambda: ["README.md", "CHANGELOG.md"])
    git: bool = Field(True, description="record each file's last commit (git log)")
    acknowledgements: AcknowledgementCsv | None = None
    employees: EmployeesCsv | None = None


class PoliciesConnector(Connector):
    type = "policies"
    prefix = PREFIX
    Options: ClassVar[type[ConnectorOptions]] = PoliciesOptions

    options: PoliciesOptions

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        return [s for s in REGISTRY if s.id.startswith(f"{PREFIX}.")]

    @property
    def root(self) -> Path:
        return Path(self.options.path).expanduser()

    @property
    def scope(self) -> str:
        return self.options.scope or self.root.resolve().name or str(self.root)

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = self.scope
        required: list[Policy] = []
        unclear: list[str] = []

        def read() -> Iterator[Evidence]:
            for ev in documents.read_policies(
                self.root, scope, opts.include, opts.exclude, opts.git
            ):
                p = ev.payload
                if "_errors" in p and "acknowledgement_required" in p["_errors"]:
                    unclear.append(str(p["path"]))
                elif p.get("acknowledgement_required", True):
                    required.append(
                        Policy(
                            str(p["path"]), p.get("title"), p.get("version"), p.get("approved_on")
                        )
                    )
                yield ev

        doc_ok = True
        for rec in run_unit(scope, "document", read, ctx.cancelled, source=PREFIX):
            if isinstance(rec, Coverage):
                doc_ok = rec.ok
            yield rec
        if ctx.cancelled() or opts.acknowledgements is None:
            return
        if not doc_ok:
            yield Coverage(
                scope,
                GLOBAL,
                "acknowledgement",
                ok=False,
                error="the policies could not be read, so what must be acknowledged is unknown",
            )
            return
        yield from run_unit(
            scope,
            "acknowledgement",
            lambda: self._acknowledgements(scope, required, unclear),
            ctx.cancelled,
            source=PREFIX,
        )

    def _acknowledgements(
        self, scope: str, required: list[Policy], unclear: list[str]
    ) -> Iterator[Evidence]:
        from connectors.http import SourceError

        ack, emp = self.options.acknowledgements, self.options.employees
        assert ack is not None
        if emp is None:
            raise SourceError(
                "acknowledgements need the employees roster (options.employees) to know "
                "who must acknowledge"
            )
        acks = acknowledgements.read_acknowledgements(
            Path(ack.csv),
            email=ack.email_column,
            policy=ack.policy_column,
            at=ack.date_column,
            version=ack.version_column,
        )
        people = acknowledgements.read_people(
            Path(emp.csv),
            email=emp.email_column,
            status=emp.status_column,
            active_values=emp.active_values,
            start_date=emp.start_date_column,
        )
        yield from acknowledgements.person_evidence(scope, people, required, acks)
        if unclear:
            raise SourceError(
                "whether these policies need acknowledgement is unreadable: " + ", ".join(unclear)
            )
