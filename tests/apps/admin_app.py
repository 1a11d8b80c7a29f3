"""The Flask app mounted at "/admin" (and on a host) in the mount tests: says what it saw, links with url_for."""

from __future__ import annotations

from flask import Flask, request, url_for

app = Flask("admin")


@app.get("/")
def index():
    """The admin home: a relative and an absolute link to a page, both built by url_for."""
    return {"app": "admin", "script_name": request.environ["SCRIPT_NAME"],
            "path_info": request.environ["PATH_INFO"], "link": url_for("page", name="users"),
            "external": url_for("page", name="users", _external=True)}


@app.get("/page/<name>")
def page(name: str):
    """One admin page."""
    return {"app": "admin", "script_name": request.environ["SCRIPT_NAME"],
            "path_info": request.environ["PATH_INFO"], "name": name, "home": url_for("index")}
