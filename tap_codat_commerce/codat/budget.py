"""One request budget for every thread: at most N requests in any 60 seconds, and a shared hold.

Codat blocks an IP that sends more than 1,000 requests a minute ("sustained traffic above this
ceiling may be blocked without warning"), so the ceiling is kept by construction rather than
discovered by 429s: every HTTP attempt (retries, dataStatus and listings included) takes a place
in a sliding 60-second window before it is sent, and keeps it until 60 s after it ended. A 429
holds every thread for its wait, so that one throttle is not answered by sixteen more requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import CancelledError

WINDOW_SECONDS = 60.0


class Place:
    """One request's place in the budget: held from before it is sent until 60 s after it ended."""

    __slots__ = ("ended",)

    def __init__(self) -> None:
        self.ended: float | None = None  # clock time the request ended; None while in flight


class RequestBudget:
    """At most ``per_minute`` requests in any ``WINDOW_SECONDS`` window, across threads.

    A request holds its :class:`Place` while in flight and for 60 s after it ended. Codat sees
    it arrive somewhere between those two moments, so any 60 s of arrivals at Codat holds at most
    ``per_minute`` requests, however long each took (counting from the send alone would let
    requests that queued on the way arrive bunched). ``per_minute`` 0 means no limit (the hold
    still applies). ``clock`` returns seconds (monotonic). Thread-safe.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = max(0, per_minute)
        self._clock = clock
        self._places: list[Place] = []
        self._lock = threading.Lock()
        self._hold_until = 0.0

    def acquire(self, stop: threading.Event) -> Place:
        """Wait until a request may be sent; its place counts from now until :meth:`release` + 60 s.

        Waits in slices of at most a second on ``stop``; raises CancelledError once ``stop`` is
        set (a signal handler on the main thread interrupts the wait as well).
        """
        while True:
            with self._lock:
                now = self._clock()
                wait = self._hold_until - now
                if wait <= 0 and self.per_minute:
                    self._places = [p for p in self._places if p.ended is None or now - p.ended < WINDOW_SECONDS]
                    if len(self._places) >= self.per_minute:
                        ended = [p.ended for p in self._places if p.ended is not None]
                        wait = min(ended) + WINDOW_SECONDS - now if ended else 1.0
                if wait <= 0:
                    place = Place()
                    if self.per_minute:
                        self._places.append(place)
                    return place
            if stop.wait(min(wait, 1.0)):
                raise CancelledError("cancelled: the run is stopping")

    def release(self, place: Place) -> None:
        """The request of ``place`` has ended (answered, failed or cut off)."""
        place.ended = self._clock()

    def hold(self, seconds: float) -> None:
        """Send nothing, from any thread, for ``seconds`` (a 429's wait)."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)

    def in_window(self) -> int:
        """Requests in flight or ended in the last 60 seconds."""
        with self._lock:
            now = self._clock()
            return sum(1 for p in self._places if p.ended is None or now - p.ended < WINDOW_SECONDS)
