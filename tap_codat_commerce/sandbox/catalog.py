"""What the sandbox knows of Codat: data types, their paths, and the integrations."""

from __future__ import annotations

from dataclasses import dataclass

COMMERCE_DATA_TYPES: tuple[str, ...] = (
    "commerce-companyInfo",
    "commerce-customers",
    "commerce-disputes",
    "commerce-locations",
    "commerce-orders",
    "commerce-paymentMethods",
    "commerce-payments",
    "commerce-productCategories",
    "commerce-products",
    "commerce-taxComponents",
    "commerce-transactions",
)
# Non-commerce data types the profile sync settings also hold (left untouched by setup).
OTHER_DATA_TYPES: tuple[str, ...] = (
    "invoices",
    "bills",
    "customers",
    "suppliers",
    "banking-accounts",
    "banking-transactions",
)
# The one data type whose path differs from its name.
PATH_OF_DATA_TYPE = {dt: dt for dt in COMMERCE_DATA_TYPES} | {"commerce-companyInfo": "commerce-info"}
DATA_TYPE_OF_PATH = {path: dt for dt, path in PATH_OF_DATA_TYPE.items()}
ALL_COMMERCE = frozenset(COMMERCE_DATA_TYPES)


def _without(*names: str) -> frozenset[str]:
    return ALL_COMMERCE - {f"commerce-{n}" for n in names}


def _only(*names: str) -> frozenset[str]:
    return frozenset(f"commerce-{n}" for n in names)


@dataclass(frozen=True)
class Platform:
    key: str
    name: str
    source_type: str = "Commerce"
    supported: frozenset[str] = frozenset()
    currency: str = "USD"
    country: str = "USA"
    id_style: str = "uuid"  # uuid | numeric | stripe | amazon
    date_style: str = "utc"  # how createdDate / sourceModifiedDate look: utc | naive | offset
    payment_provider: str | None = None
    # Codat's schema says an order's totalRefund is <= 0; its guides and some platforms send it
    # positive. The sandbox does both, so that a model reading it must drop the sign.
    refund_sign: int = -1
    # A second currency some of its orders are sold in (cross-border sales): amounts are in each
    # order's own currency, never converted.
    other_currency: str | None = None


PLATFORMS: tuple[Platform, ...] = (
    Platform("aiwb", "Commerce Sandbox", supported=ALL_COMMERCE, currency="GBP", country="GBR",
             payment_provider="Sandbox Pay", other_currency="EUR"),
    Platform("fztf", "Shopify", supported=ALL_COMMERCE, id_style="numeric", date_style="offset",
             payment_provider="Shopify Payments", other_currency="CAD"),
    Platform("zsth", "Square", supported=_without("taxComponents"), date_style="naive",
             payment_provider="Square", refund_sign=1),
    Platform("exgd", "Stripe", currency="EUR", country="IRL", id_style="stripe",
             supported=_only("companyInfo", "customers", "disputes", "payments", "paymentMethods",
                             "products", "transactions"),
             payment_provider="Stripe"),
    Platform("ltpp", "WooCommerce", supported=_without("disputes", "transactions", "locations"),
             currency="GBP", country="GBR", id_style="numeric", date_style="naive",
             payment_provider="WooCommerce Payments", refund_sign=1, other_currency="EUR"),
    Platform("ugxp", "Zettle", currency="SEK", country="SWE", date_style="offset",
             supported=_without("customers", "disputes")),
    Platform("fqly", "Clover", supported=_without("disputes"), payment_provider="Clover"),
    Platform("qkdj", "Amazon Seller Central", currency="GBP", country="GBR", id_style="amazon",
             supported=_only("companyInfo", "orders", "payments", "products", "transactions",
                             "disputes"),
             payment_provider="Amazon Pay"),
    Platform("vqzp", "BigCommerce", id_style="numeric", date_style="naive",
             supported=_without("disputes", "transactions", "taxComponents"),
             payment_provider="BigCommerce"),
    Platform("ldgh", "Lightspeed K", currency="EUR", country="NLD", id_style="numeric",
             supported=_without("disputes"), payment_provider="Lightspeed Payments"),
    Platform("gbol", "Xero", source_type="Accounting"),
    Platform("qhyg", "QuickBooks Online", source_type="Accounting"),
)
PLATFORM_BY_KEY = {p.key: p for p in PLATFORMS}
COMMERCE_PLATFORMS = tuple(p for p in PLATFORMS if p.source_type == "Commerce")
