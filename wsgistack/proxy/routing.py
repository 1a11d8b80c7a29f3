"""The live form of a config: routes with their upstreams, limiters and static roots, and the lookup.

A `ProxyState` is built from ProxySettings once per (re)load and then only read; a reload builds a new one,
carrying over what must survive it (upstream servers with their pools and failure counts, limiter buckets
whose settings did not change), and swaps it in. Requests in flight keep the state they started with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsgistack.http.parser import Limits
from wsgistack.http.trust import ProxyTrust
from wsgistack.proxy.compression import GzipSettings
from wsgistack.proxy.limits import LimitConn, LimitReq
from wsgistack.proxy.settings import ProxySettings, RouteSettings
from wsgistack.proxy.static import StaticFiles
from wsgistack.proxy.upstream import Upstream

if TYPE_CHECKING:
    from wsgistack.proxy.metrics import ProxyRecorder


@dataclass
class Route:
    """One route, ready to serve."""

    settings: RouteSettings
    path: str
    hosts: tuple[str, ...]
    upstream: Upstream | None
    static: StaticFiles | None
    limit_req: LimitReq | None
    limit_conn: LimitConn | None
    body_limit: int
    label: str  # the metrics' http_route: the prefix, after its hosts when it has some

    def matches_host(self, host: str) -> bool:
        """True when the route has no hosts or one of them matches (exact, or *.suffix)."""
        if not self.hosts:
            return True
        for pattern in self.hosts:
            if pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return True
        return False


class ProxyState:
    """Routes, upstreams and limits of one config generation."""

    def __init__(self, settings: ProxySettings, previous: ProxyState | None = None):
        self.settings = settings
        self.trust = ProxyTrust(settings.trusted_proxies)
        self.gzip: GzipSettings = settings.gzip
        old_servers = [server for upstream in (previous.upstreams.values() if previous else ())
                       for server in upstream.servers]
        self.upstreams = {name: Upstream(spec, old_servers) for name, spec in settings.upstreams.items()}
        old_routes = {route.settings: route for route in (previous.routes if previous else ())}
        self.routes = [self._route(spec, old_routes.get(spec)) for spec in settings.routes]
        # host-specific routes first, then longest prefix first: the first match wins
        self.routes.sort(key=lambda route: (not route.hosts, -len(route.path)))
        # the parser enforces the largest route limit (0 is none); each route checks its own after routing
        limits = [route.body_limit for route in self.routes]
        self.body_limit = 0 if 0 in limits else max(limits, default=settings.client_max_body_size)
        self.limits = Limits(body_size=self.body_limit)
        # what the process counts into (metrics_bind), the same object across reloads; None when off
        self.metrics: ProxyRecorder | None = previous.metrics if previous is not None else None

    def _route(self, spec: RouteSettings, old: Route | None) -> Route:
        limit_req = old.limit_req if old and old.settings.limit_req == spec.limit_req else \
            (LimitReq(spec.limit_req) if spec.limit_req else None)
        limit_conn = old.limit_conn if old and old.settings.limit_conn == spec.limit_conn else \
            (LimitConn(spec.limit_conn) if spec.limit_conn else None)
        body_limit = self.settings.client_max_body_size if spec.client_max_body_size is None \
            else spec.client_max_body_size
        return Route(
            settings=spec,
            path=spec.path,
            hosts=spec.hosts,
            upstream=self.upstreams[spec.upstream] if spec.upstream else None,
            static=StaticFiles(spec.static, cache_control=spec.cache_control) if spec.static else None,
            limit_req=limit_req,
            limit_conn=limit_conn,
            body_limit=body_limit,
            label=route_label(spec),
        )

    def route_for(self, host: str | None, path: str) -> Route | None:
        """The route of a request: its Host (without port, lower case) and its path."""
        host = (host or "").rsplit(":", 1)[0].lower() if host and not host.startswith("[") else (host or "")
        for route in self.routes:
            if route.matches_host(host) and _under(path, route.path):
                return route
        return None

    def retire(self, successor: ProxyState) -> None:
        """Close the pools of upstream servers the new state no longer has."""
        kept = {id(server) for upstream in successor.upstreams.values() for server in upstream.servers}
        for upstream in self.upstreams.values():
            for server in upstream.servers:
                if id(server) not in kept:
                    server.pool.close()

    def server_states(self, now: float) -> list[tuple[str, str, bool, bool, int]]:
        """(upstream, server, is a backup, is down in this process, its requests in flight here) of every
        upstream server (the metrics)."""
        return [(upstream.name, server.name, server.backup, not server.available(now), server.active)
                for upstream in self.upstreams.values() for server in upstream.servers]

    def limit_zones(self) -> list[tuple[str, str]]:
        """(limit, route label) of every limit_req and limit_conn (the metrics)."""
        zones = []
        for route in self.routes:
            if route.limit_req is not None:
                zones.append(("limit_req", route.label))
            if route.limit_conn is not None:
                zones.append(("limit_conn", route.label))
        return zones

    def all_servers(self) -> Sequence:
        """Every upstream server (for health checks and the idle sweep)."""
        return [server for upstream in self.upstreams.values() for server in upstream.servers]


def route_label(spec: RouteSettings) -> str:
    """A route as the metrics name it: its prefix (`/api/`), after its hosts when it has some
    (`example.com,*.example.com/api/`); as few values as the config has routes."""
    return f"{','.join(spec.hosts)}{spec.path}" if spec.hosts else spec.path


def _under(path: str, prefix: str) -> bool:
    # "/static/" matches /static/x; "/api" matches /api and /api/x but not /apix (nginx matches plain prefixes;
    # stopping at a segment boundary is what users mean)
    if prefix.endswith("/"):
        return path.startswith(prefix) or path == prefix[:-1]
    return path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?")
