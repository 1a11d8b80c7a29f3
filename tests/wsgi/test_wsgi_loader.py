"""load_app: module:name, module:factory(args), bare modules, file paths, and one-line AppLoadErrors."""

from __future__ import annotations

import importlib
import itertools
import os
import sys
import textwrap

import pytest

from wsgistack.wsgi.loader import AppLoadError, load_app

_counter = itertools.count()

APP_SOURCE = '''
def app(environ, start_response):
    start_response("200 OK", [])
    return [b"app"]
app.tag = "app"
'''


@pytest.fixture
def place(tmp_path, monkeypatch):
    """Writes modules into a fresh folder on sys.path (and the cwd); removes every module imported meanwhile."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)

    def write(relative: str, source: str):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return path

    write.root = tmp_path
    yield write
    for name in set(sys.modules) - before:
        del sys.modules[name]


def unique(prefix: str = "wsl_mod") -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


def load_error(spec: str) -> AppLoadError:
    with pytest.raises(AppLoadError) as info:
        load_app(spec)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith("app "), message
    return info.value


MAKE = '''
def _make(tag):
    def wsgi(environ, start_response):
        start_response("200 OK", [])
        return [tag.encode()]
    wsgi.tag = tag
    return wsgi
'''


# -- successful loads ----------------------------------------------------------------------------------


def test_module_colon_name(place):
    name = unique()
    place(f"{name}.py", APP_SOURCE + "other = app\n")
    assert load_app(f"{name}:app").tag == "app"
    assert load_app(f"{name}:other").tag == "app"


def test_module_colon_name_with_spaces_around(place):
    name = unique()
    place(f"{name}.py", APP_SOURCE)
    assert load_app(f"  {name}:app  ").tag == "app"


def test_factory_call_without_args(place):
    name = unique()
    place(f"{name}.py", MAKE + "def create_app():\n    return _make('factory')\n")
    assert load_app(f"{name}:create_app()").tag == "factory"


def test_factory_call_with_literal_args(place):
    name = unique()
    place(f"{name}.py", MAKE + textwrap.dedent('''
        received = []
        def create_app(name, debug=False, *rest, **extra):
            received.append((name, debug, rest, extra))
            return _make(f"{name}-{debug}")
    '''))
    app = load_app(f"{name}:create_app('x', debug=True)")
    assert app.tag == "x-True"
    module = sys.modules[name]
    assert module.received == [("x", True, (), {})]
    load_app(f'{name}:create_app("y", 2, [1, 2], None, opts=(1, 2.5, {{"a"}}), flag=-3)')
    assert module.received[-1] == ("y", 2, ([1, 2], None), {"opts": (1, 2.5, {"a"}), "flag": -3})


def test_factory_call_with_spaces(place):
    name = unique()
    place(f"{name}.py", MAKE + "def make(a, b=1):\n    return _make(f'{a}{b}')\n")
    assert load_app(f"{name}: make( 'q' , b = 2 ) ").tag == "q2"


def test_bare_module_finds_app(place):
    name = unique()
    place(f"{name}.py", MAKE + "app = _make('app')\napplication = _make('application')\n"
                                     "def create_app():\n    return _make('create_app')\n")
    assert load_app(name).tag == "app"


def test_bare_module_then_application(place):
    name = unique()
    place(f"{name}.py", MAKE + "application = _make('application')\n"
                                     "def create_app():\n    return _make('create_app')\n")
    assert load_app(name).tag == "application"


def test_bare_module_skips_non_callable_app(place):
    name = unique()
    place(f"{name}.py", MAKE + "app = None\napplication = _make('application')\n")
    assert load_app(name).tag == "application"


def test_bare_module_then_create_app(place):
    name = unique()
    place(f"{name}.py", MAKE + "def create_app():\n    return _make('create_app')\n"
                                     "def make_app():\n    return _make('make_app')\n")
    assert load_app(name).tag == "create_app"


def test_bare_module_then_make_app(place):
    name = unique()
    place(f"{name}.py", MAKE + "def make_app():\n    return _make('make_app')\n")
    assert load_app(name).tag == "make_app"


def test_dotted_module_in_package(place):
    pkg = unique("wsl_pkg")
    place(f"{pkg}/__init__.py", "")
    place(f"{pkg}/web/__init__.py", "")
    place(f"{pkg}/web/server.py", APP_SOURCE)
    assert load_app(f"{pkg}.web.server:app").tag == "app"
    assert load_app(f"{pkg}.web.server").tag == "app"


def test_module_found_from_cwd_without_sys_path_entry(place, monkeypatch, tmp_path):
    name = unique()
    place(f"{name}.py", APP_SOURCE)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in (str(tmp_path), "")])
    assert load_app(f"{name}:app").tag == "app"
    assert str(tmp_path) in sys.path


def test_file_path(place):
    name = unique()
    path = place(f"deploy/site/{name}.py", APP_SOURCE)
    assert load_app(f"deploy/site/{name}.py").tag == "app"
    assert str(path.parent) in sys.path


def test_file_path_with_name(place):
    name = unique()
    place(f"deploy/{name}.py", MAKE + "wsgi = _make('wsgi')\n")
    assert load_app(f"deploy/{name}.py:wsgi").tag == "wsgi"


def test_absolute_file_path_with_factory(place):
    name = unique()
    path = place(f"abs/{name}.py", MAKE + "def build(x):\n    return _make(x)\n")
    assert load_app(f"{path}:build('abs')").tag == "abs"


def test_path_without_py_suffix(place):
    name = unique()
    place(f"deploy/{name}.py", APP_SOURCE)
    assert load_app(f"deploy/{name}").tag == "app"


def test_class_instance_with_call_is_accepted(place):
    name = unique()
    place(f"{name}.py", '''
        class App:
            tag = "instance"
            def __call__(self, environ, start_response):
                return []
        app = App()
    ''')
    assert load_app(f"{name}:app").tag == "instance"


def test_loaded_app_is_runnable(place):
    name = unique()
    place(f"{name}.py", APP_SOURCE)
    app = load_app(name)
    seen = []
    assert app({}, lambda status, headers: seen.append(status)) == [b"app"]
    assert seen == ["200 OK"]


# -- errors --------------------------------------------------------------------------------------------


def test_missing_module(place):
    name = unique("wsl_missing")
    error = load_error(f"{name}:app")
    assert f"no module named {name!r}" in str(error)


def test_missing_dotted_module(place):
    pkg = unique("wsl_pkg")
    place(f"{pkg}/__init__.py", "")
    error = load_error(f"{pkg}.nothere:app")
    assert f"no module named '{pkg}.nothere'" in str(error)
    error = load_error(f"{pkg}_absent.sub:app")
    assert "no module named" in str(error)


def test_missing_attribute(place):
    name = unique()
    place(f"{name}.py", APP_SOURCE)
    error = load_error(f"{name}:nope")
    assert "has no attribute 'nope'" in str(error)
    assert name in str(error)


def test_missing_factory(place):
    name = unique()
    place(f"{name}.py", APP_SOURCE)
    assert "has no attribute 'create_app'" in str(load_error(f"{name}:create_app()"))


def test_bare_module_without_app(place):
    name = unique()
    place(f"{name}.py", "x = 1\napp = 'not callable'\n")
    error = load_error(name)
    assert "'app'" in str(error) and "'application'" in str(error) and "create_app" in str(error)


def test_syntax_error_names_file_and_line(place):
    name = unique()
    path = place(f"{name}.py", "x = 1\n\ndef broken(:\n    pass\n")
    error = load_error(f"{name}:app")
    assert "syntax error" in str(error)
    assert str(path) in str(error)
    assert "line 3" in str(error)
    assert "SyntaxError" in error.details


def test_indentation_error_is_a_syntax_error(place):
    name = unique()
    place(f"{name}.py", "def f():\nreturn 1\n")
    error = load_error(name)
    assert "syntax error" in str(error) and "line 2" in str(error)


def test_syntax_error_in_file_path_spec(place):
    name = unique()
    place(f"deploy/{name}.py", "app = (\n")
    error = load_error(f"deploy/{name}.py")
    assert "syntax error" in str(error) and f"{name}.py" in str(error)


def test_module_raising_at_import(place):
    name = unique()
    place(f"{name}.py", "raise RuntimeError('database is down')\n")
    error = load_error(f"{name}:app")
    assert "importing it failed" in str(error)
    assert "RuntimeError: database is down" in str(error)
    assert "Traceback" in error.details and "database is down" in error.details


def test_module_raising_import_error_of_a_name(place):
    name = unique()
    place(f"{name}.py", "from os import does_not_exist\n")
    error = load_error(name)
    assert "importing it failed" in str(error) and "does_not_exist" in str(error)


def test_module_importing_missing_third_party(place):
    name = unique()
    dep = unique("wsl_thirdparty")
    place(f"{name}.py", f"import {dep}\n" + APP_SOURCE)
    error = load_error(f"{name}:app")
    assert dep in str(error)
    assert f"no module named {name!r}" not in str(error)
    assert "importing it failed" in str(error)
    assert error.details


def test_package_module_importing_missing_sibling(place):
    pkg = unique("wsl_pkg")
    place(f"{pkg}/__init__.py", "")
    place(f"{pkg}/main.py", f"from {pkg} import helpers_missing_mod\n")
    error = load_error(f"{pkg}.main:app")
    assert "helpers_missing_mod" in str(error)
    assert f"no module named '{pkg}.main'" not in str(error)


def test_factory_raising(place):
    name = unique()
    place(f"{name}.py", "def create_app():\n    raise ValueError('missing SECRET_KEY')\n")
    error = load_error(f"{name}:create_app()")
    assert "the factory failed" in str(error)
    assert "ValueError: missing SECRET_KEY" in str(error)
    assert "missing SECRET_KEY" in error.details


def test_bare_module_factory_raising(place):
    name = unique()
    place(f"{name}.py", "def make_app():\n    raise KeyError('cfg')\n")
    assert "the factory failed" in str(load_error(name))


def test_factory_with_wrong_arguments(place):
    name = unique()
    place(f"{name}.py", "def create_app():\n    return None\n")
    assert "the factory failed" in str(load_error(f"{name}:create_app(1)"))


@pytest.mark.parametrize("call", [
    "create_app(os.environ)",
    "create_app(x)",
    "create_app(1 + 2j * y)",
    "create_app(name=f())",
    "create_app([i for i in range(3)])",
])
def test_non_literal_factory_args(place, call):
    name = unique()
    place(f"{name}.py", "def create_app(*a, **k):\n    raise AssertionError('must not be called')\n")
    error = load_error(f"{name}:{call}")
    assert "literals" in str(error)


@pytest.mark.parametrize("attr", ["app.wsgi_app", "1app", "app[0]", "create_app()()", "(app", "a b", "app.x()"])
def test_attr_not_a_name_or_call(place, attr):
    name = unique()
    place(f"{name}.py", APP_SOURCE)
    assert "is not a name or a call" in str(load_error(f"{name}:{attr}"))


def test_non_callable_target(place):
    name = unique()
    place(f"{name}.py", "CONFIG = {'debug': True}\n")
    error = load_error(f"{name}:CONFIG")
    assert "not a WSGI callable" in str(error) and "dict" in str(error)


def test_calling_non_callable(place):
    name = unique()
    place(f"{name}.py", "CONFIG = {'debug': True}\n")
    assert "'CONFIG' is not callable" in str(load_error(f"{name}:CONFIG()"))


@pytest.mark.parametrize("result", ["None", "42", "'a string'"])
def test_factory_returning_non_callable(place, result):
    name = unique()
    place(f"{name}.py", f"def create_app():\n    return {result}\n")
    assert "not a WSGI callable" in str(load_error(f"{name}:create_app()"))
    assert "not a WSGI callable" in str(load_error(name))


def test_empty_module_part(place):
    assert "expected MODULE:NAME" in str(load_error(":app"))


def test_missing_file(place):
    error = load_error("no/such/dir/file.py")
    assert "no such file" in str(error)
    assert "no/such/dir/file.py" in str(error)


def test_missing_file_with_name(place):
    assert "no such file" in str(load_error("no/such/file.py:app"))


def test_import_error_details_is_a_traceback_but_message_one_line(place):
    name = unique()
    place(f"{name}.py", "def f():\n    raise OSError('disk')\nf()\n")
    error = load_error(name)
    assert error.details.count("\n") > 2
    assert "OSError: disk" in str(error)


# -- bugs ----------------------------------------------------------------------------------------------


def test_multiline_exception_at_import_gives_one_line(place):
    name = unique()
    place(f"{name}.py", "raise RuntimeError('bad config\\nsee the docs')\n")
    load_error(name)


def test_multiline_exception_in_factory_gives_one_line(place):
    name = unique()
    place(f"{name}.py", "def create_app():\n    raise ValueError('line one\\nline two')\n")
    load_error(f"{name}:create_app()")


@pytest.mark.parametrize("arg, tag", [("'sqlite:///db.sqlite'", "sqlite:///db.sqlite"),
                                      ("{'env': 'prod'}", "{'env': 'prod'}")])
def test_factory_argument_containing_colon(place, arg, tag):
    name = unique()
    place(f"{name}.py", MAKE + "def create_app(arg):\n    return _make(str(arg))\n")
    assert load_app(f"{name}:create_app({arg})").tag == tag


def test_file_path_whose_stem_is_an_imported_module(place):
    """Loading it would replace the stdlib module for everyone: a clear error asks for a rename."""
    place("site/json.py", APP_SOURCE)
    assert "json" in sys.modules
    with pytest.raises(AppLoadError, match="clashes with the module 'json'"):
        load_app("site/json.py")


def test_module_exiting_at_import_is_an_app_load_error(place):
    name = unique()
    place(f"{name}.py", "import sys\nsys.exit(2)\n")
    try:
        load_error(name)
    except SystemExit:
        pytest.fail("SystemExit escaped load_app")
