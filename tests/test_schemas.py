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
                for sub in value.values():  # field names (a product's "description") are data, not prose
                    _keywords(sub, found)
            else:
                found.add(key)
                _keywords(value, found)
    elif isinstance(node, list):
        for item in node:
            _keywords(item, found)
    return found


def test_no_prose_from_the_spec():
    for path in (ROOT / "schemas").glob("*.json"):
        keywords = _keywords(json.loads(path.read_text()), set())
        assert keywords <= {"type", "properties", "items", "required", "format", "additionalProperties"}, path
