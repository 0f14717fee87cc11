"""Faults, crashes, bad input, secrets and drift, proven against the sandbox over real HTTP."""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.conftest import STREAM_OF_DATA_TYPE, Api, run_cli, run_tap, tap_config, write_json

COMMERCE_STREAMS = set(STREAM_OF_DATA_TYPE.values()) - {"company_info"}
SECRET = "sk-SECRET-MARKER-9f8e7d6c5b4a"


def truth_keys(api: Api) -> set[tuple[str, str, str, str]]:
    """(stream, company, connection, id) of every record the sandbox holds now."""
    return {(STREAM_OF_DATA_TYPE[t], c, k, r["id"])
            for c, connections in api.truth().items() for k, types in connections.items()
            for t, rows in types.items() if t != "commerce-companyInfo" for r in rows}


def emitted_keys(messages: list[dict]) -> set[tuple[str, str, str, str]]:
    return {(m["stream"], m["record"]["companyId"], m["record"]["connectionId"], m["record"]["id"])
            for m in messages if m["type"] == "RECORD" and m["stream"] in COMMERCE_STREAMS}


def last_state(messages: list[dict]) -> dict | None:
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    return states[-1] if states else None


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| ERROR" in line]


def assert_no_secret(*texts: str) -> None:
    encoded = base64.b64encode(SECRET.encode()).decode()
    for text in texts:
        assert SECRET not in text and encoded not in text and "SECRET-MARKER" not in text


# 1. transient faults ------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_storm_of_transient_faults_loses_nothing(start_sandbox):
    sandbox = start_sandbox(companies=4, orders=200, seed=21)
    api = Api(sandbox)
    truth = truth_keys(api)
    api.faults(error_rate=0.08, drop_rate=0.04, truncate_rate=0.04, latency_ms=15, concurrency_limit=3)
    run = run_tap(tap_config(sandbox, page_size=60, max_concurrency=16))
    assert emitted_keys(run.messages) == truth
    assert api.requests_log()["throttled"] > 0  # the 429 storm happened, and was waited out


# 2. permanent faults ------------------------------------------------------------------------------
@pytest.mark.parametrize(("script", "expected", "exit_code"), [
    # the payments of every connection fail: each is that partition's failure, the rest is read
    ({"status": 500, "count": 10_000, "path": "/data/commerce-payments"}, "failed after 3 tries: 500", 3),
    ({"status": 200, "body": '{"results": [{"id": "x"', "count": 10_000, "path": "/data/commerce-payments"},
     "not valid JSON", 3),
    ({"status": 401, "count": 10_000, "path": "/data/commerce-payments"}, "refused the API key (401", 1),
])
@pytest.mark.slow
def test_permanent_faults_stop_cleanly_and_the_last_state_resumes(start_sandbox, tmp_path, script, expected,
                                                                   exit_code):
    sandbox = start_sandbox(companies=3, orders=150, api_key=SECRET)
    api = Api(sandbox)
    truth = truth_keys(api)
    api.faults(script={"after": 0, **script})
    config = write_json(tmp_path, "config.json", tap_config(sandbox, max_retries=3, page_size=50))
    failed = run_cli(["--config", config], env={**os.environ, "LOGLEVEL": "DEBUG"})
    assert failed.returncode == exit_code
    errors = error_lines(failed.stderr)
    assert len(errors) == 1 and "Traceback" not in failed.stderr
    named = errors[0] if exit_code == 1 else next(line for line in failed.stderr.splitlines()
                                                  if expected in line and "payments (company" in line)
    assert expected in named and "payments (company" in named and ", connection " in named
    if exit_code == 3:
        assert "Sync finished, with failures" in errors[0]
    assert_no_secret(failed.stdout, failed.stderr)
    state = last_state(failed.messages)
    assert state is not None and "bookmarks" in state

    api.faults(script=None)
    resumed = run_cli(["--config", config, "--state", write_json(tmp_path, "state.json", state)])
    assert resumed.returncode == 0
    assert emitted_keys(failed.messages) | emitted_keys(resumed.messages) == truth


# 3. crash and resume --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_a_random_point_then_resume_covers_everything(start_sandbox, tmp_path, seed):
    sandbox = start_sandbox(companies=3, orders=1500, latency_ms=2)
    api = Api(sandbox)
    truth = truth_keys(api)
    config = write_json(tmp_path, "config.json", tap_config(sandbox, page_size=100))
    rng = random.Random(seed)
    received: list[dict] = []
    state: dict | None = None
    for attempt in range(6):
        args = [sys.executable, "-m", "tap_codat_commerce", "--config", config]
        if state is not None:
            args += ["--state", write_json(tmp_path, f"state-{attempt}.json", state)]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        kill_after = rng.randint(200, 6000) if attempt < 2 else None
        for lines, line in enumerate(process.stdout, start=1):
            message = json.loads(line)
            received.append(message)
            if message["type"] == "STATE":
                state = message["value"]  # what an orchestrator keeps
            if kill_after is not None and lines >= kill_after:
                process.send_signal(signal.SIGKILL)
                break
        process.stdout.close()
        code = process.wait(timeout=120)
        if kill_after is None:
            assert code == 0
            break
        assert code == -signal.SIGKILL
    assert emitted_keys(received) == truth  # the union of every attempt covers the truth


# 4. bad config (the rest is in test_tap.py) ------------------------------------------------------
def test_non_https_to_a_remote_host_is_refused_before_any_request(tmp_path):
    config = write_json(tmp_path, "config.json", {"api_key": SECRET, "base_url": "http://api.codat.io"})
    result = run_cli(["--config", config])
    assert result.returncode == 1 and "must use https" in result.stderr and "Traceback" not in result.stderr
    assert_no_secret(result.stdout, result.stderr)


# 5. secrets on every error path -----------------------------------------------------------------
@pytest.mark.slow
def test_no_secret_on_any_error_path(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=20, api_key=SECRET, daily_quota=4)
    debug = {**os.environ, "LOGLEVEL": "DEBUG"}
    outputs = []
    quota = run_cli(["--config", write_json(tmp_path, "q.json", tap_config(sandbox))], env=debug)
    assert quota.returncode == 1
    outputs.append(quota)
    for name, config in (
        ("wrong-key", {"api_key": SECRET + "x", "base_url": sandbox.base_url}),
        ("bad-page-size", {"api_key": SECRET, "base_url": sandbox.base_url, "page_size": 0}),
        ("network-down", {"api_key": SECRET, "base_url": "http://127.0.0.1:9", "max_retries": 2}),
        ("portal-form", {"api_key": "Basic " + base64.b64encode(SECRET.encode()).decode(),
                         "base_url": "http://127.0.0.1:9", "max_retries": 1}),
    ):
        result = run_cli(["--config", write_json(tmp_path, f"{name}.json", config)], env=debug)
        assert result.returncode == 1, name
        outputs.append(result)
    for result in outputs:
        assert_no_secret(result.stdout, result.stderr)
        assert "Traceback" not in result.stderr


# 6. schema drift --------------------------------------------------------------------------------
def test_schema_drift_is_absorbed_as_documented(start_sandbox, caplog):
    sandbox = start_sandbox(companies=2, orders=60, drift=True)
    api = Api(sandbox)
    with caplog.at_level(logging.WARNING):
        run = run_tap(tap_config(sandbox))
    assert emitted_keys(run.messages) == truth_keys(api)
    orders = run.records["orders"]
    assert all("addedByCodatLater" not in o for o in orders)  # undeclared: dropped (tests/test_values.py)
    undeclared = [r for r in caplog.records if "addedByCodatLater is not in the schema" in r.getMessage()]
    assert len({r.getMessage().split(" ")[0] for r in undeclared}) == len(undeclared) > 0  # once per stream
    assert all(isinstance(o["totalAmount"], float) for o in orders)  # "123.45" → 123.45
    assert any(o["currency"] is None for o in orders)  # nulls where the spec says required: kept
    assert all(isinstance(t["rate"], float) for t in run.records["tax_components"])


def test_a_value_that_cannot_be_its_type_becomes_null_with_one_warning(caplog):
    from tap_codat_commerce.normalise import build_normaliser

    schema = {"properties": {"amount": {"type": ["number", "null"]},
                             "when": {"type": ["string", "null"], "format": "date-time"}}}
    normalise = build_normaliser(schema, "payments")
    records = [{"amount": "n/a", "when": "soon"}, {"amount": "7", "when": "2024-02-03"}, {"amount": "?"}]
    with caplog.at_level(logging.WARNING):
        for record in records:
            normalise(record)
    assert records == [{"amount": None, "when": None}, {"amount": 7.0, "when": "2024-02-03T00:00:00.000000Z"},
                       {"amount": None}]
    assert len([r for r in caplog.records if "payments.amount" in r.getMessage()]) == 1


def test_a_record_without_an_id_fails_its_partition_with_a_clear_line(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=10)
    api = Api(sandbox)
    api.faults(script={"status": 200, "count": 100, "path": "/data/commerce-orders",
                       "body": '{"results": [{"id": null, "modifiedDate": "2025-01-01T00:00:00Z"}], '
                               '"pageNumber": 1, "pageSize": 2000, "totalResults": 1, "_links": {}}'})
    result = run_cli(["--config", write_json(tmp_path, "c.json", tap_config(sandbox))])
    assert result.returncode == 3
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "Sync finished, with failures: 1 partition" in errors[0]
    named = [line for line in result.stderr.splitlines() if "without an id" in line]
    assert named and all("orders (company" in line and ", connection " in line for line in named)
    assert Counter(m["stream"] for m in result.messages if m["type"] == "RECORD")["payments"] > 0


@pytest.mark.slow
def test_slow_but_within_timeout_is_just_slow(start_sandbox):
    sandbox = start_sandbox(companies=1, orders=30, latency_ms=400)
    started = time.monotonic()
    run = run_tap(tap_config(sandbox, request_timeout=5))
    assert len(run.records["orders"]) == 30 and time.monotonic() - started > 0.4
