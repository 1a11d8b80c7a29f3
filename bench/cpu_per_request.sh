#!/usr/bin/env bash
# CPU time per proxied request, of the proxy and of the app server's worker, for one source tree:
#   bash bench/cpu_per_request.sh [TREE] [SECONDS]     (TREE: a checkout of wsgistack; default this one)
# `wsgistack proxy` (1 worker, combined access log) in front of `serve -k event --threads 1` on a unix
# socket, the plain hello app, wrk -c64; CPU ticks from /proc over the run, divided by the requests logged.
# Steadier than req/s on a shared VM: run it for two trees, interleaved, several times.
set -euo pipefail
bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tree="$(cd "${1:-$bench_dir/..}" && pwd)"
seconds="${2:-4}"
python="${PYTHON:-$bench_dir/../.venv/bin/python}"
work="$(mktemp -d)"
port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$bench_dir"
PYTHONPATH="$tree" "$python" -m wsgistack serve apps:plain -k event -w 1 --threads 1 -b "unix:$work/app.sock" \
    --log-level warning >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -S "$work/app.sock" ] && break; sleep 0.05; done
printf '[proxy]\nlisten = ["127.0.0.1:%s"]\nworkers = 1\naccess_log = "%s/access.log"\nlog_level = "warning"\n[proxy.upstreams.app]\nservers = ["unix:%s/app.sock"]\nkeepalive = 64\n[[proxy.routes]]\npath = "/"\nupstream = "app"\n' \
    "$port" "$work" "$work" >"$work/wsgistack.toml"
PYTHONPATH="$tree" "$python" -m wsgistack proxy -c "$work/wsgistack.toml" >"$work/proxy.log" 2>&1 &
proxy=$!
pids+=($proxy)
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
worker=$(pgrep -P "${pids[0]}" | head -1)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null   # warm-up
p0=$(ticks "$proxy"); w0=$(ticks "$worker"); n0=$(wc -l <"$work/access.log")
wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:$port/" >"$work/wrk.txt"
sleep 0.3
p1=$(ticks "$proxy"); w1=$(ticks "$worker"); n1=$(wc -l <"$work/access.log")
hz=$(getconf CLK_TCK)
requests=$((n1 - n0))
echo "$tree: $(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt") req/s;" \
     "proxy $(( (p1 - p0) * 1000000000 / hz / requests )) ns/request;" \
     "serve worker $(( (w1 - w0) * 1000000000 / hz / requests )) ns/request"
