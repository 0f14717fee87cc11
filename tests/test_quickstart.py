"""The quick start's main job, twice: a full run, then an incremental one, into the embedded DuckDB
warehouse and through the dbt models; every table and every merchant-month checked against the
sandbox's own records."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
from quickstart import SANDBOX_FLAGS

from tap_codat_commerce.sandbox.cli import sandbox_process
from tests import merchant_months
from tests.conftest import ROOT, Api, meltano, meltano_env

pytestmark = pytest.mark.slow  # Meltano and warehouse runs: minutes (not in the fast subset)


def quickstart(home: Path, suffix: str) -> str:
    env = {**os.environ, "QUICKSTART_HOME": str(home), "QUICKSTART_STATE_SUFFIX": suffix}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "quickstart.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def loaded(output: str) -> dict[str, tuple[int, int]]:
    table = output.rsplit("==> loaded into", 1)[1].split("==>", 1)[0]
    return {m[1]: (int(m[2].replace(",", "")), int(m[3].replace(",", "")))
            for m in re.finditer(r"^\s+(?:codat_commerce\.)?(\w+)\s+([\d,]+)\s+([\d,]+)$", table, re.M)}


def sandbox_truth(home: Path) -> tuple[dict[str, int], merchant_months.Snapshot]:
    """The quick start's sandbox world, reopened: rows per stream, and every order and dispute."""
    with sandbox_process(*SANDBOX_FLAGS, "--data-dir", str(home / ".codat-sandbox")) as (base_url, api_key):
        api = Api(SimpleNamespace(base_url=base_url, api_key=api_key))  # type: ignore[arg-type]
        counts = api.rows_per_stream()
        companies = api.companies()
        counts["companies"] = len(companies)
        counts["connections"] = sum(len(c["dataConnections"]) for c in companies)
        return counts, merchant_months.snapshot(api)


def warehouse(home: Path, records: merchant_months.Snapshot) -> tuple[dict[str, int], dict, list[str]]:
    """Rows per table of the quick start's DuckDB file, its merchant_monthly, and how both marts
    differ from what ``records`` say."""
    with duckdb.connect(str(home / "output" / "codat.duckdb"), read_only=True) as db:
        tables = [t for (t,) in db.sql("select table_name from information_schema.tables "
                                       "where table_schema = 'codat_commerce'").fetchall()]
        counts = dict(db.sql(" union all ".join(f"select '{t}', count(*) from codat_commerce.\"{t}\""
                                                for t in tables)).fetchall())
        mart, problems = merchant_months.compare_marts(records, lambda query: db.sql(query).fetchall(),
                                                       "codat_analytics")
    return counts, mart, problems


def test_quickstart_loads_duckdb_and_models_it_full_then_incremental(tmp_path):
    suffix = f"test{uuid.uuid4().hex[:8]}"
    first = quickstart(tmp_path, suffix)
    assert "full first run" in first and "merchant_monthly" in first
    # every echoed command can be pasted: arguments with spaces are quoted
    assert "$ tap-codat-commerce-setup create-company --name 'Quickstart Shop' --platform 'Commerce Sandbox'" in first
    assert "run --state-id-suffix" in first and "tap-codat-commerce target-duckdb dbt:build" in first
    truth, records = sandbox_truth(tmp_path)
    rows, mart, problems = warehouse(tmp_path, records)
    assert rows == truth  # every stream's table holds exactly the sandbox's records
    assert {t: n for t, (n, _) in loaded(first).items() if t != "total"} == truth
    assert truth["orders"] == 2000 and len(truth) == 13
    assert not problems  # every merchant-month and payment-mix figure as computed from the API
    assert {key[3] for key in mart} == {"GBP", "EUR", "USD", "CAD", "XXX"}  # one row per currency, never mixed

    second = quickstart(tmp_path, suffix)
    assert "incremental run, from the last run's state" in second
    assert "setup: done by an earlier run" in second and "create-company" not in second  # not repeated
    truth_after, records_after = sandbox_truth(tmp_path)
    rows_after, mart_after, problems_after = warehouse(tmp_path, records_after)
    assert rows_after == truth_after  # updates replaced rows, inserts added them: nothing lost or doubled
    this_run = loaded(second)
    assert 0 < this_run["orders"][1] < truth["orders"] / 10  # incremental: only what changed was loaded
    assert not problems_after
    change = merchant_months.expected_change(records, records_after)
    assert change  # the day's updates refunded orders and added new ones
    assert merchant_months.rows_moved(mart, mart_after) == change  # the mart moved by exactly the changed orders
    meltano("state", "clear", "--force", f"dev:tap-codat-commerce-to-target-duckdb:{suffix}", env={**os.environ})


def test_jsonl_stays_available_as_a_second_target(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=2, orders=30, accounting_every=0)
    env = meltano_env(sandbox, TARGET_JSONL_DESTINATION_PATH=str(tmp_path), TARGET_JSONL_DO_TIMESTAMP_FILE="false")
    suffix = f"test{uuid.uuid4().hex[:8]}"
    meltano("install", "extractor", "tap-codat-commerce", env=env)
    meltano("install", "loader", "target-jsonl", env=env)
    meltano("run", "--state-id-suffix", suffix, "tap-codat-commerce", "target-jsonl", env=env)
    meltano("state", "clear", "--force", f"dev:tap-codat-commerce-to-target-jsonl:{suffix}", env=env)
    orders = Api(sandbox).rows_per_stream()["orders"]
    assert orders > 0 and len((tmp_path / "orders.jsonl").read_text().splitlines()) == orders
