"""Bodies the JSON parser cannot read however often they are fetched: nested deeper than its
recursion allows (about 1,000 levels, ``sys.getrecursionlimit()``).

:class:`DepthCheckedClient` is the :class:`~tap_codat_commerce.codat.http.CodatClient` whose
``get_json`` reports such a body as :class:`TooDeepError` (a CodatError: one line, naming the
request; the stream adds company and connection) instead of a ``RecursionError`` traceback. It is
not retried: the same body would fail the same way. Bodies nested less deeply are read whole.
"""

from __future__ import annotations

import sys
from typing import Any

from .http import CodatClient, CodatError


class TooDeepError(CodatError):
    """JSON nested deeper than the parser (or the writer) can follow."""


class DepthCheckedClient(CodatClient):
    """A CodatClient whose ``get_json`` raises :class:`TooDeepError` for JSON nested too deep."""

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            return super().get_json(path, params)
        except RecursionError:
            raise TooDeepError(f"GET {path}: the answer holds JSON nested deeper than the parser allows (about "
                               f"{sys.getrecursionlimit()} levels); stopping rather than loading it cut") from None


__all__ = ["DepthCheckedClient", "TooDeepError"]
