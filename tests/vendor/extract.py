"""Cut the small schema excerpts under tests/vendor/ out of the vendors' published files.

Not run by the tests: it documents, and repeats on demand, how each excerpt was made.
Only the schemas the fakes serve are kept (the closure of the named roots), without
descriptions, examples or vendor extensions; discriminator mappings keep only the
values the fakes use. Usage (sources in tests/vendor/README.md)::

    python tests/vendor/extract.py okta management-minimal.yaml
    python tests/vendor/extract.py github api.github.com.json
    python tests/vendor/extract.py graph v1.0-Prod.csdl
    python tests/vendor/extract.py workspace admin.directory_v1.json
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
_DROP = {"description", "example", "examples", "externalDocs", "title", "summary"}

#: name → (roots, {discriminator schema: kept mapping values}).
OPENAPI_SETS: dict[str, tuple[list[str], dict[str, set[str]]]] = {
    "okta": (
        [
            "User",
            "UserGetSingleton",
            "UserFactor",
            "StandardRole",
            "CustomRole",
            "RoleAssignedUsers",
            "ApiToken",
            "Policy",
            "PolicyRule",
        ],
        {
            "Policy": {"ACCESS_POLICY", "OKTA_SIGN_ON", "PASSWORD"},
            "PolicyRule": {"ACCESS_POLICY", "SIGN_ON"},
            "UserFactor": {"push", "webauthn", "token:software:totp", "sms", "email", "question"},
        },
    ),
    "github": (
        [
            "pull-request",
            "pull-request-simple",
            "pull-request-review",
            "check-run",
            "combined-commit-status",
            "repository-rule-detailed",
            "status-check-policy",
            "full-repository",
            "minimal-repository",
            "organization-full",
            "simple-user",
            "dependabot-alert-with-repository",
            "code-scanning-organization-alert-items",
            "organization-secret-scanning-alert",
            "code-scanning-default-setup",
            "code-scanning-analysis",
            "branch-protection",
            "protected-branch-required-status-check",
            "collaborator",
        ],
        {},
    ),
}


def _strip(node: Any, *, names: bool = False) -> Any:
    """Drop documentation keys; ``names``: ``node`` maps property names (all kept)."""
    if isinstance(node, dict):
        return {
            k: _strip(v, names=(k == "properties" and not names))
            for k, v in node.items()
            if names or (k not in _DROP and not (isinstance(k, str) and k.startswith("x-")))
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for v in node.values():
            found |= _refs(v)
    elif isinstance(node, list):
        for v in node:
            found |= _refs(v)
    return found


def _prune_discriminators(schema: Any, keep: set[str] | None) -> Any:
    if isinstance(schema, dict) and isinstance(schema.get("discriminator"), dict):
        mapping = schema["discriminator"].get("mapping") or {}
        kept = {k: v for k, v in mapping.items() if keep is None or k in keep}
        schema = {**schema, "discriminator": {**schema["discriminator"], "mapping": kept}}
    return schema


def openapi_excerpt(spec: dict[str, Any], roots: list[str], keep: dict[str, set[str]]) -> dict:
    schemas = spec["components"]["schemas"]
    out: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        schema = _prune_discriminators(_strip(schemas[name]), keep.get(name))
        out[name] = schema
        mapped = {
            ref.rsplit("/", 1)[1]
            for ref in ((schema.get("discriminator") or {}).get("mapping") or {}).values()
        }
        todo.extend(sorted((_refs(schema) | mapped) - set(out)))
    return dict(sorted(out.items()))


def graph_excerpt(csdl: Path, roots: list[str]) -> dict[str, Any]:
    """EntityType/ComplexType/EnumType definitions (namespace microsoft.graph) reachable
    from ``roots``, as plain data (converted to JSON Schema by tests/vendor_schemas.py)."""
    ns = {"edm": "http://docs.oasis-open.org/odata/ns/edm"}
    tree = ET.parse(csdl)
    schema = next(
        s for s in tree.iter(f"{{{ns['edm']}}}Schema") if s.get("Namespace") == "microsoft.graph"
    )
    types = {
        t.get("Name"): t
        for t in schema
        if t.tag.split("}")[1] in ("EntityType", "ComplexType", "EnumType")
    }
    out: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in out or name not in types:
            continue
        t = types[name]
        kind = t.tag.split("}")[1]
        if kind == "EnumType":
            out[name] = {
                "kind": "enum",
                "flags": t.get("IsFlags") == "true",
                "members": [m.get("Name") for m in t if m.tag.endswith("Member")],
            }
            continue
        entry: dict[str, Any] = {"kind": kind, "base": t.get("BaseType"), "properties": {}}
        for p in t:
            tag = p.tag.split("}")[1]
            if tag not in ("Property", "NavigationProperty"):
                continue
            entry["properties"][p.get("Name")] = {
                "type": p.get("Type"),
                "nullable": p.get("Nullable") != "false",
                "navigation": tag == "NavigationProperty",
            }
            inner = p.get("Type", "").removeprefix("Collection(").removesuffix(")")
            if inner.startswith("graph."):
                todo.append(inner.removeprefix("graph."))
        if entry["base"]:
            todo.append(entry["base"].removeprefix("graph."))
        out[name] = entry
    return dict(sorted(out.items()))


GRAPH_ROOTS = [
    "conditionalAccessPolicy",
    "user",
    "userRegistrationDetails",
    "directoryRole",
    "identitySecurityDefaultsEnforcementPolicy",
]
GRAPH_USER = {
    "id", "userPrincipalName", "mail", "accountEnabled", "userType", "createdDateTime",
    "externalUserState", "externalUserStateChangeDateTime", "onPremisesSyncEnabled",
    "signInActivity", "displayName",
}  # fmt: skip


def _graph_reachable(schemas: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    used: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in used or name not in schemas:
            continue
        used.add(name)
        entry = schemas[name]
        for prop in entry.get("properties", {}).values():
            inner = prop["type"].removeprefix("Collection(").removesuffix(")")
            if inner.startswith("graph."):
                todo.append(inner.removeprefix("graph."))
        if entry.get("base"):
            todo.append(entry["base"].removeprefix("graph."))
    return {k: v for k, v in sorted(schemas.items()) if k in used}


def main(argv: list[str]) -> None:
    which, source = argv[1], Path(argv[2])
    if which in OPENAPI_SETS:
        roots, keep = OPENAPI_SETS[which]
        if source.suffix in (".yaml", ".yml"):
            import yaml

            spec = yaml.safe_load(source.read_text(encoding="utf-8"))
        else:
            spec = json.loads(source.read_text(encoding="utf-8"))
        body: dict[str, Any] = {
            "openapi": spec.get("openapi"),
            "info_version": spec.get("info", {}).get("version"),
            "schemas": openapi_excerpt(spec, roots, keep),
        }
    elif which == "graph":
        schemas = graph_excerpt(source, GRAPH_ROOTS)
        # The user entity is large; keep only the properties the connector selects.
        user = schemas["user"]
        user["properties"] = {k: v for k, v in user["properties"].items() if k in GRAPH_USER}
        body = {"schemas": _graph_reachable(schemas, GRAPH_ROOTS)}
    elif which == "workspace":
        doc = json.loads(source.read_text(encoding="utf-8"))
        keep = ["User", "Users"]
        out: dict[str, Any] = {}
        todo = list(keep)
        while todo:
            n = todo.pop()
            if n in out:
                continue
            out[n] = _strip(doc["schemas"][n])
            todo.extend(sorted(_discovery_refs(out[n]) - set(out)))
        body = {"revision": doc.get("revision"), "schemas": dict(sorted(out.items()))}
    else:
        raise SystemExit(f"unknown set {which}")
    target = HERE / which / "schemas.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{target}: {len(body['schemas'])} schemas, {target.stat().st_size} bytes")


def _discovery_refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for v in node.values():
            found |= _discovery_refs(v)
    elif isinstance(node, list):
        for v in node:
            found |= _discovery_refs(v)
    return found


if __name__ == "__main__":
    main(sys.argv)
