"""Fixtures of the supervisor tests: a supervisord.conf as supervisord's docs write them, running.

Helpers are in supervisors.py (tests import them from there, never from `conftest`, which names two files).
"""

from __future__ import annotations

import signal
import subprocess

import pytest
from polling import wait_for
from supervisors import PY, accepting, write_conf


@pytest.fixture
def supervised(tmp_path):
    """A running `wsgistack supervise` on write_conf's file."""
    conf = write_conf(tmp_path)
    proc = subprocess.Popen([PY, "-m", "wsgistack", "supervise", "-c", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: accepting(tmp_path / "supervisor.sock"), message="the control socket")
        yield conf, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        proc.stdout.close()


