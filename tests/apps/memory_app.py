"""An app that tells what its worker holds: the objects the garbage collector froze at start, whether
reference cycles made by requests are still collected, and whether asyncio was ever imported."""

from __future__ import annotations

import gc
import json
import sys
import weakref

_made: list[weakref.ref] = []


class _Node:
    """One half of a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def app(environ, start_response):
    """`/cycle` makes a reference cycle and forgets it; `/gc` collects, then reports."""
    if environ["PATH_INFO"] == "/cycle":
        first, second = _Node(), _Node()
        first.other, second.other = second, first
        _made.append(weakref.ref(first))
        body = b"made"
    else:
        gc.collect()
        alive = sum(1 for ref in _made if ref() is not None)
        body = json.dumps({"frozen": gc.get_freeze_count(), "enabled": gc.isenabled(), "made": len(_made),
                           "alive": alive,
                           "asyncio": "asyncio" in sys.modules}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
