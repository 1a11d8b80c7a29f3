"""What the numbers were measured on: the date, the machine, and the version of every contender."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("wsgistack", "gunicorn", "gevent", "tornado", "waitress", "granian", "uWSGI", "Flask", "Werkzeug",
            "httptools", "uvloop")


def _command(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _cpuinfo_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _memory() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    return "?"


def describe() -> dict[str, str]:
    """The date (UTC) and the machine, as shown at the top of docs/benchmarks.md."""
    return {
        "date": _command("date", "-u"),
        "cpus": _command("nproc"),
        "cpu": _cpuinfo_model(),
        "memory": _memory(),
        "kernel": f"{platform.system()} {platform.release()}",
        "os": _os_name(),
        "python": sys.version.split()[0],
        "wrk": _command("wrk", "-v").split(" Copyright")[0],
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "?")
    except OSError:
        return "?"


def versions() -> dict[str, str]:
    """The installed version of each server package and of the app's framework ("not installed" if absent)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
