"""The ``--state`` and ``--catalog`` files: read and checked before the sync, one line per fault.

A file that cannot be read (missing, a directory, no permission, not UTF-8), is empty, or is
not JSON (truncated, a trailing comma) stops the run before any request: :class:`InputFileError`
carries one line naming the option, the file and the fault (as ``--config`` errors do). A
``--catalog`` that is JSON but no Singer catalog (not an object, ``streams`` not a list, an entry
without ``tap_stream_id`` or ``schema``) stops it too. A ``--state`` that is JSON of a shape the
tap cannot read as bookmarks is not fatal: see :func:`tap_codat_commerce.state.readable_state`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from singer_sdk.singerlib import Catalog


class InputFileError(ValueError):
    """A ``--state`` or ``--catalog`` file the tap cannot use; ``str()`` is the one line to log."""


def read_json_input(option: str, path: str) -> Any:
    """The JSON value in the file ``path`` (``-``: stdin) given to ``option`` (``--state``).

    Raises InputFileError (``"--state s.json: not valid JSON (line 1, column 9: …)"``)."""
    where = f"{option} {path}"
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise InputFileError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputFileError(f"{where}: not a text file (expected JSON in UTF-8)") from None
    if not text.strip():
        raise InputFileError(f"{where}: the file is empty (expected a JSON object)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                             "a truncated file is often one a previous run did not finish writing") from None
    except RecursionError:
        raise InputFileError(f"{where}: JSON nested deeper than the parser allows") from None


def check_catalog(where: str, catalog: Any) -> None:
    """Raise InputFileError unless ``catalog`` has the shape of a Singer catalog the SDK reads."""
    if not isinstance(catalog, dict):
        raise InputFileError(f"{where}: not a Singer catalog (a JSON object with \"streams\"), but a "
                             f"{type(catalog).__name__}")
    streams = catalog.get("streams")
    if not isinstance(streams, list):
        raise InputFileError(f"{where}: not a Singer catalog: \"streams\" must be a list, not "
                             f"{type(streams).__name__ if streams is not None else 'missing'}")
    for number, entry in enumerate(streams, start=1):
        if not isinstance(entry, dict):
            raise InputFileError(f"{where}: stream entry {number} is not an object")
        name = entry.get("tap_stream_id")
        if not isinstance(name, str) or not name:
            raise InputFileError(f"{where}: stream entry {number} has no tap_stream_id")
        if not isinstance(entry.get("schema"), dict):
            raise InputFileError(f"{where}: stream {name}: \"schema\" must be a JSON object")
        if not isinstance(entry.get("metadata", []), list):
            raise InputFileError(f"{where}: stream {name}: \"metadata\" must be a list")
    try:
        Catalog.from_dict(catalog)
    except Exception as exc:  # any other fault the SDK's reader finds: still one line
        raise InputFileError(f"{where}: not a Singer catalog the SDK can read ({type(exc).__name__}: "
                             f"{str(exc)[:200]})") from None


