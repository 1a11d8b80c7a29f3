"""The proxy's active health check against `wsgistack serve`'s own health endpoint: a real proxy in front of real
app servers, `health_check = { path = "/_wsgistack/health" }`, as a wsgistack.toml would say it."""

from __future__ import annotations

from polling import wait_for
from proxies import start_proxy, start_upstream, upstream_address  # noqa: F401

HEALTH = "/_wsgistack/health"


def proxy_toml(*servers: str) -> str:
    listed = ", ".join(f'"{server}"' for server in servers)
    return (f'[proxy]\nlisten = ["127.0.0.1:0"]\naccess_log = "{{folder}}/access.log"\n'
            f'[proxy.upstreams.app]\nservers = [{listed}]\n'
            f'health_check = {{ path = "{HEALTH}", interval = "0.2s" }}\n'
            f'[[proxy.routes]]\npath = "/"\nupstream = "app"\n')


def test_the_proxys_health_check_reads_the_servers_endpoint(start_proxy, start_upstream):
    # a answers the endpoint (on a unix socket: the check's Host is localhost); b has it turned off, so its app
    # answers the path with a 404 and the check fails
    a = start_upstream("a", unix=True)
    b = start_upstream("b", "--health-path", "")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), upstream_address(b)))
    wait_for(lambda: f"upstream server {upstream_address(b)} failed its health check (status 404)" in proxy.log(),
             timeout=10, message="b's failed check")
    answers = [proxy.get("/").text for _ in range(4)]
    assert answers == ["a"] * 4
    assert f"upstream server {upstream_address(a)} failed" not in proxy.log()

    checks = wait_for(lambda: [line for line in a.access_lines() if HEALTH in line], message="a's checks")
    assert f'"GET {HEALTH} HTTP/1.1" 200 6 "-" "wsgistack-health-check"' in checks[0]
    assert not any(HEALTH in line for line in proxy.access_lines())  # checks are the proxy's own, not clients'
