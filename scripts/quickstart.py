"""The quick start's main job (run it through scripts/quickstart.sh): the setup workflow on the
sandbox, then extract, load and model in one `meltano run` (tap-codat-commerce → target-duckdb →
dbt:build) into output/codat.duckdb, and a summary of what was loaded and what the mart says."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import requests

from tap_codat_commerce.sandbox.cli import sandbox_process

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Tests point these elsewhere so that a user's own quick-start output and state stay untouched.
HOME = Path(os.environ.get("QUICKSTART_HOME", ROOT))
OUTPUT = HOME / "output"
DATABASE = OUTPUT / "codat.duckdb"  # the embedded warehouse: target-duckdb loads it, dbt models it
SANDBOX_DATA = HOME / ".codat-sandbox"  # the sandbox's world, kept across runs (the sandbox's default)
ONBOARDED = HOME / ".quickstart" / "onboarded.json"  # what the setup created, for the next runs
SUFFIX = os.environ.get("QUICKSTART_STATE_SUFFIX", "")
STATE_ID = "dev:tap-codat-commerce-to-target-duckdb" + (f":{SUFFIX}" if SUFFIX else "")
SANDBOX_FLAGS = ("--seed", "42", "--companies", "3", "--orders", "500", "--sync-delay", "1")
HINT_PORT = 4010  # the sandbox's own default port, for the closing hint's commands
SCHEMA = "codat_commerce"  # the tap's tables (target-duckdb's default_target_schema)
MODELS = "codat_analytics"  # where dbt builds the models


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


def table_rows(since: datetime) -> dict[str, tuple[int, int]]:
    """Per table of the tap's streams: (rows now, rows this run loaded or replaced)."""
    with duckdb.connect(str(DATABASE), read_only=True) as db:
        tables = [t for (t,) in db.execute("select table_name from information_schema.tables where table_schema = ?",
                                           [SCHEMA]).fetchall()]
        counts = db.execute(" union all ".join(
            f"select '{t}', count(*), count(*) filter (where _sdc_batched_at >= $since) from {SCHEMA}.\"{t}\""
            for t in sorted(tables)), {"since": since}).fetchall()
        return {t: (n, now) for t, n, now in counts}


def merchant_summary(months: int = 3, merchants: int = 4) -> list[tuple[object, ...]]:
    """The last ``months`` months of the ``merchants`` merchants (company, connection, currency)
    that sold most, from the merchant_monthly mart."""
    with duckdb.connect(str(DATABASE), read_only=True) as db:
        return db.execute(f"""
            with ranked as (
                select *,
                       dense_rank() over (order by total desc, company_id, connection_id, currency) as merchant,
                       row_number() over (partition by company_id, connection_id, currency order by month desc)
                           as recent
                from (select *, sum(net_sales) over (partition by company_id, connection_id, currency) as total
                      from {MODELS}.merchant_monthly)
            )
            select company_name, platform, strftime(month, '%Y-%m'), currency, orders, net_sales, refunds,
                   average_order_value, customers, disputes_opened
            from ranked where merchant <= ? and recent <= ? order by merchant, month""", [merchants, months]).fetchall()


def print_table(headers: tuple[str, ...], rows: Sequence[tuple[object, ...]]) -> None:
    def shown(value: object) -> str:
        if isinstance(value, Decimal):
            return f"{value:,.2f}"
        return f"{value:,}" if isinstance(value, int) else str(value if value is not None else "")
    cells = [[shown(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    right = [bool(rows) and isinstance(rows[0][i], (int, Decimal)) for i in range(len(headers))]
    for row in [list(headers), *cells]:
        print("  " + "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)))


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


def jsonl_hint(api_key: str) -> str:
    """What to run for JSONL files instead of DuckDB once this script (and its sandbox) has ended:
    the sandbox again on its world, on a fixed port, and the key and base URL the tap needs."""
    sandbox = shlex.join([f"{BIN / 'tap-codat-commerce-sandbox'}", *SANDBOX_FLAGS, "--data-dir", str(SANDBOX_DATA),
                          "--port", str(HINT_PORT)])
    return (f"\nJSONL files instead of DuckDB: the sandbox stopped with this script; its key ({api_key}) is kept "
            f"with its world in {SANDBOX_DATA}. Start it again, and in another shell run the tap against it:\n"
            f"  {sandbox}\n"
            f"  TAP_CODAT_COMMERCE_API_KEY={shlex.quote(api_key)} "
            f"TAP_CODAT_COMMERCE_BASE_URL=http://127.0.0.1:{HINT_PORT} "
            f"{BIN / 'meltano'} run tap-codat-commerce target-jsonl")


def main() -> int:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "TARGET_DUCKDB_PATH": str(DATABASE), "DBT_DUCKDB_PATH": str(DATABASE)}
    meltano = str(BIN / "meltano")

    step("installing the Meltano plugins (tap-codat-commerce, target-duckdb, dbt)")
    run(meltano, "--log-level=warning", "install", "extractor", "tap-codat-commerce", env=env)
    run(meltano, "--log-level=warning", "install", "loader", "target-duckdb", env=env)
    run(meltano, "--log-level=warning", "install", "utility", "dbt", env=env)
    has_state = STATE_ID in run(meltano, "--log-level=warning", "state", "list", env=env, capture=True)
    # An incremental run needs the world the state was made in, the setup done in it, and the
    # warehouse the earlier runs loaded.
    world_kept = (SANDBOX_DATA / "world.json").exists() and ONBOARDED.exists()
    missing = [what for what, there in (("the sandbox world", world_kept), (str(DATABASE), DATABASE.exists()))
               if not there]
    resumed = has_state and not missing

    step(f"starting the Codat sandbox (its world is kept in {SANDBOX_DATA})")
    with sandbox_process(*SANDBOX_FLAGS, "--data-dir", str(SANDBOX_DATA)) as (base_url, api_key):
        print(f"sandbox at {base_url}")
        env |= {"TAP_CODAT_COMMERCE_API_KEY": api_key, "TAP_CODAT_COMMERCE_BASE_URL": base_url}
        if has_state and missing:
            step(f"{' and '.join(missing)} of the last run {'is' if len(missing) == 1 else 'are'} gone: its Meltano "
                 "state is cleared so that this run reads and loads everything")
            run(meltano, "--log-level=warning", "state", "clear", "--force", STATE_ID, env=env)
        if not world_kept and DATABASE.exists():
            step(f"a new sandbox world: {DATABASE} holds the old world's rows and is removed")
            DATABASE.unlink()
        setup = str(BIN / "tap-codat-commerce-setup")
        if world_kept:
            onboarded = json.loads(ONBOARDED.read_text())
            step(f"setup: done by an earlier run (company {onboarded['company_id']}); its status:")
            run(setup, "status", "--company", onboarded["company_id"], env=env)
            step("a day passes in the shops (sandbox clock advanced: records change, new ones appear)")
            requests.post(f"{base_url}/_sandbox/advance", json={"seconds": 86_400}, timeout=60).raise_for_status()
        else:
            step("setup: enable commerce sync settings, onboard a shop, link it, wait for its first sync")
            onboard(setup, env)

        kind = ("incremental run, from the last run's state" if resumed
                else "full run" if world_kept else "full first run")
        step(f"meltano run tap-codat-commerce target-duckdb dbt:build ({kind})")
        OUTPUT.mkdir(parents=True, exist_ok=True)
        started_at = datetime.now(UTC).replace(tzinfo=None)  # _sdc_batched_at is UTC without a zone
        started = time.monotonic()
        suffix = ("--state-id-suffix", SUFFIX) if SUFFIX else ()
        run(meltano, "--log-level=warning", "run", *suffix, "tap-codat-commerce", "target-duckdb", "dbt:build",
            env=env | {"LOGLEVEL": "WARNING"})
        elapsed = time.monotonic() - started

    rows = table_rows(started_at)
    step(f"loaded into {DATABASE} and modelled in {elapsed:.1f} s: {kind}")
    totals = ("total", sum(n for n, _ in rows.values()), sum(now for _, now in rows.values()))
    print_table(("table", "rows", "loaded now"), [(f"{SCHEMA}.{t}", n, now) for t, (n, now) in rows.items()] + [totals])
    if not any(now for _, now in rows.values()):
        print("\nquickstart: nothing was loaded, which should not happen here", file=sys.stderr)
        return 1
    step(f"what the data says: {MODELS}.merchant_monthly, the last 3 months of the 4 biggest merchants")
    print_table(("merchant", "platform", "month", "currency", "orders", "net sales", "refunds", "avg order",
                 "customers", "disputes"), merchant_summary())
    print(f"\nQuery it yourself: .venv/bin/python -c \"import duckdb; db = duckdb.connect('{DATABASE}', "
          f"read_only=True); db.sql('from {MODELS}.merchant_monthly').show()\"")
    print(jsonl_hint(api_key))
    if not resumed:
        print("Run scripts/quickstart.sh again: the next run is incremental and loads only what changed.")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nquickstart: interrupted; run it again to carry on (the last state Meltano kept is used)",
              file=sys.stderr)
        sys.exit(130)
