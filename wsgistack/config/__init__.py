"""Typed settings and the one place where the command line, environment and files are merged."""

from wsgistack.config.errors import ConfigError
from wsgistack.config.settings import ServeSettings

__all__ = ["ConfigError", "ServeSettings"]
