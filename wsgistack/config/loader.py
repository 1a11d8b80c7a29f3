"""Merges defaults, the TOML file, the environment and the command line into one validated settings object.

Precedence is command line > environment > file > defaults. Every error names the option and its source
(the flag, the variable, or the file and line) so the CLI can print it as one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import grp
import importlib.util
import os
import pwd
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from wsgistack.config.addresses import parse_address
from wsgistack.config.errors import ConfigError
from wsgistack.config.gunicorn import read_gunicorn_config
from wsgistack.config.settings import WORKER_EXTRAS, ServeSettings

ENV_PREFIX = "WSGISTACK_"
DEFAULT_CONFIG_FILE = "wsgistack.toml"


def env_name(field_name: str, section: str = "") -> str:
    """The environment variable of a setting: WSGISTACK_MAX_REQUESTS for max_requests of [serve],
    WSGISTACK_PROXY_WORKERS for workers of [proxy] (section "proxy")."""
    return ENV_PREFIX + (f"{section.upper()}_" if section else "") + field_name.upper()


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare every ServeSettings option on an argparse parser; unset options stay absent from the result."""
    parser.add_argument("app", nargs="?", default=argparse.SUPPRESS, metavar="APP",
                        help=ServeSettings.__dataclass_fields__["app"].metadata["help"])
    add_option_arguments(parser, ServeSettings.options())


def add_option_arguments(parser: argparse.ArgumentParser, options: Iterable[dataclasses.Field]) -> None:
    """One argparse argument per declared option that has flags; unset options stay absent from the result."""
    for fld in options:
        meta = fld.metadata
        if not meta["flags"]:
            continue
        kwargs: dict[str, Any] = {"dest": fld.name, "default": argparse.SUPPRESS, "help": meta["help"]}
        if meta["switch"]:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = meta["metavar"]
            if meta["repeatable"]:
                kwargs["action"] = "append"
        parser.add_argument(*meta["flags"], **kwargs)


def find_config_file(cli: Mapping[str, Any], environ: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file to read: --config, then $WSGISTACK_CONFIG, then ./wsgistack.toml if it exists."""
    named = cli.get("config") or environ.get(ENV_PREFIX + "CONFIG")
    if named:
        path = Path(named)
        path = path if path.is_absolute() else cwd / path
        if not path.is_file():
            raise ConfigError(f"config file {named}: no such file")
        return path
    default = cwd / DEFAULT_CONFIG_FILE
    return default if default.is_file() else None


def read_toml_table(path: Path, table: str) -> tuple[dict[str, Any], str]:
    """The named table of a TOML file, and the file's text (to point at lines in errors)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    check_tables(path, text, document)
    section = document.get(table, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: '{table}' must be a table ([{table}])")
    return section, text


# the tables of wsgistack.toml; anything else at the top is a typo that would otherwise be ignored
TABLES = ("serve", "proxy", "supervisor", "programs")


def check_tables(path: Path | str, text: str, document: Mapping[str, Any]) -> None:
    """Refuse a top-level table or key of wsgistack.toml that no part of wsgistack reads."""
    for name in document:
        if name not in TABLES:
            line = _line_of_table(text, name)
            guess = difflib.get_close_matches(name, TABLES, n=1)
            hint = f"; did you mean [{guess[0]}]?" if guess else ""
            raise ConfigError(f"{path}{f':{line}' if line else ''}: [{name}]: unknown table (known: [serve], "
                              f"[proxy], [supervisor], [programs.NAME]){hint}")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the nearest known name, or ''."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _line_of_table(text: str, name: str) -> int | None:
    """The line of `[name]`, `[name.x]`, `[[name]]` or a top-level `name = ...`."""
    pattern = re.compile(rf"^[ \t]*(\[\[?[ \t]*[\"']?{re.escape(name)}[\"']?[ \t]*[.\]]|[\"']?{re.escape(name)}[\"']?[ \t]*=)")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def _line_of(text: str, table: str, key: str) -> int | None:
    """The line of `key = ...` inside `[table]` (TOML errors carry no positions for valid documents)."""
    header = re.compile(rf"^[ \t]*\[[ \t]*{re.escape(table)}[ \t]*\][ \t]*(#.*)?$")
    assignment = re.compile(rf"^[ \t]*[\"']?{re.escape(key)}[\"']?[ \t]*=")
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(r"^[ \t]*\[", line):
            inside = bool(header.match(line))
        elif inside and assignment.match(line):
            return number
    return None


def parse_option(fld: dataclasses.Field, raw: Any, where: str) -> Any:
    """The value of a declared option from its raw text or TOML value; a ConfigError names `where`."""
    try:
        if fld.metadata["repeatable"] and isinstance(raw, list) and raw and all(isinstance(r, str) for r in raw):
            # repeated flags and TOML arrays may each hold comma-separated items
            raw = [item for entry in raw for item in entry.split(",")]
        return fld.metadata["parse"](raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_serve_settings(
    cli: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ServeSettings:
    """Build ServeSettings from parsed command-line values (only those given), the environment and the file."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    fields = {fld.name: fld for fld in ServeSettings.options()}
    chosen: dict[str, Any] = {}

    path = find_config_file(cli, environ, cwd)
    if path is not None and path.suffix == ".py":
        for name, raw in read_gunicorn_config(path).items():
            chosen[name] = parse_option(fields[name], raw, f"{path}: gunicorn setting for {name}")
    elif path is not None:
        table, text = read_toml_table(path, "serve")
        for key, raw in table.items():
            name = key.replace("-", "_")
            line = _line_of(text, "serve", key)
            where = f"{path}:{line}: serve.{key}" if line else f"{path}: serve.{key}"
            if name not in fields:
                raise ConfigError(f"{where}: unknown setting{did_you_mean(name, fields)}")
            if name in chosen:
                raise ConfigError(f"{where}: set twice (as dashes and as underscores)")
            chosen[name] = parse_option(fields[name], raw, where)

    chosen.update(options_from_environ(fields.values(), environ))

    if "workers" not in chosen and environ.get("WEB_CONCURRENCY"):
        # gunicorn's convention, kept so platform buildpacks that set it keep working
        chosen["workers"] = parse_option(fields["workers"], environ["WEB_CONCURRENCY"], "WEB_CONCURRENCY")

    chosen.update(options_from_cli(fields.values(), cli))

    settings = ServeSettings(**chosen)
    if settings.chdir is not None and not os.path.isabs(settings.chdir):
        settings = settings.replace(chdir=str(cwd / settings.chdir))  # a reload reads it from the new folder
    validate(settings)
    return settings


def options_from_environ(options: Iterable[dataclasses.Field], environ: Mapping[str, str],
                         section: str = "") -> dict[str, Any]:
    """The options set by WSGISTACK_[SECTION_]NAME variables (an empty variable counts as unset)."""
    chosen: dict[str, Any] = {}
    for fld in options:
        var = env_name(fld.name, section)
        if environ.get(var, "") != "":
            chosen[fld.name] = parse_option(fld, environ[var], var)
    return chosen


def options_from_cli(options: Iterable[dataclasses.Field], cli: Mapping[str, Any]) -> dict[str, Any]:
    """The options given on the command line (argparse leaves the others out); errors name the flag."""
    fields = {fld.name: fld for fld in options}
    chosen: dict[str, Any] = {}
    for name, raw in cli.items():  # in the order typed, so the first bad flag is the one reported
        if name in fields:
            flag = fields[name].metadata["flags"][-1] if fields[name].metadata["flags"] else name.upper()
            chosen[name] = parse_option(fields[name], raw, flag)
    return chosen


def validate(settings: ServeSettings) -> None:
    """Checks that involve more than one setting."""
    if not settings.app:
        raise ConfigError("no app given: wsgistack serve MODULE:NAME (or 'app' in the [serve] table)")
    for text in settings.bind:
        parse_address(text)
    if settings.chdir is not None and not os.path.isdir(settings.chdir):
        raise ConfigError(f"--chdir {settings.chdir}: no such folder")
    package = WORKER_EXTRAS.get(settings.worker_class)
    if package is not None and importlib.util.find_spec(package) is None:
        raise ConfigError(f"--worker-class {settings.worker_class}: needs {package}; "
                          f"pip install 'wsgistack[{package}]'")
    if settings.user is not None or settings.group is not None:
        if os.geteuid() != 0:
            raise ConfigError("--user/--group: only root can switch user or group")
        try:
            if settings.user is not None and not settings.user.isdigit():
                pwd.getpwnam(settings.user)
        except KeyError:
            raise ConfigError(f"--user: no user named {settings.user!r}") from None
        try:
            if settings.group is not None and not settings.group.isdigit():
                grp.getgrnam(settings.group)
        except KeyError:
            raise ConfigError(f"--group: no group named {settings.group!r}") from None
