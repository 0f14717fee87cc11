"""Files the tap is given and bodies it is sent that it cannot use (issue 20, point 5): one line
each, never a traceback; a non-zero exit where the run stops. Real files, real subprocess runs
of the CLI, real HTTP to the sandbox."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import Api, run_cli, tap_config, write_json

CONTEXT = {"companyId": "c1", "connectionId": "k1"}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| ERROR" in line]


def bookmarks_of(messages: list[dict], stream: str = "orders") -> dict[tuple[str, str], str]:
    state = [m["value"] for m in messages if m["type"] == "STATE"][-1]
    return {(p["context"]["companyId"], p["context"]["connectionId"]): p["replication_key_value"]
            for p in state["bookmarks"].get(stream, {}).get("partitions", []) if p.get("replication_key_value")}


@pytest.fixture
def small(start_sandbox):
    return start_sandbox(companies=1, orders=5, accounting_every=0)


@pytest.mark.parametrize(("text", "expected"), [
    ("", "the file is empty"),
    ("  \n", "the file is empty"),
    ('{"bookmarks": {"orders": {"partitions": [{"con', "not valid JSON (line 1, column"),
    ("bookmarks: {}", "not valid JSON"),
    (None, "cannot read it (No such file or directory)"),
    ("directory", "cannot read it (Is a directory)"),
    (b"\xff\xfe{}", "not a text file"),
])
@pytest.mark.slow
def test_a_state_file_that_is_no_json_is_one_line_and_exit_1(small, tmp_path, text, expected):
    config = write_json(tmp_path, "config.json", tap_config(small))
    state = tmp_path / "state.json"
    if text == "directory":
        state.mkdir()
    elif isinstance(text, bytes):
        state.write_bytes(text)
    elif text is not None:
        state.write_text(text)
    api = Api(small)
    api.reset_requests()
    result = run_cli(["--config", config, "--state", str(state)], env={**os.environ})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and f"--state {state}: {expected}" in errors[0], result.stderr[-2000:]
    assert not result.messages and not api.requests_log()["requests"]  # nothing read, nothing written


def unreadable_shapes(company: str, connection: str) -> list[tuple[object, str]]:
    good = {"context": {"companyId": company, "connectionId": connection}, "replication_key": "modifiedDate"}
    return [
        ([1, 2], "the state is a list"),
        ({"bookmarks": [1]}, "bookmarks is not an object"),
        ({"bookmarks": {"orders": "x"}}, "bookmarks.orders is not an object"),
        ({"bookmarks": {"orders": {"partitions": {"a": 1}}}}, "bookmarks.orders.partitions is not a list"),
        ({"bookmarks": {"orders": {"partitions": [7]}}}, "bookmarks.orders.partitions[0] is not an object"),
        ({"bookmarks": {"orders": {"partitions": [{"context": [company]}]}}}, "context is not an object of ids"),
        ({"bookmarks": {"orders": {"partitions": [{**good, "replication_key_value": 5}]}}},
         "replication_key_value is not a string"),
        ({"bookmarks": {"orders": {"partitions": [{**good, "replication_key_value": "soon"}]}}},
         "replication_key_value 'soon' is not a date"),
        ({"bookmarks": {"orders": {"partitions": [{**good, "replication_key": 3,
                                                   "replication_key_value": "2025-01-01T00:00:00Z"}]}}},
         "replication_key is not a string"),
    ]


@pytest.mark.slow
def test_a_state_of_a_shape_the_tap_cannot_read_warns_once_and_reads_as_if_no_bookmark(small, tmp_path):
    api = Api(small)
    company, connection = api.commerce_connections()[0][0], api.commerce_connections()[0][1]["id"]
    config = write_json(tmp_path, "config.json", tap_config(small))
    expected_orders = sum(len(data["commerce-orders"]) for connections in api.truth().values()
                          for data in connections.values())
    for number, (state, problem) in enumerate(unreadable_shapes(company, connection)):
        path = write_json(tmp_path, f"state{number}.json", state)
        result = run_cli(["--config", config, "--state", path], env={**os.environ})
        assert result.returncode == 0, (problem, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
        warned = [line for line in result.stderr.splitlines() if f"--state {path}:" in line]
        assert len(warned) == 1 and "| WARNING" in warned[0] and problem in warned[0], (problem, warned)
        orders = [m for m in result.messages if m["type"] == "RECORD" and m["stream"] == "orders"]
        assert len(orders) == expected_orders, problem  # as if there were no bookmark


@pytest.mark.parametrize(("catalog", "expected"), [
    ("{", "not valid JSON"),
    ("", "the file is empty"),
    ("[]", "not a Singer catalog (a JSON object with \"streams\"), but a list"),
    ('{"streams": {}}', "\"streams\" must be a list, not dict"),
    ('{"other": 1}', "\"streams\" must be a list, not missing"),
    ('{"streams": [1]}', "stream entry 1 is not an object"),
    ('{"streams": [{"schema": {}}]}', "stream entry 1 has no tap_stream_id"),
    ('{"streams": [{"tap_stream_id": "orders"}]}', "stream orders: \"schema\" must be a JSON object"),
    ('{"streams": [{"tap_stream_id": "orders", "schema": {}, "metadata": 3}]}', "\"metadata\" must be a list"),
    ('{"streams": [{"tap_stream_id": "orders", "schema": {}, "metadata": [7]}]}', "not a Singer catalog the SDK"),
])
@pytest.mark.slow
def test_a_malformed_catalog_is_one_line_and_exit_1(small, tmp_path, catalog, expected):
    config = write_json(tmp_path, "config.json", tap_config(small))
    path = tmp_path / "catalog.json"
    path.write_text(catalog)
    result = run_cli(["--config", config, "--catalog", str(path)], env={**os.environ})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and f"--catalog {path}: " in errors[0] and expected in errors[0], result.stderr[-2000:]
    assert not result.messages


@pytest.mark.slow
@pytest.mark.parametrize("data_types", ['"commerce-orders"', "{}", "7", '["commerce-orders"]', "[{}, null]"])
def test_an_events_file_whose_data_types_are_not_objects_is_one_line(small, tmp_path, data_types):
    good = {"eventType": "read.completed", "payload": {"referenceCompany": {"id": "c1"}, "dataTypes": []}}
    bad = ('{"eventType": "read.completed", "payload": {"referenceCompany": {"id": "c1"}, '
           f'"dataTypes": {data_types}}}}}')
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(good) + "\n\n" + bad + "\n")
    config = write_json(tmp_path, "config.json", tap_config(small, events_file=str(events)))
    result = run_cli(["--config", config], env={**os.environ})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and f"events_file {events} " in errors[0] and " line 3: " in errors[0], \
        result.stderr[-2000:]  # the file, the claimed copy it was read from (webhooks/queue.py), the line


def nesting_depth(value: object) -> int:
    depth = 0
    while isinstance(value, dict) and "level" in value:
        value, depth = value["level"], depth + 1
    return depth


def deep_order(depth: int, number: int = 1) -> dict:
    return {"id": f"o{number}", "modifiedDate": f"2025-06-01T00:00:0{number}Z",
            "supplementalData": {"content": {"deep": {"_sandbox_nested": depth}}}}


@pytest.mark.slow
@pytest.mark.parametrize("concurrency", [1, 4])
def test_json_nested_200_levels_deep_is_read_and_emitted_whole(small, tmp_path, concurrency):
    api = Api(small)
    company, connection = api.commerce_connections()[0][0], api.commerce_connections()[0][1]["id"]
    api.set_records(company, connection, "commerce-orders",
                    [deep_order(199), {"id": "o2", "modifiedDate": "2025-06-01T00:00:02Z"}])
    config = write_json(tmp_path, "config.json", tap_config(small, max_concurrency=concurrency))
    result = run_cli(["--config", config], env={**os.environ})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    orders = {m["record"]["id"]: m["record"] for m in result.messages
              if m["type"] == "RECORD" and m["stream"] == "orders"}
    assert set(orders) == {"o1", "o2"}
    assert nesting_depth(orders["o1"]["supplementalData"]["content"]["deep"]) == 199  # + "deep" itself: 200


@pytest.mark.parametrize(("depth", "data_type", "concurrency"), [
    (201, "commerce-orders", 1),  # deeper than the tap reads free-form JSON
    (600, "commerce-orders", 4),  # deeper than the SDK's record walker follows
    (1_000, "commerce-orders", 1),  # deeper than the parser follows
    (100_000, "commerce-orders", 4),
    (100_000, "commerce-companyInfo", 1),
    (100_000, "commerce-companyInfo", 4)])
@pytest.mark.slow
def test_json_nested_deeper_than_the_tap_reads_stops_with_one_line(small, tmp_path, depth, data_type, concurrency):
    """That partition stops (exit 3, "finished, with failures"), named with its stream, company and
    connection in one line; every other partition is read."""
    api = Api(small)
    company, connection = api.commerce_connections()[0][0], api.commerce_connections()[0][1]["id"]
    api.set_records(company, connection, data_type, [deep_order(depth)])
    config = write_json(tmp_path, "config.json", tap_config(small, max_concurrency=concurrency))
    result = run_cli(["--config", config], env={**os.environ})
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "Sync finished, with failures: 1 partition" in errors[0], result.stderr[-3000:]
    stream = "orders" if data_type == "commerce-orders" else "company_info"
    named = [line for line in result.stderr.splitlines() if f"Failed {stream} (company {company}" in line]
    assert len(named) == 1 and all(part in named[0] for part in (connection, "JSON nested deeper", "levels"))
    assert {m["stream"] for m in result.messages if m["type"] == "RECORD"} >= {"payments", "customers"}
