"""The log writer in process: rotation on line boundaries, nothing lost, whatever the chunks look like."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from wsgistack.supervisor.daemon import detaches
from wsgistack.supervisor.load import load_config
from wsgistack.supervisor.logs import LogWriter
from wsgistack.supervisor.own_log import setup_supervisor_log
from wsgistack.supervisor.settings import LogSettings, SupervisorSettings


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


# -- the supervisor's own log ([supervisord] logfile, logfile_maxbytes, logfile_backups) -------------------


@pytest.fixture
def wsgistack_logger():
    """The 'wsgistack' logger as it was, restored after a test that sets up the supervisor's log."""
    root = logging.getLogger("wsgistack")
    saved = (list(root.handlers), root.level, root.propagate)
    yield root
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:], root.level, root.propagate = saved


def test_own_log_rotates_at_logfile_maxbytes_between_records(tmp_path, wsgistack_logger):
    path = tmp_path / "supervisord.log"
    setup_supervisor_log(SupervisorSettings(logfile=str(path), logfile_maxbytes=400, logfile_backups=2))
    log = logging.getLogger("wsgistack.supervisor.test")
    for number in range(60):
        log.info("record %03d", number)
    files = [Path(f"{path}.2"), Path(f"{path}.1"), path]
    lines = [line for name in files for line in name.read_text().splitlines()]
    assert not Path(f"{path}.3").exists()
    assert all(name.stat().st_size <= 400 for name in files)
    # whole records only, the newest in the live file, none lost between the three files kept
    numbers = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert numbers == list(range(numbers[0], 60)) and numbers[0] > 0


def test_own_log_without_backups_starts_again_and_with_maxbytes_0_never_rotates(tmp_path, wsgistack_logger):
    log = logging.getLogger("wsgistack.supervisor.test")
    truncated, kept = tmp_path / "truncated.log", tmp_path / "kept.log"
    setup_supervisor_log(SupervisorSettings(logfile=str(truncated), logfile_maxbytes=300, logfile_backups=0))
    for number in range(30):
        log.info("record %03d", number)
    assert truncated.stat().st_size <= 300 and "record 029" in truncated.read_text()
    assert not Path(f"{truncated}.1").exists()
    setup_supervisor_log(SupervisorSettings(logfile=str(kept), logfile_maxbytes=0))
    for number in range(30):
        log.info("record %03d", number)
    assert len(kept.read_text().splitlines()) == 30 and not Path(f"{kept}.1").exists()


@pytest.mark.parametrize(("text", "daemon", "detached"), [
    ("[supervisord]\n", None, True),  # supervisord's default: detach
    ("[supervisord]\nnodaemon=false\n", None, True),
    ("[supervisord]\nnodaemon=true\n", None, False),
    ("[supervisord]\nnodaemon=false\n", False, False),  # -n
    ("[supervisord]\nnodaemon=true\n", True, True),  # --daemon
    ("[supervisor]\n", None, False),  # wsgistack.toml: the foreground by default
    ("[supervisor]\nnodaemon = false\n", None, True),
    ("[supervisor]\nnodaemon = false\n", False, False),
])
def test_nodaemon_decides_unless_the_command_line_does(tmp_path, text, daemon, detached):
    path = tmp_path / ("wsgistack.toml" if text.startswith("[supervisor]") else "supervisord.conf")
    path.write_text(text)
    assert detaches(load_config(str(path)), daemon) is detached
