"""A new audit-package format is one module and one registration, no core file edited.

The format (tests/export_plugin.py) is declared the way a third-party distribution
declares it: an entry point in the ``annexa.exporters`` group of its installed metadata
(a ``*.dist-info`` folder on ``sys.path``). The real ``annexa export`` — in a subprocess,
so discovery runs in a fresh interpreter — writes it into the package with its manifest
entries; ``annexa verify-package`` accepts that package with no knowledge of the format
(the signed manifest covers the file) and rejects it once the plugin file is altered.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exports.registry import ENTRY_POINT_GROUP, register, unregister
from tests.export_plugin import PATH, ClashingExporter, ControlCountsExporter
from tests.test_auditor_cli import annexa, flat
from tests.test_auditor_cli import setup as history_setup  # noqa: F401 — module fixture
from tests.test_auditor_history import History

ROOT = Path(__file__).resolve().parent.parent


def _distribution(where: Path, entry: str) -> Path:
    """An installed distribution declaring ``entry`` in the exporters group."""
    info = where / "annexa_test_exporter-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: annexa-test-exporter\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry}\n")
    return where


def _export_in_subprocess(cfg: Path, period: str, out: Path, plugins: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "ANNEXA_DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(plugins), str(ROOT)])
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "export", "-c", str(cfg), "--period", period,
         "--out", str(out), "-f", "json"],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


def _period(h: History) -> str:
    return f"{h.start.date().isoformat()}..{h.instants['fixed'].date().isoformat()}"


def test_an_entry_point_format_is_packaged_listed_and_verified(
    history_setup: tuple[Path, History, Path], tmp_path: Path  # noqa: F811
) -> None:
    cfg, h, _ = history_setup
    plugins = _distribution(
        tmp_path / "site", "control-counts = tests.export_plugin:ControlCountsExporter"
    )
    out = tmp_path / "audit.zip"
    summary = _export_in_subprocess(cfg, _period(h), out, plugins)

    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        written = json.loads(zf.read(PATH))
    entry = next(f for f in manifest["files"] if f["path"] == PATH)
    assert entry["exporter"] == "control-counts"
    assert manifest["control_counts"] == {"path": PATH, "controls": len(manifest_controls(out))}
    assert summary["manifest_digest"] == manifest["manifest_digest"]
    # The format saw what the package gathered, after every built-in format.
    assert written["report_written_before"] is True
    assert written["evidence_versions"] == sum(1 for _ in csv_rows(out, "evidence.csv"))
    assert sum(written["statuses"].values()) > 0
    # Built-in files keep their own format's name.
    owners = {f["path"]: f["exporter"] for f in manifest["files"]}
    assert owners["report.html"] == "report" and owners["findings.csv"] == "findings"
    assert owners["oscal/assessment-results.json"] == "oscal"

    # Verification needs no plugin: the signed manifest covers the new file.
    good = annexa("verify-package", str(out), "--against-db", "-c", str(cfg))
    assert good.returncode == 0 and "package OK" in good.stdout, good.stderr

    altered = tmp_path / "altered.zip"
    with zipfile.ZipFile(out) as src, zipfile.ZipFile(altered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == PATH:
                data = data.replace(b'"evidence_versions"', b'"evidence_version5"')
            dst.writestr(item, data)
    bad = annexa("verify-package", str(altered))
    assert bad.returncode == 5 and PATH in flat(bad.stderr)


def test_a_registered_format_is_packaged_and_a_clash_is_refused(
    history_setup: tuple[Path, History, Path], tmp_path: Path  # noqa: F811
) -> None:
    cfg, h, _ = history_setup
    plain = tmp_path / "plain.zip"
    res = annexa("export", "-c", str(cfg), "--period", _period(h), "--out", str(plain))
    assert res.returncode == 0, res.stderr
    with zipfile.ZipFile(plain) as zf:
        assert PATH not in zf.namelist()  # not installed, not registered: not there

    register(ControlCountsExporter)
    try:
        out = tmp_path / "audit.zip"
        res = annexa("export", "-c", str(cfg), "--period", _period(h), "--out", str(out))
        assert res.returncode == 0, res.stderr
        with zipfile.ZipFile(out) as zf:
            assert PATH in zf.namelist()
        ok = annexa("verify-package", str(out))
        assert ok.returncode == 0 and "package OK" in ok.stdout, ok.stderr
    finally:
        unregister(ControlCountsExporter.name)

    register(ClashingExporter())
    try:
        clash = tmp_path / "clash.zip"
        res = annexa("export", "-c", str(cfg), "--period", _period(h), "--out", str(clash))
        assert res.returncode == 5
        assert "'report' and 'clash' both write 'report.html'" in flat(res.stderr)
        assert not clash.exists()  # nothing half-written
    finally:
        unregister(ClashingExporter.name)


def manifest_controls(out: Path) -> list[dict[str, str]]:
    return list(csv_rows(out, "controls.csv"))


def csv_rows(out: Path, name: str) -> Iterator[dict[str, str]]:
    with zipfile.ZipFile(out) as zf:
        yield from csv.DictReader(io.StringIO(zf.read(name).decode()))
