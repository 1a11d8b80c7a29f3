#!/usr/bin/env bash
# The benchmark in one command: `bash bench/run.sh [--quick]`. Installs wrk and a private venv with the
# peers, then runs bench/run.py, which writes docs/benchmarks.md, docs/img/benchmarks.png and
# bench/results/latest.json. Every server binds 127.0.0.1 only.
set -euo pipefail

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$bench_dir/.." && pwd)"
venv="$bench_dir/.venv"
python="${PYTHON:-python3}"

if ! command -v wrk >/dev/null 2>&1; then
    echo "+ apt-get install -y wrk"
    # The package lists may be missing or stale on a fresh machine: refresh them only if the install fails.
    if ! apt-get install -y -q wrk >/dev/null; then
        apt-get update -q >/dev/null
        apt-get install -y -q wrk >/dev/null
    fi
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "+ $python -m venv $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)

echo "+ pip install -e '$repo_dir[gevent,tornado,bench]' gunicorn gevent waitress granian flask matplotlib"
"${pip[@]}" -e "$repo_dir[gevent,tornado,bench]" gunicorn gevent waitress granian flask matplotlib

# uWSGI has no wheels: it compiles with gcc against this Python. A failed build costs one peer, not the run.
if [ ! -x "$venv/bin/uwsgi" ]; then
    echo "+ pip install uwsgi (builds from source)"
    if ! "${pip[@]}" uwsgi >"$bench_dir/.venv/uwsgi-build.log" 2>&1; then
        echo "uwsgi did not build (see bench/.venv/uwsgi-build.log); running without it" >&2
    fi
fi

exec "$venv/bin/python" "$bench_dir/run.py" "$@"
