"""The Jira connector against a fake Jira (Cloud and Data Center) on tests/fakehttp.py.

The fake answers with the shapes of the real REST API: ``/rest/api/3/search/jql``
(``nextPageToken``/``isLast``), ``/rest/api/2/search`` (``startAt``/``maxResults``/
``total``, with or without ``isLast``), issues with ``expand=changelog`` whose embedded
changelog is capped at the 40 most recent histories like Jira Cloud's, the paged
``/rest/api/3/issue/{key}/changelog`` (``values``/``isLast``), and Data Center's full
``/rest/api/2/issue/{key}?expand=changelog``. It sends volatile fields (``updated``,
``watches``, ``lastViewed``) that must not reach the evidence, pages at a small server-side
size, checks the Authorization header, and injects faults per path (429, 5xx, malformed).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.jira import JiraConnector, JiraOptions
from connectors.process import period_bounds
from core.records import Evidence
from tests.fakehttp import FAST_HTTP, FakeHTTP, json_response, offset_page, token_page
from tests.harness import (
    by_check,
    coverage_by_service,
    evidence_by_id,
    run_built,
    run_engine,
    stream,
)

pytestmark = pytest.mark.clock

EMAIL = "annexa@acme.example"
TOKEN = "jira-api-token-0123456789abcdef"
PAT = "jira-dc-personal-access-token-0123456789"
NOW = datetime.now(UTC)
CLOUD_CAP = 40  # histories embedded by expand=changelog on Jira Cloud


def jts(text: str) -> str:
    """Jira's timestamp format: ``2026-01-05T10:00:00.000+0000``."""
    dt = datetime.fromisoformat(text).replace(tzinfo=UTC) if "T" in text else None
    assert dt is not None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def user(name: str) -> dict[str, Any]:
    return {
        "self": f"https://acme.atlassian.net/rest/api/3/user?accountId=acc-{name}",
        "accountId": f"acc-{name}",
        "displayName": name.title(),
        "active": True,
        "timeZone": "Europe/Berlin",
        "accountType": "atlassian",
        "avatarUrls": {"48x48": f"https://avatar.example/{name}.png"},
    }


STATUS_IDS = {
    "To Do": "10000",
    "Approved": "10001",
    "In Progress": "10002",
    "Done": "10003",
    "Resolved": "10004",
    "Reviewed": "10005",
}


@dataclass
class FakeIssue:
    key: str
    summary: str
    created: str
    reporter: str
    assignee: str | None = None
    status: str = "To Do"
    issuetype: str = "Task"
    priority: str | None = "Medium"
    severity: str | None = None  # customfield_10200 (a select list)
    labels: list[str] = field(default_factory=list)
    links: list[tuple[str, str, str]] = field(default_factory=list)  # (key, type, status)
    histories: list[dict[str, Any]] = field(default_factory=list)
    resolutiondate: str | None = None
    updated: str = ""

    def move(self, at: str, by: str, to: str) -> FakeIssue:
        """A workflow transition (one changelog history with a status item)."""
        self.histories.append(
            {
                "id": str(10_000 + len(self.histories)),
                "author": user(by),
                "created": jts(at),
                "items": [
                    {
                        "field": "status",
                        "fieldtype": "jira",
                        "fieldId": "status",
                        "from": STATUS_IDS[self.status],
                        "fromString": self.status,
                        "to": STATUS_IDS[to],
                        "toString": to,
                    }
                ],
            }
        )
        self.status = to
        if to in ("Done", "Resolved"):
            self.resolutiondate = jts(at)
        return self

    def noise(self, n: int, start: str, by: str = "bot") -> FakeIssue:
        """``n`` histories of fields the process does not track (description edits)."""
        t0 = datetime.fromisoformat(start)
        for i in range(n):
            self.histories.append(
                {
                    "id": str(10_000 + len(self.histories)),
                    "author": user(by),
                    "created": jts((t0 + timedelta(seconds=i)).isoformat()),
                    "items": [
                        {
                            "field": "description",
                            "fieldtype": "jira",
                            "fieldId": "description",
                            "from": None,
                            "fromString": f"v{i}",
                            "to": None,
                            "toString": f"v{i + 1}",
                        }
                    ],
                }
            )
        return self

    def as_json(self, base: str, changelog_cap: int | None) -> dict[str, Any]:
        links = []
        for i, (other, itype, status) in enumerate(self.links):
            links.append(
                {
                    "id": str(20_000 + i),
                    "type": {
                        "id": "10003",
                        "name": "Relates",
                        "inward": "relates to",
                        "outward": "relates to",
                    },
                    "outwardIssue": {
                        "id": str(30_000 + i),
                        "key": other,
                        "self": f"{base}/rest/api/3/issue/{other}",
                        "fields": {
                            "summary": f"Review of {self.key}",
                            "status": {"name": status, "id": STATUS_IDS.get(status, "1")},
                            "issuetype": {"name": itype, "id": "10050", "subtask": False},
                        },
                    },
                }
            )
        histories = self.histories
        if changelog_cap is not None and len(histories) > changelog_cap:
            histories = histories[-changelog_cap:]  # the most recent ones, like Cloud
        fields: dict[str, Any] = {
            "summary": self.summary,
            "status": {
                "self": f"{base}/rest/api/3/status/{STATUS_IDS[self.status]}",
                "name": self.status,
                "id": STATUS_IDS[self.status],
                "statusCategory": {"key": "done" if self.resolutiondate else "new"},
            },
            "issuetype": {"name": self.issuetype, "id": "10001", "subtask": False},
            "created": jts(self.created),
            "updated": self.updated or jts(NOW.replace(tzinfo=None).isoformat()),
            "resolutiondate": self.resolutiondate,
            "resolution": {"name": "Done", "id": "10000"} if self.resolutiondate else None,
            "reporter": user(self.reporter),
            "assignee": user(self.assignee) if self.assignee else None,
            "labels": list(self.labels),
            "issuelinks": links,
            "priority": {"name": self.priority, "id": "3"} if self.priority else None,
            "watches": {"watchCount": 3, "isWatching": False},
            "lastViewed": jts(NOW.replace(tzinfo=None).isoformat()),
        }
        if self.severity is not None:
            fields["customfield_10200"] = {"value": self.severity, "id": "10400"}
        return {
            "expand": "operations,versionedRepresentations,editmeta,changelog,renderedFields",
            "id": str(abs(hash(self.key)) % 100_000),
            "self": f"{base}/rest/api/3/issue/{self.key}",
            "key": self.key,
            "fields": fields,
            "changelog": {
                "startAt": 0,
                "maxResults": len(histories),
                "total": len(self.histories),
                "histories": histories,
            },
        }


class FakeJira(FakeHTTP):
    """A scriptable Jira REST API on the shared fake skeleton (tests/fakehttp.py).

    Shapes from Atlassian's REST API v3/v2 reference (search/jql, search, issue
    changelog); Cloud authenticates with Basic email:API token, Data Center with a
    Bearer personal access token; a refusal is 401 ``{"errorMessages": [...]}``.
    """

    def __init__(self, server: HTTPServer | None = None, *, deployment: str = "cloud") -> None:
        super().__init__(server)
        self.deployment = deployment
        self.issues: dict[str, FakeIssue] = {}
        self.page_cap = 2
        self.changelog_cap = 100
        self.v2_is_last = True  # Cloud's /rest/api/2/search sends isLast; DC does not
        self.route(r"/rest/api/3/search/jql", self._search_jql)
        self.route(r"/rest/api/2/search", self._search_v2)
        self.route(r"/rest/api/3/issue/([A-Z]+-\d+)/changelog", self._changelog)
        self.route(r"/rest/api/2/issue/([A-Z]+-\d+)", self._issue)

    def add(self, issue: FakeIssue) -> FakeIssue:
        self.issues[issue.key] = issue
        return issue

    # -- skeleton hooks

    def authorised(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.deployment == "cloud":
            expected = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
            return header == f"Basic {expected}"
        return header == f"Bearer {PAT}"

    def unauthorised(self, request: Request) -> Response:
        return json_response({"errorMessages": ["You are not authenticated."]}, 401)

    # -- routes

    def _select(self, jql: str) -> list[FakeIssue]:
        m = re.search(r"project\s*=\s*([A-Z]+)", jql)
        project = m[1] if m else ""
        return sorted(
            (i for i in self.issues.values() if i.key.startswith(project + "-")),
            key=lambda i: int(i.key.split("-")[1]),
        )

    @property
    def _cap(self) -> int | None:
        return CLOUD_CAP if self.deployment == "cloud" else None

    def _search_jql(self, request: Request, _: re.Match[str]) -> Response:
        args = request.args
        if self.deployment != "cloud":
            return json_response({"errorMessages": ["null for uri"]}, 404)
        if args.get("expand") != "changelog":
            return json_response({"errorMessages": ["test expects expand=changelog"]}, 400)
        size = min(int(args.get("maxResults", 50)), self.page_cap)
        chunk, token = token_page(
            self._select(args.get("jql", "")), args.get("nextPageToken"), size
        )
        body: dict[str, Any] = {
            "issues": [i.as_json(self.base, self._cap) for i in chunk],
            "isLast": token is None,
        }
        if token is not None:
            body["nextPageToken"] = token
        return json_response(body)

    def _search_v2(self, request: Request, _: re.Match[str]) -> Response:
        args = request.args
        issues = self._select(args.get("jql", ""))
        size = min(int(args.get("maxResults", 50)), self.page_cap)
        start = int(args.get("startAt", 0))
        chunk, last = offset_page(issues, start, size)
        body: dict[str, Any] = {
            "expand": "schema,names",
            "startAt": start,
            "maxResults": size,
            "total": len(issues),
            "issues": [i.as_json(self.base, self._cap) for i in chunk],
        }
        if self.v2_is_last:
            body["isLast"] = last
        return json_response(body)

    def _changelog(self, request: Request, m: re.Match[str]) -> Response:
        if self.deployment != "cloud":
            return json_response({"errorMessages": ["null for uri"]}, 404)
        issue = self.issues[m[1]]
        start = int(request.args.get("startAt", 0))
        size = min(int(request.args.get("maxResults", 50)), self.changelog_cap)
        values, last = offset_page(issue.histories, start, size)
        return json_response(
            {
                "self": f"{self.base}{request.path}?startAt={start}&maxResults={size}",
                "maxResults": size,
                "startAt": start,
                "total": len(issue.histories),
                "isLast": last,
                "values": values,
            }
        )

    def _issue(self, request: Request, m: re.Match[str]) -> Response:
        return json_response(self.issues[m[1]].as_json(self.base, None))


# --------------------------------------------------------------------------- planted data


def quarter_start(day: date, back: int) -> date:
    """Start of the quarter ``back`` quarters before the one containing ``day``."""
    start, _, _ = period_bounds(day, "quarterly")
    for _ in range(back):
        start, _, _ = period_bounds(start - timedelta(days=1), "quarterly")
    return start


def plant(jira: FakeJira, *, compliant: bool = False) -> dict[str, set[str]]:
    """Every process with compliant items and (unless ``compliant``) one planted problem
    each. Returns the failing ``check id → {resource ids}`` expected."""
    add = jira.add
    # Changes: To Do → Approved → In Progress → Done.
    add(FakeIssue("CHG-1", "Upgrade TLS on the edge", "2026-01-05T09:00:00", "alice", "bob"))
    jira.issues["CHG-1"].move("2026-01-05T10:00:00", "carol", "Approved").move(
        "2026-01-06T08:00:00", "bob", "In Progress"
    ).move("2026-01-06T09:00:00", "bob", "Done")
    add(FakeIssue("CHG-4", "Rotate DB credentials", "2026-02-01T09:00:00", "alice", "bob"))
    jira.issues["CHG-4"].move("2026-02-01T10:00:00", "carol", "Approved").move(
        "2026-02-02T10:00:00", "bob", "In Progress"
    )
    # Emergency changes: Done, then Reviewed after the fact within 5 days.
    add(FakeIssue("ECH-1", "Hotfix login outage", "2026-02-01T01:00:00", "bob", "bob"))
    jira.issues["ECH-1"].move("2026-02-01T02:00:00", "bob", "Done").move(
        "2026-02-03T10:00:00", "carol", "Reviewed"
    )
    # Incidents.
    inc1 = add(
        FakeIssue("INC-1", "API 5xx spike", "2026-03-01T08:00:00", "erin", "frank", priority="High")
    )
    inc1.links.append(("PIR-1", "Post-incident review", "Done"))
    inc1.move("2026-03-01T09:00:00", "frank", "In Progress").move(
        "2026-03-02T08:00:00", "frank", "Resolved"
    )
    # Vulnerabilities (severity in a custom select field).
    add(
        FakeIssue(
            "VUL-1",
            "CVE-2026-0001 in libfoo",
            "2026-04-01T09:00:00",
            "scanner",
            "gina",
            severity="Critical",
            priority=None,
        )
    ).move("2026-04-05T09:00:00", "gina", "Done")
    # Leavers.
    add(FakeIssue("LVR-1", "Leaver: Harry", "2026-05-01T09:00:00", "hr", "it")).move(
        "2026-05-02T09:00:00", "it", "Done"
    )
    # Access reviews: one completed in each of the last quarters (the middle one planted
    # missing unless compliant).
    today = NOW.date()
    for i, back in enumerate((3, 2, 1)):
        if back == 1 and not compliant:
            continue
        qs = quarter_start(today, back)
        when = f"{qs + timedelta(days=20)}T10:00:00"
        add(
            FakeIssue(
                f"AR-{i + 1}",
                f"Access review {qs}",
                f"{qs + timedelta(days=10)}T09:00:00",
                "grc",
                "ivan",
            )
        ).move(when, "ivan", "Done")
    if compliant:
        return {}
    # --- planted problems, one per check
    add(FakeIssue("CHG-2", "Firewall rule change", "2026-01-10T09:00:00", "alice", "bob"))
    jira.issues["CHG-2"].move("2026-01-10T10:00:00", "bob", "In Progress").move(
        "2026-01-10T11:00:00", "bob", "Done"
    ).move("2026-01-11T09:00:00", "carol", "Approved")  # approved after it was done
    add(FakeIssue("CHG-3", "Disable audit log", "2026-01-12T09:00:00", "alice", "dave"))
    jira.issues["CHG-3"].move("2026-01-12T10:00:00", "dave", "Approved").move(
        "2026-01-12T11:00:00", "dave", "Done"
    )  # self-approved
    add(FakeIssue("ECH-2", "Emergency DNS change", "2026-02-10T01:00:00", "bob", "bob"))
    jira.issues["ECH-2"].move("2026-02-10T02:00:00", "bob", "Done").move(
        "2026-02-20T10:00:00", "carol", "Reviewed"
    )  # reviewed after 10 days (> 5)
    add(
        FakeIssue("INC-2", "Slow reports", "2026-03-05T08:00:00", "erin", "frank", priority="Low")
    ).move("2026-03-05T09:00:00", "frank", "In Progress").move(
        "2026-03-25T09:00:00", "frank", "Resolved"
    )  # 20 days > 14 for Low
    add(
        FakeIssue(
            "INC-3",
            "Customer data exposed",
            "2026-03-10T08:00:00",
            "erin",
            "frank",
            priority="Highest",
        )
    ).move("2026-03-10T08:30:00", "frank", "In Progress").move(
        "2026-03-10T20:00:00", "frank", "Resolved"
    )  # within SLA, but no post-incident review linked
    add(
        FakeIssue(
            "VUL-2",
            "CVE-2026-0002 in libbar",
            "2026-04-01T09:00:00",
            "scanner",
            "gina",
            severity="High",
            priority=None,
        )
    ).move("2026-05-15T09:00:00", "gina", "Done")  # 44 days > 30
    add(FakeIssue("LVR-2", "Leaver: Iris", "2026-05-01T09:00:00", "hr", "it")).move(
        "2026-05-10T09:00:00", "it", "Done"
    )  # 9 days > 3
    return {
        "jira.change.approved_before_implemented": {"CHG-2"},
        "jira.change.approver_not_implementer": {"CHG-3"},
        "jira.emergency_change.reviewed_within_window": {"ECH-2"},
        "jira.incident.resolved_within_sla": {"INC-2"},
        "jira.incident.post_incident_review": {"INC-3"},
        "jira.vulnerability.closed_within_sla": {"VUL-2"},
        "jira.leaver.closed_within_sla": {"LVR-2"},
        "jira.access_review.every_period": {"access_review"},
    }


def processes() -> list[dict[str, Any]]:
    today = NOW.date()
    return [
        {
            "kind": "change",
            "jql": "project = CHG ORDER BY created",
            "approved_states": ["Approved"],
            "implemented_states": ["Done"],
            "resolved_states": ["Done"],
        },
        {
            "kind": "emergency_change",
            "jql": "project = ECH",
            "implemented_states": ["Done"],
            "reviewed_states": ["Reviewed"],
            "review_within_days": 5,
        },
        {
            "kind": "incident",
            "jql": "project = INC",
            "acknowledged_states": ["In Progress"],
            "resolved_states": ["Resolved", "Closed"],
            "severity_field": "priority",
            "sla_days": {"Highest": 1, "High": 3, "Medium": 7, "Low": 14},
            "ack_sla_hours": {"Highest": 1, "High": 4, "default": 24},
            "review_required_for": ["Highest", "High"],
        },
        {
            "kind": "vulnerability",
            "jql": "project = VUL",
            "resolved_states": ["Done"],
            "severity_field": "customfield_10200",
            "sla_days": {"Critical": 7, "High": 30, "default": 90},
        },
        {
            "kind": "access_review",
            "jql": "project = AR",
            "resolved_states": ["Done"],
            "review_period": "quarterly",
            "periods_from": quarter_start(today, 3).isoformat(),
        },
        {
            "kind": "leaver",
            "jql": "project = LVR",
            "resolved_states": ["Done"],
            "close_within_days": 3,
        },
    ]


# --------------------------------------------------------------------------- helpers


def options(jira: FakeJira, **extra: Any) -> JiraOptions:
    opts: dict[str, Any] = {
        "url": jira.base,
        "deployment": jira.deployment,
        "token": {"env": "ANNEXA_TEST_JIRA_TOKEN"},
        "processes": processes(),
        "page_size": 50,
        "http": FAST_HTTP,
    }
    if jira.deployment == "cloud":
        opts["email"] = EMAIL
    opts.update(extra)
    return JiraOptions.model_validate(opts)


def connector(jira: FakeJira, **extra: Any) -> JiraConnector:
    return JiraConnector("jira-test", options(jira, **extra))


@pytest.fixture
def jira(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJira]:
    monkeypatch.setenv("ANNEXA_TEST_JIRA_TOKEN", TOKEN)
    with FakeJira() as fake:
        yield fake


@pytest.fixture
def jira_dc(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJira]:
    monkeypatch.setenv("ANNEXA_TEST_JIRA_TOKEN", PAT)
    with FakeJira(deployment="datacenter") as fake:
        yield fake


# --------------------------------------------------------------------------- tests


def test_planted_problems_fail_exactly_their_checks_cloud_jql_paging(jira):
    expected = plant(jira)
    run = run_built(connector(jira))
    records = run.records
    assert {s: c.ok for s, c in coverage_by_service(records).items()} == {
        k: True
        for k in (
            "change",
            "emergency_change",
            "incident",
            "vulnerability",
            "access_review",
            "leaver",
        )
    }
    found = run.findings
    assert by_check(found) == expected
    assert by_check(found, "error") == {}
    passing = by_check(found, "pass")
    assert passing["jira.change.approved_before_implemented"] == {"CHG-1", "CHG-3"}
    assert passing["jira.change.approver_not_implementer"] == {"CHG-1", "CHG-2", "CHG-4"}
    assert passing["jira.emergency_change.reviewed_within_window"] == {"ECH-1"}
    assert passing["jira.incident.resolved_within_sla"] == {"INC-1", "INC-3"}
    assert passing["jira.incident.acknowledged_within_sla"] == {"INC-1", "INC-2", "INC-3"}
    assert passing["jira.incident.post_incident_review"] == {"INC-1"}
    assert passing["jira.vulnerability.closed_within_sla"] == {"VUL-1"}
    assert passing["jira.leaver.closed_within_sla"] == {"LVR-1"}
    na = by_check(found, "not_applicable")
    assert na["jira.change.approved_before_implemented"] == {"CHG-4"}  # not done yet
    assert na["jira.incident.post_incident_review"] == {"INC-2"}  # low severity
    # Paged with nextPageToken at 2 issues a page: CHG has 4 issues → 2 requests.
    assert jira.count("/rest/api/3/search/jql") == 2 + 1 + 2 + 1 + 1 + 1
    assert jira.count("/rest/api/2/search") == 0
    missing = next(f for f in found if f.check_id == "jira.access_review.every_period")
    q = period_bounds(quarter_start(NOW.date(), 1), "quarterly")[2]
    assert q in missing.message


def test_compliant_estate_passes(jira):
    plant(jira, compliant=True)
    found = run_built(connector(jira)).findings
    assert by_check(found) == {} and by_check(found, "error") == {}
    assert by_check(found, "pass")["jira.access_review.every_period"] == {"access_review"}


def test_offset_paging_with_is_last_gives_the_same_verdicts(jira):
    expected = plant(jira)
    run = run_built(connector(jira, search_api="offset"))
    assert by_check(run.findings) == expected
    assert jira.count("/rest/api/3/search/jql") == 0
    assert jira.count("/rest/api/2/search") == 2 + 1 + 2 + 1 + 1 + 1


def test_evidence_is_snapshot_plus_sorted_history_without_volatile_fields(jira):
    plant(jira)
    ev = evidence_by_id(stream(connector(jira)), ".ticket")
    chg2 = ev["CHG-2"]
    assert chg2.resource_type == "jira.change.ticket" and chg2.scope.startswith("127.0.0.1")
    p = chg2.payload
    body = chg2.body()
    for volatile in ("updated", "watchCount", "lastViewed", "avatar"):
        assert volatile not in body
    assert p["ticket"]["title"] == "Firewall rule change"
    assert p["ticket"]["requested_by"] == {"id": "acc-alice", "name": "Alice"}
    assert [(h["at"], h["by"]["id"], h["to"]) for h in p["history"]] == [
        ("2026-01-10T10:00:00Z", "acc-bob", "In Progress"),
        ("2026-01-10T11:00:00Z", "acc-bob", "Done"),
        ("2026-01-11T09:00:00Z", "acc-carol", "Approved"),
    ]
    d = p["derived"]
    assert d["approved_at"] == "2026-01-11T09:00:00Z"
    assert d["implemented_at"] == "2026-01-10T11:00:00Z"
    assert [x["id"] for x in d["approved_by"]] == ["acc-carol"]
    assert [x["id"] for x in d["implemented_by"]] == ["acc-bob"]
    # Reading twice gives byte-identical evidence (the fake's volatile fields differ).
    again = evidence_by_id(stream(connector(jira)), ".ticket")
    assert {k: e.content_hash() for k, e in again.items()} == {
        k: e.content_hash() for k, e in ev.items()
    }
    # The population summary counts every check's outcomes.
    summary = evidence_by_id(stream(connector(jira)), ".population")["change"].payload
    assert summary["items"] == 4
    assert summary["checks"]["jira.change.approved_before_implemented"]["failing"] == ["CHG-2"]


def test_ten_thousand_changelog_entries_are_paged_and_filtered(jira):
    """A ticket with 10,000 changelog entries: the embedded changelog is capped at 40, so
    the connector reads all 100 pages of /changelog, keeps only the tracked fields, and
    judges from the full history (the approval is entry 3 of 10,000)."""
    big = jira.add(FakeIssue("CHG-7", "Busy change", "2026-01-02T09:00:00", "alice", "bob"))
    big.move("2026-01-02T10:00:00", "carol", "Approved")
    big.noise(9_997, "2026-01-02T11:00:00")
    big.move("2026-01-30T09:00:00", "bob", "In Progress").move("2026-01-30T10:00:00", "bob", "Done")
    assert len(big.histories) == 10_000
    run = run_built(connector(jira, processes=[processes()[0]]))
    records = run.records
    assert coverage_by_service(records)["change"].ok
    ev = evidence_by_id(records, ".ticket")["CHG-7"]
    assert [h["to"] for h in ev.payload["history"]] == ["Approved", "In Progress", "Done"]
    assert jira.count("/rest/api/3/issue/CHG-7/changelog") == 100
    verdicts = {f.check_id: f.status for f in run.findings}
    assert verdicts["jira.change.approved_before_implemented"] == "pass"
    # Above max_changelog_entries the history is not read: error for this item only.
    jira.add(FakeIssue("CHG-8", "Fine", "2026-01-03T09:00:00", "alice", "bob")).move(
        "2026-01-03T10:00:00", "carol", "Approved"
    ).move("2026-01-03T11:00:00", "bob", "Done")
    run = run_built(connector(jira, processes=[processes()[0]], max_changelog_entries=5_000))
    records = run.records
    assert coverage_by_service(records)["change"].ok
    errors = by_check(run.findings, "error")
    assert errors == {
        "jira.change.approved_before_implemented": {"CHG-7"},
        "jira.change.approver_not_implementer": {"CHG-7"},
    }
    chg7 = evidence_by_id(records, ".ticket")["CHG-7"].payload
    assert "10000 changelog entries" in chg7["_errors"]["history"]


def test_429_and_5xx_are_retried_and_the_run_finishes(jira):
    expected = plant(jira)
    jira.fault("/rest/api/3/search/jql", (429, "{}", {"Retry-After": "0"}), (503, "", {}))
    jira.fault("/rest/api/3/issue/CHG-1/changelog", (502, "bad gateway", {}))
    jira.issues["CHG-1"].noise(45, "2026-01-07T00:00:00")  # forces a /changelog read
    run = run_built(connector(jira))
    records = run.records
    assert all(c.ok for c in coverage_by_service(records).values())
    assert by_check(run.findings) == expected


def test_persistent_5xx_is_an_error_for_that_process_only(jira):
    expected = plant(jira)
    jira.fault("/rest/api/3/search/jql", *[(500, "{}", {})] * 4)  # first process: change
    run = run_built(connector(jira))
    records = run.records
    cov = coverage_by_service(records)
    assert not cov["change"].ok and "HTTP 500" in (cov["change"].error or "")
    assert all(c.ok for k, c in cov.items() if k != "change")
    found = run.findings
    errs = by_check(found, "error")
    assert set(errs) == {
        "jira.change.approved_before_implemented",
        "jira.change.approver_not_implementer",
    }
    fails = by_check(found)
    assert fails == {k: v for k, v in expected.items() if not k.startswith("jira.change.")}


def test_malformed_payloads(jira):
    plant(jira)
    # A page that is not JSON: the process unit errors (not retried: it is not transient).
    jira.fault("/rest/api/3/search/jql", (200, "{not json", {}))
    run = run_built(connector(jira))
    records = run.records
    assert "malformed JSON" in (coverage_by_service(records)["change"].error or "")
    assert coverage_by_service(records)["incident"].ok
    # A changelog page that is malformed: that item's history errors, the unit is fine.
    jira.issues["CHG-1"].noise(45, "2026-01-07T00:00:00")
    jira.fault("/rest/api/3/issue/CHG-1/changelog", (200, '{"values": 5}', {}))
    run = run_built(connector(jira))
    records = run.records
    assert coverage_by_service(records)["change"].ok
    errs = by_check(run.findings, "error")
    assert errs["jira.change.approved_before_implemented"] == {"CHG-1"}
    # An issue without a key: the readable ones are stored, the unit ends in error.
    bad = json.dumps({"issues": [{"id": "1", "fields": {}}], "isLast": True})
    jira.fault("/rest/api/3/search/jql", (200, bad, {}))
    run = run_built(connector(jira))
    records = run.records
    assert "1 issue(s) could not be read" in (coverage_by_service(records)["change"].error or "")


def test_data_center_bearer_pat_offset_paging_and_full_changelog(jira_dc):
    jira_dc.v2_is_last = False  # DC pages by total only
    expected = plant(jira_dc)
    big = jira_dc.issues["CHG-1"]
    big.noise(150, "2026-01-07T00:00:00")
    run = run_built(connector(jira_dc))
    records = run.records
    assert all(c.ok for c in coverage_by_service(records).values())
    assert by_check(run.findings) == expected
    assert jira_dc.count("/rest/api/2/search") == 2 + 1 + 2 + 1 + 1 + 1
    assert jira_dc.count("/rest/api/3/") == 0
    chg1 = evidence_by_id(records, ".ticket")["CHG-1"].payload
    assert chg1["ticket"]["requested_by"]["id"] == "acc-alice"


def test_token_never_stored_or_in_errors(jira):
    plant(jira)
    jira.fault("/rest/api/3/search/jql", *[(500, json.dumps({"message": TOKEN}), {})] * 4)
    records = stream(connector(jira))
    text = " ".join(
        e.body() if isinstance(e, Evidence) else str(getattr(e, "error", "")) for e in records
    )
    assert TOKEN not in text and base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode() not in text


def test_wrong_credentials_error_every_process(jira, monkeypatch):
    plant(jira)
    monkeypatch.setenv("ANNEXA_TEST_JIRA_TOKEN", "wrong-token-123456")
    cov = coverage_by_service(stream(connector(jira)))
    assert len(cov) == 6 and not any(c.ok for c in cov.values())
    assert all("401" in (c.error or "") for c in cov.values())
    monkeypatch.delenv("ANNEXA_TEST_JIRA_TOKEN")
    cov = coverage_by_service(stream(connector(jira)))
    assert all("ANNEXA_TEST_JIRA_TOKEN" in (c.error or "") for c in cov.values())


def test_options_validation(jira):
    with pytest.raises(ValueError, match="approved_states"):
        options(jira, processes=[{"kind": "change", "jql": "x", "implemented_states": ["Done"]}])
    with pytest.raises(ValueError, match="severity_field, sla_days"):
        options(jira, processes=[{"kind": "incident", "jql": "x", "resolved_states": ["Done"]}])
    with pytest.raises(ValueError, match="review_period, periods_from"):
        options(jira, processes=[{"kind": "access_review", "jql": "x", "resolved_states": ["D"]}])
    with pytest.raises(ValueError, match="two processes of kind"):
        options(jira, processes=[processes()[0], processes()[0]])
    with pytest.raises(ValueError, match="search/jql"):
        options(jira, deployment="datacenter", search_api="jql")
    with pytest.raises(ValueError, match="http://"):
        options(jira, url="http://jira.example.com")
    with pytest.raises(ValueError, match="kind"):
        options(jira, processes=[{"kind": "deploy", "jql": "x"}])


def iter_specs() -> Iterator[Any]:
    yield from JiraConnector.checks()


def test_every_jira_check_is_documented():
    specs = list(iter_specs())
    assert len(specs) == 17
    for s in specs:
        assert s.title and s.rationale and s.remediation and s.severity
        assert s.resource_type.split(".")[1] in {
            "change",
            "emergency_change",
            "incident",
            "vulnerability",
            "access_review",
            "leaver",
            "dr_test",
            "internal_audit",
            "nonconformity",
            "management_review",
        }


def test_process_checks_on_payloads():
    """The shared process checks on hand-made payloads: pending, missing and edge cases."""
    from connectors.process import (
        ProcessBase,
        approved_before_implemented,
        approver_not_implementer,
        derive,
        every_period,
        history_entry,
        period_bounds,
        post_incident_review,
        resolved_within_sla,
        reviewed_within_window,
    )

    def p(person_id):
        return {"id": person_id, "name": None}

    soon = (NOW + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    change = ProcessBase(kind="change", approved_states=["Approved"], implemented_states=["Done"])
    ticket = {
        "key": "X-1",
        "created": "2026-01-01T00:00:00Z",
        "status": "Done",
        "requested_by": p("req"),
        "assignee": p("dev"),
        "links": [],
    }
    moves = [
        history_entry(at="2026-01-02T00:00:00Z", by=p("dev"), field="status", to="Done"),
        history_entry(at="2026-01-01T12:00:00Z", by=p("req"), field="status", to="Approved"),
    ]
    from connectors.process import sort_history

    d = derive(change, ticket, sort_history(moves), state_fields=["status"])
    payload = {"ticket": ticket, "derived": d}
    assert approved_before_implemented(payload, {}).status == "pass"
    # The requester approved it: not independent unless requester_may_approve.
    assert approver_not_implementer(payload, {}).status == "fail"
    lenient = change.model_copy(update={"requester_may_approve": True})
    d2 = derive(lenient, ticket, sort_history(moves), state_fields=["status"])
    assert approver_not_implementer({"ticket": ticket, "derived": d2}, {}).status == "pass"
    # Created directly in Done with no transition at all: implemented at creation.
    d3 = derive(change, ticket, [], state_fields=["status"])
    assert d3["implemented_at"] == "2026-01-01T00:00:00Z"
    assert approved_before_implemented({"ticket": ticket, "derived": d3}, {}).status == "fail"
    # History unreadable → error (EvidenceMissing), never pass/fail.
    with pytest.raises(KeyError, match="could not be read"):
        approved_before_implemented({**payload, "_errors": {"history": "HTTP 500"}}, {})

    # Emergency change implemented, review not yet due → not applicable; overdue → fail.
    base = {
        "kind": "emergency_change",
        "implemented_at": "2026-01-01T00:00:00Z",
        "reviewed_at": None,
        "review_due_at": soon,
    }
    assert reviewed_within_window({"derived": base}, {}).status == "not_applicable"
    late = {**base, "review_due_at": "2026-01-06T00:00:00Z"}
    assert reviewed_within_window({"derived": late}, {}).status == "fail"

    # Incidents: no severity → fail; an undeclared severity → error; open within SLA → n/a.
    inc = {"kind": "incident", "severity": None, "due_at": None, "resolved_at": None}
    assert resolved_within_sla({"derived": inc}, {}).status == "fail"
    with pytest.raises(KeyError, match="no SLA is declared"):
        resolved_within_sla({"derived": {**inc, "severity": "P9"}}, {})
    open_inc = {**inc, "severity": "High", "due_at": soon}
    assert resolved_within_sla({"derived": open_inc}, {}).status == "not_applicable"
    pir = {
        "review_required": True,
        "reviews": [],
        "resolved_at": "2026-01-01T00:00:00Z",
        "review_due_at": soon,
        "severity": "High",
    }
    assert post_incident_review({"derived": pir}, {}).status == "not_applicable"  # grace

    # Access review periods.
    assert period_bounds(date(2026, 5, 17), "quarterly")[2] == "2026-Q2"
    assert period_bounds(date(2026, 5, 17), "semiannual")[1] == date(2026, 6, 30)
    assert period_bounds(date(2026, 12, 3), "monthly")[:2] == (
        date(2026, 12, 1),
        date(2026, 12, 31),
    )
    assert (
        every_period({"periods": [{"period": "2026-Q4", "status": "in_progress"}]}, {}).status
        == "not_applicable"
    )
    assert (
        every_period(
            {
                "periods": [
                    {"period": "2026-Q1", "status": "completed"},
                    {"period": "2026-Q2", "status": "missing"},
                ]
            },
            {},
        ).status
        == "fail"
    )


# --------------------------------------------------------------------------- new kinds


def _ago(days: float) -> str:
    """A fake-issue timestamp ``days`` before now (naive UTC ``YYYY-MM-DDTHH:MM:SS``)."""
    return (NOW - timedelta(days=days)).replace(tzinfo=None, microsecond=0).isoformat()


def _at(day: date, hour: int = 9) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00"


def continuity_processes() -> list[dict[str, Any]]:
    today = NOW.date()
    return [
        {
            "kind": "dr_test",
            "jql": "project = DR",
            "resolved_states": ["Done"],
            "review_period": "quarterly",
            "periods_from": quarter_start(today, 3).isoformat(),
            "close_within_days": 30,
        },
        {
            "kind": "internal_audit",
            "jql": "project = IA",
            "resolved_states": ["Done"],
            "review_period": "annual",
            "periods_from": date(today.year - 1, 1, 1).isoformat(),
            "close_within_days": 90,
        },
        {
            "kind": "nonconformity",
            "jql": "project = NC",
            "resolved_states": ["Done"],
            "severity_field": "priority",
            "sla_days": {"Major": 30, "Minor": 90, "default": 60},
        },
    ]


def test_dr_test_internal_audit_and_nonconformity_processes(jira):
    """Planted good and bad DR tests, internal audits and nonconformities; the exact fail
    set through the run engine. DR tests: one per quarter (the last ended quarter has
    none), each done within 30 days; internal audits: one per year, done within 90 days;
    nonconformities: corrected within the deadline of their severity."""
    today = NOW.date()
    add = jira.add
    q3, q2 = quarter_start(today, 3), quarter_start(today, 2)
    add(FakeIssue("DR-1", "DR test: restore ERP", _at(q3 + timedelta(days=5)), "bcm", "ops"))
    jira.issues["DR-1"].move(_at(q3 + timedelta(days=20)), "ops", "Done")
    add(FakeIssue("DR-2", "DR test: fail over DB", _at(q2 + timedelta(days=2)), "bcm", "ops"))
    jira.issues["DR-2"].move(_at(q2 + timedelta(days=60)), "ops", "Done")  # 58 days > 30
    # The last ended quarter has no completed DR test.
    last_year = date(today.year - 1, 3, 1)
    add(FakeIssue("IA-1", "Internal audit: ISMS", _at(last_year), "audit", "auditor"))
    jira.issues["IA-1"].move(_at(last_year + timedelta(days=40)), "auditor", "Done")
    add(FakeIssue("IA-2", "Internal audit: suppliers", _ago(200), "audit", "auditor"))  # open
    add(FakeIssue("IA-3", "Internal audit: HR", _ago(10), "audit", "auditor"))  # open, in time
    add(
        FakeIssue(
            "NC-1", "Access review late", "2026-01-05T09:00:00", "audit", "it", priority="Major"
        )
    )
    jira.issues["NC-1"].move("2026-01-15T09:00:00", "it", "Done")  # 10 days <= 30
    add(
        FakeIssue(
            "NC-2", "Backups untested", "2026-02-01T09:00:00", "audit", "it", priority="Major"
        )
    )
    jira.issues["NC-2"].move("2026-03-20T09:00:00", "it", "Done")  # 47 days > 30
    add(FakeIssue("NC-3", "Policy unsigned", _ago(100), "audit", "hr", priority="Minor"))  # open
    add(FakeIssue("NC-4", "Training overdue", _ago(20), "audit", "hr", priority="Minor"))  # open
    options = {
        "url": jira.base,
        "deployment": "cloud",
        "email": EMAIL,
        "token": {"env": "ANNEXA_TEST_JIRA_TOKEN"},
        "processes": continuity_processes(),
        "http": {"max_attempts": 2, "retry_min_wait": 0.0, "retry_max_wait": 0.01},
    }
    run = run_engine("jira", options)
    run.assert_fails_exactly({
        ("jira.dr_test.closed_within_sla", "DR-2"),
        ("jira.dr_test.every_period", "dr_test"),
        ("jira.internal_audit.closed_within_sla", "IA-2"),
        ("jira.nonconformity.closed_within_sla", "NC-2"),
        ("jira.nonconformity.closed_within_sla", "NC-3"),
    })
    assert run.ids("pass") >= {
        ("jira.dr_test.closed_within_sla", "DR-1"),
        ("jira.internal_audit.closed_within_sla", "IA-1"),
        ("jira.internal_audit.every_period", "internal_audit"),
        ("jira.nonconformity.closed_within_sla", "NC-1"),
    }
    missing = run.one("jira.dr_test.every_period", "dr_test").message
    assert "no disaster-recovery / continuity test completed in" in missing
    assert "A.5.30" in run.one("jira.dr_test.every_period", "dr_test").controls
    assert "A.5.35" in run.one("jira.internal_audit.every_period", "internal_audit").controls
    assert "A.5.36" in run.one("jira.nonconformity.closed_within_sla", "NC-2").controls


def test_new_kinds_need_their_periods_and_deadlines(jira):
    for proc, missing in (
        ({"kind": "dr_test", "jql": "x", "resolved_states": ["Done"]}, "review_period"),
        (
            {
                "kind": "internal_audit",
                "jql": "x",
                "resolved_states": ["Done"],
                "review_period": "annual",
                "periods_from": "2026-01-01",
            },
            "close_within_days",
        ),
        ({"kind": "nonconformity", "jql": "x", "resolved_states": ["Done"]}, "severity_field"),
    ):
        with pytest.raises(ValueError, match=missing):
            options(jira, processes=[proc])
