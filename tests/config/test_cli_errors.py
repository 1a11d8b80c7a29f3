"""The `wsgistack` command seen from outside: real `python -m wsgistack` subprocesses in a tmp_path.

A usage or configuration error is exactly one line on stderr, exit code 2, never a traceback; an app that
cannot be loaded stops the server quickly with a non-zero code and an ERROR line that names the problem;
`--check-config` prints TOML that reads back to the same settings.
"""

from __future__ import annotations

import re
import socket
import subprocess
import tomllib
from pathlib import Path

import pytest
from commands import one_error_line, run

import wsgistack
from wsgistack.config import ServeSettings


def check_config(cwd: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    """The [serve] table printed by `wsgistack serve ARGS --check-config`, parsed by tomllib."""
    result = run(cwd, "serve", *args, "--check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return tomllib.loads(result.stdout)["serve"]


# -- usage errors --------------------------------------------------------------------------------------


def test_unknown_option(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "app:app", "--no-such-thing"))
    assert "--no-such-thing" in line
    assert line.startswith("wsgistack")


def test_unknown_option_before_the_app(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "--frobnicate", "3", "app:app"))
    assert "--frobnicate" in line


def test_option_missing_its_value(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "app:app", "--workers"))
    assert "--workers" in line


def test_unknown_command(tmp_path):
    line = one_error_line(run(tmp_path, "serv", "app:app"))
    assert "serv" in line


@pytest.mark.parametrize(
    ("argv", "flag", "reason"),
    [
        (("-w", "abc"), "--workers", "'abc' is not a whole number"),
        (("--timeout", "-1"), "--timeout", "zero or more seconds"),
        (("-k", "nosuch"), "--worker-class", "not one of: sync, thread"),
        (("--max-body-size", "lots"), "--max-body-size", "not a size"),
        (("--threads", "0"), "--threads", "below the minimum of 1"),
        (("--umask", "999"), "--umask", "octal"),
        (("--log-level", "chatty"), "--log-level", "not one of"),
    ],
)
def test_bad_value_is_one_line_naming_the_option(tmp_path, argv, flag, reason):
    line = one_error_line(run(tmp_path, "serve", "app:app", *argv))
    assert line.startswith(f"wsgistack serve: error: {flag}: "), line
    assert reason in line


@pytest.mark.parametrize(
    ("address", "reason"),
    [("127.0.0.1:99999", "'99999' is not a port number"), ("127.0.0.1:http", "not a port number"),
     ("unix:", "needs a path"), ("[::1", "expected [IPv6]:PORT"), ("fd://x", "descriptor number")],
)
def test_bad_bind_address(tmp_path, address, reason):
    # checked when the master binds: still before any app code runs
    line = one_error_line(run(tmp_path, "serve", "app:app", "--bind", address, timeout=20))
    assert line.startswith("wsgistack serve: error: --bind "), line
    assert address in line and reason in line


def test_bind_address_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(run(tmp_path, "serve", "app:app", "-b", f"127.0.0.1:{port}", timeout=20))
    assert line == f"wsgistack serve: error: --bind http://127.0.0.1:{port}: address already in use"


def test_unwritable_error_log(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "app:app", "-b", "127.0.0.1:0",
                              "--error-log", str(tmp_path / "no" / "such" / "dir.log"), timeout=20))
    assert line.startswith("wsgistack serve: error: --error-log: cannot open ")


def test_bad_env_value_names_the_variable(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "app:app", env={"WSGISTACK_WORKERS": "many"}))
    assert line == "wsgistack serve: error: WSGISTACK_WORKERS: 'many' is not a whole number"


def test_missing_app(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "-w", "2"))
    assert line.startswith("wsgistack serve: error: no app given")


def test_missing_config_file(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "app:app", "-c", "missing.toml"))
    assert line == "wsgistack serve: error: config file missing.toml: no such file"


def test_missing_config_file_from_env(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "app:app", env={"WSGISTACK_CONFIG": "gone.toml"}))
    assert line == "wsgistack serve: error: config file gone.toml: no such file"


# -- a malformed wsgistack.toml ------------------------------------------------------------------------


@pytest.mark.parametrize("named", [False, True], ids=["default-file", "--config"])
def test_toml_syntax_error(tmp_path, named):
    path = tmp_path / ("custom.toml" if named else "wsgistack.toml")
    path.write_text('[serve]\nworkers = 2\ntimeout = = 3\n')
    line = one_error_line(run(tmp_path, "serve", "app:app", *(["-c", path.name] if named else [])))
    assert line.startswith(f"wsgistack serve: error: {path}: not valid TOML: "), line
    assert "line 3" in line


def test_toml_unknown_key(tmp_path):
    path = tmp_path / "wsgistack.toml"
    path.write_text('[serve]\nworkers = 2\nworkerz = 3\n')
    line = one_error_line(run(tmp_path, "serve", "app:app"))
    assert line == f"wsgistack serve: error: {path}:3: serve.workerz: unknown setting; did you mean 'workers'?"


@pytest.mark.parametrize(
    ("setting", "reason"),
    [('workers = "two"', "'two' is not a whole number"), ("preload = 3", "not true or false"),
     ("bind = 8000", "not a list of strings"), ('timeout = [1]', "not a number of seconds")],
)
def test_toml_wrong_type(tmp_path, setting, reason):
    path = tmp_path / "wsgistack.toml"
    path.write_text(f'[serve]\napp = "app:app"\n{setting}\n')
    line = one_error_line(run(tmp_path, "serve"))
    key = setting.split(" ")[0]
    assert line.startswith(f"wsgistack serve: error: {path}:3: serve.{key}: "), line
    assert reason in line


def test_toml_serve_not_a_table(tmp_path):
    path = tmp_path / "wsgistack.toml"
    path.write_text('serve = "app:app"\n')
    line = one_error_line(run(tmp_path, "serve", "app:app"))
    assert line == f"wsgistack serve: error: {path}: 'serve' must be a table ([serve])"


def test_toml_not_utf8(tmp_path):
    path = tmp_path / "wsgistack.toml"
    path.write_bytes(b'[serve]\nproc_name = "caf\xe9"\n')
    line = one_error_line(run(tmp_path, "serve", "app:app"))
    assert str(path) in line


# -- an app that cannot be loaded ----------------------------------------------------------------------

APP_FILES = {
    "broken_syntax.py": "def app(environ, start_response:\n    pass\n",
    "raises_on_import.py": "raise RuntimeError('database unreachable at import')\n",
    "has_no_app.py": "def application_factory():\n    pass\n",
    "bad_factory.py": "def create_app(config=None):\n    raise ValueError(f'bad config {config!r}')\n",
    "not_callable.py": "app = 42\n",
}

APP_ERRORS = [
    ("nosuch_module:app", "app 'nosuch_module:app': no module named 'nosuch_module'"),
    ("broken_syntax:app", "syntax error in {tmp}/broken_syntax.py line 1"),
    ("raises_on_import:app", "importing it failed: RuntimeError: database unreachable at import"),
    ("has_no_app:app", "module 'has_no_app' has no attribute 'app'"),
    ("has_no_app", "found no 'app' or 'application'"),
    ("bad_factory:create_app('prod')", "the factory failed: ValueError: bad config 'prod'"),
    ("bad_factory", "the factory failed: ValueError: bad config None"),
    ("not_callable:app", "not a WSGI callable (int)"),
    ("./nosuch_file.py", "no such file"),
]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    for name, body in APP_FILES.items():
        (tmp_path / name).write_text(body)
    return tmp_path


def _assert_app_load_failure(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "[ERROR]" in line]
    assert errors, result.stderr
    assert any(expected in line for line in errors), result.stderr


@pytest.mark.parametrize(("spec", "expected"), APP_ERRORS, ids=[spec for spec, _ in APP_ERRORS])
def test_unloadable_app_stops_the_server(app_dir, spec, expected):
    result = run(app_dir, "serve", spec, "-b", "127.0.0.1:0", timeout=20)
    _assert_app_load_failure(result, expected.format(tmp=app_dir))


@pytest.mark.parametrize("extra", [("--preload",), ("-k", "sync", "-w", "2")], ids=["preload", "sync-2-workers"])
@pytest.mark.parametrize(("spec", "expected"), [APP_ERRORS[2], APP_ERRORS[5]], ids=["import", "factory"])
def test_unloadable_app_stops_the_server_in_other_modes(app_dir, spec, expected, extra):
    result = run(app_dir, "serve", spec, "-b", "127.0.0.1:0", *extra, timeout=20)
    _assert_app_load_failure(result, expected)


# -- --check-config ------------------------------------------------------------------------------------


def test_check_config_defaults_read_back(tmp_path):
    result = run(tmp_path, "serve", "app:app", "--check-config")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("[serve]\n")
    table = tomllib.loads(result.stdout)["serve"]
    for fld in ServeSettings.options():
        if fld.name == "app":
            continue
        if fld.default is None:
            assert fld.name not in table  # printed as a comment: "# NAME is not set"
            assert f"# {fld.name} is not set" in result.stdout
        elif fld.name == "workers":
            assert table["workers"] == 1  # WEB_CONCURRENCY is unset in the child
        else:
            expected = list(fld.default) if isinstance(fld.default, tuple) else fld.default
            assert table[fld.name] == expected, fld.name
    assert table["app"] == "app:app"


def test_check_config_precedence_cli_env_file(tmp_path):
    (tmp_path / "wsgistack.toml").write_text(
        '[serve]\napp = "fromfile:app"\nworkers = 2\nthreads = 8\ntimeout = 10\nkeep-alive = 2\n'
        'bind = ["127.0.0.1:9001"]\npreload = true\numask = "027"\n')
    env = {"WSGISTACK_THREADS": "16", "WSGISTACK_TIMEOUT": "20", "WSGISTACK_BIND": "127.0.0.1:9002,[::1]:9002",
           "WSGISTACK_MAX_BODY_SIZE": "10m"}
    table = check_config(tmp_path, "--timeout", "40", "--no-preload", "-m", "0o22", env=env)
    assert table["app"] == "fromfile:app"  # file only
    assert table["workers"] == 2  # file only
    assert table["keep_alive"] == 2.0  # file only
    assert table["threads"] == 16  # env over file
    assert table["bind"] == ["127.0.0.1:9002", "[::1]:9002"]  # env over file
    assert table["max_body_size"] == 10 << 20  # env only
    assert table["timeout"] == 40.0  # CLI over env over file
    assert table["preload"] is False  # CLI over file
    assert table["umask"] == "022"  # CLI over file
    assert table["graceful_timeout"] == 30.0  # default


def test_check_config_output_is_a_config_file_that_reads_back_the_same(tmp_path):
    args = ("web.wsgi:create_app('prod')", "-b", "127.0.0.1:1", "-b", "unix:/tmp/w.sock", "-w", "3", "-k", "sync",
            "--max-body-size", "512k", "--access-log", "-", "--access-log-format", '$remote_addr "$request"',
            "--forwarded-allow-ips", "10.0.0.1,10.0.0.2", "-m", "077", "-n", "café \"quoted\" \\ name",
            "--reload", "--graceful-timeout", "0.5")
    first = run(tmp_path, "serve", *args, "--check-config")
    assert first.returncode == 0, first.stderr
    (tmp_path / "printed.toml").write_text(first.stdout, encoding="utf-8")
    second = run(tmp_path, "serve", "-c", "printed.toml", "--check-config")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    table = tomllib.loads(first.stdout)["serve"]
    assert table["proc_name"] == "café \"quoted\" \\ name"
    assert table["access_log_format"] == '$remote_addr "$request"'
    assert table["bind"] == ["127.0.0.1:1", "unix:/tmp/w.sock"]
    assert table["max_body_size"] == 512 * 1024


def test_check_config_error_is_one_line(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "app:app", "-w", "0", "--check-config"))
    assert line.startswith("wsgistack serve: error: --workers: ")


def test_check_config_does_not_import_the_app(tmp_path):
    (tmp_path / "loud.py").write_text("raise SystemExit('imported!')\n")
    assert check_config(tmp_path, "loud:app")["app"] == "loud:app"


@pytest.mark.parametrize(("web_concurrency", "workers"), [("5", 5), ("", 1)])
def test_web_concurrency_sets_the_default_workers(tmp_path, web_concurrency, workers):
    assert check_config(tmp_path, "app:app", env={"WEB_CONCURRENCY": web_concurrency})["workers"] == workers


@pytest.mark.parametrize("web_concurrency", ["0", "-2", "lots"])
def test_bad_web_concurrency_is_one_line(tmp_path, web_concurrency):
    line = one_error_line(run(tmp_path, "serve", "app:app", "--check-config", env={"WEB_CONCURRENCY": web_concurrency}))
    assert line.startswith("wsgistack serve: error: WEB_CONCURRENCY: "), line


def test_web_concurrency_loses_to_every_source(tmp_path):
    (tmp_path / "wsgistack.toml").write_text("[serve]\nworkers = 2\n")
    env = {"WEB_CONCURRENCY": "5"}
    assert check_config(tmp_path, "app:app", env=env)["workers"] == 2
    assert check_config(tmp_path, "app:app", env={**env, "WSGISTACK_WORKERS": "3"})["workers"] == 3
    assert check_config(tmp_path, "app:app", "-w", "4", env={**env, "WSGISTACK_WORKERS": "3"})["workers"] == 4


@pytest.mark.parametrize("flag", ["--timeout", "--client-timeout"])
def test_check_config_with_infinite_seconds_is_valid_toml_or_refused(tmp_path, flag):
    result = run(tmp_path, "serve", "app:app", flag, "inf", "--check-config")
    if result.returncode == 2:
        one_error_line(result)
    else:
        tomllib.loads(result.stdout)


def test_check_config_with_an_emoji_is_valid_toml(tmp_path):
    assert check_config(tmp_path, "app:app", "-n", "web \N{GRINNING FACE}")["proc_name"] == "web \N{GRINNING FACE}"


def test_check_config_rejects_a_bad_bind_port(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "app:app", "-b", "127.0.0.1:99999", "--check-config"))
    assert "--bind" in line


# -- version, help, no command -------------------------------------------------------------------------


def test_version(tmp_path):
    result = run(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"wsgistack {wsgistack.__version__}"


def test_no_command_prints_usage_and_fails(tmp_path):
    result = run(tmp_path)
    assert result.returncode != 0
    assert "usage: wsgistack" in result.stdout + result.stderr
    assert "serve" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_serve_help_mentions_every_flag(tmp_path):
    result = run(tmp_path, "serve", "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    flags = [flag for fld in ServeSettings.options() for flag in fld.metadata["flags"]]
    assert len(flags) >= len(ServeSettings.options())  # every option but app has at least one flag
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), flag
    for fld in ServeSettings.options():
        if fld.metadata["switch"]:
            assert f"--no-{fld.name.replace('_', '-')}" in text
    for extra in ("--config", "--check-config", "APP", "WSGISTACK_"):
        assert extra in text


def test_top_level_help(tmp_path):
    result = run(tmp_path, "--help")
    assert result.returncode == 0
    assert "serve" in result.stdout and "--version" in result.stdout
