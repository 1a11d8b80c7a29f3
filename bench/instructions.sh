#!/usr/bin/env bash
# Instructions per proxied request of the proxy and of the app server's worker, counted by valgrind: the
# same on a busy machine.
#   bash bench/instructions.sh [TREE]        (TREE: a checkout of wsgistack; default this one)
# `wsgistack proxy` runs under valgrind (callgrind) in front of `serve -k event` on a unix socket (under
# valgrind too, its forked worker with it);
# a client sends waves of GET / on 64 keep-alive connections, once 320 and once 1600 requests; the difference
# of the two totals over the 1280 requests between them is the cost of one request (start-up cancels out).
# Wall-clock figures on a shared VM drift by a fifth from one run to the next; this count moves by ~0.2%.
# Needs valgrind (apt-get install -y valgrind); takes about a minute.
set -uo pipefail
bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tree="$(cd "${1:-$bench_dir/..}" && pwd)"
python="${PYTHON:-$bench_dir/../.venv/bin/python}"
export PYTHONHASHSEED=0  # the same dict layouts in every run
cd "$bench_dir"  # not the checkout: `python -m` puts the current folder first on sys.path, before PYTHONPATH
count() {
    local requests=$1 work port serve proxy total
    work="$(mktemp -d)"
    port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    PYTHONPATH="$tree" valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$work/serve.%p" \
        "$python" -m wsgistack serve apps:plain -k event -w 1 --threads 1 \
        -b "unix:$work/app.sock" --log-level warning >"$work/serve.log" 2>&1 &
    serve=$!
    for _ in $(seq 1200); do [ -S "$work/app.sock" ] && break; sleep 0.1; done
    printf '[proxy]\nlisten = ["127.0.0.1:%s"]\nworkers = 1\naccess_log = "%s/access.log"\nlog_level = "warning"\n[proxy.upstreams.app]\nservers = ["unix:%s/app.sock"]\nkeepalive = 64\n[[proxy.routes]]\npath = "/"\nupstream = "app"\n' \
        "$port" "$work" "$work" >"$work/wsgistack.toml"
    PYTHONPATH="$tree" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$python" -m wsgistack proxy -c "$work/wsgistack.toml" >"$work/proxy.log" 2>&1 &
    proxy=$!
    for _ in $(seq 1200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
    "$python" - "$port" "$requests" <<'PY'
import socket, sys
port, requests = int(sys.argv[1]), int(sys.argv[2])
request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n"
clients = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(64)]
for _ in range(requests // 64):
    for client in clients:
        client.sendall(request)
    for client in clients:
        answer = b""
        while not answer.endswith(b"Hello, World!"):
            piece = client.recv(65536)
            if not piece:
                sys.exit("the proxy closed a connection")
            answer += piece
PY
    kill -TERM "$proxy"; wait "$proxy"
    total=$(awk '/Collected/ {print $4}' "$work/proxy.log")
    kill -TERM "$serve"; wait "$serve" 2>/dev/null
    # the worker is the process that did the most: the master only waits
    worker=$(cat "$work"/serve.* | awk '/^summary:/ {print $2}' | sort -n | tail -1)
    rm -rf "$work"
    echo "$total $worker"
}
read -r proxy_low worker_low < <(count 320)
read -r proxy_high worker_high < <(count 1600)
echo "$tree: instructions per proxied request: proxy $(( (proxy_high - proxy_low) / 1280 ))," \
     "serve worker $(( (worker_high - worker_low) / 1280 ))"
