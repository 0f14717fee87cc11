"""What loading and modelling cost, and how it grows with the data (all streams, full runs).

    python benchmarks/warehouse.py                       # 3 and 30 companies x 2,000 orders
    python benchmarks/warehouse.py --companies 2 20 --orders 1000

For each size, from one sandbox process on loopback, side by side on the same data:
  tap → /dev/null                 the extract alone (the baseline)
  tap → target-jsonl              the quick start's second target
  tap → target-duckdb             the quick start's warehouse (a new file)
  dbt build on that file          13 models and their tests (DBT_TARGET=duckdb)
Wall seconds and rows per second of each, and the ratio of the largest size to the smallest next
to the ratio of rows (linear cost: the ratios match). The loaders and dbt are the ones Meltano
installed (`meltano install`), run directly so that Meltano's own start-up is not counted.

Not part of the test suite; figures go in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, TAP, sandbox, write_config

PLUGINS = ROOT / ".meltano"
TARGET_JSONL = PLUGINS / "loaders" / "target-jsonl" / "venv" / "bin" / "target-jsonl"
TARGET_DUCKDB = PLUGINS / "loaders" / "target-duckdb" / "venv" / "bin" / "target-duckdb"
DBT = PLUGINS / "utilities" / "dbt" / "venv" / "bin" / "dbt"


def timed_pipe(tap_config: Path, target: list[str] | None) -> tuple[float, int]:
    """Run the tap into ``target`` (None: /dev/null); (wall seconds, RECORD lines)."""
    started = time.perf_counter()
    tap = subprocess.Popen([TAP, "--config", str(tap_config)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert tap.stdout is not None
    if target is None:
        records = sum(1 for line in tap.stdout if line.startswith(b'{"type":"RECORD"'))
    else:
        records = -1
        done = subprocess.run(target, stdin=tap.stdout, capture_output=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{target[0]} failed: {done.stderr.decode()[-1000:]}")
    tap.stdout.close()
    if tap.wait() != 0:
        raise SystemExit("the tap failed")
    return time.perf_counter() - started, records


def measure(companies: int, orders: int, work: Path) -> dict[str, float]:
    with sandbox("--companies", str(companies), "--orders", str(orders), "--in-memory") as (base_url, api_key):
        tap_config = write_config(work, base_url, api_key)
        extract, rows = timed_pipe(tap_config, None)
        jsonl_config = work / "jsonl.json"
        jsonl_config.write_text(json.dumps({"destination_path": str(work / "jsonl")}))
        (work / "jsonl").mkdir()
        jsonl, _ = timed_pipe(tap_config, [str(TARGET_JSONL), "--config", str(jsonl_config)])
        database = work / "codat.duckdb"
        duckdb_config = work / "duckdb.json"
        duckdb_config.write_text(json.dumps({"path": str(database), "default_target_schema": "codat_commerce",
                                             "add_metadata_columns": True}))
        load, _ = timed_pipe(tap_config, [str(TARGET_DUCKDB), "--config", str(duckdb_config)])
    env = {**os.environ, "DBT_TARGET": "duckdb", "DBT_DUCKDB_PATH": str(database),
           "DBT_TARGET_PATH": str(work / "dbt"), "DBT_LOG_PATH": str(work / "dbt")}
    started = time.perf_counter()
    done = subprocess.run([str(DBT), "build", "--project-dir", str(ROOT / "transform"), "--profiles-dir",
                           str(ROOT / "transform" / "profiles")], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"dbt build failed: {done.stdout[-2000:]}")
    model = time.perf_counter() - started
    return {"rows": rows, "extract": extract, "jsonl": jsonl, "duckdb": load, "dbt": model}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--companies", type=int, nargs="+", default=[3, 30])
    parser.add_argument("--orders", type=int, default=2000)
    args = parser.parse_args()
    for plugin in (TARGET_JSONL, TARGET_DUCKDB, DBT):
        if not plugin.exists():
            raise SystemExit(f"{plugin} is missing: run `meltano install` first")
    results = {}
    for companies in args.companies:
        with tempfile.TemporaryDirectory() as work:
            results[companies] = measure(companies, args.orders, Path(work))
    steps = ("extract", "jsonl", "duckdb", "dbt")
    print(f"\n{'companies':>9} {'rows':>9} | {'tap → null':>15} {'→ jsonl':>15} {'→ duckdb':>15} | {'dbt build':>9}")
    for companies, r in results.items():
        print(f"{companies:>9,} {r['rows']:>9,} | " + " ".join(
            f"{r[k]:>6.1f} s ({r[k] / r['extract']:.1f}x)" for k in ("extract", "jsonl", "duckdb"))
            + f" | {r['dbt']:>7.1f} s")
    print("\n(x: against the extract alone, same data, same run)")
    # Linear cost: each step costs the same per row from one size to the next, above a fixed start-up.
    sizes = sorted(results)
    for small, large in pairwise(sizes):
        a, b = results[small], results[large]
        rows = b["rows"] - a["rows"]
        print(f"{small:,} → {large:,} companies: seconds per 100,000 more rows: "
              + ", ".join(f"{k} {(b[k] - a[k]) / rows * 100_000:.1f}" for k in steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
