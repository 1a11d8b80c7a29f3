"""The nginx harness itself, with real processes: the proxy comparisons rest on it."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import nginx as nginx_module
import pytest
import requests
from nginx import Nginx, nginx_fixture, require_nginx, wait_until  # noqa: F401 (the start_nginx fixture)
from processes import pid_alive

PROXY = """
server {
    listen 127.0.0.1:{port};
    location / { proxy_pass http://127.0.0.1:{upstream}; }
}
"""

BALANCED = """
upstream app {
    server 127.0.0.1:{a};
    server 127.0.0.1:{b};
}
server {
    listen 127.0.0.1:{port};
    location / { proxy_pass http://app; }
}
"""

STATIC = """
server {
    listen 127.0.0.1:{port};
    location /static/ { alias {tmp}/static/; }
}
"""


def answers(text: str) -> str:
    return "server { listen 127.0.0.1:{port}; location / { return 200 '" + text + "'; } }"


def test_proxy_pass_reaches_the_real_upstream(start_server, start_nginx):
    upstream = start_server("upstream_app:app", "-w", "1", env={"UPSTREAM_NAME": "a"})
    proxy = start_nginx(PROXY, upstream=upstream.port)

    response = requests.get(proxy.url("/name"), timeout=10)
    assert (response.status_code, response.text) == (200, "a")
    assert response.headers["Server"].startswith("nginx")
    echo = requests.get(proxy.url("/echo?x=1"), timeout=10).json()
    assert (echo["path"], echo["query"]) == ("/echo", "x=1")
    assert echo["remote_addr"] == "127.0.0.1"
    assert any('"GET /name HTTP/1.1" 200' in line for line in proxy.access_lines())
    assert any("/name" in line for line in upstream.access_lines())


def test_upstream_block_balances_between_real_upstreams(start_server, start_nginx):
    a = start_server("upstream_app:app", "-w", "1", env={"UPSTREAM_NAME": "a"})
    b = start_server("upstream_app:app", "-w", "1", env={"UPSTREAM_NAME": "b"})
    proxy = start_nginx(BALANCED, a=a.port, b=b.port)

    names = [requests.get(proxy.url("/name"), timeout=10).text for _ in range(4)]
    assert sorted(names) == ["a", "a", "b", "b"]


def test_large_bodies_pass_through_temp_files_in_the_test_folder(start_server, start_nginx):
    upstream = start_server("upstream_app:app", "-w", "1")
    proxy = start_nginx(PROXY, upstream=upstream.port)
    body = os.urandom(300_000)

    upload = requests.post(proxy.url("/upload"), data=body, timeout=10).json()
    assert upload == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    # more than the loopback socket buffers hold, not read until nginx had to spill to proxy_temp
    size = 16 * 1024 * 1024
    with requests.get(proxy.url(f"/stream?size={size}"), stream=True, timeout=10) as streamed:
        wait_until(lambda: "upstream response is buffered" in proxy.error_log(), message="proxy_temp")
        assert streamed.content == bytes(range(256)) * (size // 256)
    log = proxy.error_log()
    assert "client request body is buffered to a temporary file" in log
    assert "upstream response is buffered to a temporary file" in log
    assert str(proxy.tmp / "client_body_temp") in log and str(proxy.tmp / "proxy_temp") in log


def test_static_alias_serves_a_file_with_etag(start_nginx):
    proxy = start_nginx(STATIC)
    (proxy.tmp / "static").mkdir()
    (proxy.tmp / "static" / "hello.txt").write_text("hello static\n")

    response = requests.get(proxy.url("/static/hello.txt"), timeout=10)
    assert (response.status_code, response.text) == (200, "hello static\n")
    assert response.headers["Content-Type"] == "text/plain"  # /etc/nginx/mime.types is included
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = requests.get(proxy.url("/static/hello.txt"), headers={"If-None-Match": etag}, timeout=10)
    assert again.status_code == 304
    assert requests.get(proxy.url("/static/missing.txt"), timeout=10).status_code == 404


def test_workers_can_read_the_test_folder(start_nginx):
    proxy = start_nginx(answers("up"))

    (worker,) = proxy.workers()
    uid_line = next(line for line in Path(f"/proc/{worker}/status").read_text().splitlines()
                    if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) == os.geteuid()  # as root: `user root` instead of nobody
    assert ("user root root;" in proxy.conf.read_text()) == (os.geteuid() == 0)


def test_invalid_http_block_fails_start_with_nginx_message(tmp_path):
    require_nginx()
    broken = Nginx(tmp_path / "broken", "server { listen 127.0.0.1:{port}; no_such_directive on; }")

    with pytest.raises(AssertionError, match=r'unknown directive "no_such_directive"'):
        broken.start()
    assert broken.proc is None  # refused by nginx -t, never run


def test_stop_leaves_no_nginx_process(start_nginx):
    proxy = start_nginx(answers("up"))
    assert requests.get(proxy.url(), timeout=10).text == "up"
    workers = proxy.workers()
    assert workers

    assert proxy.stop() == 0
    assert not pid_alive(proxy.pid)
    assert not any(pid_alive(pid) for pid in workers)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)


def test_reload_serves_the_new_config_from_a_new_worker(start_nginx):
    proxy = start_nginx(answers("one"))
    old_workers = proxy.workers()

    proxy.reload(answers("two"))
    assert requests.get(proxy.url(), timeout=10).text == "two"
    assert proxy.workers() and not proxy.workers() & old_workers
    assert not any(pid_alive(pid) for pid in old_workers)


def test_reload_with_a_bad_config_fails_and_keeps_serving(start_nginx):
    proxy = start_nginx(answers("one"))

    with pytest.raises(AssertionError, match=r'unknown directive "no_such_directive"'):
        proxy.reload("no_such_directive on;")
    assert requests.get(proxy.url(), timeout=10).text == "one"
    assert "no_such_directive" not in proxy.conf.read_text()  # the good config stays for the next reload


def test_start_retries_when_the_port_was_taken(start_nginx, monkeypatch):
    taken = socket.create_server(("127.0.0.1", 0))
    busy_port = taken.getsockname()[1]
    ports = iter([busy_port])
    real_free_port = nginx_module.free_port
    monkeypatch.setattr(nginx_module, "free_port", lambda: next(ports, None) or real_free_port())
    try:
        proxy = start_nginx(answers("moved"))
    finally:
        taken.close()

    assert proxy.port != busy_port
    assert requests.get(proxy.url(), timeout=10).text == "moved"
    assert "Address already in use" in proxy.error_log()
