"""The connector kit (connectors/kit.py): one unit machinery, one rule for what a stored
unit error may keep, checks derived from the connector's prefix.

The error rule is played adversarially through the product's run engine
(tests/harness.py): a source whose answers carry a token, a registered secret, an
e-mail address and a large body must leave none of them in the stored unit error, on
the HTTP error path and on the "bug in the reader" path alike.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.http import HttpClient, SourceError
from connectors.kit import (
    GLOBAL,
    MAX_DETAIL_CHARS,
    MAX_ERROR_CHARS,
    SourceErrors,
    unit_error,
)
from core.connector import Connector, available_connectors
from core.records import Evidence
from tests.example_connector import ExampleConnector, ExampleOptions
from tests.fakehttp import FAST_HTTP
from tests.harness import RunResult, run_built
from tests.test_example_connector import TOKEN, FakeDirectory, user

ROOT = Path(__file__).resolve().parents[1]
#: A GitHub-token-shaped value and an e-mail address the source puts in its answers.
LEAKED_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
LEAKED_EMAIL = "alice.smith@acme.example"
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@pytest.fixture
def directory(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDirectory]:
    monkeypatch.setenv("ANNEXA_TEST_EXAMPLE_TOKEN", TOKEN)
    with FakeDirectory() as fake:
        fake.users += [user("u1alice", mfa=True), user("u2bob", mfa=False)]
        yield fake


def build(fake: FakeDirectory, cls: type[ExampleConnector] = ExampleConnector) -> Connector:
    opts = {"base_url": fake.base, "api_token": {"env": "ANNEXA_TEST_EXAMPLE_TOKEN"},
            "http": FAST_HTTP}
    return cls("kit-test", ExampleOptions.model_validate(opts))


def stored_user_error(run: RunResult) -> str:
    """The unit error the engine stored for the ``user`` unit (it must have failed)."""
    [unit] = [c for c in run.coverage if c.service == "user"]
    assert not unit.ok and unit.error
    return unit.error


def assert_clean(text: str) -> None:
    assert LEAKED_TOKEN not in text
    assert TOKEN not in text  # the connector's own credential (registered when read)
    assert not EMAIL_RE.search(text), text
    assert "yyyyyyyy" * 10 not in text  # no body padding survives
    assert len(text) <= MAX_ERROR_CHARS


def test_an_http_error_body_never_reaches_the_stored_unit_error(
    directory: FakeDirectory,
) -> None:
    body = {
        "message": f"token {LEAKED_TOKEN} of {LEAKED_EMAIL} refused; your key is {TOKEN}",
        "debug": "DEBUGDUMP " * 1_000,  # the rest of the body: never stored
    }
    directory.fault(
        "/api/v1/users", (400, json.dumps(body), {"Content-Type": "application/json"})
    )
    run = run_built(build(directory))
    error = stored_user_error(run)
    assert "400" in error  # what an operator needs is kept: the status…
    assert "refused" in error  # …and the source's reason, scrubbed
    assert "DEBUGDUMP" not in error
    assert_clean(error)
    findings = [f for f in run.findings if f.status == "error"]
    assert findings and all(LEAKED_TOKEN not in f.message for f in findings)
    assert not any(EMAIL_RE.search(f.message) for f in findings)
    assert not any(f.status in ("pass", "fail") for f in run.findings)


class ParsingConnector(ExampleConnector):
    """The example connector with a reader bug: it parses a text field as a number, so
    the exception's text quotes what the source sent."""

    def _users(self, client: HttpClient, scope: str) -> Iterator[Evidence]:
        for raw in client.paginate_cursor(
            "/api/v1/users", params={"limit": 2}, items_key="users",
            cursor_param="cursor", cursor_key="next_cursor", last_key=None,
        ):
            level = int(raw["level"])  # the bug: "level" is free text at this source
            yield Evidence(scope, GLOBAL, "example.user.account", raw["id"], {"level": level})


def test_a_reader_bug_keeps_its_class_and_a_scrubbed_bounded_detail_only(
    directory: FakeDirectory,
) -> None:
    for u in directory.users:
        u["level"] = f"{LEAKED_TOKEN} {LEAKED_EMAIL} {TOKEN} " + "y" * 5_000
    run = run_built(build(directory, ParsingConnector))
    error = stored_user_error(run)
    assert error.startswith("internal error: ValueError: invalid literal for int()")
    assert_clean(error)
    assert len(error) <= len("internal error: ValueError: ") + MAX_DETAIL_CHARS
    assert not [r for r in run.evidence if r.service == "user"]


def test_only_the_first_line_of_an_unexpected_exception_is_kept() -> None:
    body = json.dumps({"user": LEAKED_EMAIL, "t": LEAKED_TOKEN})
    exc = RuntimeError(f"decode failed\n{body}")
    assert unit_error(exc) == "internal error: RuntimeError: decode failed"
    assert unit_error(KeyError()) == "internal error: KeyError"


def test_a_source_error_keeps_the_connectors_description_scrubbed() -> None:
    assert unit_error(SourceError(f"denied for {LEAKED_EMAIL}", status=403)) == (
        "denied for [e-mail]"
    )
    aws_like = SourceErrors((ValueError,), lambda e: f"GetThing: AccessDenied {LEAKED_TOKEN}")
    assert unit_error(ValueError("AWS message naming arn:aws:iam::1:user/x"), aws_like) == (
        "GetThing: AccessDenied [REDACTED]"
    )


# --------------------------------------------------------------------------- checks()

#: Connectors that keep their own ``checks()``, and why. Each must still equal the
#: prefix-derived set. None today: the two correlations became analyzers (analyzers/).
OVERRIDES: dict[str, str] = {}


@pytest.mark.parametrize("name", sorted(available_connectors()))
def test_each_connectors_checks_are_those_of_its_prefix(name: str) -> None:
    cls = available_connectors()[name]
    derived = sorted(s.id for s in cls.check_registry if s.id.startswith(f"{cls.prefix}."))
    assert sorted(s.id for s in cls.checks()) == derived
    assert derived, f"{name} registers no check under {cls.prefix}."
    overrides = "checks" in vars(cls)
    assert overrides == (name in OVERRIDES), (
        f"{name}: checks() is derived from prefix; override it only with a reason in OVERRIDES"
    )


# --------------------------------------------------------------------------- one kit

#: What only connectors/kit.py may define (it used to be forked across four modules).
KIT_ONLY = {"GLOBAL", "ERRORS_KEY", "EvidenceMissing", "run_unit", "stream_units",
            "stream_jobs", "batches", "require", "with_errors", "Pseudonymiser"}


def test_the_unit_machinery_is_defined_in_the_kit_only() -> None:
    forks: list[str] = []
    for path in sorted((ROOT / "connectors").rglob("*.py")):
        if path.name == "kit.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            forks += [f"{path.relative_to(ROOT)}:{n}" for n in names if n in KIT_ONLY]
    assert forks == []


def test_kit_users_import_it_directly() -> None:
    """No module re-exports the kit (``__all__`` lists of borrowed names were the forks'
    first step)."""
    offenders: list[str] = []
    for path in sorted((ROOT / "connectors").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                listed = {ast.literal_eval(e) for e in node.value.elts}  # type: ignore[attr-defined]
                if listed & KIT_ONLY:
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
