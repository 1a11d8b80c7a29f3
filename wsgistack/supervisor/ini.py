"""Reads supervisord.conf unchanged: supervisord's sections, options, %-expansions and [include] globs.

On purpose, and unlike supervisord: an unknown option in [supervisord] or [program:x] is an error (typos are
caught); [eventlistener:x] and [fcgi-program:x] are refused (not implemented); a section defined in two
files is an error (supervisord merges them silently); included files may include others; [supervisord] may be
missing (its defaults apply); wsgistack's own program options (depends_on, ready, ready_timeout, backoff_max,
max_restarts, restart_window) are read.
"""

from __future__ import annotations

import configparser
import glob
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from wsgistack.config.errors import ConfigError
from wsgistack.supervisor import options as o
from wsgistack.supervisor.assemble import Group, base_names, read_credentials, read_daemon, read_programs
from wsgistack.supervisor.options import Section, log
from wsgistack.supervisor.settings import ControlSettings, SupervisorConfig

_HEADER = re.compile(r"\[(.+)\]")
_OPTION = re.compile(r"([^=:]+?)\s*[=:]")
_INLINE_COMMENT = re.compile(r"\s[;#].*$")  # as configparser: a comment needs whitespace before it
# sections only supervisorctl (or supervisord's RPC plugins) read: nothing to do for the programs
_IGNORED_SECTIONS = ("supervisorctl", "rpcinterface", "ctlplugin")
_REFUSED_SECTIONS = {
    "eventlistener": "event listeners are not supported by wsgistack",
    "fcgi-program": "FastCGI programs are not supported by wsgistack (run the app with `wsgistack serve`)",
}
_KNOWN = ("supervisord, unix_http_server, inet_http_server, supervisorctl, include, program:NAME, "
          "group:NAME, rpcinterface:NAME")


def load_ini(path: str, environ: Mapping[str, str] | None = None) -> SupervisorConfig:
    """Read a supervisord.conf (and the files it includes) into a SupervisorConfig."""
    environ = os.environ if environ is None else environ
    found: dict[str, Section] = {}
    read_file(path, environ, found, set())

    programs: list[tuple[str, Section]] = []
    groups: list[Group] = []
    for title, section in found.items():
        kind, colon, name = title.partition(":")
        kind = kind.strip()
        if kind in _IGNORED_SECTIONS:
            if kind == "rpcinterface" and name.strip() != "supervisor":
                log.warning("%s: [%s]: RPC interface plugins are not supported; section ignored",
                            section.path, title)
            continue
        if kind in _REFUSED_SECTIONS:
            raise section.error(None, _REFUSED_SECTIONS[kind])
        if kind in ("program", "group") and colon:
            if not name.strip():
                raise section.error(None, f"needs a name: [{kind}:NAME]")
            try:
                name = o.name(name)
            except ValueError as exc:
                raise section.error(None, f"bad {kind} name: {exc}") from None
            if kind == "program":
                programs.append((name, section))
            else:
                groups.append(read_group(name, section, environ))
        elif title not in ("supervisord", "unix_http_server", "inet_http_server"):
            raise section.error(None, f"unknown section (known: {_KNOWN})")

    daemon = read_daemon(found.get("supervisord"), environ)
    if "nodaemon" not in getattr(found.get("supervisord"), "values", {}):
        # supervisord detaches unless told nodaemon=true; wsgistack.toml's default is the foreground
        daemon = replace(daemon, settings=replace(daemon.settings, nodaemon=False))
    processes, members = read_programs(programs, groups, daemon, environ)
    return SupervisorConfig(
        source=path, supervisor=daemon.settings,
        control=read_control(found.get("unix_http_server"), found.get("inet_http_server"), environ,
                             found.get("supervisorctl")),
        programs=processes, groups=members,
    )


def read_file(path: str, environ: Mapping[str, str], found: dict[str, Section], seen: set[str]) -> None:
    """Add the sections of one file to `found`, then those of the files its [include] names."""
    real = os.path.realpath(path)
    if real in seen:  # two globs naming one file, or files including each other
        return
    seen.add(real)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    parser = configparser.RawConfigParser(
        inline_comment_prefixes=(";", "#"), strict=False, interpolation=None,
        default_section="\0",  # no magic [DEFAULT]: supervisord's files do not use it, typos should not leak
    )
    try:
        parser.read_string(text, source=path)
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: an option before any [section]: "
                          f"{text.splitlines()[exc.lineno - 1].strip()!r}") from None
    except configparser.ParsingError as exc:
        number = exc.errors[0][0]
        raise ConfigError(f"{path}:{number}: not 'option = value' nor a [section]: "
                          f"{text.splitlines()[number - 1].strip()!r}") from None
    except configparser.Error as exc:
        raise ConfigError(f"{path}: not a valid INI file: {exc.message.splitlines()[0]}") from None

    lines = option_lines(text)
    includes: list[Section] = []
    for title in parser.sections():
        section = Section(title, path, dict(parser.items(title)), lines.get(title, {}))
        if title == "include":
            includes.append(section)
        elif title in found:
            raise section.error(None, f"also defined in {found[title].path}; define each section once")
        else:
            found[title] = section
    for section in includes:
        for included in included_files(section, environ):
            read_file(included, environ, found, seen)


def included_files(section: Section, environ: Mapping[str, str]) -> list[str]:
    """The files an [include] names: globs separated by whitespace, relative to the including file."""
    section.check_options({"files"})
    patterns = section.require("files", o.text, base_names(environ) | {"here": section.here}).split()
    files = []
    for pattern in patterns:
        pattern = os.path.join(os.path.dirname(section.path), pattern)
        matches = sorted(glob.glob(pattern))
        if not matches:
            log.warning("%s: [include] files: no file matches %s", section.path, pattern)
        files += matches
    return files


def read_group(name: str, section: Section, environ: Mapping[str, str]) -> Group:
    """A [group:x]: its programs and priority."""
    section.check_options({"programs", "priority"})
    names = base_names(environ) | {"here": section.here}
    members = section.require("programs", o.names, names)
    return Group(name, members, section.get("priority", o.integer, 999, names), section, "programs")


def read_control(unix: Section | None, inet: Section | None, environ: Mapping[str, str],
                 client: Section | None = None) -> ControlSettings:
    """ControlSettings from [unix_http_server] and [inet_http_server] (and [supervisorctl]'s credentials)."""
    found: dict[str, Any] = {}
    if client is not None:  # the section is supervisorctl's: its other options are not ours to check
        names = base_names(environ) | {"here": client.here}
        found["ctl_username"] = client.get("username", o.text, None, names)
        found["ctl_password"] = client.get("password", o.text, None, names)
    credentials: tuple[str | None, str | None] = (None, None)
    if unix is not None:
        unix.check_options({"file", "chmod", "chown", "username", "password"})
        names = base_names(environ) | {"here": unix.here}
        found["unix_path"] = unix.require("file", o.path, names)
        found["unix_mode"] = unix.get("chmod", o.octal, ControlSettings.unix_mode, names)
        found["unix_owner"] = unix.get("chown", o.owner, None, names)
        credentials = read_credentials(unix, names)
    if inet is not None:
        inet.check_options({"port", "username", "password"})
        names = base_names(environ) | {"here": inet.here}
        found["inet_host"], found["inet_port"] = inet.require("port", o.inet_address, names)
        inet_credentials = read_credentials(inet, names)
        if credentials != (None, None) and inet_credentials not in (credentials, (None, None)):
            # one pair of credentials guards both endpoints in wsgistack
            raise inet.error("username", "differs from [unix_http_server]'s credentials; wsgistack uses one "
                                         "username and password for both")
        credentials = inet_credentials if inet_credentials != (None, None) else credentials
    return ControlSettings(**found, username=credentials[0], password=credentials[1])


def option_lines(text: str) -> dict[str, dict[str, int]]:
    """section -> option -> line number (the header under ""), as configparser would read the text."""
    lines: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        # blank lines, comments and indented continuation lines name no option
        if not line.strip() or line.lstrip()[0] in ";#" or line[0] in " \t":
            continue
        body = _INLINE_COMMENT.sub("", line).strip()
        header = _HEADER.match(body)
        if header:
            current = lines.setdefault(header.group(1), {})
            current.setdefault("", number)
            continue
        option = _OPTION.match(body)
        if option and current is not None:
            current[option.group(1).strip().lower()] = number  # a repeated option: the last one counts
    return lines
