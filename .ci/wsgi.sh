#!/usr/bin/env bash
# .ci/wsgi.sh — the WSGI bridge's Python suite (issue 10), run by .ci/run.
#
# Owns: a venv in target/wsgi-venv (kept between runs on the same machine: pip only
# installs what changed), the pinned test dependencies from tests/wsgi/requirements.txt
# (Flask, gunicorn, waitress, pytest), `pip install ./python` (maturin builds the
# spindle-wsgi package from this tree), and `pytest tests/wsgi` with spindle-wsgi as the
# server under test; the differential tests run the same Flask requests against gunicorn
# (gthread, 1 worker, 4 threads) in the same run.
# Stops: every server the suite starts is on 127.0.0.1 port 0 and is stopped by the
# suite (SIGTERM to the PID it started, SIGKILL to that tree after a bound); every
# socket has a timeout, and pytest-timeout bounds each test.
#
# Usage: .ci/wsgi.sh [pytest args...]    e.g. .ci/wsgi.sh -k flask -x
#   WSGI_SERVER=gunicorn|waitress .ci/wsgi.sh   runs the suite against that server
#                                               instead (no build of ./python)
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER=${WSGI_SERVER:-spindle}
if [ "$SERVER" = spindle ] && [ ! -f python/pyproject.toml ]; then
  echo "SKIP: python/ not built yet"
  exit 0
fi

VENV=target/wsgi-venv
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian's own python3 keeps venv (ensurepip) in a separate package.
    rm -rf "$VENV"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv "$VENV"
  fi
fi
PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
echo "== wsgi: pip install -r tests/wsgi/requirements.txt"
"${PIP[@]}" install -r tests/wsgi/requirements.txt
if [ "$SERVER" = spindle ]; then
  echo "== wsgi: pip install ./python (maturin build)"
  "${PIP[@]}" install --force-reinstall --no-deps ./python
  export SPINDLE_WSGI="$PWD/$VENV/bin/spindle-wsgi"
  [ -x "$SPINDLE_WSGI" ] || { echo "pip install ./python gave no spindle-wsgi command" >&2; exit 1; }
fi
# strace, for test_streaming.py's look at the syscalls of a send_file() download (the
# test is skipped without it; the /proc/PID/io test beside it needs nothing).
if ! command -v strace >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; } ||
    echo "== wsgi: cannot install strace; its test is skipped"
fi
echo "== wsgi: pytest tests/wsgi (server under test: $SERVER; differential against gunicorn)"
WSGI_SERVER=$SERVER "$VENV/bin/python" -m pytest tests/wsgi "$@"
if [ "$SERVER" = spindle ] && [ $# -eq 0 ]; then
  echo "== wsgi: python/tests/test_smoke.py against the installed spindle-wsgi"
  PATH="$PWD/$VENV/bin:$PATH" "$VENV/bin/python" python/tests/test_smoke.py
fi
