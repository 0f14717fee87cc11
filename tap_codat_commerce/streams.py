"""Streams: companies → connections → the eleven commerce data types (declared as data)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from singer_sdk.helpers.types import Context

from .client import CodatError, CodatStream, RequestFailedError
from .dates import build_normaliser

if TYPE_CHECKING:
    from .tap import TapCodatCommerce


@dataclass(frozen=True)
class CommerceEndpoint:
    """One commerce data type: stream name, data path, Codat dataType, replication."""

    name: str
    path: str
    data_type: str
    incremental: bool = True
    single_object: bool = False


COMMERCE_ENDPOINTS: tuple[CommerceEndpoint, ...] = (
    CommerceEndpoint("company_info", "commerce-info", "commerce-companyInfo",
                     incremental=False, single_object=True),
    CommerceEndpoint("customers", "commerce-customers", "commerce-customers"),
    CommerceEndpoint("disputes", "commerce-disputes", "commerce-disputes"),
    CommerceEndpoint("locations", "commerce-locations", "commerce-locations"),
    CommerceEndpoint("orders", "commerce-orders", "commerce-orders"),
    CommerceEndpoint("payments", "commerce-payments", "commerce-payments"),
    CommerceEndpoint("payment_methods", "commerce-paymentMethods", "commerce-paymentMethods"),
    CommerceEndpoint("products", "commerce-products", "commerce-products"),
    CommerceEndpoint("product_categories", "commerce-productCategories", "commerce-productCategories"),
    CommerceEndpoint("tax_components", "commerce-taxComponents", "commerce-taxComponents"),
    CommerceEndpoint("transactions", "commerce-transactions", "commerce-transactions"),
)
# Codat answers these on a data endpoint when there is nothing to read: skip, don't fail.
UNAVAILABLE_STATUSES = (404, 409)


class CompaniesStream(CodatStream):
    """Every company of the client (or the configured ``company_ids``)."""

    name = "companies"
    primary_keys = ("id",)

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        company_ids = self.config.get("company_ids")
        if not company_ids:
            yield from self.client.iter_records("/companies", page_size=self.page_size)
            return
        for company_id in company_ids:
            try:
                yield self.client.get_json(f"/companies/{company_id}")
            except RequestFailedError as exc:
                if exc.status != 404:
                    raise
                self.logger.warning("Company %s not found (%s); skipping it", company_id, exc.codat_message)

    def get_child_context(self, record: dict[str, Any], context: Context | None) -> dict[str, Any]:
        return {"companyId": record["id"]}


class ConnectionsStream(CodatStream):
    """Every data connection; only readable Commerce connections fan out to the data types."""

    name = "connections"
    primary_keys = ("companyId", "id")
    parent_stream_type = CompaniesStream

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        assert context is not None
        company_id = context["companyId"]
        with self.failure_context(company_id):
            yield from self.client.iter_records(f"/companies/{company_id}/connections",
                                                page_size=self.page_size)

    def get_child_context(self, record: dict[str, Any], context: Context | None) -> dict[str, Any] | None:
        if record.get("sourceType") != "Commerce":
            return None
        if record.get("status") == "PendingAuth":
            self.logger.info("Company %s connection %s is not linked yet (PendingAuth); no data to read",
                             record["companyId"], record["id"])
            return None
        return {"companyId": record["companyId"], "connectionId": record["id"]}

    def generate_child_contexts(self, record: dict[str, Any], context: Context | None) -> Iterable[Context | None]:
        child = self.get_child_context(record, context)
        if child is not None:  # a non-commerce connection is not an error: no children, no warning
            yield child


class CommerceStream(CodatStream):
    """One commerce data type for one connection at a time (built from a CommerceEndpoint)."""

    parent_stream_type = ConnectionsStream

    def __init__(self, tap: TapCodatCommerce, endpoint: CommerceEndpoint) -> None:
        self.endpoint = endpoint
        super().__init__(tap, name=endpoint.name)
        self.primary_keys = ("companyId", "connectionId") if endpoint.single_object else (
            "companyId", "connectionId", "id")
        if endpoint.incremental:
            self.replication_key = "modifiedDate"
        self._normalise = build_normaliser(self.schema, self.name)

    @property
    def is_sorted(self) -> bool:
        return self.endpoint.incremental  # the server orders by modifiedDate

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        assert context is not None
        company_id, connection_id = context["companyId"], context["connectionId"]
        path = f"/companies/{company_id}/connections/{connection_id}/data/{self.endpoint.path}"
        with self.failure_context(company_id, connection_id):
            try:
                if self.endpoint.single_object:
                    yield self.client.get_json(path)
                    return
                params: dict[str, Any] = {"orderBy": "modifiedDate"}
                start = self.get_starting_timestamp(context)
                if start is not None:
                    params["query"] = f"modifiedDate>={start.strftime('%Y-%m-%dT%H:%M:%SZ')}"
                yield from self.client.iter_records(path, params, page_size=self.page_size,
                                                    ahead=self.pages_ahead)
            except RequestFailedError as exc:
                if exc.status not in UNAVAILABLE_STATUSES:
                    raise
                self.logger.warning("Skipping %s for company %s connection %s: %s (%s)", self.name,
                                    company_id, connection_id, exc.codat_message, exc.status)

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any] | None:
        assert context is not None
        row["companyId"] = context["companyId"]
        row["connectionId"] = context["connectionId"]
        if self._normalise is not None:
            self._normalise(row)
        return row


__all__ = ["COMMERCE_ENDPOINTS", "CodatError", "CommerceEndpoint", "CommerceStream", "CompaniesStream",
           "ConnectionsStream"]
