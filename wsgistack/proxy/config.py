"""Reads the `[proxy]` table of wsgistack.toml and the `wsgistack proxy` shorthand flags into ProxySettings.

Every error is a ConfigError naming the file, the line and the key (`wsgistack.toml:14: proxy.routes[1].upstream:
no upstream named 'ap'`), checked once here so a reload with a bad file is refused before anything changes.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wsgistack.config import values
from wsgistack.config.addresses import Address, parse_address
from wsgistack.config.errors import ConfigError
from wsgistack.config.loader import check_tables
from wsgistack.proxy.compression import GzipSettings
from wsgistack.proxy.limits import LimitConnSettings, LimitReqSettings
from wsgistack.proxy.settings import (
    BALANCE_METHODS,
    HealthCheckSettings,
    ListenSettings,
    ProxySettings,
    RotateSettings,
    RouteSettings,
    ServerSettings,
    UpstreamSettings,
)

DEFAULT_LISTEN = "127.0.0.1:8080"


def _seconds(raw: Any) -> float:
    return _duration(raw)  # defined below; durations as nginx writes them (10s, 500ms, 2m)


_SIMPLE: dict[str, Callable[[Any], Any]] = {
    "certfile": values.text,
    "keyfile": values.text,
    "access_log": values.optional_text,
    "access_log_format": values.text,
    "error_log": values.optional_text,
    "log_level": values.choice("debug", "info", "warning", "error", "critical"),
    "client_max_body_size": values.size,
    "client_body_buffer_size": values.size,
    "buffering": values.boolean,
    "response_buffer_size": values.size,
    "max_temp_file_size": values.size,
    "max_connections": values.whole(1),
    "max_connections_per_ip": values.whole(0),
    "client_max_header_size": values.size,
    "workers": values.whole(1),
    "client_header_timeout": _seconds,
    "client_body_timeout": _seconds,
    "send_timeout": _seconds,
    "keepalive_timeout": _seconds,
}
_PROXY_KEYS = (*_SIMPLE, "listen", "upstreams", "routes", "trusted_proxies", "gzip", "access_log_rotate")
_UPSTREAM_KEYS = ("servers", "balance", "max_fails", "fail_timeout", "health_check", "keepalive",
                  "keepalive_timeout", "connect_timeout", "read_timeout", "connect_retry_timeout")
_ROUTE_KEYS = ("path", "host", "upstream", "static", "cache_control", "limit_req", "limit_conn",
               "client_max_body_size", "buffering")


class _Where:
    """Finds the line of a key in the file's text, for messages (tomllib keeps no positions)."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines: dict[tuple[str, int, str], int] = {}
        header = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
        assignment = re.compile(r"^\s*[\"']?([A-Za-z0-9_-]+)[\"']?\s*=")
        table, count, seen = "", 0, {}  # type: ignore[var-annotated]
        for number, line in enumerate(text.splitlines(), start=1):
            match = header.match(line)
            if match:
                table = re.sub(r"\s*\.\s*", ".", match.group(2)).replace('"', "")
                count = seen[table] = seen.get(table, -1) + 1 if match.group(1) == "[[" else 0
                self.lines.setdefault((table, count, ""), number)
                continue
            match = assignment.match(line)
            if match:
                self.lines.setdefault((table, count, match.group(1)), number)

    def __call__(self, table: str, key: str = "", index: int = 0) -> str:
        """'file:line: ' for a key of a table (or of the index-th [[table]])."""
        line = self.lines.get((table, index, key)) or self.lines.get((table, index, ""))
        return f"{self.path}:{line}: " if line else f"{self.path}: "


def load_proxy_settings(config_file: str | None, cli: Mapping[str, Any]) -> ProxySettings:
    """Settings from the [proxy] table of `config_file` (if any), then the command line's shorthand."""
    table: dict[str, Any] = {}
    where = _Where("command line", "")
    if config_file is not None:
        path = Path(config_file)
        try:
            text = path.read_text(encoding="utf-8")
            document = tomllib.loads(text)
        except OSError as exc:
            raise ConfigError(f"{config_file}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{config_file}: not UTF-8 text (byte {exc.start})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: not valid TOML: {exc}") from None
        check_tables(config_file, text, document)
        table = document.get("proxy", {})
        where = _Where(config_file, text)
        if not isinstance(table, dict):
            raise ConfigError(f"{where('', 'proxy')}proxy: must be a table ([proxy])")
    chosen = _from_table(table, where)
    _apply_cli(chosen, cli)
    base = Path(config_file).resolve().parent if config_file and not _cli_routes(cli) else Path.cwd()
    chosen["routes"] = tuple(dataclasses.replace(route, static=str(base / route.static))
                             if route.static is not None else route for route in chosen["routes"])
    settings = ProxySettings(config_file=config_file, **chosen)
    _validate(settings, where)
    return settings


def _cli_routes(cli: Mapping[str, Any]) -> bool:
    # --static folders are relative to the current directory; the file's, to the file's folder
    return bool(cli.get("upstream") or cli.get("static"))


def _field(where: _Where, table: str, key: str, index: int = 0) -> Callable[[Callable[[Any], Any], Any], Any]:
    """A parser call that turns ValueError into a ConfigError naming file, line and key."""
    if not table:
        label = key  # a command-line flag
    elif "routes" in table:
        label = f"{table}[{index}].{key}"
    else:
        label = f"{table}.{key}"

    def parse(parser: Callable[[Any], Any], raw: Any) -> Any:
        try:
            return parser(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where(table, key, index)}{label}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where(table, key, index)}{label}: {exc}") from None

    return parse


def _unknown(where: _Where, table: str, keys: Sequence[str], known: Sequence[str], label: str,
             index: int = 0) -> None:
    for key in keys:
        if key not in known:
            guess = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            raise ConfigError(f"{where(table, key, index)}{label}.{key}: unknown setting{hint}")


def _from_table(table: dict[str, Any], where: _Where) -> dict[str, Any]:
    _unknown(where, "proxy", list(table), _PROXY_KEYS, "proxy")
    chosen: dict[str, Any] = {}
    for key, parser in _SIMPLE.items():
        if key in table:
            chosen[key] = _field(where, "proxy", key)(parser, table[key])
    listen = table.get("listen", [DEFAULT_LISTEN])
    chosen["listen"] = _field(where, "proxy", "listen")(_listen_list, listen)
    if "trusted_proxies" in table:
        chosen["trusted_proxies"] = _field(where, "proxy", "trusted_proxies")(_networks, table["trusted_proxies"])
    if "gzip" in table:
        chosen["gzip"] = _field(where, "proxy", "gzip")(GzipSettings.from_value, table["gzip"])
    if "access_log_rotate" in table:
        chosen["access_log_rotate"] = _field(where, "proxy", "access_log_rotate")(_rotate, table["access_log_rotate"])
    upstreams = table.get("upstreams", {})
    if not isinstance(upstreams, dict):
        raise ConfigError(f"{where('proxy', 'upstreams')}proxy.upstreams: must be tables [proxy.upstreams.NAME]")
    chosen["upstreams"] = {name: _upstream(name, raw, where) for name, raw in upstreams.items()}
    routes = table.get("routes", [])
    if not isinstance(routes, list) or not all(isinstance(r, dict) for r in routes):
        raise ConfigError(f"{where('proxy', 'routes')}proxy.routes: must be tables [[proxy.routes]]")
    chosen["routes"] = tuple(_route(index, raw, where) for index, raw in enumerate(routes))
    return chosen


def _upstream(name: str, raw: Any, where: _Where) -> UpstreamSettings:
    table = f"proxy.upstreams.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where(table)}{table}: must be a table")
    _unknown(where, table, list(raw), _UPSTREAM_KEYS, table)
    if "servers" not in raw:
        raise ConfigError(f"{where(table)}{table}.servers: missing (a list like [\"127.0.0.1:9001\"])")
    kwargs: dict[str, Any] = {"name": name}
    parse = _field(where, table, "servers")
    kwargs["servers"] = parse(_servers, raw["servers"])
    if "balance" in raw:
        method, header = _field(where, table, "balance")(_balance, raw["balance"])
        kwargs["balance"], kwargs["hash_header"] = method, header
    for key, parser in (("max_fails", values.whole(0)), ("fail_timeout", _duration),
                        ("keepalive", values.whole(0)), ("keepalive_timeout", _duration),
                        ("connect_timeout", _duration), ("read_timeout", _duration),
                        ("connect_retry_timeout", _duration)):
        if key in raw:
            kwargs[key] = _field(where, table, key)(parser, raw[key])
    if "health_check" in raw:
        kwargs["health_check"] = _field(where, table, "health_check")(_health_check, raw["health_check"])
    return UpstreamSettings(**kwargs)


def _route(index: int, raw: dict[str, Any], where: _Where) -> RouteSettings:
    table = "proxy.routes"
    label = f"proxy.routes[{index}]"
    _unknown(where, table, list(raw), _ROUTE_KEYS, label, index)
    kwargs: dict[str, Any] = {"index": index}
    parse: Callable[[str, Callable[[Any], Any]], Any] = \
        lambda key, parser: _field(where, table, key, index)(parser, raw[key])  # noqa: E731
    if "path" in raw:
        kwargs["path"] = parse("path", _route_path)
    if "host" in raw:
        kwargs["hosts"] = parse("host", _hosts)
    for key in ("upstream", "static", "cache_control"):
        if key in raw:
            kwargs[key] = parse(key, values.text)
    if "limit_req" in raw:
        kwargs["limit_req"] = parse("limit_req", _inline(LimitReqSettings.from_table))
    if "limit_conn" in raw:
        kwargs["limit_conn"] = parse("limit_conn", _inline(LimitConnSettings.from_table))
    if "client_max_body_size" in raw:
        kwargs["client_max_body_size"] = parse("client_max_body_size", values.size)
    if "buffering" in raw:
        kwargs["buffering"] = parse("buffering", values.boolean)
    if (kwargs.get("upstream") is None) == (kwargs.get("static") is None):
        raise ConfigError(f"{where(table, '', index)}{label}: needs exactly one of upstream = \"NAME\" "
                          f"or static = \"DIR\"")
    return RouteSettings(**kwargs)


# -- value parsers (ValueError with a reason; the caller adds where) ------------------------------------

def _listen_list(raw: Any) -> tuple[ListenSettings, ...]:
    return tuple(_listen(text) for text in values.text_list(raw))


def _listen(text: str) -> ListenSettings:
    """'0.0.0.0:8000', '[::1]:8443 ssl', 'unix:/run/proxy.sock'."""
    words = text.split()
    tls = words[1:] == ["ssl"] or words[1:] == ["tls"]
    if len(words) > 1 and not tls:
        raise ValueError(f"{text!r}: only 'ssl' may follow the address")
    return ListenSettings(_address(words[0], allow_fd=True), tls)


def _address(text: str, allow_fd: bool = False) -> Address:
    try:
        address = parse_address(text)
    except ConfigError as exc:
        raise ValueError(str(exc).removeprefix("--bind ")) from None
    if address.kind == "fd" and not allow_fd:
        raise ValueError(f"{text!r}: an upstream is HOST:PORT or unix:PATH")
    return address


def _servers(raw: Any) -> tuple[ServerSettings, ...]:
    servers = tuple(_server(text) for text in values.text_list(raw))
    if all(server.backup for server in servers):
        raise ValueError("every server is a backup: at least one must be a primary")
    return servers


def _server(text: str) -> ServerSettings:
    """'127.0.0.1:9001 weight=2 max_fails=3 fail_timeout=10s', 'unix:/run/app.sock backup'."""
    words = text.split()
    kwargs: dict[str, Any] = {"address": _address(words[0])}
    for word in words[1:]:
        name, _, value = word.partition("=")
        if name == "backup" and not value:
            kwargs["backup"] = True
        elif name == "weight":
            kwargs["weight"] = values.whole(1)(value)
        elif name == "max_fails":
            kwargs["max_fails"] = values.whole(0)(value)
        elif name == "fail_timeout":
            kwargs["fail_timeout"] = _duration(value)
        else:
            raise ValueError(f"{text!r}: unknown server parameter {word!r} "
                             f"(known: weight=N, backup, max_fails=N, fail_timeout=T)")
    return ServerSettings(**kwargs)


def _duration(value: Any) -> float:
    """Seconds as nginx writes them too: 10, 10s, 500ms, 2m, 1h, 1d."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m|h|d)?\s*", value)
        if match:
            scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[match.group(2)]
            return values.seconds(match.group(1)) * scale
    return values.seconds(value)


def _balance(raw: Any) -> tuple[str, str | None]:
    text = values.text(raw).strip()
    if text.startswith("hash:"):
        header = text[5:].strip()
        if header.startswith("$http_"):
            header = header[6:].replace("_", "-")
        if not re.fullmatch(r"[A-Za-z0-9-]+", header):
            raise ValueError(f"{raw!r}: hash needs a header, like hash:$http_x_user or hash:X-User")
        return "hash", header
    if text not in BALANCE_METHODS or text == "hash":
        raise ValueError(f"{raw!r} is not one of: round_robin, least_conn, ip_hash, hash:$header")
    return text, None


def _health_check(raw: Any) -> HealthCheckSettings:
    if not isinstance(raw, dict):
        raise ValueError("must be a table like { path = \"/healthz\", interval = \"2s\" }")
    known = ("path", "interval", "timeout", "fails", "passes")
    for key in raw:
        if key not in known:
            raise ValueError(f"unknown key {key!r} (known: {', '.join(known)})")
    kwargs: dict[str, Any] = {}
    if "path" in raw:
        kwargs["path"] = _route_path(raw["path"])
    for key in ("interval", "timeout"):
        if key in raw:
            kwargs[key] = _duration(raw[key])
            if kwargs[key] <= 0:
                raise ValueError(f"{key}: must be more than 0 seconds")
    for key in ("fails", "passes"):
        if key in raw:
            kwargs[key] = values.whole(1)(raw[key])
    return HealthCheckSettings(**kwargs)


def _rotate(raw: Any) -> RotateSettings:
    if not isinstance(raw, dict):
        raise ValueError("must be a table like { size = \"100m\", interval = \"1d\", keep = 5 }")
    for key in raw:
        if key not in ("size", "interval", "keep"):
            raise ValueError(f"unknown key {key!r} (known: size, interval, keep)")
    return RotateSettings(size=values.size(raw.get("size", 0)), interval=_duration(raw.get("interval", 0)),
                          keep=values.whole(1)(raw.get("keep", 5)))


def _route_path(raw: Any) -> str:
    text = values.text(raw)
    if not text.startswith("/") or any(c in text for c in "?# \t"):
        raise ValueError(f"{raw!r} is not a URL path prefix like /static/")
    return text


def _hosts(raw: Any) -> tuple[str, ...]:
    hosts = tuple(host.lower() for host in values.text_list(raw))
    for host in hosts:
        if not re.fullmatch(r"(\*\.)?[a-z0-9.-]+(:[0-9]+)?", host):
            raise ValueError(f"{host!r} is not a host name like example.com or *.example.com")
    return hosts


def _networks(raw: Any) -> tuple[str, ...]:
    items = values.text_list(raw)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network like 10.0.0.0/8") from None
    return items


def _inline(from_table: Callable[[dict], Any]) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        if not isinstance(raw, dict):
            raise ValueError("must be an inline table { ... }")
        return from_table(raw)
    return parse


# -- the command line's shorthand and the checks across tables ------------------------------------------

def _apply_cli(chosen: dict[str, Any], cli: Mapping[str, Any]) -> None:
    """--listen/--access-log override the file; --upstream/--static replace its upstreams and routes."""
    where = _Where("command line", "")
    if cli.get("listen"):
        chosen["listen"] = tuple(_field(where, "", "--listen")(_listen, text) for text in cli["listen"])
    for key in ("access_log", "access_log_format", "error_log", "log_level", "workers"):
        if cli.get(key) is not None:
            chosen[key] = _field(where, "", f"--{key.replace('_', '-')}")(_SIMPLE[key], cli[key])
    upstream_flags = cli.get("upstream") or []
    static_flags = cli.get("static") or []
    if not upstream_flags and not static_flags:
        return
    routes: list[RouteSettings] = []
    for text in static_flags:
        prefix, sep, folder = text.partition("=")
        if not sep or not folder:
            raise ConfigError(f"--static {text!r}: expected PREFIX=DIR, like /static/=./static")
        routes.append(RouteSettings(path=_field(where, "", "--static")(_route_path, prefix), static=folder,
                                    index=len(routes)))
    chosen["upstreams"] = {}
    if upstream_flags:
        servers = _field(where, "", "--upstream")(_servers, upstream_flags)
        chosen["upstreams"] = {"default": UpstreamSettings(name="default", servers=servers)}
        routes.append(RouteSettings(path="/", upstream="default", index=len(routes)))
    chosen["routes"] = tuple(routes)


def _validate(settings: ProxySettings, where: _Where) -> None:
    if not settings.routes:
        raise ConfigError("nothing to proxy: give --upstream ADDRESS (or --static PREFIX=DIR), or "
                          "[[proxy.routes]] in wsgistack.toml")
    for route in settings.routes:
        label = f"proxy.routes[{route.index}]"
        if route.upstream is not None and route.upstream not in settings.upstreams:
            known = ", ".join(sorted(settings.upstreams)) or "none defined"
            raise ConfigError(f"{where('proxy.routes', 'upstream', route.index)}{label}.upstream: no upstream "
                              f"named {route.upstream!r} (known: {known})")
        if route.static is not None:
            folder = Path(route.static)  # made absolute by load_proxy_settings
            if not folder.is_dir():
                raise ConfigError(f"{where('proxy.routes', 'static', route.index)}{label}.static: "
                                  f"{route.static}: no such directory")
    if any(listen.tls for listen in settings.listen):
        if not settings.certfile or not settings.keyfile:
            raise ConfigError(f"{where('proxy', 'listen')}proxy.listen: an 'ssl' listener needs certfile and "
                              f"keyfile in [proxy]")
        for key in ("certfile", "keyfile"):
            if not Path(getattr(settings, key)).is_file():
                raise ConfigError(f"{where('proxy', key)}proxy.{key}: {getattr(settings, key)}: no such file")
    rotate = settings.access_log_rotate
    if settings.workers > 1 and (rotate.size or rotate.interval):
        raise ConfigError(f"{where('proxy', 'access_log_rotate')}proxy.access_log_rotate: needs workers = 1 "
                          f"(several workers would rotate under each other; use logrotate and SIGUSR1)")
    if settings.access_log_format not in ("combined", "common", "json"):
        from wsgistack.proxy.accesslog import check_format

        try:
            check_format(settings.access_log_format)
        except ConfigError as exc:
            raise ConfigError(f"{where('proxy', 'access_log_format')}proxy.access_log_format: {exc}") from None
