"""Per company, which commerce data types can be read now (from Codat's dataStatus)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from .codat.data_types import DataTypeStatus
from .codat.http import CodatClient, CodatError
from .codat.operations import UnknownCompanyError, data_status


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
        self.gone: set[str] = set()  # companies whose dataStatus answered 404 (deleted after being listed)

    def _load(self, company_id: str) -> dict[str, DataTypeStatus] | None:
        try:
            return {s.data_type: s for s in data_status(self.client, company_id)}
        except UnknownCompanyError:
            self.gone.add(company_id)
            return None
        except CodatError as exc:
            if exc.whole_run:
                raise
            return None  # not known: read, and let the data requests answer (and fail the partition)

    def prefetch(self, company_id: str, priority: tuple[int, ...] = ()) -> None:
        if self.enabled and company_id not in self._pending and company_id not in self._known:
            self._pending[company_id] = self.client.fetch_ahead(self._load, company_id, priority=priority)

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
        self.gone.clear()

    def forget(self, company_id: str) -> None:
        self._known.pop(company_id, None)
        future = self._pending.pop(company_id, None)
        if future is not None:
            self.client.discard(future)

    def status(self, company_id: str, data_type: str) -> DataTypeStatus | None:
        """What dataStatus says of one data type of the company (None: not known)."""
        return (self.statuses(company_id) or {}).get(data_type)

    def skip(self, company_id: str, data_type: str) -> Skipped | None:
        """Why ``data_type`` will not be read for the company (from dataStatus), or None."""
        status = self.status(company_id, data_type)
        if status is None or status.readable:
            return None
        if status.status == "NotSupported":
            return Skipped("not supported by the platform (dataStatus NotSupported)", routine=True)
        return Skipped(f"never synced (dataStatus {status.status}); enable it with tap-codat-commerce-setup "
                       "sync-settings, or refresh it", routine=False)
