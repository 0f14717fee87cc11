"""Throughput, concurrency and memory of tap-codat-commerce against the sandbox, side by side.

    python benchmarks/run.py                       # the three figures, as in the README
    python benchmarks/run.py --orders 50000 --big-orders 200000 --connections 30   # quicker

(a) CPU-bound: one connection with --orders orders → the tap's records/s into /dev/null,
    against a plain requests + orjson loop writing the same RECORD lines (the floor any tap
    can reach), and what the sandbox serves; their ratios. All three at the same page size
    (--page-size, the tap's default 2000). The tap's records are validated
    against its schemas on a smaller run (dates normalised, every amount the exact number the
    server sent), and its CPU time per record (user + system, all threads) is reported.
(b) latency-bound: --connections commerce connections with small data sets and
    --latency-ms injected latency (Codat's 10-per-company limit on) → wall time with the
    default concurrency and with concurrency 1; their ratio, peak requests in flight per
    company and the 429s met.
(b2) many small shops: --connections companies x 20 orders, --latency-ms, orders only → the tap
    at its defaults, at max_concurrency=1, and the thread-pool contender (dlt's rest_api source,
    parallelized, 16 workers, see contender_dlt.py; installed in benchmarks/.venv-dlt on first
    use, never a dependency of the tap), each as a whole process, wall seconds.
(c) peak RSS of the tap reading every stream of 3 companies with --big-orders orders each, at
    the defaults and at the largest page size and concurrency (5000, 64).

Everything runs on loopback; the sandbox is its own process, on the other core.
Prints a table and writes the results as JSON (--out).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import requests

from tap_codat_commerce.sandbox.cli import sandbox_process

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TAP = str(BIN / "tap-codat-commerce")


def sandbox(*flags: str) -> AbstractContextManager[tuple[str, str]]:
    """A sandbox process on a free port (no sync delay, no accounting connections, and no IP
    protection: these benchmarks measure the tap's own speed on loopback, not Codat's ceiling)."""
    return sandbox_process("--accounting-every", "0", "--sync-delay", "0", "--ip-limit", "0", *flags)


def session(api_key: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = "Basic " + base64.b64encode(api_key.encode()).decode()
    return s


def orders_path(base_url: str, api_key: str) -> tuple[str, str, str]:
    company = session(api_key).get(base_url + "/companies").json()["results"][0]
    connection = company["dataConnections"][0]["id"]
    return company["id"], connection, f"/companies/{company['id']}/connections/{connection}/data/commerce-orders"


def orders_only_catalog(directory: Path) -> Path:
    catalog = json.loads(subprocess.run([TAP, "--discover"], capture_output=True, text=True, check=True).stdout)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] in ("companies", "connections", "orders")
    path = directory / "catalog.json"
    path.write_text(json.dumps(catalog))
    return path


def write_config(directory: Path, base_url: str, api_key: str, **extra: Any) -> Path:
    path = directory / f"config-{len(list(directory.iterdir()))}.json"
    # unpaced (max_requests_per_minute 0): the tap's speed, not Codat's ceiling (see budget.py for that)
    path.write_text(json.dumps({"api_key": api_key, "base_url": base_url, "max_requests_per_minute": 0,
                                "quota_reserve": 0, **extra}))
    return path


def run_tap(config: Path, catalog: Path, stdout: Any = subprocess.DEVNULL) -> tuple[float, int]:
    """(wall seconds, peak RSS in MB) of one tap run, measured in a fresh helper process."""
    elapsed, rss, _ = run_tap_measured(config, catalog, stdout)
    return elapsed, rss


def run_tap_measured(config: Path, catalog: Path, stdout: Any = subprocess.DEVNULL) -> tuple[float, int, float]:
    """(wall seconds, peak RSS in MB, CPU seconds: user + system, every thread) of one tap run."""
    helper = (
        "import resource, subprocess, sys, time\n"
        "started = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], stdout=sys.stdout, stderr=subprocess.DEVNULL)\n"
        "elapsed = time.perf_counter() - started\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "sys.stderr.write(f'{elapsed} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime} {done.returncode}')\n"
    )
    done = subprocess.run([sys.executable, "-c", helper, TAP, "--config", str(config), "--catalog", str(catalog)],
                          stdout=stdout, stderr=subprocess.PIPE, text=True, check=True)
    elapsed, rss_kb, cpu, returncode = done.stderr.strip().split()[-4:]
    if returncode != "0":
        raise SystemExit(f"the tap failed (exit {returncode}) with {config}")
    return float(elapsed), int(rss_kb) // 1024, float(cpu)


def served(base_url: str, api_key: str, path: str, total: int, page_size: int) -> float:
    """Records/s the sandbox serves at ``page_size`` (bytes only, nothing parsed)."""
    s = session(api_key)
    started = time.perf_counter()
    for page in range(1, -(-total // page_size) + 1):
        s.get(base_url + path, params={"page": page, "pageSize": page_size}).content  # noqa: B018
    return total / (time.perf_counter() - started)


def floor_loop(base_url: str, api_key: str, company: str, connection: str, path: str, *,
               page_size: int) -> tuple[float, int, float]:
    """The plain loop: requests + orjson, the same RECORD lines as the tap, into /dev/null.
    (records/s, records, CPU seconds)."""
    s = session(api_key)
    count = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    with open(os.devnull, "wb") as out:
        page = 1
        while True:
            body = orjson.loads(s.get(base_url + path, params={"page": page, "pageSize": page_size,
                                                               "orderBy": "modifiedDate"}).content)
            for record in body["results"]:
                record["companyId"], record["connectionId"] = company, connection
                out.write(orjson.dumps({"type": "RECORD", "stream": "orders", "record": record},
                                       option=orjson.OPT_APPEND_NEWLINE))
                count += 1
            if "next" not in body["_links"]:
                break
            page += 1
    return count / (time.perf_counter() - started), count, time.process_time() - cpu_started


def served_amounts(base_url: str, api_key: str) -> dict[tuple[str, str], Decimal | int]:
    """{(connection, order id): totalAmount} exactly as the sandbox serves it (numbers as Decimal)."""
    s = session(api_key)
    amounts: dict[tuple[str, str], Decimal | int] = {}
    for company in s.get(base_url + "/companies", params={"pageSize": 5000}).json()["results"]:
        for connection in company["dataConnections"]:
            path = f"/companies/{company['id']}/connections/{connection['id']}/data/commerce-orders"
            page = 1
            while True:
                body = json.loads(s.get(base_url + path, params={"page": page, "pageSize": 5000}).content,
                                  parse_float=Decimal)
                for order in body["results"]:
                    amounts[(connection["id"], order["id"])] = order["totalAmount"]
                if "next" not in body["_links"]:
                    break
                page += 1
    return amounts


def validate_output(directory: Path, catalog: Path, orders: int) -> int:
    """Run the tap on a small data set; validate every order against the schema and check that
    every amount is the number the server sent, digit for digit (read as Decimal on both sides)."""
    schema = json.loads((ROOT / "schemas" / "orders.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    with sandbox("--companies", "3", "--orders", str(orders)) as (base_url, api_key):
        output = directory / "validate.jsonl"
        with output.open("w") as handle:
            run_tap(write_config(directory, base_url, api_key), catalog, stdout=handle)
        sent = served_amounts(base_url, api_key)
    checked = 0
    for line in output.read_text().splitlines():
        message = json.loads(line, parse_float=Decimal)
        if message["type"] == "RECORD" and message["stream"] == "orders":
            errors = list(validator.iter_errors(message["record"]))
            if errors:
                raise SystemExit(f"an emitted order does not validate: {errors[0].message}")
            record = message["record"]
            amount = record["totalAmount"]
            if not isinstance(amount, int | Decimal) or amount != sent[(record["connectionId"], record["id"])]:
                raise SystemExit(f"order {record['id']}: totalAmount {amount!r} is not the number the server sent")
            if not record["modifiedDate"].endswith("Z"):
                raise SystemExit("dates must be normalised")
            checked += 1
    if checked != len(sent):
        raise SystemExit(f"{checked} orders emitted, {len(sent)} served")
    return checked


def cpu_bound(directory: Path, catalog: Path, orders: int, page_size: int) -> dict[str, Any]:
    with sandbox("--companies", "1", "--orders", str(orders)) as (base_url, api_key):
        company, connection, path = orders_path(base_url, api_key)
        served_rate = served(base_url, api_key, path, orders, page_size)
        floor_rate, floor_count, floor_cpu = floor_loop(base_url, api_key, company, connection, path,
                                                        page_size=page_size)
        elapsed, rss, tap_cpu = run_tap_measured(write_config(directory, base_url, api_key, page_size=page_size),
                                                 catalog)
    tap_rate = orders / elapsed
    return {"orders": orders, "page_size": page_size, "sandbox_served_per_s": round(served_rate),
            "floor_per_s": round(floor_rate),
            "floor_records": floor_count, "tap_per_s": round(tap_rate), "tap_seconds": round(elapsed, 2),
            "tap_vs_floor": round(tap_rate / floor_rate, 3), "served_vs_tap": round(served_rate / tap_rate, 2),
            "tap_peak_rss_mb": rss, "floor_cpu_us_per_record": round(1e6 * floor_cpu / floor_count, 1),
            "tap_cpu_us_per_record": round(1e6 * tap_cpu / orders, 1),
            "tap_cpu_vs_floor": round((tap_cpu / orders) / (floor_cpu / floor_count), 2)}


def tap_at_default_and_sequential(directory: Path, catalog: Path, base_url: str, api_key: str) -> dict[str, Any]:
    """The tap at its default concurrency and at ``max_concurrency=1``, on one sandbox: per run,
    seconds, requests, peak requests in flight per company and 429s met."""
    control = session(api_key)
    results = {}
    for label, extra in (("default", {}), ("concurrency_1", {"max_concurrency": 1})):
        control.delete(base_url + "/_sandbox/requests")
        elapsed, _ = run_tap(write_config(directory, base_url, api_key, **extra), catalog)
        log = control.get(base_url + "/_sandbox/requests").json()
        results[label] = {"seconds": round(elapsed, 2), "requests": len(log["requests"]),
                          "max_in_flight_per_company": max(log["maxInFlight"].values()), "429s": log["throttled"]}
    return results


def latency_bound(directory: Path, catalog: Path, connections: int, latency_ms: int) -> dict[str, Any]:
    full_catalog = directory / "full-catalog.json"
    full_catalog.write_text(subprocess.run([TAP, "--discover"], capture_output=True, text=True, check=True).stdout)
    results: dict[str, Any] = {"connections": connections, "latency_ms": latency_ms}
    with sandbox("--companies", str(connections), "--orders", "20", "--latency-ms", str(latency_ms),
                 "--concurrency-limit", "10") as (base_url, api_key):
        results |= tap_at_default_and_sequential(directory, full_catalog, base_url, api_key)
    results["speedup"] = round(results["concurrency_1"]["seconds"] / results["default"]["seconds"], 2)
    return results


CONTENDER_VENV = ROOT / "benchmarks" / ".venv-dlt"


def contender_python() -> Path:
    python = CONTENDER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(CONTENDER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "dlt==1.31.0"], check=True)
    return python


def many_small_shops(directory: Path, catalog: Path, companies: int, latency_ms: int) -> dict[str, Any]:
    results: dict[str, Any] = {"companies": companies, "latency_ms": latency_ms}
    contender = contender_python()
    with sandbox("--companies", str(companies), "--orders", "20", "--latency-ms", str(latency_ms),
                 "--concurrency-limit", "10") as (base_url, api_key):
        results |= tap_at_default_and_sequential(directory, catalog, base_url, api_key)
        control = session(api_key)
        control.delete(base_url + "/_sandbox/requests")
        started = time.perf_counter()
        done = subprocess.run([str(contender), str(ROOT / "benchmarks" / "contender_dlt.py"), base_url, api_key, "16"],
                              capture_output=True, text=True, check=True)
        log = control.get(base_url + "/_sandbox/requests").json()
        results["dlt_16_workers"] = {"seconds": round(time.perf_counter() - started, 2),
                                     "extract_seconds": round(float(done.stdout.split()[0]), 2),
                                     "orders": int(done.stdout.split()[1]), "requests": len(log["requests"])}
    results["vs_concurrency_1"] = round(results["concurrency_1"]["seconds"] / results["default"]["seconds"], 2)
    results["vs_dlt"] = round(results["dlt_16_workers"]["seconds"] / results["default"]["seconds"], 2)
    return results


def memory(directory: Path, big_orders: int) -> dict[str, Any]:
    full_catalog = directory / "full-catalog.json"
    full_catalog.write_text(subprocess.run([TAP, "--discover"], capture_output=True, text=True, check=True).stdout)
    results: dict[str, Any] = {"companies": 3, "orders": big_orders}
    with sandbox("--companies", "3", "--orders", str(big_orders)) as (base_url, api_key):
        for label, extra in (("default", {}), ("page_5000_concurrency_64", {"page_size": 5000, "max_concurrency": 64})):
            elapsed, rss = run_tap(write_config(directory, base_url, api_key, **extra), full_catalog)
            results[label] = {"peak_rss_mb": rss, "seconds": round(elapsed, 1)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--big-orders", type=int, default=100_000, help="(c): orders per company, 3 companies")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--page-size", type=int, default=2000, help="(a): the tap's, the floor's and the server's")
    parser.add_argument("--skip", choices=("a", "b", "c"), action="append", default=[])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        catalog = orders_only_catalog(directory)
        if "a" not in args.skip:
            results["validated_orders"] = validate_output(directory, catalog, 2000)
            results["a_cpu_bound"] = cpu_bound(directory, catalog, args.orders, args.page_size)
        if "b" not in args.skip:
            results["b_latency_bound"] = latency_bound(directory, catalog, args.connections, args.latency_ms)
            results["b2_many_small_shops"] = many_small_shops(directory, catalog, args.connections, args.latency_ms)
        if "c" not in args.skip:
            results["c_memory"] = memory(directory, args.big_orders)
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {args.out}")
    return 0


def print_table(results: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str]] = []
    if a := results.get("a_cpu_bound"):
        rows += [
            (f"(a) sandbox serves ({a['page_size']}/page)", f"{a['sandbox_served_per_s']:,} rec/s",
             f"{a['served_vs_tap']}x the tap"),
            (f"(a) floor: requests+orjson loop ({a['page_size']}/page)", f"{a['floor_per_s']:,} rec/s", "1.00"),
            (f"(a) tap into /dev/null ({a['page_size']}/page)", f"{a['tap_per_s']:,} rec/s",
             f"{a['tap_vs_floor']:.2f} of floor (goal >= 0.50)"),
            ("(a) CPU per record: floor / tap (whole process)",
             f"{a['floor_cpu_us_per_record']} / {a['tap_cpu_us_per_record']} us",
             f"tap {a['tap_cpu_vs_floor']}x the floor (goal <= 1.2)"),
            ("(a) tap output validated", f"{results['validated_orders']:,} orders", "schema, formats, exact amounts"),
        ]
    if b := results.get("b_latency_bound"):
        rows += [
            (f"(b) {b['connections']} connections, {b['latency_ms']} ms, default",
             f"{b['default']['seconds']} s", f"{b['speedup']}x faster (goal >= 5)"),
            ("(b) same, max_concurrency=1", f"{b['concurrency_1']['seconds']} s", "1.00"),
            ("(b) peak in flight per company", str(b["default"]["max_in_flight_per_company"]), "limit 10"),
            ("(b) 429s met (default run)", str(b["default"]["429s"]), "honoured"),
        ]
    if b2 := results.get("b2_many_small_shops"):
        rows += [
            (f"(b2) {b2['companies']} shops x 20 orders, {b2['latency_ms']} ms, orders only: tap",
             f"{b2['default']['seconds']} s", f"{b2['vs_concurrency_1']}x faster than max_concurrency=1"),
            ("(b2) dlt rest_api, parallelized, 16 workers (whole process)", f"{b2['dlt_16_workers']['seconds']} s",
             f"{b2['vs_dlt']}x the tap's time (goal > 1); extract alone "
             f"{b2['dlt_16_workers']['extract_seconds']} s"),
            ("(b2) tap peak in flight per company / 429s",
             f"{b2['default']['max_in_flight_per_company']} / {b2['default']['429s']}", "limit 10"),
        ]
    if c := results.get("c_memory"):
        shape = f"3 x {c['orders']:,} orders, all streams"
        rows += [(f"(c) peak RSS, {shape}, defaults", f"{c['default']['peak_rss_mb']} MB", "goal < 300 MB"),
                 (f"(c) peak RSS, {shape}, page 5000, concurrency 64",
                  f"{c['page_5000_concurrency_64']['peak_rss_mb']} MB", "goal < 300 MB")]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>18}  ratio / goal")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>18}  {ratio}")


if __name__ == "__main__":
    sys.exit(main())
