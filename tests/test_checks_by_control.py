"""``annexa checks --by-control``: coverage of the 93 Annex A controls, through the CLI.

The counts are recomputed here from the two inputs the command reads — the installed
checks (connector entry points) and the shipped mapping files, parsed with ``tomllib``
rather than the product's loader — so a count the command inflates (a link to a check
that is not installed, a control counted twice, an empty expected-evidence text) fails.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from collector.commands.coverage import control_rows, counts
from collector.plugins import available_plugins
from mappings.loader import load_mappings
from tests.cli_runner import annexa

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"

#: Issue 15 asks for at least 60 of 93 controls with an automated check (62 today with
#: every installed source). Floors: all installed sources, and the cloud, identity,
#: code-host and ticketing connectors on their own (issue 15's part; HR, awareness,
#: policy and device connectors add their controls on top).
AUTOMATED_AT_LEAST = 60
PEOPLE_SOURCES = {"bamboohr", "hr", "knowbe4", "policies", "devices", "mdm", "intune",
                  "jamf", "kandji"}
TECHNICAL_AUTOMATED_AT_LEAST = 50


def cli(*args: str) -> str:
    result = annexa(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return json.loads(cli("checks", "--by-control", "--format", "json"))


def installed_sources() -> dict[str, str]:
    return {s.id: name for name, cls in available_plugins().items() for s in cls.checks()}


def independent_counts() -> tuple[set[str], set[str], set[str]]:
    """(catalog ids, controls with an installed linked check, controls with expected
    evidence), straight from the TOML files."""
    catalog = {
        c["id"]
        for c in tomllib.loads((MAPPINGS / "catalogs" / "iso27001-2022.toml").read_text())[
            "control"
        ]
    }
    installed = set(installed_sources())
    automated: set[str] = set()
    for path in sorted((MAPPINGS / "checks").glob("*.toml")):
        for link in tomllib.loads(path.read_text()).get("link", []):
            if link["check"] in installed and link["control"] in catalog:
                automated.add(link["control"])
    documented = {
        d["control"]
        for d in tomllib.loads((MAPPINGS / "controls.toml").read_text())["documented"]
        if d.get("expected_evidence", "").strip()
    }
    return catalog, automated, documented


def test_json_counts_are_true_and_reach_the_goal(report: dict[str, Any]) -> None:
    catalog, automated, documented = independent_counts()
    assert len(catalog) == 93
    figures = report["counts"]
    assert figures["controls"] == 93
    assert figures["with_automated_checks"] == len(automated)
    assert figures["with_automated_checks"] >= AUTOMATED_AT_LEAST
    technical = {r["control"] for r in report["controls"]
                 if set(r["sources"]) - PEOPLE_SOURCES}
    assert len(technical) >= TECHNICAL_AUTOMATED_AT_LEAST
    assert figures["manual_only"] == 93 - len(automated)
    assert figures["with_expected_evidence"] == len(documented) == 93
    rows = report["controls"]
    assert [r["control"] for r in rows] == sorted(catalog, key=lambda c: tuple(
        int(p) for p in c[2:].split(".")))
    assert {r["control"] for r in rows if r["automated_checks"]} == automated
    assert all(r["expected_evidence"] for r in rows)


def test_json_is_complete_per_control(report: dict[str, Any]) -> None:
    index = load_mappings()
    sources = installed_sources()
    by_id = {r["control"]: r for r in report["controls"]}
    for cid, control in index.catalog.items():
        row = by_id[cid]
        assert row["title"] == control.title and row["theme"] == control.theme
        assert row["automated_checks"] == list(index.checks_for(cid))
        assert row["automated_count"] == len(row["automated_checks"])
        assert row["sources"] == sorted({sources[c] for c in row["automated_checks"]})
        part = index.documented(cid)
        assert row["expected_evidence"] == part.expected_evidence
        assert row["review_interval_days"] == part.review_interval_days
        assert row["automated_sufficient"] is part.automated_sufficient
    # Spot values a reader relies on.
    assert "aws" in by_id["A.8.24"]["sources"] and "azure" in by_id["A.8.24"]["sources"]
    assert by_id["A.6.5"]["automated_checks"] == []  # post-employment duties: a document


def test_a_link_to_a_check_that_is_not_installed_is_not_automation() -> None:
    index = load_mappings()
    sources = installed_sources()
    without_github = {c: s for c, s in sources.items() if s != "github"}
    rows = {r["control"]: r for r in control_rows(index, without_github)}
    assert "github.repo.code_scanning" not in rows["A.8.29"]["automated_checks"]
    assert counts(list(rows.values()))["with_automated_checks"] < counts(
        control_rows(index, sources))["with_automated_checks"]


def test_table_fits_80_columns_and_states_the_counts(report: dict[str, Any]) -> None:
    out = cli("checks", "--by-control")
    lines = out.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 80
    figures = report["counts"]
    assert lines[-1] == (
        f"{figures['with_automated_checks']} of 93 controls have an automated check; "
        "93 of 93 have expected evidence."
    )
    body = [line for line in lines if line.startswith("│ A.")]
    assert len(body) == 93
    a814 = next(line for line in body if line.startswith("│ A.8.14 "))
    assert "aws" in a814


def test_csv_has_one_row_per_control() -> None:
    out = cli("checks", "--by-control", "--format", "csv")
    lines = out.strip().splitlines()
    assert lines[0].startswith("control,title,automated_count,automated_checks")
    assert len(lines) == 94
