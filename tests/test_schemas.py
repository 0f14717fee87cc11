"""The shipped schemas are the generator's output from Codat's spec, gaps filled, dates typed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def schema(name: str) -> dict:
    return json.loads((ROOT / "schemas" / f"{name}.json").read_text())


def test_schemas_are_up_to_date_with_the_spec(codat_spec):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_schemas.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_spec_gaps_are_filled():
    products = schema("products")["properties"]
    for field in ("modifiedDate", "createdDate", "sourceModifiedDate"):
        assert products[field]["format"] == "date-time"
    assert "status" in products and products["productCategoryRefs"]["items"]["properties"]["id"]
    assert "type" in schema("payments")["properties"]


def test_keys_are_required_and_everything_else_nullable():
    for name in ("orders", "customers", "transactions"):
        document = schema(name)
        assert document["required"] == ["companyId", "connectionId", "id"]
        for field, spec in document["properties"].items():
            if field not in document["required"]:
                assert "null" in spec["type"], (name, field)
    assert schema("company_info")["required"] == ["companyId", "connectionId"]


def test_nested_allof_properties_survive():
    orders = schema("orders")["properties"]  # singer-sdk's OpenAPISchema keeps 2 of these 19
    assert len(orders) == 21
    line = orders["orderLineItems"]["items"]["properties"]
    assert {"productRef", "taxes", "discountAllocations", "unitPrice"} <= set(line)
    assert orders["payments"]["items"]["properties"]["modifiedDate"]["format"] == "date-time"


def _keywords(node: object, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties":
                for sub in value.values():  # field names (a product's "description") are data, not keywords
                    _keywords(sub, found)
            else:
                found.add(key)
                _keywords(value, found)
    elif isinstance(node, list):
        for item in node:
            _keywords(item, found)
    return found


def test_only_types_and_the_specs_field_descriptions():
    for path in (ROOT / "schemas").glob("*.json"):
        keywords = _keywords(json.loads(path.read_text()), set())
        assert keywords <= {"type", "properties", "items", "required", "format", "additionalProperties",
                            "description"}, path


def _undescribed(node: dict, path: str) -> list[str]:
    missing = []
    for name, sub in (node.get("properties") or {}).items():
        if not (isinstance(sub.get("description"), str) and sub["description"].strip()):
            missing.append(f"{path}.{name}")
        missing += _undescribed(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            missing += _undescribed(node[key], f"{path}[]")
    return missing


def test_every_property_at_every_level_is_described():
    streams = sorted((ROOT / "schemas").glob("*.json"))
    assert len(streams) == 13
    missing = [m for path in streams for m in _undescribed(json.loads(path.read_text()), path.stem)]
    assert not missing, missing
    orders = schema("orders")["properties"]
    assert orders["totalAmount"]["description"] == ("Total amount of the order, including discounts, refunds, and tax, "
                                                    "but excluding gratuities.")
    assert "Codat" in orders["modifiedDate"]["description"]  # the spec's own words, nested fields too
    line = orders["orderLineItems"]["items"]["properties"]
    assert line["unitPrice"]["description"] and line["taxes"]["items"]["properties"]["taxAmount"]["description"]


def test_the_catalog_carries_the_descriptions():
    done = subprocess.run([sys.executable, "-m", "tap_codat_commerce", "--discover"], capture_output=True, text=True,
                          check=True, timeout=60)
    catalog = {s["tap_stream_id"]: s["schema"] for s in json.loads(done.stdout)["streams"]}
    assert catalog["orders"]["properties"]["totalAmount"]["description"] == \
        schema("orders")["properties"]["totalAmount"]["description"]
