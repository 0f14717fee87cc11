"""A local Codat-compatible API server: quick-start default, test target, load generator.

The tap never imports this package; it only talks HTTP to it.
"""

from __future__ import annotations

import threading
from types import TracebackType

from .server import SandboxHTTPServer, base_url_of, build_server
from .world import Settings

__all__ = ["Sandbox", "Settings"]


class Sandbox:
    """Run the sandbox in a background thread: ``with Sandbox(Settings(orders=10)) as sb: ...``."""

    def __init__(self, settings: Settings | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings or Settings()
        self.server: SandboxHTTPServer = build_server(self.settings, host, port)
        self.app = self.server.sandbox
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    @property
    def base_url(self) -> str:
        return base_url_of(self.server)

    @property
    def api_key(self) -> str:
        return self.settings.key

    def start(self) -> Sandbox:
        serve = threading.Thread(target=self.server.serve_forever, name="codat-sandbox", daemon=True)
        serve.start()
        self._threads.append(serve)
        if self.settings.change_every > 0:  # a clock thread only for sandboxes started with one
            ticker = threading.Thread(target=self._tick, name="codat-sandbox-clock", daemon=True)
            ticker.start()
            self._threads.append(ticker)
        return self

    def _tick(self) -> None:
        # change_every may be changed (or set to 0, pausing changes) at run time via /_sandbox/faults
        while not self._stopped.wait(self.settings.change_every or 1.0):
            if self.settings.change_every > 0:
                with self.app.world.lock:
                    self.app.world.advance()
                    self.app.save()

    def stop(self) -> None:
        self._stopped.set()
        self.app.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.app.world.webhooks is not None:
            self.app.world.webhooks.stop()
        with self.app.world.lock:
            self.app.save()  # what reads changed since the last save (re-stamps) is kept too

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
