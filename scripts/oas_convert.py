"""Turn a component of Codat's OpenAPI specs into a plain JSON Schema.

singer-sdk's OpenAPISchema drops the properties of this spec's nested ``allOf``,
so this module resolves every ``$ref`` (including refs into ``allOf/N`` and
percent-encoded refs into ``#/paths/...``), flattens ``allOf``, turns OAS 3.0
``nullable`` into JSON Schema type lists; of the spec's prose it keeps only each schema's own
``description`` (tap mode), so that catalogs document the fields.

Two modes:
- ``faithful``: what the spec says, nothing more; used to validate the sandbox.
- tap mode: Codat ``DateTime`` becomes ``format: date-time``, every property is
  nullable (Codat sends nulls where the spec says required), enums are dropped
  (new values must not break a sync) and non-standard formats are removed.
"""

from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

# The specs stay in the shared reference beside the repository (not copied into it).
SPEC_DIR = Path(os.environ.get("CODAT_OAS_DIR")
                or Path(__file__).resolve().parents[2] / "shared" / "reference" / "codat-oas")
_KEPT_FORMATS = {"date-time", "uuid", "uri"}


@cache
def load_spec(name: str, spec_dir: Path = SPEC_DIR) -> dict[str, Any]:
    """Load ``Codat-Commerce`` or ``Codat-Platform`` from ``spec_dir``."""
    with (spec_dir / f"{name}.yaml").open() as handle:
        return yaml.safe_load(handle)


def _pointer(spec: dict[str, Any], ref: str) -> Any:
    node: Any = spec
    for raw in ref.lstrip("#/").split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _merge(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        if key == "properties":
            props = target.setdefault("properties", {})
            for name, sub in value.items():
                if name in props:
                    merged = props[name]
                    _merge(merged, sub)
                else:
                    props[name] = sub
        elif key == "required":
            target["required"] = sorted(set(target.get("required", [])) | set(value))
        elif key == "nullable" and "properties" in source:
            continue
        else:
            target.setdefault(key, value)
    if source.get("nullable") is True and "properties" in source:
        # A nullable fragment of allOf (sourceModifiedDate's) makes its fields nullable.
        for name in source["properties"]:
            target["properties"][name] = {**target["properties"][name], "nullable": True}


def _description(node: dict[str, Any]) -> str:
    """The spec's own words for a schema: its ``description``, else its ``title``."""
    for key in ("description", "title"):
        text = node.get(key)
        if isinstance(text, str) and text.strip():
            return text.strip()
    return ""


class Converter:
    def __init__(self, spec: dict[str, Any], *, faithful: bool) -> None:
        self.spec = spec
        self.faithful = faithful

    def convert(self, node: dict[str, Any]) -> dict[str, Any]:
        flat = self._flatten(node)
        return self._clean(flat)

    def _flatten(self, node: dict[str, Any]) -> dict[str, Any]:
        """Resolve refs and allOf into one dict (not yet cleaned)."""
        node = dict(node)
        if "$ref" in node:
            ref = node.pop("$ref")
            if ref.endswith("/schemas/DateTime"):
                resolved: dict[str, Any] = {"type": "string", "x-datetime": True}
            else:
                resolved = self._flatten(_pointer(self.spec, ref))
            merged = copy.deepcopy(resolved)
            for key, value in node.items():
                merged[key] = value
            node = merged
        if "allOf" in node:
            parts = node.pop("allOf")
            merged = {}
            for part in parts:
                _merge(merged, self._flatten(part))
            _merge(merged, node)
            if node.get("description"):  # the property's own words win over its type's (as with $ref)
                merged["description"] = node["description"]
            node = merged
        return node

    def _clean(self, node: dict[str, Any]) -> dict[str, Any]:
        node = self._flatten(node)
        out: dict[str, Any] = {}
        if not self.faithful:
            described = _description(node) or _description(self._flatten(node.get("items") or {}))
            if described:
                out["description"] = described
        kind = node.get("type")
        if kind is None and "properties" in node:
            kind = "object"
        if kind is None and node.get("format") == "decimal":
            kind = None if self.faithful else "number"
        if node.get("x-datetime") and not self.faithful:
            out["format"] = "date-time"
        elif node.get("format") in _KEPT_FORMATS:
            out["format"] = node["format"]
        if kind == "object" or "properties" in node:
            out["properties"] = {
                name: self._clean(sub) for name, sub in node.get("properties", {}).items()
            }
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                out["additionalProperties"] = self._clean(extra)
            elif extra is False and self.faithful:
                out["additionalProperties"] = False
            if self.faithful and node.get("required"):
                out["required"] = list(node["required"])
        if kind == "array":
            out["items"] = self._clean(node.get("items", {}))
        if self.faithful and "enum" in node:
            out["enum"] = list(node["enum"])
        nullable = node.get("nullable") is True or not self.faithful
        if kind is not None:
            out["type"] = [kind, "null"] if nullable else kind
            if "enum" in out and nullable:
                out["enum"] = [*out["enum"], None]
        return out


def component(
    name: str, *, spec: str = "Codat-Commerce", faithful: bool = False
) -> dict[str, Any]:
    """The JSON Schema of ``components/schemas/<name>`` in ``spec``."""
    document = load_spec(spec)
    return Converter(document, faithful=faithful).convert(
        {"$ref": f"#/components/schemas/{name}"}
    )
