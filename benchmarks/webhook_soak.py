"""Webhook soak: sandbox changes → signed webhooks → the receiver → back-to-back tap runs, some killed.

    python benchmarks/webhook_soak.py --minutes 3

A sandbox (signing with a test secret, retrying on Svix's schedule sped up 600 times) changes a
few random (company, data type) pairs every 0.5-2 s; now and then it is told to send a duplicate
and a stale delivery. The receiver (its own process, restarted every minute) appends the events.
Tap runs follow back to back with ``events_file``, each from the STATE the last one left (as a
target would have committed it); about a third are SIGKILLed at a random moment. At the end the
changes stop, every delivery is awaited, and runs go on until one finishes with nothing left. Then
every record the sandbox holds must have been emitted in its final version, and every changed
triple read. Prints counts; writes JSON (--out). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tap_codat_commerce.codat.data_types import COMMERCE_ENDPOINTS
from tap_codat_commerce.codat.dates import canonical
from tap_codat_commerce.webhooks.receiver import receiver_process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, TAP, sandbox, session

SECRET = "whsec_" + base64.b64encode(b"webhook-soak-test-secret-32bytes").decode()
STREAMS = {e.data_type: e.name for e in COMMERCE_ENDPOINTS if not e.single_object}


def parse(stdout: Path) -> list[dict[str, Any]]:
    """The complete Singer lines of a run's stdout (a killed run's last line may be cut)."""
    messages = []
    for line in stdout.read_text().splitlines():
        with contextlib.suppress(ValueError):
            messages.append(json.loads(line))
    return messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--companies", type=int, default=12)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--kill-share", type=float, default=0.35)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "webhook_soak.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    latest: dict[tuple[str, str, str, str], str] = {}
    changed: set[tuple[str, str, str]] = set()
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as outer:
        directory = Path(tmp)
        events = directory / "events.jsonl"
        receiver = contextlib.ExitStack()

        def close_receiver() -> None:
            receiver.close()  # whichever receiver runs by then

        outer.callback(close_receiver)
        first_url = receiver.enter_context(receiver_process(events, SECRET, log=directory / "receiver.log"))
        port = int(first_url.rstrip("/").rsplit(":", 1)[1])
        flags = ["--seed", str(args.seed), "--companies", str(args.companies), "--orders", str(args.orders),
                 "--webhook-url", first_url + "codat", "--webhook-secret", SECRET, "--webhook-retry-speedup", "600"]
        with sandbox(*flags) as (base_url, api_key):
            api = session(api_key)
            config = directory / "config.json"
            config.write_text(json.dumps({"api_key": api_key, "base_url": base_url, "max_requests_per_minute": 0,
                                          "quota_reserve": 0, "skip_unchanged": False}))
            events_config = directory / "events-config.json"
            events_config.write_text(json.dumps({**json.loads(config.read_text()), "events_file": str(events)}))
            companies = [c["id"] for c in api.get(base_url + "/companies?pageSize=500", timeout=30).json()["results"]]
            stop_changes = threading.Event()

            def change() -> None:
                ticks = 0
                while not stop_changes.wait(rng.uniform(0.5, 2.0)):
                    ticks += 1
                    if ticks % 15 == 0:
                        api.post(base_url + "/_sandbox/webhooks", json={"duplicate": 1, "stale": 1}, timeout=30)
                    answer = api.post(base_url + "/_sandbox/advance", timeout=60, json={
                        "seconds": 300, "updates": rng.randint(1, 3), "inserts": rng.randint(0, 2),
                        "companies": rng.sample(companies, rng.randint(1, 3)),
                        "dataTypes": rng.sample(sorted(STREAMS), rng.randint(1, 2))}).json()
                    for company, connections in answer["changes"].items():
                        for connection, data_types in connections.items():
                            changed.update((company, connection, data_type) for data_type in data_types)

            def one_run(state: dict[str, Any] | None, config_path: Path, kill_after: float | None) -> dict[str, Any]:
                stdout = directory / "out.jsonl"
                command = [TAP, "--config", str(config_path)]
                if state is not None:
                    (directory / "state.json").write_text(json.dumps(state))
                    command += ["--state", str(directory / "state.json")]
                run_started = time.monotonic()
                with stdout.open("wb") as out:
                    process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
                    try:
                        code = process.wait(timeout=kill_after)
                    except subprocess.TimeoutExpired:
                        process.send_signal(signal.SIGKILL)
                        code = process.wait()
                messages = parse(stdout)
                records = [m for m in messages if m["type"] == "RECORD" and "connectionId" in m["record"]]
                for m in records:
                    r = m["record"]
                    key = (m["stream"], r["companyId"], r["connectionId"], r.get("id") or "")
                    latest[key] = max(latest.get(key, ""), r.get("modifiedDate") or "")
                states = [m["value"] for m in messages if m["type"] == "STATE"]
                return {"exit": code, "killed": code == -signal.SIGKILL, "records": len(records),
                        "seconds": round(time.monotonic() - run_started, 2), "state": states[-1] if states else state}

            baseline = one_run(None, config, None)  # the first, full read
            assert baseline["exit"] == 0, "the baseline run failed"
            state = baseline["state"]
            changer = threading.Thread(target=change, daemon=True)
            changer.start()
            receiver_restarts = 0
            segment_started = time.monotonic()
            final_runs = 0
            while True:
                soaking = time.monotonic() - started < args.minutes * 60
                if soaking and time.monotonic() - segment_started > 60:  # restart the receiver (same port)
                    receiver.close()
                    receiver = contextlib.ExitStack()
                    receiver.enter_context(receiver_process(events, SECRET, port=port, log=directory / "receiver.log"))
                    receiver_restarts += 1
                    segment_started = time.monotonic()
                if not soaking and not stop_changes.is_set():
                    stop_changes.set()
                    changer.join()
                if stop_changes.is_set():
                    stats = api.get(base_url + "/_sandbox/webhooks", timeout=30).json()
                    if stats["pending"]:
                        time.sleep(0.2)
                        continue
                kill_after = rng.uniform(0.1, 1.2) if soaking and rng.random() < args.kill_share else None
                result = one_run(state, events_config, kill_after)
                state = result.pop("state")
                runs.append(result)
                print(f"run {len(runs):>4}: {result['records']:>5} records, {result['seconds']:>5.1f} s, "
                      f"exit {result['exit']}{' (killed)' if result['killed'] else ''}", flush=True)
                if not soaking:
                    final_runs += 1
                    leftovers = list(directory.glob("events.jsonl.claimed.*"))
                    consumed = set((state or {}).get("codat_events", {}).get("consumed", []))
                    if result["exit"] == 0 and {p.name for p in leftovers} <= consumed and not (
                            events.exists() and events.read_text().strip()):
                        break
                    if final_runs > 10:
                        break
            log_text = (directory / "receiver.log").read_text()
            deliveries = api.get(base_url + "/_sandbox/webhooks", timeout=30).json()
            truth = api.get(base_url + "/_sandbox/truth", timeout=120).json()
    held = lost = 0
    missing_triples: set[tuple[str, str, str]] = set()
    for company, connections in truth.items():
        for connection, data_types in connections.items():
            for data_type, rows in data_types.items():
                if data_type not in STREAMS:
                    continue
                for row in rows:
                    held += 1
                    seen = latest.get((STREAMS[data_type], company, connection, row["id"]))
                    if seen is None or seen < (canonical(row["modifiedDate"]) or ""):
                        lost += 1
                        missing_triples.add((company, connection, data_type))
    attempts = [a for m in deliveries["messages"] for a in m["attempts"]]
    summary = {
        "minutes": round((time.monotonic() - started) / 60, 1), "tap_runs": len(runs),
        "killed_runs": sum(r["killed"] for r in runs),
        "exits": {str(code): sum(r["exit"] == code for r in runs) for code in sorted({r["exit"] for r in runs})},
        "changed_triples": len(changed), "changed_triples_not_read": len(missing_triples & changed),
        "webhook_messages": len(deliveries["messages"]), "delivered": deliveries["delivered"],
        "failed_deliveries": deliveries["failed"], "attempts": len(attempts),
        "attempts_refused_or_unreached": sum(not 200 <= a["status"] < 300 for a in attempts),
        "stale_first_attempts": sum(a["stale"] for a in attempts),
        "duplicates_sent": sum(m["duplicated"] for m in deliveries["messages"]),
        "receiver_restarts": receiver_restarts, "secret_in_receiver_log": SECRET[6:] in log_text,
        "records_emitted": sum(r["records"] for r in runs) + baseline["records"],
        "records_held_at_end": held, "records_lost": lost}
    print("\n" + "\n".join(f"{k:>30}: {v}" for k, v in summary.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    return 0 if lost == 0 and not missing_triples and deliveries["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
