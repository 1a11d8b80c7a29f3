"""`python -m wsgistack ...` as a user types it, for the tests of the command line: one run helper, one check
that a refusal is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# the environment of every run: the test runner's, minus anything that would change the settings
BASE_ENV = {key: value for key, value in os.environ.items()
            if not key.startswith("WSGISTACK_") and key != "WEB_CONCURRENCY"}
BASE_ENV["PYTHONUNBUFFERED"] = "1"
BASE_ENV["PYTHONIOENCODING"] = "utf-8"


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """`python -m wsgistack ARGS` in `cwd`; fails the test (after killing it) if it outlives `timeout`."""
    try:
        return subprocess.run([sys.executable, "-m", "wsgistack", *args], cwd=cwd, env={**BASE_ENV, **(env or {})},
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"wsgistack {' '.join(args)} still running after {timeout}s; stderr: {exc.stderr!r}")


def one_error_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single stderr line of a failed run (checked: exit code, one line, no traceback, nothing on stdout)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]
