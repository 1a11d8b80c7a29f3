"""The `wsgistack` command: each sub-command parses its arguments and hands typed settings to a runner."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from wsgistack import __version__
from wsgistack.config.errors import ConfigError
from wsgistack.config.loader import (
    add_option_arguments,
    add_serve_arguments,
    load_serve_settings,
    serve_table_names,
)
from wsgistack.config.settings import ServeSettings
from wsgistack.config.toml_file import find_config_file, read_toml_file

if TYPE_CHECKING:
    from wsgistack.supervisor.settings import ProgramSettings


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = _Parser(prog="wsgistack", description="Run a WSGI app (Flask, Django, ...) in production.")
    parser.add_argument("--version", action="version", version=f"wsgistack {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve = commands.add_parser(
        "serve", help="run the pre-fork WSGI server",
        description="Serve a WSGI app with a master process and N workers. Options can also be set as "
                    "WSGISTACK_<OPTION> environment variables or in the [serve] table of wsgistack.toml; "
                    "the command line wins over the environment, which wins over the file.",
    )
    parser._subcommands = {"serve": serve}  # type: ignore[attr-defined]
    add_serve_arguments(serve)
    serve.add_argument("-c", "--config", dest="config", default=argparse.SUPPRESS, metavar="FILE",
                       help="Read the [serve] table of this TOML file (default: $WSGISTACK_CONFIG, then "
                            "./wsgistack.toml if present).")
    serve.add_argument("--serve-table", dest="serve_table", default=argparse.SUPPRESS, metavar="NAME",
                       help="Read the [serve.NAME] table of the file (one of several app servers of "
                            "`wsgistack up`), over the plain keys of [serve].")
    serve.add_argument("--check-config", action="store_true", default=False,
                       help="Print the effective settings as TOML and exit.")
    supervise = commands.add_parser(
        "supervise", help="run programs and keep them running (supervisord's job)",
        description="Run the programs of a supervisord.conf (read unchanged) or of the [programs.NAME] tables "
                    "of a wsgistack.toml, restart them when they crash, capture their logs, and serve a "
                    "control socket for `wsgistack ctl`. Stops everything on SIGTERM or SIGINT.")
    supervise.add_argument("-c", "--config", metavar="FILE", default=None,
                           help="supervisord.conf or wsgistack.toml (default: $WSGISTACK_CONFIG, then "
                                "./wsgistack.toml, then ./supervisord.conf)")
    supervise.add_argument("--daemon", action="store_const", const=True, default=None,
                           help="detach into the background whatever the file says (default: as its nodaemon "
                                "says; supervisord.conf detaches unless nodaemon=true, wsgistack.toml does not)")
    supervise.add_argument("-n", "--nodaemon", dest="daemon", action="store_const", const=False,
                           help="stay in the foreground whatever the file says (supervisord's -n)")
    ctl = commands.add_parser(
        "ctl", help="control a running supervisor",
        description="Commands: status [NAME...], start|stop|restart NAME|GROUP:*|all, signal SIG NAME, "
                    "pid [NAME], tail [-f] [-n N] NAME [stdout|stderr], reread, update, avail, reload, "
                    "shutdown. Exit codes: 0 done, "
                    "1 refused, 2 usage, 3 (status) some process is not running, 4 supervisor unreachable.")
    ctl.add_argument("-c", "--config", metavar="FILE", default=None, help="the supervisor's config file")
    ctl.add_argument("-s", "--socket", metavar="PATH", default=None, help="the control socket")
    ctl.add_argument("-u", "--username", default=None, help="the control socket's username (default: from the "
                     "config file's [supervisorctl], then [unix_http_server] or [inet_http_server])")
    ctl.add_argument("-p", "--password", default=None, help="the control socket's password (default: as -u)")
    ctl.add_argument("--json", action="store_true", help="print the answer as JSON")
    ctl.add_argument("-f", "--follow", action="store_true", help="tail: keep printing new output")
    ctl.add_argument("-n", "--lines", type=int, default=0, metavar="N", help="tail: the last N lines")
    ctl.add_argument("action", choices=["status", "start", "stop", "restart", "signal", "pid", "tail", "reread",
                                        "update", "avail", "reload", "shutdown"], metavar="COMMAND")
    ctl.add_argument("names", nargs="*", metavar="ARG")
    parser._subcommands.update({"supervise": supervise, "ctl": ctl})  # type: ignore[attr-defined]
    config = commands.add_parser(
        "config", help="print a sample config, check one, or convert a gunicorn config",
        description="sample: print a commented supervisord.conf (--format ini) or wsgistack.toml (--format "
                    "toml) that loads as printed. check FILE: read FILE as `wsgistack serve` and `wsgistack "
                    "supervise` would (a .toml file as wsgistack.toml, any other as supervisord.conf) and "
                    "report the first error, exit code 2, or how many programs and processes it defines. "
                    "convert FILE: print the settings of a gunicorn config file as a [serve] table for "
                    "wsgistack.toml (a setting wsgistack lacks is refused by name).")
    actions = config.add_subparsers(dest="config_action", metavar="ACTION", required=True,
                                    parser_class=_Parser)
    sample = actions.add_parser("sample", help="print a commented sample config")
    sample.add_argument("--format", choices=["ini", "toml"], default="ini",
                        help="supervisord.conf (ini, the default) or wsgistack.toml (toml)")
    check = actions.add_parser("check", help="load a config file and report its first error")
    check.add_argument("file", metavar="FILE", help="a supervisord.conf, or a wsgistack.toml")
    convert = actions.add_parser("convert", help="print a gunicorn config file's settings as a [serve] table")
    convert.add_argument("file", metavar="FILE", help="a gunicorn config file (Python, e.g. gunicorn.conf.py)")
    parser._subcommands["config"] = config  # type: ignore[attr-defined]
    _add_proxy_parser(commands, parser)
    _add_stack_parsers(commands, parser)
    _add_top_parser(commands, parser)
    return parser


WATCH_SECONDS = 3.0  # a deploy's watch: the "first seconds"; the old generation serves on meanwhile


def _add_stack_parsers(commands: Any, parser: argparse.ArgumentParser) -> None:
    up = commands.add_parser(
        "up", help="run the whole stack of a wsgistack.toml: app servers, proxy, programs",
        description="Start the app servers of [serve] (or [serve.NAME]), then the [proxy] in front of them (over "
                    "private unix sockets), then the [programs.NAME], under one supervisor that restarts what "
                    "crashes; `wsgistack ctl` (or supervisorctl) controls every part, `wsgistack deploy` "
                    "replaces an app server with no request lost. Ctrl-C or SIGTERM stops everything in "
                    "reverse order.")
    up.add_argument("-c", "--config", metavar="FILE", default=None,
                    help="the stack's wsgistack.toml (default: $WSGISTACK_CONFIG, then ./wsgistack.toml)")
    up.add_argument("--daemon", action="store_true", help="detach into the background")
    deploy = commands.add_parser(
        "deploy", help="replace an app server of `wsgistack up` with a new generation, health-gated",
        description="Start a new generation of an app server beside the serving one; once it imports, passes "
                    "its health check and a smoke request answers below 500, the proxy is switched to it, it "
                    "is watched, and the old generation drains and stops. If anything fails, the new "
                    "generation is stopped, the old one keeps serving, and the exit code is 1 with the reason.")
    deploy.add_argument("name", nargs="?", metavar="APP", help="the app server ([serve.NAME]; default: the first)")
    deploy.add_argument("-c", "--config", metavar="FILE", default=None,
                        help="the stack's wsgistack.toml (default: $WSGISTACK_CONFIG, then ./wsgistack.toml)")
    deploy.add_argument("-s", "--socket", metavar="PATH", default=None, help="the supervisor's control socket")
    deploy.add_argument("--python", metavar="PATH", help="the interpreter of the new generation (another "
                                                          "virtualenv's python, with wsgistack installed)")
    deploy.add_argument("--chdir", metavar="DIR", help="the folder the new generation imports the app from "
                                                      "(a release folder)")
    deploy.add_argument("--rollback", action="store_true", help="run the previous generation's settings again")
    deploy.add_argument("--smoke-path", metavar="PATH", default="/", help="what the smoke request asks (default /)")
    deploy.add_argument("--watch", type=float, default=WATCH_SECONDS, metavar="SECONDS",
                        help=f"how long the new generation is probed after the switch, its first seconds of "
                             f"traffic (default {WATCH_SECONDS:g})")
    deploy.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long the new generation may take to become ready (default 60)")
    parser._subcommands.update({"up": up, "deploy": deploy})  # type: ignore[attr-defined]
    cgi = commands.add_parser(
        "cgi", help="answer one request as a CGI/1.1 script (for a CGI host such as Apache's mod_cgi)",
        description="Run the app for the one request of this process: the request from the CGI meta-variables "
                    "in the environment and the body from stdin (CONTENT_LENGTH bytes), the response on stdout "
                    "with a Status: field, held whole so a failure gives a clean 500; errors go to stderr. "
                    "A script of two lines serves an app: #!/bin/sh, then exec wsgistack cgi myproject:app.")
    cgi.add_argument("app", metavar="APP", help="the WSGI app, as for `wsgistack serve`")
    parser._subcommands["cgi"] = cgi  # type: ignore[attr-defined]
    export = commands.add_parser(
        "export", help="write the stack of a wsgistack.toml as another engine's config",
        description="Write the same wsgistack.toml for the engines a team already runs: nginx (the [proxy] as a "
                    "server block), supervisord (a supervisord.conf), systemd (units, socket activation), k8s "
                    "(Kubernetes manifests), compose (a Compose file), apache (a mod_wsgi vhost and .wsgi file). "
                    "To the folder of -o, or to stdout.")
    export.add_argument("kind", choices=["nginx", "supervisord", "systemd", "k8s", "compose", "apache"],
                        metavar="KIND", help="nginx, supervisord, systemd, k8s, compose or apache")
    export.add_argument("-c", "--config", metavar="FILE", default=None,
                        help="the stack's wsgistack.toml (default: $WSGISTACK_CONFIG, then ./wsgistack.toml)")
    export.add_argument("-o", "--output", metavar="DIR", default=None,
                        help="write the files into this folder (default: print them to stdout)")
    parser._subcommands["export"] = export  # type: ignore[attr-defined]


def _export(args: dict[str, Any]) -> int:
    from wsgistack.export import render, write
    from wsgistack.stack.compose import load_stack

    path = find_config_file(args.get("config"), os.environ)
    if path is None:
        raise ConfigError("no config: wsgistack export KIND -c wsgistack.toml (or ./wsgistack.toml here)")
    files = render(args["kind"], load_stack(str(path)), args["output"])
    if args["output"]:
        for written in write(files, args["output"]):
            print(written)
        return 0
    for index, (name, text) in enumerate(files.items()):
        if len(files) > 1:  # several files: each under a comment naming it (every format here has # comments)
            sys.stdout.write(("\n" if index else "") + f"# ---- {name}\n")
        sys.stdout.write(text)
    return 0


def _cgi(args: dict[str, Any]) -> int:
    from wsgistack.observe.errorlog import setup_error_log
    from wsgistack.server.cgi import error_response, run_cgi
    from wsgistack.wsgi.loader import AppLoadError, load_app

    setup_error_log("-", "info")  # stderr: the CGI host's error log
    os.environ.pop("HTTP_PROXY", None)  # httpoxy: a client's `Proxy:` header must not become the app's proxy
    try:
        app = load_app(args["app"])
    except AppLoadError as exc:
        sys.stderr.write(f"wsgistack cgi: error: {exc}\n")
        sys.stdout.buffer.write(error_response(500, "Internal server error"))
        return 1
    return run_cgi(app, os.environ, sys.stdin.buffer, sys.stdout.buffer, sys.stderr)


def _up(args: dict[str, Any]) -> int:
    from wsgistack.stack.up import run_up

    path = find_config_file(args.get("config"), os.environ)
    if path is None:
        raise ConfigError("no config: wsgistack up -c wsgistack.toml (or ./wsgistack.toml here)")
    return run_up(str(path), daemon=args["daemon"])


def _deploy(args: dict[str, Any]) -> int:
    from wsgistack.supervisor.ctl import run_ctl

    words = [args["name"]] if args["name"] else []
    if args["rollback"]:
        words.append("rollback=yes")
    for key in ("python", "chdir"):
        if args[key]:
            value = args[key]
            if key == "chdir" or os.sep in value:
                value = os.path.abspath(value)
            if key == "chdir" and not os.path.isdir(value):
                raise ConfigError(f"--chdir {args[key]}: no such folder")
            if key == "python" and os.sep in value and not os.access(value, os.X_OK):
                raise ConfigError(f"--python {args[key]}: no such program")
            words.append(f"{key}={value}")
    words += [f"smoke_path={args['smoke_path']}", f"watch={args['watch']}", f"timeout={args['timeout']}"]
    # the supervisor answers once the deploy is done: its ready timeout, the watch, the old generation's stop
    return run_ctl(args["config"], args["socket"], "deploy", words, as_json=False,
                   timeout=args["timeout"] + args["watch"] + 120, prog="deploy")


def _add_top_parser(commands: Any, parser: argparse.ArgumentParser) -> None:
    top = commands.add_parser(
        "top", help="watch a stack's metrics live: apps, workers, upstreams, programs",
        description="A live view of a metrics endpoint, refreshed every --interval: requests per second, "
                    "latency p50/p95/p99, 5xx and active requests per app, then the workers, the proxy's "
                    "upstream servers and the supervisor's programs. The endpoint is --url, else [metrics] listen "
                    "of the stack's wsgistack.toml. q quits. An endpoint that does not answer is shown as one "
                    "line and asked again at the next refresh. Without a terminal (stdin or stdout not a tty, as "
                    "in a script or a pipe) it prints one summary and exits: 0, or 1 with one line on stderr if "
                    "the endpoint did not answer; rates need two scrapes, so that summary shows none, and its "
                    "latencies cover everything since each process started.")
    top.add_argument("-c", "--config", metavar="FILE", default=None,
                     help="the stack's wsgistack.toml, for its [metrics] listen (default: $WSGISTACK_CONFIG, then "
                          "./wsgistack.toml)")
    top.add_argument("--url", metavar="ADDR", default=None,
                     help="the metrics endpoint itself: HOST:PORT, http://HOST:PORT or unix:PATH (what "
                          "--metrics-bind or [metrics] listen was given); wins over the file")
    top.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                     help="seconds between two scrapes (default 1)")
    parser._subcommands["top"] = top  # type: ignore[attr-defined]


def _top(args: dict[str, Any]) -> int:
    from wsgistack.observe.summary import MetricsError, metrics_address
    from wsgistack.observe.top import metrics_listen, run_top

    if not 0 < args["interval"] <= 3600:  # nan and inf too
        raise ConfigError(f"--interval {args['interval']:g}: must be more than 0 and at most 3600 seconds")
    if args["url"]:
        address = metrics_address(args["url"])
    else:
        path = find_config_file(args["config"], os.environ)
        if path is None:
            raise ConfigError("no metrics address: wsgistack top --url ADDR, or -c wsgistack.toml with "
                              "[metrics] listen (or ./wsgistack.toml here)")
        address = metrics_listen(path)
    try:
        return run_top(address, args["interval"])
    except MetricsError as exc:
        sys.stderr.write(f"wsgistack top: error: {exc}\n")
        return 1


def _add_proxy_parser(commands: Any, parser: argparse.ArgumentParser) -> None:
    from wsgistack.proxy.settings import ProxySettings

    proxy = commands.add_parser(
        "proxy", help="run the reverse proxy and load balancer (nginx's job)",
        description="Balance requests over upstream app servers, limit request rates, buffer slow clients, "
                    "serve static files and write access logs. Reads the [proxy] table of wsgistack.toml; "
                    "each of its plain settings can also be given as --NAME or as a WSGISTACK_PROXY_<NAME> "
                    "variable (the command line wins over the environment, which wins over the file); "
                    "--upstream and --static replace its upstreams and routes for the simple case. "
                    "Signals: HUP reloads the config, USR1 reopens the logs, TERM/INT/QUIT stop gracefully.")
    proxy.add_argument("-c", "--config", metavar="FILE", default=None,
                       help="wsgistack.toml to read (default: $WSGISTACK_CONFIG, then ./wsgistack.toml if present)")
    add_option_arguments(proxy, ProxySettings.options())
    proxy.add_argument("--upstream", action="append", metavar="ADDRESS",
                       help="an app server, HOST:PORT or unix:PATH, optionally with ' weight=N' or ' backup'; "
                            "repeat to balance over several (round robin)")
    proxy.add_argument("--static", action="append", metavar="PREFIX=DIR",
                       help="serve files under DIR for paths starting with PREFIX, e.g. /static/=./static")
    # how `wsgistack up` tells its proxy where the app servers listen: NAME=unix:PATH, an upstream each
    proxy.add_argument("--stack-upstream", action="append", metavar="NAME=ADDRESS",
                       help="an app server of the stack: an upstream named NAME at ADDRESS, unless [proxy] "
                            "declares one of that name; with no route to an upstream in the file, / goes to "
                            "the first (what `wsgistack up` and the exported supervisord, systemd, Kubernetes "
                            "and Compose files pass)")
    proxy.add_argument("--check-config", action="store_true",
                       help="Print the effective settings as a [proxy] table of TOML and exit.")
    parser._subcommands["proxy"] = proxy  # type: ignore[attr-defined]


def _proxy(args: dict[str, Any]) -> int:
    from wsgistack.proxy.config import load_proxy_settings, proxy_settings_as_toml

    found = find_config_file(args.get("config"), os.environ)
    path = None if found is None else str(found)
    settings = load_proxy_settings(path, args)
    if args.get("check_config"):
        routes = len(settings.routes)
        sys.stdout.write(proxy_settings_as_toml(settings))
        # a TOML comment, so the output stays a config file `wsgistack proxy -c` reads back
        sys.stdout.write(f"# {path or 'command line'}: ok ({routes} route{'' if routes == 1 else 's'}, "
                         f"{len(settings.upstreams)} upstream{'' if len(settings.upstreams) == 1 else 's'})\n")
        return 0
    from wsgistack.proxy.master import run_proxy

    return run_proxy(settings, args)


def _supervise(args: dict[str, Any]) -> int:
    from wsgistack.supervisor.daemon import supervise
    from wsgistack.supervisor.load import load_config

    path = find_config_file(args.get("config"), os.environ, defaults=("wsgistack.toml", "supervisord.conf"))
    if path is None:
        raise ConfigError("no config: wsgistack supervise -c supervisord.conf (or ./wsgistack.toml)")
    return supervise(load_config(str(path)), daemon=args.get("daemon"))


def _ctl(args: dict[str, Any]) -> int:
    from wsgistack.supervisor.ctl import run_ctl

    return run_ctl(args["config"], args["socket"], args["action"], args["names"], args["json"],
                   follow=args["follow"], lines=args["lines"], username=args["username"], password=args["password"])


def _config(args: dict[str, Any]) -> int:
    if args["config_action"] == "sample":
        from wsgistack.supervisor.sample import sample

        sys.stdout.write(sample(args["format"]))
        return 0
    if args["config_action"] == "convert":
        return _convert_gunicorn(args["file"])
    processes = _check_config(args["file"])
    programs = {process.program for process in processes}
    count = f"{len(programs)} program{'' if len(programs) == 1 else 's'}, " \
            f"{len(processes)} process{'' if len(processes) == 1 else 'es'}"
    sys.stdout.write(f"{args['file']}: ok ({count})\n")
    return 0


def _convert_gunicorn(path: str) -> int:
    """Print the [serve] table a gunicorn config file amounts to: only the settings it sets."""
    from wsgistack.config.gunicorn import read_gunicorn_config

    file = Path(path)
    if file.suffix != ".py":
        raise ConfigError(f"config convert {path}: expected a gunicorn config file (Python, *.py)")
    find_config_file(path, {})  # refuses a missing file as every command does
    named = read_gunicorn_config(file)
    settings = load_serve_settings({"config": str(file), **({} if "app" in named else {"app": "-"})}, environ={})
    lines = settings_as_toml(settings).splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if line.split(" = ")[0] in named]
    sys.stdout.write("\n".join(kept) + "\n")
    return 0


def _check_config(path: str) -> tuple[ProgramSettings, ...]:
    """Load `path` as `serve` and `supervise` would: its processes, or a ConfigError."""
    find_config_file(path, {})  # refuses a missing file as every command does
    if not path.endswith(".toml"):
        from wsgistack.supervisor.ini import load_ini

        return load_ini(path).programs
    from wsgistack.supervisor.toml_config import load_toml

    document = read_toml_file(path).document
    servers: list[str] = []
    if "serve" in document:
        # the file alone is checked: no WSGISTACK_* variables, and the app may be left to the command line;
        # each [serve.NAME] of a stack over the plain keys of [serve]
        table = document["serve"]
        names = serve_table_names(table) if isinstance(table, dict) else []
        for name in names or [None]:
            cli: dict[str, Any] = {"config": path}
            if name is not None:
                cli["serve_table"] = name
            if isinstance(table, dict) and not {"app", "apps"} & (set(table) | set(table.get(name) or ())):
                cli["app"] = "-"
            load_serve_settings(cli, environ={}, cwd=Path.cwd())
            servers.append(name or "app")
    if "proxy" in document:
        from wsgistack.proxy.config import load_proxy_settings

        # under `wsgistack up`, each app server is an upstream of its name
        load_proxy_settings(path, {"stack_upstream": [f"{name}=unix:/{name}.sock" for name in servers]},
                            environ={})
    if "supervisor" in document or "programs" in document:
        return load_toml(path).programs
    return ()


def settings_as_toml(settings: ServeSettings) -> str:
    """The effective settings as a [serve] table that could be pasted into wsgistack.toml."""
    lines = ["[serve]"]
    for fld in ServeSettings.options():
        value: Any = getattr(settings, fld.name)
        if value is None:
            lines.append(f"# {fld.name} is not set")
        elif isinstance(value, bool):
            lines.append(f"{fld.name} = {'true' if value else 'false'}")
        elif fld.name == "umask":
            lines.append(f'{fld.name} = "{value:03o}"')
        elif isinstance(value, tuple):
            lines.append(f"{fld.name} = {json.dumps(list(value), ensure_ascii=False)}")
        else:
            lines.append(f"{fld.name} = {json.dumps(value, ensure_ascii=False)}")  # JSON strings, numbers: valid TOML
    return "\n".join(lines) + "\n"


def _serve(args: dict[str, Any]) -> int:
    check = args.pop("check_config", False)
    started_in = Path.cwd()
    settings = load_serve_settings(args)
    if check:
        sys.stdout.write(settings_as_toml(settings))
        return 0
    from wsgistack.server.arbiter import serve  # not needed for --help or --check-config

    if settings.chdir:
        os.chdir(settings.chdir)  # before the app is imported: it is found in that folder (validated to exist)
    # a reload (HUP) reads the files named on the command line from where the server was started
    return serve(settings, reload_settings=lambda: load_serve_settings(args, cwd=started_in))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `wsgistack` console script."""
    parser = build_parser()
    namespace, extra = parser.parse_known_args(argv)
    args = vars(namespace)
    if extra and args.get("command") == "ctl" and not any(item.startswith("-") for item in extra):
        # `ctl tail -f NAME`: argparse ends the ARG list at the flag; the names after it are still ARGs
        args["names"] = args.get("names", []) + extra
        extra = []
    if extra:
        # reported by the sub-command's parser, so the message names `wsgistack serve`
        parser_of = getattr(parser, "_subcommands", {}).get(args.get("command"), parser)
        parser_of.error(f"unrecognized arguments: {' '.join(extra)}")
    command = args.pop("command", None)
    if command is None:
        parser.print_help()
        return 2
    try:
        if command == "serve":
            return _serve(args)
        if command == "supervise":
            return _supervise(args)
        if command == "ctl":
            return _ctl(args)
        if command == "config":
            return _config(args)
        if command == "proxy":
            return _proxy(args)
        if command == "cgi":
            return _cgi(args)
        if command == "export":
            return _export(args)
        if command == "up":
            return _up(args)
        if command == "deploy":
            return _deploy(args)
        if command == "top":
            return _top(args)
    except ConfigError as exc:
        sys.stderr.write(f"wsgistack {command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {command!r}")
