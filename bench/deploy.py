"""What zero-downtime deploys cost a steady load: `wsgistack up` serving a Flask hello from a release folder,
wrk sending GET and POST in turn through its proxy, first with nothing happening, then while `wsgistack
deploy --chdir rN` runs N = 1..20 times in a row, each release answering differently.

Per round (a fresh stack each): a check that the first release answers, 1 s of warm-up, the quiet phase
(--seconds of load), then the deploy phase: the same load from just before the first deploy until the last
one returns (its length is whatever 20 deploys take, bounded by --max-deploy-seconds). After each deploy
returns, one GET on a fresh connection must give that release's answer. Reported per phase: req/s, p99,
and the failed requests (non-2xx and non-200 answers, answers that are not the app's, socket errors); the
figure is req/s during the deploys ÷ req/s without, per round, and its median over the rounds.

The machine may be shared, and req/s drifts with others' load, so each phase also counts CPU seconds: the
stack's (every process of `wsgistack up`'s tree, exited generations included), wrk's and the deploy
clients'. Per request, and per deploy beyond the requests, that drifts much less.

Run: `python bench/deploy.py [--rounds 3] [--seconds 30]` with a Python that has wsgistack and Flask
(bench/run.sh's venv). Writes bench/results/deploy.json and the up stack's output in
bench/results/logs/deploy/.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import machine
from load import parse_wrk
from procs import NotReady, StartFailed, TreeProcess, process_tree
from servers import BENCH_DIR, BIN_DIR, WORKERS, Server

log = logging.getLogger("bench.deploy")

RESULTS = BENCH_DIR / "results" / "deploy.json"
LOG_DIR = BENCH_DIR / "results" / "logs" / "deploy"
WARMUP_SECONDS = 1.0
DEPLOY_TIMEOUT = 90.0  # one `wsgistack deploy` (its own readiness timeout is 60 s)
WRK_TIMEOUT = "10s"  # a request slower than this counts as a socket error (timeout)
GOAL = 0.9

RELEASE_APP = '''from flask import Flask, request

app = Flask(__name__)


@app.route("/", methods=["GET", "POST"])
def hello():
    # the release's name and the length of the body read: GET / answers "release N 0"
    return "release {number} " + str(len(request.get_data()))
'''

# GET and POST (a 100-byte body) in turn on every connection. Every answer is looked at: a status other than
# 200 or a body that is not a release's answer counts as failed (wrk's own count misses 3xx).
LOAD_SCRIPT = '''local turn, get, post = 0, nil, nil
bad = 0
init = function(args)
  -- built here, once wrk has set the Host header from the URL
  get = wrk.format("GET", "/")
  post = wrk.format("POST", "/", {["Content-Type"] = "application/octet-stream"}, string.rep("x", 100))
end
request = function()
  turn = turn + 1
  if turn % 2 == 0 then return post end
  return get
end
sample = ""
response = function(status, headers, body)
  if status ~= 200 or string.sub(body, 1, 8) ~= "release " then
    bad = bad + 1
    if sample == "" then sample = status .. " " .. string.sub(body or "", 1, 120) end
  end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("answers not 200 or not the app's: %d\\n", total))
  for _, thread in ipairs(threads) do
    local first = thread:get("sample")
    if first ~= "" then io.write("first of them: " .. first:gsub("\\n", " ") .. "\\n") end
  end
end
'''


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python bench/deploy.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3,
                        help="Fresh stacks, each measured both ways (default 3).")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="Length of the quiet phase (default 30, about what 20 deploys take).")
    parser.add_argument("--deploys", type=int, default=20,
                        help="Deploys in a row in the deploy phase (default 20).")
    parser.add_argument("--connections", type=int, default=32, help="wrk's connections (default 32).")
    parser.add_argument("--watch", type=float, default=None,
                        help="`wsgistack deploy --watch` (default: the command's own, 3 s).")
    parser.add_argument("--preload", action="store_true",
                        help="[serve] preload = true: each generation imports the app once, before forking.")
    parser.add_argument("--max-deploy-seconds", type=float, default=150.0,
                        help="The deploy phase stops deploying after this long (default 150).")
    args = parser.parse_args(argv)
    if not (1 <= args.rounds <= 10 and 1 <= args.seconds <= 120 and 1 <= args.deploys <= 50
            and 1 <= args.connections <= 256 and 10 <= args.max_deploy_seconds <= 600):
        parser.error("--rounds 1..10, --seconds 1..120, --deploys 1..50, --connections 1..256, "
                     "--max-deploy-seconds 10..600")
    return args


def write_stack(folder: Path, port: int, releases: int, preload: bool = False) -> Path:
    """Release folders r0..rN (release N answers "release N ...") and the wsgistack.toml serving r0."""
    for number in range(releases + 1):
        release = folder / f"r{number}"
        release.mkdir()
        (release / "hello.py").write_text(RELEASE_APP.replace("{number}", str(number)))
    config = folder / "wsgistack.toml"
    # as `wsgistack up (sync)` in the proxy bench: sync workers, and the proxy with nginx's worker count
    config.write_text(f"""[serve]
app = "hello:app"
chdir = "r0"
worker_class = "sync"
workers = {WORKERS}
log_level = "warning"
preload = {str(preload).lower()}

[proxy]
listen = ["127.0.0.1:{port}"]
workers = {WORKERS}
log_level = "warning"
access_log = "access.log"

[proxy.upstreams.app]
keepalive = 64
""")
    return config


def get(port: int) -> tuple[int | None, str]:
    """One GET / on a fresh connection: (status, body); (None, the error) if it failed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30.0)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return None, repr(exc)
    finally:
        connection.close()


def wrk_argv(port: int, connections: int, seconds: float, script: Path) -> list[str]:
    return ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", WRK_TIMEOUT, "--latency",
            "-s", str(script), f"http://127.0.0.1:{port}/"]


def phase_figures(text: str, seconds: float) -> dict:
    """wrk's figures, the script's count of wrong answers, the failed requests in all, and the machine's load
    average as the phase ended (the machine may be shared: a phase under others' load is slower)."""
    figures = parse_wrk(text).as_dict()
    figures["load_average_1min"] = round(os.getloadavg()[0], 2)
    line = [x for x in text.splitlines() if x.startswith("answers not 200 or not the app's:")]
    figures["bad_answers"] = int(line[0].rsplit(":", 1)[1]) if line else None
    first = [x for x in text.splitlines() if x.startswith("first of them: ")]
    if first:
        figures["first_bad_answer"] = first[0].removeprefix("first of them: ")[:200]
    figures["failed"] = max(figures["non_2xx"], figures["bad_answers"] or 0) + figures["socket_errors"]
    figures["seconds"] = round(seconds, 2)
    return figures


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by a process tree: each live process's own and its reaped children's (an
    exited generation is counted in its parent's, the supervisor's)."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of this harness's reaped children (wrk, the deploy clients)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def add_cpu(figures: dict, stack_cpu: float, wrk_cpu: float, client_cpu: float = 0.0) -> dict:
    """CPU seconds of the stack, of wrk and of the deploy clients over the phase, and all of it per request:
    the machine is shared, so req/s drifts with others' load; CPU per request does much less."""
    figures.update(stack_cpu_s=round(stack_cpu, 2), wrk_cpu_s=round(wrk_cpu, 2),
                   client_cpu_s=round(client_cpu, 2))
    requests = figures["requests"]
    figures["cpu_ms_per_request"] = (stack_cpu + wrk_cpu + client_cpu) * 1000 / requests if requests else None
    return figures


def quiet_phase(port: int, root: int, args: argparse.Namespace, script: Path) -> dict:
    started, stack_cpu, wrk_cpu = time.monotonic(), tree_cpu(root), children_cpu()
    done = subprocess.run(wrk_argv(port, args.connections, args.seconds, script), capture_output=True,
                          text=True, timeout=args.seconds + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    figures = phase_figures(done.stdout, time.monotonic() - started)
    return add_cpu(figures, tree_cpu(root) - stack_cpu, children_cpu() - wrk_cpu)


def deploy_phase(port: int, root: int, folder: Path, args: argparse.Namespace, script: Path) -> dict:
    """The load from just before the first deploy until the last one returned (wrk stopped by SIGINT, which
    makes it print its report for the time it ran)."""
    stack_cpu, children = tree_cpu(root), children_cpu()
    wrk = subprocess.Popen(wrk_argv(port, args.connections, args.max_deploy_seconds + 10, script),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deploys: list[dict] = []
    try:
        started = time.monotonic()
        time.sleep(0.2)  # wrk's connections open before the first deploy starts
        for number in range(1, args.deploys + 1):
            if time.monotonic() - started > args.max_deploy_seconds:
                log.warning("  deploy phase over %.0f s: %d deploys left undone", args.max_deploy_seconds,
                            args.deploys - number + 1)
                break
            deploys.append(deploy(folder, port, number, args.watch))
        elapsed = time.monotonic() - started
        stack_cpu = tree_cpu(root) - stack_cpu
        client_cpu = children_cpu() - children  # wrk is not reaped yet: the deploy clients alone
        wrk.send_signal(signal.SIGINT)
        out, err = wrk.communicate(timeout=30)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed ({wrk.returncode}): {err.strip() or out.strip()}")
    wrk_cpu = children_cpu() - children - client_cpu
    figures = add_cpu(phase_figures(out, elapsed), stack_cpu, wrk_cpu, client_cpu)
    figures["deploys"] = deploys
    return figures


def deploy(folder: Path, port: int, number: int, watch: float) -> dict:
    """`wsgistack deploy --chdir rN --watch W` next to the wsgistack.toml, then a fresh GET."""
    argv = [str(BIN_DIR / "wsgistack"), "deploy", "--chdir", f"r{number}",
            *(["--watch", f"{watch:g}"] if watch is not None else [])]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT,
                              check=False)
        code, said = done.returncode, (done.stdout.strip() + " " + done.stderr.strip()).strip()
    except subprocess.TimeoutExpired:
        code, said = None, f"no answer in {DEPLOY_TIMEOUT:.0f} s"
    seconds = time.monotonic() - started
    status, body = get(port)
    expected = f"release {number} 0"
    record = {"release": number, "exit": code, "seconds": round(seconds, 2), "said": said[:300],
              "answer": body[:80], "answer_ok": status == 200 and body == expected}
    if code != 0 or not record["answer_ok"]:
        log.warning("  deploy r%d: exit %s in %.1f s (%s); GET / then: %s %r, expected %r", number, code,
                    seconds, said[:200], status, body[:80], expected)
    return record


def keep_failures(access_log: Path, kept: Path) -> int:
    """Copy the proxy's access log lines of answers other than 200 (the evidence of a failed request: its
    time, method and status) to `kept`; how many there were."""
    count = 0
    try:
        with open(access_log, errors="replace") as lines, open(kept, "w") as out:
            for line in lines:
                match = re.search(r'" (\d{3}) ', line)
                if match and match.group(1) != "200":
                    count += 1
                    out.write(line)
    except OSError as exc:
        log.warning("  cannot read %s: %s", access_log, exc)
    if not count:
        kept.unlink(missing_ok=True)
    return count


def run_round(index: int, args: argparse.Namespace, work: Path, script: Path) -> dict:
    folder = work / f"round{index}"
    folder.mkdir()
    record: dict = {"round": index + 1}

    def build(app: str, port: int, threads: int) -> list[str]:
        config = write_stack(folder, port, args.deploys, args.preload)
        return [str(BIN_DIR / "wsgistack"), "up", "-c", str(config)]

    stack = TreeProcess(Server("wsgistack up", build), "", 0, LOG_DIR / f"round{index + 1}.log")
    with stack:
        try:
            stack.wait_ready()
        except NotReady as exc:
            record["error"] = str(exc)
            return record
        status, body = get(stack.port)
        if (status, body) != (200, "release 0 0"):
            record["error"] = f"the first release answered {status} {body[:80]!r}"
            return record
        subprocess.run(wrk_argv(stack.port, args.connections, WARMUP_SECONDS, script), capture_output=True,
                       timeout=30, check=False)
        record["quiet"] = quiet_phase(stack.port, stack.proc.pid, args, script)
        log.info("  round %d quiet:   %7.0f req/s  p99 %7.2f ms  failed %d  (%d requests in %.1f s; load "
                 "average %.1f)", index + 1, record["quiet"]["rps"], record["quiet"]["p99_ms"] or 0,
                 record["quiet"]["failed"], record["quiet"]["requests"], record["quiet"]["seconds"],
                 record["quiet"]["load_average_1min"])
        record["deploying"] = deploy_phase(stack.port, stack.proc.pid, folder, args, script)
        if stack.proc.poll() is not None:
            record["error"] = f"wsgistack up exited ({stack.proc.returncode}) during the round"
    record["access_log_not_200"] = keep_failures(folder / "access.log",
                                                 LOG_DIR / f"round{index + 1}-not-200.log")
    phase = record["deploying"]
    deploys = phase["deploys"]
    record["deploys_ok"] = sum(1 for d in deploys if d["exit"] == 0)
    record["answers_ok"] = sum(1 for d in deploys if d["answer_ok"])
    record["ratio"] = phase["rps"] / record["quiet"]["rps"] if record["quiet"]["rps"] else None
    log.info("  round %d deploys: %7.0f req/s  p99 %7.2f ms  failed %d  (%d requests in %.1f s; %d/%d "
             "deploys exited 0, %d/%d fresh GETs gave the new release; deploys took %.2f s median; load "
             "average %.1f)", index + 1, phase["rps"], phase["p99_ms"] or 0, phase["failed"],
             phase["requests"], phase["seconds"], record["deploys_ok"], args.deploys, record["answers_ok"],
             args.deploys, statistics.median(d["seconds"] for d in deploys) if deploys else 0,
             phase["load_average_1min"])
    quiet_cpu, deploying_cpu = record["quiet"]["cpu_ms_per_request"], phase["cpu_ms_per_request"]
    record["cpu_ratio"] = quiet_cpu / deploying_cpu if quiet_cpu and deploying_cpu else None
    # what the deploys cost beyond the requests: the phase's CPU less its requests at the quiet phase's price
    spent = phase["stack_cpu_s"] + phase["wrk_cpu_s"] + phase["client_cpu_s"]
    record["cpu_s_per_deploy"] = ((spent - phase["requests"] * (quiet_cpu or 0) / 1000) / len(deploys)
                                  if deploys else None)
    log.info("  round %d: %.3f× the quiet req/s during the deploys; CPU per request %.3f ms quiet, %.3f ms "
             "deploying (stack %.1f s, wrk %.1f s, deploy clients %.1f s): %.3f× as many requests per CPU "
             "second; %.2f CPU s per deploy beyond the requests", index + 1, record["ratio"] or 0,
             quiet_cpu or 0, deploying_cpu or 0, phase["stack_cpu_s"], phase["wrk_cpu_s"],
             phase["client_cpu_s"], record["cpu_ratio"] or 0, record["cpu_s_per_deploy"] or 0)
    return record


def summarize(rounds: list[dict], args: argparse.Namespace) -> dict:
    measured = [r for r in rounds if "ratio" in r and not r.get("error")]
    if not measured:
        return {"verdict": "n/a: no round measured"}

    def median(phase: str, key: str) -> float:
        return statistics.median(r[phase][key] for r in measured)

    summary = {
        "rounds_measured": len(measured),
        "quiet_rps_median": median("quiet", "rps"),
        "deploying_rps_median": median("deploying", "rps"),
        "ratio_median": statistics.median(r["ratio"] for r in measured),
        "ratios": [round(r["ratio"], 3) for r in measured],
        "cpu_ms_per_request_quiet_median": median("quiet", "cpu_ms_per_request"),
        "cpu_ms_per_request_deploying_median": median("deploying", "cpu_ms_per_request"),
        "cpu_ratio_median": statistics.median(r["cpu_ratio"] for r in measured),
        "cpu_ratios": [round(r["cpu_ratio"], 3) for r in measured],
        "cpu_s_per_deploy_median": statistics.median(r["cpu_s_per_deploy"] for r in measured),
        "failed_quiet": sum(r["quiet"]["failed"] for r in measured),
        "failed_deploying": sum(r["deploying"]["failed"] for r in measured),
        "deploys": sum(len(r["deploying"]["deploys"]) for r in measured),
        "deploys_ok": sum(r["deploys_ok"] for r in measured),
        "answers_ok": sum(r["answers_ok"] for r in measured),
        "deploy_seconds_median": statistics.median(
            d["seconds"] for r in measured for d in r["deploying"]["deploys"]),
        "deploy_phase_seconds_median": median("deploying", "seconds"),
    }
    wanted = args.deploys * len(measured)
    good = (summary["ratio_median"] >= GOAL and summary["failed_quiet"] == 0
            and summary["failed_deploying"] == 0 and summary["deploys_ok"] == wanted
            and summary["answers_ok"] == wanted)
    summary["verdict"] = "PASS" if good else "FAIL"
    return summary


def versions() -> dict[str, str]:
    found = {}
    for name in ("wsgistack", "Flask", "Werkzeug", "httptools", "uvloop"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # SIGTERM must unwind like Ctrl-C does, so the stack is stopped by its context manager and atexit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not installed (bash bench/run.sh installs it)")
    started = time.monotonic()
    meta = {"command": shlex.join(["python", "bench/deploy.py", *sys.argv[1:]]), "settings": vars(args),
            "machine": machine.describe(), "versions": versions(),
            "goal": f"ratio ≥ {GOAL}, 0 failed requests"}
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old_log in LOG_DIR.glob("*.log"):
        old_log.unlink()
    rounds: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="wsgistack-deploy-bench-"))
    try:
        script = work / "getpost.lua"
        script.write_text(LOAD_SCRIPT)
        for index in range(args.rounds):
            log.info("round %d/%d", index + 1, args.rounds)
            try:
                rounds.append(run_round(index, args, work, script))
            except (StartFailed, RuntimeError) as exc:
                log.warning("  round %d failed: %s", index + 1, exc)
                rounds.append({"round": index + 1, "error": str(exc)})
            if rounds[-1].get("error"):
                log.warning("  round %d: %s", index + 1, rounds[-1]["error"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta["elapsed_minutes"] = (time.monotonic() - started) / 60
    summary = summarize(rounds, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "summary": summary, "rounds": rounds}, indent=1) + "\n")
    if "ratio_median" in summary:
        log.info("%s  req/s during %d deploys ÷ without: %.3f (median of %s; goal ≥ %.1f); median req/s "
                 "%.0f without, %.0f during", summary["verdict"], args.deploys, summary["ratio_median"],
                 ", ".join(f"{x:.3f}" for x in summary["ratios"]), GOAL, summary["quiet_rps_median"],
                 summary["deploying_rps_median"])
        log.info("        failed requests: %d without, %d during the deploys; deploys exited 0: %d/%d; "
                 "fresh GET gave the new release: %d/%d; one deploy took %.2f s (median), a phase of %d "
                 "%.1f s (median)", summary["failed_quiet"], summary["failed_deploying"],
                 summary["deploys_ok"], summary["deploys"], summary["answers_ok"], summary["deploys"],
                 summary["deploy_seconds_median"], args.deploys, summary["deploy_phase_seconds_median"])
        log.info("        CPU per request (stack, wrk and deploy clients): %.3f ms without, %.3f ms during "
                 "the deploys (medians): %.3f× as many requests per CPU second (median of %s); one deploy "
                 "costs %.2f CPU s beyond the requests (median)",
                 summary["cpu_ms_per_request_quiet_median"], summary["cpu_ms_per_request_deploying_median"],
                 summary["cpu_ratio_median"], ", ".join(f"{x:.3f}" for x in summary["cpu_ratios"]),
                 summary["cpu_s_per_deploy_median"])
    else:
        log.info("%s", summary["verdict"])
    log.info("done in %.1f min: %s", meta["elapsed_minutes"], RESULTS)


if __name__ == "__main__":
    main()
