"""Where `wsgistack proxy` takes its plain [proxy] settings from, as a user sees it.

Each plain setting (what `ProxySettings.options()` declares) is read from the file, from a
`WSGISTACK_PROXY_<NAME>` variable and from a `--kebab-case-name VALUE` flag, in that order of strength, as
`serve` does; a bad value from any of them is one line naming its source; `--check-config` prints the effective
settings as a [proxy] table that `wsgistack proxy -c` reads back to the same settings.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from commands import one_error_line, run

from wsgistack.proxy.config import load_proxy_settings
from wsgistack.proxy.settings import ProxySettings

UPSTREAM = ["--upstream", "127.0.0.1:9001"]

# one value for each plain setting: (as typed on the command line or in a variable, as --check-config prints it)
SAMPLES = {
    "listen": ("127.0.0.1:0", ["127.0.0.1:0"]),
    "workers": ("2", 2),
    "certfile": ("c.pem", "c.pem"),
    "keyfile": ("k.pem", "k.pem"),
    "access_log": ("access.log", "access.log"),
    "access_log_format": ("common", "common"),
    "error_log": ("error.log", "error.log"),
    "log_level": ("debug", "debug"),
    "client_max_body_size": ("10m", 10 << 20),
    "client_body_buffer_size": ("64k", 64 << 10),
    "buffering": ("off", False),
    "response_buffer_size": ("128k", 128 << 10),
    "max_temp_file_size": ("0", 0),
    "max_connections": ("500", 500),
    "max_connections_per_ip": ("0", 0),
    "client_max_header_size": ("16k", 16 << 10),
    "forwarded_allow_ips": ("10.0.0.0/8,127.0.0.1", ["10.0.0.0/8", "127.0.0.1"]),
    "client_header_timeout": ("1s", 1.0),
    "client_body_timeout": ("500ms", 0.5),
    "send_timeout": ("2m", 120.0),
    "keepalive_timeout": ("30", 30.0),
    "metrics_bind": ("127.0.0.1:9100", "127.0.0.1:9100"),
}


def check_config(folder: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    """The [proxy] table printed by `wsgistack proxy ARGS --check-config`, parsed by tomllib."""
    result = run(folder, "proxy", *args, "--check-config", env=env)
    assert (result.returncode, result.stderr) == (0, "")
    return tomllib.loads(result.stdout)["proxy"]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def variable(name: str) -> str:
    return "WSGISTACK_PROXY_" + name.upper()


def test_every_plain_setting_has_a_sample_here():
    # a new setting must be tested from every source below
    assert set(SAMPLES) == {fld.name for fld in ProxySettings.options()}


def test_every_plain_setting_as_a_flag(tmp_path):
    args = [item for name, (typed, _) in SAMPLES.items() for item in (flag(name), typed)]
    table = check_config(tmp_path, *UPSTREAM, *args)
    assert {name: table[name] for name in SAMPLES} == {name: printed for name, (_, printed) in SAMPLES.items()}
    assert not (tmp_path / "access.log").exists()  # a check opens nothing


def test_every_plain_setting_as_a_variable(tmp_path):
    env = {variable(name): typed for name, (typed, _) in SAMPLES.items()}
    table = check_config(tmp_path, *UPSTREAM, env=env)
    assert {name: table[name] for name in SAMPLES} == {name: printed for name, (_, printed) in SAMPLES.items()}


def test_every_plain_setting_is_in_the_help(tmp_path):
    result = run(tmp_path, "proxy", "--help")
    assert result.returncode == 0
    for name in SAMPLES:
        assert flag(name) in result.stdout, name
    for shorthand in ("--upstream", "--static", "--config", "--check-config"):
        assert shorthand in result.stdout


def test_the_existing_short_flags_still_work(tmp_path):
    table = check_config(tmp_path, *UPSTREAM, "-w", "3", "--listen", "127.0.0.1:0", "--listen", "unix:/tmp/p.sock")
    assert (table["workers"], table["listen"]) == (3, ["127.0.0.1:0", "unix:/tmp/p.sock"])


def test_command_line_over_environment_over_file_over_defaults(tmp_path):
    (tmp_path / "wsgistack.toml").write_text('[proxy]\nsend_timeout = "10s"\nclient_body_timeout = 11\n'
                                             'keepalive_timeout = 12\n')
    env = {variable("send_timeout"): "20", variable("client_body_timeout"): "21"}
    table = check_config(tmp_path, *UPSTREAM, "--send-timeout", "30", env=env)
    assert table["send_timeout"] == 30.0  # flag over variable and file
    assert table["client_body_timeout"] == 21.0  # variable over file
    assert table["keepalive_timeout"] == 12.0  # file over default
    assert table["client_header_timeout"] == 60.0  # the default


def test_an_empty_variable_counts_as_unset(tmp_path):
    (tmp_path / "wsgistack.toml").write_text('[proxy]\nworkers = 2\n')
    assert check_config(tmp_path, *UPSTREAM, env={variable("workers"): ""})["workers"] == 2


def test_a_bad_flag_names_the_flag(tmp_path):
    message = one_error_line(run(tmp_path, "proxy", *UPSTREAM, "--send-timeout", "soon", "--check-config"))
    assert message == "wsgistack proxy: error: --send-timeout: 'soon' is not a number of seconds", message


@pytest.mark.parametrize("check", [True, False], ids=["check-config", "start"])
def test_a_bad_variable_names_the_variable(tmp_path, check):
    result = run(tmp_path, "proxy", *UPSTREAM, "--listen", "127.0.0.1:0", *(["--check-config"] if check else []),
                 env={variable("workers"): "0"})
    message = one_error_line(result)
    assert message == "wsgistack proxy: error: WSGISTACK_PROXY_WORKERS: 0 is below the minimum of 1", message


def test_a_bad_variable_for_a_list_names_the_variable(tmp_path):
    message = one_error_line(run(tmp_path, "proxy", *UPSTREAM, "--check-config",
                                 env={variable("trusted_proxies"): "10.0.0.0/8,nowhere"}))
    assert message.startswith("wsgistack proxy: error: WSGISTACK_PROXY_TRUSTED_PROXIES: 'nowhere' is not an IP"), \
        message


def test_a_bad_value_in_the_file_names_the_file_and_line(tmp_path):
    (tmp_path / "wsgistack.toml").write_text('[proxy]\n\nmax_connections_per_ip = -1\n')
    message = one_error_line(run(tmp_path, "proxy", *UPSTREAM, "--check-config"))
    assert message == "wsgistack proxy: error: wsgistack.toml:3: proxy.max_connections_per_ip: -1 is below the " \
                      "minimum of 0", message


def test_a_good_flag_does_not_hide_a_bad_file(tmp_path):
    # the file is read whole and checked, even for a setting the command line then replaces
    (tmp_path / "wsgistack.toml").write_text('[proxy]\nsend_timeout = "later"\n')
    message = one_error_line(run(tmp_path, "proxy", *UPSTREAM, "--send-timeout", "3", "--check-config"))
    assert message.startswith("wsgistack proxy: error: wsgistack.toml:2: proxy.send_timeout: 'later'"), message


def test_config_check_reads_the_file_alone(tmp_path):
    # as for [serve]: `wsgistack config check FILE` checks the file, whatever the environment says
    (tmp_path / "wsgistack.toml").write_text('[proxy]\n\n[proxy.upstreams.app]\nservers = ["127.0.0.1:9001"]\n\n'
                                             '[[proxy.routes]]\nupstream = "app"\n')
    result = run(tmp_path, "config", "check", "wsgistack.toml", env={variable("workers"): "0"})
    assert (result.returncode, result.stderr) == (0, "")


FULL = """\
[proxy]
listen = ["127.0.0.1:0", "[::1]:0"]
access_log = "access.log"
access_log_format = "$remote_addr $upstream_addr $status $request_id"
access_log_rotate = { size = "10m", interval = "1d", keep = 7 }
forwarded_allow_ips = ["10.0.0.0/8", "127.0.0.1"]
gzip = { level = 5, types = ["text/html"] }

[proxy.upstreams.app]
servers = ["127.0.0.1:9001 weight=3", "127.0.0.1:9002 max_fails=2 fail_timeout=500ms", "unix:/tmp/app.sock backup"]
balance = "least_conn"
max_fails = 3
keepalive = 8
health_check = { path = "/healthz", interval = "500ms", timeout = "1s", fails = 2, passes = 2 }

[proxy.upstreams."the api"]
servers = ["127.0.0.1:9101", "127.0.0.1:9102"]
balance = "hash:$http_x_user"
connect_retry_timeout = 0

[[proxy.routes]]
path = "/static/"
static = "static"
cache_control = "public, max-age=3600"

[[proxy.routes]]
path = "/api"
host = ["api.test", "*.api.test"]
upstream = "the api"
limit_req = { rate = "10r/m", burst = 20, nodelay = true, key = "$http_x_api_key" }
limit_conn = { max = 4 }
buffering = false

[[proxy.routes]]
path = "/"
upstream = "app"
client_max_body_size = "50m"
"""


def test_check_config_prints_settings_that_read_back_the_same(tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "wsgistack.toml").write_text(FULL)
    args = ("--send-timeout", "2m", "--buffering", "off")
    env = {variable("max_connections"): "500"}
    first = run(tmp_path, "proxy", *args, "--check-config", env=env)
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout.endswith("\n# wsgistack.toml: ok (3 routes, 2 upstreams)\n")

    # read back from another folder, with no flag and no variable: the same settings, printed the same
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "printed.toml").write_text(first.stdout)
    second = run(elsewhere, "proxy", "-c", "printed.toml", "--check-config")
    assert (second.returncode, second.stderr) == (0, "")
    assert second.stdout == first.stdout.replace("# wsgistack.toml: ok", "# printed.toml: ok")

    original = load_proxy_settings(str(tmp_path / "wsgistack.toml"),
                                   {"send_timeout": "2m", "buffering": "off"}, environ=env)
    printed = load_proxy_settings(str(elsewhere / "printed.toml"), {}, environ={})
    assert dataclasses.replace(printed, config_file=None) == dataclasses.replace(original, config_file=None)
    assert (printed.send_timeout, printed.buffering, printed.max_connections) == (120.0, False, 500)
    assert printed.routes[1].limit_req.rate == 10 / 60


def test_check_config_of_the_shorthand_reads_back(tmp_path):
    (tmp_path / "static").mkdir()
    first = run(tmp_path, "proxy", "--upstream", "127.0.0.1:9001", "--upstream", "127.0.0.1:9002 backup",
                "--static", "/static/=static", "--check-config")
    assert (first.returncode, first.stderr) == (0, "")
    (tmp_path / "printed.toml").write_text(first.stdout)
    second = run(tmp_path, "proxy", "-c", "printed.toml", "--check-config")
    assert (second.returncode, second.stderr) == (0, "")
    assert second.stdout == first.stdout.replace("# command line: ok", "# printed.toml: ok")
