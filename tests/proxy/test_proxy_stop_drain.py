"""`wsgistack proxy` on SIGTERM answers every connection already waiting in its listen queue (closing a
listener with connections queued resets them), in one process and with `workers = N`.

The proxy's processes are frozen (SIGSTOP) while the clients connect and send, so each connection is known
to wait in the kernel's queue when the stop begins; then they are let go and each client must get its whole
answer, never a reset.
"""

from __future__ import annotations

import os
import signal
import socket

import pytest
import requests
from polling import wait_for
from processes import children_of, pid_alive
from proxies import start_proxy  # noqa: F401

QUEUED = 8


def stopped(pid: int) -> bool:
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] != "T":
                return False
    return True


def term_pending(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return bool((int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)) & (1 << (signal.SIGTERM - 1)))


def read_answer(sock: socket.socket) -> bytes:
    """Everything until the proxy closes (each request says Connection: close); a reset raises."""
    chunks = []
    with sock:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_the_proxys_listen_queue(start_proxy, tmp_path, workers):  # noqa: F811
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.txt").write_text("queued\n")
    proxy = start_proxy(args=["--listen", "127.0.0.1:0", "--static", f"/={site}", "--workers", str(workers)])
    assert requests.get(proxy.url("/index.txt"), timeout=10).text == "queued\n"
    serving = {proxy.proc.pid} if workers == 1 else {p for p in children_of(proxy.proc.pid) if pid_alive(p)}
    assert len(serving) == workers
    for pid in serving:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: all(stopped(pid) for pid in serving), message="the proxy to stop")
        queued = []
        for _ in range(QUEUED):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.sendall(b"GET /index.txt HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            queued.append(sock)
        proxy.signal(signal.SIGTERM)
        wait_for(lambda: all(term_pending(pid) for pid in serving), message="TERM to reach the proxy")
    finally:
        for pid in serving:
            os.kill(pid, signal.SIGCONT)
    for sock in queued:
        answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"queued\n"), answer
    assert proxy.proc.wait(15) == 0
