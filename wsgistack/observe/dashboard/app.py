"""The dashboard's requests and answers, without sockets: a whole Request in, a Response out.

Every rule of the security model is here, in the order it is applied: static files (public, nothing secret);
the Host check (with auth = false, only loopback names: a DNS-rebinding page cannot reach us); a POST from
another origin refused (Origin, Sec-Fetch-Site); the login form; then no session, no page (303 to /login),
no API (401), no action (403); every POST carries its session's CSRF token; a GET changes nothing.
"""

from __future__ import annotations

import http
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

from wsgistack.observe.dashboard import pages
from wsgistack.observe.dashboard.charts import Charts
from wsgistack.observe.dashboard.sessions import Session, Sessions, csrf_valid, set_cookie
from wsgistack.observe.dashboard.settings import LOOPBACK_NAMES

log = logging.getLogger("wsgistack.supervisor")

ACTIONS = ("start", "stop", "restart", "clear")
STREAMS = ("stdout", "stderr")
TAIL_FIRST = 16 * 1024  # what a log view shows first; then what comes, by offset
SEARCH_MATCHES = 200
MAX_FORM_FIELDS = 16
SECURITY_FIELDS = [
    ("Content-Security-Policy", ("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                                 "form-action 'self'; base-uri 'none'; object-src 'none'")),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
]
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


class ActionError(Exception):
    """An action or a look-up that cannot be done (no such process, bad signal...); its message is shown."""


class Operations(Protocol):
    """What the dashboard asks of the supervisor (supervisor/dashboard.py adapts the control socket's commands)."""

    def status(self) -> list[dict[str, Any]]:
        """Status records (runtime.Supervisor.status) with depends_on, ready, waiting and description added."""

    async def act(self, action: str, target: str) -> dict[str, str]:
        """start/stop/restart a process, `group:*` or `all`; clear a process's logs. ActionError if not."""

    def tail(self, name: str, stream: str, offset: int, size: int) -> tuple[str, int]:
        """(text, offset after it): what came after `offset`, or the last `size` bytes when offset < 0."""

    async def search(self, name: str, stream: str, needle: str, limit: int) -> list[str]:
        """Lines of a process's log holding `needle` (the file's last few MiB, or what memory keeps)."""


@dataclass
class Request:
    """One whole request, as the listener read it."""

    method: str
    target: str
    headers: dict[str, str]  # lower-case names, first value
    body: bytes = b""

    @property
    def path(self) -> str:
        """The target's path, %-decoded."""
        return unquote(urlsplit(self.target).path)

    @property
    def query(self) -> dict[str, str]:
        """The target's query fields (first value of each); ValueError for too many."""
        fields = parse_qs(urlsplit(self.target).query, max_num_fields=MAX_FORM_FIELDS)
        return {key: values[0] for key, values in fields.items()}

    def form(self) -> dict[str, str]:
        """The fields of a urlencoded body; ValueError for too many."""
        fields = parse_qs(self.body.decode("utf-8", "replace"), max_num_fields=MAX_FORM_FIELDS)
        return {key: values[0] for key, values in fields.items()}


@dataclass
class Response:
    """What to answer: a status, fields and a body; the listener writes the head with http/heads.py."""

    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    fields: list[tuple[str, str]] = field(default_factory=list)

    @property
    def status_text(self) -> str:
        """'200 OK'."""
        return f"{self.status} {http.HTTPStatus(self.status).phrase}"

    def all_fields(self) -> list[tuple[str, str]]:
        """Content type, the security fields, then the response's own."""
        return [("Content-Type", self.content_type), ("Content-Length", str(len(self.body))),
                *SECURITY_FIELDS, *self.fields]


def json_response(status: int, value: Any) -> Response:
    """A JSON answer (the API), never cached."""
    return Response(status, json.dumps(value).encode(), "application/json",
                    [("Cache-Control", "no-store")])


def redirect(location: str, *fields: tuple[str, str]) -> Response:
    """A 303 See Other: after a POST, the browser GETs `location`."""
    return Response(303, b"", "text/plain; charset=utf-8", [("Location", location), *fields])


def _static_files() -> dict[str, bytes]:
    folder = resources.files(__package__).joinpath("static")
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.name.endswith(tuple(STATIC_TYPES))}


class Dashboard:
    """The dashboard's routes over one Operations object."""

    def __init__(self, operations: Operations, sessions: Sessions, title: str = "supervisor",
                 metrics_text: Callable[[], Awaitable[str]] | None = None, loopback_host_only: bool = False):
        self.operations = operations
        self.sessions = sessions
        self.title = title
        self.charts = Charts(metrics_text)
        self.loopback_host_only = loopback_host_only  # auth = false on TCP: refuse other Host names
        self.static = _static_files()

    async def handle(self, request: Request) -> Response:
        """The answer to one request (never raises for a bad request: a 4xx)."""
        try:
            return await self._route(request)
        except ActionError as exc:
            return json_response(400, {"error": str(exc)}) if request.path.startswith("/api/") else \
                Response(400, pages.message_page(self.title, str(exc)))
        except (ValueError, UnicodeError) as exc:
            return Response(400, f"bad request: {exc}\n".encode(), "text/plain; charset=utf-8")

    async def _route(self, request: Request) -> Response:
        method, path = request.method, request.path
        if method not in ("GET", "HEAD", "POST"):
            return Response(405, b"GET or POST\n", "text/plain; charset=utf-8", [("Allow", "GET, HEAD, POST")])
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if self.loopback_host_only and not _loopback_host(request.headers.get("host", "")):
            return Response(421, b"this dashboard answers to localhost names only\n", "text/plain; charset=utf-8")
        if method == "POST" and not _same_origin(request):
            return Response(403, b"cross-origin request refused\n", "text/plain; charset=utf-8")
        if path == "/login":
            return self._login(request)
        session = self.sessions.find(request.headers.get("cookie"))
        created = None
        if session is None and self.sessions.open and method != "POST":
            session = created = self.sessions.create()
        if session is None:
            return _refuse_anonymous(request)
        if method == "POST":
            offered = request.headers.get("x-csrf-token") or request.form().get("csrf")
            if not csrf_valid(session, offered):
                return Response(403, b"missing or wrong CSRF token\n", "text/plain; charset=utf-8")
        response = await self._session_route(request, session)
        if created is not None:
            response.fields.append(("Set-Cookie", set_cookie(created, self.sessions.lifetime)))
        return response

    async def _session_route(self, request: Request, session: Session) -> Response:
        method, path = request.method, request.path
        gets = {"/": self._overview, "/api/status": self._api_status, "/api/tail": self._api_tail,
                "/api/search": self._api_search, "/api/metrics": self._api_metrics}
        posts = {"/logout": self._logout, "/action": self._action, "/api/action": self._action}
        if path.startswith("/program/") and method in ("GET", "HEAD"):
            return await self._program(request, session, path[len("/program/"):])
        table = posts if method == "POST" else gets
        handler = table.get(path)
        if handler is None:
            if path in gets or path in posts:
                return Response(405, b"wrong method\n", "text/plain; charset=utf-8",
                                [("Allow", "POST" if path in posts else "GET, HEAD")])
            return Response(404, pages.message_page(self.title, "No such page."))
        return await handler(request, session)

    # -- login -----------------------------------------------------------------------------------------

    def _login(self, request: Request) -> Response:
        if request.method != "POST":
            if self.sessions.open:
                return redirect("/")
            return Response(200, pages.login_page(self.title), fields=[("Cache-Control", "no-store")])
        if self.sessions.locked():
            return Response(429, pages.login_page(self.title, "Too many wrong passwords: wait a minute."))
        form = request.form()
        if not self.sessions.check_password(form.get("username", ""), form.get("password", "")):
            log.warning("dashboard: refused a login with a wrong username or password")
            return Response(401, pages.login_page(self.title, "Wrong username or password."))
        session = self.sessions.create(form.get("username", ""))
        return redirect("/", ("Set-Cookie", set_cookie(session, self.sessions.lifetime)))

    async def _logout(self, request: Request, session: Session) -> Response:
        self.sessions.end(session)
        return redirect("/login", ("Set-Cookie", set_cookie(None, 0)))

    # -- pages -----------------------------------------------------------------------------------------

    async def _overview(self, request: Request, session: Session) -> Response:
        flash, session.flash = session.flash, ""
        deploys = getattr(self.operations, "deploys", None)  # only a supervisor under `up` has any
        body = pages.overview_page(self.title, self.operations.status(), session.csrf, flash,
                                   not self.sessions.open, deploys() if deploys else [])
        return Response(200, body, fields=[("Cache-Control", "no-store")])

    async def _program(self, request: Request, session: Session, name: str) -> Response:
        record = self._record(name)
        stream = _stream(request.query.get("stream", "stdout"))
        needle = request.query.get("q", "")[:200]
        matches = await self.operations.search(name, stream, needle, SEARCH_MATCHES) if needle else None
        flash, session.flash = session.flash, ""
        body = pages.program_page(self.title, record, session.csrf, stream, needle, matches, flash,
                                  not self.sessions.open)
        return Response(200, body, fields=[("Cache-Control", "no-store")])

    def _record(self, name: str) -> dict[str, Any]:
        for record in self.operations.status():
            if f"{record['group']}:{record['name']}" == name:
                return record
        raise ActionError(f"no such process: {name}")

    # -- actions ---------------------------------------------------------------------------------------

    async def _action(self, request: Request, session: Session) -> Response:
        form = request.form()
        action, target = form.get("action", ""), form.get("target", "")
        if action not in ACTIONS or not target:
            raise ActionError(f"an action is one of {', '.join(ACTIONS)}, with a target")
        if request.path == "/api/action":
            return json_response(200, {"result": await self.operations.act(action, target)})
        try:
            outcome = await self.operations.act(action, target)
            session.flash = f"{action} {target}: " + ", ".join(f"{name} {what}" for name, what in outcome.items())
        except ActionError as exc:
            session.flash = f"{action} {target}: {exc}"
        back = form.get("back", "/")
        return redirect(back if back.startswith("/") and not back.startswith("//") else "/")

    # -- the API the page's script polls ---------------------------------------------------------------

    async def _api_status(self, request: Request, session: Session) -> Response:
        return json_response(200, {"processes": self.operations.status()})

    async def _api_tail(self, request: Request, session: Session) -> Response:
        name = request.query.get("name", "")
        self._record(name)
        offset = int(request.query.get("offset", "-1"))
        data, end = self.operations.tail(name, _stream(request.query.get("stream", "stdout")), offset, TAIL_FIRST)
        return json_response(200, {"data": data, "offset": end})

    async def _api_search(self, request: Request, session: Session) -> Response:
        name, needle = request.query.get("name", ""), request.query.get("q", "")[:200]
        self._record(name)
        if not needle:
            raise ActionError("search for what? (q=...)")
        stream = _stream(request.query.get("stream", "stdout"))
        return json_response(200, {"matches": await self.operations.search(name, stream, needle, SEARCH_MATCHES)})

    async def _api_metrics(self, request: Request, session: Session) -> Response:
        return json_response(200, await self.charts.latest())

    def _static(self, name: str) -> Response:
        data = self.static.get(name)
        if data is None:
            return Response(404, b"not found\n", "text/plain; charset=utf-8")
        content_type = STATIC_TYPES[name[name.rindex("."):]]
        return Response(200, data, content_type, [("Cache-Control", "max-age=300")])


def _stream(text: str) -> str:
    if text not in STREAMS:
        raise ActionError("the stream is stdout or stderr")
    return text


def _refuse_anonymous(request: Request) -> Response:
    """No session: the login form for a page, 401 for the API, 403 for an action."""
    if request.method == "POST":
        return Response(403, b"log in first\n", "text/plain; charset=utf-8")
    if request.path.startswith("/api/"):
        return json_response(401, {"error": "log in first"})
    return redirect("/login?next=" + quote(request.path))


def _host_name(host: str) -> str:
    return host[1:host.find("]")] if host.startswith("[") else host.rpartition(":")[0] if ":" in host else host


def _loopback_host(host: str) -> bool:
    name = _host_name(host).lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _same_origin(request: Request) -> bool:
    """False for a request a browser says came from another site (Sec-Fetch-Site) or origin (Origin)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or an old one: the CSRF token still stands in the way
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")
