"""The installed `wsgistack` console script and `python -m wsgistack` are the same command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from wsgistack import __version__


def _console_script() -> str:
    beside = Path(sys.executable).parent / "wsgistack"
    return str(beside) if beside.exists() else (shutil.which("wsgistack") or "wsgistack")


def test_console_script_and_module_agree():
    script = subprocess.run([_console_script(), "--version"], capture_output=True, text=True, timeout=30)
    module = subprocess.run([sys.executable, "-m", "wsgistack", "--version"], capture_output=True, text=True,
                            timeout=30)
    assert script.returncode == module.returncode == 0
    assert script.stdout.strip() == module.stdout.strip() == f"wsgistack {__version__}"
