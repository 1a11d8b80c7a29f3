"""The supervisor core with real child processes: states, restarts, back-off, stops, logs, no orphans."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from processes import pid_alive

from wsgistack.supervisor.runtime import Supervisor
from wsgistack.supervisor.settings import (
    ControlSettings,
    LogSettings,
    ProgramSettings,
    SupervisorConfig,
    SupervisorSettings,
)
from wsgistack.supervisor.states import ProcessState as S

PY = sys.executable


def program(tmp: Path, name: str, code: str, **options) -> ProgramSettings:
    """A program running `python -c code`, logging under tmp."""
    defaults = dict(startsecs=0.3, startretries=2, backoff_max=0.2, stopwaitsecs=3,
                    stdout=LogSettings(str(tmp / f"{name}.out"), maxbytes=0),
                    stderr=LogSettings(str(tmp / f"{name}.err"), maxbytes=0))
    defaults.update(options)
    return ProgramSettings(name=name, program=name, group=name, command=(PY, "-c", textwrap.dedent(code)),
                           **defaults)


def config(*programs: ProgramSettings) -> SupervisorConfig:
    return SupervisorConfig("test", SupervisorSettings(), ControlSettings(), tuple(programs),
                            {p.group: (p.name,) for p in programs})


async def until(condition, timeout: float = 10.0, what: str = "condition"):
    """Poll `condition` on the loop (the reaper and timers run in between) until true or the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return value


def run(scenario, *programs: ProgramSettings):
    """Run `scenario(supervisor)` on a fresh loop with a reaper; always stop everything afterwards."""
    loop = asyncio.new_event_loop()
    supervisor = Supervisor(config(*programs), loop)
    supervisor.install_reaper()
    try:
        return loop.run_until_complete(scenario(supervisor))
    finally:
        loop.run_until_complete(supervisor.stop_all(timeout=10))
        supervisor.remove_reaper()
        supervisor.close()
        loop.close()


LONG = "import time\nwhile True: time.sleep(1)\n"


def test_long_running_program_becomes_running_and_stops(tmp_path):
    async def scenario(sup):
        proc = sup.processes["web:web"]
        sup.start_autostart()
        assert proc.state == S.STARTING
        await until(lambda: proc.state == S.RUNNING, what="RUNNING")
        pid = proc.pid
        assert pid_alive(pid)
        assert proc.stop()
        await until(lambda: proc.state == S.STOPPED, what="STOPPED")
        await until(lambda: not pid_alive(pid), what="the child gone")
        assert proc.pid == 0
    run(scenario, program(tmp_path, "web", LONG))


def test_program_exiting_at_once_goes_fatal_after_retries(tmp_path):
    async def scenario(sup):
        proc = sup.processes["bad:bad"]
        sup.start_autostart()
        await until(lambda: proc.state == S.FATAL, what="FATAL")
        assert proc.attempts == 3  # the first start and startretries=2 retries
        assert "gave up after 3 failed starts" in proc.fatal_reason
        assert os.WEXITSTATUS(proc.exit_status) == 1
    # startsecs past any start-up: a Python slow to start and exit on a loaded machine must not count as started
    run(scenario, program(tmp_path, "bad", "raise SystemExit(1)", startsecs=10))


def test_unexpected_exit_after_running_is_restarted(tmp_path):
    async def scenario(sup):
        proc = sup.processes["flaky:flaky"]
        sup.start_autostart()
        await until(lambda: proc.restarts >= 2, timeout=15, what="two restarts")
        assert proc.state in (S.STARTING, S.RUNNING)
    run(scenario, program(tmp_path, "flaky", "import time\ntime.sleep(0.5)\nraise SystemExit(1)",
                          startsecs=0.2, autorestart="unexpected"))


def test_expected_exit_is_not_restarted(tmp_path):
    async def scenario(sup):
        proc = sup.processes["job:job"]
        sup.start_autostart()
        await until(lambda: proc.state == S.EXITED, what="EXITED")
        watch_until = time.monotonic() + 0.5  # a wrong restart would show within this window
        while time.monotonic() < watch_until:
            assert proc.state == S.EXITED and proc.restarts == 0
            await asyncio.sleep(0.01)
    run(scenario, program(tmp_path, "job", "import time\ntime.sleep(0.4)", startsecs=0.1,
                          autorestart="unexpected", exitcodes=(0,)))


def test_killed_program_is_running_again_quickly(tmp_path):
    async def scenario(sup):
        proc = sup.processes["web:web"]
        sup.start_autostart()
        await until(lambda: proc.state == S.RUNNING, what="RUNNING")
        old = proc.pid
        killed = time.monotonic()
        os.kill(old, signal.SIGKILL)
        await until(lambda: proc.pid and proc.pid != old, what="a new pid")
        assert time.monotonic() - killed < 0.2, "a crashed program is started again within 200 ms"
        await until(lambda: proc.state == S.RUNNING, what="RUNNING again")
        assert proc.restarts == 1
    run(scenario, program(tmp_path, "web", LONG, autorestart="true"))


def test_output_goes_to_rotated_logs(tmp_path):
    code = "import sys\nfor i in range(3000): print('line %05d' % i)\nsys.stdout.flush()\nimport time\ntime.sleep(60)"
    settings = program(tmp_path, "chatty", code, stdout=LogSettings(str(tmp_path / "chatty.out"), maxbytes=10240,
                                                                    backups=2))

    async def scenario(sup):
        proc = sup.processes["chatty:chatty"]
        sup.start_autostart()
        await until(lambda: b"line 02999" in proc.stdout.recent, what="all output read")
        await asyncio.get_running_loop().run_in_executor(None, proc.stdout.flush)
    run(scenario, settings)
    files = sorted(p.name for p in tmp_path.glob("chatty.out*"))
    assert files == ["chatty.out", "chatty.out.1", "chatty.out.2"]
    for name in files:  # rotated on line boundaries: past maxbytes only to finish a line
        content = (tmp_path / name).read_text()
        assert len(content) < 10240 + 11 and all(line.startswith("line ") and len(line) == 10
                                                 for line in content.splitlines())
    assert (tmp_path / "chatty.out").read_text().rstrip().endswith("line 02999")


def test_environment_and_directory_arrive(tmp_path):
    code = "import os\nprint(os.environ['GREETING'], os.environ['SUPERVISOR_PROCESS_NAME'], os.getcwd(), flush=True)\n" \
           "import time\ntime.sleep(60)"
    settings = program(tmp_path, "env", code, environment=(("GREETING", "hello world"),), directory=str(tmp_path))

    async def scenario(sup):
        proc = sup.processes["env:env"]
        sup.start_autostart()
        # the whole line: with PYTHONUNBUFFERED (set on this machine) print() writes its pieces one by one
        await until(lambda: b"\n" in proc.stdout.recent, what="a line of output")
        line = bytes(proc.stdout.recent).partition(b"\n")[0]
        assert line.decode() == f"hello world env {tmp_path}"
    run(scenario, settings)


def test_stop_escalates_to_sigkill(tmp_path):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n" \
           "while True: time.sleep(1)"

    async def scenario(sup):
        proc = sup.processes["stubborn:stubborn"]
        sup.start_autostart()
        await until(lambda: b"ready" in proc.stdout.recent, what="ready")
        started = time.monotonic()
        proc.stop()
        await until(lambda: proc.state == S.STOPPED, timeout=10, what="STOPPED")
        assert 0.9 <= time.monotonic() - started < 5
        assert os.WTERMSIG(proc.exit_status) == signal.SIGKILL
    run(scenario, program(tmp_path, "stubborn", code, stopwaitsecs=1))


def test_stopasgroup_reaches_grandchildren(tmp_path):
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print(child.pid, flush=True)\ntime.sleep(60)\n")

    async def scenario(sup):
        proc = sup.processes["tree:tree"]
        sup.start_autostart()
        await until(lambda: b"\n" in proc.stdout.recent, what="the grandchild's pid")
        grandchild = int(bytes(proc.stdout.recent).partition(b"\n")[0])
        assert pid_alive(grandchild)
        proc.stop()
        await until(lambda: proc.state == S.STOPPED, what="STOPPED")
        await until(lambda: not pid_alive(grandchild), what="the grandchild gone")
    run(scenario, program(tmp_path, "tree", code, stopasgroup=True))


def test_missing_command_is_a_spawn_error_then_fatal(tmp_path):
    settings = program(tmp_path, "ghost", "")
    settings = ProgramSettings(**{**settings.__dict__, "command": ("/no/such/program",)})

    async def scenario(sup):
        proc = sup.processes["ghost:ghost"]
        sup.start_autostart()
        await until(lambda: proc.state == S.FATAL, what="FATAL")
        assert "cannot run '/no/such/program'" in proc.spawn_error
    run(scenario, settings)


def test_flapping_program_is_fatal_with_reason(tmp_path):
    async def scenario(sup):
        proc = sup.processes["flap:flap"]
        sup.start_autostart()
        await until(lambda: proc.state == S.FATAL, timeout=20, what="FATAL")
        assert "max_restarts=2" in proc.fatal_reason
    run(scenario, program(tmp_path, "flap", "import time\ntime.sleep(0.3)\nraise SystemExit(3)", startsecs=0.1,
                          autorestart="true", max_restarts=2, restart_window=30))


def test_status_records(tmp_path):
    async def scenario(sup):
        sup.start_autostart()
        await until(lambda: sup.processes["web:web"].state == S.RUNNING, what="RUNNING")
        (record,) = sup.status()
        assert record["name"] == "web" and record["group"] == "web"
        assert record["statename"] == "RUNNING" and record["state"] == 20
        assert record["pid"] == sup.processes["web:web"].pid
    run(scenario, program(tmp_path, "web", LONG))


def test_children_die_with_a_killed_supervisor(tmp_path):
    """SIGKILL of the supervisor leaves no program running: PR_SET_PDEATHSIG in every child."""
    script = tmp_path / "supervise.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, sys
        sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parent.parent)!r}]
        from test_supervisor_process import config, program, LONG
        from pathlib import Path
        from wsgistack.supervisor.runtime import Supervisor
        loop = asyncio.new_event_loop()
        sup = Supervisor(config(program(Path({str(tmp_path)!r}), "web", LONG)), loop)
        sup.install_reaper()
        sup.start_autostart()
        print(sup.processes["web:web"].pid, flush=True)
        loop.run_forever()
    """))
    proc = subprocess.Popen([PY, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())
        assert pid_alive(child)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 2
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not pid_alive(child), "the program outlived its supervisor"
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def _listener_code(path: Path, delay: float) -> str:
    return (f"import socket, time\ntime.sleep({delay})\ns = socket.socket(socket.AF_UNIX)\ns.bind({str(path)!r})\n"
            "s.listen(8)\nwhile True:\n    c, _ = s.accept()\n    c.close()\n")


def test_readiness_check_gates_running(tmp_path):
    from wsgistack.supervisor.settings import ReadyCheck

    sock = tmp_path / "db.sock"

    async def scenario(sup):
        proc = sup.processes["db:db"]
        started = time.monotonic()
        sup.start_autostart()
        # whatever comes first: the socket, or a state change; a change before the socket means no gate
        await until(lambda: sock.exists() or proc.state != S.STARTING, what="the socket or a state change")
        assert sock.exists() or proc.state == S.STARTING, "RUNNING before the program was ready"
        await until(lambda: proc.state == S.RUNNING, what="RUNNING once ready")
        assert time.monotonic() - started >= 0.7
        assert sock.exists()
    run(scenario, program(tmp_path, "db", _listener_code(sock, 0.8), startsecs=0.1,
                          ready=ReadyCheck("unix", str(sock), 5.0)))


def test_never_ready_is_a_failed_start(tmp_path):
    from wsgistack.supervisor.settings import ReadyCheck

    async def scenario(sup):
        proc = sup.processes["mute:mute"]
        sup.start_autostart()
        await until(lambda: proc.state == S.FATAL, what="FATAL")
        assert "not ready after 0.5s" in proc.fatal_reason
    run(scenario, program(tmp_path, "mute", LONG, startsecs=0.1, startretries=0,
                          ready=ReadyCheck("tcp", "127.0.0.1:1", 0.5)))


def test_command_readiness_check(tmp_path):
    from wsgistack.supervisor.settings import ReadyCheck

    flag = tmp_path / "ready.flag"
    code = f"import time, pathlib\ntime.sleep(0.5)\npathlib.Path({str(flag)!r}).touch()\nwhile True: time.sleep(1)"

    async def scenario(sup):
        proc = sup.processes["job:job"]
        sup.start_autostart()
        await until(lambda: proc.state == S.RUNNING, what="RUNNING once the command succeeds")
        assert flag.exists()
    run(scenario, program(tmp_path, "job", code, startsecs=0.1,
                          ready=ReadyCheck("command", f"test -e {flag}", 5.0)))


def test_depends_on_starts_after_ready_and_stops_before(tmp_path):
    from wsgistack.supervisor.settings import ReadyCheck

    sock = tmp_path / "db.sock"
    db = program(tmp_path, "db", _listener_code(sock, 0.6), startsecs=0.1, priority=10,
                 ready=ReadyCheck("unix", str(sock), 5.0))
    web = program(tmp_path, "web", LONG, startsecs=0.1, priority=1, depends_on=("db",))

    async def scenario(sup):
        d, w = sup.processes["db:db"], sup.processes["web:web"]
        sup.start_autostart()
        assert w.state == S.STOPPED  # web's priority is lower, but it waits for db
        await until(lambda: w.state == S.RUNNING, what="web RUNNING")
        assert d.state == S.RUNNING and w.started_at >= d.started_at
        await sup.stop_all()
        assert w.stopped_at <= d.stopped_at, "the dependent stops first"
    run(scenario, db, web)


def test_full_log_disk_drops_output_and_never_blocks_the_program(tmp_path):
    # it lives past startsecs whatever the speed of its writes, so that it ends EXITED, not as a failed start
    code = "import sys, time\nstart = time.monotonic()\nfor i in range(20000): print('x' * 200)\n" \
           "sys.stdout.flush()\ntime.sleep(max(0.0, 0.5 - (time.monotonic() - start)))\n"
    settings = program(tmp_path, "loud", code, startsecs=0.1, autorestart="false",
                       stdout=LogSettings("/dev/full", maxbytes=0))

    async def scenario(sup):
        proc = sup.processes["loud:loud"]
        sup.start_autostart()
        await until(lambda: proc.state == S.EXITED, timeout=20, what="the program done (not blocked)")
        assert os.WEXITSTATUS(proc.exit_status) == 0
        await until(lambda: proc.stdout.dropped > 0, what="dropped bytes counted")
        assert sup.status()[0]["log_dropped"] > 0
    run(scenario, settings)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_and_umask(tmp_path):
    import pwd

    code = "import os\nmask = os.umask(0)\nprint(os.getuid(), oct(mask), flush=True)\nimport time\ntime.sleep(60)"
    # /bin/sh is readable by everyone, unlike this test's interpreter (under /root here): run python through
    # the system's, if any, else skip
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)), None)
    if python is None:
        pytest.skip("no system python for an unprivileged child")
    settings = program(tmp_path, "low", code, user="nobody", umask=0o027)
    settings = ProgramSettings(**{**settings.__dict__, "command": (python, "-c", code)})

    async def scenario(sup):
        proc = sup.processes["low:low"]
        sup.start_autostart()
        await until(lambda: b"\n" in proc.stdout.recent, what="a line of output")
        uid, mask = bytes(proc.stdout.recent).partition(b"\n")[0].decode().split()
        assert int(uid) == pwd.getpwnam("nobody").pw_uid
        assert mask == "0o27"
    run(scenario, settings)


def test_tail_and_signal_as_both_control_protocols_use_them(tmp_path):
    async def scenario(supervisor: Supervisor) -> None:
        process = supervisor.processes["quiet:quiet"]
        process.stdout.write(b"0123456789")
        assert supervisor.tail(process, "stdout", 0, 4) == ("6789", 10, True)  # the last 4, older left out
        assert supervisor.tail(process, "stdout", 7, None) == ("789", 10, False)  # what came after byte 7
        assert supervisor.tail(process, "stdout", 10, 4) == ("", 10, False)  # nothing new
        with pytest.raises(ValueError):
            supervisor.tail(process, "stdin", 0, None)
        with pytest.raises(ValueError):
            supervisor.signal([process], "NOSUCH")
        assert supervisor.signal([process], "SIGHUP") == {"quiet:quiet": False}  # not running

    run(scenario, program(tmp_path, "quiet", "pass", autostart=False))
