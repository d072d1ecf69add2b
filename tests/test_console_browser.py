"""The console in a real browser: Playwright driving the system Chromium (no download).

What a person does: overview → failing control → resource → evidence diff; time travel
(these two on SQLite and on PostgreSQL, ``pg_estate``: a database of its own);
an auditor's comment that persists and lands in the audit package; a viewer who cannot
comment; hostile markup planted in evidence that stays text under the CSP (no dialog,
no console error, no element created). Screenshots are kept under
``$ANNEXA_ARTIFACTS`` (default: the test's tmp dir) for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import SKIP_PG
from tests.console_fixtures import (
    AUDITOR_TOKEN,
    EDITED,
    HOSTILE,
    VIEWER_TOKEN,
    Estate,
    serve,
)
from tests.test_console import annexa

pytest_plugins = ["tests.console_fixtures"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("the system Chromium is missing: apt-get install chromium (as .ci/run does)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(SKIP_PG, reason="ANNEXA_TEST_SKIP_POSTGRES=1"),
        ]),
    ]
)
def any_estate(request: pytest.FixtureRequest) -> Estate:
    """The estate on SQLite, then in a PostgreSQL database of its own."""
    return request.getfixturevalue("estate" if request.param == "sqlite" else "pg_estate")


@pytest.fixture
def artifacts(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    root = Path(os.environ.get("ANNEXA_ARTIFACTS") or tmp_path / "artifacts")
    out = root / "console" / request.node.name
    out.mkdir(parents=True, exist_ok=True)
    return out


class Watched:
    """A page whose dialogs, console errors and CSP violations are recorded."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("response", self._response)

    def _response(self, r: Any) -> None:
        if r.status >= 400:
            self.errors.append(f"HTTP {r.status} {r.url}")

    def _dialog(self, d: Any) -> None:
        self.dialogs.append(d.message)
        d.dismiss()

    def _console(self, msg: Any) -> None:
        if msg.type in ("error", "warning"):
            self.errors.append(f"{msg.type}: {msg.text}")

    def shot(self, where: Path, name: str) -> None:
        self.page.screenshot(path=str(where / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@contextmanager
def console_page(estate: Estate, browser: Any, *, comments: bool) -> Iterator[tuple[Any, Watched]]:
    """The console serving ``estate`` and a watched page for it, closed after."""
    with serve(estate, comments=comments) as live:
        w = Watched(browser)
        try:
            yield live, w
        finally:
            w.close()


def log_in(w: Watched, url: str, token: str) -> None:
    w.page.goto(url + "/login")
    w.page.fill("input[name=token]", token)
    w.page.click("#login-form button[type=submit]")
    w.page.wait_for_url(url + "/")


def test_overview_to_failing_control_to_resource_to_diff(
    any_estate: Estate, browser: Any, artifacts: Path
) -> None:
    with console_page(any_estate, browser, comments=False) as (live, w):
        w.page.goto(live.url + "/")
        row = w.page.locator("#controls tr", has=w.page.locator("a", has_text="A.8.32"))
        assert row.locator(".st").inner_text() == "fail"
        w.shot(artifacts, "1-overview")
        row.locator("a", has_text="A.8.32").click()
        w.page.wait_for_url("**/controls/A.8.32")
        first = w.page.locator("#findings tbody tr").first
        assert first.locator(".st").first.inner_text() == "fail"
        # The timeline arrives through htmx (a script from 'self', under the CSP).
        w.page.locator("#timeline tbody tr").last.wait_for(timeout=30_000)
        assert w.page.locator("#timeline .st").last.inner_text() == "fail"
        w.shot(artifacts, "2-control")
        w.page.locator("#findings a.resource", has_text="CHG-2").click()
        w.page.wait_for_url("**/resource?**")
        diff = w.page.locator("#diff")
        assert EDITED in diff.inner_text()
        assert w.page.locator("#diff .d-add").count() >= 1
        assert w.page.locator("#versions tbody tr").count() == 2
        w.shot(artifacts, "3-resource-diff")
        # Verify a run on demand (htmx, served from 'self').
        w.page.goto(live.url + "/runs")
        w.page.locator("button.verify").first.click()
        w.page.locator(".verify-ok").first.wait_for(timeout=30_000)
        w.shot(artifacts, "4-runs-verified")
        assert w.dialogs == [] and w.errors == [], (w.dialogs, w.errors)


def test_time_travel_changes_the_answer(
    any_estate: Estate, browser: Any, artifacts: Path
) -> None:
    estate = any_estate
    with console_page(estate, browser, comments=False) as (live, w):
        w.page.goto(live.url + "/controls/A.8.32")
        assert w.page.locator("#control-status").inner_text() == "fail"
        w.page.fill("form.travel input[name=at]", estate.before.isoformat())
        w.page.click("form.travel button[type=submit]")
        w.page.wait_for_url("**at=**")
        assert w.page.locator("#control-status").inner_text() == "no_evidence"
        assert w.page.locator("#as-of").is_visible()
        w.shot(artifacts, "control-before-any-run")
        assert w.errors == [], w.errors


def test_hostile_evidence_renders_inert(estate: Estate, browser: Any, artifacts: Path) -> None:
    with console_page(estate, browser, comments=False) as (live, w):
        at = quote(estate.between.isoformat())
        w.page.goto(live.url + "/controls/A.8.32?at=" + at)
        w.page.locator("#findings a.resource", has_text="CHG-2").click()
        w.page.wait_for_url("**/resource?**")
        body = w.page.locator("#body").inner_text()
        assert json.dumps(HOSTILE) in body  # shown as text, exactly
        assert w.page.locator("main script").count() == 0
        assert w.page.locator("main img").count() == 0
        assert w.page.evaluate("() => document.scripts.length") == 1  # htmx only
        w.shot(artifacts, "hostile-evidence")
        assert w.dialogs == [] and w.errors == [], (w.dialogs, w.errors)


def test_auditor_comment_persists_and_reaches_the_package_viewer_cannot(
    estate: Estate, browser: Any, artifacts: Path
) -> None:
    text = "Evidence request: CAB minutes approving CHG-2 before the change"
    with serve(estate, comments=True) as live:
        w = Watched(browser)
        try:
            log_in(w, live.url, AUDITOR_TOKEN)
            w.page.goto(live.url + "/controls/A.8.32")
            w.page.select_option("#comment-form select[name=kind]", "evidence_request")
            w.page.fill("#comment-form textarea[name=text]", text)
            w.page.click("#comment-form button[type=submit]")
            w.page.wait_for_url("**/controls/A.8.32#comments")
            w.page.reload()
            assert text in w.page.locator(".comments").inner_text()
            w.shot(artifacts, "auditor-comment")
            assert w.errors == [], w.errors
        finally:
            w.close()
        v = Watched(browser)
        try:
            log_in(v, live.url, VIEWER_TOKEN)
            v.page.goto(live.url + "/controls/A.8.32")
            assert v.page.locator("#comment-form").count() == 0
            assert text in v.page.locator(".comments").inner_text()  # viewers read them
            csrf = v.page.locator("form[action='/logout'] input[name=csrf]").get_attribute(
                "value"
            )
            refused = v.page.request.post(
                live.url + "/comments",
                form={"csrf": csrf or "", "control": "A.8.32", "text": "viewer remark"},
            )
            assert refused.status == 403
            v.shot(artifacts, "viewer-no-comment-form")
        finally:
            v.close()
    out = estate.tmp / "browser-audit.zip"
    exported = annexa(estate, "export", "--period", f"{estate.before.date()}..", "--out",
                      str(out))
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(out) as z:
        remarks = json.loads(z.read("comments.json"))["comments"]
    assert [r["text"] for r in remarks if r["author"] == "alice"].count(text) == 1
    assert "viewer remark" not in json.dumps(remarks)
