"""Error responses the server writes itself (bad requests, limits, app failures)."""

from __future__ import annotations

from http import HTTPStatus


class HTTPError(Exception):
    """A request the server answers itself with `status`; the connection is closed afterwards."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def status_line_text(status: int) -> str:
    """'404 Not Found' for 404; unknown codes keep a generic phrase."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def error_body(status: int, reason: str) -> bytes:
    """A short plain-text body that says what went wrong, never more (no tracebacks to clients)."""
    return f"{status_line_text(status)}\n{reason}\n".encode("latin-1", "replace")


class ClientGone(OSError):
    """Writing a response failed: the client closed the connection or stopped taking bytes (server and proxy).

    An OSError, as the socket errors it stands for: the server's connections end on any OSError alike.
    """
