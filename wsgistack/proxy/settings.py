"""Typed settings of `wsgistack proxy`: one frozen dataclass per table of `[proxy]` in wsgistack.toml.

They are built once by `proxy.config` (from the file, the environment and the command line), validated there,
and never changed afterwards; a reload builds a new set and swaps it in whole. The plain values of `[proxy]` are
declared with `option(...)`, as `ServeSettings` is: their flags (`--send-timeout`) and variables
(`WSGISTACK_PROXY_SEND_TIMEOUT`) come from these declarations; the nested tables are read from the file only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from wsgistack.config import values
from wsgistack.config.addresses import Address, parse_address
from wsgistack.config.errors import ConfigError
from wsgistack.config.settings import option
from wsgistack.proxy.compression import GzipSettings
from wsgistack.proxy.limits import LimitConnSettings, LimitReqSettings

BALANCE_METHODS = ("round_robin", "least_conn", "ip_hash", "hash")
# what `wsgistack up` runs as the proxy of the stack: this package's proxy, or a real nginx with the
# configuration `wsgistack export nginx` writes
ENGINES = ("wsgistack", "nginx")


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


def address(text: str, allow_fd: bool = False) -> Address:
    """An upstream server's address (HOST:PORT or unix:PATH), or a listener's (fd://N too)."""
    try:
        parsed = parse_address(text)
    except ConfigError as exc:
        raise ValueError(str(exc).removeprefix("--bind ")) from None
    if parsed.kind == "fd" and not allow_fd:
        raise ValueError(f"{text!r}: an upstream is HOST:PORT or unix:PATH")
    return parsed


def parse_listen(text: str) -> ListenSettings:
    """'0.0.0.0:8000', '[::1]:8443 ssl', 'unix:/run/proxy.sock'."""
    words = text.split()
    if not words:
        raise ValueError(f"{text!r} is not an address")
    tls = words[1:] == ["ssl"] or words[1:] == ["tls"]
    if len(words) > 1 and not tls:
        raise ValueError(f"{text!r}: only 'ssl' may follow the address")
    return ListenSettings(address(words[0], allow_fd=True), tls)


def listen_list(raw: Any) -> tuple[ListenSettings, ...]:
    """Listeners from a list (or comma-separated text) of addresses."""
    return tuple(parse_listen(text) for text in values.text_list(raw))


def address_text(address: Address) -> str:
    """An address as the config file writes it (the inverse of `address`): 127.0.0.1:8080, [::1]:80, unix:PATH."""
    if address.kind == "tcp":
        host = f"[{address.host}]" if ":" in address.host else address.host
        return f"{host}:{address.port}"
    return str(address)


def metrics_address(raw: Any) -> str | None:
    """`metrics_bind`: HOST:PORT or unix:PATH (kept as written), or nothing."""
    text = values.optional_text(raw)
    if text is None:
        return None
    try:
        parsed = parse_address(text)
    except ConfigError as exc:
        raise ValueError(str(exc).removeprefix("--bind ")) from None
    if parsed.kind == "fd":
        raise ValueError(f"{text!r}: give HOST:PORT or unix:PATH (fd:// is for the proxy's listeners)")
    return text


_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class ProxySettings:
    """Everything `wsgistack proxy` can be told."""

    listen: tuple[ListenSettings, ...] = option(
        (ListenSettings(Address("tcp", host="127.0.0.1", port=8080)),), listen_list,
        "HOST:PORT, [::1]:PORT or unix:PATH, optionally followed by ' ssl' (default 127.0.0.1:8080); "
        "repeat for several",
        flags=("--listen",), metavar="ADDRESS", repeatable=True,
    )
    upstreams: dict[str, UpstreamSettings] = field(default_factory=dict)
    routes: tuple[RouteSettings, ...] = ()
    workers: int = option(1, values.whole(1), "proxy processes (default 1; limits are counted per process)",
                          flags=("-w", "--workers"), metavar="N")
    certfile: str | None = option(None, values.text, "TLS certificate (PEM) of the 'ssl' listeners",
                                  flags=("--certfile",), metavar="PATH")
    keyfile: str | None = option(None, values.text, "TLS private key (PEM) of the 'ssl' listeners",
                                 flags=("--keyfile",), metavar="PATH")
    access_log: str | None = option(None, values.optional_text, "access log file, or - for stdout (default: none)",
                                    flags=("--access-log",), metavar="PATH")
    access_log_format: str = option("combined", values.text,
                                    "combined (default), common, json, or a template of nginx $variables",
                                    flags=("--access-log-format",), metavar="FORMAT")
    access_log_rotate: RotateSettings = RotateSettings()
    error_log: str | None = option(None, values.optional_text, "the proxy's own log (default: stderr)",
                                   flags=("--error-log",), metavar="PATH")
    metrics_bind: str | None = option(
        None, metrics_address,
        "serve Prometheus metrics at /metrics on this address, HOST:PORT or unix:PATH, apart from the listeners; "
        "with several workers the master serves them (docs/metrics.md). Off when not given",
        flags=("--metrics-bind",), metavar="ADDRESS")
    log_level: str = option("info", values.choice(*_LOG_LEVELS), "debug, info (default), warning, error, critical",
                            flags=("--log-level",), metavar="LEVEL")
    client_max_body_size: int = option(
        1 << 20, values.size, "largest request body, e.g. 10m (larger: 413); 0 = no limit (default 1m, nginx's)",
        flags=("--client-max-body-size",), metavar="SIZE")
    client_body_buffer_size: int = option(
        1 << 20, values.size, "request bodies past this size wait in a temporary file (default 1m)",
        flags=("--client-body-buffer-size",), metavar="SIZE")
    # nginx's proxy_buffering: a response the client cannot take yet is read on into memory, then a temporary
    # file up to max_temp_file_size (past it, the upstream waits), so the app worker is free when the app is
    buffering: bool = option(
        True, values.boolean, "on/off: read a response on for a slow client, so the app worker is freed "
                              "(default on; routes may override)",
        flags=("--buffering",), metavar="on|off")
    response_buffer_size: int = option(  # at 64k, 1 MiB responses to fast clients went through the file
        256 << 10, values.size, "memory for a response a client cannot take yet, before the temporary file "
                                "(default 256k)",
        flags=("--response-buffer-size",), metavar="SIZE")
    max_temp_file_size: int = option(
        1 << 30, values.size, "largest temporary file of one response (then the upstream waits); 0 = memory "
                              "only (default 1g)",
        flags=("--max-temp-file-size",), metavar="SIZE")
    # at the cap, the oldest idle connection (keep-alive, or no byte of a request yet) is closed for a new one,
    # as nginx reuses connections; 503 only when none is idle. Also kept below what RLIMIT_NOFILE allows
    max_connections: int = option(
        10000, values.whole(1), "most client connections per process; at the cap the oldest idle one is closed "
                                "(default 10000)",
        flags=("--max-connections",), metavar="N")
    # unix-socket and forwarded_allow_ips peers are not counted
    max_connections_per_ip: int = option(
        512, values.whole(0), "most open connections per client address; 0 = no limit (default 512)",
        flags=("--max-connections-per-ip",), metavar="N")
    # nginx's 4 x 8k buffers
    client_max_header_size: int = option(
        32 << 10, values.size, "most bytes of a request head (more: 431; default 32k)",
        flags=("--client-max-header-size",), metavar="SIZE")
    # serve's name for the same idea; `trusted_proxies` (its old name here) still works, with a deprecation line
    forwarded_allow_ips: tuple[str, ...] = option(
        (), values.ip_networks, "clients whose X-Forwarded-* headers are believed: IPs or networks, "
                                "comma-separated (default: none; formerly --trusted-proxies)",
        flags=("--forwarded-allow-ips",), metavar="IPS", repeatable=True, formerly="trusted_proxies")
    client_header_timeout: float = option(60.0, values.duration,
                                          "time a client gets to send a request head, e.g. 60s (default)",
                                          flags=("--client-header-timeout",), metavar="SECONDS")
    client_body_timeout: float = option(60.0, values.duration,
                                        "longest pause while a client sends a body (default 60s)",
                                        flags=("--client-body-timeout",), metavar="SECONDS")
    send_timeout: float = option(60.0, values.duration,
                                 "longest wait for a client to take more of a response (default 60s)",
                                 flags=("--send-timeout",), metavar="SECONDS")
    keepalive_timeout: float = option(75.0, values.duration,
                                      "how long an idle client connection is kept open (default 75s)",
                                      flags=("--keepalive-timeout",), metavar="SECONDS")
    gzip: GzipSettings = GzipSettings()
    # read from the file only: it chooses the program `wsgistack up` runs; `wsgistack proxy` is always "wsgistack"
    engine: str = "wsgistack"
    config_file: str | None = None  # where it was read from, for reloads

    @property
    def trusted_proxies(self) -> tuple[str, ...]:
        """The old name of forwarded_allow_ips, for code that still reads it."""
        return self.forwarded_allow_ips

    @classmethod
    def options(cls) -> list[dataclasses.Field]:
        """The plain settings of [proxy], declared with `option`: each has a flag and a variable too."""
        return [fld for fld in dataclasses.fields(cls) if "parse" in fld.metadata]
