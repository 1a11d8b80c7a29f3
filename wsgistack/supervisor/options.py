"""Option values of the supervisor's config, shared by the INI and TOML readers so both accept the same text.

A value parser takes what a file holds (INI: always text; TOML: text, numbers, booleans, arrays, tables) and
returns the typed value, or raises ValueError (TypeError for a TOML value of the wrong type) with a short
reason. `Section` knows where a value came from and turns that reason into a one-line ConfigError naming the
file, the line, the section and the option. Text is %-expanded first, as supervisord does (`%(here)s`,
`%(program_name)s`, `%(ENV_HOME)s`; `%%` for a literal %).
"""

from __future__ import annotations

import difflib
import logging
import os
import shlex
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from wsgistack.config import values
from wsgistack.config.errors import ConfigError

log = logging.getLogger("wsgistack.supervisor")

Parser = Callable[[Any], Any]  # raw value -> typed value, or ValueError/TypeError with a reason

# generic parsers shared with the rest of the config
boolean = values.boolean
seconds = values.seconds
size = values.size
count = values.whole(0)
at_least_one = values.whole(1)
octal = values.octal(0o7777)  # chmod, socket_mode: a file mode, setuid and sticky bits included
mask = values.octal(0o777)  # umask

# supervisord's level names -> Python logging's (which has no trace or blather: those are its debug)
LOG_LEVELS = {
    "critical": "critical", "error": "error", "warn": "warning", "warning": "warning", "info": "info",
    "debug": "debug", "trace": "debug", "blather": "debug",
}


# -- expansion -------------------------------------------------------------------------------------------


def expand(raw: Any, names: Mapping[str, Any]) -> Any:
    """supervisord's %-expansion of text (and of the text inside TOML arrays and tables); others unchanged."""
    if isinstance(raw, str):
        if "%" not in raw:
            return raw
        try:
            return raw % names
        except KeyError as exc:
            name = exc.args[0]
            if str(name).startswith("ENV_"):
                raise ValueError(f"%({name})s: no environment variable {name[4:]}") from None
            known = ", ".join(sorted(n for n in names if not n.startswith("ENV_")))
            raise ValueError(f"%({name})s cannot be expanded (known: {known}, ENV_<variable>)") from None
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{raw!r}: bad %-expansion ({exc}); write %% for a literal %") from None
    if isinstance(raw, list):
        return [expand(item, names) for item in raw]
    if isinstance(raw, dict):
        return {key: expand(item, names) for key, item in raw.items()}
    return raw


# -- where values come from ------------------------------------------------------------------------------


@dataclass
class Section:
    """One INI section or TOML table as read: its raw values, their lines, and how errors name it."""

    title: str  # "program:web" (INI) or "programs.web" (TOML); shown in brackets
    path: str  # the file that holds it
    values: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)  # option -> line; "" -> the header's line

    @property
    def here(self) -> str:
        """The directory of the file that holds this section: what %(here)s expands to."""
        return os.path.dirname(os.path.abspath(self.path))

    def error(self, option: str | None, reason: str) -> ConfigError:
        """A ConfigError about `option` (or the section itself) with the file and line."""
        line = self.lines.get(option or "")
        place = f"{self.path}:{line}" if line else self.path
        subject = f"[{self.title}] {option}" if option else f"[{self.title}]"
        return ConfigError(f"{place}: {subject}: {reason}")

    def get(self, option: str, parse: Parser, default: Any = None,
            names: Mapping[str, Any] | None = None) -> Any:
        """The parsed value of `option` (expanded with `names` first), or `default` when it is absent."""
        if option not in self.values:
            return default
        try:
            raw = self.values[option]
            return parse(expand(raw, names) if names is not None else raw)
        except (ValueError, TypeError) as exc:
            raise self.error(option, str(exc)) from None

    def require(self, option: str, parse: Parser, names: Mapping[str, Any] | None = None) -> Any:
        """Like get, for an option that must be there."""
        if option not in self.values:
            raise self.error(option, "missing (required in this section)")
        return self.get(option, parse, names=names)

    def check_options(self, known: Iterable[str], ignored: Mapping[str, str] | None = None) -> None:
        """Refuse options nobody knows (typos); log the ones supervisord knows that we do not implement."""
        known = set(known)
        ignored = ignored or {}
        for option in self.values:
            if option in ignored:
                log.log(logging.DEBUG if ignored[option] == "harmless" else logging.WARNING,
                        "%s: [%s] %s: a supervisord option wsgistack does not implement; ignored",
                        self.path, self.title, option)
            elif option not in known:
                guess = difflib.get_close_matches(option, known, n=1)
                raise self.error(option, "unknown option" + (f" (did you mean {guess[0]}?)" if guess else ""))


# -- value parsers (each raises ValueError or TypeError with a short reason) ----------------------------


def text(value: Any) -> str:
    """Non-empty text."""
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    if not value.strip():
        raise ValueError("is empty")
    return value.strip()


def path(value: Any) -> str:
    """A file or directory path; ~ is the home directory, as supervisord's log paths allow."""
    return os.path.expanduser(text(value))


def name(value: Any) -> str:
    """A program, process or group name: no space, ':' or '/', which supervisorctl uses as separators."""
    word = text(value)
    for character in " :/":
        if character in word:
            raise ValueError(f"{word!r} contains {character!r} (names may not hold a space, ':' or '/')")
    return word


def names(value: Any) -> tuple[str, ...]:
    """Names as a comma-separated text or an array (empty: none)."""
    if value in ("", []) or (isinstance(value, str) and not value.strip()):
        return ()
    return tuple(name(item) for item in values.text_list(value))


def integer(value: Any) -> int:
    """Any whole number, negative too (priorities)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{value!r} is not a whole number")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None


def user(value: Any) -> str:
    """A user name or numeric id (checked when the process starts: the config may be read elsewhere)."""
    return str(values.name_or_id(value) or text(value))


def owner(value: Any) -> str:
    """user or user:group."""
    owner_text = text(value)
    account, colon, group = owner_text.partition(":")
    if not account or (colon and not group):
        raise ValueError(f"{owner_text!r} is not user or user:group")
    return owner_text


def loglevel(value: Any) -> str:
    """One of supervisord's log levels, as the Python logging level it means (warn: warning, trace: debug)."""
    return LOG_LEVELS[values.choice(*LOG_LEVELS)(text(value))]


def signal_number(value: Any) -> signal.Signals:
    """A signal by name (TERM or SIGTERM, any case) or number."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return signal.Signals(value)
        word = text(value).upper()
        return signal.Signals(int(word)) if word.isdigit() else signal.Signals[word if word.startswith("SIG")
                                                                                else "SIG" + word]
    except (KeyError, ValueError):
        raise ValueError(f"{value!r} is not a signal (TERM, HUP, INT, QUIT, KILL, USR1, USR2, ...)") from None


def autorestart(value: Any) -> str:
    """true, false or unexpected (supervisord's booleans count as true/false)."""
    if isinstance(value, str) and value.strip().lower() == "unexpected":
        return "unexpected"
    try:
        return "true" if boolean(value) else "false"
    except ValueError:
        raise ValueError(f"{value!r} is not true, false or unexpected") from None


def exitcodes(value: Any) -> tuple[int, ...]:
    """Exit codes 0-255: '0,2' or an array."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{value!r} is not a list of exit codes like 0,2")
    codes = []
    for item in value:
        code = integer(item)
        if not 0 <= code <= 255:
            raise ValueError(f"{code} is not an exit code (0 to 255)")
        codes.append(code)
    return tuple(codes)


def command(value: Any) -> tuple[str, ...]:
    """A command line split like a POSIX shell would (no shell runs it), or an argv array as it is."""
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return tuple(value)
    try:
        argv = shlex.split(text(value))
    except ValueError as exc:  # unbalanced quotes
        raise ValueError(f"{value!r} cannot be split into arguments: {exc}") from None
    if not argv:
        raise ValueError("is empty")
    return tuple(argv)


def environment(value: Any) -> tuple[tuple[str, str], ...]:
    """KEY="val, with commas",KEY2=val2 (supervisord's form) or a TOML table of text and numbers."""
    if isinstance(value, str) and not value.strip():
        return ()  # `environment=` left empty by a template, as supervisord allows
    if isinstance(value, dict):
        pairs = []
        for key, item in value.items():
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise TypeError(f"{key}: {item!r} is not text or a number")
            pairs.append((_env_key(key), str(item)))
        return tuple(pairs)
    return tuple((_env_key(key), item) for key, item in _env_pairs(text(value)))


def _env_key(key: str) -> str:
    if not key or "=" in key or any(ch.isspace() for ch in key):
        raise ValueError(f"{key!r} is not an environment variable name")
    return key


def _env_pairs(raw: str) -> Iterable[tuple[str, str]]:
    # Split on commas outside quotes; a value in quotes loses them. Unquoted values may hold anything but a
    # comma, which accepts everything supervisord's shlex-based reading accepts and a little more.
    position, end = 0, len(raw)
    while position < end:
        equals = raw.find("=", position)
        if equals < 0:
            raise ValueError(f"{raw[position:].strip()!r} is not KEY=value")
        key = raw[position:equals].strip()
        position = equals + 1
        while position < end and raw[position] in " \t\n":
            position += 1
        if position < end and raw[position] in "\"'":
            close = raw.find(raw[position], position + 1)
            if close < 0:
                raise ValueError(f"{key}: the quote is not closed")
            item, position = raw[position + 1:close], close + 1
            while position < end and raw[position] in " \t\n":
                position += 1
            if position < end and raw[position] != ",":
                raise ValueError(f"{key}: expected ',' after the quoted value")
        else:
            comma = raw.find(",", position)
            comma = end if comma < 0 else comma
            item, position = raw[position:comma].strip(), comma
        position += 1  # past the comma
        yield key, item


def logfile(value: Any) -> str | None:
    """A log path; NONE/OFF (no file) gives None; AUTO and syslog are returned in capitals to be resolved."""
    word = text(value)
    if word.upper() in ("NONE", "OFF"):
        return None
    if word.upper() in ("AUTO", "SYSLOG"):
        return word.upper()
    return os.path.expanduser(word)


def ready(value: Any) -> tuple[str, str]:
    """tcp:HOST:PORT, http(s)://URL, unix:PATH or command:COMMAND, as (kind, target)."""
    spec = text(value)
    kind, _, target = spec.partition(":")
    kind = kind.lower()
    if kind == "tcp":
        inet_address(target, need_host=True)
        return "tcp", target.strip()
    if kind in ("http", "https"):
        url = urlsplit(spec)
        if not url.hostname:
            raise ValueError(f"{spec!r} is not an http:// URL with a host")
        return "http", spec
    if kind == "unix" and target.strip().removeprefix("//"):
        return "unix", target.strip().removeprefix("//")
    if kind == "command" and target.strip():
        command(target)
        return "command", target.strip()
    raise ValueError(f"{spec!r} is not a ready check "
                     "(tcp:HOST:PORT, http://URL, unix:PATH or command:COMMAND)")


def inet_address(value: Any, need_host: bool = False) -> tuple[str, int]:
    """host:port, :port, *:port or port (the last three: every interface)."""
    spec = text(str(value) if isinstance(value, int) and not isinstance(value, bool) else value)
    host, _, port = spec.rpartition(":")
    host = host.strip().strip("[]")
    if need_host and host in ("", "*"):
        raise ValueError(f"{spec!r} is not HOST:PORT")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{spec!r} is not HOST:PORT (the port must be a number)") from None
    if not 1 <= number <= 65535:
        raise ValueError(f"{number} is not a port number (1 to 65535)")
    return (host if host not in ("", "*") else "0.0.0.0"), number
