"""Crosswalks to other frameworks, and the Statement of Applicability scope file.

Crosswalk files (``mappings/crosswalks/*.toml``) map each control of another framework
to ISO/IEC 27001:2022 Annex A controls::

    [meta]
    framework = "iso27001-2013"     # the name `annexa controls --framework` takes
    title = "ISO/IEC 27001:2013 Annex A"
    target = "iso27001-2022"
    source = "where the correspondence comes from"

    [[control]]
    id = "A.9.4.2"
    title = "Secure log-on procedures"
    maps_to = ["A.8.5"]             # may be empty: no Annex A equivalent ("not_mapped")
    rationale = "optional"

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

from mappings.loader import MappingError, builtin_dir, control_sort_key

CROSSWALK_DIR = "crosswalks"
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
    file = str(path)
    try:
        return file, tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(file, "<file>", f"cannot read file: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MappingError(file, "<file>", f"invalid TOML: {exc}") from None


def load_crosswalk(path: Path, catalog: Collection[str]) -> Crosswalk:
    """Load and validate one crosswalk file against the 2022 catalog."""
    file, doc = _read(path)
    for key in doc:
        if key not in ("meta", "control"):
            raise MappingError(file, "<file>", f"unknown top-level key {key!r}")
    meta = doc.get("meta")
    if not isinstance(meta, dict):
        raise MappingError(file, "meta", "missing [meta] table (framework, title, target)")
    for key in ("framework", "title", "target"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise MappingError(file, "meta", f"missing or empty {key!r}")
    if meta["target"] != TARGET:
        raise MappingError(file, "meta", f"target must be {TARGET!r}, got {meta['target']!r}")
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
        for m in maps:
            if m not in catalog:
                raise MappingError(file, entry, f"unknown ISO/IEC 27001:2022 control {m!r}")
        if len(set(maps)) != len(maps):
            raise MappingError(file, entry, "'maps_to' lists a control twice")
        rationale = item.get("rationale")
        entries.append(
            CrosswalkEntry(
                cid, title, tuple(sorted(maps, key=control_sort_key)),
                rationale if isinstance(rationale, str) else None,
            )
        )
    return Crosswalk(meta["framework"], meta["title"], str(meta.get("source", "")), file,
                     tuple(entries))


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
    that are not satisfied, by ``rank`` (lower is worse; pass ``store.queries.STATUS_RANK``
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
