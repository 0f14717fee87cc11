"""Generate ``schemas/<stream>.json`` from Codat's official OpenAPI specs.

Run from the repository root:  python scripts/generate_schemas.py [--check]

The spec's gaps (codat-api.md §7) are filled here, in one visible place:
products carry createdDate/modifiedDate/sourceModifiedDate/status/productCategoryRefs,
payments carry ``type``, order tax allocations carry ``taxAmount`` and product
variants ``quantity``. Commerce records gain the ``companyId`` and ``connectionId``
the tap adds; every property is nullable except the keys.

Every property carries the spec's own ``description`` (or ``title``); the few the spec leaves
undescribed, and the fields the tap adds or fills in, are described in ``OWN_WORDS`` below.
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
COMPANY_ID = ("The id of the Codat company the record belongs to (added by the tap: Codat's path carries it, "
              "the record does not).")
CONNECTION_ID = ("The id of the company's data connection the record was read from (added by the tap: Codat's "
                 "path carries it, the record does not).")
# Properties the spec gives no words to (or that the tap adds), by stream and path ("a.b" nested,
# "a[]" an array's items): this project's own descriptions.
OWN_WORDS = {
    "orders.orderLineItems": "The order's line items: what was sold, in what quantity, at what price and tax.",
    "orders.orderLineItems[].taxes[].taxAmount": "The amount of this tax component on the line item "
                                                 "(sent by Codat, not declared in its spec).",
    "orders.orderLineItems[].discountAllocations": "The discounts applied to this line item.",
    "orders.serviceCharges": "Charges on the order besides its products (shipping, service charges).",
    "payments.type": "The type of payment (sent by Codat, not declared in its spec).",
    "products.variants[].quantity": "The quantity of this variant in stock (sent by Codat, not declared in its spec).",
    "products.status": "The product's status (sent by Codat, not declared in its Product schema).",
    "products.productCategoryRefs": "The categories the product is in (sent by Codat, not declared in its spec).",
    "products.productCategoryRefs[].id": "The id of a product category (a product_categories record).",
    "products.productCategoryRefs[].name": "The name of the product category.",
    "supplementalData.content": "Supplemental data configured for this data type, by data source: a JSON object "
                                "of the fields the source sent.",
    "companies.lastSync": "The date and time of the company's most recent successful sync.",
    "companies.created": "The date and time the company was created in Codat.",
    "dataConnections[].lastSync": "The date and time of the connection's most recent successful sync.",
    "dataConnections[].created": "The date and time the connection was created in Codat.",
    "dataConnectionErrors[].erroredOnUtc": "When the error occurred (UTC).",
    "connectionInfo": "Details the platform reports about the connection, as a JSON object.",
    "connections.lastSync": "The date and time of the connection's most recent successful sync.",
    "connections.created": "The date and time the connection was created in Codat.",
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
        dates = component("Order")["properties"]  # the same fields as every commerce record's, described there
        for field in ("createdDate", "modifiedDate", "sourceModifiedDate"):
            props.setdefault(field, {**NULLABLE_DATETIME, "description": dates[field]["description"]})
        props.setdefault("status", NULLABLE_STRING)
        props.setdefault("productCategoryRefs", _ref_list())
        variant = props["variants"]["items"]["properties"]
        variant.setdefault("quantity", {"type": ["number", "null"]})
    if stream == "payments":
        props.setdefault("type", NULLABLE_STRING)
    if stream == "orders":
        taxes = props["orderLineItems"]["items"]["properties"]["taxes"]["items"]["properties"]
        taxes.setdefault("taxAmount", {"type": ["number", "null"]})


def _key(described: dict[str, Any] | None, description: str = "") -> dict[str, Any]:
    """A key: a non-null string, with the spec's description of the field (or ``description``)."""
    return {**KEY_STRING, "description": (described or {}).get("description") or description}


def commerce_schema(stream: str, component_name: str) -> dict[str, Any]:
    schema = component(component_name)
    fill_gaps(stream, schema)
    keys = ["companyId", "connectionId"] + ([] if stream == "company_info" else ["id"])
    properties = {"companyId": _key(None, COMPANY_ID), "connectionId": _key(None, CONNECTION_ID),
                  **schema["properties"]}
    for key in keys:
        properties[key] = _key(properties[key])
    return {"type": "object", "properties": properties, "required": keys}


def platform_schema(name: str, keys: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = component(name, spec="Codat-Platform")
    properties = {**(extra or {}), **schema["properties"]}
    for key in keys:
        properties[key] = _key(properties[key])
    return {"type": "object", "properties": properties, "required": keys}


def describe(stream: str, node: dict[str, Any], path: str = "") -> None:
    """Give each property the spec leaves undescribed its words from OWN_WORDS (looked up by
    ``stream.path``, then by path alone, then by its last two parts)."""
    for name, sub in (node.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        if not sub.get("description"):
            tail = here.rsplit(".", 2)[-2:] if "." in here else [here]
            for candidate in (f"{stream}.{here}", here, ".".join(tail), name):
                if candidate in OWN_WORDS:
                    sub["description"] = OWN_WORDS[candidate]
                    break
        describe(stream, sub, here)
    if isinstance(node.get("items"), dict):
        describe(stream, node["items"], f"{path}[]")


def build() -> dict[str, dict[str, Any]]:
    schemas = {stream: commerce_schema(stream, name) for stream, name in COMMERCE.items()}
    schemas["companies"] = platform_schema("Company", ["id"])
    schemas["connections"] = platform_schema("Connection", ["companyId", "id"], {"companyId": _key(None, COMPANY_ID)})
    # The Company schema's created/lastSync are Codat DateTimes too.
    for stream, fields in (("companies", ("created", "lastSync")), ("connections", ("created", "lastSync"))):
        for field in fields:
            described = schemas[stream]["properties"][field].get("description")
            schemas[stream]["properties"][field] = {**NULLABLE_DATETIME, **({"description": described} if described
                                                                             else {})}
    for stream, schema in schemas.items():
        describe(stream, schema)
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
