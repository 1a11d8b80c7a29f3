"""Parsers that turn a setting's text (from the command line, the environment or TOML) into its value.

Each raises ValueError with a short reason; the loader adds which option and which source it came from.
"""

from __future__ import annotations

import ipaddress
import json
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


def threads(value: Any) -> int | None:
    """A number of threads, at least 1, or "auto" (None: the pool sizes itself)."""
    if value is None or isinstance(value, str) and value.strip().lower() == "auto":
        return None
    return whole(1)(value)


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


def octal(maximum: int = 0o7777):
    """A file mode or mask in octal, 0 to `maximum`: text like '022', '0700' or '0o22', or a number (TOML 0o022).

    The one octal parser: serve's --umask, supervisord's umask, chmod and socket_mode all read it this way.
    """

    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value.strip().lower().removeprefix("0o"), 8)
            except ValueError:
                raise ValueError(f"{value!r} is not an octal number like 022") from None
        else:
            raise ValueError(f"{value!r} is not an octal number like 022")
        if not 0 <= number <= maximum:
            raise ValueError(f"{value!r} is not between 000 and {maximum:03o} (octal)")
        return number

    return parse


_mask = octal(0o777)


def umask(value: Any) -> int | None:
    """A file mode mask, 000 to 777 (see `octal`); empty or None: not set."""
    if value is None or value == "":
        return None
    return _mask(value)


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


def duration(value: Any) -> float:
    """Seconds, also as nginx writes them: 10, 10s, 500ms, 2m, 1h, 1d (and 20us)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s|m|h|d)?\s*", value)
        if match:
            if match.group(2) == "us":  # divided, not multiplied by 1e-6: "50us" is exactly 5e-05
                return seconds(match.group(1)) / 1_000_000
            scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[match.group(2)]
            return seconds(match.group(1)) * scale
    return seconds(value)


def ip_networks(value: Any) -> tuple[str, ...]:
    """A list of IP addresses or networks (10.0.0.0/8), as text_list takes it."""
    items = text_list(value)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network like 10.0.0.0/8") from None
    return items


def toml_value(value: Any) -> str:
    """A value as TOML writes it (the inverse of the parsers above, for printing effective settings).

    Strings, numbers and lists come out as JSON, which is valid TOML for them; dicts as inline tables.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_key(key)} = {toml_value(item)}" for key, item in value.items())
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} has no TOML spelling here")
    return json.dumps(value, ensure_ascii=False)


def toml_key(name: str) -> str:
    """A key as TOML writes it: bare when it can be, quoted otherwise."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name, ensure_ascii=False)


def health_path(value: Any) -> str:
    """A request path the server answers itself ('/_wsgistack/health'); empty: no such path."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a path")
    if value and (not value.startswith("/") or re.search(r"[\x00-\x20\x7f?#]", value)):
        raise ValueError(f"{value!r} is not a path like /_wsgistack/health (or empty, to turn it off)")
    return value


# a mount's key: a path prefix ('/admin'), or a host name and a prefix ('admin.example.com/'); no port, no query
_MOUNT_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_MOUNT_START = re.compile(r"\s*[^\s=,'\"()]*/[^\s=,'\"()]*\s*=")  # the start of "KEY=APP": its key holds a "/"


def mount_key(key: Any) -> str:
    """A mount's key checked and spelt one way: '/admin/' -> '/admin', 'Admin.Example.com' + path -> lower case.

    A key starting with '/' is a path prefix; any other is a host name, a '/' and a prefix ('admin.example.com/').
    """
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"mount {key!r}: not a path like /admin or a host and path like admin.example.com/")
    host, slash, path = ("", "/", key[1:]) if key.startswith("/") else key.partition("/")
    if not slash:
        raise ValueError(f"mount {key!r}: a path starts with '/' (/admin); a host ends with one "
                         f"({key}/ for the whole host)")
    if host and not _MOUNT_HOST.fullmatch(host):
        hint = " (a mount matches its host on any port: leave the port out)" if ":" in host else ""
        raise ValueError(f"mount {key!r}: {host!r} is not a host name{hint}")
    if re.search(r"[\x00-\x20\x7f?#=%]", path):
        raise ValueError(f"mount {key!r}: a prefix holds no spaces, '?', '#', '=' or '%' (write it decoded)")
    segments = path.removesuffix("/").split("/") if path not in ("", "/") else []
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(f"mount {key!r}: the prefix has an empty, '.' or '..' segment")
    return host.lower() + "/" + "/".join(segments)


def split_mount_key(key: str) -> tuple[str, str]:
    """A key as mount_key spells it -> (host or '', prefix without its final '/': '' for the root)."""
    host, _, path = key.partition("/")
    return host, "/" + path if path else ""


def mounts(value: Any) -> tuple[str, ...]:
    """Apps by path prefix or host: a TOML table { "/" = "site:app", "/admin" = "admin:app" }, or 'PREFIX=APP'
    entries (repeated --mount flags, or one comma-separated string). Returned as 'KEY=APP' strings, keys
    spelt by mount_key, which read back to the same mounts."""
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
        pairs = [_mount_entry(entry) for entry in _join_mount_pieces([value] if isinstance(value, str) else value)]
    else:
        raise ValueError(f"{value!r} is not a table of PREFIX = APP")
    if not pairs:
        raise ValueError("no mounts: give at least one PREFIX = APP")
    seen: dict[str, str] = {}
    out = []
    for key, app in pairs:
        if not isinstance(app, str) or not app.strip():
            raise ValueError(f"mount {key!r}: {app!r} is not an app like module:name")
        spelt = mount_key(key)
        if spelt in seen:
            raise ValueError(f"mount {key!r}: the same mount as {seen[spelt]!r}")
        seen[spelt] = key
        out.append(f"{spelt}={app.strip()}")
    return tuple(out)


def _join_mount_pieces(entries: Any) -> list[str]:
    # lists of flags are split at commas by the loader (for '--bind a,b'); a factory call's arguments hold
    # commas too ('admin:create(1, 2)'), so a piece that does not start a new KEY=APP goes back onto the last
    pieces: list[str] = []
    for entry in entries:
        for piece in entry.split(","):
            if not piece.strip():
                continue
            if pieces and not _MOUNT_START.match(piece):
                pieces[-1] += "," + piece
            else:
                pieces.append(piece)
    return pieces


def _mount_entry(text: str) -> tuple[str, str]:
    key, equals, app = text.strip().partition("=")
    if not equals:
        raise ValueError(f"{text.strip()!r} is not PREFIX=APP (like /admin=admin_site:app)")
    return key.strip(), app
