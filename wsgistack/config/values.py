"""Parsers that turn a setting's text (from the command line, the environment or TOML) into its value.

Each raises ValueError with a short reason; the loader adds which option and which source it came from.
"""

from __future__ import annotations

import math
import re
from typing import Any

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)b?\s*$", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def whole(minimum: int = 0):
    """A whole number of at least `minimum`."""

    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a whole number")
        if isinstance(value, str):
            try:
                value = int(value.strip(), 10)
            except ValueError:
                raise ValueError(f"{value!r} is not a whole number") from None
        if not isinstance(value, int):
            raise ValueError(f"{value!r} is not a whole number")
        if value < minimum:
            raise ValueError(f"{value} is below the minimum of {minimum}")
        return value

    return parse


def seconds(value: Any) -> float:
    """A duration in seconds, at least 0 (fractions allowed)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{value!r} must be zero or more seconds (a finite number)")
    return number


def size(value: Any) -> int:
    """A byte count: 1048576, '512k', '10m', '1g'; 0 means no limit."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value} must be zero or more bytes")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size (examples: 1048576, 512k, 10m, 1g)")
    return int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]


def boolean(value: Any) -> bool:
    """true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not true or false")


def text(value: Any) -> str:
    """Any non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def optional_text(value: Any) -> str | None:
    """A string, or nothing when empty."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value or None


def text_list(value: Any) -> tuple[str, ...]:
    """A list of strings: a TOML array, or one comma-separated string."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(part, str) for part in value):
        items = [part.strip() for part in value]
    else:
        raise ValueError(f"{value!r} is not a list of strings")
    items = [item for item in items if item]
    if not items:
        raise ValueError("the list is empty")
    return tuple(items)


def name_or_id(value: Any) -> str | None:
    """A user or group: a name, or a numeric id (TOML may give it as an integer)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value} is not a valid id")
        return str(value)
    return optional_text(value)


def umask(value: Any) -> int | None:
    """A file mode mask: octal text like '022' or '0o22', or a number."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raw = str(value).strip().lower()
        try:
            number = int(raw.removeprefix("0o"), 8)
        except ValueError:
            raise ValueError(f"{value!r} is not an octal mask like 022") from None
    if not 0 <= number <= 0o777:
        raise ValueError(f"{value!r} is not a mask between 000 and 777")
    return number


def choice(*allowed: str):
    """One of a fixed set of words."""

    def parse(value: Any) -> str:
        word = str(value).strip().lower()
        if word not in allowed:
            raise ValueError(f"{value!r} is not one of: {', '.join(allowed)}")
        return word

    return parse


def worker_class(allowed: tuple[str, ...], aliases: dict[str, str]):
    """One of the worker classes, or gunicorn's name for one of them."""

    def parse(value: Any) -> str:
        word = str(value).strip().lower()
        word = aliases.get(word, word)
        if word not in allowed:
            hint = " (eventlet: use gevent)" if "eventlet" in word else \
                " (an ASGI worker: wsgistack serves WSGI apps)" if "uvicorn" in word or "asgi" in word else ""
            raise ValueError(f"{value!r} is not one of: {', '.join(allowed)}{hint}")
        return word

    return parse
