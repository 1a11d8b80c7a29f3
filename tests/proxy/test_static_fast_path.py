"""The proxy's fast static paths through a real proxy: whole small answers kept in memory (static_cache.py)
and big files sent by the kernel (sendfile.py). Same bytes and headers as the slow paths, fresh after a
change on disk, and a client that leaves or stalls mid-file costs the others nothing."""

from __future__ import annotations

import gzip
import os
import socket
import time
from pathlib import Path

import pytest
import requests
from polling import wait_for
from proxies import send_until_closed, start_proxy

from wsgistack.http.dates import http_date
from wsgistack.proxy.static_cache import BODY_MAX, ReplyCache

BIG = 24 << 20  # far more than the socket buffers of a client that does not read
SIZES = (0, 1, BODY_MAX - 1, BODY_MAX, BODY_MAX + 1, (3 << 20) + 7)


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    for size in SIZES:
        (site / f"f{size}.bin").write_bytes(os.urandom(size))
    (site / "big.bin").write_bytes(os.urandom(BIG))
    (site / "page.txt").write_bytes(b"static text, compressible " * 200)
    return site


@pytest.fixture
def served(start_proxy, tmp_path):
    site = _site(tmp_path)
    proxy = start_proxy(args=["--listen", "127.0.0.1:0", "--static", f"/static/={site}", "--send-timeout", "2s",
                              "--access-log", str(tmp_path / "access.log")])
    return proxy, site


def _logged(proxy) -> str:
    """The access log so far ('' before its first line)."""
    path = proxy.folder.parent / "access.log"
    return path.read_text() if path.exists() else ""


def _head_fields(response: requests.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name != "Date"}


@pytest.mark.parametrize("size", SIZES)
def test_bytes_are_exact_on_the_first_and_the_cached_answer(served, size):
    proxy, site = served
    data = (site / f"f{size}.bin").read_bytes()
    with requests.Session() as session:
        answers = [session.get(proxy.url(f"/static/f{size}.bin"), timeout=10) for _ in range(3)]
    assert all(answer.status_code == 200 and answer.content == data for answer in answers)
    assert _head_fields(answers[0]) == _head_fields(answers[1]) == _head_fields(answers[2])
    assert answers[2].headers["Content-Length"] == str(size)


@pytest.mark.parametrize("size", [BODY_MAX + 1, (3 << 20) + 7])
def test_a_range_of_a_big_file_is_exact(served, size):
    proxy, site = served
    data = (site / f"f{size}.bin").read_bytes()
    answer = proxy.get(f"/static/f{size}.bin", headers={"Range": "bytes=1000-"})
    assert answer.status_code == 206
    assert answer.content == data[1000:]


def test_head_has_the_get_fields_and_no_body_each_time(served):
    proxy, _ = served
    get = proxy.get("/static/f1.bin")
    for _ in range(2):
        raw = send_until_closed(proxy.port,
                                b"HEAD /static/f1.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        assert body == b""
        assert f"Content-Length: {get.headers['Content-Length']}".encode() in head
        assert f"ETag: {get.headers['ETag']}".encode() in head


def test_conditional_requests_still_get_304_after_the_answer_is_cached(served):
    proxy, _ = served
    with requests.Session() as session:
        first = session.get(proxy.url("/static/f1.bin"), timeout=10)
        session.get(proxy.url("/static/f1.bin"), timeout=10)  # from the cache now
        by_tag = session.get(proxy.url("/static/f1.bin"), headers={"If-None-Match": first.headers["ETag"]}, timeout=10)
        by_date = session.get(proxy.url("/static/f1.bin"),
                              headers={"If-Modified-Since": first.headers["Last-Modified"]}, timeout=10)
        again = session.get(proxy.url("/static/f1.bin"), timeout=10)
    assert (by_tag.status_code, by_tag.content) == (304, b"")
    assert (by_date.status_code, by_date.content) == (304, b"")
    assert again.status_code == 200 and again.content == first.content


def test_gzip_and_plain_variants_are_kept_apart(served):
    proxy, site = served
    text = (site / "page.txt").read_bytes()
    with requests.Session() as session:
        for _ in range(2):
            zipped = session.get(proxy.url("/static/page.txt"), headers={"Accept-Encoding": "gzip"}, stream=True,
                                 timeout=10)
            raw = zipped.raw.read(decode_content=False)
            plain = session.get(proxy.url("/static/page.txt"), headers={"Accept-Encoding": "identity"}, timeout=10)
            assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(raw) == text
            assert "Content-Encoding" not in plain.headers and plain.content == text


def test_a_file_changed_on_disk_is_served_fresh(served):
    proxy, site = served
    path = site / "f1.bin"
    old = path.read_bytes()
    with requests.Session() as session:
        assert session.get(proxy.url("/static/f1.bin"), timeout=10).content == old
        new = b"a new version, longer than the old one"
        path.write_bytes(new)
        os.utime(path, (time.time() + 10, time.time() + 10))
        seen = []

        def fresh() -> bool:
            answer = session.get(proxy.url("/static/f1.bin"), timeout=10)
            seen.append(answer)
            return answer.content == new

        wait_for(fresh, timeout=5, message="the changed file to be served")
    # whatever came before the change showed was the whole old file, never a mix
    assert all(answer.content in (old, new) and answer.headers["Content-Length"] == str(len(answer.content))
               for answer in seen)


def test_a_client_that_leaves_mid_file_leaves_the_proxy_serving(served):
    proxy, site = served
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(sock.recv(65536)) > 0
        sock.close()  # unread bytes: the kernel resets the connection
    wait_for(lambda: _logged(proxy).count("big.bin") >= 3,
             message="the three abandoned downloads to be logged")
    assert proxy.get("/static/big.bin").content == (site / "big.bin").read_bytes()
    assert proxy.get("/static/f1.bin").status_code == 200


def test_downloads_stalled_by_slow_readers_do_not_stall_others(served):
    proxy, site = served
    stalled = []
    try:
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            stalled.append(sock)
        small = (site / "f1.bin").read_bytes()
        for _ in range(20):
            started = time.monotonic()
            assert proxy.get("/static/f1.bin", timeout=5).content == small
            assert time.monotonic() - started < 2
        assert proxy.get(f"/static/f{(3 << 20) + 7}.bin", timeout=10).content == \
            (site / f"f{(3 << 20) + 7}.bin").read_bytes()
    finally:
        for sock in stalled:
            sock.close()


def test_a_client_that_stops_reading_is_dropped_after_send_timeout(served):
    proxy, site = served
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        # never read: the proxy gives up after --send-timeout 2s (what the kernel already holds may still
        # trickle out before its FIN, as with the copying path) and logs the request as the client's fault
        line = wait_for(lambda: "big.bin" in _logged(proxy) and _logged(proxy), timeout=10,
                        message="the stalled download to be given up")
        assert '"GET /static/big.bin HTTP/1.1" 499 ' in line
        assert proxy.get("/static/f1.bin").content == (site / "f1.bin").read_bytes()


# --- ReplyCache in process ---------------------------------------------------------------------------------

def _answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nDate: %s\r\nServer: wsgistack\r\n\r\n%s" % (
        len(body), http_date().encode(), body)


def test_the_cache_writes_the_current_date_and_the_rest_as_stored(monkeypatch):
    cache = ReplyCache()
    data = _answer(b"x" * 10)
    cache.put("k", data, 10)
    monkeypatch.setattr("wsgistack.proxy.static_cache.http_date", lambda: "Thu, 01 Jan 2099 00:00:00 GMT")
    got, sent = cache.get("k")
    assert sent == 10
    assert got == data.replace(data[data.index(b"Date: ") + 6:][:29], b"Thu, 01 Jan 2099 00:00:00 GMT")


def test_the_cache_copies_an_answer_only_when_the_second_changed(monkeypatch):
    cache = ReplyCache()
    cache.put("k", _answer(b"x" * 10_000), 10_000)
    date = "Thu, 01 Jan 2099 00:00:00 GMT"
    monkeypatch.setattr("wsgistack.proxy.static_cache.http_date", lambda: date)
    first, _ = cache.get("k")
    assert cache.get("k")[0] is first  # the same second: the same bytes, not a copy per request
    date = "Thu, 01 Jan 2099 00:00:01 GMT"
    second, _ = cache.get("k")
    assert second is not first and b"Date: Thu, 01 Jan 2099 00:00:01 GMT\r\n" in second
    assert second.replace(b":01 GMT", b":00 GMT") == first and cache.get("k")[0] is second


def test_the_cache_is_bounded_in_entries_and_bytes_and_drops_the_oldest():
    cache = ReplyCache(entries=3, size=10_000)
    for key in "abcd":
        cache.put(key, _answer(b"x" * 100), 100)
    assert len(cache) == 3 and cache.get("a") is None and cache.get("d") is not None
    cache.put("big", _answer(b"y" * 9_000), 9_000)
    assert cache.size <= 10_000 and cache.get("big") is not None and cache.get("b") is None


def test_the_cache_keeps_no_big_body_and_forgets_after_its_seconds(monkeypatch):
    cache = ReplyCache(seconds=1.0)
    cache.put("big", _answer(b"z" * (BODY_MAX + 1)), BODY_MAX + 1)
    assert cache.get("big") is None
    now = time.monotonic()
    monkeypatch.setattr("wsgistack.proxy.static_cache.time.monotonic", lambda: now)
    cache.put("k", _answer(b"x"), 1)
    assert cache.get("k") is not None
    monkeypatch.setattr("wsgistack.proxy.static_cache.time.monotonic", lambda: now + 1.0)
    assert cache.get("k") is None and len(cache) == 0 and cache.size == 0
