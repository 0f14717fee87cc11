"""A deadline for a whole HTTP response, and a way to end every request in flight at once.

``requests`` times each socket operation, not the response: a server that sends its headers
and then one byte every half second never times out. Here each attempt runs under a
:class:`Watch`; the connection it uses registers with it when the request is sent (through a
urllib3 connection class, urllib3's own extension point), and one watchdog thread shuts that
connection's socket down when the deadline passes. The blocked read then fails at once, as a
dropped connection would, and the client retries or gives up. :meth:`Watchdog.abort` does the
same to every request in flight (a signal: the run must end within seconds).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()  # the Watch of the attempt this thread is making


class Watch:
    """One attempt's deadline; ``expired`` is True once the watchdog (or an abort) ended it."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self.finished = False
        self._connection: HTTPConnection | None = None
        self._lock = threading.Lock()

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            expired = self.expired
        if expired:
            _shut(connection)

    def expire(self) -> None:
        with self._lock:
            if self.finished or self.expired:
                return
            self.expired = True
            connection = self._connection
        if connection is not None:
            _shut(connection)

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            self._connection = None


def _shut(connection: HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """A urllib3 connection that registers with this thread's :class:`Watch` when it sends a request."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.attach(self)  # type: ignore[arg-type]  # mixed into HTTPConnection below
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """requests' HTTPAdapter whose connections register with the current :class:`Watch`."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class Watchdog:
    """Ends attempts that pass their deadline; one daemon thread, started on first use."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._live: set[Watch] = set()
        self._sequence = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self, seconds: float) -> Iterator[Watch]:
        """Run the block (one HTTP attempt on this thread) under a deadline ``seconds`` from now."""
        watch = Watch(time.monotonic() + seconds)
        with self._wake:
            earliest = not self._heap or watch.deadline < self._heap[0][0]
            heapq.heappush(self._heap, (watch.deadline, next(self._sequence), watch))
            self._live.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="codat-deadlines", daemon=True)
                self._thread.start()
            if earliest:  # else the watchdog already wakes up before this deadline
                self._wake.notify()
        _current.watch = watch
        try:
            yield watch
        finally:
            _current.watch = None
            watch.finish()
            with self._wake:
                self._live.discard(watch)

    def abort(self) -> None:
        """End every attempt in flight now (their reads fail at once)."""
        with self._wake:
            live = list(self._live)
        for watch in live:
            watch.expire()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0][2].finished:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline, _, watch = self._heap[0]
                now = time.monotonic()
                if deadline > now:
                    self._wake.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
            watch.expire()
