"""The sandbox, point by point (issue: Codat sandbox), always over real HTTP."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
import pytest
import requests
from oas_convert import component

from tap_codat_commerce.sandbox.cli import parser as cli_parser
from tap_codat_commerce.sandbox.cli import sandbox_process
from tests.conftest import Api

DATA = "/companies/{c}/connections/{k}/data/{path}"
REAL_KEYS = {"fztf": "Shopify", "ltpp": "WooCommerce", "zsth": "Square", "exgd": "Stripe", "ugxp": "Zettle",
             "fqly": "Clover", "qkdj": "Amazon Seller Central", "vqzp": "BigCommerce", "ldgh": "Lightspeed K",
             "aiwb": "Commerce Sandbox"}
SPEC_COMPONENT = {
    "commerce-customers": "Customer", "commerce-disputes": "Dispute", "commerce-info": "CompanyInfo",
    "commerce-locations": "Location", "commerce-orders": "Order", "commerce-payments": "Payment",
    "commerce-paymentMethods": "PaymentMethod", "commerce-products": "Product",
    "commerce-productCategories": "ProductCategory", "commerce-taxComponents": "TaxComponent",
    "commerce-transactions": "Transaction",
}
ERROR_FIELDS = {"statusCode", "service", "error", "correlationId", "validation", "canBeRetried",
                "detailedErrorCode"}


@pytest.fixture
def api(start_sandbox) -> Api:
    return Api(start_sandbox(companies=10, orders=120))


def first_connection(api: Api, platform: str | None = None) -> tuple[str, dict[str, Any]]:
    return next((c, k) for c, k in api.commerce_connections() if platform in (None, k["platformName"]))


def data_path(company: str, connection: dict[str, Any], path: str) -> str:
    return DATA.format(c=company, k=connection["id"], path=path)


def all_pages(api: Api, path: str, **params: Any) -> list[dict[str, Any]]:
    results, page = [], 1
    while True:
        body = api.get(path, params={**params, "page": page, "pageSize": 5000}).json()
        results += body["results"]
        if "next" not in body["_links"]:
            return results
        page += 1


# 1 -------------------------------------------------------------------------------------------
def test_every_request_needs_the_basic_key(api):
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"wrong").decode()},
                    {"Authorization": api.sandbox.api_key}):
        response = requests.get(api.base + "/companies", headers=headers, timeout=10)
        assert response.status_code == 401
        body = response.json()
        assert set(body) >= ERROR_FIELDS and body["statusCode"] == 401 and body["error"] == "Unauthorized"
    assert api.get("/companies").status_code == 200


# 2 -------------------------------------------------------------------------------------------
def test_company_lifecycle(api):
    created = api.post("/companies", json={"name": "Acme (Trading) Ltd", "description": "d",
                                           "tags": {"region": "uk"}})
    assert created.status_code == 200
    company = created.json()
    assert company["name"] == "Acme Trading Ltd"  # forbidden characters are stripped, as Codat does
    assert company["tags"] == {"region": "uk"} and company["dataConnections"] == []
    assert api.get(f"/companies/{company['id']}").json()["id"] == company["id"]
    listed = api.get("/companies", params={"pageSize": 5}).json()
    assert listed["totalResults"] == 11 and len(listed["results"]) == 5
    assert api.delete(f"/companies/{company['id']}").status_code == 204
    assert api.get(f"/companies/{company['id']}").status_code == 404
    assert api.post("/companies", json={"name": "((("}).status_code == 400
    assert api.post("/companies", json={"description": "no name"}).status_code == 400


def test_connection_lifecycle(api):
    company = api.post("/companies", json={"name": "Linker"}).json()
    created = api.post(f"/companies/{company['id']}/connections", json={"platformKey": "ltpp"})
    assert created.status_code == 200
    connection = created.json()
    assert connection["status"] == "PendingAuth" and connection["sourceType"] == "Commerce"
    assert connection["platformName"] == "WooCommerce" and connection["linkUrl"].endswith("/start")
    listed = api.get(f"/companies/{company['id']}/connections").json()
    assert [c["id"] for c in listed["results"]] == [connection["id"]]
    path = f"/companies/{company['id']}/connections/{connection['id']}"
    assert api.patch(path, json={"status": "Unlinked"}).status_code == 400  # only Linked can be unlinked
    requests.get(connection["linkUrl"], timeout=10)
    unlinked = api.patch(path, json={"status": "Unlinked"})
    assert unlinked.status_code == 200 and unlinked.json()["status"] == "Unlinked"
    assert api.post(f"/companies/{company['id']}/connections", json={"platformKey": "XX"}).status_code == 400


def test_integrations_list_commerce_platforms_with_features(api):
    body = api.get("/integrations", params={"pageSize": 100}).json()
    by_key = {i["key"]: i for i in body["results"]}
    assert {k: by_key[k]["name"] for k in REAL_KEYS} == REAL_KEYS
    stripe = {f["dataType"]: f["supportedFeatures"][0]["featureState"] for f in by_key["exgd"]["datatypeFeatures"]}
    assert stripe["commerce-orders"] == "NotSupported" and stripe["commerce-payments"] == "Release"
    assert api.get("/integrations/fztf").json()["sourceType"] == "Commerce"
    assert api.get("/integrations/nope").status_code == 404


def test_sync_settings_round_trip(api):
    profile = api.get("/profile/syncSettings").json()
    assert {"clientId", "settings", "overridesDefaults"} <= set(profile)
    for setting in profile["settings"]:
        if setting["dataType"].startswith("commerce-"):
            setting["fetchOnFirstLink"] = True
    assert api.post("/profile/syncSettings", json=profile).status_code == 204
    again = api.get("/profile/syncSettings").json()
    assert all(s["fetchOnFirstLink"] for s in again["settings"] if s["dataType"].startswith("commerce-"))
    assert api.post("/profile/syncSettings", json={"settings": []}).status_code == 400
    company = api.companies()[0]["id"]
    body = {"companyId": company, "settings": again["settings"][:2], "overridesDefaults": True}
    assert api.post(f"/companies/{company}/syncSettings", json=body).status_code == 204
    assert api.get(f"/companies/{company}/syncSettings").json()["settings"] == again["settings"][:2]


def test_refresh_queues_pull_operations(api):
    company, connection = first_connection(api)
    queued = api.post(f"/companies/{company}/data/queue/commerce-orders",
                      params={"connectionId": connection["id"]})
    assert queued.status_code == 200
    operation = queued.json()
    assert operation["dataType"] == "commerce-orders" and operation["connectionId"] == connection["id"]
    history = api.get(f"/companies/{company}/data/history").json()
    assert operation["id"] in {h["id"] for h in history["results"]}
    assert api.get(f"/companies/{company}/data/history/{operation['id']}").json()["id"] == operation["id"]
    assert api.post(f"/companies/{company}/data/all").status_code == 204
    assert api.post(f"/companies/{company}/data/queue/commerce-info").status_code == 400


# 3 and 4 ---------------------------------------------------------------------------------------
def enable_commerce_first_link(api: Api) -> None:
    profile = api.get("/profile/syncSettings").json()
    for setting in profile["settings"]:
        setting["fetchOnFirstLink"] = setting["dataType"].startswith("commerce-")
    assert api.post("/profile/syncSettings", json=profile).status_code == 204


@pytest.mark.slow
def test_linking_queues_first_sync_and_sync_runs_its_life_cycle(start_sandbox):
    api = Api(start_sandbox(companies=0, orders=50, sync_delay=3))  # 1 s a phase: no poll can miss one
    enable_commerce_first_link(api)
    company = api.post("/companies", json={"name": "Fresh"}).json()["id"]
    connection = api.post(f"/companies/{company}/connections", json={"platformKey": "exgd"}).json()
    orders = DATA.format(c=company, k=connection["id"], path="commerce-orders")
    payments = DATA.format(c=company, k=connection["id"], path="commerce-payments")
    assert api.get(payments).json()["error"] == "The data set has not been requested."
    assert api.get(f"/companies/{company}/dataStatus").json()["commerce-payments"] == {
        "dataType": "commerce-payments"}  # never synced: no currentStatus, as Codat documents
    page = requests.get(connection["linkUrl"], timeout=10)  # the customer authorises access
    assert page.status_code == 200 and "connected" in page.text
    assert api.get(f"/companies/{company}/connections/{connection['id']}").json()["status"] == "Linked"
    seen, started = [], time.monotonic()
    while time.monotonic() - started < 10:
        status = api.get(f"/companies/{company}/dataStatus").json()["commerce-payments"]["currentStatus"]
        if not seen or seen[-1] != status:
            seen.append(status)
            if status != "Complete":
                assert api.get(payments).status_code == 409
        if status == "Complete":
            break
        time.sleep(0.05)
    assert seen == ["Queued", "Fetching", "Mapping", "Complete"]
    assert api.get(payments).status_code == 200
    unsupported = api.get(orders)
    assert unsupported.status_code == 404
    assert unsupported.json()["error"] == "Datatype commerce-orders not supported by platform Stripe"
    assert api.get(f"/companies/{company}/dataStatus").json()["commerce-orders"]["currentStatus"] == "NotSupported"
    history = api.get(f"/companies/{company}/data/history", params={"pageSize": 100}).json()["results"]
    assert {h["dataType"] for h in history} == {
        "commerce-companyInfo", "commerce-customers", "commerce-disputes", "commerce-locations",
        "commerce-orders", "commerce-paymentMethods", "commerce-payments", "commerce-productCategories",
        "commerce-products", "commerce-taxComponents", "commerce-transactions"}


def test_company_created_by_api_is_empty_until_linked(start_sandbox):
    api = Api(start_sandbox(companies=0, orders=5))
    company = api.post("/companies", json={"name": "Empty"}).json()["id"]
    connection = api.post(f"/companies/{company}/connections", json={"platformKey": "aiwb"}).json()
    assert api.truth() == {}
    assert api.get(DATA.format(c=company, k=connection["id"], path="commerce-orders")).status_code == 409


# 5 -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spec_validators(codat_spec) -> dict[str, jsonschema.protocols.Validator]:
    return {path: jsonschema.Draft202012Validator(component(name, faithful=True))
            for path, name in SPEC_COMPONENT.items()}


@pytest.mark.slow
def test_every_record_of_every_platform_validates_against_the_spec(api, spec_validators):
    checked: Counter[str] = Counter()
    for company, connection in api.commerce_connections():
        for path, validator in spec_validators.items():
            response = api.get(data_path(company, connection, path), params={"pageSize": 5000})
            if response.status_code == 404:
                continue
            body = response.json()
            records = [body] if path == "commerce-info" else body["results"]
            for record in records:
                errors = [e.message for e in validator.iter_errors(record)]
                assert not errors, (connection["platformName"], path, errors[:3])
                checked[path] += 1
    assert set(checked) == set(SPEC_COMPONENT)
    assert checked["commerce-orders"] >= 600


def test_orders_reference_real_records_and_add_up(api):
    company, connection = first_connection(api, "Commerce Sandbox")
    fetch = {path: all_pages(api, data_path(company, connection, path))
             for path in ("commerce-orders", "commerce-customers", "commerce-products", "commerce-locations",
                          "commerce-payments", "commerce-taxComponents")}
    ids = {path: {r["id"] for r in rows} for path, rows in fetch.items()}
    payments = {p["id"]: p for p in fetch["commerce-payments"]}
    currencies: Counter[str] = Counter()
    guests = 0
    for order in fetch["commerce-orders"]:
        if order.get("customerRef") is None:
            guests += 1
        else:
            assert order["customerRef"]["id"] in ids["commerce-customers"]
        assert order["locationRef"]["id"] in ids["commerce-locations"]
        for item in order["orderLineItems"]:
            assert item["productRef"]["id"] in ids["commerce-products"]
            assert item["taxes"][0]["taxComponentRef"]["id"] in ids["commerce-taxComponents"]
        lines = sum(i["totalAmount"] for i in order["orderLineItems"])
        charges = sum(s["totalAmount"] for s in order["serviceCharges"])
        assert order["totalAmount"] == pytest.approx(lines + charges, abs=0.011)
        for payment in order["payments"]:
            # the payment is what was paid: the order's total before its refund
            assert payments[payment["id"]]["amount"] == pytest.approx(
                order["totalAmount"] + abs(order["totalRefund"]), abs=0.001)
            assert payment["currency"] == order["currency"] == payments[payment["id"]]["currency"]
        currencies[order["currency"]] += 1
    assert 0 < guests < len(fetch["commerce-orders"])
    # amounts are in each order's own currency: the shop's, a cross-border one, and XXX (unknown)
    assert set(currencies) == {"GBP", "EUR", "XXX"} and currencies["GBP"] > currencies["EUR"] > 0


def test_refunds_come_with_either_sign_and_a_negative_line(start_sandbox):
    """Codat's schema says totalRefund <= 0, its guides and some platforms send it positive: the
    sandbox does both. A refund is a line with a negative quantity, and totalAmount includes it."""
    api = Api(start_sandbox(companies=12, orders=60, accounting_every=0))
    api.advance(seconds=3600, updates=30)
    signs: dict[str, set[int]] = {}
    for company, connection in api.commerce_connections():
        response = api.get(data_path(company, connection, "commerce-orders"), params={"pageSize": 500})
        if response.status_code != 200:
            continue
        for order in response.json()["results"]:
            refund_lines = [line for line in order["orderLineItems"] if line["quantity"] < 0]
            if not order["totalRefund"]:
                assert not refund_lines
                continue
            assert len(refund_lines) == 1
            assert abs(order["totalRefund"]) == pytest.approx(-refund_lines[0]["totalAmount"], abs=0.001)
            lines = sum(line["totalAmount"] for line in order["orderLineItems"])
            charges = sum(s["totalAmount"] for s in order["serviceCharges"])
            assert order["totalAmount"] == pytest.approx(lines + charges, abs=0.011)
            signs.setdefault(connection["platformName"], set()).add(1 if order["totalRefund"] > 0 else -1)
    assert signs.get("Square") == {1} and signs.get("Shopify") == {-1}


def test_dates_come_in_the_forms_codat_sends(api):
    forms: Counter[str] = Counter()
    for company, connection in api.commerce_connections():
        for path in ("commerce-orders", "commerce-payments", "commerce-customers"):
            response = api.get(data_path(company, connection, path), params={"pageSize": 200})
            if response.status_code != 200:
                continue
            for record in response.json()["results"]:
                for key in ("createdDate", "sourceModifiedDate", "closedDate", "dueDate", "modifiedDate"):
                    value = record.get(key)
                    if value is None:
                        forms["null"] += 1
                    elif value == "0001-01-01T00:00:00":
                        forms["sentinel"] += 1
                    elif re.fullmatch(r"\d{4}-\d\d-\d\d", value):
                        forms["date-only"] += 1
                    elif value.endswith("Z"):
                        forms["utc"] += 1
                    elif re.search(r"[+-]\d\d:\d\d$", value):
                        forms["offset"] += 1
                    else:
                        forms["unqualified"] += 1
    assert {"null", "sentinel", "date-only", "utc", "offset", "unqualified"} <= set(forms)


def test_data_is_deterministic_per_seed_and_varies_by_platform(start_sandbox):
    first, second, other = (Api(start_sandbox(companies=3, orders=20, seed=s)) for s in (7, 7, 8))
    page = {}
    for name, api in (("first", first), ("second", second), ("other", other)):
        company, connection = first_connection(api, "Shopify")
        page[name] = api.get(data_path(company, connection, "commerce-orders")).json()["results"]
    assert page["first"] == page["second"] and page["first"] != page["other"]
    shop = first_connection(first, "Shopify")
    sandbox_platform = first_connection(first, "Commerce Sandbox")
    shopify_id = first.get(data_path(*shop, "commerce-orders")).json()["results"][0]["id"]
    sandbox_id = first.get(data_path(*sandbox_platform, "commerce-orders")).json()["results"][0]["id"]
    assert shopify_id.isdigit() and not sandbox_id.isdigit()


# 6 -------------------------------------------------------------------------------------------
def test_paging_is_codats(api):
    company, connection = first_connection(api, "Commerce Sandbox")
    path = data_path(company, connection, "commerce-orders")
    default = api.get(path).json()
    assert default["pageNumber"] == 1 and default["pageSize"] == 100 and len(default["results"]) == 100
    assert default["totalResults"] == 120
    assert default["_links"]["self"]["href"] == path
    assert default["_links"]["next"]["href"].startswith(path + "?page=2")
    assert "previous" not in default["_links"]
    last = api.get(path, params={"page": 2}).json()
    assert len(last["results"]) == 20 and "next" not in last["_links"] and "previous" in last["_links"]
    past = api.get(path, params={"page": 3}).json()
    assert past["results"] == [] and past["totalResults"] == 120
    assert api.get(path, params={"pageSize": 5001}).status_code == 400
    assert api.get(path, params={"page": 0}).status_code == 400
    assert api.get(path, params={"pageSize": "x"}).status_code == 400
    ids = [r["id"] for p in (1, 2, 3, 4) for r in api.get(path, params={"page": p, "pageSize": 33}).json()["results"]]
    assert len(ids) == len(set(ids)) == 120


# 7 -------------------------------------------------------------------------------------------
def query(api: Api, path: str, text: str, **params: Any) -> requests.Response:
    return api.get(path, params={"query": text, "pageSize": 5000, **params})


def test_query_language(api):
    company, connection = first_connection(api, "Commerce Sandbox")
    path = data_path(company, connection, "commerce-orders")
    everything = all_pages(api, path)
    some = everything[17]
    assert [r["id"] for r in query(api, path, f"id={some['id']}").json()["results"]] == [some["id"]]
    assert query(api, path, f"id!={some['id']}").json()["totalResults"] == 119
    big = [r for r in everything if r["totalAmount"] > 300]
    assert query(api, path, "totalAmount>300").json()["totalResults"] == len(big)
    assert query(api, path, "totalAmount<=300").json()["totalResults"] == 120 - len(big)
    middle = some["modifiedDate"]
    later = [r for r in everything if r["modifiedDate"] >= middle]
    assert query(api, path, f"modifiedDate>={middle}").json()["totalResults"] == len(later)
    assert query(api, path, f"modifiedDate<{middle}").json()["totalResults"] == 120 - len(later)
    assert query(api, path, f"modifiedDate>{middle[:10]}").json()["totalResults"] > 0  # bare dates work
    customer = next(r for r in everything if r.get("customerRef"))["customerRef"]["id"]
    dotted = [r for r in everything if r.get("customerRef", {}).get("id") == customer]
    assert query(api, path, f"customerRef.id={customer}").json()["totalResults"] == len(dotted)
    number = query(api, path, "orderNumber~#10").json()["results"]
    assert number and all("#10" in r["orderNumber"] for r in number)
    both = query(api, path, f"totalAmount>300&&modifiedDate>={middle}").json()["totalResults"]
    assert both == len([r for r in big if r["modifiedDate"] >= middle])
    either = query(api, path, f"totalAmount>300||modifiedDate>={middle}").json()["totalResults"]
    assert either == len([r for r in everything if r["totalAmount"] > 300 or r["modifiedDate"] >= middle])
    grouped = query(api, path, f"{{totalAmount>300||totalAmount<50}}&&modifiedDate>={middle}").json()
    assert grouped["totalResults"] == len([r for r in later if r["totalAmount"] > 300 or r["totalAmount"] < 50])
    for bad in ("totalAmount>>", "{totalAmount>3", "=5", "totalAmount"):
        response = query(api, path, bad)
        assert response.status_code == 400
        assert response.json()["error"] == "Error parsing query - Malformed query."
    unknown = query(api, path, "colour=red")
    assert unknown.status_code == 400 and "Could not resolve property colour" in unknown.json()["error"]


def test_order_by(api):
    company, connection = first_connection(api, "Commerce Sandbox")
    path = data_path(company, connection, "commerce-orders")
    body = api.get(path, params={"orderBy": "totalAmount", "pageSize": 500}).json()
    ascending = [r["totalAmount"] for r in body["results"]]
    assert ascending == sorted(ascending)
    newest = api.get(path, params={"orderBy": "-modifiedDate", "pageSize": 500}).json()["results"]
    stamps = [r["modifiedDate"] for r in newest]
    assert stamps == sorted(stamps, reverse=True) and len(stamps) == 120


# 8 -------------------------------------------------------------------------------------------
def test_advancing_the_clock_changes_and_adds_records_and_truth_follows(api):
    company, connection = first_connection(api, "Commerce Sandbox")
    path = data_path(company, connection, "commerce-orders")
    before = {r["id"]: r["modifiedDate"] for r in all_pages(api, path)}
    watermark = max(before.values())
    result = api.advance(seconds=7200, updates=5, inserts=3)
    assert result["changes"][company][connection["id"]]["commerce-orders"] == {"updated": 5, "inserted": 3}
    changed = query(api, path, f"modifiedDate>{watermark}", orderBy="modifiedDate").json()["results"]
    assert len(changed) == 8
    assert len([r for r in changed if r["id"] in before]) == 5
    assert all(r["modifiedDate"] > watermark for r in changed)
    after = all_pages(api, path)
    assert len(after) == 123
    truth = api.truth()[company][connection["id"]]["commerce-orders"]
    assert sorted(t["id"] for t in truth) == sorted(r["id"] for r in after)
    assert {t["id"]: t["modifiedDate"] for t in truth} == {r["id"]: r["modifiedDate"] for r in after}


# 9 -------------------------------------------------------------------------------------------
def test_rate_limit_headers_on_every_response(api):
    for response in (api.get("/companies"), api.get("/companies/nope")):
        assert {"X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"} <= set(response.headers)
    first = int(api.get("/companies").headers["X-Rate-Limit-Remaining"])
    assert int(api.get("/companies").headers["X-Rate-Limit-Remaining"]) == first - 1


@pytest.mark.slow
def test_per_company_concurrency_limit(start_sandbox):
    # 2 s per answer: all 16 requests are surely in flight together, even on a loaded machine
    api = Api(start_sandbox(companies=1, orders=10, concurrency_limit=10, latency_ms=2000, retry_after=2))
    company = api.companies()[0]["id"]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: api.get(f"/companies/{company}/connections"), range(16)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 10, 429: 6}
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.headers["Retry-After"] == "2" and limited.json()["statusCode"] == 429
    assert api.requests_log()["maxInFlight"][company] == 10


def test_per_minute_limit(start_sandbox):
    api = Api(start_sandbox(companies=1, orders=10, rate_limit_per_minute=5))
    statuses = [api.get("/companies").status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    retry_after = int(api.get("/companies").headers["Retry-After"])
    assert 1 <= retry_after <= 60


def test_daily_quota_retry_after_reaches_midnight(start_sandbox):
    api = Api(start_sandbox(companies=1, orders=10, daily_quota=2))
    assert [api.get("/companies").status_code for _ in range(3)] == [200, 200, 429]
    assert int(api.get("/companies").headers["Retry-After"]) > 0
    assert api.get("/companies").headers["X-Rate-Limit-Remaining"] == "0"


def test_latency_is_injected(start_sandbox):
    api = Api(start_sandbox(companies=1, orders=10, latency_ms=150))
    started = time.monotonic()
    api.get("/companies")
    assert time.monotonic() - started >= 0.15


def fault_pattern(start_sandbox, seed: int, **faults: Any) -> list[str]:
    api = Api(start_sandbox(companies=1, orders=10, seed=seed, **faults))
    outcome = []
    for _ in range(40):
        session = requests.Session()  # a new connection each time: a drop must not spoil the next
        session.headers.update(api.session.headers)
        try:
            response = session.get(api.base + "/companies", timeout=10)
            response.json()
            outcome.append(str(response.status_code))
        except requests.exceptions.ChunkedEncodingError:
            outcome.append("truncated")
        except requests.exceptions.JSONDecodeError:
            outcome.append("truncated")
        except requests.ConnectionError:
            outcome.append("dropped")
    return outcome


def test_faults_are_injected_and_deterministic_per_seed(start_sandbox):
    faults = {"error_rate": 0.2, "drop_rate": 0.1, "truncate_rate": 0.2}
    first = fault_pattern(start_sandbox, 5, **faults)
    assert fault_pattern(start_sandbox, 5, **faults) == first
    assert fault_pattern(start_sandbox, 6, **faults) != first
    kinds = Counter(first)
    assert {"200", "dropped", "truncated"} <= set(kinds) and kinds["500"] + kinds["503"] > 0
    assert fault_pattern(start_sandbox, 5) == ["200"] * 40  # all off by default


def test_scripted_fault_answers_a_status_after_n_requests(api):
    api.faults(script={"status": 401, "after": 2, "count": 2})
    assert [api.get("/companies").status_code for _ in range(5)] == [200, 200, 401, 401, 200]


# 10 ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_million_orders_are_served_by_index(start_sandbox):
    sandbox = start_sandbox(companies=1, orders=1_000_000)
    api = Api(sandbox)
    company, connection = first_connection(api)
    path = data_path(company, connection, "commerce-orders")
    started = time.monotonic()
    last = api.get(path, params={"page": 200, "pageSize": 5000}).json()
    assert time.monotonic() - started < 5
    assert last["totalResults"] == 1_000_000 and len(last["results"]) == 5000 and "next" not in last["_links"]
    assert last["results"][-1]["orderNumber"] == "#1001000"
    window = query(api, path, f"modifiedDate>={last['results'][0]['modifiedDate']}", orderBy="modifiedDate").json()
    assert window["totalResults"] == 5000 and window["results"][0]["id"] == last["results"][0]["id"]
    api.advance(updates=10, inserts=10)
    changed = query(api, path, f"modifiedDate>{last['results'][-1]['modifiedDate']}").json()
    assert changed["totalResults"] == 20


# bad input ---------------------------------------------------------------------------------
def test_bad_input_gets_codat_errors_not_crashes(api):
    missing = api.get("/nowhere")
    assert missing.status_code == 404 and set(missing.json()) >= ERROR_FIELDS
    assert api.get("/companies/00000000-0000-0000-0000-000000000000").status_code == 404
    company, connection = first_connection(api)
    assert api.get(f"/companies/{company}/connections/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.get(f"/companies/{company}/connections/{connection['id']}/data/commerce-nothing").status_code == 404
    bad_json = api.session.post(api.base + "/companies", data=b"{not json",
                                headers={"Content-Type": "application/json"}, timeout=10)
    assert bad_json.status_code == 400 and bad_json.json()["error"] == "The request body is not valid JSON."
    assert api.delete("/integrations").status_code == 405
    assert api.get("/companies").status_code == 200  # still serving


def test_cli_prints_base_url_and_key_and_validates_flags(capsys):
    args = cli_parser().parse_args(["--port", "0", "--orders", "10", "--error-rate", "0.1"])
    assert args.orders == 10 and args.error_rate == 0.1
    with pytest.raises(SystemExit):
        cli_parser().parse_args(["--error-rate", "2"])
    assert "must be between 0 and 1" in capsys.readouterr().err


def test_cli_prints_its_url_and_key_and_stops_cleanly():
    with sandbox_process("--companies", "1", "--orders", "5") as (base_url, key):  # exit 0 is checked on leaving
        header = {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()}
        assert requests.get(base_url + "/companies", headers=header, timeout=10).json()["totalResults"] == 1


def test_threads_do_not_corrupt_state(api):
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(10):
                api.advance(updates=1, inserts=1)
                assert api.get("/companies").status_code == 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
