"""The exporter interface: one format of the audit package.

An exporter has a ``name``, writes files (``path → bytes``) from the facts the package
gathered once for the period (:class:`PackageContext`), and may add entries of its own
to the manifest. The package lists every file it writes in the manifest (hash, size and
the exporter that wrote it) and signs the manifest, so a new format is covered by
``annexa verify-package`` without any change to verification.

A new format is one module with an :class:`Exporter` subclass plus one registration:
an entry point in the ``annexa.exporters`` group (a plugin package may live outside
this repository) or :func:`exports.registry.register`. See :mod:`exports.registry`.
"""

from __future__ import annotations

import csv
import io
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any, ClassVar

from core.csvsafe import neutralise
from store.exceptions import ExceptionRule
from store.timelines import Timeline

#: The manifest's own file: no exporter may write it.
MANIFEST = "manifest.json"


class ExportError(RuntimeError):
    """The package cannot be built faithfully (e.g. a run it relies on does not verify,
    or two formats would write the same file)."""


def iso(t: datetime | None) -> str:
    """An instant as the package writes it (UTC, ``Z``); empty for none."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z") if t else ""


def csv_bytes(rows: Iterable[Mapping[str, Any]], cols: list[str]) -> bytes:
    """A CSV file of ``cols``: cells a spreadsheet would run as formulas are neutralised
    (core/csvsafe.py, reversed by verification), a missing value is an empty cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None else neutralise(r.get(c)) for c in cols])
    return buf.getvalue().encode("utf-8")


@dataclass
class PackageContext:
    """What the package read once for ``[start, end]``, shared by every exporter.

    Exporters read it and must not change it; ``files`` holds what the exporters before
    this one wrote (the report embeds the samples, OSCAL cites the files it finds).
    """

    engine: Any
    index: Any
    scope: Any
    start: datetime
    end: datetime
    generated: datetime
    agent_version: str
    freshness: timedelta
    title: str
    chart_points: int
    exceptions: list[ExceptionRule]
    #: Every run relied on (runs.json entries, each with its manifest lines).
    runs: list[dict[str, Any]]
    #: RFC 3161 tokens of those runs, as timestamps.json holds them.
    stamps: list[dict[str, Any]]
    #: Every evidence / finding version in force during the period.
    evidence_versions: list[dict[str, Any]]
    finding_versions: list[dict[str, Any]]
    #: Stored bodies of those evidence versions (a removed body is absent).
    bodies: dict[str, str]
    timelines: dict[str, Timeline]
    #: Control statuses at the end, with applicability and the period's figures.
    controls: list[dict[str, Any]]
    #: The Statement of Applicability at the end (exports/soa.py rows).
    soa: list[dict[str, Any]]
    #: The exceptions in force at some instant of the period, as recorded.
    exceptions_in_period: list[dict[str, Any]]
    pdf: Callable[[bytes], bytes] | None = None
    files: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def findings_at_end(self) -> list[dict[str, Any]]:
        return [f for f in self.finding_versions if f["valid_to"] is None]

    @cached_property
    def isms(self) -> dict[str, Any]:
        """The ISMS clauses, risk register and monthly trends (exports/isms.py), read
        once for the formats that need them, from the package's own timelines."""
        from exports.isms import package_parts

        return package_parts(
            self.engine,
            self.index,
            start=self.start,
            end=self.end,
            timelines=self.timelines,
            applicable=self.scope.applicable,
            freshness=self.freshness,
            exceptions=self.exceptions,
        )


class Exporter(ABC):
    """One format of the audit package.

    Subclasses set ``name`` (unique; the manifest names it beside every file it wrote)
    and implement :meth:`write`. :meth:`manifest` may add top-level manifest entries
    (keys no other exporter and no package field uses); the manifest is signed, so they
    are covered like the files.
    """

    name: ClassVar[str]

    @abstractmethod
    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        """The files of this format: relative POSIX paths → contents."""

    def manifest(self, ctx: PackageContext, written: Mapping[str, bytes]) -> Mapping[str, Any]:
        """Top-level manifest entries this format adds (none by default)."""
        return {}


_UNSAFE_PATH = re.compile(r"[\x00-\x1f\x7f\\]")


def check_path(exporter: str, path: str) -> str:
    """``path`` if it is a safe, relative zip entry other than the manifest; else a clear
    :class:`ExportError` naming the exporter (unpacking must never escape its folder)."""
    p = PurePosixPath(path)
    if (
        not path
        or p.is_absolute()
        or ".." in p.parts
        or _UNSAFE_PATH.search(path)
        or str(p) != path
        or path == MANIFEST
    ):
        raise ExportError(
            f"exporter {exporter!r} writes {path!r}: a package path must be relative, "
            f"without '..', backslashes or control characters, and not {MANIFEST}"
        )
    return path
