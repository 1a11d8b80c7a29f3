"""Upstream groups: their servers' health, and which server takes the next request (nginx's `upstream`).

Passive health follows nginx: `max_fails` failures within `fail_timeout` mark a server down for
`fail_timeout`, except the only server of a group, which is never marked down (taking it out would only turn
one failed request into `fail_timeout` seconds of 502 for everyone). A server that is down is watched
(proxy/health.py): the first connect that succeeds, or a passing active check, ends its down time, so a
server that comes back takes requests at once. Active checks mark a server down until enough checks pass.
Backups take requests only while every primary is down. No clock or socket here besides `time.monotonic`,
so the choices are tested directly.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence

from wsgistack.proxy.pool import ConnectionPool, UpstreamConnection
from wsgistack.proxy.settings import ServerSettings, UpstreamSettings

log = logging.getLogger("wsgistack.proxy")


class UpstreamServer:
    """One server of a group: its settings, failure window, health and connection pool."""

    def __init__(self, settings: ServerSettings, group: UpstreamSettings):
        self.settings = settings
        self.name = settings.name
        self.weight = settings.weight
        self.backup = settings.backup
        self.max_fails = group.max_fails if settings.max_fails is None else settings.max_fails
        self.alone = len(group.servers) == 1  # set again by each Upstream that takes the server over
        self.fail_timeout = group.fail_timeout if settings.fail_timeout is None else settings.fail_timeout
        self.pool = ConnectionPool(settings.address, group.keepalive, group.keepalive_timeout,
                                   group.connect_timeout)
        self.active = 0  # requests in flight (least_conn): changed only by begin_request and end_request
        self.current_weight = 0  # smooth weighted round robin
        self.fails = 0
        self.first_fail = 0.0
        self.down_until = 0.0
        self.unhealthy = False  # set by active health checks
        self.watch: object = None  # the timer or task looking for the server's return while down (health.py)
        self._key_hash = zlib.crc32(self.name.encode())

    def begin_request(self) -> UpstreamConnection | None:
        """A request's attempt starts here: count it in flight, and take the pool's most recently used idle
        connection that is still open and fresh for it (None: one must be opened)."""
        self.active += 1
        # the take is here, not a pool method: one call less on every request's path was 0.3% of the
        # proxy's instructions per request (bench/instructions.sh)
        pool = self.pool
        idle = pool.idle_connections
        if idle:
            now = time.monotonic()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < pool.idle:
                    return connection
                connection.close()
        return None

    def end_request(self, connection: UpstreamConnection | None, ok: bool) -> None:
        """The attempt is over: one in flight less. `ok`: a good exchange (the failure count cleared, as
        record_success does, inline: this is every request's path) and its connection back to the pool;
        otherwise the connection is closed. Failures are counted by the caller (record_failure)."""
        self.active -= 1
        if ok:
            self.fails = 0
            if connection is not None:
                self.pool.release(connection)
        elif connection is not None:
            connection.close()

    def available(self, now: float) -> bool:
        """True when neither passive nor active health has taken the server out."""
        return not self.unhealthy and now >= self.down_until

    def record_failure(self, reason: str, now: float | None = None) -> bool:
        """A connect error, reset or timeout: count it, and take the server out at max_fails.

        True when this failure took the server out (then its return is worth watching for).
        """
        now = time.monotonic() if now is None else now
        if self.max_fails == 0 or self.alone:
            return False  # nginx: max_fails=0 disables the accounting; the only server is never unavailable
        if now - self.first_fail > self.fail_timeout:
            self.fails = 0
        if self.fails == 0:
            self.first_fail = now
        self.fails += 1
        if self.fails >= self.max_fails and now >= self.down_until:
            self.down_until = now + self.fail_timeout
            self.fails = 0
            log.warning("upstream server %s is down for %gs after %s", self.name, self.fail_timeout, reason)
            return True
        return False

    def record_success(self) -> None:
        """A good exchange clears the failure count."""
        self.fails = 0

    def record_connected(self) -> None:
        """A connect succeeded: the server is back, whatever its down time still said."""
        if self.down_until:
            if time.monotonic() < self.down_until:
                log.info("upstream server %s accepts connections again: back in rotation", self.name)
            self.down_until = 0.0

    def rendezvous(self, key: str) -> int:
        """This server's score for a hash key: the highest score wins, and a server leaving moves only its keys."""
        return zlib.crc32(key.encode("utf-8", "replace"), self._key_hash)


class Upstream:
    """A named group of servers with a balancing method."""

    def __init__(self, settings: UpstreamSettings, reuse: Sequence[UpstreamServer] = ()):
        self.settings = settings
        self.name = settings.name
        known = {(server.settings): server for server in reuse}
        self.servers = [known.get(spec) or UpstreamServer(spec, settings) for spec in settings.servers]
        for server in self.servers:
            server.alone = len(self.servers) == 1
            if server.alone:
                server.down_until = 0.0  # the group shrank to this one: it is all there is
        self.primaries = [server for server in self.servers if not server.backup]
        self.backups = [server for server in self.servers if server.backup]
        self.method = settings.balance
        self.hash_header = settings.hash_header.lower() if settings.hash_header else None

    def pick(self, client_ip: str, headers: list[tuple[str, str]],
             tried: set[UpstreamServer] | None = None, down_too: bool = False) -> UpstreamServer | None:
        """The server for the next attempt of a request, or None when every server is down or was tried.

        `down_too` also offers servers passively marked down (a held request's connect is itself the check
        of whether they are back); those an active check took out stay out.
        """
        now = time.monotonic() if not down_too else float("inf")
        tried = tried or set()
        candidates = [s for s in self.primaries if s not in tried and s.available(now)]
        if not candidates:
            candidates = [s for s in self.backups if s not in tried and s.available(now)]
            if not candidates:
                return None
        if len(candidates) == 1:
            return candidates[0]
        if self.method == "least_conn":
            lowest = min(server.active / server.weight for server in candidates)
            candidates = [server for server in candidates if server.active / server.weight == lowest]
            if len(candidates) == 1:
                return candidates[0]
        elif self.method in ("ip_hash", "hash"):
            key = client_ip if self.method == "ip_hash" else self._header(headers)
            if key is not None:
                return max(candidates, key=lambda server: server.rendezvous(key))
        return _smooth_weighted(candidates)

    def _header(self, headers: list[tuple[str, str]]) -> str | None:
        for name, value in headers:
            if name.lower() == self.hash_header:
                return value
        return None  # nginx spreads requests without the key round robin

    def close(self) -> None:
        """Close every idle pooled connection (the group left the config)."""
        for server in self.servers:
            server.pool.close()


def _smooth_weighted(candidates: list[UpstreamServer]) -> UpstreamServer:
    # nginx's smooth weighted round robin: weights 5,1,1 give a a b a c a a, not a a a a a b c
    total = 0
    best = candidates[0]
    for server in candidates:
        server.current_weight += server.weight
        total += server.weight
        if server.current_weight > best.current_weight:
            best = server
    best.current_weight -= total
    return best
