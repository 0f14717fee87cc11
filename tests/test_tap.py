"""The tap against the sandbox over real HTTP: completeness, increments, HTTP behaviour."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from tap_codat_commerce.codat.dates import canonical
from tap_codat_commerce.codat.http import CodatClient, QuotaExhaustedError, auth_header, parse_retry_after
from tests.conftest import STREAM_OF_DATA_TYPE, Api, run_cli, run_tap, tap_config, write_json

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")  # the one fixed-width form
COMMERCE_STREAMS = set(STREAM_OF_DATA_TYPE.values())
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def expected_ids(truth: dict) -> dict[str, dict[tuple[str, str], list[str | None]]]:
    """Truth as {stream: {(company, connection): sorted ids}}."""
    expected: dict[str, dict[tuple[str, str], list[str | None]]] = {}
    for company, connections in truth.items():
        for connection, data_types in connections.items():
            for data_type, rows in data_types.items():
                stream = STREAM_OF_DATA_TYPE[data_type]
                expected.setdefault(stream, {})[(company, connection)] = sorted(r["id"] for r in rows)
    return expected


def emitted_ids(run, stream: str) -> dict[tuple[str, str], list[str | None]]:
    return {key: sorted(ids) for key, ids in run.ids_by_connection(stream).items()}


@pytest.fixture
def sandbox(start_sandbox):
    return start_sandbox(companies=6, orders=150)


@pytest.mark.slow
def test_full_sync_emits_exactly_the_sandbox_records(sandbox):
    api = Api(sandbox)
    run = run_tap(tap_config(sandbox, page_size=40))
    truth = expected_ids(api.truth())
    assert set(truth) == COMMERCE_STREAMS
    for stream in COMMERCE_STREAMS:
        got = emitted_ids(run, stream)
        if stream == "company_info":
            assert set(got) == set(truth[stream]) and all(len(v) == 1 for v in got.values())
            continue
        assert got == truth[stream], stream  # nothing lost, no duplicates, nothing extra
    companies = {c["id"] for c in api.companies()}
    assert {r["id"] for r in run.records["companies"]} == companies
    connections = run.records["connections"]
    assert {c["sourceType"] for c in connections} == {"Commerce", "Accounting"}
    accounting = {c["id"] for c in connections if c["sourceType"] != "Commerce"}
    commerce_connections = {key[1] for stream in COMMERCE_STREAMS for key in run.ids_by_connection(stream)}
    assert accounting and not accounting & commerce_connections
    requested = {r["path"].split("/")[4] for r in api.requests_log()["requests"] if "/data/" in r["path"]}
    assert not requested & accounting  # never even asked


@pytest.mark.slow
def test_second_run_fetches_only_what_changed(sandbox):
    api = Api(sandbox)
    config = tap_config(sandbox, skip_unchanged=False)  # the bookmark's own behaviour (test_changes.py: skipping)
    first = run_tap(config)
    api.reset_requests()
    same = run_tap(config, state=first.final_state)
    unchanged_requests = len(api.requests_log()["requests"])
    # With >= on the bookmark only each connection's last record comes back (at-least-once).
    for stream in COMMERCE_STREAMS - {"company_info"}:
        for key, ids in same.ids_by_connection(stream).items():
            assert len(ids) == 1, (stream, key)
    changes = api.advance(seconds=3600, updates=4, inserts=2)
    api.reset_requests()
    second = run_tap(config, state=same.final_state)
    requests_after_change = api.requests_log()["requests"]
    assert len(requests_after_change) == unchanged_requests  # one page per data type, as before
    bookmarked = {(s, k) for s in COMMERCE_STREAMS for (_, k) in first.ids_by_connection(s)}
    stream_of_path = {f"commerce-{t.split('-', 1)[1]}": s for t, s in STREAM_OF_DATA_TYPE.items()}
    for request in requests_after_change:
        parts = request["path"].split("/")
        if "data" in parts and parts[-1] != "commerce-info":
            assert request["params"]["orderBy"] == "modifiedDate"
            if (stream_of_path[parts[-1]], parts[4]) in bookmarked:
                assert request["params"]["query"].startswith("modifiedDate>=")
    assert changes["changes"]
    bookmarks = {
        (stream, p["context"]["connectionId"]): p["replication_key_value"]
        for stream, entry in same.final_state["bookmarks"].items() if stream in COMMERCE_STREAMS
        for p in entry.get("partitions", []) if "replication_key_value" in p
    }
    truth = Api(sandbox).truth()
    for company, connections in truth.items():
        for connection, data_types in connections.items():
            for data_type, rows in data_types.items():
                stream = STREAM_OF_DATA_TYPE[data_type]
                got = sorted(second.ids_by_connection(stream).get((company, connection), []))
                if stream == "company_info":
                    assert len(got) == 1
                    continue
                mark = bookmarks[(stream, connection)]
                # what changed since the bookmark, plus the record at the bookmark itself (>=)
                expected = sorted(r["id"] for r in rows if canonical(r["modifiedDate"]) >= mark)
                assert got == expected, (stream, len(got), len(expected))
    total_second = sum(second.counts()[s] for s in COMMERCE_STREAMS)
    total_first = sum(first.counts()[s] for s in COMMERCE_STREAMS)
    assert total_second < total_first / 10


def test_start_date_filters_on_the_server(sandbox):
    api = Api(sandbox)
    run = run_tap(tap_config(sandbox, start_date="2025-12-01T00:00:00Z"))
    orders = run.records["orders"]
    assert orders and all(o["modifiedDate"] >= "2025-12-01T00:00:00.000000Z" for o in orders)
    queries = [r["params"].get("query") for r in api.requests_log()["requests"] if "commerce-orders" in r["path"]]
    assert queries[0] == "modifiedDate>=2025-12-01T00:00:00Z"
    assert all(q >= "modifiedDate>=2025-12-01T00:00:00Z" for q in queries)


def test_bookmarks_are_per_connection_and_dates_are_normalised(sandbox):
    run = run_tap(tap_config(sandbox))
    partitions = [p for p in run.final_state["bookmarks"]["orders"]["partitions"] if "replication_key_value" in p]
    assert len(partitions) == len({(r["companyId"], r["connectionId"]) for r in run.records["orders"]})
    for partition in partitions:
        assert set(partition["context"]) == {"companyId", "connectionId"}
        assert RFC3339_UTC.match(partition["replication_key_value"])
    for stream in COMMERCE_STREAMS:
        schema = json.loads((SCHEMAS / f"{stream}.json").read_text())
        date_fields = [k for k, v in schema["properties"].items() if v.get("format") == "date-time"]
        assert date_fields, stream
        for record in run.records[stream]:
            for field in date_fields:
                value = record.get(field)
                assert value is None or RFC3339_UTC.match(value), (stream, field, value)
    nested = [p["createdDate"] for o in run.records["orders"] for p in o["payments"]]
    assert nested and all(RFC3339_UTC.match(v) for v in nested)
    assert any(o["closedDate"] == "0001-01-01T00:00:00.000000Z" for o in run.records["orders"])


@pytest.mark.parametrize(("raw", "expected"), [
    ("2021-11-15T06:00:00Z", "2021-11-15T06:00:00.000000Z"),
    ("2021-11-15T01:00:00", "2021-11-15T01:00:00.000000Z"),
    ("2021-11-15T01:00:00-05:00", "2021-11-15T06:00:00.000000Z"),
    ("2021-11-15T01:00:00.25+01:00", "2021-11-15T00:00:00.250000Z"),
    ("2021-11-15T15:28:09.3409951Z", "2021-11-15T15:28:09.340995Z"),
    ("2022-10-23", "2022-10-23T00:00:00.000000Z"),
    ("0001-01-01T00:00:00", "0001-01-01T00:00:00.000000Z"),
    ("0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00.000000Z"),
    ("2021-02-29T00:00:00Z", None),
    ("not a date", None),
])
def test_codat_date_forms(raw, expected):
    assert canonical(raw) == expected
    if expected is not None:  # fixed width: text order is time order
        assert len(expected) == 27


def test_unready_and_unsupported_data_types_are_skipped_with_a_warning(start_sandbox, caplog):
    sandbox = start_sandbox(companies=0, orders=20, sync_delay=30)
    api = Api(sandbox)
    profile = api.get("/profile/syncSettings").json()
    for setting in profile["settings"]:
        setting["fetchOnFirstLink"] = setting["dataType"] in ("commerce-orders", "commerce-customers")
    api.post("/profile/syncSettings", json=profile)
    company = api.post("/companies", json={"name": "Slow"}).json()["id"]
    connection = api.post(f"/companies/{company}/connections", json={"platformKey": "exgd"}).json()
    api.session.get(connection["linkUrl"])
    with caplog.at_level(logging.WARNING):  # dataStatus off: the 404/409 answers themselves are met
        run = run_tap(tap_config(sandbox, check_data_status=False))
    assert not any(run.records.get(s) for s in COMMERCE_STREAMS)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    not_ready = [w for w in warnings if "(409)" in w]
    unsupported = [w for w in warnings if "(404)" in w]
    assert len(not_ready) + len(unsupported) == 11
    assert any("orders" in w and "not supported" in w for w in unsupported)  # Stripe has no orders
    assert any(w.startswith("Skipping customers") and "not been requested" in w for w in not_ready)
    assert all(company in w and connection["id"] in w for w in not_ready + unsupported)


def test_company_ids_limit_the_sync_and_unknown_ones_warn(sandbox, caplog):
    api = Api(sandbox)
    wanted = api.companies()[1]["id"]
    unknown = "00000000-0000-4000-8000-000000000000"
    with caplog.at_level(logging.WARNING):
        run = run_tap(tap_config(sandbox, company_ids=[wanted, unknown]))
    assert [c["id"] for c in run.records["companies"]] == [wanted]
    assert {r["companyId"] for r in run.records["orders"]} == {wanted}
    assert any(unknown in r.getMessage() and "not found" in r.getMessage() for r in caplog.records)


def test_the_portal_basic_value_is_accepted(sandbox):
    portal_value = "Basic " + base64.b64encode(sandbox.api_key.encode()).decode()
    run = run_tap(tap_config(sandbox, api_key=portal_value, company_ids=[Api(sandbox).companies()[0]["id"]]))
    assert run.records["orders"]
    assert auth_header(portal_value) == auth_header(sandbox.api_key)


# --- retries -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_429_retry_after_is_honoured_exactly(sandbox):
    api = Api(sandbox)
    api.faults(script={"status": 429, "count": 2, "retry_after": "1", "path": "/data/commerce-orders"})
    client = CodatClient(sandbox.base_url, sandbox.api_key)
    company, connection = api.commerce_connections()[0]
    started = time.monotonic()
    body = client.get_json(f"/companies/{company}/connections/{connection['id']}/data/commerce-orders")
    elapsed = time.monotonic() - started
    assert body["totalResults"] == 150
    assert 2.0 <= elapsed < 3.5  # two waits of exactly Retry-After, no jitter on top (backoff would add)


def test_retry_after_as_an_http_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after("7") == 7 and parse_retry_after("soon") is None


@pytest.mark.slow
def test_http_date_retry_after_from_the_server(sandbox):
    api = Api(sandbox)
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    api.faults(script={"status": 503, "count": 1, "retry_after": when, "path": "/companies"})
    client = CodatClient(sandbox.base_url, sandbox.api_key)
    started = time.monotonic()
    assert client.get_json("/companies")["totalResults"] == 6
    assert 0.5 <= time.monotonic() - started < 3.5


def test_retry_after_beyond_the_cap_stops_instead_of_sleeping(start_sandbox):
    sandbox = start_sandbox(companies=1, orders=10, daily_quota=3)
    client = CodatClient(sandbox.base_url, sandbox.api_key)
    for _ in range(3):
        client.get_json("/companies")
    started = time.monotonic()
    with pytest.raises(QuotaExhaustedError, match="max_retry_after"):
        client.get_json("/companies")
    assert time.monotonic() - started < 2


def test_quota_exhausted_mid_sync_exits_non_zero_with_one_line(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=2, orders=10, daily_quota=8)
    config = write_json(tmp_path, "config.json", tap_config(sandbox))
    result = run_cli(["--config", config])
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "max_retry_after" in errors[0] and "company" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("faults", [
    {"error_rate": 0.25},
    {"drop_rate": 0.15},
    {"truncate_rate": 0.2},
    {"concurrency_limit": 1, "latency_ms": 5},
])
@pytest.mark.slow
def test_transient_faults_are_retried_and_nothing_is_lost(start_sandbox, faults):
    sandbox = start_sandbox(companies=3, orders=120, seed=11)
    api = Api(sandbox)
    truth = expected_ids(api.truth())
    api.faults(**faults)
    run = run_tap(tap_config(sandbox, page_size=50))
    for stream in COMMERCE_STREAMS - {"company_info"}:
        assert emitted_ids(run, stream) == truth[stream], stream


def test_slow_responses_time_out_and_are_retried(sandbox):
    api = Api(sandbox)
    api.faults(script={"delay": 2, "count": 1, "path": "/connections"})
    company = api.companies()[0]["id"]
    client = CodatClient(sandbox.base_url, sandbox.api_key, timeout=0.5)
    body = client.get_json(f"/companies/{company}/connections")
    assert body["totalResults"] >= 1


# --- failures that stop the sync --------------------------------------------------------------
RECOGNISABLE_KEY = "sk-RECOGNISABLE-0123456789abcdef"


@pytest.mark.parametrize(("status", "exit_code", "expected"), [
    (401, 1, "Codat refused the API key (401"),  # the key: every company, the run stops
    (403, 3, "Sync finished, with failures"),  # this key may not read these companies: theirs alone
])
@pytest.mark.slow
def test_auth_failures_stop_with_a_clear_line_and_no_secret(start_sandbox, tmp_path, status, exit_code, expected):
    sandbox = start_sandbox(companies=2, orders=30, api_key=RECOGNISABLE_KEY)
    Api(sandbox).faults(script={"status": status, "after": 5, "count": 1000})
    config = write_json(tmp_path, "config.json", tap_config(sandbox))
    result = run_cli(["--config", config], env={**os.environ, "LOGLEVEL": "DEBUG"})
    assert result.returncode == exit_code
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, errors
    assert expected in errors[0] and "compan" in errors[0]
    assert "Traceback" not in result.stderr
    encoded = base64.b64encode(RECOGNISABLE_KEY.encode()).decode()
    for secret in (RECOGNISABLE_KEY, encoded, "RECOGNISABLE"):
        assert secret not in result.stdout and secret not in result.stderr


def test_key_never_logged_on_success_at_debug(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=20, api_key=RECOGNISABLE_KEY)
    config = write_json(tmp_path, "config.json", tap_config(sandbox))
    result = run_cli(["--config", config], env={**os.environ, "LOGLEVEL": "DEBUG"})
    assert result.returncode == 0
    assert Counter(m["type"] for m in result.messages)["RECORD"] > 50
    encoded = base64.b64encode(RECOGNISABLE_KEY.encode()).decode()
    for secret in (RECOGNISABLE_KEY, encoded, "RECOGNISABLE"):
        assert secret not in result.stdout and secret not in result.stderr


@pytest.mark.parametrize(("override", "setting"), [
    ({"api_key": ""}, "api_key"),
    ({"api_key": None}, "api_key"),
    ({"base_url": "not a url"}, "base_url"),
    ({"base_url": "http://api.example.com"}, "base_url"),
    ({"page_size": 0}, "page_size"),
    ({"page_size": 5001}, "page_size"),
    ({"start_date": "yesterday-ish"}, "start_date"),
    ({"company_ids": ["acme"]}, "company_ids"),
])
@pytest.mark.slow
def test_bad_config_is_one_clear_line(tmp_path, override, setting):
    config = {"api_key": "k", "base_url": "http://127.0.0.1:9", **override}
    config = {k: v for k, v in config.items() if v is not None}
    result = run_cli(["--config", write_json(tmp_path, "config.json", config)])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert any(setting in line for line in result.stderr.splitlines() if "ERROR" in line), result.stderr


def test_discovery_needs_no_network_or_config():
    result = run_cli(["--discover"])
    assert result.returncode == 0
    streams = {s["tap_stream_id"]: s for s in json.loads(result.stdout)["streams"]}
    assert set(streams) == COMMERCE_STREAMS | {"companies", "connections"}
    assert streams["orders"]["key_properties"] == ["companyId", "connectionId", "id"]
    assert streams["company_info"]["key_properties"] == ["companyId", "connectionId"]
    assert streams["orders"]["replication_key"] == "modifiedDate"
