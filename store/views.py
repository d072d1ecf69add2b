"""The auditor's read interface: stable SQL views, one definition per dialect.

Why views: auditors query the evidence database directly (``psql``, ``sqlite3``, a BI
tool). The base tables are a change log tuned for the writer; the views give the
questions auditors ask a stable shape — what was in force, from when to when, under
which control — and can be granted to a read-only role without exposing anything
writable. ``docs/schema.md`` documents every column with example queries.

The mapping (which check evidences which control) lives in TOML files, but every
finding row stores the controls it was mapped to when it was written (``controls``,
a JSON array) together with the mapping digest. The views derive control membership
from that column, so a historical answer uses the mapping that was in force then,
never today's. The catalog (93 controls, with the built-in manual/automated flags)
is stored in ``annex_a_controls`` by migration 0003 so that a view can list controls
that have no finding at all.

Timestamps are typed on both engines, including those recorded inside payloads
(manual evidence validity, exception dates): ``timestamptz`` on PostgreSQL, and on
SQLite the same text form as every stored timestamp (``YYYY-MM-DD HH:MM:SS.ffffff``),
so that they compare with each other and with literals.

``control_status_unadjusted`` is named for what it lacks. Two inputs of a control's
status cannot be evaluated by the database as ``annexa controls`` does: exceptions
match resources by a shell glob (which neither dialect evaluates as Python's
``fnmatch`` does — the recorded exceptions are in ``exceptions_history``), and the
freshness window is configuration, not data. It was called ``control_status_current``
until migration 0005, a name that promised the authoritative status; no compatibility
view keeps that name answering (see docs/schema.md).

The definitions describe the schema at the head revision: only the latest migration
that changes views creates them (:func:`view_sql`); earlier revisions' migrations no
longer do.
"""

from __future__ import annotations

from typing import Any

from store.schema import sealed_sql

#: Every documented view, in the order they are created (later ones use earlier ones).
VIEWS: tuple[str, ...] = (
    "findings_history",
    "evidence_history",
    "findings_current",
    "evidence_current",
    "control_findings_history",
    "control_findings_current",
    "manual_evidence_history",
    "manual_evidence_current",
    "exceptions_history",
    "exceptions_current",
    "control_status_unadjusted",
)
#: Views of earlier revisions that no longer exist (dropped by the migration that retired them).
RETIRED_VIEWS: tuple[str, ...] = ("control_status_current",)
#: Tables an auditor may read as they are (stable columns, documented too).
READABLE_TABLES: tuple[str, ...] = ("runs", "run_units", "annex_a_controls", "retention_log")

MANUAL_SOURCE = "@manual"
"""The ``source`` of manually recorded evidence (no connector name can start with @)."""
DECISIONS_SOURCE = "@decisions"
EXCEPTION_TYPE = "decision.exceptions.rule"


def _json(dialect: str, expr: str, field: str) -> str:
    if dialect == "postgresql":
        return f"(({expr})::jsonb ->> '{field}')"
    return f"json_extract({expr}, '$.{field}')"


def _ts(dialect: str, iso_text: str) -> str:
    """An ISO-8601 UTC text (``…T…Z``, as payloads record it) as a typed timestamp."""
    if dialect == "postgresql":
        return f"({iso_text})::timestamptz"
    # SQLite: the stored form of every timestamp column, microseconds included.
    return f"substr(replace(replace({iso_text}, 'T', ' '), 'Z', '') || '.000000', 1, 26)"


def _now(dialect: str) -> str:
    if dialect == "postgresql":
        return "now()"
    return "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"


def _explode(dialect: str, alias: str) -> str:
    """FROM-clause fragment giving one row per control of ``alias``.controls (as c.value)."""
    if dialect == "postgresql":
        return f"CROSS JOIN LATERAL jsonb_array_elements_text({alias}.controls::jsonb) AS c(value)"
    return f"JOIN json_each({alias}.controls) AS c"


def view_sql(dialect: str, *, freshness: bool = True) -> list[tuple[str, str]]:
    """``(name, SELECT …)`` for every view on ``dialect`` ("sqlite" or "postgresql").

    ``freshness``: the evidence views show ``source_updated_at`` (migration 0007);
    False gives the views as migrations 0005 to 0006 made them (no such column yet).
    """
    fresh = "e.source_updated_at, " if freshness else ""
    now = _now(dialect)
    j = lambda expr, f: _json(dialect, expr, f)  # noqa: E731
    t = lambda expr, f: _ts(dialect, _json(dialect, expr, f))  # noqa: E731
    true = "TRUE" if dialect == "postgresql" else "1"

    def flag(condition: str) -> str:
        return f"CASE WHEN {condition} THEN {true} ELSE NOT {true} END"

    return [
        (
            "findings_history",
            "SELECT f.id, f.run_id, f.source, f.key, f.check_id, f.scope, f.region, f.service, "
            "f.resource_type, f.resource_id, f.status, f.severity, f.message, f.evidence_hash, "
            "f.evidence_id, f.controls, f.mapping_digest, f.finding_hash, "
            "f.observed_at AS valid_from, "
            "LEAD(f.observed_at) OVER (PARTITION BY f.source, f.key "
            "ORDER BY f.observed_at, f.id) AS valid_to "
            f"FROM findings f WHERE {sealed_sql('f')}",
        ),
        (
            "evidence_history",
            "SELECT e.id, e.run_id, e.source, e.key, e.scope, e.region, e.service, "
            "e.resource_type, e.resource_id, e.content_hash, e.collected_at AS valid_from, "
            f"{fresh}"
            "LEAD(e.collected_at) OVER (PARTITION BY e.source, e.key "
            "ORDER BY e.collected_at, e.id) AS valid_to, b.body, "
            f"{flag('e.content_hash IS NOT NULL AND b.hash IS NULL')} AS body_removed "
            "FROM evidence e LEFT JOIN blobs b ON b.hash = e.content_hash "
            f"WHERE {sealed_sql('e')}",
        ),
        (
            "findings_current",
            "SELECT f.id, f.run_id, f.source, f.key, f.check_id, f.scope, f.region, f.service, "
            "f.resource_type, f.resource_id, f.status, f.severity, f.message, f.evidence_hash, "
            "f.evidence_id, f.controls, f.mapping_digest, f.finding_hash, f.observed_at "
            "FROM findings f WHERE f.id IN (SELECT max(x.id) FROM findings x "
            f"WHERE {sealed_sql('x')} GROUP BY x.source, x.key) "
            "AND f.status IS NOT NULL",
        ),
        (
            "evidence_current",
            "SELECT e.id, e.run_id, e.source, e.key, e.scope, e.region, e.service, "
            f"e.resource_type, e.resource_id, e.content_hash, e.collected_at, {fresh}b.body "
            "FROM evidence e LEFT JOIN blobs b ON b.hash = e.content_hash "
            "WHERE e.id IN (SELECT max(x.id) FROM evidence x "
            f"WHERE {sealed_sql('x')} GROUP BY x.source, x.key) "
            "AND e.content_hash IS NOT NULL",
        ),
        (
            "control_findings_history",
            "SELECT c.value AS control, h.id AS finding_id, h.source, h.key, h.check_id, "
            "h.scope, h.region, h.resource_id, h.status, h.severity, h.message, "
            "h.evidence_hash, h.evidence_id, h.valid_from, h.valid_to "
            f"FROM findings_history h {_explode(dialect, 'h')}",
        ),
        (
            "control_findings_current",
            "SELECT c.value AS control, f.id AS finding_id, f.source, f.key, f.check_id, "
            "f.scope, f.region, f.resource_id, f.status, f.severity, f.message, "
            "f.evidence_hash, f.evidence_id, f.observed_at "
            f"FROM findings_current f {_explode(dialect, 'f')}",
        ),
        (
            "manual_evidence_history",
            f"SELECT h.id, h.run_id, {j('h.body', 'control')} AS control, "
            f"{j('h.body', 'filename')} AS filename, {j('h.body', 'file_sha256')} AS file_sha256, "
            f"{j('h.body', 'note')} AS note, {j('h.body', 'added_by')} AS added_by, "
            f"{t('h.body', 'valid_from')} AS valid_from, "
            f"{t('h.body', 'valid_until')} AS valid_until, "
            "h.valid_from AS recorded_at, h.valid_to AS superseded_at, h.content_hash "
            f"FROM evidence_history h WHERE h.source = '{MANUAL_SOURCE}' "
            "AND h.resource_type = 'manual.evidence' AND h.content_hash IS NOT NULL",
        ),
        (
            "manual_evidence_current",
            "SELECT m.*, "
            f"{flag(f'm.valid_from <= {now} AND m.valid_until > {now}')} AS valid_now, "
            f"{flag(f'm.valid_until <= {now}')} AS expired "
            "FROM manual_evidence_history m WHERE m.superseded_at IS NULL",
        ),
        (
            "exceptions_history",
            # As recorded (store/decisions.py): in force from the later of its approval and
            # its recording, until the earlier of its expiry and its next version or
            # revocation — exactly the bounds `annexa controls` applies.
            "SELECT x.*, "
            "CASE WHEN x.approved_on IS NULL OR x.approved_on < x.recorded_at "
            "THEN x.recorded_at ELSE x.approved_on END AS effective_from, "
            "CASE WHEN x.superseded_at IS NOT NULL AND x.superseded_at < x.expires "
            "THEN x.superseded_at ELSE x.expires END AS effective_until "
            f"FROM (SELECT h.id, h.run_id, h.resource_id AS exception_id, "
            f"{j('h.body', 'check')} AS check_id, {j('h.body', 'resource')} AS resource_glob, "
            f"{j('h.body', 'source')} AS for_source, {j('h.body', 'scope')} AS for_scope, "
            f"{j('h.body', 'reason')} AS reason, {j('h.body', 'approved_by')} AS approved_by, "
            f"{t('h.body', 'approved_on')} AS approved_on, {t('h.body', 'expires')} AS expires, "
            "h.valid_from AS recorded_at, h.valid_to AS superseded_at, h.content_hash "
            f"FROM evidence_history h WHERE h.source = '{DECISIONS_SOURCE}' "
            f"AND h.resource_type = '{EXCEPTION_TYPE}' AND h.content_hash IS NOT NULL) x",
        ),
        (
            "exceptions_current",
            f"SELECT x.* FROM exceptions_history x WHERE x.effective_from <= {now} "
            f"AND x.effective_until > {now}",
        ),
        (
            "control_status_unadjusted",
            "SELECT c.id AS control, c.title, c.theme, c.manual, c.automated, "
            "COALESCE(s.fail, 0) AS fail_count, COALESCE(s.error, 0) AS error_count, "
            "COALESCE(s.pass, 0) AS pass_count, COALESCE(s.na, 0) AS not_applicable_count, "
            "COALESCE(m.valid, 0) AS manual_valid_count, "
            "COALESCE(m.expired, 0) AS manual_expired_count, "
            "CASE WHEN s.fail > 0 THEN 'fail' WHEN s.error > 0 THEN 'error' "
            "WHEN COALESCE(m.expired, 0) > 0 AND COALESCE(m.valid, 0) = 0 THEN 'stale' "
            "WHEN s.pass > 0 OR COALESCE(m.valid, 0) > 0 THEN 'pass' "
            "WHEN s.na > 0 THEN 'not_applicable' "
            "WHEN c.manual AND NOT c.automated THEN 'manual' ELSE 'no_evidence' END AS status "
            "FROM annex_a_controls c "
            "LEFT JOIN (SELECT control, "
            "SUM(CASE WHEN status = 'fail' THEN 1 ELSE 0 END) AS fail, "
            "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS error, "
            "SUM(CASE WHEN status = 'pass' THEN 1 ELSE 0 END) AS pass, "
            "SUM(CASE WHEN status = 'not_applicable' THEN 1 ELSE 0 END) AS na "
            "FROM control_findings_current GROUP BY control) s ON s.control = c.id "
            "LEFT JOIN (SELECT control, "
            "SUM(CASE WHEN valid_now THEN 1 ELSE 0 END) AS valid, "
            "SUM(CASE WHEN expired THEN 1 ELSE 0 END) AS expired "
            "FROM manual_evidence_current GROUP BY control) m ON m.control = c.id",
        ),
    ]


def drop_views(op: Any) -> None:
    """Drop every view of any revision (a migration about to change what they read)."""
    for name in (*RETIRED_VIEWS, *reversed(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")


def create_views(op: Any, dialect: str, *, freshness: bool = True) -> None:
    """Create the views of the head revision (``freshness=False``: of revisions 0005 to 0006,
    for a migration that runs before the columns of 0007 exist)."""
    for name, select in view_sql(dialect, freshness=freshness):
        op.execute(f"CREATE VIEW {name} AS {select}")
