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
import logging
import time
from collections.abc import Callable
from typing import Any

from singer_sdk.helpers import types

# The SDK's own manager (a private module): only get_context_state is overridden.
from singer_sdk.streams._state import StreamStateManager

from .codat.dates import canonical, parse_instant
from .output import OrjsonWriter

DEFAULT_STATE_INTERVAL = 30.0
SERIALISE_SHARE = 20  # write at most once per 20 serialisation times


def _key(context: types.Context) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(context.items()))


_SCALARS = (str, int, float, bool, type(None))
BOOKMARK_KEYS = ("replication_key", "replication_key_value")


def readable_state(state: Any, where: str, logger: logging.Logger) -> dict[str, Any]:
    """``state`` (a Singer STATE value) with whatever the tap cannot read as bookmarks left out.

    Left out, each as if it had no bookmark: a state that is no object; ``bookmarks`` that is
    no object; a stream's state that is no object; ``partitions`` that is no list; a partition
    that is no object or whose ``context`` is no object of scalars; a ``replication_key`` or
    ``replication_key_value`` that is no string, or a value that is no date. If anything was
    left out, one WARNING names ``where`` (``--state s.json``), how many, and the first. A state
    the tap can read is returned unchanged (the same object)."""
    problems: list[str] = []

    def bookmark_ok(entry: dict[str, Any], path: str) -> bool:
        if not any(key in entry for key in BOOKMARK_KEYS):
            return True
        key, value = entry.get("replication_key"), entry.get("replication_key_value")
        if not isinstance(key, str):
            problems.append(f"{path}.replication_key is not a string")
        elif not isinstance(value, str):
            problems.append(f"{path}.replication_key_value is not a string")
        elif parse_instant(value) is None:
            problems.append(f"{path}.replication_key_value {value[:40]!r} is not a date")
        else:
            return True
        return False

    def clean_stream(name: str, stream: Any) -> dict[str, Any] | None:
        path = f"bookmarks.{name}"
        if not isinstance(stream, dict):
            problems.append(f"{path} is not an object")
            return None
        cleaned = dict(stream)
        if not bookmark_ok(stream, path):
            for key in BOOKMARK_KEYS:
                cleaned.pop(key, None)
        if "partitions" in stream:
            partitions = stream["partitions"]
            if not isinstance(partitions, list):
                problems.append(f"{path}.partitions is not a list")
                del cleaned["partitions"]
                return cleaned
            kept = []
            for number, partition in enumerate(partitions):
                where_p = f"{path}.partitions[{number}]"
                if not isinstance(partition, dict):
                    problems.append(f"{where_p} is not an object")
                    continue
                context = partition.get("context")
                if not isinstance(context, dict) or not all(isinstance(v, _SCALARS) for v in context.values()):
                    problems.append(f"{where_p}.context is not an object of ids")
                    continue
                kept.append(partition if bookmark_ok(partition, where_p)
                            else {k: v for k, v in partition.items() if k not in BOOKMARK_KEYS})
            cleaned["partitions"] = kept
        return cleaned

    if not isinstance(state, dict):
        problems.append(f"the state is a {type(state).__name__}, not an object")
        result: dict[str, Any] = {}
    elif "bookmarks" in state and not isinstance(state["bookmarks"], dict):
        problems.append("bookmarks is not an object")
        result = {k: v for k, v in state.items() if k != "bookmarks"}
    else:
        streams = {name: clean_stream(name, stream) for name, stream in (state.get("bookmarks") or {}).items()}
        result = {**state, "bookmarks": {name: s for name, s in streams.items() if s is not None}} \
            if "bookmarks" in state else state
    if not problems:
        assert isinstance(state, dict)
        return state
    logger.warning("%s: part of it cannot be read as bookmarks (%s%s); reading that part as if there were no "
                   "bookmark", where, problems[0], f"; and {len(problems) - 1} more" if len(problems) > 1 else "")
    return result


class IndexedStateManager(StreamStateManager):
    """The SDK's stream state manager with an O(1) partition lookup (no list scan per record),
    and a bookmark that never moves past the run's start (see :meth:`increment_state`)."""

    def __init__(self, *, on_future: Callable[[types.Context | None, str, str], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._index: dict[tuple[tuple[str, Any], ...], dict[str, Any]] | None = None
        self._indexed_list: list[dict[str, Any]] | None = None
        self.ceiling: str | None = None  # canonical instant no bookmark passes (the run's start)
        self._on_future = on_future

    def increment_state(self, latest_record: types.Record, *, context: types.Context | None = None,
                        replication_key: str) -> None:
        """The SDK's bookmark update, except that a record later than :attr:`ceiling` (the
        run's start, by the tap's UTC clock) does not move it: the SDK's signpost rule, which
        the SDK itself applies only to unsorted streams. The record is emitted all the same;
        ``on_future(context, value, ceiling)`` is told, and the next run reads it again."""
        value = latest_record.get(replication_key)
        ceiling = self.ceiling
        if ceiling is not None and value.__class__ is str and value > ceiling:
            if len(value) != len(ceiling) or value[-1] != "Z":  # not canonical: compare as instants
                value = canonical(value) or ""
            if value > ceiling:
                if self._on_future is not None:
                    self._on_future(context, value, ceiling)
                return
        super().increment_state(latest_record, context=context, replication_key=replication_key)

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
