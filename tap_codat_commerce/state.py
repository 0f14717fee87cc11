"""Singer STATE at the scale of thousands of companies: cheap to update, written when it matters.

The SDK keeps one state partition per (stream, connection) in a list, finds a partition by
scanning that list (for every record), and writes the whole state (compared, then deep-copied)
after every partition. With 10,000 companies that is 110,000 partitions, and cost grows with the
square of the companies. Here:

- :class:`IndexedStateManager` finds a partition through a dict index (the list stays the state,
  unchanged in shape, so any Singer target or orchestrator reads it as before);
- :class:`IntervalStateWriter` writes a STATE at most every ``interval`` seconds — and never
  more often than it takes to serialise 20 of them, so that STATE stays a small share of the
  work however large it grows — plus whenever the sync ends or fails. It serialises the state
  once per line written, and skips a line identical to the last one.

Every STATE still follows the records it counts: the SDK asks for a STATE only after those
records were written, and the writer flushes them before the STATE line.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from singer_sdk.helpers import types

# The SDK's own manager (a private module): only get_context_state is overridden.
from singer_sdk.streams._state import StreamStateManager

from .output import OrjsonWriter

DEFAULT_STATE_INTERVAL = 30.0
SERIALISE_SHARE = 20  # write at most once per 20 serialisation times


def _key(context: types.Context) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(context.items()))


class IndexedStateManager(StreamStateManager):
    """The SDK's stream state manager with an O(1) partition lookup (no list scan per record)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._index: dict[tuple[tuple[str, Any], ...], dict[str, Any]] | None = None
        self._indexed_list: list[dict[str, Any]] | None = None

    def get_context_state(self, context: types.Context | None) -> dict:
        """The writable partition of ``context`` (created, and appended to the state's list, if new)."""
        partition_context = self.get_state_partition_context(context)
        if not partition_context:
            return self.stream_state
        partitions: list[dict[str, Any]] = self.stream_state.setdefault("partitions", [])
        if self._index is None or self._indexed_list is not partitions:
            self._index = {_key(p["context"]): p for p in partitions if isinstance(p.get("context"), dict)}
            self._indexed_list = partitions
        key = _key(partition_context)
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = {"context": dict(partition_context)}
            partitions.append(found)
        return found


class IntervalStateWriter:
    """Writes STATE lines on an interval (see the module's text); ``flush()`` writes now."""

    def __init__(self, writer: OrjsonWriter, interval: float = DEFAULT_STATE_INTERVAL) -> None:
        self._writer = writer
        self.interval = interval
        self._last_written = float("-inf")
        self._last_digest: bytes | None = None
        self._serialise_seconds = 0.0
        self.every_call = False  # the sync's root has ended: what follows is its final state

    def write_state(self, state: types.TapState) -> None:
        """Called by the SDK after each partition (and every 10,000 records): write if due."""
        wait = max(self.interval, SERIALISE_SHARE * self._serialise_seconds) if self.interval > 0 else 0.0
        if self.every_call or time.monotonic() - self._last_written >= wait:
            self.flush(state)

    def flush(self, state: types.TapState) -> None:
        """Write ``state`` now (records before it are flushed first), unless it is the last one written."""
        started = time.monotonic()
        line = self._writer.state_line(state)
        digest = hashlib.blake2b(line, digest_size=16).digest()
        if digest != self._last_digest:
            self._last_digest = digest
            self._writer.write_line(line, flush=True)
        self._last_written = time.monotonic()
        self._serialise_seconds = self._last_written - started

    def restart(self) -> None:
        """A new sync: the first STATE is due at once again."""
        self._last_written = float("-inf")
        self.every_call = False
