"""One request budget for every thread: at most N requests in any 60 seconds, and a shared hold.

Codat blocks an IP that sends more than 1,000 requests a minute ("sustained traffic above this
ceiling may be blocked without warning"), so the ceiling is kept by construction rather than
discovered by 429s: every HTTP attempt (retries, dataStatus and listings included) takes a place
in a sliding 60-second window before it is sent. A 429 holds every thread for its wait, so that
one throttle is not answered by sixteen more requests.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from .errors import CancelledError

WINDOW_SECONDS = 60.0


class RequestBudget:
    """At most ``per_minute`` acquisitions in any ``WINDOW_SECONDS`` window, across threads.

    ``per_minute`` 0 means no limit (the hold still applies). ``clock`` returns seconds
    (monotonic). Thread-safe.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = max(0, per_minute)
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self._hold_until = 0.0
        self.waited = 0.0  # seconds spent waiting for the budget, all threads together

    def acquire(self, stop: threading.Event) -> None:
        """Wait until a request may be sent, then count it as sent now.

        Waits in slices of at most a second on ``stop``; raises CancelledError once ``stop`` is
        set (a signal handler on the main thread interrupts the wait as well).
        """
        started: float | None = None
        while True:
            with self._lock:
                now = self._clock()
                wait = self._hold_until - now
                if wait <= 0 and self.per_minute:
                    while self._sent and now - self._sent[0] >= WINDOW_SECONDS:
                        self._sent.popleft()
                    if len(self._sent) >= self.per_minute:
                        wait = self._sent[0] + WINDOW_SECONDS - now
                if wait <= 0:
                    if self.per_minute:
                        self._sent.append(now)
                    if started is not None:
                        self.waited += now - started
                    return
                if started is None:
                    started = now
            if stop.wait(min(wait, 1.0)):
                raise CancelledError("cancelled: the run is stopping")

    def hold(self, seconds: float) -> None:
        """Send nothing, from any thread, for ``seconds`` (a 429's wait)."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)

    def in_window(self) -> int:
        """Requests sent in the last 60 seconds."""
        with self._lock:
            now = self._clock()
            return sum(1 for sent in self._sent if now - sent < WINDOW_SECONDS)
