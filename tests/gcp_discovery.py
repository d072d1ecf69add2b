"""Google's discovery documents as the schema of the Google Cloud fake's answers.

The documents are the ones shipped in ``google-api-python-client``
(``googleapiclient/discovery_cache/documents/<api>.<version>.json``), the machine-
readable description Google publishes of every REST API. :class:`Discovery` finds the
method a request path belongs to (from the methods' ``flatPath``/``path`` templates)
and :func:`violations` checks a JSON answer against the method's response schema:
types and formats, enum values, and no property the schema does not define (the kind
of invention that makes a fake drift from the real service).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

#: The fake's API prefix → discovery document (``<api>.<version>``).
DOCUMENTS = {
    "iam": "iam.v1",
    "storage": "storage.v1",
    "compute": "compute.v1",
    "sqladmin": "sqladmin.v1",
    "cloudkms": "cloudkms.v1",
    "logging": "logging.v2",
    "securitycenter": "securitycenter.v1",
    "dlp": "dlp.v2",
    "billingbudgets": "billingbudgets.v1",
    "cloudbilling": "cloudbilling.v1",
    "orgpolicy": "orgpolicy.v2",
    "resourcemanager": "cloudresourcemanager.v3",
    "cloudasset": "cloudasset.v1",
}
#: APIs without a discovery document in the package (their shapes come from the REST
#: reference pages, named in tests/gcp_fixtures.py).
UNDOCUMENTED = frozenset({"scc"})


def documents_dir() -> Path:
    import googleapiclient

    return Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


@cache
def load(name: str) -> dict[str, Any]:
    return json.loads((documents_dir() / f"{name}.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Method:
    id: str
    http_method: str
    pattern: re.Pattern[str]
    response: str | None


def _methods(resources: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for res in resources.values():
        yield from (res.get("methods") or {}).values()
        yield from _methods(res.get("resources") or {})


def _template(path: str) -> str:
    """A path template as a regex: ``{+name}`` spans slashes, ``{name}`` does not."""
    out = ""
    for part in re.split(r"(\{\+?[^}]+\})", path):
        if part.startswith("{+"):
            out += ".+"
        elif part.startswith("{"):
            out += "[^/]+"
        else:
            out += re.escape(part)
    return out


class Discovery:
    """Methods of one discovery document, matchable by request path."""

    def __init__(self, name: str) -> None:
        self.doc = load(name)
        self.schemas: Mapping[str, Any] = self.doc["schemas"]
        base = self.doc.get("servicePath") or ""
        self.methods: list[Method] = []
        for m in _methods(self.doc.get("resources") or {}):
            for key in ("flatPath", "path"):
                if key in m:
                    regex = "/" + _template(base + m[key])
                    self.methods.append(Method(
                        m["id"], m["httpMethod"], re.compile(regex + "$"),
                        (m.get("response") or {}).get("$ref")))
        # Literal paths before templated ones ("…/aggregated/x" before "…/{region}/x").
        # and, among equals, the longer literal ("{+name}:getEffectivePolicy" first).
        self.methods.sort(key=lambda m: (m.pattern.pattern.count("[^/]+")
                                         + 10 * m.pattern.pattern.count(".+"),
                                         -len(m.pattern.pattern)))

    def method(self, http_method: str, path: str) -> Method | None:
        for m in self.methods:
            if m.http_method == http_method and m.pattern.match(path):
                return m
        return None

    def violations(self, schema: str, value: Any) -> list[str]:
        return violations(self.schemas, {"$ref": schema}, value, schema)


_INT_FORMATS = frozenset({"int64", "uint64"})


def violations(schemas: Mapping[str, Any], schema: Mapping[str, Any], value: Any,
               where: str) -> list[str]:
    """What is wrong with ``value`` under ``schema`` (empty: nothing)."""
    if "$ref" in schema:
        return violations(schemas, schemas[schema["$ref"]], value, where)
    kind, fmt = schema.get("type"), schema.get("format")
    if kind == "any" or kind is None:
        return []
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        out: list[str] = []
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if k in props:
                out += violations(schemas, props[k], v, f"{where}.{k}")
            elif extra is not None:
                out += violations(schemas, extra, v, f"{where}[{k!r}]")
            else:
                out.append(f"{where}: property {k!r} is not in the schema")
        return out
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected an array, got {type(value).__name__}"]
        return [e for i, v in enumerate(value)
                for e in violations(schemas, schema.get("items") or {}, v, f"{where}[{i}]")]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: expected a string, got {value!r}"]
        if fmt in _INT_FORMATS and not re.fullmatch(r"-?\d+", value):
            return [f"{where}: {fmt} as a string expected, got {value!r}"]
        if fmt == "google-datetime" and not re.fullmatch(
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
            return [f"{where}: RFC 3339 timestamp expected, got {value!r}"]
        if fmt == "google-duration" and not re.fullmatch(r"-?\d+(\.\d+)?s", value):
            return [f"{where}: duration ('123s') expected, got {value!r}"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{where}: {value!r} is not one of {schema['enum']}"]
        return []
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: expected an integer, got {value!r}"]
        return []
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"{where}: expected a number, got {value!r}"]
        return []
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean, got {value!r}"]
    return [f"{where}: unknown schema type {kind!r}"]
