"""The tap's base stream: the one CodatClient, schema files, prefetching, one-line failures."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from singer_sdk import Stream, Tap
from singer_sdk.exceptions import AbortedSyncFailedException, AbortedSyncPausedException
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context
from singer_sdk.mapper import RemoveRecordTransform
from singer_sdk.schema.source import SchemaDirectory, StreamSchema

from .codat.dates import format_instant
from .codat.http import MAX_PAGE_SIZE, CodatClient, CodatError
from .failures import RunReport
from .normalise import (
    Normaliser,
    UndeclaredMode,
    build_normaliser,
    declare_undeclared,
    without_empty_properties,
)
from .output import OutputError
from .progress import TALLY, Progress, is_quiet, quiet_stream_logger
from .readiness import Readiness
from .request_metrics import RequestMetrics
from .state import IndexedStateManager, IntervalStateWriter

if TYPE_CHECKING:
    from .changes import ChangeFilter


class TapServices(Protocol):
    """What the streams use of their tap (``TapCodatCommerce`` provides each; mypy checks it)."""

    @property
    def config(self) -> Mapping[str, Any]: ...
    @property
    def client(self) -> CodatClient: ...
    @property
    def readiness(self) -> Readiness: ...
    @property
    def changes(self) -> ChangeFilter: ...
    @property
    def request_metrics(self) -> RequestMetrics: ...
    @property
    def report(self) -> RunReport: ...
    @property
    def progress(self) -> Progress: ...
    @property
    def state_writer(self) -> IntervalStateWriter: ...
    company_rank: dict[str, int]


def _schema_dir() -> Path:
    """Schemas ship inside the wheel; in a source checkout they are the top-level ``schemas/``."""
    packaged = Path(__file__).parent / "schemas"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "schemas"


def context_key(context: Context) -> tuple[tuple[str, Any], ...]:
    """A hashable form of a stream context (or of a state partition's context)."""
    return tuple(sorted(context.items()))


def partition_name(context: Context | None) -> str:
    """``company …, connection …`` for a stream context (``""`` for none)."""
    return ", ".join(f"{k.removesuffix('Id')} {v}" for k, v in (context or {}).items())


class CodatStream(Stream):
    """Base stream: the tap's one CodatClient, its schema file, prefetching, one-line failures."""

    declared_schema = StreamSchema(SchemaDirectory(_schema_dir()))
    # Records arrive typed (exact numbers) and are made to match their schema in post_process
    # (dates, numbers, undeclared fields: normalise.py): the SDK's recursive conformance would
    # cost ~60% of the sync for the same result.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: Tap, *, name: str | None = None) -> None:
        self.services = cast("TapServices", tap)
        self._schema_with_extras: dict[str, Any] | None = None
        self._schema_keys: tuple[str, ...] = ()
        # No bookmark passes this instant: when this run started, by the tap's UTC clock.
        self.run_started: str = format_instant(datetime.now(UTC))
        self._warned_future: set[tuple[Any, ...]] = set()
        super().__init__(tap, name=name)
        self._prefetched: dict[tuple[Any, ...], Any] = {}
        self._normaliser: Normaliser | bool | None = False  # False: not built yet
        quiet_stream_logger(self.logger, quiet=not self.config.get("log_metrics"))

    @property
    def state_manager(self) -> IndexedStateManager:
        """The SDK's state manager, with partitions found through an index (see state.py)."""
        if self._state_manager is None:
            manager = IndexedStateManager(
                tap_name=self.tap_name, stream_name=self.name, tap_state=self._tap_state,
                state_partitioning_keys=self.state_partitioning_keys, is_sorted=self.is_sorted,
                check_sorted=self.check_sorted, on_future=self._warn_future)
            manager.ceiling = self.run_started
            self._state_manager = manager
        return self._state_manager  # type: ignore[return-value]

    def get_replication_key_signpost(self, context: Context | None = None) -> str | None:
        """The SDK's signpost (the most a bookmark may say): :attr:`run_started`, for every
        incremental stream whatever its key's type (the SDK sets one only for ``date-time``
        keys, and applies it only to unsorted streams: :class:`IndexedStateManager` applies it)."""
        return self.run_started if self.replication_key else None

    def _warn_future(self, context: Context | None, value: str, ceiling: str) -> None:
        """One warning per connection and data type for records dated after the run's start."""
        key = context_key(context or {})
        if key not in self._warned_future:
            self._warned_future.add(key)
            where = partition_name(context)
            self.logger.warning("%s (%s): a record has %s %s, after this run started (%s by this machine's "
                                "clock); emitted, but the bookmark does not move past the run's start, so the "
                                "next run reads it again (further ones are not logged)", self.name, where,
                                self.replication_key, value, ceiling)

    @property
    def undeclared_fields(self) -> UndeclaredMode:
        """``drop`` (the SDK's rule) or ``keep`` (in the ``_codat_undeclared`` JSON object)."""
        return "keep" if self.config.get("undeclared_fields") == "keep" else "drop"

    @property
    def schema(self) -> dict[str, Any]:
        """The stream's JSON Schema; with ``undeclared_fields: keep`` it also declares the
        untyped ``_codat_undeclared`` object wherever properties are listed."""
        keys = tuple(self.primary_keys or ())
        if self._schema_with_extras is None or self._schema_keys != keys:  # the SDK's schema depends on the keys
            declared = without_empty_properties(self.declared_schema)  # type: ignore[arg-type]
            self._schema_with_extras = (declare_undeclared(declared) if self.undeclared_fields == "keep"
                                        else declared)
            self._schema_keys = keys
        return self._schema_with_extras

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any] | None:
        """Make ``row`` match the schema the SCHEMA message declares (see normalise.py)."""
        if self._normaliser is False:
            # Built on first use: the catalog (what SCHEMA declares) is applied after __init__.
            self._normaliser = build_normaliser(self.effective_schema, self.name, self.undeclared_fields)
        if self._normaliser:
            # UnfitValueError / TooDeepError stop the partition: sync_partition names stream, company, connection
            self._normaliser(row)  # type: ignore[operator]
        return row

    def generate_child_contexts(self, record: dict[str, Any], context: Context | None) -> Iterable[Context | None]:
        """Sync ``record``'s children here, each partition on its own (:meth:`sync_partition`),
        and give the SDK nothing more to do. As the SDK does, a parent dropped by a stream map's
        ``__filter__`` drops its children; unlike the SDK, a parent mapped away entirely
        (``stream_maps: {"companies": null}``) still has its children synced (the SDK would skip
        them, and the run would emit nothing while exiting 0)."""
        if not self.child_streams:
            return ()
        mapper = self.stream_maps[0]
        if not isinstance(mapper, RemoveRecordTransform) and not mapper.get_filter_result(record):
            return ()
        for child in self.child_contexts(record, context):
            if child is None:
                continue
            for stream in self.child_streams:
                if stream.selected or stream.has_selected_descendents:
                    self.sync_partition(stream, child)
        return ()

    def sync_partition(self, stream: Stream, context: Context) -> None:
        """``stream.sync(context)``, where a failure that belongs to the partition (see failures.py)
        is recorded in the run's report instead of stopping the run."""
        company_id = context["companyId"]
        connection_id = context.get("connectionId")
        try:
            stream.sync(context=dict(context))
        except (AbortedSyncFailedException, AbortedSyncPausedException):
            return  # as the SDK's own _sync_children: an interrupted child, the others go on
        except CodatError as exc:
            if exc.whole_run:
                raise
            self.services.report.failed(company_id, connection_id, stream.name, exc)
            if isinstance(stream, CodatStream):
                stream.partition_failed(context)
        else:
            if connection_id is not None:
                self.services.report.read(company_id)

    def partition_failed(self, context: Context) -> None:
        """``context`` failed: what would let a later run skip it is forgotten (see CommerceStream)."""

    def child_contexts(self, record: dict[str, Any], context: Context | None) -> Iterable[Context | None]:
        """The contexts of ``record``'s children (the SDK's ``generate_child_contexts``)."""
        yield from super().generate_child_contexts(record, context)

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """:meth:`read_records`; when ``context`` is read, its HTTP request counts are logged."""
        try:
            yield from self.read_records(context)
        finally:
            self.services.request_metrics.flush(self.name, context)

    def read_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The records of ``context``, as Codat sends them."""
        raise NotImplementedError

    @property
    def client(self) -> CodatClient:
        """The tap's one client."""
        return self.services.client

    @property
    def readiness(self) -> Readiness:
        return self.services.readiness

    def priority(self, context: Context | None) -> tuple[int, ...]:
        """Fetch-ahead priority: the company's place in this sync (earlier companies first)."""
        return (self.services.company_rank.get(context["companyId"], 0),) if context else ()

    @property
    def page_size(self) -> int:
        return int(self.config.get("page_size", MAX_PAGE_SIZE))

    def open(self, context: Context | None) -> Any:
        """Start reading ``context``: a PageStream, KeysetStream (or a Future) the records come from."""
        raise NotImplementedError

    def prefetch(self, context: Context) -> None:
        """Start downloading ``context``'s first page now, to be read when the SDK gets here."""
        if self.selected or self.has_selected_descendents:
            key = context_key(context)
            if key not in self._prefetched:
                self._prefetched[key] = self.open(context)

    def forget_prefetched(self) -> None:
        """Drop what was opened ahead (the client's :meth:`cancel_pending` has ended its work)."""
        self._prefetched.clear()

    def opened(self, context: Context) -> Any:
        """What :meth:`prefetch` started for ``context``, else a fresh :meth:`open`."""
        found = self._prefetched.pop(context_key(context), None)
        return found if found is not None else self.open(context)

    def log(self, message: str, *args: Any, level: int = logging.INFO, **kwargs: Any) -> None:
        # The SDK logs "unhandled error" at ERROR for every stream a failure passes through;
        # a CodatError (or a failed stdout) is reported once, as one line, by the tap or the report.
        if level >= logging.ERROR and isinstance(sys.exc_info()[1], CodatError | OutputError | BrokenPipeError):
            level = logging.DEBUG
        super().log(message, *args, level=level, **kwargs)

    def log_sync_costs(self) -> None:
        """At the end of a run: with the quiet default log, one summary line (records, partitions)."""
        if is_quiet() and (self.selected or self.has_selected_descendents):
            self.logger.info("Synced %s", TALLY.summary(self.name))
        super().log_sync_costs()

    @contextmanager
    def failure_context(self, company_id: str, connection_id: str | None = None) -> Iterator[None]:
        """A CodatError raised inside names stream, company and connection (``where``), once."""
        try:
            yield
        except CodatError as exc:
            if not exc.where:
                exc.where = f"{self.name} (company {company_id}" + (
                    f", connection {connection_id})" if connection_id else ")")
            raise
