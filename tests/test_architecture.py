"""The import rules of docs/architecture.md, enforced on the source.

Reads every module of our packages with ``ast`` (no import is executed), takes each
``import``/``from … import`` as an arrow — function-level and ``TYPE_CHECKING`` imports
included, since a lazy import is still a dependency a reader must follow — and fails on

* a cycle between modules (strongly connected components of more than one module);
* a forbidden arrow: ``connectors → store``/``collector``/``analyzers``, ``store →
  collector``/``connectors``/``analyzers``/``exports``, ``exports →
  collector``/``connectors``, ``mappings → store``/``collector``/``connectors``/
  ``analyzers``/``exports``, ``core → anything of ours``, ``analyzers →
  store``/``collector`` (they read the store through core's ``EvidenceView`` only),
  ``anything → annexa_demo`` except ``collector.demo`` (the demo estates, demo/annexa_demo,
  ship in a distribution of their own; ``annexa_demo`` may import connectors and core), and
  ``anything → collector.cli`` except ``collector.__main__``.

Arrows that break a rule today and cannot be removed before the core package exists are
listed in :data:`ALLOWED` with the reason; an entry that no longer matches any arrow
fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from fnmatch import fnmatch
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "analyzers", "annexa_demo", "collector", "connectors", "core", "exports", "mappings", "store",
)
#: Where each package's source lives: the product's at the root, the demo estates under
#: demo/ (a distribution of their own, so the product wheel never ships them).
PACKAGE_DIRS = {pkg: ROOT / pkg for pkg in PACKAGES} | {
    "annexa_demo": ROOT / "demo" / "annexa_demo",
}

#: Arrows that break a rule today, as (importer pattern, imported module) → why each
#: stays for now. Patterns are fnmatch-style over module names.
ALLOWED: dict[tuple[str, str], str] = {
    # The CLI reference (docs/cli.md) is generated from the assembled Typer app, and only
    # collector/cli.py assembles it (its own commands + collector/commands/*).
    ("collector.docgen", "collector.cli"): "renders the assembled CLI into docs/cli.md",
}


def allowed(src: str, dst: str) -> bool:
    return any(fnmatch(src, pat) and dst == target for pat, target in ALLOWED)


def module_name(path: Path, base: Path = ROOT) -> str:
    """The dotted name of ``path``, a module under the import root ``base``."""
    rel = path.relative_to(base).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {
        module_name(p, PACKAGE_DIRS[pkg].parent): p
        for pkg in PACKAGES
        for p in sorted(PACKAGE_DIRS[pkg].rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` names (``a.b.c`` → ``a.b`` if c is a name)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(mod: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Modules of ours that ``mod`` imports, anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, known)
                if target:
                    yield target
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            for alias in node.names:
                # ``from pkg import mod`` names a module; ``from mod import func`` does not.
                target = _resolve(f"{name}.{alias.name}", known) or _resolve(name, known)
                if target:
                    yield target


@cache
def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        mod: {t for t in imports(mod, path, known) if t != mod} for mod, path in known.items()
    }


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(g.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _package(mod: str) -> str:
    return mod.split(".")[0]


def forbidden(src: str, dst: str) -> str | None:
    """Why ``src → dst`` breaks a rule, or None."""
    if dst == "collector.cli" and src != "collector.__main__":
        return "only collector/__main__ may import the CLI"
    if _package(dst) == "annexa_demo" and _package(src) != "annexa_demo" and src != (
        "collector.demo"
    ):
        return "the demo estates are not the product: only `annexa demo` may load them"
    if _package(src) == "annexa_demo" and _package(dst) in ("store", "collector"):
        return "the demo estates plant a source; they do not touch the store or collector"
    if _package(src) == "core" and _package(dst) != "core":
        return "core depends on nothing of ours"
    if _package(src) == "connectors" and _package(dst) in ("store", "collector", "analyzers"):
        return "connectors stream records; they never touch the store, the collector or an "\
            "analyzer"
    if _package(src) == "analyzers" and _package(dst) in ("store", "collector"):
        return "analyzers read the store through core.analyzer.EvidenceView, never directly"
    if _package(src) == "mappings" and _package(dst) in (
        "store", "collector", "connectors", "analyzers", "exports"
    ):
        return "mappings are data and their loader; they know no runtime package"
    if _package(src) == "store" and _package(dst) in ("connectors", "analyzers"):
        return "the store depends on the domain only, never on a connector or an analyzer"
    if _package(src) == "store" and _package(dst) == "collector":
        return "the store does not know the collector"
    if _package(src) == "store" and _package(dst) == "exports":
        return "the store is persistence and queries; exports are built on it, not in it"
    if _package(src) == "exports" and _package(dst) in ("collector", "connectors"):
        return "exports read the store, the domain and the mappings; never the engine"
    return None


def test_the_scanner_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The scanner itself: an import inside a function and a relative import are arrows."""
    known = {"pkg": tmp_path / "pkg/__init__.py", "pkg.a": tmp_path / "pkg/a.py",
             "pkg.b": tmp_path / "pkg/b.py"}
    src = tmp_path / "pkg/a.py"
    src.parent.mkdir()
    src.write_text("def f():\n    from . import b\n    return b\n")
    assert set(imports("pkg.a", src, known)) == {"pkg.b"}
    src.write_text("def f():\n    import pkg.b\n")
    assert set(imports("pkg.a", src, known)) == {"pkg.b"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_graph_covers_our_packages() -> None:
    g = graph()
    assert {_package(m) for m in g} == set(PACKAGES)
    assert "collector.runner" in g["collector.cli"] or any(
        "collector.runner" in g[m] for m in g if m.startswith("collector.commands")
    )


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert found == [], "import cycles (move the shared part into a small module):\n" + "\n".join(
        " ↔ ".join(c) for c in found
    )


def test_no_forbidden_arrows() -> None:
    g = graph()
    bad = sorted(
        f"{src} → {dst}: {why}"
        for src, dsts in g.items()
        for dst in dsts
        if (why := forbidden(src, dst)) and not allowed(src, dst)
    )
    assert bad == [], "forbidden imports:\n" + "\n".join(bad)


def test_every_allowed_exception_is_still_needed() -> None:
    """The allow-list only shrinks: an entry that no arrow uses must be deleted, and an
    entry must name an arrow some rule forbids."""
    g = graph()
    stale = sorted(
        f"{pat} → {dst}"
        for pat, dst in ALLOWED
        if not any(fnmatch(src, pat) and dst in dsts for src, dsts in g.items())
    )
    assert stale == [], "remove from ALLOWED (the arrow is gone):\n" + "\n".join(stale)
    assert all(
        forbidden(src, dst) for pat, dst in ALLOWED for src in g if fnmatch(src, pat)
    ), "ALLOWED lists an arrow no rule forbids"
