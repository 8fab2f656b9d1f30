#!/usr/bin/env bash
# bench/wsgi.sh — issue 10's WSGI benchmark: one Flask app (tests/wsgi/apps/flask_app.py)
# on spindle-wsgi (default pool), gunicorn gthread 1x4, waitress 4 threads, granian WSGI
# (1 worker, 4 blocking threads) and eventlet's wsgi.server (monkey-patched); the hello
# route at wrk -t1 -c50 and a blocking route (time.sleep(0.02)) at wrk -t1 -c200.
#
# Owns: installing wrk (apt) and a bench venv in target/wsgi-bench-venv with pinned
# Flask and peers; building spindle-wsgi into it with `pip install ./python` when python/
# exists (or using SPINDLE_WSGI=path); running bench/wsgi_bench.py, which writes
# bench/results/<date>-wsgi.md and prints the table.
# Stops: each server is started on 127.0.0.1 port 0, measured, and stopped (SIGTERM to its
# PID, then SIGKILL of its tree after 10 s) before the next starts; every wrk run is
# bounded by -d and `timeout`. About 30 s per server with the default 10 s runs.
#
# Usage: [SPINDLE_WSGI=path] [WSGI_BENCH_NOTE=text] bench/wsgi.sh [--duration S] [--rounds N]
#          [--only NAME...]   (--rounds 3: servers alternate, medians reported)
#   SPINDLE_WSGI     measure this spindle-wsgi command instead of building ./python
#   WSGI_BENCH_NOTE  a line for the results about the spindle-wsgi measured
#   WSGI_BENCH_PYTHON  the interpreter every server runs on; default the distribution's
#                    /usr/bin/python3 (built with PGO and LTO, as deployments run it;
#                    a pyenv build without them ran Flask 25% slower here), else python3
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV=target/wsgi-bench-venv
PINS=(flask==3.1.3 gunicorn==27.0.1 waitress==3.0.2 granian==2.8.7 eventlet==0.41.3)

if ! command -v wrk >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=180 update -qq
  apt-get -o DPkg::Lock::Timeout=180 install -y -qq wrk >/dev/null
fi
PY=${WSGI_BENCH_PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
fi
PY_ID="$("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
# The venv is remade when the interpreter changes.
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.interpreter" 2>/dev/null)" != "$PY_ID" ]; then
  rm -rf "$VENV"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian's own python3 keeps venv (ensurepip) in a separate package.
    rm -rf "$VENV"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=180 update -qq
    apt-get -o DPkg::Lock::Timeout=180 install -y -qq python3-venv >/dev/null
    "$PY" -m venv "$VENV"
  fi
  echo "$PY_ID" >"$VENV/.interpreter"
fi
PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
"${PIP[@]}" install "${PINS[@]}"

SPINDLE=${SPINDLE_WSGI:-}
NOTE=${WSGI_BENCH_NOTE:-}
CMD="bench/wsgi.sh${*:+ $*}"
if [ -n "$SPINDLE" ]; then
  CMD="SPINDLE_WSGI=${SPINDLE#"$ROOT"/} $CMD"
else
  if [ -f python/pyproject.toml ]; then
    echo "[wsgi-bench] pip install ./python (release build)" >&2
    if "${PIP[@]}" install --force-reinstall --no-deps ./python; then
      SPINDLE="$ROOT/$VENV/bin/spindle-wsgi"
    else
      NOTE="pip install ./python failed in this run; not measured."
    fi
  else
    NOTE="python/ does not exist in this tree yet (the bridge is being built); not measured."
  fi
fi

OUT="bench/results/$(date -u +%F)-wsgi.md"
# A second run the same day does not overwrite the first (results are committed).
n=2
while [ -e "$OUT" ]; do OUT="bench/results/$(date -u +%F)-wsgi-run$n.md"; n=$((n + 1)); done
exec "$VENV/bin/python" bench/wsgi_bench.py --venv "$ROOT/$VENV" ${SPINDLE:+--spindle "$SPINDLE"} \
  --spindle-note "$NOTE" --out "$OUT" --command "$CMD" "$@"
