"""`[metrics] listen` under `wsgistack up`: one /metrics for the whole stack, read with prometheus_client's
parser. N requests through the proxy are N in the app server's counters (summed over its workers and over
the workers --max-requests replaced) and N in the proxy's; the programs are there with their states."""

from __future__ import annotations

import signal

import requests
from polling import wait_for
from scrape import Scrape
from stacks import Stack, free_port, write_release

DURATION = "http_server_request_duration_seconds_count"


def test_one_scrape_counts_every_request_of_the_stack_exactly(tmp_path):
    port, metrics_port = free_port(), free_port()
    write_release(tmp_path / "site", "hello")
    stack = Stack(tmp_path, f'''
[serve]
app = "hello:app"
chdir = "{tmp_path / 'site'}"
workers = 2
worker_class = "sync"
max_requests = 50

[proxy]
listen = ["127.0.0.1:{port}"]

[metrics]
listen = "127.0.0.1:{metrics_port}"

[programs.idle]
command = ["sleep", "300"]
''')
    address = f"127.0.0.1:{metrics_port}"
    try:
        stack.wait_running("app", "proxy", "idle")
        total = 230
        with requests.Session() as session:
            for number in range(total):
                path = "/missing-page" if number % 10 == 0 else "/"
                assert session.get(f"http://127.0.0.1:{port}{path}", timeout=10).status_code == 200

        def counted():
            scrape = Scrape(address)
            app = scrape.total(DURATION, program="app")
            proxy = scrape.total(DURATION, program="proxy")
            return scrape if app == total and proxy == total else None
        scrape = wait_for(counted, message=f"{total} requests counted by the app server and the proxy")
        assert scrape.total(DURATION, program="app", http_request_method="GET", http_response_status_code="200") \
            == total
        assert scrape.total("wsgistack_server_worker_restarts_total", program="app", cause="max_requests") >= 3
        assert scrape.total("wsgistack_server_workers", program="app") == 2
        assert scrape.total("wsgistack_proxy_upstream_requests_total", program="proxy") == total
        for name in ("app", "proxy", "idle"):
            assert scrape.total("wsgistack_program_state", program=name, state="running") == 1
        assert scrape.total("wsgistack_program_scrape_up", program="app") == 1
        assert scrape.total("wsgistack_program_scrape_up", program="proxy") == 1
        assert scrape.seconds < 1.0

        # a program that dies is seen: its exit, its restart, and the stack's scrape still answers
        stack.wsgistack("ctl", "signal", "KILL", "idle")
        wait_for(lambda: Scrape(address).total("wsgistack_program_exits_total", program="idle", cause="killed") == 1,
                 message="the kill of idle to be counted")
        wait_for(lambda: Scrape(address).total("wsgistack_program_restarts_total", program="idle") == 1,
                 message="idle's restart to be counted")
    finally:
        assert stack.stop(signal.SIGINT) == 0
