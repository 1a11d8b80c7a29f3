"""Static files for a proxy route (nginx's `root` with `gzip_static`), decided sans-IO.

`StaticFiles.reply()` turns a method, the still-encoded path after the route prefix and the request headers
into a `StaticReply`: a status, the response headers and which byte range of which file to send (or a short
in-memory error body). It looks at the file system (realpath, stat, a test open) but never at a socket, so
the proxy's connection code writes the head and sends the file itself (sendfile), and the tests need no
server. Everything a request can get wrong ends in a 4xx reply, never in an exception.

Safety comes first: the decoded path may not contain `..`, NUL, backslashes or dot-segments (dotfiles such
as `.env` or `.git/` answer 404, so their existence is not revealed), and the realpath of whatever is served
must lie inside the realpath of the root, so symlinks may point anywhere inside the root but never out.
Only regular files are served: a FIFO or a device is 404, a directory is its index file or 403, never a
listing. A directory asked for without the trailing slash is 403 too (nginx would redirect; a redirect
needs the public URL, which only the caller knows).
"""

from __future__ import annotations

import errno
import mimetypes
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from wsgistack.http.errors import error_body

__all__ = ["StaticFiles", "StaticReply"]

_TEXT_PLAIN = "text/plain; charset=utf-8"
_NOT_FOUND = "No such file"
_NO_LISTING = "Directory listing is not allowed"
# Python's built-in table only: the same type on every host, whatever /etc/mime.types says.
_MIME_TYPES = mimetypes.MimeTypes().types_map[True]
# Types the built-in table lacks (or has as an encoding, like .gz, which served as-is is a gzip file).
_EXTRA_TYPES = {".gz": "application/gzip", ".webp": "image/webp", ".woff": "font/woff", ".woff2": "font/woff2",
                ".map": "application/json", ".mjs": "text/javascript"}
_CHARSET_TYPES = ("application/javascript", "application/json")
_OWS = " \t"
# A byte position longer than this is past the end of any file (and int() refuses 4,300 digits and more).
_MAX_DIGITS = 18


_FAILED_BODY = b"412 Precondition Failed\n"
CACHE_SECONDS = 1.0
CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class StaticReply:
    """What to answer: status, headers (without Date/Server/Connection), and a file range or a small body."""

    status: int
    headers: list[tuple[str, str]]
    path: str | None = None
    offset: int = 0
    length: int = 0
    body: bytes = b""


class _Refused(Exception):
    """A request answered with an error reply; raised deep in the checks, turned into a reply once."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


class StaticFiles:
    """Serves files under one root for one route prefix."""

    def __init__(self, root: str | os.PathLike[str], cache_control: str | None = None,
                 index: str = "index.html"):
        self.root = os.path.realpath(os.fspath(root))
        self._inside_prefix = os.path.join(self.root, "")  # root + "/", or "/" itself for root "/"
        self.cache_control = cache_control
        self.index = index
        # where a URL path led (realpath, stat, .gz sibling) for CACHE_SECONDS: the walk costs a dozen
        # syscalls per request, as nginx's open_file_cache knows; a changed file shows within that time
        self._located: dict[str, tuple[float, str, str, os.stat_result, Any]] = {}

    def reply(self, method: str, path: str, headers: Mapping[str, str] | list[tuple[str, str]]) -> StaticReply:
        """The reply to `method path`, where `path` is the percent-encoded URL path after the route prefix."""
        try:
            reply = self._reply(method, path, _header_fields(headers))
        except _Refused as refusal:
            reply = _error(refusal.status, refusal.reason, refusal.headers)
        if method == "HEAD":
            reply = replace(reply, path=None, offset=0, length=0, body=b"")
        return reply

    def _reply(self, method: str, url_path: str, fields: dict[str, str]) -> StaticReply:
        if method not in ("GET", "HEAD"):
            raise _Refused(405, "Only GET and HEAD are allowed here", (("Allow", "GET, HEAD"),))
        now = time.monotonic()
        cached = self._located.get(url_path)
        if cached is not None and cached[0] > now:
            _, name, real, st, gzipped = cached
        else:
            segments, wants_directory = _decoded_segments(url_path)
            name, real, st = self._locate(segments, wants_directory)
            gzipped = self._gzip_sibling(name, real)
            if len(self._located) >= CACHE_ENTRIES:
                self._located.clear()
            self._located[url_path] = (now + CACHE_SECONDS, name, real, st, gzipped)
        encoding = None
        if gzipped is not None and "range" not in fields and _accepts_gzip(fields.get("accept-encoding")):
            real, st = gzipped
            encoding = "gzip"
        size, mtime = st.st_size, int(st.st_mtime)
        etag = f'"{mtime:x}-{size:x}"'  # nginx's format, so caches keep validating after a switch
        validators = [("ETag", etag)]
        last_modified = _http_date(mtime)
        if last_modified is not None:
            validators.insert(0, ("Last-Modified", last_modified))
        if gzipped is not None:  # the answer depends on Accept-Encoding whether or not we used the .gz
            validators.append(("Vary", "Accept-Encoding"))
        if self.cache_control:
            validators.append(("Cache-Control", self.cache_control))

        if _precondition_failed(fields, etag, mtime):
            return StaticReply(412, [("Content-Type", "text/plain; charset=utf-8"),
                                     ("Content-Length", str(len(_FAILED_BODY))), *validators], body=_FAILED_BODY)
        if _not_modified(fields, etag, mtime):
            return StaticReply(304, validators)
        headers = [("Content-Type", _content_type(name)), ("Content-Length", str(size)), *validators,
                   ("Accept-Ranges", "bytes")]
        if encoding is not None:
            headers.append(("Content-Encoding", encoding))
        # Range is defined for GET only (RFC 9110 14.2); an empty file has no byte to point at.
        if method == "GET" and "range" in fields and size > 0 and _if_range_holds(fields, etag, mtime):
            span = _byte_range(fields["range"], size)
            if span is not None:
                first, last = span
                headers[1] = ("Content-Length", str(last - first + 1))
                headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
                return StaticReply(206, headers, real, first, last - first + 1)
        return StaticReply(200, headers, real, 0, size)

    def _locate(self, segments: list[str], wants_directory: bool) -> tuple[str, str, os.stat_result]:
        """(path under the root as asked, its realpath, its stat) of the regular file to serve."""
        name = os.path.join(self.root, *segments)
        real = self._resolve(name)
        st = _stat_readable(real)
        if stat.S_ISDIR(st.st_mode):
            if not wants_directory or not self.index:
                raise _Refused(403, _NO_LISTING)
            name = os.path.join(name, self.index)
            try:
                real = self._resolve(name)
                st = _stat_readable(real)
            except _Refused as refusal:
                raise _Refused(403, _NO_LISTING) if refusal.status == 404 else refusal from None
            if not stat.S_ISREG(st.st_mode):
                raise _Refused(403, _NO_LISTING)
        elif wants_directory:  # "file.txt/": the file system would say ENOTDIR
            raise _Refused(404, _NOT_FOUND)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the sender, a device is never content
            raise _Refused(404, _NOT_FOUND)
        return name, real, st

    def _resolve(self, name: str) -> str:
        """realpath of `name`, refused unless it lies inside the root (symlinks must not lead out)."""
        try:
            real = os.path.realpath(name)
        except (OSError, ValueError):
            raise _Refused(404, _NOT_FOUND) from None
        if real != self.root and not real.startswith(self._inside_prefix):
            raise _Refused(404, _NOT_FOUND)
        return real

    def _gzip_sibling(self, name: str, real: str) -> tuple[str, os.stat_result] | None:
        """(realpath, stat) of a readable regular `name.gz` inside the root, else None."""
        if not os.path.lexists(real + ".gz") and not os.path.lexists(name + ".gz"):
            return None  # the usual case, in one or two syscalls instead of a realpath walk
        try:
            real = self._resolve(name + ".gz")
            st = _stat_readable(real)
        except _Refused:
            return None
        return (real, st) if stat.S_ISREG(st.st_mode) else None


def _header_fields(headers: Mapping[str, str] | list[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased names; repeated fields joined with ', ' as RFC 9110 5.3 allows."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    fields: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    return fields


def _decoded_segments(url_path: str) -> tuple[list[str], bool]:
    """The non-empty segments of the decoded path, and whether it names a directory (ends with '/')."""
    try:
        decoded = unquote_to_bytes(url_path).decode("utf-8")
    except UnicodeError:  # invalid UTF-8 after decoding, or lone surrogates in the str itself
        raise _Refused(400, "The path is not valid UTF-8") from None
    if "\0" in decoded or "\\" in decoded:
        raise _Refused(404, _NOT_FOUND)
    # Empty segments are merged away (nginx's merge_slashes), so '//etc/passwd' stays under the root.
    segments = [segment for segment in decoded.split("/") if segment]
    # '.', '..' and dotfiles alike: 404 rather than 403, so a probe learns nothing about what exists.
    if any(segment.startswith(".") for segment in segments):
        raise _Refused(404, _NOT_FOUND)
    return segments, decoded == "" or decoded.endswith("/")


def _stat_readable(real: str) -> os.stat_result:
    """stat of `real`; a regular file is also opened (non-blocking) so an unreadable one is 403 now."""
    try:
        st = os.stat(real)
        if stat.S_ISREG(st.st_mode):  # never open a FIFO or a device: opening alone can block or act
            # O_NONBLOCK: a FIFO swapped in after the stat must not hang the proxy in open() either.
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
    except PermissionError:
        raise _Refused(403, "Permission denied") from None
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):  # the file is there; the proxy is short of descriptors
            raise _Refused(503, "Too many open files") from None
        raise _Refused(404, _NOT_FOUND) from None
    except ValueError:
        raise _Refused(404, _NOT_FOUND) from None
    return st


def _content_type(name: str) -> str:
    """The Content-Type for a file name's extension, with a charset for text."""
    extension = os.path.splitext(name)[1].lower()
    content_type = _EXTRA_TYPES.get(extension) or _MIME_TYPES.get(extension, "application/octet-stream")
    if content_type.startswith("text/") or content_type in _CHARSET_TYPES:
        content_type += "; charset=utf-8"
    return content_type


def _http_date(seconds: int) -> str | None:
    """An IMF-fixdate, or None for a time no HTTP date can carry (a file dated in the year 300000)."""
    try:
        return formatdate(seconds, usegmt=True)
    except (OverflowError, OSError, ValueError):
        return None


def _parse_http_date(text: str) -> int | None:
    """Seconds since the epoch of an HTTP date, or None when it does not parse (and is then ignored)."""
    try:
        when = parsedate_to_datetime(text.strip())
        if when.tzinfo is None:  # '-0000' means UTC of unknown origin; HTTP dates are always GMT
            when = when.replace(tzinfo=UTC)
        return int(when.timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _not_modified(fields: dict[str, str], etag: str, mtime: int) -> bool:
    """Whether the client's copy is current: If-None-Match, or only without it If-Modified-Since."""
    if_none_match = fields.get("if-none-match")
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        # Weak comparison (RFC 9110 13.1.2): W/"x" matches "x"; our own tags are always strong.
        return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))
    if_modified_since = fields.get("if-modified-since")
    if if_modified_since is None:
        return False
    since = _parse_http_date(if_modified_since)
    return since is not None and mtime <= since


def _precondition_failed(fields: dict[str, str], etag: str, mtime: int) -> bool:
    """If-Match (strong comparison), or without it If-Unmodified-Since, does not hold (RFC 9110 13.1.1, 13.1.4)."""
    if "if-match" in fields:
        tags = [tag.strip() for tag in fields["if-match"].split(",")]
        return "*" not in tags and etag not in tags
    if "if-unmodified-since" in fields:
        since = _parse_http_date(fields["if-unmodified-since"])
        return since is not None and mtime > since
    return False


def _if_range_holds(fields: dict[str, str], etag: str, mtime: int) -> bool:
    """Whether a Range may be honoured: no If-Range, or one naming this very version of the file."""
    if_range = fields.get("if-range")
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith(('"', "W/")):  # strong comparison: a weak tag never matches
        return if_range == etag
    return _parse_http_date(if_range) == mtime


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) of a single satisfiable range; None to ignore the header; 416 when unsatisfiable."""
    positions = _single_range(header)
    if positions is None:  # another unit, garbage, or several ranges: RFC 9110 lets us send it all
        return None
    start, end = positions
    if start is not None:
        if end is not None and end < start:
            return None
        if start >= size:
            raise _unsatisfiable(size, "The range starts past the end of the file")
        return start, (min(end, size - 1) if end is not None else size - 1)
    if end is None:  # 'bytes=-'
        return None
    if end == 0:
        raise _unsatisfiable(size, "An empty suffix range selects nothing")
    return max(size - end, 0), size - 1


def _single_range(header: str) -> tuple[int | None, int | None] | None:
    """The two positions of `bytes=FIRST-LAST` (either may be absent), or None when it is not one range.

    A scan in a fixed number of passes over the value, linear in its length: a backtracking regex with
    optional whitespace on both sides of the '-' took cubic time on `bytes=` + spaces + `-` + spaces + `!`
    and held the proxy's loop for minutes. Whitespace around the parts is tolerated, as before.
    """
    unit, equals, spec = header.partition("=")
    if not equals or unit.strip(_OWS).lower() != "bytes":
        return None
    first, dash, last = spec.partition("-")
    first, last = first.strip(_OWS), last.strip(_OWS)
    if not dash or not _is_digits(first) or not _is_digits(last):
        return None
    return _position(first), _position(last)


def _is_digits(text: str) -> bool:
    """Empty, or ASCII digits only (str.isdigit() alone would take '²' and Arabic-Indic digits)."""
    return not text or (text.isascii() and text.isdigit())


def _position(digits: str) -> int | None:
    """The byte position the digits spell, None when empty; huge ones are clamped past any file's end."""
    if not digits:
        return None
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else 10 ** _MAX_DIGITS


def _unsatisfiable(size: int, reason: str) -> _Refused:
    """The 416 refusal, which tells the client the file's real size."""
    return _Refused(416, reason, (("Content-Range", f"bytes */{size}"),))


def _accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether Accept-Encoding lists gzip with a q-value above zero."""
    for item in (accept_encoding or "").split(","):
        coding, _, parameters = item.partition(";")
        if coding.strip().lower() != "gzip":
            continue
        for parameter in parameters.split(";"):
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value.strip()) > 0
                except ValueError:  # a q we cannot read: do not bet the encoding on it
                    return False
        return True
    return False


def _error(status: int, reason: str, extra: tuple[tuple[str, str], ...] = ()) -> StaticReply:
    """A short plain-text error reply."""
    body = error_body(status, reason)
    return StaticReply(status, [("Content-Type", _TEXT_PLAIN), ("Content-Length", str(len(body))), *extra],
                       body=body)
