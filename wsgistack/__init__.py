"""wsgistack: run a Flask (or any WSGI) app in production — server, proxy and supervisor in one package."""

__version__ = "0.1.0"
