"""Codat's 1,000 requests a minute per IP, kept: an unchanged run over many companies, paced and not.

    python benchmarks/budget.py                      # 10,000 companies (about 25 minutes)
    python benchmarks/budget.py --companies 1000     # quicker

One sandbox process with N small companies. A full run (unpaced) writes the STATE; then two
unchanged runs from it, side by side on the same data:

- the baseline: ``max_requests_per_minute: 0`` (as the tap was before the budget) against a
  sandbox without IP protection, to show what it would send;
- the default: the tap's defaults against the sandbox's IP protection as Codat describes it
  (1,000 a minute per IP: 429 above it, blocked when sustained).

For each: requests, the busiest 60-second window (from the sandbox's arrival times), 429s met,
wall seconds, and wall time against requests ÷ budget (the least a paced run can take).
Not part of the test suite; figures go in the README.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import TAP, sandbox

CODAT_IP_LIMIT = 1000
DEFAULT_BUDGET = 900


def busiest_window(times: list[float], seconds: float = 60.0) -> int:
    """The most arrivals within any ``seconds`` window."""
    times = sorted(times)
    best = start = 0
    for end, at in enumerate(times):
        while at - times[start] >= seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def tap_run(config: Path, state: Path | None, state_out: Path) -> tuple[float, int]:
    args = [TAP, "--config", str(config)] + (["--state", str(state)] if state else [])
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    states = [line for line in done.stdout.splitlines() if line.startswith('{"type":"STATE"')]
    state_out.write_text(json.dumps(json.loads(states[-1])["value"]))
    return wall, done.returncode


def log(base_url: str) -> dict[str, Any]:
    return requests.get(base_url + "/_sandbox/requests", timeout=300).json()


def measured(base_url: str, config: Path, state: Path, out: Path, budget: int) -> dict[str, Any]:
    requests.delete(base_url + "/_sandbox/requests", timeout=60)
    wall, code = tap_run(config, state, out)
    seen = log(base_url)
    times = [r["at"] for r in seen["requests"]]
    sent = len(times)
    return {"exit": code, "requests": sent, "busiest_60s": busiest_window(times),
            "429s": seen["throttled"] + seen["ipRefused"], "blocked": seen["ipBlocked"], "wall_s": round(wall, 1),
            # the least a paced run can take: every request past the first minute's budget waits its turn
            "floor_s": round(max(sent - budget, 0) / budget * 60, 1) if budget else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--orders", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sandbox("--companies", str(args.companies), "--orders",
                                                       str(args.orders)) as (base_url, api_key):
        directory = Path(tmp)
        unpaced = directory / "unpaced.json"
        unpaced.write_text(json.dumps({"api_key": api_key, "base_url": base_url, "max_requests_per_minute": 0}))
        defaults = directory / "defaults.json"
        defaults.write_text(json.dumps({"api_key": api_key, "base_url": base_url}))
        full_state = directory / "full.json"
        wall, code = tap_run(unpaced, None, full_state)
        print(f"full run: {wall:.0f} s, exit {code}", flush=True)
        baseline = measured(base_url, unpaced, full_state, directory / "s1.json", 0)
        print(f"baseline (unpaced, no IP protection): {json.dumps(baseline)}", flush=True)
        requests.post(base_url + "/_sandbox/faults", json={"ip_limit_per_minute": CODAT_IP_LIMIT}, timeout=30)
        paced = measured(base_url, defaults, full_state, directory / "s2.json", DEFAULT_BUDGET)
        print(f"defaults (budget {DEFAULT_BUDGET}, IP protection {CODAT_IP_LIMIT}/min): {json.dumps(paced)}",
              flush=True)
    print(f"\n{args.companies:,} companies, nothing changed | requests | busiest 60 s | 429s | blocked | wall s | "
          "requests ÷ budget (s) | wall ÷ that")
    for name, row in (("unpaced (baseline)", baseline), (f"defaults ({DEFAULT_BUDGET}/min)", paced)):
        ratio = f"{row['wall_s'] / row['floor_s']:.2f}" if row["floor_s"] else "-"  # 1.00: no time lost
        print(f"{name:>30} | {row['requests']:>8,} | {row['busiest_60s']:>12,} | {row['429s']:>4} | "
              f"{row['blocked']:>7} | {row['wall_s']:>6} | {row['floor_s'] or '-':>21} | {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
