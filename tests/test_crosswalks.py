"""Crosswalks: the 2013 → 2022 table against ISO/IEC 27002:2022 Annex B, and aggregation.

The official correspondence is stored as data in tests/data/iso27002_2022_annex_b.toml
(its header names the sources). Aggregation is tested on the real status order of
``store.status`` and, end to end through the CLI, in tests/test_auditor_cli.py.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mappings import MappingIndex, load_mappings
from mappings.crosswalk import (
    NOT_MAPPED,
    SATISFIED,
    UNEVIDENCED,
    aggregate,
    available_crosswalks,
    load_framework,
    report_through,
)
from store.status import CONTROL_STATUSES, STATUS_RANK

ANNEX_B = Path(__file__).parent / "data" / "iso27002_2022_annex_b.toml"


@pytest.fixture(scope="module")
def annex_b() -> dict[str, dict[str, list[str]]]:
    return tomllib.loads(ANNEX_B.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def index() -> MappingIndex:
    return load_mappings()


# ------------------------------------------------------------------ the official table


def test_annex_b_tables_agree_with_each_other(annex_b: dict[str, dict[str, list[str]]]) -> None:
    """Table B.2 (from one source) is exactly the inverse of Table B.1 (from another)."""
    b1, b2 = annex_b["table_b1"], annex_b["table_b2"]
    assert len(b2) == 114 and len(b1) == 93
    inverse: dict[str, set[str]] = {}
    for new, olds in b1.items():
        for old in olds:
            inverse.setdefault(old, set()).add(new)
    assert inverse == {old: set(new) for old, new in b2.items()}
    assert sorted(new for new, olds in b1.items() if not olds) == sorted(
        ["5.7", "5.23", "5.30", "7.4", "8.9", "8.10", "8.11", "8.12", "8.16", "8.23", "8.28"]
    )


def test_annex_b_uses_the_2022_catalog(
    annex_b: dict[str, dict[str, list[str]]], index: MappingIndex
) -> None:
    assert {f"A.{c}" for c in annex_b["table_b1"]} == set(index.catalog)


def test_2013_crosswalk_is_table_b2_row_for_row(
    annex_b: dict[str, dict[str, list[str]]], index: MappingIndex
) -> None:
    crosswalk = load_framework("iso27001-2013", index.catalog)
    rows = {e.id: sorted(e.maps_to) for e in crosswalk.entries}
    official = {
        f"A.{old}": sorted(f"A.{n}" for n in new) for old, new in annex_b["table_b2"].items()
    }
    assert len(rows) == 114
    assert set(rows) == set(official)
    wrong = {cid: (rows[cid], official[cid]) for cid in official if rows[cid] != official[cid]}
    assert wrong == {}
    assert rows["A.18.2.3"] == ["A.5.36", "A.8.8"]
    assert "Table B.2" in crosswalk.source


def test_builtin_crosswalks_load(index: MappingIndex) -> None:
    assert set(available_crosswalks()) == {
        "iso27001-2013", "soc2", "nist-csf-2.0", "nis2", "pci-dss-4.0", "hipaa-security",
        "gdpr-art32",
    }
    for name in available_crosswalks():
        assert load_framework(name, index.catalog).entries


# ------------------------------------------------------------------ aggregation


def test_status_sets_are_statuses_of_the_store() -> None:
    known = set(CONTROL_STATUSES) | {"undocumented"}  # being added to CONTROL_STATUSES
    assert SATISFIED <= known and UNEVIDENCED <= known
    assert not SATISFIED & UNEVIDENCED


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["pass", "pass", "pass"], "pass"),
        (["pass", "not_applicable"], "pass"),
        (["not_applicable", "not_applicable"], "not_applicable"),
        ([], NOT_MAPPED),
        (["pass", "no_evidence"], "no_evidence"),
        (["pass", "manual", "manual", "manual"], "manual"),
        (["pass", "manual", "no_evidence"], "no_evidence"),
        (["pass", "excepted"], "excepted"),
        (["pass", "stale", "no_evidence"], "stale"),
        (["error", "fail", "pass"], "fail"),
        (["manual", "error"], "error"),
        (["not_applicable", "fail"], "fail"),
        # Not (yet) in the store's order: never a pass, never above a known failure.
        (["pass", "undocumented"], "undocumented"),
        (["fail", "undocumented"], "fail"),
        (["pass", "made_up"], "made_up"),
    ],
)
def test_aggregate_passes_only_when_every_control_does(
    statuses: list[str], expected: str
) -> None:
    assert aggregate(statuses, STATUS_RANK) == expected


def test_aggregate_follows_the_given_order() -> None:
    """The order is the caller's (store.status.STATUS_RANK), not a copy of it."""
    reversed_rank = {s: -i for i, s in enumerate(CONTROL_STATUSES)}
    assert aggregate(["fail", "stale", "pass"], STATUS_RANK) == "fail"
    assert aggregate(["fail", "stale", "pass"], reversed_rank) == "stale"


def test_soc2_cc1_1_with_three_unevidenced_controls_is_not_pass(index: MappingIndex) -> None:
    soc2 = load_framework("soc2", index.catalog)
    statuses = {"A.5.1": "pass", "A.5.4": "manual", "A.6.2": "manual", "A.6.4": "no_evidence"}
    row = next(r for r in report_through(soc2, statuses, STATUS_RANK) if r["control"] == "CC1.1")
    assert row["maps_to"] == ["A.5.1", "A.5.4", "A.6.2", "A.6.4"]
    assert row["status"] == "no_evidence"
    assert row["unevidenced"] == 3
    assert row["unevidenced_controls"] == ["A.5.4", "A.6.2", "A.6.4"]
    every = {c: "pass" for c in row["maps_to"]}
    row = next(r for r in report_through(soc2, every, STATUS_RANK) if r["control"] == "CC1.1")
    assert (row["status"], row["unevidenced"]) == ("pass", 0)


def test_2013_requirement_with_one_unevidenced_control_is_not_pass(index: MappingIndex) -> None:
    iso13 = load_framework("iso27001-2013", index.catalog)

    def row(statuses: dict[str, str], cid: str = "A.18.2.3") -> dict:
        return next(r for r in report_through(iso13, statuses, STATUS_RANK)
                    if r["control"] == cid)

    assert row({"A.5.36": "pass", "A.8.8": "pass"})["status"] == "pass"
    undocumented = row({"A.5.36": "pass", "A.8.8": "undocumented"})
    assert (undocumented["status"], undocumented["unevidenced"]) == ("undocumented", 1)
    missing = row({"A.5.36": "pass"})  # A.8.8 has no status at all
    assert missing["iso27001_2022"] == {"A.5.36": "pass", "A.8.8": "no_evidence"}
    assert (missing["status"], missing["unevidenced_controls"]) == ("no_evidence", ["A.8.8"])
    assert row({"A.5.36": "manual", "A.8.8": "fail"})["status"] == "fail"


def test_soa_exclusion_counts_as_not_applicable(index: MappingIndex) -> None:
    soc2 = load_framework("soc2", index.catalog)
    statuses = {"A.7.1": "pass", "A.7.2": "pass", "A.7.3": "pass", "A.7.4": "fail"}
    rows = {r["control"]: r for r in report_through(soc2, statuses, STATUS_RANK)}
    assert rows["CC6.4"]["status"] == "fail"
    rows = {
        r["control"]: r
        for r in report_through(soc2, statuses, STATUS_RANK, excluded={"A.7.4"})
    }
    assert rows["CC6.4"]["status"] == "pass"
    assert rows["CC6.4"]["iso27001_2022"]["A.7.4"] == "not_applicable"
    assert rows["CC6.4"]["excluded_by_soa"] == ["A.7.4"]
    assert rows["PI1.1"]["status"] == NOT_MAPPED and rows["PI1.1"]["unevidenced"] == 0
