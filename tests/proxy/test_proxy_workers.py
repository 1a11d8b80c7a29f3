"""`workers = N`: a master and N proxy processes on the same sockets; reloads, stops, crashes, no orphans."""

from __future__ import annotations

import os
import signal
import textwrap

from polling import wait_for
from processes import children_of, pid_alive
from proxies import start_proxy, start_upstream, upstream_address


def config(*servers: str, workers: int = 2) -> str:
    listed = ", ".join(f'"{server}"' for server in servers)
    return textwrap.dedent(f"""\
        [proxy]
        listen = ["127.0.0.1:0"]
        workers = {workers}
        access_log = "access.log"

        [proxy.upstreams.app]
        servers = [{listed}]

        [[proxy.routes]]
        path = "/"
        upstream = "app"
        """)


def workers_of(proxy) -> set[int]:
    return {pid for pid in children_of(proxy.proc.pid) if pid_alive(pid)}


def test_two_workers_serve_and_stop_together(start_proxy, start_upstream):
    upstream = start_upstream("a")
    proxy = start_proxy(config(upstream_address(upstream)))
    pids = wait_for(lambda: len(workers_of(proxy)) == 2 and workers_of(proxy), message="two workers")
    wait_for(lambda: proxy.log().count("proxy ready") == 2, message="both workers ready")
    assert all(proxy.get("/").text == "a" for _ in range(20))
    wait_for(lambda: len(proxy.access_lines()) == 20, message="20 access-log lines from both workers")
    assert proxy.stop() == 0
    assert not any(pid_alive(pid) for pid in pids)  # type: ignore[union-attr]


def test_a_killed_worker_is_replaced(start_proxy, start_upstream):
    upstream = start_upstream("a")
    proxy = start_proxy(config(upstream_address(upstream)))
    first = wait_for(lambda: len(workers_of(proxy)) == 2 and workers_of(proxy), message="two workers")
    victim = sorted(first)[0]  # type: ignore[arg-type]
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(lambda: (pids := workers_of(proxy)) and len(pids) == 2 and victim not in pids and pids,
                        message="a new worker")
    assert len(replaced - first) == 1  # type: ignore[operator]
    assert "died" in proxy.log()
    assert proxy.get("/").status_code == 200


def test_hup_reloads_every_worker_and_a_bad_file_is_refused_once(start_proxy, start_upstream):
    a, b = start_upstream("a"), start_upstream("b")
    proxy = start_proxy(config(upstream_address(a)))
    proxy.config.write_text(config(upstream_address(b)))
    proxy.signal(signal.SIGHUP)  # at once: a worker that has no handler yet gets it when it has one
    wait_for(lambda: proxy.log().count("reloaded") == 2, message="both workers reloaded")
    assert {proxy.get("/").text for _ in range(10)} == {"b"}

    # a worker started after the reload serves the new config, not the one the master started with
    victim = sorted(workers_of(proxy))[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: (pids := workers_of(proxy)) and len(pids) == 2 and victim not in pids,
             message="a new worker")
    wait_for(lambda: proxy.log().count("proxy ready") == 3, message="the new worker ready")
    assert {proxy.get("/").text for _ in range(10)} == {"b"}

    proxy.config.write_text("[proxy\n")
    proxy.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in proxy.log(), message="the refusal")
    assert {proxy.get("/").text for _ in range(10)} == {"b"}
    # the refusal is the master's alone: the workers never got the signal
    assert proxy.log().count("reload refused") == 1


def test_a_killed_master_leaves_no_worker(start_proxy, start_upstream):
    upstream = start_upstream("a")
    proxy = start_proxy(config(upstream_address(upstream)))
    pids = wait_for(lambda: len(workers_of(proxy)) == 2 and workers_of(proxy), message="two workers")
    proxy.proc.kill()
    proxy.proc.wait(5)
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), timeout=10,  # type: ignore[union-attr]
             message="the workers to follow their master")
