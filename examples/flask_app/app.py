"""Example Flask application bundled with wsgistack.

Serve it with ``wsgistack serve app:app -w 2`` from this folder, or
``wsgistack serve examples/flask_app/app.py`` from the repository root.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, TypedDict

from flask import (
    Flask,
    Response,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask.typing import ResponseReturnValue

# Pin root_path to this file's folder: when a server loads the app from a file
# path the module may not be importable by name, and Flask would otherwise fall
# back to the current working directory and miss templates/ and static/.
APP_DIR = os.path.dirname(os.path.abspath(__file__))

MAX_NOTE_LENGTH = 500
DEFAULT_STREAM_LINES = 5
MAX_STREAM_LINES = 1000
UPLOAD_PIECE = 64 * 1024  # bytes read from the request body at a time by /upload
DEFAULT_SLOW_MS = 20
MAX_SLOW_MS = 10_000
DOWNLOAD_PATH = os.path.join(APP_DIR, "files", "hello.txt")


class Note(TypedDict):
    """A single note as stored and as serialised to JSON."""

    id: int
    text: str
    created_at: str


# Per-process store: each worker process has its own copy, which is fine for a demo.
_notes: list[Note] = []
_notes_lock = threading.Lock()
_next_id = 1

_SEED_NOTES = (
    "Welcome to the wsgistack Flask example.",
    "Notes live in memory, so each worker process keeps its own list.",
)


def _now() -> str:
    """Return the current UTC time as an ISO 8601 string."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def add_note(text: str) -> Note:
    """Append a note to the store and return it."""
    global _next_id
    with _notes_lock:
        note: Note = {"id": _next_id, "text": text, "created_at": _now()}
        _next_id += 1
        _notes.append(note)
    return note


def list_notes() -> list[Note]:
    """Return a snapshot of all notes, oldest first."""
    # Copy under the lock so callers never iterate a list another thread mutates.
    with _notes_lock:
        return [note.copy() for note in _notes]


def reset_notes() -> None:
    """Restore the store to its two seed notes (handy for tests)."""
    global _next_id
    with _notes_lock:
        _notes.clear()
        _next_id = 1
    for text in _SEED_NOTES:
        add_note(text)


def validate_note_text(value: Any) -> tuple[str | None, str | None]:
    """Return ``(text, None)`` for valid input or ``(None, error)`` otherwise."""
    if not isinstance(value, str):
        return None, "text is required and must be a string"
    text = value.strip()
    if not text:
        return None, "text is required"
    if len(text) > MAX_NOTE_LENGTH:
        return None, f"text must be at most {MAX_NOTE_LENGTH} characters"
    return text, None


def _clamp(value: int, low: int, high: int) -> int:
    """Clamp ``value`` into the inclusive range ``[low, high]``."""
    return max(low, min(value, high))


def create_app() -> Flask:
    """Build and configure the example Flask application."""
    app = Flask(__name__, root_path=APP_DIR)

    @app.get("/")
    def index() -> ResponseReturnValue:
        """Render the notes page with the submission form."""
        return render_template("index.html", notes=list_notes(), error=None, text="")

    @app.post("/notes")
    def create_note_form() -> ResponseReturnValue:
        """Add a note from the HTML form, then redirect back to the index."""
        raw = request.form.get("text", "")
        text, error = validate_note_text(raw)
        if text is None:
            # Re-render instead of redirecting so the user keeps what they typed.
            body = render_template("index.html", notes=list_notes(), error=error, text=raw)
            return body, 400
        add_note(text)
        # 303 makes browsers follow up with GET, so a reload won't resubmit the form.
        return redirect(url_for("index"), code=303)

    @app.get("/api/notes")
    def api_list_notes() -> ResponseReturnValue:
        """Return all notes as a JSON list."""
        return jsonify(list_notes())

    @app.post("/api/notes")
    def api_create_note() -> ResponseReturnValue:
        """Create a note from a JSON body ``{"text": ...}``."""
        # silent=True so malformed JSON yields our JSON error, not Flask's HTML 400 page.
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict):
            return jsonify(error="request body must be a JSON object"), 400
        text, error = validate_note_text(payload.get("text"))
        if text is None:
            return jsonify(error=error), 400
        return jsonify(add_note(text)), 201

    @app.get("/api/health")
    def api_health() -> ResponseReturnValue:
        """Report liveness and the worker pid, which shows load spreading across workers."""
        return jsonify(status="ok", pid=os.getpid())

    @app.get("/stream")
    def stream() -> ResponseReturnValue:
        """Stream ``n`` text lines from a generator."""
        n = _clamp(request.args.get("n", DEFAULT_STREAM_LINES, type=int), 0, MAX_STREAM_LINES)

        def generate() -> Iterator[str]:
            """Yield one line per chunk."""
            for i in range(1, n + 1):
                yield f"line {i}\n"

        # No Content-Length is known for a generator, so the server must send it chunked.
        return Response(generate(), mimetype="text/plain")

    @app.post("/upload")
    def upload() -> ResponseReturnValue:
        """Count and hash an uploaded body, read in pieces from ``wsgi.input`` (never whole in memory)."""
        digest, size = hashlib.sha256(), 0
        while piece := request.stream.read(UPLOAD_PIECE):
            digest.update(piece)
            size += len(piece)
        return jsonify(bytes=size, sha256=digest.hexdigest())

    @app.get("/download")
    def download() -> ResponseReturnValue:
        """Send a small file from disk via ``send_file``."""
        # send_file hands the open file to wsgi.file_wrapper when the server provides one.
        return send_file(DOWNLOAD_PATH, mimetype="text/plain", as_attachment=True)

    @app.get("/slow")
    def slow() -> ResponseReturnValue:
        """Sleep for ``ms`` milliseconds to imitate slow I/O."""
        ms = _clamp(request.args.get("ms", DEFAULT_SLOW_MS, type=int), 0, MAX_SLOW_MS)
        time.sleep(ms / 1000)
        return f"slept {ms} ms\n", 200, {"Content-Type": "text/plain; charset=utf-8"}

    @app.errorhandler(404)
    def not_found(_error: Exception) -> ResponseReturnValue:
        """Render the custom not-found page."""
        return render_template("404.html", path=request.path), 404

    return app


reset_notes()
app = create_app()


if __name__ == "__main__":
    # Flask's development server, for comparison with wsgistack.
    app.run(debug=True)
