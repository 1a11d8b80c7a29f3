"""Chunk-size lines of a chunked request body, found and tidied before llhttp sees them.

RFC 9112 §7.1.1 allows whitespace (BWS) around the ";" and "=" of chunk extensions; llhttp refuses it and
has no setting for it. So the parser frames a chunked body here: each chunk-size line is checked against
the RFC's grammar and handed on as the bare size ("1a ; name = value" becomes "1a"); the chunk data, the
CRLF after it and the trailer section pass unchanged. llhttp still parses every byte (sizes, data, CRLFs,
trailer fields) and stays the authority on framing: this only removes what no app ever sees.
"""

from __future__ import annotations

import re

from wsgistack.http.errors import HTTPError

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_SIZE_LINE = re.compile(
    rf"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*{_TOKEN}(?:[ \t]*=[ \t]*(?:{_TOKEN}|{_QUOTED}))?)*\r\n".encode("latin-1"))
LINE_MAX = 4096  # longest chunk-size line, extensions included (nginx reads them in a 1 KiB-order buffer)

_SIZE, _DATA, _TRAILERS = range(3)


class ChunkLines:
    """Walks one chunked body: `take` returns what llhttp should get and how far the input was used."""

    def __init__(self) -> None:
        self._state = _SIZE
        self._line = bytearray()
        self._remaining = 0  # chunk data + its CRLF still to pass
        self._line_length = 0  # trailer section: bytes of the current line so far, and its first byte
        self._line_first = 0
        self.done = False

    def take(self, data: bytes, pos: int) -> tuple[bytes, int]:
        """Bytes for llhttp from data[pos:], and the position after the input used (the body's end at most)."""
        out: list[bytes] = []
        end = len(data)
        while pos < end and not self.done:
            if self._state == _DATA:
                step = min(self._remaining, end - pos)
                out.append(data[pos:pos + step])
                pos += step
                self._remaining -= step
                if not self._remaining:
                    self._state = _SIZE
            elif self._state == _SIZE:
                newline = data.find(b"\n", pos)
                stop = end if newline < 0 else newline + 1
                self._line += data[pos:stop]
                pos = stop
                if len(self._line) > LINE_MAX:
                    raise HTTPError(400, "Chunk size line too long")
                if newline >= 0:
                    out.append(self._size_line())
            else:
                pos = self._trailers(data, pos, out)
        return b"".join(out), pos

    def _size_line(self) -> bytes:
        match = _SIZE_LINE.fullmatch(self._line)
        self._line = bytearray()
        if match is None:
            raise HTTPError(400, "Invalid chunk size line")
        digits = match[1]
        size = int(digits, 16) if len(digits.lstrip(b"0")) <= 16 else -1  # llhttp refuses the overflow itself
        if size == 0:
            self._state = _TRAILERS
        else:
            self._state, self._remaining = _DATA, max(size, 0) + 2
        return digits + b"\r\n"

    def _trailers(self, data: bytes, pos: int, out: list[bytes]) -> int:
        # passed on as they come; only the empty line that ends the section is looked for
        while pos < len(data):
            newline = data.find(b"\n", pos)
            stop = len(data) if newline < 0 else newline + 1
            if self._line_length == 0:
                self._line_first = data[pos]
            self._line_length += stop - pos
            out.append(data[pos:stop])
            pos = stop
            if newline < 0:
                break
            if self._line_length == 2 and self._line_first == 13:  # "\r\n": the end of the body
                self.done = True
                break
            self._line_length = 0
        return pos
