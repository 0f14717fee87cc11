"""Concurrency changes when requests are made, never what is emitted; shards split the work."""

from __future__ import annotations

import json

import pytest

from tap_codat_commerce.streams import shard_of
from tests.conftest import Api, run_tap, tap_config


def comparable(state: dict) -> dict:
    """A final state without the wall-clock time each data type was read at."""
    copied = json.loads(json.dumps(state))
    for entry in copied["bookmarks"].values():
        for partition in entry.get("partitions", []):
            partition.get("codat_sync", {}).pop("read_at", None)
    return copied


def record_keys(run) -> dict[str, list[tuple]]:
    return {stream: [(r.get("companyId"), r.get("connectionId"), r.get("id")) for r in rows]
            for stream, rows in run.records.items()}


@pytest.mark.slow
def test_concurrent_run_emits_what_a_sequential_run_emits(start_sandbox):
    sandbox = start_sandbox(companies=8, orders=300, latency_ms=5)
    sequential = run_tap(tap_config(sandbox, max_concurrency=1, page_size=70))
    concurrent = run_tap(tap_config(sandbox, max_concurrency=8, page_size=70))
    assert record_keys(concurrent) == record_keys(sequential)  # same records, same order
    assert comparable(concurrent.final_state) == comparable(sequential.final_state)
    assert [m["type"] for m in concurrent.messages] == [m["type"] for m in sequential.messages]


@pytest.mark.slow
def test_never_more_than_ten_requests_in_flight_per_company(start_sandbox):
    sandbox = start_sandbox(companies=2, orders=2000, latency_ms=30, concurrency_limit=10)
    api = Api(sandbox)
    run = run_tap(tap_config(sandbox, max_concurrency=32, page_size=100))
    assert max(api.requests_log()["maxInFlight"].values()) <= 10
    assert len(run.records["orders"]) == 4000


@pytest.mark.slow
@pytest.mark.parametrize("shard_count", [2, 3])
def test_shards_are_disjoint_and_cover_every_company(start_sandbox, shard_count):
    sandbox = start_sandbox(companies=9, orders=20)
    everything = run_tap(tap_config(sandbox))
    shards = [run_tap(tap_config(sandbox, shard_count=shard_count, shard_index=i)) for i in range(shard_count)]
    company_sets = [{c["id"] for c in run.records["companies"]} for run in shards]
    for i, one in enumerate(company_sets):
        for other in company_sets[i + 1:]:
            assert not one & other
    assert set().union(*company_sets) == {c["id"] for c in everything.records["companies"]}
    assert sum(len(run.records["orders"]) for run in shards) == len(everything.records["orders"])
    assert all(shard_of(c, shard_count) == i for i, ids in enumerate(company_sets) for c in ids)


def test_shard_hash_is_stable():
    # A fixed expectation: the hash must not change between releases, or workers would swap companies.
    assert shard_of("8E787DD7-D85E-44F2-94BC-7D9D0EBC6ED3", 7) == shard_of("8e787dd7-d85e-44f2-94bc-7d9d0ebc6ed3", 7)
    assert [shard_of(f"00000000-0000-4000-8000-{i:012d}", 4) for i in range(6)] == [
        shard_of(f"00000000-0000-4000-8000-{i:012d}", 4) for i in range(6)]


# --- many companies: STATE stays linear, concurrency stays exact -----------------------------------
def state_lines(run) -> list[int]:
    return [len(json.dumps(m["value"])) for m in run.messages if m["type"] == "STATE"]


@pytest.mark.slow
def test_state_lines_and_bytes_grow_linearly_with_companies(start_sandbox):
    small = run_tap(tap_config(start_sandbox(companies=8, orders=5, accounting_every=0)))
    large = run_tap(tap_config(start_sandbox(companies=32, orders=5, accounting_every=0)))
    # The SDK wrote one whole STATE per (stream, connection): 4x the companies cost 16x the bytes.
    assert len(state_lines(large)) == len(state_lines(small)) <= 3
    assert 3 <= sum(state_lines(large)) / sum(state_lines(small)) <= 5
    assert len(large.final_state["bookmarks"]["orders"]["partitions"]) == 32


def test_state_interval_zero_writes_after_every_connection_and_data_type(start_sandbox):
    sandbox = start_sandbox(companies=3, orders=5, accounting_every=0)
    run = run_tap(tap_config(sandbox, state_interval=0))
    bookmarked = sum(1 for entry in run.final_state["bookmarks"].values() for p in entry.get("partitions", [])
                     if p.get("replication_key_value"))
    assert len(state_lines(run)) >= bookmarked > 20  # one per bookmark moved (identical lines are skipped)


@pytest.mark.slow
def test_many_small_shops_concurrently_emit_what_a_sequential_run_emits(start_sandbox):
    sandbox = start_sandbox(companies=60, orders=6, latency_ms=2, concurrency_limit=10)
    sequential = run_tap(tap_config(sandbox, max_concurrency=1))
    concurrent = run_tap(tap_config(sandbox, max_concurrency=16))
    assert record_keys(concurrent) == record_keys(sequential)
    assert comparable(concurrent.final_state) == comparable(sequential.final_state)
    assert Api(sandbox).requests_log()["throttled"] == 0


@pytest.mark.slow
def test_a_state_of_100000_partitions_is_resumed_without_scanning_it(start_sandbox):
    """The SDK finds a partition by scanning the list for every record; at 100,000 partitions
    that is ~10^9 comparisons for this run. The index makes it one lookup."""
    sandbox = start_sandbox(companies=2, orders=3000, accounting_every=0)
    strangers = [{"context": {"companyId": f"00000000-0000-4000-8000-{i:012d}", "connectionId": "x"},
                  "replication_key": "modifiedDate", "replication_key_value": "2020-01-01T00:00:00.000000Z"}
                 for i in range(100_000)]
    state = {"bookmarks": {"orders": {"partitions": strangers}}}
    run = run_tap(tap_config(sandbox), state=state)
    partitions = run.final_state["bookmarks"]["orders"]["partitions"]
    assert len(partitions) == 100_002 and partitions[:3] == strangers[:3]
    assert len(run.records["orders"]) == 6000
