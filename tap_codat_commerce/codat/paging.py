"""Codat's paged lists, read as the server answers them, never as the client asked.

Two readers:

- :class:`PageStream`, by page number, for lists that do not move much while read
  (companies, connections, integrations). Pages 2… are fetched ahead in the client's
  pool once page 1 tells ``totalResults`` and the server's own ``pageSize``.
- :class:`KeysetStream`, by ``modifiedDate``, for commerce data that Codat re-stamps
  while it is read. Every request asks for ``modifiedDate>={the last second read}``
  from page 1, so a record that moves to the end shifts nothing past the cursor; the
  records already emitted in that second are skipped: an id met again is skipped only if
  it is the same version (same ``modifiedDate`` and content, by a hash of its body), so a
  record re-stamped within the second being read is emitted again, the newer version last
  (the newest version wins in an upserting target), while an unchanged one is never
  emitted twice. A second holding more records than a page (a Codat re-map stamps
  thousands at once) is read by page number within that second, again until a whole pass
  sees the second stand still.

Whether more pages follow is what the server says: a ``_links.next`` link, or
``totalResults`` beyond the records served so far at the server's ``pageSize``; a
server that caps ``pageSize`` below the request (the spec allows 5000 asked and 2000
answered) is read whole. An empty page always ends a list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import pairwise
from typing import Any

import msgspec

from .dates import canonical, next_second, query_second, second_of
from .http import CodatClient, CodatError, RequestFailedError

logger = logging.getLogger("tap_codat_commerce.codat")
MODIFIED = "modifiedDate"
# A second whose records keep moving while it is read is read again; after this many
# passes the read stops rather than risk passing a record it did not see.
MAX_SECOND_PASSES = 25


class UnstableListError(CodatError):
    """Codat kept changing one second's records faster than they could be read."""


@dataclass(frozen=True)
class Page:
    """One answer of a Codat list: its records and what the server says of what follows."""

    number: int
    results: list[dict[str, Any]]
    total: int | None  # totalResults: the count after the query's filter
    size: int | None  # the pageSize the server used (may be below the one asked for)
    next_link: bool | None  # _links.next present; None when the answer carries no _links

    @property
    def more(self) -> bool:
        """Does the server say records follow this page?"""
        if not self.results:
            return False
        if self.next_link:
            return True
        if self.total is not None:
            size = self.size or len(self.results)
            return self.total > (self.number - 1) * size + len(self.results)
        return self.next_link is None  # neither count nor links: read on until an empty page

    @property
    def last_number(self) -> int | None:
        """The last page number, as page 1's count and page size tell it."""
        size = self.size or len(self.results)
        if self.total is None or not size:
            return None
        return -(-self.total // size)


def fetch_page(client: CodatClient, path: str, params: dict[str, Any], number: int, size: int) -> Page:
    """GET page ``number`` of a Codat list (asking ``size`` records) as a :class:`Page`."""
    body = client.get_json(path, {**params, "page": number, "pageSize": size})
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise RequestFailedError(f"GET {path} page {number}: the answer is not a Codat page")
    total, served = body.get("totalResults"), body.get("pageSize")
    links = body.get("_links")
    next_link = bool(links.get("next")) if isinstance(links, dict) else None
    page = Page(number, body["results"], total if isinstance(total, int) else None,
                served if isinstance(served, int) and served > 0 else None, next_link)
    if body.get("pageNumber", number) != number:  # a server that ignores `page` would loop forever
        return replace(page, results=[], next_link=False)
    return page


class PageStream:
    """Every page of one Codat list by page number, with up to ``ahead`` pages fetched in advance.

    Page 1 starts downloading at once when the client's pool has room; a page nobody
    fetched ahead is fetched when it is needed, so a reader never waits on unscheduled work.
    """

    def __init__(self, client: CodatClient, path: str, params: dict[str, Any] | None = None, *,
                 page_size: int = 100, ahead: int = 0, priority: tuple[Any, ...] = ()) -> None:
        self.client = client
        self.path = path
        self.params = dict(params or {})
        self.page_size = page_size
        self.ahead = ahead
        self.priority = priority
        self._futures: dict[int, Future[Page]] = {}
        self._schedule(1)

    def _fetch(self, number: int) -> Page:
        return fetch_page(self.client, self.path, self.params, number, self.page_size)

    def _schedule(self, number: int) -> None:
        if number not in self._futures:
            future = self.client.fetch_ahead(self._fetch, number, priority=self.priority)
            if future is not None:
                self._futures[number] = future

    def _take(self, number: int) -> Page:
        future = self._futures.pop(number, None)
        return self._fetch(number) if future is None else self.client.collect(future, self._fetch, number)

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
            page = self._take(1)
            yield page
            last = page.last_number
            while page.more:
                number = page.number + 1
                if last is not None:
                    for upcoming in range(number + 1, min(last, number + self.ahead) + 1):
                        self._schedule(upcoming)
                page = self._take(number)
                if page.results:
                    yield page
        finally:
            self.close()


def records_of(pages: PageStream) -> Iterator[dict[str, Any]]:
    """Every record of a :class:`PageStream`, in order."""
    for page in pages:
        yield from page.results


@dataclass(frozen=True)
class Cursor:
    """Where a keyset read stands: the next request, and what was emitted at its edge."""

    lower: str | None  # "YYYY-MM-DDTHH:MM:SS": ask modifiedDate >= this second; None: no query
    page: int = 1
    second: str | None = None  # reading only this second, by page number
    passes: int = 0  # completed passes over ``second``
    pass_total: int | None = None  # the second's count when this pass began
    # id → version (see :func:`version_of`) of the records emitted whose modifiedDate is in the second ``seen_in``
    seen: Mapping[str, int] = field(default_factory=dict)
    seen_in: str | None = None
    full_read: bool = False  # began without a query: records without modifiedDate are read too
    nulls_first: bool = False  # the server lists null modifiedDates first (seen on page 1)
    nulls_pass: bool = False  # the closing pass for null modifiedDates (servers listing them last)
    by_page: bool = False  # the server's order broke: read the rest of this query by page number


@dataclass
class Step:
    """One page read: the records to emit (ordered by modifiedDate) and the next request."""

    records: list[dict[str, Any]]
    next: Cursor | None
    notes: list[str] = field(default_factory=list)


def _key(record: dict[str, Any]) -> str | None:
    value = record.get(MODIFIED)
    return canonical(value) if isinstance(value, str) else None


_encode = msgspec.json.Encoder(decimal_format="string").encode


def version_of(record: dict[str, Any]) -> int:
    """A hash of the whole record as the server sent it: two copies of one id with the same
    version are the same record (one of them need not be emitted)."""
    try:
        return hash(_encode(record))
    except (TypeError, OverflowError, msgspec.EncodeError):  # integers beyond 64 bits, …
        return hash(repr(record))
    except RecursionError:  # nested deeper than an encoder follows: its id and date must do
        return hash((str(record.get("id")), str(record.get(MODIFIED))))


def _versions(records: Iterator[dict[str, Any]]) -> dict[str, int]:
    return {str(record.get("id")): version_of(record) for record in records}


class KeysetStream:
    """Every record of one commerce list, read by ``modifiedDate`` (see the module's text).

    Iterating yields lists of records, each ordered by ``modifiedDate`` (records without
    one first). Every record that exists when the read starts is yielded at least once
    (once, unless Codat re-stamps it while it is read); records whose ``modifiedDate`` is
    null are read only when ``start`` is None (Codat cannot query null). The next request
    leaves as soon as the current page has been parsed and handed over.

    Raises :class:`UnstableListError` when one second's records keep moving through
    ``MAX_SECOND_PASSES`` passes, and the client's errors for failed requests.
    """

    def __init__(self, client: CodatClient, path: str, *, start: datetime | None, page_size: int,
                 priority: tuple[Any, ...] = ()) -> None:
        self.client = client
        self.path = path
        self.page_size = page_size
        self.priority = priority
        lower = None if start is None else query_second(start)[:19]
        self._first = Cursor(lower, full_read=lower is None)
        self._future: Future[Step] | None = self._ahead(self._first)

    def _ahead(self, cursor: Cursor) -> Future[Step] | None:
        return self.client.fetch_ahead(self.step, cursor, priority=self.priority, records=self.page_size,
                                       counted=lambda step: len(step.records))

    def close(self) -> None:
        if self._future is not None:
            self.client.discard(self._future)
            self._future = None

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        cursor: Cursor | None = self._first
        try:
            while cursor is not None:
                future, self._future = self._future, None
                step = self.step(cursor) if future is None else self.client.collect(future, self.step, cursor)
                cursor = step.next
                if cursor is not None:
                    self._future = self._ahead(cursor)
                for note in step.notes:
                    logger.info("%s: %s", self.path, note)
                if step.records:
                    yield step.records
        finally:
            self.close()

    # --- one request -------------------------------------------------------------------------
    def params(self, cursor: Cursor) -> dict[str, Any]:
        if cursor.nulls_pass:
            return {"orderBy": f"-{MODIFIED}"}
        params: dict[str, Any] = {"orderBy": MODIFIED}
        if cursor.second is not None:
            params["query"] = (f"{MODIFIED}>={cursor.second}Z&&"
                               f"{MODIFIED}<{query_second(next_second(cursor.second))}")
        elif cursor.lower is not None:
            params["query"] = f"{MODIFIED}>={cursor.lower}Z"
        return params

    def step(self, cursor: Cursor) -> Step:
        """Fetch the page ``cursor`` asks for; decide the next request from what it holds."""
        page = fetch_page(self.client, self.path, self.params(cursor), cursor.page, self.page_size)
        keyed = [(_key(record), record) for record in page.results]
        if cursor.nulls_pass:
            return self._nulls_step(cursor, page, keyed)
        if cursor.second is not None:
            return self._second_step(cursor, page, keyed)
        return self._keyset_step(cursor, page, keyed)

    def _emit(self, cursor: Cursor, keyed: list[tuple[str | None, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
        """The records of a page to emit: all but those already emitted in this version."""
        seen, seen_in = cursor.seen, cursor.seen_in
        emitted = []
        for key, record in keyed:
            if key is not None and seen and second_of(key) == seen_in:
                known = seen.get(str(record.get("id")))
                if known is not None and known == version_of(record):
                    continue  # emitted already, unchanged
            emitted.append(("" if key is None else key, record))
        return emitted

    def _step(self, emitted: list[tuple[str, dict[str, Any]]], following: Cursor | None, notes: list[str] | None = None,
              ) -> Step:
        emitted.sort(key=lambda pair: pair[0])
        return Step([record for _, record in emitted], following, notes or [])

    def _keyset_step(self, cursor: Cursor, page: Page, keyed: list[tuple[str | None, dict[str, Any]]]) -> Step:
        emitted = self._emit(cursor, keyed)
        keys = [key for key, _ in keyed if key is not None]
        top = second_of(max(keys)) if keys else None
        notes = []
        if cursor.full_read and cursor.page == 1 and cursor.lower is None and keyed:
            cursor = replace(cursor, nulls_first=keyed[0][0] is None)
        if not cursor.by_page and any(earlier > later for earlier, later in pairwise(keys)):
            # A page out of modifiedDate order: its last record says nothing of what follows,
            # so moving the cursor could pass records; read on by page number instead.
            cursor = replace(cursor, by_page=True)
            notes.append(f"page {cursor.page} is not in modifiedDate order; reading on by page number")
        if not page.more:
            if cursor.full_read and not cursor.nulls_first and not (cursor.lower is None and cursor.page == 1):
                return self._step(emitted, Cursor(None, full_read=True, nulls_pass=True), notes)
            return self._step(emitted, None, notes)
        if cursor.by_page or top is None or (cursor.lower is not None and top < cursor.lower):
            # Nothing to move the cursor by (null modifiedDates listed first, or a server that
            # answered records older than asked): read on by page number.
            return self._step(emitted, replace(cursor, page=cursor.page + 1), notes)
        if cursor.lower is not None and top == cursor.lower:
            # The whole page is one second, and more follow: read that second by page number.
            seen = {**cursor.seen, **_versions(r for k, r in keyed if k is not None and second_of(k) == top)}
            return self._step(emitted, replace(cursor, second=top, page=1, passes=0, pass_total=None,
                                               seen=seen, seen_in=top))
        seen = _versions(r for k, r in keyed if k is not None and second_of(k) == top)
        return self._step(emitted, replace(cursor, lower=top, page=1, seen=seen, seen_in=top))

    def _second_step(self, cursor: Cursor, page: Page, keyed: list[tuple[str | None, dict[str, Any]]]) -> Step:
        assert cursor.second is not None
        emitted = self._emit(cursor, keyed)
        seen = {**cursor.seen, **_versions(r for _, r in keyed)}
        pass_total = cursor.pass_total if cursor.pass_total is not None else page.total
        if page.more:
            return self._step(emitted, replace(cursor, page=cursor.page + 1, seen=seen, pass_total=pass_total))
        if page.total is not None and page.total != pass_total:
            # The second changed while it was read (records left it, so later ones moved up):
            # read it again from page 1; what was emitted is skipped.
            if cursor.passes + 1 >= MAX_SECOND_PASSES:
                raise UnstableListError(
                    f"GET {self.path}: the records of {cursor.second}Z kept changing over {MAX_SECOND_PASSES} "
                    "passes; stopping rather than passing records not read (re-run to resume)")
            return self._step(emitted, replace(cursor, page=1, passes=cursor.passes + 1, pass_total=None, seen=seen),
                              [f"{cursor.second}Z changed while read ({pass_total} → {page.total} records); "
                               "reading it again"])
        after = query_second(next_second(cursor.second))[:19]
        return self._step(emitted, replace(cursor, lower=after, second=None, page=1, passes=0, pass_total=None,
                                           seen={}, seen_in=None))

    def _nulls_step(self, cursor: Cursor, page: Page, keyed: list[tuple[str | None, dict[str, Any]]]) -> Step:
        emitted = [("", record) for key, record in keyed if key is None]
        if page.more and keyed and keyed[-1][0] is None:
            return self._step(emitted, replace(cursor, page=cursor.page + 1))
        return self._step(emitted, None)


__all__ = ["Cursor", "KeysetStream", "Page", "PageStream", "Step", "UnstableListError", "fetch_page",
           "records_of"]
