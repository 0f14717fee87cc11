"""Generate ``schemas/<stream>.json`` from Codat's official OpenAPI specs.

Run from the repository root:  python scripts/generate_schemas.py [--check]

The spec's gaps (codat-api.md §7) are filled here, in one visible place:
products carry createdDate/modifiedDate/sourceModifiedDate/status/productCategoryRefs,
payments carry ``type``, order tax allocations carry ``taxAmount`` and product
variants ``quantity``. Commerce records gain the ``companyId`` and ``connectionId``
the tap adds; every property is nullable except the keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from oas_convert import component

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "schemas"

COMMERCE = {
    "customers": "Customer",
    "disputes": "Dispute",
    "company_info": "CompanyInfo",
    "locations": "Location",
    "orders": "Order",
    "payments": "Payment",
    "payment_methods": "PaymentMethod",
    "products": "Product",
    "product_categories": "ProductCategory",
    "tax_components": "TaxComponent",
    "transactions": "Transaction",
}
NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_DATETIME = {"type": ["string", "null"], "format": "date-time"}
KEY_STRING = {"type": "string"}


def _ref_list() -> dict[str, Any]:
    return {"type": ["array", "null"],
            "items": {"type": ["object", "null"], "properties": {"id": NULLABLE_STRING, "name": NULLABLE_STRING}}}


def fill_gaps(stream: str, schema: dict[str, Any]) -> None:
    props = schema["properties"]
    if stream == "products":
        props.setdefault("createdDate", NULLABLE_DATETIME)
        props.setdefault("modifiedDate", NULLABLE_DATETIME)
        props.setdefault("sourceModifiedDate", NULLABLE_DATETIME)
        props.setdefault("status", NULLABLE_STRING)
        props.setdefault("productCategoryRefs", _ref_list())
        variant = props["variants"]["items"]["properties"]
        variant.setdefault("quantity", {"type": ["number", "null"]})
    if stream == "payments":
        props.setdefault("type", NULLABLE_STRING)
    if stream == "orders":
        taxes = props["orderLineItems"]["items"]["properties"]["taxes"]["items"]["properties"]
        taxes.setdefault("taxAmount", {"type": ["number", "null"]})


def commerce_schema(stream: str, component_name: str) -> dict[str, Any]:
    schema = component(component_name)
    fill_gaps(stream, schema)
    keys = ["companyId", "connectionId"] + ([] if stream == "company_info" else ["id"])
    properties = {"companyId": KEY_STRING, "connectionId": KEY_STRING, **schema["properties"]}
    for key in keys:
        properties[key] = KEY_STRING
    return {"type": "object", "properties": properties, "required": keys}


def platform_schema(name: str, keys: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = component(name, spec="Codat-Platform")
    properties = {**(extra or {}), **schema["properties"]}
    for key in keys:
        properties[key] = KEY_STRING
    return {"type": "object", "properties": properties, "required": keys}


def build() -> dict[str, dict[str, Any]]:
    schemas = {stream: commerce_schema(stream, name) for stream, name in COMMERCE.items()}
    schemas["companies"] = platform_schema("Company", ["id"])
    schemas["connections"] = platform_schema("Connection", ["companyId", "id"], {"companyId": KEY_STRING})
    # The Company schema's created/lastSync are Codat DateTimes too.
    for stream, fields in (("companies", ("created", "lastSync")), ("connections", ("created", "lastSync"))):
        for field in fields:
            schemas[stream]["properties"][field] = NULLABLE_DATETIME
    return schemas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if schemas/ is out of date")
    args = parser.parse_args()
    SCHEMA_DIR.mkdir(exist_ok=True)
    stale = []
    for stream, schema in sorted(build().items()):
        text = json.dumps(schema, indent=2) + "\n"
        target = SCHEMA_DIR / f"{stream}.json"
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(target.name)
        else:
            target.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/generate_schemas.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
