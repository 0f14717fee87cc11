"""The sandbox's state: companies, connections, sync settings, syncs and the clock."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .catalog import COMMERCE_DATA_TYPES, COMMERCE_PLATFORMS, OTHER_DATA_TYPES, PLATFORM_BY_KEY, Platform
from .records import BASE_SPAN, Collection, ConnectionData, LiteralCollection, Sizes, iso_utc, mix
from .webhooks import WebhookSender

CLOCK_START = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
COMPANY_NAME_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 \t-',&@.?!")
IN_PROGRESS = ("Queued", "Fetching", "Mapping")


def make_uuid(a: int, b: int) -> str:
    value = (mix(a, b) << 64) | mix(b, a)
    return str(uuid.UUID(int=value, version=4))


def post_later(url: str, delay: float, body: dict[str, Any]) -> None:
    """POST ``body`` as JSON to ``url`` after ``delay`` seconds, in the background (a webhook)."""

    def send() -> None:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10):
            pass

    timer = threading.Timer(max(delay, 0.0), send)
    timer.daemon = True
    timer.start()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Settings:
    """Everything the command line sets (see cli.py for the meaning of each)."""

    seed: int = 42
    api_key: str | None = None
    companies: int = 3
    orders: int = 500
    sync_delay: float = 1.0
    accounting_every: int = 3
    latency_ms: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    concurrency_limit: int = 0
    rate_limit_per_minute: int = 0
    ip_limit_per_minute: int = 0  # Codat's IP protection (1,000 at Codat): 429 above it, per client IP
    ip_block_after: int = 200  # ... and this many refused within a minute block the IP
    ip_block_seconds: float = 120.0  # ... for this long (403 or a closed connection, by seed)
    company_daily_quota: int = 0  # requests per company per day (1,000 at Codat), then 429 to midnight
    daily_quota: int = 0
    retry_after: float = 1.0
    change_every: float = 0.0
    drift: bool = False
    page_size_cap: int = 0  # answer at most this many records a page (0: as asked, up to 5000)
    nulls_first: bool = False  # orderBy lists null values first (SQL Server's order), else last
    restamp_every: int = 0  # after every Nth commerce data page served, re-stamp records of it
    restamp_count: int = 1  # ... this many (the page's first), to a new later modifiedDate
    restamp_times: int = 0  # ... at most this many times (0: no limit)
    restamp_path: str = ""  # ... counting only pages whose path contains this (e.g. commerce-orders)
    restamp_within_second: bool = False  # ... literal records: later within their own second instead
    data_dir: str | None = None  # keep the world here across restarts (None: in memory only)
    one_time_links: bool = False  # new links carry ?otp=…, work once and expire a day after creation
    webhook_url: str | None = None  # POST Codat's read.completed events here when a sync completes
    webhook_secret: str | None = None  # ... signed as Svix does with this whsec_… secret (None: unsigned)
    webhook_retry_speedup: float = 1.0  # ... retrying on Svix's schedule divided by this

    @property
    def key(self) -> str:
        return self.api_key or f"sandbox-{mix(self.seed, 7) & 0xFFFFFFFFFFFF:012x}"


@dataclass
class PullOperation:
    id: str
    company_id: str
    connection_id: str
    data_type: str
    requested_at: float  # time.time()
    delay: float
    final_status: str = "Complete"

    def status(self, now: float | None = None) -> str:
        if self.final_status != "Complete":
            return self.final_status
        elapsed = (now or time.time()) - self.requested_at
        if self.delay <= 0 or elapsed >= self.delay:
            return "Complete"
        return IN_PROGRESS[min(int(3 * elapsed / self.delay), 2)]

    def to_json(self) -> dict[str, Any]:
        status = self.status()
        done = status not in IN_PROGRESS
        return {
            "id": self.id,
            "companyId": self.company_id,
            "connectionId": self.connection_id,
            "dataType": self.data_type,
            "status": status,
            "statusDescription": None,
            "errorMessage": None,
            "requested": iso_utc(self.requested_at),
            "completed": iso_utc(self.requested_at + max(self.delay, 0)) if done else None,
            "progress": 100 if done else {"Queued": 0, "Fetching": 40, "Mapping": 80}[status],
            "isCompleted": status == "Complete",
            "isErrored": status not in ("Complete", "NotSupported") and done,
        }


@dataclass
class Connection:
    id: str
    company_id: str
    platform: Platform
    created: str
    link_url: str
    status: str = "PendingAuth"
    data: ConnectionData | None = None
    syncs: list[PullOperation] = field(default_factory=list)

    def latest_sync(self, data_type: str) -> PullOperation | None:
        return next((s for s in reversed(self.syncs) if s.data_type == data_type), None)

    def first_sync_done(self, data_type: str) -> bool:
        return any(s.data_type == data_type and s.status() == "Complete" for s in self.syncs)

    def to_json(self) -> dict[str, Any]:
        last = [s for s in self.syncs if s.status() == "Complete"]
        return {
            "id": self.id,
            "integrationId": make_uuid(zlib.crc32(self.platform.key.encode()), 11),
            "integrationKey": self.platform.key,
            "sourceId": make_uuid(zlib.crc32(self.platform.key.encode()), 12),
            "sourceType": self.platform.source_type,
            "platformName": self.platform.name,
            "linkUrl": self.link_url,
            "status": self.status,
            "lastSync": iso_utc(last[-1].requested_at + max(last[-1].delay, 0)) if last else None,
            "created": self.created,
            "dataConnectionErrors": [],
            "connectionInfo": None,
        }



@dataclass
class Company:
    id: str
    name: str
    description: str | None
    tags: dict[str, str]
    created: str
    redirect: str
    connections: dict[str, Connection] = field(default_factory=dict)
    sync_settings: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        syncs = [s for c in self.connections.values() for s in c.syncs if s.status() == "Complete"]
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "redirect": self.redirect,
            "lastSync": iso_utc(max(s.requested_at for s in syncs)) if syncs else None,
            "created": self.created,
            "createdByUserName": "sandbox",
            "products": ["commerce"],
            "tags": self.tags,
            "referenceParentCompany": None,
            "referenceSubsidiaryCompanies": [],
            "dataConnections": [c.to_json() for c in self.connections.values()],
        }


class ApiError(Exception):
    """An error the API answers with Codat's error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def default_sync_settings() -> list[dict[str, Any]]:
    """A fresh client's profile: commerce types off until the setup enables them."""
    settings = []
    for order, data_type in enumerate((*OTHER_DATA_TYPES, *COMMERCE_DATA_TYPES)):
        settings.append({"dataType": data_type, "fetchOnFirstLink": not data_type.startswith("commerce"),
                         "syncSchedule": 24, "syncOrder": order, "syncFromWindow": None,
                         "syncFromUtc": None, "monthsToSync": None, "isLocked": False})
    return settings


class World:
    """All the sandbox's state, behind one lock."""

    def __init__(self, settings: Settings, base_url: str = "http://127.0.0.1", *, salt: int = 0,
                 seeded: bool = True) -> None:
        """``salt`` (from a data directory) makes this world's ids its own: two worlds with the same
        seed share their records' shapes but never a company, connection or sync id. ``seeded=False``
        leaves out the pre-seeded companies (a saved world brings its own)."""
        self.settings = settings
        self.salt = salt
        self.id_seed = mix(settings.seed, salt) if salt else settings.seed
        self.base_url = base_url
        self.lock = threading.RLock()
        self.clock = CLOCK_START
        self.advances = 0
        self.created_companies = 0
        self.client_id = make_uuid(self.id_seed, 1)
        self.profile_settings: list[dict[str, Any]] = default_sync_settings()
        self.companies: dict[str, Company] = {}
        self.events = 0  # read.completed events made
        self.data_pages = 0  # commerce data list pages served
        self.restamps = 0
        self.restamp_pages = 0
        self.advance_after: tuple[int, dict[str, Any]] | None = None  # (page count, advance arguments)
        self.webhooks: WebhookSender | None = None  # set by the app when settings name a webhook_url
        if seeded:
            self._seed_companies()

    # --- building -------------------------------------------------------------------------
    def _seed_companies(self) -> None:
        created = iso_utc(CLOCK_START - 400 * 86_400)
        for k in range(self.settings.companies):
            company = self._new_company(make_uuid(self.id_seed, 1000 + k),
                                        f"Sandbox Shop {k + 1}", None, {}, created)
            platform = COMMERCE_PLATFORMS[k % len(COMMERCE_PLATFORMS)]
            connection = self._new_connection(company, platform, make_uuid(self.id_seed, 2000 + k), created)
            self._link(connection, at=time.time() - 3600, delay=0, data_types=COMMERCE_DATA_TYPES)
            if self.settings.accounting_every and k % self.settings.accounting_every == 0:
                accounting = self._new_connection(
                    company, PLATFORM_BY_KEY["gbol"], make_uuid(self.id_seed, 3000 + k), created)
                accounting.status = "Linked"

    def _new_company(self, company_id: str, name: str, description: str | None,
                     tags: dict[str, str], created: str) -> Company:
        company = Company(company_id, name, description, tags, created,
                          f"{self.base_url}/_link/companies/{company_id}")
        self.companies[company_id] = company
        return company

    def _new_connection(self, company: Company, platform: Platform, connection_id: str,
                        created: str) -> Connection:
        link = f"{self.base_url}/_link/companies/{company.id}/connections/{connection_id}/start"
        if self.settings.one_time_links:
            link += f"?otp={mix(self.id_seed, zlib.crc32(connection_id.encode())) & 0xFFFFFFFFFFFF:012x}"
        connection = Connection(connection_id, company.id, platform, created, link)
        company.connections[connection_id] = connection
        return connection

    def _link(self, connection: Connection, *, at: float, delay: float,
              data_types: tuple[str, ...]) -> None:
        connection.status = "Linked"
        if connection.platform.source_type == "Commerce" and connection.data is None:
            company = self.companies[connection.company_id]
            connection.data = ConnectionData(
                connection.platform, mix(self.settings.seed, int(connection.id[:8], 16)),
                Sizes(self.settings.orders), self.clock - BASE_SPAN, company.name)
        for data_type in data_types:
            self._queue(connection, data_type, at=at, delay=delay)

    def _queue(self, connection: Connection, data_type: str, *, at: float, delay: float) -> PullOperation:
        supported = connection.data is not None and data_type in connection.platform.supported
        operation_id = make_uuid(mix(self.id_seed, len(connection.syncs)),
                                 int(connection.id[:8], 16) + zlib.crc32(data_type.encode()))
        operation = PullOperation(
            operation_id,
            connection.company_id, connection.id, data_type, at, delay,
            "Complete" if supported else "NotSupported")
        connection.syncs.append(operation)
        return operation

    # --- lookups ----------------------------------------------------------------------------
    def company(self, company_id: str) -> Company:
        company = self.companies.get(company_id)
        if company is None:
            raise ApiError(404, f"No company was found with ID {company_id}")
        return company

    def connection(self, company_id: str, connection_id: str) -> Connection:
        connection = self.company(company_id).connections.get(connection_id)
        if connection is None:
            raise ApiError(404, f"Data connection {connection_id} not found")
        return connection

    def settings_for(self, company: Company) -> list[dict[str, Any]]:
        if company.sync_settings and company.sync_settings.get("overridesDefaults"):
            return company.sync_settings["settings"]
        return self.profile_settings

    # --- actions ----------------------------------------------------------------------------
    def create_company(self, name: str, description: str | None, tags: dict[str, str]) -> Company:
        self.created_companies += 1
        return self._new_company(make_uuid(self.id_seed, 50_000 + self.created_companies),
                                 name, description, tags, now_iso())

    def create_connection(self, company: Company, platform_key: str) -> Connection:
        platform = PLATFORM_BY_KEY.get(platform_key)
        if platform is None:
            raise ApiError(400, f"Integration with key {platform_key} was not found.")
        serial = sum(len(c.connections) for c in self.companies.values())
        return self._new_connection(company, platform, make_uuid(self.id_seed, 90_000 + serial), now_iso())

    def open_link(self, connection: Connection, otp: str | None, now: datetime | None = None) -> None:
        """The business opens the connection's linkUrl. A one-time link (``?otp=``) works once and
        expires a day after the connection was created: else ApiError 410."""
        if "otp=" in connection.link_url:
            expected = connection.link_url.split("otp=", 1)[1]
            created = datetime.fromisoformat(connection.created.replace("Z", "+00:00"))
            if otp != expected:
                raise ApiError(410, "This link is not valid: it has no or another one-time code.")
            if connection.status != "PendingAuth":
                raise ApiError(410, "This one-time link has already been used.")
            if (now or datetime.now(UTC)) - created > timedelta(days=1):
                raise ApiError(410, "This one-time link has expired (links are valid for one day).")
        self.link(connection)

    def link(self, connection: Connection) -> None:
        if connection.status == "Linked":
            return
        settings = self.settings_for(self.companies[connection.company_id])
        first = tuple(s["dataType"] for s in settings
                      if s.get("fetchOnFirstLink") and s["dataType"].startswith("commerce-"))
        self._link(connection, at=time.time(), delay=self.settings.sync_delay,
                   data_types=first if connection.platform.source_type == "Commerce" else ())

    def queue(self, company: Company, data_type: str, connection_id: str | None = None) -> list[PullOperation]:
        targets = [c for c in company.connections.values()
                   if c.status == "Linked" and c.platform.source_type == "Commerce"
                   and (connection_id is None or c.id == connection_id)]
        if connection_id is not None and not targets:
            raise ApiError(404, f"Data connection {connection_id} not found")
        for connection in targets:
            latest = connection.latest_sync(data_type)
            if latest is not None and latest.status() in IN_PROGRESS:
                raise ApiError(409, f"DatasetAlreadyInProgressException: Cannot queue {data_type} sync for "
                                    f"{company.id} as previous sync {latest.id} is still in progress")
        return [self._queue(c, data_type, at=time.time(), delay=self.settings.sync_delay) for c in targets]

    def after_data_page(self, path: str, collection: Collection | LiteralCollection, served: list[int]) -> None:
        """A commerce data page was answered: Codat may re-stamp records while they are read.

        With ``restamp_every`` N, every Nth page moves its first ``restamp_count`` records to a
        new modifiedDate one second after everything else, so that every record behind them on
        a page-number read shifts up; a scripted ``advance_after`` changes data mid-read.
        """
        self.data_pages += 1
        self._advance_if_due()
        s = self.settings
        if s.restamp_path and s.restamp_path not in path:
            return
        self.restamp_pages += 1
        if (s.restamp_every > 0 and self.restamp_pages % s.restamp_every == 0
                and (s.restamp_times <= 0 or self.restamps < s.restamp_times)):
            self.restamps += 1
            for index in served[: s.restamp_count]:
                if s.restamp_within_second and isinstance(collection, LiteralCollection):
                    collection.restamp_within_second(index)
                    continue
                self.clock += 1
                collection.update(index, self.clock)

    def _advance_if_due(self) -> None:
        if self.advance_after is not None and self.data_pages >= self.advance_after[0]:
            arguments, self.advance_after = self.advance_after[1], None
            self.advance(**arguments)

    def set_literal(self, company_id: str, connection_id: str, data_type: str, records: list[dict[str, Any]],
                    ordered: bool = True) -> None:
        connection = self.connection(company_id, connection_id)
        if connection.data is None or data_type not in connection.data.collections:
            raise ApiError(404, f"Datatype {data_type} is not readable on connection {connection_id}")
        connection.data.literals[data_type] = LiteralCollection([dict(r) for r in records], ordered)

    def advance(self, seconds: int = 3600, updates: int | None = None, inserts: int | None = None, *,
                same_instant: bool = False, companies: list[str] | None = None,
                data_types: list[str] | None = None) -> dict[str, Any]:
        """Move the clock: Codat syncs, changing some records and adding new ones.

        Every readable collection changes, or only those of ``companies`` and ``data_types``
        (Codat dataType names) when given. Each (connection, data type) changed counts as a sync:
        a pull operation that takes ``sync_delay`` seconds (in progress in dataStatus meanwhile),
        after which ``lastSuccessfulSync`` has moved and a ``read.completed`` event is posted to
        ``webhook_url``. ``same_instant`` stamps every change with the new clock (a re-map: one
        modifiedDate shared by thousands of records).
        """
        self.advances += 1
        start = self.clock
        self.clock += max(int(seconds), 1)
        summary: dict[str, Any] = {}
        synced: dict[str, list[tuple[Connection, str]]] = {}
        for company in self.companies.values():
            if companies is not None and company.id not in companies:
                continue
            for connection in company.connections.values():
                if connection.data is None:
                    continue
                for data_type, collection in connection.data.collections.items():
                    if (data_types is not None and data_type not in data_types) or not connection.first_sync_done(
                            data_type):
                        continue
                    if data_type == "commerce-companyInfo":
                        n_updates, n_inserts = 1, 0
                    else:
                        n_updates = updates if updates is not None else max(1, len(collection) // 50)
                        n_inserts = inserts if inserts is not None else max(1, collection.base_count // 100)
                    if len(collection) == 0:
                        n_updates = 0
                    steps = n_updates + n_inserts
                    span = self.clock - start
                    for j in range(steps):
                        ts = self.clock if same_instant else start + 1 + (j * (span - 1)) // max(steps, 1)
                        if j < n_updates:
                            collection.update(mix(mix(self.settings.seed, self.advances), j) % len(collection), ts)
                        else:
                            collection.insert(ts)
                    summary.setdefault(company.id, {}).setdefault(connection.id, {})[data_type] = {
                        "updated": n_updates, "inserted": n_inserts}
                    self._queue(connection, data_type, at=time.time(), delay=self.settings.sync_delay)
                    synced.setdefault(company.id, []).append((connection, data_type))
        if self.webhooks is not None:
            for company_id, changed in synced.items():
                event = self.read_completed(self.companies[company_id], changed, iso_utc(start))
                self.webhooks.send("msg_" + event["id"].replace("-", ""), event, self.settings.sync_delay)
        elif self.settings.webhook_url:
            for company_id, changed in synced.items():
                post_later(self.settings.webhook_url, self.settings.sync_delay,
                           self.read_completed(self.companies[company_id], changed, iso_utc(start)))
        return {"clock": iso_utc(self.clock), "changes": summary}

    def read_completed(self, company: Company, changed: list[tuple[Connection, str]],
                       modified_from: str) -> dict[str, Any]:
        """Codat's ``read.completed`` webhook body for the data types just synced."""
        self.events += 1
        return {"id": make_uuid(mix(self.settings.seed, 77), self.events), "eventType": "read.completed",
                "generatedDate": now_iso(),
                "payload": {"referenceCompany": {"id": company.id, "name": company.name,
                                                 "description": company.description,
                                                 "links": {"portal": f"{self.base_url}/companies/{company.id}"}},
                            "modifiedFromDate": modified_from,
                            "dataTypes": [{"connectionId": connection.id, "dataType": data_type,
                                           "recordsModified": True, "status": "Complete", "issues": []}
                                          for connection, data_type in changed]}}

    def truth(self, company_id: str | None = None) -> dict[str, Any]:
        """Ids and modifiedDates of every readable record, per company, connection and data type."""
        result: dict[str, Any] = {}
        for company in self.companies.values():
            if company_id and company.id != company_id:
                continue
            for connection in company.connections.values():
                if connection.data is None:
                    continue
                for data_type, collection in connection.data.collections.items():
                    if not connection.first_sync_done(data_type):
                        continue
                    literal = connection.data.literals.get(data_type)
                    records = literal.records if literal is not None else [
                        collection.record(i) for i in collection.natural_order()]
                    result.setdefault(company.id, {}).setdefault(connection.id, {})[data_type] = [
                        {"id": r.get("id"), "modifiedDate": r.get("modifiedDate")} for r in records]
        return result
