"""The GitHub pull requests connector: merged PRs as the change population.

Configuration (``[[connectors]] type = "github_pulls"``)::

    [connectors.options]
    api_url = "https://api.github.com"          # GHES: "https://ghe.example.com/api/v3"
    token = { env = "GITHUB_TOKEN" }            # fine-grained: Pull requests, Checks,
                                                # Commit statuses, Metadata: read
    [[connectors.options.processes]]
    kind = "change"
    repos = ["acme/api", "acme/web"]
    since = "2026-01-01"                        # merged on or after (bounds the reading)
    # required_checks = ["ci/test"]             # besides rulesets / branch protection
    # checks_commit = "head"                    # or "merge"
    # merger_is_implementer = true
    # approver_associations = ["OWNER", "MEMBER", "COLLABORATOR"]
    # approval_must_cover_merged_head = true
    # passing_conclusions = ["success"]

Units: scope = the repository (``acme/api``), region ``global``, service ``change``;
resource types ``github_pulls.change.pull_request`` (id ``acme/api#12``) and
``github_pulls.change.population``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import date
from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from connectors.github_pulls.approvals import AUTHOR_ASSOCIATIONS, WRITE_ASSOCIATIONS
from connectors.github_pulls.pulls import CHECK_CONCLUSIONS, PREFIX, read_repo
from connectors.http import HttpOptions, token_auth
from connectors.kit import GLOBAL, SourceURL, run_client, run_unit
from connectors.process import (
    ProcessBase,
    ProcessOptions,
    item_checks_for,
    register_process_checks,
)
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from core.records import Coverage, Record

API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}

register_process_checks(PREFIX, "GitHub", kinds=("change",), item="pull_request")


#: Options whose every value must be one GitHub documents: the option → (the documented
#: values, what one of them is called in an error).
_DOCUMENTED: dict[str, tuple[Sequence[str], str]] = {
    "approver_associations": (AUTHOR_ASSOCIATIONS, "author_association"),
    "passing_conclusions": (CHECK_CONCLUSIONS, "check-run conclusion"),
}


class PullsProcess(ProcessBase):
    """Merged pull requests into the default branch of ``repos`` form the population."""

    uses_states: ClassVar[bool] = False

    kind: Literal["change"] = "change"  # type: ignore[assignment]
    repos: list[str] = Field(min_length=1)
    #: Pull requests merged on or after this day (also stops the listing early).
    since: date | None = None
    #: Check or status names that must pass besides those rulesets/protection require.
    required_checks: list[str] = Field(default_factory=list)
    checks_commit: Literal["head", "merge"] = "head"
    #: Whoever merged counts as an implementer: merging your own approval fails SoD.
    merger_is_implementer: bool = True
    #: ``author_association`` values whose approvals count. GitHub documents eight; only
    #: OWNER, MEMBER and COLLABORATOR can hold write access to the repository (NONE,
    #: CONTRIBUTOR, FIRST_TIME_CONTRIBUTOR, FIRST_TIMER and MANNEQUIN cannot).
    approver_associations: list[str] = Field(default_factory=lambda: list(WRITE_ASSOCIATIONS))
    #: An approval counts only when it was given on the head commit that was merged: an
    #: approval of an earlier commit did not see the code that went live.
    approval_must_cover_merged_head: bool = True
    #: Check-run conclusions that satisfy a required check. ``neutral`` and ``skipped``
    #: mean no test result, ``stale``/``action_required`` none yet; GitHub's branch
    #: protection accepts neutral and skipped too — add them to follow it.
    passing_conclusions: list[str] = Field(default_factory=lambda: ["success"])

    @field_validator(*_DOCUMENTED)
    @classmethod
    def _documented(cls, v: list[str], info: ValidationInfo) -> list[str]:
        documented, what = _DOCUMENTED[info.field_name or ""]
        unknown = sorted(set(v) - set(documented))
        if unknown:
            raise ValueError(f"unknown {what} {unknown} (GitHub documents {', '.join(documented)})")
        return v

    @field_validator("repos")
    @classmethod
    def _repos(cls, v: list[str]) -> list[str]:
        for repo in v:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}", repo):
                raise ValueError(f"{repo!r} is not owner/name")
        if len(set(v)) != len(v):
            raise ValueError("a repository is listed twice")
        return v


class GitHubPullsOptions(ProcessOptions):
    api_url: SourceURL = "https://api.github.com"
    token: SecretRef
    processes: list[PullsProcess] = Field(min_length=1)
    max_workers: int = Field(4, ge=1, le=16, description="concurrent pull-request reads")
    http: HttpOptions = Field(default_factory=HttpOptions)


class GitHubPullsConnector(Connector):
    type = "github_pulls"
    prefix = PREFIX
    Options: ClassVar[type[ConnectorOptions]] = GitHubPullsOptions

    options: GitHubPullsOptions

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        try:
            auth = token_auth("Bearer", opts.token.get())
        except SecretUnavailableError as exc:
            for p in opts.processes:
                for repo in p.repos:
                    yield Coverage(repo, GLOBAL, p.kind, ok=False, error=str(exc))
            return
        http = run_client(opts.api_url, auth, opts.http, ctx, API_HEADERS)
        specs = self.checks()
        with http:
            for process in opts.processes:
                checks = item_checks_for(specs, PREFIX, process.kind)
                for repo in process.repos:
                    if ctx.cancelled():
                        return
                    yield from run_unit(
                        repo,
                        process.kind,
                        lambda p=process, r=repo, c=checks: read_repo(
                            http, p, r, c, max_workers=opts.max_workers, cancelled=ctx.cancelled
                        ),
                        ctx.cancelled,
                        source="github_pulls",
                    )
