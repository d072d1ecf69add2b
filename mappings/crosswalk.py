"""Crosswalks to other frameworks, and the Statement of Applicability scope file.

Crosswalk files (``mappings/crosswalks/*.toml``) map each control of another framework
to ISO/IEC 27001:2022 Annex A controls::

    [meta]
    framework = "iso27001-2013"     # the name `annexa controls --framework` takes
    title = "ISO/IEC 27001:2013 Annex A"
    target = "iso27001-2022"
    catalog = "iso27001-2013"       # catalogs/frameworks/<catalog>.toml: the framework's ids
    source = "where the correspondence comes from"

    [[control]]
    id = "A.9.4.2"
    title = "Secure log-on procedures"
    maps_to = ["A.8.5"]             # may be empty: no equivalent ("not_mapped")
    rationale = "optional"

``maps_to`` names Annex A controls and, where the source maps to the management system
itself, ISO/IEC 27001:2022 clauses (``6.1.2``, ``9.2`` …, see :mod:`mappings.clauses`).
Every ``id`` must be a requirement of the framework's catalog
(``catalogs/frameworks/<catalog>.toml``: ids with titles, version and source), and every
requirement of that catalog must have an entry, so that no requirement is silently
missing from a report.

Aggregation is conservative (:func:`aggregate`): a framework control passes only when
every 2022 control it relies on passes, or does not apply (``not_applicable``, or
excluded by the Statement of Applicability). Otherwise it shows the worst status among
the controls that do not, and how many of its controls are unevidenced (nothing
collected, a manual control without a record, or passing checks without the required
document), so a crosswalk never hides a failure or a gap. Like the mapping loader,
loading is strict: file, entry and reason for every problem.

The scope file (``mappings/scope.example.toml``) declares, per Annex A control,
whether it is applicable and why — the input of the Statement of Applicability.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.tomlfile import numbered_tables, read_toml
from mappings.loader import MappingError, builtin_dir, control_sort_key

CROSSWALK_DIR = "crosswalks"
FRAMEWORK_CATALOG_DIR = "catalogs/frameworks"
TARGET = "iso27001-2022"
NOT_MAPPED = "not_mapped"

#: Control statuses that satisfy a requirement relying on the control. Anything else,
#: including a status this module does not know, keeps the requirement from passing.
SATISFIED = frozenset({"pass", "not_applicable"})
#: Control statuses with no evidence in force: nothing collected (``no_evidence``), a
#: manual control without a valid record (``manual``), passing checks without the
#: document the control requires (``undocumented``).
UNEVIDENCED = frozenset({"no_evidence", "manual", "undocumented"})


@dataclass(frozen=True)
class CrosswalkEntry:
    id: str
    title: str
    maps_to: tuple[str, ...]
    rationale: str | None


@dataclass(frozen=True)
class Crosswalk:
    framework: str
    title: str
    source: str
    file: str
    entries: tuple[CrosswalkEntry, ...]
    #: The framework catalog the entries were validated against (None: not declared).
    catalog: FrameworkCatalog | None = None


@dataclass(frozen=True)
class FrameworkCatalog:
    """A framework's requirement ids, as published: what a crosswalk may name."""

    id: str
    title: str
    version: str
    source: str
    file: str
    requirements: dict[str, str]  # id -> title


def load_framework_catalog(name: str) -> FrameworkCatalog:
    """``catalogs/frameworks/<name>.toml``, validated (unique, non-empty ids and titles)."""
    path = builtin_dir() / FRAMEWORK_CATALOG_DIR / f"{name}.toml"
    if not path.is_file():
        raise MappingError(
            f"{FRAMEWORK_CATALOG_DIR}/", "<dir>", f"no framework catalog named {name!r}"
        )
    file, doc = _read(path)
    tops = ("catalog", "requirement")
    numbered = numbered_tables(path, doc, "requirement", tops, MappingError)
    meta = doc.get("catalog")
    if not isinstance(meta, dict):
        raise MappingError(file, "catalog", "missing [catalog] table")
    for key in ("id", "title", "version", "source"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise MappingError(file, "catalog", f"missing or empty {key!r}")
    if meta["id"] != name:
        raise MappingError(file, "catalog", f"id {meta['id']!r} differs from the file name")
    reqs: dict[str, str] = {}
    for n, item in numbered:
        entry = f"requirement[{n}]"
        if not isinstance(item, dict) or set(item) - {"id", "title", "group"}:
            raise MappingError(file, entry, "must be a table of id, title and optional group")
        rid, title = item.get("id"), item.get("title")
        if not isinstance(rid, str) or not rid.strip() or not isinstance(title, str):
            raise MappingError(file, entry, "needs a non-empty 'id' and a 'title'")
        if rid in reqs:
            raise MappingError(file, f"{entry} ({rid})", f"duplicate id {rid}")
        reqs[rid] = title
    return FrameworkCatalog(meta["id"], meta["title"], meta["version"], meta["source"], file,
                            reqs)


def available_crosswalks() -> dict[str, Path]:
    """Framework name → crosswalk file, for every built-in crosswalk."""
    out: dict[str, Path] = {}
    for path in sorted((builtin_dir() / CROSSWALK_DIR).glob("*.toml")):
        try:
            meta = tomllib.loads(path.read_text(encoding="utf-8")).get("meta", {})
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        name = meta.get("framework") if isinstance(meta, dict) else None
        if isinstance(name, str):
            out[name] = path
    return out


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    return str(path), read_toml(path, MappingError)


def load_crosswalk(path: Path, catalog: Collection[str]) -> Crosswalk:
    """Load and validate one crosswalk file against the 2022 catalog (Annex A ids in
    ``catalog``, plus the clause ids of :mod:`mappings.clauses`) and, when its ``[meta]``
    names one, against the framework's own catalog."""
    from mappings.clauses import builtin_clauses

    targets = set(catalog) | set(builtin_clauses())
    file, doc = _read(path)
    for key in doc:
        if key not in ("meta", "control"):
            raise MappingError(file, "<file>", f"unknown top-level key {key!r}")
    meta = doc.get("meta")
    if isinstance(meta, dict):
        for key in meta:
            if key not in ("framework", "title", "target", "catalog", "source"):
                raise MappingError(file, "meta", f"unknown key {key!r}")
    if not isinstance(meta, dict):
        raise MappingError(file, "meta", "missing [meta] table (framework, title, target)")
    for key in ("framework", "title", "target"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise MappingError(file, "meta", f"missing or empty {key!r}")
    if meta["target"] != TARGET:
        raise MappingError(file, "meta", f"target must be {TARGET!r}, got {meta['target']!r}")
    framework_catalog = None
    if meta.get("catalog") is not None:
        if not isinstance(meta["catalog"], str):
            raise MappingError(file, "meta", "'catalog' must name a framework catalog")
        framework_catalog = load_framework_catalog(meta["catalog"])
    items = doc.get("control")
    if not isinstance(items, list) or not items:
        raise MappingError(file, "<file>", "lists no [[control]] entries")
    seen: set[str] = set()
    entries: list[CrosswalkEntry] = []
    for n, item in enumerate(items, start=1):
        entry = f"control[{n}]"
        if not isinstance(item, dict):
            raise MappingError(file, entry, "must be a table")
        for key in item:
            if key not in ("id", "title", "maps_to", "rationale"):
                raise MappingError(file, entry, f"unknown key {key!r}")
        cid, title, maps = item.get("id"), item.get("title"), item.get("maps_to")
        if not isinstance(cid, str) or not cid.strip():
            raise MappingError(file, entry, "missing or empty 'id'")
        entry = f"{entry} ({cid})"
        if not isinstance(title, str) or not title.strip():
            raise MappingError(file, entry, "missing or empty 'title'")
        if not isinstance(maps, list) or not all(isinstance(m, str) for m in maps):
            raise MappingError(file, entry, "'maps_to' must be an array of control ids")
        if cid in seen:
            raise MappingError(file, entry, f"duplicate id {cid}")
        seen.add(cid)
        if framework_catalog is not None and cid not in framework_catalog.requirements:
            raise MappingError(
                file, entry, f"{cid!r} is not a requirement of catalog {framework_catalog.id} "
                f"({framework_catalog.file})"
            )
        for m in maps:
            if m not in targets:
                raise MappingError(
                    file, entry, f"unknown ISO/IEC 27001:2022 control or clause {m!r}"
                )
        if len(set(maps)) != len(maps):
            raise MappingError(file, entry, "'maps_to' lists a control twice")
        rationale = item.get("rationale")
        entries.append(
            CrosswalkEntry(
                cid, title, tuple(sorted(maps, key=control_sort_key)),
                rationale if isinstance(rationale, str) else None,
            )
        )
    if framework_catalog is not None:
        missing = [r for r in framework_catalog.requirements if r not in seen]
        if missing:
            raise MappingError(
                file, "<file>", f"{len(missing)} requirement(s) of catalog "
                f"{framework_catalog.id} have no entry: {', '.join(missing[:8])}"
                + ("…" if len(missing) > 8 else ""),
            )
    return Crosswalk(meta["framework"], meta["title"], str(meta.get("source", "")), file,
                     tuple(entries), framework_catalog)


def load_framework(name: str, catalog: Collection[str]) -> Crosswalk:
    found = available_crosswalks()
    if name not in found:
        raise MappingError(
            f"{CROSSWALK_DIR}/", "<dir>",
            f"no crosswalk for framework {name!r} (available: {', '.join(sorted(found))})",
        )
    return load_crosswalk(found[name], catalog)


def aggregate(statuses: Collection[str], rank: Mapping[str, int]) -> str:
    """A requirement's status from the statuses of the 2022 controls it relies on.

    ``pass`` only when every control is ``pass`` or ``not_applicable`` (and one passes);
    ``not_applicable`` when none applies; otherwise the worst status among the controls
    that are not satisfied, by ``rank`` (lower is worse; pass ``store.status.STATUS_RANK``
    so the order is defined in one place). A status missing from ``rank`` ranks after
    every known one: shown only when nothing known is wrong, never read as a pass.
    ``not_mapped`` when the requirement relies on no control at all.
    """
    if not statuses:
        return NOT_MAPPED
    unsatisfied = [s for s in statuses if s not in SATISFIED]
    if unsatisfied:
        return min(unsatisfied, key=lambda s: (rank.get(s, len(rank)), s))
    return "pass" if "pass" in statuses else "not_applicable"


def report_through(
    crosswalk: Crosswalk,
    statuses: Mapping[str, str],
    rank: Mapping[str, int],
    *,
    excluded: Collection[str] = (),
) -> list[dict[str, Any]]:
    """One row per framework control, aggregated conservatively (see :func:`aggregate`).

    ``statuses`` maps 2022 control ids to their status (a control missing from it is
    ``no_evidence``); ``excluded`` are the controls the Statement of Applicability
    excludes, which count as ``not_applicable`` whatever their own status.
    """
    out = set(excluded)
    rows = []
    for e in crosswalk.entries:
        mapped = {
            m: "not_applicable" if m in out else statuses.get(m, "no_evidence") for m in e.maps_to
        }
        unevidenced = [m for m, s in mapped.items() if s in UNEVIDENCED]
        rows.append(
            {
                "framework": crosswalk.framework,
                "control": e.id,
                "title": e.title,
                "status": aggregate(list(mapped.values()), rank),
                "maps_to": list(e.maps_to),
                "iso27001_2022": mapped,
                "unevidenced": len(unevidenced),
                "unevidenced_controls": unevidenced,
                "excluded_by_soa": [m for m in e.maps_to if m in out],
                "rationale": e.rationale,
            }
        )
    return rows
