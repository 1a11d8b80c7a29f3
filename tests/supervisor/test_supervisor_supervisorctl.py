"""The real supervisorctl (from the supervisor package) driving wsgistack's supervisor over XML-RPC: every
command of supervisorctl 4.2 (`help` lists them) and the group forms.

Each test gets a `Target`: a running supervisor and the supervisorctl invocation that reaches it. Its
programs are the same whatever the config format (PROGRAMS); the tests assert on those names only, never
on the file, so a second fixture parameter (e.g. `wsgistack up` with a wsgistack.toml) runs them all alike.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from polling import wait_for
from processes import pid_alive
from supervisors import PY, accepting

from wsgistack import __version__
from wsgistack.supervisor.ctl import request

pytest.importorskip("supervisor")

SUPERVISORCTL = Path(sys.executable).parent / "supervisorctl"
STOP_TIME = re.compile(r"[A-Z][a-z]{2} \d\d \d\d:\d\d [AP]M")  # supervisord's description of a stopped process

# the programs every Target runs: name -> what it does
PROGRAMS = {
    "long": "sleeps; started at start-up",
    "ticker": "prints 200 `tick NNNNN` lines at once, then 50 a second; `got HUP` on SIGHUP; a line on stderr; "
              "`typed LINE` for each line of its stdin",
    "pool": "a group of two sleepers, pool:pool_00 and pool:pool_01",
    "fail": "exits 1 at once, no retries: FATAL",
    "manual": "sleeps, autostart off: STOPPED, never started",
}
SETTLED = {"long": "RUNNING", "ticker": "RUNNING", "pool:pool_00": "RUNNING", "pool:pool_01": "RUNNING",
           "fail": "FATAL", "manual": "STOPPED"}
SCRIPTS = {
    "long.py": "import time\nwhile True:\n    time.sleep(1)\n",
    "ticker.py": "import signal, sys, threading, time\n"
                 "signal.signal(signal.SIGHUP, lambda *a: print('got HUP', flush=True))\n"
                 "threading.Thread(target=lambda: [print('typed ' + line.strip(), flush=True) for line in sys.stdin],"
                 " daemon=True).start()\n"
                 "print('ticker on stderr', file=sys.stderr, flush=True)\n"
                 "i = 0\nwhile True:\n    print('tick %05d' % i, flush=True)\n    i += 1\n"
                 "    if i > 200:\n        time.sleep(0.02)\n",
    "fail.py": "raise SystemExit(1)\n",
}


def supervisorctl(conf: Path, *args: str) -> subprocess.CompletedProcess:
    command = [str(SUPERVISORCTL)] if SUPERVISORCTL.exists() else [shutil.which("supervisorctl") or "supervisorctl"]
    return subprocess.run([*command, "-c", str(conf), *args], capture_output=True, text=True, timeout=60, check=False)


def lines_by_name(text: str) -> dict[str, str]:
    return {line.split()[0]: line for line in text.splitlines() if line.strip()}


@dataclass
class Target:
    """A running supervisor with PROGRAMS, and how supervisorctl reaches it."""

    config: Path  # the file the supervisor runs
    argv: list[str]  # supervisorctl and its options for this supervisor (-c FILE, or -s URL -u -p)
    socket: Path  # its unix control socket (states are read there directly: milliseconds, not a Python start)
    process: subprocess.Popen
    add_program: Callable[[str], None]  # write one more sleeper into the config
    drop_program: Callable[[str], None]  # take one program out of the config
    settled: dict[str, str] = field(default_factory=lambda: dict(SETTLED))  # where start-up leaves everything

    def run(self, *args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess:
        """supervisorctl ARGS against this supervisor."""
        return subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=60, stdin=stdin, check=False)

    def records(self) -> dict[str, dict]:
        """Status records by the name supervisorctl shows (`long`, `pool:pool_00`)."""
        answer = request(str(self.socket), "status")
        assert answer["ok"], answer
        return {r["name"] if r["name"] == r["group"] else f"{r['group']}:{r['name']}": r for r in answer["result"]}

    def states(self) -> dict[str, str]:
        return {name: record["statename"] for name, record in self.records().items()}

    def settle(self) -> dict[str, dict]:
        """Wait until PROGRAMS are where start-up leaves them (SETTLED); their records."""
        return wait_for(lambda: (r := self.records()) and all(r.get(n, {}).get("statename") == s
                                                              for n, s in self.settled.items()) and r,
                        timeout=20, message=f"the settled states {self.settled}")


def _write_scripts(folder: Path) -> Path:
    scripts = folder / "scripts"
    scripts.mkdir()
    for name, text in SCRIPTS.items():
        (scripts / name).write_text(text)
    return scripts


def _ini_program(name: str, scripts: Path) -> str:
    sections = {
        "long": f"command={PY} {scripts}/long.py\n",
        "ticker": f"command={PY} {scripts}/ticker.py\nstdout_logfile=%(here)s/logs/ticker.log\n"
                  "stderr_logfile=%(here)s/logs/ticker.err\n",
        "pool": f"command={PY} {scripts}/long.py\nprocess_name=%(program_name)s_%(process_num)02d\nnumprocs=2\n",
        "fail": f"command={PY} {scripts}/fail.py\nstartretries=0\n",
        "manual": f"command={PY} {scripts}/long.py\nautostart=false\n",
    }
    body = sections.get(name, f"command={PY} {scripts}/long.py\n")
    return f"[program:{name}]\n{body}startsecs={_startsecs(name)}\n\n"


def start_supervise(folder: Path) -> Target:
    """`wsgistack supervise -n` on a supervisord.conf as supervisord's docs write them; supervisorctl -c FILE."""
    scripts = _write_scripts(folder)
    conf = folder / "supervisord.conf"
    conf.write_text(textwrap.dedent("""\
        [unix_http_server]
        file=%(here)s/supervisor.sock

        [supervisord]
        logfile=%(here)s/supervisord.log
        pidfile=%(here)s/supervisord.pid
        childlogdir=%(here)s/logs

        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

        [supervisorctl]
        serverurl=unix://%(here)s/supervisor.sock

        """) + "".join(_ini_program(name, scripts) for name in PROGRAMS))

    def drop_program(name: str) -> None:
        conf.write_text(conf.read_text().replace(_ini_program(name, scripts), ""))

    process = subprocess.Popen([PY, "-m", "wsgistack", "supervise", "-n", "-c", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Target(conf, [str(SUPERVISORCTL), "-c", str(conf)], folder / "supervisor.sock", process,
                  add_program=lambda name: conf.write_text(conf.read_text() + _ini_program(name, scripts)),
                  drop_program=drop_program)


def _toml_program(name: str, scripts: Path) -> str:
    options = {
        "long": f'command = "{PY} {scripts}/long.py"\n',
        "ticker": f'command = "{PY} {scripts}/ticker.py"\nstdout_logfile = "%(here)s/logs/ticker.log"\n'
                  'stderr_logfile = "%(here)s/logs/ticker.err"\n',
        "pool": f'command = "{PY} {scripts}/long.py"\nprocess_name = "%(program_name)s_%(process_num)02d"\n'
                "numprocs = 2\n",
        "fail": f'command = "{PY} {scripts}/fail.py"\nstartretries = 0\n',
        "manual": f'command = "{PY} {scripts}/long.py"\nautostart = false\n',
    }
    body = options.get(name, f'command = "{PY} {scripts}/long.py"\n')
    return f"[programs.{name}]\n{body}startsecs = {_startsecs(name)}\n\n"


def _startsecs(name: str) -> float:
    """0.2 s for the programs that keep running (RUNNING soon); for `fail`, long enough that its exit always
    comes first: a Python that took over 0.2 s to start and exit on a loaded machine counted as started."""
    return 10.0 if name == "fail" else 0.2


def start_up(folder: Path) -> Target:
    """`wsgistack up` on a wsgistack.toml: an app server and the proxy in front of it besides PROGRAMS; the real
    supervisorctl reaches it with -s unix://SOCKET (the control socket in the stack's run folder)."""
    from stacks import free_port, write_release

    from wsgistack.supervisor.toml_config import stack_run_dir

    scripts = _write_scripts(folder)
    (folder / "logs").mkdir()
    write_release(folder, "up")
    conf = folder / "wsgistack.toml"
    head = (f'[serve]\napp = "hello:app"\nworkers = 1\n\n[proxy]\nlisten = ["127.0.0.1:{free_port()}"]\n\n'
            '[supervisor]\nchildlogdir = "%(here)s/logs"\nlogfile = "%(here)s/supervisor.log"\n\n')
    conf.write_text(head + "".join(_toml_program(name, scripts) for name in PROGRAMS))

    def drop_program(name: str) -> None:
        conf.write_text(conf.read_text().replace(_toml_program(name, scripts), ""))

    process = subprocess.Popen([PY, "-m", "wsgistack", "up", "-c", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socket = Path(stack_run_dir(str(conf))) / "supervisor.sock"
    return Target(conf, [str(SUPERVISORCTL), "-s", f"unix://{socket}"], socket, process,
                  add_program=lambda name: conf.write_text(conf.read_text() + _toml_program(name, scripts)),
                  drop_program=drop_program, settled={**SETTLED, "app": "RUNNING", "proxy": "RUNNING"})


STARTERS = {"supervise": start_supervise, "up": start_up}


@pytest.fixture(params=sorted(STARTERS))
def target(request, tmp_path):
    """A Target, stopped at the end whatever happened."""
    if not SUPERVISORCTL.exists():
        pytest.skip("supervisorctl is not installed beside this Python")
    running = STARTERS[request.param](tmp_path)
    try:
        wait_for(lambda: accepting(running.socket), message="the control socket")
        running.settle()
        assert running.process.poll() is None, "the supervisor left the foreground"
        yield running
    finally:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGTERM)
            try:
                running.process.wait(20)
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait(5)


# -- status, pid, version, help, exit, quit, open ---------------------------------------------------------

def test_status_all_one_group_and_missing(target):
    out = target.run("status")
    shown = lines_by_name(out.stdout)
    assert out.returncode == 3, out  # some process is not running (LSB), as supervisorctl says
    for name, state in SETTLED.items():
        assert shown[name].split()[1] == state, shown[name]
    assert re.search(r"RUNNING +pid \d+, uptime 0:00:\d\d$", shown["long"]), shown["long"]
    assert shown["manual"].split()[1:] == ["STOPPED", "Not", "started"]
    assert shown["fail"].split(None, 2)[2].startswith("gave up after 1 failed starts")
    one = target.run("status", "long")
    assert one.returncode == 0 and one.stdout.split()[:2] == ["long", "RUNNING"], one
    group = target.run("status", "pool:*")
    assert sorted(lines_by_name(group.stdout)) == ["pool:pool_00", "pool:pool_01"], group
    missing = target.run("status", "nosuch")
    assert missing.stdout.strip() == "nosuch: ERROR (no such process)" and missing.returncode == 4, missing


def test_pid_version_help_exit_quit_open(target):
    records = target.records()
    assert target.run("pid").stdout.strip() == str(target.process.pid)
    assert target.run("pid", "long").stdout.strip() == str(records["long"]["pid"])
    every = target.run("pid", "all").stdout.split()
    assert sorted(map(int, every)) == sorted(r["pid"] for r in records.values())
    assert target.run("pid", "nosuch").stdout.strip() == "No such process nosuch"
    assert target.run("version").stdout.strip() == f"wsgistack {__version__}"
    listed = target.run("help").stdout
    for command in ("add", "avail", "clear", "exit", "fg", "help", "maintail", "open", "pid", "quit", "reload",
                    "remove", "reread", "restart", "shutdown", "signal", "start", "status", "stop", "tail",
                    "update", "version"):
        assert re.search(rf"\b{command}\b", listed), command
    assert "tail -f <name>" in target.run("help", "tail").stdout
    for word in ("exit", "quit"):
        done = target.run(word)
        assert done.returncode == 0 and done.stdout.strip() == "", done
    opened = target.run("open", f"unix://{target.socket}")  # then status, from the new server
    assert lines_by_name(opened.stdout)["long"].split()[1] == "RUNNING", opened
    assert target.run("open", "ftp://elsewhere").stdout.strip() == "ERROR: url must be http:// or unix://"


# -- start, stop, restart: one process, a group, all --------------------------------------------------------

def test_stop_returns_once_stopped_then_start_and_restart(target):
    before = target.records()["long"]["pid"]
    out = target.run("stop", "long")
    assert out.stdout.strip() == "long: stopped", out
    assert not pid_alive(before)  # stopped, not stopping, when supervisorctl says so
    shown = lines_by_name(target.run("status", "long").stdout)["long"]
    assert shown.split()[1] == "STOPPED" and STOP_TIME.search(shown), shown  # not "Not started"
    assert target.run("stop", "long").stdout.strip() == "long: ERROR (not running)"
    out = target.run("start", "long")
    assert out.stdout.strip() == "long: started" and target.states()["long"] == "RUNNING", out
    assert target.run("start", "long").stdout.strip() == "long: ERROR (already started)"
    started = target.records()["long"]["pid"]
    out = target.run("restart", "long")
    assert out.stdout.splitlines() == ["long: stopped", "long: started"], out
    assert target.records()["long"]["pid"] not in (0, started)
    assert target.run("start", "fail").stdout.strip() == "fail: ERROR (spawn error)"
    assert target.run("start", "nosuch").stdout.strip() == "nosuch: ERROR (no such process)"
    assert target.run("stop", "nosuch:*").stdout.strip() == "nosuch: ERROR (no such group)"


def test_group_and_all_forms(target):
    out = target.run("stop", "pool:*")
    assert sorted(out.stdout.splitlines()) == ["pool:pool_00: stopped", "pool:pool_01: stopped"], out
    assert target.run("start", "pool:*").stdout.splitlines() == ["pool:pool_00: started", "pool:pool_01: started"]
    out = target.run("restart", "pool:*")
    assert sorted(out.stdout.splitlines()) == ["pool:pool_00: started", "pool:pool_00: stopped",
                                               "pool:pool_01: started", "pool:pool_01: stopped"], out
    out = target.run("stop", "all")
    stopped = set(out.stdout.splitlines())
    assert {"long: stopped", "ticker: stopped", "pool:pool_00: stopped", "pool:pool_01: stopped"} <= stopped, out
    assert not any(state == "RUNNING" for state in target.states().values())
    out = target.run("start", "all")
    started = set(out.stdout.splitlines())
    assert {"long: started", "manual: started", "pool:pool_01: started", "fail: ERROR (spawn error)"} <= started, out
    assert all(target.states()[name] == "RUNNING" for name in ("long", "ticker", "manual", "pool:pool_00"))


# -- signal -------------------------------------------------------------------------------------------------

def test_signal_one_group_all_and_errors(target):
    assert target.run("signal", "HUP", "ticker").stdout.strip() == "ticker: signalled"
    # the last 64 KiB: two minutes of ticks, so a slow poll cannot miss the line
    wait_for(lambda: "got HUP" in target.run("tail", "-65536", "ticker").stdout, message="the HUP handled")
    out = target.run("signal", "WINCH", "pool:*")  # WINCH: ignored by default, so the programs live on
    assert sorted(out.stdout.splitlines()) == ["pool:pool_00: signalled", "pool:pool_01: signalled"], out
    out = target.run("signal", "WINCH", "all")
    signalled = set(out.stdout.splitlines())
    assert {"long: signalled", "ticker: signalled", "pool:pool_01: signalled"} <= signalled, out
    assert not any(line.startswith(("manual", "fail")) for line in signalled)  # only running ones
    assert target.run("signal", "NOSUCH", "long").stdout.strip() == "long: ERROR (bad signal name)"
    assert target.run("signal", "WINCH", "manual").stdout.strip() == "manual: ERROR (not running)"
    assert target.states()["long"] == "RUNNING"


# -- tail, maintail, clear ----------------------------------------------------------------------------------

def _follow(target: Target, *args: str, until: Callable[[str], bool], then: Callable[[], object] = lambda: None,
            timeout: float = 10.0, stdin: int = subprocess.DEVNULL) -> str:
    """Run supervisorctl ARGS (a -f form), do `then` once it has printed its first line, and read until its
    output satisfies `until` (within `timeout`); the output."""
    follower = subprocess.Popen([*target.argv, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=stdin)
    assert follower.stdout is not None
    seen, acted = b"", False
    deadline = time.monotonic() + timeout
    try:
        while not until(seen.decode()):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([follower.stdout], [], [], left)[0]:
                raise AssertionError(f"supervisorctl {' '.join(args)}: not there after {timeout}s: {seen!r}")
            data = os.read(follower.stdout.fileno(), 65536)
            if not data:
                raise AssertionError(f"supervisorctl {' '.join(args)} ended: {seen!r}")
            seen += data
            if not acted and b"\n" in seen:
                acted = True
                then()
        return seen.decode()
    finally:
        follower.kill()
        follower.wait(10)
        follower.stdout.close()


def test_tail_last_bytes_stderr_and_follow(target):
    wait_for(lambda: len(target.run("tail", "ticker").stdout) > 1600, message="1600 bytes of ticks")
    assert len(target.run("tail", "ticker").stdout) == 1601  # the last 1600 bytes, and print's newline
    last = target.run("tail", "-300", "ticker").stdout
    assert len(last) == 301 and re.search(r"tick \d{5}\n$", last), last  # the last 300 bytes, not the whole log
    assert target.run("tail", "ticker", "stderr").stdout == "ticker on stderr\n\n"
    assert target.run("tail", "nosuch").stdout.strip() == "nosuch: ERROR (no such process name)"
    seen = _follow(target, "tail", "-f", "ticker", until=lambda text: len(re.findall(r"^tick \d{5}$", text,
                                                                                       re.MULTILINE)) >= 80)
    assert seen.startswith("==> Press Ctrl-C to exit <==\n")
    ticks = [int(n) for n in re.findall(r"^tick (\d{5})$", seen, re.MULTILINE)]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # in order, none lost, none twice
    out = _follow(target, "tail", "-f", "ticker", "stderr", until=lambda text: "ticker on stderr" in text)
    assert "ticker on stderr" in out


def test_maintail_last_bytes_and_follow(target):
    target.run("start", "manual")  # its lines are the log's last ones
    whole = target.run("maintail").stdout
    assert "manual:manual: spawned pid" in whole and len(whole) <= 1601, whole  # at most the last 1600 bytes
    assert len(target.run("maintail", "-100").stdout) == 101
    # -f: the log's last bytes, then what comes (a start logs new lines while we follow)
    seen = _follow(target, "maintail", "-f", until=lambda text: "manual:manual: STOPPING -> STOPPED" in text,
                   then=lambda: target.run("stop", "manual"))
    assert seen.startswith("==> Press Ctrl-C to exit <==\n")


def test_clear_one_and_all(target):
    wait_for(lambda: "tick 00200" in target.run("tail", "ticker").stdout, message="the first ticks")
    before = int(re.findall(r"tick (\d{5})", target.run("tail", "ticker").stdout)[-1])
    assert target.run("clear", "ticker").stdout.strip() == "ticker: cleared"
    ticks = [int(n) for n in re.findall(r"^tick (\d{5})$", target.run("tail", "ticker").stdout, re.MULTILINE)]
    assert all(n > before for n in ticks), (before, ticks)  # only what came after the clear
    out = target.run("clear", "all")
    assert {f"{name}: cleared" for name in SETTLED} <= set(out.stdout.splitlines()), out
    assert target.run("clear", "nosuch").stdout.strip() == "nosuch: ERROR (no such process)"


# -- avail, reread, add, remove, update, reload, shutdown -----------------------------------------------------

def test_avail(target):
    shown = lines_by_name(target.run("avail").stdout)
    for name in SETTLED:
        assert shown[name].split()[1:3] == ["in", "use"], shown[name]
    assert shown["manual"].split()[3] == "manual" and shown["long"].split()[3] == "auto"
    assert re.fullmatch(r"\d+:\d+", shown["long"].split()[4])  # group and process priority


def test_reread_add_remove_update(target):
    kept = target.records()
    target.add_program("extra")
    target.drop_program("manual")
    out = target.run("reread")
    assert sorted(out.stdout.splitlines()) == ["extra: available", "manual: disappeared"], out
    assert lines_by_name(target.run("avail").stdout)["extra"].split()[1] == "avail"
    assert target.run("add", "extra").stdout.strip() == "extra: added process group"
    assert target.run("add", "extra").stdout.strip() == "ERROR: process group already active"
    wait_for(lambda: target.states().get("extra") == "RUNNING", message="extra RUNNING")
    assert target.run("remove", "extra").stdout.strip() == "ERROR: process/group still running: extra"
    assert target.run("stop", "extra").stdout.strip() == "extra: stopped"
    assert target.run("remove", "extra").stdout.strip() == "extra: removed process group"
    assert "extra" not in target.states()
    assert target.run("remove", "nosuch").stdout.strip() == "ERROR: no such process/group: nosuch"
    out = target.run("update", "extra")  # only the named group
    assert out.stdout.strip() == "extra: added process group", out
    assert "manual" in target.states()
    out = target.run("update", "all")
    assert out.stdout.splitlines() == ["manual: stopped", "manual: removed process group"], out
    assert target.run("update").stdout == ""  # nothing left to do
    after = target.records()
    assert "manual" not in after and after["extra"]["statename"] in ("STARTING", "RUNNING")
    for name in ("long", "ticker", "pool:pool_00", "pool:pool_01"):
        assert after[name]["pid"] == kept[name]["pid"], f"{name} was restarted"


def test_reload_restarts_everything_from_the_file(target):
    before = target.records()
    target.add_program("extra")
    assert target.run("reload").stdout.strip() == "Restarted supervisord"
    after = wait_for(lambda: (r := target.records()) and r.get("extra", {}).get("statename") == "RUNNING" and
                     r["long"]["statename"] == "RUNNING" and r, message="everything started again")
    assert after["long"]["pid"] != before["long"]["pid"]
    assert target.process.poll() is None  # the same supervisor, restarted in place


def test_shutdown(target):
    pids = [r["pid"] for r in target.records().values() if r["pid"]]
    out = target.run("shutdown")
    assert out.stdout.strip() == "Shut down", out
    assert target.process.wait(20) == 0
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), timeout=5, message="no child left")


# -- fg ------------------------------------------------------------------------------------------------------

def test_fg_shows_the_output_types_into_stdin_and_refuses_what_it_must(target):
    """fg on a terminal (a pty) shows the program's output as it comes, and what is typed reaches its stdin
    (a pipe, as supervisord gives)."""
    primary, terminal = pty.openpty()
    try:
        seen = _follow(target, "fg", "ticker", stdin=terminal,
                       until=lambda text: len(re.findall(r"^tick \d{5}$", text, re.MULTILINE)) >= 10)
        typed = _follow(target, "fg", "ticker", stdin=terminal, then=lambda: os.write(primary, b"hello\n"),
                        until=lambda text: "typed hello" in text)
        assert "Exiting foreground" not in typed and "ERROR" not in typed, typed
    finally:
        os.close(primary)
        os.close(terminal)
    assert seen.startswith("==> Press Ctrl-C to exit <==\n"), seen
    assert target.run("fg", "manual").stdout.strip() == "ERROR: process not running"
    assert target.run("fg", "nosuch").stdout.strip() == "ERROR: bad process name supplied"
    assert target.run("fg").stdout.startswith("ERROR: no process name supplied")


def test_same_conf_same_states_as_real_supervisord(tmp_path):
    """The same supervisord.conf under real supervisord and under wsgistack reaches the same states."""
    from supervisors import PY, write_conf

    def states_under(command: list[str], folder: Path) -> dict[str, str]:
        folder.mkdir()
        conf = write_conf(folder, startsecs="1")  # supervisord takes whole seconds only
        (folder / "logs").mkdir(exist_ok=True)
        proc = subprocess.Popen([*command, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            def settled():
                if not (folder / "supervisor.sock").exists():
                    return None
                shown = {line.split()[0]: line.split()[1]
                         for line in supervisorctl(conf, "status").stdout.splitlines() if line.strip()}
                stable = {name: state for name, state in shown.items() if name != "late"}
                return stable if stable.get("fail") == "FATAL" and stable.get("long") == "RUNNING" and \
                    all(state in ("RUNNING", "FATAL") for state in stable.values()) else None
            return wait_for(settled, timeout=40, message="settled states")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    supervisord = Path(sys.executable).parent / "supervisord"
    if not supervisord.exists():
        pytest.skip("supervisord is not installed beside this Python")
    theirs = states_under([str(supervisord), "-n"], tmp_path / "supervisord")
    ours = states_under([PY, "-m", "wsgistack", "supervise"], tmp_path / "wsgistack")
    assert ours == theirs
    assert theirs == {"long": "RUNNING", "fail": "FATAL", "pool:pool_00": "RUNNING", "pool:pool_01": "RUNNING",
                      "pool:pool_02": "RUNNING", "chatty": "RUNNING", "env": "RUNNING"}


def test_supervisorctl_over_inet_http_server_with_credentials(tmp_path):
    import socket as socketlib

    from supervisors import PY

    probe = socketlib.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[inet_http_server]\nport=127.0.0.1:{port}\nusername=admin\npassword=s3cret\n"
                    f"[supervisord]\nlogfile=%(here)s/s.log\n"
                    f"[supervisorctl]\nserverurl=http://127.0.0.1:{port}\nusername=admin\npassword=s3cret\n"
                    f"[program:long]\ncommand={PY} -c 'import time; time.sleep(60)'\nstartsecs=0\n")
    proc = subprocess.Popen([PY, "-m", "wsgistack", "supervise", "-n", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        out = wait_for(lambda: (r := supervisorctl(conf, "status")).stdout.startswith("long") and r,
                       message="status over TCP")
        assert out.stdout.split()[1] == "RUNNING"
        wrong = subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-s",
                                f"http://127.0.0.1:{port}", "-u", "admin", "-p", "wrong", "status"],
                               capture_output=True, text=True, timeout=30)
        assert "RUNNING" not in wrong.stdout
        with socketlib.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b'{"cmd": "shutdown", "args": []}\n')  # the JSON protocol is not served over TCP
            assert raw.recv(4096).split(b" ")[1] == b"400"
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(20)


def test_inet_http_server_without_credentials_is_refused(tmp_path):
    from supervisors import PY

    conf = tmp_path / "supervisord.conf"
    conf.write_text("[inet_http_server]\nport=127.0.0.1:9\n[supervisord]\n"
                    f"[program:long]\ncommand={PY} -c 'pass'\n")
    result = subprocess.run([PY, "-m", "wsgistack", "supervise", "-c", str(conf)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "needs username and password" in result.stderr and "Traceback" not in result.stderr
