"""Which reader a config file goes to: a supervisord.conf (INI) or a wsgistack.toml, by its extension.

The daemon, the control facades (reread, update, reload) and `wsgistack ctl` all load a file this one way.
"""

from __future__ import annotations

from wsgistack.supervisor.ini import load_ini
from wsgistack.supervisor.settings import SupervisorConfig
from wsgistack.supervisor.toml_config import load_toml


def load_config(path: str) -> SupervisorConfig:
    """A supervisord.conf (INI) or a wsgistack.toml, by the file's extension; a ConfigError names the line."""
    if path.endswith(".toml"):
        return load_toml(path)
    return load_ini(path)
