"""`wsgistack export apache`: the stack as an Apache virtual host for mod_wsgi's daemon mode.

Files: `SITE.conf` (SITE: the name of the folder of wsgistack.toml), for sites-available, and one `NAME.wsgi`
per app server, which loads the app as `wsgistack serve` does (wsgistack.wsgi.loader, so "pkg:create_app()",
file paths and mounts mean the same). The vhost reads the .wsgi files from the folder of `-o` (the toml's folder
when the files go to stdout).

Each app server becomes a WSGIDaemonProcess: [serve]'s workers and threads are its processes and threads,
max_requests its maximum-requests, graceful_timeout its graceful-timeout, timeout its request-timeout and
socket-timeout, chdir (else the toml's folder) its home and python-path, so relative app paths and bare
module names are found where serve finds them. The [proxy] becomes the virtual host itself: its first TCP
listen addresses, its routes (static ones as Alias, longest prefix first; the others as one WSGIScriptAlias
per route, to the daemon of the route's app server), its body limit, keep-alive and logs. A route under a
prefix gives the app the whole path, as the proxy does (the .wsgi moves SCRIPT_NAME back into PATH_INFO).
Any other setting that differs from its default is written as a `# not translated:` line.

Python: python-home is sys.prefix of the interpreter that exports (its virtualenv). mod_wsgi runs the
libpython it was built with, over that home's standard library and site-packages, so they must share
major.minor (mod_wsgi's own rule). Checked here on 2026-11-30: Debian 12's libapache2-mod-wsgi-py3 (4.9.4,
libpython 3.11.2) with python-home on a venv of pyenv's 3.11.7 starts, imports Flask, httptools and
wsgistack, and answers as `wsgistack serve` does (tests/export/test_export_apache.py). So the vhost is
written for the distribution's mod_wsgi; where the minors differ, `pip install mod_wsgi` in the venv
(needs apache2-dev and a shared libpython) and load the module `mod_wsgi-express module-config` names.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from wsgistack.config.addresses import Address, parse_address
from wsgistack.config.settings import ServeSettings
from wsgistack.proxy.settings import ProxySettings, RouteSettings, address_text
from wsgistack.stack.compose import AppServer, Stack

INDENT = "    "

# settings written as directives below, or with no meaning once Apache stands in front (the stack makes the
# proxy's upstreams and the app servers' binds; mod_wsgi calls the app in its own process, so the protocol an app
# server speaks and which engine proxies for it go with them); any other that differs from its default is noted
_SERVE_DONE = {"app", "apps", "workers", "threads", "worker_class", "timeout", "graceful_timeout", "max_requests",
               "chdir", "user", "group", "umask", "proc_name", "preload", "bind", "health_path", "protocol",
               "protocol_allow_from"}
_SERVE_DONE_ALONE = {"keep_alive", "max_body_size"}  # translated when the app server faces clients itself
_PROXY_DONE = {"listen", "upstreams", "routes", "config_file", "client_max_body_size", "keepalive_timeout",
               "access_log", "error_log", "log_level", "gzip", "certfile", "keyfile", "engine"}
_LOG_LEVELS = {"warning": "warn", "critical": "crit"}  # Apache's names; debug, info and error are the same
_HINTS = {  # where a setting's job goes under Apache, when it has a usual place
    "access_log_rotate": "rotatelogs in CustomLog",
    "access_log_format": "LogFormat",
    "max_requests_jitter": "mod_wsgi has no jitter",
    "forwarded_allow_ips": "mod_remoteip",
    "workers": "Apache's MPM settings",
}


@dataclass
class _Host:
    """One <VirtualHost>: its addresses, what it maps, its own directives and notes."""

    addresses: list[str]
    statics: list[RouteSettings] = field(default_factory=list)
    aliases: list[tuple[str, AppServer]] = field(default_factory=list)  # (prefix, app server)
    directives: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def render(stack: Stack, folder: str | None = None) -> dict[str, str]:
    """`SITE.conf` and one `NAME.wsgi` per app server, by name; the vhost names the .wsgi files in `folder`
    (where they are written), else in the toml's folder."""
    entries = os.path.abspath(folder) if folder else os.path.dirname(stack.path)
    site = site_name(stack)
    hosts = _proxy_host(stack) if stack.proxy is not None else [_server_host(server) for server in stack.servers]
    prefixed = {server.name for host in hosts for prefix, server in host.aliases if prefix != "/"}
    files = {f"{site}.conf": _vhost_file(stack, site, hosts, entries)}
    for server in stack.servers:
        files[f"{server.name}.wsgi"] = _entry_file(stack, site, server, server.name in prefixed)
    return files


def site_name(stack: Stack) -> str:
    """The name of the vhost file and the prefix of its daemon process groups: the toml's folder's name."""
    name = os.path.basename(os.path.dirname(stack.path))
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "wsgistack"


def group_name(site: str, server: AppServer) -> str:
    """The daemon process group of one app server (names are global in Apache: the site comes first)."""
    return f"{site}-{server.name}"


def app_folder(stack: Stack, server: AppServer) -> str:
    """Where the app server would run: its chdir, else the toml's folder."""
    return server.settings.chdir or os.path.dirname(stack.path)


# --- the virtual hosts ----------------------------------------------------------------------------------


def _proxy_host(stack: Stack) -> list[_Host]:
    proxy = stack.proxy
    assert proxy is not None
    notes: list[str] = []
    addresses = []
    for listen in proxy.listen:
        if listen.tls:
            notes.append(f"[proxy] listen {address_text(listen.address)} ssl (a <VirtualHost> of its own with mod_ssl's SSLEngine on, "
                         f"SSLCertificateFile {proxy.certfile}, SSLCertificateKeyFile {proxy.keyfile})")
        elif listen.address.kind != "tcp":
            notes.append(f"[proxy] listen {address_text(listen.address)} (Apache listens on TCP only)")
        else:
            addresses.append(_vhost_address(listen.address))
    if proxy.gzip.enabled:  # on by default in the proxy, so noted even when the file does not say it
        notes.append("[proxy.gzip] (mod_deflate: AddOutputFilterByType DEFLATE with its types)")
    host = _Host(addresses or ["*:80"], directives=_proxy_directives(proxy), notes=notes)
    servers = {server.name: server for server in stack.servers}
    # mod_alias and mod_wsgi take the first alias that matches, where the proxy takes the longest prefix
    for route in sorted(proxy.routes, key=lambda route: -len(route.path)):
        _add_route(host, route, servers)
    host.notes += _changed("proxy", proxy, ProxySettings(), _PROXY_DONE)
    return [host]


def _add_route(host: _Host, route: RouteSettings, servers: dict[str, AppServer]) -> None:
    where = f"[[proxy.routes]] {route.index + 1} (path {route.path!r})"
    if route.hosts:
        host.notes.append(f"{where}: host {', '.join(route.hosts)} (a <VirtualHost> with that ServerName)")
        return
    if route.static is not None:
        host.statics.append(route)
    elif route.upstream in servers:
        host.aliases.append((route.path.rstrip("/") or "/", servers[route.upstream]))
    else:
        host.notes.append(f"{where}: upstream {route.upstream!r} is no app server of the stack (mod_proxy's ProxyPass)")
        return
    if route.client_max_body_size is not None:
        host.directives.append(f'<Location "{route.path}">\n{INDENT}LimitRequestBody '
                               f"{route.client_max_body_size}\n</Location>")
    for name in ("cache_control", "limit_req", "limit_conn", "buffering"):
        if getattr(route, name) is not None:
            host.notes.append(f"{where}: {name}")


def _proxy_directives(proxy: ProxySettings) -> list[str]:
    lines = [f"LimitRequestBody {proxy.client_max_body_size}"]
    lines += _keep_alive(proxy.keepalive_timeout)
    if proxy.access_log and proxy.access_log != "-":
        lines.append(f'CustomLog "{proxy.access_log}" combined')
    if proxy.error_log and proxy.error_log != "-":
        lines.append(f'ErrorLog "{proxy.error_log}"')
    if proxy.log_level != "info":
        lines.append(f"LogLevel {_LOG_LEVELS.get(proxy.log_level, proxy.log_level)}")
    return lines


def _server_host(server: AppServer) -> _Host:
    """Without a [proxy], each app server faces clients itself: a virtual host on its own bind addresses."""
    settings = server.settings
    addresses, notes = [], []
    for bind in settings.bind:
        address = parse_address(bind)
        if address.kind == "tcp":
            addresses.append(_vhost_address(address))
        else:
            notes.append(f"[serve] bind {bind} (Apache listens on TCP only)")
    directives = [f"LimitRequestBody {settings.max_body_size}"] if settings.max_body_size else []
    directives += _keep_alive(settings.keep_alive)
    return _Host(addresses or ["*:80"], aliases=[("/", server)], directives=directives, notes=notes)


def _vhost_address(address: Address) -> str:
    host = {"": "*", "0.0.0.0": "*", "::": "*"}.get(address.host, address.host)
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


def _keep_alive(seconds: float) -> list[str]:
    return ["KeepAlive Off"] if seconds <= 0 else [f"KeepAliveTimeout {_seconds(seconds)}"]


# --- the files ------------------------------------------------------------------------------------------


def _vhost_file(stack: Stack, site: str, hosts: list[_Host], folder: str) -> str:
    listens = " ".join(address for host in hosts for address in host.addresses)
    out = [f"# Apache virtual host of {stack.path}, written by `wsgistack export apache`.",
           ("# Needs mod_wsgi built for this Python "
            f"({sys.version_info.major}.{sys.version_info.minor}; Debian: libapache2-mod-wsgi-py3), mod_alias "
            "and mod_authz_core,"),
           f"# Apache listening on {listens} (ports.conf), and the .wsgi files in {folder}.",
           "# Daemon mode only: `WSGIRestrictEmbedded On` in the server config keeps Python out of Apache's workers.",
           ""]
    for server in stack.servers:
        out += _daemon_lines(stack, site, server)
        out.append("")
    for name in (program.name for program in stack.supervisor.programs):
        out.append(f"# not translated: [programs.{name}] (Apache runs no other programs: systemd or supervisord)")
    if stack.supervisor.programs:
        out.append("")
    for host in hosts:
        out += _host_lines(site, host, folder)
    return "\n".join(out).rstrip("\n") + "\n"


def _daemon_lines(stack: Stack, site: str, server: AppServer) -> list[str]:
    settings = server.settings
    folder = app_folder(stack, server)
    # mod_wsgi's threads are fixed: "auto" becomes its own default of 15
    threads = 1 if settings.worker_class == "sync" else settings.threads or 15
    options = [f"processes={settings.workers}", f"threads={threads}",
               f"display-name={settings.proc_name or '%{GROUP}'}",
               _quote(f"python-home={sys.prefix}"), _quote(f"python-path={folder}"), _quote(f"home={folder}")]
    if settings.user:
        options.append(f"user={settings.user}")
    if settings.group:
        options.append(f"group={settings.group}")
    if settings.umask is not None:
        options.append(f"umask={settings.umask:04o}")
    if settings.max_requests:
        options.append(f"maximum-requests={settings.max_requests}")
    options.append(f"graceful-timeout={_seconds(settings.graceful_timeout)}")
    if settings.timeout:
        options += [f"request-timeout={_seconds(settings.timeout)}", f"socket-timeout={_seconds(settings.timeout)}"]
    table = f"serve.{server.table}" if server.table else "serve"
    lines = [f"# app server {server.name!r} ([{table}])",
             f"WSGIDaemonProcess {group_name(site, server)} " + f" \\\n{INDENT}".join(options)]
    if settings.worker_class in ("gevent", "tornado"):
        lines.append(f"# not translated: [{table}] worker_class = {settings.worker_class!r} (mod_wsgi runs "
                     f"{threads} threads per process)")
    if settings.health_path:
        lines.append(f"# not translated: [{table}] health_path = {settings.health_path!r} (serve answers it "
                     "itself; here the app is asked)")
    done = _SERVE_DONE if stack.proxy is not None else _SERVE_DONE | _SERVE_DONE_ALONE
    lines += [f"# not translated: {note}" for note in _changed(table, settings, ServeSettings(), done)]
    return lines


def _host_lines(site: str, host: _Host, folder: str) -> list[str]:
    out = [f"<VirtualHost {' '.join(host.addresses)}>"]
    first = host.aliases[-1][1] if host.aliases else None  # the shortest prefix: "/" when there is one
    body: list[str] = []
    if first is not None:
        body += [f"WSGIProcessGroup {group_name(site, first)}", "WSGIApplicationGroup %{GLOBAL}"]
    body += host.directives
    for route in host.statics:
        body += _static_lines(route)
    entries: list[str] = []
    for prefix, server in host.aliases:
        # process-group and application-group on the alias: the daemon loads the app when it starts, as serve does
        entry = f"{server.name}.wsgi"
        body.append(f"WSGIScriptAlias {prefix} {_quote(os.path.join(folder, entry))} "
                    f"process-group={group_name(site, server)} application-group=%{{GLOBAL}}")
        if entry not in entries:
            entries.append(entry)
    if entries:  # only the entry files of that folder are granted, not the project beside them
        body.append(f"<Directory {_quote(folder)}>")
        for entry in entries:
            body += [f'{INDENT}<Files "{entry}">', f"{INDENT * 2}Require all granted", f"{INDENT}</Files>"]
        body.append("</Directory>")
    body += [f"# not translated: {note}" for note in host.notes]
    for directive in body:
        out += [INDENT + line for line in directive.splitlines()]
    out += ["</VirtualHost>", ""]
    return out


def _static_lines(route: RouteSettings) -> list[str]:
    assert route.static is not None
    folder = route.static.rstrip("/")
    target = folder + "/" if route.path.endswith("/") else folder
    return [f"Alias {route.path} {_quote(target)}", f"<Directory {_quote(folder)}>", f"{INDENT}Require all granted",
            "</Directory>"]


def _entry_file(stack: Stack, site: str, server: AppServer, prefixed: bool) -> str:
    settings = server.settings
    table = f"serve.{server.table}" if server.table else "serve"
    name = "app" if prefixed else "application"  # mod_wsgi calls `application`
    if settings.apps:
        load = f"from wsgistack.wsgi.mounts import load_mounts\n\n{name} = load_mounts({list(settings.apps)!r})\n"
    else:
        load = f"from wsgistack.wsgi.loader import load_app\n\n{name} = load_app({settings.app!r})\n"
    text = (f'"""The WSGI entry of app server {server.name!r} ([{table}] of {stack.path}) under Apache\'s '
            f"mod_wsgi\n(WSGIScriptAlias in {site}.conf), written by `wsgistack export apache`.\n\n"
            "The app is loaded as `wsgistack serve` loads it; relative paths start in the daemon's home,\n"
            f'{app_folder(stack, server)}.\n"""\n\n{load}')
    if not prefixed:
        return text
    return text + (
        "\n\ndef application(environ, start_response):\n"
        '    """The app sees the whole path, as behind wsgistack\'s proxy: the alias\'s prefix goes back into '
        'PATH_INFO."""\n'
        '    environ["PATH_INFO"] = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")\n'
        '    environ["SCRIPT_NAME"] = ""\n'
        "    return app(environ, start_response)\n")


# --- values ---------------------------------------------------------------------------------------------


def _changed(table: str, settings: Any, defaults: Any, done: set[str]) -> list[str]:
    """What to note as not translated: each setting not in `done` that differs from its default."""
    lines = []
    for fld in dataclasses.fields(settings):
        value = getattr(settings, fld.name)
        if fld.name in done or value == getattr(defaults, fld.name):
            continue
        shown = f"[{table}.{fld.name}]" if dataclasses.is_dataclass(value) else f"[{table}] {fld.name} = {value!r}"
        hint = f" ({_HINTS[fld.name]})" if fld.name in _HINTS else ""
        lines.append(f"{shown}{hint}")
    return lines


def _seconds(value: float) -> str:
    """Apache and mod_wsgi take whole seconds; a fraction is rounded up, never to 0."""
    return str(max(1, int(-(-value // 1))))


def _quote(path: str) -> str:
    """A path (or an option=path) as one argument of a directive, quoted only when it has to be."""
    return f'"{path}"' if re.search(r'[\s"]', path) else path
