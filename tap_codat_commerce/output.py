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
    def serialize_message(self, message: Message) -> bytes:
        return orjson.dumps(message.to_dict(), default=_default, option=orjson.OPT_APPEND_NEWLINE)

    def write_message(self, message: Message) -> None:
        line = self.format_message(message)
        out = sys.stdout
        binary = getattr(out, "buffer", None)
        if binary is None:  # a text-only stream (tests capture into StringIO)
            out.write(line.decode())
        else:
            binary.write(line)
        if message.type != SingerMessageType.RECORD:
            out.flush()
