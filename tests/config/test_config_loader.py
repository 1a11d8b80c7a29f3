"""load_serve_settings: command line > WSGISTACK_<NAME> > [serve] in the TOML file > defaults, and errors that
name the option and its source (flag, variable, or file:line).

The command-line dict is produced by the real argparse parser (`wsgistack serve ...`), so it has exactly the
shape the CLI hands over; files are real files in tmp_path; the environment is a plain dict.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from wsgistack.cli import build_parser
from wsgistack.config import ConfigError, ServeSettings
from wsgistack.config import loader as config_loader
from wsgistack.config.loader import load_serve_settings

FIELDS = {fld.name: fld for fld in ServeSettings.options()}


def cli(*argv: str) -> dict:
    """What `wsgistack serve ARGV` hands to the loader."""
    args = vars(build_parser().parse_args(["serve", *argv]))
    args.pop("command")
    args.pop("check_config")
    return args


def write(folder: Path, body: str, name: str = "wsgistack.toml") -> Path:
    path = folder / name
    path.write_text(body, encoding="utf-8")
    return path


def load(tmp_path: Path, argv: tuple[str, ...] = ("app:app",), env: dict | None = None) -> ServeSettings:
    return load_serve_settings(cli(*argv), env or {}, tmp_path)


def config_error(tmp_path: Path, argv: tuple[str, ...] = ("app:app",), env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, argv, env)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# -- defaults ------------------------------------------------------------------------------------------


def test_defaults_with_only_an_app(tmp_path):
    settings = load(tmp_path)
    for name, fld in FIELDS.items():
        if name != "app":
            assert getattr(settings, name) == fld.default, name
    assert settings.app == "app:app"
    assert settings.bind == ("127.0.0.1:8000",)
    assert settings.worker_class == "event"
    assert settings.timeout == 30.0
    assert settings.preload is False
    assert settings.max_body_size == 0
    assert settings.forwarded_allow_ips == ("127.0.0.1", "::1")


def test_environ_defaults_to_os_environ_and_cwd_to_the_process_cwd(tmp_path, monkeypatch):
    # the loader's own defaults for `environ` and `cwd`: the real environment and working directory
    monkeypatch.chdir(tmp_path)
    write(tmp_path, '[serve]\napp = "fromfile:app"\nthreads = 7\n')
    monkeypatch.setenv("WSGISTACK_BACKLOG", "77")
    settings = load_serve_settings({})
    assert (settings.app, settings.threads, settings.backlog) == ("fromfile:app", 7, 77)


# -- precedence ----------------------------------------------------------------------------------------

# option, TOML value, env value, CLI argv, and the value each source alone yields
PRECEDENCE = [
    ("workers", "workers = 2", "3", ("-w", "4"), (2, 3, 4)),
    ("timeout", "timeout = 11.5", "12", ("--timeout", "13.25"), (11.5, 12.0, 13.25)),
    ("preload", "preload = true", "false", ("--preload",), (True, False, True)),
    ("max_body_size", 'max_body_size = "512k"', "10m", ("--max-body-size", "1g"), (512 << 10, 10 << 20, 1 << 30)),
    ("forwarded_allow_ips", 'forwarded_allow_ips = ["10.0.0.1", "10.0.0.2"]', "10.1.0.1, 10.1.0.2",
     ("--forwarded-allow-ips", "*"), (("10.0.0.1", "10.0.0.2"), ("10.1.0.1", "10.1.0.2"), ("*",))),
    ("bind", 'bind = ["127.0.0.1:9001", "unix:/tmp/a.sock"]', "127.0.0.1:9002,[::1]:9002",
     ("-b", "127.0.0.1:9003", "--bind", "unix:/tmp/c.sock"),
     (("127.0.0.1:9001", "unix:/tmp/a.sock"), ("127.0.0.1:9002", "[::1]:9002"),
      ("127.0.0.1:9003", "unix:/tmp/c.sock"))),
    ("worker_class", 'worker_class = "sync"', "THREAD", ("-k", "sync"), ("sync", "thread", "sync")),
    ("umask", 'umask = "027"', "0o22", ("-m", "077"), (0o27, 0o22, 0o77)),
]
IDS = [row[0] for row in PRECEDENCE]


@pytest.mark.parametrize(("name", "toml", "env", "argv", "expected"), PRECEDENCE, ids=IDS)
def test_file_beats_default(tmp_path, name, toml, env, argv, expected):
    write(tmp_path, f"[serve]\n{toml}\n")
    assert getattr(load(tmp_path), name) == expected[0]


@pytest.mark.parametrize(("name", "toml", "env", "argv", "expected"), PRECEDENCE, ids=IDS)
def test_env_beats_file(tmp_path, name, toml, env, argv, expected):
    write(tmp_path, f"[serve]\n{toml}\n")
    assert getattr(load(tmp_path, env={f"WSGISTACK_{name.upper()}": env}), name) == expected[1]


@pytest.mark.parametrize(("name", "toml", "env", "argv", "expected"), PRECEDENCE, ids=IDS)
def test_env_alone_beats_default(tmp_path, name, toml, env, argv, expected):
    assert getattr(load(tmp_path, env={f"WSGISTACK_{name.upper()}": env}), name) == expected[1]


@pytest.mark.parametrize(("name", "toml", "env", "argv", "expected"), PRECEDENCE, ids=IDS)
def test_cli_beats_env_and_file(tmp_path, name, toml, env, argv, expected):
    write(tmp_path, f"[serve]\n{toml}\n")
    settings = load(tmp_path, ("app:app", *argv), env={f"WSGISTACK_{name.upper()}": env})
    assert getattr(settings, name) == expected[2]


def test_each_source_keeps_the_options_it_alone_sets(tmp_path):
    write(tmp_path, '[serve]\nthreads = 8\nkeep_alive = 2\nbacklog = 100\n')
    settings = load(tmp_path, ("app:app", "--backlog", "300"),
                    env={"WSGISTACK_KEEP_ALIVE": "3", "WSGISTACK_GRACEFUL_TIMEOUT": "9"})
    assert settings.threads == 8  # file only
    assert settings.keep_alive == 3.0  # env over file
    assert settings.graceful_timeout == 9.0  # env only
    assert settings.backlog == 300  # CLI over file
    assert settings.timeout == 30.0  # nobody: default


def test_cli_no_preload_beats_env_and_file(tmp_path):
    write(tmp_path, "[serve]\npreload = true\n")
    settings = load(tmp_path, ("app:app", "--no-preload"), env={"WSGISTACK_PRELOAD": "yes"})
    assert settings.preload is False


def test_app_from_each_source(tmp_path):
    write(tmp_path, '[serve]\napp = "file:app"\n')
    assert load(tmp_path, ()).app == "file:app"
    assert load(tmp_path, (), env={"WSGISTACK_APP": "env:app"}).app == "env:app"
    assert load(tmp_path, ("cli:app",), env={"WSGISTACK_APP": "env:app"}).app == "cli:app"


def test_empty_env_value_is_ignored(tmp_path):
    write(tmp_path, "[serve]\nworkers = 5\n")
    assert load(tmp_path, env={"WSGISTACK_WORKERS": ""}).workers == 5


def test_unrelated_env_vars_are_ignored(tmp_path):
    env = {"WSGISTACK_NO_SUCH_OPTION": "x", "WSGISTACK_": "y", "wsgistack_workers": "9", "WORKERS": "9"}
    assert load(tmp_path, env=env).workers == FIELDS["workers"].default


def test_bind_repeated_flags_and_commas_combine(tmp_path):
    settings = load(tmp_path, ("app:app", "-b", "127.0.0.1:1,127.0.0.1:2", "-b", "unix:/tmp/x.sock"))
    assert settings.bind == ("127.0.0.1:1", "127.0.0.1:2", "unix:/tmp/x.sock")


def test_bind_toml_array_items_may_hold_commas(tmp_path):
    write(tmp_path, '[serve]\nbind = ["127.0.0.1:1, 127.0.0.1:2", "127.0.0.1:3"]\n')
    assert load(tmp_path).bind == ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")


def test_bind_toml_string_is_split_on_commas(tmp_path):
    write(tmp_path, '[serve]\nbind = "127.0.0.1:1,127.0.0.1:2"\n')
    assert load(tmp_path).bind == ("127.0.0.1:1", "127.0.0.1:2")


# -- TOML keys and types -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["max-body-size", "max_body_size"])
def test_dashed_and_underscored_keys(tmp_path, key):
    write(tmp_path, f'[serve]\n{key} = "10m"\n')
    assert load(tmp_path).max_body_size == 10 << 20


def test_dashed_and_underscored_keys_mixed_in_one_file(tmp_path):
    write(tmp_path, '[serve]\nworker-class = "sync"\ngraceful_timeout = 4\nlimit-request-line = 100\n'
                    '"access-log-format" = "common"\n')
    settings = load(tmp_path)
    assert (settings.worker_class, settings.graceful_timeout, settings.limit_request_line,
            settings.access_log_format) == ("sync", 4.0, 100, "common")


def test_every_option_can_be_set_in_the_file(tmp_path):
    body = """[serve]
app = "pkg.mod:create_app()"
bind = ["unix:/tmp/w.sock"]
workers = 3
worker-class = "sync"
threads = 2
worker-connections = 10
backlog = 64
timeout = 0
graceful-timeout = 1.5
keep-alive = 0
client-timeout = 2
max-requests = 1000
max-requests-jitter = 50
limit-request-line = 0
limit-request-fields = 0
limit-request-field-size = 0
max-body-size = 1048576
access-log = "-"
access-log-format = "json"
error-log = "/tmp/error.log"
log-level = "WARNING"
pid = "/tmp/w.pid"
preload = "on"
reload = false
forwarded-allow-ips = "*"
umask = 0o022
user = ""
group = ""
proc-name = "web"
chdir = "/tmp"
daemon = false
health-path = "/healthz"
protocol = "FastCGI"
protocol-allow-from = "10.0.0.0/8, ::1"
metrics-bind = "unix:/tmp/m.sock"
max-threads = 64
inline-below = "50us"
"""
    write(tmp_path, body)
    settings = load(tmp_path, ())
    assert settings == ServeSettings(
        app="pkg.mod:create_app()", bind=("unix:/tmp/w.sock",), workers=3, worker_class="sync", threads=2,
        worker_connections=10, backlog=64, timeout=0.0, graceful_timeout=1.5, keep_alive=0.0, client_timeout=2.0,
        max_requests=1000, max_requests_jitter=50, limit_request_line=0, limit_request_fields=0,
        limit_request_field_size=0, max_body_size=1 << 20, access_log="-", access_log_format="json",
        error_log="/tmp/error.log", log_level="warning", pid="/tmp/w.pid", preload=True, reload=False,
        forwarded_allow_ips=("*",), umask=0o22, user=None, group=None, proc_name="web", chdir="/tmp", daemon=False,
        health_path="/healthz", protocol="fastcgi", protocol_allow_from=("10.0.0.0/8", "::1"),
        metrics_bind="unix:/tmp/m.sock", max_threads=64, inline_below=50e-6,
    )
    # apps excludes app: tests/config/test_config_mounts.py sets it from the file
    assert set(FIELDS) - {"apps"} == {line.split(" =")[0].replace("-", "_") for line in body.splitlines()[1:] if line}


@pytest.mark.parametrize(("body", "line", "table", "hint"), [
    ('[server]\nworkers = 2\n', 1, "server", "; did you mean [serve]?"),
    ('[serve]\nworkers = 2\n[serve-extra]\nx = 1\n', 3, "serve-extra", "; did you mean [serve]?"),
    ('workers = 2\n[serve]\n', 1, "workers", ""),
    ('[serve]\nworkers = 2\n[tool.black]\nx = 1\n', 3, "tool", ""),
])
def test_other_tables_are_refused_with_their_line(tmp_path, body, line, table, hint):
    # a misspelt table would otherwise be ignored and its settings silently not applied
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == (f"{path}:{line}: [{table}]: unknown table (known: [serve], [proxy], "
                                 f"[supervisor], [programs.NAME]){hint}")


def test_file_without_a_serve_table_gives_defaults(tmp_path):
    write(tmp_path, '# nothing to serve here\n[proxy]\nworkers = 4\n')
    assert load(tmp_path).workers == FIELDS["workers"].default


def test_empty_file_gives_defaults(tmp_path):
    write(tmp_path, "")
    assert load(tmp_path) == load_serve_settings(cli("app:app"), {}, tmp_path / "nowhere")


# -- errors from the file ------------------------------------------------------------------------------


def test_unknown_key_names_file_line_and_key(tmp_path):
    path = write(tmp_path, '[serve]\napp = "a:b"\n# workers\nworkers = 2\nno-such-thing = 1\n')
    message = config_error(tmp_path)
    assert message == f"{path}:5: serve.no-such-thing: unknown setting"


def test_unknown_quoted_key_names_its_line(tmp_path):
    path = write(tmp_path, '[serve]\n"wrokers" = 2\n')
    assert config_error(tmp_path) == f"{path}:2: serve.wrokers: unknown setting; did you mean 'workers'?"


def test_cli_only_names_are_not_settings_in_the_file(tmp_path):
    path = write(tmp_path, '[serve]\nconfig = "other.toml"\n')
    assert config_error(tmp_path).startswith(f"{path}:2: serve.config: unknown setting")


@pytest.mark.parametrize(
    ("line", "key", "reason"),
    [
        ('workers = "abc"', "workers", "'abc' is not a whole number"),
        ("workers = 0", "workers", "below the minimum of 1"),
        ("workers = 2.5", "workers", "not a whole number"),
        ("workers = true", "workers", "not a whole number"),
        ('timeout = "soon"', "timeout", "not a number of seconds"),
        ("timeout = -1", "timeout", "zero or more seconds"),
        ('preload = "perhaps"', "preload", "not true or false"),
        ('max-body-size = "lots"', "max-body-size", "not a size"),
        ("max_body_size = 1.5", "max_body_size", "not a size"),
        ('worker_class = "eventlet"', "worker_class", "not one of: sync, thread, event, gevent, tornado"),
        ("bind = []", "bind", "the list is empty"),
        ("bind = 8000", "bind", "not a list of strings"),
        ("forwarded_allow_ips = 3", "forwarded_allow_ips", "not a list of strings"),
        ('umask = "999"', "umask", "not an octal number"),
        ("app = 3", "app", "not a non-empty string"),
        ("pid = 3", "pid", "not a string"),
    ],
)
def test_bad_value_names_file_line_and_key(tmp_path, line, key, reason):
    app = "# the app is the bad value" if key == "app" else 'app = "a:b"'
    path = write(tmp_path, f"# comment\n[serve]\n{app}\n# another comment\n  {line}\n")
    message = config_error(tmp_path, ())
    assert message.startswith(f"{path}:5: serve.{key}: "), message
    assert reason in message


def test_error_line_is_right_after_blank_lines(tmp_path):
    path = write(tmp_path, '[serve]\napp = "a:b"\n\n\nthreads = "many"\n')
    assert config_error(tmp_path).startswith(f"{path}:5: serve.threads: ")


def test_unknown_key_line_is_right_after_a_blank_line(tmp_path):
    path = write(tmp_path, '[serve]\napp = "a:b"\nworkers = 2\n\nwrokers = 3\n')
    assert config_error(tmp_path) == f"{path}:5: serve.wrokers: unknown setting; did you mean 'workers'?"


def test_error_line_ignores_the_same_key_in_another_table(tmp_path):
    path = write(tmp_path, '[proxy]\nworkers = 1\n[serve]\napp = "a:b"\nworkers = "abc"\n')
    assert config_error(tmp_path).startswith(f"{path}:5: serve.workers: ")


def test_dotted_serve_key_error_names_file_and_key(tmp_path):
    # `serve.workers = ...` outside a [serve] header: the line is not found, but file and key still are named
    path = write(tmp_path, 'serve.app = "a:b"\nserve.workers = "abc"\n')
    message = config_error(tmp_path, ())
    assert message.startswith(str(path)) and "serve.workers: 'abc' is not a whole number" in message


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, '[serve]\nworkers = \n')
    message = config_error(tmp_path)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 2" in message


@pytest.mark.parametrize("body", ["[serve\n", "[serve]\nworkers = 1\nworkers = 2\n", "[serve]\napp = 'x\n",
                                  "= 3\n", "[serve]\n[serve]\n"])
def test_various_toml_syntax_errors_name_the_file(tmp_path, body):
    path = write(tmp_path, body)
    assert config_error(tmp_path).startswith(f"{path}: not valid TOML: ")


@pytest.mark.parametrize("body", ["serve = 3\n", 'serve = "x"\n', "serve = [1, 2]\n", "[[serve]]\nworkers = 2\n"])
def test_serve_must_be_a_table(tmp_path, body):
    path = write(tmp_path, body)
    assert config_error(tmp_path) == f"{path}: 'serve' must be a table ([serve])"


def test_inline_serve_table_is_a_table(tmp_path):
    write(tmp_path, 'serve = { workers = 3, app = "i:app" }\n')
    settings = load(tmp_path, ())
    assert (settings.app, settings.workers) == ("i:app", 3)


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "wsgistack.toml"
    path.write_bytes(b'[serve]\nproc_name = "caf\xe9"\n')  # latin-1
    assert str(path) in config_error(tmp_path)


def test_config_naming_a_directory_is_a_config_error(tmp_path):
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    # a directory is "no such file" for --config
    assert config_error(tmp_path, ("app:app", "--config", str(folder))) == f"config file {folder}: no such file"


# -- errors from the environment and the command line --------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value", "reason"),
    [
        ("WSGISTACK_WORKERS", "abc", "'abc' is not a whole number"),
        ("WSGISTACK_WORKERS", "0", "below the minimum of 1"),
        ("WSGISTACK_TIMEOUT", "-3", "zero or more seconds"),
        ("WSGISTACK_PRELOAD", "sure", "not true or false"),
        ("WSGISTACK_MAX_BODY_SIZE", "lots", "not a size"),
        ("WSGISTACK_WORKER_CLASS", "nosuch", "not one of"),
        ("WSGISTACK_BIND", ",", "the list is empty"),
        ("WSGISTACK_UMASK", "8", "not an octal number"),
        ("WSGISTACK_LOG_LEVEL", "loud", "not one of"),
        ("WSGISTACK_APP", "   ", "not a non-empty string"),
    ],
)
def test_bad_env_value_names_the_variable(tmp_path, var, value, reason):
    message = config_error(tmp_path, env={var: value})
    assert message.startswith(f"{var}: "), message
    assert reason in message


def test_bad_env_value_is_reported_even_when_the_cli_overrides_it(tmp_path):
    # every source is validated, so a broken environment is found before it is ever relied on
    assert config_error(tmp_path, ("app:app", "-w", "2"), env={"WSGISTACK_WORKERS": "x"}).startswith(
        "WSGISTACK_WORKERS: ")


@pytest.mark.parametrize(
    ("argv", "flag", "reason"),
    [
        (("-w", "abc"), "--workers", "'abc' is not a whole number"),
        (("--workers", "0"), "--workers", "below the minimum of 1"),
        (("--timeout", "-1"), "--timeout", "zero or more seconds"),
        (("-t", "never"), "--timeout", "not a number of seconds"),
        (("-k", "nosuch"), "--worker-class", "not one of: sync, thread"),
        (("--max-body-size", "lots"), "--max-body-size", "not a size"),
        (("--threads", "1.5"), "--threads", "not a whole number"),
        (("-m", "0o1000"), "--umask", "between 000 and 777"),
        (("--log-level", "verbose"), "--log-level", "not one of"),
        (("-b", ""), "--bind", "the list is empty"),
        (("--forwarded-allow-ips", " , "), "--forwarded-allow-ips", "the list is empty"),
        (("--keep-alive", "nan"), "--keep-alive", "seconds"),
    ],
)
def test_bad_cli_value_names_the_flag(tmp_path, argv, flag, reason):
    message = config_error(tmp_path, ("app:app", *argv))
    assert message.startswith(f"{flag}: "), message
    assert reason in message


def test_file_error_is_reported_before_a_cli_error(tmp_path):
    # the file is read first: its error is the one reported
    path = write(tmp_path, '[serve]\nworkers = "x"\n')
    assert config_error(tmp_path, ("app:app", "-w", "y")).startswith(f"{path}:2: ")


# -- which file --------------------------------------------------------------------------------------


def test_default_file_is_read_from_cwd(tmp_path):
    write(tmp_path, "[serve]\nworkers = 6\n")
    assert load(tmp_path).workers == 6
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert load(other).workers == FIELDS["workers"].default


def test_config_flag_relative_to_cwd(tmp_path):
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", "[serve]\nworkers = 7\n", "prod.toml")
    write(tmp_path, "[serve]\nworkers = 6\n")  # the default file is not read when one is named
    assert load(tmp_path, ("app:app", "--config", "conf/prod.toml")).workers == 7
    assert load(tmp_path, ("app:app", "-c", str(tmp_path / "conf" / "prod.toml"))).workers == 7


def test_config_env_var(tmp_path):
    write(tmp_path, "[serve]\nworkers = 8\n", "from-env.toml")
    write(tmp_path, "[serve]\nworkers = 6\n")
    assert load(tmp_path, env={"WSGISTACK_CONFIG": "from-env.toml"}).workers == 8
    assert load(tmp_path, env={"WSGISTACK_CONFIG": str(tmp_path / "from-env.toml")}).workers == 8


def test_config_flag_beats_config_env_var(tmp_path):
    write(tmp_path, "[serve]\nworkers = 8\n", "env.toml")
    write(tmp_path, "[serve]\nworkers = 9\n", "flag.toml")
    settings = load(tmp_path, ("app:app", "-c", "flag.toml"), env={"WSGISTACK_CONFIG": "env.toml"})
    assert settings.workers == 9


def test_empty_config_env_var_falls_back_to_the_default_file(tmp_path):
    write(tmp_path, "[serve]\nworkers = 6\n")
    assert load(tmp_path, env={"WSGISTACK_CONFIG": ""}).workers == 6


def test_missing_config_flag_file(tmp_path):
    assert config_error(tmp_path, ("app:app", "--config", "nope.toml")) == "config file nope.toml: no such file"


def test_missing_config_env_file(tmp_path):
    message = config_error(tmp_path, env={"WSGISTACK_CONFIG": "/nonexistent/w.toml"})
    assert message == "config file /nonexistent/w.toml: no such file"


def test_missing_default_file_is_fine(tmp_path):
    assert not (tmp_path / "wsgistack.toml").exists()
    assert load(tmp_path).app == "app:app"


def test_errors_in_an_unused_default_file_do_not_matter_when_another_is_named(tmp_path):
    write(tmp_path, "this is not toml")
    write(tmp_path, "[serve]\nworkers = 2\n", "good.toml")
    assert load(tmp_path, ("app:app", "-c", "good.toml")).workers == 2


# -- validation and the result -------------------------------------------------------------------------


def test_missing_app(tmp_path):
    message = config_error(tmp_path, ())
    assert message.startswith("no app given")


def test_missing_app_with_a_file_lacking_it(tmp_path):
    write(tmp_path, "[serve]\nworkers = 2\n")
    assert config_error(tmp_path, ()).startswith("no app given")


def test_empty_app_in_file_is_rejected(tmp_path):
    path = write(tmp_path, '[serve]\napp = ""\n')
    assert config_error(tmp_path, ()).startswith(f"{path}:2: serve.app: ")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may name --user")
def test_unknown_user_is_a_config_error(tmp_path):
    assert config_error(tmp_path, ("app:app", "-u", "no-such-user-xyz")) == "--user: no user named 'no-such-user-xyz'"
    assert config_error(tmp_path, ("app:app", "-g", "no-such-group-xyz")) == (
        "--group: no group named 'no-such-group-xyz'")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may switch user")
def test_user_needs_root(tmp_path):
    assert config_error(tmp_path, ("app:app", "-u", "nobody")).startswith("--user/--group: only root")


def test_settings_are_frozen(tmp_path):
    settings = load(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.workers = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.bind = ("0.0.0.0:1",)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del settings.app
    assert settings.workers == FIELDS["workers"].default


def test_list_settings_are_tuples_and_hashable(tmp_path):
    write(tmp_path, '[serve]\nbind = ["127.0.0.1:1"]\nforwarded_allow_ips = ["1.2.3.4"]\n')
    settings = load(tmp_path)
    assert isinstance(settings.bind, tuple) and isinstance(settings.forwarded_allow_ips, tuple)
    hash(settings)


def test_replace_gives_a_new_object(tmp_path):
    settings = load(tmp_path)
    other = settings.replace(workers=5)
    assert (settings.workers, other.workers) == (FIELDS["workers"].default, 5)


def test_list_defaults_are_refused_at_declaration():
    from wsgistack.config.settings import option

    with pytest.raises(TypeError, match="use a tuple"):
        option(["x"], str, "help")


def test_every_setting_has_metadata_and_a_flag_except_app():
    for name, fld in FIELDS.items():
        meta = fld.metadata
        assert callable(meta["parse"]) and meta["help"], name
        if name == "app":
            assert meta["flags"] == ()
        else:
            assert meta["flags"] and all(re.fullmatch(r"-\w|--[a-z][a-z-]+", f) for f in meta["flags"]), name
        # every default is what its own parser would produce from it
        if fld.default is not None and name != "workers":
            assert meta["parse"](fld.default) == fld.default, name


def test_env_name():
    assert config_loader.env_name("max_requests") == "WSGISTACK_MAX_REQUESTS"


# -- WEB_CONCURRENCY -----------------------------------------------------------------------------------


def test_web_concurrency_comes_from_the_environ_argument(tmp_path):
    """WEB_CONCURRENCY (gunicorn's convention) sets the default number of workers; WSGISTACK_WORKERS wins."""
    assert load(tmp_path, env={"WEB_CONCURRENCY": "5"}).workers == 5
    assert load(tmp_path, env={"WEB_CONCURRENCY": "5", "WSGISTACK_WORKERS": "3"}).workers == 3
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY"):
        load(tmp_path, env={"WEB_CONCURRENCY": "lots"})
