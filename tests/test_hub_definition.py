"""The Meltano plugin definition (hub/extractors/tap-codat-commerce.yml and meltano.yml's extractor)
declares every setting of the tap's ``--about`` with its kind and default: the tap is the source
of truth, and a setting added to it without regenerating the files fails here."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tap_codat_commerce.settings import json_types
from tests.conftest import ROOT

# Which Meltano kinds can carry each JSON type to the tap unchanged (a date is a string: Meltano's
# date_iso8601 rewrites what it parses, and the tap checks dates itself).
KINDS_FOR = {"string": {"string", "options"}, "boolean": {"boolean"}, "integer": {"integer"},
             "number": {"decimal", "integer"}, "object": {"object"}, "array": {"array", "string"}}


@pytest.fixture(scope="module")
def about() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "tap_codat_commerce", "--about", "--format", "json"],
                          capture_output=True, text=True, check=True, timeout=60)
    return json.loads(done.stdout)


def definitions() -> dict[str, dict[str, Any]]:
    hub = yaml.safe_load((ROOT / "hub" / "extractors" / "tap-codat-commerce.yml").read_text())
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    extractor = next(e for e in project["plugins"]["extractors"] if e["name"] == "tap-codat-commerce")
    return {"hub": hub, "meltano.yml": extractor}


def test_the_generated_files_are_up_to_date():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "hub_definition.py"), "--check"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("where", ["hub", "meltano.yml"])
def test_every_setting_of_about_is_declared_with_its_kind_and_default(about, where):
    definition = definitions()[where]
    properties = about["settings"]["properties"]
    declared = {s["name"]: s for s in definition["settings"]}
    assert list(declared) == list(properties)  # the same names, in --about's order
    for name, schema in properties.items():
        entry = declared[name]
        allowed = set().union(*(KINDS_FOR[t] for t in json_types(schema)))
        assert entry["kind"] in allowed, (name, entry["kind"], json_types(schema))
        assert entry.get("value") == schema.get("default"), name
        assert entry.get("description"), name
        assert bool(entry.get("sensitive")) == bool(schema.get("secret")), name
        if schema.get("enum"):
            assert entry["kind"] == "options" and [o["value"] for o in entry["options"]] == schema["enum"], name
    assert declared["start_date"]["kind"] == "string"  # passed unchanged to the tap's own date check
    assert declared["api_key"]["sensitive"] is True
    assert definition["settings_group_validation"] == [about["settings"]["required"]]


@pytest.mark.parametrize("where", ["hub", "meltano.yml"])
def test_capabilities_and_the_setup_command_are_the_taps(about, where):
    definition = definitions()[where]
    assert sorted(definition["capabilities"]) == sorted(about["capabilities"])
    assert "structured-logging" in definition["capabilities"]
    assert definition["commands"]["setup"]["executable"] == "tap-codat-commerce-setup"
    assert definition["executable"] == "tap-codat-commerce"


def test_the_hub_file_is_in_the_hubs_format(about):
    hub = definitions()["hub"]
    assert {"name", "namespace", "pip_url", "executable", "settings", "capabilities"} <= set(hub)
    assert hub["pip_url"] == "tap-codat-commerce" and not hub["pip_url"].startswith("-e")
    assert hub["supported_python_versions"] == about["supported_python_versions"]
    assert not (ROOT / "plugins" / "extractors" / "tap-codat-commerce.yml").exists()  # Meltano's lock files live there
