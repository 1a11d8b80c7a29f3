"""The dashboard's HTML, written on the server: every value escaped here, no inline script or style (the
Content-Security-Policy allows only our own files), and every action a form that works without the script.
The script (static/dashboard.js) only refreshes what the page shows: states, the log tail, the charts.
"""

from __future__ import annotations

import datetime
import time
from html import escape
from typing import Any
from urllib.parse import quote

STATE_CLASSES = {"RUNNING": "ok", "STARTING": "busy", "STOPPING": "busy", "BACKOFF": "bad", "FATAL": "bad",
                 "EXITED": "off", "STOPPED": "off", "UNKNOWN": "bad"}


def uptime(seconds: int) -> str:
    """0:01:05, as supervisorctl shows it."""
    return str(datetime.timedelta(seconds=max(int(seconds), 0)))


def _layout(title: str, body: str, csrf: str = "", page: str = "", data: str = "", logout: bool = False) -> bytes:
    nav = ""
    if csrf:
        nav = '<nav><a href="/">Programs</a>'
        if logout:
            nav += (f'<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" '
                    f'value="{escape(csrf)}"><button id="logout">Log out</button></form>')
        nav += "</nav>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{escape(csrf)}">
<title>{escape(title)} · wsgistack</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/dashboard.css"><script src="/static/dashboard.js" defer></script>
</head><body data-page="{escape(page)}"{data}>
<header><h1>wsgistack <span>{escape(title)}</span></h1>{nav}</header>
<main>{body}</main></body></html>
""".encode()


def message_page(title: str, message: str) -> bytes:
    """A page that only says something (404, an error)."""
    return _layout(title, f'<p class="flash">{escape(message)}</p><p><a href="/">Back to the programs</a></p>')


def login_page(title: str, error: str = "") -> bytes:
    """The login form."""
    note = f'<p class="flash bad" id="login-error">{escape(error)}</p>' if error else ""
    return _layout(title, f"""{note}<form method="post" action="/login" class="login">
<label>Username <input name="username" id="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required>
</label><button id="login">Log in</button></form>""", page="login")


def _action_form(csrf: str, target: str, actions: tuple[str, ...], back: str = "/") -> str:
    buttons = "".join(f'<button name="action" value="{action}">{action}</button>' for action in actions)
    return (f'<form method="post" action="/action" class="inline"><input type="hidden" name="csrf" '
            f'value="{escape(csrf)}"><input type="hidden" name="target" value="{escape(target)}">'
            f'<input type="hidden" name="back" value="{escape(back)}">{buttons}</form>')


def _flash(message: str) -> str:
    return f'<p class="flash" id="flash">{escape(message)}</p>' if message else ""


def _state(record: dict[str, Any]) -> str:
    name = record["statename"]
    return f'<span class="state {STATE_CLASSES.get(name, "bad")}" data-field="statename">{escape(name)}</span>'


def _program_row(record: dict[str, Any], csrf: str) -> str:
    full = f"{record['group']}:{record['name']}"
    shown = record["name"] if record["group"] == record["name"] else full
    depends = ", ".join(record.get("depends_on", ())) or "—"
    if record.get("waiting"):
        depends += " (waiting)"
    return (f'<tr data-process="{escape(full)}"><td><a href="/program/{quote(full)}">{escape(shown)}</a></td>'
            f'<td>{_state(record)}</td><td data-field="description">{escape(record.get("description", ""))}</td>'
            f'<td data-field="pid">{record["pid"] or "—"}</td>'
            f'<td data-field="uptime">{uptime(record["uptime"]) if record["uptime"] else "—"}</td>'
            f'<td data-field="restarts">{record["restarts"]}</td><td>{escape(depends)}</td>'
            f'<td>{escape(record.get("ready") or "startsecs")}</td>'
            f'<td>{_action_form(csrf, full, ("start", "stop", "restart"))}</td></tr>')


def overview_page(title: str, records: list[dict[str, Any]], csrf: str, flash: str, logout: bool,
                  history: list[dict[str, Any]] | None = None) -> bytes:
    """Every program, the group and global actions, the traffic charts, the workers, the generations and the
    deploy history (newest first)."""
    rows = "".join(_program_row(record, csrf) for record in records)
    groups: dict[str, list[str]] = {}
    for record in records:
        groups.setdefault(record["group"], []).append(record["name"])
    group_rows = "".join(
        f'<tr data-group="{escape(group)}"><td>{escape(group)}</td><td>{escape(", ".join(members))}</td>'
        f'<td>{_action_form(csrf, group + ":*", ("start", "stop", "restart"))}</td></tr>'
        for group, members in groups.items())
    generations = "".join(
        f'<tr><td>{escape(record["group"])}</td><td>{escape(record["note"])}</td><td>{record["pid"] or "—"}</td>'
        f'<td>{escape(record["statename"])}</td></tr>' for record in records if record.get("note"))
    deploys = (f'<table><thead><tr><th>App server</th><th>Serving</th><th>PID</th><th>State</th></tr></thead>'
               f'<tbody>{generations}</tbody></table>' if generations else
               "<p>No app server generations here (deploys need <code>wsgistack up</code> with a [proxy]).</p>")
    if history:
        deploys += _history(history)
    body = f"""{_flash(flash)}
<section><h2>Programs</h2>
<div class="bulk">{_action_form(csrf, "all", ("start", "restart", "stop"))} <span>every program</span></div>
<table id="programs"><thead><tr><th>Name</th><th>State</th><th>Description</th><th>PID</th><th>Uptime</th>
<th>Restarts</th><th>Depends on</th><th>Ready when</th><th>Actions</th></tr></thead><tbody>{rows}</tbody></table>
<h3>Groups</h3><table id="groups"><thead><tr><th>Group</th><th>Members</th><th>Actions</th></tr></thead>
<tbody>{group_rows}</tbody></table></section>
<section id="traffic"><h2>Traffic</h2><p id="charts-status">Waiting for metrics…</p>
<div class="charts">
<figure><figcaption>Requests / s</figcaption><svg id="chart-rps" viewBox="0 0 320 140"></svg></figure>
<figure><figcaption>Latency p99 (ms)</figcaption><svg id="chart-p99" viewBox="0 0 320 140"></svg></figure>
<figure><figcaption>5xx / s</figcaption><svg id="chart-errors" viewBox="0 0 320 140"></svg></figure>
</div><div id="legend" class="legend"></div>
<h3>Per app</h3><table id="apps"><thead><tr><th>Program</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th>
<th>5xx/s</th></tr></thead><tbody></tbody></table>
<h3>Upstreams</h3><table id="upstreams"><thead><tr><th>Upstream</th><th>Server</th><th>State</th><th>req/s</th>
<th>Failures</th><th>Active</th></tr></thead><tbody></tbody></table>
<h3>Workers</h3><table id="workers"><thead><tr><th>Program</th><th>PID</th><th>Requests</th><th>req/s</th><th>Busy</th>
<th>RSS</th><th>Uptime</th></tr></thead><tbody></tbody></table></section>
<section id="deploys"><h2>Deploys</h2>{deploys}</section>"""
    return _layout(title, body, csrf, "overview", logout=logout)


def _history(history: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td>{escape(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["started"])))}</td>'
        f'<td>{escape(entry["app"])}</td><td>{entry["generation"]}{" (rollback)" if entry["rollback"] else ""}</td>'
        f'<td>{escape(entry["outcome"])}</td><td>{entry["seconds"]:g} s</td></tr>' for entry in history)
    return (f'<h3>History</h3><table id="deploy-history"><thead><tr><th>Started</th><th>App server</th>'
            f'<th>Generation</th><th>Outcome</th><th>Took</th></tr></thead><tbody>{rows}</tbody></table>')


def program_page(title: str, record: dict[str, Any], csrf: str, stream: str, needle: str,
                 matches: list[str] | None, flash: str, logout: bool) -> bytes:
    """One process: its state and settings, its actions, its log followed live, and a search in the log."""
    full = f"{record['group']}:{record['name']}"
    back = f"/program/{quote(full)}?stream={stream}"
    streams = " ".join(
        f'<a href="/program/{quote(full)}?stream={s}"{" class=current" if s == stream else ""}>{s}</a>'
        for s in ("stdout", "stderr"))
    found = ""
    if matches is not None:
        items = "".join(f"<li>{escape(line)}</li>" for line in matches)
        found = (f'<p id="match-count">{len(matches)} line(s) with “{escape(needle)}”</p>'
                 f'<ol id="matches">{items}</ol>')
    facts = [("State", _state(record)), ("Description", escape(record.get("description", ""))),
             ("PID", str(record["pid"] or "—")), ("Restarts", str(record["restarts"])),
             ("Depends on", escape(", ".join(record.get("depends_on", ())) or "—")),
             ("Ready when", escape(record.get("ready") or "startsecs")),
             ("Log files", escape(f"{record['stdout_logfile'] or '—'} / {record['stderr_logfile'] or '—'}"))]
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    body = f"""{_flash(flash)}<section><h2>{escape(full)}</h2>
<table class="facts" data-process="{escape(full)}">{rows}</table>
<p>{_action_form(csrf, full, ("start", "stop", "restart", "clear"), back)}</p></section>
<section><h2>Log <span class="streams">{streams}</span></h2>
<form method="get" action="/program/{quote(full)}" class="search"><input type="hidden" name="stream"
 value="{stream}"><input name="q" id="search" value="{escape(needle)}" placeholder="find in the log"
 maxlength="200"><button>Search</button></form>{found}
<p><label><input type="checkbox" id="follow" checked> follow</label></p>
<pre id="log" class="log"></pre></section>"""
    data = f' data-process="{escape(full)}" data-stream="{stream}"'
    return _layout(title, body, csrf, "program", data, logout=logout)
