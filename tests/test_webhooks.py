"""The webhook receiver over real HTTP (its own process), the events file shared with the tap, the
sandbox's Svix deliveries, and webhook-driven tap runs end to end."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from standardwebhooks.webhooks import Webhook as StandardWebhook

from tap_codat_commerce.sandbox.webhooks import sign as sandbox_sign
from tap_codat_commerce.streams import shard_of
from tap_codat_commerce.webhooks.queue import STATE_KEY, EventQueue
from tap_codat_commerce.webhooks.receiver import SECRET_VARIABLE, receiver_process
from tests.conftest import Api, run_cli, tap_config, write_json
from tests.test_changes import data_requests

KEY = bytes(range(1, 33))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(101, 133))).decode()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """Svix's scheme written out: base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))."""
    return "v1," + base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body,
                                             hashlib.sha256).digest()).decode()


def event(company: str = "c0ffee00-0000-4000-8000-000000000001", connection: str = "k1",
          data_type: str = "commerce-orders", kind: str = "read.completed") -> dict:
    return {"id": "e1", "eventType": kind, "payload": {"referenceCompany": {"id": company}, "dataTypes": [
        {"connectionId": connection, "dataType": data_type, "recordsModified": True, "status": "Complete"}]}}


def deliver(url: str, body: bytes, message_id: str, *, key: bytes = KEY, timestamp: int | None = None,
            headers: dict | None = None) -> requests.Response:
    stamp = int(time.time()) if timestamp is None else timestamp
    sent = {"svix-id": message_id, "svix-timestamp": str(stamp), "svix-signature": signature(key, message_id, stamp,
                                                                                          body),
            "Content-Type": "application/json"}
    return requests.post(url, data=body, headers=sent if headers is None else headers, timeout=15)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- signatures ----------------------------------------------------------------------------------
def test_the_signature_matches_svixs_published_known_answer():
    # Svix's documented example (docs.svix.com, "Verifying webhooks manually"), written out here.
    secret, message_id, timestamp = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    key = base64.b64decode(secret.removeprefix("whsec_"))
    assert signature(key, message_id, timestamp, body) == expected  # the hmac + hashlib + base64 above
    assert sandbox_sign(key, message_id, timestamp, body) == expected  # the sandbox signs like Codat
    # the library the receiver verifies with computes the same answer
    assert StandardWebhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body.decode()) == expected


@pytest.mark.slow
def test_valid_deliveries_are_written_once_across_repeats_and_restarts(tmp_path):
    events = tmp_path / "events.jsonl"
    body = json.dumps(event()).encode()
    with receiver_process(events, SECRET) as url:
        first = deliver(url, body, "msg_one")
        assert first.status_code == 200 and first.json() == {"written": True}
        assert first.elapsed.total_seconds() < 5  # Codat gives a consumer 15 s; fsync included
        for _ in range(3):  # Svix retries: the same id, a new timestamp and signature each time
            again = deliver(url + "codat/read-completed", body, "msg_one", timestamp=int(time.time()) - 30)
            assert again.status_code == 200 and again.json() == {"duplicate": True}
        assert deliver(url, json.dumps(event(data_type="commerce-payments")).encode(), "msg_two").json() == {
            "written": True}
    with receiver_process(events, SECRET) as url:  # a restarted receiver remembers what it wrote
        assert deliver(url, body, "msg_one").json() == {"duplicate": True}
    written = lines(events)
    assert [e["payload"]["dataTypes"][0]["dataType"] for e in written] == ["commerce-orders", "commerce-payments"]


def test_what_is_not_a_valid_delivery_is_refused_and_nothing_written(tmp_path):
    events, log = tmp_path / "events.jsonl", tmp_path / "receiver.log"
    body = json.dumps(event()).encode()
    now = int(time.time())
    with receiver_process(events, SECRET, "--max-body-bytes", "4096", log=log) as url:
        unsigned = requests.post(url, data=body, timeout=15)
        forged = deliver(url, body, "msg_f", headers={"svix-id": "msg_f", "svix-timestamp": str(now),
                                                       "svix-signature": "v1," + base64.b64encode(b"x" * 32).decode()})
        garbled = deliver(url, body, "msg_g", headers={"svix-id": "msg_g", "svix-timestamp": str(now),
                                                        "svix-signature": "nonsense"})
        other_secret = deliver(url, body, "msg_o", key=base64.b64decode(OTHER_SECRET[6:]))
        replayed = deliver(url, body, "msg_r", timestamp=now - 6 * 60)  # signed right, 6 minutes old
        future = deliver(url, body, "msg_t", timestamp=now + 6 * 60)
        # the raw bytes are what is signed: the same JSON with other whitespace no longer verifies
        stamp = int(time.time())
        reformatted = requests.post(url, data=json.dumps(event(), indent=2).encode(), timeout=15, headers={
            "svix-id": "msg_w", "svix-timestamp": str(stamp), "svix-signature": signature(KEY, "msg_w", stamp, body)})
        oversized = deliver(url, json.dumps({**event(), "pad": "x" * 5000}).encode(), "msg_big")
        not_json = deliver(url, b"{not json", "msg_nj")
        no_event = deliver(url, b'{"eventType": "read.completed", "payload": {}}', "msg_ne")
        a_list = deliver(url, b"[1, 2]", "msg_l")
        other_type = deliver(url, json.dumps(event(kind="client.rateLimit.reached")).encode(), "msg_rl")
        get = requests.get(url, timeout=15)
    refused = (unsigned, forged, garbled, other_secret, replayed, future, reformatted)
    assert [r.status_code for r in refused] == [401] * 7
    assert oversized.status_code == 413
    assert [r.status_code for r in (not_json, no_event, a_list)] == [400] * 3
    # a signed event of a type the tap does not consume: 200 so that Svix stops, nothing written
    assert other_type.status_code == 200 and other_type.json() == {"ignored": "client.rateLimit.reached"}
    assert get.status_code == 405
    assert not events.exists() or events.read_text() == ""
    text = log.read_text()
    assert "client.rateLimit.reached" in text and SECRET not in text and SECRET[6:] not in text


@pytest.mark.slow
def test_the_secret_comes_from_the_environment_and_bad_ones_get_one_line(tmp_path):
    command = [sys.executable, "-m", "tap_codat_commerce.onboarding", "receive", "--port", "0", "--events-file",
               str(tmp_path / "events.jsonl")]
    base = {"PATH": "/usr/bin"}
    missing = subprocess.run(command, capture_output=True, text=True, timeout=60, env=base, check=False)
    bad = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False,
                         env={**base, SECRET_VARIABLE: "whsec_not*base64*secret-value"})
    no_dir = subprocess.run([*command[:-1], str(tmp_path / "absent" / "events.jsonl")], capture_output=True,
                            text=True, timeout=60, env={**base, SECRET_VARIABLE: SECRET}, check=False)
    bad_port = subprocess.run([*command[:5], "99999", *command[6:]], capture_output=True, text=True, timeout=60,
                              env={**base, SECRET_VARIABLE: SECRET}, check=False)
    for done in (missing, bad, no_dir, bad_port):
        assert done.returncode == 1 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert SECRET_VARIABLE in missing.stderr
    assert "not a Svix signing secret" in bad.stderr and "not*base64" not in bad.stderr
    assert "does not exist" in no_dir.stderr and "cannot listen on 127.0.0.1:99999" in bad_port.stderr
    assert "--secret" not in subprocess.run([*command[:3], "receive", "--help"], capture_output=True, text=True,
                                            timeout=60, check=False).stdout


# --- the events file ------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_receivers_and_claims_meanwhile_keep_every_event_whole_and_once(tmp_path):
    events = tmp_path / "events.jsonl"
    queue = EventQueue(events)
    claimed: list[str] = []
    stop = threading.Event()

    def claim_repeatedly() -> None:
        while not stop.is_set():
            claim = queue.claim()
            for name in claim.files:
                claimed.extend(claim.lines[name])
            queue.consume(list(claim.files))

    with receiver_process(events, SECRET) as first, receiver_process(events, SECRET) as second:
        claimer = threading.Thread(target=claim_repeatedly)
        claimer.start()
        answers: list[int] = []

        def post(k: int) -> None:
            body = json.dumps(event(company=f"company-{k:03d}", data_type="commerce-orders")).encode()
            answers.append(deliver(first if k % 2 else second, body, f"msg_{k}").status_code)
            answers.append(deliver(second if k % 2 else first, body, f"msg_{k}").status_code)  # a duplicate

        threads = [threading.Thread(target=post, args=(k,)) for k in range(120)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        claimer.join()
    claimed.extend(events.read_text().splitlines() if events.exists() else [])
    companies = [json.loads(line)["payload"]["referenceCompany"]["id"] for line in claimed]  # every line whole
    assert answers == [200] * 240
    assert sorted(companies) == [f"company-{k:03d}" for k in range(120)]  # each once


def test_four_shards_together_consume_every_event_exactly_once(tmp_path):
    events = tmp_path / "events.jsonl"
    queue = EventQueue(events)
    companies = [f"{k:08x}-0000-4000-8000-00000000000{k % 10}" for k in range(200)]
    for k, company in enumerate(companies):
        assert queue.append_once(f"msg_{k}", json.dumps(event(company=company)).encode())
    by_shard: dict[int, list[str]] = {}
    for shard in (2, 0, 3, 1):
        claim = queue.claim(shard, 4)
        by_shard[shard] = [json.loads(line)["payload"]["referenceCompany"]["id"]
                           for name in claim.files for line in claim.lines[name]]
        again = queue.claim(shard, 4)  # not consumed yet: a later run of the shard reads the same again
        assert again.files == claim.files
        queue.consume(list(claim.files))
        assert queue.claim(shard, 4).files == ()
    for shard, claimed in by_shard.items():
        assert claimed and all(shard_of(company, 4) == shard for company in claimed)
    assert sorted(c for claimed in by_shard.values() for c in claimed) == sorted(companies)
    assert events.read_text() == ""


# --- the sandbox's deliveries -----------------------------------------------------------------------
@pytest.mark.slow
def test_the_sandbox_signs_retries_duplicates_and_sends_stale_deliveries(start_sandbox, tmp_path):
    events = tmp_path / "events.jsonl"
    with receiver_process(events, SECRET) as url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        sandbox = start_sandbox(companies=3, orders=5, webhook_url=url + "codat", webhook_secret=SECRET,
                                webhook_retry_speedup=600)
        api = Api(sandbox)
        companies = [c["id"] for c in api.companies()]
        assert api.post("/_sandbox/webhooks", json={"duplicate": 1, "stale": 1}).status_code == 200
        api.advance(seconds=60, updates=1, inserts=0, companies=companies[:1], dataTypes=["commerce-orders"])
        api.advance(seconds=60, updates=1, inserts=0, companies=companies[1:2], dataTypes=["commerce-orders"])

        def delivered(count: int) -> bool:
            return api.get("/_sandbox/webhooks").json()["delivered"] == count

        wait_for(lambda: delivered(2), "two deliveries")
        wait_for(lambda: sum(len(m["attempts"]) for m in api.get("/_sandbox/webhooks").json()["messages"]) == 4,
                 "the duplicate")
    messages = api.get("/_sandbox/webhooks").json()["messages"]
    assert [[a["status"] for a in m["attempts"]] for m in messages] == [[401, 200, 200], [200]]  # stale, dup
    assert messages[0]["attempts"][0]["stale"] and not messages[0]["attempts"][1]["stale"]
    assert sorted(e["payload"]["referenceCompany"]["id"] for e in lines(events)) == sorted(companies[:2])  # once each
    # the receiver is down: retried on the (compressed) schedule until it is back
    api.advance(seconds=60, updates=1, inserts=0, companies=companies[2:], dataTypes=["commerce-orders"])
    wait_for(lambda: len(api.get("/_sandbox/webhooks").json()["messages"][2]["attempts"]) >= 2, "failed attempts")
    with receiver_process(events, SECRET, port=port):
        wait_for(lambda: delivered(3), "the retried delivery")
    statuses = [a["status"] for a in api.get("/_sandbox/webhooks").json()["messages"][2]["attempts"]]
    assert statuses[-1] == 200 and set(statuses[:-1]) == {0}
    assert sorted(e["payload"]["referenceCompany"]["id"] for e in lines(events)) == sorted(companies)


# --- end to end ----------------------------------------------------------------------------------
def cli_run(tmp_path: Path, name: str, config: dict, state: dict | None) -> tuple[int, dict, str]:
    args = ["--config", write_json(tmp_path, f"{name}.json", config)]
    if state is not None:
        args += ["--state", write_json(tmp_path, f"{name}-state.json", state)]
    done = run_cli(args, timeout=300)
    states = [m["value"] for m in done.messages if m["type"] == "STATE"]
    return done.returncode, states[-1] if states else (state or {}), done.stderr


@pytest.mark.slow
def test_webhook_driven_runs_read_exactly_the_changed_triples_and_lose_no_event(start_sandbox, tmp_path):
    events = tmp_path / "events.jsonl"
    with receiver_process(events, SECRET) as url:
        sandbox = start_sandbox(companies=4, orders=20, webhook_url=url, webhook_secret=SECRET,
                                webhook_retry_speedup=600)
        api = Api(sandbox)
        a, b, c = (company for company, _ in api.commerce_connections()[:3])
        connection = {company: conn["id"] for company, conn in api.commerce_connections()}
        code, state, _ = cli_run(tmp_path, "full", tap_config(sandbox), None)  # the first, full read
        assert code == 0
        config = tap_config(sandbox, events_file=str(events), skip_unchanged=False)

        def wait_events(count: int) -> None:
            wait_for(lambda: api.get("/_sandbox/webhooks").json()["delivered"] == count, f"{count} deliveries")

        # 1. changes → signed webhooks → receiver → the next run reads exactly those triples
        api.advance(seconds=600, updates=2, inserts=1, companies=[a], dataTypes=["commerce-payments"])
        wait_events(1)
        api.reset_requests()
        code, state, _ = cli_run(tmp_path, "one", config, state)
        assert code == 0 and data_requests(api) == {(a, connection[a], "commerce-payments")}
        assert state[STATE_KEY]["consumed"]
        # 2. a run that fails leaves its events: the next one reads them
        api.advance(seconds=600, updates=2, inserts=1, companies=[b], dataTypes=["commerce-orders"])
        wait_events(2)
        failing = f"{b}/connections/{connection[b]}/data/commerce-orders"
        api.faults(script={"status": 500, "count": 1000, "path": failing})
        api.reset_requests()
        code, failed_state, stderr = cli_run(tmp_path, "two", {**config, "max_retries": 1}, state)
        assert code == 3, stderr[-2000:]
        assert STATE_KEY not in failed_state
        api.faults(script=None)
        # 3. an event that arrives during a run is read by the next run, not lost to it
        api.post("/_sandbox/advance", json={"seconds": 600, "updates": 1, "inserts": 1, "companies": [c],
                                            "dataTypes": ["commerce-customers"], "after_pages": 1})
        api.reset_requests()
        code, state, _ = cli_run(tmp_path, "three", config, failed_state)
        assert code == 0 and data_requests(api) == {(b, connection[b], "commerce-orders")}
        wait_events(3)
        api.reset_requests()
        code, state, _ = cli_run(tmp_path, "four", config, state)
        assert code == 0 and data_requests(api) == {(c, connection[c], "commerce-customers")}
        # 4. nothing new: the consumed events are not read twice
        api.reset_requests()
        code, state, _ = cli_run(tmp_path, "five", config, state)
        assert code == 0 and data_requests(api) == set()
        assert [p.name for p in tmp_path.glob("events.jsonl.claimed.*")] == [n for n in state[STATE_KEY]["consumed"]]
