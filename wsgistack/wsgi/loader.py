"""Finds the WSGI app a user names: module:name, module:factory(args), a bare module, or a file path.

A bare module is searched the way Flask's own CLI does: `app`, then `application`, then a `create_app` or
`make_app` factory. Every failure is an AppLoadError with a one-line message; the traceback is kept for the
debug log only.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

WSGIApp = Callable[..., Any]

_NAMES = ("app", "application")
_FACTORIES = ("create_app", "make_app")


class AppLoadError(Exception):
    """The app cannot be loaded; str() is the one line to show, `details` the traceback if any."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(" ".join(message.split("\n")).replace("\r", " "))
        self.details = details


def _split_spec(spec: str) -> tuple[str, str | None]:
    # module names never hold a colon, so the first one separates module from attribute; what follows may
    # hold colons of its own (factory arguments like 'sqlite:///db')
    if spec.endswith(".py") or ":" not in spec:
        return spec, None
    module, _, attr = spec.partition(":")
    if not module:
        raise AppLoadError(f"app {spec!r}: expected MODULE:NAME")
    return module, attr or None


def _import(module_ref: str, spec: str) -> Any:
    if module_ref.endswith(".py") or os.sep in module_ref or "/" in module_ref:
        path = Path(module_ref)
        if path.suffix != ".py":
            path = path.with_suffix(".py")
        if not path.is_file():
            raise AppLoadError(f"app {spec!r}: no such file {str(path)!r}")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module_name = path.stem
        loaded = sys.modules.get(module_name)
        if loaded is not None and os.path.realpath(getattr(loaded, "__file__", "") or "") != str(path.resolve()):
            raise AppLoadError(f"app {spec!r}: the file's name clashes with the module {module_name!r} "
                               f"that is already imported; rename the file")
    else:
        module_name = module_ref
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except SyntaxError as exc:
        raise AppLoadError(
            f"app {spec!r}: syntax error in {exc.filename} line {exc.lineno}: {exc.msg}", traceback.format_exc()
        ) from None
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise AppLoadError(f"app {spec!r}: no module named {module_name!r}") from None
        raise AppLoadError(f"app {spec!r}: importing it failed: {exc}", traceback.format_exc()) from None
    except SystemExit as exc:
        raise AppLoadError(f"app {spec!r}: importing it called sys.exit({exc.code!r})",
                           traceback.format_exc()) from None
    except Exception as exc:
        raise AppLoadError(
            f"app {spec!r}: importing it failed: {type(exc).__name__}: {exc}", traceback.format_exc()
        ) from None


def _parse_call(attr: str, spec: str) -> tuple[str, list[Any], dict[str, Any]] | None:
    """'factory(1, name="x")' -> ('factory', [1], {'name': 'x'}); None when attr is a plain name."""
    try:
        node = ast.parse(attr.strip(), mode="eval").body
    except SyntaxError:
        raise AppLoadError(f"app {spec!r}: {attr!r} is not a name or a call") from None
    if isinstance(node, ast.Name):
        return None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise AppLoadError(f"app {spec!r}: {attr!r} is not a name or a call")
    try:
        args = [ast.literal_eval(arg) for arg in node.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except ValueError:
        raise AppLoadError(f"app {spec!r}: factory arguments must be literals (strings, numbers, ...)") from None
    return node.func.id, args, kwargs


def _call_factory(factory: Callable[..., Any], args: list, kwargs: dict, spec: str) -> Any:
    try:
        return factory(*args, **kwargs)
    except SystemExit as exc:
        raise AppLoadError(f"app {spec!r}: the factory called sys.exit({exc.code!r})",
                           traceback.format_exc()) from None
    except Exception as exc:
        raise AppLoadError(
            f"app {spec!r}: the factory failed: {type(exc).__name__}: {exc}", traceback.format_exc()
        ) from None


def load_app(spec: str) -> WSGIApp:
    """Import and return the WSGI callable named by `spec`."""
    module_ref, attr = _split_spec(spec.strip())
    module = _import(module_ref, spec)
    if attr is None:
        for name in _NAMES:
            candidate = getattr(module, name, None)
            if callable(candidate):
                return candidate
        for name in _FACTORIES:
            factory = getattr(module, name, None)
            if callable(factory):
                return _check(_call_factory(factory, [], {}, spec), spec)
        raise AppLoadError(
            f"app {spec!r}: found no 'app' or 'application', nor a 'create_app' or 'make_app' factory; "
            f"name it as {module_ref}:NAME"
        )
    call = _parse_call(attr, spec)
    name = call[0] if call else attr.strip()
    try:
        target = getattr(module, name)
    except AttributeError:
        raise AppLoadError(f"app {spec!r}: module {module.__name__!r} has no attribute {name!r}") from None
    if call:
        if not callable(target):
            raise AppLoadError(f"app {spec!r}: {name!r} is not callable")
        target = _call_factory(target, call[1], call[2], spec)
    return _check(target, spec)


def _check(app: Any, spec: str) -> WSGIApp:
    if app is None or not callable(app):
        raise AppLoadError(f"app {spec!r}: the object found is not a WSGI callable ({type(app).__name__})")
    return app
