"""End to end into a real PostgreSQL: `meltano run tap-codat-commerce target-postgres` on the sandbox."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests import merchant_months
from tests.conftest import STREAM_OF_DATA_TYPE, Api, meltano, meltano_env

pytestmark = pytest.mark.slow  # Meltano and warehouse runs: minutes (not in the fast subset)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A private PostgreSQL 15 server: initdb + pg_ctl on a free port and its own socket directory."""

    def __init__(self, root: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            message = "PostgreSQL server binaries not found (scripts/test.sh installs them)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.bin = Path(found[-1]).parent
        self.data = root / "pgdata"
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> str:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:  # initdb refuses root: run the server as the postgres user
            command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in command)]
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout

    def start(self) -> None:
        self.data.mkdir()
        if self.as_root:
            shutil.chown(self.data.parent, "postgres")
            shutil.chown(self.data, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "log"), "-w", "start", "-o",
                  f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def query(self, sql: str, database: str = "postgres") -> list[tuple[str, ...]]:
        out = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                              "-d", database, "-At", "-F", "\t", "-c", sql],
                             capture_output=True, text=True, check=True, timeout=60)
        return [tuple(line.split("\t")) for line in out.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="codat-pg-"))  # pytest's own tmp is private to root
    os.chmod(root, 0o755)
    server = Postgres(root)
    try:
        server.start()
        yield server
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def installed_meltano_env(sandbox, postgres, schema: str) -> dict[str, str]:
    """The environment for `meltano run` into ``schema`` on the test's PostgreSQL, plugins installed."""
    env = meltano_env(sandbox, TARGET_POSTGRES_PORT=str(postgres.port), TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=schema)
    meltano("install", "extractor", "tap-codat-commerce", env=env)
    meltano("install", "loader", "target-postgres", env=env)
    return env


def test_meltano_run_into_postgres_then_incremental(start_sandbox, postgres):
    sandbox = start_sandbox(companies=4, orders=120)
    api = Api(sandbox)
    schema = f"codat_{uuid.uuid4().hex[:8]}"
    env = installed_meltano_env(sandbox, postgres, schema)
    run = ("run", "--state-id-suffix", schema, "tap-codat-commerce", "target-postgres")

    meltano(*run, env=env)
    truth = api.truth()
    expected = {STREAM_OF_DATA_TYPE[t]: 0 for c in truth.values() for k in c.values() for t in k}
    for connections in truth.values():
        for data_types in connections.values():
            for data_type, rows in data_types.items():
                expected[STREAM_OF_DATA_TYPE[data_type]] += len(rows)

    def counts() -> dict[str, int]:
        return {table: int(postgres.query(f'select count(*) from {schema}."{table}"')[0][0]) for table in expected}

    assert counts() == expected  # every record, once per key

    types = dict(postgres.query(
        f"select column_name, udt_name from information_schema.columns "
        f"where table_schema = '{schema}' and table_name = 'orders'"))
    assert types["totalAmount"] == "numeric"
    assert types["modifiedDate"] == types["closedDate"] == "timestamp"  # UTC: the tap normalises every date
    assert types["customerRef"] == "jsonb" and types["orderLineItems"] == "_jsonb"  # objects, arrays of objects
    mismatched = postgres.query(
        f"select count(*) from (select o.\"totalAmount\" as total,"
        f" (select coalesce(sum((i->>'totalAmount')::numeric), 0) from unnest(o.\"orderLineItems\") i)"
        f" + (select coalesce(sum((c->>'totalAmount')::numeric), 0) from unnest(o.\"serviceCharges\") c) as parts"
        f" from {schema}.orders o) x where abs(total - parts) > 0.011")
    assert mismatched == [("0",)]  # amounts stay exact numbers, nested line items intact as JSON
    sentinel = postgres.query(f"select count(*) from {schema}.orders where \"closedDate\" = '0001-01-01'")
    assert int(sentinel[0][0]) > 0

    marks = dict(postgres.query(f'select "connectionId", max("modifiedDate") from {schema}.orders group by 1'))
    loaded_at = postgres.query(f"select max(_sdc_batched_at) from {schema}.orders")[0][0]
    api.advance(seconds=7200, updates=5, inserts=3)
    meltano(*run, env=env)

    after = api.truth()
    expected_after = {}
    touched_expected = set()
    for connections in after.values():
        for connection, data_types in connections.items():
            for data_type, rows in data_types.items():
                stream = STREAM_OF_DATA_TYPE[data_type]
                expected_after[stream] = expected_after.get(stream, 0) + len(rows)
                if stream == "orders":
                    mark = marks[connection]
                    touched_expected |= {(connection, r["id"]) for r in rows
                                         if r["modifiedDate"].replace("T", " ").rstrip("Z") >= mark[:19]}
    assert counts() == expected_after  # updates replaced rows, inserts added rows
    touched = set(postgres.query(f'select "connectionId", id from {schema}.orders '
                                 f"where _sdc_batched_at > '{loaded_at}'"))
    assert touched == touched_expected  # only what changed (and each connection's boundary record) was reloaded
    updated = postgres.query(f'select count(*) from {schema}.orders where "modifiedDate" >= \'2026-01-01\'')
    assert int(updated[0][0]) == 8 * len(marks)
    meltano("state", "clear", "--force", f"dev:tap-codat-commerce-to-target-postgres:{schema}", env=env)


EXACT_AMOUNTS = ["0.1", "0.30000000000000004", "12345678901234.56", "1234567890123456.78",
                 "0.3333333333333333333333333333", "99999999999999999999.99", '"12345678901234567.89"',
                 "79228162514264337593543950335"]


def test_exact_amounts_reach_postgres_numeric_digit_for_digit(start_sandbox, postgres):
    """Codat's decimals (and a decimal sent as a string) land in `numeric` columns, and in the
    line items' jsonb, with every digit Codat sent."""
    sandbox = start_sandbox(companies=1, orders=5, accounting_every=0)
    api = Api(sandbox)
    company_id, connection = api.commerce_connections()[0]
    rows = [f'{{"id": "o{n}", "modifiedDate": "2025-06-01T00:00:{n:02d}Z", "totalAmount": {amount}, '
            f'"orderLineItems": [{{"id": "l{n}", "quantity": 1, "totalAmount": {amount}}}]}}'
            for n, amount in enumerate(EXACT_AMOUNTS)]
    api.set_records_text(company_id, connection["id"], "commerce-orders", "[" + ", ".join(rows) + "]")
    schema = f"codat_{uuid.uuid4().hex[:8]}"
    env = installed_meltano_env(sandbox, postgres, schema)
    meltano("run", "--state-id-suffix", schema, "tap-codat-commerce", "target-postgres", env=env)
    loaded = dict(postgres.query(f'select id, "totalAmount"::text from {schema}.orders'))
    items = dict(postgres.query(f"select id, (\"orderLineItems\"[1]->>'totalAmount') from {schema}.orders"))
    for n, amount in enumerate(EXACT_AMOUNTS):
        assert loaded[f"o{n}"] == amount.strip('"'), (n, loaded[f"o{n}"])
        assert items[f"o{n}"] == amount.strip('"'), (n, items[f"o{n}"])
    column = postgres.query(f"select udt_name from information_schema.columns where table_schema = '{schema}' "
                            "and table_name = 'orders' and column_name = 'totalAmount'")
    assert column == [("numeric",)]
    meltano("state", "clear", "--force", f"dev:tap-codat-commerce-to-target-postgres:{schema}", env=env)


# Orders as platforms send them, beside the generated ones: each is a case the marts' rules name.
EDGE_ORDERS = [
    {"id": "e1", "modifiedDate": "2025-06-01T00:00:01Z", "createdDate": "2025-03-01T00:30:00+01:00",  # February
     "currency": " usd ", "totalAmount": 100, "totalRefund": 15,  # a positive refund
     "orderLineItems": [{"id": "l1", "quantity": 2, "totalAmount": 115, "discountAllocations": None}],
     "customerRef": {"id": "c1"},
     "payments": [{"id": "p1", "amount": 60, "currency": None, "type": "Card", "status": "Paid"},
                  {"id": "p2", "amount": 40, "type": None, "status": "Paid"},
                  {"id": "p3", "amount": 5, "currency": "USD", "type": "Cash", "status": "Failed"}]},
    {"id": "e2", "modifiedDate": "2025-06-01T00:00:02Z", "createdDate": "2025-02-10T10:00:00",  # naive: UTC
     "currency": "", "totalAmount": 50, "totalRefund": None, "totalDiscount": 99,  # allocations win
     "orderLineItems": [{"id": "l1", "quantity": 1, "totalAmount": 60,
                         "discountAllocations": [{"name": "x", "totalAmount": -5}]},
                        {"id": "l2", "quantity": -1, "totalAmount": -10}]},  # the refund, as a line only
    {"id": "e3", "modifiedDate": "2025-06-01T00:00:03Z", "createdDate": "2025-02-11T00:00:00Z", "currency": None,
     "totalAmount": "20.10", "totalDiscount": -3, "orderLineItems": None, "payments": None,
     "serviceCharges": None, "customerRef": {"id": "c1"}},
    {"id": "e4", "modifiedDate": "2025-06-01T00:00:04Z", "createdDate": None, "totalAmount": 7},  # in no month
    {"id": "e5", "modifiedDate": "2025-06-01T00:00:05Z", "createdDate": "2025-02-12T00:00:00Z",
     "currency": "XXX", "totalAmount": 0.1, "orderLineItems": []},
    {"id": "e6", "modifiedDate": "2025-06-01T00:00:06Z", "createdDate": "0001-01-01T00:00:00",  # Codat's no date
     "currency": "GBP", "totalAmount": 9},
    {"id": "e7", "modifiedDate": "2025-06-01T00:00:07Z", "createdDate": "2025-02-13T00:00:00Z",
     "currency": "GBP", "totalAmount": 30, "totalDiscount": 4, "customerRef": {"id": ""},  # no customer
     "orderLineItems": [None, {"id": "l1", "quantity": 1, "totalAmount": 30,
                               "discountAllocations": [{"name": "x", "totalAmount": None}]}],  # 0, not 4
     "payments": [None, {"id": "p1", "amount": 30, "type": " Card ", "status": " Paid "}]},
    {"id": "e8", "modifiedDate": "2025-06-01T00:00:08Z", "createdDate": "2025-02-14T00:00:00Z",
     "currency": "SEK", "totalAmount": 1},
    {"id": "e9", "modifiedDate": "2025-06-01T00:00:09Z", "createdDate": "2025-02-15T00:00:00Z",
     "currency": "SEK", "totalAmount": 1.01},  # 2.01 / 2 orders = 1.005: 1.01, not a double's 1.00
]
FEBRUARY = date(2025, 2, 1)


def check_models(api: Api, meltano_env: dict[str, str], run: tuple[str, ...], dbt_results: Path,
                 fetch: Callable[[str], list[tuple[Any, ...]]], connection_id: str) -> None:
    """Run ``meltano run … dbt:build``, compare both marts with what the API's records say, check the
    edge orders by hand, then advance the sandbox, run again and check that merchant_monthly moved by
    exactly the changed orders."""
    meltano(*run, env=meltano_env)
    results = json.loads((dbt_results / "run_results.json").read_text())["results"]
    statuses = Counter((r["unique_id"].split(".")[0], r["status"]) for r in results)
    assert statuses[("model", "success")] == 13 and statuses[("test", "pass")] >= 78
    assert set(statuses) == {("model", "success"), ("test", "pass")}  # every model built, every dbt test passed
    records = merchant_months.snapshot(api)
    before, problems = merchant_months.compare_marts(records, fetch, "codat_analytics")
    assert not problems  # every merchant-month and payment-mix figure as computed from the API
    edge = {key[2:]: row for key, row in before.items() if key[1] == connection_id}
    # e4 and e6 are in no month (the connection's generated disputes have months of their own)
    assert {k for k in edge if k[0] == FEBRUARY} == {(FEBRUARY, c) for c in ("USD", "XXX", "GBP", "SEK")}
    assert edge[(FEBRUARY, "USD")]["refunds"] == 15  # from 2025-03-01T00:30+01:00, sign dropped
    assert edge[(FEBRUARY, "XXX")]["orders"] == 3  # blank, null and XXX are all unknown
    assert edge[(FEBRUARY, "XXX")]["refunds"] == 10 and edge[(FEBRUARY, "XXX")]["discounts"] == 8
    assert edge[(FEBRUARY, "GBP")]["discounts"] == 0 and edge[(FEBRUARY, "GBP")]["customers"] == 0
    assert edge[(FEBRUARY, "SEK")]["average_order_value"] == Decimal("1.01")
    assert {key[3] for key in before} >= {"XXX", "CAD"} and any(row["refunds"] for row in before.values())
    mix = {(row[3], row[4]): Decimal(str(row[-1]))
           for row in fetch(merchant_months.PAYMENT_MIX_MONTHLY.query("codat_analytics"))
           if row[1] == connection_id and row[3] in ("USD", "GBP")}
    # e1: the order's currency, no type is Unknown, failed left out; e7: " Card " is Card, a null payment none
    assert mix == {("USD", "Card"): Decimal("0.6"), ("USD", "Unknown"): Decimal("0.4"), ("GBP", "Card"): 1}

    api.advance(seconds=7200, updates=40, inserts=10)
    meltano(*run, env=meltano_env)
    records_after = merchant_months.snapshot(api)
    after, problems = merchant_months.compare_marts(records_after, fetch, "codat_analytics")
    assert not problems
    change = merchant_months.expected_change(records, records_after)
    assert change and merchant_months.rows_moved(before, after) == change


def test_dbt_models_on_postgres_equal_the_sandbox_records_then_move_by_the_changed_orders(start_sandbox, postgres,
                                                                                         tmp_path):
    """`meltano run tap-codat-commerce target-postgres dbt:build` with DBT_TARGET=postgres."""
    sandbox = start_sandbox(companies=6, orders=150, accounting_every=0)
    api = Api(sandbox)
    company_id, connection = api.commerce_connections()[0]
    api.set_records(company_id, connection["id"], "commerce-orders", EDGE_ORDERS)
    schema = f"codat_{uuid.uuid4().hex[:8]}"
    env = installed_meltano_env(sandbox, postgres, schema)
    meltano("install", "utility", "dbt", env=env)
    # the models' schema: codat_analytics in a database of their own, so that runs never meet
    postgres.query(f"create database {schema}")
    env |= {"DBT_TARGET": "postgres", "DBT_POSTGRES_PORT": str(postgres.port), "DBT_POSTGRES_DATABASE": schema,
            "DBT_SOURCE_SCHEMA": schema,
            "TARGET_POSTGRES_DATABASE": schema, "DBT_TARGET_PATH": str(tmp_path / "dbt"),
            "DBT_LOG_PATH": str(tmp_path / "dbt")}
    run = ("run", "--state-id-suffix", schema, "tap-codat-commerce", "target-postgres", "dbt:build")
    check_models(api, env, run, tmp_path / "dbt", lambda query: postgres.query(query, database=schema),
                 connection["id"])
    meltano("state", "clear", "--force", f"dev:tap-codat-commerce-to-target-postgres:{schema}", env=env)


def test_dbt_models_on_duckdb_equal_the_sandbox_records_then_move_by_the_changed_orders(start_sandbox, tmp_path):
    """`meltano run tap-codat-commerce target-duckdb dbt:build` (the quick start's path) on the same cases."""
    sandbox = start_sandbox(companies=6, orders=150, accounting_every=0)
    api = Api(sandbox)
    company_id, connection = api.commerce_connections()[0]
    api.set_records(company_id, connection["id"], "commerce-orders", EDGE_ORDERS)
    database = tmp_path / "codat.duckdb"
    suffix = f"test{uuid.uuid4().hex[:8]}"
    env = meltano_env(sandbox, TARGET_DUCKDB_PATH=str(database), DBT_DUCKDB_PATH=str(database), DBT_TARGET="duckdb",
                      DBT_TARGET_PATH=str(tmp_path / "dbt"), DBT_LOG_PATH=str(tmp_path / "dbt"))
    for plugin in (("extractor", "tap-codat-commerce"), ("loader", "target-duckdb"), ("utility", "dbt")):
        meltano("install", *plugin, env=env)

    def fetch(query: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(database), read_only=True) as db:
            return db.sql(query).fetchall()

    run = ("run", "--state-id-suffix", suffix, "tap-codat-commerce", "target-duckdb", "dbt:build")
    check_models(api, env, run, tmp_path / "dbt", fetch, connection["id"])
    meltano("state", "clear", "--force", f"dev:tap-codat-commerce-to-target-duckdb:{suffix}", env=env)
