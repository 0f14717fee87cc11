"""Everything HTTP: auth, retries, rate limits, errors and paging, shared by tap and setup.

Paging is done here rather than with an SDK paginator on purpose: once page 1 tells
``totalResults``, the remaining pages are known up front and can be fetched ahead in a
bounded pool (``max_concurrency``) while records are still yielded in page order.
"""

from __future__ import annotations

import base64
import logging
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from singer_sdk import Stream, Tap
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.schema.source import SchemaDirectory, StreamSchema

logger = logging.getLogger("tap_codat_commerce.client")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
CODAT_CONCURRENCY_PER_COMPANY = 10
MAX_PAGE_SIZE = 5000


class CodatError(Exception):
    """A failure the tap reports as one line and a non-zero exit."""


class AuthError(CodatError):
    """401/403: the key is wrong, revoked or not allowed here."""


class QuotaExhaustedError(CodatError):
    """Codat asked us to wait longer than ``max_retry_after``."""


class RequestFailedError(CodatError):
    """A request that failed for good (after retries, or a 4xx that retrying won't fix)."""

    def __init__(self, message: str, status: int | None = None, codat_message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.codat_message = codat_message


def auth_header(api_key: str) -> str:
    """Codat's Authorization value: ``Basic base64(key)``; a ready ``Basic …`` value is kept."""
    key = api_key.strip()
    if key.lower().startswith("basic "):
        return "Basic " + key[6:].strip()
    return "Basic " + base64.b64encode(key.encode()).decode()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def codat_message(response: requests.Response) -> str:
    """The ``error`` text of Codat's error body, or the HTTP reason."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return response.reason or f"HTTP {response.status_code}"


@dataclass(frozen=True)
class RetryPolicy:
    """Codat's published policy: exponential backoff from 0.5 s, factor 1.5, capped at 60 s."""

    max_tries: int = 8
    initial_wait: float = 0.5
    factor: float = 1.5
    max_wait: float = 60.0
    max_retry_after: float = 300.0

    def backoff(self, attempt: int) -> float:
        base = min(self.initial_wait * self.factor ** (attempt - 1), self.max_wait)
        return base * random.uniform(0.8, 1.2)


@dataclass(frozen=True)
class Page:
    number: int
    results: list[dict[str, Any]]
    total: int | None


class CodatClient:
    """One HTTP client for the Codat API: thread-safe, bounded per company, retrying."""

    def __init__(self, base_url: str, api_key: str, *, retry: RetryPolicy | None = None,
                 timeout: float = 120.0, max_concurrency: int = 1, user_agent: str = "tap-codat-commerce") -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.max_concurrency = max(1, max_concurrency)
        self._headers = {"Authorization": auth_header(api_key), "Accept": "application/json",
                         "User-Agent": user_agent}
        self._local = threading.local()
        self._company_slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.requests_sent = 0

    # --- plumbing ---------------------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self._headers)
            self._local.session = session
        return session

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="codat")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _slot(self, path: str) -> threading.BoundedSemaphore | None:
        parts = path.split("/")
        if len(parts) < 3 or parts[1] != "companies":
            return None
        with self._slots_lock:
            slot = self._company_slots.get(parts[2])
            if slot is None:
                slot = self._company_slots[parts[2]] = threading.BoundedSemaphore(CODAT_CONCURRENCY_PER_COMPANY)
            return slot

    # --- requests ---------------------------------------------------------------------------
    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None) -> requests.Response:
        """Send one request, retrying 408/429/5xx, timeouts and broken connections.

        Raises AuthError for 401/403, QuotaExhaustedError when Retry-After exceeds the cap,
        RequestFailedError for any other 4xx or once the retries are spent.
        """
        url = self.base_url + path
        what = f"{method} {path}"
        slot = self._slot(path)
        for attempt in range(1, self.retry.max_tries + 1):
            wait: float | None = None
            try:
                if slot is not None:
                    with slot:
                        response = self.session.request(method, url, params=params, json=json,
                                                        timeout=self.timeout)
                else:
                    response = self.session.request(method, url, params=params, json=json, timeout=self.timeout)
                self.requests_sent += 1
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                problem = f"{type(exc).__name__.replace('Error', ' error').strip()}"
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status in (401, 403):
                    raise AuthError(
                        f"Codat refused the API key ({status} {codat_message(response)}) on {what}; "
                        "check api_key") from None
                if status not in RETRY_STATUSES:
                    message = codat_message(response)
                    raise RequestFailedError(f"{what} failed: {status} {message}", status, message)
                problem = f"{status} {codat_message(response)}"
                wait = parse_retry_after(response.headers.get("Retry-After"))
                if wait is not None and wait > self.retry.max_retry_after:
                    raise QuotaExhaustedError(
                        f"Codat rate limit on {what}: Retry-After is {wait:.0f} s, over max_retry_after="
                        f"{self.retry.max_retry_after:.0f} s (daily quota spent?); stopping instead of sleeping")
            if attempt == self.retry.max_tries:
                raise RequestFailedError(f"{what} failed after {attempt} tries: {problem}")
            delay = wait if wait is not None else self.retry.backoff(attempt)
            logger.warning("%s: %s; retry %d/%d in %.1f s", what, problem, attempt,
                           self.retry.max_tries - 1, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET and parse JSON; a truncated or malformed body is retried like a dropped connection."""
        for attempt in range(1, self.retry.max_tries + 1):
            response = self.request("GET", path, params=params)
            try:
                return orjson.loads(response.content)
            except orjson.JSONDecodeError:
                if attempt == self.retry.max_tries:
                    raise RequestFailedError(f"GET {path} failed after {attempt} tries: the body is not valid JSON") \
                        from None
                logger.warning("GET %s: body is not valid JSON; retry %d/%d", path, attempt,
                               self.retry.max_tries - 1)
                time.sleep(self.retry.backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def send_json(self, method: str, path: str, body: Any = None) -> Any:
        """POST/PATCH/PUT/DELETE with a JSON body; returns the parsed answer or None."""
        response = self.request(method, path, json=body)
        return orjson.loads(response.content) if response.content else None

    # --- paging -----------------------------------------------------------------------------
    def _page(self, path: str, params: dict[str, Any], number: int, size: int) -> Page:
        body = self.get_json(path, {**params, "page": number, "pageSize": size})
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise RequestFailedError(f"GET {path} page {number}: the answer is not a Codat page")
        total = body.get("totalResults")
        served = body.get("pageNumber", number)
        if served != number:  # a mock that ignores `page` would loop forever
            return Page(number, [], total if isinstance(total, int) else None)
        return Page(number, body["results"], total if isinstance(total, int) else None)

    def iter_pages(self, path: str, params: dict[str, Any] | None = None, *,
                   page_size: int = 100, ahead: int = 0) -> Iterator[Page]:
        """Every page of a Codat list, in order; ``ahead`` pages are fetched in advance."""
        params = dict(params or {})
        first = self._page(path, params, 1, page_size)
        yield first
        if not first.results or first.total is None or len(first.results) >= first.total:
            if first.total is None and len(first.results) == page_size:
                yield from self._iter_unknown_total(path, params, page_size)
            return
        last = -(-first.total // page_size)
        queue: deque[Future[Page]] = deque()
        next_number = 2
        while next_number <= last or queue:
            while next_number <= last and len(queue) < max(ahead, 0) + 1:
                if ahead:
                    queue.append(self.pool.submit(self._page, path, params, next_number, page_size))
                else:
                    done: Future[Page] = Future()
                    done.set_result(self._page(path, params, next_number, page_size))
                    queue.append(done)
                next_number += 1
            page = queue.popleft().result()
            if not page.results:
                for pending in queue:
                    pending.cancel()
                return
            yield page

    def _iter_unknown_total(self, path: str, params: dict[str, Any], page_size: int) -> Iterator[Page]:
        number = 2
        while True:
            page = self._page(path, params, number, page_size)
            if not page.results:
                return
            yield page
            if len(page.results) < page_size:
                return
            number += 1

    def iter_records(self, path: str, params: dict[str, Any] | None = None, *,
                     page_size: int = 100, ahead: int = 0) -> Iterator[dict[str, Any]]:
        for page in self.iter_pages(path, params, page_size=page_size, ahead=ahead):
            yield from page.results


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _schema_dir() -> Path:
    """Schemas ship inside the wheel; in a source checkout they are the top-level ``schemas/``."""
    packaged = Path(__file__).parent / "schemas"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "schemas"


class CodatStream(Stream):
    """Base stream: the tap's one CodatClient, its schema file, and failures named in one line."""

    schema = StreamSchema(SchemaDirectory(_schema_dir()))
    # Records arrive typed (orjson numbers) and dates are normalised in post_process:
    # the SDK's recursive conformance would cost ~60% of the sync for nothing.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: Tap, *, name: str | None = None) -> None:
        super().__init__(tap, name=name)
        self.client: CodatClient = tap.client  # type: ignore[attr-defined]

    @property
    def page_size(self) -> int:
        return int(self.config.get("page_size", MAX_PAGE_SIZE))

    @property
    def pages_ahead(self) -> int:
        return 0

    def log(self, message: str, *args: Any, level: int = logging.INFO, **kwargs: Any) -> None:
        # The SDK logs "unhandled error" at ERROR for every stream a failure passes through;
        # a CodatError is reported once, as one line, by the tap.
        if level >= logging.ERROR and isinstance(sys.exc_info()[1], CodatError):
            level = logging.DEBUG
        super().log(message, *args, level=level, **kwargs)

    @contextmanager
    def failure_context(self, company_id: str, connection_id: str | None = None) -> Iterator[None]:
        """Re-raise a CodatError as one line naming stream, company and connection."""
        try:
            yield
        except CodatError as exc:
            where = f"company {company_id}" + (f", connection {connection_id}" if connection_id else "")
            raise type(exc)(f"{self.name} ({where}): {exc}") from None
