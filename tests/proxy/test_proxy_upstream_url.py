"""`--upstream http://HOST:PORT`, as nginx's proxy_pass is written, reaches the app (it used to pass the config
check and then fail every request)."""

from __future__ import annotations

import pytest
from proxies import send_until_closed, start_proxy, start_upstream  # noqa: F401


@pytest.mark.parametrize("form", ["http://127.0.0.1:{port}", "http://127.0.0.1:{port}/"])
def test_an_upstream_given_as_a_url_is_proxied_to(start_upstream, start_proxy, form):  # noqa: F811
    app = start_upstream("a")
    proxy = start_proxy(args=["--upstream", form.format(port=app.port)])
    answer = send_until_closed(proxy.ports[0], b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
