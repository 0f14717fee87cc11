"""tap-codat-commerce: the Tap, its settings, and how bad settings and failures are reported."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from functools import cached_property
from types import FrameType
from typing import Any

from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib import Schema

from .codat.data_types import COMMERCE_ENDPOINTS
from .codat.http import MAX_PAGE_SIZE, CodatClient, CodatError, RetryPolicy
from .normalise import UNDECLARED, declare_undeclared
from .output import OrjsonWriter
from .readiness import Readiness
from .request_metrics import RequestMetrics
from .settings import DEFAULT_BASE_URL, DEFAULT_CONCURRENCY, DEFAULT_PAGE_SIZE, settings_errors
from .streams import CommerceStream, CompaniesStream, ConnectionsStream


class _NullBookmarkNotice(logging.Filter):
    """The SDK logs "New replication value is null" for every record without a modifiedDate;
    the streams warn once per connection and data type instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "New replication value is null"


logging.getLogger("singer_sdk").addFilter(_NullBookmarkNotice())


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived: the sync stops, the run exits 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class TapCodatCommerce(Tap):
    """Singer tap for Codat's Commerce API."""

    name = "tap-codat-commerce"
    message_writer_class = OrjsonWriter

    config_jsonschema = th.PropertiesList(
        th.Property("api_key", th.StringType, required=True, secret=True,
                    title="API key",
                    description="Codat API key: the raw key, or the full 'Basic …' header value the "
                                "Codat Portal shows."),
        th.Property("base_url", th.StringType, default=DEFAULT_BASE_URL, title="Base URL",
                    description="Codat API base URL. https is required except on loopback (the sandbox)."),
        th.Property("start_date", th.DateTimeType, title="Start date",
                    description="Read records modified on or after this date where no bookmark exists yet."),
        th.Property("company_ids", th.ArrayType(th.StringType), title="Company IDs",
                    description="Only these companies (UUIDs). Default: every company of the client."),
        th.Property("page_size", th.IntegerType, default=DEFAULT_PAGE_SIZE, title="Page size",
                    description=f"Records per request, 1-{MAX_PAGE_SIZE} (Codat's maximum)."),
        th.Property("max_concurrency", th.IntegerType, default=DEFAULT_CONCURRENCY, title="Max concurrency",
                    description="Requests in flight at once (pages fetched ahead, data types side by side, "
                                "the next companies' connections). 1 = strictly sequential. Never more than "
                                "10 per company, Codat's limit."),
        th.Property("shard_count", th.IntegerType, default=1, title="Shard count",
                    description="Split companies over this many workers (stable hash of company id)."),
        th.Property("shard_index", th.IntegerType, default=0, title="Shard index",
                    description="Which shard this worker syncs: 0 to shard_count - 1."),
        th.Property("check_data_status", th.BooleanType, default=True, title="Check data status",
                    description="Read each company's dataStatus first and skip data types that never synced "
                                "(no 404/409 round trip)."),
        th.Property("refresh_before_read", th.BooleanType, default=False, title="Refresh before read",
                    description="Queue a Codat sync of each company and wait for it (up to refresh_timeout) "
                                "before reading it."),
        th.Property("refresh_timeout", th.NumberType, default=900, title="Refresh timeout (s)",
                    description="Longest wait for a refresh_before_read sync; then what has synced is read."),
        th.Property("max_retries", th.IntegerType, default=8, title="Max tries",
                    description="Attempts per request for 408/429/5xx, timeouts and dropped connections."),
        th.Property("max_retry_after", th.NumberType, default=300, title="Max Retry-After (s)",
                    description="Longest Retry-After the tap sleeps through; a longer one (daily quota "
                                "spent) stops the sync with a clear error."),
        th.Property("request_timeout", th.NumberType, default=120, title="Request timeout (s)",
                    description="Seconds to wait for one response before retrying."),
        th.Property("undeclared_fields", th.StringType, default="drop", allowed_values=["drop", "keep"],
                    title="Undeclared fields",
                    description="Fields Codat sends that the schema does not declare: 'drop' them (one warning "
                                f"per field and stream, as the SDK does) or 'keep' them in '{UNDECLARED}', an "
                                "untyped JSON object declared in SCHEMA at every level that lists properties."),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if kwargs.get("validate_config", True):
            self.check_settings()
        if threading.current_thread() is threading.main_thread():  # only the main thread may set them
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._terminate)

    def setup_mapper(self) -> None:
        """The SDK's mapper, from a catalog that declares ``_codat_undeclared`` when
        ``undeclared_fields: keep`` (a catalog discovered without it lacks it), so that SCHEMA
        and RECORD agree."""
        catalog = self.input_catalog
        if catalog is not None and self.config.get("undeclared_fields") == "keep":
            for entry in catalog.streams:
                entry.schema = Schema.from_dict(declare_undeclared(entry.schema.to_dict()))
        super().setup_mapper()

    def _terminate(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: write the current STATE (valid for a resume: every record before it
        has been written), then stop the sync; :meth:`invoke` exits 128 + ``signum``."""
        signal.signal(signum, signal.SIG_IGN)  # a second signal does not interrupt the shutdown
        try:
            self.state_writer.write_state(self.state)
        finally:
            raise Terminated(signum)

    @cached_property
    def request_metrics(self) -> RequestMetrics:
        """The SDK's http_request_duration/http_request_count for every request the client makes."""
        endpoints = {"/companies": "companies", "/companies/{companyId}": "companies",
                     "/companies/{companyId}/connections": "connections"}
        for endpoint in COMMERCE_ENDPOINTS:
            endpoints[f"/companies/{{companyId}}/connections/{{connectionId}}/data/{endpoint.path}"] = endpoint.name
        return RequestMetrics(endpoints, default_stream="companies")

    def check_settings(self) -> None:
        """What JSON Schema cannot say, each failure as one line naming the setting."""
        errors = list(settings_errors(self.config))
        if errors:
            raise ConfigValidationError("Config validation failed", errors=errors)

    @cached_property
    def client(self) -> CodatClient:
        config = self.config
        return CodatClient(
            config.get("base_url") or DEFAULT_BASE_URL,
            config.get("api_key") or "",
            retry=RetryPolicy(max_tries=int(config.get("max_retries", 8)),
                              max_retry_after=float(config.get("max_retry_after", 300))),
            timeout=float(config.get("request_timeout", 120)),
            max_concurrency=int(config.get("max_concurrency", DEFAULT_CONCURRENCY)),
            user_agent=f"{self.name}/{self.plugin_version}",
            observer=self.request_metrics.observe,
        )

    @cached_property
    def readiness(self) -> Readiness:
        return Readiness(self.client, enabled=bool(self.config.get("check_data_status", True)))

    def discover_streams(self) -> list[Stream]:
        return [
            CompaniesStream(self),
            ConnectionsStream(self),
            *(CommerceStream(self, endpoint) for endpoint in COMMERCE_ENDPOINTS),
        ]

    @classmethod
    def invoke(cls, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Run the sync; a Codat failure ends it with one clear line and exit code 1."""
        try:
            super().invoke(*args, **kwargs)
        except CodatError as exc:
            cls.logger.error("Sync failed: %s", exc)
            sys.exit(1)
        except Terminated as exc:
            name = signal.Signals(exc.signum).name
            cls.logger.error("Sync stopped by %s before it finished; the last STATE written is where to resume",
                             name)
            sys.stdout.flush()
            sys.exit(128 + exc.signum)


if __name__ == "__main__":
    TapCodatCommerce.cli()
