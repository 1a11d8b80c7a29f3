"""`wsgistack export KIND`: one wsgistack.toml written in the language of another engine (nginx, supervisord,
systemd, Kubernetes, Compose, Apache's mod_wsgi), so a team takes the same stack to the tools it already runs.

Each kind is one module with `render(stack) -> {file name: text}`, imported only when asked for; a kind whose
files name each other by path (apache: the vhost names its .wsgi files) takes the folder they go to as well.
"""

from __future__ import annotations

import importlib
import os

from wsgistack.stack.compose import Stack

KINDS = {  # kind -> module of wsgistack.export
    "nginx": "nginx",
    "supervisord": "supervisord",
    "systemd": "systemd",
    "k8s": "kubernetes",
    "compose": "compose",
    "apache": "apache",
}


_FOLDER_AWARE = {"apache"}


def render(kind: str, stack: Stack, folder: str | None = None) -> dict[str, str]:
    """The files of one kind for `stack`, by name, in the order a reader wants them; `folder` is where they
    will be written (None: stdout)."""
    module = importlib.import_module(f"wsgistack.export.{KINDS[kind]}")
    if kind in _FOLDER_AWARE:
        return module.render(stack, folder)
    return module.render(stack)


def write(files: dict[str, str], folder: str) -> list[str]:
    """Write `files` into `folder` (made if missing); the paths written."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for name, text in files.items():
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
        written.append(path)
    return written
