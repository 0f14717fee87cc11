"""How the tap's cost grows with the number of companies (all streams, small shops).

    python benchmarks/scale.py                          # 30 / 300 / 3,000 companies + 10,000 unchanged
    python benchmarks/scale.py --companies 30 300 --unchanged 1000    # quicker

For each company count: one full run of every stream (--orders per company; the other data
types scale with it) from a sandbox process on loopback → wall seconds, CPU seconds of the tap
(user + system), bytes written, bytes of STATE lines, STATE lines, requests per company (from the
sandbox's log) and peak RSS; then ratios to the smallest count, next to the ratio of companies
(linear cost: the ratios match). Then an incremental run with nothing changed over --unchanged
companies, started from its own full run's final STATE.

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
from run import ROOT, TAP, sandbox

COUNTER = (
    "import resource, subprocess, sys, time\n"
    "started = time.perf_counter()\n"
    "tap = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
    "total = state_bytes = state_lines = records = 0\n"
    "last_state = b''\n"
    "for line in tap.stdout:\n"
    "    total += len(line)\n"
    "    if line.startswith(b'{\"type\":\"STATE\"') or b'\"type\": \"STATE\"' in line[:30]:\n"
    "        state_bytes += len(line); state_lines += 1; last_state = line\n"
    "    elif line.startswith(b'{\"type\":\"RECORD\"'):\n"
    "        records += 1\n"
    "code = tap.wait()\n"
    "open(sys.argv[1], 'wb').write(last_state)\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(time.perf_counter() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, total, state_bytes,\n"
    "      state_lines, records, code)\n"
)


def measure(config: Path, state_out: Path, state_in: Path | None = None) -> dict[str, Any]:
    args = [sys.executable, "-c", COUNTER, str(state_out), TAP, "--config", str(config)]
    if state_in is not None:
        args += ["--state", str(state_in)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    wall, cpu, rss_kb, total, state_bytes, state_lines, records, code = done.stdout.split()
    if code != "0":
        raise SystemExit(f"the tap failed (exit {code})")
    return {"wall_s": round(float(wall), 2), "cpu_s": round(float(cpu), 2), "output_mb": round(int(total) / 1e6, 2),
            "state_mb": round(int(state_bytes) / 1e6, 3), "state_lines": int(state_lines), "records": int(records),
            "peak_rss_mb": int(rss_kb) // 1024}


def last_state_value(path: Path) -> Path:
    value = json.loads(path.read_bytes())["value"]
    out = path.with_suffix(".value.json")
    out.write_text(json.dumps(value))
    return out


def one_count(directory: Path, companies: int, orders: int, *, unchanged: bool) -> dict[str, Any]:
    with sandbox("--companies", str(companies), "--orders", str(orders)) as (base_url, api_key):
        config = directory / f"config-{companies}.json"
        config.write_text(json.dumps({"api_key": api_key, "base_url": base_url, "max_requests_per_minute": 0,
                                      "quota_reserve": 0}))
        state = directory / f"state-{companies}.json"
        full = measure(config, state)
        full["requests_per_company"] = round(requests_count(base_url) / companies, 1)
        result = {"companies": companies, "full": full}
        if unchanged:
            requests.delete(base_url + "/_sandbox/requests", timeout=30)
            again = measure(config, directory / f"state-{companies}-2.json", last_state_value(state))
            again["requests_per_company"] = round(requests_count(base_url) / companies, 1)
            result["unchanged"] = again
    return result


def requests_count(base_url: str) -> int:
    return len(requests.get(base_url + "/_sandbox/requests", timeout=120).json()["requests"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, nargs="+", default=[30, 300, 3000])
    parser.add_argument("--orders", type=int, default=50, help="orders per company (default 50)")
    parser.add_argument("--unchanged", type=int, default=10_000,
                        help="companies for the nothing-changed incremental run (0: skip)")
    parser.add_argument("--unchanged-orders", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"orders_per_company": args.orders, "counts": []}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for companies in args.companies:
            started = time.perf_counter()
            results["counts"].append(one_count(directory, companies, args.orders, unchanged=False))
            print(f"{companies} companies done in {time.perf_counter() - started:.0f} s: "
                  f"{json.dumps(results['counts'][-1])}", flush=True)
        if args.unchanged:
            results["unchanged"] = one_count(directory, args.unchanged, args.unchanged_orders, unchanged=True)
            print(f"unchanged: {json.dumps(results['unchanged'])}", flush=True)
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_table(results: dict[str, Any]) -> None:
    counts = results["counts"]
    base = counts[0]
    header = (f"{'companies':>9} {'ratio':>6} | {'wall s':>8} {'x':>6} | {'CPU s':>8} {'x':>6} | "
              f"{'out MB':>8} {'x':>6} | {'STATE MB':>8} {'lines':>6} | {'req/co':>6} | {'RSS MB':>6}")
    print(header)
    for row in counts:
        full, b = row["full"], base["full"]
        print(f"{row['companies']:>9} {row['companies'] / base['companies']:>6.0f} | "
              f"{full['wall_s']:>8} {full['wall_s'] / b['wall_s']:>6.1f} | {full['cpu_s']:>8} "
              f"{full['cpu_s'] / b['cpu_s']:>6.1f} | {full['output_mb']:>8} "
              f"{full['output_mb'] / b['output_mb']:>6.1f} | "
              f"{full['state_mb']:>8} {full['state_lines']:>6} | {full['requests_per_company']:>6} | "
              f"{full['peak_rss_mb']:>6}")
    if unchanged := results.get("unchanged"):
        full, again = unchanged["full"], unchanged["unchanged"]
        print(f"\n{unchanged['companies']:,} companies, nothing changed: {again['wall_s']} s wall, "
              f"{again['cpu_s']} s CPU, "
              f"{again['records']:,} records, STATE {again['state_mb']} MB in {again['state_lines']} lines, "
              f"{again['requests_per_company']} requests per company, peak RSS {again['peak_rss_mb']} MB "
              f"(its full run: {full['wall_s']} s, STATE {full['state_mb']} MB in {full['state_lines']} lines)")


if __name__ == "__main__":
    sys.exit(main())
