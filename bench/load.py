"""The load: wrk runs and their parsed figures, and a slowloris crowd that holds connections open."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

log = logging.getLogger("bench.load")

POST_SCRIPT = Path(__file__).resolve().parent / "post.lua"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass
class WrkResult:
    """What one wrk run measured; latencies in milliseconds."""

    rps: float
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    non_2xx: int
    socket_errors: int
    error_detail: str

    def as_dict(self) -> dict:
        """The fields, for JSON."""
        return asdict(self)


def run_wrk(port: int, connections: int, seconds: float, post: bool = False) -> WrkResult:
    """One `wrk -t1 --latency` run against http://127.0.0.1:<port>/."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if post:
        argv += ["-s", str(POST_SCRIPT)]
    argv.append(f"http://127.0.0.1:{port}/")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)


def parse_wrk(text: str) -> WrkResult:
    """Requests/sec, p50/p99, non-2xx and socket errors from wrk's report."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    requests = re.search(r"^\s*(\d+) requests in", text, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if rps is None or requests is None:
        raise RuntimeError(f"cannot read wrk's report: {text!r}")
    socket_errors = 0
    detail = ""
    if sockets:
        counts = dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        socket_errors = sum(counts.values())
        detail = ", ".join(f"{kind} {n}" for kind, n in counts.items() if n)
    done = int(requests.group(1))
    return WrkResult(
        rps=float(rps.group(1)),
        # With no request answered wrk still prints a distribution, of zeros.
        p50_ms=_percentile(text, "50") if done else None,
        p99_ms=_percentile(text, "99") if done else None,
        requests=done,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
        error_detail=detail,
    )


def _percentile(text: str, pct: str) -> float | None:
    """One line of wrk's latency distribution, in ms."""
    match = re.search(rf"^\s+{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


class Slowloris:
    """Connections that each send a request head one byte per interval and never finish it."""

    # Endless header lines, never the blank line that would end the head.
    HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    FILLER = b"X-Slow: 1\r\n"

    def __init__(self, port: int, count: int = 200, interval: float = 0.5,
                 max_seconds: float = 120.0) -> None:
        self.port = port
        self.count = count
        self.interval = interval
        self.max_seconds = max_seconds
        self.sockets: list[socket.socket | None] = []
        self.sent: list[int] = []
        self.reconnects = 0
        self.failed_connects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, name="slowloris", daemon=True)

    def __enter__(self) -> Self:
        self.sockets = [self._connect() for _ in range(self.count)]
        self.sent = [0] * self.count
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            if sock is not None:
                sock.close()

    def open_count(self) -> int:
        """How many of the connections are open now."""
        return sum(sock is not None for sock in self.sockets)

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2.0)
        except OSError:
            self.failed_connects += 1
            return None
        sock.setblocking(False)
        return sock

    def _next_byte(self, sent: int) -> bytes:
        if sent < len(self.HEAD):
            return self.HEAD[sent:sent + 1]
        offset = (sent - len(self.HEAD)) % len(self.FILLER)
        return self.FILLER[offset:offset + 1]

    def _trickle(self) -> None:
        # Bounded by max_seconds as well as by __exit__, so a harness that dies cannot leave it running.
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.wait(self.interval) and time.monotonic() < deadline:
            for i, sock in enumerate(self.sockets):
                if sock is None:
                    continue
                try:
                    sock.send(self._next_byte(self.sent[i]))
                    self.sent[i] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    # The server gave up on it (a head timeout): a slowloris client comes back.
                    sock.close()
                    self.sockets[i] = self._connect()
                    self.sent[i] = 0
                    self.reconnects += 1
