"""A control page lists its findings a page at a time, and an auditor still reaches every one.

The store holds more findings of one control than a page shows (three runs of the real
writer over 230 resources, two checks each); following the "Next findings" links from
the first page must list each finding in force exactly once, failing ones first, and
the findings named on the pages (the comment form's targets) are the download's — now
(materialised findings in force) and at an earlier instant (``?at=``), on both engines.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
from sqlalchemy import Engine

from collector.config import AnnexaConfig, Settings
from collector.console import build, data
from collector.console.auth import open_access
from core.records import Coverage, Evidence, Finding
from mappings.loader import MappingIndex, load_mappings
from store.writer import RunWriter
from tests.console_fixtures import LiveConsole

CHECKS = ("aws.s3.bucket_default_encryption", "aws.s3.bucket_public_access_block")
RESOURCES = 230


def _run(engine: Engine, index: MappingIndex, version: int) -> datetime:
    w = RunWriter(engine, source="src", connector_type="aws", config_digest="c" * 64,
                  mapping_digest=index.digest, agent_version="test")
    w.start()
    for i in range(RESOURCES):
        name = f"bucket-{i:03d}"
        eh = w.add_evidence(Evidence("acct", "eu", "aws.s3.bucket", name, {"v": version}))
        for n, check in enumerate(CHECKS):
            status = "fail" if (i + n + version) % 3 == 0 else "pass"
            w.add_finding(Finding(check, "acct", "eu", "aws.s3.bucket", name, status, "high",
                                  f"{name} {status}", evidence_hash=eh,
                                  controls=index.controls_for(check)))
    w.add_coverage(Coverage("acct", "global", "s3", ok=True))
    w.finish("succeeded")
    return datetime.now(UTC)


def _rows(page: str) -> list[tuple[str, str, str]]:
    """(check, effective status, resource) of each finding row of a control page."""
    body = page.split('<table id="findings">', 1)[1].split("</table>", 1)[0]
    return [
        (html.unescape(m[1]), m[2], html.unescape(m[3]))
        for m in re.finditer(
            r'<tr class="row-[^"]*">\s*<td>([^<]*)</td>\s*<td><span class="st st-([a-z_]+)">'
            r'.*?<a class="resource" [^>]*>([^<]*)</a>', body, re.S)
    ]


def _walk(c: httpx.Client, path: str, at: str | None) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    url: str | None = path + (f"?at={quote(at)}" if at else "")
    pages = 0
    while url:
        page = c.get(url)
        page.raise_for_status()
        seen += _rows(page.text)
        pages += 1
        m = re.search(r'<a id="next-page" rel="next" href="([^"]+)"', page.text)
        url = html.unescape(m[1]) if m else None
    assert pages >= 2, "the control's findings should span several pages"
    return seen


def test_every_finding_is_reached_page_by_page_and_the_download_has_them_all(
    engine: Engine
) -> None:
    index = load_mappings()
    cid = index.controls_for(CHECKS[0])[0]
    first = _run(engine, index, 1)
    _run(engine, index, 2)
    _run(engine, index, 3)
    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(AnnexaConfig(database={"url": url}), None)
    app = build(settings, engine, index, open_access())
    ctx = app.state.console.ctx
    with LiveConsole(app) as live, httpx.Client(base_url=live.url, timeout=120) as c:
        for at in (None, first.isoformat()):
            listed = _walk(c, f"/controls/{cid}", at)
            params = {"format": "json", **({"at": at} if at else {})}
            everything = json.loads(c.get(f"/controls/{cid}/findings", params=params).text)
            assert len(everything) > data.PAGE_ROWS
            assert len(listed) == len(set(listed)), "a finding listed twice"
            assert sorted(listed) == sorted(
                (f["check_id"], f["effective_status"], f["resource_id"]) for f in everything)
            statuses = [s for _, s, _ in listed]
            assert statuses == sorted(statuses, key=lambda s: s != "fail"), "failing first"
            # The comment form's targets, page by page, are every finding's.
            when = datetime.fromisoformat(at) if at else None
            targets: list[str] = []
            after = None
            while True:
                d = data.control(ctx, cid, when, after)
                targets += d["targets"]
                after = data.decode_cursor(d["next_after"])
                if after is None:
                    break
            assert sorted(targets) == sorted(f"{f['source']} {f['key']}" for f in everything)
        # The old download address still serves the same text.
        old = c.get(f"/controls/{cid}", params={"format": "csv"})
        assert old.text == c.get(f"/controls/{cid}/findings", params={"format": "csv"}).text
        assert c.get(f"/controls/{cid}", params={"after": "not-a-cursor"}).status_code == 400
