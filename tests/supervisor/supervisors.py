"""Helpers of the supervisor tests: the control client, a supervisord.conf as supervisord's docs write them."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from processes import pid_alive  # noqa: F401 (the tests import it from here)

PY = sys.executable


def ctl(conf: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "wsgistack", "ctl", "-c", str(conf), *args], capture_output=True,
                          text=True, timeout=30)


def status(conf: Path) -> dict[str, dict]:
    """Every process's status record, asked over the control socket directly (milliseconds, where a `ctl`
    subprocess takes a Python start-up: too slow for the tests that time a restart)."""
    from wsgistack.supervisor.ctl import request, socket_path

    answer = request(socket_path(str(conf), None), "status")
    assert answer["ok"], answer
    return {f"{r['group']}:{r['name']}": r for r in answer["result"]}


def write_conf(tmp_path: Path, startsecs: str = "0.5") -> Path:
    """A supervisord.conf as supervisord's docs write them, with small Python programs beside it."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "long.py").write_text("import time\nwhile True: time.sleep(1)\n")
    (scripts / "fail.py").write_text("raise SystemExit(1)\n")
    (scripts / "late_fail.py").write_text("import time\ntime.sleep(2)\nraise SystemExit(1)\n")
    (scripts / "chatty.py").write_text("import time\nfor i in range(2000): print('chatter line %05d' % i)\n"
                                       "import sys; sys.stdout.flush()\nwhile True: time.sleep(1)\n")
    (scripts / "env.py").write_text("import os, time\nprint(os.environ['GREETING'], os.environ['REGION'], "
                                    "flush=True)\nwhile True: time.sleep(1)\n")
    conf = tmp_path / "supervisord.conf"
    conf.write_text(textwrap.dedent(f"""\
        [unix_http_server]
        file=%(here)s/supervisor.sock

        [supervisord]
        logfile=%(here)s/supervisord.log
        pidfile=%(here)s/supervisord.pid
        childlogdir=%(here)s/logs
        nodaemon=true

        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

        [supervisorctl]
        serverurl=unix://%(here)s/supervisor.sock

        [program:long]
        command={PY} %(here)s/scripts/long.py
        startsecs={startsecs}

        [program:fail]
        command={PY} %(here)s/scripts/fail.py
        startsecs=10
        startretries=2

        [program:late]
        command={PY} %(here)s/scripts/late_fail.py
        startsecs={startsecs}
        autorestart=unexpected

        [program:pool]
        command={PY} %(here)s/scripts/long.py
        process_name=%(program_name)s_%(process_num)02d
        numprocs=3
        startsecs={startsecs}

        [program:chatty]
        command={PY} %(here)s/scripts/chatty.py
        startsecs={startsecs}
        stdout_logfile=%(here)s/logs/chatty.log
        stdout_logfile_maxbytes=10KB
        stdout_logfile_backups=2

        [program:env]
        command={PY} %(here)s/scripts/env.py
        startsecs={startsecs}
        environment=GREETING="hello, world",REGION=eu
        """))
    return conf


def accepting(path: Path) -> bool:
    """True once the supervisor listens on its control socket (the file exists from bind(), before listen())."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True
