"""The event loop for every loop wsgistack owns that may be uvloop (the event and tornado workers, the
proxy); the supervisor keeps asyncio's own, since uvloop reserves SIGCHLD (docs/design.md).

uvloop is imported with this module, so a master that imports a worker class before forking has it
already (the fork does not import it again).
"""

from __future__ import annotations

import asyncio

try:
    import uvloop
except ImportError:
    uvloop = None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, asyncio's own otherwise."""
    if uvloop is None:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
