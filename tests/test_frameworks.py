"""Framework crosswalks (NIST CSF 2.0, NIS2, PCI DSS, HIPAA, GDPR, SOC 2, 2013): every id
checked against its framework's catalog and ours, and aggregation never passing a gap.

The checks here read the TOML files themselves, independently of the loader, so a
loader that stopped validating would not make them pass; the loader's own refusals are
tested on small broken copies.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from mappings import MappingError, MappingIndex, builtin_dir, load_mappings
from mappings.clauses import CLAUSE_ID_RE, builtin_clauses, load_clauses
from mappings.crosswalk import (
    UNEVIDENCED,
    available_crosswalks,
    load_crosswalk,
    load_framework,
    load_framework_catalog,
    report_through,
)
from store.status import STATUS_RANK

CROSSWALKS = builtin_dir() / "crosswalks"
CATALOGS = builtin_dir() / "catalogs" / "frameworks"


@pytest.fixture(scope="module")
def index() -> MappingIndex:
    return load_mappings()


def _toml(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


FILES = sorted(CROSSWALKS.glob("*.toml"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_id_exists_in_its_framework_catalog_and_ours(
    path: Path, index: MappingIndex
) -> None:
    doc = _toml(path)
    meta = doc["meta"]
    assert meta.get("catalog"), f"{path.name} names no framework catalog"
    assert meta.get("source"), f"{path.name} names no source"
    catalog = _toml(CATALOGS / f"{meta['catalog']}.toml")
    assert catalog["catalog"]["source"] and catalog["catalog"]["version"]
    framework_ids = [r["id"] for r in catalog["requirement"]]
    assert len(framework_ids) == len(set(framework_ids))
    ours = set(index.catalog) | set(builtin_clauses())
    entries = doc["control"]
    ids = [e["id"] for e in entries]
    assert sorted(ids) == sorted(framework_ids), "each requirement exactly once"
    for e in entries:
        unknown = [m for m in e["maps_to"] if m not in ours]
        assert unknown == [], f"{path.name}: {e['id']} maps to {unknown}"
    # …and the loader agrees.
    crosswalk = load_crosswalk(path, index.catalog)
    assert crosswalk.catalog is not None and crosswalk.catalog.id == meta["catalog"]


@pytest.mark.parametrize("name", sorted(available_crosswalks()))
def test_a_requirement_with_one_unevidenced_control_is_not_pass(
    name: str, index: MappingIndex
) -> None:
    """For every requirement of every crosswalk: all its controls pass but one, which is
    unevidenced (each unevidenced status in turn) — never ``pass``."""
    crosswalk = load_framework(name, index.catalog)
    mapped = [e for e in crosswalk.entries if e.maps_to]
    assert mapped
    for missing_status in sorted(UNEVIDENCED):
        for e in mapped:
            statuses = {m: "pass" for m in e.maps_to}
            statuses[e.maps_to[-1]] = missing_status
            (row,) = [r for r in report_through(crosswalk, statuses, STATUS_RANK)
                      if r["control"] == e.id]
            assert row["status"] == missing_status, (name, e.id)
            assert row["unevidenced"] == 1
            # A control absent from the statuses counts as no evidence, too.
            del statuses[e.maps_to[-1]]
            (row,) = [r for r in report_through(crosswalk, statuses, STATUS_RANK)
                      if r["control"] == e.id]
            assert row["status"] == "no_evidence"
        every = {m: "pass" for e in mapped for m in e.maps_to}
        assert {r["status"] for r in report_through(crosswalk, every, STATUS_RANK)} <= {
            "pass", "not_mapped"
        }


def test_catalog_sizes_match_the_published_frameworks() -> None:
    sizes = {p.stem: len(load_framework_catalog(p.stem).requirements)
             for p in CATALOGS.glob("*.toml")}
    assert sizes == {
        "nist-csf-2.0": 106,  # CSWP 29: 106 subcategories in 22 categories
        "nis2-art21": 10,  # Article 21(2) points (a) to (j)
        "pci-dss-4.0": 63,  # second-level requirements of requirements 1-12
        "hipaa-security": 22,  # standards of 164.308-164.316
        "gdpr-art32": 7,
        "soc2-2017": 61,
        "iso27001-2013": 114,
    }
    csf = load_framework_catalog("nist-csf-2.0").requirements
    assert len({r.split("-")[0] for r in csf}) == 22
    assert all(re.fullmatch(r"(GV|ID|PR|DE|RS|RC)\.[A-Z]{2}-\d\d", r) for r in csf)
    assert list(load_framework_catalog("nis2-art21").requirements) == [
        f"21(2)({p})" for p in "abcdefghij"
    ]
    pci = load_framework_catalog("pci-dss-4.0").requirements
    assert {r.split(".")[0] for r in pci} == {str(n) for n in range(1, 13)}
    hipaa = load_framework_catalog("hipaa-security").requirements
    assert all(re.match(r"164\.3(08|10|12|14|16)\(", r) for r in hipaa)
    soc2 = load_framework_catalog("soc2-2017").requirements
    assert sum(1 for r in soc2 if r.startswith("CC")) == 33


def test_the_official_mappings_are_carried_over() -> None:
    """Spot checks against the sources named in the files (NIST OLIR, ENISA)."""
    csf = {e["id"]: e["maps_to"] for e in _toml(CROSSWALKS / "nist-csf-2.0.toml")["control"]}
    assert csf["GV.OC-01"] == ["4.1", "6.1.1", "6.1.2", "6.1.3", "8.1", "8.2", "8.3"]
    assert csf["GV.PO-01"] == ["5.2", "A.5.1"]
    assert csf["PR.AA-01"] == ["A.5.15", "A.5.18", "A.8.2", "A.8.5"]
    assert csf["ID.RA-01"] == ["A.8.8"]
    nis2 = {e["id"]: e["maps_to"] for e in _toml(CROSSWALKS / "nis2-art21.toml")["control"]}
    assert nis2["21(2)(h)"] == ["A.5.31", "A.8.24"]
    assert nis2["21(2)(j)"] == ["A.8.5"]
    assert {"6.1.2", "6.1.3", "9.2", "A.5.35"} <= set(nis2["21(2)(a)"])
    # Subclauses are rolled up to the clauses of our catalog, never invented.
    every = {m for d in (csf, nis2) for maps in d.values() for m in maps}
    assert not any(re.fullmatch(r"9\.[23]\.\d", m) for m in every)


def test_clause_catalog_is_clauses_4_to_10() -> None:
    clauses = builtin_clauses()
    assert all(CLAUSE_ID_RE.fullmatch(c) for c in clauses)
    assert {c.split(".")[0] for c in clauses} == {"4", "5", "6", "7", "8", "9", "10"}
    assert {"4.3", "5.2", "6.1.2", "6.1.3", "9.2", "9.3", "10.2"} <= set(clauses)
    assert clauses["10.2"].judges("jira.nonconformity.closed_within_sla")
    assert not clauses["10.2"].judges("jira.incident.resolved_within_sla")


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda t: t.replace('id = "GV.OC-01"', 'id = "GV.OC-99"', 1), "not a requirement"),
        (lambda t: t.replace('"4.1", "6.1.1"', '"4.9", "6.1.1"', 1), "unknown ISO/IEC"),
        (lambda t: t.replace('"4.1", "6.1.1"', '"A.5.99", "6.1.1"', 1), "unknown ISO/IEC"),
        (lambda t: t.split("[[control]]\nid = \"GV.OC-02\"")[0], "have no entry"),
        (lambda t: t.replace('catalog = "nist-csf-2.0"', 'catalog = "nist-csf-9"'), "no framework"),
        (lambda t: t.replace('target = "iso27001-2022"', 'target = "iso27001-2022"\nx = 1'),
         "unknown key"),
    ],
)
def test_the_loader_refuses_a_broken_crosswalk(
    tmp_path: Path, index: MappingIndex, edit, reason: str
) -> None:
    bad = tmp_path / "nist-csf-2.0.toml"
    bad.write_text(edit((CROSSWALKS / "nist-csf-2.0.toml").read_text(encoding="utf-8")))
    with pytest.raises(MappingError, match=reason) as info:
        load_crosswalk(bad, index.catalog)
    assert info.value.file == str(bad) or "frameworks" in info.value.file


def test_the_clause_loader_refuses_malformed_entries(tmp_path: Path) -> None:
    good = (builtin_dir() / "catalogs" / "iso27001-2022-clauses.toml").read_text()
    for edit, reason in (
        (good.replace('id = "9.2"', 'id = "A.9.2"'), "malformed clause id"),
        (good.replace('id = "9.3"', 'id = "9.2"'), "duplicate"),
        (good.replace('"nonconformity.closed_within_sla"', '"jira nonconformity"'), "checks"),
        (good.replace('register = "assessment"', 'register = "maybe"', 1), "register"),
    ):
        path = tmp_path / "clauses.toml"
        path.write_text(edit)
        with pytest.raises(MappingError, match=reason):
            load_clauses(path)
