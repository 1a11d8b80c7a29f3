"""Gzip for responses on their way to the client: nginx's `gzip` module, for proxied and static responses.

`should_compress` decides from the request and response heads, as nginx's gzip filter does; `gzip_headers`
rewrites the head; `GzipStream` compresses the body in the pieces it arrives in, so a large or streamed
response is never held whole. Pure: the proxy's connection code calls these, and the tests call them with
bytes. The module owns its setting too (`gzip = true`, or a table), as an nginx module owns its directives.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wsgistack.config import values

DEFAULT_TYPES = (
    "text/html", "text/plain", "text/css", "text/xml", "text/javascript", "application/javascript",
    "application/json", "application/xml", "image/svg+xml",
)
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")
_GZIP_CODINGS = ("gzip", "x-gzip")  # x-gzip: RFC 9110 says to treat it as gzip


def _level(value: Any) -> int:
    number = values.whole(1)(value)
    if number > 9:
        raise ValueError(f"{number} is not a level from 1 to 9")
    return number


def _types(value: Any) -> tuple[str, ...]:
    types = tuple(item.lower() for item in values.text_list(value))
    for item in types:
        if item != "*" and not _MEDIA_TYPE.match(item):
            raise ValueError(f"{item!r} is not a media type like text/html (or * for any)")
    return types


@dataclass(frozen=True)
class GzipSettings:
    """Whether and how to gzip responses: `gzip = true`, `false`, or `{level = 5, min_length = "1k"}`."""

    enabled: bool = True
    # nginx's gzip_min_length is 20; below about 1 KiB the ~20 bytes of framing and the CPU rarely pay off.
    min_length: int = 1024  # bytes; responses with a known smaller Content-Length are sent as they are
    level: int = 1  # 1..9; nginx's default 1 costs the least CPU for most of the gain on text
    types: tuple[str, ...] = DEFAULT_TYPES  # media types to compress; "*" for any

    @classmethod
    def from_value(cls, value: Any) -> GzipSettings:
        """From the TOML value of `gzip`: true, false, or an inline table of the fields."""
        if isinstance(value, bool):
            return cls(enabled=value)
        if not isinstance(value, dict):
            # ValueError, not TypeError: to the config loader every bad value is one kind of mistake
            raise ValueError(f"{value!r} is not true, false or a table like {{level = 5}}")  # noqa: TRY004
        parsers = {"enabled": values.boolean, "min_length": values.size, "level": _level, "types": _types}
        unknown = [name for name in value if name not in parsers]
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(parsers)})")
        parsed = {}
        for name, item in value.items():
            try:
                parsed[name] = parsers[name](item)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        return cls(**parsed)


def _quality(params: str) -> float:
    """The q of one Accept-Encoding item; 0 for a malformed one, which is safer to ignore than to honour."""
    for param in params.split(";"):
        name, _, raw = param.partition("=")
        if name.strip().lower() != "q":
            continue
        try:
            q = float(raw.strip())
        except ValueError:
            return 0.0
        return q if math.isfinite(q) and 0 <= q <= 1 else 0.0
    return 1.0


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding value allows gzip: gzip, x-gzip or * with q above 0."""
    if not accept_encoding:
        return False
    named: float | None = None
    star: float | None = None
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if coding in _GZIP_CODINGS:
            named = max(named or 0.0, _quality(params))
        elif coding == "*":
            star = max(star or 0.0, _quality(params))
    # A coding named explicitly wins over "*": "gzip;q=0, *" refuses gzip (RFC 9110, section 12.5.3).
    q = named if named is not None else star
    return q is not None and q > 0


def _header(headers: Iterable[tuple[str, str]], wanted: str) -> str | None:
    """All values of one header joined by commas (how repeated fields combine), or None if absent."""
    found = [value for name, value in headers if name.lower() == wanted]
    return ", ".join(found) if found else None


def _tokens(value: str) -> set[str]:
    return {item.partition("=")[0].strip().lower() for item in value.split(",")}


def should_compress(settings: GzipSettings, method: str, status: int,
                    request_headers: Iterable[tuple[str, str]],
                    response_headers: Iterable[tuple[str, str]]) -> bool:
    """Whether to gzip this response, judged from the request and response heads alone."""
    if not settings.enabled or method.upper() == "HEAD":
        return False
    # 200 and error pages (nginx does 200, 403 and 404); 1xx, 204 and 304 have no body, 206 is a byte range,
    # and other 2xx/3xx bodies are rare enough not to bother.
    if status != 200 and status < 400:
        return False
    if not accepts_gzip(_header(request_headers, "accept-encoding")):
        return False
    response_headers = list(response_headers)
    if _header(response_headers, "content-encoding") or _header(response_headers, "content-range"):
        return False  # already encoded (never twice), or a slice of a representation
    content_type = _header(response_headers, "content-type")
    if content_type is None:
        return False
    media_type = content_type.split(";", 1)[0].split(",", 1)[0].strip().lower()
    if media_type not in settings.types and "*" not in settings.types:
        return False
    cache_control = _header(response_headers, "cache-control")
    if cache_control is not None and "no-transform" in _tokens(cache_control):
        return False  # the origin forbids intermediaries to change the body (RFC 9111, section 5.2.2.6)
    length = _header(response_headers, "content-length")
    if length is not None:
        try:
            return int(length.strip()) >= settings.min_length
        except ValueError:
            return False  # a length we cannot read: pass the response as it is rather than guess
    return True


class GzipStream:
    """Compresses one response body in pieces (the gzip format, for Content-Encoding: gzip)."""

    def __init__(self, level: int = 1) -> None:
        if not 1 <= level <= 9:
            raise ValueError(f"{level} is not a level from 1 to 9")
        # wbits 16 + 15: the gzip header and CRC trailer around deflate with a 32 KiB window (nginx's default).
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        self._finished = False

    def compress(self, data: bytes) -> bytes:
        """The compressed bytes ready so far; often b"" while zlib fills its window."""
        if self._finished:
            raise ValueError("the gzip stream is already finished")
        return self._compressor.compress(data)

    def flush(self) -> bytes:
        """Everything given so far, decodable now, for a streamed response the client waits on piece by piece."""
        if self._finished:
            return b""
        return self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        """The rest of the body and the gzip trailer; b"" if already finished."""
        if self._finished:
            return b""
        self._finished = True
        return self._compressor.flush(zlib.Z_FINISH)


def gzip_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The response headers for the gzipped body: encoding named, length and ranges gone, ETag weak, Vary."""
    rewritten: list[tuple[str, str]] = []
    vary_at: int | None = None
    varies = False
    for name, value in headers:
        lower = name.lower()
        # The length is the uncompressed one, and byte ranges would count bytes of the uncompressed body.
        if lower in ("content-length", "content-encoding", "accept-ranges"):
            continue
        if lower == "etag":
            value = value.strip()
            if value.startswith('"'):
                value = "W/" + value  # same meaning, other bytes: the tag may no longer promise byte equality
            elif not value.startswith("W/"):
                continue  # not an entity tag at all (nginx drops it too)
        elif lower == "vary":
            tokens = _tokens(value)
            if "*" in tokens or "accept-encoding" in tokens:
                varies = True
            elif vary_at is None:
                vary_at = len(rewritten)
        rewritten.append((name, value))
    rewritten.append(("Content-Encoding", "gzip"))
    # Caches must keep the gzipped and the plain body apart.
    if not varies:
        if vary_at is None:
            rewritten.append(("Vary", "Accept-Encoding"))
        else:
            name, value = rewritten[vary_at]
            value = value.strip()
            rewritten[vary_at] = (name, f"{value}, Accept-Encoding" if value else "Accept-Encoding")
    return rewritten
