"""The formats an audit package is made of: the built-in ones, then the plugins.

A plugin format is an :class:`~exports.exporter.Exporter` subclass registered either

* as an entry point in the ``annexa.exporters`` group of its distribution's metadata
  (``my_format = "my_package.module:MyExporter"``), found when a package is built — no
  file of Annexa changes; or
* in-process with :func:`register` (a class or an instance).

Plugins run after the built-in formats, in name order, so they see every built-in file
in :attr:`PackageContext.files <exports.exporter.PackageContext.files>`. Names are
unique: a plugin cannot replace a built-in format, and two formats may not write the
same file (the package refuses to be built rather than drop one).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from exports.exporter import Exporter, ExportError
from exports.formats import (
    ControlsExporter,
    DecisionsExporter,
    EvidenceExporter,
    FindingsExporter,
    IsmsExporter,
    ManualFilesExporter,
    OscalExporter,
    ReportExporter,
    RunsExporter,
    SamplesExporter,
)

ENTRY_POINT_GROUP = "annexa.exporters"

#: The built-in formats, in the order they run (the report embeds the samples; OSCAL
#: cites every file written before it, so it runs last).
BUILTIN: tuple[type[Exporter], ...] = (
    RunsExporter,
    SamplesExporter,
    EvidenceExporter,
    FindingsExporter,
    ControlsExporter,
    DecisionsExporter,
    ManualFilesExporter,
    IsmsExporter,
    ReportExporter,
    OscalExporter,
)

_registered: dict[str, Exporter] = {}


def _instance(obj: object, where: str) -> Exporter:
    exporter = obj() if isinstance(obj, type) else obj
    if not isinstance(exporter, Exporter):
        raise ExportError(f"{where}: {obj!r} is not an exports.exporter.Exporter")
    if not isinstance(getattr(exporter, "name", None), str) or not exporter.name:
        raise ExportError(f"{where}: exporter {obj!r} has no name")
    return exporter


def register(exporter: type[Exporter] | Exporter) -> type[Exporter] | Exporter:
    """Add a format to every package built in this process (usable as a decorator)."""
    inst = _instance(exporter, "register")
    _registered[inst.name] = inst
    return exporter


def unregister(name: str) -> None:
    """Remove a format :func:`register` added (no error if there is none)."""
    _registered.pop(name, None)


def _plugins() -> list[Exporter]:
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:
            raise ExportError(
                f"exporter plugin {ep.name!r} ({ep.value}) cannot be loaded: {exc}; "
                "fix or uninstall the distribution that declares it"
            ) from exc
        found.append(_instance(obj, f"entry point {ep.name!r} ({ep.value})"))
    return found


def exporters() -> list[Exporter]:
    """Every format of the package, built-ins first, then plugins by name."""
    builtin = [cls() for cls in BUILTIN]
    names = {e.name for e in builtin}
    plugins: dict[str, Exporter] = {}
    for e in [*_plugins(), *_registered.values()]:
        if e.name in names or (e.name in plugins and plugins[e.name] is not e):
            raise ExportError(
                f"two exporters are named {e.name!r}: rename the plugin (a name says "
                "which format wrote each file of the manifest)"
            )
        plugins[e.name] = e
    return [*builtin, *(plugins[n] for n in sorted(plugins))]
