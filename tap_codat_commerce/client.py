"""Everything HTTP: auth, retries, rate limits, errors and paging, shared by tap and setup.

Paging is done here rather than with an SDK paginator on purpose: once page 1 tells
``totalResults``, the remaining pages are known up front and can be fetched ahead in a
bounded pool (``max_concurrency``) while records are still yielded in page order.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import logging
import random
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import orjson
import requests
from singer_sdk import Stream, Tap
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context
from singer_sdk.schema.source import SchemaDirectory, StreamSchema

logger = logging.getLogger("tap_codat_commerce.client")

if TYPE_CHECKING:
    from .streams import Readiness

T = TypeVar("T")
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


_gc_lock = threading.Lock()
_gc_pauses = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC while a page is parsed: a 5000-record page is ~400k new containers,
    and collections triggered halfway through them triple the parse time."""
    global _gc_pauses  # noqa: PLW0603
    with _gc_lock:
        _gc_pauses += 1
        if _gc_pauses == 1:
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0:
                gc.enable()


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
        self._waiting = 0  # fetched-ahead results not yet read (bounded by max_concurrency)
        self._queued: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = deque()
        self._stop = threading.Event()  # set (and replaced) when what was started must end

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

    def cancel_pending(self) -> None:
        """End everything started so far (the sync that wanted it is over, or failed): queued
        fetches are dropped, running ones stop at their next retry. The client stays usable."""
        with self._slots_lock:
            queued, self._queued = self._queued, deque()
            stop, self._stop = self._stop, threading.Event()
            self._waiting = 0
            pool, self._pool = self._pool, None
        stop.set()
        for future, _, _ in queued:
            future.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

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
        stop = self._stop
        for attempt in range(1, self.retry.max_tries + 1):
            wait: float | None = None
            try:
                with slot or contextlib.nullcontext():
                    response = self.session.request(method, url, params=params, json=json, timeout=self.timeout)
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
            self._pause(delay, stop)
        raise AssertionError("unreachable")  # pragma: no cover

    def _pause(self, seconds: float, stop: threading.Event) -> None:
        """Sleep before a retry, unless what asked for the request has been cancelled."""
        if stop.wait(seconds):
            raise RequestFailedError("cancelled: the sync that asked for it has ended")

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET and parse JSON; a truncated or malformed body is retried like a dropped connection."""
        for attempt in range(1, self.retry.max_tries + 1):
            stop = self._stop
            response = self.request("GET", path, params=params)
            try:
                with gc_paused():
                    return orjson.loads(response.content)
            except orjson.JSONDecodeError:
                if attempt == self.retry.max_tries:
                    raise RequestFailedError(f"GET {path} failed after {attempt} tries: the body is not valid JSON") \
                        from None
                logger.warning("GET %s: body is not valid JSON; retry %d/%d", path, attempt,
                               self.retry.max_tries - 1)
                self._pause(self.retry.backoff(attempt), stop)
        raise AssertionError("unreachable")  # pragma: no cover

    def send_json(self, method: str, path: str, body: Any = None) -> Any:
        """POST/PATCH/PUT/DELETE with a JSON body; returns the parsed answer or None."""
        response = self.request(method, path, json=body)
        return orjson.loads(response.content) if response.content else None

    # --- paging -----------------------------------------------------------------------------
    def fetch_page(self, path: str, params: dict[str, Any], number: int, size: int) -> Page:
        body = self.get_json(path, {**params, "page": number, "pageSize": size})
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise RequestFailedError(f"GET {path} page {number}: the answer is not a Codat page")
        total = body.get("totalResults")
        total = total if isinstance(total, int) else None
        if body.get("pageNumber", number) != number:  # a mock that ignores `page` would loop forever
            return Page(number, [], total)
        return Page(number, body["results"], total)

    def fetch_ahead(self, fetch: Callable[..., T], *args: Any) -> Future[T] | None:
        """Queue ``fetch(*args)`` for the pool; it starts once fewer than ``max_concurrency``
        fetched results wait unread. None when running sequentially."""
        if self.max_concurrency < 2:
            return None
        future: Future[T] = Future()
        with self._slots_lock:
            self._queued.append((future, fetch, args))
        self._launch()
        return future

    def _launch(self) -> None:
        while True:
            with self._slots_lock:
                if self._waiting >= self.max_concurrency or not self._queued:
                    return
                future, fetch, args = self._queued.popleft()
                if not future.set_running_or_notify_cancel():
                    continue  # its reader got there first and fetched it itself
                self._waiting += 1
            self.pool.submit(_complete, future, fetch, args)

    def collect(self, future: Future[T], fetch: Callable[..., T], *args: Any) -> T:
        """The result of a :meth:`fetch_ahead`; fetched here and now if it has not started."""
        if future.cancel():
            return fetch(*args)
        try:
            return future.result()
        finally:
            with self._slots_lock:
                self._waiting -= 1
            self._launch()

    def discard(self, future: Future[Any]) -> None:
        """Forget a :meth:`fetch_ahead` whose result will not be read."""
        with contextlib.suppress(Exception):
            self.collect(future, lambda: None)

    def pages(self, path: str, params: dict[str, Any] | None = None, *, page_size: int = 100,
              ahead: int = 0) -> PageStream:
        """The pages of a Codat list; page 1 starts downloading now if the pool has room."""
        return PageStream(self, path, dict(params or {}), page_size, ahead)


def _complete(future: Future[T], fetch: Callable[..., T], args: tuple[Any, ...]) -> None:
    try:
        future.set_result(fetch(*args))
    except BaseException as exc:
        future.set_exception(exc)


class PageStream:
    """Every page of one Codat list, in order, with up to ``ahead`` pages fetched in advance.

    Pages are fetched in the client's pool only while it has room; a page nobody fetched
    ahead is fetched when it is needed, so a consumer never waits on unscheduled work.
    Paging stops at ``totalResults`` (known from page 1), on an empty page, or on a page
    that is not the one asked for.
    """

    def __init__(self, client: CodatClient, path: str, params: dict[str, Any], page_size: int, ahead: int) -> None:
        self.client = client
        self.path = path
        self.params = params
        self.page_size = page_size
        self.ahead = ahead
        self._futures: dict[int, Future[Page]] = {}
        self._schedule(1)

    def _schedule(self, number: int) -> None:
        if number not in self._futures:
            future = self.client.fetch_ahead(self.client.fetch_page, self.path, self.params, number, self.page_size)
            if future is not None:
                self._futures[number] = future

    def _take(self, number: int) -> Page:
        future = self._futures.pop(number, None)
        if future is None:
            return self.client.fetch_page(self.path, self.params, number, self.page_size)
        return self.client.collect(future, self.client.fetch_page, self.path, self.params, number, self.page_size)

    def peek_first(self) -> Page | None:
        """Page 1 if it has already arrived (without consuming it), else None."""
        future = self._futures.get(1)
        if future is None or not future.done() or future.cancelled() or future.exception() is not None:
            return None
        return future.result()

    def close(self) -> None:
        """Drop pages fetched ahead that will not be read (after an error)."""
        for future in self._futures.values():
            self.client.discard(future)
        self._futures.clear()

    def __iter__(self) -> Iterator[Page]:
        try:
            first = self._take(1)
            yield first
            if first.total is None:
                if len(first.results) == self.page_size:
                    yield from self._until_short_page()
                return
            last = -(-first.total // self.page_size)
            for number in range(2, last + 1):
                for upcoming in range(number + 1, min(last, number + self.ahead) + 1):
                    self._schedule(upcoming)
                page = self._take(number)
                if not page.results:
                    return
                yield page
        finally:
            self.close()

    def _until_short_page(self) -> Iterator[Page]:
        number, size = 1, self.page_size
        page = None
        while page is None or len(page.results) == size:
            number += 1
            page = self._take(number)
            if not page.results:
                return
            yield page


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _schema_dir() -> Path:
    """Schemas ship inside the wheel; in a source checkout they are the top-level ``schemas/``."""
    packaged = Path(__file__).parent / "schemas"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "schemas"


def context_key(context: Context) -> tuple[tuple[str, Any], ...]:
    """A hashable form of a stream context (or of a state partition's context)."""
    return tuple(sorted(context.items()))


class CodatStream(Stream):
    """Base stream: the tap's one CodatClient, its schema file, prefetching, one-line failures."""

    schema = StreamSchema(SchemaDirectory(_schema_dir()))
    # Records arrive typed (orjson numbers) and dates are normalised in post_process:
    # the SDK's recursive conformance would cost ~60% of the sync for nothing.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: Tap, *, name: str | None = None) -> None:
        super().__init__(tap, name=name)
        self._owner = tap
        self._prefetched: dict[tuple[Any, ...], Any] = {}

    @property
    def client(self) -> CodatClient:
        """The tap's one client (a fresh one for every sync)."""
        return self._owner.client  # type: ignore[attr-defined, no-any-return]

    @property
    def readiness(self) -> Readiness:
        return self._owner.readiness  # type: ignore[attr-defined, no-any-return]

    @property
    def page_size(self) -> int:
        return int(self.config.get("page_size", MAX_PAGE_SIZE))

    def open(self, context: Context | None) -> Any:
        """Start reading ``context``: a PageStream (or a Future) the records come from."""
        raise NotImplementedError

    def prefetch(self, context: Context) -> None:
        """Start downloading ``context``'s first page now, to be read when the SDK gets here."""
        if self.selected or self.has_selected_descendents:
            key = context_key(context)
            if key not in self._prefetched:
                self._prefetched[key] = self.open(context)

    def forget_prefetched(self) -> None:
        self._prefetched.clear()

    def opened(self, context: Context) -> Any:
        """What :meth:`prefetch` started for ``context``, else a fresh :meth:`open`."""
        found = self._prefetched.pop(context_key(context), None)
        return found if found is not None else self.open(context)

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
