"""PEP 3333's environ from CGI meta-variables (RFC 3875): what a CGI host puts in a script's environment,
and what a web server sends over uwsgi or FastCGI (nginx's `uwsgi_params` and `fastcgi_params` are CGI's
variables). One function for the three, so `wsgistack cgi`, `--protocol uwsgi` and `--protocol fastcgi`
give an app the same environ for the same request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from wsgistack.wsgi.file_wrapper import FileWrapper
from wsgistack.wsgi.input import InputStream


def body_length(meta: Mapping[str, str]) -> int:
    """CONTENT_LENGTH as a number (0 when absent or empty); ValueError when it is not a length."""
    text = meta.get("CONTENT_LENGTH", "").strip()
    if text and not text.isdigit():
        raise ValueError(f"CONTENT_LENGTH {text!r} is not a length")
    return int(text or 0)


def cgi_environ(meta: Mapping[str, str], pull: Callable[[], bytes], errors: Any, *, multithread: bool = False,
                run_once: bool = False, strip_script_name: bool = False) -> dict[str, Any]:
    """The environ of one request: the meta-variables, with the ones PEP 3333 requires filled in when the
    sender left them out, and `pull` (the body, piece by piece, b"" at its end) as wsgi.input.

    `strip_script_name` is uwsgi's modifier1 30: PATH_INFO arrives whole and SCRIPT_NAME is cut from its front.
    """
    environ: dict[str, Any] = dict(meta)
    # a `Proxy:` request header arrives as HTTP_PROXY, the name HTTP clients read their proxy from (httpoxy):
    # never given to an app, whichever of the three ways the request came
    environ.pop("HTTP_PROXY", None)
    # the body's length and type are CONTENT_LENGTH and CONTENT_TYPE, which the server frames the body by; a
    # web server passes the client's fields as well, and an app reading those could disagree with the server
    # (PEP 3333 and RFC 3875 §4.1.18: no HTTP_CONTENT_LENGTH, no HTTP_CONTENT_TYPE)
    environ.pop("HTTP_CONTENT_LENGTH", None)
    environ.pop("HTTP_CONTENT_TYPE", None)
    environ.setdefault("REQUEST_METHOD", "GET")
    environ.setdefault("SCRIPT_NAME", "")
    environ.setdefault("PATH_INFO", "")
    environ.setdefault("QUERY_STRING", "")
    environ.setdefault("SERVER_NAME", "localhost")
    environ.setdefault("SERVER_PORT", "80")
    environ.setdefault("SERVER_PROTOCOL", "HTTP/1.0")
    script = environ["SCRIPT_NAME"].rstrip("/")
    environ["SCRIPT_NAME"] = script
    if strip_script_name and script and (environ["PATH_INFO"] == script
                                         or environ["PATH_INFO"].startswith(script + "/")):
        environ["PATH_INFO"] = environ["PATH_INFO"][len(script):]
    query = environ["QUERY_STRING"]
    environ.setdefault("RAW_URI", environ.get("REQUEST_URI") or (
        environ["SCRIPT_NAME"] + environ["PATH_INFO"] + (f"?{query}" if query else "")))
    https = str(environ.get("HTTPS", "")).lower() in ("on", "1") or environ.get("REQUEST_SCHEME") == "https"
    environ.update({
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if https else "http",
        "wsgi.input": InputStream(pull),
        "wsgi.input_terminated": True,
        "wsgi.errors": errors,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": True,
        "wsgi.run_once": run_once,
        "wsgi.file_wrapper": FileWrapper,
    })
    return environ
