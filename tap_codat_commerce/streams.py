"""Streams: companies → connections → the eleven commerce data types (declared as data)."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from singer_sdk.helpers.types import Context

from .client import CodatClient, CodatError, CodatStream, PageStream, RequestFailedError, context_key
from .data_types import CommerceEndpoint, DataTypeStatus, UnknownCompanyError, data_status
from .normalise import build_normaliser, to_datetime
from .onboarding import refresh, wait_for_sync

if TYPE_CHECKING:
    from .tap import TapCodatCommerce


@dataclass(frozen=True)
class Skipped:
    """A data type the tap will not ask for on this connection, and why."""

    reason: str
    routine: bool  # expected (the platform lacks it): logged at INFO, not WARNING


class Readiness:
    """Per company, which commerce data types have synced at least once (Codat's dataStatus).

    Types that never synced are skipped without a 404/409 round trip. dataStatus is per
    company, so a type that synced on any of its connections is read on all of them (a
    connection that lacks it still answers 404/409, which is skipped too).
    """

    def __init__(self, client: CodatClient, *, enabled: bool) -> None:
        self.client = client
        self.enabled = enabled
        self._pending: dict[str, Future[dict[str, DataTypeStatus] | None] | None] = {}
        self._known: dict[str, dict[str, DataTypeStatus] | None] = {}

    def _load(self, company_id: str) -> dict[str, DataTypeStatus] | None:
        try:
            return {s.data_type: s for s in data_status(self.client, company_id)}
        except (RequestFailedError, UnknownCompanyError):
            return None  # not known: read, and let 404/409 answer

    def prefetch(self, company_id: str) -> None:
        if self.enabled and company_id not in self._pending and company_id not in self._known:
            self._pending[company_id] = self.client.fetch_ahead(self._load, company_id)

    def available(self, company_id: str) -> bool:
        """Known already, or arrived: asking now would not wait."""
        future = self._pending.get(company_id)
        return not self.enabled or company_id in self._known or (future is not None and future.done())

    def statuses(self, company_id: str) -> dict[str, DataTypeStatus] | None:
        if not self.enabled:
            return None
        if company_id not in self._known:
            future = self._pending.pop(company_id, None)
            self._known[company_id] = (self._load(company_id) if future is None
                                       else self.client.collect(future, self._load, company_id))
        return self._known[company_id]

    def forget_all(self) -> None:
        """A new sync: what dataStatus said before is stale."""
        for company_id in list(self._pending) + list(self._known):
            self.forget(company_id)

    def forget(self, company_id: str) -> None:
        self._known.pop(company_id, None)
        future = self._pending.pop(company_id, None)
        if future is not None:
            self.client.discard(future)

    def skip(self, company_id: str, data_type: str) -> Skipped | None:
        status = (self.statuses(company_id) or {}).get(data_type)
        if status is None or status.readable:
            return None
        if status.status == "NotSupported":
            return Skipped("not supported by the platform (dataStatus NotSupported)", routine=True)
        return Skipped(f"never synced (dataStatus {status.status}); enable it with tap-codat-commerce-setup "
                       "sync-settings, or refresh it", routine=False)


class RecordError(CodatError):
    """A record the tap cannot emit correctly."""


# Codat answers these on a data endpoint when there is nothing to read: skip, don't fail.
UNAVAILABLE_STATUSES = (404, 409)


def shard_of(company_id: str, shard_count: int) -> int:
    """A company's shard: a hash that is stable across runs, machines and Python versions."""
    return zlib.crc32(company_id.lower().encode()) % shard_count


class CompaniesStream(CodatStream):
    """Every company of the client (or the configured ``company_ids``), in this worker's shard."""

    name = "companies"
    primary_keys = ("id",)

    def open(self, context: Context | None) -> PageStream:
        return self.client.pages("/companies", page_size=self.page_size)

    def _companies(self) -> Iterable[dict[str, Any]]:
        company_ids = self.config.get("company_ids")
        if not company_ids:
            for page in self.open(None):
                yield from page.results
            return
        for company_id in company_ids:
            try:
                yield self.client.get_json(f"/companies/{company_id}")
            except RequestFailedError as exc:
                if exc.status != 404:
                    raise
                self.logger.warning("Company %s not found (%s); skipping it", company_id, exc.codat_message)

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        # The root of the sync: its children run inline, so when this generator ends (or is
        # closed by a failure below it) the whole sync is over.
        self.readiness.forget_all()
        try:
            yield from self._companies_with_lookahead()
        finally:
            self.client.cancel_pending()  # nothing fetched ahead outlives the sync
            for stream in self._descendants():
                stream.forget_prefetched()

    def _companies_with_lookahead(self) -> Iterable[dict[str, Any]]:
        shard_count = int(self.config.get("shard_count", 1))
        shard_index = int(self.config.get("shard_index", 0))
        mine = [c for c in self._companies() if shard_of(c["id"], shard_count) == shard_index]
        connections = next(s for s in self.child_streams if isinstance(s, ConnectionsStream))
        # Look a little ahead only: waiting connection lists hold fetch slots that the
        # current connection's data types need more.
        lookahead = 1 + self.client.max_concurrency // 4
        for position, company in enumerate(mine):
            for upcoming in mine[position:position + lookahead]:
                self.readiness.prefetch(upcoming["id"])
                connections.prefetch({"companyId": upcoming["id"]})
                connections.prefetch_children_if_listed({"companyId": upcoming["id"]})
            yield company

    def _descendants(self) -> list[CodatStream]:
        found: list[CodatStream] = []
        pending = list(self.child_streams)
        while pending:
            stream = pending.pop()
            if isinstance(stream, CodatStream):
                found.append(stream)
            pending.extend(stream.child_streams)
        return found

    def get_child_context(self, record: dict[str, Any], context: Context | None) -> dict[str, Any]:
        return {"companyId": record["id"]}


class ConnectionsStream(CodatStream):
    """Every data connection; only readable Commerce connections fan out to the data types."""

    name = "connections"
    primary_keys = ("companyId", "id")
    parent_stream_type = CompaniesStream

    def open(self, context: Context | None) -> PageStream:
        assert context is not None
        return self.client.pages(f"/companies/{context['companyId']}/connections", page_size=self.page_size)

    def prefetch_children_if_listed(self, context: Context) -> None:
        """If a company's connection list has arrived, queue its data types' first pages too,
        so that companies overlap (Codat allows only 10 requests in flight per company)."""
        if self.config.get("refresh_before_read") or not self.readiness.available(context["companyId"]):
            return
        pages = self._prefetched.get(context_key(context))
        first = pages.peek_first() if isinstance(pages, PageStream) else None
        if first is None or first.total is None or len(first.results) < first.total:
            return
        for record in first.results:
            child = self.get_child_context({**record, "companyId": context["companyId"]}, context)
            if child is not None:
                self.prefetch_children(child)

    def prefetch_children(self, child: Context) -> None:
        for stream in self.child_streams:
            if isinstance(stream, CodatStream):
                stream.prefetch(child)

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        assert context is not None
        company_id = context["companyId"]
        with self.failure_context(company_id):
            if self.config.get("refresh_before_read"):
                self.refresh_and_wait(company_id)
            for page in self.opened(context):
                yield from page.results

    def refresh_and_wait(self, company_id: str) -> None:
        """Opt-in: queue a sync of the company's enabled data types and wait (bounded) for it."""
        timeout = float(self.config.get("refresh_timeout", 900))
        refresh(self.client, company_id)
        result = wait_for_sync(self.client, company_id, timeout=timeout, interval=min(5.0, timeout / 10))
        self.readiness.forget(company_id)
        if result.timed_out:
            self.logger.warning("Company %s: refresh still running after %.0f s (%s); reading what has synced",
                                company_id, timeout, ", ".join(result.pending))
        elif result.failed:
            self.logger.warning("Company %s: refresh failed for %s; reading what has synced", company_id,
                                ", ".join(result.failed))

    def get_child_context(self, record: dict[str, Any], context: Context | None) -> dict[str, Any] | None:
        if record.get("sourceType") != "Commerce" or record.get("status") == "PendingAuth":
            return None  # only linked commerce connections have data to read
        return {"companyId": record["companyId"], "connectionId": record["id"]}

    def generate_child_contexts(self, record: dict[str, Any], context: Context | None) -> Iterable[Context | None]:
        child = self.get_child_context(record, context)
        if child is None:
            if record.get("status") == "PendingAuth":
                self.logger.info("Company %s connection %s is not linked yet (PendingAuth); no data to read",
                                 record["companyId"], record["id"])
            return  # a non-commerce connection has no children, and that is no warning
        self.prefetch_children(child)  # the connection's data types download side by side
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
        self._incoming_bookmarks: dict[tuple[Any, ...], str] | None = None

    @property
    def is_sorted(self) -> bool:
        return self.endpoint.incremental  # the server orders by modifiedDate

    def _path(self, context: Context) -> str:
        return f"/companies/{context['companyId']}/connections/{context['connectionId']}/data/{self.endpoint.path}"

    def open(self, context: Context | None) -> PageStream | Future[Any] | Skipped | None:
        assert context is not None
        skipped = self.readiness.skip(context["companyId"], self.endpoint.data_type)
        if skipped is not None:
            return skipped
        if self.endpoint.single_object:
            return self.client.fetch_ahead(self.client.get_json, self._path(context))
        params: dict[str, Any] = {"orderBy": "modifiedDate"}
        start = self.resume_from(context)
        if start is not None:
            params["query"] = f"modifiedDate>={start.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        return self.client.pages(self._path(context), params, page_size=self.page_size, ahead=1)

    def resume_from(self, context: Context) -> datetime | None:
        """The later of this connection's bookmark and start_date.

        The SDK's get_starting_timestamp() only answers once the context's sync has begun;
        prefetching asks earlier, so this reads the same two inputs itself (read-only: the
        state a run starts from, which is what each context resumes from).
        """
        if self._incoming_bookmarks is None:
            self._incoming_bookmarks = {
                context_key(p["context"]): p["replication_key_value"]
                for p in self.stream_state.get("partitions", [])
                if isinstance(p.get("context"), dict) and p.get("replication_key_value")
            }
        bookmark = self._incoming_bookmarks.get(context_key(context))
        candidates = [to_datetime(v) for v in (bookmark, self.config.get("start_date")) if v]
        return max(candidates) if candidates else None

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        assert context is not None
        company_id, connection_id = context["companyId"], context["connectionId"]
        source = self.opened(context)
        if isinstance(source, Skipped):
            self.logger.log(logging.INFO if source.routine else logging.WARNING, "Skipping %s for company %s "
                            "connection %s: %s", self.name, company_id, connection_id, source.reason)
            return
        with self.failure_context(company_id, connection_id):
            try:
                if isinstance(source, PageStream):
                    for page in source:
                        yield from page.results
                elif isinstance(source, Future):
                    yield self.client.collect(source, self.client.get_json, self._path(context))
                else:
                    yield self.client.get_json(self._path(context))
            except RequestFailedError as exc:
                if exc.status not in UNAVAILABLE_STATUSES:
                    raise
                self.logger.warning("Skipping %s for company %s connection %s: %s (%s)", self.name,
                                    company_id, connection_id, exc.codat_message, exc.status)

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any] | None:
        assert context is not None
        if not self.endpoint.single_object and row.get("id") is None:
            raise RecordError(f"{self.name} (company {context['companyId']}, connection {context['connectionId']}): "
                              "Codat sent a record without an id, which cannot be keyed; stopping rather than "
                              "loading it unkeyed")
        row["companyId"] = context["companyId"]
        row["connectionId"] = context["connectionId"]
        if self._normalise is not None:
            self._normalise(row)
        return row
