"""The quick start's main job (run it through scripts/quickstart.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import requests

from tap_codat_commerce.sandbox.cli import sandbox_process

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Tests point these elsewhere so that a user's own quick-start output and state stay untouched.
HOME = Path(os.environ.get("QUICKSTART_HOME", ROOT))
OUTPUT = HOME / "output"
RUNS = HOME / ".quickstart" / "runs"
SUFFIX = os.environ.get("QUICKSTART_STATE_SUFFIX", "")
STATE_ID = "dev:tap-codat-commerce-to-target-jsonl" + (f":{SUFFIX}" if SUFFIX else "")


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run(*args: str, env: dict[str, str], capture: bool = False) -> str:
    print("$ " + " ".join(args), flush=True)
    done = subprocess.run(args, env=env, cwd=ROOT, text=True, check=False,
                          stdout=subprocess.PIPE if capture else None)
    if done.returncode != 0:
        raise SystemExit(f"quickstart: `{' '.join(args)}` failed (exit {done.returncode})")
    return done.stdout or ""


def loaded_per_stream(before: set[Path]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in sorted(set(OUTPUT.glob("*.jsonl")) - before):
        stream = path.stem.rsplit("-", 1)[0]
        counts[stream] += sum(1 for _ in path.open())
    return counts


def main() -> int:
    RUNS.parent.mkdir(parents=True, exist_ok=True)
    previous_runs = int(RUNS.read_text()) if RUNS.exists() else 0
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "TARGET_JSONL_DESTINATION_PATH": str(OUTPUT)}

    step("installing the Meltano plugins (tap-codat-commerce, target-jsonl)")
    run(str(BIN / "meltano"), "--log-level=warning", "install", "extractor", "tap-codat-commerce", env=env)
    run(str(BIN / "meltano"), "--log-level=warning", "install", "loader", "target-jsonl", env=env)
    has_state = STATE_ID in run(str(BIN / "meltano"), "state", "list", env=env, capture=True)
    incremental = has_state and previous_runs > 0

    step("starting the Codat sandbox")
    with sandbox_process("--seed", "42", "--companies", "3", "--orders", "500", "--sync-delay", "1") as (
            base_url, api_key):
        print(f"sandbox at {base_url}")
        env |= {"TAP_CODAT_COMMERCE_API_KEY": api_key, "TAP_CODAT_COMMERCE_BASE_URL": base_url}
        if incremental:
            step(f"run {previous_runs + 1}: the shops have moved on since the last run (sandbox clock advanced)")
            for _ in range(previous_runs):
                requests.post(f"{base_url}/_sandbox/advance", json={"seconds": 86_400}, timeout=60).raise_for_status()

        step("setup: enable commerce sync settings, onboard a shop, link it, wait for its first sync")
        setup = str(BIN / "tap-codat-commerce-setup")
        run(setup, "sync-settings", env=env)
        onboarded = json.loads(run(setup, "create-company", "--name", "Quickstart Shop", "--platform",
                                   "Commerce Sandbox", "--reuse", "--json", env=env, capture=True))
        print(f"company {onboarded['company_id']}, connection {onboarded['connection_id']}")
        print(f"opening the linkUrl as the business would: {onboarded['link_url']}")
        requests.get(onboarded["link_url"], timeout=30).raise_for_status()
        run(setup, "wait", "--company", onboarded["company_id"], "--timeout", "120", "--interval", "0.5", env=env)

        kind = "incremental run, from the last run's state" if incremental else "full first run"
        step(f"meltano run tap-codat-commerce target-jsonl ({kind})")
        before = set(OUTPUT.glob("*.jsonl"))
        started = time.monotonic()
        suffix = ("--state-id-suffix", SUFFIX) if SUFFIX else ()
        run(str(BIN / "meltano"), "--log-level=warning", "run", *suffix, "tap-codat-commerce", "target-jsonl",
            env=env | {"LOGLEVEL": "WARNING"})
        elapsed = time.monotonic() - started
    RUNS.write_text(str(previous_runs + 1))

    counts = loaded_per_stream(before)
    step(f"loaded into {OUTPUT}/ in {elapsed:.1f} s: {kind}")
    width = max([len(s) for s in counts] + [6])
    for stream in sorted(counts):
        print(f"  {stream:<{width}}  {counts[stream]:>7,}")
    print(f"  {'total':<{width}}  {sum(counts.values()):>7,}")
    if not incremental:
        print("\nRun scripts/quickstart.sh again: the next run is incremental and loads only what changed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
