"""Worker models, one module each; imported only when chosen, so optional extras stay optional."""

from __future__ import annotations

import importlib

_REGISTRY = {
    "sync": ("wsgistack.server.workers.sync", "SyncWorker"),
    "thread": ("wsgistack.server.workers.thread", "ThreadWorker"),
    "event": ("wsgistack.server.workers.event", "EventWorker"),
    "gevent": ("wsgistack.server.workers.gevent", "GeventWorker"),
    "tornado": ("wsgistack.server.workers.tornado", "TornadoWorker"),
}


def worker_class(name: str) -> type:
    """The Worker subclass for a --worker-class name."""
    module, attr = _REGISTRY[name]
    return getattr(importlib.import_module(module), attr)

