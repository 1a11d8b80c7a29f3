"""The benchmark cases: which app each server start serves, and the wrk loads run against it."""

from __future__ import annotations

from dataclasses import dataclass

SLOWLORIS_CONNECTIONS = 200


@dataclass(frozen=True)
class Load:
    """One measured wrk run; `key` names it in the results and tables."""

    key: str
    title: str
    connections: int
    post: bool = False
    slowloris: bool = False


@dataclass(frozen=True)
class Session:
    """One start of a server on one app, then its loads in order on that same process tree."""

    app: str
    loads: tuple[Load, ...]
    # RSS of the tree idle after start and right after the first load.
    memory: bool = False


SESSIONS: tuple[Session, ...] = (
    # The slowloris run follows the plain one on the same server, which is its own baseline.
    Session("plain", (
        Load("plain", "Plain WSGI hello, c64", 64),
        Load("slowloris", f"Plain hello with {SLOWLORIS_CONNECTIONS} slowloris connections open, c64", 64,
             slowloris=True),
    )),
    Session("flask_hello", (Load("flask_hello", "Flask hello, c64", 64),), memory=True),
    Session("flask_io", (
        Load("flask_io_c64", "Flask route waiting 20 ms, c64", 64),
        Load("flask_io_c256", "Flask route waiting 20 ms, c256", 256),
    )),
    Session("flask_big", (Load("flask_big", "Flask 1 MiB response, c64", 64),)),
    Session("flask_post", (Load("flask_post", "Flask 64 KiB POST, c64", 64, post=True),)),
    Session("flask_json", (Load("flask_json", "Flask JSON encoding of 50 KiB, c64", 64),)),
)

LOADS: tuple[Load, ...] = tuple(load for session in SESSIONS for load in session.loads)
