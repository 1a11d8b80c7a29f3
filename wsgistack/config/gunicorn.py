"""A gunicorn configuration file (`-c gunicorn.conf.py`) read the way gunicorn reads it: run as Python.

Its module-level names are gunicorn settings; those wsgistack has are mapped onto [serve] settings (with
gunicorn's spelling of the values), the others are refused by name, so nothing is silently ignored: a
setting that changes how the server behaves and is not honoured would be the worst kind of config bug.
Modules, dunder names and helpers the file imports or defines for itself are left alone.
"""

from __future__ import annotations

import runpy
import types
from pathlib import Path
from typing import Any

from wsgistack.config.errors import ConfigError

# gunicorn's setting -> the ServeSettings field with the same meaning
SETTINGS = {
    "wsgi_app": "app", "bind": "bind", "workers": "workers", "worker_class": "worker_class",
    "threads": "threads", "worker_connections": "worker_connections", "backlog": "backlog",
    "timeout": "timeout", "graceful_timeout": "graceful_timeout", "keepalive": "keep_alive",
    "max_requests": "max_requests", "max_requests_jitter": "max_requests_jitter",
    "limit_request_line": "limit_request_line", "limit_request_fields": "limit_request_fields",
    "limit_request_field_size": "limit_request_field_size", "accesslog": "access_log",
    "access_log_format": "access_log_format", "errorlog": "error_log", "loglevel": "log_level",
    "pidfile": "pid", "preload_app": "preload", "reload": "reload",
    "forwarded_allow_ips": "forwarded_allow_ips", "umask": "umask", "user": "user", "group": "group",
    "proc_name": "proc_name", "chdir": "chdir", "daemon": "daemon",
}
# gunicorn settings whose gunicorn default is what wsgistack does anyway: accepted when left at that default
_HARMLESS = {"capture_output": False, "enable_stdio_inheritance": False, "spew": False,
             "check_config": False, "print_config": False, "default_proc_name": None, "pythonpath": None,
             "raw_env": [], "worker_tmp_dir": None, "sendfile": None, "reuse_port": False}


def read_gunicorn_config(path: Path) -> dict[str, Any]:
    """The [serve] settings a gunicorn config file sets (raw values, as a TOML table would hold them)."""
    try:
        namespace = runpy.run_path(str(path), run_name="__config__")
    except SystemExit:
        raise ConfigError(f"{path}: the gunicorn config file exited while it was read") from None
    except Exception as exc:  # noqa: BLE001  # the user's Python: any error is theirs, reported in one line
        raise ConfigError(f"{path}: the gunicorn config file failed: {type(exc).__name__}: {exc}") from None
    chosen: dict[str, Any] = {}
    for name, value in namespace.items():
        if name.startswith("_") or isinstance(value, types.ModuleType | type):
            continue
        if name in SETTINGS:
            chosen[SETTINGS[name]] = _value(name, value, path)
        elif name in _HARMLESS:
            if value != _HARMLESS[name]:
                raise ConfigError(f"{path}: gunicorn setting {name} = {value!r} is not supported by wsgistack "
                                  f"serve (remove it from the file)")
        elif callable(value):
            if name in _HOOKS:
                raise ConfigError(f"{path}: gunicorn server hook {name}() is not supported by wsgistack serve")
            continue  # a helper function of the file's own
        elif name in _UNSUPPORTED:
            raise ConfigError(f"{path}: gunicorn setting {name!r} is not supported by wsgistack serve")
        # any other name is the file's own (`cores = multiprocessing.cpu_count()`), as gunicorn reads it
    return chosen


def _value(name: str, value: Any, path: Path) -> Any:
    if name == "accesslog" and value is None:
        return ""  # gunicorn's default: no access log
    if name == "bind" and isinstance(value, str):
        return [value]
    if isinstance(value, (str, int, float, bool, list, tuple)):
        return list(value) if isinstance(value, tuple) else value
    raise ConfigError(f"{path}: gunicorn setting {name} = {value!r}: not a value wsgistack can take")


# gunicorn's other settings (its documented list): set in the file, each is refused by name
_UNSUPPORTED = frozenset({
    "statsd_host", "statsd_prefix", "dogstatsd_tags", "tmp_upload_dir", "secure_scheme_headers",
    "forwarder_headers", "proxy_protocol", "proxy_allow_ips", "paste", "initgroups", "logger_class", "logconfig",
    "logconfig_dict", "logconfig_json", "syslog", "syslog_addr", "syslog_prefix", "syslog_facility",
    "disable_redirect_access_to_syslog", "keyfile", "certfile", "ssl_version", "cert_reqs", "ca_certs",
    "suppress_ragged_eofs", "do_handshake_on_connect", "ciphers", "raw_paste_global_conf", "strip_header_spaces",
    "permit_unconventional_http_method", "permit_unconventional_http_version", "casefold_http_method",
    "header_map", "reload_engine", "reload_extra_files", "limit_request_body", "config",
})

# gunicorn's server hooks: code run inside the server, which wsgistack has no place for
_HOOKS = frozenset({
    "on_starting", "on_reload", "when_ready", "pre_fork", "post_fork", "post_worker_init", "worker_int",
    "worker_abort", "pre_exec", "pre_request", "post_request", "child_exit", "worker_exit", "nworkers_changed",
    "on_exit", "ssl_context",
})
