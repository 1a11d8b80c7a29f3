"""`wsgistack up` under systemd: the public socket passed by socket activation reaches the proxy (or the app
server, without a proxy), READY=1 comes once every part runs, STOPPING=1 on stop; the parts never talk to
systemd themselves."""

from __future__ import annotations

import signal
import socket
import subprocess

import pytest
from commands import BASE_ENV
from stacks import get, write_release
from systemd import NotifySocket, activated


@pytest.mark.parametrize("with_proxy", [True, False], ids=["proxy", "app-server-alone"])
def test_up_takes_systemds_socket_and_says_ready(tmp_path, with_proxy):
    write_release(tmp_path, "activated")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    # the file names another port: systemd's socket wins
    toml = '[serve]\napp = "hello:app"\nbind = ["127.0.0.1:1"]\n'
    if with_proxy:
        toml += '[proxy]\nlisten = ["127.0.0.1:1"]\n'
    (tmp_path / "wsgistack.toml").write_text(toml)
    notify = NotifySocket(tmp_path)
    command, fds = activated(["up", "-c", str(tmp_path / "wsgistack.toml")], [listener])
    up = subprocess.Popen(command, cwd=tmp_path, env={**BASE_ENV, **notify.env}, pass_fds=fds,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener.close()  # systemd keeps its copy; ours would keep the port open after the stack stops
    try:
        ready = notify.wait("READY")
        assert get(port) == (200, "activated 0")
        assert "RUNNING" in notify.messages[ready]["STATUS"]
        assert all(message.get("MAINPID") is None for message in notify.messages)
        assert len([m for m in notify.messages if "READY" in m]) == 1  # the parts said nothing themselves
        up.send_signal(signal.SIGTERM)
        notify.wait("STOPPING", after=ready + 1)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        notify.close()
