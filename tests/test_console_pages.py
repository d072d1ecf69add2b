"""The console's SoA, risks, populations and samples pages, against a real uvicorn.

Same estate as tests/test_console.py (the Jira fake through the real run engine, one
ticket's title hostile in the first run and edited in the second), in a module of its
own because it records a sample (a run) into the store. Every download is compared with
what the CLI prints for the same instant on the same database.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.console_fixtures import EDITED, HOSTILE, Estate, serve
from tests.test_console import annexa, text_of

pytest_plugins = ["tests.console_fixtures"]

#: The fake's change tickets are dated in 2026 (tests/test_jira.py ``plant``); an open end
#: keeps "now" the latest evidence whatever the clock says.
PERIOD = "2026-01-01..2099-12-31"
DRAWER = '<script>alert("drawer")</script>"><img src=x onerror=alert(3)>'


@pytest.fixture(scope="module")
def sampled(estate: Estate) -> Estate:
    """The estate with one recorded sample of the change population, drawn by the CLI."""
    drawn = annexa(estate, "sample", "--population", "process:change", "--period", PERIOD,
                   "--size", "1", "--seed", "console-pages", "--drawn-by", DRAWER,
                   "--format", "json")
    assert drawn.returncode == 0, drawn.stdout + drawn.stderr
    return estate


def _same_as_cli(c: httpx.Client, estate: Estate, path: str, params: dict[str, str],
                 *cli: str) -> None:
    for fmt in ("csv", "json"):
        got = c.get(path, params={**params, "format": fmt})
        assert got.status_code == 200, got.text
        assert got.headers["content-disposition"].startswith("attachment; filename=")
        out = annexa(estate, *cli, "--format", fmt)
        assert out.returncode == 0, out.stderr
        assert got.text == out.stdout, (path, fmt)


def _strict(page: httpx.Response) -> None:
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert re.findall(r"<script\b[^>]*>", page.text) == [
        '<script src="/static/htmx.min.js" defer>'
    ]


def test_navigation_links_every_page(sampled: Estate) -> None:
    with serve(sampled, comments=False) as live, httpx.Client(base_url=live.url) as c:
        home = c.get("/", params={"at": sampled.between.isoformat()}).text
        for path in ("/soa", "/risks", "/population", "/samples"):
            assert re.search(rf'<a href="{path}\?at=[^"]+">', home), path
            _strict(c.get(path))


def test_soa_now_then_and_downloads(sampled: Estate) -> None:
    with serve(sampled, comments=False) as live, httpx.Client(base_url=live.url) as c:
        now = c.get("/soa")
        _strict(now)
        row = re.search(r'<tr id="soa-A\.8\.32">.*?</tr>', now.text, re.S)
        assert row and "st-fail" in row[0]
        then = c.get("/soa", params={"at": sampled.before.isoformat()}).text
        row = re.search(r'<tr id="soa-A\.8\.32">.*?</tr>', then, re.S)
        assert row and "st-no_evidence" in row[0] and "Time travel" in then
        for at in (sampled.before, sampled.between):
            _same_as_cli(c, sampled, "/soa", {"at": at.isoformat()}, "soa", "--at",
                         at.isoformat())
        assert c.get("/soa", params={"at": "soon"}).status_code == 400


def test_risks_now_then_and_downloads(sampled: Estate) -> None:
    with serve(sampled, comments=False) as live, httpx.Client(base_url=live.url) as c:
        # The estate records no risks: the page says so, now and then, like the CLI.
        for params in ({}, {"at": sampled.between.isoformat()}, {"flagged": "1"}):
            page = c.get("/risks", params=params)
            _strict(page)
            assert "risks recorded then" in text_of(page.text)
        at = sampled.between.isoformat()
        _same_as_cli(c, sampled, "/risks", {"at": at}, "risks", "--at", at)
        _same_as_cli(c, sampled, "/risks", {"at": at, "flagged": "1"}, "risks", "--at", at,
                     "--flagged")


def test_population_time_travel_escaping_and_downloads(sampled: Estate) -> None:
    with serve(sampled, comments=False) as live, httpx.Client(base_url=live.url) as c:
        empty = c.get("/population")
        _strict(empty)
        assert "Choose a process and a period" in empty.text
        q = {"process": "change", "period": PERIOD}
        now = c.get("/population", params=q)
        _strict(now)
        assert "CHG-2" in now.text and EDITED in now.text
        between = sampled.between.isoformat()
        then = c.get("/population", params={**q, "at": between})
        _strict(then)
        assert "CHG-2" in then.text and EDITED not in then.text
        # The hostile title of then is shown, escaped, and nothing of it is markup.
        assert HOSTILE in text_of(then.text)
        assert "<script>alert" not in then.text and "<img src=x" not in then.text
        assert "&lt;script&gt;" in then.text
        before = c.get("/population", params={**q, "at": sampled.before.isoformat()}).text
        assert "CHG-2" not in before and "no item in this population" in before
        _same_as_cli(c, sampled, "/population", {**q, "at": between}, "population",
                     "--process", "change", "--period", PERIOD, "--at", between)
        assert c.get("/population", params={**q, "process": "payroll"}).status_code == 400
        bad = c.get("/population", params={**q, "period": '"><script>x</script>'})
        assert bad.status_code == 400 and "<script>x" not in bad.text


def test_samples_time_travel_escaping_and_downloads(sampled: Estate) -> None:
    with serve(sampled, comments=False) as live, httpx.Client(base_url=live.url) as c:
        now = c.get("/samples")
        _strict(now)
        rows = re.findall(r'<tr>\s*<td class="hash">', now.text)
        assert len(rows) == 1
        assert DRAWER in text_of(now.text) and "<script>alert" not in now.text
        assert "<img src=x" not in now.text
        then = c.get("/samples", params={"at": sampled.between.isoformat()}).text
        assert "no sample recorded then" in then
        _same_as_cli(c, sampled, "/samples", {}, "samples")
        at = sampled.between.isoformat()
        _same_as_cli(c, sampled, "/samples", {"at": at}, "samples", "--at", at)
        got = json.loads(c.get("/samples", params={"format": "json"}).text)
        assert got[0]["drawn_by"] == DRAWER and got[0]["size"] == 1


def test_overview_trend_agrees_with_the_overview_and_travels(sampled: Estate) -> None:
    with serve(sampled, comments=False) as live, httpx.Client(base_url=live.url) as c:
        home = c.get("/").text
        assert 'hx-get="/trend"' in home
        frag = c.get("/trend")
        assert frag.status_code == 200 and " style=" not in frag.text
        assert "<script" not in frag.text
        points = re.findall(r'<circle class="point"', frag.text)
        assert len(points) == 30
        # The last point is the overview's answer: same passing count, same statuses.
        rows = json.loads(c.get("/", params={"format": "json"}).text)
        now = re.search(r'id="trend-now">(\d+) of (\d+) applicable', frag.text)
        assert now and int(now[1]) == sum(1 for r in rows if r["status"] == "pass")
        counts = dict(re.findall(r'<li class="st st-\w+">(\w+) (\d+)</li>', frag.text))
        expected: dict[str, str] = {}
        for r in rows:
            expected[r["status"]] = str(int(expected.get(r["status"], "0")) + 1)
        assert counts == expected and "fail" in counts
        then = c.get("/trend", params={"at": sampled.before.isoformat()}).text
        assert re.search(r'id="trend-now">0 of \d+ applicable', then)
        then_counts = dict(re.findall(r'<li class="st st-\w+">(\w+) (\d+)</li>', then))
        assert "fail" not in then_counts and "no_evidence" in then_counts
