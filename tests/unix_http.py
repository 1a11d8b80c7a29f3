"""A stdlib HTTP server on a unix socket, for tests that stand in for a metrics endpoint."""

from __future__ import annotations

import http.server
import socket


class UnixHTTPServer(http.server.HTTPServer):
    """http.server.HTTPServer bound to a unix socket path (the stdlib only does TCP)."""

    address_family = socket.AF_UNIX

    def server_bind(self):
        self.socket.bind(self.server_address)

    def get_request(self):
        request, _ = self.socket.accept()
        return request, ("local", 0)
