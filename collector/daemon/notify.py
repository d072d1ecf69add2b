"""Notifications when a control changes status: Slack-compatible webhooks and Jira.

Which changes: decided in the database (:func:`store.leases.control_changes`), so one
notification goes out per change however many replicas evaluate it and across
restarts. A control's first status is a silent baseline. Each webhook has an ``on``
list of statuses whose *arrival* it announces (degradations and recoveries to
``pass``). A ``pass`` is a recovery only when it follows ``fail``, ``error`` or
``stale``: the first collection turning ``no_evidence`` into ``pass`` is not announced.

A message says what changed: the findings behind the new status (check, resource,
severity, message), the evidence fields that changed, before → after (redacted), the
run that produced them and the command that shows the evidence
(:mod:`collector.daemon.changes`).

Jira follows the control: an issue is opened when the control reaches a status in
``jira.on``, commented on each further change while open, commented and moved through
``done_transition`` when the control passes again, and reopened through
``reopen_transition`` (and commented) on a relapse. The issue key is kept with the
control's state in the database, so any replica continues the same issue.

Delivery is at-least-once through the outbox (:mod:`store.outbox`): the rows of a
change are written with the decision; a background thread per replica leases the
oldest deliverable row, sends it and marks it sent, so collection never waits on a
slow webhook and a notifier that dies before sending leaves the row to a peer or to
its own restart. Each request is retried with exponential backoff (tenacity) on
transport errors, 429 and 5xx; other 4xx answers are not retried (the row is closed
with the error). A row still failing after its attempts is retried later.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import structlog
from sqlalchemy import Engine
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential,
)

from collector.config import NotificationsConfig, _seconds
from collector.daemon.metrics import Metrics
from core.connector import SecretRef
from core.redaction import register_secret, scrub_text
from store import outbox

log = structlog.get_logger("annexa.daemon")

_WORDS = {
    "fail": "is now FAILING",
    "error": "can no longer be evaluated (ERROR)",
    "stale": "is now STALE: its evidence is older than the freshness window",
    "no_evidence": "now has NO EVIDENCE",
    "not_applicable": "is now not applicable",
    "pass": "passes again",
}
MAX_LISTED = 10
#: ``pass`` is announced only as a recovery from one of these (not a first collection).
RECOVERED_FROM = frozenset({"fail", "error", "stale"})
#: Back-off before an outbox row that failed all its attempts is tried again (at most).
RETRY_LATER_MAX = 600.0


@dataclass(frozen=True)
class Notification:
    control: str
    title: str
    old: str
    new: str
    at: datetime
    resources: tuple[str, ...] = field(default_factory=tuple)
    severity: str | None = None
    run_id: str | None = None
    #: The findings behind the change (see collector.daemon.changes.describe).
    items: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    more: int = 0
    command: str | None = None

    def headline(self) -> str:
        return scrub_text(
            f"ISO 27001 control {self.control} ({self.title}) "
            f"{_WORDS.get(self.new, 'is now ' + self.new)} (was {self.old})"
        )

    def text(self) -> str:
        head = f"Annexa: {self.headline()} at {self.at.strftime('%Y-%m-%d %H:%M:%S')} UTC."
        if self.severity:
            head += f" Severity: {self.severity}."
        if self.run_id:
            head += f" Run: {self.run_id}."
        if self.resources:
            listed = ", ".join(self.resources[:MAX_LISTED])
            more = len(self.resources) - MAX_LISTED
            head += f" Affected: {listed}" + (f" (+{more} more)" if more > 0 else "") + "."
        lines = [head]
        if self.items:
            lines.append("What changed:")
            for it in self.items:
                line = (
                    f"- {it['check']} {it['resource']} [{it['severity']}] {it['status']}: "
                    f"{it['message']}"
                )
                if it.get("changes"):
                    line += " — " + "; ".join(f"{f}: {a} → {b}" for f, a, b in it["changes"])
                lines.append(line)
            if self.more:
                lines.append(f"- and {self.more} more")
        if self.command:
            lines.append(f"See the evidence: {self.command}")
        return scrub_text("\n".join(lines))

    def as_payload(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "title": self.title,
            "old": self.old,
            "new": self.new,
            "at": self.at.isoformat(),
            "resources": list(self.resources),
            "severity": self.severity,
            "run_id": self.run_id,
            "items": list(self.items),
            "more": self.more,
            "command": self.command,
        }

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> Notification:
        return cls(
            control=p["control"],
            title=p.get("title", ""),
            old=p["old"],
            new=p["new"],
            at=datetime.fromisoformat(p["at"]),
            resources=tuple(p.get("resources") or ()),
            severity=p.get("severity"),
            run_id=p.get("run_id"),
            items=tuple(p.get("items") or ()),
            more=int(p.get("more") or 0),
            command=p.get("command"),
        )


class _Retryable(Exception):
    pass


class Refused(Exception):
    """The receiver refused the request for good (4xx other than 429)."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (httpx.TransportError, _Retryable))


def _check(resp: httpx.Response) -> httpx.Response:
    if resp.status_code == 429 or resp.status_code >= 500:
        raise _Retryable(f"HTTP {resp.status_code}")
    if resp.status_code >= 400:
        raise Refused(f"HTTP {resp.status_code}")
    return resp


class Notifier:
    """Delivers the outbox on a thread of its own; ``wake`` after new decisions."""

    def __init__(
        self,
        cfg: NotificationsConfig,
        metrics: Metrics,
        *,
        engine: Engine | None = None,
        me: str = "annexa",
        min_wait: float = 0.5,
        poll: float = 2.0,
    ):
        self.cfg = cfg
        self.metrics = metrics
        self.engine = engine
        self.me = me
        self.min_wait = min_wait
        self.poll = poll
        self.lease = _seconds(cfg.delivery_lease)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="annexa-notify", daemon=True)
        self._client = httpx.Client(timeout=_seconds(cfg.timeout), follow_redirects=False)
        # Resolve credentials now: a missing secret is a start-up error, not a lost alert.
        self._webhooks: list[tuple[str, frozenset[str]]] = []
        for wh in cfg.webhooks:
            url = wh.url.get() if isinstance(wh.url, SecretRef) else wh.url
            register_secret(url)
            register_secret(urlsplit(url).path)
            self._webhooks.append((url, frozenset(wh.on)))
        self._jira_auth: Any = None
        self._jira_headers: dict[str, str] = {}
        if cfg.jira is not None:
            token = cfg.jira.token.get()
            if cfg.jira.user:
                self._jira_auth = httpx.BasicAuth(cfg.jira.user, token)
            else:
                self._jira_headers["Authorization"] = f"Bearer {token}"

    @property
    def enabled(self) -> bool:
        return bool(self._webhooks or self.cfg.jira)

    # -- decisions -------------------------------------------------------------------------

    def destinations(self, n: Notification) -> list[tuple[str, dict[str, Any]]]:
        """The outbox rows of a decided change: ``(destination, payload)``."""
        rows: list[tuple[str, dict[str, Any]]] = []
        payload = n.as_payload()
        recovery_ok = n.new != "pass" or n.old in RECOVERED_FROM
        for i, (_url, on) in enumerate(self._webhooks):
            if n.new in on and recovery_ok:
                rows.append((f"webhook:{i}", payload))
        if self.cfg.jira is not None:
            rows.append(("jira", payload))  # what to do (open, comment, close…) at send
        return rows

    # -- the delivery thread -----------------------------------------------------------------

    def start(self) -> None:
        if self.enabled and self.engine is not None:
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the row being delivered (at most ``timeout`` seconds)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._client.close()

    def drain(self, timeout: float) -> bool:
        """Wait until the outbox has nothing left to send (tests)."""
        if self.engine is None:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if outbox.pending(self.engine) == 0:
                return True
            self._wake.set()
            time.sleep(0.05)
        return False

    def _loop(self) -> None:
        assert self.engine is not None
        while not self._stop.is_set():
            try:
                row = outbox.lease_next(self.engine, self.me, lease=self.lease)
            except Exception as exc:  # noqa: BLE001 - the database is down: try later
                log.debug("outbox unreachable", error=scrub_text(type(exc).__name__))
                row = None
            if row is None:
                self._wake.wait(self.poll)
                self._wake.clear()
                continue
            try:
                self._deliver(row)
            except Exception:  # the notifier thread must survive anything
                log.error("notification failed", exc_info=True)

    def _deliver(self, row: outbox.OutboxRow) -> None:
        assert self.engine is not None
        n = Notification.from_payload(row.payload)
        dest = row.destination
        channel = dest.split(":", 1)[0]
        try:
            if channel == "webhook":
                i = int(dest.split(":", 1)[1])
                if i >= len(self._webhooks):
                    outbox.mark_sent(self.engine, row.id, self.me, error="webhook not configured")
                    return
                host = urlsplit(self._webhooks[i][0]).hostname or "?"
                self._request("POST", self._webhooks[i][0], json={"text": n.text()})
                action = "sent"
            elif channel == "jira" and self.cfg.jira is not None:
                host = urlsplit(self.cfg.jira.url).hostname or "?"
                action = self._jira(n)
            else:
                outbox.mark_sent(self.engine, row.id, self.me, error=f"unknown {dest!r}")
                return
        except Refused as exc:
            self.metrics.notifications.labels(channel, "failed").inc()
            log.error("notification refused", channel=channel, control=n.control, error=str(exc))
            outbox.mark_sent(self.engine, row.id, self.me, error=f"refused: {exc}")
            return
        except (RetryError, _Retryable, httpx.HTTPError) as exc:
            self.metrics.notifications.labels(channel, "failed").inc()
            last = exc.last_attempt.exception() if isinstance(exc, RetryError) else exc
            error = scrub_text(f"{type(last).__name__}: {last}")
            delay = min(RETRY_LATER_MAX, self.min_wait * 2 ** min(row.attempts + 4, 20))
            log.error(
                "notification not delivered after retries; retried later",
                channel=channel,
                control=n.control,
                error=error,
                retry_in=round(delay, 1),
            )
            outbox.retry_later(self.engine, row.id, self.me, delay=delay, error=error)
            return
        outbox.mark_sent(self.engine, row.id, self.me)
        if action != "skipped":
            self.metrics.notifications.labels(channel, "sent").inc()
        log.info(
            "notification sent",
            channel=channel,
            host=host,
            control=n.control,
            status=n.new,
            action=action,
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, retried with backoff on transport errors, 429 and 5xx."""
        retrying = Retrying(
            stop=stop_after_attempt(self.cfg.max_attempts) | stop_when_event_set(self._stop),
            wait=wait_exponential(multiplier=self.min_wait, min=self.min_wait, max=60),
            retry=retry_if_exception(_retryable),
            sleep=self._stop.wait,
            reraise=False,
        )
        return retrying(lambda: _check(self._client.request(method, url, **kwargs)))

    # -- Jira ------------------------------------------------------------------------------

    def _jira_call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        jira = self.cfg.jira
        assert jira is not None
        return self._request(
            method,
            jira.url.rstrip("/") + path,
            json=body,
            auth=self._jira_auth,
            headers=self._jira_headers,
        )

    def _jira(self, n: Notification) -> str:
        """Open, comment, resolve or reopen the control's issue; returns what it did."""
        jira = self.cfg.jira
        assert jira is not None and self.engine is not None
        state = outbox.control_detail(self.engine, n.control)
        key: str | None = state.get("jira_key")
        resolved = bool(state.get("jira_resolved"))
        if n.new in jira.on:
            if key is None:
                key = self._jira_create(n)
                outbox.set_control_detail(self.engine, n.control, jira_key=key, jira_resolved=False)
                return "created"
            if resolved:
                self._jira_transition(key, jira.reopen_transition)
                outbox.set_control_detail(self.engine, n.control, jira_resolved=False)
                self._jira_comment(key, n, "Reopened by Annexa: the control relapsed.")
                return "reopened"
            self._jira_comment(key, n)
            return "commented"
        if key is None or resolved:
            return "skipped"
        if n.new == "pass":
            self._jira_comment(key, n, "The control passes again; resolving.")
            self._jira_transition(key, jira.done_transition)
            outbox.set_control_detail(self.engine, n.control, jira_resolved=True)
            return "resolved"
        self._jira_comment(key, n)
        return "commented"

    def _jira_create(self, n: Notification) -> str:
        jira = self.cfg.jira
        assert jira is not None
        description = n.text() + (
            "\n\nOpened by Annexa (ISO/IEC 27001:2022 evidence collection). This issue is "
            "commented on further changes of the control, resolved when it passes again "
            "and reopened if it relapses."
        )
        body = {
            "fields": {
                "project": {"key": jira.project},
                "issuetype": {"name": jira.issue_type},
                "summary": scrub_text(f"[Annexa] {n.control} {n.title}: {n.new} (was {n.old})")[
                    :250
                ],
                "description": description,
                "labels": [*jira.labels, n.control.replace(" ", "_")],
            }
        }
        resp = self._jira_call("POST", "/rest/api/2/issue", body)
        key = resp.json().get("key")
        if not isinstance(key, str) or not key:
            raise Refused("Jira answered without an issue key")
        return key

    def _jira_comment(self, key: str, n: Notification, lead: str = "") -> None:
        text = (lead + "\n\n" if lead else "") + n.text()
        self._jira_call("POST", f"/rest/api/2/issue/{quote(key)}/comment", {"body": text})

    def _jira_transition(self, key: str, name: str) -> None:
        """Apply the transition called ``name`` (or leading to a status of that name)."""
        resp = self._jira_call("GET", f"/rest/api/2/issue/{quote(key)}/transitions")
        wanted = name.casefold()
        for t in resp.json().get("transitions", []):
            to = (t.get("to") or {}).get("name", "")
            if str(t.get("name", "")).casefold() == wanted or str(to).casefold() == wanted:
                self._jira_call(
                    "POST",
                    f"/rest/api/2/issue/{quote(key)}/transitions",
                    {"transition": {"id": str(t["id"])}},
                )
                return
        raise Refused(f"issue {key} has no transition {name!r}")
