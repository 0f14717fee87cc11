"""Codat's limits kept by default (issue 19, point 2): the request budget, the sandbox's IP protection."""

from __future__ import annotations

import threading

import pytest
import requests

from tap_codat_commerce.codat.budget import WINDOW_SECONDS, RequestBudget
from tap_codat_commerce.codat.errors import CancelledError
from tests.conftest import Api, run_tap, tap_config


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now


class AdvancingStop(threading.Event):
    """A stop event whose wait moves the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        with self.clock.lock:
            self.clock.now += timeout or 0
        return self.is_set()


def test_the_budget_holds_in_every_60_second_window_across_threads():
    clock = FakeClock()
    budget = RequestBudget(50, clock=clock)
    stop = AdvancingStop(clock)
    sent: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            place = budget.acquire(stop)
            with lock:
                sent.append(clock())
            budget.release(place)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == 320
    sent.sort()
    start = 0
    for end, at in enumerate(sent):  # every window of 60 s holds at most 50
        while at - sent[start] >= WINDOW_SECONDS:
            start += 1
        assert end - start + 1 <= 50
    assert sent[-1] - sent[0] >= (320 // 50) * WINDOW_SECONDS - WINDOW_SECONDS  # it waited, it did not burst


def test_a_request_in_flight_keeps_its_place_until_a_minute_after_it_ended():
    clock = FakeClock()
    budget = RequestBudget(2, clock=clock)
    stop = AdvancingStop(clock)
    slow = budget.acquire(stop)  # in flight for 100 s
    budget.release(budget.acquire(stop))
    clock.now += 100
    budget.release(slow)
    before = clock()
    budget.release(budget.acquire(stop))  # the quick one ended 100 s ago: its place is free
    assert clock() == before
    budget.release(budget.acquire(stop))  # the slow one ended just now: wait 60 s for its place
    assert clock() >= before + WINDOW_SECONDS


def test_a_hold_stops_every_thread_and_a_stop_ends_the_wait():
    clock = FakeClock()
    budget = RequestBudget(0, clock=clock)
    budget.hold(30)
    stop = AdvancingStop(clock)
    budget.release(budget.acquire(stop))
    assert clock() >= 1030  # waited out the hold
    budget.hold(30)
    stop.set()
    with pytest.raises(CancelledError):
        budget.acquire(stop)


def test_the_sandbox_protects_its_ip_as_codat_does(start_sandbox):
    sandbox = start_sandbox(companies=1, orders=1, ip_limit_per_minute=5, ip_block_after=3, ip_block_seconds=60)
    api = Api(sandbox)
    statuses = []
    for _ in range(12):
        try:
            statuses.append(api.get("/companies").status_code)
        except requests.ConnectionError:
            statuses.append("closed")
    assert statuses[:5] == [200] * 5
    assert statuses[5:8] == [429] * 3  # over the ceiling: 429 with Retry-After
    blocked = statuses[8:]
    assert blocked in ([403] * 4, ["closed"] * 4)  # sustained: the IP is blocked (403 or closed, by seed)
    refused = api.get("/companies") if blocked[0] == 403 else None
    assert refused is None or refused.status_code == 403


@pytest.mark.slow
def test_more_than_a_thousand_requests_meet_no_429_at_the_defaults(start_sandbox):
    """Codat's 1,000 a minute per IP, with the sandbox blocking as Codat does: the default budget
    (900) keeps under it, so a run of more than 1,000 requests meets no 429 at all."""
    sandbox = start_sandbox(companies=110, orders=2, ip_limit_per_minute=1000)
    api = Api(sandbox)
    config = tap_config(sandbox)
    del config["max_requests_per_minute"]  # the default
    run = run_tap(config)
    log = api.requests_log()
    assert len(log["requests"]) > 1000
    assert log["throttled"] == 0 and log["ipRefused"] == 0 and log["ipBlocked"] == 0
    assert len(run.records["orders"]) == api.rows_per_stream()["orders"] > 0
