"""The tap's quiet default log: the SDK's per-partition METRIC lines and sync chatter are
counted instead of printed; a summary per stream is logged at the end.

``log_metrics: true`` leaves the SDK's logging as it is (METRIC JSON lines per partition).
Plain :mod:`logging` filters do the work; nothing of the SDK is patched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from .codat.http import CodatClient

METRICS_LOGGER = "singer_sdk.metrics"
# Templates of the SDK's INFO lines that repeat per partition or per stream at start-up.
CHATTER = ("Beginning sync of '%s'", "Starting incremental sync of '%s'", "Added '%s' as child stream",
           "Skipping parse of env var settings", "Parsing env var for settings", "Skipping deselected stream")
# The tap's own routine INFO lines, one per connection: counted into the stream's summary instead.
# (template, which argument names the stream or None for "connections", which one is the reason)
ROUTINE_SKIP = "Skipping %s for company %s connection %s: %s"
NOT_LINKED = "Company %s connection %s is not linked yet (PendingAuth); no data to read"


SUMMARY_REASONS = 3  # reasons per stream in the end-of-run line; the rest are counted together


class RecordTally(logging.Filter):
    """Drops the SDK's METRIC log lines, adding up ``record_count`` per stream and the partitions
    (companies or connections) each stream read."""

    def __init__(self) -> None:
        super().__init__("")
        self.lock = threading.Lock()
        self.records: Counter[str] = Counter()
        self.partitions: dict[str, set[str]] = {}
        self.notes: dict[str, Counter[str]] = {}  # per stream: why connections were passed over, how often

    def reset(self) -> None:
        with self.lock:
            self.records.clear()
            self.partitions.clear()
            self.notes.clear()

    def note(self, stream: str, reason: str) -> None:
        """One connection passed over for ``reason`` (a routine skip, counted instead of logged)."""
        with self.lock:
            self.notes.setdefault(stream, Counter())[reason] += 1

    def filter(self, record: logging.LogRecord) -> bool:
        point = record.args[0] if isinstance(record.args, tuple) and record.args else None
        to_dict = getattr(point, "to_dict", None)
        if to_dict is None:
            return True  # not a METRIC line: leave it alone
        measured: dict[str, Any] = to_dict()
        if measured.get("metric") == "record_count":
            tags = measured.get("tags") or {}
            stream = str(tags.get("stream"))
            with self.lock:
                self.records[stream] += int(measured.get("value") or 0)
                if tags.get("context"):
                    self.partitions.setdefault(stream, set()).add(repr(sorted(tags["context"].items())))
        return False

    def summary(self, stream: str) -> str:
        with self.lock:
            count = self.records.get(stream, 0)
            partitions = len(self.partitions.get(stream, ()))
            notes = dict(self.notes.get(stream, {}))
        where = ""
        if partitions:
            noun = ("company", "companies") if stream == "connections" else ("connection", "connections")
            where = f" from {partitions:,} {noun[partitions != 1]}"
        ranked = sorted(notes.items(), key=lambda item: -item[1])
        passed_over = "".join(f"; {reason} on {n:,} connection{'' if n == 1 else 's'}"
                              for reason, n in ranked[:SUMMARY_REASONS])
        if len(ranked) > SUMMARY_REASONS:
            others = sum(n for _, n in ranked[SUMMARY_REASONS:])
            passed_over += f"; {len(ranked) - SUMMARY_REASONS} other reasons on {others:,} connections"
        return f"{stream}: {count:,} record{'' if count == 1 else 's'}{where}{passed_over}"


class Progress:
    """A progress line at most every ``interval`` seconds: companies done of total, records,
    requests in the last minute against the budget, Codat's quota left, and time left."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger = logger
        self.interval = interval
        self.total = 0
        self._started = self._last = time.monotonic()

    def start(self, total: int) -> None:
        self.total = total
        self._started = self._last = time.monotonic()

    def company_done(self, done: int, client: CodatClient) -> None:
        now = time.monotonic()
        if self.interval <= 0 or now - self._last < self.interval or done >= self.total:
            return
        self._last = now
        elapsed = now - self._started
        with TALLY.lock:
            records = sum(TALLY.records.values())
        left = elapsed / done * (self.total - done) if done else 0.0
        budget = client.budget.per_minute
        quota = f", Codat quota left {client.quota_remaining:,}" if client.quota_remaining is not None else ""
        self.logger.info("Progress: %s/%s companies, %s records, %s requests in the last minute (budget %s)%s; "
                         "%s elapsed, about %s left", f"{done:,}", f"{self.total:,}", f"{records:,}",
                         f"{client.budget.in_window():,}", f"{budget:,}" if budget else "none", quota,
                         _duration(elapsed), _duration(left))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class SdkChatter(logging.Filter):
    """Drops the SDK's per-partition INFO lines ("Beginning sync of …", "Starting incremental sync
    of …") and counts the tap's routine per-connection ones into the summary; warnings and errors
    always pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not isinstance(record.msg, str):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == ROUTINE_SKIP and len(args) == 4:
            TALLY.note(str(args[0]), str(args[3]))
            return False
        if record.msg == NOT_LINKED:
            TALLY.note("connections", "not linked yet (PendingAuth)")
            return False
        return not record.msg.startswith(CHATTER)


TALLY = RecordTally()
_CHATTER = SdkChatter()


def quiet_sdk_logs(tap_logger: str = "tap-codat-commerce", *, quiet: bool = True) -> None:
    """Install (``quiet``) or remove the filters on the SDK's metrics logger and the tap's loggers.
    Idempotent; stream loggers get theirs from :func:`quiet_stream_logger`."""
    for name, log_filter in ((METRICS_LOGGER, TALLY), (tap_logger, _CHATTER)):
        logger = logging.getLogger(name)
        if quiet and log_filter not in logger.filters:
            logger.addFilter(log_filter)
        elif not quiet:
            logger.removeFilter(log_filter)


def quiet_stream_logger(logger: logging.Logger, *, quiet: bool) -> None:
    if quiet and _CHATTER not in logger.filters:
        logger.addFilter(_CHATTER)
    elif not quiet:
        logger.removeFilter(_CHATTER)


def is_quiet() -> bool:
    return TALLY in logging.getLogger(METRICS_LOGGER).filters
