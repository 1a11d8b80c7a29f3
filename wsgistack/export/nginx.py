"""`wsgistack export nginx`: the `[proxy]` table of a wsgistack.toml as nginx configuration, and what `wsgistack up`
runs when `[proxy] engine = "nginx"`.

Two files, so the same text serves both ways nginx is run:
- `wsgistack.conf`: everything that belongs inside `http { }` (maps, zones, upstreams, server blocks); it can
  be dropped into a distribution's `/etc/nginx/conf.d/` as it is;
- `nginx.conf`: a complete configuration around it (main context, `events`, `http { include wsgistack.conf; }`)
  whose pid file and temporary folders are relative to nginx's prefix, so `nginx -p DIR/ -c DIR/nginx.conf`
  runs it from the folder it was written to without touching /var or /run. `daemon`, `master_process` and
  `user` are left to the command line (`-g`), as Debian's service unit gives them: `wsgistack up` passes
  `daemon off; master_process on;` (and `user root root;` when it runs as root, since the app servers' sockets
  are in a 0700 folder).

Upstreams named after app servers point at the unix sockets `wsgistack up` runs them on (the links a deploy
turns), and each is spoken to in its app server's `--protocol`: `proxy_pass` (http), `uwsgi_pass` with
`uwsgi_params`, or `fastcgi_pass` with `fastcgi_params` and kept-alive connections. Every `[proxy]` setting is
translated where nginx has the directive; where it has none, or only an approximation, the output says so in a
`# not translated: ...` comment at the place it would go, never by leaving it out.

Routing follows wsgistack's: a route's host group before the routes without a host, then the longest prefix,
a prefix without a trailing slash matching at a segment boundary (`/api` takes `/api` and `/api/x`, not
`/apix`): so `/api` becomes `location = /api` and `location /api/`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from wsgistack.config.addresses import Address
from wsgistack.proxy.settings import (
    ListenSettings,
    ProxySettings,
    RouteSettings,
    ServerSettings,
    UpstreamSettings,
    address_text,
)

MAIN_FILE = "nginx.conf"
HTTP_FILE = "wsgistack.conf"
# where distributions keep mime.types, uwsgi_params and fastcgi_params (named absolutely: nginx.conf is run
# from a folder of its own)
NGINX_CONF_DIR = "/etc/nginx"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
STOP_GRACE = "10s"  # wsgistack proxy's graceful stop (proxy/server.py STOP_GRACE): nginx's worker_shutdown_timeout
_ZONE_SIZE = "10m"  # about 160,000 keys of limit_req / limit_conn state per zone
_BUFFER = 8 << 10  # nginx's proxy_buffers item (one page of 8k on most systems)
_MAX_CONNECT_TIMEOUT = 75.0  # nginx refuses a longer proxy_connect_timeout
_LOG_LEVELS = {"debug": "debug", "info": "info", "warning": "warn", "error": "error", "critical": "crit"}
_PLAIN = re.compile(r"[A-Za-z0-9_./:*+=@,-]+")
_PASS = {"http": "proxy", "uwsgi": "uwsgi", "fastcgi": "fastcgi"}  # a protocol's directive prefix


def render(stack: Any) -> dict[str, str]:
    """`nginx.conf` and `wsgistack.conf` for the stack's [proxy] (a `stack.compose.Stack`)."""
    if stack.proxy is None:
        from wsgistack.config.errors import ConfigError

        raise ConfigError(f"{stack.path}: no [proxy] table: nothing for nginx to do")
    protocols = {server.name: server.settings.protocol for server in stack.servers}
    proxy = stack.proxy
    # the sync worker closes a FastCGI connection after each request and FastCGI has no way to say so: nginx
    # would send the next request on a closed connection (a POST then gets a 502). No pool for them, and
    # fastcgi_keep_conn only with a pool (nginx 1.22 pools a connection at END_REQUEST without it)
    closing = {server.name for server in stack.servers
               if server.settings.protocol == "fastcgi" and server.settings.worker_class == "sync"}
    if closing & set(proxy.upstreams):
        upstreams = {name: dataclasses.replace(upstream, keepalive=0) if name in closing else upstream
                     for name, upstream in proxy.upstreams.items()}
        proxy = dataclasses.replace(proxy, upstreams=upstreams)
    return {MAIN_FILE: main_conf(proxy), HTTP_FILE: http_conf(proxy, protocols)}


# -- the main context ---------------------------------------------------------------------------------------

def main_conf(proxy: ProxySettings) -> str:
    """A complete nginx.conf around `include wsgistack.conf;`; paths relative to nginx's prefix (-p)."""
    connections = 2 * proxy.max_connections  # a client connection may hold an upstream one too
    lines = [
        "# Written by `wsgistack export nginx`. Run: nginx -p DIR/ -c DIR/nginx.conf -g 'daemon off; master_process on;'",
        "# (DIR: this file's folder; add 'user USER GROUP;' to -g for workers that must reach the app servers' sockets).",
        f"worker_processes {proxy.workers};",
        "pid nginx.pid;",
        f"error_log {_error_log(proxy)};",
        f"worker_shutdown_timeout {STOP_GRACE};  # wsgistack proxy lets requests in flight finish this long on a stop",
        f"# the open-file limit must allow {connections + 64} (worker_rlimit_nofile raises it, as root)",
        "",
        "events {",
        f"    # max_connections = {proxy.max_connections} per process: a client connection may hold an upstream one",
        f"    worker_connections {connections};",
        "}",
        "",
        "http {",
        f"    include {NGINX_CONF_DIR}/mime.types;",
        "    default_type application/octet-stream;",
        *(f"    {kind}_temp_path {kind}_temp;" for kind in TEMP_PATHS),
        f"    include {HTTP_FILE};",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _error_log(proxy: ProxySettings) -> str:
    return f"{_quote(proxy.error_log) if proxy.error_log else 'stderr'} {_LOG_LEVELS[proxy.log_level]}"


# -- inside http { } ----------------------------------------------------------------------------------------

def http_conf(proxy: ProxySettings, protocols: dict[str, str]) -> str:
    """The http-level part: logs, limits, buffers, maps, zones, upstreams and server blocks."""
    sections = [
        ["# [proxy] of a wsgistack.toml, written by `wsgistack export nginx`: include it inside http { }.",
         f"error_log {_error_log(proxy)};", *_worker_notes(proxy)],
        _log_lines(proxy),
        _client_lines(proxy),
        _buffer_lines(proxy),
        _gzip_lines(proxy),
        _tls_lines(proxy),
        _header_maps(proxy),
        _zone_lines(proxy),
    ]
    for upstream in proxy.upstreams.values():
        sections.append(_upstream_block(upstream, protocols.get(upstream.name, "http")))
    sections += _server_blocks(proxy, protocols)
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"


def _worker_notes(proxy: ProxySettings) -> list[str]:
    lines = []
    if proxy.workers != 1:
        lines.append(f"# workers = {proxy.workers}: worker_processes in nginx.conf; nginx's limit zones are shared "
                     f"by its workers, so limits are counted for all of them at once (wsgistack counts them per process)")
    if proxy.metrics_bind:
        lines.append(f"# not translated: metrics_bind = {proxy.metrics_bind}: nginx has no Prometheus endpoint (its "
                     "stub_status module counts connections only); the app servers' own metrics are unchanged")
    return lines


def _log_lines(proxy: ProxySettings) -> list[str]:
    lines = []
    rotate = proxy.access_log_rotate
    if rotate.size or rotate.interval:
        lines.append(f"# not translated: access_log_rotate (size {_size(rotate.size)}, interval {rotate.interval:g}s, "
                     f"keep {rotate.keep}): rotate with logrotate and `nginx -s reopen` (USR1)")
    if proxy.access_log is None:
        return [*lines, "access_log off;"]
    target = "/dev/stdout" if proxy.access_log == "-" else _quote(proxy.access_log)
    fmt = proxy.access_log_format
    if fmt == "combined":
        return [*lines, f"access_log {target} combined;"]
    if fmt == "common":
        template = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent'
        return [*lines, f"log_format wsgistack_common {_single(template)};", f"access_log {target} wsgistack_common;"]
    if fmt == "json":
        from wsgistack.observe.accesslog import PROXY_JSON_FIELDS

        fields = ",".join(f'"{name}":"${_variable(name)}"' for name in PROXY_JSON_FIELDS)
        return [*lines, f"log_format wsgistack_json escape=json {_single('{' + fields + '}')};",
                f"access_log {target} wsgistack_json;"]
    template = re.sub(r"\$(\{request_id\}|request_id\b)", "$wsgistack_request_id", fmt)
    return [*lines, f"log_format wsgistack {_single(template)};", f"access_log {target} wsgistack;"]


def _variable(name: str) -> str:
    """An access log variable of ours as nginx names it (the request id is the proxy's, not nginx's own)."""
    return "wsgistack_request_id" if name == "request_id" else name


def _client_lines(proxy: ProxySettings) -> list[str]:
    lines = [
        f"client_max_body_size {_size(proxy.client_max_body_size)};",
        f"client_body_buffer_size {_size(proxy.client_body_buffer_size)};",
        f"client_header_timeout {_seconds(proxy.client_header_timeout)};",
        f"client_body_timeout {_seconds(proxy.client_body_timeout)};",
        f"send_timeout {_seconds(proxy.send_timeout)};",
        f"keepalive_timeout {_seconds(proxy.keepalive_timeout)};",
    ]
    header = proxy.client_max_header_size
    if header == 0:
        lines.append("# not translated: client_max_header_size = 0 (no limit): nginx always has one "
                     "(large_client_header_buffers)")
    else:
        count = max(1, header // _BUFFER)
        lines += [(f"# client_max_header_size = {_size(header)}: {count} buffers of 8k (each field below 8k, as "
                  f"wsgistack's 8190 bytes); nginx answers 400 or 414 where wsgistack answers 431"),
                  f"large_client_header_buffers {count} 8k;"]
    return lines


def _buffer_lines(proxy: ProxySettings) -> list[str]:
    # at least 4 buffers: nginx wants its busy buffers (16k by default) below all of them but one
    count = max(4, math.ceil(proxy.response_buffer_size / _BUFFER))
    lines = [(f"# response_buffer_size = {_size(proxy.response_buffer_size)}: {count} buffers of 8k per response "
             f"(nginx counts buffers, wsgistack one memory size)")]
    for prefix in _PASS.values():
        lines += [f"{prefix}_buffering {_on(proxy.buffering)};", f"{prefix}_buffers {count} 8k;",
                  f"{prefix}_max_temp_file_size {_size(proxy.max_temp_file_size)};"]
    return lines


def _gzip_lines(proxy: ProxySettings) -> list[str]:
    gzip = proxy.gzip
    if not gzip.enabled:
        return ["gzip off;"]
    # text/html is always compressed by nginx (listing it is a warning); * compresses any type
    types = [item for item in gzip.types if item != "text/html"] or (["*"] if "*" in gzip.types else [])
    lines = ["gzip on;", f"gzip_comp_level {gzip.level};", f"gzip_min_length {gzip.min_length};",
             "gzip_proxied any;  # wsgistack compresses whatever the client accepts, proxied or not",
             "gzip_vary on;", "gzip_http_version 1.0;"]
    if "text/html" not in gzip.types and "*" not in gzip.types:
        lines.append("# not translated: text/html left out of gzip.types: nginx always compresses text/html")
    if types:
        lines.append(f"gzip_types {' '.join(types)};")
    return lines


def _tls_lines(proxy: ProxySettings) -> list[str]:
    if not any(listen.tls for listen in proxy.listen):
        return []
    return [f"ssl_certificate {_quote(proxy.certfile or '')};", f"ssl_certificate_key {_quote(proxy.keyfile or '')};"]


def _header_maps(proxy: ProxySettings) -> list[str]:
    """The variables behind the X-Forwarded-* and X-Request-ID fields, as wsgistack's proxy sets them: a client in
    forwarded_allow_ips that sent X-Forwarded-For has its fields extended or kept; anyone else's are replaced."""
    trusted = [f"    {network} 1;" for network in proxy.forwarded_allow_ips]
    believed = "    default 0;\n    \"~^1:.\" 1;"
    lines = ["# clients whose X-Forwarded-* are believed (forwarded_allow_ips)",
             "geo $wsgistack_trusted {", "    default 0;", *trusted, "}",
             'map "$wsgistack_trusted:$http_x_forwarded_for" $wsgistack_believed {', believed, "}",
             "map $wsgistack_believed $wsgistack_forwarded_for {",
             "    1 $proxy_add_x_forwarded_for;", "    default $remote_addr;", "}",
             "map $http_host $wsgistack_host {", '    "" $server_addr:$server_port;', "    default $http_host;", "}"]
    for field, fallback in (("proto", "$scheme"), ("host", "$wsgistack_host"), ("port", "$server_port")):
        lines += [f'map "$wsgistack_believed:$http_x_forwarded_{field}" $wsgistack_forwarded_{field} {{',
                  f'    "~^1:(?<wsgistack_incoming_{field}>.+)$" $wsgistack_incoming_{field};',
                  f"    default {fallback};", "}"]
    lines += ["# the client's X-Request-ID when it is a sane token, else nginx's own random one",
              "map $http_x_request_id $wsgistack_request_id {",
              '    "~^[A-Za-z0-9._:-]{1,128}$" $http_x_request_id;', "    default $request_id;", "}"]
    return lines


def _zone_lines(proxy: ProxySettings) -> list[str]:
    lines = []
    if proxy.max_connections_per_ip:
        unix = any(listen.address.kind == "unix" for listen in proxy.listen)
        exempt = [f"    {network} 1;" for network in proxy.forwarded_allow_ips]
        if unix:
            exempt.append("    255.255.255.255 1;  # a unix socket's client")
        lines += ["# max_connections_per_ip: unix-socket clients and forwarded_allow_ips are not counted",
                  "geo $wsgistack_per_ip_exempt {", "    default 0;", *exempt, "}",
                  "map $wsgistack_per_ip_exempt $wsgistack_per_ip {", '    1 "";',
                  "    default $binary_remote_addr;", "}",
                  f"limit_conn_zone $wsgistack_per_ip zone=wsgistack_per_ip:{_ZONE_SIZE};"]
    for route in proxy.routes:
        if route.limit_req is not None:
            lines.append(f"limit_req_zone {_key(route.limit_req.key)} zone={_zone(route, 'req')}:{_ZONE_SIZE} "
                         f"rate={_rate(route.limit_req.rate)};")
        if route.limit_conn is not None:
            lines.append(f"limit_conn_zone {_key(route.limit_conn.key)} zone={_zone(route, 'conn')}:{_ZONE_SIZE};")
    return lines


def _zone(route: RouteSettings, kind: str) -> str:
    return f"wsgistack_{kind}_{route.index}"


def _key(key: str) -> str:
    """A limit's key in nginx: the client address, or a request header (empty: not counted, in both)."""
    if key == "client_ip":
        return "$binary_remote_addr"
    return "$http_" + key.removeprefix("header:").lower().replace("-", "_")


def _rate(per_second: float) -> str:
    if per_second == round(per_second):
        return f"{round(per_second)}r/s"
    return f"{max(1, round(per_second * 60))}r/m"


# -- upstreams ----------------------------------------------------------------------------------------------

def _upstream_block(upstream: UpstreamSettings, protocol: str) -> list[str]:
    hashed = upstream.balance in ("ip_hash", "hash")
    lines = [f"# upstream {upstream.name}: {protocol}" + (" (an app server of the stack)" if protocol != "http" else "")]
    lines.append(f"upstream {_quote(upstream.name)} {{")
    body: list[str] = []
    if upstream.balance == "least_conn":
        body.append("least_conn;")
    elif upstream.balance == "ip_hash":
        body.append("hash $remote_addr consistent;  # ip_hash: the whole address, rendezvous-like (nginx's "
                    "ip_hash keys IPv4 by its first three bytes)")
    elif upstream.balance == "hash":
        variable = "$http_" + (upstream.hash_header or "").lower().replace("-", "_")
        body += [f"hash {variable} consistent;",
                 (f"# not translated: a request without {upstream.hash_header} is balanced round robin in wsgistack; "
                 f"nginx hashes the empty value (one server takes them all)")]
    for server in upstream.servers:
        if server.backup and hashed:
            body.append(f"# not translated: backup server {server.name}: nginx has no backup with hash balancing")
            continue
        body.append(f"server {_server(server, upstream)};")
    if upstream.health_check is not None:
        check = upstream.health_check
        body.append(f"# not translated: health_check (GET {check.path} every {check.interval:g}s, timeout "
                    f"{check.timeout:g}s, fails {check.fails}, passes {check.passes}): active checks are "
                    f"nginx Plus only; the passive max_fails/fail_timeout apply")
    if upstream.connect_retry_timeout > 0:
        body.append(f"# not translated: connect_retry_timeout = {upstream.connect_retry_timeout:g}s: nginx "
                    f"answers 502 at once when every server refuses the connect")
    if upstream.keepalive and protocol == "uwsgi":
        body.append(f"# not translated: keepalive = {upstream.keepalive}: the uwsgi protocol takes one request "
                    f"per connection")
    elif upstream.keepalive:
        body += [f"keepalive {upstream.keepalive};", f"keepalive_timeout {_seconds(upstream.keepalive_timeout)};"]
    lines += [f"    {line}" for line in body]
    lines.append("}")
    return lines


def _server(server: ServerSettings, upstream: UpstreamSettings) -> str:
    words = [_address(server.address)]
    if server.weight != 1:
        words.append(f"weight={server.weight}")
    max_fails = upstream.max_fails if server.max_fails is None else server.max_fails
    fail_timeout = upstream.fail_timeout if server.fail_timeout is None else server.fail_timeout
    words += [f"max_fails={max_fails}", f"fail_timeout={_seconds(fail_timeout)}"]
    if server.backup:
        words.append("backup")
    return " ".join(words)


def _address(address: Address) -> str:
    return f"unix:{address.path}" if address.kind == "unix" else address_text(address)


# -- server blocks and locations ----------------------------------------------------------------------------

def _server_blocks(proxy: ProxySettings, protocols: dict[str, str]) -> list[list[str]]:
    """One server block for the routes without a host (the default server), and one per host name of the
    routes that have one, holding that host's routes and the routes without a host that none of them shadows."""
    listens, notes = _listens(proxy.listen)
    hostless = [route for route in proxy.routes if not route.hosts]
    patterns: dict[str, None] = {}
    for route in proxy.routes:
        for host in route.hosts:
            patterns[host] = None
    blocks = [_server_block(proxy, protocols, [f"{listen} default_server" for listen in listens], notes, "_",
                            hostless)]
    for pattern in patterns:
        if ":" in pattern:
            blocks.append([(f"# not translated: host {pattern!r}: a route's host never matches with a port "
                           f"(wsgistack compares the Host without its port)")])
            continue
        own = [route for route in proxy.routes if any(_covers(host, pattern) for host in route.hosts)]
        shadowed = [route for route in hostless if any(_under(route.path, mine.path) for mine in own)]
        routes = own + [route for route in hostless if route not in shadowed]
        blocks.append(_server_block(proxy, protocols, listens, notes, pattern, routes))
    return blocks


def _listens(listen: Sequence[ListenSettings]) -> tuple[list[str], list[str]]:
    listens, notes = [], []
    for item in listen:
        if item.address.kind == "fd":
            notes.append(f"# not translated: listen {item.address}: a socket passed by descriptor (systemd's "
                         f"socket activation) has no nginx spelling")
            continue
        listens.append(_address(item.address) + (" ssl" if item.tls else ""))
    return listens, notes


def _covers(route_host: str, pattern: str) -> bool:
    """Whether every Host that `pattern` (a server_name) matches is matched by `route_host` too."""
    if route_host == pattern:
        return True
    if not route_host.startswith("*."):
        return False
    suffix = route_host[1:]  # ".example.com"
    return pattern.endswith(suffix) and pattern != suffix[1:]


def _under(path: str, prefix: str) -> bool:
    """wsgistack's prefix rule (proxy/routing.py): a prefix ending in '/' takes what starts with it and itself
    without the slash; one without takes itself and what is below it at a segment boundary."""
    if prefix.endswith("/"):
        return path.startswith(prefix) or path == prefix[:-1]
    return path == prefix or path.startswith(prefix + "/")


def _route_for(routes: Sequence[RouteSettings], path: str) -> RouteSettings | None:
    """The route wsgistack picks for `path` among one server block's routes (host ones first, longest prefix)."""
    matching = [route for route in routes if _under(path, route.path)]
    return min(matching, key=lambda route: (not route.hosts, -len(route.path)), default=None)


def _server_block(proxy: ProxySettings, protocols: dict[str, str], listens: list[str], notes: list[str],
                  name: str, routes: list[RouteSettings]) -> list[str]:
    lines = [*notes, "server {", *(f"    listen {listen};" for listen in listens), f"    server_name {name};"]
    if proxy.max_connections_per_ip:
        lines.append(f"    limit_conn wsgistack_per_ip {proxy.max_connections_per_ip};")
    # every location a route needs, each serving the route wsgistack picks for the paths it takes
    wanted = dict.fromkeys(location for route in routes for location in _locations(route.path))
    wanted["/"] = None
    locations = {location: _route_for(routes, location.removeprefix("= "))
                 for location in sorted(wanted, key=lambda location: location.removeprefix("= "))}
    for location, route in locations.items():
        lines += [f"    {line}" for line in _location(proxy, protocols, location, route)]
    lines.append("}")
    return lines


def _locations(path: str) -> list[str]:
    """nginx's locations for a route's prefix: `/static/` takes `/static` too (and nginx would redirect that one
    to the slash), `/api` takes `/api` and what is under `/api/`."""
    if path == "/":
        return [path]
    if path.endswith("/"):
        return [path, f"= {path[:-1]}"]
    return [f"= {path}", f"{path}/"]


def _location(proxy: ProxySettings, protocols: dict[str, str], location: str,
              route: RouteSettings | None) -> list[str]:
    if route is None:
        return [f"location {location} {{", "    return 404;  # no route takes it", "}"]
    body = [f"# proxy.routes[{route.index}]: {route.path}" + (f" (host {', '.join(route.hosts)})" if route.hosts
                                                                else "")]
    body += _limit_lines(route)
    if route.client_max_body_size is not None:
        body.append(f"client_max_body_size {_size(route.client_max_body_size)};")
    if route.static is not None:
        body += _static_lines(location, route)
    else:
        upstream = proxy.upstreams[route.upstream or ""]
        body += _pass_lines(upstream, protocols.get(upstream.name, "http"), route, proxy)
    return [f"location {location} {{", *(f"    {line}" for line in body), "}"]


def _limit_lines(route: RouteSettings) -> list[str]:
    lines = []
    if route.limit_req is not None:
        limit = route.limit_req
        burst = f" burst={limit.burst}" if limit.burst else ""
        lines += [f"limit_req zone={_zone(route, 'req')}{burst}{' nodelay' if limit.nodelay else ''};",
                  f"limit_req_status {limit.status};",
                  "# not translated: Retry-After on a refused request (nginx sends none)"]
    if route.limit_conn is not None:
        lines += [f"limit_conn {_zone(route, 'conn')} {route.limit_conn.max};",
                  f"limit_conn_status {route.limit_conn.status};"]
    return lines


def _static_lines(location: str, route: RouteSettings) -> list[str]:
    folder = (route.static or "").rstrip("/") + "/"
    lines = [f"alias {_quote(folder)};",
             "# a missing file is 404 here, never passed on to an app (no try_files), as wsgistack's static routes",
             "index index.html;",
             "gzip_static on;  # a .gz sibling goes to clients that accept gzip",
             "max_ranges 1;  # several ranges get the whole file with 200, as wsgistack answers them",
             *_request_id_response(),
             *([] if location.startswith("= ") else  # an exact location holds no other
               ["location ~ /\\. {", "    return 404;  # dotfiles and dot-folders, as wsgistack refuses them", "}"]),
             ("# not translated: wsgistack refuses symlinks that lead outside the folder; nginx follows them "
             "(disable_symlinks on would refuse them all)")]
    if route.cache_control:
        lines.insert(5, f"add_header Cache-Control {_quote(route.cache_control)};")
    return lines


def _request_id_response() -> list[str]:
    return ["add_header X-Request-ID $wsgistack_request_id always;"]


def _pass_lines(upstream: UpstreamSettings, protocol: str, route: RouteSettings, proxy: ProxySettings) -> list[str]:
    prefix = _PASS[protocol]
    buffering = proxy.buffering if route.buffering is None else route.buffering
    connect = min(upstream.connect_timeout, _MAX_CONNECT_TIMEOUT)
    lines = []
    if protocol == "http":
        lines += [f"proxy_pass http://{upstream.name};", "proxy_http_version 1.1;",
                  'proxy_set_header Connection "";  # keep-alive to the upstream',
                  "proxy_redirect off;", *_proxy_headers()]
    elif protocol == "uwsgi":
        lines += [f"uwsgi_pass {upstream.name};", f"include {NGINX_CONF_DIR}/uwsgi_params;", *_param_headers("uwsgi_param")]
    else:
        lines += [f"fastcgi_pass {upstream.name};", f"include {NGINX_CONF_DIR}/fastcgi_params;",
                  *(["fastcgi_keep_conn on;"] if upstream.keepalive else []),
                  'fastcgi_param SCRIPT_NAME "";  # a WSGI app is mounted at the root: PATH_INFO is the path',
                  "fastcgi_param PATH_INFO $uri;", *_param_headers("fastcgi_param")]
    lines += [f"{prefix}_pass_header Server;", f"{prefix}_pass_header Date;",
              f"{prefix}_hide_header X-Request-ID;", *_request_id_response()]
    if connect < upstream.connect_timeout:
        lines.append(f"# connect_timeout = {upstream.connect_timeout:g}s: nginx allows 75s at most")
    lines += [f"{prefix}_connect_timeout {_seconds(connect)};",
              f"{prefix}_read_timeout {_seconds(upstream.read_timeout)};"]
    if route.buffering is not None or buffering != proxy.buffering:
        lines.append(f"{prefix}_buffering {_on(buffering)};")
    return lines


def _proxy_headers() -> list[str]:
    return ["proxy_set_header Host $wsgistack_host;",
            "proxy_set_header X-Forwarded-For $wsgistack_forwarded_for;",
            "proxy_set_header X-Forwarded-Proto $wsgistack_forwarded_proto;",
            "proxy_set_header X-Forwarded-Host $wsgistack_forwarded_host;",
            "proxy_set_header X-Forwarded-Port $wsgistack_forwarded_port;",
            "proxy_set_header X-Request-ID $wsgistack_request_id;",
            'proxy_set_header X-Real-IP "";',
            'proxy_set_header Forwarded "";',
            'proxy_set_header Proxy-Authorization "";']


def _param_headers(directive: str) -> list[str]:
    # an HTTP_ param replaces the client's field of that name (nginx does not pass both), even one never sent
    return [f"{directive} HTTP_X_FORWARDED_FOR $wsgistack_forwarded_for;",
            f"{directive} HTTP_X_FORWARDED_PROTO $wsgistack_forwarded_proto;",
            f"{directive} HTTP_X_FORWARDED_HOST $wsgistack_forwarded_host;",
            f"{directive} HTTP_X_FORWARDED_PORT $wsgistack_forwarded_port;",
            f"{directive} HTTP_X_REQUEST_ID $wsgistack_request_id;",
            f'{directive} HTTP_X_REAL_IP "" if_not_empty;  # never sent, and the client\'s is not passed',
            f'{directive} HTTP_FORWARDED "" if_not_empty;',
            f'{directive} HTTP_PROXY_AUTHORIZATION "" if_not_empty;']


# -- values as nginx writes them ----------------------------------------------------------------------------

def _seconds(value: float) -> str:
    millis = round(value * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _size(value: int) -> str:
    """Bytes as nginx reads them: k and m only (not every size directive takes g)."""
    for suffix, unit in (("m", 1 << 20), ("k", 1 << 10)):
        if value and value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _quote(text: str) -> str:
    """A word of nginx's config: as it is when plain, else double-quoted."""
    if _PLAIN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _single(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def not_translated(items: Iterable[str]) -> list[str]:
    """The `# not translated:` comments of a rendered file, for a reader (and the tests) to list."""
    return [line.strip() for text in items for line in text.splitlines() if "# not translated:" in line]
