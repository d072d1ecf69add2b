"""Notifications when a control changes status: Slack-compatible webhooks and Jira.

Which changes: decided in the database (:func:`store.leases.control_changes`), so one
notification goes out per change however many replicas evaluate it and across
restarts. A control's first status is a silent baseline. Each channel has an ``on``
list of statuses whose *arrival* it announces (webhooks: degradations and recoveries to
``pass``; Jira: degradations only — an issue is opened, never closed, by Annexa). A
``pass`` is a recovery only when it follows ``fail``, ``error`` or ``stale``: the first
collection turning ``no_evidence`` into ``pass`` is not announced.

Delivery happens on a background thread fed by a queue, so collection never waits on
a slow webhook. Each request is retried with exponential backoff (tenacity) on
transport errors, 429 and 5xx; other 4xx answers are not retried. Delivery is
at-most-once: a change decided just before the process dies is recorded but not sent.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
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
from connectors.base import SecretRef
from connectors.redaction import register_secret, scrub_text

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


@dataclass(frozen=True)
class Notification:
    control: str
    title: str
    old: str
    new: str
    at: datetime
    resources: tuple[str, ...] = field(default_factory=tuple)

    def text(self) -> str:
        head = (
            f"Annexa: ISO 27001 control {self.control} ({self.title}) "
            f"{_WORDS.get(self.new, 'is now ' + self.new)} (was {self.old}) "
            f"at {self.at.strftime('%Y-%m-%d %H:%M:%S')} UTC."
        )
        if self.resources:
            listed = ", ".join(self.resources[:MAX_LISTED])
            more = len(self.resources) - MAX_LISTED
            head += f" Affected: {listed}" + (f" (+{more} more)" if more > 0 else "") + "."
        return scrub_text(head)


class _Retryable(Exception):
    pass


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (httpx.TransportError, _Retryable))


def _check(resp: httpx.Response) -> None:
    if resp.status_code == 429 or resp.status_code >= 500:
        raise _Retryable(f"HTTP {resp.status_code}")
    resp.raise_for_status()


class Notifier:
    """Queue + delivery thread. ``submit`` never blocks on the network."""

    def __init__(self, cfg: NotificationsConfig, metrics: Metrics, *, min_wait: float = 0.5):
        self.cfg = cfg
        self.metrics = metrics
        self.min_wait = min_wait
        self._q: queue.Queue[Notification | None] = queue.Queue()
        self._stop = threading.Event()
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

    def start(self) -> None:
        self._thread.start()

    def submit(self, n: Notification) -> None:
        if self.enabled:
            self._q.put(n)

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop."""
        self._q.put(None)
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(1.0)
        self._client.close()

    def drain(self, timeout: float) -> bool:
        """Wait until the queue is empty (tests)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._q.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    # -- delivery ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            n = self._q.get()
            try:
                if n is None:
                    return
                self._deliver(n)
            except Exception:  # the notifier thread must survive anything
                log.error("notification failed", exc_info=True)
            finally:
                self._q.task_done()

    def _deliver(self, n: Notification) -> None:
        if n.new == "pass" and n.old not in RECOVERED_FROM:
            return
        for url, on in self._webhooks:
            if n.new in on:
                self._send("webhook", urlsplit(url).hostname or "?", n, self._webhook, url)
        jira = self.cfg.jira
        if jira is not None and n.new in jira.on:
            self._send("jira", urlsplit(jira.url).hostname or "?", n, self._jira, None)

    def _send(self, channel: str, host: str, n: Notification, fn: Any, arg: Any) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(self.cfg.max_attempts) | stop_when_event_set(self._stop),
            wait=wait_exponential(multiplier=self.min_wait, min=self.min_wait, max=60),
            retry=retry_if_exception(_retryable),
            sleep=self._stop.wait,
            reraise=False,
        )
        try:
            retrying(fn, n, arg)
        except RetryError as exc:
            self.metrics.notifications.labels(channel, "failed").inc()
            last = exc.last_attempt.exception()
            log.error(
                "notification not delivered after retries",
                channel=channel,
                host=host,
                control=n.control,
                error=scrub_text(f"{type(last).__name__}: {last}"),
            )
            return
        except httpx.HTTPStatusError as exc:
            self.metrics.notifications.labels(channel, "failed").inc()
            log.error(
                "notification refused",
                channel=channel,
                host=host,
                control=n.control,
                status=exc.response.status_code,
            )
            return
        self.metrics.notifications.labels(channel, "sent").inc()
        log.info("notification sent", channel=channel, host=host, control=n.control, status=n.new)

    def _webhook(self, n: Notification, url: str) -> None:
        _check(self._client.post(url, json={"text": n.text()}))

    def _jira(self, n: Notification, _: Any) -> None:
        jira = self.cfg.jira
        assert jira is not None
        description = n.text() + (
            "\n\nOpened by Annexa (ISO/IEC 27001:2022 evidence collection). "
            f"Run `annexa controls --status {n.new}` or `annexa findings --control "
            f"{n.control}` for the evidence."
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
        _check(
            self._client.post(
                jira.url.rstrip("/") + "/rest/api/2/issue",
                json=body,
                auth=self._jira_auth,
                headers=self._jira_headers,
            )
        )
