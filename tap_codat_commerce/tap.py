"""tap-codat-commerce: the Tap, its settings, and how bad settings and failures are reported."""

from __future__ import annotations

import sys
import uuid
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import pendulum
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from .client import MAX_PAGE_SIZE, CodatClient, CodatError, RetryPolicy, is_loopback
from .output import OrjsonWriter
from .streams import COMMERCE_ENDPOINTS, CommerceStream, CompaniesStream, ConnectionsStream

DEFAULT_BASE_URL = "https://api.codat.io"
DEFAULT_PAGE_SIZE = 2000
DEFAULT_CONCURRENCY = 16


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
        th.Property("max_retries", th.IntegerType, default=8, title="Max tries",
                    description="Attempts per request for 408/429/5xx, timeouts and dropped connections."),
        th.Property("max_retry_after", th.NumberType, default=300, title="Max Retry-After (s)",
                    description="Longest Retry-After the tap sleeps through; a longer one (daily quota "
                                "spent) stops the sync with a clear error."),
        th.Property("request_timeout", th.NumberType, default=120, title="Request timeout (s)",
                    description="Seconds to wait for one response before retrying."),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if kwargs.get("validate_config", True):
            self.check_settings()

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
        )

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


def settings_errors(config: dict[str, Any]) -> list[str]:
    errors = []
    if not str(config.get("api_key") or "").strip():
        errors.append("api_key: must not be empty")
    base_url = str(config.get("base_url") or DEFAULT_BASE_URL)
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors.append(f"base_url: {base_url!r} is not an http(s) URL")
    elif parts.scheme != "https" and not is_loopback(base_url):
        errors.append(f"base_url: {base_url!r} must use https (plain http is allowed only on loopback)")
    page_size = config.get("page_size", DEFAULT_PAGE_SIZE)
    if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        errors.append(f"page_size: {page_size!r} is not between 1 and {MAX_PAGE_SIZE}")
    start_date = config.get("start_date")
    if start_date is not None:
        try:
            pendulum.parse(str(start_date))
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            errors.append(f"start_date: {start_date!r} is not a date")
    concurrency = config.get("max_concurrency", DEFAULT_CONCURRENCY)
    if not isinstance(concurrency, int) or not 1 <= concurrency <= 64:
        errors.append(f"max_concurrency: {concurrency!r} is not between 1 and 64")
    shard_count, shard_index = config.get("shard_count", 1), config.get("shard_index", 0)
    if not isinstance(shard_count, int) or shard_count < 1:
        errors.append(f"shard_count: {shard_count!r} is not a positive whole number")
    elif not isinstance(shard_index, int) or not 0 <= shard_index < shard_count:
        errors.append(f"shard_index: {shard_index!r} is not between 0 and shard_count - 1 ({shard_count - 1})")
    for company_id in config.get("company_ids") or []:
        try:
            uuid.UUID(str(company_id))
        except ValueError:
            errors.append(f"company_ids: {company_id!r} is not a company id (a UUID)")
    return errors


if __name__ == "__main__":
    TapCodatCommerce.cli()
