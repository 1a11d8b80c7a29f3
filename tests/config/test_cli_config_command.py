"""`wsgistack config sample` and `wsgistack config check`, run as real `python -m wsgistack` subprocesses.

The samples must load as printed (by our readers and by supervisord's), list every program option with its
default, and a bad file must give one stderr line naming the file and the option, exit code 2.
"""

from __future__ import annotations

import dataclasses
import re
import signal
from pathlib import Path

import pytest
from commands import one_error_line, run

from wsgistack.config.loader import load_serve_settings
from wsgistack.proxy.config import load_proxy_settings
from wsgistack.supervisor.assemble import PROGRAM_OPTIONS, PROGRAM_SPECIAL
from wsgistack.supervisor.ini import load_ini
from wsgistack.supervisor.settings import LogSettings, ProgramSettings, ReadyCheck, SupervisorConfig
from wsgistack.supervisor.toml_config import load_toml

ERROR = "wsgistack config: error: "
SUPPORTED = sorted(PROGRAM_OPTIONS.keys() | PROGRAM_SPECIAL)


def printed_sample(tmp_path: Path, fmt: str, name: str) -> Path:
    """`wsgistack config sample --format FMT`, saved as tmp_path/NAME."""
    result = run(tmp_path, "config", "sample", "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    path = tmp_path / name
    path.write_text(result.stdout, encoding="utf-8")
    return path


def assert_checks_ok(path: Path, programs: int, processes: int) -> None:
    """`wsgistack config check PATH` says ok with these counts, and nothing else."""
    result = run(path.parent, "config", "check", str(path))
    assert (result.returncode, result.stderr) == (0, "")
    counted = f"{programs} program{'' if programs == 1 else 's'}, {processes} process{'' if processes == 1 else 'es'}"
    assert result.stdout == f"{path}: ok ({counted})\n"


def assert_example_has_defaults(config: SupervisorConfig, childlogdir: Path) -> None:
    """The sample's one program carries every default of ProgramSettings, except autostart (off)."""
    [web] = config.programs
    name = web.name  # "web" in supervisord.conf, "worker" in wsgistack.toml (where [serve] is the web app)
    assert (web.name, web.program, web.group, web.autostart) == (name, name, name, False)
    assert name in ("web", "worker")
    defaults = ProgramSettings(name=name, program=name, group=name, command=web.command)
    for field in dataclasses.fields(ProgramSettings):
        if field.name not in ("autostart", "stdout", "stderr"):
            assert getattr(web, field.name) == getattr(defaults, field.name), field.name
    for channel in ("stdout", "stderr"):  # AUTO: a file in childlogdir, default rotation
        assert getattr(web, channel) == LogSettings(str(childlogdir / f"{name}-{channel}---supervisor.log"))


def uncommented(text: str, comment: str) -> str:
    """The sample with its commented-out example options switched on, inside the sections that are live."""
    option = re.compile(rf"^{re.escape(comment)}\s*(\w+\s*=)")
    lines, live = [], False
    for line in text.splitlines():
        if line.startswith("["):
            live = True
        elif re.match(rf"{re.escape(comment)}\s*\[", line):
            live = False  # a commented-out section keeps its commented-out options
        lines.append(option.sub(r"\1", line) if live else line)
    return "\n".join(lines) + "\n"


# -- the samples load as printed ---------------------------------------------------------------------------


def test_ini_sample_checks_and_has_the_defaults(tmp_path):
    path = printed_sample(tmp_path, "ini", "supervisord.conf")
    assert run(tmp_path, "config", "sample").stdout == path.read_text(), "ini is the default format"
    assert_checks_ok(path, 1, 1)
    config = load_ini(str(path), environ={})
    assert config.programs[0].command == ("wsgistack", "serve", "myproject.wsgi:application", "--bind",
                                          "127.0.0.1:8000")
    assert_example_has_defaults(config, tmp_path)
    assert config.control.unix_path == str(tmp_path / "supervisor.sock")
    assert config.supervisor.logfile == str(tmp_path / "supervisord.log")


def test_toml_sample_checks_and_has_the_defaults(tmp_path):
    path = printed_sample(tmp_path, "toml", "wsgistack.toml")
    assert_checks_ok(path, 1, 1)
    config = load_toml(str(path), environ={})
    assert config.programs[0].command == ("celery", "--app", "myproject", "worker", "--loglevel", "info")
    assert_example_has_defaults(config, tmp_path)
    assert config.control.unix_path == str(tmp_path / "supervisor.sock")
    serve = load_serve_settings({"config": str(path)}, environ={}, cwd=tmp_path)
    assert (serve.app, serve.bind, serve.workers, serve.worker_class) == (
        "myproject.wsgi:application", ("127.0.0.1:8000",), 2, "event")
    proxy = load_proxy_settings(str(path), {})
    assert proxy.upstreams["app"].servers[0].name == serve.bind[0]  # the proxy sample fronts the serve sample
    assert [route.upstream for route in proxy.routes] == ["app"]


def test_toml_sample_runs_under_up(tmp_path):
    """The sample is a stack: its app server behind its proxy, the upstream "app" on the private socket."""
    from wsgistack.stack.compose import load_stack

    path = printed_sample(tmp_path, "toml", "wsgistack.toml")
    stack = load_stack(str(path), environ={})
    assert [server.name for server in stack.servers] == ["app"]
    assert stack.proxy.upstreams["app"].servers[0].name == f"unix:{stack.socket('app')}"
    names = [program.name for program in stack.supervisor_config().programs]
    assert names == ["app", "proxy", "worker"]


@pytest.mark.parametrize(("fmt", "pattern"), [("ini", r"^;?{}="), ("toml", r"^(# )?{} = ")])
def test_samples_list_every_program_option(tmp_path, fmt, pattern):
    text = printed_sample(tmp_path, fmt, f"sample.{fmt}").read_text()
    missing = [name for name in SUPPORTED if not re.search(pattern.format(name), text, re.MULTILINE)]
    assert missing == []


def test_ini_sample_has_supervisords_sections(tmp_path):
    text = printed_sample(tmp_path, "ini", "supervisord.conf").read_text()
    for header in ("[unix_http_server]", "[supervisord]", "[rpcinterface:supervisor]", "[supervisorctl]",
                   "[program:web]", ";[group:webapps]", ";[include]"):
        assert f"\n{header}" in text, header
    for option in ("logfile", "logfile_maxbytes", "logfile_backups", "loglevel", "pidfile", "nodaemon",
                   "childlogdir", "file", "chmod", "serverurl"):
        assert re.search(rf"^{option}=", text, re.MULTILINE), option


@pytest.mark.parametrize(("fmt", "comment", "loader", "db", "program"), [
    ("ini", ";", load_ini, "[program:db]\ncommand=db-server\n", "web"),
    ("toml", "#", load_toml, '[programs.db]\ncommand = "db-server"\n', "worker"),
])
def test_commented_out_examples_are_valid_too(tmp_path, fmt, comment, loader, db, program):
    """Switching on every commented-out example option keeps the file valid (depends_on needs its db)."""
    text = printed_sample(tmp_path, fmt, f"sample.{fmt}").read_text()
    path = tmp_path / f"everything.{fmt}"
    path.write_text(uncommented(text, comment) + db)
    assert_checks_ok(path, 2, 2)
    [web] = loader(str(path), environ={}).find(program)
    assert (web.user, web.umask, web.directory) == ("www-data", 0o022, "/srv/myproject")
    assert web.depends_on == ("db",)
    assert dict(web.environment)["DJANGO_SETTINGS_MODULE"] == "myproject.settings"
    assert web.ready == ReadyCheck("http", "http://127.0.0.1:8000/health", 30.0)


def test_supervisord_itself_reads_the_ini_sample(tmp_path):
    options = pytest.importorskip("supervisor.options")
    path = printed_sample(tmp_path, "ini", "supervisord.conf")
    theirs = options.ServerOptions()
    theirs.realize(args=["-c", str(path)])
    [group] = theirs.process_group_configs
    [process] = group.process_configs
    assert (group.name, process.name, process.autostart, process.priority) == ("web", "web", False, 999)
    assert (process.startsecs, process.startretries, process.stopwaitsecs) == (1, 3, 10)
    assert (process.stopsignal, tuple(process.exitcodes)) == (signal.SIGTERM, (0,))
    assert process.stdout_logfile_maxbytes == 50 * 1024 * 1024
    assert theirs.server_configs[0]["file"] == str(tmp_path / "supervisor.sock")


# -- check: what it counts and what it reads ---------------------------------------------------------------


def test_check_counts_programs_and_processes(tmp_path):
    path = tmp_path / "supervisord.conf"
    path.write_text("[program:web]\ncommand=web\nprocess_name=%(program_name)s_%(process_num)d\nnumprocs=3\n"
                    "[program:worker]\ncommand=worker\n")
    assert_checks_ok(path, 2, 4)


def test_check_of_a_serve_only_toml_needs_no_app_and_ignores_the_environment(tmp_path):
    path = tmp_path / "wsgistack.toml"
    path.write_text("[serve]\nworkers = 3\n")
    result = run(tmp_path, "config", "check", "wsgistack.toml", env={"WSGISTACK_WORKERS": "0"})
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "wsgistack.toml: ok (0 programs, 0 processes)\n"


# -- check: errors are one line, exit code 2 ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("supervisord.conf", "[program:web]\ncommand=web\nstartsecs=soon\n",
     ":3: [program:web] startsecs: 'soon' is not a number of seconds"),
    ("supervisord.conf", "[program:web]\ncommand=web\nautorestrat=true\n",
     ":3: [program:web] autorestrat: unknown option (did you mean autorestart?)"),
    ("supervisord.conf", "[program:web]\ncommand=web\n[programs:web]\ncommand=web\n",
     ":3: [programs:web]: unknown section"),
    ("supervisord.conf", "[program:web]\ncommand web\n", ":2: not 'option = value' nor a [section]"),
    ("app.conf", "[program:web]\n", ": [program:web] command: missing"),
    ("wsgistack.toml", '[programs.web]\ncommand = "web"\nstopsignal = "TERN"\n',
     ":3: [programs.web] stopsignal: 'TERN' is not a signal"),
    ("wsgistack.toml", '[supervisor]\nlogfiles = "x.log"\n',
     ":2: [supervisor] logfiles: unknown option (did you mean logfile?)"),
    ("wsgistack.toml", "[serve]\napp = 'a:b'\nworkers = 0\n",
     ":3: serve.workers: 0 is below the minimum of 1"),
    ("wsgistack.toml", "[serve]\nworkerz = 2\n", ":2: serve.workerz: unknown setting"),
    ("wsgistack.toml", "[sever]\nworkers = 2\n", ":1: [sever]: unknown table"),
    ("wsgistack.toml", '[programs.web\ncommand = "web"\n', ": not valid TOML"),
])
def test_check_reports_the_first_error_on_one_line(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    line = one_error_line(run(tmp_path, "config", "check", str(tmp_path / name)))
    assert line.startswith(f"{ERROR}{tmp_path / name}{expected}"), line


def test_check_of_a_missing_file(tmp_path):
    line = one_error_line(run(tmp_path, "config", "check", "nowhere.conf"))
    assert line == f"{ERROR}config file nowhere.conf: no such file"


@pytest.mark.parametrize(("args", "expected"), [
    ((), "wsgistack config: error: the following arguments are required: ACTION"),
    (("check",), "wsgistack config check: error: the following arguments are required: FILE"),
    (("sample", "--format", "yaml"), "wsgistack config sample: error: argument --format: invalid choice"),
    (("sample", "--verbose"), "wsgistack config: error: unrecognized arguments: --verbose"),
])
def test_usage_errors_are_one_line(tmp_path, args, expected):
    assert one_error_line(run(tmp_path, "config", *args)).startswith(expected)
