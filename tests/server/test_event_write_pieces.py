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
