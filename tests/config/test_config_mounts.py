"""The `apps` (--mount) and `health_path` (--health-path) settings of [serve]: from the file, the environment and
the command line; bad ones refused in one line that names the source (the flag, the variable, or file:line)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from commands import one_error_line, run

from wsgistack.cli import build_parser
from wsgistack.config import ConfigError, ServeSettings
from wsgistack.config.loader import load_serve_settings


def cli(*argv: str) -> dict:
    """What `wsgistack serve ARGV` hands to the loader (the real argparse parser)."""
    args = vars(build_parser().parse_args(["serve", *argv]))
    args.pop("command")
    args.pop("check_config")
    return args


def load(tmp_path: Path, toml: str | None = None, argv: tuple[str, ...] = (), env: dict | None = None) -> ServeSettings:
    if toml is not None:
        (tmp_path / "wsgistack.toml").write_text(toml, encoding="utf-8")
    return load_serve_settings(cli(*argv), env or {}, tmp_path)


def refusal(tmp_path: Path, toml: str | None = None, argv: tuple[str, ...] = (), env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, toml, argv, env)
    return str(caught.value)


# --- apps -----------------------------------------------------------------------------------------------------

def test_apps_from_the_file_are_kept_as_key_app_entries_with_keys_spelt_one_way(tmp_path):
    settings = load(tmp_path, '[serve]\napps = { "/" = "site_app:app", "/admin/" = "admin_app:app", '
                              '"Admin.Example.com/" = "admin_app:app" }\n')
    assert settings.app is None
    assert settings.apps == ("/=site_app:app", "/admin=admin_app:app", "admin.example.com/=admin_app:app")


def test_mount_flags_repeat_and_a_factory_call_keeps_its_commas(tmp_path):
    settings = load(tmp_path, argv=("--mount", "/=site:create_app(1, 2)", "--mount", "/admin=admin:make(a=1, b='x')"))
    assert settings.apps == ("/=site:create_app(1, 2)", "/admin=admin:make(a=1, b='x')")


def test_mounts_from_the_environment(tmp_path):
    settings = load(tmp_path, env={"WSGISTACK_APPS": "/=site_app:app, /admin=admin_app:app"})
    assert settings.apps == ("/=site_app:app", "/admin=admin_app:app")


def test_the_command_line_replaces_the_files_mounts(tmp_path):
    settings = load(tmp_path, '[serve]\napps = { "/" = "a:app", "/b" = "b:app" }\n', argv=("--mount", "/=c:app"))
    assert settings.apps == ("/=c:app",)


@pytest.mark.parametrize(("key", "reason"), [
    ("admin", "mount 'admin': a path starts with '/' (/admin); a host ends with one (admin/ for the whole host)"),
    ("admin.example.com:8000/", "mount 'admin.example.com:8000/': 'admin.example.com:8000' is not a host name "
                                "(a mount matches its host on any port: leave the port out)"),
    ("/a b", "mount '/a b': a prefix holds no spaces, '?', '#', '=' or '%' (write it decoded)"),
    ("/a?x", "mount '/a?x': a prefix holds no spaces, '?', '#', '=' or '%' (write it decoded)"),
    ("/a/../b", "mount '/a/../b': the prefix has an empty, '.' or '..' segment"),
    ("/a//b", "mount '/a//b': the prefix has an empty, '.' or '..' segment"),
    ("*.example.com/", "mount '*.example.com/': '*.example.com' is not a host name"),
])
def test_a_bad_mount_key_names_the_file_and_line(tmp_path, key, reason):
    toml = f'[serve]\nworkers = 2\napps = {{ "/" = "site:app", "{key}" = "admin:app" }}\n'
    path = tmp_path / "wsgistack.toml"
    assert refusal(tmp_path, toml) == f"{path}:3: serve.apps: {reason}"


def test_the_same_mount_twice_is_refused(tmp_path):
    path = tmp_path / "wsgistack.toml"
    assert refusal(tmp_path, '[serve]\napps = { "/admin" = "a:app", "/admin/" = "b:app" }\n') == \
        f"{path}:2: serve.apps: mount '/admin/': the same mount as '/admin'"


@pytest.mark.parametrize(("toml", "reason"), [
    ('apps = {}', "no mounts: give at least one PREFIX = APP"),
    ('apps = { "/" = "" }', "mount '/': '' is not an app like module:name"),
    ('apps = { "/" = 3 }', "mount '/': 3 is not an app like module:name"),
    ('apps = 3', "3 is not a table of PREFIX = APP"),
])
def test_a_bad_apps_value_names_the_file_and_line(tmp_path, toml, reason):
    path = tmp_path / "wsgistack.toml"
    assert refusal(tmp_path, f"[serve]\n{toml}\n") == f"{path}:2: serve.apps: {reason}"


def test_a_mount_flag_without_an_app_names_the_flag(tmp_path):
    assert refusal(tmp_path, argv=("--mount", "/admin")) == \
        "--mount: '/admin' is not PREFIX=APP (like /admin=admin_site:app)"


def test_app_and_apps_together_are_refused(tmp_path):
    message = 'both an app and mounts (apps, --mount) are set: serve one app, or mount it at "/"'
    assert refusal(tmp_path, '[serve]\napp = "a:app"\napps = { "/admin" = "b:app" }\n') == message
    assert refusal(tmp_path, '[serve]\napps = { "/admin" = "b:app" }\n', argv=("a:app",)) == message


def test_mounts_alone_are_an_app_enough(tmp_path):
    assert load(tmp_path, argv=("--mount", "/=a:app")).apps == ("/=a:app",)


# --- health_path ----------------------------------------------------------------------------------------------

def test_health_path_default_setting_and_off(tmp_path):
    assert load(tmp_path, argv=("a:app",)).health_path == "/_wsgistack/health"
    assert load(tmp_path, argv=("a:app", "--health-path", "/healthz")).health_path == "/healthz"
    assert load(tmp_path, argv=("a:app", "--health-path", "")).health_path == ""
    assert load(tmp_path, '[serve]\napp = "a:app"\nhealth-path = ""\n').health_path == ""


@pytest.mark.parametrize("bad", ["healthz", "/health z", "/health?x=1", "/health#top"])
def test_a_bad_health_path_is_refused(tmp_path, bad):
    assert refusal(tmp_path, argv=("a:app", "--health-path", bad)) == \
        f"--health-path: {bad!r} is not a path like /_wsgistack/health (or empty, to turn it off)"


# --- the command line, as users see it ----------------------------------------------------------------------

def test_check_config_prints_mounts_that_read_back_to_the_same_settings(tmp_path):
    result = run(tmp_path, "serve", "--mount", "/=site:app", "--mount", "api.example.com/v1/=api:create(1, 2)",
                 "--health-path", "/up", "--check-config")
    assert result.returncode == 0, result.stderr
    table = tomllib.loads(result.stdout)["serve"]
    assert table["apps"] == ["/=site:app", "api.example.com/v1=api:create(1, 2)"]
    assert table["health_path"] == "/up"
    (tmp_path / "wsgistack.toml").write_text(result.stdout, encoding="utf-8")
    again = run(tmp_path, "serve", "--check-config")
    assert again.returncode == 0, again.stderr
    assert again.stdout == result.stdout


def test_app_and_mount_together_on_the_command_line_is_one_line(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "a:app", "--mount", "/admin=b:app"))
    assert line == 'wsgistack serve: error: both an app and mounts (apps, --mount) are set: serve one app, ' \
                   'or mount it at "/"'


def test_a_bad_mount_in_the_file_is_one_line(tmp_path):
    (tmp_path / "wsgistack.toml").write_text('[serve]\napps = { "admin" = "b:app" }\n', encoding="utf-8")
    line = one_error_line(run(tmp_path, "serve"))
    assert line.startswith(f"wsgistack serve: error: {tmp_path / 'wsgistack.toml'}:2: serve.apps: mount 'admin': ")
