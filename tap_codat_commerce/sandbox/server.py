"""The sandbox's HTTP server: Codat's routes, paging, auth, limits and faults."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import orjson
import simplejson

from .catalog import (
    COMMERCE_DATA_TYPES,
    DATA_TYPE_OF_PATH,
    OTHER_DATA_TYPES,
    PLATFORM_BY_KEY,
    PLATFORMS,
)
from .faults import TRUNCATED, Action, CompanyBudgets, CompanyFaults, Fault, IpProtection
from .query import QueryError, matches, modified_range, parse, parse_timestamp, resolve
from .records import Collection, mix
from .store import WorldStore
from .webhooks import WebhookSender
from .world import COMPANY_NAME_CHARS, ApiError, Settings, World

MAX_PAGE_SIZE = 5000
DEFAULT_PAGE_SIZE = 100
SERVICE = "PublicApi"
UUID = r"[0-9a-fA-F-]{36}"
SEGMENT = r"[^/]+"
REQUIRED_SETTING_FIELDS = frozenset({"dataType", "fetchOnFirstLink", "syncSchedule", "syncOrder"})
_known_fields: dict[str, frozenset[str]] = {}


class Response:
    def __init__(self, status: int, body: Any = None, *, raw: bytes | None = None,
                 content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = raw if raw is not None else (b"" if body is None else encode(body))
        self.content_type = content_type
        self.headers = headers or {}


class Nested:
    """A literal record's field given as ``{"_sandbox_nested": N}``: served as objects nested
    N deep (``{"level": {"level": … 1}}``), deeper than any JSON parser's recursion allows
    when N is large (written as text: no encoder recurses through it)."""

    MARKER = "_sandbox_nested"

    def __init__(self, depth: int) -> None:
        self.text = b'{"level":' * depth + b"1" + b"}" * depth

    @classmethod
    def expand(cls, record: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``record`` with every marker (in it or in its objects) made a Nested value."""
        return {k: (cls(int(v[cls.MARKER])) if cls.MARKER in v else cls.expand(v)) if isinstance(v, dict) else v
                for k, v in record.items()}


def _fragment(value: Any) -> Any:
    if isinstance(value, Nested):
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(body: Any) -> bytes:
    """JSON as Codat writes it: orjson for speed; exact decimals (literal records given with
    more digits than a double holds, as .NET decimals are), integers beyond 64 bits and text
    with lone surrogates (escaped as ``\\ud83d``) through simplejson, digit for digit.
    (:class:`Nested` values are written by orjson only: not beside such values.)"""
    try:
        return orjson.dumps(body, default=_fragment)
    except (TypeError, orjson.JSONEncodeError):
        return simplejson.dumps(body, use_decimal=True, allow_nan=True, separators=(",", ":")).encode()


def decode(raw: bytes) -> Any:
    """A request body, numbers exact (``Decimal``) and any text ``json`` accepts."""
    return json.loads(raw, parse_float=Decimal)


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"statusCode": status, "service": SERVICE, "error": message,
            "correlationId": f"{mix(status, len(message)) & 0xFFFFFFFFFFFFFFFF:016x}",
            "validation": None, "canBeRetried": "True" if status in (429, 500, 503) else "Unknown",
            "detailedErrorCode": 0}


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"The value '{raw}' is not valid for {name}.") from None


def page_request(params: dict[str, str], cap: int = 0) -> tuple[int, int]:
    """(page, size) asked for; a server ``cap`` (> 0) answers at most that many a page."""
    page = _int_param(params, "page", 1)
    size = _int_param(params, "pageSize", DEFAULT_PAGE_SIZE)
    if page < 1:
        raise ApiError(400, "Page must be greater than 0.")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ApiError(400, f"Page size must be between 1 and {MAX_PAGE_SIZE}.")
    return page, min(size, cap) if cap > 0 else size


def envelope(results: list[Any], page: int, size: int, total: int, *, path: str,
             params: dict[str, str]) -> dict[str, Any]:
    extra = {k: params[k] for k in ("query", "orderBy") if params.get(k)}

    def href(number: int) -> dict[str, str]:
        return {"href": f"{path}?{urlencode({'page': number, 'pageSize': size, **extra}, quote_via=quote)}"}

    links = {"self": {"href": path}, "current": href(page)}
    if page * size < total:
        links["next"] = href(page + 1)
    if page > 1:
        links["previous"] = href(page - 1)
    return {"results": results, "pageNumber": page, "pageSize": size, "totalResults": total,
            "_links": links}


def _sort_key(field: str, nulls_first: bool = False) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    def key(record: dict[str, Any]) -> tuple[int, Any]:
        value = resolve(record, field)
        if value is None:
            return (-1 if nulls_first else 2, "")
        if isinstance(value, str):
            ts = parse_timestamp(value)
            return (0, ts) if ts is not None else (1, value.lower())
        if isinstance(value, bool | int | float):
            return (0, float(value))
        return (1, str(value))
    return key


def query_list(items: list[dict[str, Any]], params: dict[str, str], path: str,
               known: frozenset[str] | None = None, *, cap: int = 0, nulls_first: bool = False,
               ordered: bool = True) -> dict[str, Any]:
    """Filter, order and page an in-memory list (companies, connections, history, literal
    records). ``ordered=False`` is a server that ignores ``orderBy``."""
    page, size = page_request(params, cap)
    query = params.get("query")
    if query:
        node = parse(query, known)
        items = [item for item in items if matches(node, item)]
    order_by = params.get("orderBy")
    if order_by and ordered:
        field = order_by.lstrip("-")
        descending = order_by.startswith("-")
        # reversing mirrors the nulls too: first ascending (SQL Server's order) is last descending
        items = sorted(items, key=_sort_key(field, nulls_first), reverse=descending)
    start = (page - 1) * size
    return envelope(items[start:start + size], page, size, len(items), path=path, params=params)


def collection_page(collection: Collection, params: dict[str, str], path: str,
                    cap: int = 0) -> tuple[dict[str, Any], list[int]]:
    """Page a commerce collection (the answer, and the indices of its records); a
    modifiedDate window is answered by index arithmetic."""
    page, size = page_request(params, cap)
    known = _known_fields.get(collection.data_type)
    if known is None:
        known = _known_fields[collection.data_type] = frozenset(collection.generate(collection.owner, 0, 0, 0))
    query = params.get("query")
    node = parse(query, known) if query else None
    order_by = params.get("orderBy") or ""
    if order_by.lstrip("-") and order_by.lstrip("-").split(".")[0] not in known:
        raise ApiError(400, f"Could not resolve property {order_by.lstrip('-')} on Dataset")
    span = modified_range(node) if order_by in ("", "modifiedDate", "-modifiedDate") else None
    start = (page - 1) * size
    if span is not None:
        total, index_at = collection.window(span)
        stop = min(start + size, total)
        if order_by.startswith("-"):
            indices = [index_at(total - 1 - p) for p in range(start, stop)]
        else:
            indices = [index_at(p) for p in range(start, stop)]
        return envelope([collection.record(i) for i in indices], page, size, total, path=path,
                        params=params), indices
    indexed = [(i, collection.record(i)) for i in collection.natural_order()]
    if node is not None:
        indexed = [(i, r) for i, r in indexed if matches(node, r)]
    if order_by:
        by = _sort_key(order_by.lstrip("-"))
        indexed.sort(key=lambda pair: by(pair[1]), reverse=order_by.startswith("-"))
    chosen = indexed[start:start + size]
    return envelope([r for _, r in chosen], page, size, len(indexed), path=path,
                    params=params), [i for i, _ in chosen]


def drifted(records: list[dict[str, Any]], on: bool) -> list[dict[str, Any]]:
    """Schema drift, as an API that changes under a tap: new fields, numbers sent as strings,
    nulls where the spec says required (top level only: nested parts are shared)."""
    if not on:
        return records
    changed = []
    for position, original in enumerate(records):
        record = {**original, "addedByCodatLater": {"flag": True, "note": "a field no schema knows"}}
        if position % 3 == 0:
            for name in ("totalAmount", "amount", "rate"):
                if isinstance(record.get(name), int | float):
                    record[name] = f"{record[name]:.2f}"
        if position % 4 == 1:
            record["currency"] = None
        changed.append(record)
    return changed


def integration_json(platform: Any) -> dict[str, Any]:
    features = []
    if platform.source_type == "Commerce":
        for data_type in COMMERCE_DATA_TYPES:
            state = "Release" if data_type in platform.supported else "NotSupported"
            features.append({"dataType": data_type,
                             "supportedFeatures": [{"featureType": "Get", "featureState": state}]})
    return {"key": platform.key, "logoUrl": f"https://static.codat.io/public/officialLogos/Full/{platform.key}.png",
            "name": platform.name, "enabled": True, "sourceId": None, "sourceType": platform.source_type,
            "integrationId": None, "isOfflineConnector": False, "isBeta": False,
            "dataProvidedBy": platform.name, "datatypeFeatures": features}


class Limits:
    """Concurrency, per-minute and daily limits plus deterministic fault draws."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.minute_start = time.monotonic()
        self.minute_count = 0
        self.day_count = 0
        self.draws = 0
        self.script: dict[str, Any] | None = None
        self.throttled = 0  # 429s answered

    def draw(self) -> float:
        with self.lock:
            self.draws += 1
            return mix(self.settings.seed, self.draws) / 2**64

    def daily_limit(self, companies: int) -> int:
        return self.settings.daily_quota or 1000 * (1 + companies)

    def headers(self, companies: int) -> dict[str, str]:
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        limit = self.daily_limit(companies)
        return {"X-Rate-Limit-Limit": str(limit),
                "X-Rate-Limit-Remaining": str(max(limit - self.day_count, 0)),
                "X-Rate-Limit-Reset": format_datetime(tomorrow, usegmt=True)}

    def admit(self, company_id: str | None, path: str) -> tuple[Response | None, float]:
        """(a 429 or scripted answer if this request must not be served, extra delay in seconds)."""
        s = self.settings
        delay = 0.0
        with self.lock:
            self.day_count += 1
            script = self.script if self.script and not self.script.get("mode") and self.script["path"] in path \
                else None
            if script and script["after"] <= 0 < script["count"] and script["delay"]:
                script["count"] -= 1
                delay = script["delay"]
            elif script and script["after"] <= 0 < script["count"]:
                script["count"] -= 1
                status = script["status"]
                headers = {"Retry-After": script["retry_after"]} if script["retry_after"] else {}
                if script["body"] is not None:
                    return Response(status, raw=script["body"].encode(), headers=headers), 0.0
                return Response(status, error_body(status, script["message"]), headers=headers), 0.0
            if script:
                script["after"] -= 1
            if s.daily_quota and self.day_count > s.daily_quota:
                now = datetime.now(UTC)
                midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
                return self._too_many(int((midnight - now).total_seconds()) + 1), 0.0
            if s.rate_limit_per_minute:
                elapsed = time.monotonic() - self.minute_start
                if elapsed >= 60:
                    self.minute_start, self.minute_count, elapsed = time.monotonic(), 0, 0.0
                self.minute_count += 1
                if self.minute_count > s.rate_limit_per_minute:
                    return self._too_many(max(1, int(60 - elapsed + 0.999))), 0.0
            if company_id and s.concurrency_limit and self.in_flight[company_id] >= s.concurrency_limit:
                return self._too_many(s.retry_after), 0.0
            if company_id:  # admitted: counted in flight until released
                self.in_flight[company_id] += 1
                self.max_in_flight[company_id] = max(self.max_in_flight[company_id], self.in_flight[company_id])
        return None, delay

    def scripted_action(self, path: str) -> Action | None:
        """A scripted ``mode`` (trickle, silent, drop, …) this request meets, if any (counting it)."""
        with self.lock:
            script = self.script
            if not script or not script.get("mode") or script["path"] not in path:
                return None
            if script["after"] > 0:
                script["after"] -= 1
                return None
            if script["count"] <= 0:
                return None
            script["count"] -= 1
            return Action(str(script["mode"]), float(script["seconds"]))

    def _too_many(self, retry_after: float) -> Response:
        self.throttled += 1
        return Response(429, error_body(429, "You have made too many requests in a given amount of time; "
                                             "please retry later."),
                        headers={"Retry-After": f"{retry_after:g}"})

    @contextmanager
    def flight(self, company_id: str | None) -> Iterator[None]:
        """Hold an admitted request's in-flight place until it is answered."""
        try:
            yield
        finally:
            if company_id:
                with self.lock:
                    self.in_flight[company_id] -= 1


class Api:
    """Codat's routes over a :class:`World`."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = []
        c, k = f"(?P<company>{SEGMENT})", f"(?P<connection>{SEGMENT})"
        for method, pattern, handler in (
            ("GET", "/companies", self.list_companies),
            ("POST", "/companies", self.create_company),
            ("GET", f"/companies/{c}", self.get_company),
            ("DELETE", f"/companies/{c}", self.delete_company),
            ("GET", f"/companies/{c}/connections", self.list_connections),
            ("POST", f"/companies/{c}/connections", self.create_connection),
            ("GET", f"/companies/{c}/connections/{k}", self.get_connection),
            ("PATCH", f"/companies/{c}/connections/{k}", self.patch_connection),
            ("DELETE", f"/companies/{c}/connections/{k}", self.delete_connection),
            ("GET", f"/companies/{c}/connections/{k}/data/(?P<path>{SEGMENT})", self.commerce_data),
            ("GET", "/integrations", self.list_integrations),
            ("GET", "/integrations/(?P<key>[^/]+)", self.get_integration),
            ("GET", "/profile/syncSettings", self.get_profile_settings),
            ("POST", "/profile/syncSettings", self.set_profile_settings),
            ("GET", f"/companies/{c}/syncSettings", self.get_company_settings),
            ("POST", f"/companies/{c}/syncSettings", self.set_company_settings),
            ("GET", f"/companies/{c}/dataStatus", self.data_status),
            ("GET", f"/companies/{c}/data/history", self.list_history),
            ("GET", f"/companies/{c}/data/history/(?P<dataset>{SEGMENT})", self.get_history),
            ("POST", f"/companies/{c}/data/all", self.refresh_all),
            ("POST", f"/companies/{c}/data/queue/(?P<data_type>{SEGMENT})", self.refresh_one),
        ):
            self.routes.append((method, re.compile(pattern + "$"), handler))

    def route(self, method: str, path: str) -> tuple[Callable[..., Response], dict[str, str]] | None:
        found_path = False
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match:
                found_path = True
                if route_method == method:
                    return handler, match.groupdict()
        if found_path:
            raise ApiError(405, f"The method {method} is not allowed for this resource.")
        return None

    # --- companies --------------------------------------------------------------------------
    def list_companies(self, params: dict[str, str], body: Any) -> Response:
        items = [c.to_json() for c in self.world.companies.values()]
        return self._list(items, params, "/companies")

    def create_company(self, params: dict[str, str], body: Any) -> Response:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise ApiError(400, "Company name is required.")
        name = "".join(ch for ch in body["name"] if ch in COMPANY_NAME_CHARS).strip()
        if not name:
            raise ApiError(400, "Company name must contain at least one valid character.")
        tags = body.get("tags") or {}
        if not isinstance(tags, dict) or len(tags) > 10 or not all(
                isinstance(k, str) and 1 <= len(k) <= 27 and isinstance(v, str) and len(v) <= 100
                for k, v in tags.items()):
            raise ApiError(400, "Tags must be at most 10 string pairs (keys 1-27, values up to 100 characters).")
        description = body.get("description")
        company = self.world.create_company(name, description if isinstance(description, str) else None, tags)
        return Response(200, company.to_json())

    def get_company(self, params: dict[str, str], body: Any, company: str) -> Response:
        return Response(200, self.world.company(company).to_json())

    def delete_company(self, params: dict[str, str], body: Any, company: str) -> Response:
        self.world.company(company)
        del self.world.companies[company]
        return Response(204)

    # --- connections ------------------------------------------------------------------------
    def list_connections(self, params: dict[str, str], body: Any, company: str) -> Response:
        items = [c.to_json() for c in self.world.company(company).connections.values()]
        return self._list(items, params, f"/companies/{company}/connections")

    def create_connection(self, params: dict[str, str], body: Any, company: str) -> Response:
        target = self.world.company(company)
        key = body.get("platformKey") if isinstance(body, dict) else None
        if not isinstance(key, str) or not re.fullmatch(r"[a-z]{4}", key):
            raise ApiError(400, "platformKey must be four lowercase letters.")
        return Response(200, self.world.create_connection(target, key).to_json())

    def get_connection(self, params: dict[str, str], body: Any, company: str, connection: str) -> Response:
        return Response(200, self.world.connection(company, connection).to_json())

    def patch_connection(self, params: dict[str, str], body: Any, company: str, connection: str) -> Response:
        target = self.world.connection(company, connection)
        if not isinstance(body, dict) or body.get("status") != "Unlinked":
            raise ApiError(400, "Only {\"status\": \"Unlinked\"} can be set.")
        if target.status != "Linked":
            raise ApiError(400, "Only Linked connections can be unlinked.")
        target.status = "Unlinked"
        return Response(200, target.to_json())

    def delete_connection(self, params: dict[str, str], body: Any, company: str, connection: str) -> Response:
        self.world.connection(company, connection)
        del self.world.companies[company].connections[connection]
        return Response(200)

    # --- commerce data ----------------------------------------------------------------------
    def commerce_data(self, params: dict[str, str], body: Any, company: str, connection: str,
                      path: str) -> Response:
        target = self.world.connection(company, connection)
        data_type = DATA_TYPE_OF_PATH.get(path)
        if data_type is None:
            raise ApiError(404, f"No resource found at /data/{path}")
        if target.platform.source_type != "Commerce" or data_type not in target.platform.supported:
            raise ApiError(404, f"Datatype {data_type} not supported by platform {target.platform.name}")
        if target.data is None or not target.first_sync_done(data_type):
            raise ApiError(409, "The data set has not been requested.")
        collection = target.data.collections[data_type]
        literal = target.data.literals.get(data_type)
        if data_type == "commerce-companyInfo":
            info = Nested.expand(literal.records[0]) if literal is not None and literal.records else \
                collection.record(0)
            return Response(200, drifted([info], self.world.settings.drift)[0])
        settings = self.world.settings
        where = f"/companies/{company}/connections/{connection}/data/{path}"
        if literal is not None:
            body = query_list(literal.records, params, where, cap=settings.page_size_cap,
                              nulls_first=settings.nulls_first, ordered=literal.ordered)
            position = {id(r): i for i, r in enumerate(literal.records)}
            served = [position[id(r)] for r in body["results"]]
            self.world.after_data_page(where, literal, served)
            body["results"] = [Nested.expand(r) for r in body["results"]]
        else:
            body, indices = collection_page(collection, params, where, settings.page_size_cap)
            self.world.after_data_page(where, collection, indices)
        body["results"] = drifted(body["results"], settings.drift)
        return Response(200, body)

    def _list(self, items: list[dict[str, Any]], params: dict[str, str], path: str) -> Response:
        return Response(200, query_list(items, params, path, cap=self.world.settings.page_size_cap))

    # --- integrations -----------------------------------------------------------------------
    def list_integrations(self, params: dict[str, str], body: Any) -> Response:
        return self._list([integration_json(p) for p in PLATFORMS], params, "/integrations")

    def get_integration(self, params: dict[str, str], body: Any, key: str) -> Response:
        platform = PLATFORM_BY_KEY.get(key)
        if platform is None:
            raise ApiError(404, f"Integration with key {key} was not found.")
        return Response(200, integration_json(platform))

    # --- sync settings ----------------------------------------------------------------------
    def get_profile_settings(self, params: dict[str, str], body: Any) -> Response:
        return Response(200, {"clientId": self.world.client_id, "settings": self.world.profile_settings,
                              "overridesDefaults": True})

    def set_profile_settings(self, params: dict[str, str], body: Any) -> Response:
        self.world.profile_settings = _checked_settings(body, "clientId")
        return Response(204)

    def get_company_settings(self, params: dict[str, str], body: Any, company: str) -> Response:
        target = self.world.company(company)
        saved = target.sync_settings or {"settings": self.world.profile_settings, "overridesDefaults": False}
        return Response(200, {"companyId": company, **saved})

    def set_company_settings(self, params: dict[str, str], body: Any, company: str) -> Response:
        target = self.world.company(company)
        settings = _checked_settings(body, "companyId")
        target.sync_settings = {"settings": settings, "overridesDefaults": bool(body["overridesDefaults"])}
        return Response(204)

    # --- syncs ------------------------------------------------------------------------------
    def data_status(self, params: dict[str, str], body: Any, company: str) -> Response:
        target = self.world.company(company)
        result: dict[str, Any] = {}
        for data_type in COMMERCE_DATA_TYPES:
            syncs = [s for c in target.connections.values() for s in c.syncs if s.data_type == data_type]
            entry: dict[str, Any] = {"dataType": data_type}
            if syncs:
                latest = max(syncs, key=lambda s: s.requested_at)
                entry |= {"currentStatus": latest.status(), "latestSyncId": latest.id}
                done = [s for s in syncs if s.status() == "Complete"]
                if done:
                    best = max(done, key=lambda s: s.requested_at)
                    entry |= {"lastSuccessfulSync": best.to_json()["completed"],
                              "latestSuccessfulSyncId": best.id}
            result[data_type] = entry
        return Response(200, result)

    def _history(self, company: str) -> list[dict[str, Any]]:
        target = self.world.company(company)
        syncs = [s for c in target.connections.values() for s in c.syncs]
        return [s.to_json() for s in sorted(syncs, key=lambda s: s.requested_at, reverse=True)]

    def list_history(self, params: dict[str, str], body: Any, company: str) -> Response:
        return self._list(self._history(company), params, f"/companies/{company}/data/history")

    def get_history(self, params: dict[str, str], body: Any, company: str, dataset: str) -> Response:
        found = next((h for h in self._history(company) if h["id"] == dataset), None)
        if found is None:
            raise ApiError(404, f"No dataset was found with ID {dataset}")
        return Response(200, found)

    def refresh_all(self, params: dict[str, str], body: Any, company: str) -> Response:
        target = self.world.company(company)
        for setting in self.world.settings_for(target):
            if setting.get("fetchOnFirstLink") and setting["dataType"] in COMMERCE_DATA_TYPES:
                try:
                    self.world.queue(target, setting["dataType"])
                except ApiError as exc:
                    if exc.status != 409:
                        raise
        return Response(204)

    def refresh_one(self, params: dict[str, str], body: Any, company: str, data_type: str) -> Response:
        target = self.world.company(company)
        if data_type not in (*COMMERCE_DATA_TYPES, *OTHER_DATA_TYPES):
            raise ApiError(400, f"'{data_type}' is not a valid data type.")
        operations = self.world.queue(target, data_type, params.get("connectionId"))
        if not operations:
            raise ApiError(400, f"Company {company} has no linked connection to sync {data_type} from.")
        return Response(200, operations[0].to_json())


def _checked_settings(body: Any, id_field: str) -> list[dict[str, Any]]:
    required = (id_field, "settings", "overridesDefaults")
    if not isinstance(body, dict) or any(k not in body for k in required):
        raise ApiError(400, f"Request body must contain {', '.join(required)}.")
    settings = body["settings"]
    if not isinstance(settings, list):
        raise ApiError(400, "settings must be a list.")
    for setting in settings:
        if not isinstance(setting, dict) or not set(setting) >= REQUIRED_SETTING_FIELDS:
            raise ApiError(400, "Each setting needs dataType, fetchOnFirstLink, syncSchedule and syncOrder.")
        if setting["dataType"] not in (*COMMERCE_DATA_TYPES, *OTHER_DATA_TYPES):
            raise ApiError(400, f"'{setting['dataType']}' is not a valid data type.")
    return settings


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle on, delayed ACKs add ~40 ms to
    # every keep-alive response.
    disable_nagle_algorithm = True
    server: SandboxHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and benchmarks read stdout

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _read_body(self) -> tuple[bytes, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return raw, None
        try:
            return raw, decode(raw)
        except ValueError:
            raise ApiError(400, "The request body is not valid JSON.") from None

    def _handle(self, method: str) -> None:
        sandbox = self.server.sandbox
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            _, body = self._read_body()
        except ApiError as exc:
            self._send(Response(exc.status, error_body(exc.status, exc.message)))
            return
        if path.startswith("/_sandbox/") or path.startswith("/_link/"):
            self._send(sandbox.control(method, path, params, body))
            return
        sandbox.record_request(method, split.path, params)
        company = path.split("/")[2] if path.startswith("/companies/") else None
        if not self._authorised():
            self._send(Response(401, error_body(401, "Unauthorized")))
            return
        refused = sandbox.refuse(self.client_address[0], company)
        if refused is not None:
            if refused.status:
                self._send(refused)
            else:
                self._drop()
            return
        response, delay = sandbox.limits.admit(company, path)
        if response is not None:
            self._send(response)
            return
        action = sandbox.company_faults.action(company, path) or sandbox.limits.scripted_action(path)
        # In flight while the answer is being made; it leaves the count before it is written,
        # so a client that has read an answer and sends the next request is never over the limit.
        answer: Response | None = None  # None: drop the connection unanswered
        truncate = False
        with sandbox.limits.flight(company):
            if action is not None and action.kind == "timeout":
                delay += action.seconds
            if sandbox.settings.latency_ms or delay:
                time.sleep(sandbox.settings.latency_ms / 1000 + delay)
            draw = sandbox.limits.draw()
            s = sandbox.settings
            if action is not None and action.kind != "timeout":
                answer = sandbox.faulty_answer(action, method, path, params, body)
            elif draw < s.drop_rate:
                pass
            elif draw < s.drop_rate + s.error_rate:
                status = 500 if int(draw * 1e9) % 2 == 0 else 503
                answer = Response(status, error_body(status, "Injected server error"))
            else:
                answer = sandbox.serve(method, path, params, body)
                truncate = (draw < s.drop_rate + s.error_rate + s.truncate_rate and answer.status == 200
                            and len(answer.body) > 1)
        if answer is None:
            self._drop()
            return
        if action is not None and action.kind in ("trickle", "silent"):
            self._send_slowly(answer, action)
            return
        self._send(answer, truncate=truncate)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(2)

    def _send_slowly(self, response: Response, action: Action) -> None:
        """Headers at once, then the body a byte every ``action.seconds`` (trickle), or nothing more
        for up to 5 minutes (silent); ends when the client hangs up."""
        self.close_connection = True
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        try:
            self.wfile.flush()
            if action.kind == "silent":
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline and not self.server.sandbox.stopping.wait(0.2):
                    self.wfile.write(b"")
                return
            for byte in response.body:
                if self.server.sandbox.stopping.wait(action.seconds):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        except OSError:
            return

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        return header == self.server.sandbox.auth_header

    def _send(self, response: Response, *, truncate: bool = False) -> None:
        sandbox = self.server.sandbox
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in {**sandbox.limits.headers(len(sandbox.world.companies)), **response.headers}.items():
            self.send_header(name, value)
        if truncate:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        try:
            self.wfile.write(response.body[: len(response.body) // 2] if truncate else response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sandbox: SandboxApp


class SandboxApp:
    """Routing glue between HTTP, the API, the sandbox-only control routes and the limits."""

    def __init__(self, settings: Settings, base_url: str) -> None:
        self.settings = settings
        # With a data directory the world outlives the process (see store.py); else it is in memory only.
        self.store = WorldStore(settings.data_dir) if settings.data_dir else None
        self.world = self.store.open(settings, base_url) if self.store else World(settings, base_url)
        self.api = Api(self.world)
        if settings.webhook_url:
            self.world.webhooks = WebhookSender(settings.webhook_url, settings.webhook_secret,
                                                speedup=settings.webhook_retry_speedup)
        self.limits = Limits(settings)
        self.auth_header = "Basic " + base64.b64encode(settings.key.encode()).decode()
        self.requests: list[tuple[str, str, dict[str, str], float]] = []
        self.requests_lock = threading.Lock()
        self.company_faults = CompanyFaults()
        self.ip = IpProtection(settings.ip_limit_per_minute, settings.ip_block_after, settings.ip_block_seconds,
                               settings.seed)
        self.budgets = CompanyBudgets(settings.company_daily_quota)
        self.stopping = threading.Event()  # set when the server stops: slow answers end
        self.delete_after: dict[str, Any] | None = None  # {"path", "after", "companyId"}: delete it then

    def record_request(self, method: str, path: str, params: dict[str, str]) -> None:
        with self.requests_lock:
            if len(self.requests) < 200_000:
                self.requests.append((method, path, params, time.time()))

    def refuse(self, ip: str, company_id: str | None) -> Response | None:
        """Codat's IP protection and per-company budget: a 429/403 to send, a Response with status
        0 to close the connection unanswered, or None to go on."""
        verdict = self.ip.admit(ip)
        if verdict is not None:
            kind, retry_after = verdict
            if kind == "429":
                return Response(429, error_body(429, "Too many requests from this IP address; slow down."),
                                headers={"Retry-After": f"{retry_after:.0f}"})
            if self.ip.block_mode == "forbidden":
                return Response(403, error_body(403, "Forbidden: this IP address is blocked."))
            return Response(0)
        wait = self.budgets.spend(company_id)
        if wait is not None:
            return Response(429, error_body(429, "This company's daily request limit has been reached."),
                            headers={"Retry-After": f"{wait:.0f}"})
        return None

    def faulty_answer(self, action: Action, method: str, path: str, params: dict[str, str],
                      body: Any) -> Response | None:
        """The answer a company fault gives instead of the real one (None: drop the connection)."""
        if action.kind in ("forbidden", "forbidden_data_type"):
            return Response(403, error_body(403, "The API key is not allowed to access this resource."))
        if action.kind == "server_error":
            return Response(500, error_body(500, "Injected server error"))
        if action.kind == "drop":
            return None
        if action.kind == "invalid_json":
            return Response(200, raw=TRUNCATED)
        if action.kind == "deleted":
            company = path.split("/")[2]
            with self.world.lock:
                self.world.companies.pop(company, None)
        answer = self.serve(method, path, params, body)
        if action.kind == "no_id" and answer.status == 200 and "/data/" in path:
            page = decode(answer.body)
            if isinstance(page, dict) and isinstance(page.get("results"), list):
                for record in page["results"]:
                    record.pop("id", None)
                answer = Response(200, page)
        return answer

    def save(self) -> None:
        """Keep the world in its data directory (no-op in memory); call with the world's lock held."""
        if self.store is not None:
            self.store.save(self.world)

    def serve(self, method: str, path: str, params: dict[str, str], body: Any) -> Response:
        try:
            with self.world.lock:
                self._delete_if_due(path)
                found = self.api.route(method, path)
                if found is None:
                    raise ApiError(404, f"No resource was found at {path}")
                handler, args = found
                try:
                    return handler(params, body, **args)
                finally:
                    if method != "GET":
                        self.save()
        except QueryError as exc:
            return Response(400, error_body(400, str(exc)))
        except ApiError as exc:
            return Response(exc.status, error_body(exc.status, exc.message))

    def _delete_if_due(self, path: str) -> None:
        """``delete_after``: once ``after`` requests to exactly ``path`` were served, the company goes
        (a company deleted while a list is paged, or between two requests of the tap)."""
        rule = self.delete_after
        if rule is None or rule["path"] != path:
            return
        if rule["after"] > 0:
            rule["after"] -= 1
            return
        self.world.companies.pop(rule["companyId"], None)
        self.delete_after = None

    def control(self, method: str, path: str, params: dict[str, str], body: Any) -> Response:
        """Sandbox-only routes: linking as a customer, the clock, the truth, faults, stats."""
        try:
            with self.world.lock:
                try:
                    return self._control(method, path, params, body or {})
                finally:
                    if method != "GET" or path.startswith("/_link/"):
                        self.save()
        except ApiError as exc:
            return Response(exc.status, error_body(exc.status, exc.message))

    def _control(self, method: str, path: str, params: dict[str, str], body: Any) -> Response:
        link = re.fullmatch(rf"/_link/companies/({UUID})/connections/({UUID})/start", path)
        if link and method == "GET":
            connection = self.world.connection(link.group(1), link.group(2))
            try:
                self.world.open_link(connection, params.get("otp"))
            except ApiError as exc:
                page = f"<html><body><h1>Link not valid</h1><p>{exc.message}</p></body></html>"
                return Response(exc.status, raw=page.encode(), content_type="text/html; charset=utf-8")
            page = (f"<html><body><h1>{connection.platform.name} connected</h1>"
                    "<p>You can close this window.</p></body></html>")
            return Response(200, raw=page.encode(), content_type="text/html; charset=utf-8")
        if path == "/_sandbox/advance" and method == "POST":
            arguments = {"seconds": int(body.get("seconds", 3600)), "updates": body.get("updates"),
                         "inserts": body.get("inserts"), "same_instant": bool(body.get("same_instant")),
                         "companies": body.get("companies"), "data_types": body.get("dataTypes")}
            if body.get("after_pages"):  # later: once that many commerce data pages have been served
                self.world.advance_after = (self.world.data_pages + int(body["after_pages"]), arguments)
                return Response(202, {"after_pages": int(body["after_pages"])})
            return Response(200, self.world.advance(**arguments))
        if path == "/_sandbox/records" and method == "POST":
            self.world.set_literal(body["companyId"], body["connectionId"], body["dataType"], body["records"],
                                   bool(body.get("ordered", True)))
            return Response(204)
        if path == "/_sandbox/truth" and method == "GET":
            return Response(200, self.world.truth(params.get("companyId")))
        if path == "/_sandbox/faults" and method == "POST":
            for name in ("latency_ms", "error_rate", "drop_rate", "truncate_rate", "concurrency_limit",
                         "rate_limit_per_minute", "daily_quota", "retry_after", "drift", "change_every",
                         "page_size_cap", "nulls_first", "restamp_every", "restamp_count", "restamp_times",
                         "restamp_path", "restamp_within_second", "ip_limit_per_minute", "ip_block_after",
                         "ip_block_seconds", "company_daily_quota"):
                if name in body:
                    setattr(self.settings, name, type(getattr(self.settings, name))(body[name]))
            if {"ip_limit_per_minute", "ip_block_after", "ip_block_seconds"} & set(body):
                s = self.settings
                self.ip = IpProtection(s.ip_limit_per_minute, s.ip_block_after, s.ip_block_seconds, s.seed)
            if "company_daily_quota" in body:
                self.budgets = CompanyBudgets(self.settings.company_daily_quota)
            if "company_faults" in body:
                try:
                    self.company_faults.set({k: Fault.from_json(v) for k, v in (body["company_faults"] or {}).items()})
                except ValueError as exc:
                    raise ApiError(400, str(exc)) from None
            if "delete_after" in body:
                rule = body["delete_after"]
                self.delete_after = None if rule is None else {
                    "path": str(rule["path"]), "after": int(rule.get("after", 0)), "companyId": str(rule["companyId"])}
            if "fail_companies" in body:
                spec = body["fail_companies"]
                chosen = CompanyFaults.choose(sorted(self.world.companies), float(spec.get("share", 0.01)),
                                              list(spec.get("kinds") or []), self.settings.seed,
                                              spec.get("dataType", "commerce-taxComponents"))
                self.company_faults.set(chosen)
            if "script" in body:
                script = body["script"]
                self.limits.script = None if script is None else {
                    "status": int(script.get("status", 500)), "after": int(script.get("after", 0)),
                    "count": int(script.get("count", 1)), "message": script.get("message", "Injected fault"),
                    "retry_after": script.get("retry_after"), "delay": float(script.get("delay", 0)),
                    "path": script.get("path", ""), "body": script.get("body"), "mode": script.get("mode"),
                    "seconds": float(script.get("seconds", 0.5))}
            answer = {k: getattr(self.settings, k) for k in vars(self.settings) if k != "api_key"}
            return Response(200, {**answer, "company_faults": {k: f.to_json() for k, f in
                                                               self.company_faults.faults.items()}})
        if path == "/_sandbox/webhooks" and method in ("GET", "POST"):
            if self.world.webhooks is None:
                raise ApiError(409, "the sandbox was started without --webhook-url")
            return Response(200, self.world.webhooks.control(body) if method == "POST" else
                            self.world.webhooks.stats())
        if path == "/_sandbox/requests" and method == "GET":
            with self.requests_lock:
                listed = [{"method": m, "path": p, "params": q, "at": t} for m, p, q, t in self.requests]
            return Response(200, {"requests": listed, "maxInFlight": dict(self.limits.max_in_flight),
                                  "throttled": self.limits.throttled, "ipRefused": self.ip.refused,
                                  "ipBlocked": self.ip.blocked})
        if path == "/_sandbox/requests" and method == "DELETE":
            with self.requests_lock:
                self.requests.clear()
            self.limits.max_in_flight.clear()
            self.limits.throttled = 0
            self.ip.refused = self.ip.blocked = 0
            return Response(204)
        raise ApiError(404, f"No resource was found at {path}")


def build_server(settings: Settings, host: str = "127.0.0.1", port: int = 0) -> SandboxHTTPServer:
    server = SandboxHTTPServer((host, port), Handler)
    server.sandbox = SandboxApp(settings, base_url_of(server))
    return server


def base_url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}" if isinstance(host, str) else f"http://{host.decode()}:{port}"


__all__ = ["SandboxApp", "SandboxHTTPServer", "base_url_of", "build_server"]
