"""--timeout for greenlets: a per-request deadline around the app's call and the iteration of its response.

In the gevent class a request that waits (a slow API, `time.sleep`) yields to the others, so the worker's
heartbeat goes on and the master never sees it stuck. This deadline cuts such a request instead: at
--timeout, the stack of its greenlet is written to the error log (in faulthandler's format, as the master's
SIGABRT dump does for the other classes) and `RequestTimedOut` is raised where the greenlet waits. Inside
the app it surfaces as `RequestTimeout`, an ordinary app error, so the client gets a 500 when nothing was
sent yet; past the response's head the connection is closed. A greenlet that never yields (a CPU loop) stops
the whole hub, timers included: that one is still caught by the heartbeat and the master.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from wsgistack.wsgi.file_wrapper import FileWrapper

log = logging.getLogger("wsgistack.server")

STACK_LIMIT = 100  # frames written per stack, as faulthandler does


class RequestTimedOut(BaseException):
    """Thrown into a greenlet whose request ran past --timeout (a BaseException: `except Exception` in the
    app cannot swallow it)."""


class RequestTimeout(Exception):
    """What the app's caller sees instead: an app error, answered with a 500 when the head is not sent."""


def with_deadline(app: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    """The app, with each call (and the iteration of what it returns) cut after `seconds`.

    Made in the worker's main greenlet after monkey patching: the timers go on that thread's hub, where
    every connection's greenlet runs.
    """
    import gevent

    getcurrent = gevent.getcurrent
    new_timer = gevent.get_hub().loop.timer

    def timed_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        deadline = _Deadline(seconds, environ, getcurrent())
        deadline.timer = timer = new_timer(seconds)
        timer.start(deadline.expire)
        try:
            result = app(environ, start_response)
            if isinstance(result, (list, tuple)):
                deadline.disarm()  # the whole body is known: nothing of the app runs any more
                return result
            if isinstance(result, FileWrapper):
                # kept as it is so the server still sends it with os.sendfile; its close() ends the deadline
                result.close = partial(_disarm_then, deadline, getattr(result, "close", None))
                return result
            return _TimedIterable(result, deadline)
        except RequestTimedOut as exc:
            deadline.disarm()
            raise deadline.converted(exc) from None
        except BaseException:
            deadline.disarm()
            raise

    return timed_app


def _disarm_then(deadline: _Deadline, close: Callable[[], Any] | None) -> None:
    deadline.disarm()
    if close is not None:
        close()


class _Deadline:
    """One request's timer on gevent's loop; when it fires, RequestTimedOut is thrown into the greenlet."""

    __slots__ = ("seconds", "environ", "greenlet", "timer", "fired")

    def __init__(self, seconds: float, environ: dict[str, Any], greenlet: Any):
        self.seconds = seconds
        self.environ = environ
        self.greenlet = greenlet
        self.timer: Any = None
        self.fired: RequestTimedOut | None = None

    def disarm(self) -> None:
        """The request is over: the timer will not fire."""
        if self.timer is not None:
            self.timer.close()
            self.timer = None

    def converted(self, exc: RequestTimedOut) -> BaseException:
        """Our own expiry becomes an app error; anything else (someone else's) goes on as it was."""
        if exc is not self.fired:
            return exc
        return RequestTimeout(f"{self.request()} ran past --timeout ({self.seconds:g}s)")

    def request(self) -> str:
        """The request, as the logs name it."""
        return f"{self.environ.get('REQUEST_METHOD')} {self.environ.get('RAW_URI')}"

    def expire(self) -> None:
        """In the hub: log where the greenlet waits, then make that wait raise."""
        self.timer = None
        greenlet = self.greenlet
        if greenlet.dead:
            return
        log.error("worker %s: %s ran past --timeout (%gs): cut; its greenlet's stack follows\n%s",
                  os.getpid(), self.request(), self.seconds, greenlet_stack(greenlet))
        self.fired = RequestTimedOut(f"{self.request()} ran past --timeout ({self.seconds:g}s)")
        greenlet.throw(self.fired)


class _TimedIterable:
    """The app's response iterable, with our expiry turned into an app error while it produces pieces."""

    __slots__ = ("result", "deadline", "iterator")

    def __init__(self, result: Any, deadline: _Deadline):
        self.result = result
        self.deadline = deadline
        self.iterator: Iterator[bytes] | None = None  # iter() may run app code: inside __next__'s guard

    def __iter__(self) -> _TimedIterable:
        return self

    def __next__(self) -> bytes:
        try:
            iterator = self.iterator
            if iterator is None:
                iterator = self.iterator = iter(self.result)
            return next(iterator)
        except RequestTimedOut as exc:
            raise self.deadline.converted(exc) from None

    def close(self) -> None:
        """End the deadline, then close the app's iterable (PEP 3333)."""
        self.deadline.disarm()
        close = getattr(self.result, "close", None)
        if close is not None:
            close()


def greenlet_stack(greenlet: Any) -> str:
    """A suspended greenlet's stack, most recent call first, in faulthandler's format."""
    lines = [f"Greenlet 0x{id(greenlet):x} (most recent call first):"]
    frame = greenlet.gr_frame
    while frame is not None and len(lines) <= STACK_LIMIT:
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno} in {code.co_name}')
        frame = frame.f_back
    return "\n".join(lines)
