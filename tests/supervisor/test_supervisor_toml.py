"""wsgistack.toml's [supervisor] and [programs.NAME] tables: the TOML twin of the supervisord.conf sample
gives the same SupervisorConfig; TOML's own forms (argv arrays, tables, numbers, `group`) and its errors,
which name the file, the line of `key =` inside the table, the table and the key."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
from pathlib import Path

import pytest
from supervisor_samples import ENVIRON, write_ini_sample, write_toml_sample

from wsgistack.config.errors import ConfigError
from wsgistack.supervisor.ini import load_ini
from wsgistack.supervisor.settings import ControlSettings, LogSettings, ProgramSettings, SupervisorSettings
from wsgistack.supervisor.toml_config import load_toml, stack_run_dir


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None):
    path = tmp_path / "wsgistack.toml"
    path.write_text(text)
    return load_toml(str(path), ENVIRON if environ is None else environ)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_toml_twin_equals_the_ini_sample(tmp_path):
    from_ini = load_ini(str(write_ini_sample(tmp_path)), ENVIRON)
    from_toml = load_toml(str(write_toml_sample(tmp_path)), ENVIRON)
    assert from_toml.source == str(tmp_path / "wsgistack.toml")
    assert dataclasses.replace(from_toml, source=from_ini.source) == from_ini
    # dict equality ignores order: the start order must agree too
    assert list(from_toml.groups.items()) == list(from_ini.groups.items())
    assert from_toml.programs == from_ini.programs


def test_no_tables_gives_defaults(tmp_path):
    config = load(tmp_path, "[serve]\napp = 'app:app'\n")
    # a file with [serve] is one for `wsgistack up`: its socket is in the run folder, where `ctl` looks
    socket = os.path.join(stack_run_dir(config.source), "supervisor.sock")
    assert (config.supervisor, config.control, config.programs, config.groups) == (
        SupervisorSettings(), ControlSettings(unix_path=socket), (), {})


def test_toml_forms(tmp_path):
    config = load(tmp_path, """\
[supervisor]
umask = 0o027
socket = "/run/ws.sock"
socket_mode = 0o660
http = ":9001"

[programs.api]
command = ["python", "-m", "api", "--greeting", "hello world"]
group = "site"
numprocs = 2
process_name = "api-%(process_num)d"
exitcodes = 3
startsecs = 0.5
stdout_logfile_maxbytes = 0
stderr_logfile_maxbytes = "512k"
stopsignal = 1
environment = { WORKERS = 4, RATIO = 0.5, NAME = "%(program_name)s-%(process_num)d" }
depends_on = "db"

[programs.db]
command = "postgres -D '/var/lib/pg data'"
priority = 1
autorestart = "unexpected"
""")
    assert (config.supervisor.umask, config.control.unix_mode) == (0o027, 0o660)
    assert (config.control.unix_path, config.control.inet_host, config.control.inet_port) == (
        "/run/ws.sock", "0.0.0.0", 9001)
    assert list(config.groups.items()) == [("db", ("db",)), ("site", ("api-0", "api-1"))]
    api = config.find("site:api-1")[0]
    assert api.command == ("python", "-m", "api", "--greeting", "hello world")
    assert api.environment == (("WORKERS", "4"), ("RATIO", "0.5"), ("NAME", "api-1"))
    assert (api.exitcodes, api.startsecs, api.stopsignal) == ((3,), 0.5, signal.SIGHUP)
    assert (api.stdout.maxbytes, api.stderr.maxbytes) == (0, 512 * 1024)
    assert api.stdout == LogSettings("/tmp/site-api-1-stdout---supervisor.log", 0, 10)
    assert config.find("db") == [ProgramSettings(
        name="db", program="db", group="db", command=("postgres", "-D", "/var/lib/pg data"), priority=1,
        stdout=LogSettings("/tmp/db-stdout---supervisor.log"),
        stderr=LogSettings("/tmp/db-stderr---supervisor.log"),
    )]


def test_a_group_starts_with_its_most_urgent_member(tmp_path):
    config = load(tmp_path, """\
[programs.late]
command = "late"
priority = 50
group = "g"
[programs.middle]
command = "middle"
priority = 20
[programs.early]
command = "early"
priority = 10
group = "g"
""")
    assert list(config.groups.items()) == [("g", ("early", "late")), ("middle", ("middle",))]


def test_quoted_program_names_and_sub_table_lines(tmp_path):
    message = error_of(tmp_path, """\
[programs."my-app"]
command = "app"

[programs."my-app".environment]
OK = "yes"
BAD = [1]
""")
    assert message.startswith(f"{tmp_path}/wsgistack.toml:4: [programs.my-app] environment: BAD: [1] is not")


ERRORS = [
    ('[programs.web]\ncommand = "a"\nstartsecs = "abc"\n',
     r"^{toml}:3: \[programs.web\] startsecs: 'abc' is not a number of seconds$"),
    ('[programs.web]\ncommand = "a"\nstartsecs = true\n',
     r"^{toml}:3: \[programs.web\] startsecs: True is not a"),
    ('[programs.web]\ncomand = "a"\n',
     r"^{toml}:2: \[programs.web\] comand: unknown option \(did you mean command\?\)$"),
    ("[programs.web]\npriority = 1\n", r"^{toml}: \[programs.web\] command: missing"),
    ('[programs.web]\ncommand = []\n', r"^{toml}:2: \[programs.web\] command: \[\] is not text$"),
    ('[programs.web]\ncommand = [1, 2]\n', r"^{toml}:2: \[programs.web\] command: \[1, 2\] is not text$"),
    ('[programs.web]\ncommand = "a"\nnumprocs = 2\n',
     r"^{toml}:3: \[programs.web\] numprocs: numprocs > 1 needs"),
    ('[programs.web]\ncommand = "a"\npriority = 1.5\n',
     r"^{toml}:3: \[programs.web\] priority: 1.5 is not a whole"),
    ('[programs.web]\ncommand = "a"\nexitcodes = [0, "x"]\n',
     r"^{toml}:3: \[programs.web\] exitcodes: 'x' is not a whole number$"),
    ('[programs.web]\ncommand = "a"\nenvironment = { A = true }\n',
     r"^{toml}:3: \[programs.web\] environment: A: True is not text or a number$"),
    ('[programs.web]\ncommand = "a"\nstdout_logfile_maxbytes = -1\n',
     r"^{toml}:3: \[programs.web\] stdout_logfile_maxbytes: -1 must be zero or more bytes$"),
    ('[programs.web]\ncommand = "a"\ngroup = "a b"\n',
     r"^{toml}:3: \[programs.web\] group: 'a b' contains ' '"),
    ('[programs.web]\ncommand = "a"\ngroup = "api"\n[programs.api]\ncommand = "b"\n',
     r"^{toml}:3: \[programs.web\] group: the group name 'api' is also a program's$"),
    ('[programs.web]\ncommand = "a"\ndepends_on = ["web"]\n',
     r"^{toml}:3: \[programs.web\] depends_on: a cycle: web -> web$"),
    ('[programs.web]\ncommand = "%(ENV_NOPE)s"\n',
     r"^{toml}:2: \[programs.web\] command: %\(ENV_NOPE\)s: no env"),
    ('[programs."a:b"]\ncommand = "a"\n',
     r"^{toml}:1: \[programs.a:b\]: bad program name: 'a:b' contains ':'"),
    ('[programs]\nweb = "a"\n', r"^{toml}: \[programs.web\]: must be a table"),
    ("programs = 3\n", r"^{toml}: 'programs' must be tables"),
    ("supervisor = 3\n", r"^{toml}: 'supervisor' must be a table"),
    ('[supervisor]\nsocket_mode = "rw"\n', r"^{toml}:2: \[supervisor\] socket_mode: 'rw' is not an octal"),
    ('[supervisor]\nhttp = "localhost"\n', r"^{toml}:2: \[supervisor\] http: 'localhost' is not HOST:PORT"),
    ('[supervisor]\nusername = "u"\n', r"^{toml}: \[supervisor\] password: missing"),
    ('[supervisor]\nfile = "/run/x.sock"\n', r"^{toml}:2: \[supervisor\] file: unknown option"),
    ('[supervisor]\nloglevel = 3\n', r"^{toml}:2: \[supervisor\] loglevel: 3 is not text$"),
    ("[programs.web\n", r"^{toml}: not valid TOML: "),
]


@pytest.mark.parametrize(("text", "pattern"), ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_errors_are_one_line_with_file_line_table_and_key(tmp_path, text, pattern):
    message = error_of(tmp_path, text)
    assert re.search(pattern.format(toml=re.escape(str(tmp_path / "wsgistack.toml"))), message), message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"wsgistack.toml: cannot read: No such file"):
        load_toml(str(tmp_path / "wsgistack.toml"))


SAME_VALUES = [
    ("startsecs", "abc"), ("stopsignal", "FOO"), ("exitcodes", "0,256"), ("umask", "9"),
    ("autorestart", "maybe"),
    ("ready", "ftp://x"), ("stdout_logfile_maxbytes", "10XB"), ("environment", "JUSTTEXT"), ("numprocs", "0"),
    ("process_name", "a/b"), ("directory", "%(nope)s"), ("depends_on", "nope"), ("user", ""),
]


@pytest.mark.parametrize(("option", "value"), SAME_VALUES)
def test_both_formats_give_the_same_reason(tmp_path, option, value):
    """The value parsers are shared: the same text fails with the same words in INI and TOML."""
    ini = tmp_path / "supervisord.conf"
    ini.write_text(f"[program:web]\ncommand=a\n{option}={value}\n")
    with pytest.raises(ConfigError) as from_ini:
        load_ini(str(ini), ENVIRON)
    with pytest.raises(ConfigError) as from_toml:
        load(tmp_path, f'[programs.web]\ncommand = "a"\n{option} = "{value}"\n')
    assert str(from_ini.value).startswith(f"{ini}:3: [program:web] {option}: ")
    assert str(from_toml.value).startswith(f"{tmp_path}/wsgistack.toml:3: [programs.web] {option}: ")
    separator = f"] {option}: "
    assert str(from_ini.value).partition(separator)[2] == str(from_toml.value).partition(separator)[2]
