"""The SDK's HTTP metrics (``http_request_duration``, ``http_request_count``) for the tap's one
CodatClient, tagged as the SDK's REST streams tag them.

The client reports every HTTP attempt (retries included, on whichever thread made it,
fetch-ahead threads too) to :meth:`RequestMetrics.observe`:

- ``http_request_duration`` (a ``timer`` point, seconds, logged at once) with tags ``stream``,
  ``endpoint`` (the path as a template: ``/companies/{companyId}/connections/{connectionId}/data/commerce-orders``),
  ``http_status_code`` (absent when no response came), ``status`` (``succeeded`` below 400,
  else ``failed``) and ``context`` (``companyId``/``connectionId`` taken from the path).
- ``http_request_count`` (a ``counter``) per stream, endpoint and context, logged when that
  stream's sync of the context ends (and every minute while it runs, as the SDK's counters are),
  and whatever remains at the end of the sync.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from singer_sdk import metrics

from .codat.http import RequestTiming


def _context_of(path: str) -> dict[str, str] | None:
    parts = path.split("?", 1)[0].split("/")
    context = {}
    for i in range(1, len(parts) - 1):
        if parts[i] == "companies":
            context["companyId"] = parts[i + 1]
        elif parts[i] == "connections":
            context["connectionId"] = parts[i + 1]
    return context or None


class RequestMetrics:
    """Turns the client's request timings into the SDK's metric points (thread-safe)."""

    def __init__(self, streams_by_endpoint: dict[str, str], default_stream: str) -> None:
        """``streams_by_endpoint`` maps endpoint templates to the stream that reads them;
        any other endpoint (e.g. ``/companies/{companyId}/dataStatus``) is ``default_stream``'s."""
        self.streams_by_endpoint = streams_by_endpoint
        self.default_stream = default_stream
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str, tuple[tuple[str, str], ...]], metrics.Counter] = {}
        self._logger = metrics.get_metrics_logger()

    def stream_of(self, endpoint: str) -> str:
        return self.streams_by_endpoint.get(endpoint, self.default_stream)

    def observe(self, timing: RequestTiming) -> None:
        """Log one attempt's duration and count it (called by CodatClient on any thread)."""
        stream = self.stream_of(timing.endpoint)
        context = _context_of(timing.path)
        tags: dict[str, Any] = {metrics.Tag.STREAM: stream, metrics.Tag.ENDPOINT: timing.endpoint}
        if timing.status is not None:
            tags[metrics.Tag.HTTP_STATUS_CODE] = timing.status
        tags[metrics.Tag.STATUS] = (metrics.Status.SUCCEEDED if timing.status is not None and timing.status < 400
                                    else metrics.Status.FAILED)
        if context:
            tags[metrics.Tag.CONTEXT] = context
        metrics.log(self._logger, metrics.Point("timer", metrics.Metric.HTTP_REQUEST_DURATION, timing.seconds, tags))
        key = (stream, timing.endpoint, tuple(sorted((context or {}).items())))
        with self._lock:
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = metrics.http_request_counter(stream, endpoint=timing.endpoint)
                counter.with_context(context)
            counter.increment()

    def flush(self, stream: str, context: Mapping[str, Any] | None) -> None:
        """Log and forget the counts of ``stream`` for ``context`` (all of the stream's if None)."""
        with self._lock:
            wanted = None if context is None else tuple(sorted((k, str(v)) for k, v in context.items()))
            done = [key for key in self._counters if key[0] == stream and (wanted is None or key[2] == wanted)]
            counters = [self._counters.pop(key) for key in done]
        for counter in counters:
            counter.exit()

    def close(self) -> None:
        """Log every count not logged yet (end of the sync)."""
        with self._lock:
            counters = list(self._counters.values())
            self._counters.clear()
        for counter in counters:
            counter.exit()
