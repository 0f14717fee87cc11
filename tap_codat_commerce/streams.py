"""Streams: companies → connections → the eleven commerce data types (declared as data)."""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterable
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from singer_sdk import Tap
from singer_sdk.helpers.types import Context
from singer_sdk.singerlib.catalog import REPLICATION_INCREMENTAL

from .changes import MARKER, ChangeFilter
from .client import CodatStream, context_key
from .codat.data_types import CommerceEndpoint
from .codat.dates import format_instant, parse_instant
from .codat.http import CodatError, RequestFailedError
from .codat.operations import refresh, wait_for_sync, which_is_gone
from .codat.paging import KeysetStream, PageStream, records_of
from .failures import RecordError
from .output import OutputError
from .progress import TALLY
from .readiness import Skipped

# Codat answers these on a data endpoint when there is nothing to read: skip, don't fail.
UNAVAILABLE_STATUSES = (404, 409)
# A list of companies on more pages than one is read again until two passes agree, at most this often.
MAX_LIST_PASSES = 5
# Up to this many companies, each one's start is logged; above it, a progress line every progress_interval.
LOG_EACH_COMPANY_UP_TO = 20


def shard_of(company_id: str, shard_count: int) -> int:
    """A company's shard: a hash that is stable across runs, machines and Python versions."""
    return zlib.crc32(company_id.lower().encode()) % shard_count


class NoCompanyError(CodatError):
    """``company_ids`` names no company that exists: the run would read nothing."""

    cause = "no company"


class CompaniesStream(CodatStream):
    """Every company of the client (or the configured ``company_ids``), in this worker's shard."""

    name = "companies"
    primary_keys = ("id",)

    def open(self, context: Context | None) -> PageStream:
        return PageStream(self.client, "/companies", page_size=self.page_size)

    def _companies(self) -> Iterable[dict[str, Any]]:
        company_ids = self.config.get("company_ids")
        if not company_ids:
            yield from self._listed_companies()
            return
        found = 0
        for company_id in company_ids:
            try:
                company = self.client.get_json(f"/companies/{company_id}")
            except RequestFailedError as exc:
                if exc.whole_run:
                    raise
                if exc.status == 404:
                    self.logger.warning("Company %s not found (%s); skipping it", company_id, exc.codat_message)
                else:
                    self.services.report.failed(company_id, None, self.name, exc)
                continue
            found += 1
            yield company
        if not found and not self.services.report.failures:
            raise NoCompanyError(f"company_ids: none of the {len(company_ids)} companies exists for this API key "
                                 "(nothing to read)")

    def _listed_companies(self) -> list[dict[str, Any]]:
        """Every company of the client. A list on one page is one answer; a longer one can shift
        under page numbers while read (a company deleted after page 1 moves the next one up,
        unseen), so it is read again until two passes list the same ids; the union is returned,
        first-seen order (a company deleted meanwhile is then skipped by its 404)."""
        companies: dict[str, dict[str, Any]] = {}
        previous: set[str] | None = None
        for _ in range(MAX_LIST_PASSES):
            pages = list(self.open(None))
            listed = [record for page in pages for record in page.results]
            for record in listed:
                companies.setdefault(record["id"], record)
            ids = {record["id"] for record in listed}
            if len(pages) <= 1 or ids == previous:
                break
            previous = ids
        return list(companies.values())

    def read_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        # The root of the sync: its children run inline, so when this generator ends (or is
        # closed by a failure below it) the whole sync is over.
        self.readiness.forget_all()
        writer = self.services.state_writer
        writer.restart()
        TALLY.reset()
        self.services.report.reset()
        try:
            yield from self._companies_with_lookahead()
        finally:
            self.client.cancel_pending()  # nothing fetched ahead outlives the sync
            for stream in self._descendants():
                stream.forget_prefetched()
            with contextlib.suppress(OutputError):  # stdout already failed: that error is the one reported
                writer.flush(self.tap_state)  # what every record emitted so far has earned
            writer.every_call = True  # and the SDK's final STATE after this
            self.services.request_metrics.close()

    def _companies_with_lookahead(self) -> Iterable[dict[str, Any]]:
        shard_count = int(self.config.get("shard_count", 1))
        shard_index = int(self.config.get("shard_index", 0))
        only = self.services.changes.companies
        mine = [c for c in self._companies() if shard_of(c["id"], shard_count) == shard_index
                and (only is None or c["id"] in only)]
        ranks = self.services.company_rank
        ranks.clear()
        ranks.update((company["id"], position) for position, company in enumerate(mine))
        connections = next(s for s in self.child_streams if isinstance(s, ConnectionsStream))
        report, progress = self.services.report, self.services.progress
        progress.start(len(mine))
        each = logging.INFO if len(mine) <= LOG_EACH_COMPANY_UP_TO else logging.DEBUG
        # The next companies' dataStatus, connection lists and first data pages are fetched
        # while this one is emitted; earlier companies' fetches always go first (priority),
        # and the client bounds the records fetched and not yet read.
        lookahead = 2 * self.client.max_concurrency
        for position, company in enumerate(mine):
            self.logger.log(each, "Company %d/%d: %s (%s)", position + 1, len(mine), company.get("name"),
                            company["id"])
            for upcoming in mine[position:position + lookahead]:
                self.readiness.prefetch(upcoming["id"], (ranks[upcoming["id"]],))
                connections.prefetch({"companyId": upcoming["id"]})
                connections.prefetch_children_if_listed({"companyId": upcoming["id"]})
            yield company  # the SDK syncs its connections and their data types before asking for the next
            report.company_finished(company["id"])
            progress.company_done(position + 1, self.client)

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
        return PageStream(self.client, f"/companies/{context['companyId']}/connections", page_size=self.page_size,
                          priority=self.priority(context))

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
        """Open the connection's data types now, once dataStatus has said which to read."""
        if not self.readiness.available(child["companyId"]):
            return  # not known yet: the data types open (after dataStatus) when they are read
        for stream in self.child_streams:
            if isinstance(stream, CodatStream):
                stream.prefetch(child)

    def read_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        assert context is not None
        company_id = context["companyId"]
        with self.failure_context(company_id):
            if self.config.get("refresh_before_read"):
                self.refresh_and_wait(company_id)
            try:
                yield from records_of(self.opened(context))
            except RequestFailedError as exc:
                if exc.status != 404:
                    raise
                self.services.report.gone(company_id, during="listing its connections")

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

    def child_contexts(self, record: dict[str, Any], context: Context | None) -> Iterable[Context | None]:
        child = self.get_child_context(record, context)
        if child is not None and self.services.report.is_gone(child["companyId"], child["connectionId"]):
            return
        if child is None:
            if record.get("status") == "PendingAuth":
                self.logger.info("Company %s connection %s is not linked yet (PendingAuth); no data to read",
                                 record["companyId"], record["id"])
            return  # a non-commerce connection has no children, and that is no warning
        self.prefetch_children(child)  # the connection's data types download side by side
        yield child


class CommerceStream(CodatStream):
    """One commerce data type for one connection at a time (built from a CommerceEndpoint).

    Incremental data types are read by :class:`KeysetStream` and emitted in ``modifiedDate``
    order, so the SDK's bookmark is always the latest instant emitted and resumable
    mid-connection. A server that breaks that order is absorbed (``check_sorted`` off):
    its records are emitted and the bookmark only ever names what was emitted.
    """

    parent_stream_type = ConnectionsStream

    def __init__(self, tap: Tap, endpoint: CommerceEndpoint) -> None:
        self.endpoint = endpoint
        super().__init__(tap, name=endpoint.name)
        self.primary_keys = ("companyId", "connectionId") if endpoint.single_object else (
            "companyId", "connectionId", "id")
        if endpoint.incremental:
            self.replication_key = "modifiedDate"
        self._incoming: dict[tuple[Any, ...], dict[str, Any]] | None = None
        self._warned_keyless: set[tuple[Any, ...]] = set()

    @property
    def is_sorted(self) -> bool:
        return self.endpoint.incremental  # emitted in modifiedDate order (see KeysetStream)

    @property
    def check_sorted(self) -> bool:
        return False  # a record Codat sends out of order is emitted, not a failed sync

    def _path(self, context: Context) -> str:
        return f"/companies/{context['companyId']}/connections/{context['connectionId']}/data/{self.endpoint.path}"

    def open(self, context: Context | None) -> KeysetStream | Future[Any] | Skipped | None:
        assert context is not None
        if self.services.report.is_gone(context["companyId"], context["connectionId"]):
            return Skipped("deleted during the run", routine=True)
        skipped = self.readiness.skip(context["companyId"], self.endpoint.data_type) or self.unchanged(context)
        if skipped is not None:
            return skipped
        if self.endpoint.single_object:
            return self.client.fetch_ahead(self.client.get_json, self._path(context),
                                           priority=self.priority(context))
        return KeysetStream(self.client, self._path(context), start=self.resume_from(context),
                            page_size=self.page_size, priority=self.priority(context))

    def resume_from(self, context: Context) -> datetime | None:
        """Where ``context`` starts, by the SDK's own rules (see ``write_starting_replication_value``):
        nothing for FULL_TABLE (forced by the catalog or not); else the partition's bookmark
        when it names this stream's replication key, and ``start_date`` when later or alone.

        Read here, from the state the run started with, because prefetching asks before the
        SDK reaches the context.
        """
        if self.replication_method != REPLICATION_INCREMENTAL or not self.replication_key:
            return None
        bookmark = parse_instant(str(self._bookmark(context) or ""))
        if bookmark is not None and format_instant(bookmark) > self.run_started:
            # Left by a version that let a record from the future move it: it would hide every later record.
            self.logger.warning("%s (company %s, connection %s): the bookmark %s is after this run's start; read "
                                "as if there were none", self.name, context["companyId"], context["connectionId"],
                                format_instant(bookmark))
            bookmark = None
        known = [c for c in (bookmark, parse_instant(str(self.config.get("start_date") or ""))) if c is not None]
        return max(known) if known else None

    def _incoming_partition(self, context: Context) -> dict[str, Any]:
        """``context``'s partition in the state this run started from ({} if none)."""
        if self._incoming is None:
            self._incoming = {context_key(p["context"]): p for p in self.stream_state.get("partitions", [])
                              if isinstance(p, dict) and isinstance(p.get("context"), dict)}
        return self._incoming.get(context_key(context)) or {}

    def _bookmark(self, context: Context) -> Any:
        """The partition's bookmark, if it names this stream's replication key (the SDK's rule)."""
        partition = self._incoming_partition(context)
        return partition.get("replication_key_value") if partition.get("replication_key") == self.replication_key \
            else None

    def unchanged(self, context: Context) -> Skipped | None:
        """Skip without a request what Codat has not re-synced since the last read (see changes.py)."""
        changes = self.services.changes
        company_id = context["companyId"]
        status = self.readiness.status(company_id, self.endpoint.data_type)
        has_bookmark = self.endpoint.single_object or (
            self.replication_method == REPLICATION_INCREMENTAL and bool(self._bookmark(context)))
        reason = changes.reason_to_skip((company_id, context["connectionId"], self.endpoint.data_type), status,
                                        self._incoming_partition(context), has_bookmark=has_bookmark)
        return None if reason is None else Skipped(reason, routine=True)

    def read_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        assert context is not None
        company_id, connection_id = context["companyId"], context["connectionId"]
        with self.failure_context(company_id, connection_id):
            source = self.opened(context)
            if company_id in self.readiness.gone:
                self.services.report.gone(company_id, during="reading its dataStatus")
                return
            if isinstance(source, Skipped):
                self.logger.log(logging.INFO if source.routine else logging.WARNING, "Skipping %s for company %s "
                                "connection %s: %s", self.name, company_id, connection_id, source.reason)
                return
            try:
                if isinstance(source, KeysetStream):
                    for records in source:
                        yield from records
                elif isinstance(source, Future):
                    yield self.client.collect(source, self.client.get_json, self._path(context))
                else:
                    yield self.client.get_json(self._path(context))
                ChangeFilter.mark_read(self.get_context_state(context),
                                       self.readiness.status(company_id, self.endpoint.data_type))
            except RequestFailedError as exc:
                if exc.status not in UNAVAILABLE_STATUSES:
                    raise
                gone = which_is_gone(self.client, company_id, connection_id) if exc.status == 404 else None
                if gone is not None:
                    self.services.report.gone(company_id, connection_id if gone == "connection" else None,
                                              during=f"reading {self.name}")
                    return
                self.logger.warning("Skipping %s for company %s connection %s: %s (%s)", self.name,
                                    company_id, connection_id, exc.codat_message, exc.status)

    def partition_failed(self, context: Context) -> None:
        """The dataStatus marker goes, so that ``skip_unchanged`` cannot skip the next read."""
        self.get_context_state(context).pop(MARKER, None)

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any] | None:
        assert context is not None
        if row.__class__ is not dict:
            raise RecordError(f"Codat sent a record that is {type(row).__name__}, not a JSON object; stopping "
                              "rather than loading it")
        if not self.endpoint.single_object and row.get("id") is None:
            raise RecordError("Codat sent a record without an id, which cannot be keyed; stopping rather than "
                              "loading it unkeyed")
        if self.replication_key and self.replication_key not in row:
            self._warn_keyless(context)
            row[self.replication_key] = None
        row["companyId"] = context["companyId"]
        row["connectionId"] = context["connectionId"]
        return super().post_process(row, context)

    def _warn_keyless(self, context: Context) -> None:
        key = context_key(context)
        if key not in self._warned_keyless:
            self._warned_keyless.add(key)
            self.logger.warning("%s (company %s, connection %s): Codat sent records without %s; emitted with it "
                                "null (they do not move the bookmark; further ones are not logged)", self.name,
                                context["companyId"], context["connectionId"], self.replication_key)
