"""The bundled example Flask app behind a real nginx over uwsgi and FastCGI, with Debian's stock `uwsgi_params`
and `fastcgi_params`: its pages, a 5 MiB upload, its streamed response, the app mounted under /app (links carry
the prefix), answered as `wsgistack serve` answers them over HTTP; and, over FastCGI, one kept connection for
every request (`fastcgi_keep_conn on` with an upstream pool).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent.parent / "proxy"))
from nginx import nginx_fixture  # noqa: F401 - the start_nginx fixture

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app"
UPLOAD = os.urandom(5 << 20)
PASS = {  # protocol -> what a location says to reach the app server, at the root or under /app
    "uwsgi": ("include /etc/nginx/uwsgi_params;\n        uwsgi_pass app;",
              ("include /etc/nginx/uwsgi_params;\n        uwsgi_param SCRIPT_NAME /app;\n"
               "        uwsgi_modifier1 30;\n        uwsgi_pass app;")),
    "fastcgi": ("include /etc/nginx/fastcgi_params;\n        fastcgi_keep_conn on;\n        fastcgi_pass app;",
                ("fastcgi_split_path_info ^(/app)(/.*)$;\n        include /etc/nginx/fastcgi_params;\n"
                 "        fastcgi_param PATH_INFO $fastcgi_path_info;\n        fastcgi_keep_conn on;\n"
                 "        fastcgi_pass app;")),
}
SITE = """
upstream app {
    server unix:{socket};
    {pool}
}
server {
    listen 127.0.0.1:{port};
    client_max_body_size 8m;
    location / {
        {root}
    }
    location /app/ {
        {mounted}
    }
}
"""
TIMES = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")  # when each server made its seed notes
PAGES = ["/", "/api/notes", "/api/health", "/stream?n=50", "/download", "/no/such/page", "/slow?ms=1"]


def _answer(response: requests.Response) -> tuple:
    """What must be the same whichever way the request came: status, type, body (the pid and times aside)."""
    body = TIMES.sub(b"TIME", response.content)
    if response.headers.get("Content-Type", "").startswith("application/json") and b'"pid"' in body:
        body = b"{pid}"
    return response.status_code, response.headers.get("Content-Type"), body


def _unix_sockets_of(pid: int) -> set[str]:
    """The inodes of the unix sockets the process holds open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target)
    return inodes


@pytest.mark.parametrize("worker", ["thread", "event"])
@pytest.mark.parametrize("protocol", ["uwsgi", "fastcgi"])
def test_the_example_behind_nginx_answers_as_serve_does(start_server, start_nginx, protocol, worker):
    reference = start_server("app:app", "-k", worker, cwd=EXAMPLE)
    gateway = start_server("app:app", "--protocol", protocol, "-k", worker, "-w", "1", cwd=EXAMPLE, unix=True)
    root, mounted = PASS[protocol]
    pool = "keepalive 4;\n    keepalive_timeout 4s;" if protocol == "fastcgi" else ""
    nginx = start_nginx(SITE, socket=gateway.socket_path, pool=pool, root=root, mounted=mounted)

    for page in PAGES:
        direct = requests.get(f"http://127.0.0.1:{reference.port}{page}", timeout=10)
        through = requests.get(nginx.url(page), timeout=10)
        assert _answer(through) == _answer(direct), page
    streamed = requests.get(nginx.url("/stream?n=50"), timeout=10).text
    assert streamed == "".join(f"line {n}\n" for n in range(1, 51))

    upload = requests.post(nginx.url("/upload"), data=UPLOAD, timeout=30)
    assert upload.json() == {"bytes": len(UPLOAD), "sha256": hashlib.sha256(UPLOAD).hexdigest()}
    created = requests.post(nginx.url("/notes"), data={"text": "through nginx"}, allow_redirects=False, timeout=10)
    assert (created.status_code, created.headers["Location"]) == (303, "/")

    # mounted under /app: SCRIPT_NAME is /app, so url_for's links and redirects carry it
    page = requests.get(nginx.url("/app/"), timeout=10)
    assert page.status_code == 200 and 'action="/app/notes"' in page.text and "/app/static/" in page.text
    moved = requests.post(nginx.url("/app/notes"), data={"text": "mounted"}, allow_redirects=False, timeout=10)
    assert (moved.status_code, moved.headers["Location"]) == (303, "/app/")
    assert requests.get(nginx.url("/app/api/notes"), timeout=10).json()[-1]["text"] == "mounted"

    if protocol == "fastcgi":
        # every request above came over kept connections: nginx's pool holds one or two, never one a request
        worker = next(iter(gateway.wait_workers(1)))
        before = _unix_sockets_of(worker)
        for _ in range(10):
            assert requests.get(nginx.url("/api/health"), timeout=10).status_code == 200
        assert _unix_sockets_of(worker) == before, nginx.error_log()
    assert "[error]" not in nginx.error_log()
