"""`wsgistack up`: the whole stack of one wsgistack.toml under one supervisor, in the foreground.

The supervisor is the root of the process tree: it starts the app servers, then the proxy once they are ready,
then the programs, in dependency order; prints one line per state change; and on Ctrl-C or SIGTERM stops
them in reverse order (proxy and programs first, then the app servers, which answer what they hold). `ctl`
(and supervisorctl, through the control socket) see every part; `deploy` asks it for a new generation.
"""

from __future__ import annotations

import os
import shutil

from wsgistack.process import listen_fds
from wsgistack.stack.compose import NGINX_FOLDER, Stack, load_stack
from wsgistack.stack.deploy import Deployer
from wsgistack.supervisor.control import ControlServer
from wsgistack.supervisor.daemon import supervise
from wsgistack.supervisor.runtime import Supervisor


def run_up(path: str, daemon: bool = False) -> int:
    """Run the stack of `path` until stopped; the exit code."""
    stack = load_stack(path)
    fds = tuple(fd for fd, _name in listen_fds())  # systemd's socket activation
    if stack.proxy is not None:
        for server in stack.servers:
            stack.point_to(server.name, 1)

    def prepare(supervisor: Supervisor, control: ControlServer | None) -> None:
        deployer = Deployer(stack, supervisor)
        supervisor.load = lambda source: load_stack(source).supervisor_config(deployer.generations(), fds)
        if control is not None:
            control.commands["deploy"] = deployer.command

    try:
        return supervise(stack.supervisor_config(fds=fds), daemon=daemon, prepare=prepare)
    finally:
        _clean_up(stack)


def _clean_up(stack: Stack) -> None:
    """The links to the app servers' sockets go with the stack (each server removes its own socket, the control
    server its own), and so does nginx's folder (its config, temp folders and pid file, with engine = "nginx"),
    and the run folder once empty."""
    shutil.rmtree(os.path.join(stack.run_dir, NGINX_FOLDER), ignore_errors=True)
    if stack.proxy is not None:
        for server in stack.servers:
            try:
                os.unlink(stack.socket(server.name))
            except OSError:
                pass
    try:
        os.rmdir(stack.run_dir)
    except OSError:
        pass  # something is still there (a socket of a server that outlived us): leave it
