"""Jira issues of one process: search by JQL, complete the changelog, build the evidence.

API calls (all reads):

* Cloud, ``search_api = "jql"`` (default): ``GET /rest/api/3/search/jql?jql=…&fields=…
  &expand=changelog&maxResults=N`` following ``nextPageToken`` until ``isLast``.
* Data Center (or Cloud with ``search_api = "offset"``): ``GET /rest/api/2/search`` with
  ``startAt``/``maxResults``, stopping on ``isLast`` or ``total``.
* The changelog embedded by ``expand=changelog`` is capped by Jira Cloud (40 to 100 most
  recent histories). When ``changelog.total`` exceeds what came back, the full history is
  read from ``GET /rest/api/3/issue/{key}/changelog`` (``startAt``/``isLast`` pages of
  100) on Cloud, or ``GET /rest/api/2/issue/{key}?expand=changelog`` on Data Center
  (which returns the whole changelog).

Only the history of the fields that carry process meaning is kept — status,
resolution, assignee, the severity field and ``tracked_fields`` — so description edits
or comments neither bloat the evidence nor create new versions. A changelog longer than
``max_changelog_entries`` is not read: the item is stored with ``_errors.history`` and
its history-based checks are ``error`` (never a pass or fail on a partial history).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from connectors.http import HttpClient, MalformedResponseError, SourceError
from connectors.kit import batches
from connectors.process import (
    ProcessBase,
    TicketReader,
    history_entry,
    iso,
    person,
    stream_population,
)
from core.checks import CheckSpec
from core.records import Evidence

#: Changelog fields always kept (matched by field id or name, case-insensitively).
BASE_TRACKED = ("status", "resolution", "assignee")
#: The history fields whose target value is a workflow state.
STATE_FIELDS = ("status",)
BASE_FIELDS = (
    "summary",
    "status",
    "issuetype",
    "created",
    "resolutiondate",
    "resolution",
    "reporter",
    "assignee",
    "labels",
    "issuelinks",
    "priority",
)


@dataclass(frozen=True)
class JiraReadSettings:
    """What the readers need from the connector options (kept small for tests)."""

    base_url: str
    deployment: str
    search_api: str
    page_size: int
    changelog_page_size: int
    max_changelog_entries: int
    tracked_fields: tuple[str, ...]
    system_users: tuple[str, ...]
    max_workers: int


def jira_person(user: Any) -> dict[str, Any] | None:
    """Cloud users are identified by ``accountId``; Data Center by ``name`` (or ``key``)."""
    if not isinstance(user, Mapping):
        return None
    pid = user.get("accountId") or user.get("name") or user.get("key")
    return person(pid, user.get("displayName"))


def field_label(value: Any) -> str | None:
    """A readable label of a field value: priority/status ``name``, select ``value``…"""
    if value is None or value == "":
        return None
    if isinstance(value, Mapping):
        for key in ("name", "value", "displayName", "key"):
            if value.get(key) not in (None, ""):
                return str(value[key])
        return None
    if isinstance(value, list):
        labels = [label for v in value if (label := field_label(v))]
        return ", ".join(labels) or None
    return str(value)


def _links(fields: Mapping[str, Any], review_types: frozenset[str]) -> list[dict[str, Any]]:
    out = []
    for link in fields.get("issuelinks") or []:
        if not isinstance(link, Mapping):
            continue
        other = link.get("outwardIssue") or link.get("inwardIssue")
        if not isinstance(other, Mapping) or not other.get("key"):
            continue
        ofields = other.get("fields") if isinstance(other.get("fields"), Mapping) else {}
        issue_type = field_label(ofields.get("issuetype"))
        out.append(
            {
                "key": str(other["key"]),
                "type": field_label(link.get("type")),
                "issue_type": issue_type,
                "status": field_label(ofields.get("status")),
                "review": bool(issue_type and issue_type.casefold() in review_types),
            }
        )
    return sorted(out, key=lambda x: (x["key"], x["type"] or ""))


def changelog_entries(
    histories: list[Any], tracked: frozenset[str]
) -> tuple[list[dict[str, Any]], str | None]:
    """History entries of the tracked fields; a malformed entry is reported, not guessed."""
    out: list[dict[str, Any]] = []
    for h in histories:
        if not isinstance(h, Mapping) or not isinstance(h.get("items"), list):
            return out, "a changelog entry has no items list"
        by = jira_person(h.get("author"))
        for item in h["items"]:
            if not isinstance(item, Mapping):
                continue
            fid = str(item.get("fieldId") or "").casefold()
            fname = str(item.get("field") or "").casefold()
            if fid not in tracked and fname not in tracked:
                continue
            try:
                out.append(
                    history_entry(
                        at=h.get("created"),
                        by=by,
                        field="status" if "status" in (fid, fname) else (fid or fname),
                        frm=item.get("fromString"),
                        to=item.get("toString"),
                        to_value=item.get("to"),
                        entry_id=h.get("id"),
                    )
                )
            except (TypeError, ValueError):
                return out, f"changelog entry {h.get('id')!r} has no valid created time"
    return out, None


class IssueReader(TicketReader):
    """Reads one process's issues and turns each into evidence (thread-safe)."""

    prefix = "jira"
    state_fields = STATE_FIELDS
    s: JiraReadSettings

    def __init__(
        self,
        http: HttpClient,
        settings: JiraReadSettings,
        process: Any,
        scope: str,
    ) -> None:
        super().__init__(http, settings, process, scope)
        self.severity_field = getattr(process, "severity_field", None)
        tracked = {*BASE_TRACKED, *(f.casefold() for f in settings.tracked_fields)}
        if self.severity_field:
            tracked.add(self.severity_field.casefold())
        self.tracked = frozenset(tracked)
        self.review_types = frozenset(t.casefold() for t in process.review_issue_types)

    # -- search

    def fields(self) -> str:
        extra = [self.severity_field] if self.severity_field else []
        extra += list(self.process.risk_fields.values())
        return ",".join(dict.fromkeys([*BASE_FIELDS, *extra]))

    def search(self) -> Iterator[Any]:
        params = {"jql": self.process.jql, "fields": self.fields(), "expand": "changelog"}
        if self.s.search_api == "jql":
            yield from self.http.paginate_cursor(
                "/rest/api/3/search/jql",
                params={**params, "maxResults": self.s.page_size},
                items_key="issues",
                cursor_param="nextPageToken",
                cursor_key="nextPageToken",
                last_key="isLast",
            )
        else:
            yield from self.http.paginate_offset(
                "/rest/api/2/search",
                params=params,
                items_key="issues",
                page_size=self.s.page_size,
                last_key="isLast",
                total_key="total",
            )

    # -- changelog

    def full_changelog(self, key: str, total: int) -> list[Any]:
        """Every history of ``key`` (Cloud: paged endpoint; Data Center: issue expand)."""
        qkey = quote(key, safe="")
        if self.s.deployment == "cloud":
            return list(
                self.http.paginate_offset(
                    f"/rest/api/3/issue/{qkey}/changelog",
                    items_key="values",
                    page_size=self.s.changelog_page_size,
                    last_key="isLast",
                    total_key="total",
                )
            )
        body = self.http.get_json(
            f"/rest/api/2/issue/{qkey}", params={"fields": "status", "expand": "changelog"}
        )
        histories = (
            (body.get("changelog") or {}).get("histories") if isinstance(body, Mapping) else None
        )
        if not isinstance(histories, list):
            raise MalformedResponseError(f"issue {key} came back without its changelog")
        if len(histories) < total:
            raise MalformedResponseError(
                f"issue {key}: Data Center returned {len(histories)} of {total} changelog entries"
            )
        return histories

    # -- one issue

    def build(self, issue: Any) -> Evidence | str:
        """The evidence of ``issue``, or a short reason why it cannot be read at all."""
        if not isinstance(issue, Mapping) or not isinstance(issue.get("key"), str):
            return "an issue without a key"
        key = issue["key"]
        fields = issue.get("fields")
        if not isinstance(fields, Mapping):
            return f"issue {key} without fields"
        errors: dict[str, str] = {}
        history: list[dict[str, Any]] = []
        changelog = issue.get("changelog")
        if not isinstance(changelog, Mapping) or not isinstance(changelog.get("histories"), list):
            errors["history"] = "the search did not return the changelog (expand=changelog)"
        else:
            histories = changelog["histories"]
            total = changelog.get("total")
            total = (
                total if isinstance(total, int) and not isinstance(total, bool) else len(histories)
            )
            if total > self.s.max_changelog_entries:
                errors["history"] = (
                    f"{total} changelog entries, more than max_changelog_entries="
                    f"{self.s.max_changelog_entries}; not read"
                )
            else:
                if total > len(histories):
                    try:
                        histories = self.full_changelog(key, total)
                    except SourceError as exc:
                        errors["history"] = str(exc)
                        histories = []
                history, problem = changelog_entries(histories, self.tracked)
                if problem:
                    errors["history"] = problem
        return self.evidence(key, self.ticket(key, issue, fields, errors), history, errors)

    def ticket(
        self, key: str, issue: Mapping[str, Any], fields: Mapping[str, Any], errors: dict[str, str]
    ) -> dict[str, Any]:
        def ts(name: str) -> str | None:
            try:
                return iso(fields.get(name))
            except (TypeError, ValueError):
                errors[name] = f"unreadable timestamp {fields.get(name)!r}"
                return None

        status = fields.get("status") if isinstance(fields.get("status"), Mapping) else {}
        labels = fields.get("labels") if isinstance(fields.get("labels"), list) else []
        extra: dict[str, Any] = {}
        if self.process.risk_fields:
            # Kind "risk": the register's fields by their register names (store.risks).
            extra["risk"] = {
                name: field_label(fields.get(fid))
                for name, fid in sorted(self.process.risk_fields.items())
            }
        return extra | {
            "key": key,
            "id": None if issue.get("id") is None else str(issue["id"]),
            "title": fields.get("summary") if isinstance(fields.get("summary"), str) else None,
            "url": f"{self.s.base_url}/browse/{key}",
            "type": field_label(fields.get("issuetype")),
            "status": field_label(status),
            "status_value": None if status.get("id") is None else str(status["id"]),
            "resolution": field_label(fields.get("resolution")),
            "severity": field_label(fields.get(self.severity_field))
            if self.severity_field
            else None,
            "created": ts("created"),
            "resolved": ts("resolutiondate"),
            "requested_by": jira_person(fields.get("reporter")),
            "assignee": jira_person(fields.get("assignee")),
            "labels": sorted(str(x) for x in labels),
            "links": _links(fields, self.review_types),
        }


def read_process(
    http: HttpClient,
    settings: JiraReadSettings,
    process: ProcessBase,
    scope: str,
    item_checks: list[CheckSpec],
    cancelled: Callable[[], bool],
) -> Iterator[Evidence]:
    """Every issue of the process as evidence, then the population summary.

    Issues that cannot be read at all (no key, no fields) are counted; if any, the unit
    ends with an error after everything readable was yielded, so nothing is closed by
    absence and the process's checks show ``error`` until they read cleanly.
    """
    reader = IssueReader(http, settings, process, scope)
    with ThreadPoolExecutor(
        max_workers=settings.max_workers, thread_name_prefix="jira-changelog"
    ) as pool:
        pages = (
            pool.map(reader.build, page) for page in batches(reader.search(), settings.page_size)
        )
        yield from stream_population(
            process, item_checks, pages, cancelled,
            scope=scope, resource_type=f"jira.{process.kind}.population", noun="issue",
        )
