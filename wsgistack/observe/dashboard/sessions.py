"""Logins of the dashboard: credentials checked in constant time, sessions as random cookies, one CSRF token
per session, and a brake on guessing.

Sessions live in memory only: a supervisor restart logs everyone out, which is the safe direction.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

COOKIE = "wsgistack_dashboard"
MAX_SESSIONS = 256  # the oldest is dropped past this: a login loop cannot grow the supervisor's memory
FAILURES_ALLOWED = 10  # wrong passwords per FAILURE_WINDOW before logins are refused for the rest of it
FAILURE_WINDOW = 60.0


@dataclass
class Session:
    """One logged-in browser: its cookie token, its CSRF token, when it ends."""

    token: str
    csrf: str
    expires: float
    username: str = ""
    flash: str = ""  # the outcome of the last action, shown once on the next page
    created: float = field(default_factory=time.monotonic)


class Sessions:
    """The live sessions of one dashboard; `credentials` None means no login (auth = false)."""

    def __init__(self, credentials: tuple[str, str] | None, lifetime: float,
                 clock=time.monotonic):
        self.credentials = credentials
        self.lifetime = lifetime
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._failures: deque[float] = deque()

    @property
    def open(self) -> bool:
        """True when no login is asked for (auth = false)."""
        return self.credentials is None

    def check_password(self, username: str, password: str) -> bool:
        """Both compared, always, in constant time: the time taken says nothing about which was wrong."""
        if self.credentials is None:
            return True
        good = hmac.compare_digest(username.encode(), self.credentials[0].encode())
        good &= hmac.compare_digest(password.encode(), self.credentials[1].encode())
        if not good:
            self._failures.append(self.clock())
        return good

    def locked(self) -> bool:
        """True while too many wrong passwords came in the last FAILURE_WINDOW seconds."""
        now = self.clock()
        while self._failures and self._failures[0] < now - FAILURE_WINDOW:
            self._failures.popleft()
        return len(self._failures) >= FAILURES_ALLOWED

    def create(self, username: str = "") -> Session:
        """A new session (after a login, or at once with auth = false)."""
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.created)
            del self._sessions[oldest.token]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock() + self.lifetime,
                          username)
        self._sessions[session.token] = session
        return session

    def find(self, cookie_header: str | None) -> Session | None:
        """The live session a Cookie header names, or None."""
        token = cookie_value(cookie_header or "", COOKIE)
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if session.expires < self.clock():
            del self._sessions[token]
            return None
        return session

    def end(self, session: Session) -> None:
        """Log out: the token is worth nothing from now on."""
        self._sessions.pop(session.token, None)


def csrf_valid(session: Session, offered: str | None) -> bool:
    """The request carries its session's CSRF token (compared in constant time)."""
    return bool(offered) and hmac.compare_digest(offered.encode(), session.csrf.encode())


def cookie_value(header: str, name: str) -> str | None:
    """One cookie's value out of a Cookie header (`a=1; b=2`)."""
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def set_cookie(session: Session | None, lifetime: float) -> str:
    """The Set-Cookie value that gives a browser its session (or takes it back: None)."""
    if session is None:
        return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    return f"{COOKIE}={session.token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={int(lifetime)}"
