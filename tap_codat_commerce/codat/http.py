"""Codat over HTTP: auth, retries, rate limits, one-line errors and a bounded fetch-ahead pool.

The tap's streams and the setup command both build on :class:`CodatClient`; this module
(like all of :mod:`tap_codat_commerce.codat`) imports nothing from singer-sdk.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
import requests

logger = logging.getLogger("tap_codat_commerce.codat")

T = TypeVar("T")
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
CODAT_CONCURRENCY_PER_COMPANY = 10
MAX_PAGE_SIZE = 5000
# Records fetched ahead and not yet read, at most (a page always may be): 6 pages of 2000
# orders, whatever max_concurrency and page_size are, so memory does not grow with them.
UNREAD_RECORDS = 12_000


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


# A JSON number literal of at most this many characters (with a fraction or an exponent)
# has at most 15 significant digits, so a double holds it exactly and writes it back with
# the same digits (``1.50`` as ``1.5``); longer ones, and any with an exponent, are Decimals.
_EXACT_AS_FLOAT = 15


def _number(text: str, _float: Callable[[str], float] = float, _decimal: type[Decimal] = Decimal) -> float | Decimal:
    """A JSON number literal (with a fraction or exponent) as a value that keeps its digits:
    a float when it holds them exactly (the common, fast case), else a Decimal."""
    if len(text) <= _EXACT_AS_FLOAT and "e" not in text and "E" not in text:
        return _float(text)
    return _decimal(text)


_decoder = msgspec.json.Decoder(float_hook=_number)


class InvalidJSONError(ValueError):
    """A body that no JSON parser accepts (truncated, or not JSON at all)."""


def decode_json(content: bytes | str) -> Any:
    """Parse a JSON body, keeping every number as Codat wrote it.

    Integers of any size become ``int``; numbers with a fraction or exponent become ``float``
    when that holds their digits exactly, else ``Decimal`` (``1234567890123456.78``,
    ``0.3333333333333333333333333333``, ``1e400``). Text that Python's ``json`` accepts but
    the fast parser refuses (a lone surrogate escape such as ``"\\ud83d"``, ``NaN``) is parsed
    by ``json``. Raises :class:`InvalidJSONError` when neither parser accepts it.
    """
    try:
        return _decoder.decode(content)
    except msgspec.DecodeError:
        pass
    try:
        # NaN/Infinity literals become Decimals, so that every float a body gives is finite.
        return json.loads(content, parse_float=_number, parse_constant=Decimal)
    except (ValueError, RecursionError) as exc:
        raise InvalidJSONError(str(exc)) from None


@dataclass(frozen=True)
class RequestTiming:
    """One HTTP attempt, as reported to a :class:`CodatClient` observer.

    ``endpoint`` is the path as a template (``/companies/{companyId}/connections``);
    ``status`` is None when no response came (timeout, dropped connection); ``seconds``
    is wall time from sending to the whole body received.
    """

    method: str
    path: str
    endpoint: str
    status: int | None
    seconds: float


RequestObserver = Callable[[RequestTiming], None]

# Path segments that name a Codat object: the one after them is an id.
_ID_SEGMENTS = {"companies": "{companyId}", "connections": "{connectionId}"}


def endpoint_template(path: str) -> str:
    """``path`` with its ids replaced by names: ``/companies/{companyId}/connections/{connectionId}/…``."""
    parts = path.split("?", 1)[0].split("/")
    return "/".join(_ID_SEGMENTS.get(parts[i - 1], part) if i > 1 else part for i, part in enumerate(parts))


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
        body = decode_json(response.content)
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


class CodatClient:
    """One HTTP client for the Codat API: thread-safe, bounded per company, retrying."""

    def __init__(self, base_url: str, api_key: str, *, retry: RetryPolicy | None = None,
                 timeout: float = 120.0, max_concurrency: int = 1, user_agent: str = "tap-codat-commerce",
                 observer: RequestObserver | None = None) -> None:
        """``observer``, when given, is called with a :class:`RequestTiming` after every HTTP
        attempt (retries included), on whichever thread made it; it must be thread-safe and
        quick, and an exception it raises is logged and ignored."""
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc or self.base_url  # named in connection errors
        self.observer = observer
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.max_concurrency = max(1, max_concurrency)
        self._headers = {"Authorization": auth_header(api_key), "Accept": "application/json",
                         "User-Agent": user_agent}
        self._local = threading.local()
        self._company_slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._running = 0  # fetches in the pool now (at most max_concurrency)
        self._heavy_unread: dict[Future[Any], int] = {}  # record pages started, not yet read → their size
        self._queued: list[_Queued] = []  # a heap: earliest priority first, then first queued
        self._sequence = itertools.count()
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
            queued, self._queued = self._queued, []
            stop, self._stop = self._stop, threading.Event()
            self._running = 0
            self._heavy_unread = {}
            pool, self._pool = self._pool, None
        stop.set()
        for item in queued:
            item.future.cancel()
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
            started = time.perf_counter()
            try:
                with slot or contextlib.nullcontext():
                    response = self.session.request(method, url, params=params, json=json, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                problem = f"{type(exc).__name__.replace('Error', ' error').strip()} reaching {self.host}"
                self._observe(method, path, None, started)
            else:
                status = response.status_code
                self._observe(method, path, status, started)
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

    def _observe(self, method: str, path: str, status: int | None, started: float) -> None:
        if self.observer is None:
            return
        timing = RequestTiming(method, path, endpoint_template(path), status, time.perf_counter() - started)
        try:
            self.observer(timing)
        except Exception:  # a broken observer must not fail a sync
            logger.debug("request observer failed", exc_info=True)

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
                return decode_json(response.content)
            except InvalidJSONError:
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
        return decode_json(response.content) if response.content else None

    # --- fetching ahead -------------------------------------------------------------------
    def fetch_ahead(self, fetch: Callable[..., T], *args: Any, priority: tuple[Any, ...] = (),
                    records: int = 0, counted: Callable[[T], int] | None = None) -> Future[T] | None:
        """Queue ``fetch(*args)`` for the pool (None when running sequentially).

        At most ``max_concurrency`` fetches run at once, lowest ``priority`` first (the tap
        passes a company's place in the sync, so the company being emitted comes first).
        A fetch of up to ``records`` records (a page) starts only while the pages fetched and
        not yet read hold fewer than ``UNREAD_RECORDS`` (one page always may), which bounds
        memory whatever ``max_concurrency`` and the page size are; ``records=0`` (connection
        lists, dataStatus) is not counted. Once fetched, a page counts for what ``counted`` says
        it holds (a page of 20 records does not hold a place for 2000).
        """
        if self.max_concurrency < 2:
            return None
        future: Future[T] = Future()
        with self._slots_lock:
            heapq.heappush(self._queued, _Queued(priority, next(self._sequence), future, fetch, args, records,
                                                 counted))
        self._launch()
        return future

    def _launch(self) -> None:
        started: list[_Queued] = []
        with self._slots_lock:
            held: list[_Queued] = []
            while self._queued and self._running < self.max_concurrency:
                item = heapq.heappop(self._queued)
                unread = sum(self._heavy_unread.values())
                if item.records and unread and unread + item.records > UNREAD_RECORDS:
                    held.append(item)  # no room for another page of records: light work may go first
                    continue
                if not item.future.set_running_or_notify_cancel():
                    continue  # its reader got there first and fetched it itself
                self._running += 1
                if item.records:
                    self._heavy_unread[item.future] = item.records
                started.append(item)
            for item in held:
                heapq.heappush(self._queued, item)
            pool = self.pool if started else None
        for item in started:
            assert pool is not None
            pool.submit(self._complete, item)

    def _complete(self, item: _Queued) -> None:
        try:
            result = item.fetch(*item.args)
            if item.counted is not None:
                with self._slots_lock:
                    if item.future in self._heavy_unread:
                        self._heavy_unread[item.future] = max(1, item.counted(result))
            item.future.set_result(result)
        except BaseException as exc:
            item.future.set_exception(exc)
        finally:
            with self._slots_lock:
                self._running = max(self._running - 1, 0)
            self._launch()

    def collect(self, future: Future[T], fetch: Callable[..., T], *args: Any) -> T:
        """The result of a :meth:`fetch_ahead`; fetched here and now if it has not started."""
        if future.cancel():
            return fetch(*args)
        try:
            return future.result()
        finally:
            with self._slots_lock:
                self._heavy_unread.pop(future, None)
            self._launch()

    def discard(self, future: Future[Any]) -> None:
        """Forget a :meth:`fetch_ahead` whose result will not be read."""
        with contextlib.suppress(Exception):
            self.collect(future, lambda: None)


@dataclass(order=True)
class _Queued:
    priority: tuple[Any, ...]
    sequence: int
    future: Future[Any] = field(compare=False)
    fetch: Callable[..., Any] = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)
    records: int = field(compare=False)
    counted: Callable[[Any], int] | None = field(compare=False)


def is_loopback(url: str) -> bool:
    """True for http://localhost, 127.x.x.x and [::1] (the sandbox): plain http is allowed there."""
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")
