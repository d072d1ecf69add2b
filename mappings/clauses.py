"""The catalog of ISO/IEC 27001:2022 clauses 4-10 (``catalogs/iso27001-2022-clauses.toml``).

Clauses are the management-system requirements (scope, policy, risk assessment and
treatment, internal audit, management review…), evidenced mostly by documented
information: manual records (``annexa evidence add --control 9.2``), policy documents
whose front matter names the clause, ticketing processes judged by checks, and the risk
register. Readiness is computed in :mod:`store.isms`; this module only loads and
validates the catalog, as strictly as the Annex A loader (file, entry, reason).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from core.tomlfile import numbered_tables, read_toml
from mappings.loader import MappingError, builtin_dir

CLAUSES_FILE = "catalogs/iso27001-2022-clauses.toml"
#: Clause ids: ``4.1`` … ``10.2``, and subclauses such as ``6.1.2``.
CLAUSE_ID_RE = re.compile(r"(?:[4-9]|10)\.[1-9](?:\.[1-9])?")
#: Process checks named by ``<kind>.<name>`` (the source prefix is any ticketing connector).
_PROCESS_CHECK_RE = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
REGISTER_ROLES = ("assessment", "treatment")
_KEYS = (
    "id",
    "title",
    "expected_evidence",
    "review_interval_days",
    "checks",
    "register",
    "register_documents",
)


@dataclass(frozen=True)
class Clause:
    """One clause: what it asks for and which sources can judge it."""

    id: str
    title: str
    expected_evidence: str
    review_interval_days: int | None
    #: Process checks by ``<kind>.<name>``: findings of ``<prefix>.<kind>.<name>`` count.
    checks: tuple[str, ...]
    #: ``assessment`` / ``treatment``: the risk register judges the clause; None: it does not.
    register: str | None
    #: The recorded risk register is (part of) the clause's documented information.
    register_documents: bool

    @property
    def review_interval(self) -> timedelta | None:
        return None if self.review_interval_days is None else timedelta(
            days=self.review_interval_days
        )

    def judges(self, check_id: str) -> bool:
        """Whether a finding of ``check_id`` (``<prefix>.<kind>.<name>``) counts here."""
        parts = check_id.split(".")
        return len(parts) == 3 and f"{parts[1]}.{parts[2]}" in self.checks


def load_clauses(path: Path | None = None) -> dict[str, Clause]:
    """Load and validate the clause catalog (the built-in one by default)."""
    path = path or builtin_dir() / CLAUSES_FILE
    file = str(path)
    doc = read_toml(path, MappingError)
    out: dict[str, Clause] = {}
    for n, item in numbered_tables(path, doc, "clause", ("catalog", "clause"), MappingError):
        entry = f"clause[{n}]"
        if not isinstance(item, dict):
            raise MappingError(file, entry, "must be a table")
        cid = item.get("id")
        if isinstance(cid, str):
            entry = f"{entry} ({cid})"
        out_clause = _clause(file, entry, item)
        if out_clause.id in out:
            raise MappingError(file, entry, f"duplicate clause id {out_clause.id}")
        out[out_clause.id] = out_clause
    return out


def _clause(file: str, entry: str, item: dict[str, Any]) -> Clause:
    for key in item:
        if key not in _KEYS:
            raise MappingError(file, entry, f"unknown key {key!r} (allowed: {', '.join(_KEYS)})")
    cid = item.get("id")
    if not isinstance(cid, str) or not CLAUSE_ID_RE.fullmatch(cid):
        raise MappingError(file, entry, f"malformed clause id {cid!r} (expected like 9.2)")
    for key in ("title", "expected_evidence"):
        v = item.get(key)
        if not isinstance(v, str) or not v.strip():
            raise MappingError(file, entry, f"missing or empty {key!r}")
    days = item.get("review_interval_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        raise MappingError(file, entry, "'review_interval_days' must be a positive whole number")
    checks = item.get("checks", [])
    if not isinstance(checks, list) or not all(
        isinstance(c, str) and _PROCESS_CHECK_RE.fullmatch(c) for c in checks
    ):
        raise MappingError(file, entry, "'checks' must list process checks like "
                           "'internal_audit.every_period'")
    register = item.get("register")
    if register is not None and register not in REGISTER_ROLES:
        raise MappingError(file, entry, f"'register' must be one of {', '.join(REGISTER_ROLES)}")
    documents = item.get("register_documents", False)
    if not isinstance(documents, bool):
        raise MappingError(file, entry, "'register_documents' must be true or false")
    if documents and register is None:
        raise MappingError(file, entry, "'register_documents' needs 'register'")
    return Clause(
        id=cid,
        title=item["title"],
        expected_evidence=item["expected_evidence"],
        review_interval_days=days,
        checks=tuple(checks),
        register=register,
        register_documents=documents,
    )


@cache
def builtin_clauses() -> dict[str, Clause]:
    """The shipped clause catalog, loaded once per process."""
    return load_clauses()


def clause_sort_key(clause_id: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in clause_id.split("."))
