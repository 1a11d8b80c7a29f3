"""One config engine for every section of wsgistack.toml: one reader, one line finder, one file discovery, one
set of value parsers, one spelling of keys, one name per idea, and relative paths resolved one way.

In-process tests for the shared reader and line finder; real `python -m wsgistack` subprocesses for what users
see (one error line, `--check-config` output).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from commands import one_error_line, run
from test_cli_errors import check_config

from wsgistack.config import values
from wsgistack.config.errors import ConfigError
from wsgistack.config.toml_file import find_config_file, key_lines, read_toml_file
from wsgistack.supervisor import options as supervisor_options
from wsgistack.supervisor.toml_config import load_toml

DOCUMENT = """\
# a comment
[serve]
app = "app:app"
"max-requests" = 10

[proxy]
workers = 2
gzip.level = 5

[proxy.upstreams."the.api"]
servers = ["127.0.0.1:9001"]

[[proxy.routes]]
path = "/static/"
static = "static"

[[proxy.routes]]
path = "/"
upstream = "the.api"

[programs.web]
command = "web"

[programs.web.environment]
A = "1"
"""


# -- the reader --------------------------------------------------------------------------------------------


def write(folder: Path, text: str | bytes, name: str = "wsgistack.toml") -> Path:
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_the_reader_keeps_path_text_and_document(tmp_path):
    path = write(tmp_path, DOCUMENT)
    toml_file = read_toml_file(path)
    assert toml_file.path == str(path)
    assert toml_file.text == DOCUMENT
    assert toml_file.document == tomllib.loads(DOCUMENT)
    assert toml_file.folder == tmp_path.resolve()


@pytest.mark.parametrize(("content", "message"), [
    (b"[serve]\napp = \"\xff\"\n", r": not UTF-8 text \(byte 15\)$"),
    (b"[serve\n", r": not valid TOML: "),
    (b"[server]\napp = \"a\"\n", r":1: \[server\]: unknown table .*; did you mean \[serve\]\?$"),
    (b"# top\n\nnonsense = 3\n[serve]\n", r":3: \[nonsense\]: unknown table"),
])
def test_the_reader_refuses_in_one_line(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(ConfigError, match=r"^" + str(path).replace(".", r"\.") + message) as info:
        read_toml_file(path)
    assert "\n" not in str(info.value)


def test_the_reader_refuses_an_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere\.toml: cannot read: No such file"):
        read_toml_file(tmp_path / "nowhere.toml")


# -- the line finder ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "key", "index", "line"), [
    ("serve", "", 0, 2),  # the header
    ("serve", "app", 0, 3),
    ("serve", "max-requests", 0, 4),  # a quoted key
    ("proxy", "workers", 0, 7),
    ("proxy", "gzip", 0, 8),  # a dotted key counts as its first part
    (("proxy", "upstreams", "the.api"), "servers", 0, 11),  # a quoted table name holding a dot
    ("proxy", "upstreams", 0, 10),  # a sub-table counts as a key of its parent
    ("proxy.routes", "static", 0, 15),
    ("proxy.routes", "upstream", 1, 19),  # the second [[proxy.routes]] entry
    ("proxy.routes", "nosuch", 1, 17),  # a missing key: the entry's header
    ("programs.web", "environment", 0, 24),
    ("", "programs", 0, 21),
    ("", "serve", 0, 2),
])
def test_the_line_finder(tmp_path, table, key, index, line):
    toml_file = read_toml_file(write(tmp_path, DOCUMENT))
    assert toml_file.line(table, key, index) == line
    assert toml_file.where(table, key, index) == f"{toml_file.path}:{line}"


def test_the_line_finder_without_a_line_names_the_file(tmp_path):
    toml_file = read_toml_file(write(tmp_path, DOCUMENT))
    assert toml_file.line("supervisor", "pidfile") is None
    assert toml_file.where("supervisor", "pidfile") == toml_file.path
    assert toml_file.key_line("proxy.routes", "nosuch", 1) is None


def test_the_first_line_of_a_key_wins():
    lines = key_lines("[a]\nx = 1\n[b]\nx = 2\n[a.c]\n")
    assert (lines[(("a",), 0, "x")], lines[(("b",), 0, "x")], lines[(("a",), 0, "c")]) == (2, 4, 5)


def test_lines_of_a_table(tmp_path):
    toml_file = read_toml_file(write(tmp_path, DOCUMENT))
    assert toml_file.lines_of("programs.web") == {"": 21, "command": 22, "environment": 24}


# -- the discovery -----------------------------------------------------------------------------------------


def test_discovery_order(tmp_path):
    assert find_config_file(None, {}, tmp_path) is None
    write(tmp_path, "", "supervisord.conf")
    assert find_config_file(None, {}, tmp_path, defaults=("wsgistack.toml", "supervisord.conf")) == \
        tmp_path / "supervisord.conf"
    write(tmp_path, "")
    assert find_config_file(None, {}, tmp_path, defaults=("wsgistack.toml", "supervisord.conf")) == \
        tmp_path / "wsgistack.toml"
    write(tmp_path, "", "other.toml")
    assert find_config_file(None, {"WSGISTACK_CONFIG": "other.toml"}, tmp_path) == tmp_path / "other.toml"
    write(tmp_path, "", "named.toml")
    assert find_config_file("named.toml", {"WSGISTACK_CONFIG": "other.toml"}, tmp_path) == tmp_path / "named.toml"


def test_discovery_refuses_a_named_file_that_is_missing(tmp_path):
    write(tmp_path, "")
    with pytest.raises(ConfigError, match=r"^config file gone\.toml: no such file$"):
        find_config_file(None, {"WSGISTACK_CONFIG": "gone.toml"}, tmp_path)


def test_discovery_keeps_a_relative_name_as_typed_without_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "")
    assert find_config_file(None, {}) == Path("wsgistack.toml")


@pytest.mark.parametrize("command", [("serve", "app:app", "--check-config"), ("proxy", "--check-config"),
                                     ("supervise",)])
def test_every_command_refuses_a_missing_config_file_alike(tmp_path, command):
    line = one_error_line(run(tmp_path, *command, env={"WSGISTACK_CONFIG": "gone.toml"}))
    assert line == f"wsgistack {command[0]}: error: config file gone.toml: no such file"


@pytest.mark.parametrize("command", [("serve", "app:app", "--check-config"), ("proxy", "--check-config"),
                                     ("supervise",), ("config", "check", "wsgistack.toml")])
def test_every_command_refuses_a_misspelt_table_alike(tmp_path, command):
    write(tmp_path, '[proxy]\nworkers = 1\n\n[program.web]\ncommand = "web"\n')
    line = one_error_line(run(tmp_path, *command))
    assert line.startswith(f"wsgistack {command[0]}: error: "), line
    assert line.endswith("wsgistack.toml:4: [program]: unknown table (known: [serve], [proxy], [supervisor], "
                         "[programs.NAME]); did you mean [programs]?"), line


# -- one set of value parsers ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("10MB", 10 << 20), ("50KB", 50 << 10), ("1GB", 1 << 30),
                                               ("10m", 10 << 20), ("512k", 512 << 10), ("0", 0), (1024, 1024)])
def test_one_size_parser_takes_supervisord_and_nginx_spellings(raw, expected):
    assert values.size(raw) == expected
    assert supervisor_options.size is values.size


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("false", False), ("yes", True), ("no", False),
                                               ("on", True), ("off", False), ("1", True), ("0", False)])
def test_one_boolean_parser_takes_supervisord_spellings(raw, expected):
    assert values.boolean(raw) is expected
    assert supervisor_options.boolean is values.boolean


def test_one_octal_parser_for_masks_and_modes():
    assert values.umask("022") == supervisor_options.mask("022") == values.octal(0o777)("0o22") == 0o022
    assert supervisor_options.octal("4750") == 0o4750  # a socket's chmod may carry more than a mask's bits
    for parse in (values.umask, supervisor_options.mask, supervisor_options.octal):
        with pytest.raises(ValueError, match=r"^'9' is not an octal number like 022$"):
            parse("9")
    with pytest.raises(ValueError, match=r"^'1000' is not between 000 and 777 \(octal\)$"):
        supervisor_options.mask("1000")


def test_serve_and_supervisor_refuse_a_bad_umask_with_the_same_words(tmp_path):
    write(tmp_path, '[serve]\numask = "9"\n')
    write(tmp_path, '[programs.web]\ncommand = "web"\numask = "9"\n', "programs.toml")
    serve = one_error_line(run(tmp_path, "serve", "app:app", "--check-config"))
    supervise = one_error_line(run(tmp_path, "config", "check", "programs.toml"))
    assert serve.endswith("wsgistack.toml:2: serve.umask: '9' is not an octal number like 022"), serve
    assert supervise.endswith("programs.toml:3: [programs.web] umask: '9' is not an octal number like 022"), \
        supervise


# -- one spelling of keys ----------------------------------------------------------------------------------


def proxy_check(folder: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    """The [proxy] table printed by `wsgistack proxy ARGS --check-config`, parsed."""
    result = run(folder, "proxy", *args, "--check-config", env=env)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return tomllib.loads(result.stdout)["proxy"]


def test_proxy_keys_may_be_spelt_with_dashes_everywhere(tmp_path):
    write(tmp_path, '[proxy]\nsend-timeout = "10s"\naccess-log-rotate = { keep = 3 }\n\n'
                    '[proxy.upstreams.app]\nservers = ["127.0.0.1:9001"]\nconnect-timeout = "1s"\n'
                    'health-check = { path = "/up", interval = "3s" }\n\n'
                    '[[proxy.routes]]\nupstream = "app"\nclient-max-body-size = "5m"\n'
                    'limit-req = { rate = "5r/s", burst = 2 }\n')
    table = proxy_check(tmp_path)
    assert (table["send_timeout"], table["access_log_rotate"]["keep"]) == (10.0, 3)
    assert table["upstreams"]["app"]["connect_timeout"] == 1.0
    assert table["upstreams"]["app"]["health_check"]["interval"] == 3.0
    assert table["routes"][0]["client_max_body_size"] == 5 << 20
    assert table["routes"][0]["limit_req"]["burst"] == 2


@pytest.mark.parametrize(("content", "error"), [
    ('[serve]\nmax_requests = 1\nmax-requests = 2\n', "wsgistack.toml:3: serve.max-requests: "),
    ('[proxy]\nsend_timeout = 1\nsend-timeout = 2\n', "wsgistack.toml:3: proxy.send-timeout: "),
    ('[proxy.upstreams.app]\nservers = ["127.0.0.1:9001"]\nread-timeout = 1\nread_timeout = 2\n',
     "wsgistack.toml:4: proxy.upstreams.app.read_timeout: "),
    (('[[proxy.routes]]\nupstream = "a"\n\n[[proxy.routes]]\nupstream = "a"\nclient_max_body_size = 1\n'
      'client-max-body-size = 2\n'), "wsgistack.toml:7: proxy.routes[1].client-max-body-size: "),
    ('[supervisor]\nsocket_mode = "0700"\nsocket-mode = "0700"\n', "wsgistack.toml:3: [supervisor] socket-mode: "),
    ('[programs.web]\ncommand = "web"\nstart-secs = 1\nstart_secs = 2\n',
     "wsgistack.toml:4: [programs.web] start_secs: "),
])
def test_a_key_spelt_both_ways_is_one_error_in_every_section(tmp_path, content, error):
    write(tmp_path, content)
    line = one_error_line(run(tmp_path, "config", "check", "wsgistack.toml"))
    assert line.endswith(f"{error}set twice (as dashes and as underscores)"), line


def test_supervisor_keys_may_be_spelt_with_dashes_and_environment_names_stay_as_written(tmp_path):
    path = write(tmp_path, '[supervisor]\nsocket-mode = "0770"\n\n[programs.web]\ncommand = "web"\n'
                           'stop-wait-secs = 3\nstopwaitsecs = 3\nauto-restart = "unexpected"\n'
                           'environment = { "MY-NAME" = "x", my_other = "y" }\n')
    with pytest.raises(ConfigError, match="stop_wait_secs: unknown option"):
        load_toml(str(path))  # dashes are underscores, never removed: supervisord's name has none
    path.write_text(path.read_text().replace("stop-wait-secs = 3\n", "").replace("auto-restart", "autorestart"))
    config = load_toml(str(path))
    (web,) = config.programs
    assert config.control.unix_mode == 0o770
    assert (web.stopwaitsecs, web.autorestart) == (3.0, "unexpected")
    assert ("MY-NAME", "x") in web.environment and ("my_other", "y") in web.environment


# -- one name per idea: forwarded_allow_ips -----------------------------------------------------------------

ROUTE = '\n[proxy.upstreams.app]\nservers = ["127.0.0.1:9001"]\n\n[[proxy.routes]]\nupstream = "app"\n'
DEPRECATED = "deprecated: {old} is now {new} (the name [serve] uses); the old name will go"


@pytest.mark.parametrize(("args", "env"), [
    (("--forwarded-allow-ips", "10.0.0.0/8,127.0.0.1"), {}),
    ((), {"WSGISTACK_PROXY_FORWARDED_ALLOW_IPS": "10.0.0.0/8,127.0.0.1"}),
])
def test_proxy_forwarded_allow_ips_from_flag_and_variable(tmp_path, args, env):
    assert proxy_check(tmp_path, "--upstream", "127.0.0.1:9001", *args, env=env)["forwarded_allow_ips"] == \
        ["10.0.0.0/8", "127.0.0.1"]


def test_proxy_forwarded_allow_ips_from_the_file(tmp_path):
    write(tmp_path, '[proxy]\nforwarded_allow_ips = ["10.0.0.0/8"]\n' + ROUTE)
    assert proxy_check(tmp_path)["forwarded_allow_ips"] == ["10.0.0.0/8"]


@pytest.mark.parametrize(("file", "args", "env", "old", "new"), [
    ('[proxy]\n\ntrusted_proxies = ["10.0.0.0/8"]\n', (), {}, "wsgistack.toml:3: proxy.trusted_proxies",
     "forwarded_allow_ips"),
    ("[proxy]\n", ("--trusted-proxies", "10.0.0.0/8"), {}, "--trusted-proxies", "--forwarded-allow-ips"),
    ("[proxy]\n", (), {"WSGISTACK_PROXY_TRUSTED_PROXIES": "10.0.0.0/8"}, "WSGISTACK_PROXY_TRUSTED_PROXIES",
     "WSGISTACK_PROXY_FORWARDED_ALLOW_IPS"),
])
def test_proxy_trusted_proxies_still_works_with_one_deprecation_line(tmp_path, file, args, env, old, new):
    write(tmp_path, file + ROUTE)
    result = run(tmp_path, "proxy", *args, "--check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == DEPRECATED.format(old=old, new=new) + "\n"
    assert tomllib.loads(result.stdout)["proxy"]["forwarded_allow_ips"] == ["10.0.0.0/8"]
    assert "trusted_proxies" not in result.stdout  # what it prints is the new name


@pytest.mark.parametrize(("file", "args", "env", "error"), [
    ('[proxy]\nforwarded_allow_ips = ["1.2.3.4"]\ntrusted_proxies = ["10.0.0.0/8"]\n', (), {},
     "wsgistack.toml:3: proxy.trusted_proxies: also set as forwarded_allow_ips (its new name); keep one"),
    ("[proxy]\n", ("--trusted-proxies", "10.0.0.0/8", "--forwarded-allow-ips", "1.2.3.4"), {},
     "--trusted-proxies: also set as --forwarded-allow-ips (its new name); keep one"),
    ("[proxy]\n", (), {"WSGISTACK_PROXY_TRUSTED_PROXIES": "10.0.0.0/8",
                       "WSGISTACK_PROXY_FORWARDED_ALLOW_IPS": "1.2.3.4"},
     "WSGISTACK_PROXY_TRUSTED_PROXIES: also set as WSGISTACK_PROXY_FORWARDED_ALLOW_IPS (its new name); keep one"),
    ('[proxy]\ntrusted_proxies = ["nowhere"]\n', (), {},
     "wsgistack.toml:2: proxy.trusted_proxies: 'nowhere' is not an IP address or network like 10.0.0.0/8"),
])
def test_proxy_old_and_new_name_together_is_one_error(tmp_path, file, args, env, error):
    write(tmp_path, file + ROUTE)
    line = one_error_line(run(tmp_path, "proxy", *args, "--check-config", env=env))
    assert line == f"wsgistack proxy: error: {error}"


def test_proxy_help_shows_the_new_name_only(tmp_path):
    result = run(tmp_path, "proxy", "--help")
    assert "--forwarded-allow-ips" in result.stdout and "--trusted-proxies IPS" not in result.stdout


# -- relative paths: against the folder of the file they were read from; flags and variables: the cwd ---------


@pytest.fixture
def site(tmp_path) -> Path:
    """site/ with a wsgistack.toml's neighbours (tls/, static/, app/), and elsewhere/ to start commands from."""
    folder = tmp_path.resolve() / "site"
    for name in ("tls", "static", "app", "logs", "run"):
        (folder / name).mkdir(parents=True)
    (folder / "tls" / "c.pem").write_text("certificate")
    (folder / "tls" / "k.pem").write_text("key")
    (tmp_path / "elsewhere").mkdir()
    return folder


def test_proxy_paths_in_the_file_are_relative_to_its_folder(site):
    write(site, '[proxy]\nlisten = ["127.0.0.1:0 ssl"]\ncertfile = "tls/c.pem"\nkeyfile = "./tls/k.pem"\n'
                'access_log = "logs/access.log"\nerror_log = "logs/proxy.log"\n' + ROUTE +
                '\n[[proxy.routes]]\npath = "/static/"\nstatic = "static"\n')
    # started elsewhere: the ssl listener's files are found (checked to exist) beside the config file
    table = proxy_check(site.parent / "elsewhere", "-c", "../site/wsgistack.toml")
    assert (table["certfile"], table["keyfile"]) == (str(site / "tls/c.pem"), str(site / "tls/k.pem"))
    assert (table["access_log"], table["error_log"]) == (str(site / "logs/access.log"), str(site / "logs/proxy.log"))
    assert table["routes"][1]["static"] == str(site / "static")
    assert not (site / "logs" / "access.log").exists()  # a check opens nothing


def test_proxy_access_log_dash_is_stdout_not_a_path(site):
    write(site, '[proxy]\naccess_log = "-"\n' + ROUTE)
    assert proxy_check(site.parent / "elsewhere", "-c", "../site/wsgistack.toml")["access_log"] == "-"


@pytest.mark.parametrize("source", ["flags", "variables"])
def test_proxy_paths_from_flags_and_variables_are_relative_to_the_current_directory(site, source):
    paths = {"certfile": "tls/c.pem", "keyfile": "tls/k.pem"}
    args = [item for name, value in paths.items() for item in (f"--{name}", value)] if source == "flags" else []
    env = {f"WSGISTACK_PROXY_{name.upper()}": value for name, value in paths.items()} if source == "variables" else {}
    ssl = ("--upstream", "127.0.0.1:9001", "--listen", "127.0.0.1:0 ssl", "--static", "/s/=static")
    table = proxy_check(site, *ssl, *args, env=env)  # from site/, where tls/ and static/ are
    assert (table["certfile"], table["keyfile"]) == ("tls/c.pem", "tls/k.pem")  # as typed: the proxy never moves
    assert table["routes"][0]["static"] == str(site / "static")
    line = one_error_line(run(site.parent / "elsewhere", "proxy", *ssl[:4], *args, "--check-config", env=env))
    assert line.endswith("proxy.certfile: tls/c.pem: no such file"), line  # not looked for beside anything else


def test_serve_paths_in_the_file_are_relative_to_its_folder(site):
    write(site, '[serve]\napp = "app:app"\npid = "run/w.pid"\naccess_log = "logs/access.log"\n'
                'error-log = "logs/error.log"\nchdir = "app"\n')
    table = check_config(site.parent / "elsewhere", "-c", "../site/wsgistack.toml")
    assert (table["pid"], table["access_log"], table["error_log"], table["chdir"]) == \
        (str(site / "run/w.pid"), str(site / "logs/access.log"), str(site / "logs/error.log"), str(site / "app"))


@pytest.mark.parametrize("source", ["flags", "variables"])
def test_serve_paths_from_flags_and_variables_are_relative_to_the_current_directory(site, source):
    write(site, '[serve]\napp = "app:app"\npid = "run/w.pid"\nchdir = "app"\n')  # flags and variables win
    paths = {"pid": "w.pid", "access_log": "a.log", "error_log": "e.log", "chdir": "static"}
    args = [item for name, value in paths.items() for item in (f"--{name.replace('_', '-')}", value)] \
        if source == "flags" else []
    env = {f"WSGISTACK_{name.upper()}": value for name, value in paths.items()} if source == "variables" else {}
    table = check_config(site, *args, env=env)
    assert {name: table[name] for name in paths} == {name: str(site / value) for name, value in paths.items()}


def test_serve_dash_logs_stay_stdout_and_stderr(site):
    write(site, '[serve]\napp = "app:app"\naccess_log = "-"\nerror_log = "-"\n')
    table = check_config(site.parent / "elsewhere", "-c", "../site/wsgistack.toml")
    assert (table["access_log"], table["error_log"]) == ("-", "-")
