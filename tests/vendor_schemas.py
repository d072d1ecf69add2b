"""Validate what the fakes serve against the vendors' own published schemas.

The excerpts under ``tests/vendor/`` (sources and licences in its README) are turned into
JSON Schema (draft 2020-12) here:

* OpenAPI 3.0 component schemas (Okta management spec, GitHub's description from
  ``@octokit/openapi``): ``$ref`` re-pointed, ``nullable`` → ``null`` allowed, and a
  ``discriminator`` mapping enforced (a rule of ``type: ACCESS_POLICY`` must match
  ``AccessPolicyRule``, not merely the base ``PolicyRule``);
* Microsoft Graph CSDL types (``msgraph-metadata``): properties typed from ``Edm.*``,
  enums and flag enums, base types merged; OData annotations (``@odata.type``) allowed;
* Google discovery schemas (Admin SDK Directory): ``$ref`` by schema id.

Unknown properties are allowed, as the vendors' own schemas allow them; a wrong type, a
value outside an enumeration or a missing required property fails.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

VENDOR = Path(__file__).parent / "vendor"


@cache
def _excerpt(name: str) -> dict[str, Any]:
    return json.loads((VENDOR / name / "schemas.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- OpenAPI 3.0

_DISPATCH = "~dispatch"


def _openapi_node(node: Any, dispatching: set[str]) -> Any:
    if isinstance(node, list):
        return [_openapi_node(v, dispatching) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            name = value.rsplit("/", 1)[1]
            out[key] = f"#/$defs/{name}{_DISPATCH if name in dispatching else ''}"
        elif key in ("discriminator", "nullable", "readOnly", "writeOnly", "deprecated"):
            continue
        elif key == "pattern" and isinstance(value, str):
            # Okta's TimeDuration pattern reads ``^P(?:$)…`` — which rejects its own
            # examples (``P30D``); the evident intent is the lookahead ``(?!$)``.
            out[key] = value.replace("^P(?:$)", "^P(?!$)")
        else:
            out[key] = _openapi_node(value, dispatching)
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def openapi_schema(
    vendor: str, name: str, *, array: bool = False, list_key: str | None = None
) -> dict[str, Any]:
    """The JSON Schema of component ``name`` of an OpenAPI excerpt: one object, a list
    (``array``), or GitHub's wrapped list ``{"total_count", list_key: [...]}``."""
    schemas = _excerpt(vendor)["schemas"]
    dispatching = {n for n, s in schemas.items() if (s.get("discriminator") or {}).get("mapping")}
    defs: dict[str, Any] = {n: _openapi_node(s, dispatching) for n, s in schemas.items()}
    for base in dispatching:
        disc = schemas[base]["discriminator"]
        prop = disc["propertyName"]
        branches = []
        for value, ref in sorted(disc["mapping"].items()):
            target = ref.rsplit("/", 1)[1]
            if target == base:
                continue
            # A subtype's allOf names its base: point that at the plain base (no loop).
            sub = defs[target]
            for part in sub.get("allOf", []):
                if part.get("$ref") == f"#/$defs/{base}{_DISPATCH}":
                    part["$ref"] = f"#/$defs/{base}"
            branches.append(
                {
                    "if": {"properties": {prop: {"const": value}}, "required": [prop]},
                    "then": {"$ref": f"#/$defs/{target}"},
                }
            )
        defs[f"{base}{_DISPATCH}"] = {"allOf": [{"$ref": f"#/$defs/{base}"}, *branches]}
    ref = f"#/$defs/{name}{_DISPATCH if name in dispatching else ''}"
    root: dict[str, Any] = {"type": "array", "items": {"$ref": ref}} if array else {"$ref": ref}
    if list_key:
        root = {
            "type": "object",
            "required": ["total_count", list_key],
            "properties": {
                "total_count": {"type": "integer"},
                list_key: {"type": "array", "items": {"$ref": ref}},
            },
        }
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root, "$defs": defs}


# --------------------------------------------------------------------------- Graph CSDL

_EDM: dict[str, dict[str, Any]] = {
    "Edm.String": {"type": "string"},
    "Edm.Boolean": {"type": "boolean"},
    "Edm.Int32": {"type": "integer"},
    "Edm.Int64": {"type": "integer"},
    "Edm.Double": {"type": "number"},
    "Edm.Guid": {"type": "string", "pattern": "^[0-9a-fA-F-]{36}$"},
    "Edm.DateTimeOffset": {
        "type": "string",
        "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|[+-]\d{2}:\d{2})$",
    },
}


def _graph_type(type_name: str, nullable: bool) -> dict[str, Any]:
    if type_name.startswith("Collection("):
        inner = _graph_type(type_name[len("Collection(") : -1], False)
        return {"type": "array", "items": inner}
    if type_name in _EDM:
        schema = copy.deepcopy(_EDM[type_name])
    else:
        schema = {"$ref": f"#/$defs/{type_name.removeprefix('graph.')}"}
    return {"anyOf": [schema, {"type": "null"}]} if nullable else schema


def graph_schema(name: str, *, collection: bool = False) -> dict[str, Any]:
    """The JSON Schema of Graph type ``name`` (``collection``: an OData ``value`` page)."""
    types = _excerpt("graph")["schemas"]
    defs: dict[str, Any] = {}
    for tname, entry in types.items():
        if entry["kind"] == "enum":
            members = entry["members"]
            if entry["flags"]:
                alt = "|".join(members)
                defs[tname] = {"type": "string", "pattern": f"^({alt})(,\\s*({alt}))*$"}
            else:
                defs[tname] = {"enum": members}
            continue
        props: dict[str, Any] = {}
        base: str | None = tname
        while base:
            e = types[base]
            for pname, p in e["properties"].items():
                props.setdefault(pname, _graph_type(p["type"], p["nullable"]))
            base = e["base"].removeprefix("graph.") if e.get("base") else None
        defs[tname] = {"type": "object", "properties": props}
    root: dict[str, Any] = {"$ref": f"#/$defs/{name}"}
    if collection:
        root = {
            "type": "object",
            "required": ["value"],
            "properties": {"value": {"type": "array", "items": root}},
        }
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root, "$defs": defs}


# --------------------------------------------------------------------------- discovery


def _discovery_node(node: Any) -> Any:
    if isinstance(node, list):
        return [_discovery_node(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = f"#/$defs/{value}"
        elif key in ("id", "annotations", "enumDescriptions", "readOnly"):
            continue
        elif key == "type" and value == "any":
            continue  # discovery's "any": JSON Schema says nothing at all
        elif key == "format" and value in ("int64", "uint64"):
            continue  # discovery sends 64-bit integers as strings
        else:
            out[key] = _discovery_node(value)
    return out


def discovery_schema(vendor: str, name: str) -> dict[str, Any]:
    schemas = _excerpt(vendor)["schemas"]
    defs = {n: _discovery_node(s) for n, s in schemas.items()}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": f"#/$defs/{name}",
            "$defs": defs}  # fmt: skip


# --------------------------------------------------------------------------- validation


def assert_valid(instance: Any, schema: dict[str, Any], what: str = "response") -> None:
    """Fail with every schema violation listed (path and message)."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
        raise AssertionError(f"{what} does not match the vendor schema:\n" + "\n".join(lines[:20]))


def assert_all_served_valid(
    served: Iterable[tuple[str, Any]], schemas: list[tuple[str, dict[str, Any]]]
) -> None:
    """Every ``(path, body)`` a fake served matches the schema of the first path pattern
    (a full match) it fits, a path no pattern fits fails, and every pattern was served."""
    seen = set()
    for path, body in served:
        pattern, schema = next((p, s) for p, s in schemas if re.fullmatch(p, path))
        assert_valid(body, schema, path)
        seen.add(pattern)
    assert len(seen) == len(schemas)
