"""merchant_monthly computed again in plain Python, from the sandbox's records read through the
Codat API (never through a warehouse), following the definitions in the README; the tests compare
it with what the dbt models built on DuckDB and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tests.conftest import Api

Key = tuple[str, str, date, str]  # company, connection, month (UTC), currency
COLUMNS = ("orders", "gross_sales", "discounts", "refunds", "net_sales", "customers", "average_order_value",
           "disputes_opened", "disputed_amount")
CENT = Decimal("0.01")


def records(api: Api, company: str, connection: str, path: str) -> Iterator[dict[str, Any]]:
    """Every record of one data type of one connection, page by page (none if it has no such type)."""
    page = 1
    while True:
        response = api.get(f"/companies/{company}/connections/{connection}/data/{path}",
                           params={"page": page, "pageSize": 2000})
        if response.status_code != 200:
            return
        body = response.json(parse_float=Decimal)
        yield from body["results"]
        if "next" not in body["_links"]:
            return
        page += 1


def utc_month(text: str | None) -> date | None:
    """The first day of the date's UTC month; None for no date (null, or Codat's 0001-01-01)."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)  # an offset date can be in another month in UTC
    return moment.date().replace(day=1) if moment.year >= 1900 else None


def clean(value: str | None) -> str:
    """Text with the spaces around it taken off (SQL's trim), "" for null."""
    return (value or "").strip(" ")


def currency_of(value: str | None) -> str:
    return clean(value).upper() or "XXX"


def objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array (nothing for null, a non-array, or a null element)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def amount(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


@dataclass
class MerchantMonth:
    orders: int = 0
    gross_sales: Decimal = Decimal(0)
    discounts: Decimal = Decimal(0)
    refunds: Decimal = Decimal(0)
    net_sales: Decimal = Decimal(0)
    customer_ids: set[str] = field(default_factory=set)
    disputes_opened: int = 0
    disputed_amount: Decimal = Decimal(0)

    def add_order(self, order: dict[str, Any]) -> None:
        lines = objects(order.get("orderLineItems"))
        allocations = [abs(amount(a.get("totalAmount"))) for line in lines
                       for a in objects(line.get("discountAllocations"))]
        discount = sum(allocations, Decimal(0)) if allocations else abs(amount(order.get("totalDiscount")))
        refund = abs(amount(order.get("totalRefund")))
        if not refund:  # no totalRefund: the lines with a negative quantity are the refund
            refund = abs(sum((amount(line.get("totalAmount")) for line in lines
                              if amount(line.get("quantity")) < 0), Decimal(0)))
        net = amount(order.get("totalAmount"))
        self.orders += 1
        self.net_sales += net
        self.discounts += discount
        self.refunds += refund
        self.gross_sales += net + discount + refund
        if (order.get("customerRef") or {}).get("id"):
            self.customer_ids.add(order["customerRef"]["id"])

    def add_dispute(self, dispute: dict[str, Any]) -> None:
        self.disputes_opened += 1
        self.disputed_amount += abs(amount(dispute.get("totalAmount")))

    def row(self) -> dict[str, Any]:
        average = (self.net_sales / self.orders).quantize(CENT, ROUND_HALF_UP) if self.orders else None
        return {"orders": self.orders, "gross_sales": self.gross_sales, "discounts": self.discounts,
                "refunds": self.refunds, "net_sales": self.net_sales, "customers": len(self.customer_ids),
                "average_order_value": average, "disputes_opened": self.disputes_opened,
                "disputed_amount": self.disputed_amount}


Snapshot = dict[tuple[str, str, str, str], dict[str, Any]]  # (path, company, connection, id) -> record
ADDITIVE = ("orders", "gross_sales", "discounts", "refunds", "net_sales", "disputes_opened", "disputed_amount")


def snapshot(api: Api) -> Snapshot:
    """Every order and dispute of every linked commerce connection, read through the Codat API."""
    found: Snapshot = {}
    for company, connection in api.commerce_connections():
        if connection["status"] != "Linked":  # the tap reads linked connections only
            continue
        for path in ("commerce-orders", "commerce-disputes"):
            for record in records(api, company, connection["id"], path):
                found[(path, company, connection["id"], record["id"])] = record
    return found


def merchant_months(records_by_key: Snapshot) -> dict[Key, MerchantMonth]:
    months: dict[Key, MerchantMonth] = {}
    for (path, company, connection, _), record in records_by_key.items():
        first_day = utc_month(record.get("createdDate"))
        if first_day is None:  # in no month: left out of the mart
            continue
        month = months.setdefault((company, connection, first_day, currency_of(record.get("currency"))),
                                  MerchantMonth())
        month.add_order(record) if path == "commerce-orders" else month.add_dispute(record)
    return months


def expected_merchant_months(records_by_key: Snapshot) -> dict[Key, dict[str, Any]]:
    """merchant_monthly as the README defines it."""
    return {key: month.row() for key, month in merchant_months(records_by_key).items()}


def expected_change(before: Snapshot, after: Snapshot) -> dict[Key, dict[str, Any]]:
    """What the changed and new records alone move in each merchant-month (additive columns):
    their new contributions minus their old ones."""
    changed = {key for key in after if before.get(key) != after[key]}
    return rows_moved(expected_merchant_months({key: before[key] for key in changed if key in before}),
                         expected_merchant_months({key: after[key] for key in changed}))


def rows_moved(before: dict[Key, dict[str, Any]], after: dict[Key, dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """How merchant_monthly rows moved from ``before`` to ``after`` (additive columns; a row
    missing on one side counts as zeros)."""
    empty = dict.fromkeys(ADDITIVE, 0)
    change = {}
    for key in before.keys() | after.keys():
        new, old = after.get(key, empty), before.get(key, empty)
        moved = {name: new[name] - old[name] for name in ADDITIVE}
        if any(moved.values()):
            change[key] = moved
    return change


@dataclass(frozen=True)
class Mart:
    """A mart table as the tests read it: its key columns (company_id, connection_id, month, ...)
    and its value columns (the integer ones as int, the others as Decimal)."""

    table: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    integers: tuple[str, ...]

    def query(self, schema: str) -> str:
        return f"select {', '.join(self.keys + self.columns)} from {schema}.{self.table}"

    def loaded(self, rows: Iterable[tuple[Any, ...]]) -> dict[tuple[Any, ...], dict[str, Any]]:
        """The rows of :meth:`query`, with values as DuckDB returns them or as psql prints them."""
        found = {}
        for row in rows:
            key = list(row[:len(self.keys)])
            key[2] = date.fromisoformat(key[2]) if isinstance(key[2], str) else key[2]  # the month
            values = dict(zip(self.columns, row[len(self.keys):], strict=True))
            for name, value in values.items():
                if name in self.integers:
                    values[name] = int(value)
                else:
                    values[name] = None if value in (None, "") else Decimal(str(value))
            found[tuple(key)] = values
        return found

    def differences(self, expected: dict[Any, dict[str, Any]], loaded: dict[Any, dict[str, Any]]) -> list[str]:
        """What differs, one line each."""
        found = [f"{self.table}: missing {key}" for key in expected.keys() - loaded.keys()]
        found += [f"{self.table}: unexpected {key}: {loaded[key]}" for key in loaded.keys() - expected.keys()]
        for key in expected.keys() & loaded.keys():
            want, got = expected[key], loaded[key]
            for name in self.columns:
                if want[name] != got[name]:
                    found.append(f"{self.table} {key} {name}: expected {want[name]}, loaded {got[name]}")
        return found


MERCHANT_MONTHLY = Mart("merchant_monthly", ("company_id", "connection_id", "month", "currency"), COLUMNS,
                        integers=("orders", "customers", "disputes_opened"))
PAYMENT_MIX_MONTHLY = Mart("payment_mix_monthly",
                           ("company_id", "connection_id", "month", "currency", "payment_type"),
                           ("payments", "orders", "amount", "share_of_amount"), integers=("payments", "orders"))


def expected_payment_mix(records_by_key: Snapshot) -> dict[tuple[Any, ...], dict[str, Any]]:
    """payment_mix_monthly as the README defines it: the payments embedded in each month's orders,
    failed and cancelled ones left out, by currency (the payment's, else its order's) and type."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for (path, company, connection, _), order in records_by_key.items():
        month = utc_month(order.get("createdDate"))
        if path != "commerce-orders" or month is None:
            continue
        for payment in objects(order.get("payments")):
            if clean(payment.get("status")) in ("Failed", "Cancelled"):
                continue
            currency = currency_of(clean(payment.get("currency")) or order.get("currency"))
            kind = clean(payment.get("type")) or "Unknown"
            group = groups.setdefault((company, connection, month, currency, kind),
                                      {"payments": 0, "orders": set(), "amount": Decimal(0)})
            group["payments"] += 1
            group["orders"].add(order["id"])
            group["amount"] += amount(payment.get("amount"))
    totals: dict[tuple[Any, ...], Decimal] = {}
    for key, group in groups.items():
        totals[key[:4]] = totals.get(key[:4], Decimal(0)) + group["amount"]
    return {key: {"payments": group["payments"], "orders": len(group["orders"]), "amount": group["amount"],
                  "share_of_amount": (group["amount"] / totals[key[:4]]).quantize(Decimal("0.0001"), ROUND_HALF_UP)
                  if totals[key[:4]] else None}
            for key, group in groups.items()}


def compare_marts(records_by_key: Snapshot, fetch: Callable[[str], list[tuple[Any, ...]]],
                  schema: str) -> tuple[dict[Key, dict[str, Any]], list[str]]:
    """Both marts as built in ``schema`` (``fetch`` runs a query on the warehouse) against what
    the records say: (merchant_monthly as loaded, every difference, one line each)."""
    monthly = MERCHANT_MONTHLY.loaded(fetch(MERCHANT_MONTHLY.query(schema)))
    mix = PAYMENT_MIX_MONTHLY.loaded(fetch(PAYMENT_MIX_MONTHLY.query(schema)))
    return monthly, (MERCHANT_MONTHLY.differences(expected_merchant_months(records_by_key), monthly)
                     + PAYMENT_MIX_MONTHLY.differences(expected_payment_mix(records_by_key), mix))
