"""The proxy's access log: the server's nginx-style formats over a view of the proxied request.

The formatter of `observe.accesslog` reads a request's fields from a mapping with `.get`, like a WSGI
environ. The proxy has no environ, so `RequestView` answers the same keys from the parsed head, plus the
proxy's own: upstream address, status and time, and the request id.
"""

from __future__ import annotations

from typing import Any

from wsgistack.http.parser import RequestHead
from wsgistack.observe.accesslog import PROXY_JSON_FIELDS, AccessLog, compile_format
from wsgistack.proxy.settings import ProxySettings


class RequestView:
    """Environ-like `.get` over one proxied request, for the access-log formatter."""

    __slots__ = ("head", "fields")

    def __init__(self, head: RequestHead | None, fields: dict[str, Any]):
        self.head = head
        self.fields = fields

    def get(self, key: str, default: Any = None) -> Any:
        """An environ key: REMOTE_ADDR, REQUEST_METHOD, HTTP_USER_AGENT, wsgistack.upstream_addr, ..."""
        value = self.fields.get(key)
        if value is None and self.head is not None:
            head = self.head
            if key.startswith("HTTP_"):
                value = head.header(key[5:].replace("_", "-"))
            elif key == "REQUEST_METHOD":
                value = head.method
            elif key in ("RAW_URI", "REQUEST_URI"):
                value = head.target
            elif key == "SERVER_PROTOCOL":
                value = f"HTTP/{head.version}"
            elif key == "PATH_INFO":
                value = head.target.split("?", 1)[0]
            elif key == "QUERY_STRING":
                value = head.target.partition("?")[2]
        return default if value is None else value


def check_format(spec: str) -> None:
    """Raise ConfigError for a format with an unknown variable."""
    compile_format(spec, PROXY_JSON_FIELDS)


def open_access_log(settings: ProxySettings) -> AccessLog:
    """The access log the settings ask for (rotation included); ConfigError when it cannot be opened."""
    rotate = settings.access_log_rotate
    return AccessLog(settings.access_log, settings.access_log_format, json_fields=PROXY_JSON_FIELDS,
                     rotate_size=rotate.size, rotate_interval=rotate.interval, rotate_keep=rotate.keep)
