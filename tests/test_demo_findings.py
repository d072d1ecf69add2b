"""The demo's verdicts, pinned: every finding of ``annexa demo`` against a committed golden.

A refactor that moves code (the demo estate, the connectors, the run engine) must change
no verdict. This test runs the ``annexa demo`` path — :func:`collector.demo.demo_settings`,
the demo estate seeded into a real moto server on 127.0.0.1, one collection through the
product's run engine (:func:`collector.runner.run_connector`) into a fresh SQLite store —
and compares the sealed run's findings, as ``(check, resource type, resource, status,
evidence hash)`` sorted, with ``tests/data/demo_findings.json``.

Determinism: moto's random generator is seeded (``/moto-api/seed``) after the reset, so
generated ids (access keys, instances, volumes…) are the same on every run. Evidence
whose payload carries a time of *this* run cannot hash the same twice; for those the
golden pins check, resource and status only and records ``"evidence_hash": null``:

* the ids the local fake of what moto lacks draws afresh (uuid4: Inspector findings…):
  those findings are pinned by check, resource type and status (``"resource": null``);
* evidence that carries a time of the seeding or the collection (``CreateDate`` of users,
  keys, roles and policies, ``LaunchTime``, last-use dates, the backdated credential
  ages…). Which ones is not listed by hand: regenerating collects the demo twice, the
  second time with the clock travelled 400 days and 7 hours ahead (another hour, day,
  month and year), and a hash that differs between the two is volatile. The golden marks
  which hashes are pinned; statuses are pinned everywhere.

Regenerate after an intended change of verdicts (review the diff of the JSON)::

    ANNEXA_REGENERATE_GOLDEN=1 .venv/bin/pytest -p no:cacheprovider tests/test_demo_findings.py
"""

from __future__ import annotations

import http.client
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import time_machine
from sqlalchemy import select

from collector.clikit import _engine, _index
from collector.demo import demo_settings
from collector.runner import run_connector
from store.schema import findings

GOLDEN = Path(__file__).parent / "data" / "demo_findings.json"
MOTO_SEED = 27001
SHIFT = timedelta(days=400, hours=7)


def _seed_moto_random(url: str) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", f"/moto-api/seed?a={MOTO_SEED}")
        response = conn.getresponse()
        response.read()
        assert response.status == 200, f"moto seed failed: HTTP {response.status}"
    finally:
        conn.close()


def _seed_estate(url: str) -> dict[str, Any]:
    from collector.demo import demo_seeder

    return demo_seeder()(url)


def demo_findings(url: str, db: Path) -> list[dict[str, Any]]:
    """Seed the demo estate into the (reset) moto at ``url`` and collect it as
    ``annexa demo`` does; the findings of the sealed run, sorted."""
    _seed_moto_random(url)
    estate = _seed_estate(url)
    assert estate["aged"], "the moto server runs in this process: the estate is complete"
    settings = demo_settings(db)
    engine = _engine(settings, migrate=True)
    summary = run_connector(settings, settings.connectors[0], engine, _index(settings))
    assert summary.status == "succeeded", summary
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                findings.c.check_id, findings.c.resource_type, findings.c.resource_id,
                findings.c.status, findings.c.evidence_hash,
            ).where(findings.c.run_id == summary.run_id)
        ).all()
    engine.dispose()
    return sorted(
        ({"check": r.check_id, "resource_type": r.resource_type, "resource": r.resource_id,
          "status": r.status, "evidence_hash": r.evidence_hash} for r in rows),
        key=lambda f: (f["check"], f["resource_type"], f["resource"]),
    )


def _key(f: dict[str, Any]) -> tuple[str, str, str, str]:
    return (f["check"], f["resource_type"], f["resource"] or "", f["status"])


def _pinned(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``first`` with what two collections disagree on left unpinned: the evidence hash
    where it differs, and the resource id where it is generated afresh each time (ids
    the local fake of what moto lacks draws with uuid4, e.g. Inspector findings) — such
    findings are pinned by check and status only (``"resource": null``)."""
    a = {(f["check"], f["resource_type"], f["resource"]): f for f in first}
    b = {(f["check"], f["resource_type"], f["resource"]): f for f in second}
    out = []
    for k in a.keys() & b.keys():
        assert a[k]["status"] == b[k]["status"], ("verdict changed between runs", k)
        same = a[k]["evidence_hash"] == b[k]["evidence_hash"]
        out.append({**a[k], "evidence_hash": a[k]["evidence_hash"] if same else None})
    generated = [{**a[k], "resource": None, "evidence_hash": None} for k in a.keys() - b.keys()]
    again = [{**b[k], "resource": None, "evidence_hash": None} for k in b.keys() - a.keys()]
    assert sorted(map(_key, generated)) == sorted(map(_key, again)), "verdicts changed"
    return sorted(out + generated, key=_key)


def _reset(url: str) -> None:
    from tests.aws_fixtures import _reset_moto

    _reset_moto(url)


def _two_collections(url: str, access_analyzer: Any, tmp_path: Path) -> list[dict[str, Any]]:
    """What regenerating the golden needs: the demo collected twice, the second time
    with the clock travelled ahead, so that the hashes and ids that differ are unpinned."""
    first = demo_findings(url, tmp_path / "one.db")
    _reset(url)
    access_analyzer.reset()
    with time_machine.travel(datetime.now(UTC) + SHIFT, tick=True):
        second = demo_findings(url, tmp_path / "two.db")
    return _pinned(first, second)


def project_on_golden(found: list[dict[str, Any]], golden: list[dict[str, Any]]
                      ) -> list[dict[str, Any]]:
    """One collection seen as the golden pins it: the evidence hash kept only where the
    golden pins one, and a finding whose resource the golden does not name (an id drawn
    afresh by each seeding) reduced to its check, resource type and status."""
    named = {(g["check"], g["resource_type"], g["resource"]): g for g in golden if g["resource"]}
    out = []
    for f in found:
        g = named.get((f["check"], f["resource_type"], f["resource"]))
        if g is None:
            out.append({**f, "resource": None, "evidence_hash": None})
        else:
            out.append({**f, "evidence_hash": f["evidence_hash"] if g["evidence_hash"] else None})
    return sorted(out, key=_key)


def test_the_demo_findings_match_the_golden_file(
    aws_env: str, access_analyzer: Any, tmp_path: Path
) -> None:
    if os.environ.get("ANNEXA_REGENERATE_GOLDEN"):
        regenerated = _two_collections(aws_env, access_analyzer, tmp_path)
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(regenerated, indent=1, sort_keys=True) + "\n",
                          encoding="utf-8")
        _reset(aws_env)
        access_analyzer.reset()
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    # Which hashes and ids are volatile was settled when the golden was made (two
    # collections, a clock shift apart): checking needs one collection, at half the cost.
    found = demo_findings(aws_env, tmp_path / "check.db")
    assert len(found) > 100 and {f["status"] for f in found} >= {"pass", "fail"}
    assert len(found) == len(golden), (len(found), len(golden))
    assert project_on_golden(found, golden) == sorted(golden, key=_key)
    pinned = sum(1 for g in golden if g["evidence_hash"])
    # 78 of 189 when generated: the rest carry seeding or collection times (see above).
    assert pinned >= len(golden) // 3, f"only {pinned} of {len(golden)} evidence hashes pinned"


def test_a_changed_verdict_or_hash_is_caught() -> None:
    """The projection cannot hide a change: a flipped status, a changed pinned hash or a
    finding on a resource the golden does not know all make it differ from the golden."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    found = [dict(g, resource=g["resource"] or f"generated-{i}",
                  evidence_hash=g["evidence_hash"] or f"volatile-{i}")
             for i, g in enumerate(golden)]
    assert project_on_golden(found, golden) == sorted(golden, key=_key)
    pinned = next(i for i, g in enumerate(golden) if g["evidence_hash"] and g["resource"])
    flipped = [dict(f) for f in found]
    flipped[pinned]["status"] = "pass" if found[pinned]["status"] != "pass" else "fail"
    assert project_on_golden(flipped, golden) != sorted(golden, key=_key)
    rehashed = [dict(f) for f in found]
    rehashed[pinned]["evidence_hash"] = "0" * 64
    assert project_on_golden(rehashed, golden) != sorted(golden, key=_key)
    renamed = [dict(f) for f in found]
    renamed[pinned]["resource"] = "arn:aws:s3:::not-in-the-demo"
    assert project_on_golden(renamed, golden) != sorted(golden, key=_key)
