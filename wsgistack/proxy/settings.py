"""Typed settings of `wsgistack proxy`: one frozen dataclass per table of `[proxy]` in wsgistack.toml.

They are built once by `proxy.config` (from the file and the command line), validated there, and never
changed afterwards; a reload builds a new set and swaps it in whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wsgistack.config.addresses import Address
from wsgistack.proxy.compression import GzipSettings
from wsgistack.proxy.limits import LimitConnSettings, LimitReqSettings

BALANCE_METHODS = ("round_robin", "least_conn", "ip_hash", "hash")


@dataclass(frozen=True)
class ServerSettings:
    """One upstream server: `127.0.0.1:9001 weight=2`, `unix:/run/app.sock backup`."""

    address: Address  # kind "tcp" or "unix"
    weight: int = 1
    backup: bool = False
    max_fails: int | None = None  # None: the upstream's value
    fail_timeout: float | None = None

    @property
    def name(self) -> str:
        """How logs and $upstream_addr show it: 127.0.0.1:9001 or unix:/run/app.sock."""
        if self.address.kind == "unix":
            return f"unix:{self.address.path}"
        host = f"[{self.address.host}]" if ":" in self.address.host else self.address.host
        return f"{host}:{self.address.port}"


@dataclass(frozen=True)
class HealthCheckSettings:
    """Active health checks: GET `path` every `interval`; 2xx/3xx within `timeout` is healthy."""

    path: str = "/healthz"
    interval: float = 2.0
    timeout: float = 1.0
    fails: int = 1  # consecutive failed checks that mark a server down
    passes: int = 1  # consecutive good checks that bring it back


@dataclass(frozen=True)
class UpstreamSettings:
    """A named group of servers and how requests are spread over them."""

    name: str
    servers: tuple[ServerSettings, ...]
    balance: str = "round_robin"
    hash_header: str | None = None  # for balance = "hash:$http_x_user" / "hash:X-User"
    max_fails: int = 1  # nginx's default: one failure within fail_timeout marks a server down
    fail_timeout: float = 10.0
    health_check: HealthCheckSettings | None = None
    keepalive: int = 32  # idle connections kept per server
    # below `wsgistack serve`'s default keep-alive (5 s), so the server never closes a connection we are about
    # to reuse
    keepalive_timeout: float = 4.0
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    # how long a request whose connect failed everywhere (nothing sent) is held and retried before the 502,
    # so an app server restarting behind the proxy costs a short wait instead of errors; 0 answers at once
    connect_retry_timeout: float = 5.0


@dataclass(frozen=True)
class RouteSettings:
    """Where requests go: the first route whose host matches, longest path prefix first."""

    path: str = "/"
    hosts: tuple[str, ...] = ()  # empty: any host; "example.com", "*.example.com"
    upstream: str | None = None
    static: str | None = None
    cache_control: str | None = None
    limit_req: LimitReqSettings | None = None
    limit_conn: LimitConnSettings | None = None
    client_max_body_size: int | None = None  # None: the proxy's value
    buffering: bool | None = None  # response buffering; None: the proxy's value, false for streaming routes
    index: int = 0  # position in the file, for messages


@dataclass(frozen=True)
class RotateSettings:
    """Built-in rotation of the access log (in addition to SIGUSR1 reopening for logrotate)."""

    size: int = 0  # bytes; 0 = never by size
    interval: float = 0.0  # seconds; 0 = never by time
    keep: int = 5  # rotated files kept: access.log.1 ... access.log.N


@dataclass(frozen=True)
class ListenSettings:
    """One listener: an address, plain HTTP or TLS."""

    address: Address
    tls: bool = False


@dataclass(frozen=True)
class ProxySettings:
    """Everything `wsgistack proxy` can be told."""

    listen: tuple[ListenSettings, ...]
    upstreams: dict[str, UpstreamSettings] = field(default_factory=dict)
    routes: tuple[RouteSettings, ...] = ()
    workers: int = 1  # processes; limits are counted per process
    certfile: str | None = None
    keyfile: str | None = None
    access_log: str | None = None  # None: no access log; "-": standard output
    access_log_format: str = "combined"
    access_log_rotate: RotateSettings = RotateSettings()
    error_log: str | None = None  # None: standard error
    log_level: str = "info"
    client_max_body_size: int = 1 << 20  # nginx's default, 1 MiB; 0 = no limit
    client_body_buffer_size: int = 1 << 20  # bodies past this go to a temporary file
    # nginx's proxy_buffering: a response the client cannot take yet is read on into memory, then a temporary
    # file up to max_temp_file_size (past it, the upstream waits), so the app worker is free when the app is
    buffering: bool = True
    response_buffer_size: int = 256 << 10  # at 64k, 1 MiB responses to fast clients went through the file
    max_temp_file_size: int = 1 << 30  # nginx's 1024m; 0 = memory only
    # at the cap, the oldest idle connection (keep-alive, or no byte of a request yet) is closed for a new one,
    # as nginx reuses connections; 503 only when none is idle. Also kept below what RLIMIT_NOFILE allows
    max_connections: int = 10000
    # open connections per client address (unix-socket and trusted_proxies peers are not counted); 0 = off
    max_connections_per_ip: int = 512
    # bytes a request head may take while it still arrives (431 past it); nginx's 4 x 8k buffers
    client_max_header_size: int = 32 << 10
    trusted_proxies: tuple[str, ...] = ()  # clients whose X-Forwarded-* headers are believed
    client_header_timeout: float = 60.0
    client_body_timeout: float = 60.0
    send_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    gzip: GzipSettings = GzipSettings()
    config_file: str | None = None  # where it was read from, for reloads
