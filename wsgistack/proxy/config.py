"""Reads the `[proxy]` table of wsgistack.toml, the `WSGISTACK_PROXY_*` variables and the `wsgistack proxy` flags
into ProxySettings, and writes ProxySettings back as a `[proxy]` table (`--check-config`).

Precedence, as for `serve`: command line > environment > file > defaults. Every error is a ConfigError naming
its source: the file, the line and the key (`wsgistack.toml:14: proxy.routes[1].upstream: no upstream named
'ap'`), the variable, or the flag; checked once here so a reload with a bad file is refused before anything
changes.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wsgistack.config import values
from wsgistack.config.errors import ConfigError
from wsgistack.config.loader import Renamed, also_set, options_from_cli, options_from_environ, resolve_paths
from wsgistack.config.toml_file import SET_TWICE, Table, TomlFile, read_toml_file, underscored
from wsgistack.proxy.compression import GzipSettings
from wsgistack.proxy.limits import LimitConnSettings, LimitReqSettings
from wsgistack.proxy.settings import (
    BALANCE_METHODS,
    ENGINES,
    HealthCheckSettings,
    ProxySettings,
    RotateSettings,
    RouteSettings,
    ServerSettings,
    UpstreamSettings,
    address,
    address_text,
)

ENV_SECTION = "proxy"  # WSGISTACK_PROXY_<NAME>
log = logging.getLogger("wsgistack.proxy")
# the path settings of [proxy] (besides routes' static folders): relative ones in the file are relative to its folder
PROXY_PATHS = ("certfile", "keyfile", "access_log", "error_log")
# the plain values of [proxy]: from the file, WSGISTACK_PROXY_<NAME> and --<name>, as ProxySettings declares them
_OPTIONS = {fld.name: fld for fld in ProxySettings.options()}
_OLD_NAMES = {fld.metadata["formerly"]: name for name, fld in _OPTIONS.items() if fld.metadata["formerly"]}
_PROXY_KEYS = (*_OPTIONS, "upstreams", "routes", "gzip", "access_log_rotate", "engine", *_OLD_NAMES)
_UPSTREAM_KEYS = ("servers", "balance", "max_fails", "fail_timeout", "health_check", "keepalive",
                  "keepalive_timeout", "connect_timeout", "read_timeout", "connect_retry_timeout")
_ROUTE_KEYS = ("path", "host", "upstream", "static", "cache_control", "limit_req", "limit_conn",
               "client_max_body_size", "buffering")


class _Where:
    """'file:line: ' for a key of the file's tables, for messages; 'command line: ' for the shorthand flags."""

    def __init__(self, toml_file: TomlFile | None = None):
        self.file = toml_file

    def __call__(self, table: Table, key: str = "", index: int = 0) -> str:
        """'file:line: ' for a key of a table (or of the index-th [[table]])."""
        return f"{self.file.where(table, key, index)}: " if self.file is not None else "command line: "


def load_proxy_settings(config_file: str | None, cli: Mapping[str, Any],
                        environ: Mapping[str, str] | None = None) -> ProxySettings:
    """Settings from the [proxy] table of `config_file` (if any), then WSGISTACK_PROXY_* variables (of `environ`,
    by default the process's), then the command line (its flags, and the --upstream/--static shorthand)."""
    environ = os.environ if environ is None else environ
    table: dict[str, Any] = {}
    where = _Where()
    folder = Path.cwd()  # what relative paths are relative to: the file's folder for the file's own
    if config_file is not None:
        toml_file = read_toml_file(config_file)
        table = toml_file.document.get("proxy", {})
        where = _Where(toml_file)
        folder = toml_file.folder
        if not isinstance(table, dict):
            raise ConfigError(f"{where('', 'proxy')}proxy: must be a table ([proxy])")
    renamed: Renamed = []
    stack = _stack_upstreams(cli.get("stack_upstream") or [])
    chosen = _from_table(table, where, renamed, stack)
    chosen.update(resolve_paths(chosen, PROXY_PATHS, folder))
    chosen.update(options_from_environ(_OPTIONS.values(), environ, ENV_SECTION, renamed))
    chosen.update(options_from_cli(_OPTIONS.values(), cli, renamed))
    _apply_shorthand(chosen, cli)
    _add_stack_upstreams(chosen, stack)
    # flags and variables keep their paths as typed: the proxy never changes directory, so they stay relative
    # to where it was started; --static folders are made absolute here, as the file's are
    base = folder if not _cli_routes(cli) else Path.cwd()
    chosen["routes"] = tuple(dataclasses.replace(route, static=str(base / route.static))
                             if route.static is not None else route for route in chosen["routes"])
    settings = ProxySettings(config_file=config_file, **chosen)
    _validate(settings, where)
    for old, new in dict.fromkeys(renamed):  # after the checks: a refused config stays one line
        log.warning("deprecated: %s is now %s (the name [serve] uses); the old name will go", old, new)
    return settings


def _cli_routes(cli: Mapping[str, Any]) -> bool:
    # --static folders are relative to the current directory; the file's, to the file's folder
    return bool(cli.get("upstream") or cli.get("static"))


def _field(where: _Where, table: Table, key: str, index: int = 0) -> Callable[[Callable[[Any], Any], Any], Any]:
    """A parser call that turns ValueError into a ConfigError naming file, line and key."""
    name = ".".join(table) if isinstance(table, tuple) else table
    if not name:
        label = key  # a command-line flag
    elif name == "proxy.routes":
        label = f"{name}[{index}].{key}"
    else:
        label = f"{name}.{key}"

    def parse(parser: Callable[[Any], Any], raw: Any) -> Any:
        try:
            return parser(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where(table, key, index)}{label}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where(table, key, index)}{label}: {exc}") from None

    return parse


def _unknown(where: _Where, table: Table, keys: Sequence[str], known: Sequence[str], label: str,
             index: int = 0) -> None:
    for key in keys:
        if key not in known:
            guess = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            raise ConfigError(f"{where(table, key, index)}{label}.{key}: unknown setting{hint}")


def _keys(raw: dict[str, Any], where: _Where, table: Table, label: str, index: int = 0) -> dict[str, Any]:
    """The table's keys spelled with '_' (dashes accepted, as in [serve]); both spellings of one: an error."""
    return underscored(raw, lambda key: ConfigError(f"{where(table, key, index)}{label}.{key}: {SET_TWICE}"))


def _inline_keys(raw: Any) -> Any:
    """An inline table's keys spelled with '_' (for parsers that add the where themselves)."""
    if not isinstance(raw, dict):
        return raw
    return underscored(raw, lambda key: ValueError(f"{key}: {SET_TWICE}"))


def _from_table(table: dict[str, Any], where: _Where, renamed: Renamed,
                stack: Mapping[str, str] | None = None) -> dict[str, Any]:
    table = _keys(table, where, "proxy", "proxy")
    _unknown(where, "proxy", list(table), _PROXY_KEYS, "proxy")
    chosen: dict[str, Any] = {}
    for key, fld in _OPTIONS.items():
        if key in table:
            chosen[key] = _field(where, "proxy", key)(fld.metadata["parse"], table[key])
    for old, key in _OLD_NAMES.items():
        if old in table:
            if key in table:
                raise ConfigError(f"{where('proxy', old)}proxy.{old}: {also_set(key)}")
            chosen[key] = _field(where, "proxy", old)(_OPTIONS[key].metadata["parse"], table[old])
            renamed.append((f"{where('proxy', old)}proxy.{old}", key))
    if "gzip" in table:
        chosen["gzip"] = _field(where, "proxy", "gzip")(GzipSettings.from_value, _inline_keys(table["gzip"]))
    if "access_log_rotate" in table:
        chosen["access_log_rotate"] = _field(where, "proxy", "access_log_rotate")(_rotate, table["access_log_rotate"])
    if "engine" in table:
        chosen["engine"] = _field(where, "proxy", "engine")(_engine, table["engine"])
    upstreams = table.get("upstreams", {})
    if not isinstance(upstreams, dict):
        raise ConfigError(f"{where('proxy', 'upstreams')}proxy.upstreams: must be tables [proxy.upstreams.NAME]")
    chosen["upstreams"] = {name: _upstream(name, raw, where, (stack or {}).get(name))
                           for name, raw in upstreams.items()}
    routes = table.get("routes", [])
    if not isinstance(routes, list) or not all(isinstance(r, dict) for r in routes):
        raise ConfigError(f"{where('proxy', 'routes')}proxy.routes: must be tables [[proxy.routes]]")
    chosen["routes"] = tuple(_route(index, raw, where) for index, raw in enumerate(routes))
    return chosen


def _upstream(name: str, raw: Any, where: _Where, stack_address: str | None = None) -> UpstreamSettings:
    label = f"proxy.upstreams.{name}"
    table = ("proxy", "upstreams", name)  # parts, so a name with a dot still finds its line
    if not isinstance(raw, dict):
        raise ConfigError(f"{where(table)}{label}: must be a table")
    raw = _keys(raw, where, table, label)
    _unknown(where, table, list(raw), _UPSTREAM_KEYS, label)
    if stack_address is not None:
        # an app server of `wsgistack up`: its private socket, whatever the file says for the proxy alone
        raw["servers"] = [stack_address]
    if "servers" not in raw:
        raise ConfigError(f"{where(table)}{label}.servers: missing (a list like [\"127.0.0.1:9001\"])")
    kwargs: dict[str, Any] = {"name": name}
    parse = _field(where, table, "servers")
    kwargs["servers"] = parse(_servers, raw["servers"])
    if "balance" in raw:
        method, header = _field(where, table, "balance")(_balance, raw["balance"])
        kwargs["balance"], kwargs["hash_header"] = method, header
    for key, parser in (("max_fails", values.whole(0)), ("fail_timeout", values.duration),
                        ("keepalive", values.whole(0)), ("keepalive_timeout", values.duration),
                        ("connect_timeout", values.duration), ("read_timeout", values.duration),
                        ("connect_retry_timeout", values.duration)):
        if key in raw:
            kwargs[key] = _field(where, table, key)(parser, raw[key])
    if "health_check" in raw:
        kwargs["health_check"] = _field(where, table, "health_check")(_health_check, raw["health_check"])
    return UpstreamSettings(**kwargs)


def _route(index: int, raw: dict[str, Any], where: _Where) -> RouteSettings:
    table = "proxy.routes"
    label = f"proxy.routes[{index}]"
    raw = _keys(raw, where, table, label, index)
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

def _servers(raw: Any) -> tuple[ServerSettings, ...]:
    servers = tuple(_server(text) for text in values.text_list(raw))
    if all(server.backup for server in servers):
        raise ValueError("every server is a backup: at least one must be a primary")
    return servers


def _server(text: str) -> ServerSettings:
    """'127.0.0.1:9001 weight=2 max_fails=3 fail_timeout=10s', 'unix:/run/app.sock backup'."""
    words = text.split()
    kwargs: dict[str, Any] = {"address": address(words[0])}
    for word in words[1:]:
        name, _, value = word.partition("=")
        if name == "backup" and not value:
            kwargs["backup"] = True
        elif name == "weight":
            kwargs["weight"] = values.whole(1)(value)
        elif name == "max_fails":
            kwargs["max_fails"] = values.whole(0)(value)
        elif name == "fail_timeout":
            kwargs["fail_timeout"] = values.duration(value)
        else:
            raise ValueError(f"{text!r}: unknown server parameter {word!r} "
                             f"(known: weight=N, backup, max_fails=N, fail_timeout=T)")
    return ServerSettings(**kwargs)


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
    raw = _inline_keys(raw)
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
            kwargs[key] = values.duration(raw[key])
            if kwargs[key] <= 0:
                raise ValueError(f"{key}: must be more than 0 seconds")
    for key in ("fails", "passes"):
        if key in raw:
            kwargs[key] = values.whole(1)(raw[key])
    return HealthCheckSettings(**kwargs)


def _rotate(raw: Any) -> RotateSettings:
    raw = _inline_keys(raw)
    if not isinstance(raw, dict):
        raise ValueError("must be a table like { size = \"100m\", interval = \"1d\", keep = 5 }")
    for key in raw:
        if key not in ("size", "interval", "keep"):
            raise ValueError(f"unknown key {key!r} (known: size, interval, keep)")
    return RotateSettings(size=values.size(raw.get("size", 0)), interval=values.duration(raw.get("interval", 0)),
                          keep=values.whole(1)(raw.get("keep", 5)))


def _engine(raw: Any) -> str:
    if not isinstance(raw, str) or raw not in ENGINES:
        raise ValueError(f"{raw!r} is not an engine: \"wsgistack\" (the default: wsgistack's own proxy) or "
                         f"\"nginx\" (`wsgistack up` runs nginx with the config of `wsgistack export nginx`)")
    return raw


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


def _inline(from_table: Callable[[dict], Any]) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        if not isinstance(raw, dict):
            raise ValueError("must be an inline table { ... }")
        return from_table(_inline_keys(raw))
    return parse


# -- the command line's shorthand and the checks across tables ------------------------------------------

def _apply_shorthand(chosen: dict[str, Any], cli: Mapping[str, Any]) -> None:
    """--upstream/--static replace the file's upstreams and routes."""
    where = _Where()
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


def _stack_upstreams(flags: Sequence[str]) -> dict[str, str]:
    """`wsgistack up`'s app servers, NAME=ADDRESS each (its private unix sockets)."""
    stack: dict[str, str] = {}
    for text in flags:
        name, sep, address = text.partition("=")
        if not sep or not name or not address:
            raise ConfigError(f"--stack-upstream {text!r}: expected NAME=ADDRESS")
        stack[name] = address
    return stack


def _add_stack_upstreams(chosen: dict[str, Any], stack: Mapping[str, str]) -> None:
    """Under `wsgistack up`, each app server is an upstream of its own name (unless the file declares it), and
    with no route to any upstream in the file, "/" goes to the first app server."""
    for name, address in stack.items():
        if name not in chosen["upstreams"]:
            chosen["upstreams"][name] = UpstreamSettings(name=name, servers=_servers([address]))
    if stack and not any(route.upstream is not None for route in chosen["routes"]):
        chosen["routes"] = (*chosen["routes"], RouteSettings(path="/", upstream=next(iter(stack)),
                                                             index=len(chosen["routes"])))


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
    if settings.metrics_bind is not None:
        metrics_address = address(settings.metrics_bind)
        if any(listen.address == metrics_address for listen in settings.listen) and metrics_address.port != 0:
            raise ConfigError(f"{where('proxy', 'metrics_bind')}proxy.metrics_bind: {settings.metrics_bind} is a "
                              f"listen address of the proxy: give the metrics an address of their own")
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


# -- the effective settings as a [proxy] table (`wsgistack proxy --check-config`) ------------------------------

def proxy_settings_as_toml(settings: ProxySettings) -> str:
    """The settings as a [proxy] table, upstreams and routes included, that reads back to the same settings."""
    lines = ["[proxy]"]
    for fld in dataclasses.fields(settings):
        value = getattr(settings, fld.name)
        if fld.name in ("upstreams", "routes", "config_file"):
            continue
        if fld.name == "listen":
            value = [address_text(item.address) + (" ssl" if item.tls else "") for item in value]
        elif isinstance(value, (GzipSettings, RotateSettings)):
            value = dataclasses.asdict(value)
        if value is None or value == ():
            lines.append(f"# {fld.name} is not set")
        else:
            lines.append(f"{fld.name} = {values.toml_value(value)}")
    for name, upstream in settings.upstreams.items():
        lines += ["", f"[proxy.upstreams.{values.toml_key(name)}]", *_upstream_lines(upstream)]
    for route in settings.routes:
        lines += ["", "[[proxy.routes]]", *_route_lines(route)]
    return "\n".join(lines) + "\n"


def _upstream_lines(upstream: UpstreamSettings) -> list[str]:
    table: dict[str, Any] = {"servers": [_server_text(server) for server in upstream.servers],
                             "balance": f"hash:{upstream.hash_header}" if upstream.balance == "hash"
                             else upstream.balance}
    for fld in dataclasses.fields(upstream):
        if fld.name not in ("name", "servers", "balance", "hash_header", "health_check"):
            table[fld.name] = getattr(upstream, fld.name)
    if upstream.health_check is not None:
        table["health_check"] = dataclasses.asdict(upstream.health_check)
    return [f"{key} = {values.toml_value(value)}" for key, value in table.items()]


def _server_text(server: ServerSettings) -> str:
    words = [address_text(server.address)]
    if server.weight != 1:
        words.append(f"weight={server.weight}")
    if server.max_fails is not None:
        words.append(f"max_fails={server.max_fails}")
    if server.fail_timeout is not None:
        words.append(f"fail_timeout={server.fail_timeout!r}s")
    if server.backup:
        words.append("backup")
    return " ".join(words)


def _route_lines(route: RouteSettings) -> list[str]:
    table: dict[str, Any] = {"path": route.path, "host": list(route.hosts) or None, "upstream": route.upstream,
                             "static": route.static, "cache_control": route.cache_control}
    if route.limit_req is not None:
        limit = dataclasses.asdict(route.limit_req)
        # the rate as nginx writes it: whole requests a second, else a minute ("1r/m" is 1/60 a second)
        per_second = limit["rate"]
        limit["rate"] = f"{round(per_second)}r/s" if per_second == round(per_second) else \
            f"{round(per_second * 60)}r/m"
        table["limit_req"] = limit
    if route.limit_conn is not None:
        table["limit_conn"] = dataclasses.asdict(route.limit_conn)
    table["client_max_body_size"] = route.client_max_body_size
    table["buffering"] = route.buffering
    return [f"{key} = {values.toml_value(value)}" for key, value in table.items() if value is not None]
