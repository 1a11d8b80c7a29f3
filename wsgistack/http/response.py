"""The old home of the response head writer, now `heads.py`; kept for `supervisor/xmlrpc.py`'s import."""

from __future__ import annotations

from wsgistack.http.heads import error_response, simple_response

__all__ = ["error_response", "simple_response"]
