"""The Date header, formatted once a second instead of once a response."""

from __future__ import annotations

import time
from email.utils import formatdate

_cache: tuple[int, str] = (-1, "")


def http_date(now: float | None = None) -> str:
    """The current time as an IMF-fixdate ('Sun, 06 Nov 1994 08:49:37 GMT')."""
    global _cache
    now = time.time() if now is None else now
    second = int(now)
    if _cache[0] != second:
        _cache = (second, formatdate(second, usegmt=True))
    return _cache[1]
