"""The `wsgistack` command: each sub-command parses its arguments and hands typed settings to a runner."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from wsgistack import __version__
from wsgistack.config.errors import ConfigError
from wsgistack.config.loader import add_serve_arguments, load_serve_settings
from wsgistack.config.settings import ServeSettings


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
                       help="Read the [serve] table of this TOML file (default: ./wsgistack.toml if present).")
    serve.add_argument("--check-config", action="store_true", default=False,
                       help="Print the effective settings as TOML and exit.")
    return parser


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
    settings = load_serve_settings(args)
    if check:
        sys.stdout.write(settings_as_toml(settings))
        return 0
    from wsgistack.server.arbiter import serve  # not needed for --help or --check-config

    return serve(settings, reload_settings=lambda: load_serve_settings(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `wsgistack` console script."""
    parser = build_parser()
    namespace, extra = parser.parse_known_args(argv)
    args = vars(namespace)
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
    except ConfigError as exc:
        sys.stderr.write(f"wsgistack {command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {command!r}")
