"""The log writer in process: rotation on line boundaries, nothing lost, whatever the chunks look like."""

from __future__ import annotations

import random
from pathlib import Path

from wsgistack.supervisor.logs import LogWriter
from wsgistack.supervisor.settings import LogSettings


def _rotated(path: Path, backups: int) -> list[bytes]:
    """The files of a rotation, oldest first."""
    names = [Path(f"{path}.{index}") for index in range(backups, 0, -1)] + [path]
    return [name.read_bytes() for name in names if name.exists()]


def _write_in_chunks(writer: LogWriter, data: bytes, rng: random.Random) -> None:
    # chunks as a pipe delivers them: cut anywhere, mostly inside a line
    position = 0
    while position < len(data):
        size = rng.choice((1, 7, 64, 300, 1000, 4096))
        writer.write(data[position:position + size])
        position += size
        if rng.random() < 0.2:
            writer.flush()  # let the writer thread see this chunk alone, as a slow pipe would


def test_rotation_keeps_lines_whole_and_loses_nothing(tmp_path):
    rng = random.Random(10)
    lines = [b"line %05d %s\n" % (i, b"x" * rng.randrange(0, 180)) for i in range(300)]
    data = b"".join(lines)
    path = tmp_path / "app.log"
    writer = LogWriter(LogSettings(str(path), maxbytes=500, backups=200))
    _write_in_chunks(writer, data, rng)
    writer.close()
    files = _rotated(path, 200)
    assert len(files) > 50
    assert b"".join(files) == data
    for content in files:
        assert content.endswith(b"\n") and all(line + b"\n" in lines for line in content.split(b"\n")[:-1])
        longest = max(len(line) for line in lines)
        assert len(content) < 500 + longest  # past maxbytes only to finish a line


def test_a_line_longer_than_maxbytes_is_split_and_nothing_is_lost(tmp_path):
    data = b"short\n" + b"y" * 1300 + b"\n" + b"after\n"
    path = tmp_path / "app.log"
    writer = LogWriter(LogSettings(str(path), maxbytes=500, backups=10))
    _write_in_chunks(writer, data, random.Random(3))
    writer.close()
    files = _rotated(path, 10)
    assert b"".join(files) == data
    assert files[0] == b"short\n" and files[-1].endswith(b"after\n")
    assert all(len(content) <= 500 for content in files)
