"""Codat operations the tap and the setup command share: dataStatus, refresh, wait for a sync."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .data_types import COMMERCE_DATA_TYPES, DATA_TYPE_ALIASES, DataTypeStatus
from .http import CodatClient, CodatError, RequestFailedError
from .paging import PageStream, records_of


class UnknownCompanyError(CodatError):
    """dataStatus answered 404: no such company."""


class UnknownDataTypeError(CodatError):
    """A data type name that is none of the eleven commerce ones."""


class EventsFileError(CodatError):
    """An events file the tap cannot read."""


Triple = tuple[str, str, str]  # (companyId, connectionId, Codat dataType)


def changed_triples(lines: list[str], where: str) -> set[Triple]:
    """The (company, connection, data type) triples that Codat's ``read.completed`` events say
    changed: ``recordsModified`` true, or any completed type of a ``read.completed.initial``
    (the first read after a link). One event (a webhook body) per line; blank lines and other
    event types are ignored. Raises EventsFileError naming ``where`` and the line."""
    triples: set[Triple] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            kind = str(event.get("eventType", ""))
            payload = event["payload"]
            company_id = str(payload["referenceCompany"]["id"])
            data_types = payload.get("dataTypes")
            data_types = [] if data_types is None else data_types
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise EventsFileError(f"{where} line {number}: not a Codat read.completed event (one JSON object "
                                  "a line, as the webhook posts it)") from None
        if not isinstance(data_types, list) or not all(isinstance(entry, dict) for entry in data_types):
            raise EventsFileError(f"{where} line {number}: payload.dataTypes must be a list of objects "
                                  "({\"dataType\": …, \"connectionId\": …}), as the webhook posts it")
        if not kind.startswith("read.completed"):
            continue
        for entry in data_types:
            if entry.get("recordsModified") or (kind == "read.completed.initial" and entry.get("status") == "Complete"):
                triples.add((company_id, str(entry.get("connectionId")), str(entry.get("dataType"))))
    return triples


class SyncInProgressError(CodatError):
    """Codat refused to queue a data type because its previous sync is still running (409)."""


# A connection's states (Codat's DataConnectionStatus) and what each means for syncing.
CONNECTION_STATES = {
    "PendingAuth": "the business has not opened the link yet",
    "Linked": "authorised: syncs run",
    "Unlinked": "unlinked: old data readable, no new syncs",
    "Deauthorized": "access withdrawn: old data readable, no new syncs until the business links again",
}


def commerce_connections(client: CodatClient, company_id: str) -> list[dict[str, Any]]:
    """The company's commerce connections as Codat lists them (``status``, ``linkUrl``, ``platformName``…).
    Raises UnknownCompanyError on 404."""
    try:
        connections = list(records_of(PageStream(client, f"/companies/{company_id}/connections", page_size=500)))
    except RequestFailedError as exc:
        if exc.status == 404:
            raise UnknownCompanyError(f"no company with id {company_id}") from None
        raise
    return [c for c in connections if c.get("sourceType") == "Commerce"]


def which_is_gone(client: CodatClient, company_id: str, connection_id: str) -> str | None:
    """After a 404 on a connection's data: ``"company"`` or ``"connection"`` when that one no longer
    exists (deleted after it was listed), None when both do (the 404 was about the data) or the
    check itself failed."""
    for what, path in (("connection", f"/companies/{company_id}/connections/{connection_id}"),
                       ("company", f"/companies/{company_id}")):
        try:
            client.get_json(path)
        except RequestFailedError as exc:
            if exc.status != 404:
                return None
            if what == "connection":
                continue  # is the company gone too?
            return "company"
        else:
            return None if what == "connection" else "connection"
    return None


def data_status(client: CodatClient, company_id: str) -> list[DataTypeStatus]:
    """Per commerce data type (in ``COMMERCE_DATA_TYPES`` order): status, last successful
    sync, and whether it can be read now. Raises UnknownCompanyError on 404."""
    try:
        body = client.get_json(f"/companies/{company_id}/dataStatus")
    except RequestFailedError as exc:
        if exc.status == 404:
            raise UnknownCompanyError(f"no company with id {company_id}") from None
        raise
    statuses = []
    for data_type in COMMERCE_DATA_TYPES:
        entry = body.get(data_type) or {}
        last = entry.get("lastSuccessfulSync")
        status = entry.get("currentStatus") or "NeverSynced"
        statuses.append(DataTypeStatus(data_type, status, last, bool(last) or status == "Complete",
                                       entry.get("latestSuccessfulSyncId")))
    return statuses


def refresh(client: CodatClient, company_id: str, data_type: str | None = None,
            connection_id: str | None = None) -> list[str]:
    """Queue a sync of one data type (any alias: ``orders``, ``commerce-orders``) or of all
    enabled ones; returns what was queued. Raises UnknownDataTypeError for other names."""
    if data_type is None:
        client.request("POST", f"/companies/{company_id}/data/all")
        return ["all enabled data types"]
    resolved = DATA_TYPE_ALIASES.get(data_type.lower())
    if resolved is None:
        raise UnknownDataTypeError(
            f"unknown commerce data type {data_type!r}; one of: {', '.join(COMMERCE_DATA_TYPES)}")
    params = {"connectionId": connection_id} if connection_id else None
    try:
        client.request("POST", f"/companies/{company_id}/data/queue/{resolved}", params=params)
    except RequestFailedError as exc:
        if exc.status == 409:
            raise SyncInProgressError(f"{resolved} is still syncing for company {company_id} ({exc.codat_message})",
                                      ) from None
        raise
    return [resolved]


def enabled_data_types(client: CodatClient, company_id: str) -> set[str]:
    """The commerce data types the company's sync settings fetch."""
    settings = client.get_json(f"/companies/{company_id}/syncSettings").get("settings") or []
    return {s["dataType"] for s in settings if s.get("fetchOnFirstLink") and s.get("dataType") in COMMERCE_DATA_TYPES}


@dataclass
class WaitResult:
    """How :func:`wait_for_sync` ended: the last statuses, and ``waited_s`` seconds."""

    statuses: list[DataTypeStatus]
    timed_out: bool
    waited_s: float
    watched: list[str] = field(default_factory=list)
    never_queued: bool = False  # gave up early: no watched data type had ever been queued

    @property
    def not_queued(self) -> list[str]:
        """Watched data types Codat has no sync of at all (not enabled, or enabled after the link)."""
        return [s.data_type for s in self.statuses if s.status == "NeverSynced" and s.data_type in self.watched]

    @property
    def failed(self) -> list[str]:
        return [s.data_type for s in self.statuses if s.failed and s.data_type in self.watched]

    @property
    def pending(self) -> list[str]:
        return [s.data_type for s in self.statuses if not s.done and s.data_type in self.watched]

    @property
    def ok(self) -> bool:
        return not self.timed_out and not self.failed and not self.never_queued


def wait_for_sync(client: CodatClient, company_id: str, *, timeout: float = 600, interval: float = 2,
                  on_progress: Callable[[list[DataTypeStatus]], None] | None = None,
                  never_queued_grace: float | None = None) -> WaitResult:
    """Poll dataStatus every ``interval`` seconds until every enabled commerce data type is
    Complete, NotSupported or failed, or ``timeout`` seconds have passed. With
    ``never_queued_grace``, stop after that many seconds (``never_queued``) if none of them has
    ever been queued: nothing is coming, and waiting longer would only reach the timeout."""
    watched = sorted(enabled_data_types(client, company_id)) or list(COMMERCE_DATA_TYPES)
    started = time.monotonic()
    while True:
        statuses = data_status(client, company_id)
        if on_progress:
            on_progress(statuses)
        relevant = [s for s in statuses if s.data_type in watched]
        waited = time.monotonic() - started
        if all(s.done for s in relevant):
            return WaitResult(statuses, False, waited, watched)
        if waited >= timeout:
            return WaitResult(statuses, True, waited, watched)
        if (never_queued_grace is not None and waited >= never_queued_grace
                and all(s.status == "NeverSynced" for s in relevant)):
            return WaitResult(statuses, False, waited, watched, never_queued=True)
        time.sleep(min(interval, max(timeout - waited, 0.05)))
