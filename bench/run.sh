#!/usr/bin/env bash
# The benchmark in one command: `bash bench/run.sh [--quick]`. Installs wrk, nginx and a private venv with
# the peers, then runs bench/run.py (the servers: docs/benchmarks.md, docs/img/benchmarks.png,
# bench/results/latest.json) and bench/proxy.py (wsgistack proxy against nginx: its section of
# docs/benchmarks.md, bench/results/proxy.json). `--proxy` runs only the latter. `--gateway` runs only
# bench/gateway.py (nginx -> wsgistack serve --protocol uwsgi|fastcgi against uWSGI and flup:
# bench/results/gateway.json). Every server binds 127.0.0.1 or a unix socket only.
set -euo pipefail

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$bench_dir/.." && pwd)"
venv="$bench_dir/.venv"
python="${PYTHON:-python3}"

# --proxy: only the proxy benchmark. The options both benchmarks know go to bench/proxy.py as well.
# --gateway: only the gateway benchmark, which takes the same options as the proxy benchmark.
proxy_only=0
gateway_only=0
run_args=()
proxy_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --proxy) proxy_only=1 ;;
        --gateway) gateway_only=1 ;;
        --quick | --report-only | -h | --help) run_args+=("$1"); proxy_args+=("$1") ;;
        --repeats | --duration | --sessions) run_args+=("$1" "${2:-}"); proxy_args+=("$1" "${2:-}"); shift ;;
        --repeats=* | --duration=* | --sessions=*) run_args+=("$1"); proxy_args+=("$1") ;;
        *) run_args+=("$1") ;;
    esac
    shift
done
if [ "$proxy_only" = 1 ] && [ "$gateway_only" = 1 ]; then
    echo "bench: --proxy and --gateway each run one benchmark: give one of them" >&2
    exit 2
fi
if { [ "$proxy_only" = 1 ] || [ "$gateway_only" = 1 ]; } && [ ${#run_args[@]} -ne ${#proxy_args[@]} ]; then
    echo "bench: --proxy and --gateway take only --quick, --repeats N, --duration SECONDS, --sessions APPS and --report-only" >&2
    exit 2
fi

install_package() {  # install_package COMMAND PACKAGE
    if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
        echo "+ apt-get install -y $2"
        # The package lists may be missing or stale on a fresh machine: refresh them only if the install fails.
        if ! apt-get install -y -q "$2" >/dev/null; then
            apt-get update -q >/dev/null
            apt-get install -y -q "$2" >/dev/null
        fi
    fi
}
install_package wrk wrk
install_package nginx nginx

if [ ! -x "$venv/bin/python" ]; then
    echo "+ $python -m venv $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)

echo "+ pip install -e '$repo_dir[gevent,tornado,bench]' gunicorn gevent waitress granian flask matplotlib"
# The bench extra holds uWSGI, which compiles from source: if that fails, everything else is installed without
# it (flup, the FastCGI peer, named here since the extra is then left out) and the block below says why.
if ! "${pip[@]}" -e "$repo_dir[gevent,tornado,bench]" gunicorn gevent waitress granian flask matplotlib; then
    echo "+ pip install without the bench extra's uWSGI"
    "${pip[@]}" -e "$repo_dir[gevent,tornado]" gunicorn gevent waitress granian flask matplotlib flup
fi

# uWSGI has no wheels: it compiles with gcc against this Python. A failed build costs one peer, not the run.
if [ ! -x "$venv/bin/uwsgi" ]; then
    echo "+ pip install uwsgi (builds from source)"
    if ! "${pip[@]}" uwsgi >"$bench_dir/.venv/uwsgi-build.log" 2>&1; then
        echo "uwsgi did not build (see bench/.venv/uwsgi-build.log); running without it" >&2
    fi
fi

if [ "$gateway_only" = 1 ]; then
    exec "$venv/bin/python" "$bench_dir/gateway.py" ${proxy_args[@]+"${proxy_args[@]}"}
fi
if [ "$proxy_only" = 0 ]; then
    "$venv/bin/python" "$bench_dir/run.py" ${run_args[@]+"${run_args[@]}"}
fi
exec "$venv/bin/python" "$bench_dir/proxy.py" ${proxy_args[@]+"${proxy_args[@]}"}
