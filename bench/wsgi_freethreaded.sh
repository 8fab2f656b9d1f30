#!/usr/bin/env bash
# bench/wsgi_freethreaded.sh — spindle-wsgi on a free-threaded CPython (3.13t by
# default) against spindle-wsgi on a GIL CPython (python3.11), from scratch. Not in
# .ci/run: the CPython build takes minutes.
#
# Owns: apt build dependencies of CPython and wrk (installed only when missing);
# /tmp/cpython-build (the Debian orig tarball of CPython $FT_VERSION and its build tree);
# /opt/python3.Nt (its `--disable-gil` install; the download and build are skipped when
# /opt/python3.Nt/bin/python3.Nt exists); /opt/ft-venv (a venv on it, kept between runs);
# target/ft-gil-venv (a venv on $GIL_PYTHON); /tmp/ft-target and /tmp/ft-target-028
# (cargo target dirs) and /tmp/ft-scratch (see below). Both venvs get
# tests/wsgi/requirements.txt and spindle-wsgi; then tests/wsgi and
# python/tests/test_smoke.py run against each, and bench/wsgi_freethreaded.py measures
# both (it prints the table, and where the raw wrk output and server logs are).
# pyo3 0.29+ builds for free-threaded CPython 3.14t and later only: for 3.13t,
# spindle-wsgi is built from /tmp/ft-scratch, a copy of this tree with pyo3 pinned to
# 0.28.3 (the last to support 3.13t), for measurement only; for 3.14t, from ./python.
# Stops: every step is bounded (`timeout`); every server runs on 127.0.0.1 (port 0 in
# pytest, the ready file in the benchmark) and is stopped by the PID this run started
# (SIGTERM, SIGKILL of its tree after 10 s); every wrk run is bounded by -d and
# `timeout`. Heavy builds run under nice -n 19. About 3-4 min without the CPython
# build (add about 4 min with -j2 for it), with the default 10 s wrk runs.
#
# Usage: bench/wsgi_freethreaded.sh [--duration S] [--rounds N] [--inproc S]
#   FT_VERSION=3.13.5   CPython version to build (Debian's python3.X_<ver>.orig.tar.xz)
#   GIL_PYTHON=/usr/bin/python3.11   the GIL interpreter to compare with
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FT_VERSION=${FT_VERSION:-3.13.5}
MINOR=${FT_VERSION%.*}                       # 3.13
PREFIX=/opt/python${MINOR}t
FT_PY=$PREFIX/bin/python${MINOR}t
FT_VENV=/opt/ft-venv
GIL_PYTHON=${GIL_PYTHON:-/usr/bin/python3.11}
GIL_VENV=$ROOT/target/ft-gil-venv
BUILD=/tmp/cpython-build
NICE=(nice -n 19)
PIP_OPTS=(-q --disable-pip-version-check)
export CARGO_TARGET_DIR=/tmp/ft-target

need=()
for pkg in build-essential pkg-config libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev \
           libsqlite3-dev libreadline-dev uuid-dev wrk; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=180 update -qq
  apt-get -o DPkg::Lock::Timeout=180 install -y -qq "${need[@]}" >/dev/null
fi

# 1. CPython --disable-gil (skipped when installed).
if [ ! -x "$FT_PY" ]; then
  tarball=python${MINOR}_${FT_VERSION}.orig.tar.xz
  mkdir -p "$BUILD"
  if [ ! -s "$BUILD/$tarball" ]; then
    echo "== download $tarball"
    timeout 600 curl -fsS -o "$BUILD/$tarball" \
      "http://deb.debian.org/debian/pool/main/p/python${MINOR}/$tarball"
  fi
  rm -rf "$BUILD/Python-$FT_VERSION"
  tar -xf "$BUILD/$tarball" -C "$BUILD"
  echo "== build CPython $FT_VERSION --disable-gil into $PREFIX (logs in $BUILD)"
  (cd "$BUILD/Python-$FT_VERSION" &&
    "${NICE[@]}" ./configure --disable-gil --prefix="$PREFIX" >"$BUILD/configure.log" 2>&1 &&
    timeout 3600 "${NICE[@]}" make -j"$(nproc)" >"$BUILD/make.log" 2>&1 &&
    "${NICE[@]}" make install >"$BUILD/install.log" 2>&1)
fi

# 2. The venvs and the test requirements.
[ -x "$FT_VENV/bin/python" ] || "$FT_PY" -m venv "$FT_VENV"
[ -x "$GIL_VENV/bin/python" ] || "$GIL_PYTHON" -m venv "$GIL_VENV"
for venv in "$FT_VENV" "$GIL_VENV"; do
  timeout 900 "$venv/bin/python" -m pip "${PIP_OPTS[@]}" install -r tests/wsgi/requirements.txt
done
echo "== $FT_VENV: is the GIL off, before and after importing the test apps' libraries?"
"$FT_VENV/bin/python" -W always -c 'import sys; print("  at start:", sys._is_gil_enabled()); import flask, falcon, markupsafe; print("  after flask, falcon:", sys._is_gil_enabled())'

# 3. spindle-wsgi into both.
timeout 1800 "${NICE[@]}" "$GIL_VENV/bin/python" -m pip "${PIP_OPTS[@]}" install --force-reinstall --no-deps ./python
if [ "${MINOR#3.}" -ge 14 ]; then
  timeout 1800 "${NICE[@]}" "$FT_VENV/bin/python" -m pip "${PIP_OPTS[@]}" install --force-reinstall --no-deps ./python
else
  echo "== $MINOR""t: pyo3 0.29+ refuses it; building /tmp/ft-scratch (this tree, pyo3 =0.28.3)"
  rm -rf /tmp/ft-scratch && mkdir -p /tmp/ft-scratch
  tar -C "$ROOT" --exclude=./target --exclude=./.git --exclude=./python/target --exclude=./fuzz \
    -cf - . | tar -C /tmp/ft-scratch -xf -
  sed -i 's/^pyo3 = { version = "[^"]*"/pyo3 = { version = "=0.28.3"/' /tmp/ft-scratch/python/Cargo.toml
  grep -q '"=0.28.3"' /tmp/ft-scratch/python/Cargo.toml
  (cd /tmp/ft-scratch/python && timeout 600 cargo update -q -p pyo3 --precise 0.28.3)
  CARGO_TARGET_DIR=/tmp/ft-target-028 timeout 1800 "${NICE[@]}" "$FT_VENV/bin/python" -m pip "${PIP_OPTS[@]}" \
    install --force-reinstall --no-deps /tmp/ft-scratch/python
fi
"$FT_VENV/bin/python" -W always -c 'import sys, spindle_wsgi; print("  GIL after import spindle_wsgi:", sys._is_gil_enabled())'

# 4. The WSGI suite and the smoke test against each.
for venv in "$GIL_VENV" "$FT_VENV"; do
  echo "== pytest tests/wsgi with $venv/bin/spindle-wsgi"
  WSGI_SERVER=spindle SPINDLE_WSGI="$venv/bin/spindle-wsgi" timeout 1200 \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/wsgi | tail -3
  PATH="$venv/bin:$PATH" timeout 600 "$venv/bin/python" python/tests/test_smoke.py 2>&1 | tail -1
done

# 5. The measurements.
echo "== bench/wsgi_freethreaded.py"
timeout 1800 python3 bench/wsgi_freethreaded.py \
  "gil-$("$GIL_VENV/bin/python" -c 'import platform; print(platform.python_version())')=$GIL_VENV" \
  "ft-${FT_VERSION}t=$FT_VENV" "$@"
