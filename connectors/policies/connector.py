"""The policies connector: Markdown policies with YAML front matter in a git repository.

Configuration (``[[connectors]] type = "policies"``)::

    [connectors.options]
    path = "/srv/annexa/policies"        # a local clone, kept current by `git pull`
    # or read through the GitHub REST API instead of a clone:
    # [connectors.options.github]
    # repository = "acme/policies"
    # ref = "main"
    # token = { env = "POLICIES_GITHUB_TOKEN" }   # fine-grained, contents: read
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
    termination_date_column = "termination_date"   # optional
    # The `hr` connector's CSV export works as is: email_column = "work_email",
    # start_date_column = "hire_date", termination_date_column = "termination_date".

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

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.http import HttpClient, HttpOptions, SourceError, token_auth
from connectors.kit import GLOBAL, SourceURL, run_unit
from connectors.policies import acknowledgements, documents, github_source
from connectors.policies.acknowledgements import Policy
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from core.records import Coverage, Evidence, Record

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
    termination_date_column: str | None = Field(
        None, description="people with a termination date on or before the run are not active"
    )


class GitHubRepository(BaseModel):
    """Read the policies straight from GitHub instead of a local clone."""

    model_config = ConfigDict(extra="forbid")

    repository: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$", description="owner/name"
    )
    ref: str = Field("main", min_length=1, description="branch, tag or commit")
    api_url: SourceURL = "https://api.github.com"
    token: SecretRef = Field(description="fine-grained token with contents: read on the repo")
    http: HttpOptions = Field(default_factory=HttpOptions)



class PoliciesOptions(ConnectorOptions):
    path: str | None = Field(
        None, min_length=1, description="local directory (git clone) of the policies"
    )
    github: GitHubRepository | None = None
    scope: str | None = Field(None, description="scope name (default: the directory's name)")
    include: list[str] = Field(default_factory=lambda: ["**/*.md"], min_length=1)
    exclude: list[str] = Field(default_factory=lambda: ["README.md", "CHANGELOG.md"])
    git: bool = Field(True, description="record each file's last commit (git log)")
    acknowledgements: AcknowledgementCsv | None = None
    employees: EmployeesCsv | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PoliciesOptions:
        if (self.path is None) == (self.github is None):
            raise ValueError("give exactly one of path (a local clone) or github")
        return self


class PoliciesConnector(Connector):
    type = "policies"
    prefix = PREFIX
    Options: ClassVar[type[ConnectorOptions]] = PoliciesOptions

    options: PoliciesOptions

    @property
    def root(self) -> Path:
        return Path(self.options.path or ".").expanduser()

    @property
    def scope(self) -> str:
        if self.options.scope:
            return self.options.scope
        if self.options.github is not None:
            return self.options.github.repository
        return self.root.resolve().name or str(self.root)

    def _files(self, scope: str) -> Iterator[Evidence]:
        """Policy evidence from the local clone or, with ``github``, the GitHub API."""
        opts = self.options
        gh = opts.github
        if gh is None:
            yield from documents.read_policies(
                self.root, scope, opts.include, opts.exclude, opts.git
            )
            return
        try:
            auth = token_auth("Bearer", gh.token.get())
        except SecretUnavailableError as exc:
            raise SourceError(str(exc)) from None
        with HttpClient(
            gh.api_url, auth=auth, options=gh.http, headers=github_source.API_HEADERS
        ) as http:
            yield from github_source.read_github_policies(
                http, gh.repository, gh.ref, scope, opts.include, opts.exclude, opts.git
            )

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = self.scope
        required: list[Policy] = []
        unclear: list[str] = []

        def read() -> Iterator[Evidence]:
            for ev in self._files(scope):
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
            termination_date=emp.termination_date_column,
        )
        yield from acknowledgements.person_evidence(scope, people, required, acks)
        if unclear:
            raise SourceError(
                "whether these policies need acknowledgement is unreadable: " + ", ".join(unclear)
            )
