"""Check metadata read from ``<module>.checks.toml`` (core/checks.py): the id-only form of
``@check``, its errors, orphan entries, and the built-in connectors' files."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import connectors
from core.checks import (
    METADATA_SUFFIX,
    CheckMetadataError,
    CheckRegistry,
    check,
    metadata_path,
    passed,
    unclaimed_metadata,
    verify_metadata,
)
from core.connector import available_connectors

ROOT = Path(__file__).resolve().parent.parent

WIDGET_TOML = """\
["acme.widget.locked"]
title = "Widgets are locked"
severity = "high"
resource_type = "acme.widget"
rationale = "An unlocked widget can be turned by anyone."
remediation = "Lock the widget."

["acme.widget.locked".parameters]
max_unlocked = 2
owners = ["ops", "sec"]
by_site = { LON = 1, PAR = 0 }
"""

#: A module of a throwaway plugin package: one id-only check in its own registry.
WIDGET_MODULE = """\
from core.checks import CheckRegistry, check, passed

REGISTRY = CheckRegistry()


@check("acme.widget.locked", registry=REGISTRY)
def widget_locked(payload, params):
    return passed("locked")
"""


class Plugin:
    """A package written to a temporary folder: ``widgets.py`` and its metadata file."""

    def __init__(self, root: Path) -> None:
        self.name = f"annexa_meta_{uuid.uuid4().hex}"
        self.folder = root / self.name
        self.folder.mkdir()
        (self.folder / "__init__.py").write_text("")
        self.toml = self.folder / f"widgets{METADATA_SUFFIX}"

    def write(self, module: str, toml: str | None) -> None:
        (self.folder / "widgets.py").write_text(module)
        if toml is not None:
            self.toml.write_text(toml, encoding="utf-8")

    def load(self) -> ModuleType:
        return importlib.import_module(f"{self.name}.widgets")


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plugin]:
    monkeypatch.syspath_prepend(str(tmp_path))
    made = Plugin(tmp_path)
    yield made
    for name in [n for n in sys.modules if n.split(".")[0] == made.name]:
        del sys.modules[name]


def test_the_id_alone_reads_the_metadata_beside_the_module(plugin: Plugin) -> None:
    plugin.write(WIDGET_MODULE, WIDGET_TOML)
    module = plugin.load()

    spec = module.REGISTRY.get("acme.widget.locked")
    assert (spec.title, spec.severity, spec.resource_type) == (
        "Widgets are locked", "high", "acme.widget")
    assert spec.rationale == "An unlocked widget can be turned by anyone."
    assert spec.remediation == "Lock the widget."
    assert spec.parameters == {"max_unlocked": 2, "owners": ["ops", "sec"],
                               "by_site": {"LON": 1, "PAR": 0}}
    assert spec.func is module.widget_locked
    assert metadata_path(module.__name__) == plugin.toml
    assert unclaimed_metadata([plugin.toml]) == []


def test_a_file_is_read_once(plugin: Plugin) -> None:
    plugin.write(WIDGET_MODULE, WIDGET_TOML.replace("locked", "sealed") + WIDGET_TOML)
    module = plugin.load()
    plugin.toml.write_text("this is no longer TOML")

    # A second check of the same module, declared after the file changed on disk.
    check("acme.widget.sealed", registry=module.REGISTRY)(module.widget_locked)
    assert module.REGISTRY.get("acme.widget.sealed").title == "Widgets are sealed"


ENTRY = WIDGET_TOML.split("\n\n")[0]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (None, "no such file, where check acme.widget.locked reads its metadata"),
        (ENTRY.replace("acme.widget.locked", "acme.widget.lost"),
         r'check acme.widget.locked: no table \["acme.widget.locked"\]; add one with'),
        (ENTRY.replace('"acme.widget.locked"', "acme.widget.locked"),
         r"check acme.widget.locked: .* \(quote the id in the table header\)"),
        (ENTRY + '\ncolour = "red"\n',
         r"check acme.widget.locked: unknown key colour \(allowed: title, severity,"),
        (ENTRY.replace('remediation = "Lock the widget."', ""),
         "check acme.widget.locked: missing key remediation"),
        (ENTRY.replace('"high"', '"urgent"'),
         r"check acme.widget.locked: unknown severity 'urgent' \(one of info, low,"),
        (ENTRY.replace('title = "Widgets are locked"', "title = 3"),
         "check acme.widget.locked: title must be a non-empty string"),
        (ENTRY + "\nparameters = 3\n", "check acme.widget.locked: parameters must be a table"),
        ("[broken", r"check acme.widget.locked\): not valid TOML"),
    ],
    ids=["file missing", "id missing", "id unquoted", "unknown key", "missing key",
         "bad severity", "not a string", "parameters not a table", "not TOML"],
)
def test_bad_metadata_is_refused_naming_the_file_and_the_check(
    plugin: Plugin, toml: str | None, expected: str
) -> None:
    plugin.write(WIDGET_MODULE, toml)

    with pytest.raises(CheckMetadataError, match=expected) as caught:
        plugin.load()
    assert str(plugin.toml) in str(caught.value)


def test_an_entry_no_check_claims_is_reported(plugin: Plugin) -> None:
    orphan = ENTRY.replace("acme.widget.locked", "acme.widget.renamed")
    plugin.write(WIDGET_MODULE, WIDGET_TOML + "\n" + orphan)
    plugin.load()

    assert unclaimed_metadata([plugin.toml]) == [f'{plugin.toml}: ["acme.widget.renamed"]']
    with pytest.raises(CheckMetadataError, match="metadata of no registered check") as caught:
        verify_metadata([plugin.toml])
    assert f'{plugin.toml}: ["acme.widget.renamed"]' in str(caught.value)


def test_the_two_forms_do_not_mix() -> None:
    with pytest.raises(TypeError, match=r"give the id alone .* or every field as keywords"):
        check("acme.widget.locked", title="Widgets are locked")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"check acme\.widget\.locked: missing rationale"):
        check(id="acme.widget.locked", title="t", severity="low",  # type: ignore[call-overload]
              resource_type="acme.widget", remediation="r")
    registry = CheckRegistry()
    check(id="acme.widget.inline", title="t", severity="low", resource_type="acme.widget",
          rationale="why", remediation="how", registry=registry)(lambda p, q: passed("ok"))
    assert registry.get("acme.widget.inline").rationale == "why"


#: Strings a compliance engineer may paste into a rationale: quotes of both kinds,
#: backslashes (a Windows path, a regex), non-ASCII letters and symbols, and markup.
HOSTILE = (
    'Say "no" to C:\\Temp\\new and \\d+ \'quotes\' """three""" — café ✓ 鍵 '
    "<script>alert('x')</script> &amp; a tab\there"
)
HOSTILE_TOML = """\
["acme.widget.locked"]
title = "Say \\"no\\" to C:\\\\Temp\\\\new and \\\\d+ 'quotes' \\"\\"\\"three\\"\\"\\" — café ✓ \
鍵 <script>alert('x')</script> &amp; a tab\\there"
severity = "high"
resource_type = "acme.widget"
rationale = \"\"\"\\
Say "no" to C:\\\\Temp\\\\new and \\\\d+ 'quotes' \\"\\"\\"three\\"\\"" — café ✓ 鍵 \\
<script>alert('x')</script> &amp; a tab\\there\"\"\"
remediation = '''Say "no" to C:\\Temp\\new and \\d+ 'quotes' \"\"\"three\"\"\" — café ✓ 鍵 \
<script>alert('x')</script> &amp; a tab	here'''

["acme.widget.locked".parameters]
pattern = "^<script>\\\\\\"é$"
"""


def test_hostile_strings_round_trip_exactly(plugin: Plugin) -> None:
    plugin.write(WIDGET_MODULE, HOSTILE_TOML)
    spec = plugin.load().REGISTRY.get("acme.widget.locked")

    assert spec.title == HOSTILE
    assert spec.rationale == HOSTILE
    assert spec.remediation == HOSTILE
    assert spec.parameters == {"pattern": '^<script>\\"é$'}


# --- the built-in connectors' metadata files ------------------------------------------------

CONNECTORS = ROOT / "connectors"
METADATA_FILES = sorted(CONNECTORS.rglob(f"*{METADATA_SUFFIX}"))


def _id_only_checks(source: Path) -> list[str]:
    """The ids of the ``@check("<id>")`` decorators in ``source``."""
    return [
        decorator.args[0].value
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for decorator in node.decorator_list
        if isinstance(decorator, ast.Call)
        and getattr(decorator.func, "id", None) == "check"
        and decorator.args
        and isinstance(decorator.args[0], ast.Constant)
    ]


def test_every_connector_metadata_entry_belongs_to_a_registered_check() -> None:
    available_connectors()  # plugin discovery imports every connector's modules ...
    for module in pkgutil.walk_packages(connectors.__path__, "connectors."):
        importlib.import_module(module.name)  # ... and this the shared ones too

    assert METADATA_FILES
    verify_metadata(METADATA_FILES)


def test_each_module_with_id_only_checks_has_its_file_and_no_file_is_stray() -> None:
    modules = {p: _id_only_checks(p) for p in CONNECTORS.rglob("*.py")}
    wanted = {p.with_name(p.stem + METADATA_SUFFIX): ids for p, ids in modules.items() if ids}

    assert sorted(wanted) == METADATA_FILES
    for path, ids in wanted.items():
        with path.open("rb") as fh:
            assert sorted(tomllib.load(fh)) == sorted(ids), path


def test_the_wheel_ships_every_metadata_file() -> None:
    """pyproject's package data for ``connectors`` covers every metadata file (the image
    installs the wheel, so this is what the image has too)."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        globs = tomllib.load(fh)["tool"]["setuptools"]["package-data"]["connectors"]

    shipped = {p for pattern in globs for p in CONNECTORS.glob(pattern)}
    assert set(METADATA_FILES) <= shipped


def test_python_vocabularies_are_the_defaults_in_the_metadata() -> None:
    """Constants the code and tests use that are also a check's default parameter."""
    from connectors.gcp.iam import PEOPLE_KINDS, WORKLOAD_KINDS
    from connectors.okta.assurance import SECOND_FACTOR_METHODS
    from connectors.okta.users import SECOND_FACTOR_TYPES
    from core.checks import REGISTRY

    def default(check_id: str, name: str) -> tuple[str, ...]:
        return tuple(REGISTRY.get(check_id).parameters[name])

    assert default("gcp.iam.user_no_primitive_roles", "member_types") == PEOPLE_KINDS
    assert default("gcp.iam.service_account_no_primitive_roles", "member_types") == WORKLOAD_KINDS
    assert default("okta.policy.mfa_required", "second_factor_methods") == SECOND_FACTOR_METHODS
    assert default("okta.user.mfa_enrolled", "second_factor_types") == SECOND_FACTOR_TYPES


def test_annexa_checks_warns_of_metadata_no_check_claims(
    plugin: Plugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`annexa checks` names an orphan entry (a check renamed in Python but not in its
    file) on stderr and still lists every check; without one it says nothing."""
    import core.checks
    from tests.cli_runner import annexa

    # The file cache is process-wide: keep only the shipped connectors' files (other
    # tests in this worker may have left throwaway orphans), and drop this plugin's after.
    shipped = Path(connectors.__file__).parent
    monkeypatch.setattr(core.checks, "_FILES", {
        path: file for path, file in core.checks._FILES.items() if path.is_relative_to(shipped)})
    quiet = annexa("checks", "--format", "json")
    assert quiet.returncode == 0 and "metadata of no registered check" not in quiet.stderr

    orphan = ENTRY.replace("acme.widget.locked", "acme.widget.renamed")
    plugin.write(WIDGET_MODULE, WIDGET_TOML + "\n" + orphan)
    plugin.load()
    code, out, err = annexa("checks", "--format", "json")

    assert code == 0
    assert f'{plugin.toml}: ["acme.widget.renamed"] is the metadata of no registered check' in (
        " ".join(err.split()))
    assert "acme.widget.locked" not in err
    assert {row["id"] for row in json.loads(out)} >= {"aws.s3.bucket_default_encryption"}
