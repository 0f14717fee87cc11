"""Write the extractor's Meltano plugin definition from the tap itself.

Run from the repository root:  python scripts/hub_definition.py [--check] [--pip-url URL --output FILE]

The tap's config schema (``TapCodatCommerce.settings_properties()``, the SDK's built-in settings
included), its capabilities and its supported Pythons are the source of truth; from them this
writes

- ``hub/extractors/tap-codat-commerce.yml``: the definition in Meltano Hub's format, for
  ``meltano add extractor tap-codat-commerce --from-ref <file>`` (or a Hub submission);
- the ``tap-codat-commerce`` block of ``meltano.yml``: the same definition, installed from this
  checkout (``pip_url: -e .``), comments elsewhere in the file kept.

``--check`` writes nothing and exits 1 naming each file that differs. ``--pip-url URL --output FILE``
writes a copy of the Hub file that installs from URL (a wheel, a folder, a git URL) instead.
"""

from __future__ import annotations

import argparse
import io
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from tap_codat_commerce.settings import json_types
from tap_codat_commerce.tap import TapCodatCommerce

ROOT = Path(__file__).resolve().parents[1]
HUB_FILE = ROOT / "hub" / "extractors" / "tap-codat-commerce.yml"
MELTANO_YML = ROOT / "meltano.yml"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

SETUP_COMMAND = {
    "setup": {
        "executable": "tap-codat-commerce-setup",
        "args": "",
        "description": ("Prepare Codat before the first sync, with the extractor's settings (api_key, base_url): "
                        "meltano invoke tap-codat-commerce:setup sync-settings | create-company --name N "
                        "--platform P | status --company ID | refresh --company ID | wait --company ID | webhooks"),
    },
}
# Keys of the Hub file that describe the listing, not the plugin a project installs.
HUB_ONLY = ("variant", "label", "description", "domain_url", "repo", "docs", "keywords", "maintenance_status",
            "quality", "supported_python_versions")


class DefinitionError(Exception):
    """A setting whose JSON Schema has no Meltano kind; the message names it."""


def setting_kind(name: str, schema: Mapping[str, Any]) -> str:
    """The Meltano ``kind`` of a setting from its JSON Schema.

    A string is passed to the tap as typed (``start_date`` too: a Meltano ``date_iso8601`` would
    rewrite ``2025-13-01`` into another date instead of letting the tap's check reject it); a
    setting that is a string *or* something else (``company_ids``: array or string) is a string, which
    the tap parses. Raises DefinitionError for a schema with no JSON type."""
    types = json_types(schema)
    if "string" in types:
        return "options" if schema.get("enum") else "string"
    for json_type, kind in (("boolean", "boolean"), ("integer", "integer"), ("number", "decimal"),
                            ("object", "object"), ("array", "array")):
        if types == {json_type}:
            return kind
    raise DefinitionError(f"{name}: no Meltano kind for JSON types {sorted(types) or 'none'}")


def setting(name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """One Meltano setting: ``name``, ``label``, ``kind``, ``value`` (the default), ``options``,
    ``sensitive`` and ``description``, each as the tap's schema says."""
    kind = setting_kind(name, schema)
    entry: dict[str, Any] = {"name": name, "label": schema.get("title") or name.replace("_", " ").capitalize(),
                             "kind": kind}
    if schema.get("default") is not None:
        entry["value"] = schema["default"]
    if kind == "options":
        entry["options"] = [{"label": str(v).capitalize(), "value": v} for v in schema["enum"] if v is not None]
    if schema.get("secret"):
        entry["sensitive"] = True
    entry["description"] = " ".join(str(schema.get("description") or "").split())
    return entry


def project_urls() -> dict[str, str]:
    """``[project.urls]`` of pyproject.toml, by lower-case label."""
    return {label.lower(): url for label, url in (PROJECT.get("urls") or {}).items()}


def hub_definition(pip_url: str | None = None) -> dict[str, Any]:
    """The extractor's definition in Meltano Hub's format (``pip_url`` defaults to the PyPI name).

    ``variant`` and ``repo`` come from pyproject.toml's Repository URL (the Hub names a variant after
    the repository's owner) and are left out while it has none."""
    tap = TapCodatCommerce
    schema = {"properties": tap.settings_properties(), "required": tap.config_jsonschema.get("required", [])}
    urls = project_urls()
    definition: dict[str, Any] = {"name": tap.name, "namespace": tap.name.replace("-", "_")}
    repository = urls.get("repository")
    if repository:
        definition["variant"] = urlsplit(repository).path.strip("/").split("/")[0].lower()
    definition |= {
        "label": "Codat Commerce",
        "description": PROJECT["description"],
        "domain_url": "https://docs.codat.io/commerce-api/overview",
        **({"repo": repository} if repository else {}),
        **({"docs": urls["documentation"]} if "documentation" in urls else {}),
        "keywords": ["api", "meltano_sdk", "codat", "commerce"],
        "maintenance_status": "active",
        "quality": "unknown",
        "pip_url": pip_url or PROJECT["name"],
        "executable": tap.name,
        "capabilities": sorted(str(c) for c in tap.capabilities),
        "supported_python_versions": tap.get_supported_python_versions() or [],
        "settings_group_validation": [list(schema["required"])],
        "settings": [setting(name, sub) for name, sub in schema["properties"].items()],
        "commands": SETUP_COMMAND,
    }
    return definition


def project_plugin() -> dict[str, Any]:
    """The extractor of this repository's meltano.yml: the Hub definition installed from the checkout."""
    definition = {k: v for k, v in hub_definition().items() if k not in HUB_ONLY}
    return {**definition, "pip_url": "-e ."}


def hub_text(definition: Mapping[str, Any]) -> str:
    header = ("# Generated by scripts/hub_definition.py from the tap's config schema: do not edit by hand.\n"
              "# meltano add extractor tap-codat-commerce --from-ref hub/extractors/tap-codat-commerce.yml\n")
    return header + yaml.safe_dump(dict(definition), sort_keys=False, allow_unicode=True, width=100)


def meltano_yml_text(current: str) -> str:
    """``current`` (meltano.yml's text) with its tap-codat-commerce extractor replaced by :func:`project_plugin`."""
    rt = YAML()
    rt.width = 4096  # a description stays on its line
    rt.indent(mapping=2, sequence=4, offset=2)
    document = rt.load(current)
    extractors = document["plugins"]["extractors"]
    index = next(i for i, e in enumerate(extractors) if e["name"] == TapCodatCommerce.name)
    plugin = project_plugin()
    for key in ("capabilities", "settings_group_validation"):  # short lists on one line, as written by hand
        plugin[key] = _flow(plugin[key])
    extractors[index] = plugin
    out = io.StringIO()
    rt.dump(document, out)
    return out.getvalue()


def _flow(items: list[Any]) -> CommentedSeq:
    seq = CommentedSeq(_flow(i) if isinstance(i, list) else i for i in items)
    seq.fa.set_flow_style()
    return seq


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is out of date")
    parser.add_argument("--pip-url", help="write a Hub file installing from this pip URL instead (needs --output)")
    parser.add_argument("--output", type=Path, help="where --pip-url's Hub file goes")
    args = parser.parse_args()
    if args.pip_url or args.output:
        if not (args.pip_url and args.output):
            parser.error("--pip-url and --output go together")
        args.output.write_text(hub_text(hub_definition(args.pip_url)))
        return 0
    wanted = {HUB_FILE: hub_text(hub_definition()), MELTANO_YML: meltano_yml_text(MELTANO_YML.read_text())}
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if args.check:
        if stale:
            names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
            print(f"out of date: {names}; run python scripts/hub_definition.py", file=sys.stderr)
            return 1
        return 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path])
    return 0


if __name__ == "__main__":
    sys.exit(main())
