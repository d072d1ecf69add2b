"""An audit-package format that lives outside Annexa's own packages (tests/ only).

It is what a third party would ship: one :class:`~exports.exporter.Exporter` subclass,
registered through the ``annexa.exporters`` entry point group (see
tests/test_export_plugins.py, which declares it in a distribution's metadata) or
:func:`exports.registry.register`. Nothing in collector/, store/ or exports/ names it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from exports.exporter import Exporter, PackageContext

PATH = "plugins/control-counts.json"


def counts(ctx: PackageContext) -> dict[str, Any]:
    """What the format says: status counts of the applicable controls at the end, and
    the size of the evidence population it was judged on."""
    return {
        "as_of": ctx.end.isoformat(),
        "statuses": dict(
            sorted(Counter(c["status"] for c in ctx.controls if c["applicable"]).items())
        ),
        "evidence_versions": len(ctx.evidence_versions),
        "report_written_before": "report.html" in ctx.files,
    }


class ControlCountsExporter(Exporter):
    name = "control-counts"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        return {PATH: json.dumps(counts(ctx), indent=1, sort_keys=True).encode()}

    def manifest(self, ctx: PackageContext, written: Mapping[str, bytes]) -> Mapping[str, Any]:
        return {"control_counts": {"path": PATH, "controls": len(ctx.controls)}}


class ClashingExporter(Exporter):
    """A badly written plugin: it would overwrite the built-in report."""

    name = "clash"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        return {"report.html": b"<p>not the report</p>"}
