"""Singer output: orjson lines; RECORDs are buffered, every other message flushes.

Flushing on STATE (and SCHEMA) keeps the guarantee that matters: when a target sees a
STATE, it has already seen every record before it. Flushing after each RECORD, as the
SDK's writers do, costs more than serialising it.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

import orjson
from singer_sdk.singerlib import SingerMessageType
from singer_sdk.singerlib.encoding.base import GenericSingerWriter
from singer_sdk.singerlib.encoding.simple import Message


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class OrjsonWriter(GenericSingerWriter[bytes, Message]):
    """Singer messages as orjson lines on stdout."""

    def serialize_message(self, message: Message) -> bytes:
        if message.type == SingerMessageType.STATE:
            return self.state_line(message.value)  # type: ignore[attr-defined]
        return orjson.dumps(message.to_dict(), default=_default, option=orjson.OPT_APPEND_NEWLINE)

    @staticmethod
    def state_line(state: Any) -> bytes:
        """A STATE line, serialised straight from the state (``to_dict`` would deep-copy it)."""
        return orjson.dumps({"type": "STATE", "value": state}, default=_default, option=orjson.OPT_APPEND_NEWLINE)

    def write_message(self, message: Message) -> None:
        self.write_line(self.format_message(message), flush=message.type != SingerMessageType.RECORD)

    @staticmethod
    def write_line(line: bytes, *, flush: bool) -> None:
        """Write one serialised message; ``flush`` pushes it (and every line before it) out now."""
        out = sys.stdout
        binary = getattr(out, "buffer", None)
        if binary is None:  # a text-only stream (tests capture into StringIO)
            out.write(line.decode())
        else:
            binary.write(line)
        if flush:
            out.flush()
