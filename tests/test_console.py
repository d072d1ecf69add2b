"""``annexa serve``: the web console over httpx, against a real uvicorn on 127.0.0.1.

The store is built by the real run engine from the Jira fake (tests/console_fixtures.py);
answers are compared with what the CLI prints on the same database, so the console
cannot drift from ``annexa controls`` / ``annexa runs``.
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from markupsafe import escape

from collector.console.app import CSP
from collector.console.auth import LoginLimiter, load_access
from tests.console_fixtures import (
    ADMIN_TOKEN,
    AUDITOR_TOKEN,
    EDITED,
    HOSTILE,
    VIEWER_TOKEN,
    Estate,
    serve,
)

pytest_plugins = ["tests.console_fixtures"]



def chg2(estate: Estate) -> str:
    """The evidence key of ticket CHG-2 (the scope is the Jira site: the fake's host)."""
    return f"jira.change.ticket|{urlsplit(estate.jira.base).netloc}|global|CHG-2"


def annexa(estate: Estate, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ANNEXA_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "collector", *args, "--config", str(estate.config)],
        capture_output=True, text=True, timeout=300, env=env,
    )


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF field in the form"
    return m[1]


def login(client: httpx.Client, token: str) -> httpx.Response:
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "token": token, "next": "/"})


def chg2_key(client: httpx.Client) -> str:
    page = client.get("/controls/A.8.32").text
    m = re.search(r'href="(/resource\?[^"]*CHG-2[^"]*)"', page)
    assert m, "the failing CHG-2 finding links to its evidence"
    return html.unescape(m[1])


def test_overview_control_resource_runs_read_the_store(estate: Estate) -> None:
    with serve(estate, comments=False) as live, httpx.Client(base_url=live.url) as c:
        home = c.get("/")
        assert home.status_code == 200
        row = re.search(r'href="/controls/A\.8\.32".*?</tr>', home.text, re.S)
        assert row and "st-fail" in row[0]
        assert "technological" in text_of(home.text)
        only_fail = text_of(c.get("/", params={"status": "fail"}).text)
        assert "A.8.32" in only_fail and "A.5.1 " not in only_fail

        control = c.get("/controls/A.8.32").text
        statuses = re.findall(r'<tr class="row-(\w+)">', control)
        assert statuses[0] == "fail" and "pass" in statuses
        assert statuses == sorted(statuses, key=["fail", "error", "excepted", "pass",
                                                 "not_applicable"].index)
        assert "Change management procedure" in control  # the expected document
        timeline = c.get("/controls/A.8.32/timeline").text  # fetched by htmx on load
        assert re.findall(r'class="st st-(\w+)"', timeline)[-1] == "fail"
        assert 'hx-get="/controls/A.8.32/timeline"' in control

        res = c.get(chg2_key(c))
        assert res.status_code == 200
        versions = re.findall(r"<tr><td>(\d+)</td>", res.text)
        assert len(versions) == 2
        diff = text_of(re.search(r'<pre class="diff".*?</pre>', res.text, re.S)[0])
        assert f'- "title": {json.dumps(HOSTILE)}' in diff
        assert f'+ "title": "{EDITED}"' in diff
        # Any two versions: the same one twice gives no diff.
        same = c.get("/resource", params={"source": "jira-prod", "key": chg2(estate),
                                          "a": versions[0], "b": versions[0]})
        assert "the two versions have the same body" in same.text

        runs = c.get("/runs").text
        ids = re.findall(r'<tr id="run-([0-9a-f-]+)">', runs)
        assert len(ids) == 2 and runs.count("signed (") == 2
        verdict = c.get(f"/runs/{ids[0]}/verify").text
        assert "verified" in verdict and "signature by" in verdict and "valid" in verdict
        assert c.get("/controls/A.99.1").status_code == 404
        assert c.get("/", params={"at": "yesterday-ish"}).status_code == 400


def test_time_travel_changes_the_answer(estate: Estate) -> None:
    with serve(estate, comments=False) as live, httpx.Client(base_url=live.url) as c:
        before = estate.before.isoformat()
        between = estate.between.isoformat()
        then = c.get("/controls/A.8.32", params={"at": before}).text
        assert re.search(r'id="control-status">no_evidence<', then)
        assert "Time travel" in then
        now = c.get("/controls/A.8.32").text
        assert re.search(r'id="control-status">fail<', now)
        # Links keep the instant: the resource page then shows the version of then.
        first = c.get("/resource", params={"source": "jira-prod", "key": chg2(estate),
                                           "at": between}).text
        assert len(re.findall(r"<tr><td>(\d+)</td>", first)) == 1
        assert "rolled back" not in first
        assert c.get("/resource", params={"source": "jira-prod", "key": chg2(estate),
                                          "at": before}).status_code == 404
        assert len(re.findall(r'<tr id="run-', c.get("/runs", params={"at": between}).text)) == 1
        csv_then = c.get("/", params={"at": before, "format": "csv"}).text
        csv_now = c.get("/", params={"format": "csv"}).text
        assert "A.8.32,Change management,technological,no_evidence" in csv_then
        assert "A.8.32,Change management,technological,fail" in csv_now


def test_downloads_are_what_the_cli_prints(estate: Estate) -> None:
    with serve(estate, comments=False) as live, httpx.Client(base_url=live.url) as c:
        at = estate.between.isoformat()
        for fmt in ("csv", "json"):
            got = c.get("/", params={"format": fmt, "at": at})
            assert got.headers["content-disposition"] == f'attachment; filename="controls.{fmt}"'
            cli = annexa(estate, "controls", "--at", at, "--format", fmt)
            assert cli.returncode == 0, cli.stderr
            assert got.text == cli.stdout
        runs = c.get("/runs", params={"format": "csv"}).text
        cli = annexa(estate, "runs", "--limit", "100", "--format", "csv")
        assert runs == cli.stdout
        rows = json.loads(c.get("/controls/A.8.32", params={"format": "json"}).text)
        assert rows[0]["effective_status"] == "fail" and rows[0]["resource_id"] in {"CHG-2",
                                                                                     "ECH-2"}


def test_every_page_is_escaped_and_under_a_strict_csp(estate: Estate) -> None:
    with serve(estate, comments=False) as live, httpx.Client(base_url=live.url) as c:
        res = c.get("/resource", params={"source": "jira-prod", "key": chg2(estate),
                                         "at": estate.between.isoformat()})
        assert "&lt;script&gt;" in res.text
        assert "<script>alert" not in res.text and "<img src=x" not in res.text
        assert re.findall(r"<script\b[^>]*>", res.text) == [
            '<script src="/static/htmx.min.js" defer>'
        ]
        assert " style=" not in res.text and "<style" not in res.text
        for path in ("/", "/controls/A.8.32", "/runs", "/static/htmx.min.js", "/nowhere",
                     "/resource?source=x&key=y"):
            r = c.get(path)
            assert r.headers["content-security-policy"] == CSP, path
            assert "default-src 'self'" in CSP and "unsafe-inline" not in CSP
            assert r.headers["x-frame-options"] == "DENY"
        # A reflected parameter is escaped too.
        bad = c.get("/", params={"at": '"><script>alert(1)</script>'})
        assert bad.status_code == 400 and "<script>alert(1)" not in bad.text


def test_tokens_roles_csrf_and_throttled_login(estate: Estate, caplog) -> None:
    access = load_access(estate.auth)
    with serve(estate, comments=True, access=access) as live:
        with httpx.Client(base_url=live.url) as anon:
            first = anon.get("/")
            assert first.status_code == 303 and first.headers["location"].startswith("/login")
            assert anon.post("/login", data={"token": AUDITOR_TOKEN}).status_code == 403  # no CSRF
            for _ in range(3):
                assert login(anon, "not-a-token").status_code == 401
            throttled = login(anon, AUDITOR_TOKEN)  # even the right token waits now
            assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    # A fresh server: the throttle above is per client address, and every client is 127.0.0.1.
    with serve(estate, comments=True, access=load_access(estate.auth)) as live:
        with httpx.Client(base_url=live.url) as viewer:
            assert login(viewer, VIEWER_TOKEN).status_code == 303
            page = viewer.get("/controls/A.8.32").text
            assert 'id="comment-form"' not in page
            refused = viewer.post("/comments", data={"csrf": csrf_of(page), "control": "A.8.32",
                                                     "text": "viewer remark"})
            assert refused.status_code == 403
        with httpx.Client(base_url=live.url) as auditor:
            assert login(auditor, AUDITOR_TOKEN).status_code == 303
            page = auditor.get("/controls/A.8.32").text
            assert 'id="comment-form"' in page
            no_csrf = auditor.post("/comments", data={"control": "A.8.32", "text": "x"})
            assert no_csrf.status_code == 403
            # A tampered session cookie is no session at all.
            forged = httpx.Client(base_url=live.url, cookies={
                "annexa_console": auditor.cookies["annexa_console"][:-3] + "AAA"})
            assert forged.get("/").status_code == 303
            forged.close()
            for token in (AUDITOR_TOKEN, VIEWER_TOKEN, ADMIN_TOKEN):
                assert token not in page
        assert not any(t in caplog.text for t in (AUDITOR_TOKEN, VIEWER_TOKEN, "not-a-token"))


def test_limiter_window_with_an_injected_clock() -> None:
    now = [1000.0]
    lim = LoginLimiter(attempts=2, window=60, clock=lambda: now[0])
    lim.failed("a")
    assert lim.retry_after("a") == 0
    lim.failed("a")
    assert lim.retry_after("a") > 0 and lim.retry_after("b") == 0
    now[0] += 61
    assert lim.retry_after("a") == 0


def test_auditor_comment_is_signed_append_only_and_in_the_package(estate: Estate) -> None:
    text = 'Evidence request: the CAB minutes for CHG-2 <b>"please"</b>'
    with serve(estate, comments=True) as live, httpx.Client(base_url=live.url) as c:
        assert login(c, AUDITOR_TOKEN).status_code == 303
        page = c.get("/controls/A.8.32").text
        target = re.search(r'<option value="(jira-prod [^"]*CHG-2)"', page)[1]
        posted = c.post("/comments", data={"csrf": csrf_of(page), "control": "A.8.32",
                                           "target": html.unescape(target),
                                           "kind": "evidence_request", "text": text})
        assert posted.status_code == 303
        shown = c.get("/controls/A.8.32").text
        assert str(escape(text)) in shown and "<b>" not in shown
        assert "alice (auditor)" in text_of(shown)
        empty = c.post("/comments", data={"csrf": csrf_of(page), "control": "A.8.32",
                                          "text": "   "})
        assert empty.status_code == 400
    verify = annexa(estate, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    out = estate.tmp / "audit.zip"
    period = f"{estate.before.date()}.."
    exported = annexa(estate, "export", "--period", period, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(out) as z:
        remarks = json.loads(z.read("comments.json"))["comments"]
    mine = [r for r in remarks if r["text"] == text]
    assert len(mine) == 1
    assert mine[0]["kind"] == "evidence_request" and mine[0]["author"] == "alice"
    assert mine[0]["target_kind"] == "finding" and "CHG-2" in mine[0]["target"]
    checked = annexa(estate, "verify-package", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_annexa_serve_command(estate: Estate, tmp_path: Path) -> None:
    refused = annexa(estate, "serve", "--host", "0.0.0.0")
    assert refused.returncode == 2 and "loopback" in refused.stderr
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "ANNEXA_DATABASE_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--config", str(estate.config),
         "--port", str(port), "--database-url", estate.db_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "annexa serve did not come up"
            time.sleep(0.2)
        home = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert "A.8.32" in home.text
        # Read-only: no comment can be posted, whoever asks.
        assert httpx.post(f"http://127.0.0.1:{port}/comments", timeout=30).status_code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_read_only_console_answers_many_requests_at_once(estate: Estate) -> None:
    """uvicorn runs each request in a worker thread: sixteen at once over the read-only
    SQLite store must all be answered (the read-only engine's pool once kept five
    connections and closed the other threads' ones mid-request)."""
    import threading

    pages = ["/", "/controls/A.8.32", "/soa", "/runs"] * 4
    start = threading.Barrier(len(pages))
    answers: dict[int, int] = {}
    failures: list[BaseException] = []
    with serve(estate, comments=False) as live:

        def get(i: int, path: str) -> None:
            try:
                with httpx.Client(base_url=live.url, timeout=120) as c:
                    start.wait()
                    answers[i] = c.get(path).status_code
            except BaseException as exc:  # noqa: BLE001 - each thread's failure is the finding
                failures.append(exc)

        threads = [threading.Thread(target=get, args=(i, p)) for i, p in enumerate(pages)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert answers == {i: 200 for i in range(len(pages))}
