"""Codat over HTTP: auth, retries, Codat's limits, one-line errors and a bounded fetch-ahead pool.

Every attempt takes a place in one :class:`~.budget.RequestBudget` (``max_requests_per_minute``
over any 60 s, all threads), runs under a whole-response deadline (:mod:`.deadline`), and is
retried on 408/429/5xx, timeouts and dropped connections. A 429 holds every thread for its
wait; without ``Retry-After`` it is waited out with backoff for up to ``throttle_wait`` seconds.
Each response's ``X-Rate-Limit-Remaining`` is checked against ``quota_reserve``.

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
import sys
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
import urllib3.exceptions

from .budget import RequestBudget
from .deadline import Watchdog, WatchedAdapter
from .errors import (
    AuthError,
    CancelledError,
    CodatError,
    ForbiddenError,
    InvalidJSONError,
    MaintenanceError,
    QuotaExhaustedError,
    QuotaReserveReachedError,
    RequestFailedError,
    TooDeepError,
    UnreachableError,
    company_of,
)

logger = logging.getLogger("tap_codat_commerce.codat")

T = TypeVar("T")
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
CODAT_CONCURRENCY_PER_COMPANY = 10
MAX_PAGE_SIZE = 5000
# Records fetched ahead and not yet read, at most (a page always may be): 6 pages of 2000
# orders, whatever max_concurrency and page_size are, so memory does not grow with them.
UNREAD_RECORDS = 12_000


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
    except RecursionError:
        raise TooDeepError(f"the answer holds JSON nested deeper than the parser allows (about "
                           f"{sys.getrecursionlimit()} levels); stopping rather than loading it cut") from None
    try:
        # NaN/Infinity literals become Decimals, so that every float a body gives is finite.
        return json.loads(content, parse_float=_number, parse_constant=Decimal)
    except RecursionError:
        raise TooDeepError(f"the answer holds JSON nested deeper than the parser allows (about "
                           f"{sys.getrecursionlimit()} levels); stopping rather than loading it cut") from None
    except ValueError as exc:
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
    """Codat's published policy: exponential backoff from 0.5 s, factor 1.5, capped at 60 s.

    ``max_tries`` bounds attempts for 408/5xx, timeouts, dropped connections and bodies that
    are not JSON. 429s do not count toward it: they are waited out (``Retry-After``, else
    backoff from 1 s doubling to 60 s) for up to ``throttle_wait`` seconds in all, as Codat's
    own SDKs do for up to an hour. A ``Retry-After`` beyond ``max_retry_after`` seconds is
    not slept through.
    """

    max_tries: int = 8
    initial_wait: float = 0.5
    factor: float = 1.5
    max_wait: float = 60.0
    max_retry_after: float = 300.0
    throttle_wait: float = 900.0

    def backoff(self, attempt: int) -> float:
        base = min(self.initial_wait * self.factor ** (attempt - 1), self.max_wait)
        return base * random.uniform(0.8, 1.2)

    def throttle_backoff(self, throttles: int) -> float:
        """The wait after the ``throttles``-th 429 in a row that named no Retry-After (1 s, 2 s, … 60 s)."""
        return min(2.0 ** (throttles - 1), self.max_wait) * random.uniform(0.9, 1.1)


def _connect_failed(exc: BaseException) -> bool:
    """Did ``exc`` come from opening the connection (refused, DNS, connect timeout)?"""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError |
                      requests.exceptions.ConnectTimeout):
            return True
        reason = getattr(seen, "reason", None)
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = reason if isinstance(reason, BaseException) else inner or seen.__context__
    return False


def _remaining(response: requests.Response) -> int | None:
    try:
        return int(response.headers.get("X-Rate-Limit-Remaining", ""))
    except ValueError:
        return None


class CodatClient:
    """One HTTP client for the Codat API: thread-safe, bounded per company, paced, retrying."""

    def __init__(self, base_url: str, api_key: str, *, retry: RetryPolicy | None = None,
                 timeout: float = 120.0, max_concurrency: int = 1, user_agent: str = "tap-codat-commerce",
                 observer: RequestObserver | None = None, requests_per_minute: int = 0,
                 quota_reserve: int = 0) -> None:
        """``timeout`` bounds each whole response (connect, headers and body) in seconds.
        ``requests_per_minute`` (0: no limit) caps every attempt over any 60 s, all threads;
        ``quota_reserve`` (0: off) stops the run (QuotaReserveReachedError) once a response says
        fewer requests than that are left of Codat's daily quota. ``observer``, when given, is
        called with a :class:`RequestTiming` after every HTTP attempt (retries included), on
        whichever thread made it; it must be thread-safe and quick, and an exception it raises
        is logged and ignored."""
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc or self.base_url  # named in connection errors
        self.observer = observer
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.max_concurrency = max(1, max_concurrency)
        self.budget = RequestBudget(requests_per_minute)
        self.quota_reserve = max(0, quota_reserve)
        self.quota_remaining: int | None = None  # X-Rate-Limit-Remaining of the latest response
        self._watchdog = Watchdog()
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
            adapter = WatchedAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(self._headers)
            self._local.session = session
        return session

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="codat")
        return self._pool

    def cancel_pending(self) -> None:
        """End everything started so far (the sync that wanted it is over, or failed, or the
        run is stopping): queued fetches are dropped, waits end, and requests in flight are cut
        off at once. The client stays usable."""
        with self._slots_lock:
            queued, self._queued = self._queued, []
            stop, self._stop = self._stop, threading.Event()
            self._running = 0
            self._heavy_unread = {}
            pool, self._pool = self._pool, None
        stop.set()
        self._watchdog.abort()
        for item in queued:
            item.future.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _slot(self, path: str) -> threading.BoundedSemaphore | None:
        company_id = company_of(path)
        if company_id is None:
            return None
        with self._slots_lock:
            slot = self._company_slots.get(company_id)
            if slot is None:
                slot = self._company_slots[company_id] = threading.BoundedSemaphore(CODAT_CONCURRENCY_PER_COMPANY)
            return slot

    # --- requests ---------------------------------------------------------------------------
    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None) -> requests.Response:
        """Send one request (see the module's text for pacing, deadlines and retries).

        Raises AuthError (401), ForbiddenError (403), QuotaExhaustedError (the client's daily
        quota: a 429 whose Retry-After is beyond ``max_retry_after``), MaintenanceError (the same
        on a 503), QuotaReserveReachedError, UnreachableError (no connection could be opened,
        after retries), CancelledError (the run is stopping), and RequestFailedError for any
        other 4xx, once the retries are spent, or once ``throttle_wait`` is used up.
        """
        url = self.base_url + path
        what = f"{method} {path}"
        slot = self._slot(path)
        stop = self._stop
        tries = 0  # attempts that count toward max_tries (429s do not)
        throttles, throttled_since = 0, 0.0
        while True:
            wait: float | None = None
            status: int | None = None
            try:
                with slot or contextlib.nullcontext():
                    place = self.budget.acquire(stop)  # in the company's slot: sent as soon as counted
                    started = time.perf_counter()
                    try:
                        with self._watchdog.watch(self.timeout) as watch:
                            response = self.session.request(method, url, params=params, json=json,
                                                            timeout=self.timeout)
                    finally:
                        self.budget.release(place)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                self._observe(method, path, None, started)
                if stop.is_set():
                    raise CancelledError(f"{what}: cancelled, the run is stopping") from None
                if watch.expired:
                    cause, problem = "timeout", f"no whole response within {self.timeout:g} s from {self.host}"
                elif _connect_failed(exc):
                    cause, problem = "unreachable", f"connection error reaching {self.host} (cannot connect)"
                elif isinstance(exc, requests.Timeout):
                    cause, problem = "timeout", f"no answer within {self.timeout:g} s from {self.host}"
                else:
                    cause, problem = "dropped connection", f"connection dropped by {self.host}"
            else:
                status = response.status_code
                self._observe(method, path, status, started)
                if status < 400:
                    self._check_reserve(response)
                    return response
                message = codat_message(response)
                if status == 401:
                    raise AuthError(f"Codat refused the API key (401 {message}) on {what}; check api_key") from None
                if status == 403:
                    raise ForbiddenError(f"{what}: 403 {message} (the key may not read this)", status, message,
                                         path=path)
                if status not in RETRY_STATUSES:
                    raise RequestFailedError(f"{what} failed: {status} {message}", status, message, path=path)
                wait = parse_retry_after(response.headers.get("Retry-After"))
                if status == 429:
                    throttles += 1
                    throttled_since = throttled_since or time.monotonic()
                    wait = self._throttle_wait(what, path, response, wait, throttles=throttles, since=throttled_since)
                    self.budget.hold(wait)
                    logger.warning("%s: 429 %s; waiting %.1f s (all requests)", what, message, wait)
                    self._pause(wait, stop)
                    continue
                if status == 503 and wait is not None and wait > self.retry.max_retry_after:
                    raise MaintenanceError(f"Codat is unavailable (503 {message}) on {what}: Retry-After is "
                                           f"{wait:.0f} s, over max_retry_after={self.retry.max_retry_after:.0f} s "
                                           "(maintenance?); stopping instead of sleeping")
                cause, problem = ("timeout" if status == 408 else "5xx"), f"{status} {message}"
            tries += 1
            if tries >= self.retry.max_tries:
                if cause == "unreachable":
                    raise UnreachableError(f"{what} failed after {tries} tries: {problem}", path=path)
                raise RequestFailedError(f"{what} failed after {tries} tries: {problem}", status, path=path,
                                         cause=cause)
            delay = wait if wait is not None and wait <= self.retry.max_retry_after else self.retry.backoff(tries)
            logger.warning("%s: %s; retry %d/%d in %.1f s", what, problem, tries, self.retry.max_tries - 1, delay)
            self._pause(delay, stop)

    def _throttle_wait(self, what: str, path: str, response: requests.Response, retry_after: float | None, *,
                       throttles: int, since: float) -> float:
        """How long to wait after a 429, or the error that ends the request."""
        if retry_after is not None and retry_after > self.retry.max_retry_after:
            remaining = _remaining(response)
            if company_of(path) is not None and remaining is not None and remaining > 0:
                # The client's quota has room: this company's own daily budget is spent.
                raise RequestFailedError(
                    f"{what}: 429, this company's daily request budget is spent (Retry-After {retry_after:.0f} s)",
                    429, codat_message(response), path=path, cause="company quota")
            raise QuotaExhaustedError(
                f"Codat rate limit on {what}: Retry-After is {retry_after:.0f} s, over max_retry_after="
                f"{self.retry.max_retry_after:.0f} s (the client's daily quota is spent); stopping instead of sleeping")
        wait = retry_after if retry_after is not None else self.retry.throttle_backoff(throttles)
        if time.monotonic() - since + wait > self.retry.throttle_wait:
            raise RequestFailedError(
                f"{what}: still throttled (429) after {time.monotonic() - since:.0f} s, over throttle_wait="
                f"{self.retry.throttle_wait:.0f} s", 429, codat_message(response), path=path, cause="429")
        return wait

    def _check_reserve(self, response: requests.Response) -> None:
        remaining = _remaining(response)
        if remaining is None:
            return
        self.quota_remaining = remaining
        if remaining < self.quota_reserve:
            reset = response.headers.get("X-Rate-Limit-Reset") or "midnight UTC"
            raise QuotaReserveReachedError(
                f"Codat's daily quota has {remaining:,} requests left, below quota_reserve={self.quota_reserve:,}; "
                f"stopping so that the client's other applications keep them (the quota resets {reset})")

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
            raise CancelledError("cancelled: the sync that asked for it has ended")

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET and parse JSON; a truncated or malformed body is retried like a dropped connection."""
        for attempt in range(1, self.retry.max_tries + 1):
            stop = self._stop
            response = self.request("GET", path, params=params)
            try:
                return decode_json(response.content)
            except InvalidJSONError:
                if attempt == self.retry.max_tries:
                    raise RequestFailedError(f"GET {path} failed after {attempt} tries: the body is not valid JSON",
                                             path=path, cause="invalid JSON") from None
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


__all__ = ["MAX_PAGE_SIZE", "AuthError", "CancelledError", "CodatClient", "CodatError", "ForbiddenError",
           "InvalidJSONError", "MaintenanceError", "QuotaExhaustedError", "QuotaReserveReachedError",
           "RequestFailedError", "RequestTiming", "RetryPolicy", "TooDeepError", "UnreachableError", "auth_header",
           "decode_json",
           "endpoint_template", "is_loopback", "parse_retry_after"]
