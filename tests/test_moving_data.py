"""Nothing lost when Codat's data moves under a read (issue 10), over real HTTP to the sandbox.

Each test teaches the sandbox one kind of server behaviour (re-stamps mid-read, page caps,
fractional and sentinel dates, a broken sort contract, null modifiedDates) and checks that
every record that existed when the read started is emitted, and that no bookmark passes a
record that was not emitted.
"""

from __future__ import annotations

import ast
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tap_codat_commerce.codat.dates import canonical
from tests.conftest import STREAM_OF_DATA_TYPE, Api, run_cli, run_tap, tap_config, write_json

PACKAGE = Path(__file__).resolve().parents[1] / "tap_codat_commerce"
FIXED_WIDTH = 27


def first_commerce_connection(api: Api) -> tuple[str, str]:
    company_id, connection = api.commerce_connections()[0]
    return company_id, connection["id"]


def literal_orders(stamps: list[str | None], *, missing: frozenset[int] = frozenset()) -> list[dict]:
    """Orders o1…oN with these modifiedDates (None: null; indices in ``missing``: no key)."""
    orders = []
    for number, stamp in enumerate(stamps, start=1):
        order = {"id": f"o{number}", "currency": "GBP", "totalAmount": number}
        if number - 1 not in missing:
            order["modifiedDate"] = stamp
        orders.append(order)
    return orders


def order_ids(run) -> list[str]:
    return [r["id"] for r in run.records["orders"]]


def bookmarks(state: dict, stream: str) -> dict[tuple[str, str], str]:
    return {(p["context"]["companyId"], p["context"]["connectionId"]): p["replication_key_value"]
            for p in state["bookmarks"].get(stream, {}).get("partitions", []) if p.get("replication_key_value")}


def assert_everything_emitted(run, before: dict) -> None:
    """Every record the sandbox held when the read started (its truth then) was emitted."""
    for connections in before.values():
        for connection, data_types in connections.items():
            for data_type, rows in data_types.items():
                stream = STREAM_OF_DATA_TYPE[data_type]
                emitted = {r.get("id") for r in run.records[stream] if r["connectionId"] == connection}
                missing = {r["id"] for r in rows} - emitted
                assert not missing, (stream, len(missing))


def assert_no_bookmark_passes_an_unemitted_record(run, truth: dict) -> None:
    """Every record Codat holds now at or before a connection's bookmark was emitted."""
    for stream in set(STREAM_OF_DATA_TYPE.values()) - {"company_info"}:
        marks = bookmarks(run.final_state, stream)
        emitted = {(r["companyId"], r["connectionId"], r["id"]) for r in run.records.get(stream, [])}
        for company, connections in truth.items():
            for connection, data_types in connections.items():
                for data_type, rows in data_types.items():
                    if STREAM_OF_DATA_TYPE[data_type] != stream or (company, connection) not in marks:
                        continue
                    mark = marks[(company, connection)]
                    passed = [r["id"] for r in rows
                              if r["modifiedDate"] and (canonical(r["modifiedDate"]) or "") <= mark
                              and (company, connection, r["id"]) not in emitted]
                    assert not passed, (stream, mark, passed[:5])


# --- 1. records re-stamped during a read ---------------------------------------------------------
@pytest.mark.parametrize("concurrency", [1, 16])
def test_a_record_restamped_after_page_one_shifts_nothing_past_the_cursor(start_sandbox, concurrency):
    """Five orders :01…:05, page size 2; after page 1 the first order gets a later date."""
    sandbox = start_sandbox(companies=1, orders=10, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    api.set_records(company_id, connection_id, "commerce-orders",
                    literal_orders([f"2025-06-01T00:00:0{n}Z" for n in range(1, 6)]))
    api.faults(restamp_every=1, restamp_count=1, restamp_times=1, restamp_path="commerce-orders")
    run = run_tap(tap_config(sandbox, page_size=2, max_concurrency=concurrency))
    ids = order_ids(run)
    assert set(ids) == {"o1", "o2", "o3", "o4", "o5"}
    assert Counter(ids)["o1"] == 2  # before and after its re-stamp: at-least-once, never lost
    assert_no_bookmark_passes_an_unemitted_record(run, api.truth())


@pytest.mark.slow
@pytest.mark.parametrize("after_pages", [2, 9, 23])
def test_changes_during_a_large_read_lose_nothing(start_sandbox, after_pages):
    """6,000 orders, page size 200, 300 updates per data type landing mid-read."""
    sandbox = start_sandbox(companies=1, orders=6000, accounting_every=0)
    api = Api(sandbox)
    before = api.truth()
    api.advance(seconds=600, updates=300, after_pages=after_pages)
    run = run_tap(tap_config(sandbox, page_size=200))
    assert_everything_emitted(run, before)
    assert_no_bookmark_passes_an_unemitted_record(run, api.truth())


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 11])
def test_repeated_restamps_with_concurrency_lose_nothing(start_sandbox, seed):
    sandbox = start_sandbox(seed=seed, companies=3, orders=800)
    api = Api(sandbox)
    before = api.truth()
    api.faults(restamp_every=2, restamp_count=7)
    run = run_tap(tap_config(sandbox, page_size=50, max_concurrency=8))
    assert_everything_emitted(run, before)
    assert_no_bookmark_passes_an_unemitted_record(run, api.truth())


@pytest.mark.slow
def test_a_second_larger_than_a_page_is_read_whole_and_once(start_sandbox):
    """A re-map stamps 900 orders with one modifiedDate; pages hold 50."""
    sandbox = start_sandbox(companies=1, orders=1000, accounting_every=0)
    api = Api(sandbox)
    first = run_tap(tap_config(sandbox, page_size=50))
    api.advance(seconds=60, updates=900, inserts=0, same_instant=True)
    api.reset_requests()
    second = run_tap(tap_config(sandbox, page_size=50), state=first.final_state)
    counts = Counter(order_ids(second))
    stamps = Counter(r["modifiedDate"] for r in second.records["orders"])
    top_stamp, group = stamps.most_common(1)[0]
    assert group > 50  # one second, many pages
    in_group = [r["id"] for r in second.records["orders"] if r["modifiedDate"] == top_stamp]
    assert len(in_group) == len(set(in_group))  # each once
    truth_group = {r["id"] for c in api.truth().values() for k in c.values() for r in k["commerce-orders"]
                   if canonical(r["modifiedDate"]) == top_stamp}
    assert set(in_group) == truth_group
    assert max(counts.values()) == 1
    order_requests = [r for r in api.requests_log()["requests"] if r["path"].endswith("commerce-orders")]
    assert len(order_requests) <= 2 * (len(truth_group) // 50 + 3)  # no endless loop, no re-reads


@pytest.mark.slow
def test_a_second_that_shrinks_while_it_is_read_is_read_again(start_sandbox):
    sandbox = start_sandbox(companies=1, orders=700, accounting_every=0)
    api = Api(sandbox)
    api.advance(seconds=60, updates=600, inserts=0, same_instant=True)
    before = {r["id"] for c in api.truth().values() for k in c.values() for r in k["commerce-orders"]}
    api.faults(restamp_every=3, restamp_count=5, restamp_times=6, restamp_path="commerce-orders")
    run = run_tap(tap_config(sandbox, page_size=40))
    assert before <= set(order_ids(run))
    assert_no_bookmark_passes_an_unemitted_record(run, api.truth())


# --- 2. a server that answers fewer records than asked -------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("cap", "orders", "companies"), [(2000, 4500, 1), (7, 120, 9), (1, 25, 3)])
def test_a_server_that_caps_page_size_is_read_whole(start_sandbox, cap, orders, companies):
    sandbox = start_sandbox(companies=companies, orders=orders, page_size_cap=cap)
    api = Api(sandbox)
    truth = api.truth()
    run = run_tap(tap_config(sandbox, page_size=5000))
    assert len(run.records["companies"]) == companies
    world = sandbox.app.world
    assert len(run.records["connections"]) == sum(len(c.connections) for c in world.companies.values())
    for data_type, stream in STREAM_OF_DATA_TYPE.items():
        expected = {r["id"] for c in truth.values() for k in c.values() for r in k.get(data_type, [])}
        assert {r.get("id") for r in run.records.get(stream, [])} >= expected, stream
    served_sizes = {int(r["params"]["pageSize"]) for r in api.requests_log()["requests"] if "pageSize" in r["params"]}
    assert served_sizes == {5000}  # asked for 5000 every time; the server's answer drove the paging


# --- 3. bookmarks compared as instants, dates written in one fixed-width form --------------------
def test_whole_second_then_fraction_in_the_same_second_is_no_sort_error(start_sandbox):
    sandbox = start_sandbox(companies=1, orders=10, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    stamps = ["2025-03-01T15:28:08.9Z", "2025-03-01T15:28:09Z", "2025-03-01T15:28:09.3409951Z",
              "2025-03-01T16:28:09+01:00", "2025-03-01T15:28:10"]
    api.set_records(company_id, connection_id, "commerce-orders", literal_orders(stamps))
    run = run_tap(tap_config(sandbox, page_size=2))
    emitted = [r["modifiedDate"] for r in run.records["orders"]]
    assert set(order_ids(run)) == {"o1", "o2", "o3", "o4", "o5"}
    assert all(len(v) == FIXED_WIDTH for v in emitted) and emitted == sorted(emitted)
    mark = bookmarks(run.final_state, "orders")[(company_id, connection_id)]
    assert mark == "2025-03-01T15:28:10.000000Z"
    again = run_tap(tap_config(sandbox, page_size=2, skip_unchanged=False), state=run.final_state)
    assert order_ids(again) == ["o5"]  # >= the bookmark's second: the last record only


@pytest.mark.slow
@pytest.mark.parametrize("bookmark", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00", "0001-01-01T00:00:00.000000Z"])
def test_a_year_one_bookmark_is_a_query_codat_accepts(start_sandbox, bookmark):
    sandbox = start_sandbox(companies=1, orders=30, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    state = {"bookmarks": {"orders": {"partitions": [{
        "context": {"companyId": company_id, "connectionId": connection_id},
        "replication_key": "modifiedDate", "replication_key_value": bookmark}]}}}
    run = run_tap(tap_config(sandbox), state=state)
    assert len(run.records["orders"]) == 30
    queries = [r["params"].get("query") for r in api.requests_log()["requests"] if r["path"].endswith("orders")]
    assert queries[0] == "modifiedDate>=0001-01-01T00:00:00Z"


def test_the_sandbox_rejects_a_date_bound_that_is_no_date(start_sandbox):
    sandbox = start_sandbox(companies=1, orders=5, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    path = f"/companies/{company_id}/connections/{connection_id}/data/commerce-orders"
    assert api.get(path, params={"query": "modifiedDate>=1-01-01T00:00:00Z"}).status_code == 400
    assert api.get(path, params={"query": "modifiedDate>=0001-01-01T00:00:00Z"}).status_code == 200


# --- 4. the server breaks the replication-key contract -------------------------------------------
def test_records_without_modified_date_are_emitted_with_one_warning(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=10, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    stamps = ["2025-05-01T00:00:01Z", "2025-05-01T00:00:02Z", None, "2025-05-01T00:00:09Z", None, None]
    api.set_records(company_id, connection_id, "commerce-orders", literal_orders(stamps, missing={2, 4}))
    config = write_json(tmp_path, "config.json", tap_config(sandbox, page_size=2))
    result = run_cli(["--config", config], env={**os.environ})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    records = [m["record"] for m in result.messages if m["type"] == "RECORD" and m["stream"] == "orders"]
    assert {r["id"] for r in records} == {f"o{n}" for n in range(1, 7)}
    assert all("modifiedDate" in r for r in records)
    warnings = [line for line in result.stderr.splitlines() if "without modifiedDate" in line]
    assert len(warnings) == 1 and company_id in warnings[0] and connection_id in warnings[0]
    assert "replication value is null" not in result.stderr  # the SDK's per-record line is folded into ours
    states = [m["value"] for m in result.messages if m["type"] == "STATE"]
    assert bookmarks(states[-1], "orders")[(company_id, connection_id)] == "2025-05-01T00:00:09.000000Z"


def read_unordered(start_sandbox, tmp_path, stamps: list[str | None],
                   concurrency: int) -> tuple[list[dict], str]:
    """Orders o1…oN with these modifiedDates served as given, ignoring orderBy, read 3 a page by the
    tap's CLI, which must exit 0 without a traceback or the SDK's sort error: (the orders emitted,
    the connection's final bookmark)."""
    sandbox = start_sandbox(companies=1, orders=10, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    api.set_records(company_id, connection_id, "commerce-orders", literal_orders(stamps), ordered=False)
    config = write_json(tmp_path, "config.json", tap_config(sandbox, page_size=3, max_concurrency=concurrency))
    result = run_cli(["--config", config], env={**os.environ})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Unsorted" not in result.stderr
    records = [m["record"] for m in result.messages if m["type"] == "RECORD" and m["stream"] == "orders"]
    states = [m["value"] for m in result.messages if m["type"] == "STATE"]
    return records, bookmarks(states[-1], "orders")[(company_id, connection_id)]


@pytest.mark.slow
@pytest.mark.parametrize("concurrency", [1, 8])
def test_an_unsorted_server_loses_nothing_and_stops_nothing(start_sandbox, tmp_path, concurrency):
    """Records older than the one before them, within pages of a server that ignores orderBy."""
    stamps = ["2025-05-01T00:00:02Z", "2025-05-01T00:00:01Z", "2025-05-01T00:00:03Z", "2025-05-01T00:00:05Z",
              "2025-05-01T00:00:04Z", "2025-05-01T00:00:06Z", "2025-05-01T00:00:08Z", "2025-05-01T00:00:07Z"]
    records, bookmark = read_unordered(start_sandbox, tmp_path, stamps, concurrency)
    assert {r["id"] for r in records} == {f"o{n}" for n in range(1, 9)}
    assert bookmark == "2025-05-01T00:00:08.000000Z"


@pytest.mark.slow
@pytest.mark.parametrize("nulls_first", [True, False])
def test_null_modified_dates_are_read_by_a_full_read(start_sandbox, nulls_first):
    sandbox = start_sandbox(companies=1, orders=10, accounting_every=0, nulls_first=nulls_first)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    stamps = [None, "2025-05-01T00:00:01Z", None, "2025-05-01T00:00:02Z", "2025-05-01T00:00:03Z", None, None,
              "2025-05-01T00:00:04Z", None]
    api.set_records(company_id, connection_id, "commerce-orders", literal_orders(stamps))
    run = run_tap(tap_config(sandbox, page_size=2))
    assert Counter(order_ids(run)) == Counter(f"o{n}" for n in range(1, 10))
    again = run_tap(tap_config(sandbox, page_size=2, skip_unchanged=False), state=run.final_state)
    assert order_ids(again) == ["o8"]  # incremental: Codat cannot query null, so only the bookmark's second


# --- 5. starting values exactly as the SDK reads them --------------------------------------------
def _catalog_with(run_config: dict, stream: str, method: str) -> dict:
    from tap_codat_commerce.tap import TapCodatCommerce

    catalog = TapCodatCommerce(config=run_config).catalog_dict
    for entry in catalog["streams"]:
        if entry["tap_stream_id"] == stream:
            entry["replication_method"] = method
    return catalog


def test_a_catalog_forcing_full_table_reads_everything_despite_state(start_sandbox):
    sandbox = start_sandbox(companies=1, orders=600, accounting_every=0)
    config = tap_config(sandbox)
    first = run_tap(config)
    forced = run_tap(config, state=first.final_state, catalog=_catalog_with(config, "orders", "FULL_TABLE"))
    assert len(forced.records["orders"]) == 600
    assert len(forced.records["customers"]) < len(first.records["customers"])  # others stay incremental


@pytest.mark.slow
@pytest.mark.parametrize("replication_key", [None, "createdDate"])
def test_a_bookmark_for_another_replication_key_is_not_applied(start_sandbox, replication_key):
    sandbox = start_sandbox(companies=1, orders=600, accounting_every=0)
    config = tap_config(sandbox)
    state = run_tap(config).final_state
    for partition in state["bookmarks"]["orders"]["partitions"]:
        partition.pop("replication_key", None)
        if replication_key:
            partition["replication_key"] = replication_key
    run = run_tap(config, state=state)
    assert len(run.records["orders"]) == 600


def test_start_date_and_bookmark_take_the_later(start_sandbox):
    sandbox = start_sandbox(companies=1, orders=600, accounting_every=0)
    config = tap_config(sandbox)
    state = run_tap(config).final_state
    late = tap_config(sandbox, start_date="2030-01-01T00:00:00Z", skip_unchanged=False)
    assert not run_tap(late, state=state).records.get("orders")  # start_date later than the bookmark
    early = tap_config(sandbox, start_date="2000-01-01T00:00:00Z", skip_unchanged=False)
    assert len(run_tap(early, state=state).records["orders"]) == 1  # the bookmark's second


# --- the Codat side is its own layer -------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.add(base)
    return found


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def _resolve(module: str, name: str) -> str:
    if not name.startswith("."):
        return name
    level = len(name) - len(name.lstrip("."))
    base = module.split(".")[:-level]
    return ".".join([*base, name.lstrip(".")]) if name.lstrip(".") else ".".join(base)


def test_layers_point_down_and_have_no_cycles():
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = _module_of(path)
        graph[module] = {_resolve(module, name) for name in _imports(path)}
    for module, imported in graph.items():
        if module.startswith("tap_codat_commerce.codat"):
            outside = {i for i in imported if i.startswith(("singer_sdk", "tap_codat_commerce"))
                       and not i.startswith("tap_codat_commerce.codat")}
            assert not outside, (module, outside)
        if not module.startswith("tap_codat_commerce.sandbox"):
            assert not {i for i in imported if i.startswith("tap_codat_commerce.sandbox")}, module
    internal = {m: {i for i in deps if i in graph and i != m} for m, deps in graph.items()}

    def visit(module: str, trail: tuple[str, ...]) -> None:
        for dep in internal[module]:
            assert dep not in trail, f"import cycle: {' -> '.join((*trail, dep))}"
            visit(dep, (*trail, dep))

    for module in internal:
        visit(module, (module,))


def test_a_later_page_older_than_an_earlier_one_stops_nothing(start_sandbox, tmp_path):
    """Across pages of a server that ignores orderBy: page 2 holds records older than page 1's last."""
    stamps = ["2025-05-01T00:00:02Z", "2025-05-01T00:00:01Z", "2025-05-01T00:00:09Z",
              "2025-05-01T00:00:03Z", "2025-05-01T00:00:04Z", "2025-05-01T00:00:05Z"]
    records, bookmark = read_unordered(start_sandbox, tmp_path, stamps, concurrency=1)
    assert {r["id"] for r in records} == {f"o{n}" for n in range(1, 7)}
    # The bookmark names an instant that was emitted, at or before which every record was emitted.
    assert bookmark in {r["modifiedDate"] for r in records}


# --- 5. a record from the future (issue 20, point 3) ---------------------------------------------
def test_a_record_from_the_future_does_not_move_the_bookmark_past_the_run_start(start_sandbox, caplog):
    """A record dated 2099 (a platform's bad clock) is emitted, with one warning per connection and
    data type, but no bookmark passes the run's start: a record added later is read by the next run."""
    sandbox = start_sandbox(companies=1, orders=5, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    orders = literal_orders(["2025-05-01T00:00:01Z", "2099-01-01T00:00:00Z", "2099-06-01T00:00:00Z"])
    api.set_records(company_id, connection_id, "commerce-orders", orders)
    started = canonical(datetime.now(UTC).isoformat())
    first = run_tap(tap_config(sandbox, page_size=2))
    assert order_ids(first) == ["o1", "o2", "o3"]  # the future records are emitted
    mark = bookmarks(first.final_state, "orders")[(company_id, connection_id)]
    assert mark == "2025-05-01T00:00:01.000000Z" and mark <= started
    future = [r for r in caplog.records if "after this run started" in r.getMessage()]
    assert len(future) == 1 and company_id in future[0].getMessage() and connection_id in future[0].getMessage()
    for stream, marks in ((s, bookmarks(first.final_state, s)) for s in first.final_state["bookmarks"]):
        assert all(value <= started or value < "2099" for value in marks.values()), stream
    added = {"id": "o4", "currency": "GBP", "totalAmount": 4,
             "modifiedDate": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    api.set_records(company_id, connection_id, "commerce-orders", [*orders, added])
    caplog.clear()
    second = run_tap(tap_config(sandbox, page_size=2, skip_unchanged=False), state=first.final_state)
    assert order_ids(second) == ["o1", "o4", "o2", "o3"]  # the new one, and the future ones again (expected)
    assert bookmarks(second.final_state, "orders")[(company_id, connection_id)] == canonical(added["modifiedDate"])
    assert len([r for r in caplog.records if "after this run started" in r.getMessage()]) == 1


def test_a_bookmark_already_in_the_future_is_read_as_if_there_were_none(start_sandbox, caplog):
    """A STATE poisoned by a version without the rule above is not obeyed: it would hide every record."""
    sandbox = start_sandbox(companies=1, orders=5, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    api.set_records(company_id, connection_id, "commerce-orders", literal_orders(["2025-05-01T00:00:01Z"]))
    state = {"bookmarks": {"orders": {"partitions": [{
        "context": {"companyId": company_id, "connectionId": connection_id},
        "replication_key": "modifiedDate", "replication_key_value": "2099-01-01T00:00:00.000000Z"}]}}}
    run = run_tap(tap_config(sandbox), state=state)
    assert order_ids(run) == ["o1"]
    assert bookmarks(run.final_state, "orders")[(company_id, connection_id)] == "2025-05-01T00:00:01.000000Z"
    assert [r for r in caplog.records if "is after this run's start" in r.getMessage()]


# --- 6. the newest version wins (issue 20, point 7) ----------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("concurrency", "page_size"), [(1, 2), (8, 2), (1, 3)])
def test_a_record_restamped_within_the_second_being_read_is_emitted_again_newest_last(
        start_sandbox, concurrency, page_size):
    """o1 is re-stamped later within its own second after page 1 (a platform saving twice in a
    second): the keyset meets it again in that second and emits that newer version, after the
    older one; records met again unchanged are never emitted twice."""
    sandbox = start_sandbox(companies=1, orders=5, accounting_every=0)
    api = Api(sandbox)
    company_id, connection_id = first_commerce_connection(api)
    stamps = ["2025-05-01T00:00:05.1Z", "2025-05-01T00:00:05.2Z", "2025-05-01T00:00:05.3Z",
              "2025-05-01T00:00:05.4Z", "2025-05-01T00:00:07Z", "2025-05-01T00:00:08Z"]
    api.set_records(company_id, connection_id, "commerce-orders", literal_orders(stamps))
    api.faults(restamp_every=1, restamp_count=1, restamp_times=1, restamp_path="commerce-orders",
               restamp_within_second=True)
    run = run_tap(tap_config(sandbox, page_size=page_size, max_concurrency=concurrency))
    orders = run.records["orders"]
    assert Counter(order_ids(run)) == {"o1": 2, "o2": 1, "o3": 1, "o4": 1, "o5": 1, "o6": 1}
    copies = [r for r in orders if r["id"] == "o1"]
    assert copies[0]["modifiedDate"] == "2025-05-01T00:00:05.100000Z"
    assert copies[1]["modifiedDate"] == "2025-05-01T00:00:05.550000Z"  # the newer version, emitted later
    assert [r["modifiedDate"] for r in orders] == sorted(r["modifiedDate"] for r in orders)
    truth = api.truth()
    newest = {r["id"]: canonical(r["modifiedDate"]) for r in truth[company_id][connection_id]["commerce-orders"]}
    last_emitted = {r["id"]: r["modifiedDate"] for r in orders}  # what an upserting target keeps
    assert last_emitted == newest
