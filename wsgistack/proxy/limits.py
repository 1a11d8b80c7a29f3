"""Per-client limits of the proxy: nginx's `limit_req` (a leaky bucket of requests) and `limit_conn`.

Like an nginx module, this one owns its feature whole: the TOML tables (`limit_req = {rate = "10r/s",
burst = 20, nodelay = true}`), the key a request is counted under, and the bookkeeping that says pass, wait
or refuse. It is pure: no sockets, no event loop, and the clock is handed in, so tests step through time
exactly and the proxy alone decides how to wait or what to answer. Neither class is thread-safe: the proxy
keeps one per route on its event loop.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from wsgistack.config import values

# nginx takes whole requests only ("1r/m" is its way to say "one a minute"), so do we.
_RATE = re.compile(r"^\s*(\d+)r/([sm])\s*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Float drift (0.1 * 3 != 0.3) must not refuse a request that lands exactly on the edge of the burst.
_EPSILON = 1e-9


def parse_rate(text: str) -> float:
    """Requests per second from nginx's notation: '10r/s' -> 10.0, '600r/m' -> 10.0 (whole requests only)."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a rate like 10r/s or 600r/m (a whole number of requests)")
    count = int(match.group(1))
    if count == 0:
        raise ValueError(f"{text!r} must be more than 0 requests")
    return count / 60 if match.group(2) == "m" else float(count)


def parse_key(value: Any) -> str:
    """What requests are counted by: 'client_ip' or 'header:NAME' (nginx's $remote_addr, $http_NAME too)."""
    text = value.strip() if isinstance(value, str) else ""
    if text in ("client_ip", "$remote_addr", "$binary_remote_addr"):
        return "client_ip"
    if text.lower().startswith("header:"):
        name = text[len("header:"):].strip()
    elif text.startswith("$http_"):
        name = text[len("$http_"):].replace("_", "-")
    else:
        raise ValueError(f"{value!r} is not client_ip, header:NAME, $remote_addr or $http_NAME")
    if not _HEADER_NAME.match(name):
        raise ValueError(f"{value!r} does not name a header")
    # One spelling per header, so `header:x-api-key` and `$http_x_api_key` make equal settings.
    return "header:" + "-".join(part.capitalize() for part in name.split("-"))


def _status(value: Any) -> int:
    number = values.whole(0)(value)
    if not 400 <= number <= 599:
        raise ValueError(f"{number} is not an error status (400 to 599)")
    return number


def _parse_table(table: Any, parsers: dict[str, Callable[[Any], Any]], required: tuple[str, ...]) -> dict:
    """Each key of a TOML inline table through its parser; errors start with the key's name."""
    if not isinstance(table, dict):
        # ValueError, not TypeError: to the config loader every bad value is one kind of mistake
        raise ValueError(f"{table!r} is not a table like {{{required[0]} = ...}}")  # noqa: TRY004
    unknown = [name for name in table if name not in parsers]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(parsers)})")
    for name in required:
        if name not in table:
            raise ValueError(f"{name}: missing")
    parsed = {}
    for name, value in table.items():
        try:
            parsed[name] = parsers[name](value)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    return parsed


@dataclass(frozen=True)
class LimitReqSettings:
    """`limit_req`: at most `rate` requests a second per key, with `burst` more queued (or let through)."""

    rate: float  # requests per second
    burst: int = 0  # requests over the rate that are delayed (or, with nodelay, passed) instead of refused
    nodelay: bool = False  # pass burst requests at once instead of spacing them at `rate`
    key: str = "client_ip"  # "client_ip" or "header:NAME"
    status: int = 429  # the answer to a refused request (nginx's default is 503)

    @classmethod
    def from_table(cls, table: dict) -> LimitReqSettings:
        """From `{rate = "10r/s", burst = 20, nodelay = true, key = "client_ip", status = 429}`."""
        parsers = {"rate": parse_rate, "burst": values.whole(0), "nodelay": values.boolean,
                   "key": parse_key, "status": _status}
        return cls(**_parse_table(table, parsers, required=("rate",)))


@dataclass(frozen=True)
class LimitConnSettings:
    """`limit_conn`: at most `max` requests in flight per key."""

    max: int
    key: str = "client_ip"
    status: int = 503  # nginx's default

    @classmethod
    def from_table(cls, table: dict) -> LimitConnSettings:
        """From `{max = 10, key = "client_ip", status = 503}`."""
        parsers = {"max": values.whole(1), "key": parse_key, "status": _status}
        return cls(**_parse_table(table, parsers, required=("max",)))


def key_of(key: str, client_ip: str, headers: Iterable[tuple[str, str]]) -> str | None:
    """The value a request is counted under; None (not limited, as nginx does for an empty key) if it has none."""
    if key == "client_ip":
        return client_ip or None
    if not key.startswith("header:"):
        raise ValueError(f"{key!r} is not client_ip or header:NAME")
    wanted = key[len("header:"):].lower()
    for name, value in headers:
        if name.lower() == wanted:
            return value or None
    return None


@dataclass(frozen=True)
class Verdict:
    """What to do with one request: pass it after `delay` seconds, or refuse it and say when to retry."""

    allowed: bool
    delay: float = 0.0  # seconds to hold the request before passing it on (burst without nodelay)
    retry_after: int = 0  # whole seconds, at least 1, when refused


_PASS = Verdict(True)


class LimitReq:
    """nginx's leaky bucket per key: `excess` requests drain at `rate` a second; past `burst`, refuse."""

    def __init__(self, settings: LimitReqSettings, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        if settings.rate <= 0 or max_keys < 1:
            raise ValueError("the rate and max_keys must be above 0")
        self.settings = settings
        self._clock = clock
        self._max_keys = max_keys
        # key -> (excess after its last accepted request, time of that request); least recently seen first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._buckets)

    def check(self, key: str | None) -> Verdict:
        """Count one request under `key` and say whether it passes, after what delay, or when to retry."""
        if key is None:
            return _PASS
        now = self._clock()
        rate, burst = self.settings.rate, self.settings.burst
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room(now)
            excess = 0.0
        else:
            self._buckets.move_to_end(key)
            stored, last = bucket
            # A clock that steps back must not fill the bucket further, nor drain it.
            excess = max(0.0, stored - rate * max(0.0, now - last) + 1)
        if excess > burst + _EPSILON:
            # Refused requests leave the bucket alone (as in nginx), so hammering does not extend the wait.
            wait = (excess - burst) / rate
            return Verdict(False, retry_after=max(1, math.ceil(wait - _EPSILON)))
        self._buckets[key] = (excess, now)
        if self.settings.nodelay or excess == 0:
            return _PASS
        return Verdict(True, delay=excess / rate)

    def _make_room(self, now: float) -> None:
        """Forget drained keys at the old end (as nginx does, two at a time), then the oldest past the bound."""
        rate = self.settings.rate
        for _ in range(2):
            if not self._buckets:
                break
            key, (stored, last) = next(iter(self._buckets.items()))
            # Drained means its next request would start from 0, exactly like a new key: forgetting it changes
            # no verdict. (nginx drops at `stored - rate * elapsed <= 0`, which forgives up to one request.)
            if stored - rate * (now - last) + 1 > 0:
                break
            del self._buckets[key]
        # Past the bound, the least recently seen key loses its state: a client that has gone quiet costs the
        # least to forgive, and memory stays bounded whatever keys clients make up.
        while len(self._buckets) >= self._max_keys:
            self._buckets.popitem(last=False)


class LimitConn:
    """Requests in flight per key; at most `max` at once."""

    def __init__(self, settings: LimitConnSettings) -> None:
        self.settings = settings
        # Only keys with requests in flight, so memory is bounded by the proxy's own connection limit.
        self._active: dict[str, int] = {}

    def acquire(self, key: str | None) -> bool:
        """Count one more request under `key`; False (and nothing counted) if it already has `max` in flight."""
        if key is None:
            return True
        count = self._active.get(key, 0)
        if count >= self.settings.max:
            return False
        self._active[key] = count + 1
        return True

    def release(self, key: str | None) -> None:
        """One request under `key` has finished (call once per successful acquire)."""
        if key is None:
            return
        count = self._active.get(key, 0)
        if count <= 1:
            self._active.pop(key, None)
        else:
            self._active[key] = count - 1

    def active(self, key: str | None) -> int:
        """How many requests under `key` are in flight."""
        return 0 if key is None else self._active.get(key, 0)

    def __len__(self) -> int:
        """How many keys have requests in flight."""
        return len(self._active)
