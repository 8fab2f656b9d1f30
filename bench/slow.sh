#!/usr/bin/env bash
# bench/slow.sh — issue 16's harness: slow readers of streamed and file responses,
# stalled uploads against the buffer budgets, and file downloads against nginx with
# sendfile; on 127.0.0.1 only. Writes bench/results/<date>-slow.md.
#
# 1. Slow readers. N clients (default 1,000) each set SO_RCVBUF to 4 KiB before
#    connecting, ask for an 8 MiB streamed response and never read
#    (bench/peers/slow_readers.py readers). Once the requests are in, the hold: a
#    normal client sends 200 GET / spread over it, each given 5 s
#    (bench/peers/normal_client.py), while the server's threads (/proc/PID/status,
#    whole process tree) and CPU time (utime+stime, /proc/PID/stat) are sampled. Then
#    the slow clients close. Rows, each on a fresh server:
#      spindle (target/release/spindle, [pool] max_threads = 8): POST 8 MiB to the
#        built-in /echo (the body spills to a temporary file; the client sends all of
#        it, then never reads the echo);
#      downloads (examples/downloads.rs, max_threads = 8): /stream?bytes=8388608 (a
#        Response::stream of unknown length, chunked) and /file?path=8MiB.bin;
#      spindle-wsgi (its default config), waitress (4 threads) and granian (1 worker,
#        WSGI, its default threads), each serving bench/slow_app.py (Flask): /gen, a
#        generator of 128 x 64 KiB, and /file, send_file of an 8 MiB file.
# 2. Budgets. N uploads (default 1,000) each POST Content-Length 16 MiB to /echo on the
#    daemon, send 8 MiB, stall 10 s (the normal client runs then), then resume; every
#    echo is read back and compared byte for byte (slow_readers.py budget). The
#    daemon's VmRSS and its temporary-file bytes (its open deleted files under the
#    TMPDIR this script gives it) are sampled every 200 ms. Then the same with 10,000
#    uploads sending 60 KiB of a declared 120 KiB.
# 3. sendfile. nginx (1 worker, sendfile on) and downloads' /file (default pool) under
#    wrk: a 1 GiB file at -t1 -c1 and a 16 MiB file at -t2 -c50; and `strace -f -c`
#    attached to spindle-wsgi (and to downloads) during a few downloads of the 8 MiB
#    file, for the counts of sendfile, read, write and sendto.
#
# Owns: installing its tools (apt: wrk, nginx-light or nginx, strace, curl; a venv in
# target/slow-bench-venv with pinned Flask, waitress and granian, and spindle-wsgi
# built from ./python with pip (maturin), rebuilt only when src/, python/ or the
# Cargo files differ from its last install); building target/release/spindle and
# examples/downloads (cargo build --release); starting each server on a free loopback
# port; bench/results/<date>-slow.md (a second run the same day: -run2, -run3, ...).
# Stops: each server is started for its row and stopped by the PID saved at its start
# (SIGTERM, then SIGKILL to that PID and its children after 10 s) before the next
# starts; every client (slow_readers.py, normal_client.py, wrk, curl, strace) is bounded
# by its own limits and by `timeout`; the EXIT trap kills what this script started and
# is still running, and removes the run's temporary directory.
#
# Usage: [SPINDLE_BIN=path] [DOWNLOADS_BIN=path] [SPINDLE_WSGI=path] bench/slow.sh
#          [--quick] [--strict] [--only slow|budget|sendfile]...
#   --quick  300 slow readers on the spindle rows only (no waitress or granian), 3 s
#            holds; 200 uploads of 16 MiB and 2,000 of 120 KiB, 3 s stalls; wrk runs
#            of 3 s: about 1.5 minutes once built. The default (about 5 minutes today;
#            up to 10 when servers are slow to stop) is 1,000 slow readers on every row
#            with 10 s holds (and waitress at 300 as well), 1,000 and 10,000 uploads
#            with 10 s stalls, and 10 s wrk runs.
#   Disk: the /echo rows spill every body, up to N x 8 MiB (8 GiB) and N x 16 MiB
#   (16 GiB) at the default; a section runs fewer connections (and says so) when
#   $TMPDIR's file system has less room.
#   --only   run only these sections (repeatable); the others are left out and the
#            results say so.
#   --strict exit 3 (after writing the results) when a row of spindle's misses issue
#            16's target: for CI once the issue is done. Without it the exit status
#            says only whether the harness ran.
#   SPINDLE_BIN, DOWNLOADS_BIN, SPINDLE_WSGI  measure these instead of building them.
set -euo pipefail

QUICK=0
STRICT=0
ONLY=()
STOP_CONTEXT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --strict) STRICT=1 ;;
    --only) shift; ONLY+=("${1:?--only needs slow, budget or sendfile}") ;;
    *) echo "usage: $0 [--quick] [--strict] [--only slow|budget|sendfile]..." >&2; exit 2 ;;
  esac
  shift
done

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
PEERS="$BENCH/peers"
VENV="$ROOT/target/slow-bench-venv"
PINS=(flask==3.1.3 waitress==3.0.2 granian==2.8.7)  # as bench/wsgi.sh
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ left in bench/
WORK="$(mktemp -d "${TMPDIR:-/tmp}/spindle-slow.XXXXXX")"
DATA="$WORK/rows.tsv"       # section  server  route  key=value line
CMDS="$WORK/commands.txt"   # the commands as run, ports written PORT
NOTES="$WORK/notes.txt"     # anything not run as planned
CLK_TCK=$(getconf CLK_TCK)
T_START=$(date +%s)

MAX_THREADS=8               # the Rust rows of section 1 (issue 16's condition)
NORMAL_N=200                # the normal client's GET /s …
NORMAL_TIMEOUT=5            # … each answered within 5 s
BODY=8388608                # the slow readers' response (and /echo upload): 8 MiB
WAITRESS_THREADS=4
if [ "$QUICK" = 1 ]; then
  SLOW_N=300; RAMP=20; HOLD=3
  BUDGET_N=200; BUDGET_SMALL_N=2000; STALL=3
  WRK_DUR=3
  WSGI_PEERS=()
else
  SLOW_N=1000; RAMP=60; HOLD=10
  BUDGET_N=1000; BUDGET_SMALL_N=10000; STALL=10
  WRK_DUR=10
  WSGI_PEERS=(waitress granian)
fi

log() { printf '[slow %3ss] %s\n' "$(( $(date +%s) - T_START ))" "$*" >&2; }
note() { log "NOTE: $*"; echo "$*" >>"$NOTES"; }
want() { # want SECTION: is this section run?
  [ ${#ONLY[@]} -eq 0 ] && return 0
  local s; for s in "${ONLY[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1
}

# --- process bookkeeping (as bench/run.sh) -------------------------------------------
PIDS=()
cleanup() { # what this script started and is still running, with the children of it
  local p all=()
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && mapfile -t -O "${#all[@]}" all < <(proc_tree "$p"); done
  for p in "${all[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  [ ${#all[@]} -gt 0 ] && sleep 0.3
  for p in "${all[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
forget() {
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# A process and all its descendants, one PID a line.
proc_tree() {
  local c
  echo "$1"
  for c in $(pgrep -P "$1" 2>/dev/null || true); do proc_tree "$c"; done
}

# utime+stime (+ reaped children's) of a process tree, in clock ticks.
cpu_ticks() {
  local total=0 p s f
  for p in $(proc_tree "$1"); do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }
    read -r -a f <<<"$s"
    total=$(( total + f[11] + f[12] + f[13] + f[14] ))
  done
  echo "$total"
}

# Stops a server this script started: SIGTERM, then SIGKILL of its tree after 35 s
# (spindle's default graceful_timeout is 30 s). A server that had died, and a stop that
# takes 5 s or more, are noted.
stop_server() {
  local pid=$1 i c t0 took
  if ! kill -0 "$pid" 2>/dev/null; then
    note "$SNAME had exited by the end of ${STOP_CONTEXT:-its row}: $(grep -m1 -iE 'error|panic|traceback' "$WORK/$SNAME.log" | cut -c1-160) … $(tail -n 1 "$WORK/$SNAME.log" | cut -c1-200)"
  fi
  t0=$(date +%s%N)
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 350); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    note "$SNAME did not exit within 35 s of SIGTERM (after ${STOP_CONTEXT:-its row}); killed."
    for c in $(proc_tree "$pid" | tail -n +2); do kill -KILL "$c" 2>/dev/null || true; done
    kill -KILL "$pid" 2>/dev/null || true
  else
    took=$(( ($(date +%s%N) - t0) / 1000000000 ))
    [ "$took" -lt 5 ] || note "$SNAME took $took s to exit after SIGTERM (after ${STOP_CONTEXT:-its row})."
  fi
  wait "$pid" 2>/dev/null || true
  forget "$pid"
  STOP_CONTEXT=""
}

note_cmd() { # the command as run, ports written PORT and paths shortened
  local c
  c=$(printf '%q ' "$@"); c=${c% }
  c=${c//$WORK/\$WORK}; c=${c//$ROOT\//}; c=${c//$VENV\//\$VENV/}
  if [ -n "${SPORT:-}" ]; then
    c=${c//:$SPORT/:PORT}; c=${c// $SPORT $SPID / PORT PID }
  fi
  grep -qxF -- "$c" "$CMDS" 2>/dev/null || echo "$c" >>"$CMDS"
}

# kv KEY LINE: the value of KEY in a key=value line (NA if absent).
kv() { local v; v=$(sed -n "s/.*\(^\| \)$1=\([^ ]*\).*/\2/p" <<<"$2"); echo "${v:-NA}"; }

# --- tools ---------------------------------------------------------------------------
install_tools() {
  local missing=() py stamp
  command -v wrk >/dev/null || missing+=(wrk)
  command -v strace >/dev/null || missing+=(strace)
  command -v curl >/dev/null || missing+=(curl)
  command -v cargo >/dev/null || { echo "rustc/cargo needed (rustup)" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  if [ ${#missing[@]} -gt 0 ] || ! command -v nginx >/dev/null; then
    log "apt-get install ${missing[*]} nginx-light"
    apt-get -o DPkg::Lock::Timeout=180 update -qq
    [ ${#missing[@]} -gt 0 ] && apt-get -o DPkg::Lock::Timeout=180 install -y -qq "${missing[@]}" >/dev/null
    if ! command -v nginx >/dev/null; then
      apt-get -o DPkg::Lock::Timeout=180 install -y -qq nginx-light >/dev/null 2>&1 ||
        apt-get -o DPkg::Lock::Timeout=180 install -y -qq nginx >/dev/null
    fi
  fi
  # The venv: the distribution's python3 where there is one (as bench/wsgi.sh).
  py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt-get -o DPkg::Lock::Timeout=180 update -qq
      apt-get -o DPkg::Lock::Timeout=180 install -y -qq python3-venv >/dev/null
      "$py" -m venv "$VENV"
    fi
  fi
  PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
  "$VENV/bin/python" -c 'import flask, waitress, granian' 2>/dev/null || "${PIP[@]}" install "${PINS[@]}"
  "${PIP[@]}" install -q "${PINS[@]}" >/dev/null 2>&1 || true   # pins moved: align (a no-op when they hold)
  PY="$VENV/bin/python"
  if [ -n "${SPINDLE_WSGI:-}" ]; then
    note "spindle-wsgi given by SPINDLE_WSGI ($SPINDLE_WSGI), not built from this tree."
    return
  fi
  SPINDLE_WSGI="$VENV/bin/spindle-wsgi"
  # Rebuilt only when what it is built from changed since the last install.
  stamp=$( { git -C "$ROOT" rev-parse HEAD:src HEAD:python 2>/dev/null
             git -C "$ROOT" diff HEAD -- src python Cargo.toml Cargo.lock 2>/dev/null; } | sha256sum | cut -c1-16)
  if [ ! -x "$SPINDLE_WSGI" ] || [ "$(cat "$VENV/.spindle-wsgi-stamp" 2>/dev/null)" != "$stamp" ]; then
    log "pip install ./python (maturin, release build)"
    if "${PIP[@]}" install --force-reinstall --no-deps "$ROOT/python" >"$WORK/pip-python.log" 2>&1; then
      echo "$stamp" >"$VENV/.spindle-wsgi-stamp"
    else
      tail -n 20 "$WORK/pip-python.log" >&2
      note "pip install ./python failed: no spindle-wsgi rows."
      SPINDLE_WSGI=""
    fi
  fi
}

build() {
  if [ -n "${SPINDLE_BIN:-}" ]; then
    SPINDLE=$SPINDLE_BIN
    note "spindle binary given by SPINDLE_BIN ($SPINDLE_BIN), not built from this tree."
  else
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release -q)
    SPINDLE="$ROOT/target/release/spindle"
  fi
  if [ -n "${DOWNLOADS_BIN:-}" ]; then
    DOWNLOADS=$DOWNLOADS_BIN
    note "examples/downloads given by DOWNLOADS_BIN ($DOWNLOADS_BIN), not built from this tree."
  else
    log "cargo build --release --example downloads"
    (cd "$ROOT" && cargo build --release -q --example downloads)
    DOWNLOADS="$ROOT/target/release/examples/downloads"
  fi
}

# --- servers -------------------------------------------------------------------------
# rust_config FILE EXTRA_TOML: the listener (127.0.0.1 port 0, "/" hello and "/echo"),
# access lines off, and EXTRA_TOML (the named exception of that instance).
rust_config() {
  {
    [ -n "$2" ] && printf '%s\n' "$2"
    cat <<EOF
[log]
level = "info,spindle::access=off"
[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
[listener.apps]
"/" = "hello"
"/echo" = "echo"
EOF
  } >"$1"
}

# The spindle-wsgi config: the listener only (as bench/wsgi_bench.py); the pool and
# every limit are spindle-wsgi's defaults.
wsgi_config() {
  cat >"$1" <<'EOF'
[log]
level = "info,spindle::access=off"
[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
[listener.apps]
"/healthz" = "healthz"
EOF
}

# start_server NAME [env VAR=… …] CMD…: runs it in the background (cwd bench/, output to
# $WORK/NAME.log) and waits for its port: from $WORK/NAME.ready when CMD writes one
# (spindle, downloads, spindle-wsgi), else from /proc. Sets SPID, SPORT, SNAME.
start_server() {
  SNAME=$1; shift
  local ready="$WORK/$SNAME.ready" i
  rm -f "$ready"
  (cd "$BENCH" && exec "$@" >"$WORK/$SNAME.log" 2>&1 </dev/null) &
  SPID=$!; PIDS+=("$SPID"); SPORT=""
  for i in $(seq 1 300); do
    if ! kill -0 "$SPID" 2>/dev/null; then break; fi
    if [ -f "$ready" ]; then
      SPORT=$(sed -n 's/^listener http 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$ready" | head -1)
    elif [ "$i" -gt 3 ]; then
      SPORT=$("$PY" "$PEERS/slow_readers.py" port "$SPID" || true)
    fi
    [ -n "$SPORT" ] && break
    sleep 0.1
  done
  if [ -z "$SPORT" ]; then
    note "$SNAME did not start listening within 30 s: $(tail -n 3 "$WORK/$SNAME.log" | tr '\n' ' ')"
    stop_server "$SPID"
    return 1
  fi
}

rust_server() { # NAME daemon|downloads EXTRA_TOML
  local name=$1 kind=$2 bin
  rust_config "$WORK/$name.toml" "$3"
  mkdir -p "$WORK/tmp/$name"
  if [ "$kind" = downloads ]; then bin=("$DOWNLOADS" --root "$WORK/files"); else bin=("$SPINDLE"); fi
  start_server "$name" env TMPDIR="$WORK/tmp/$name" "${bin[@]}" --config "$WORK/$name.toml" --ready-file "$WORK/$name.ready"
  note_cmd "${bin[@]}" --config "$WORK/$name.toml" --ready-file "$WORK/$name.ready"
}

wsgi_server() { # spindle-wsgi | waitress | granian
  local cmd=()
  case "$1" in
    spindle-wsgi)
      wsgi_config "$WORK/spindle-wsgi.toml"
      cmd=("$SPINDLE_WSGI" slow_app:app --config "$WORK/spindle-wsgi.toml" --ready-file "$WORK/spindle-wsgi.ready") ;;
    waitress)
      # connection_limit: its default (100) would leave the normal client waiting
      # behind the slow clients in the backlog, whatever waitress does with them.
      cmd=("$VENV/bin/waitress-serve" --listen=127.0.0.1:0 "--threads=$WAITRESS_THREADS"
           "--connection-limit=$(( SLOW_N + 1000 ))" slow_app:app) ;;
    granian)
      cmd=("$VENV/bin/granian" --interface wsgi --host 127.0.0.1 --port 0 --workers 1
           --no-access-log slow_app:app) ;;
  esac
  start_server "$1" env PYTHONPATH="$BENCH" SLOW_APP_DIR="$WORK/app" "${cmd[@]}"
  note_cmd "${cmd[@]}"
}

# check_route METHOD PATH WANT_BYTES: the server answers 200 with that many bytes (and
# GET / with 200) before anything is measured.
check_route() {
  local got
  got=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SPORT/") || true
  [ "$got" = 200 ] || { note "$SNAME: GET / answered '$got' before the row; row skipped."; return 1; }
  if [ "$1" = POST ]; then
    got=$(curl -s -m 30 -o /dev/null -w '%{http_code} %{size_download}' --data-binary "@$WORK/files/8MiB.bin" \
      -H 'Content-Type: application/octet-stream' "http://127.0.0.1:$SPORT$2") || true
  else
    got=$(curl -s -m 30 -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$SPORT$2") || true
  fi
  [ "$got" = "200 $3" ] || { note "$SNAME: $1 $2 answered '$got', not '200 $3'; row skipped."; return 1; }
}

# --- 1. slow readers -----------------------------------------------------------------
slow_row() { # SERVER ROUTE_LABEL METHOD PATH [N]
  local server=$1 label=$2 method=$3 path=$4 n=${5:-$SLOW_N} line args
  log "slow readers: $server $label ($n clients, hold ${HOLD}s)"
  STOP_CONTEXT="the slow-readers row $label"
  check_route "$method" "$path" "$BODY" || return 0
  args=(readers "$SPORT" "$SPID" --n "$n" --path "$path" --ramp "$RAMP" --hold "$HOLD"
        --normal-n "$NORMAL_N" --normal-timeout "$NORMAL_TIMEOUT")
  [ "$method" = POST ] && args+=(--body "$BODY")
  note_cmd python3 bench/peers/slow_readers.py "${args[@]}"
  line=$(timeout -k 5 $(( RAMP + HOLD + NORMAL_TIMEOUT + 60 )) "$PY" "$PEERS/slow_readers.py" "${args[@]}" \
         2> >(tee -a "$WORK/clients.log" >&2) | tail -n 1) || true
  [ -n "$line" ] || { line="answered=NA"; note "$server $label: slow_readers.py gave no result."; }
  log "  $line"
  printf 'slow\t%s\t%s\t%s\n' "$server" "$label" "$line" >>"$DATA"
  sleep 1   # the slow sockets' resets, before the server is stopped
}

section_slow() {
  local s
  rust_server spindle daemon "[pool]
max_threads = $MAX_THREADS" && { slow_row spindle "POST /echo (8 MiB)" POST /echo; stop_server "$SPID"; }
  rust_server downloads downloads "[pool]
max_threads = $MAX_THREADS" && { slow_row downloads "/stream (Response::stream)" GET "/stream?bytes=$BODY"; stop_server "$SPID"; }
  rust_server downloads downloads "[pool]
max_threads = $MAX_THREADS" && { slow_row downloads "/file (8 MiB file)" GET "/file?path=8MiB.bin"; stop_server "$SPID"; }
  for s in ${SPINDLE_WSGI:+spindle-wsgi} "${WSGI_PEERS[@]}"; do
    wsgi_server "$s" && { slow_row "$s" "/gen (Flask generator)" GET /gen; stop_server "$SPID"; }
    wsgi_server "$s" && { slow_row "$s" "/file (Flask send_file)" GET /file; stop_server "$SPID"; }
  done
  # waitress watches its sockets with select(): past 1,024 descriptors it stops. Issue
  # 16 measured it with 300 slow clients, so it gets rows at 300 as well.
  if [[ " ${WSGI_PEERS[*]} " == *" waitress "* ]] && [ "$SLOW_N" -gt 300 ]; then
    wsgi_server waitress && { slow_row waitress "/gen (Flask generator)" GET /gen 300; stop_server "$SPID"; }
    wsgi_server waitress && { slow_row waitress "/file (Flask send_file)" GET /file 300; stop_server "$SPID"; }
  fi
}

# --- 2. budgets ----------------------------------------------------------------------
budget_row() { # LABEL N DECLARED FIRST
  local label=$1 n=$2 line args
  rust_server spindle-budget daemon "[limits]
max_connections = $(( BUDGET_SMALL_N + 1000 ))" || return 0
  log "budgets: $label, $n uploads (stall ${STALL}s)"
  STOP_CONTEXT="the budgets row $label"
  args=(budget "$SPORT" "$SPID" --n "$n" --declared "$3" --first "$4" --tmpdir "$WORK/tmp/spindle-budget"
        --stall "$STALL" --normal-n "$NORMAL_N" --normal-timeout "$NORMAL_TIMEOUT")
  note_cmd python3 bench/peers/slow_readers.py "${args[@]}"
  line=$(timeout -k 5 $(( 60 + STALL + NORMAL_TIMEOUT + 180 + 30 )) "$PY" "$PEERS/slow_readers.py" "${args[@]}" \
         2> >(tee -a "$WORK/clients.log" >&2) | tail -n 1) || true
  [ -n "$line" ] || { line="completed=NA"; note "budgets $label: slow_readers.py gave no result."; }
  log "  $line"
  printf 'budget\tspindle\t%s\t%s\n' "$label" "$line" >>"$DATA"
  stop_server "$SPID"
}

section_budget() {
  budget_row "16 MiB declared, 8 MiB sent" "$BUDGET_N" 16777216 8388608
  budget_row "120 KiB declared, 60 KiB sent" "$BUDGET_SMALL_N" 122880 61440
}

# --- 3. sendfile ---------------------------------------------------------------------
start_nginx() {
  local d="$WORK/nginx" p
  mkdir -p "$d/logs" "$d/tmp"
  p=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  cat >"$d/nginx.conf" <<EOF
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$p;
    root $WORK/files;
  }
}
EOF
  start_server nginx nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" -g 'daemon off;' || return 1
  note_cmd nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" -g 'daemon off;'
}

# wrk_row LABEL SERVER URL THREADS CONNS
wrk_row() {
  local label=$1 server=$2 url=$3 t=$4 c=$5 out="$WORK/wrk.out" c0 c1 rps mbps tr
  local cmd=(wrk "-t$t" "-c$c" "-d${WRK_DUR}s" --timeout 30s --latency "$url")
  note_cmd "${cmd[@]}"
  # The URL must serve the whole file before wrk measures it.
  local want got
  want=$(stat -c %s "$WORK/files/$( [[ $url == *1GiB* ]] && echo 1GiB.bin || echo 16MiB.bin)")
  got=$(curl -s -m 60 -o /dev/null -w '%{http_code} %{size_download}' "$url") || true
  if [ "$got" != "200 $want" ]; then
    note "$server: $url answered '$got', not '200 $want': $label not measured."
    printf 'sendfile\t%s\t%s\t%s\n' "$server" "$label" "rps=NA mibps=NA cpu_s=NA" >>"$DATA"
    return 0
  fi
  c0=$(cpu_ticks "$SPID")
  timeout -k 5 $(( WRK_DUR + 40 )) "${cmd[@]}" >"$out" 2>&1 || true
  c1=$(cpu_ticks "$SPID")
  { echo "### $label $server"; cat "$out"; } >>"$WORK/wrk-all.out"
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  tr=$(awk '/^Transfer\/sec:/ {print $2}' "$out")
  mbps=$(awk -v t="${tr:-NA}" 'BEGIN {
    if (t == "NA") { print "NA"; exit }
    n = t + 0; u = t; sub(/^[0-9.]+/, "", u)
    f = (u == "GB") ? 1024 : (u == "MB") ? 1 : (u == "KB") ? 1 / 1024 : (u == "B") ? 1 / 1048576 : -1
    if (f < 0) print "NA"; else printf "%.0f", n * f }')
  local line
  line="rps=${rps:-NA} mibps=$mbps cpu_s=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / hz}')"
  line+=" errors=$(grep -o 'Socket errors:.*' "$out" | tr -d ' ,' | sed 's/Socketerrors://' || true)"
  line=${line% errors=}
  line+=" non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$out")"
  line=$(sed 's/=\( \|$\)/=0\1/g' <<<"$line")
  log "  $label $server: $line"
  printf 'sendfile\t%s\t%s\t%s\n' "$server" "$label" "$line" >>"$DATA"
}

# strace_row SERVER URL: `strace -f -c` attached to the server's process (all its
# threads) while curl downloads URL 3 times; the syscall counts.
strace_row() {
  local server=$1 url=$2 spid i line k
  local out="$WORK/strace-$server.out"
  strace -f -c -o "$out" -p "$SPID" 2>"$WORK/strace-$server.err" &
  spid=$!; PIDS+=("$spid")
  sleep 1
  for i in 1 2 3; do curl -s -m 60 -o /dev/null "$url" || true; done
  sleep 0.5
  kill -INT "$spid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  forget "$spid"
  echo "strace -f -c -o \$WORK/strace-$server.out -p PID  # while: curl -o /dev/null ${url//:$SPORT/:PORT}, 3 times" >>"$CMDS"
  line="downloads=3"
  for k in sendfile read write sendto writev sendmsg pread64 recvfrom; do
    line+=" $k=$(awk -v k="$k" '$NF == k { print $4 }' "$out" | head -1)"
  done
  line=$(sed 's/=\( \|$\)/=0\1/g' <<<"$line")
  [ -s "$out" ] || line="strace=failed ($(tr '\n' ' ' <"$WORK/strace-$server.err" | cut -c1-150))"
  { echo "### strace -f -c, $server, 3 downloads of $url"; cat "$out"; } >>"$WORK/strace-all.out"
  log "  strace $server: $line"
  printf 'strace\t%s\t%s\t%s\n' "$server" "${url#http://127.0.0.1:$SPORT}" "$line" >>"$DATA"
}

section_sendfile() {
  local s
  for s in nginx downloads; do
    if [ "$s" = nginx ]; then start_nginx || continue; local url="http://127.0.0.1:PORT/1GiB.bin" url2="http://127.0.0.1:PORT/16MiB.bin"
    else rust_server downloads-default downloads "" || continue; local url="http://127.0.0.1:PORT/file?path=1GiB.bin" url2="http://127.0.0.1:PORT/file?path=16MiB.bin"
    fi
    log "sendfile: $s"
    wrk_row "1 GiB, -t1 -c1" "$s" "${url/PORT/$SPORT}" 1 1
    wrk_row "16 MiB, -t2 -c50" "$s" "${url2/PORT/$SPORT}" 2 50
    [ "$s" = downloads ] && strace_row downloads "http://127.0.0.1:$SPORT/file?path=8MiB.bin"
    stop_server "$SPID"
  done
  if [ -n "${SPINDLE_WSGI:-}" ]; then
    wsgi_server spindle-wsgi && { log "strace: spindle-wsgi"; strace_row spindle-wsgi "http://127.0.0.1:$SPORT/file"; stop_server "$SPID"; }
  fi
}

# --- files ---------------------------------------------------------------------------
make_files() {
  mkdir -p "$WORK/files"
  # nginx's worker runs as an unprivileged user: it must get through to the files.
  chmod 711 "$WORK"; chmod 755 "$WORK/files"
  # Non-zero content (a repeating 1 MiB block), written once: in the page cache after.
  "$PY" - "$WORK/files" <<'EOF'
import os, sys
block = bytes(range(256)) * 4096
for name, mib in (("8MiB.bin", 8), ("16MiB.bin", 16), ("1GiB.bin", 1024)):
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        for _ in range(mib):
            f.write(block)
EOF
}

# Free space for the temporary files of a section: N bodies of SIZE bytes at worst.
# Prints the N that fits (2 GiB kept free), noting when it is fewer.
fit_disk() { # N SIZE WHAT
  local avail fit
  avail=$(df --output=avail -B1 "$WORK" | tail -1)
  fit=$(( (avail - (2 << 30)) / $2 ))
  if [ "$fit" -lt "$1" ]; then
    note "$3: $(( avail >> 30 )) GiB free under $WORK: $fit connections instead of $1."
    echo "$(( fit > 0 ? fit : 0 ))"
  else
    echo "$1"
  fi
}

# --- the results ---------------------------------------------------------------------
MISSED=0   # rows of spindle's that miss issue 16's target (--strict: exit 3 if any)
verdict() { case "$1" in *"not met"*) MISSED=$(( MISSED + 1 )) ;; esac; }
per_cpu() { # MiB moved per server CPU-second, from a sendfile row's line
  awk -v m="$(kv mibps "$1")" -v c="$(kv cpu_s "$1")" -v d="$WRK_DUR" 'BEGIN {
    if (m ~ /^[0-9.]+$/ && c ~ /^[0-9.]+$/ && c > 0) printf "%.0f", m * d / c; else print "NA" }'
}

results() {
  local date="$1" cpu sp_min server route line a p50 p99 thr th0 cpu_s win why base
  cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
  rust_config "$WORK/probe.toml" ""
  sp_min=$("$SPINDLE" check --config "$WORK/probe.toml" 2>/dev/null | sed -n 's/^min_threads = //p' | head -1)
  cat <<EOF
# Slow readers, buffer budgets, sendfile (issue 16) — $date

Produced by \`bench/slow.sh$( [ "$QUICK" = 1 ] && echo " --quick")$( [ "$STRICT" = 1 ] && echo " --strict")$( [ ${#ONLY[@]} -gt 0 ] && printf ' --only %s' "${ONLY[@]}")\` in $(( $(date +%s) - T_START )) s.
One run of each row, each on a freshly started server; the machine is shared and noisy
(load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)), the clients run on
the same $(nproc) cores as the servers. Loopback only.

| | |
|---|---|
| CPU | $(nproc) × ${cpu:-unknown}, $(uname -sr) |
| spindle | $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src examples 2>/dev/null || echo ' (+ uncommitted src/examples changes)'); \`spindle\` and \`downloads\` (examples/downloads.rs) at \`[pool] max_threads = $MAX_THREADS\` in section 1 (min_threads ${sp_min:-?}, the default), default pool in 2 and 3 |
| spindle-wsgi | $("$SPINDLE_WSGI" --version 2>/dev/null || echo 'not run'), default config (pool 1..256) |
| waitress | $("$PY" -c 'import importlib.metadata as m; print(m.version("waitress"))' 2>/dev/null), $WAITRESS_THREADS threads, connection_limit $(( SLOW_N + 1000 )) |
| granian | $("$PY" -c 'import importlib.metadata as m; print(m.version("granian"))' 2>/dev/null), --interface wsgi, 1 worker, its default threads |
| Flask | $("$PY" -c 'import importlib.metadata as m; print(m.version("flask"))' 2>/dev/null) (bench/slow_app.py), $("$PY" -V 2>&1) |
| nginx | $(nginx -v 2>&1 | sed 's/.*version: //'), 1 worker, sendfile on |
| load | $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'); bench/peers/slow_readers.py, normal_client.py; $(strace -V 2>/dev/null | head -1) |

EOF
  if [ -s "$NOTES" ]; then
    echo "**Not as planned in this run:**"; echo
    sed 's/^/* /' "$NOTES"; echo
  fi

  if grep -q '^slow' "$DATA"; then
    cat <<EOF
## 1. Slow readers

N clients ($SLOW_N, or as the row says) each ask for an 8 MiB response with SO_RCVBUF = 4 KiB (set before connect)
and never read. Once their requests are in (at most ${RAMP} s; "sent" counts the clients
whose whole request, body included, the server took), a normal client sends $NORMAL_N
\`GET /\` spread over ${HOLD} s, each on a new connection and answered within ${NORMAL_TIMEOUT} s or not at all; p50 and p99 are
over all $NORMAL_N ("unanswered" when that rank was not answered). Threads: the server's
process tree before the slow clients, and the most seen during the hold (sampled every
200 ms). CPU-s: the tree's utime+stime over the hold window. "Slow: started / cut" counts the slow
clients with response bytes waiting in their socket, and those the server had closed or
reset by the end of the hold.

Issue 16 wants, for spindle: all $NORMAL_N answered with p99 < 20 ms, the thread count ≤
min_threads + 2, and CPU idle. Read here as: at most 2 threads more than before the slow
clients (an idle server has its min_threads workers, ${sp_min:-?} for spindle and 1 for
spindle-wsgi, plus its main, acceptor and signals threads), and CPU ≤ 5 % of one core
over the window.

| server | route | slow clients: connected / sent (of N) | answered / $NORMAL_N | p50 ms | p99 ms | threads before → max | CPU-s (window s) | slow: started / cut | issue 16's target |
|---|---|---:|---:|---:|---:|---:|---:|---:|---|
EOF
    while IFS=$'\t' read -r _ server route line; do
      a=$(kv answered "$line"); p50=$(kv p50_ms "$line"); p99=$(kv p99_ms "$line")
      thr=$(kv threads_max "$line"); th0=$(kv threads_before "$line")
      cpu_s=$(kv cpu_s "$line"); win=$(kv window_s "$line")
      case "$server" in
        spindle|downloads|spindle-wsgi) base=$th0 ;;
        *) base="" ;;
      esac
      if [ -n "$base" ] && [ "$base" != NA ]; then
        why=$(awk -v a="$a" -v n="$NORMAL_N" -v p99="$p99" -v t="$thr" -v lim=$(( base + 2 )) -v c="$cpu_s" -v w="$win" 'BEGIN {
          s = ""
          if (a != n) s = s sprintf("; %s/%s answered", a, n)
          if (p99 !~ /^[0-9.]+$/ || p99 + 0 >= 20) s = s sprintf("; p99 %s", p99)
          if (t + 0 > lim) s = s sprintf("; %s threads > %d", t, lim)
          if (w + 0 > 0 && c / w > 0.05) s = s sprintf("; CPU %.0f %%", 100 * c / w)
          print (s == "") ? "met" : "**not met**" s }')
        verdict "$why"
      else
        why="(peer)"
      fi
      printf '| %s | %s | %s / %s (of %s) | %s | %s | %s | %s → %s | %s (%s) | %s / %s | %s |\n' "$server" "$route" \
        "$(kv connected "$line")" "$(kv sent "$line")" "$(kv n "$line")" "$a" "$p50" "$p99" "$th0" "$thr" "$cpu_s" "$win" \
        "$(kv slow_started "$line")" "$(kv slow_closed_by_server "$line")" "$why"
    done < <(grep '^slow' "$DATA")
    echo
  fi

  if grep -q '^budget' "$DATA"; then
    cat <<EOF
## 2. Budgets

Uploads to spindle's \`/echo\` (default config but \`[limits] max_connections = $(( BUDGET_SMALL_N + 1000 ))\`,
so that the largest case and the normal client fit; \`TMPDIR\` a directory of this run).
Each connection sends the head and the first part, all at once; once every first part
is in (or nothing has moved for 3 s), they stall ${STALL} s while the normal client sends
$NORMAL_N \`GET /\` over the stall; then they all send the rest and read the echo, compared byte for
byte with what they sent ("longest wait": from the first connection's first part to the
resume; past spindle's body_timeout, 30 s by default, the server answers 408 and closes,
and the sender's resume fails: such outcomes read \`BrokenPipeError-408\`). RSS is the daemon's VmRSS; temp is the sum of the sizes of its
open deleted files under its TMPDIR (spilled bodies). Both sampled every 200 ms, maxima over
the whole row ("stall": during the stall only). "Host dirty" is the page cache not yet
written back (Dirty + Writeback, /proc/meminfo, the whole machine): spilled bodies
pile up there, and past vm.dirty_ratio the kernel makes their writers wait, which can
show in the normal client's latency.

Issue 16 wants temp ≤ the disk budget and RSS ≤ baseline + the memory budget (no budgets
exist yet), the normal client answered in < 20 ms, and every upload intact.

| case | uploads | first parts in (s) | longest wait s | RSS baseline → max (stall) MiB | temp max (stall) MiB | host dirty max (stall) MiB | answered / $NORMAL_N | p50 ms | p99 ms | echoes intact | other outcomes | resume s | issue 16's target (without budgets) |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|
EOF
    while IFS=$'\t' read -r _ server route line; do
      why=$(awk -v a="$(kv answered "$line")" -v n="$NORMAL_N" -v p99="$(kv p99_ms "$line")" \
            -v ok="$(kv completed "$line")" -v all="$(kv n "$line")" 'BEGIN {
          s = ""
          if (a != n) s = s sprintf("; %s/%s answered", a, n)
          if (p99 !~ /^[0-9.]+$/ || p99 + 0 >= 20) s = s sprintf("; p99 %s", p99)
          if (ok != all) s = s sprintf("; %s/%s intact", ok, all)
          print (s == "") ? "met" : "**not met**" s }')
      verdict "$why"
      printf '| %s | %s | %s (%s) | %s | %s → %s (%s) | %s (%s) | %s (%s) | %s | %s | %s | %s / %s | %s | %s | %s |\n' "$route" \
        "$(kv n "$line")" "$(kv first_sent "$line")" "$(kv first_s "$line")" "$(kv longest_wait_s "$line")" \
        "$(awk -v v="$(kv rss_base_kb "$line")" 'BEGIN {printf "%.0f", v / 1024}')" \
        "$(awk -v v="$(kv rss_max_kb "$line")" 'BEGIN {printf "%.0f", v / 1024}')" \
        "$(awk -v v="$(kv rss_max_stall_kb "$line")" 'BEGIN {printf "%.0f", v / 1024}')" \
        "$(awk -v v="$(kv temp_max_bytes "$line")" 'BEGIN {printf "%.0f", v / 1048576}')" \
        "$(awk -v v="$(kv temp_max_stall_bytes "$line")" 'BEGIN {printf "%.0f", v / 1048576}')" \
        "$(awk -v v="$(kv dirty_max_kb "$line")" 'BEGIN {printf "%.0f", v / 1024}')" \
        "$(awk -v v="$(kv dirty_max_stall_kb "$line")" 'BEGIN {printf "%.0f", v / 1024}')" \
        "$(kv answered "$line")" "$(kv p50_ms "$line")" "$(kv p99_ms "$line")" \
        "$(kv completed "$line")" "$(kv n "$line")" "$(kv fail_kinds "$line")" "$(kv resume_s "$line")" "$why"
    done < <(grep '^budget' "$DATA")
    echo
  fi

  if grep -q '^sendfile' "$DATA"; then
    cat <<EOF
## 3. sendfile against nginx

\`wrk --timeout 30s -d${WRK_DUR}s\` on nginx (\`sendfile on\`, 1 worker, \`root\` the run's file
directory) and on \`downloads\`' \`/file?path=…\` (default pool); the files are in the page cache.
MiB/s is wrk's Transfer/sec; CPU-s the server's process tree over the run. Issue 16 wants ≥ 0.9× nginx.

| load | nginx req/s | MiB/s | CPU-s | MiB per CPU-s | downloads req/s | MiB/s | CPU-s | MiB per CPU-s | downloads / nginx (MiB/s) |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
    local label ng dl
    for label in "1 GiB, -t1 -c1" "16 MiB, -t2 -c50"; do
      ng=$(awk -F'\t' -v l="$label" '$1 == "sendfile" && $2 == "nginx" && $3 == l {print $4}' "$DATA")
      dl=$(awk -F'\t' -v l="$label" '$1 == "sendfile" && $2 == "downloads" && $3 == l {print $4}' "$DATA")
      why=$(awk -v a="$(kv mibps "$dl")" -v b="$(kv mibps "$ng")" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f×%s", a / b, (a / b >= 0.9) ? "" : " (**not met**)"
        else print "NA (**not met**)" }')
      verdict "$why"
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" \
        "$(kv rps "$ng")" "$(kv mibps "$ng")" "$(kv cpu_s "$ng")" "$(per_cpu "$ng")" \
        "$(kv rps "$dl")" "$(kv mibps "$dl")" "$(kv cpu_s "$dl")" "$(per_cpu "$dl")" "$why"
    done
    echo
  fi
  if grep -q '^strace' "$DATA"; then
    cat <<EOF
\`strace -f -c -p PID\` (every thread of the server) while curl downloads the 8 MiB file 3 times
(\`/file\`: Flask \`send_file\` on spindle-wsgi, \`/file?path=8MiB.bin\` on downloads). Calls.
Issue 16 wants \`sendfile\` calls, not a loop of \`read\` and \`write\` over the file: read here as
some \`sendfile\` calls and fewer than 100 \`read\`+\`pread64\` (a loop of 32 KiB reads would make
768 for the 24 MiB).

| server | sendfile | read | write | sendto | writev | sendmsg | pread64 | recvfrom | issue 16's target |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
EOF
    while IFS=$'\t' read -r _ server route line; do
      why=$(awk -v sf="$(kv sendfile "$line")" -v r="$(kv read "$line")" -v pr="$(kv pread64 "$line")" 'BEGIN {
        if (sf !~ /^[0-9]+$/) { print "**not met**; strace failed"; exit }
        s = ""
        if (sf + 0 == 0) s = s "; no sendfile"
        if (r + pr >= 100) s = s sprintf("; %d reads", r + pr)
        print (s == "") ? "met" : "**not met**" s }')
      verdict "$why"
      printf '| %s %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$server" "$route" \
        "$(kv sendfile "$line")" "$(kv read "$line")" "$(kv write "$line")" "$(kv sendto "$line")" \
        "$(kv writev "$line")" "$(kv sendmsg "$line")" "$(kv pread64 "$line")" "$(kv recvfrom "$line")" "$why"
    done < <(grep '^strace' "$DATA")
    echo
  fi

  echo "## Commands (PORT: the server's port; \$WORK: the run's temporary directory)"
  echo
  echo "Every server runs in bench/, spindle and downloads with \`TMPDIR=\$WORK/tmp/NAME\` (NAME: the"
  echo "config's name), the Flask servers with \`PYTHONPATH=bench SLOW_APP_DIR=\$WORK/app\`; the clients"
  echo "run on the bench venv's python (standard library only)."
  echo; echo '```'; cat "$CMDS"; echo '```'
  echo; echo "Configs: \`spindle\` and \`downloads\` in section 1:"
  echo; echo '```toml'; cat "$WORK/spindle.toml" 2>/dev/null || echo "(not run)"; echo '```'
  echo; echo "spindle-wsgi:"
  echo; echo '```toml'; cat "$WORK/spindle-wsgi.toml" 2>/dev/null || echo "(not run)"; echo '```'
  echo; echo '## Raw result lines'
  echo; echo '```'; cat "$DATA"; echo '```'
  if [ -s "$WORK/strace-all.out" ]; then
    echo; echo '<details><summary>strace summaries</summary>'
    echo; echo '```'; cat "$WORK/strace-all.out"; echo '```'; echo; echo '</details>'
  fi
  if [ -s "$WORK/wrk-all.out" ]; then
    echo; echo '<details><summary>wrk output</summary>'
    echo; echo '```'; sed "s/127.0.0.1:[0-9]*/127.0.0.1:PORT/g" "$WORK/wrk-all.out"; echo '```'; echo; echo '</details>'
  fi
}

main() {
  ulimit -n "$(ulimit -Hn)"
  if [ "$(ulimit -n)" -lt $(( BUDGET_SMALL_N + 2000 )) ]; then
    note "ulimit -n is $(ulimit -n): the 120 KiB case runs $(( $(ulimit -n) - 2000 )) uploads, not $BUDGET_SMALL_N."
    BUDGET_SMALL_N=$(( $(ulimit -n) - 2000 ))
  fi
  : >"$DATA"; : >"$CMDS"; : >"$NOTES"
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  install_tools
  build
  make_files
  [ "$QUICK" = 1 ] && note "--quick: $SLOW_N slow readers, ${HOLD} s holds, spindle rows only (waitress and granian left out); $BUDGET_N and $BUDGET_SMALL_N uploads, ${STALL} s stalls; wrk runs of ${WRK_DUR} s."
  local s
  for s in slow budget sendfile; do want "$s" || note "section $s not run (--only)."; done
  if want slow; then
    SLOW_N=$(fit_disk "$SLOW_N" "$BODY" "slow readers (the /echo row spills every body)")
    section_slow
  fi
  if want budget; then
    BUDGET_N=$(fit_disk "$BUDGET_N" 16777216 "budgets (16 MiB bodies)")
    section_budget
  fi
  want sendfile && section_sendfile
  mkdir -p "$BENCH/results"
  local date out n
  date=$(date -u +%F)
  out="$BENCH/results/$date-slow.md"
  n=2
  while [ -e "$out" ]; do out="$BENCH/results/$date-slow-run$n.md"; n=$((n + 1)); done
  results "$date" >"$out"
  log "wrote ${out#"$ROOT"/}; rows of spindle's that miss issue 16's target: $MISSED"
  echo "[slow] wrote ${out#"$ROOT"/}"
  if [ "$STRICT" = 1 ] && [ "$MISSED" -gt 0 ]; then
    echo "[slow] --strict: $MISSED row(s) miss issue 16's target" >&2
    exit 3
  fi
}

main
