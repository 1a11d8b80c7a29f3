"""What a worker carries. Each freezes what exists once its app is loaded (gc.freeze): full collections no
longer walk the app's import-time objects with the GIL held, and a preloaded app's pages stay shared with
the master; the cycles requests make are still collected. The workers that run no loop (and their master,
whose modules they inherit) never import asyncio, which brings ssl: ~6 MB of RSS per process."""

from __future__ import annotations

import pytest
import requests

# a bare WSGI app with wsgistack's own modules: several thousand objects before any request
FROZEN_AT_LEAST = 5000


@pytest.mark.parametrize("args", [
    ("-k", "sync"),
    ("-k", "thread"),
    ("-k", "event"),
    ("-k", "event", "--preload"),
    ("-k", "gevent"),
    ("-k", "tornado"),
], ids=lambda args: "-".join(arg.lstrip("-") for arg in args))
def test_the_app_is_frozen_and_new_cycles_are_collected(start_server, args):
    server = start_server("memory_app:app", "-w", "1", *args)
    base = f"http://127.0.0.1:{server.port}"
    for _ in range(5):
        assert requests.get(f"{base}/cycle", timeout=10).text == "made"
    report = requests.get(f"{base}/gc", timeout=10).json()
    assert report["enabled"]
    assert report["frozen"] >= FROZEN_AT_LEAST, report
    assert report["made"] == 5 and report["alive"] == 0, report  # the requests' cycles were freed


@pytest.mark.parametrize("worker_class", ["sync", "thread"])
def test_workers_without_a_loop_never_import_asyncio(start_server, worker_class):
    server = start_server("memory_app:app", "-w", "1", "-k", worker_class)
    report = requests.get(f"http://127.0.0.1:{server.port}/gc", timeout=10).json()
    assert report["asyncio"] is False
