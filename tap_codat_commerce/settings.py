"""The tap's settings: defaults and the checks JSON Schema cannot express (shared with setup)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pendulum

from .codat.http import MAX_PAGE_SIZE, is_loopback

DEFAULT_BASE_URL = "https://api.codat.io"
DEFAULT_PAGE_SIZE = 2000  # as fast as 5000 here, and 40% of the memory (see README, Performance)
DEFAULT_CONCURRENCY = 16


def settings_errors(config: Mapping[str, Any]) -> list[str]:
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
    interval = config.get("state_interval", 0)
    if not isinstance(interval, int | float) or isinstance(interval, bool) or interval < 0:
        errors.append(f"state_interval: {interval!r} is not a number of seconds (0 or more)")
    for company_id in config.get("company_ids") or []:
        try:
            uuid.UUID(str(company_id))
        except ValueError:
            errors.append(f"company_ids: {company_id!r} is not a company id (a UUID)")
    return errors
