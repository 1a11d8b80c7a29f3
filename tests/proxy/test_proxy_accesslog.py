"""The proxy's access log: the direct `combined` line equals the generic renderer's, escaping included."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from wsgistack.http.parser import RequestHead, RequestParser
from wsgistack.observe.accesslog import AccessLog, AccessRecord
from wsgistack.proxy.accesslog import BatchedAccessLog, RequestView


def head_of(raw: bytes) -> RequestHead:
    parser = RequestParser()
    parser.feed(raw)
    event = parser.next_event()
    assert isinstance(event, RequestHead), event
    return event


HEADS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=1 HTTP/1.0\r\nUser-Agent: curl/8\r\nReferer: http://r/\r\n\r\n",
    b'POST /q%22 HTTP/1.1\r\nHost: a\r\nUser-Agent: evil "quoted" \\ agent\r\nContent-Length: 0\r\n\r\n',
    b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: caf\xc3\xa9\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic " + base64.b64encode(b"ann:pw") + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic !!!\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer xyz\r\n\r\n",
]


@pytest.mark.parametrize("raw", HEADS)
def test_direct_combined_line_equals_the_generic_one(tmp_path, raw):
    head = head_of(raw)
    started = time.time()
    direct_path, generic_path = tmp_path / "direct.log", tmp_path / "generic.log"

    async def write_both() -> None:
        direct = BatchedAccessLog(AccessLog(str(direct_path), "combined"), "combined")
        direct.write_request("10.1.2.3", head, {}, 201, 17, started, 0.25)
        generic = AccessLog(str(generic_path), "combined")
        generic.write(AccessRecord(RequestView(head, {"REMOTE_ADDR": "10.1.2.3"}), 201, 17, started, 0.25))
        await asyncio.sleep(0)  # the batched log flushes at the end of the loop iteration
        direct.flush()

    asyncio.run(write_both())
    direct_line = direct_path.read_text()
    assert direct_line == generic_path.read_text()
    assert direct_line.count("\n") == 1 and direct_line.startswith("10.1.2.3 - ")


def test_lines_of_one_iteration_go_out_together_and_in_order(tmp_path):
    path = tmp_path / "access.log"
    head = head_of(HEADS[0])

    async def write_many() -> int:
        log = BatchedAccessLog(AccessLog(str(path), "combined"), "combined")
        for number in range(50):
            log.write_request("127.0.0.1", head, {}, 200, number, time.time(), 0.0)
        before = path.stat().st_size
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return before

    assert asyncio.run(write_many()) == 0  # nothing written before the loop came round
    sizes = [int(line.split()[9]) for line in path.read_text().splitlines()]
    assert sizes == list(range(50))
