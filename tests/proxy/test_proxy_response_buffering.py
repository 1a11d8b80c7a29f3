"""Response buffering (nginx's proxy_buffering): a slow reader must not hold an app worker.

The Spool is tested in-process with bytes; the rest black-box: `serve -k sync -w 2` of
tests/apps/buffering_app.py behind a real proxy, with clients that do not read.
"""

from __future__ import annotations

import hashlib
import socket
import textwrap
import time
from pathlib import Path

from servers import APPS
from polling import wait_for
from proxies import start_proxy, upstream_address  # noqa: F401 (fixtures)

from wsgistack.proxy.buffering import RequestBody, Spool

BIG = 48 << 20  # more than the kernel's socket buffers on both sides of the proxy hold
MIB = 1 << 20


# --- the Spool, in-process ----------------------------------------------------------------------------------

def drain(spool: Spool, limit: int = 1000) -> bytes:
    out = []
    while piece := spool.take(limit):
        out.append(piece)
    return b"".join(out)


def test_spool_keeps_order_across_memory_and_file():
    spool = Spool(memory_limit=10, file_limit=None)
    spool.add(b"0123456")
    spool.add(b"789ab")  # over the memory limit: to the file, behind what is in memory
    assert not spool.in_memory
    spool.add(b"cd")  # still the file: the order is kept
    assert spool.pending == 14
    assert spool.take(4) == b"0123"
    spool.add(b"ef")
    assert drain(spool, 3) == b"456789abcdef"
    assert spool.pending == 0 and spool.take() == b""
    spool.add(b"gh")  # the drained file starts over
    assert drain(spool) == b"gh"
    spool.close()


def test_spool_is_full_at_the_file_cap_and_not_after_a_take():
    spool = Spool(memory_limit=4, file_limit=8)
    spool.add(b"abcd")
    spool.add(b"efgh")
    assert not spool.full
    spool.add(b"ijkl")
    assert spool.full  # 8 bytes wait in the file
    assert spool.take(4) == b"abcd"
    assert spool.full  # memory drained, the file still holds its cap
    assert spool.take(2) == b"ef"
    assert not spool.full
    spool.close()


def test_spool_without_a_file_is_full_at_its_memory_limit():
    spool = Spool(memory_limit=8, file_limit=0)
    spool.add(b"abcdef")
    assert not spool.full
    spool.add(b"ghijkl")
    assert spool.full and spool.in_memory
    assert drain(spool) == b"abcdefghijkl"


def test_request_body_moves_to_a_file_and_reads_again_from_the_start():
    body = RequestBody(memory_limit=5)
    body.add(b"abc")
    assert body.in_memory and body.memory() == b"abc"
    body.add(b"defg")
    assert not body.in_memory
    body.add(b"h")
    assert body.size == 8
    assert b"".join(body.chunks()) == b"abcdefgh"
    assert b"".join(body.chunks()) == b"abcdefgh"  # a retry reads it again
    body.close()


# --- black box ----------------------------------------------------------------------------------------------

def proxy_toml(address: str, route: str = "") -> str:
    return textwrap.dedent(f"""\
        [proxy]
        listen = ["127.0.0.1:0"]
        [proxy.upstreams.app]
        servers = ["{address}"]
        [[proxy.routes]]
        path = "/"
        upstream = "app"
        """) + route


def send(port: int, target: str) -> socket.socket:
    """A client that sends a request and reads nothing (yet)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while piece := sock.recv(1 << 20):
        chunks.append(piece)
    return b"".join(chunks)


def big_digest(size: int) -> str:
    """What tests/apps/buffering_app.py sends for /big: piece i is all byte i % 251."""
    digest = hashlib.sha256()
    index = 0
    while size > 0:
        digest.update(bytes([index % 251]) * min(MIB, size))
        size -= MIB
        index += 1
    return digest.hexdigest()


def test_slow_readers_do_not_pin_the_sync_workers(start_proxy, start_server, tmp_path: Path):
    app = start_server("buffering_app:app", "-k", "sync", "-w", "2", cwd=APPS)
    proxy = start_proxy(proxy_toml(upstream_address(app)))
    marks = [tmp_path / "done0", tmp_path / "done1"]
    readers = [send(proxy.port, f"/big?size={BIG}&mark={mark}") for mark in marks]
    try:
        # the proxy reads both responses on into its buffers: both workers finish, though nobody reads
        wait_for(lambda: all(mark.exists() for mark in marks), 20, message="the app to finish both responses")
        began = time.monotonic()
        response = proxy.get("/name", timeout=10)
        assert response.status_code == 200 and response.text == "ok"
        assert time.monotonic() - began < 5
        # a slow reader still gets every byte, in order, from memory and the temporary file
        head, _, rest = read_all(readers[0]).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"x-accel-buffering" not in head.lower()
        assert len(rest) == BIG and hashlib.sha256(rest).hexdigest() == big_digest(BIG)
    finally:
        for reader in readers:
            reader.close()


def test_unbuffered_responses_stream_and_hold_the_worker(start_proxy, start_server, tmp_path: Path):
    app = start_server("buffering_app:app", "-k", "sync", "-w", "2", cwd=APPS)
    # the route /live is unbuffered; elsewhere the app opts out per response with X-Accel-Buffering: no
    proxy = start_proxy(proxy_toml(upstream_address(app), route=textwrap.dedent("""\
        [[proxy.routes]]
        path = "/live/"
        upstream = "app"
        buffering = false
        """)))
    for prefix, accel in (("/live", ""), ("", "&accel=no")):
        release = tmp_path / f"release{prefix.strip('/')}"
        with send(proxy.port, f"{prefix}/drip?release={release}") as sock:
            # 'first' arrives while the app still waits for the release: streamed, not held back
            data = b""
            while b"first" not in data:
                piece = sock.recv(65536)
                assert piece, data
                data += piece
            release.touch()
            data += read_all(sock)
            assert b"last\n" in data
        # a reader that does not read holds the app (backpressure): the app has not finished a moment later
        mark = tmp_path / f"mark{prefix.strip('/')}"
        with send(proxy.port, f"{prefix}/big?size={BIG}&mark={mark}{accel}") as sock:
            time.sleep(0.5)  # a bounded look for something that must not happen
            assert not mark.exists()
            head = sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 200") and b"x-accel-buffering" not in head.lower()
