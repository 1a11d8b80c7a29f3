"""The one error type users see for bad settings."""


class ConfigError(Exception):
    """A bad setting: the message names the option and where it came from, and is shown as one line."""
