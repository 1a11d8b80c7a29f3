"""What programs start and leave behind (a shell's `&` child, a double-forked daemon) ends with the program's
stop, with the supervisor's shutdown, and with a SIGKILLed supervisor: black-box, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap

import pytest
from supervisors import PY, ctl, status
from polling import wait_for
from processes import pid_alive

DAEMON = """\
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(300)
    os._exit(0)
os.wait()
while True:
    time.sleep(1)
"""


@pytest.fixture
def with_leftovers(tmp_path):
    """A supervisor whose two programs each start a process that outlives them, and those processes' pids."""
    (tmp_path / "background.sh").write_text('sleep 300 &\necho $! > "$1.tmp"\nmv "$1.tmp" "$1"\nwait\n')
    (tmp_path / "daemon.py").write_text(DAEMON)
    conf = tmp_path / "supervisord.conf"
    conf.write_text(textwrap.dedent(f"""\
        [unix_http_server]
        file=%(here)s/s.sock
        [supervisord]
        logfile=%(here)s/s.log
        [program:background]
        command=sh %(here)s/background.sh %(here)s/background.pid
        startsecs=0
        [program:daemon]
        command={PY} %(here)s/daemon.py %(here)s/daemon.pid
        startsecs=0
        """))
    proc = subprocess.Popen([PY, "-m", "wsgistack", "supervise", "-n", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    pids: list[int] = []
    try:
        for name in ("background", "daemon"):
            pidfile = tmp_path / f"{name}.pid"
            pids.append(int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), message=f"{name}'s child")))
        assert all(pid_alive(pid) for pid in pids)
        yield conf, proc, pids
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
        for pid in pids:  # never leave them to the next test, even when the supervisor failed to
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigkill_of_the_supervisor_leaves_no_grandchild(with_leftovers):
    conf, proc, pids = with_leftovers
    proc.kill()
    proc.wait(10)
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), timeout=5, message="the `&` child and the daemon gone")
    log = conf.parent / "s.log"
    wait_for(lambda: f"the supervisor (pid {proc.pid}) died; killed " in log.read_text(),
             message="the watchdog's account")


def test_stop_and_shutdown_leave_no_grandchild(with_leftovers):
    conf, proc, (background, daemon) = with_leftovers
    assert ctl(conf, "stop", "background").returncode == 0
    wait_for(lambda: status(conf)["background:background"]["statename"] == "STOPPED", message="STOPPED")
    assert not pid_alive(background) and pid_alive(daemon)  # the stop takes along its own program's only
    assert ctl(conf, "shutdown").returncode == 0
    assert proc.wait(20) == 0
    assert not pid_alive(daemon)
