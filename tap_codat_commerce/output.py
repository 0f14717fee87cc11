"""Singer output: orjson lines; RECORDs are buffered, every other message flushes.

Flushing on STATE (and SCHEMA) keeps the guarantee that matters: when a target sees a
STATE, it has already seen every record before it. Flushing after each RECORD, as the
SDK's writers do, costs more than serialising it.

Values are written as they are: a ``Decimal`` as a JSON number with its own digits
(``1234567890123456.78``, never a rounded double), a float in its shortest exact form.
Whatever orjson cannot write (integers beyond 64 bits, text with a lone surrogate, dict
keys that are not strings, a ``timedelta`` from a stream map, …) is written by the SDK's
own serialiser instead, so this writer never fails where the SDK's writer succeeds.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

import orjson
from singer_sdk.singerlib import SingerMessageType
from singer_sdk.singerlib.encoding.base import GenericSingerWriter
from singer_sdk.singerlib.encoding.simple import Message, SchemaMessage
from singer_sdk.singerlib.json import serialize_json

from .codat.errors import TooDeepError


class OutputError(Exception):
    """stdout cannot be written: the target closed it, or the disk behind it is full. The run
    stops (nothing after this could reach the target); one line says which."""


def _default(value: Any) -> Any:
    """orjson's hook for types it does not know: a Decimal is written as its own digits
    (a non-finite one as null, as the SDK writes NaN floats); anything else is refused,
    and :func:`serialize` hands the message to the SDK's serialiser."""
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value)) if value.is_finite() else None
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def serialize(data: dict[str, Any]) -> bytes:
    """One Singer message as a JSON line (bytes ending in a newline).

    orjson first (fast); on anything it refuses, the SDK's serialiser (simplejson with exact
    decimals, ``str()`` for unknown types, NaN as null, ASCII escapes), which raises only where
    the SDK's own writer would fail too.
    """
    try:
        return orjson.dumps(data, default=_default, option=orjson.OPT_APPEND_NEWLINE)
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return serialize_json(data).encode() + b"\n"
    except RecursionError:  # nested deeper than the SDK's serialiser follows (~1,000 levels)
        # the partition fails; the run's report names its stream, company and connection
        raise TooDeepError("a record holds JSON nested deeper than can be written (about 1,000 levels); "
                           "stopping rather than writing it cut") from None


class OrjsonWriter(GenericSingerWriter[bytes, Message]):
    """Singer messages as orjson lines on stdout.

    The SDK sends a stream's SCHEMA again each time a child stream starts a parent's context
    (a commerce stream: once per connection, so 110,000 times over 10,000 companies). A SCHEMA
    identical to the one last written for its stream is not written again, and each is
    serialised once: ``to_dict`` deep-copies the whole schema every time.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._schema_lines: dict[str, tuple[Any, tuple[Any, ...], bytes]] = {}  # stream → (schema, keys, line)
        self._written_schema: dict[str, bytes] = {}

    def serialize_message(self, message: Message) -> bytes:
        if message.type == SingerMessageType.STATE:
            return self.state_line(message.value)  # type: ignore[attr-defined]
        if isinstance(message, SchemaMessage):
            return self.schema_line(message)
        return serialize(message.to_dict())

    def schema_line(self, message: SchemaMessage) -> bytes:
        """The SCHEMA line, serialised once per stream for as long as its schema is the same object."""
        keys = (tuple(message.key_properties or ()), tuple(message.bookmark_properties or ()))
        cached = self._schema_lines.get(message.stream)
        if cached is not None and cached[0] is message.schema and cached[1] == keys:
            return cached[2]
        line = serialize(message.to_dict())
        self._schema_lines[message.stream] = (message.schema, keys, line)
        return line

    @staticmethod
    def state_line(state: Any) -> bytes:
        """A STATE line, serialised straight from the state (``to_dict`` would deep-copy it)."""
        return serialize({"type": "STATE", "value": state})

    def write_message(self, message: Message) -> None:
        line = self.format_message(message)
        if isinstance(message, SchemaMessage):
            if self._written_schema.get(message.stream) == line:
                return  # the target has this stream's schema already
            self._written_schema[message.stream] = line
        self.write_line(line, flush=message.type != SingerMessageType.RECORD)

    @staticmethod
    def write_line(line: bytes, *, flush: bool) -> None:
        """Write one serialised message; ``flush`` pushes it (and every line before it) out now."""
        out = sys.stdout
        binary = getattr(out, "buffer", None)
        try:
            if binary is None:  # a text-only stream (tests capture into StringIO)
                out.write(line.decode())
            else:
                binary.write(line)
            if flush:
                out.flush()
        except BrokenPipeError:
            raise OutputError("Sync stopped: whatever reads stdout (the target) closed it before the end") from None
        except OSError as exc:
            raise OutputError(f"Sync stopped: writing to stdout failed: {exc.strerror or exc}") from None
