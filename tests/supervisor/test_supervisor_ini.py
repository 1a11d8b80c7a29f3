"""supervisord.conf read as supervisord reads it: every field of a documented sample, the expansions, the
includes, each error as one ConfigError line naming the file, the line, the section and the option; and,
when the real `supervisor` package is installed, its own parser agreeing with ours on the same file."""

from __future__ import annotations

import logging
import platform
import re
import shlex
import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from supervisor_samples import ENVIRON, write_ini_sample

from wsgistack.config.errors import ConfigError
from wsgistack.supervisor import options
from wsgistack.supervisor.ini import load_ini
from wsgistack.supervisor.settings import (
    ControlSettings,
    LogSettings,
    ProgramSettings,
    ReadyCheck,
    SupervisorSettings,
)

MB = 1024 * 1024


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None,
         files: dict[str, str] | None = None):
    """Write supervisord.conf (and other files, by relative path) in tmp_path and read it."""
    for name, content in (files or {}).items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    conf = tmp_path / "supervisord.conf"
    conf.write_text(text)
    return load_ini(str(conf), environ if environ is not None else ENVIRON)


def error_of(tmp_path: Path, text: str, files: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, files=files)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- the documented sample, field by field -------------------------------------------------------------


@pytest.fixture
def sample(tmp_path):
    return load_ini(str(write_ini_sample(tmp_path)), ENVIRON), tmp_path


def test_sample_supervisord_section(sample):
    config, here = sample
    assert config.source == str(here / "supervisord.conf")
    assert config.supervisor == SupervisorSettings(
        logfile=f"{here}/logs/supervisord.log", logfile_maxbytes=50 * MB, logfile_backups=10, loglevel="info",
        pidfile=f"{here}/run/supervisord.pid", nodaemon=False, childlogdir=f"{here}/logs", directory=None,
        umask=0o022, identifier="supervisor",
    )


def test_sample_control_sections(sample):
    config, here = sample
    assert config.control == ControlSettings(
        unix_path=f"{here}/run/supervisor.sock", unix_mode=0o770, unix_owner="nobody:nogroup",
        inet_host="127.0.0.1", inet_port=9001, username="admin", password="s3cret",
    )


def test_sample_order_and_groups(sample):
    config, _ = sample
    assert [p.name for p in config.programs] == ["redis", "web_00", "web_01", "web_02", "worker", "beat"]
    assert list(config.groups.items()) == [
        ("redis", ("redis",)), ("web", ("web_00", "web_01", "web_02")), ("jobs", ("worker", "beat")),
    ]
    assert [p.name for p in config.find("jobs")] == ["worker", "beat"]
    assert [p.name for p in config.find("web:*")] == ["web_00", "web_01", "web_02"]


def test_sample_numprocs_program(sample):
    config, here = sample
    web = [p for p in config.programs if p.program == "web"]
    assert web == [
        ProgramSettings(
            name=f"web_{n:02d}", program="web", group="web",
            command=("/home/dev/venv/bin/gunicorn", "--bind", f"127.0.0.1:80{n:02d}", "app:app"),
            directory=str(here),
            environment=(("PYTHONPATH", f"{here}/src"), ("GREETING", "hello, world"), ("PORT", f"80{n:02d}")),
            autorestart="true", exitcodes=(0, 2), startsecs=5.0, stopsignal=signal.SIGQUIT, stopwaitsecs=30.0,
            priority=100, redirect_stderr=True,
            stdout=LogSettings(f"{here}/logs/web_{n:02d}.log", 10 * MB, 5),
            stderr=LogSettings(None, 50 * MB, 10),  # redirected: no stderr file
            ready=ReadyCheck("http", f"http://127.0.0.1:80{n:02d}/health", 20.0),
        )
        for n in range(3)
    ]


def test_sample_auto_and_none_logs(sample):
    config, here = sample
    assert config.find("redis") == [ProgramSettings(
        name="redis", program="redis", group="redis",
        command=("/usr/bin/redis-server", "--port", "6379", "--save", ""), priority=5,
        stdout=LogSettings(f"{here}/logs/redis-stdout---supervisor.log", 1 * MB, 10),
        stderr=LogSettings(None, 50 * MB, 10),
        ready=ReadyCheck("tcp", "127.0.0.1:6379", 30.0),
        backoff_max=10.0, max_restarts=5, restart_window=120.0,
    )]


def test_sample_included_programs_in_a_group(sample):
    config, here = sample
    assert config.find("jobs:worker") == [ProgramSettings(
        name="worker", program="worker", group="jobs",
        command=("celery", "-A", "app", "worker", "--loglevel=info", f"--hostname=worker@{platform.node()}"),
        directory=f"{here}/conf.d",  # %(here)s of an included file is that file's directory
        environment=(("QUEUES", "default, high"), ("C_FORCE_ROOT", "1")),
        user="nobody", umask=0o002, startretries=10, stopasgroup=True, killasgroup=True, stopwaitsecs=600.0,
        priority=200, stdout=LogSettings("/dev/stdout", 0, 10),
        stderr=LogSettings(f"{here}/conf.d/worker.err", 1024 * MB, 0), depends_on=("redis", "web"),
    )]
    assert config.find("jobs:beat") == [ProgramSettings(
        name="beat", program="beat", group="jobs",
        command=("celery", "-A", "app", "beat", "--schedule", f"{here}/conf.d/beat schedule.db"),
        autostart=False, autorestart="false", priority=210, stopsignal=signal.SIGINT, killasgroup=True,
        # AUTO file names carry the group when it is not the process's own name
        stdout=LogSettings(f"{here}/logs/jobs-beat-stdout---supervisor.log"),
        stderr=LogSettings(f"{here}/logs/jobs-beat-stderr---supervisor.log"),
        depends_on=("redis",),
    )]


def test_minimal_file_takes_every_default(tmp_path):
    config = load(tmp_path, "[program:cat]\ncommand=/bin/cat\n")
    assert config.supervisor == SupervisorSettings(nodaemon=False)  # supervisord detaches by default
    assert config.control == ControlSettings()
    assert config.programs == (ProgramSettings(
        name="cat", program="cat", group="cat", command=("/bin/cat",),
        stdout=LogSettings("/tmp/cat-stdout---supervisor.log"),
        stderr=LogSettings("/tmp/cat-stderr---supervisor.log"),
    ),)


# -- values as supervisord accepts them -----------------------------------------------------------------


@pytest.mark.parametrize("word", ["true", "True", "YES", "on", "1"])
def test_true_words(tmp_path, word):
    config = load(tmp_path, f"[program:a]\ncommand=a\nautostart=false\nredirect_stderr={word}\n")
    assert config.programs[0].redirect_stderr is True


@pytest.mark.parametrize("word", ["false", "No", "OFF", "0"])
def test_false_words(tmp_path, word):
    config = load(tmp_path, f"[program:a]\ncommand=a\nautostart={word}\n")
    assert config.programs[0].autostart is False


@pytest.mark.parametrize(("text", "expected"), [
    ("1024", 1024), ("10KB", 10 * 1024), ("1MB", MB), ("50MB", 50 * MB), ("1GB", 1024 * MB), ("0", 0),
    ("10kb", 10 * 1024),
])
def test_sizes(tmp_path, text, expected):
    config = load(tmp_path, f"[program:a]\ncommand=a\nstdout_logfile_maxbytes={text}\n")
    assert config.programs[0].stdout.maxbytes == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("TERM", signal.SIGTERM), ("SIGHUP", signal.SIGHUP), ("int", signal.SIGINT), ("QUIT", signal.SIGQUIT),
    ("KILL", signal.SIGKILL), ("USR1", signal.SIGUSR1), ("SIGUSR2", signal.SIGUSR2), ("15", signal.SIGTERM),
])
def test_stop_signals(tmp_path, text, expected):
    assert load(tmp_path, f"[program:a]\ncommand=a\nstopsignal={text}\n").programs[0].stopsignal == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("true", "true"), ("yes", "true"), ("false", "false"), ("0", "false"), ("unexpected", "unexpected"),
])
def test_autorestart(tmp_path, text, expected):
    assert load(tmp_path, f"[program:a]\ncommand=a\nautorestart={text}\n").programs[0].autorestart == expected


@pytest.mark.parametrize(("text", "expected"), [
    ('A="1, 2",B=3', (("A", "1, 2"), ("B", "3"))),
    ("A=1, B=2", (("A", "1"), ("B", "2"))),
    ("A='single, quoted',B=\"x\"", (("A", "single, quoted"), ("B", "x"))),
    ('URL="postgres://u:p@h/db?x=1"', (("URL", "postgres://u:p@h/db?x=1"),)),
    ("A=1,\n  B=2", (("A", "1"), ("B", "2"))),  # continuation lines
    ('A=""', (("A", ""),)),
])
def test_environment_forms(tmp_path, text, expected):
    assert load(tmp_path, f"[program:a]\ncommand=a\nenvironment={text}\n").programs[0].environment == expected


@pytest.mark.parametrize(("text", "host", "port"), [
    ("127.0.0.1:9001", "127.0.0.1", 9001), (":9001", "0.0.0.0", 9001), ("*:9001", "0.0.0.0", 9001),
    ("9001", "0.0.0.0", 9001), ("localhost:80", "localhost", 80),
])
def test_inet_ports(tmp_path, text, host, port):
    control = load(tmp_path, f"[inet_http_server]\nport={text}\n").control
    assert (control.inet_host, control.inet_port) == (host, port)


@pytest.mark.parametrize(("text", "kind", "target"), [
    ("tcp:127.0.0.1:8000", "tcp", "127.0.0.1:8000"), ("tcp:[::1]:8000", "tcp", "[::1]:8000"),
    ("http://127.0.0.1:8000/ping", "http", "http://127.0.0.1:8000/ping"),
    ("https://example.org/", "http", "https://example.org/"),
    ("unix:/run/app.sock", "unix", "/run/app.sock"), ("unix:///run/app.sock", "unix", "/run/app.sock"),
    ("command:pg_isready -q", "command", "pg_isready -q"),
])
def test_ready_checks(tmp_path, text, kind, target):
    ready = load(tmp_path, f"[program:a]\ncommand=a\nready={text}\n").programs[0].ready
    assert ready == ReadyCheck(kind, target, 30.0)


@pytest.mark.parametrize(("text", "expected"), [
    ("critical", "critical"), ("ERROR", "error"), ("warn", "warning"), ("info", "info"), ("debug", "debug"),
    ("trace", "debug"), ("blather", "debug"),
])
def test_log_levels_become_python_logging_levels(tmp_path, text, expected):
    assert load(tmp_path, f"[supervisord]\nloglevel={text}\n").supervisor.loglevel == expected


def test_stopasgroup_implies_killasgroup(tmp_path):
    program = load(tmp_path, "[program:a]\ncommand=a\nstopasgroup=yes\n").programs[0]
    assert (program.stopasgroup, program.killasgroup) == (True, True)


def test_command_is_split_like_a_shell_but_runs_none(tmp_path):
    program = load(tmp_path, """[program:a]\ncommand=sh -c 'echo "a b" > out' ; a comment\n""").programs[0]
    assert program.command == ("sh", "-c", 'echo "a b" > out')


def test_semicolon_without_space_is_not_a_comment(tmp_path):
    assert load(tmp_path, "[program:a]\ncommand=echo a;b\n").programs[0].command == ("echo", "a;b")


def test_numprocs_start_and_plain_process_num(tmp_path):
    config = load(tmp_path, "[program:w]\ncommand=w --id %(process_num)d of %(numprocs)d\n"
                            "numprocs=3\nnumprocs_start=9\nprocess_name=w%(process_num)d\n")
    # supervisord sorts equal priorities by name, as text: w10 < w11 < w9
    assert [p.name for p in config.programs] == ["w10", "w11", "w9"]
    assert config.find("w9")[0].command == ("w", "--id", "9", "of", "3")


def test_expansion_names(tmp_path):
    config = load(tmp_path, """\
[supervisord]
environment=SHARED="from supervisord",TOKEN=abc

[program:a]
command=run %(group_name)s %(program_name)s %(ENV_TOKEN)s %(ENV_OWN)s 100%% %(ENV_USER)s
environment=OWN=mine,SHARED=overridden

[group:g]
programs=a
""", environ={"USER": "ann"})
    program = config.programs[0]
    # the program's environment and [supervisord]'s are visible as ENV_ names, as in supervisord
    assert program.command == ("run", "g", "a", "abc", "mine", "100%", "ann")
    assert program.environment == (("SHARED", "overridden"), ("TOKEN", "abc"), ("OWN", "mine"))


def test_ignored_options_are_accepted_and_logged(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="wsgistack.supervisor")
    config = load(tmp_path, """\
[supervisord]
minfds=4096
strip_ansi=true

[program:a]
command=a
stdout_capture_maxbytes=1MB
stdout_events_enabled=true
stderr_syslog=true
serverurl=AUTO

[rpcinterface:twiddler]
supervisor.rpcinterface_factory = supervisor_twiddler.rpcinterface:make_twiddler_rpcinterface

[ctlplugin:quick]
supervisor.ctl_factory = supervisor_quick:make_quick_controllerplugin
""")
    assert [p.name for p in config.programs] == ["a"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("strip_ansi" in m for m in warned) and any("stderr_syslog" in m for m in warned)
    assert any("twiddler" in m for m in warned)
    assert not any("minfds" in m for m in warned)


def test_syslog_logfile_is_discarded_with_a_warning(tmp_path, caplog):
    program = load(tmp_path, "[program:a]\ncommand=a\nstdout_logfile=syslog\n").programs[0]
    assert program.stdout.path is None
    assert "syslog" in caplog.text


def test_redirect_stderr_drops_a_named_stderr_file_with_a_warning(tmp_path, caplog):
    text = "[program:a]\ncommand=a\nredirect_stderr=true\nstderr_logfile=/tmp/a.err\n"
    program = load(tmp_path, text).programs[0]
    assert program.stderr.path is None
    assert "stderr_logfile: ignored" in caplog.text


def test_empty_values_supervisord_allows(tmp_path):
    program = load(tmp_path, "[program:a]\ncommand=a\nenvironment=\ndepends_on=\n").programs[0]
    assert (program.environment, program.depends_on) == ((), ())


def test_process_environment_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("WSGISTACK_TEST_BIN", "/opt/bin")
    conf = tmp_path / "supervisord.conf"
    conf.write_text("[program:a]\ncommand=%(ENV_WSGISTACK_TEST_BIN)s/a\n")
    assert load_ini(str(conf)).programs[0].command == ("/opt/bin/a",)


@given(st.dictionaries(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.text(st.characters(blacklist_characters='"%\n\r', blacklist_categories=("Cs", "Cc")), max_size=20),
    min_size=1, max_size=5,
))
def test_quoted_environment_values_round_trip(pairs):
    text = ",".join(f'{key}="{value}"' for key, value in pairs.items())
    assert options.environment(text) == tuple(pairs.items())


# -- includes ---------------------------------------------------------------------------------------------


def test_nested_includes_are_relative_to_their_file(tmp_path):
    config = load(
        tmp_path, "[include]\nfiles = a/*.conf b/one.ini\n", files={
            "a/first.conf": "[include]\nfiles=nested/*.conf\n",
            "a/nested/deep.conf": "[program:deep]\ncommand=%(here)s/run\n",
            "b/one.ini": "[program:one]\ncommand=one\n[include]\nfiles=../b/one.ini\n",  # includes itself
        })
    assert {p.name: p.command for p in config.programs} == {
        "deep": (f"{tmp_path}/a/nested/run",), "one": ("one",),
    }


def test_include_without_matches_warns(tmp_path, caplog):
    config = load(tmp_path, "[include]\nfiles=%(here)s/none/*.conf\n[program:a]\ncommand=a\n")
    assert len(config.programs) == 1
    assert "no file matches" in caplog.text


# -- every error: one line with the file, the line, the section and the option ------------------------


ERRORS = [
    ("[program:web]\ncommand=a\nstartsecs=abc\n",
     r"^{conf}:3: \[program:web\] startsecs: 'abc' is not a number of seconds$"),
    ("[program:web]\ncomand=a\n",
     r"^{conf}:2: \[program:web\] comand: unknown option \(did you mean command\?\)$"),
    ("[program:web]\nautostart=true\n", r"^{conf}: \[program:web\] command: missing"),
    ("[program:web]\ncommand=a\nnumprocs=2\n", r"^{conf}:3: \[program:web\] numprocs: .*%\(process_num\)"),
    ("[program:web]\ncommand=a\nnumprocs=2\nprocess_name=%(program_name)s\n",
     r"^{conf}:4: \[program:web\] process_name: numprocs > 1 needs %\(process_num\)d"),
    ("[program:web]\ncommand=a\nnumprocs=0\n",
     r"^{conf}:3: \[program:web\] numprocs: 0 is below the minimum"),
    ("[program:web]\ncommand=a\nprocess_name=a:b\n",
     r"^{conf}:3: \[program:web\] process_name: 'a:b' contains"),
    ("[eventlistener:mem]\ncommand=memmon\n", r"^{conf}:1: \[eventlistener:mem\]: event listeners are not"),
    ("[fcgi-program:php]\ncommand=php\n", r"^{conf}:1: \[fcgi-program:php\]: FastCGI programs are not"),
    ("\n[progam:web]\ncommand=a\n", r"^{conf}:2: \[progam:web\]: unknown section"),
    ("[program:]\ncommand=a\n", r"^{conf}:1: \[program:\]: needs a name"),
    ("[program:a b]\ncommand=a\n", r"^{conf}:1: \[program:a b\]: bad program name: 'a b' contains ' '"),
    ("[program:a]\ncommand=a\nstopsignal=FOO\n",
     r"^{conf}:3: \[program:a\] stopsignal: 'FOO' is not a signal"),
    ("[program:a]\ncommand=a\nautorestart=maybe\n",
     r"^{conf}:3: \[program:a\] autorestart: 'maybe' is not true, false or unexpected$"),
    ("[program:a]\ncommand=a\nautostart=maybe\n", r"^{conf}:3: \[program:a\] autostart: 'maybe' is not true"),
    ("[program:a]\ncommand=a\nexitcodes=0,256\n",
     r"^{conf}:3: \[program:a\] exitcodes: 256 is not an exit code"),
    ("[program:a]\ncommand=a\nexitcodes=0,x\n", r"^{conf}:3: \[program:a\] exitcodes: 'x' is not a whole"),
    ("[program:a]\ncommand=a\numask=9\n", r"^{conf}:3: \[program:a\] umask: '9' is not an octal number"),
    ("[program:a]\ncommand=a\nstderr_logfile_maxbytes=10XB\n",
     r"^{conf}:3: \[program:a\] stderr_logfile_maxbytes: '10XB' is not a size"),
    ("[program:a]\ncommand=a\nenvironment=A=\"open\n", r"^{conf}:3: \[program:a\] environment: A: the quote"),
    ("[program:a]\ncommand=a\nenvironment=JUSTTEXT\n",
     r"^{conf}:3: \[program:a\] environment: 'JUSTTEXT' is not KEY=value$"),
    ("[program:a]\ncommand=a 'open\n", r"^{conf}:2: \[program:a\] command: .* cannot be split"),
    ("[program:a]\ncommand=a\ndepends_on=nope\n",
     r"^{conf}:3: \[program:a\] depends_on: no program named 'nope'"),
    ("[program:a]\ncommand=a\ndepends_on=b\n[program:b]\ncommand=b\ndepends_on=a\n",
     r"^{conf}:3: \[program:a\] depends_on: a cycle: a -> b -> a$"),
    ("[program:a]\ncommand=a\ndepends_on=a\n", r"^{conf}:3: \[program:a\] depends_on: a cycle: a -> a$"),
    ("[group:g]\nprograms=a,missing\n[program:a]\ncommand=a\n",
     r"^{conf}:2: \[group:g\] programs: no program named 'missing'$"),
    ("[group:g]\nprograms=a\n[group:h]\nprograms=a\n[program:a]\ncommand=a\n",
     r"^{conf}:4: \[group:h\] programs: program 'a' is already in group 'g'$"),
    ("[group:b]\nprograms=a\n[program:a]\ncommand=a\n[program:b]\ncommand=b\n",
     r"^{conf}:2: \[group:b\] programs: the group name 'b' is also a program's$"),
    ("[group:g]\npriority=1\n", r"^{conf}: \[group:g\] programs: missing"),
    (("[group:g]\nprograms=a,b\n[program:a]\ncommand=a\nprocess_name=x\n"
     "[program:b]\ncommand=b\nprocess_name=x\n"),
     r"^{conf}:8: \[program:b\] process_name: the process name 'x' is taken in group 'g'$"),
    ("[program:a]\ncommand=%(ENV_NOPE)s/bin/a\n",
     r"^{conf}:2: \[program:a\] command: %\(ENV_NOPE\)s: no environment variable NOPE$"),
    ("[program:a]\ncommand=%(nope)s\n",
     r"^{conf}:2: \[program:a\] command: %\(nope\)s cannot be expanded \(known: "),
    ("[program:a]\ncommand=a 100%\n", r"^{conf}:2: \[program:a\] command: .*bad %-expansion.*write %% for"),
    ("[program:a]\ncommand=a\nstopasgroup=true\nkillasgroup=false\n",
     r"^{conf}:4: \[program:a\] killasgroup: cannot be false when stopasgroup is true"),
    ("[program:a]\ncommand=a\nready=ftp://x\n",
     r"^{conf}:3: \[program:a\] ready: 'ftp://x' is not a ready check"),
    ("[program:a]\ncommand=a\nready=tcp:nohost\n",
     r"^{conf}:3: \[program:a\] ready: 'nohost' is not HOST:PORT"),
    ("[program:a]\ncommand=a\nready_timeout=5\n", r"^{conf}:3: \[program:a\] ready_timeout: needs a 'ready'"),
    ("[program:a]\ncommand=a\nmax_restarts=-1\n", r"^{conf}:3: \[program:a\] max_restarts: -1 is below"),
    ("[program:a]\ncommand=a\nuser=\n", r"^{conf}:3: \[program:a\] user: is empty$"),
    ("[inet_http_server]\nport=abc\n", r"^{conf}:2: \[inet_http_server\] port: 'abc' is not HOST:PORT"),
    ("[inet_http_server]\nport=127.0.0.1:70000\n",
     r"^{conf}:2: \[inet_http_server\] port: 70000 is not a port"),
    ("[unix_http_server]\nchmod=0700\n", r"^{conf}: \[unix_http_server\] file: missing"),
    ("[unix_http_server]\nfile=/tmp/s.sock\nchown=:grp\n",
     r"^{conf}:3: \[unix_http_server\] chown: ':grp' is not"),
    ("[unix_http_server]\nfile=/tmp/s.sock\nusername=u\n",
     r"^{conf}: \[unix_http_server\] password: missing: a username needs a password"),
    (("[unix_http_server]\nfile=/s\nusername=u\npassword=p\n"
     "[inet_http_server]\nport=9001\nusername=v\npassword=p\n"),
     r"^{conf}:7: \[inet_http_server\] username: differs from \[unix_http_server\]"),
    ("[supervisord]\nloglevel=loud\n",
     r"^{conf}:2: \[supervisord\] loglevel: 'loud' is not one of: critical"),
    ("[supervisord]\nlogfile_backup=3\n",
     r"^{conf}:2: \[supervisord\] logfile_backup: unknown option \(did you mean logfile_backups\?\)$"),
    ("[supervisord]\nnodaemon=perhaps\n",
     r"^{conf}:2: \[supervisord\] nodaemon: 'perhaps' is not true or false$"),
    ("[program:a]\ncommand=a\nthis line has no equals sign\n",
     r"^{conf}:3: not 'option = value' nor a \[section\]: 'this line has no equals sign'$"),
    ("command=a\n[program:a]\n", r"^{conf}:1: an option before any \[section\]: 'command=a'$"),
    ("[include]\nfile=*.conf\n", r"^{conf}:2: \[include\] file: unknown option \(did you mean files\?\)$"),
    ("[DEFAULT]\nautostart=false\n", r"^{conf}:1: \[DEFAULT\]: unknown section"),
]


@pytest.mark.parametrize(("text", "pattern"), ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_errors_are_one_line_with_file_line_section_and_option(tmp_path, text, pattern):
    message = error_of(tmp_path, text)
    assert re.search(pattern.format(conf=re.escape(str(tmp_path / "supervisord.conf"))), message), message


def test_error_in_an_included_file_names_that_file(tmp_path):
    message = error_of(tmp_path, "[include]\nfiles=conf.d/*.conf\n",
                       files={"conf.d/web.conf": "[program:web]\ncommand=web\n\nstartretries=many\n"})
    assert message == (f"{tmp_path}/conf.d/web.conf:4: [program:web] startretries: "
                       "'many' is not a whole number")


def test_a_section_in_two_files_is_an_error(tmp_path):
    message = error_of(tmp_path, "[program:web]\ncommand=a\n[include]\nfiles=extra.conf\n",
                       files={"extra.conf": "\n[program:web]\ncommand=b\n"})
    assert message.startswith(
        f"{tmp_path}/extra.conf:2: [program:web]: also defined in {tmp_path}/supervisord.conf")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"supervisord.conf: cannot read: No such file"):
        load_ini(str(tmp_path / "supervisord.conf"))


# -- supervisord itself agrees -----------------------------------------------------------------------------


def test_real_supervisord_reads_the_sample_the_same_way(tmp_path, monkeypatch):
    """supervisor's own parser (ServerOptions.realize) on the same files: same groups, processes, commands."""
    options_module = pytest.importorskip("supervisor.options")
    monkeypatch.setenv("HOME", ENVIRON["HOME"])
    conf = write_ini_sample(tmp_path)
    theirs = options_module.ServerOptions()
    theirs.realize(args=["-c", str(conf)])
    ours = load_ini(str(conf), ENVIRON)

    assert [g.name for g in theirs.process_group_configs] == list(ours.groups)
    for group in theirs.process_group_configs:
        assert tuple(p.name for p in group.process_configs) == ours.groups[group.name]
        for process in group.process_configs:
            [mine] = ours.find(f"{group.name}:{process.name}")
            assert mine.command == tuple(shlex.split(process.command))
            assert dict(mine.environment) == (process.environment or {})
            assert mine.directory == process.directory
            assert mine.priority == process.priority
            assert mine.stopsignal == process.stopsignal
            assert (mine.stopasgroup, mine.killasgroup) == (process.stopasgroup, process.killasgroup)
            assert mine.exitcodes == tuple(process.exitcodes)
            if isinstance(process.stdout_logfile, str):
                assert mine.stdout.path == process.stdout_logfile
            assert mine.stdout.maxbytes == process.stdout_logfile_maxbytes
    numprocs = {g.name: len(g.process_configs) for g in theirs.process_group_configs}
    assert numprocs == {"redis": 1, "web": 3, "jobs": 2}
