"""The ServiceNow connector against a fake Table API on tests/fakehttp.py.

The fake answers like the real ``/api/now/table/{table}``: ``{"result": [...]}`` pages
driven by ``sysparm_offset``/``sysparm_limit`` (with ``X-Total-Count`` and ``Link``
headers), encoded queries (``field=value``, ``!=``, ``IN``, ``ORDERBY``, joined with
``^``), ``sysparm_fields`` with dot-walking (``assigned_to.user_name``), and
``sysparm_display_value=all`` answers of ``{"display_value", "value"}`` pairs whose date
display values are in the user's time zone (so using them would be wrong). ``sys_audit``
holds field changes by user name, ``sysapproval_approver`` the approvals, ``sys_choice``
the state labels. It checks basic or bearer auth and injects faults per table.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.process import period_bounds
from connectors.servicenow import ServiceNowConnector, ServiceNowOptions
from core.records import Evidence
from tests.fakehttp import FAST_HTTP, FakeHTTP, json_response
from tests.harness import (
    by_check,
    coverage_by_service,
    evidence_by_id,
    run_built,
    run_engine,
    stream,
)

pytestmark = pytest.mark.clock

USER = "annexa.integration"
PASSWORD = "sn-password-0123456789-secret"
OAUTH = "sn-oauth-bearer-token-0123456789abcdef"
NOW = datetime.now(UTC)

CHOICES: dict[tuple[str, str], dict[str, str]] = {
    ("change_request", "state"): {
        "-5": "New",
        "-4": "Assess",
        "-3": "Authorize",
        "-2": "Scheduled",
        "-1": "Implement",
        "0": "Review",
        "3": "Closed",
        "4": "Canceled",
    },
    ("task", "state"): {
        "1": "Open",
        "2": "Work in Progress",
        "3": "Closed Complete",
        "4": "Closed Incomplete",
        "7": "Closed Skipped",
    },
    ("incident", "state"): {
        "1": "New",
        "2": "In Progress",
        "3": "On Hold",
        "6": "Resolved",
        "7": "Closed",
        "8": "Canceled",
    },
    ("sn_vul_vulnerable_item", "state"): {"1": "Open", "2": "Under Investigation", "3": "Closed"},
    ("incident", "priority"): {
        "1": "1 - Critical",
        "2": "2 - High",
        "3": "3 - Moderate",
        "4": "4 - Low",
        "5": "5 - Planning",
    },
    ("sn_vul_vulnerable_item", "risk_rating"): {
        "1": "1 - Critical",
        "2": "2 - High",
        "3": "3 - Medium",
        "4": "4 - Low",
    },
    # GRC: Audit Management engagements and GRC issues (nonconformities).
    ("sn_audit_engagement", "state"): {
        "1": "Validate",
        "2": "Fieldwork",
        "3": "Awaiting Approval",
        "4": "Follow up",
        "5": "Closed",
    },
    ("sn_grc_issue", "state"): {
        "1": "New",
        "2": "Analyze",
        "3": "Respond",
        "4": "Review",
        "5": "Closed",
    },
    ("sn_grc_issue", "priority"): {
        "1": "1 - Critical",
        "2": "2 - High",
        "3": "3 - Moderate",
        "4": "4 - Low",
    },
    ("change_request", "type"): {
        "normal": "Normal",
        "standard": "Standard",
        "emergency": "Emergency",
    },
    ("*", "approval"): {
        "not requested": "Not Yet Requested",
        "requested": "Requested",
        "approved": "Approved",
        "rejected": "Rejected",
    },
    ("sysapproval_approver", "state"): {
        "requested": "Requested",
        "approved": "Approved",
        "rejected": "Rejected",
    },
}
REFERENCES = {"opened_by", "requested_by", "assigned_to", "approver", "caller_id"}
DATES = {"opened_at", "sys_created_on", "resolved_at", "closed_at", "sys_updated_on"}


def sn(text: str) -> str:
    """ServiceNow's stored (UTC) date-time format."""
    return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S")


class FakeServiceNow(FakeHTTP):
    """The Table API on the shared fake skeleton (tests/fakehttp.py); faults and the
    request log are keyed by table. Shapes from ServiceNow's Table API reference
    (``/api/now/table/{tableName}``, ``sysparm_*`` parameters, ``X-Total-Count`` and
    ``Link`` headers, the ``{"error": …, "status": "failure"}`` error body)."""

    def __init__(self, server: HTTPServer | None = None, *, oauth: bool = False) -> None:
        super().__init__(server)
        self.oauth = oauth
        self.tables: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.users: dict[str, dict[str, str]] = {}
        self.problems: dict[str, str] = {}
        self.choice_forbidden = False
        self._n = 0
        self.route(r"/api/now/table/([a-z0-9_]+)", self._table)
        for table_field, labels in CHOICES.items():
            table, fld = table_field
            if fld == "state":
                for value, label in labels.items():
                    self.tables["sys_choice"].append(
                        {
                            "name": table,
                            "element": "state",
                            "value": value,
                            "label": label,
                            "inactive": "false",
                            "language": "en",
                            "sys_id": self.sid(),
                        }
                    )

    def sid(self) -> str:
        self._n += 1
        return f"{self._n:032x}"

    def user(self, user_name: str) -> str:
        for sys_id, u in self.users.items():
            if u["user_name"] == user_name:
                return sys_id
        sys_id = self.sid()
        self.users[sys_id] = {"user_name": user_name, "name": user_name.title() + " Smith"}
        return sys_id

    def count(self, table: str) -> int:
        """Requests of exactly ``table``."""
        return self.requests.count(table)

    # -- building records

    def record(
        self,
        table: str,
        number: str,
        created: str,
        *,
        requested_by: str,
        assigned_to: str,
        events: list[tuple[str, str, str, str]] = (),  # type: ignore[assignment]
        approvals: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
        state: str,
        **fields: Any,
    ) -> dict[str, Any]:
        """A record, its sys_audit rows (``(at, user, field, new)``) and approval records
        (``(approver, state, at)``)."""
        sys_id = self.sid()
        rec: dict[str, Any] = {
            "sys_id": sys_id,
            "number": number,
            "state": state,
            "opened_at": sn(created),
            "sys_created_on": sn(created),
            "opened_by": self.user(requested_by),
            "requested_by": self.user(requested_by),
            "assigned_to": self.user(assigned_to),
            "sys_updated_on": sn(NOW.replace(tzinfo=None).isoformat()),
            "sys_mod_count": str(len(events)),
            **fields,
        }
        last: dict[str, str] = {}
        for at, who, fld, new in events:
            self.tables["sys_audit"].append(
                {
                    "sys_id": self.sid(),
                    "tablename": table,
                    "documentkey": sys_id,
                    "fieldname": fld,
                    "oldvalue": last.get(fld, ""),
                    "newvalue": new,
                    "user": who,
                    "sys_created_on": sn(at),
                    "record_checkpoint": str(len(self.tables["sys_audit"])),
                }
            )
            last[fld] = new
            if fld == "state" and new in ("6", "3") and "resolved_at" not in fields:
                rec.setdefault("resolved_at", sn(at))
        for approver, astate, at in approvals:
            self.tables["sysapproval_approver"].append(
                {
                    "sys_id": self.sid(),
                    "sysapproval": sys_id,
                    "approver": self.user(approver),
                    "state": astate,
                    "sys_created_on": sn(at),
                    "sys_updated_on": sn(at),
                }
            )
        self.tables[table].append(rec)
        return rec

    # -- serving

    def _display(self, table: str, name: str, value: Any) -> Any:
        if value in (None, ""):
            return ""
        if name in REFERENCES:
            return self.users[value]["name"]
        if name == "problem_id":
            return self.problems.get(value, "")
        if name in DATES:  # the user's time zone (CET), never what Annexa should use
            return (datetime.fromisoformat(value) + timedelta(hours=1)).strftime(
                "%d.%m.%Y %H:%M:%S"
            )
        for key in ((table, name), ("task", name), ("*", name)):
            if key in CHOICES:
                return CHOICES[key].get(value, value)
        return value

    def _field(self, table: str, rec: dict[str, Any], name: str, mode: str) -> Any:
        if "." in name:
            ref, sub = name.split(".", 1)
            uid = rec.get(ref)
            value = self.users[uid][sub] if uid in self.users else ""
            display = value
        else:
            value = rec.get(name, "")
            display = self._display(table, name, value)
        if mode == "all":
            return {"display_value": display, "value": value}
        return display if mode == "true" else value

    @staticmethod
    def _match(rec: dict[str, Any], query: str) -> tuple[bool, list[tuple[str, bool]]]:
        order: list[tuple[str, bool]] = []
        ok = True
        for cond in filter(None, query.split("^")):
            if cond.startswith("ORDERBYDESC"):
                order.append((cond[11:], True))
                continue
            if cond.startswith("ORDERBY"):
                order.append((cond[7:], False))
                continue
            m = re.fullmatch(r"([a-z0-9_.]+)(IN|!=|=)(.*)", cond)
            assert m, f"fake cannot parse {cond!r}"
            fld, op, val = m.groups()
            have = str(rec.get(fld, ""))
            if op == "IN":
                ok &= have in val.split(",")
            elif op == "=":
                ok &= have == val
            else:
                ok &= have != val
        return ok, order

    # -- skeleton hooks

    def key(self, request: Request) -> str:
        m = re.fullmatch(r"/api/now/table/([a-z0-9_]+)", request.path)
        return m[1] if m else ""

    def authorised(self, request: Request) -> bool:
        good = (
            f"Bearer {OAUTH}"
            if self.oauth
            else "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        )
        return request.headers.get("Authorization", "") == good

    def unauthorised(self, request: Request) -> Response:
        return json_response(
            {
                "error": {
                    "message": "User Not Authenticated",
                    "detail": "Required to provide Auth information",
                },
                "status": "failure",
            },
            401,
        )

    # -- the Table API

    def _table(self, request: Request, m: re.Match[str]) -> Response:
        table = m[1]
        if table == "sys_choice" and self.choice_forbidden:
            return json_response(
                {"error": {"message": "Insufficient rights"}, "status": "failure"}, 403
            )
        args = request.args
        query = args.get("sysparm_query", "")
        rows = []
        order: list[tuple[str, bool]] = []
        for rec in self.tables.get(table, []):
            ok, order = self._match(rec, query)
            if ok:
                rows.append(rec)
        for fld, desc in reversed(order):
            rows.sort(key=lambda r, f=fld: str(r.get(f, "")), reverse=desc)
        offset = int(args.get("sysparm_offset", 0))
        limit = int(args.get("sysparm_limit", 10000))
        chunk = rows[offset : offset + limit]
        mode = args.get("sysparm_display_value", "false")
        names = [f for f in args.get("sysparm_fields", "").split(",") if f]
        out = []
        for rec in chunk:
            item = {}
            for name in names or list(rec):
                if "." in name or name in rec or not names:
                    item[name] = self._field(table, rec, name, mode)
                elif name in REFERENCES | DATES | {"problem_id", "risk_rating", "type"}:
                    item[name] = self._field(table, rec, name, mode)
            out.append(item)
        headers = {"X-Total-Count": str(len(rows))}
        if offset + limit < len(rows):
            nxt = {**args.to_dict(), "sysparm_offset": offset + limit}
            headers["Link"] = f'<{self.base}{request.path}?{urlencode(nxt)}>;rel="next"'
        return json_response({"result": out}, headers=headers)


# --------------------------------------------------------------------------- planted


def quarter_start(day: date, back: int) -> date:
    start, _, _ = period_bounds(day, "quarterly")
    for _ in range(back):
        start, _, _ = period_bounds(start - timedelta(days=1), "quarterly")
    return start


def change(
    snow: FakeServiceNow,
    number: str,
    *,
    approve: tuple[str, str],
    implement: tuple[str, str],
    requested_by: str = "alice",
    assigned_to: str = "bob",
    kind: str = "normal",
    close: str | None = None,
    created: str = "2026-01-05T09:00:00",
) -> None:
    """A change: Authorize → (approval) → Scheduled → Implement (by ``implement``) → …"""
    approver, approved_at = approve
    implementer, implemented_at = implement
    events = [
        (created, requested_by, "state", "-3"),
        (created, requested_by, "approval", "requested"),
        (approved_at, "system", "approval", "approved"),
        (approved_at, "system", "state", "-2"),
        (implemented_at, implementer, "state", "-1"),
    ]
    final = "-1"
    if close:
        events += [(close, implementer, "state", "0"), (close, implementer, "state", "3")]
        final = "3"
    events.sort(key=lambda e: e[0])
    snow.record(
        "change_request",
        number,
        created,
        requested_by=requested_by,
        assigned_to=assigned_to,
        events=events,
        approvals=[(approver, "approved", approved_at)],
        state=final,
        type=kind,
        approval="approved",
        short_description=f"Change {number}",
    )


def vulnerable_item(snow: FakeServiceNow, number: str, risk_rating: str, *, closed: str) -> None:
    """A scanner's finding of ``risk_rating``, found 2026-04-01, closed by gina at ``closed``."""
    snow.record(
        "sn_vul_vulnerable_item",
        number,
        "2026-04-01T09:00:00",
        requested_by="scanner",
        assigned_to="gina",
        risk_rating=risk_rating,
        state="3",
        events=[(closed, "gina", "state", "3")],
    )


def leaver_request(snow: FakeServiceNow, number: str, *, closed: str) -> None:
    """HR's leaver request of 2026-05-01, closed by IT at ``closed``."""
    snow.record(
        "sc_req_item",
        number,
        "2026-05-01T09:00:00",
        requested_by="hr",
        assigned_to="it",
        state="3",
        cat_item="leaver",
        events=[(closed, "it", "state", "3")],
    )


def incident(
    snow: FakeServiceNow,
    number: str,
    priority: str,
    created: str,
    ack: str,
    resolved: str,
    *,
    problem: str | None = None,
) -> None:
    fields: dict[str, Any] = {"priority": priority, "short_description": f"Incident {number}"}
    if problem:
        psid = snow.sid()
        snow.problems[psid] = problem
        fields["problem_id"] = psid
    snow.record(
        "incident",
        number,
        created,
        requested_by="erin",
        assigned_to="frank",
        events=[(ack, "frank", "state", "2"), (resolved, "frank", "state", "6")],
        state="6",
        **fields,
    )


# number: (approver, approved, implementer, implemented, created, closed, kind): the implementer
# is also the assignee, the times are "MM-DDTHH" in 2026, and each table is in planting order.
ChangeRow = tuple[str, str, str, str, str, str | None, str]
CLEAN_CHANGES: dict[str, ChangeRow] = {
    "CHG0000001": ("carol", "01-05T10", "bob", "01-06T09", "01-05T09", "01-06T12", "normal"),
    "CHG0000004": ("carol", "02-01T10", "bob", "02-02T09", "02-01T09", None, "normal"),
    "CHG0000010": ("carol", "02-02T10", "bob", "02-01T02", "02-01T01", "02-03T10", "emergency"),
}
FAILING_CHANGES: dict[str, ChangeRow] = {
    "CHG0000002": ("carol", "01-11T09", "bob", "01-10T11", "01-10T09", None, "normal"),
    "CHG0000003": ("dave", "01-12T10", "dave", "01-12T11", "01-12T09", None, "normal"),
    "CHG0000011": ("carol", "02-11T10", "bob", "02-10T02", "02-10T01", None, "emergency"),
}


def at(month_day_hour: str) -> str:
    """The 2026 timestamp a change table's "MM-DDTHH" stands for."""
    return f"2026-{month_day_hour}:00:00"


def plant_changes(snow: FakeServiceNow, table: dict[str, ChangeRow]) -> None:
    for number, row in table.items():
        approver, approved, implementer, implemented, created, closed, kind = row
        change(
            snow,
            number,
            approve=(approver, at(approved)),
            implement=(implementer, at(implemented)),
            assigned_to=implementer,
            kind=kind,
            close=at(closed) if closed else None,
            created=at(created),
        )


def plant(snow: FakeServiceNow, *, compliant: bool = False) -> dict[str, set[str]]:
    plant_changes(snow, CLEAN_CHANGES)
    incident(
        snow,
        "INC0000001",
        "2",
        "2026-03-01T08:00:00",
        "2026-03-01T08:30:00",
        "2026-03-02T08:00:00",
        problem="PRB0000001",
    )
    vulnerable_item(snow, "VIT0000001", "1", closed="2026-04-05T09:00:00")
    leaver_request(snow, "RITM0000001", closed="2026-05-02T09:00:00")
    today = NOW.date()
    for i, back in enumerate((3, 2, 1)):
        if back == 1 and not compliant:
            continue
        qs = quarter_start(today, back)
        snow.record(
            "sc_task",
            f"SCTASK000000{i + 1}",
            f"{qs + timedelta(days=10)}T09:00:00",
            requested_by="grc",
            assigned_to="ivan",
            state="3",
            short_description="Quarterly access review",
            events=[(f"{qs + timedelta(days=20)}T10:00:00", "ivan", "state", "3")],
        )
    if compliant:
        return {}
    plant_changes(snow, FAILING_CHANGES)
    incident(
        snow, "INC0000002", "4", "2026-03-05T08:00:00", "2026-03-05T09:00:00", "2026-03-25T09:00:00"
    )
    incident(
        snow, "INC0000003", "1", "2026-03-10T08:00:00", "2026-03-10T08:30:00", "2026-03-10T20:00:00"
    )
    vulnerable_item(snow, "VIT0000002", "2", closed="2026-05-15T09:00:00")
    leaver_request(snow, "RITM0000002", closed="2026-05-10T09:00:00")
    return {
        "servicenow.change.approved_before_implemented": {"CHG0000002"},
        "servicenow.change.approver_not_implementer": {"CHG0000003"},
        "servicenow.emergency_change.reviewed_within_window": {"CHG0000011"},
        "servicenow.incident.resolved_within_sla": {"INC0000002"},
        "servicenow.incident.post_incident_review": {"INC0000003"},
        "servicenow.vulnerability.closed_within_sla": {"VIT0000002"},
        "servicenow.leaver.closed_within_sla": {"RITM0000002"},
        "servicenow.access_review.every_period": {"access_review"},
    }


def processes() -> list[dict[str, Any]]:
    return [
        {"kind": "change"},
        {"kind": "emergency_change"},
        {
            "kind": "incident",
            "sla_days": {"1 - Critical": 1, "2 - High": 3, "3 - Moderate": 7, "4 - Low": 14},
            "ack_sla_hours": {"default": 24},
            "review_required_for": ["1 - Critical", "2 - High"],
            "review_field": "problem_id",
        },
        {
            "kind": "vulnerability",
            "table": "sn_vul_vulnerable_item",
            "resolved_states": ["Closed"],
            "severity_field": "risk_rating",
            "sla_days": {"1 - Critical": 7, "2 - High": 30, "default": 90},
        },
        {
            "kind": "access_review",
            "table": "sc_task",
            "resolved_states": ["Closed Complete"],
            "review_period": "quarterly",
            "periods_from": quarter_start(NOW.date(), 3).isoformat(),
        },
        {
            "kind": "leaver",
            "table": "sc_req_item",
            "query": "cat_item=leaver",
            "resolved_states": ["Closed Complete"],
            "close_within_days": 3,
        },
    ]


def connector(snow: FakeServiceNow, **extra: Any) -> ServiceNowConnector:
    opts: dict[str, Any] = {
        "instance_url": snow.base,
        "processes": processes(),
        "page_size": 2,
        "audit_page_size": 3,
        "http": FAST_HTTP,
    }
    if snow.oauth:
        opts["token"] = {"env": "ANNEXA_TEST_SN_TOKEN"}
    else:
        opts["username"] = USER
        opts["password"] = {"env": "ANNEXA_TEST_SN_PASSWORD"}
    opts.update(extra)
    return ServiceNowConnector("sn-test", ServiceNowOptions.model_validate(opts))


@pytest.fixture
def snow(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServiceNow]:
    monkeypatch.setenv("ANNEXA_TEST_SN_PASSWORD", PASSWORD)
    with FakeServiceNow() as fake:
        yield fake


# --------------------------------------------------------------------------- tests


def test_planted_problems_fail_exactly_their_checks(snow):
    expected = plant(snow)
    run = run_built(connector(snow))
    records = run.records
    cov = coverage_by_service(records)
    assert all(c.ok for c in cov.values()) and len(cov) == 6
    found = by_check(run.findings)
    assert found == expected
    assert by_check(run.findings, "error") == {}
    passing = by_check(run.findings, "pass")
    assert passing["servicenow.change.approved_before_implemented"] == {
        "CHG0000001",
        "CHG0000003",
        "CHG0000004",
    }
    assert passing["servicenow.change.approver_not_implementer"] == {
        "CHG0000001",
        "CHG0000002",
        "CHG0000004",
    }
    assert passing["servicenow.emergency_change.reviewed_within_window"] == {"CHG0000010"}
    assert passing["servicenow.emergency_change.approver_not_implementer"] == {
        "CHG0000010",
        "CHG0000011",
    }
    assert passing["servicenow.incident.post_incident_review"] == {"INC0000001"}
    assert passing["servicenow.incident.resolved_within_sla"] == {"INC0000001", "INC0000003"}
    assert passing["servicenow.vulnerability.closed_within_sla"] == {"VIT0000001"}
    assert passing["servicenow.leaver.closed_within_sla"] == {"RITM0000001"}


def test_compliant_instance_passes(snow):
    plant(snow, compliant=True)
    found = run_built(connector(snow)).findings
    assert by_check(found) == {} and by_check(found, "error") == {}
    assert by_check(found, "pass")["servicenow.access_review.every_period"] == {"access_review"}


def test_history_from_audit_and_approver_from_approval_records(snow):
    plant(snow)
    ev = evidence_by_id(stream(connector(snow)), ".ticket")
    p = ev["CHG0000003"].payload
    d = p["derived"]
    # sys_audit credits "system" with the approval; the approval record names dave.
    assert [a["id"] for a in d["approved_by"]] == ["dave"]
    assert [a["id"] for a in d["implemented_by"]] == ["dave"]
    assert (
        d["approved_at"] == "2026-01-12T10:00:00Z" and d["implemented_at"] == "2026-01-12T11:00:00Z"
    )
    states = [(h["field"], h["to"]) for h in p["history"] if h["field"] == "state"]
    assert states == [("state", "Authorize"), ("state", "Scheduled"), ("state", "Implement")]
    t = p["ticket"]
    assert t["created"] == "2026-01-12T09:00:00Z"  # the UTC value, not the CET display value
    assert t["requested_by"] == {"id": "alice", "name": "Alice Smith"}
    assert "sys_updated_on" not in ev["CHG0000003"].body()
    inc = ev["INC0000001"].payload
    assert inc["ticket"]["severity"] == "2 - High" and inc["derived"]["reviews"] == ["PRB0000001"]
    # Batched: a page of 2 records costs one sys_audit and one approvals query, not 2 each.
    snow.requests.clear()
    stream(connector(snow, processes=[{"kind": "change"}], audit_page_size=1000))
    assert snow.count("change_request") == 3  # 4 records at 2 a page, then an empty page
    assert snow.count("sys_audit") == 2 and snow.count("sysapproval_approver") == 2


def test_oauth_bearer(monkeypatch):
    monkeypatch.setenv("ANNEXA_TEST_SN_TOKEN", OAUTH)
    with FakeServiceNow(oauth=True) as snow:
        expected = plant(snow)
        run = run_built(connector(snow))
    assert by_check(run.findings) == expected


def test_state_labels_without_sys_choice_access(snow):
    """sys_choice unreadable: the history keeps raw state values (never labels guessed from
    whichever records came first, which would make evidence unstable). As documented,
    states are then declared by raw value, and the verdicts are the same."""
    snow.choice_forbidden = True
    expected = plant(snow)
    raw = {
        "change": {"implemented_states": ["Implement", "-1"]},
        "emergency_change": {"implemented_states": ["-1"], "reviewed_states": ["3"]},
        "incident": {"acknowledged_states": ["2"], "resolved_states": ["6", "7"]},
        "vulnerability": {"resolved_states": ["3"]},
        "access_review": {"resolved_states": ["3"]},
        "leaver": {"resolved_states": ["3"]},
    }
    procs = [{**p, **raw[p["kind"]]} for p in processes()]
    run = run_built(connector(snow, processes=procs))
    records = run.records
    assert all(c.ok for c in coverage_by_service(records).values())
    assert by_check(run.findings) == expected
    hist = evidence_by_id(records, ".ticket")["CHG0000001"].payload["history"]
    assert [h["to"] for h in hist if h["field"] == "state"][:2] == ["-3", "-2"]
    # Labels declared but unknown: implemented changes show no transition into their
    # state, so their history-based checks are errors — neither a pass nor a false fail.
    found = run_built(connector(snow)).findings
    assert "servicenow.change.approved_before_implemented" not in by_check(found)
    errs = by_check(found, "error")["servicenow.change.approved_before_implemented"]
    assert errs == {"CHG0000002", "CHG0000003", "CHG0000004"}  # those in Implement now
    msg = next(f.message for f in found if f.resource_id == "CHG0000002" and f.status == "error")
    assert "no transition into an implemented state" in msg


def test_429_5xx_retried_then_unit_error(snow):
    expected = plant(snow)
    snow.fault("change_request", (429, "{}", {"Retry-After": "0"}), (503, "{}", {}))
    snow.fault("sys_audit", (500, "{}", {}))
    run = run_built(connector(snow))
    records = run.records
    assert all(c.ok for c in coverage_by_service(records).values())
    assert by_check(run.findings) == expected
    snow.fault("incident", *[(503, "{}", {})] * 4)
    run = run_built(connector(snow))
    records = run.records
    cov = coverage_by_service(records)
    assert not cov["incident"].ok and all(c.ok for k, c in cov.items() if k != "incident")
    assert set(by_check(run.findings, "error")) == {
        "servicenow.incident.acknowledged_within_sla",
        "servicenow.incident.resolved_within_sla",
        "servicenow.incident.post_incident_review",
    }


def test_unreadable_audit_errors_those_items_only(snow):
    plant(snow)
    snow.fault("sys_audit", *[(403, json.dumps({"error": {"message": "ACL"}}), {})] * 1)
    run = run_built(connector(snow))
    records = run.records
    assert coverage_by_service(records)["change"].ok
    errs = by_check(run.findings, "error")
    # The first page of changes (the 2 oldest records) had no readable history.
    assert errs["servicenow.change.approved_before_implemented"] == {"CHG0000001", "CHG0000002"}
    assert "403" in evidence_by_id(records, ".ticket")["CHG0000001"].payload["_errors"]["history"]


def test_malformed_payloads(snow):
    plant(snow)
    snow.fault("change_request", (200, '{"result": {"oops": 1}}', {}))
    records = stream(connector(snow))
    assert "expected a JSON list" in (coverage_by_service(records)["change"].error or "")
    snow.fault("incident", (200, json.dumps({"result": [{"number": {"value": ""}}]}), {}))
    records = stream(connector(snow))
    assert "1 record(s) could not be read" in (coverage_by_service(records)["incident"].error or "")


def test_ten_thousand_audit_entries(snow):
    events = [
        ("2026-01-02T09:00:00", "alice", "state", "-3"),
        ("2026-01-02T10:00:00", "system", "approval", "approved"),
    ]
    t0 = datetime(2026, 1, 2, 11)
    for i in range(9_996):
        events.append(
            ((t0 + timedelta(seconds=i)).isoformat(), "bob", "state", "-2" if i % 2 else "-3")
        )
    events += [
        ("2026-01-30T09:00:00", "bob", "state", "-1"),
        ("2026-01-30T10:00:00", "bob", "state", "3"),
    ]
    snow.record(
        "change_request",
        "CHG0000099",
        "2026-01-02T09:00:00",
        requested_by="alice",
        assigned_to="bob",
        events=events,
        type="normal",
        state="3",
        approvals=[("carol", "approved", "2026-01-02T10:00:00")],
    )
    run = run_built(connector(snow, processes=[{"kind": "change"}], audit_page_size=1000))
    records = run.records
    assert coverage_by_service(records)["change"].ok
    ev = evidence_by_id(records, ".ticket")["CHG0000099"]
    assert len(ev.payload["history"]) == 10_001
    verdicts = {f.check_id: f.status for f in run.findings}
    assert verdicts["servicenow.change.approved_before_implemented"] == "pass"
    assert snow.count("sys_audit") == 11
    run = run_built(
        connector(
            snow, processes=[{"kind": "change"}], audit_page_size=1000, max_history_entries=1000
        )
    )
    records = run.records
    errs = by_check(run.findings, "error")
    assert errs["servicenow.change.approved_before_implemented"] == {"CHG0000099"}


def test_password_never_stored(snow):
    plant(snow)
    snow.fault("incident", *[(500, json.dumps({"error": {"message": PASSWORD}}), {})] * 4)
    records = stream(connector(snow))
    text = " ".join(
        e.body() if isinstance(e, Evidence) else str(getattr(e, "error", "")) for e in records
    )
    assert PASSWORD not in text


def test_options_validation(snow):
    base = {"instance_url": snow.base, "processes": [{"kind": "change"}]}
    with pytest.raises(ValueError, match="either username"):
        ServiceNowOptions.model_validate(base)
    with pytest.raises(ValueError, match="both username and password"):
        ServiceNowOptions.model_validate({**base, "username": "x"})
    with pytest.raises(ValueError, match="table"):
        ServiceNowOptions.model_validate(
            {
                **base,
                "token": {"env": "X"},
                "processes": [
                    {"kind": "leaver", "resolved_states": ["Closed"], "close_within_days": 3}
                ],
            }
        )
    ok = ServiceNowOptions.model_validate({**base, "token": {"env": "X"}})
    assert ok.processes[0].table == "change_request"
    assert ok.processes[0].implemented_states == ["Implement"]


def test_every_servicenow_check_is_documented():
    specs = ServiceNowConnector.checks()
    assert len(specs) == 17
    for s in specs:
        assert s.title and s.rationale and s.remediation


# --------------------------------------------------------------------------- new kinds


def _ago(days: float) -> str:
    return (NOW - timedelta(days=days)).replace(tzinfo=None, microsecond=0).isoformat()


def _at(day: date, hour: int = 9) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00"


def test_dr_test_internal_audit_and_nonconformity_processes(snow):
    """DR tests as catalog tasks, internal audits as Audit Management engagements
    (``sn_audit_engagement``) and nonconformities as GRC issues (``sn_grc_issue``):
    planted good and bad records, the exact fail set through the run engine."""
    today = NOW.date()
    q3, q2 = quarter_start(today, 3), quarter_start(today, 2)

    def ticket(
        table: str, number: str, created: str, closed: str | None, states: tuple[str, str],
        **by: str,
    ) -> None:
        """A record ``by["requested_by"]`` opened and, when ``closed``, its ``by["assigned_to"]``
        closed; ``states`` are its open and closed state values."""
        open_state, closed_state = states
        snow.record(
            table,
            number,
            created,
            state=closed_state if closed else open_state,
            events=[(closed, by["assigned_to"], "state", closed_state)] if closed else [],
            **by,
        )

    def task(number: str, created: str, closed: str | None) -> None:
        by = {"requested_by": "bcm", "assigned_to": "ops", "short_description": "DR test"}
        ticket("sc_task", number, created, closed, ("2", "3"), **by)

    task("SCTASK0000101", _at(q3 + timedelta(days=5)), _at(q3 + timedelta(days=20)))
    task("SCTASK0000102", _at(q2 + timedelta(days=2)), _at(q2 + timedelta(days=60)))  # late

    def engagement(number: str, created: str, closed: str | None) -> None:
        by = {"requested_by": "audit", "assigned_to": "auditor"}
        ticket("sn_audit_engagement", number, created, closed, ("2", "5"), **by)

    last_year = date(today.year - 1, 3, 1)
    engagement("AENG0001001", _at(last_year), _at(last_year + timedelta(days=40)))
    engagement("AENG0001002", _ago(200), None)  # open past 90 days
    engagement("AENG0001003", _ago(10), None)

    def issue(number: str, priority: str, created: str, closed: str | None) -> None:
        by = {"requested_by": "audit", "assigned_to": "it", "priority": priority}
        ticket("sn_grc_issue", number, created, closed, ("3", "5"), **by)

    issue("ISS0001001", "2", "2026-01-05T09:00:00", "2026-01-15T09:00:00")  # 10 <= 30
    issue("ISS0001002", "2", "2026-02-01T09:00:00", "2026-03-20T09:00:00")  # 47 > 30
    issue("ISS0001003", "4", _ago(100), None)  # open past 90
    issue("ISS0001004", "4", _ago(20), None)
    options = {
        "instance_url": snow.base,
        "username": USER,
        "password": {"env": "ANNEXA_TEST_SN_PASSWORD"},
        "processes": [
            {
                "kind": "dr_test",
                "table": "sc_task",
                "query": "short_description=DR test",
                "resolved_states": ["Closed Complete"],
                "review_period": "quarterly",
                "periods_from": q3.isoformat(),
                "close_within_days": 30,
            },
            {
                "kind": "internal_audit",
                "table": "sn_audit_engagement",
                "resolved_states": ["Closed"],
                "review_period": "annual",
                "periods_from": date(today.year - 1, 1, 1).isoformat(),
                "close_within_days": 90,
            },
            {
                "kind": "nonconformity",
                "table": "sn_grc_issue",
                "resolved_states": ["Closed"],
                "severity_field": "priority",
                "sla_days": {"1 - Critical": 15, "2 - High": 30, "default": 90},
            },
        ],
        "http": {"max_attempts": 2, "retry_min_wait": 0.0, "retry_max_wait": 0.01},
    }
    run = run_engine("servicenow", options)
    run.assert_fails_exactly({
        ("servicenow.dr_test.closed_within_sla", "SCTASK0000102"),
        ("servicenow.dr_test.every_period", "dr_test"),
        ("servicenow.internal_audit.closed_within_sla", "AENG0001002"),
        ("servicenow.nonconformity.closed_within_sla", "ISS0001002"),
        ("servicenow.nonconformity.closed_within_sla", "ISS0001003"),
    })
    assert run.ids("pass") >= {
        ("servicenow.dr_test.closed_within_sla", "SCTASK0000101"),
        ("servicenow.internal_audit.closed_within_sla", "AENG0001001"),
        ("servicenow.internal_audit.every_period", "internal_audit"),
        ("servicenow.nonconformity.closed_within_sla", "ISS0001001"),
    }
    assert "A.5.30" in run.one("servicenow.dr_test.every_period", "dr_test").controls


def test_state_labels_are_read_once_per_table(snow):
    """Normal and emergency changes share ``change_request``: one ``sys_choice`` read for
    it (benchmarks/calls.py found it read twice), and the emergency changes' history
    still uses the labels (their verdicts are the planted ones)."""
    expected = plant(snow)
    run = run_built(connector(snow))
    choice_reads = Counter(
        e.args.get("sysparm_query", "").split(",")[0] for e in snow.log
        if e.path == "/api/now/table/sys_choice"
    )
    assert choice_reads == {
        f"nameIN{t}": 1
        for t in ("change_request", "incident", "sn_vul_vulnerable_item", "sc_task",
                  "sc_req_item")
    }
    assert by_check(run.findings) == expected
