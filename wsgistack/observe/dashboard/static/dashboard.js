// wsgistack dashboard: refreshes what the server-rendered page shows. Every action is a plain form post.
"use strict";

const POINTS = 60; // samples kept per chart line (two minutes at one every two seconds)
const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];

function text(parent, selector, value) {
  const node = parent.querySelector(selector);
  if (node && node.textContent !== String(value)) node.textContent = String(value);
}

function uptime(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h + ":" + String(m).padStart(2, "0") + ":" + String(r).padStart(2, "0");
}

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin", cache: "no-store"});
  if (response.status === 401) { window.location = "/login"; throw new Error("logged out"); }
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

function every(ms, job) {
  const run = () => job().catch(() => {}).finally(() => setTimeout(run, ms));
  run();
}

// -- the programs table ---------------------------------------------------------------------------------
const STATE_CLASSES = {RUNNING: "ok", STARTING: "busy", STOPPING: "busy", BACKOFF: "bad", FATAL: "bad",
                       EXITED: "off", STOPPED: "off"};

async function refreshStatus() {
  const answer = await getJSON("/api/status");
  for (const record of answer.processes) {
    const row = document.querySelector(`[data-process="${CSS.escape(record.group + ":" + record.name)}"]`);
    if (!row) continue;
    const state = row.querySelector('[data-field="statename"]');
    if (state) { state.textContent = record.statename; state.className = "state " + (STATE_CLASSES[record.statename] || "bad"); }
    text(row, '[data-field="description"]', record.description);
    text(row, '[data-field="pid"]', record.pid || "—");
    text(row, '[data-field="uptime"]', record.uptime ? uptime(record.uptime) : "—");
    text(row, '[data-field="restarts"]', record.restarts);
  }
}

// -- charts: one SVG polyline per program ---------------------------------------------------------------
const history = {rps: {}, p99: {}, errors: {}};
const colours = {};

function colourOf(name) {
  if (!(name in colours)) colours[name] = COLOURS[Object.keys(colours).length % COLOURS.length];
  return colours[name];
}

function push(series, name, value) {
  const line = series[name] || (series[name] = []);
  line.push(value == null ? null : value);
  while (line.length > POINTS) line.shift();
}

function svg(tag, attributes) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function draw(id, series) {
  const chart = document.getElementById(id);
  if (!chart) return;
  const width = 320, height = 140, left = 36, bottom = 14;
  let top = 0;
  for (const line of Object.values(series)) for (const v of line) if (v != null && v > top) top = v;
  top = top > 0 ? top * 1.1 : 1;
  chart.replaceChildren();
  chart.appendChild(svg("line", {x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis"}));
  for (const f of [0, 0.5, 1]) {
    const y = (height - bottom) * (1 - f) + 2 * f;
    const label = svg("text", {x: 2, y: y + 4, class: "tick"});
    label.textContent = (top * f).toPrecision(2);
    chart.appendChild(label);
  }
  for (const [name, line] of Object.entries(series)) {
    const step = (width - left) / (POINTS - 1);
    const offset = POINTS - line.length;
    const points = line.map((v, i) => v == null ? null :
      `${(left + (offset + i) * step).toFixed(1)},${((height - bottom) * (1 - v / top) + 2 * (v / top)).toFixed(1)}`)
      .filter((p) => p != null);
    if (points.length) chart.appendChild(svg("polyline", {points: points.join(" "), stroke: colourOf(name),
                                                          class: "series", "data-series": name}));
  }
}

function cells(values) {
  const row = document.createElement("tr");
  for (const value of values) {
    const cell = document.createElement("td");
    cell.textContent = value;
    row.appendChild(cell);
  }
  return row;
}

function fixed(value, digits) { return value == null ? "—" : Number(value).toFixed(digits); }

async function refreshCharts() {
  const answer = await getJSON("/api/metrics");
  const status = document.getElementById("charts-status");
  document.getElementById("traffic").classList.toggle("no-metrics", !answer.available);
  if (!answer.available) { status.textContent = answer.reason; return; }
  status.textContent = "Updated " + new Date(answer.at * 1000).toLocaleTimeString() +
    (Object.keys(answer.programs).length ? "" : ": no request metrics yet (app servers report them under [metrics] listen)");
  status.dataset.samples = String(Number(status.dataset.samples || 0) + 1);
  const apps = document.querySelector("#apps tbody"), legend = document.getElementById("legend");
  apps.replaceChildren(); legend.replaceChildren();
  for (const [name, app] of Object.entries(answer.programs)) {
    push(history.rps, name, app.rps); push(history.p99, name, app.p99_ms); push(history.errors, name, app.errors_per_s);
    apps.appendChild(cells([name, fixed(app.rps, 1), fixed(app.p50_ms, 1), fixed(app.p99_ms, 1), fixed(app.errors_per_s, 2)]));
    const key = document.createElement("span");
    key.textContent = name; key.style.borderColor = colourOf(name);
    legend.appendChild(key);
  }
  draw("chart-rps", history.rps); draw("chart-p99", history.p99); draw("chart-errors", history.errors);
  const upstreams = document.querySelector("#upstreams tbody");
  upstreams.replaceChildren();
  for (const u of answer.upstreams) {
    upstreams.appendChild(cells([u.upstream, u.server, u.state || "—", fixed(u.rps, 1), fixed(u.failures, 0),
                                 fixed(u.active, 0)]));
  }
  const workers = document.querySelector("#workers tbody");
  workers.replaceChildren();
  for (const w of answer.workers) {
    workers.appendChild(cells([w.program || "—", w.pid, fixed(w.requests, 0), fixed(w.rps, 1), w.busy ? "busy" : "idle",
                               w.rss_bytes == null ? "—" : (w.rss_bytes / 1048576).toFixed(1) + " MiB",
                               w.uptime == null ? "—" : uptime(w.uptime)]));
  }
}

// -- the log tail ---------------------------------------------------------------------------------------
const MAX_LOG = 200000; // characters kept on the page

function followLog() {
  const body = document.body, log = document.getElementById("log"), follow = document.getElementById("follow");
  let offset = -1;
  const url = () => `/api/tail?name=${encodeURIComponent(body.dataset.process)}&stream=${body.dataset.stream}&offset=${offset}`;
  every(1000, async () => {
    const answer = await getJSON(url());
    offset = answer.offset;
    if (!answer.data) return;
    log.textContent = (log.textContent + answer.data).slice(-MAX_LOG);
    log.dataset.offset = String(offset);
    if (follow.checked) log.scrollTop = log.scrollHeight;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "overview") {
    every(2000, refreshStatus);
    every(2000, refreshCharts);
  } else if (page === "program") {
    every(2000, refreshStatus);
    followLog();
  }
});
