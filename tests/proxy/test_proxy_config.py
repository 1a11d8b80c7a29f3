"""Config errors of `wsgistack proxy` as a user sees them, and the values a good [proxy] table parses to.

A bad config must end the command with exit code 2 and one line on stderr naming the file, the line and the
key, never a traceback: with `--check-config`, without it (before anything binds), and through
`wsgistack config check`.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from commands import one_error_line, run

from wsgistack.config.errors import ConfigError
from wsgistack.proxy.config import load_proxy_settings
from wsgistack.proxy.routing import ProxyState

BASE = """\
[proxy]
listen = ["127.0.0.1:0"]

[proxy.upstreams.app]
servers = ["127.0.0.1:9001"]

[[proxy.routes]]
path = "/"
upstream = "app"
"""


# how each refused config is run: as `proxy --check-config`, as a proxy that would start, by `config check`
MODES = {
    "check-config": (["proxy", "-c", "wsgistack.toml", "--check-config"], "wsgistack proxy: error: "),
    "start": (["proxy", "-c", "wsgistack.toml"], "wsgistack proxy: error: "),
    "config-check": (["config", "check", "wsgistack.toml"], "wsgistack config: error: "),
}

# (id, the file, its line number, the key named, a fragment of the reason)
BAD_FILES = [
    ("unknown-proxy-key", BASE.replace('listen = ["127.0.0.1:0"]\n', 'listen = ["127.0.0.1:0"]\nacces_log = "a"\n'),
     3, "proxy.acces_log", "unknown setting; did you mean 'access_log'?"),
    ("unknown-upstream-key", BASE.replace('servers = ["127.0.0.1:9001"]\n',
                                          'servers = ["127.0.0.1:9001"]\nmax_fail = 3\n'),
     6, "proxy.upstreams.app.max_fail", "unknown setting; did you mean 'max_fails'?"),
    ("bad-server-parameter", BASE.replace('"127.0.0.1:9001"', '"127.0.0.1:9001 wieght=2"'),
     5, "proxy.upstreams.app.servers", "unknown server parameter 'wieght=2'"),
    ("bad-weight", BASE.replace('"127.0.0.1:9001"', '"127.0.0.1:9001 weight=0"'),
     5, "proxy.upstreams.app.servers", "below the minimum of 1"),
    ("bad-server-address", BASE.replace('"127.0.0.1:9001"', '"127.0.0.1:99999"'),
     5, "proxy.upstreams.app.servers", "99999"),
    ("all-backup", BASE.replace('["127.0.0.1:9001"]', '["127.0.0.1:9001 backup", "127.0.0.1:9002 backup"]'),
     5, "proxy.upstreams.app.servers", "every server is a backup"),
    ("no-servers", BASE.replace('servers = ["127.0.0.1:9001"]\n', 'max_fails = 2\n'),
     4, "proxy.upstreams.app.servers", "missing"),
    ("bad-balance", BASE.replace('servers = ["127.0.0.1:9001"]\n', 'servers = ["127.0.0.1:9001"]\nbalance = "random"\n'),
     6, "proxy.upstreams.app.balance", "'random' is not one of"),
    ("bad-hash-header", BASE.replace('servers = ["127.0.0.1:9001"]\n',
                                     'servers = ["127.0.0.1:9001"]\nbalance = "hash:"\n'),
     6, "proxy.upstreams.app.balance", "hash needs a header"),
    ("bad-size", BASE.replace('listen = ["127.0.0.1:0"]\n', 'listen = ["127.0.0.1:0"]\nclient_max_body_size = "ten"\n'),
     3, "proxy.client_max_body_size", "'ten' is not a size"),
    ("bad-duration", BASE.replace('servers = ["127.0.0.1:9001"]\n',
                                  'servers = ["127.0.0.1:9001"]\nread_timeout = "soon"\n'),
     6, "proxy.upstreams.app.read_timeout", "'soon'"),
    ("bad-proxy-duration", BASE.replace('listen = ["127.0.0.1:0"]\n',
                                        'listen = ["127.0.0.1:0"]\nclient_header_timeout = -1\n'),
     3, "proxy.client_header_timeout", "zero or more seconds"),
    ("bad-health-check", BASE.replace('servers = ["127.0.0.1:9001"]\n',
                                      'servers = ["127.0.0.1:9001"]\nhealth_check = { path = "/h", every = 2 }\n'),
     6, "proxy.upstreams.app.health_check", "unknown key 'every'"),
    ("bad-rate", BASE + '\n[[proxy.routes]]\npath = "/api"\nupstream = "app"\nlimit_req = { rate = "2r/x" }\n',
     14, "proxy.routes[1].limit_req", "rate: '2r/x' is not a rate like 10r/s"),
    ("unknown-limit-req-key", BASE + '\n[[proxy.routes]]\npath = "/api"\nupstream = "app"\n'
                                     'limit_req = { rate = "2r/s", brust = 5 }\n',
     14, "proxy.routes[1].limit_req", "unknown key 'brust'"),
    ("bad-limit-conn", BASE + '\n[[proxy.routes]]\npath = "/api"\nupstream = "app"\nlimit_conn = { max = 0 }\n',
     14, "proxy.routes[1].limit_conn", "max: 0 is below the minimum of 1"),
    ("unknown-route-key", BASE + '\n[[proxy.routes]]\npath = "/api"\nupstreams = "app"\n',
     13, "proxy.routes[1].upstreams", "unknown setting; did you mean 'upstream'?"),
    ("route-upstream-and-static", BASE.replace('upstream = "app"\n', 'upstream = "app"\nstatic = "."\n'),
     7, "proxy.routes[0]", "needs exactly one of upstream"),
    ("route-neither", BASE + '\n[[proxy.routes]]\npath = "/api"\n',
     11, "proxy.routes[1]", "needs exactly one of upstream"),
    ("missing-static-dir", BASE + '\n[[proxy.routes]]\npath = "/static/"\nstatic = "nodir"\n',
     13, "proxy.routes[1].static", "nodir: no such directory"),
    ("bad-route-path", BASE + '\n[[proxy.routes]]\npath = "api"\nupstream = "app"\n',
     12, "proxy.routes[1].path", "not a URL path prefix"),
    ("unknown-upstream", BASE + '\n[[proxy.routes]]\npath = "/api"\nupstream = "ap"\n',
     13, "proxy.routes[1].upstream", "no upstream named 'ap' (known: app)"),
    ("ssl-without-certfile", BASE.replace('"127.0.0.1:0"', '"127.0.0.1:0 ssl"'),
     2, "proxy.listen", "an 'ssl' listener needs certfile and keyfile"),
    ("missing-certfile", BASE.replace('listen = ["127.0.0.1:0"]\n',
                                      'listen = ["127.0.0.1:0 ssl"]\ncertfile = "c.pem"\nkeyfile = "k.pem"\n'),
     3, "proxy.certfile", "c.pem: no such file"),
    ("bad-listen-address", BASE.replace('"127.0.0.1:0"', '"127.0.0.1:http"'),
     2, "proxy.listen", "127.0.0.1:http"),
    ("bad-listen-word", BASE.replace('"127.0.0.1:0"', '"127.0.0.1:0 secure"'),
     2, "proxy.listen", "only 'ssl' may follow the address"),
    ("bad-access-log-format", BASE.replace('listen = ["127.0.0.1:0"]\n',
                                           'listen = ["127.0.0.1:0"]\naccess_log_format = "$nosuch $status"\n'),
     3, "proxy.access_log_format", "$nosuch"),
    ("bad-rotate", BASE.replace('listen = ["127.0.0.1:0"]\n',
                                'listen = ["127.0.0.1:0"]\naccess_log_rotate = { size = "2k", kept = 3 }\n'),
     3, "proxy.access_log_rotate", "unknown key 'kept'"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text, line, key, reason", [case[1:] for case in BAD_FILES],
                         ids=[case[0] for case in BAD_FILES])
def test_a_bad_config_is_one_line_with_file_line_and_key(tmp_path, mode, text, line, key, reason):
    (tmp_path / "wsgistack.toml").write_text(text)
    args, prefix = MODES[mode]
    message = one_error_line(run(tmp_path, *args))
    assert message.startswith(f"{prefix}wsgistack.toml:{line}: {key}: "), message
    assert reason in message


def test_an_error_in_the_first_route_names_it_with_its_index(tmp_path):
    # routes[1] is reported as proxy.routes[1].limit_req; routes[0] must not lose its index
    (tmp_path / "wsgistack.toml").write_text(BASE + 'limit_req = { rate = "2r/x" }\n')
    message = one_error_line(run(tmp_path, "proxy", "-c", "wsgistack.toml", "--check-config"))
    assert message.startswith("wsgistack proxy: error: wsgistack.toml:10: proxy.routes[0].limit_req: "), message


@pytest.mark.parametrize("mode", ["check-config", "start"])
def test_a_file_that_is_not_toml_names_the_file_and_line(tmp_path, mode):
    (tmp_path / "wsgistack.toml").write_text('[proxy]\nlisten = [127.0.0.1:0]\n')
    message = one_error_line(run(tmp_path, *MODES[mode][0]))
    assert message.startswith("wsgistack proxy: error: wsgistack.toml"), message
    assert "not valid TOML" in message and "line 2" in message


def test_proxy_that_is_not_a_table(tmp_path):
    (tmp_path / "wsgistack.toml").write_text('\nproxy = "yes"\n')
    message = one_error_line(run(tmp_path, "proxy", "-c", "wsgistack.toml", "--check-config"))
    assert message.startswith("wsgistack proxy: error: wsgistack.toml:2: proxy: must be a table"), message


@pytest.mark.parametrize("mode", ["check-config", "start"])
def test_a_config_without_routes_says_there_is_nothing_to_proxy(tmp_path, mode):
    (tmp_path / "wsgistack.toml").write_text(BASE.split("[[proxy.routes]]")[0])
    message = one_error_line(run(tmp_path, *MODES[mode][0]))
    assert message.startswith("wsgistack proxy: error: nothing to proxy: give --upstream"), message
    assert "[[proxy.routes]]" in message


def test_a_missing_config_file(tmp_path):
    message = one_error_line(run(tmp_path, "proxy", "-c", "nope.toml", "--check-config"))
    assert message == "wsgistack proxy: error: config file nope.toml: no such file"


@pytest.mark.parametrize("args, fragment", [
    (["--static", "nodir"], "--static 'nodir': expected PREFIX=DIR"),
    (["--static", "/s/="], "--static '/s/=': expected PREFIX=DIR"),
    (["--static", "s/=."], "'s/' is not a URL path prefix"),
    (["--static", "/s/=nodir"], "nodir: no such directory"),
    (["--upstream", "127.0.0.1:9001 weight=x"], "'x' is not a whole number"),
    (["--upstream", "127.0.0.1:9001 backup"], "--upstream: every server is a backup"),
    (["--upstream", "127.0.0.1:9001", "--listen", "127.0.0.1:0 tls2"], "'127.0.0.1:0 tls2'"),
    (["--upstream", "127.0.0.1:9001", "--log-level", "loud"], "'loud'"),
    (["--upstream", "127.0.0.1:9001", "--access-log-format", "$nosuch"], "$nosuch"),
    ([], "nothing to proxy"),
], ids=["static-no-equals", "static-no-dir", "static-bad-prefix", "static-missing-dir", "upstream-bad-weight",
        "upstream-only-backup", "listen-bad-word", "log-level", "access-log-format", "nothing"])
@pytest.mark.parametrize("check", [True, False], ids=["check-config", "start"])
def test_command_line_errors_are_one_line(tmp_path, args, fragment, check):
    # tmp_path holds no wsgistack.toml, so only the flags count
    message = one_error_line(run(tmp_path, "proxy", *args, *(["--check-config"] if check else [])))
    assert message.startswith("wsgistack proxy: error: "), message
    assert fragment in message, message


@pytest.mark.parametrize("args, flag", [
    (["--upstream", "127.0.0.1:9001 weight=x"], "--upstream"),
    (["--upstream", "127.0.0.1:9001", "--listen", "127.0.0.1:0 tls2"], "--listen"),
])
def test_a_command_line_error_names_its_flag_as_typed(tmp_path, args, flag):
    # the flag itself, not a table key like ".--listen"
    message = one_error_line(run(tmp_path, "proxy", *args, "--check-config"))
    assert message.startswith((f"wsgistack proxy: error: {flag}", f"wsgistack proxy: error: command line: {flag}:")), \
        message


def test_an_unknown_flag_is_refused_with_exit_code_2(tmp_path):
    result = run(tmp_path, "proxy", "--upstream", "127.0.0.1:9001", "--upstreams", "x", "--check-config")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("wsgistack proxy: error: unrecognized arguments: --upstreams")


# --- good configs ------------------------------------------------------------------------------------------

FULL = """\
[proxy]
listen = ["127.0.0.1:0", "127.0.0.1:0"]
access_log = "access.log"
access_log_format = "$remote_addr $upstream_addr $status $request_id"
access_log_rotate = { size = "10m", interval = "1d", keep = 7 }
client_max_body_size = "10m"
max_connections = 500
forwarded_allow_ips = ["10.0.0.0/8", "127.0.0.1"]
gzip = true

[proxy.upstreams.app]
servers = ["127.0.0.1:9001 weight=3", "127.0.0.1:9002 max_fails=2 fail_timeout=30s", "unix:/tmp/app.sock backup"]
balance = "least_conn"
max_fails = 3
keepalive = 8
health_check = { path = "/healthz", interval = "500ms", timeout = "1s", fails = 2, passes = 2 }

[proxy.upstreams.api]
servers = ["127.0.0.1:9101", "127.0.0.1:9102"]
balance = "hash:$http_x_user"

[[proxy.routes]]
path = "/static/"
static = "static"
cache_control = "public, max-age=3600"

[[proxy.routes]]
path = "/api"
host = ["api.test", "*.api.test"]
upstream = "api"
limit_req = { rate = "10r/s", burst = 20, nodelay = true, key = "$http_x_api_key" }
limit_conn = { max = 4 }

[[proxy.routes]]
path = "/"
upstream = "app"
client_max_body_size = "50m"
"""


def test_check_config_accepts_a_good_file_and_says_ok(tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "wsgistack.toml").write_text(FULL)
    result = run(tmp_path, "proxy", "-c", "wsgistack.toml", "--check-config")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.endswith("\n# wsgistack.toml: ok (3 routes, 2 upstreams)\n")  # after the settings as TOML
    assert tomllib.loads(result.stdout)["proxy"]["max_connections"] == 500
    assert not (tmp_path / "access.log").exists()  # a check opens nothing


def test_check_config_finds_wsgistack_toml_in_the_current_folder(tmp_path):
    (tmp_path / "wsgistack.toml").write_text(BASE)
    result = run(tmp_path, "proxy", "--check-config")
    assert result.returncode == 0
    assert result.stdout.endswith("\n# wsgistack.toml: ok (1 route, 1 upstream)\n")


def test_check_config_of_the_command_line_shorthand(tmp_path):
    (tmp_path / "static").mkdir()
    result = run(tmp_path, "proxy", "--upstream", "127.0.0.1:9001", "--upstream", "127.0.0.1:9002 backup",
                 "--static", "/static/=static", "--check-config")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.endswith("\n# command line: ok (2 routes, 1 upstream)\n")


def test_config_check_accepts_a_proxy_table(tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "wsgistack.toml").write_text(FULL)
    result = run(tmp_path, "config", "check", "wsgistack.toml")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("wsgistack.toml: ok")


def test_config_check_suggests_proxy_for_a_misspelt_table(tmp_path):
    (tmp_path / "wsgistack.toml").write_text(BASE.replace("[proxy]", "[proxi]", 1))
    message = one_error_line(run(tmp_path, "config", "check", "wsgistack.toml"))
    assert message.startswith("wsgistack config: error: wsgistack.toml:1: [proxi]: unknown table"), message
    assert "did you mean [proxy]?" in message


def test_durations_as_nginx_writes_them(tmp_path):
    # "500ms", "2m", "1s" are accepted in server parameters and health_check; the timeouts of an upstream and of
    # the proxy itself take the same spellings (users copy them from nginx configs)
    (tmp_path / "wsgistack.toml").write_text(BASE.replace('servers = ["127.0.0.1:9001"]\n', """\
servers = ["127.0.0.1:9001"]
fail_timeout = "2m"
read_timeout = "500ms"
connect_timeout = "1s"
keepalive_timeout = 3
""").replace('listen = ["127.0.0.1:0"]\n', 'listen = ["127.0.0.1:0"]\nclient_header_timeout = "1s"\n'))
    result = run(tmp_path, "proxy", "-c", "wsgistack.toml", "--check-config")
    assert (result.returncode, result.stderr) == (0, "")
    settings = load_proxy_settings(str(tmp_path / "wsgistack.toml"), {})
    app = settings.upstreams["app"]
    assert (app.fail_timeout, app.read_timeout, app.connect_timeout, app.keepalive_timeout) == (120.0, 0.5, 1.0, 3.0)
    assert settings.client_header_timeout == 1.0


# --- parsed values -----------------------------------------------------------------------------------------

def load(tmp_path: Path, text: str):
    path = tmp_path / "wsgistack.toml"
    path.write_text(text)
    return load_proxy_settings(str(path), {})


def test_servers_weights_backup_and_their_own_failure_window(tmp_path):
    (tmp_path / "static").mkdir()
    settings = load(tmp_path, FULL)
    app = settings.upstreams["app"]
    assert [server.name for server in app.servers] == ["127.0.0.1:9001", "127.0.0.1:9002", "unix:/tmp/app.sock"]
    assert [server.weight for server in app.servers] == [3, 1, 1]
    assert [server.backup for server in app.servers] == [False, False, True]
    assert [server.max_fails for server in app.servers] == [None, 2, None]  # None: the upstream's 3
    assert [server.fail_timeout for server in app.servers] == [None, 30.0, None]
    assert (app.balance, app.hash_header, app.max_fails, app.keepalive) == ("least_conn", None, 3, 8)


def test_durations_in_server_parameters_health_check_and_rotation(tmp_path):
    (tmp_path / "static").mkdir()
    settings = load(tmp_path, FULL.replace("fail_timeout=30s", "fail_timeout=500ms"))
    app = settings.upstreams["app"]
    assert app.servers[1].fail_timeout == 0.5
    check = app.health_check
    assert (check.path, check.interval, check.timeout, check.fails, check.passes) == ("/healthz", 0.5, 1.0, 2, 2)
    rotate = settings.access_log_rotate
    assert (rotate.size, rotate.interval, rotate.keep) == (10 << 20, 86400.0, 7)
    two_minutes = load(tmp_path, BASE.replace('"127.0.0.1:9001"', '"127.0.0.1:9001 fail_timeout=2m"'))
    assert two_minutes.upstreams["app"].servers[0].fail_timeout == 120.0


@pytest.mark.parametrize("balance, method, header", [
    ("hash:$http_x_user", "hash", "x-user"),
    ("hash:X-User", "hash", "X-User"),
    ("round_robin", "round_robin", None),
    ("ip_hash", "ip_hash", None),
    (" least_conn ", "least_conn", None),
])
def test_balance_methods_and_the_hash_header(tmp_path, balance, method, header):
    text = BASE.replace('servers = ["127.0.0.1:9001"]\n', f'servers = ["127.0.0.1:9001"]\nbalance = "{balance}"\n')
    app = load(tmp_path, text).upstreams["app"]
    assert (app.balance, app.hash_header) == (method, header)


def test_proxy_level_values(tmp_path):
    (tmp_path / "static").mkdir()
    settings = load(tmp_path, FULL)
    assert [listen.address.port for listen in settings.listen] == [0, 0]
    assert settings.client_max_body_size == 10 << 20
    assert settings.max_connections == 500
    assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert settings.access_log == str(tmp_path.resolve() / "access.log")  # relative to the file's folder
    static, api, default = settings.routes
    assert (static.path, static.cache_control, static.index) == ("/static/", "public, max-age=3600", 0)
    assert api.hosts == ("api.test", "*.api.test")
    assert (api.limit_req.rate, api.limit_req.burst, api.limit_req.nodelay, api.limit_req.key) == \
        (10.0, 20, True, "header:X-Api-Key")
    assert api.limit_conn.max == 4
    assert default.client_max_body_size == 50 << 20


def test_a_relative_static_dir_is_relative_to_the_config_file(tmp_path, monkeypatch):
    # checked against the config file's folder, so it must be served from there too, whatever the cwd
    site = tmp_path / "site"
    (site / "static").mkdir(parents=True)
    (site / "static" / "hello.txt").write_text("hello")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load(site, BASE + '\n[[proxy.routes]]\npath = "/static/"\nstatic = "static"\n')
    state = ProxyState(settings)
    route = state.route_for("localhost", "/static/hello.txt")
    assert route is not None and route.static is not None
    assert route.static.root == str((site / "static").resolve())


def test_load_proxy_settings_raises_config_error_not_a_traceback(tmp_path):
    with pytest.raises(ConfigError, match=r"wsgistack.toml:13: proxy.routes\[1\].upstream: no upstream named 'ap'"):
        load(tmp_path, BASE + '\n[[proxy.routes]]\npath = "/api"\nupstream = "ap"\n')
