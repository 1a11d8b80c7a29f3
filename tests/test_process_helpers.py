"""wsgistack/process.py: what serve's arbiter, the proxy's master and the supervisor share, on real children.

Each test that reaps with waitpid(-1) does it in a forked process of its own, so it never collects a child
that belongs to the test runner or to another test's fixture.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys

import pytest

from polling import wait_for
from processes import pid_alive
from wsgistack.process import (
    describe_exit,
    describe_exit_verb,
    die_with_parent,
    exit_code,
    exit_signal,
    reap_children,
    signal_name,
)


def status_of(child_body) -> int:
    """The waitpid status of a forked child that runs `child_body` and exits."""
    pid = os.fork()
    if pid == 0:
        try:
            child_body()
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1]


def in_own_process(body) -> object:
    """Run `body` in a forked process and return what it returned (JSON through a pipe)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps(body()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    assert os.waitpid(pid, 0)[1] == 0, "the helper process failed"
    return json.loads(data)


def test_an_exit_code_is_described_in_both_phrasings():
    status = status_of(lambda: os._exit(3))
    assert (exit_code(status), exit_signal(status)) == (3, None)
    assert describe_exit(status) == "exit status 3"
    assert describe_exit_verb(status) == "exited with code 3"


def test_a_killing_signal_is_described_by_name():
    status = status_of(lambda: os.kill(os.getpid(), signal.SIGKILL))
    assert (exit_code(status), exit_signal(status)) == (None, signal.SIGKILL)
    assert describe_exit(status) == "terminated by SIGKILL"
    assert describe_exit_verb(status) == "killed by SIGKILL"


def test_a_signal_without_a_name_is_described_by_number():
    assert signal_name(signal.SIGTERM) == "SIGTERM"
    realtime = signal.SIGRTMIN + 6
    assert signal_name(realtime) == f"signal {realtime}"
    assert describe_exit(realtime) == f"terminated by signal {realtime}"  # the status of a child it killed


def test_reap_children_collects_every_exited_child_and_never_blocks():
    def body():
        exited = {}
        for code in (0, 5):
            pid = os.fork()
            if pid == 0:
                os._exit(code)
            exited[pid] = code
        running = os.fork()
        if running == 0:
            select.select([], [], [])  # until killed
            os._exit(0)
        wait_for(lambda: not any(pid_alive(pid) for pid in exited), 10, message="both children exited")
        reaped = {pid: exit_code(status) for pid, status in reap_children()}  # returns with one still running
        again = list(reap_children())
        os.kill(running, signal.SIGKILL)
        wait_for(lambda: not pid_alive(running), 10, message="the running child killed")
        last = [(pid, describe_exit(status)) for pid, status in reap_children()]
        none_left = list(reap_children())  # no child at all: ends quietly
        return {"ok": reaped == exited, "again": again, "last": last == [(running, "terminated by SIGKILL")],
                "none_left": none_left}

    assert in_own_process(body) == {"ok": True, "again": [], "last": True, "none_left": []}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_die_with_parent_takes_the_child_down_with_its_parent():
    def body():
        ready_r, ready_w = os.pipe()
        grandchild = os.fork()
        if grandchild == 0:
            die_with_parent(signal.SIGKILL)
            os.write(ready_w, b"1")
            select.select([], [], [])  # until its parent dies
            os._exit(0)
        os.read(ready_r, 1)  # PDEATHSIG is set: the parent may go
        return grandchild

    grandchild = in_own_process(body)
    wait_for(lambda: not pid_alive(grandchild), 10, message="the grandchild gone with its parent")
