"""Builds a SupervisorConfig from the sections a reader found, the same way for supervisord.conf and TOML.

The readers only find sections and say where each value came from; everything after that lives here, once:
%-expansion per process, numprocs, log file names, groups, start order and depends_on.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from wsgistack.supervisor import options as o
from wsgistack.supervisor.options import Section, log
from wsgistack.supervisor.settings import (
    LogSettings,
    ProgramSettings,
    ReadyCheck,
    SupervisorSettings,
)

DAEMON_OPTIONS = {
    "logfile": o.path, "logfile_maxbytes": o.size, "logfile_backups": o.count, "loglevel": o.loglevel,
    "pidfile": o.path, "nodaemon": o.boolean, "childlogdir": o.path, "directory": o.path, "umask": o.mask,
    "identifier": o.text,
}
# known to supervisord, not implemented: "harmless" ones are logged at debug level, the others as warnings
DAEMON_IGNORED = {
    "minfds": "harmless", "minprocs": "harmless", "nocleanup": "harmless", "silent": "harmless",
    "user": "changes behaviour", "strip_ansi": "changes behaviour",
}
PROGRAM_OPTIONS = {
    "priority": o.integer, "autostart": o.boolean, "autorestart": o.autorestart, "startsecs": o.seconds,
    "startretries": o.count, "exitcodes": o.exitcodes, "stopsignal": o.signal_number,
    "stopwaitsecs": o.seconds, "user": o.user, "umask": o.mask, "directory": o.path,
    "redirect_stderr": o.boolean, "backoff_max": o.seconds, "max_restarts": o.count,
    "restart_window": o.seconds,
}
# options read by hand below (their value shapes others)
PROGRAM_SPECIAL = {
    "command", "process_name", "numprocs", "numprocs_start", "environment", "stopasgroup", "killasgroup",
    "stdout_logfile", "stdout_logfile_maxbytes", "stdout_logfile_backups",
    "stderr_logfile", "stderr_logfile_maxbytes", "stderr_logfile_backups",
    "depends_on", "ready", "ready_timeout",
}
PROGRAM_IGNORED = {
    f"{channel}_{option}": "changes behaviour"
    for channel in ("stdout", "stderr") for option in ("capture_maxbytes", "events_enabled", "syslog")
} | {"serverurl": "harmless"}


@dataclass(frozen=True)
class Daemon:
    """The [supervisord] settings plus what its options pass on to programs."""

    settings: SupervisorSettings
    environment: tuple[tuple[str, str], ...]  # every program's environment starts from this


@dataclass(frozen=True)
class Group:
    """A [group:x] (or the programs whose TOML `group` key names it): members and start priority."""

    name: str
    members: tuple[str, ...]
    priority: int | None  # None: that of its most urgent member
    section: Section  # where errors about the group point
    option: str | None


def base_names(environ: Mapping[str, str]) -> dict[str, Any]:
    """Expansion names every section knows: %(ENV_X)s and %(host_node_name)s."""
    names: dict[str, Any] = {f"ENV_{key}": value for key, value in environ.items()}
    names["host_node_name"] = platform.node()
    return names


def read_daemon(
    section: Section | None, environ: Mapping[str, str], extra: frozenset[str] = frozenset(),
) -> Daemon:
    """SupervisorSettings from [supervisord] (TOML's [supervisor] passes its control options as `extra`)."""
    if section is None:
        return Daemon(SupervisorSettings(), ())
    section.check_options(DAEMON_OPTIONS.keys() | {"environment"} | extra, DAEMON_IGNORED)
    names = base_names(environ) | {"here": section.here}
    found = {key: section.get(key, parse, names=names) for key, parse in DAEMON_OPTIONS.items()
             if key in section.values}
    return Daemon(SupervisorSettings(**found), section.get("environment", o.environment, (), names))


def read_credentials(section: Section, names: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """username and password: both or neither, as supervisord requires."""
    username = section.get("username", o.text, names=names)
    password = section.get("password", o.text, names=names)
    if (username is None) != (password is None):
        missing = "password" if password is None else "username"
        raise section.error(missing, "missing: a username needs a password and a password a username")
    return username, password


def read_programs(
    programs: list[tuple[str, Section]], groups: list[Group], daemon: Daemon, environ: Mapping[str, str],
    outside: Collection[str] = (),
) -> tuple[tuple[ProgramSettings, ...], dict[str, tuple[str, ...]]]:
    """Every process of every program, in start order, and the process names of each group. `outside` names
    what depends_on may name besides them (the app servers and the proxy of `wsgistack up`)."""
    sections = dict(programs)
    group_of: dict[str, Group] = {}
    for group in groups:
        for member in group.members:
            if member not in sections:
                raise group.section.error(group.option, f"no program named {member!r}")
            if member in group_of:
                raise group.section.error(group.option,
                                          f"program {member!r} is already in group {group_of[member].name!r}")
            group_of[member] = group
    for group in groups:
        if group.name in sections and group.name not in group_of:
            raise group.section.error(group.option, f"the group name {group.name!r} is also a program's")

    members: dict[str, list[ProgramSettings]] = {}
    for program, section in programs:
        group = group_of[program].name if program in group_of else program
        processes = expand_program(program, section, group, daemon, environ)
        taken = {process.name for process in members.get(group, [])}
        for process in processes:
            if process.name in taken:
                raise section.error("process_name", f"the process name {process.name!r} is taken in group "
                                                    f"{group!r}")
            taken.add(process.name)
        members.setdefault(group, []).extend(processes)
    needs: dict[str, list[str]] = {program: [] for program in sections}
    for processes in members.values():
        for process in processes:
            wanted = needs[process.program]
            wanted += [other for other in process.depends_on if other not in wanted]
    check_dependencies(needs, sections, outside)
    declared = {group.name: group.priority for group in groups}

    def group_priority(group: str) -> int:
        priority = declared.get(group)
        return priority if priority is not None else min(p.priority for p in members[group])

    order = sorted(members, key=lambda group: (group_priority(group), group))
    result: dict[str, tuple[ProgramSettings, ...]] = {
        group: tuple(sorted(members[group], key=lambda p: (p.priority, p.name))) for group in order
    }
    return (tuple(p for group in order for p in result[group]),
            {group: tuple(p.name for p in result[group]) for group in order})


def expand_program(
    program: str, section: Section, group: str, daemon: Daemon, environ: Mapping[str, str],
) -> list[ProgramSettings]:
    """The processes of one program: numprocs of them, each with its own %(process_num)d expansion."""
    section.check_options(PROGRAM_OPTIONS.keys() | PROGRAM_SPECIAL, PROGRAM_IGNORED)
    names = base_names(environ) | {f"ENV_{key}": value for key, value in daemon.environment}
    names |= {"here": section.here, "program_name": program, "group_name": group}
    numprocs = section.get("numprocs", o.at_least_one, 1, names)
    first = section.get("numprocs_start", o.count, 0, names)
    process_name = section.get("process_name", o.text, "%(program_name)s")
    if numprocs > 1 and "%(process_num)" not in process_name:
        raise section.error("process_name" if "process_name" in section.values else "numprocs",
                            "numprocs > 1 needs %(process_num)d (or %(process_num)02d...) in process_name, "
                            "so each process gets its own name")
    if "command" not in section.values:
        raise section.error("command", "missing (every program needs a command)")
    if "ready_timeout" in section.values and "ready" not in section.values:
        raise section.error("ready_timeout", "needs a 'ready' check to time out")
    return [expand_process(section, names | {"process_num": number, "numprocs": numprocs}, daemon)
            for number in range(first, first + numprocs)]


def expand_process(section: Section, names: dict[str, Any], daemon: Daemon) -> ProgramSettings:
    """One process of a program, its options expanded with `names` (which include its process_num)."""
    # the program's environment is visible to its other options as %(ENV_X)s, as in supervisord
    env = dict(daemon.environment)
    env.update(section.get("environment", o.environment, (), names))
    names = names | {f"ENV_{key}": value for key, value in env.items()}

    def get(option: str, parse: Any, default: Any = None) -> Any:
        return section.get(option, parse, default, names)

    found = {key: get(key, parse) for key, parse in PROGRAM_OPTIONS.items() if key in section.values}
    process = get("process_name", o.name, names["program_name"])
    stopasgroup = get("stopasgroup", o.boolean, False)
    killasgroup = get("killasgroup", o.boolean, stopasgroup)
    if stopasgroup and not killasgroup:
        raise section.error("killasgroup", "cannot be false when stopasgroup is true (stopping the group "
                                           "must be able to kill it)")
    spec = get("ready", o.ready)
    ready = ReadyCheck(spec[0], spec[1], get("ready_timeout", o.seconds, 30.0)) if spec else None
    stem = process if names["group_name"] == process else f"{names['group_name']}-{process}"
    logs = {channel: log_settings(section, channel, get, stem, daemon.settings)
            for channel in ("stdout", "stderr")}
    if found.get("redirect_stderr"):
        # stderr goes down stdout's pipe: there is no stderr file to write, as in supervisord
        if "stderr_logfile" in section.values and logs["stderr"].path is not None:
            log.warning("%s: [%s] stderr_logfile: ignored, since redirect_stderr is true",
                        section.path, section.title)
        logs["stderr"] = LogSettings(None, logs["stderr"].maxbytes, logs["stderr"].backups)
    return ProgramSettings(
        name=process, program=names["program_name"], group=names["group_name"],
        command=get("command", o.command), environment=tuple(env.items()),
        stopasgroup=stopasgroup, killasgroup=killasgroup, ready=ready,
        stdout=logs["stdout"], stderr=logs["stderr"], depends_on=get("depends_on", o.names, ()), **found,
    )


def log_settings(
    section: Section, channel: str, get: Callable[..., Any], stem: str, daemon: SupervisorSettings,
) -> LogSettings:
    """stdout_logfile (or stderr_...) and its rotation; AUTO becomes a fixed file name in childlogdir."""
    option = f"{channel}_logfile"
    where = get(option, o.logfile, "AUTO")
    if where == "SYSLOG":
        log.warning("%s: [%s] %s=syslog: syslog is not implemented; the output is discarded",
                    section.path, section.title, option)
        where = None
    elif where == "AUTO":
        # supervisord adds a random part to AUTO names; a fixed name lets a restart append to the same file
        where = os.path.join(daemon.childlogdir, f"{stem}-{channel}---{daemon.identifier}.log")
    return LogSettings(where, get(f"{option}_maxbytes", o.size, 50 * 1024 * 1024),
                       get(f"{option}_backups", o.count, 10))


def check_dependencies(needs: Mapping[str, list[str]], sections: Mapping[str, Section],
                       outside: Collection[str] = ()) -> None:
    """depends_on names existing programs and has no cycle."""
    for program, wanted in needs.items():
        for other in wanted:
            if other not in sections and other not in outside:
                raise sections[program].error("depends_on", f"no program named {other!r}")
    done: set[str] = set()

    def visit(program: str, path: list[str]) -> None:
        if program in done:
            return
        if program in path:
            cycle = [*path[path.index(program):], program]
            raise sections[cycle[0]].error("depends_on", "a cycle: " + " -> ".join(cycle))
        for other in needs.get(program, ()):
            visit(other, [*path, program])
        done.add(program)

    for program in needs:
        visit(program, [])
