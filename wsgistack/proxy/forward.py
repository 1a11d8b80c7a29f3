"""Passing one complete request to an upstream and its response back (nginx's proxy_pass).

Failure rules, as nginx's `proxy_next_upstream error timeout`: when an attempt fails before the first byte
of a response (connect refused, reset, timeout), the server's failure is counted and an idempotent request
is tried on the next server; a non-idempotent one is retried only when nothing of it was sent (connect
failures). Once response bytes have arrived the response is the client's, whatever happens next.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from wsgistack.http.parser import BodyData, EndOfMessage, ParseError, RequestHead
from wsgistack.http.response import Framing
from wsgistack.http.response_parser import ResponseHead
from wsgistack.proxy.compression import GzipStream, gzip_headers, should_compress
from wsgistack.proxy.headers import client_response_head, request_id, response_headers, upstream_request_head
from wsgistack.proxy.pool import UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from wsgistack.proxy.buffering import RequestBody
    from wsgistack.proxy.connection import ClientConnection
    from wsgistack.proxy.routing import Route

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_SMALL_BODY = 64 * 1024  # bodies up to this go out in the same write as the head


async def forward(client: ClientConnection, route: Route, head: RequestHead, body: RequestBody,
                  keep_alive: bool) -> tuple[int, int, bool, dict[str, Any]]:
    """Answer `head` from the route's upstream; returns (status, body bytes sent, keep-alive, log fields)."""
    upstream = route.upstream
    assert upstream is not None
    state = client.state
    rid = request_id(head.header("x-request-id"))  # an id from the client is kept: it ties logs together
    fields: dict[str, Any] = {"wsgistack.request_id": rid}
    has_body = body.size > 0 or head.content_length is not None or head.chunked
    request_head = upstream_request_head(
        head.method, head.target, head.headers, client_ip=client.client_ip, scheme=client.scheme,
        server_port=client.server_port, trusted=state.trust.trusts(client.client_ip), request_id=rid,
        body_length=body.size if has_body else None, default_host=upstream.name)
    tried: set = set()
    addresses: list[str] = []
    statuses: list[str] = []
    times: list[str] = []
    last_error: UpstreamError | None = None
    while True:
        server = upstream.pick(client.client_ip, head.headers, tried)
        if server is None:
            fields.update(_upstream_fields(addresses, statuses, times))
            if last_error is not None and last_error.timeout:
                return (*client.send_error(504, "The upstream server timed out", head, keep_alive), fields)
            reason = "No upstream server is available" if last_error is None else "The upstream server failed"
            return (*client.send_error(502, reason, head, keep_alive), fields)
        tried.add(server)
        addresses.append(server.name)
        began = time.monotonic()
        server.active += 1
        connection: UpstreamConnection | None = None
        sent_anything = False
        try:
            connection, _reused = await server.pool.acquire()
            parser = connection.begin(head.method)
            sent_anything = True
            await _send_request(connection, request_head, body)
            event = await connection.next_event(upstream.settings.read_timeout)
            if isinstance(event, ParseError):
                raise UpstreamError(event.reason) if parser.received == 0 else _BadResponse(event.reason)
        except _BadResponse as exc:
            server.active -= 1
            connection.close()  # type: ignore[union-attr]
            server.record_failure(exc.reason)
            statuses.append("502")
            times.append(f"{time.monotonic() - began:.3f}")
            fields.update(_upstream_fields(addresses, statuses, times))
            return (*client.send_error(502, "The upstream server sent an invalid response", head, keep_alive),
                    fields)
        except UpstreamError as exc:
            server.active -= 1
            if connection is not None:
                connection.close()
            server.record_failure(exc.reason)
            statuses.append("504" if exc.timeout else "502")
            times.append(f"{time.monotonic() - began:.3f}")
            last_error = exc
            if sent_anything and head.method not in IDEMPOTENT:
                fields.update(_upstream_fields(addresses, statuses, times))
                code = 504 if exc.timeout else 502
                return (*client.send_error(code, "The upstream server failed", head, keep_alive), fields)
            continue
        progress = _Progress(event.status)
        try:
            keep_alive = await _relay(client, connection, event, head, keep_alive, upstream, rid, progress)
            server.record_success()
        except UpstreamError as exc:
            # the response broke off after its head: the client can only learn it from a cut connection
            server.record_failure(exc.reason)
            connection.close()
            client.abort()
            keep_alive = False
        except ClientGone:
            connection.close()  # the rest of the response is unwanted: the connection cannot be reused
            keep_alive = False
        finally:
            server.active -= 1
            server.pool.release(connection)
        status, sent = progress.status, progress.sent
        statuses.append(str(event.status))
        times.append(f"{time.monotonic() - began:.3f}")
        fields.update(_upstream_fields(addresses, statuses, times))
        return status, sent, keep_alive, fields


class ClientGone(Exception):
    """The client closed the connection, or took nothing for longer than send_timeout."""


class _Progress:
    """How far a response got, for the access log when it breaks off."""

    __slots__ = ("status", "framing")

    def __init__(self, status: int):
        self.status = status
        self.framing: Framing | None = None

    @property
    def sent(self) -> int:
        """Body bytes handed to the client."""
        return self.framing.sent if self.framing is not None else 0


class _BadResponse(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


async def _send_request(connection: UpstreamConnection, request_head: bytes, body: RequestBody) -> None:
    if body.in_memory and body.size <= _SMALL_BODY:
        connection.write(request_head + body.memory() if body.size else request_head)
        return
    connection.write(request_head)
    for piece in body.chunks():
        connection.write(piece)
        await connection.drain()


async def _relay(client: ClientConnection, connection: UpstreamConnection, response: ResponseHead,
                 head: RequestHead, keep_alive: bool, upstream, rid: str, progress: _Progress) -> bool:
    """Send the upstream's response to the client as it arrives, with backpressure both ways."""
    state = client.state
    headers = response.headers
    gzip = None
    if state.gzip.enabled and head.header("accept-encoding"):
        headers = response_headers(headers)
        if should_compress(state.gzip, head.method, response.status, head.headers, headers):
            headers = gzip_headers(headers)
            gzip = GzipStream(state.gzip.level)
    try:
        data, framing, keep_alive = client_response_head(response.status, response.reason, headers, head.method,
                                                         head.version, keep_alive, rid)
    except ValueError:
        connection.close()
        progress.status, _, keep_alive = client.send_error(502, "The upstream server sent an invalid "
                                                           "Content-Length", head, keep_alive)
        return keep_alive
    progress.framing = framing
    # what is already parsed goes out in one write with the head: one syscall for a small response
    out = [data]
    read_timeout = upstream.settings.read_timeout
    while True:
        event = connection.pop_event()
        if event is None:
            if out:
                client.write(b"".join(out))
                out = []
                if client.paused:
                    connection.pause_reading()
                    await client.drain()
                    connection.resume_reading()
            event = await connection.next_event(read_timeout)
        if isinstance(event, BodyData):
            piece = gzip.compress(event.data) if gzip is not None else event.data
            if piece:
                out.append(framing.encode(piece))
        elif isinstance(event, EndOfMessage):
            if gzip is not None:
                out.append(framing.encode(gzip.finish()))
            out.append(framing.finish())
            client.write(b"".join(out))
            return keep_alive and framing.complete
        else:
            if out:
                client.write(b"".join(out))
            raise UpstreamError(event.reason if isinstance(event, ParseError) else "upstream response broke off")


def _upstream_fields(addresses: list[str], statuses: list[str], times: list[str]) -> dict[str, Any]:
    # nginx lists every attempt: "10.0.0.1:80, 10.0.0.2:80"
    return {"wsgistack.upstream_addr": ", ".join(addresses), "wsgistack.upstream_status": ", ".join(statuses),
            "wsgistack.upstream_response_time": ", ".join(times)}
