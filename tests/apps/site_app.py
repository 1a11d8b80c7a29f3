"""The Flask app mounted at "/" in the mount tests (tests/server/test_server_mounts.py): says what it saw."""

from __future__ import annotations

from flask import Flask, request, url_for

app = Flask("site")


@app.get("/")
@app.get("/<path:rest>")
def seen(rest: str = ""):
    """Which app answered, the request's SCRIPT_NAME and PATH_INFO, and a link url_for builds."""
    return {"app": "site", "script_name": request.environ["SCRIPT_NAME"], "path_info": request.environ["PATH_INFO"],
            "link": url_for("seen", rest="x")}
