"""The quick start's main job (run it through scripts/quickstart.sh)."""

from __future__ import annotations

import json
import os
import shlex
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
SANDBOX_DATA = HOME / ".codat-sandbox"  # the sandbox's world, kept across runs (the sandbox's default)
ONBOARDED = HOME / ".quickstart" / "onboarded.json"  # what the setup created, for the next runs
SUFFIX = os.environ.get("QUICKSTART_STATE_SUFFIX", "")
STATE_ID = "dev:tap-codat-commerce-to-target-jsonl" + (f":{SUFFIX}" if SUFFIX else "")


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run(*args: str, env: dict[str, str], capture: bool = False) -> str:
    shown = [Path(args[0]).name if Path(args[0]).parent == BIN else args[0], *args[1:]]
    print("$ " + shlex.join(shown), flush=True)  # can be pasted as it is (with .venv/bin on PATH)
    done = subprocess.run(args, env=env, cwd=ROOT, text=True, check=False,
                          stdout=subprocess.PIPE if capture else None)
    if done.returncode != 0:
        raise SystemExit(f"quickstart: `{shlex.join(shown)}` failed (exit {done.returncode})")
    return done.stdout or ""


def loaded_per_stream(before: set[Path]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in sorted(set(OUTPUT.glob("*.jsonl")) - before):
        stream = path.stem.rsplit("-", 1)[0]
        counts[stream] += sum(1 for _ in path.open())
    return counts


def onboard(setup: str, env: dict[str, str]) -> dict[str, str]:
    """The setup workflow a customer goes through, once per sandbox world."""
    run(setup, "sync-settings", env=env)
    onboarded = json.loads(run(setup, "create-company", "--name", "Quickstart Shop", "--platform",
                               "Commerce Sandbox", "--reuse", "--json", env=env, capture=True))
    print(f"company {onboarded['company_id']}, connection {onboarded['connection_id']}")
    print(f"opening the linkUrl as the business would: {onboarded['link_url']}")
    requests.get(onboarded["link_url"], timeout=30).raise_for_status()
    run(setup, "wait", "--company", onboarded["company_id"], "--timeout", "120", "--interval", "0.5", env=env)
    ONBOARDED.parent.mkdir(parents=True, exist_ok=True)
    ONBOARDED.write_text(json.dumps(onboarded))
    return onboarded


def main() -> int:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "TARGET_JSONL_DESTINATION_PATH": str(OUTPUT)}
    meltano = str(BIN / "meltano")

    step("installing the Meltano plugins (tap-codat-commerce, target-jsonl)")
    run(meltano, "--log-level=warning", "install", "extractor", "tap-codat-commerce", env=env)
    run(meltano, "--log-level=warning", "install", "loader", "target-jsonl", env=env)
    has_state = STATE_ID in run(meltano, "--log-level=warning", "state", "list", env=env, capture=True)
    # An incremental run needs the world the state was made in, and the setup done in it.
    resumed = (SANDBOX_DATA / "world.json").exists() and ONBOARDED.exists() and has_state

    step(f"starting the Codat sandbox (its world is kept in {SANDBOX_DATA})")
    with sandbox_process("--seed", "42", "--companies", "3", "--orders", "500", "--sync-delay", "1",
                         "--data-dir", str(SANDBOX_DATA)) as (base_url, api_key):
        print(f"sandbox at {base_url}")
        env |= {"TAP_CODAT_COMMERCE_API_KEY": api_key, "TAP_CODAT_COMMERCE_BASE_URL": base_url}
        if has_state and not resumed:
            step("no sandbox world from the last run: its Meltano state is cleared so that this run reads "
                 "everything")
            run(meltano, "--log-level=warning", "state", "clear", "--force", STATE_ID, env=env)
        setup = str(BIN / "tap-codat-commerce-setup")
        if resumed:
            onboarded = json.loads(ONBOARDED.read_text())
            step(f"setup: done by an earlier run (company {onboarded['company_id']}); its status:")
            run(setup, "status", "--company", onboarded["company_id"], env=env)
            step("a day passes in the shops (sandbox clock advanced: records change, new ones appear)")
            requests.post(f"{base_url}/_sandbox/advance", json={"seconds": 86_400}, timeout=60).raise_for_status()
        else:
            step("setup: enable commerce sync settings, onboard a shop, link it, wait for its first sync")
            onboard(setup, env)

        kind = "incremental run, from the last run's state" if resumed else "full first run"
        step(f"meltano run tap-codat-commerce target-jsonl ({kind})")
        before = set(OUTPUT.glob("*.jsonl"))
        started = time.monotonic()
        suffix = ("--state-id-suffix", SUFFIX) if SUFFIX else ()
        run(meltano, "--log-level=warning", "run", *suffix, "tap-codat-commerce", "target-jsonl",
            env=env | {"LOGLEVEL": "WARNING"})
        elapsed = time.monotonic() - started

    counts = loaded_per_stream(before)
    step(f"loaded into {OUTPUT}/ in {elapsed:.1f} s: {kind}")
    width = max([len(s) for s in counts] + [6])
    for stream in sorted(counts):
        print(f"  {stream:<{width}}  {counts[stream]:>7,}")
    print(f"  {'total':<{width}}  {sum(counts.values()):>7,}")
    if sum(counts.values()) == 0:
        print("\nquickstart: nothing was loaded, which should not happen here", file=sys.stderr)
        return 1
    if not resumed:
        print("\nRun scripts/quickstart.sh again: the next run is incremental and loads only what changed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
