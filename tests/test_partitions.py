"""One merchant's failure stays with that merchant (issue 19), over real HTTP against the sandbox.

Each kind of failure is produced by the sandbox for chosen companies (``company_faults``); the run
must read every other company, name each failed (company, connection, stream) once in a summary,
exit 3 ("finished, with failures"), keep the failed partitions' bookmarks and read them again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import pytest

from tests.conftest import STREAM_OF_DATA_TYPE, Api, CliRun, parse_messages, run_cli, tap_config, write_json

DATA_STREAMS = set(STREAM_OF_DATA_TYPE.values())


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| ERROR" in line]


def keys_by_company(messages: list[dict[str, Any]]) -> dict[str, set[tuple[str, str, str]]]:
    """Per company: (stream, connection, id) of every commerce record emitted."""
    found: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for message in messages:
        if message["type"] == "RECORD" and message["stream"] in DATA_STREAMS:
            record = message["record"]
            found[record["companyId"]].add((message["stream"], record["connectionId"], str(record.get("id"))))
    return found


def truth_by_company(api: Api) -> dict[str, set[tuple[str, str, str]]]:
    found: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for company_id, connections in api.truth().items():
        for connection_id, data_types in connections.items():
            for data_type, rows in data_types.items():
                for row in rows:
                    found[company_id].add((STREAM_OF_DATA_TYPE[data_type], connection_id, str(row.get("id"))))
    return found


def last_state(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return [m["value"] for m in messages if m["type"] == "STATE"][-1]


def run(tmp_path, sandbox, name: str, state: dict[str, Any] | None = None, **settings: Any) -> CliRun:
    config = write_json(tmp_path, f"{name}.json", tap_config(sandbox, **settings))
    args = ["--config", config]
    if state is not None:
        args += ["--state", write_json(tmp_path, f"{name}-state.json", state)]
    return run_cli(args, timeout=300)


FAST_FAILURE = {"max_retries": 2, "request_timeout": 1}

KINDS = [
    ("forbidden", None, "403"),
    ("forbidden_data_type", "commerce-taxComponents", "403"),  # a key without access to one data type
    ("server_error", None, "5xx"),
    ("timeout", None, "timeout"),
    ("drop", None, "dropped connection"),
    ("invalid_json", None, "invalid JSON"),
    ("no_id", "commerce-orders", "bad record"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "data_type", "cause"), KINDS, ids=[k[0] for k in KINDS])
def test_one_merchants_failure_stays_with_it_and_is_read_again(start_sandbox, tmp_path, kind, data_type, cause):
    sandbox = start_sandbox(companies=5, orders=40, seed=7)
    api = Api(sandbox)
    truth = truth_by_company(api)
    victim = sorted(truth)[2]
    api.faults(company_faults={victim: {"kind": kind, "dataType": data_type, "seconds": 3}})

    failed = run(tmp_path, sandbox, "first", **FAST_FAILURE)
    assert failed.returncode == 3, failed.stderr[-2000:]
    assert "Traceback" not in failed.stderr
    errors = error_lines(failed.stderr)
    assert len(errors) == 1 and "Sync finished, with failures" in errors[0] and f"{cause}: " in errors[0]
    emitted = keys_by_company(failed.messages)
    for company_id in truth:
        if company_id != victim:
            assert emitted[company_id] == truth[company_id], company_id  # every other merchant: all of it
    summary = [line for line in failed.stderr.splitlines() if line.split("| ")[-1].startswith(f"{cause}: ")]
    assert summary and f"company {victim}" in summary[0]
    assert all(victim in line for line in failed.stderr.splitlines() if "Failed " in line)
    state = last_state(failed.messages)
    failed_streams = {STREAM_OF_DATA_TYPE[data_type]} if data_type else DATA_STREAMS
    for stream, stream_state in state["bookmarks"].items():
        for partition in stream_state.get("partitions", []):
            if partition["context"].get("companyId") == victim and stream in failed_streams:
                assert "codat_sync" not in partition  # so that skip_unchanged cannot skip its next read

    api.faults(company_faults=None)
    again = run(tmp_path, sandbox, "again", state=state)
    assert again.returncode == 0, again.stderr[-2000:]
    read_again = keys_by_company(again.messages)
    assert emitted[victim] | read_again[victim] == truth[victim]  # the failed partitions are read again
    assert truth[victim] - emitted[victim] <= read_again[victim]


@pytest.mark.slow
@pytest.mark.parametrize("after", [0, 1, 3], ids=["before-connections", "before-dataStatus", "during-data"])
def test_a_company_deleted_mid_run_is_skipped_with_one_warning_and_is_no_failure(start_sandbox, tmp_path, after):
    sandbox = start_sandbox(companies=4, orders=30, seed=3)
    api = Api(sandbox)
    truth = truth_by_company(api)
    victim = sorted(truth)[1]
    api.faults(company_faults={victim: {"kind": "deleted", "after": after}})
    result = run(tmp_path, sandbox, "deleted", max_concurrency=1)
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if "no longer exists" in line]
    assert len(warnings) == 1 and victim in warnings[0]
    emitted = keys_by_company(result.messages)
    assert {c: emitted[c] for c in truth if c != victim} == {c: truth[c] for c in truth if c != victim}


def test_a_company_that_leaves_the_list_while_it_is_paged_hides_no_other(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=5, orders=5, seed=11)
    api = Api(sandbox)
    listed = [c["id"] for c in api.companies()]
    truth = truth_by_company(api)
    api.faults(delete_after={"path": "/companies", "after": 1, "companyId": listed[0]})
    result = run(tmp_path, sandbox, "paged", page_size=2, max_concurrency=1)
    assert result.returncode == 0, result.stderr[-2000:]
    emitted = keys_by_company(result.messages)
    for company_id in listed[1:]:
        assert emitted[company_id] == truth[company_id], company_id


def test_the_circuit_breaker_stops_when_every_company_fails_alike(start_sandbox, tmp_path):
    """An IP block looks like a 403 on every company: after max_failed_companies in a row, stop."""
    sandbox = start_sandbox(companies=30, orders=2, seed=5)
    api = Api(sandbox)
    api.faults(fail_companies={"share": 1.0, "kinds": ["forbidden"]})
    result = run(tmp_path, sandbox, "blocked", max_failed_companies=5, max_concurrency=1)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "5 companies in a row failed wholly" in errors[0] and "403" in errors[0]
    connection_lists = [r for r in api.requests_log()["requests"] if r["path"].endswith("/connections")]
    assert len(connection_lists) == 5  # it stopped there, not 25 companies later


def test_one_data_type_forbidden_everywhere_trips_no_breaker(start_sandbox, tmp_path):
    """A Lending-API client has no commerce-taxComponents: every company fails that type alone."""
    sandbox = start_sandbox(companies=12, orders=5, seed=5)
    api = Api(sandbox)
    truth = truth_by_company(api)
    api.faults(fail_companies={"share": 1.0, "kinds": ["forbidden_data_type"]})
    result = run(tmp_path, sandbox, "lending", max_failed_companies=3)
    assert result.returncode == 3, result.stderr[-2000:]
    emitted = keys_by_company(result.messages)
    for company_id, keys in truth.items():
        assert emitted[company_id] == {k for k in keys if k[0] != "tax_components"}


@pytest.mark.slow
def test_the_summary_has_a_fixed_size_at_any_scale(start_sandbox, tmp_path):
    sizes = []
    for companies in (20, 100):  # both with more failures than are logged one by one
        sandbox = start_sandbox(companies=companies, orders=2, seed=9)
        api = Api(sandbox)
        api.faults(fail_companies={"share": 1.0, "kinds": ["forbidden_data_type"]})
        result = run(tmp_path, sandbox, f"summary-{companies}", max_failed_companies=0)
        assert result.returncode == 3
        tail = [line for line in result.stderr.splitlines() if "| WARNING" in line or "| ERROR" in line
                or "Synced" in line]
        sizes.append((len(tail), max(len(line) for line in tail)))
    assert sizes[1][0] == sizes[0][0] and sizes[1][1] <= sizes[0][1] + 10, sizes  # lines; longest line


def test_a_company_over_its_daily_budget_fails_alone(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=3, orders=30, seed=4, company_daily_quota=6)
    api = Api(sandbox)
    truth = truth_by_company(api)
    result = run(tmp_path, sandbox, "budget", max_concurrency=1)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "company quota: " in error_lines(result.stderr)[0]
    assert keys_by_company(result.messages).keys() <= truth.keys()


@pytest.mark.slow
def test_a_thousand_companies_one_percent_failing_each_way(start_sandbox, tmp_path):
    """The issue's done-when: every other company's records, exactly the failed ones listed, and
    the next run reads them."""
    kinds = ["forbidden", "forbidden_data_type", "server_error", "drop", "invalid_json", "no_id", "deleted"]
    sandbox = start_sandbox(companies=1000, orders=3, seed=19)
    api = Api(sandbox)
    truth = truth_by_company(api)
    chosen = api.faults(fail_companies={"share": 0.01, "kinds": kinds})["company_faults"]
    assert len(chosen) == 70
    deleted = {c for c, fault in chosen.items() if fault["kind"] == "deleted"}
    without_tax = {c for c, fault in chosen.items() if fault["kind"] == "forbidden_data_type" and api.get(
        f"/companies/{c}/dataStatus").json()["commerce-taxComponents"].get("currentStatus") == "NotSupported"}
    failing = set(chosen) - deleted - without_tax  # a type the platform lacks is never asked for
    first = run(tmp_path, sandbox, "thousand", max_retries=2)
    assert first.returncode == 3, first.stderr[-3000:]
    emitted = keys_by_company(first.messages)
    for company_id in set(truth) - set(chosen):
        assert emitted[company_id] == truth[company_id], company_id
    named = {line.split("(company ")[1].split(")")[0].split(",")[0] for line in first.stderr.splitlines()
             if "Failed " in line}
    assert f"of {len(failing)} of " in error_lines(first.stderr)[0]  # exactly the failing companies
    assert named <= failing
    gone = [line for line in first.stderr.splitlines() if "no longer exists" in line]
    assert len(gone) == len(deleted)

    api.faults(company_faults=None)
    second = run(tmp_path, sandbox, "thousand-again", state=last_state(first.messages))
    assert second.returncode == 0, second.stderr[-3000:]
    again = keys_by_company(second.messages)
    for company_id in failing:
        assert emitted[company_id] | again[company_id] == truth[company_id], company_id


# --- the whole-run failures still stop at once ------------------------------------------------------
def test_a_maintenance_503_is_not_called_a_spent_quota(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=5)
    Api(sandbox).faults(script={"status": 503, "count": 100, "retry_after": "7200", "message": "Maintenance"})
    result = run(tmp_path, sandbox, "maintenance")
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "unavailable (503" in errors[0] and "maintenance" in errors[0]
    assert "daily quota" not in errors[0]


@pytest.mark.slow
def test_the_quota_reserve_stops_cleanly_with_its_own_exit_code(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=3, orders=40, daily_quota=60)
    api = Api(sandbox)
    truth = truth_by_company(api)
    stopped = run(tmp_path, sandbox, "reserve", quota_reserve=30, max_concurrency=1)
    assert stopped.returncode == 4, stopped.stderr[-2000:]
    errors = error_lines(stopped.stderr)
    assert len(errors) == 1 and "below quota_reserve=30" in errors[0] and "STATE" in errors[0]
    assert len(api.requests_log()["requests"]) <= 31
    state = last_state(stopped.messages)
    api.faults(daily_quota=0)
    resumed = run(tmp_path, sandbox, "reserve-resumed", state=state)
    assert resumed.returncode == 0
    first, second = keys_by_company(stopped.messages), keys_by_company(resumed.messages)
    assert {c: first[c] | second[c] for c in truth} == truth


@pytest.mark.slow
def test_a_429_without_retry_after_is_waited_out_and_every_thread_holds(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=2, orders=20)
    api = Api(sandbox)
    api.faults(script={"status": 429, "count": 3, "path": "/data/commerce-orders"})
    started = time.monotonic()
    result = run(tmp_path, sandbox, "throttled")
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started >= 1 + 2 + 4 - 1  # backed off 1 s, 2 s, 4 s (±10%), not 0.5 s steps
    api.faults(script={"status": 429, "count": 10_000, "path": "/data/commerce-orders"})
    gave_up = run(tmp_path, sandbox, "throttled-long", throttle_wait=4)
    assert gave_up.returncode == 3 and "still throttled (429)" in gave_up.stderr


# --- never hang (issue 20, points 1 and 2) --------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["trickle", "silent"])
def test_a_response_that_never_ends_times_out_whole(start_sandbox, tmp_path, mode):
    sandbox = start_sandbox(companies=1, orders=20)
    api = Api(sandbox)
    api.faults(script={"mode": mode, "seconds": 0.5, "count": 10_000, "path": "/data/commerce-orders"})
    started = time.monotonic()
    result = run(tmp_path, sandbox, mode, request_timeout=2, max_retries=2)
    assert time.monotonic() - started < 30
    assert result.returncode == 3 and "no whole response within 2 s" in result.stderr
    api.faults(script={"mode": mode, "seconds": 0.5, "count": 1, "path": "/data/commerce-orders"})
    recovered = run(tmp_path, sandbox, f"{mode}-once", request_timeout=2)
    assert recovered.returncode == 0  # cut off, retried, read


@pytest.mark.parametrize(("signum", "concurrency"), [(signal.SIGTERM, 16), (signal.SIGINT, 16),
                                                     (signal.SIGTERM, 1)])
@pytest.mark.slow
def test_a_signal_ends_the_run_within_two_seconds_whatever_is_in_flight(start_sandbox, tmp_path, signum,
                                                                         concurrency):
    sandbox = start_sandbox(companies=2, orders=50)
    api = Api(sandbox)
    api.faults(script={"mode": "silent", "count": 10_000, "path": "/data/commerce-orders"})
    config = write_json(tmp_path, "config.json", tap_config(sandbox, max_concurrency=concurrency))
    process = subprocess.Popen([sys.executable, "-m", "tap_codat_commerce", "--config", config],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(r["path"].endswith("commerce-orders") for r in api.requests_log()["requests"]):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    # the server has the orders request and answers it never: it is in flight
    signalled = time.monotonic()
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)
    assert time.monotonic() - signalled < 2.0
    assert process.returncode == 128 + signum
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert [m for m in parse_messages(stdout) if m["type"] == "STATE"]  # the STATE was written


# --- silent mistakes and the machine (issue 20, points 5 and 6) ----------------------------------
def test_a_catalog_of_unknown_streams_is_an_error(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=5)
    catalog = {"streams": [{"tap_stream_id": "invoices", "stream": "invoices", "schema": {"type": "object"},
                            "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}]}]}
    config = write_json(tmp_path, "c.json", tap_config(sandbox))
    result = run_cli(["--config", config, "--catalog", write_json(tmp_path, "catalog.json", catalog)])
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "selects no stream this tap has" in errors[0] and "invoices" in errors[0]


@pytest.mark.slow
def test_company_ids_of_which_none_exists_is_an_error_but_an_empty_shard_is_not(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=5)
    missing = "00000000-0000-4000-8000-000000000000"
    result = run(tmp_path, sandbox, "none", company_ids=[missing])
    assert result.returncode == 1 and "none of the 1 companies exists" in error_lines(result.stderr)[0]
    shards = [run(tmp_path, sandbox, f"shard-{i}", shard_count=8, shard_index=i).returncode for i in range(8)]
    assert shards == [0] * 8  # seven of them hold no company: that is no error


@pytest.mark.slow
@pytest.mark.parametrize("target", ["/dev/full", "closed"])
def test_stdout_that_cannot_be_written_is_one_line(start_sandbox, tmp_path, target):
    sandbox = start_sandbox(companies=2, orders=200)
    config = write_json(tmp_path, "c.json", tap_config(sandbox))
    command = [sys.executable, "-m", "tap_codat_commerce", "--config", config]
    if target == "/dev/full":
        with open("/dev/full", "w") as full:
            done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
        stderr, expected = done.stderr, "writing to stdout failed: No space left on device"
        returncode = done.returncode
    else:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdout is not None
        process.stdout.readline()
        process.stdout.close()  # the target went away
        assert process.stderr is not None
        stderr = process.stderr.read()
        process.stderr.close()
        returncode = process.wait(timeout=120)
        expected = "closed it before the end"
    assert returncode == 1
    errors = error_lines(stderr)
    assert len(errors) == 1 and expected in errors[0]
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and os.linesep + "28" not in stderr


@pytest.mark.slow
def test_meltano_keeps_the_state_of_what_succeeded_when_the_tap_finishes_with_failures(start_sandbox, tmp_path):
    """`meltano run` exits 1 for the failing block, but its STATE of everything read is kept: the
    next run reads only the failed partitions again (and the bookmarks' boundary seconds)."""
    import uuid

    from tests.conftest import MELTANO, ROOT, meltano, meltano_env

    sandbox = start_sandbox(companies=3, orders=40, seed=13, accounting_every=0)
    api = Api(sandbox)
    truth = truth_by_company(api)
    victim = sorted(truth)[0]
    suffix = f"failures{uuid.uuid4().hex[:8]}"
    env = meltano_env(sandbox, TARGET_JSONL_DESTINATION_PATH=str(tmp_path), TARGET_JSONL_DO_TIMESTAMP_FILE="false",
                      TAP_CODAT_COMMERCE_MAX_RETRIES="2")
    meltano("install", "extractor", "tap-codat-commerce", env=env)
    meltano("install", "loader", "target-jsonl", env=env)
    api.faults(company_faults={victim: {"kind": "server_error", "dataType": "commerce-orders"}})
    command = [MELTANO, "run", "--state-id-suffix", suffix, "tap-codat-commerce", "target-jsonl"]
    failed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert failed.returncode == 1
    assert "Sync finished, with failures: 1 partition" in failed.stdout + failed.stderr
    api.faults(company_faults=None)
    api.reset_requests()
    meltano("run", "--state-id-suffix", suffix, "tap-codat-commerce", "target-jsonl", env=env)
    meltano("state", "clear", "--force", f"dev:tap-codat-commerce-to-target-jsonl:{suffix}", env=env)
    data_reads = [r for r in api.requests_log()["requests"] if "/data/" in r["path"]]
    assert data_reads and all(victim in r["path"] and r["path"].endswith("commerce-orders") for r in data_reads)


@pytest.mark.slow
def test_progress_lines_replace_one_line_per_company_at_scale(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=30, orders=2)
    often = run(tmp_path, sandbox, "progress", progress_interval=0.001)
    lines = [line for line in often.stderr.splitlines() if "Progress: " in line]
    assert lines and "/30 companies" in lines[0] and "requests in the last minute (budget none)" in lines[0]
    assert "left" in lines[-1] and not [line for line in often.stderr.splitlines() if "Company 1/30" in line]
    rarely = run(tmp_path, sandbox, "progress-rare", progress_interval=3600)
    assert not [line for line in rarely.stderr.splitlines() if "Progress: " in line]
