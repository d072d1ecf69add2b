"""Two-part control status: passing checks without the document are not a pass.

Runs the real engine with the scripted connector plugin; documents are recorded with
the real ``add_manual_evidence`` (what ``annexa evidence add`` calls). The demo test at
the end uses the real ``annexa demo`` estate.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.runner import run_connector
from mappings.loader import load_mappings
from store.manual import add_manual_evidence
from store.status import CONTROL_STATUSES, combine_status, control_statuses
from tests.fakes import FakeConnector, estate, fake_settings, index

__all__ = ["index"]  # a fixture, imported for the tests below

pytestmark = pytest.mark.clock


def _status(engine, index, control: str, at: datetime | None = None):
    return next(c for c in control_statuses(engine, index, at) if c.id == control)


def _record(engine, index, tmp_path: Path, control: str, **kw) -> object:
    doc = tmp_path / f"{control}.pdf"
    doc.write_bytes(f"%PDF-1.4 document for {control}\n".encode())
    return add_manual_evidence(
        engine, control=control, file=doc, mapping_digest=index.digest, config_digest="c" * 64,
        agent_version="t", added_by="alice", **kw,
    )


def test_passing_checks_without_a_document_are_undocumented_then_pass_then_undocumented(
    engine, index, tmp_path
):
    FakeConnector.script = estate({"d1": True}, {"alice": True})
    settings = fake_settings("x")
    run_connector(settings, settings.connectors[0], engine, index)
    # A.8.24 (use of cryptography) expects a cryptography policy besides the checks.
    c = _status(engine, index, "A.8.24")
    assert c.status == "undocumented" and c.document == "missing"
    assert "no valid document" in c.explanation and "annexa evidence add" in c.explanation
    assert index.documented("A.8.24").expected_evidence in c.explanation
    now = datetime.now(UTC)
    added = _record(
        engine, index, tmp_path, "A.8.24",
        valid_from=now - timedelta(seconds=1), valid_until=now + timedelta(days=30),
    )
    c = _status(engine, index, "A.8.24")
    assert c.status == "pass" and c.document == "valid"
    # Its expiry turns it back (answered at an instant after valid_until).
    after = added.valid_until + timedelta(seconds=1)
    later = _status(engine, index, "A.8.24", after)
    assert later.status in ("undocumented", "stale")
    # Unread for more than the freshness window, stale outranks undocumented; judged
    # with a freshness longer than the gap, it is the missing document that shows.
    fresh = next(
        x for x in control_statuses(engine, index, after, timedelta(days=365)) if x.id == "A.8.24"
    )
    assert fresh.status == "undocumented" and fresh.document == "expired"
    assert "expired on" in fresh.explanation


def test_the_review_interval_caps_a_document_valid_for_years(engine, index, tmp_path):
    FakeConnector.script = estate({"d1": True}, {"alice": True})
    settings = fake_settings("x")
    run_connector(settings, settings.connectors[0], engine, index)
    interval = index.documented("A.8.24").review_interval
    assert interval is not None
    start = datetime.now(UTC) - timedelta(seconds=1)
    _record(engine, index, tmp_path, "A.8.24", valid_from=start,
            valid_until=start + timedelta(days=3650))
    past_review = start + interval + timedelta(seconds=1)
    c = next(x for x in control_statuses(engine, index, past_review, timedelta(days=9999))
             if x.id == "A.8.24")
    assert c.status == "undocumented" and c.document == "expired"


def test_a_document_alone_is_not_a_pass_for_a_control_with_checks(engine, index, tmp_path):
    now = datetime.now(UTC)
    _record(engine, index, tmp_path, "A.8.5", valid_from=now - timedelta(seconds=1),
            valid_until=now + timedelta(days=30))
    c = _status(engine, index, "A.8.5")
    assert c.status == "no_evidence" and "a document alone is half of it" in c.explanation


def test_a_control_declared_automated_sufficient_passes_on_its_checks(engine, index):
    assert index.documented("A.8.5").automated_sufficient  # declared in controls.toml
    FakeConnector.script = estate({"d1": True}, {"alice": True})
    settings = fake_settings("x")
    run_connector(settings, settings.connectors[0], engine, index)
    c = _status(engine, index, "A.8.5")
    assert c.status == "pass" and c.document == "not_required"
    assert index.documented("A.8.5").rationale in c.explanation


@pytest.mark.parametrize(
    ("counts", "kw", "expected"),
    [
        ({"pass": 2}, {"manual_valid": 0}, "undocumented"),
        ({"pass": 2}, {"manual_valid": 1}, "pass"),
        ({"pass": 2, "fail": 1}, {"manual_valid": 1}, "fail"),
        ({"pass": 2}, {"manual_valid": 0, "stale_pass": True}, "stale"),
        ({"excepted": 1, "pass": 1}, {"manual_valid": 0}, "undocumented"),
        ({"excepted": 1, "pass": 1}, {"manual_valid": 1}, "excepted"),
        ({"pass": 1}, {"manual_valid": 0, "automated_sufficient": True}, "pass"),
        ({}, {"manual_valid": 1}, "no_evidence"),
        ({"not_applicable": 3}, {"manual_valid": 0}, "not_applicable"),
    ],
)
def test_combine_status_two_parts(counts, kw, expected):
    args = {"stale_pass": False, "manual_valid": 0, "manual_expired": 0,
            "manual_control": False, "has_checks": True, **kw}
    assert combine_status(counts, **args) == expected
    assert expected in CONTROL_STATUSES


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"manual_valid": 1}, "pass"),
        ({"manual_expired": 1}, "stale"),
        ({}, "manual"),
    ],
)
def test_combine_status_manual_controls(kw, expected):
    args = {"stale_pass": False, "manual_valid": 0, "manual_expired": 0,
            "manual_control": True, "has_checks": False, **kw}
    assert combine_status({}, **args) == expected


def test_undocumented_ranks_between_stale_and_excepted():
    order = list(CONTROL_STATUSES)
    assert order.index("stale") < order.index("undocumented") < order.index("excepted")


def test_the_builtin_mappings_declare_a_documented_part_for_all_93():
    index = load_mappings()
    assert len(index.catalog) == 93
    assert all(index.documented(c).expected_evidence.strip() for c in index.catalog)
    for c in index.catalog:
        part = index.documented(c)
        if part.automated_sufficient:
            assert part.rationale and index.checks_for(c), c
