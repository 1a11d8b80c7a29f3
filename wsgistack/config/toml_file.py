"""wsgistack.toml as every command reads it: which file, its text read once, its tables checked, and the line of
any table or key in it (tomllib keeps no positions, so errors find their line here).

`serve`, `proxy`, `supervise` and `config check` all go through `find_config_file` and `read_toml_file`, so a
file is found, refused and pointed at the same way by each of them.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsgistack.config.errors import ConfigError

CONFIG_VARIABLE = "WSGISTACK_CONFIG"
DEFAULT_CONFIG_FILE = "wsgistack.toml"
# the tables of wsgistack.toml; anything else at the top is a typo that would otherwise be ignored
TABLES = ("serve", "proxy", "supervisor", "programs", "dashboard", "metrics")

_KEY = r"""(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))"""  # one bare or quoted TOML key
_KEY_PART = re.compile(rf"\s*{_KEY}\s*(?:\.|$)")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_ASSIGNMENT = re.compile(rf"^\s*{_KEY}\s*[.=]")

Table = str | tuple[str, ...]  # "proxy.routes" or ("proxy", "upstreams", "the api")
SET_TWICE = "set twice (as dashes and as underscores)"


def find_config_file(named: str | None, environ: Mapping[str, str], cwd: Path | None = None,
                     defaults: Iterable[str] = (DEFAULT_CONFIG_FILE,)) -> Path | None:
    """The config file: `named` (--config), then $WSGISTACK_CONFIG, then the first of `defaults` that exists.

    A relative name is joined to `cwd` when given (serve reloads from the folder it started in), else left
    relative to the process's current directory, as the user typed it (so messages show it as typed).
    """
    named = named or environ.get(CONFIG_VARIABLE) or None
    candidates = [named] if named else list(defaults)
    for name in candidates:
        path = Path(name)
        if cwd is not None and not path.is_absolute():
            path = cwd / path
        if path.is_file():
            return path
        if named:
            raise ConfigError(f"config file {named}: no such file")
    return None


@dataclass
class TomlFile:
    """One wsgistack.toml read and parsed: its path as named, its text and document, and its lines."""

    path: str
    text: str
    document: dict[str, Any]
    # (table parts, index of the [[array]] entry, key) -> line; key "" is the table's header
    _lines: dict[tuple[tuple[str, ...], int, str], int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._lines = key_lines(self.text)

    @property
    def folder(self) -> Path:
        """The folder of the file: relative paths in it are relative to this."""
        return Path(self.path).resolve().parent

    def line(self, table: Table, key: str = "", index: int = 0) -> int | None:
        """The line of `key = ...` in `[table]` (or in its index-th `[[table]]` entry), else of the table's header.

        A sub-table `[table.key]` counts as the key; the top level is table "" (`[serve]` is key "serve" of it).
        """
        parts = _parts(table)
        return self._lines.get((parts, index, key)) or self._lines.get((parts, index, ""))

    def key_line(self, table: Table, key: str, index: int = 0) -> int | None:
        """The line of `key` itself in `[table]`, or None (no fallback to the header)."""
        return self._lines.get((_parts(table), index, key))

    def lines_of(self, table: Table, index: int = 0) -> dict[str, int]:
        """key -> line for every key of `[table]` (the header under "")."""
        parts = _parts(table)
        return {key: line for (where, number, key), line in self._lines.items() if where == parts and number == index}

    def where(self, table: Table, key: str = "", index: int = 0) -> str:
        """'path:line' of a key (see `line`), or 'path' when it cannot be found."""
        line = self.line(table, key, index)
        return f"{self.path}:{line}" if line else self.path


def read_toml_file(path: str | Path) -> TomlFile:
    """Read, decode and parse a wsgistack.toml once, refusing unknown top-level tables; errors name the file."""
    try:
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    toml_file = TomlFile(str(path), text, document)
    check_tables(toml_file)
    return toml_file


def underscored(table: Mapping[str, Any], clash: Callable[[str], Exception]) -> dict[str, Any]:
    """The table with its keys spelled with '_' (`max-requests` is `max_requests`), in every section alike.

    A key written both ways is an error: `clash(key)` builds it for the second spelling met.
    """
    result: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name in result:
            raise clash(key)
        result[name] = value
    return result


def check_tables(toml_file: TomlFile) -> None:
    """Refuse a top-level table or key of wsgistack.toml that no part of wsgistack reads."""
    for name in toml_file.document:
        if name not in TABLES:
            line = toml_file.key_line("", name)
            guess = difflib.get_close_matches(name, TABLES, n=1)
            hint = f"; did you mean [{guess[0]}]?" if guess else ""
            raise ConfigError(f"{toml_file.path}{f':{line}' if line else ''}: [{name}]: unknown table (known: "
                              f"[serve], [proxy], [supervisor], [programs.NAME]){hint}")


def key_lines(text: str) -> dict[tuple[tuple[str, ...], int, str], int]:
    """The first line of every table header and key assignment of a TOML text (see TomlFile.line)."""
    lines: dict[tuple[tuple[str, ...], int, str], int] = {}
    aliases: dict[tuple[tuple[str, ...], int, str], int] = {}
    table: tuple[str, ...] = ()
    index = 0
    entries: dict[tuple[str, ...], int] = {}  # [[array]] -> entries seen so far
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_key(header.group(2))
            if header.group(1) == "[[":
                index = entries[table] = entries.get(table, -1) + 1
            else:
                index = 0
            lines.setdefault((table, index, ""), number)
            for depth in range(len(table)):  # [a.b.c] is key "c" of [a.b], "b" of [a], "a" of the top level
                lines.setdefault((table[:depth], 0, table[depth]), number)
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment:
            key = next(g for g in assignment.groups() if g is not None)
            lines.setdefault((table, index, key), number)
            aliases.setdefault((table, index, key.replace("-", "_")), number)
    for place, number in aliases.items():  # a key is found by its underscored name too, unless written so
        lines.setdefault(place, number)
    return lines


def _split_key(dotted: str) -> tuple[str, ...]:
    parts: list[str] = []
    position = 0
    while position < len(dotted):
        match = _KEY_PART.match(dotted, position)
        if not match:
            return tuple(part.strip().strip("\"'") for part in dotted.split("."))  # odd spelling: best effort
        parts.append(next(g for g in match.groups() if g is not None))
        position = match.end()
    return tuple(parts)


def _parts(table: Table) -> tuple[str, ...]:
    if isinstance(table, tuple):
        return table
    return tuple(table.split(".")) if table else ()
