"""The audit package: contents, tamper evidence, the HTML report in a real headless
Chromium with networking disabled, and retention. (Its OSCAL: tests/test_oscal.py.)
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import websocket
from sqlalchemy import Engine, text

from core.records import utcnow
from exports.package import build_package
from exports.verify import verify_package
from mappings.loader import MappingIndex, load_mappings
from mappings.soa import default_scope
from store.integrity import verify
from store.queries import findings_at
from store.retention import apply_retention
from tests.forgery import rezip, unzip
from tests.tamper import tamper
from tests.test_auditor_history import History, build_history, run

pytestmark = pytest.mark.clock

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="module")
def index() -> MappingIndex:
    return load_mappings()


def export(engine: Engine, index: MappingIndex, h: History, out: Path) -> Path:
    build_package(
        engine, index, start=h.start, end=h.instants["fixed"], out=out,
        freshness=timedelta(days=7), exceptions=h.rules,
        scope=default_scope(index.catalog), agent_version="test",
    )
    return out


@pytest.fixture
def package(engine: Engine, index: MappingIndex, tmp_path: Path) -> tuple[Path, History]:
    h = build_history(engine, index, tmp_path)
    return export(engine, index, h, tmp_path / "audit.zip"), h


def read(pkg: Path, name: str) -> bytes:
    with zipfile.ZipFile(pkg) as zf:
        return zf.read(name)


def rewrite(pkg: Path, out: Path, name: str, data: bytes) -> Path:
    with zipfile.ZipFile(pkg) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, data if item.filename == name else src.read(item.filename))
    return out


def test_package_contents_and_oscal_validate(
    package: tuple[Path, History], index: MappingIndex
) -> None:
    pkg, _ = package
    check = verify_package(pkg)
    assert check.ok, check.problems
    # 3 collections + the two manual evidence runs (cryptography policy, ISMS policy)
    assert check.runs_recomputed == 5
    with zipfile.ZipFile(pkg) as zf:
        names = set(zf.namelist())
    for expected in ("manifest.json", "runs.json", "evidence.csv", "evidence.jsonl",
                     "findings.csv", "controls.csv", "control_history.csv", "soa.csv",
                     "exceptions.json", "oscal/assessment-results.json", "report.html"):
        assert expected in names
    manual = [n for n in names if n.startswith("manual/")]
    assert sorted(m.rsplit("/", 1)[1] for m in manual) == ["crypto-policy.pdf", "policy.pdf"]
    assert read(pkg, manual[0]).startswith(b"%PDF-1.4")

    # The OSCAL chain is listed and hashed like any file (its content: tests/test_oscal.py).
    for name in ("catalog", "profile", "ssp", "assessment-plan", "assessment-results"):
        assert f"oscal/{name}.json" in names
    doc = json.loads(read(pkg, "oscal/assessment-results.json"))
    (result,) = doc["assessment-results"]["results"]  # one result for the period
    verdicts = {f["target"]["target-id"]: f for f in result["findings"]}
    assert len(verdicts) == 93
    assert verdicts["A.8.24_obj"]["target"]["status"]["state"] == "satisfied"
    assert verdicts["A.5.2_obj"]["target"]["status"]["state"] == "satisfied"  # manual evidence
    assert verdicts["A.7.1_obj"]["target"]["status"]["state"] == "not-satisfied"  # nothing shown
    assert verdicts["A.8.24_obj"]["related-observations"]
    # The population CSVs name the excepted and expired history.
    rows = list(csv.DictReader(io.StringIO(read(pkg, "findings.csv").decode())))
    legacy = [r for r in rows if r["resource_id"] == "legacy-export-1"]
    assert [r["status"] for r in legacy] == ["pass", "fail", "pass"]
    assert legacy[1]["exception"] == "EX-1"
    history = read(pkg, "control_history.csv").decode()
    assert "A.8.24" in history and ",excepted" in history and ",fail" in history
    soa = list(csv.DictReader(io.StringIO(read(pkg, "soa.csv").decode())))
    assert len(soa) == 93


TAMPERED = ["manifest.json", "runs.json", "evidence.jsonl", "evidence.csv", "findings.csv",
            "controls.csv", "soa.csv", "report.html", "oscal/assessment-results.json"]


def test_tampering_any_file_is_named(package: tuple[Path, History], tmp_path: Path) -> None:
    pkg, _ = package
    with zipfile.ZipFile(pkg) as zf:
        assert set(TAMPERED) <= set(zf.namelist())
        manual = [n for n in zf.namelist() if n.startswith("manual/")]
    for name in [*TAMPERED, *manual]:
        data = read(pkg, name)
        if name == "manifest.json":
            altered = data.replace(b'"agent_version": "test"', b'"agent_version": "tesT"')
        else:
            altered = data.replace(b"pass", b"fail", 1) if b"pass" in data else data + b" "
        assert altered != data
        bad = rewrite(pkg, tmp_path / "bad.zip", name, altered)
        check = verify_package(bad)
        assert not check.ok, name
        assert check.problems[0].file == name
    # A file slipped in, or one taken out, is named too.
    with zipfile.ZipFile(pkg) as src, zipfile.ZipFile(tmp_path / "extra.zip", "w") as dst:
        for item in src.infolist():
            if item.filename != "soa.csv":
                dst.writestr(item, src.read(item.filename))
        dst.writestr("notes.txt", b"trust me")
    problems = {(p.file, p.reason) for p in verify_package(tmp_path / "extra.zip").problems}
    assert ("notes.txt", "file is not listed in the manifest") in problems
    assert ("soa.csv", "listed in the manifest but missing from the package") in problems


def test_consistent_forgery_is_caught_by_the_cross_checks(
    package: tuple[Path, History], tmp_path: Path
) -> None:
    """Alter a finding and fix up every hash in the manifest: the run digests still differ."""
    pkg, _ = package
    files = unzip(pkg)
    files["findings.csv"] = files["findings.csv"].decode().replace(",fail,", ",pass,", 1).encode()
    forged = tmp_path / "forged.zip"
    rezip(files, forged)
    check = verify_package(forged)
    assert not check.ok
    assert {p.file for p in check.problems} == {"findings.csv"}
    assert "does not match its finding hash" in check.problems[0].reason


def test_tampered_stored_rows_are_named(
    package: tuple[Path, History], engine: Engine, db_url: str
) -> None:
    pkg, _ = package
    assert verify(engine).ok
    assert verify_package(pkg, engine=engine).ok
    with engine.connect() as conn:
        # The ISMS policy's run (the later of the two manual evidence runs).
        run_id, digest = conn.execute(text(
            "SELECT id, digest FROM runs WHERE source = '@manual' "
            "ORDER BY finished_at DESC LIMIT 1"
        )).one()
    # Rewrite the manual record's note: `verify` names the run and the item.
    tamper(
        db_url,
        "UPDATE blobs SET body = replace(body, 'approved by the board', 'never approved') "
        "WHERE hash IN (SELECT content_hash FROM evidence WHERE run_id = %s)",
        params=(run_id,),
    )
    res = verify(engine)
    assert not res.ok and res.first_broken_run == run_id
    assert "manual.evidence" in res.problems[0].reason
    # Re-seal the run with another digest: the package no longer matches the database.
    tamper(db_url, "UPDATE runs SET digest = %s WHERE id = %s", params=("0" * 64, run_id))
    check = verify_package(pkg, engine=engine)
    assert [p.reason for p in check.problems] == [
        f"run {run_id}: stored digest differs from the package's"
    ]
    assert digest != "0" * 64


def test_retention_removes_old_bodies_and_verify_still_passes(
    engine: Engine, index: MappingIndex, tmp_path: Path, db_url: str
) -> None:
    h = build_history(engine, index, tmp_path)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM blobs")).scalar_one()
    # Direct deletes stay refused.
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM blobs"))
    later = h.instants["fixed"] + timedelta(days=30)
    dry = apply_retention(engine, timedelta(days=1), "1d", removed_by="test", dry_run=True,
                          now=later)
    res = apply_retention(engine, timedelta(days=1), "1d", removed_by="test", now=later)
    # Superseded bucket bodies (pass→fail→pass), the closed "old" bucket and the expired
    # policy file and record are removed; bodies still in force are kept.
    assert res.bodies == dry.bodies >= 3
    with engine.connect() as conn:
        after = conn.execute(text("SELECT count(*) FROM blobs")).scalar_one()
        logged = conn.execute(text("SELECT count(*) FROM retention_log")).scalar_one()
        current = {r[0] for r in conn.execute(text(
            "SELECT resource_type FROM evidence_current WHERE body IS NULL"
        ))}
    assert after == before - res.bodies and logged == res.bodies
    # Of what is still current, only the expired policy's file went; bucket bodies stay.
    assert current == {"manual.file"}
    result = verify(engine)
    assert result.ok, result.problems
    # The retention log is append-only too.
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM retention_log"))
    # A package of the period still verifies; removed bodies are marked as such.
    pkg = export(engine, index, h, tmp_path / "after.zip")
    assert verify_package(pkg).ok
    rows = list(csv.DictReader(io.StringIO(read(pkg, "evidence.csv").decode())))
    assert any(r["body_removed"] == "True" for r in rows)


# -- the HTML report in a real browser ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevTools:
    """A minimal Chrome DevTools Protocol client over the page's websocket."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=20, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            self.events.append(json.loads(self.ws.recv()))


@pytest.fixture
def chromium() -> Iterator[DevTools]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (Debian: apt-get install -y chromium)")
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="annexa-chromium-")
    proc = subprocess.Popen(
        [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--no-first-run", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--disable-default-apps",
            "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}", "--remote-allow-origins=*",
            "--window-size=1280,1800", "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import urllib.request

        deadline = time.monotonic() + 30
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    targets = [t for t in json.load(r) if t.get("type") == "page"]
                if targets:
                    break
            except OSError:
                time.sleep(0.2)
        assert targets, "chromium did not open its DevTools endpoint"
        dt = DevTools(targets[0]["webSocketDebuggerUrl"])
        yield dt
        dt.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def test_report_renders_offline_in_headless_chromium(
    package: tuple[Path, History], tmp_path: Path, chromium: DevTools, db_url: str
) -> None:
    pkg, _ = package
    html = read(pkg, "report.html")
    assert not re.search(rb"(src|href)=\"(https?:)?//", html)  # nothing external
    page = tmp_path / "report.html"
    page.write_bytes(html)
    dt = chromium
    dt.call("Runtime.enable")
    dt.call("Log.enable")
    dt.call("Network.enable")
    dt.call("Page.enable")
    dt.call("Page.navigate", url=page.as_uri())
    dt.wait_for("Page.loadEventFired")
    state = dt.call(
        "Runtime.evaluate",
        expression="JSON.stringify({ready: document.body.getAttribute('data-ready'),"
        "rows: document.querySelectorAll('#controls tbody tr.control').length,"
        "bars: document.querySelectorAll('#chart rect.bar').length,"
        "soa: document.querySelectorAll('#soa tbody tr').length,"
        "line: !!document.getElementById('compliance-line'),"
        "chartWidth: document.getElementById('chart').getBoundingClientRect().width})",
        returnByValue=True,
    )["result"]["value"]
    got = json.loads(state)
    assert got["ready"] == "93" and got["rows"] == 93 and got["soa"] == 93
    assert got["bars"] > 0 and got["line"] and got["chartWidth"] > 100
    # Drill down: open the evidence of A.8.24 and read its payload.
    opened = dt.call(
        "Runtime.evaluate",
        expression="(function(){var r=document.getElementById('c-A.8.24');"
        "var d=r.querySelectorAll('details');for(var i=0;i<d.length;i++){d[i].open=true;}"
        "return r.querySelector('pre') ? r.querySelector('pre').textContent : '';})()",
        returnByValue=True,
    )["result"]["value"]
    assert '"Encrypted": true' in opened
    # The filter box works (no script errors on input).
    dt.call("Runtime.evaluate", expression="var b=document.getElementById('filter');"
            "b.value='A.8.24';b.dispatchEvent(new Event('input'));")
    shown = dt.call(
        "Runtime.evaluate",
        expression="Array.from(document.querySelectorAll('#controls tbody tr.control'))"
        ".filter(function(r){return r.style.display !== 'none';}).length",
        returnByValue=True,
    )["result"]["value"]
    assert shown == 1
    dt.call("Runtime.evaluate", expression="var b=document.getElementById('filter');"
            "b.value='';b.dispatchEvent(new Event('input'));")
    shot = dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
    ARTIFACTS.mkdir(exist_ok=True)
    engine_name = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    out = ARTIFACTS / f"audit-report-{engine_name}.png"
    out.write_bytes(base64.b64decode(shot["data"]))
    assert out.stat().st_size > 10_000
    errors = [
        e for e in dt.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled"
            and e["params"]["type"] in ("error", "assert"))
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert not errors, errors
    requests = [
        e["params"]["request"]["url"] for e in dt.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests
    assert os.path.getsize(page) > 0


def test_the_pdf_report_keeps_every_failing_resource_and_reason(
    engine: Engine, index: MappingIndex, tmp_path: Path, db_url: str
) -> None:
    """Printed through headless Chromium (annexa export --pdf): pdftotext finds every
    failing resource id and reason; the first pages are kept as PNG artifacts."""
    from collector.pdf import html_to_pdf

    pdftotext, pdftoppm = shutil.which("pdftotext"), shutil.which("pdftoppm")
    if pdftotext is None or pdftoppm is None:
        pytest.fail("poppler-utils is not installed (Debian: apt-get install -y poppler-utils)")
    h = build_history(engine, index, tmp_path)
    # Several failing resources at the end, with long ids and reasons.
    failing = {f"legacy-export-{i}-with-a-rather-long-bucket-name": "fail" for i in range(6)}
    run(engine, index, {"logs": "pass", **failing})
    out = tmp_path / "audit.zip"
    build_package(
        engine, index, start=h.start, end=utcnow(), out=out, freshness=timedelta(days=7),
        exceptions=[], scope=default_scope(index.catalog), agent_version="test",
        pdf=html_to_pdf,
    )
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(read(out, "report.pdf"))
    assert verify_package(out).ok
    text = subprocess.run([pdftotext, str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    flat = " ".join(text.split())
    with engine.connect() as conn:
        fails = list(findings_at(conn, status="fail"))
    assert len(fails) >= 6
    for f in fails:
        assert f["resource_id"] in flat.replace(" ", "") or f["resource_id"] in flat, (
            f["resource_id"]
        )
        assert " ".join(f["message"].split()) in flat, f["message"]
    assert "A.8.24" in flat and "A. 8. 24" not in flat
    assert "Control" in flat and "Co nt ro l" not in flat
    ARTIFACTS.mkdir(exist_ok=True)
    engine_name = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    subprocess.run([pdftoppm, "-png", "-r", "60", "-f", "1", "-l", "2", str(pdf),
                    str(ARTIFACTS / f"audit-report-{engine_name}-page")], check=True)
