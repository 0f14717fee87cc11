"""The eleven commerce data types as data (Codat's names and paths), and a dataStatus entry."""

from __future__ import annotations

from dataclasses import dataclass


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
COMMERCE_DATA_TYPES = tuple(e.data_type for e in COMMERCE_ENDPOINTS)
# What users may type for a data type: the dataType, its data path, or the tap's stream name.
DATA_TYPE_ALIASES = {alias.lower(): e.data_type for e in COMMERCE_ENDPOINTS for alias in (e.data_type, e.path, e.name)}
FAILED = frozenset({"FetchError", "MapError", "InternalError", "ProcessingError", "ValidationError", "AuthError",
                    "Cancelled", "RateLimitError", "PermissionsError", "PrerequisiteNotMet"})
FINISHED = frozenset({"Complete", "NotSupported"})


@dataclass
class DataTypeStatus:
    """One commerce data type of a company, as ``GET /companies/{id}/dataStatus`` reports it."""

    data_type: str
    status: str  # Codat's currentStatus, or "NeverSynced"
    last_successful_sync: str | None
    readable: bool  # the tap can read it now (a sync has completed once)
    last_successful_sync_id: str | None = None  # latestSuccessfulSyncId

    @property
    def sync_marker(self) -> str | None:
        """What identifies the data this type holds now: the last successful sync's id (or time)."""
        return self.last_successful_sync_id or self.last_successful_sync

    @property
    def done(self) -> bool:
        return self.status in FINISHED or self.status in FAILED

    @property
    def failed(self) -> bool:
        return self.status in FAILED
