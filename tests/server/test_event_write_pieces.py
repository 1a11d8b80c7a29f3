"""The event worker's writes: a small response goes out as one joined write, a big body is handed to the
transport as it is, never copied to put its head in front of it (server/protocols/http_event.py)."""

from __future__ import annotations

from wsgistack.server.protocols.http_event import JOIN_BELOW, write_pieces


class RecordingTransport:
    """Records what a loop transport was given (the transport is not what is under test)."""

    def __init__(self) -> None:
        self.writes: list[object] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, pieces: list[bytes]) -> None:
        self.writes.append(list(pieces))


def test_a_small_head_and_body_are_one_write():
    transport = RecordingTransport()
    write_pieces(transport, [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"hello"])
    assert transport.writes == [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"]


def test_a_big_body_is_handed_over_as_it_is():
    head, body = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n", b"x" * (1 << 20)
    transport = RecordingTransport()
    write_pieces(transport, [head, body])
    [pieces] = transport.writes
    assert pieces[0] == head and pieces[1] is body  # the same object: no copy of the megabyte
    assert len(body) >= JOIN_BELOW


class StalledConnection:
    """What a LoopSink sees of a connection whose client stopped reading: writing never becomes possible."""

    def __init__(self, loop) -> None:
        import threading
        from types import SimpleNamespace

        self.loop = loop
        self.ctx = SimpleNamespace(client_timeout=0.01)
        self.can_write = threading.Event()  # never set: the transport's buffer stays full
        self.closed = False
        self.close_calls = 0

    def _close(self) -> None:
        self.close_calls += 1
        self.closed = True


def test_the_end_of_a_response_reaches_the_loop_even_when_its_last_bytes_are_given_up():
    # else the request would stay in flight for good, and stop the worker's heartbeat after --timeout
    import asyncio

    from wsgistack.server.protocols.http_event import LoopSink, Outbox

    loop = asyncio.new_event_loop()
    try:
        connection = StalledConnection(loop)
        sink = LoopSink(connection, None, False, threaded=True, outbox=Outbox())
        ended = []
        sink.deliver_last([b"0\r\n\r\n"], lambda: ended.append(True))  # from the app thread, here the test's
        loop.run_until_complete(asyncio.sleep(0))  # one turn: run what was handed over
        assert ended == [True]
        assert connection.close_calls == 1  # and the connection is closed, its bytes given up
    finally:
        loop.close()
