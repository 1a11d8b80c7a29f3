"""Reads the supervisor's part of wsgistack.toml: the [supervisor] table and the [programs.NAME] tables.

The keys are supervisord's ([supervisord] and [program:x]) with the same values, errors and %-expansions
(`%(program_name)s`, `%(process_num)02d`, `%(here)s`, `%(ENV_HOME)s`; `%%` for a literal %), plus:
[supervisor] takes the control endpoints (socket, socket_mode, socket_owner, http = "host:port", username,
password); a program's `command` may be an argv array, its `environment` a table, and `group = "NAME"` puts
it in a group (which starts at the priority of its most urgent member). As everywhere in wsgistack.toml, a key
may be spelt with dashes (`stdout-logfile`); supervisord.conf keeps supervisord's spelling.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import tempfile
from collections.abc import Mapping

from wsgistack.config.errors import ConfigError
from wsgistack.config.loader import serve_table_names
from wsgistack.config.toml_file import SET_TWICE, read_toml_file, underscored
from wsgistack.observe.dashboard.settings import read_dashboard
from wsgistack.observe.metrics.settings import read_metrics_listen
from wsgistack.supervisor import options as o
from wsgistack.supervisor.assemble import Group, base_names, read_credentials, read_daemon, read_programs
from wsgistack.supervisor.options import Section
from wsgistack.supervisor.settings import ControlSettings, SupervisorConfig

STACK_APP = "app"  # the program name of a plain [serve] table under `wsgistack up`
STACK_PROXY = "proxy"
CONTROL_OPTIONS = frozenset({"socket", "socket_mode", "socket_owner", "http", "username", "password"})


def load_toml(path: str, environ: Mapping[str, str] | None = None) -> SupervisorConfig:
    """Read the [supervisor] and [programs.NAME] tables of a wsgistack.toml into a SupervisorConfig."""
    environ = os.environ if environ is None else environ
    toml_file = read_toml_file(path)
    document = toml_file.document
    daemon_table = document.get("supervisor")
    if daemon_table is not None and not isinstance(daemon_table, dict):
        raise ConfigError(f"{path}: 'supervisor' must be a table ([supervisor])")
    program_tables = document.get("programs", {})
    if not isinstance(program_tables, dict):
        raise ConfigError(f"{path}: 'programs' must be tables ([programs.NAME])")

    daemon_section = None
    if daemon_table is not None:
        daemon_section = Section("supervisor", path, {}, toml_file.lines_of("supervisor"))
        daemon_section.values = _keys(daemon_table, daemon_section)
    daemon = read_daemon(daemon_section, environ, CONTROL_OPTIONS)

    programs: list[tuple[str, Section]] = []
    members: dict[str, list[str]] = {}
    first_member: dict[str, Section] = {}
    for name, table in program_tables.items():
        section = Section(f"programs.{name}", path, {}, toml_file.lines_of(("programs", name)))
        if not isinstance(table, dict):
            raise section.error(None, "must be a table ([programs.NAME]) of the program's options")
        try:
            name = o.name(name)
        except ValueError as exc:
            raise section.error(None, f"bad program name: {exc}") from None
        section.values = _keys(table, section)
        group = section.get("group", o.name)
        if group is not None:
            del section.values["group"]  # membership is the group's business, not an option of the program
            members.setdefault(group, []).append(name)
            first_member.setdefault(group, section)
        programs.append((name, section))
    groups = [Group(group, tuple(names), None, first_member[group], "group")
              for group, names in members.items()]

    processes, group_members = read_programs(programs, groups, daemon, environ, stack_part_names(document))
    control = read_control(daemon_section, environ)
    if control.unix_path is None and ("serve" in document or "proxy" in document):
        # a file for `wsgistack up`: its control socket is where `ctl` looks for it, with no setting
        control = dataclasses.replace(control, unix_path=os.path.join(stack_run_dir(path), "supervisor.sock"))
    dashboard = read_dashboard(document.get("dashboard"), path, toml_file.lines_of("dashboard"))
    metrics_listen = read_metrics_listen(document.get("metrics"), path, toml_file.lines_of("metrics"))
    return SupervisorConfig(source=path, supervisor=daemon.settings, control=control,
                            programs=processes, groups=group_members, dashboard=dashboard,
                            metrics_listen=metrics_listen)


def stack_part_names(document: Mapping[str, object]) -> list[str]:
    """The programs `wsgistack up` adds for a file's [serve] (or each [serve.NAME]) and [proxy] tables."""
    serve = document.get("serve")
    names = (serve_table_names(serve) or [STACK_APP]) if isinstance(serve, dict) else []
    return names + ([STACK_PROXY] if "proxy" in document else [])


def stack_run_dir(config_path: str) -> str:
    """The private folder of the `wsgistack up` run of one config file: its control socket and the app servers'
    unix sockets. Derived from the file's real path, so `ctl` and `deploy` find it; short, since a unix socket's
    path is limited to 107 bytes; made (0700) on first use, and refused if someone else owns it."""
    digest = hashlib.sha256(os.path.realpath(config_path).encode()).hexdigest()[:12]
    base = os.path.join(tempfile.gettempdir(), f"wsgistack-{os.getuid()}")
    for folder in (base, os.path.join(base, digest)):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise ConfigError(f"{folder}: not a private folder of ours (owner, mode 0700): remove it")
    return os.path.join(base, digest)


def _keys(table: dict, section: Section) -> dict:
    """The table's keys spelled with '_' (`stdout-logfile` is supervisord's `stdout_logfile`), as in [serve]."""
    return underscored(table, lambda key: section.error(key, SET_TWICE))


def read_control(section: Section | None, environ: Mapping[str, str]) -> ControlSettings:
    """ControlSettings from [supervisor]'s socket, socket_mode, socket_owner, http, username and password."""
    if section is None:
        return ControlSettings()
    names = base_names(environ) | {"here": section.here}
    host, port = section.get("http", o.inet_address, (None, None), names)
    username, password = read_credentials(section, names)
    return ControlSettings(
        unix_path=section.get("socket", o.path, None, names),
        unix_mode=section.get("socket_mode", o.octal, ControlSettings.unix_mode, names),
        unix_owner=section.get("socket_owner", o.owner, None, names),
        inet_host=host, inet_port=port, username=username, password=password,
    )
