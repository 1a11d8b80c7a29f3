"""Several WSGI apps in one server: `[serve] apps = { "/" = "site:app", "/admin" = "admin_site:app" }`.

`Mounts` is a small WSGI app in front of the mounted ones. A request goes to the app whose prefix is the
longest that matches its path at a segment boundary ("/admin" takes /admin and /admin/x, not /administrator);
mounts with a host ("admin.example.com/") are tried before those without, and a request no mount takes gets
a plain 404. The chosen app sees its prefix moved from PATH_INFO to the end of SCRIPT_NAME, so the links an
app builds from SCRIPT_NAME (Flask's url_for) carry the prefix, as behind werkzeug's DispatcherMiddleware.

Only a server with `apps` puts it in front: with one `app` the app is called directly, at no cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wsgistack.config.values import split_mount_key
from wsgistack.http.errors import error_body
from wsgistack.wsgi.loader import AppLoadError, WSGIApp, load_app

# (prefix, what a longer path starts with, app); the root's prefix is "" and it matches every path
_Mount = tuple[str, str, WSGIApp]

_NOT_FOUND = error_body(404, "No app is mounted at this path.")
_NOT_FOUND_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(_NOT_FOUND)))]


class Mounts:
    """A WSGI app that hands each request to the app mounted at its host and longest matching path prefix."""

    __slots__ = ("by_host", "anywhere")

    def __init__(self, mounts: Iterable[tuple[str, str, WSGIApp]]):
        """`mounts`: (host or "", path prefix without its final "/" ("" for the root), app)."""
        by_host: dict[str, list[_Mount]] = {}
        anywhere: list[_Mount] = []
        for host, prefix, app in mounts:
            # PATH_INFO is a WSGI string: the request's bytes read as latin-1; a prefix is compared the same way
            prefix = prefix.rstrip("/").encode("utf-8").decode("latin-1")
            entry = (prefix, prefix + "/" if prefix else "", app)
            (by_host.setdefault(host.lower(), []) if host else anywhere).append(entry)
        for entries in (anywhere, *by_host.values()):
            entries.sort(key=lambda entry: len(entry[0]), reverse=True)  # longest first: the first match wins
        self.by_host = by_host
        self.anywhere = anywhere

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        found = None
        if self.by_host:
            entries = self.by_host.get(host_name(environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")))
            if entries is not None:
                found = _match(entries, path)
        if found is None:
            found = _match(self.anywhere, path)
            if found is None:
                start_response("404 Not Found", list(_NOT_FOUND_HEADERS))
                return [_NOT_FOUND]
        prefix, app = found
        if prefix:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path[len(prefix):]
        return app(environ, start_response)


def _match(entries: list[_Mount], path: str) -> tuple[str, WSGIApp] | None:
    for prefix, below, app in entries:
        if path.startswith(below) or path == prefix:
            return prefix, app
    return None


def host_name(host: str) -> str:
    """The name in a Host field, as mounts are keyed: lower case, without its port or a final dot."""
    host = host.lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.partition(":")[0].rstrip(".")


def load_mounts(entries: Iterable[str]) -> Mounts:
    """Load every app of the `apps` setting ('KEY=APP' strings, keys as config.values.mount_key spells them).

    An app mounted twice is imported and called once; a failure names the mount (an AppLoadError).
    """
    loaded: dict[str, WSGIApp] = {}
    mounts = []
    for entry in entries:
        key, _, spec = entry.partition("=")
        if spec not in loaded:
            try:
                loaded[spec] = load_app(spec)
            except AppLoadError as exc:
                raise AppLoadError(f"mount {key}: {exc}", exc.details) from None
        host, prefix = split_mount_key(key)
        mounts.append((host, prefix, loaded[spec]))
    return Mounts(mounts)
