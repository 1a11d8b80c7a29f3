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
import ipaddress
import os
import pwd
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from wsgistack.config.addresses import parse_address
from wsgistack.config.errors import ConfigError
from wsgistack.config.gunicorn import read_gunicorn_config
from wsgistack.config.settings import WORKER_EXTRAS, ServeSettings
from wsgistack.config.toml_file import SET_TWICE, TomlFile, find_config_file, read_toml_file, underscored

ENV_PREFIX = "WSGISTACK_"


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
        if meta.get("formerly"):
            # the old name still works (with a deprecation line); the help shows the new one only
            parser.add_argument(old_flag(meta["formerly"]), **{**kwargs, "dest": meta["formerly"],
                                                               "help": argparse.SUPPRESS})


def also_set(new: str) -> str:
    """The error for an old name given beside its new one, in any source."""
    return f"also set as {new} (its new name); keep one"


def old_flag(name: str) -> str:
    """The flag of a setting's old name: --trusted-proxies for trusted_proxies."""
    return "--" + name.replace("_", "-")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the nearest known name, or ''."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


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

    path = find_config_file(cli.get("config"), environ, cwd)
    if path is not None and path.suffix == ".py":
        for name, raw in read_gunicorn_config(path).items():
            chosen[name] = parse_option(fields[name], raw, f"{path}: gunicorn setting for {name}")
    elif path is not None:
        chosen.update(_from_serve_table(path, fields, cli.get("serve_table"), app_given="app" in cli))

    chosen.update(options_from_environ(fields.values(), environ))

    if "workers" not in chosen and environ.get("WEB_CONCURRENCY"):
        # gunicorn's convention, kept so platform buildpacks that set it keep working
        chosen["workers"] = parse_option(fields["workers"], environ["WEB_CONCURRENCY"], "WEB_CONCURRENCY")

    chosen.update(options_from_cli(fields.values(), cli))

    # the file's paths are absolute by now; the others (flags, variables, a gunicorn file, as gunicorn reads it)
    # are relative to where the command was started: made absolute, since --chdir moves the server and a reload
    # reads them again from the new folder
    chosen.update(resolve_paths(chosen, SERVE_PATHS, cwd))
    settings = ServeSettings(**chosen)
    validate(settings)
    return settings


# the path settings of [serve]: relative ones are relative to the folder of the file they were read from
SERVE_PATHS = ("pid", "access_log", "error_log", "chdir")


def resolve_paths(chosen: Mapping[str, Any], names: Iterable[str], folder: Path) -> dict[str, Any]:
    """The relative paths among `names` in `chosen`, joined to `folder` ('-', stdout or stderr, is no path)."""
    return {name: str(folder / chosen[name]) for name in names
            if isinstance(chosen.get(name), str) and chosen[name] != "-" and not os.path.isabs(chosen[name])}


def serve_table_names(table: Mapping[str, Any], fields: Iterable[str] | None = None) -> list[str]:
    """The names of the [serve.NAME] tables of a [serve] table: its sub-tables that are not options."""
    known = set(fields) if fields is not None else {fld.name for fld in ServeSettings.options()}
    return [key for key, value in table.items() if isinstance(value, dict) and key.replace("-", "_") not in known]


def _from_serve_table(path: Path, fields: Mapping[str, dataclasses.Field], name: str | None = None,
                      app_given: bool = False) -> dict[str, Any]:
    """The settings of the [serve] table of a wsgistack.toml, relative paths joined to the file's folder.

    A file may name several app servers, `[serve.web]`, `[serve.api]` (for `wsgistack up`): `name` picks one;
    the plain keys of [serve] are the defaults every one of them shares.
    """
    toml_file = read_toml_file(path)
    table = toml_file.document.get("serve", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'serve' must be a table ([serve])")
    names = serve_table_names(table, fields)
    if name is not None and name not in names:
        known = ", ".join(names) or "none"
        raise ConfigError(f"{path}: no [serve.{name}] table (app servers named in the file: {known})")
    if name is None and names and not app_given and "app" not in table and "apps" not in table:
        raise ConfigError(f"{path}: the file names several app servers ([serve.{names[0]}], ...): "
                          f"`wsgistack up` runs them all; `wsgistack serve --serve-table NAME` runs one")
    chosen = _table_settings(toml_file, ("serve",), {k: v for k, v in table.items() if k not in names}, fields)
    if name is not None:
        chosen.update(_table_settings(toml_file, ("serve", name), table[name], fields))
    chosen.update(resolve_paths(chosen, SERVE_PATHS, toml_file.folder))
    return chosen


def _table_settings(toml_file: TomlFile, parts: tuple[str, ...], table: Mapping[str, Any],
                    fields: Mapping[str, dataclasses.Field]) -> dict[str, Any]:
    """The options of one table; errors name the file, the line and the dotted key."""
    dotted = ".".join(parts)

    def where(key: str) -> str:
        line = toml_file.key_line(parts, key)
        return f"{toml_file.path}:{line}: {dotted}.{key}" if line else f"{toml_file.path}: {dotted}.{key}"

    for key in table:
        if key.replace("-", "_") not in fields:
            raise ConfigError(f"{where(key)}: unknown setting{did_you_mean(key.replace('-', '_'), fields)}")
    spelt = {key.replace("-", "_"): key for key in table}  # for messages: the key as written
    return {name: parse_option(fields[name], raw, where(spelt[name]))
            for name, raw in underscored(table, lambda key: ConfigError(f"{where(key)}: {SET_TWICE}")).items()}


# a deprecation line for each old name used: (where and the old name, the new name), printed once loading is done
Renamed = list[tuple[str, str]]


def options_from_environ(options: Iterable[dataclasses.Field], environ: Mapping[str, str],
                         section: str = "", renamed: Renamed | None = None) -> dict[str, Any]:
    """The options set by WSGISTACK_[SECTION_]NAME variables (an empty variable counts as unset).

    An option's old name (`formerly`) is read too, noted in `renamed`; both set at once is an error.
    """
    chosen: dict[str, Any] = {}
    for fld in options:
        var = env_name(fld.name, section)
        if environ.get(var, "") != "":
            chosen[fld.name] = parse_option(fld, environ[var], var)
        old = fld.metadata.get("formerly")
        if old and environ.get(env_name(old, section), "") != "":
            old_var = env_name(old, section)
            if fld.name in chosen:
                raise ConfigError(f"{old_var}: {also_set(var)}")
            chosen[fld.name] = parse_option(fld, environ[old_var], old_var)
            if renamed is not None:
                renamed.append((old_var, var))
    return chosen


def options_from_cli(options: Iterable[dataclasses.Field], cli: Mapping[str, Any],
                     renamed: Renamed | None = None) -> dict[str, Any]:
    """The options given on the command line (argparse leaves the others out); errors name the flag.

    An option's old flag (`formerly`) is read too, noted in `renamed`; both given at once is an error.
    """
    fields = {fld.name: fld for fld in options}
    old_names = {fld.metadata["formerly"]: fld for fld in fields.values() if fld.metadata.get("formerly")}
    chosen: dict[str, Any] = {}
    for name, raw in cli.items():  # in the order typed, so the first bad flag is the one reported
        if name in fields:
            flag = fields[name].metadata["flags"][-1] if fields[name].metadata["flags"] else name.upper()
            chosen[name] = parse_option(fields[name], raw, flag)
        elif name in old_names:
            fld = old_names[name]
            new_flag = fld.metadata["flags"][-1]
            if fld.name in cli:
                raise ConfigError(f"{old_flag(name)}: {also_set(new_flag)}")
            chosen[fld.name] = parse_option(fld, raw, old_flag(name))
            if renamed is not None:
                renamed.append((old_flag(name), new_flag))
    return chosen


def validate(settings: ServeSettings) -> None:
    """Checks that involve more than one setting."""
    if settings.app and settings.apps:
        raise ConfigError("both an app and mounts (apps, --mount) are set: serve one app, or mount it at \"/\"")
    if not settings.app and not settings.apps:
        raise ConfigError("no app given: wsgistack serve MODULE:NAME (or 'app' in the [serve] table)")
    for text in settings.bind:
        parse_address(text)
    if settings.metrics_bind is not None:
        try:
            metrics_address = parse_address(settings.metrics_bind)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("--bind", "--metrics-bind", 1)) from None
        if metrics_address.kind == "fd":
            raise ConfigError("--metrics-bind: give HOST:PORT or unix:PATH (fd:// is for the app's listeners)")
        if metrics_address.port != 0 and metrics_address in {parse_address(text) for text in settings.bind}:
            raise ConfigError(f"--metrics-bind {settings.metrics_bind}: that is a --bind address of the app")
    if settings.chdir is not None and not os.path.isdir(settings.chdir):
        raise ConfigError(f"--chdir {settings.chdir}: no such folder")
    package = WORKER_EXTRAS.get(settings.worker_class)
    if package is not None and importlib.util.find_spec(package) is None:
        raise ConfigError(f"--worker-class {settings.worker_class}: needs {package}; "
                          f"pip install 'wsgistack[{package}]'")
    if settings.protocol != "http" and settings.worker_class == "tornado":
        raise ConfigError(f"--protocol {settings.protocol}: the tornado worker speaks http only; use the sync, "
                          f"thread, event or gevent worker")
    for item in settings.protocol_allow_from:
        try:
            if item != "*":
                ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"--protocol-allow-from: {item!r} is not an IP address or network") from None
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
