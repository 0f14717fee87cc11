"""Read only what Codat re-synced (issue 12): dataStatus markers and read.completed events,
over real HTTP to the sandbox."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tap_codat_commerce.codat.dates import canonical
from tests.conftest import STREAM_OF_DATA_TYPE, Api, run_tap, tap_config

COMMERCE_STREAMS = set(STREAM_OF_DATA_TYPE.values())


def data_requests(api: Api) -> set[tuple[str, str, str]]:
    """(company, connection, data path) of every commerce data request the sandbox served."""
    found = set()
    for request in api.requests_log()["requests"]:
        parts = request["path"].split("/")
        if "data" in parts and len(parts) == 7:
            found.add((parts[2], parts[4], parts[6]))
    return found


def commerce_records(run) -> dict[tuple[str, str, str], set[str]]:
    found: dict[tuple[str, str, str], set[str]] = {}
    for stream in COMMERCE_STREAMS:
        for record in run.records.get(stream, []):
            found.setdefault((record["companyId"], record["connectionId"], stream), set()).add(record.get("id"))
    return found


def expected_after(truth: dict, state: dict, triples: set[tuple[str, str, str]]) -> dict:
    """Per touched (company, connection, stream): the records at or after the bookmark's second."""
    expected = {}
    for company, connection, data_type in triples:
        stream = STREAM_OF_DATA_TYPE[data_type]
        partition = next(p for p in state["bookmarks"][stream]["partitions"]
                         if p["context"] == {"companyId": company, "connectionId": connection})
        mark = partition.get("replication_key_value", "")[:19]
        rows = truth[company][connection][data_type]
        expected[(company, connection, stream)] = {r["id"] for r in rows
                                                   if (canonical(r["modifiedDate"]) or "")[:19] >= mark}
    return expected


@pytest.mark.slow
def test_a_run_with_nothing_changed_costs_two_requests_per_company(start_sandbox):
    sandbox = start_sandbox(companies=300, orders=3)
    api = Api(sandbox)
    first = run_tap(tap_config(sandbox))
    api.reset_requests()
    again = run_tap(tap_config(sandbox), state=first.final_state)
    requests = api.requests_log()["requests"]
    assert len(requests) <= 2 * 300 + 1  # a share of the companies page, connections, dataStatus
    assert not data_requests(api)
    assert not any(again.records.get(stream) for stream in COMMERCE_STREAMS)
    assert again.final_state["bookmarks"]["orders"] == first.final_state["bookmarks"]["orders"]


def test_after_a_scoped_advance_exactly_the_touched_triples_are_read(start_sandbox):
    sandbox = start_sandbox(companies=6, orders=40)
    api = Api(sandbox)
    first = run_tap(tap_config(sandbox))
    connections = api.commerce_connections()
    touched_companies = [connections[0][0], connections[3][0]]
    scope = ["commerce-orders", "commerce-customers", "commerce-companyInfo"]
    api.advance(seconds=600, updates=3, inserts=2, companies=touched_companies, dataTypes=scope)
    truth = api.truth()
    touched = {(company, connection, data_type) for company in touched_companies
               for connection, data_types in truth[company].items() for data_type in data_types
               if data_type in scope}
    api.reset_requests()
    second = run_tap(tap_config(sandbox), state=first.final_state)
    path_of = {data_type: "commerce-" + data_type.split("-", 1)[1] for data_type in STREAM_OF_DATA_TYPE}
    path_of["commerce-companyInfo"] = "commerce-info"
    assert data_requests(api) == {(c, k, path_of[t]) for c, k, t in touched}
    got = commerce_records(second)
    incremental = {t for t in touched if t[2] != "commerce-companyInfo"}
    assert {k: v for k, v in got.items() if k[2] != "company_info"} == expected_after(
        truth, first.final_state, incremental)
    assert {k[:2] for k in got if k[2] == "company_info"} == {t[:2] for t in touched}


@pytest.mark.slow
def test_a_sync_in_progress_is_read_and_read_again_once_it_completes(start_sandbox):
    sandbox = start_sandbox(companies=2, orders=30, sync_delay=1.5)
    api = Api(sandbox)
    api.wait_for_syncs()  # the seeded first syncs
    first = run_tap(tap_config(sandbox))
    company = api.commerce_connections()[0][0]
    api.advance(seconds=60, updates=2, inserts=1, companies=[company], dataTypes=["commerce-orders"])
    status = api.get(f"/companies/{company}/dataStatus").json()["commerce-orders"]["currentStatus"]
    assert status in ("Queued", "Fetching", "Mapping")
    api.reset_requests()
    during = run_tap(tap_config(sandbox), state=first.final_state)
    assert {p for _, _, p in data_requests(api)} == {"commerce-orders"}  # running: read as before
    api.wait_for_syncs()
    api.reset_requests()
    after = run_tap(tap_config(sandbox), state=during.final_state)
    assert {p for _, _, p in data_requests(api)} == {"commerce-orders"}  # a new successful sync: read again
    api.reset_requests()
    run_tap(tap_config(sandbox), state=after.final_state)
    assert not data_requests(api)  # and then it is unchanged


@pytest.mark.parametrize("setting", [{"skip_unchanged": False}, {"reread_after_hours": 0},
                                     {"check_data_status": False}])
@pytest.mark.slow
def test_turning_it_off_reads_every_data_type(start_sandbox, setting):
    sandbox = start_sandbox(companies=3, orders=10, accounting_every=0)
    api = Api(sandbox)
    first = run_tap(tap_config(sandbox))
    read_first = data_requests(api)
    api.reset_requests()
    run_tap(tap_config(sandbox), state=first.final_state)
    assert not data_requests(api)
    api.reset_requests()
    run_tap(tap_config(sandbox, **setting), state=first.final_state)
    assert data_requests(api) >= {r for r in read_first if r[2] != "commerce-companyInfo"} and read_first


def test_a_full_refresh_ignores_the_markers(start_sandbox):
    sandbox = start_sandbox(companies=2, orders=10, accounting_every=0)
    first = run_tap(tap_config(sandbox))
    state = json.loads(json.dumps(first.final_state))
    for partition in state["bookmarks"]["orders"]["partitions"]:
        partition.pop("replication_key_value", None)  # no bookmark: a full read of orders
    again = run_tap(tap_config(sandbox), state=state)
    assert len(again.records["orders"]) == len(first.records["orders"])
    assert not again.records.get("customers")


class EventReceiver(BaseHTTPRequestHandler):
    """A webhook receiver as a user would run one: each POST body appended as one line."""

    path_to_file: Path

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.path_to_file.open("ab") as handle:
            handle.write(json.dumps(json.loads(body)).encode() + b"\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_an_events_file_limits_a_run_to_the_changed_triples(start_sandbox, tmp_path):
    events = tmp_path / "events.jsonl"
    receiver_class = type("Receiver", (EventReceiver,), {"path_to_file": events})
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), receiver_class)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/codat"
        sandbox = start_sandbox(companies=5, orders=30, webhook_url=url)
        api = Api(sandbox)
        first = run_tap(tap_config(sandbox))
        company = api.commerce_connections()[2][0]
        api.advance(seconds=600, updates=2, inserts=2, companies=[company], dataTypes=["commerce-payments"])
        deadline = time.monotonic() + 10
        # the receiver creates the file before it writes the line: wait for a whole line
        while not (events.exists() and events.read_text().endswith("\n")) and time.monotonic() < deadline:
            time.sleep(0.05)
        event = json.loads(events.read_text().splitlines()[0])
        assert event["eventType"] == "read.completed"
        assert event["payload"]["referenceCompany"]["id"] == company
        truth = api.truth()
        touched = {(company, e["connectionId"], e["dataType"]) for e in event["payload"]["dataTypes"]}
        api.reset_requests()
        run = run_tap(tap_config(sandbox, events_file=str(events), skip_unchanged=False), state=first.final_state)
        assert data_requests(api) == {(c, k, "commerce-payments") for c, k, _ in touched}
        visited = {r["path"].split("/")[2] for r in api.requests_log()["requests"] if r["path"].count("/") >= 2}
        assert visited == {"companies", company} or visited == {company}
        assert commerce_records(run) == expected_after(truth, first.final_state, touched)
    finally:
        receiver.shutdown()
        receiver.server_close()


@pytest.mark.slow
def test_a_bad_events_file_stops_with_one_line(start_sandbox, tmp_path):
    from tests.conftest import run_cli, write_json

    sandbox = start_sandbox(companies=1, orders=5)
    events = tmp_path / "events.jsonl"
    events.write_text('{"eventType": "read.completed"}\n')
    result = run_cli(["--config", write_json(tmp_path, "c.json", tap_config(sandbox, events_file=str(events)))])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "events_file" in result.stderr and "claimed as events.jsonl.claimed.0of1." in result.stderr
    assert ") line 1: not a Codat read.completed event" in result.stderr
    assert len(list(tmp_path.glob("events.jsonl.claimed.0of1.*"))) == 1  # kept for the user to fix, not dropped


def test_the_setup_command_prints_what_to_configure():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tap_codat_commerce.onboarding", "webhooks", "--url",
                           "https://hooks.example/codat"], capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin"})
    assert done.returncode == 0, done.stderr
    assert "read.completed" in done.stdout and "https://hooks.example/codat" in done.stdout
    assert "events_file" in done.stdout.lower() or "EVENTS_FILE" in done.stdout
