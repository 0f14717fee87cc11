"""Every value as Codat sent it, and the Singer contract kept (issue 13), over real HTTP.

Exact decimals, text the standard library accepts, RECORD ⊆ SCHEMA, values that cannot be
their type, parents mapped away, the SDK's HTTP metrics, and SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest

from tap_codat_commerce.output import serialize
from tests.conftest import Api, run_cli, tap_config, write_json
from tests.test_reliability import emitted_keys, error_lines, last_state, truth_keys

# Each literal as Codat may send it, and the number it must stay (same digits; 1.50 may be 1.5).
MONEY = [
    ("0.1", "0.1"),
    ("0.30000000000000004", "0.30000000000000004"),
    ("12345678901234.56", "12345678901234.56"),
    ("1234567890123456.78", "1234567890123456.78"),
    ("0.3333333333333333333333333333", "0.3333333333333333333333333333"),  # a .NET decimal
    ("99999999999999999999.99", "99999999999999999999.99"),
    ('"12345678901234567.89"', "12345678901234567.89"),  # a number sent as a string
    ("79228162514264337593543950335", "79228162514264337593543950335"),  # decimal.MaxValue
    ("1.50", "1.5"),
    ("-0.000000000000000001", "-0.000000000000000001"),
]


def messages_exact(stdout: str) -> list[dict]:
    """Singer lines parsed with exact numbers (Decimal for every literal with a fraction)."""
    return [json.loads(line, parse_float=Decimal) for line in stdout.splitlines() if line.startswith("{")]


def records_of(messages: list[dict], stream: str) -> list[dict]:
    return [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == stream]


def first_commerce_connection(api: Api) -> tuple[str, str]:
    return api.commerce_connections()[0][0], api.commerce_connections()[0][1]["id"]


def literal_orders_json(amounts: list[str], extra: str = "") -> str:
    """Orders o0, o1, … with ``totalAmount`` written exactly as given (JSON text)."""
    rows = []
    for n, amount in enumerate(amounts):
        rows.append(f'{{"id": "o{n}", "modifiedDate": "2025-06-01T00:00:{n:02d}Z", "totalAmount": {amount}, '
                    f'"orderLineItems": [{{"id": "l{n}", "quantity": 1, "unitPrice": {amount}, '
                    f'"totalAmount": {amount}}}]{extra}}}')
    return "[" + ", ".join(rows) + "]"


def orders_catalog(tmp_path, *, select_properties: set[str] | None = None) -> str:
    """A catalog selecting companies, connections and orders (some order properties only, if given)."""
    done = subprocess.run([sys.executable, "-m", "tap_codat_commerce", "--discover"], capture_output=True,
                          text=True, check=True, timeout=60)
    catalog = json.loads(done.stdout)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            breadcrumb = entry["breadcrumb"]
            if breadcrumb == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] in ("companies", "connections", "orders")
            elif stream["tap_stream_id"] == "orders" and select_properties is not None and len(breadcrumb) == 2:
                entry["metadata"]["selected"] = breadcrumb[1] in select_properties
    return write_json(tmp_path, "catalog.json", catalog)


# 1. money stays exact -----------------------------------------------------------------------------
@pytest.mark.slow
def test_money_keeps_every_digit_from_the_api_to_the_target(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=5, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    api.set_records_text(company_id, connection_id, "commerce-orders", literal_orders_json([m for m, _ in MONEY]))
    config = tap_config(sandbox, stream_maps={"orders": {"amount_as_text": "str(totalAmount)"}})
    result = run_cli(["--config", write_json(tmp_path, "config.json", config),
                      "--catalog", orders_catalog(tmp_path)])
    assert result.returncode == 0, result.stderr[-2000:]
    orders = {r["id"]: r for r in records_of(messages_exact(result.stdout), "orders")}
    for n, (_, expected) in enumerate(MONEY):
        order = orders[f"o{n}"]
        for value in (order["totalAmount"], order["orderLineItems"][0]["unitPrice"],
                      order["orderLineItems"][0]["totalAmount"]):
            assert isinstance(value, int | Decimal) and value == Decimal(expected), (n, value, expected)
    for _, expected in MONEY[:-2]:  # every literal's digits are on the wire, unrounded
        assert expected in result.stdout
    assert orders["o3"]["amount_as_text"] == "1234567890123456.78"  # a stream map sees the exact value


def test_the_writer_writes_every_decimal_digit_for_digit():
    for literal in ("1234567890123456.78", "0.3333333333333333333333333333", "99999999999999999999.99", "1E+400"):
        assert serialize({"a": Decimal(literal)}) == f'{{"a":{literal}}}\n'.encode()
    assert serialize({"a": Decimal("NaN")}) == b'{"a":null}\n'


# 2. text the standard library accepts --------------------------------------------------------------
def test_a_lone_surrogate_is_accepted_as_json_accepts_it(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=5, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    api.set_records_text(company_id, connection_id, "commerce-customers",
                         '[{"id": "c1", "customerName": "Shop \\ud83d", "modifiedDate": "2025-01-01T00:00:00Z"},'
                         ' {"id": "c2", "customerName": "\\udc00 tail", "modifiedDate": "2025-01-02T00:00:00Z"}]')
    result = run_cli(["--config", write_json(tmp_path, "config.json", tap_config(sandbox, max_retries=2))])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not valid JSON" not in result.stderr
    customers = {r["id"]: r for r in records_of(messages_exact(result.stdout), "customers")}
    assert customers["c1"]["customerName"] == "Shop \ud83d"  # as json.loads reads the body
    assert customers["c2"]["customerName"] == "\udc00 tail"


@pytest.mark.parametrize("value", [2**70, -(2**80), timedelta(days=1, seconds=5), {1: "a", None: "b"},
                                   "Shop \ud83d", Decimal("1234567890123456.78")])
def test_the_writer_never_fails_where_the_sdk_writer_succeeds(value):
    from singer_sdk.singerlib.json import serialize_json

    expected = json.loads(serialize_json({"v": value}), parse_float=Decimal)
    assert json.loads(serialize({"v": value}), parse_float=Decimal) == expected


@pytest.mark.slow
def test_stream_maps_producing_big_integers_and_timedeltas_are_written(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=20, accounting_every=0)
    config = tap_config(sandbox, stream_maps={"orders": {
        "big": "1180591620717411303424 + 1", "lag": "datetime.timedelta(days=1)"}})
    result = run_cli(["--config", write_json(tmp_path, "config.json", config), "--catalog", orders_catalog(tmp_path)])
    assert result.returncode == 0, result.stderr[-2000:]
    orders = records_of(messages_exact(result.stdout), "orders")
    assert len(orders) == 20
    assert all(o["big"] == 1180591620717411303425 and o["lag"] == "1 day, 0:00:00" for o in orders)


# 3. RECORD properties ⊆ SCHEMA properties ------------------------------------------------------------
def schema_properties(messages: list[dict], stream: str) -> dict:
    return next(m["schema"] for m in messages if m["type"] == "SCHEMA" and m["stream"] == stream)["properties"]


def assert_records_within_schema(messages: list[dict]) -> None:
    schemas: dict[str, dict] = {}
    for message in messages:
        if message["type"] == "SCHEMA":
            schemas[message["stream"]] = message["schema"]
        elif message["type"] == "RECORD":
            assert set(message["record"]) <= set(schemas[message["stream"]]["properties"]), message["stream"]


@pytest.mark.slow
def test_undeclared_fields_are_dropped_with_one_warning_per_field_and_stream(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=2, orders=30, drift=True)
    result = run_cli(["--config", write_json(tmp_path, "config.json", tap_config(sandbox)),
                      "--catalog", orders_catalog(tmp_path, select_properties={"id", "totalAmount", "currency",
                                                                                 "orderLineItems"})])
    assert result.returncode == 0, result.stderr[-2000:]
    messages = messages_exact(result.stdout)
    assert_records_within_schema(messages)
    orders = records_of(messages, "orders")
    assert len(orders) == 60 and all("addedByCodatLater" not in o for o in orders)
    assert all(set(o) <= {"id", "totalAmount", "currency", "orderLineItems", "modifiedDate", "companyId",
                          "connectionId"} for o in orders)
    warnings = [line for line in result.stderr.splitlines() if "addedByCodatLater is not in the schema" in line]
    assert len(warnings) == 1 and "orders.addedByCodatLater" in warnings[0]

    flattened = run_cli(["--config", write_json(tmp_path, "flat.json", tap_config(
        sandbox, flattening_enabled=True, flattening_max_depth=3)), "--catalog", orders_catalog(tmp_path)])
    assert flattened.returncode == 0, flattened.stderr[-2000:]
    flat_messages = messages_exact(flattened.stdout)
    flat_orders = records_of(flat_messages, "orders")
    assert len(flat_orders) == 60 and "supplementalData__content" in schema_properties(flat_messages, "orders")
    assert not any("addedByCodatLater" in key for o in flat_orders for key in o)  # no undeclared columns


@pytest.mark.slow
def test_undeclared_fields_can_be_kept_declared_as_untyped_json(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=30, drift=True, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    api.set_records_text(company_id, connection_id, "commerce-customers",
                         '[{"id": "c1", "modifiedDate": "2025-01-01T00:00:00Z", "email": "a@b.c", '
                         '"personalNote": {"x": 1.25}, "addresses": [{"city": "Leeds", "what3words": "a.b.c"}]}]')
    config = write_json(tmp_path, "config.json", tap_config(sandbox, undeclared_fields="keep"))
    discovered = run_cli(["--config", config, "--discover"])
    catalog = json.loads(discovered.stdout)  # a catalog discovered with the setting: it is declared there
    assert "_codat_undeclared" in next(s for s in catalog["streams"] if s["tap_stream_id"] == "orders")[
        "schema"]["properties"]
    result = run_cli(["--config", config, "--catalog", orders_catalog(tmp_path)])  # one discovered without
    assert result.returncode == 0, result.stderr[-2000:]
    messages = messages_exact(result.stdout)
    assert_records_within_schema(messages)
    assert schema_properties(messages, "orders")["_codat_undeclared"]["type"] == ["object", "null"]
    orders = records_of(messages, "orders")
    assert all(o["_codat_undeclared"] == {"addedByCodatLater": {"flag": True, "note": "a field no schema knows"}}
               for o in orders)

    everything = run_cli(["--config", config])
    customer = records_of(messages_exact(everything.stdout), "customers")[0]
    assert customer["_codat_undeclared"] == {"email": "a@b.c", "personalNote": {"x": Decimal("1.25")},
                                             "addedByCodatLater": {"flag": True, "note": "a field no schema knows"}}
    assert customer["addresses"][0]["_codat_undeclared"] == {"what3words": "a.b.c"}
    assert customer["addresses"][0]["city"] == "Leeds"


# 4. a value that cannot be its type ------------------------------------------------------------------
@pytest.mark.slow
def test_values_that_cannot_be_their_type_become_null_with_one_warning_each(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=5, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    bad = ['"NaN"', '"Infinity"', '"1e400"', "1e400", '"-Infinity"', '"twelve"', "NaN", "-Infinity"]
    rows = [f'{{"id": "o{n}", "modifiedDate": "2025-06-01T00:00:{n:02d}Z", "totalAmount": {value}, '
            f'"totalDiscount": 2.5, "closedDate": "2021-02-29T00:00:00Z"}}' for n, value in enumerate(bad)]
    api.set_records_text(company_id, connection_id, "commerce-orders", "[" + ", ".join(rows) + "]")
    result = run_cli(["--config", write_json(tmp_path, "config.json", tap_config(sandbox)),
                      "--catalog", orders_catalog(tmp_path)])
    assert result.returncode == 0, result.stderr[-2000:]
    orders = records_of(messages_exact(result.stdout), "orders")
    assert len(orders) == len(bad)
    assert all(o["totalAmount"] is None and o["closedDate"] is None for o in orders)
    assert all(o["totalDiscount"] == Decimal("2.5") for o in orders)
    amount_warnings = [line for line in result.stderr.splitlines() if "orders.totalAmount:" in line]
    date_warnings = [line for line in result.stderr.splitlines() if "orders.closedDate:" in line]
    assert len(amount_warnings) == 1 and "emitted as null" in amount_warnings[0]
    assert len(date_warnings) == 1 and "2021-02-29" in date_warnings[0]


def test_each_kind_of_impossible_number_warns(caplog):
    from tap_codat_commerce.normalise import build_normaliser

    schema = {"properties": {"a": {"type": ["number", "null"]}, "n": {"type": ["integer", "null"]}}}
    for value in ("NaN", "Infinity", "1e400", Decimal("NaN"), Decimal("1E+400"), "x"):
        normalise = build_normaliser(schema, "payments")
        record = {"a": value, "n": "7"}
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            normalise(record)
        assert record == {"a": None, "n": 7}, value
        assert len([r for r in caplog.records if "payments.a" in r.getMessage()]) == 1, value


# 5. leaving a parent out does not empty the run --------------------------------------------------------
def test_parents_mapped_away_still_have_their_children_emitted(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=2, orders=40)
    api = Api(sandbox)
    config = tap_config(sandbox, stream_maps={"companies": None, "connections": None})
    result = run_cli(["--config", write_json(tmp_path, "config.json", config)])
    assert result.returncode == 0, result.stderr[-2000:]
    messages = result.messages
    streams = {m["stream"] for m in messages if m["type"] == "RECORD"}
    assert "companies" not in streams and "connections" not in streams
    assert not any(m["type"] == "SCHEMA" and m["stream"] in ("companies", "connections") for m in messages)
    assert emitted_keys(messages) == truth_keys(api)  # every commerce record, as without the maps


# 6. the SDK's metrics --------------------------------------------------------------------------------
def metric_points(stderr: str, name: str) -> list[dict]:
    points = []
    for line in stderr.splitlines():
        if "METRIC: " in line:
            point = json.loads(line.split("METRIC: ", 1)[1])
            if point["metric"] == name:
                points.append(point)
    return points


@pytest.mark.slow
def test_http_metrics_are_emitted_for_every_request_tagged_as_the_sdk_tags_them(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=3, orders=120)
    api = Api(sandbox)
    api.reset_requests()
    api.faults(script={"status": 503, "after": 5, "count": 2, "path": "/data/commerce-orders"})
    config = write_json(tmp_path, "config.json", tap_config(sandbox, page_size=50, max_concurrency=8, log_metrics=True))
    result = run_cli(["--config", config])
    assert result.returncode == 0, result.stderr[-2000:]
    served = api.requests_log()["requests"]
    durations = metric_points(result.stderr, "http_request_duration")
    counts = metric_points(result.stderr, "http_request_count")
    assert len(durations) == len(served)  # every request, fetch-ahead threads included
    assert sum(p["value"] for p in counts) == len(served)
    orders = [p for p in durations if p["tags"]["stream"] == "orders"]
    assert orders and all(
        p["tags"]["endpoint"] == "/companies/{companyId}/connections/{connectionId}/data/commerce-orders"
        and p["type"] == "timer" and p["value"] >= 0 and set(p["tags"]["context"]) == {"companyId", "connectionId"}
        for p in orders)
    statuses = {p["tags"]["http_status_code"] for p in durations}
    assert 200 in statuses and 503 in statuses  # failed attempts (retried) are measured too
    assert all(p["tags"]["status"] == ("succeeded" if p["tags"]["http_status_code"] < 400 else "failed")
               for p in durations)
    assert {p["tags"]["stream"] for p in counts} >= {"companies", "connections", "orders", "customers"}
    assert "/companies/{companyId}/connections" in {p["tags"]["endpoint"] for p in counts}


# 7. stopped is not succeeded -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_sync_exits_non_zero_and_the_last_state_resumes(start_sandbox, tmp_path, signum):
    sandbox = start_sandbox(companies=3, orders=1500, latency_ms=2)
    api = Api(sandbox)
    truth = truth_keys(api)
    config = write_json(tmp_path, "config.json", tap_config(sandbox, page_size=100))
    process = subprocess.Popen([sys.executable, "-m", "tap_codat_commerce", "--config", config],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    received: list[dict] = []
    assert process.stdout is not None
    for line in process.stdout:
        received.append(json.loads(line))
        if len(received) == 3000:
            process.send_signal(signum)
            break
    received += [json.loads(line) for line in process.stdout]  # what it writes before it exits
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum
    errors = error_lines(stderr)
    assert len(errors) == 1 and signal.Signals(signum).name in errors[0] and "Traceback" not in stderr
    assert received[-1]["type"] == "STATE"  # the last line is the state to resume from
    state = last_state(received)
    assert state is not None
    assert emitted_keys(received) != truth  # it really stopped mid-sync

    resumed = run_cli(["--config", config, "--state", write_json(tmp_path, "state.json", state)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert emitted_keys(received) | emitted_keys(resumed.messages) == truth



# 6. every RECORD validates against its SCHEMA (issue 20, point 4) -------------------------------------
# Each value of another JSON type than declared, as Codat may send it, and what it must become.
MISTYPED = [
    ('"id": 123', "id", "123"),  # an integer id where the schema says string: its exact text
    ('"orderNumber": 1234567890123456789012', "orderNumber", "1234567890123456789012"),
    ('"country": 12345678901234567.890', "country", "12345678901234567.890"),  # a Decimal keeps its digits
    ('"currency": 0.1', "currency", "0.1"),  # a float: its shortest text
    ('"totalDiscount": "2.50"', "totalDiscount", Decimal("2.50")),  # exact text where a number is: the number
    ('"totalAmount": {"amount": 1}', "totalAmount", None),  # an object where a number is
    ('"totalRefund": true', "totalRefund", None),  # a boolean where a number is
    ('"totalTaxAmount": [1]', "totalTaxAmount", None),
    ('"closedDate": 20240101', "closedDate", None),  # a number where a date-time is
    ('"createdDate": {"at": "2024"}', "createdDate", None),
    ('"orderLineItems": "none"', "orderLineItems", None),  # text where an array is
    ('"payments": {"id": "p"}', "payments", None),  # an object where an array is
    ('"customerRef": "c1"', "customerRef", None),  # text where an object is
    ('"locationRef": ["l1"]', "locationRef", None),
    ('"serviceCharges": [{"description": 5}, "x", null]', "serviceCharges", [{"description": "5"}, None, None]),
    ('"supplementalData": {"content": {"a": {"b": 1}, "c": 3}}', "supplementalData", {"content": {"a": {"b": 1},
                                                                                                  "c": None}}),
]


def mistyped_orders() -> str:
    rows = [f'{{"id": "o{n}", "modifiedDate": "2025-06-01T00:00:{n:02d}Z", {field}}}'
            for n, (field, _, _) in enumerate(MISTYPED)]
    return "[" + ", ".join(rows) + "]"


def assert_every_record_fits_its_schema(messages: list[dict]) -> int:
    import jsonschema

    schemas, checked = {}, 0
    for message in messages:
        if message["type"] == "SCHEMA":
            schemas[message["stream"]] = jsonschema.Draft7Validator(message["schema"])
        elif message["type"] == "RECORD":
            errors = [f"{list(e.path)}: {e.message}" for e in schemas[message["stream"]].iter_errors(message["record"])]
            assert not errors, (message["stream"], message["record"].get("id"), errors[:3])
            checked += 1
    return checked


@pytest.mark.slow
@pytest.mark.parametrize("undeclared", ["drop", "keep"])
def test_every_record_validates_against_the_schema_it_was_sent_under(start_sandbox, tmp_path, undeclared):
    sandbox = start_sandbox(companies=1, orders=5, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    api.set_records_text(company_id, connection_id, "commerce-orders", mistyped_orders())
    config = write_json(tmp_path, "config.json", tap_config(sandbox, undeclared_fields=undeclared))
    result = run_cli(["--config", config], env={**os.environ})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    messages = messages_exact(result.stdout)
    assert assert_every_record_fits_its_schema(messages) > len(MISTYPED)  # every stream, every record
    orders = {o["modifiedDate"]: o for o in records_of(messages, "orders")}
    assert len(orders) == len(MISTYPED)
    for n, (_, field, expected) in enumerate(MISTYPED):
        order = orders[f"2025-06-01T00:00:{n:02d}.000000Z"]
        assert order[field] == expected and type(order[field]) is type(expected), (field, order[field])
        if expected is None and undeclared == "keep":  # the value is kept, as JSON, beside the null
            assert field in order["_codat_undeclared"], field
    warned = [line for line in result.stderr.splitlines() if "where the schema says" in line]
    nulled = {f for _, f, e in MISTYPED if e is None} | {"serviceCharges[]", "supplementalData.content.*"}
    assert len(warned) == len(nulled), warned  # one warning per field and stream


def test_a_key_of_another_type_that_cannot_be_text_stops_that_partition_with_one_line(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=5, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    api.set_records_text(company_id, connection_id, "commerce-orders",
                         '[{"id": {"n": 1}, "modifiedDate": "2025-06-01T00:00:00Z"}]')
    result = run_cli(["--config", write_json(tmp_path, "config.json", tap_config(sandbox))], env={**os.environ})
    assert result.returncode == 3 and "Traceback" not in result.stderr  # that partition: finished, with failures
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "Sync finished, with failures: 1 partition" in errors[0], result.stderr[-2000:]
    named = [line for line in result.stderr.splitlines() if f"Failed orders (company {company_id}" in line]
    assert len(named) == 1 and all(part in named[0] for part in (connection_id, "orders.id", "an object"))


@pytest.mark.slow
def test_meltano_run_into_target_jsonl_loads_records_of_every_mistyped_kind(start_sandbox, tmp_path):
    """target-jsonl validates every RECORD against its SCHEMA: it exits 0 on the mistyped orders."""
    import uuid

    from tests.conftest import meltano, meltano_env

    sandbox = start_sandbox(companies=1, orders=5, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    api.set_records_text(company_id, connection_id, "commerce-orders", mistyped_orders())
    env = meltano_env(sandbox, TARGET_JSONL_DESTINATION_PATH=str(tmp_path), TARGET_JSONL_DO_TIMESTAMP_FILE="false")
    suffix = f"test{uuid.uuid4().hex[:8]}"
    meltano("install", "extractor", "tap-codat-commerce", env=env)
    meltano("install", "loader", "target-jsonl", env=env)
    try:
        meltano("run", "--state-id-suffix", suffix, "tap-codat-commerce", "target-jsonl", env=env)
    finally:
        meltano("state", "clear", "--force", f"dev:tap-codat-commerce-to-target-jsonl:{suffix}", env=env)
    assert len((tmp_path / "orders.jsonl").read_text().splitlines()) == len(MISTYPED)
