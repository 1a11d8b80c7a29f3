"""A stand-in for the background worker a real app runs beside it (celery, a scheduler): `wsgistack up`
starts it with the app (see ../wsgistack.toml), restarts it if it crashes, and stops it on Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
print("jobs: started, one tick a minute", flush=True)
ticks = 0
while not stop.wait(60):
    ticks += 1
    print(f"jobs: tick {ticks}", flush=True)
print("jobs: stopped", flush=True)
sys.exit(0)
