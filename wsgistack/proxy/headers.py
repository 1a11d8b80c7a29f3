"""The X-Request-ID the proxy gives every request.

The fields themselves are written by `http/heads.py`: `forwarded_request_head` towards the upstream (hop-by-hop
fields dropped, X-Forwarded-For/-Proto/-Host/-Port set, the upstream's limits kept) and
`proxied_response_head` back to the client.
"""

from __future__ import annotations

import random
import re

_random = random.Random()
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(incoming: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, else a new random one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return "%032x" % _random.getrandbits(128)  # not a secret: the PRNG saves a getrandom() syscall per request
