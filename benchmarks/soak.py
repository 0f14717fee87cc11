"""Soak: back-to-back incremental syncs against a sandbox whose data keeps changing, faults on.

    python benchmarks/soak.py --minutes 30

The data changes every 5 s (updates and inserts) and, mid-read, every 3rd commerce page served
moves its first 2 records to a new, later modifiedDate (Codat re-stamping while a tap pages).

Every run starts from the previous run's final STATE, as an orchestrator would. At the end the
changes stop, one last run catches up, and every record the sandbox holds must have been emitted
in its final version (nothing lost). Peak RSS of every run is recorded (memory flat).
Prints a summary and writes JSON (--out). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from tap_codat_commerce.codat.data_types import COMMERCE_ENDPOINTS
from tap_codat_commerce.codat.dates import canonical

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, TAP, sandbox

HELPER = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=sys.stdout, stderr=subprocess.PIPE, text=True)\n"
    "errors = [line for line in done.stderr.splitlines() if '| ERROR' in line][-3:]\n"
    "sys.stderr.write('\\n'.join(errors) + '\\n')\n"
    "sys.stderr.write(f'{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {done.returncode}')\n"
)


def one_run(config: Path, state: dict[str, Any] | None, directory: Path) -> tuple[list[dict], int, int, str]:
    args = [sys.executable, "-c", HELPER, TAP, "--config", str(config)]
    if state is not None:
        state_path = directory / "state.json"
        state_path.write_text(json.dumps(state))
        args += ["--state", str(state_path)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    *errors, last = done.stderr.strip().splitlines()
    rss_kb, code = last.split()
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    return messages, int(rss_kb) // 1024, int(code), "\n".join(e for e in errors if e)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--companies", type=int, default=5)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--restamp-every", type=int, default=3, help="re-stamp records every Nth page (0: off)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args()
    flags = ["--seed", "7", "--companies", str(args.companies), "--orders", str(args.orders),
             "--change-every", "5", "--error-rate", "0.05", "--drop-rate", "0.02",
             "--truncate-rate", "0.02", "--concurrency-limit", "10",
             "--restamp-every", str(args.restamp_every), "--restamp-count", "2"]
    latest: dict[tuple[str, str, str, str], str] = {}
    runs: list[dict[str, Any]] = []
    state = None
    started = time.monotonic()
    with sandbox(*flags) as (base_url, api_key), tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config = directory / "config.json"
        config.write_text(json.dumps({"api_key": api_key, "base_url": base_url, "max_requests_per_minute": 0,
                                      "quota_reserve": 0}))
        final = False
        while True:
            if not final and time.monotonic() - started >= args.minutes * 60:
                requests.post(base_url + "/_sandbox/faults", json={"change_every": 0, "restamp_every": 0}, timeout=10)
                time.sleep(1)
                final = True
            run_started = time.monotonic()
            messages, rss, code, errors = one_run(config, state, directory)
            records = [m for m in messages if m["type"] == "RECORD" and "id" in m["record"]
                       and "connectionId" in m["record"]]
            for m in records:
                r = m["record"]
                key = (m["stream"], r["companyId"], r["connectionId"], r["id"])
                latest[key] = max(latest.get(key, ""), r.get("modifiedDate") or "")
            states = [m["value"] for m in messages if m["type"] == "STATE"]
            state = states[-1] if states else state
            runs.append({"run": len(runs) + 1, "seconds": round(time.monotonic() - run_started, 2),
                         "records": len(records), "peak_rss_mb": rss, "exit": code})
            if code != 0:
                runs[-1]["error"] = errors
                print(errors, flush=True)
            print(f"run {len(runs):>4}: {len(records):>6} records, {runs[-1]['seconds']:>5.1f} s, "
                  f"{rss} MB, exit {code}", flush=True)
            if final:
                break
        truth = requests.get(base_url + "/_sandbox/truth", timeout=120).json()
        log = requests.get(base_url + "/_sandbox/requests", timeout=60).json()
    streams = {e.data_type: e.name for e in COMMERCE_ENDPOINTS if not e.single_object}
    held = lost = 0
    for company, connections in truth.items():
        for connection, data_types in connections.items():
            for data_type, rows in data_types.items():
                if data_type not in streams:
                    continue
                for row in rows:
                    held += 1
                    seen = latest.get((streams[data_type], company, connection, row["id"]))
                    if seen is None or seen < (canonical(row["modifiedDate"]) or ""):
                        lost += 1
    rss = [r["peak_rss_mb"] for r in runs]
    summary = {"minutes": round((time.monotonic() - started) / 60, 1), "runs": len(runs),
               "failed_runs": sum(r["exit"] != 0 for r in runs), "records_emitted": sum(r["records"] for r in runs),
               "records_held_at_end": held, "lost": lost, "requests": len(log["requests"]),
               "429s": log["throttled"], "rss_first_mb": rss[0], "rss_max_mb": max(rss), "rss_last_mb": rss[-1],
               "rss_incremental_min_mb": min(rss[1:] or rss), "rss_incremental_max_mb": max(rss[1:] or rss)}
    print("\n" + "\n".join(f"{k:>24}: {v}" for k, v in summary.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    return 0 if lost == 0 and not summary["failed_runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
