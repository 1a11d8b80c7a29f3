"""`wsgistack supervise -c supervisord.conf` driven by `wsgistack ctl`, black-box, with real programs."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time

import pytest
from polling import wait_for
from supervisors import PY, accepting, ctl, pid_alive, status


def test_status_states_numprocs_logs_environment(supervised, tmp_path):
    conf, _ = supervised
    records = wait_for(lambda: (s := status(conf)) and s["long:long"]["statename"] == "RUNNING"
                       and s["fail:fail"]["statename"] == "FATAL" and s["late:late"]["restarts"] >= 1 and s,
                       timeout=20, message="RUNNING, FATAL and a restart")
    assert {name for name in records if name.startswith("pool:")} == {"pool:pool_00", "pool:pool_01", "pool:pool_02"}
    assert all(records[f"pool:pool_0{i}"]["statename"] == "RUNNING" for i in range(3))
    wait_for(lambda: (tmp_path / "logs" / "chatty.log.2").exists(), message="rotated logs")
    assert sorted(p.name for p in (tmp_path / "logs").glob("chatty.log*")) == \
        ["chatty.log", "chatty.log.1", "chatty.log.2"]
    wait_for(lambda: (tmp_path / "logs" / "chatty.log").read_text().endswith("chatter line 01999\n"),
             message="the whole output written")
    for name in ("chatty.log.2", "chatty.log.1", "chatty.log"):  # every rotated file holds whole lines
        lines = (tmp_path / "logs" / name).read_text().split("\n")
        assert lines[-1] == "" and all(line.startswith("chatter line ") and len(line) == 18 for line in lines[:-1])
    tail = ctl(conf, "tail", "env")
    assert tail.returncode == 0 and tail.stdout.strip() == "hello, world eu"
    assert ctl(conf, "status").returncode == 3  # FATAL and EXITED processes: "not all running"
    as_json = json.loads(ctl(conf, "status", "--json").stdout)
    assert {f"{r['group']}:{r['name']}" for r in as_json} == set(records)
    line = next(x for x in ctl(conf, "status").stdout.splitlines() if x.startswith("long "))
    assert "RUNNING" in line and "pid " in line and "uptime " in line


def test_killed_program_is_running_again_within_a_second(supervised):
    conf, _ = supervised
    old = wait_for(lambda: (r := status(conf)["long:long"])["statename"] == "RUNNING" and r["pid"], message="RUNNING")
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: (r := status(conf)["long:long"])["pid"] not in (0, old) and r["statename"] == "RUNNING",
             timeout=1.0, message="a new pid RUNNING within 1 s (startsecs is 0.5)")
    assert time.monotonic() - killed < 1.0


def test_stop_start_restart_and_errors(supervised):
    conf, _ = supervised
    first = wait_for(lambda: (r := status(conf)["long:long"])["statename"] == "RUNNING" and r["pid"],
                     message="RUNNING")
    stopped = ctl(conf, "stop", "long")
    assert stopped.returncode == 0 and stopped.stdout == "long:long: stopped\n", stopped
    assert status(conf)["long:long"]["statename"] == "STOPPED" and not pid_alive(first)  # stop waits, as supervisorctl
    line = ctl(conf, "status", "long").stdout
    assert re.fullmatch(r"long +STOPPED +[A-Z][a-z]{2} \d\d \d\d:\d\d [AP]M\n", line), line  # its stop time
    assert ctl(conf, "start", "long").returncode == 0
    second = wait_for(lambda: (r := status(conf)["long:long"])["statename"] == "RUNNING" and r["pid"],
                      message="RUNNING again")
    assert ctl(conf, "restart", "long").returncode == 0
    wait_for(lambda: (r := status(conf)["long:long"])["statename"] == "RUNNING" and r["pid"] != second,
             message="restarted")
    assert ctl(conf, "stop", "pool:*").returncode == 0
    wait_for(lambda: all(r["statename"] == "STOPPED" for n, r in status(conf).items() if n.startswith("pool:")),
             message="the group stopped")
    missing = ctl(conf, "start", "nosuch")
    assert missing.returncode == 1 and missing.stderr.strip() == "wsgistack ctl: no such process: nosuch"


def test_control_socket_is_private_and_shutdown_leaves_no_child(supervised, tmp_path):
    conf, proc = supervised
    mode = stat.S_IMODE(os.stat(tmp_path / "supervisor.sock").st_mode)
    assert mode & 0o077 == 0, oct(mode)
    pids = wait_for(lambda: [r["pid"] for r in status(conf).values() if r["statename"] == "RUNNING"] or None,
                    message="running children")
    assert ctl(conf, "shutdown").returncode == 0
    assert proc.wait(20) == 0
    assert not any(pid_alive(pid) for pid in pids)
    assert not (tmp_path / "supervisor.sock").exists()


def test_sigkill_of_the_supervisor_leaves_no_child(supervised):
    conf, proc = supervised
    pids = wait_for(lambda: [r["pid"] for r in status(conf).values() if r["statename"] == "RUNNING"] or None,
                    message="running children")
    proc.kill()
    proc.wait(10)
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), timeout=2.0, message="every child gone within 2 s")


def _edit_conf(conf, tmp_path):
    """Remove [program:late], add [program:extra]."""
    text = conf.read_text()
    start = text.index("[program:late]")
    end = text.index("[program:pool]")
    text = text[:start] + text[end:] + f"\n[program:extra]\ncommand={PY} {tmp_path}/scripts/long.py\nstartsecs=0.5\n"
    conf.write_text(text)


def test_reread_and_update_touch_only_what_changed(supervised, tmp_path):
    conf, _ = supervised
    before = wait_for(lambda: (s := status(conf)) and s["long:long"]["statename"] == "RUNNING" and
                      all(s[f"pool:pool_0{i}"]["statename"] == "RUNNING" for i in range(3)) and s, message="RUNNING")
    _edit_conf(conf, tmp_path)
    reread = ctl(conf, "reread")
    assert reread.returncode == 0
    assert sorted(reread.stdout.splitlines()) == ["extra: available", "late: disappeared"]
    update = ctl(conf, "update")
    assert update.returncode == 0, update.stderr
    assert sorted(update.stdout.splitlines()) == ["extra: added", "late: stopped and removed"]
    after = wait_for(lambda: (s := status(conf)) and s.get("extra:extra", {}).get("statename") == "RUNNING" and s,
                     message="extra RUNNING")
    assert "late:late" not in after
    for name in ("long:long", "pool:pool_00", "pool:pool_01", "pool:pool_02", "env:env", "chatty:chatty"):
        assert after[name]["pid"] == before[name]["pid"], f"{name} was restarted"
    assert ctl(conf, "update").stdout.strip() == "No config updates to processes"


def test_sighup_applies_the_config_and_usr2_reopens_logs(supervised, tmp_path):
    conf, proc = supervised
    before = wait_for(lambda: (s := status(conf)) and s["long:long"]["statename"] == "RUNNING" and s, message="RUNNING")
    _edit_conf(conf, tmp_path)
    proc.send_signal(signal.SIGHUP)
    after = wait_for(lambda: (s := status(conf)) and s.get("extra:extra", {}).get("statename") == "RUNNING" and s,
                     message="extra RUNNING after SIGHUP")
    assert "late:late" not in after and after["long:long"]["pid"] == before["long:long"]["pid"]
    log = tmp_path / "logs" / "chatty.log"
    wait_for(log.exists, message="the chatty log")
    log.rename(tmp_path / "logs" / "chatty.old")
    proc.send_signal(signal.SIGUSR2)
    wait_for(lambda: "log files reopened" in (tmp_path / "supervisord.log").read_text(), message="the reopen")
    assert ctl(conf, "restart", "chatty").returncode == 0
    wait_for(lambda: log.exists() and "chatter line 01999" in log.read_text(), message="output in the new file")


@pytest.mark.parametrize(("nodaemon", "flags"), [("", ()), ("nodaemon=false\n", ()),
                                                  ("nodaemon=true\n", ("--daemon",))])
def test_daemon_mode(tmp_path, nodaemon, flags):
    """supervisord.conf detaches as supervisord does: unless nodaemon=true (default false); --daemon always."""
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[unix_http_server]\nfile=%(here)s/s.sock\n[supervisord]\npidfile=%(here)s/s.pid\n{nodaemon}"
                    f"logfile=%(here)s/s.log\n[program:long]\ncommand={PY} -c 'import time; time.sleep(60)'\n"
                    f"startsecs=0.2\n")
    started = subprocess.run([PY, "-m", "wsgistack", "supervise", *flags, "-c", str(conf)], timeout=30)
    assert started.returncode == 0  # the foreground process returns; the daemon lives on
    pid = int(wait_for(lambda: (tmp_path / "s.pid").exists() and (tmp_path / "s.pid").read_text().strip(),
                       message="the pid file"))
    try:
        wait_for(lambda: accepting(tmp_path / "s.sock") and status(conf)["long:long"]["statename"] == "RUNNING",
                 message="RUNNING under the daemon")
        assert ctl(conf, "shutdown").returncode == 0
        wait_for(lambda: not pid_alive(pid), message="the daemon gone")
        assert not (tmp_path / "s.pid").exists()
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_tail_follow_signal_and_pid(tmp_path):
    script = tmp_path / "ticker.py"
    script.write_text("import signal, sys, time\n"
                      "signal.signal(signal.SIGHUP, lambda *a: print('got HUP', flush=True))\n"
                      "i = 0\nwhile True:\n    print('tick', i, flush=True)\n    i += 1\n"
                      "    if i > 400:\n        time.sleep(0.1)\n")  # 400 at once: more than tail's window
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[unix_http_server]\nfile=%(here)s/s.sock\n[supervisord]\nlogfile=%(here)s/s.log\n"
                    f"[program:ticker]\ncommand={PY} {script}\nstartsecs=0.2\n")
    proc = subprocess.Popen([PY, "-m", "wsgistack", "supervise", "-n", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    follower = None
    try:
        record = wait_for(lambda: accepting(tmp_path / "s.sock") and
                          (r := status(conf)["ticker:ticker"])["statename"] == "RUNNING" and r, message="RUNNING")
        pids = ctl(conf, "pid", "ticker", "--json")
        assert json.loads(pids.stdout) == {"ticker:ticker": record["pid"]}
        assert int(ctl(conf, "pid").stdout) == proc.pid
        assert ctl(conf, "signal", "HUP", "ticker").returncode == 0
        wait_for(lambda: "got HUP" in ctl(conf, "tail", "ticker").stdout, message="the HUP handled")
        follower = subprocess.Popen([PY, "-m", "wsgistack", "ctl", "-c", str(conf), "tail", "-f", "ticker"],
                                    stdout=subprocess.PIPE, text=True)
        seen = [follower.stdout.readline() for _ in range(40)]
        assert all(re.fullmatch(r"tick \d+\n|got HUP\n", line) for line in seen), seen  # whole lines from the first
        ticks = [int(line.split()[1]) for line in seen if line.startswith("tick ")]
        assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks) and ticks[-1] - ticks[0] >= 10
        assert ctl(conf, "signal", "NOSUCH", "ticker").returncode == 1
    finally:
        if follower is not None:
            follower.kill()
            follower.wait(10)
            follower.stdout.close()
        proc.terminate()
        proc.wait(20)


def test_ctl_finds_the_config_as_supervisorctl_does(supervised, tmp_path):
    """Without -c or -s: $WSGISTACK_CONFIG, ./wsgistack.toml, then supervisorctl's places: ./supervisord.conf,
    ./etc/supervisord.conf, /etc/supervisord.conf, /etc/supervisor/supervisord.conf."""
    env = {key: value for key, value in os.environ.items() if key != "WSGISTACK_CONFIG"}

    def ctl_in(folder, *args):
        return subprocess.run([PY, "-m", "wsgistack", "ctl", *args], capture_output=True, text=True, timeout=30,
                              cwd=folder, env=env, check=False)

    wait_for(lambda: status(tmp_path / "supervisord.conf")["long:long"]["statename"] == "RUNNING", message="RUNNING")
    here = ctl_in(tmp_path, "status", "long")
    assert here.returncode == 0 and here.stdout.split()[:2] == ["long", "RUNNING"], here
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "etc").mkdir(parents=True)
    (elsewhere / "etc" / "supervisord.conf").write_text(f"[unix_http_server]\nfile={tmp_path}/supervisor.sock\n")
    below = ctl_in(elsewhere, "pid")
    assert below.returncode == 0 and int(below.stdout) > 0, below
    if not any(os.path.exists(p) for p in ("/etc/supervisord.conf", "/etc/supervisor/supervisord.conf")):
        (elsewhere / "etc" / "supervisord.conf").unlink()
        none = ctl_in(elsewhere, "status")
        assert none.returncode == 2 and none.stderr.count("\n") == 1, none
        assert none.stderr.startswith("wsgistack ctl: error: name the supervisor: -c CONFIG or -s SOCKET (found none "
                                      "of wsgistack.toml, supervisord.conf, etc/supervisord.conf"), none
