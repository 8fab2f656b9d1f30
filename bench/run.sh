#!/usr/bin/env bash
# bench/run.sh — spindle against its peers, on 127.0.0.1 only.
#
# Owns: installing the bench's tools (apt: wrk, nginx, gnuplot-nox, slowhttptest; pip into
# bench/.venv: gunicorn, waitress, eventlet), building spindle, the no-crate Rust load
# tools and the Rust peers (bench/peers/{hyper,astra,tiny_http}_hello, each its own cargo
# package, built into bench/.target), starting every server on a free loopback port,
# running the workloads round-robin (A B A B …), and writing bench/results/<date>.md plus
# docs/bench-hello.png.
# Stops: everything it started is killed by saved PID on EXIT (trap); every load run is
# bounded by its own duration or count and by `timeout`.
#
# spindle runs on its embedded default config (`spindle print-config`): the bench's
# config files set only the listeners and their apps (and turn the per-request access
# lines off, as every peer runs without an access log), so the pool is the default one.
# The exceptions are separate spindle processes, each named in the results:
#   spindle-4     pool fixed 4..4 (min = max = 4), hello keep-alive -c50 only, for the
#                 "default vs best fixed pool" ratio;
#   spindle-idle  workload 3: max_connections and keepalive_timeout raised so it can hold
#                 10,000 idle connections plus wrk's 50 for the whole run;
#   workload 6    graceful_timeout 10s;
#   spindle-slow  workload 8: max_threads 8, the condition of the slow-client issue
#                 (and /echo mounted, the target of the slow-body attack).
# gunicorn and waitress run 4 threads, tiny_http 4 threads, hyper 2 tokio workers, astra
# its default pool (15 threads per core).
# Workload 9 is bench/wsgi.sh (a Flask app on spindle-wsgi and the Python servers, its own
# venv and results file <date>-wsgi.md), run at the same duration and rounds; it adds
# about 10 minutes at the default, 2 with --quick.
# Workload 10 is bench/slow.sh (issue 16: slow readers of streamed and file responses on
# spindle, spindle-wsgi, waitress and granian; stalled uploads against the buffer
# budgets; file downloads against nginx with sendfile), its own servers, venv and results
# file <date>-slow.md, --quick when this run is; it adds about 5 minutes at the
# default, under 2 with --quick.
#
# Usage: [SPINDLE_BIN=path] bench/run.sh [--quick]
#   SPINDLE_BIN  run this spindle binary instead of building target/release/spindle
#   --quick  2 rounds of 2 s runs, one slow-client round of 15 s per mode, workload 10
#            --quick (about 7 minutes once built); default is 3 rounds of 10 s runs and 3
#            slow-client rounds of 30 s (about 45 minutes, workloads 9 and 10 included).
#            The results file says which was used.
set -euo pipefail

QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
PEERS="$BENCH/peers"
VENV="$BENCH/.venv"
PEER_TARGET="$BENCH/.target"  # cargo target dir of the Rust peers (gitignored)
DATE="$(date +%F)"
OUT_MD="$BENCH/results/$DATE.md"
RAW="$BENCH/results/$DATE.raw"
PLOT="$ROOT/docs/bench-hello.png"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/spindle-bench.XXXXXX")"
DATA="$WORK/data.tsv"        # workload server param round metric value
CMDS="$WORK/commands.txt"    # every load command, with ports written as PORT
NOTES="$WORK/notes.txt"      # anything that did not run as planned, for the results

PY_THREADS=4                 # gunicorn gthread and waitress threads
TINY_THREADS=4               # tiny_http threads
FIXED_POOL=4                 # spindle-4: min_threads = max_threads
SLOW_MAX_THREADS=8           # spindle-slow (workload 8): max_threads
SLEEP_MS=20                  # workload 7: /sleep?ms=20 …
SLEEP_CONNS=200              # … over 200 connections
SLOW_CONNS=1000              # workload 8: slowhttptest connections per mode
NORMAL_N=200                 # workload 8: the normal client's GET /s …
NORMAL_GAP_MS=50             # … one every 50 ms …
NORMAL_TIMEOUT=2             # … each answered within 2 s or counted as not answered
if [ "$QUICK" = 1 ]; then
  ROUNDS=2; DUR=2            # seconds per load run
  IDLE_N=10000               # workload 3 idle connections
  SLOW_ROUNDS=1; SLOW_LEN=15 # workload 8: rounds, slowhttptest -l (seconds)
else
  ROUNDS=3; DUR=10
  IDLE_N=10000
  SLOW_ROUNDS=3; SLOW_LEN=30
fi
CONNS_W1=(1 50 256)
SERVERS_HTTP=(spindle nginx hyper astra tiny_http gunicorn waitress eventlet)
SERVERS_SLEEP=(spindle gunicorn waitress)
SERVERS_SLOW=(spindle-slow nginx)
CLK_TCK=$(getconf CLK_TCK)
T_START=$(date +%s)

log() { printf '[bench %3ss] %s\n' "$(( $(date +%s) - T_START ))" "$*" >&2; }
note() { log "NOTE: $*"; echo "$*" >>"$NOTES"; }

# --- process bookkeeping ------------------------------------------------------------
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
  done
  sleep 0.3
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Drops a PID from PIDS once its process has been waited for, so the EXIT trap never
# signals a PID the system may have handed to someone else since.
forget() {
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
trap 'exit 130' INT TERM

# Waits (bounded) until 127.0.0.1:$1 accepts a connection.
wait_port() {
  local port=$1 i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $port never opened" >&2
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# A process and all its descendants (nginx and gunicorn workers), one PID a line.
proc_tree() {
  local c
  echo "$1"
  for c in $(pgrep -P "$1" 2>/dev/null || true); do proc_tree "$c"; done
}

# Sum of VmRSS (KiB) over a process tree.
rss_kb() {
  local total=0 p v
  for p in $(proc_tree "$1"); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$(( total + ${v:-0} ))
  done
  echo "$total"
}

# Sum of threads over a process tree.
threads_of() {
  local total=0 p v
  for p in $(proc_tree "$1"); do
    v=$(awk '/^Threads:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$(( total + ${v:-0} ))
  done
  echo "$total"
}

# CPU time, in clock ticks, of a process tree: utime + stime of every live process in
# it, plus cutime + cstime (children already reaped), from /proc/PID/stat. The delta
# over a load run is the server's CPU time for that run.
cpu_ticks() {
  local total=0 p s f
  for p in $(proc_tree "$1"); do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }            # from field 3 (state) on: comm may hold spaces
    read -r -a f <<<"$s"
    total=$(( total + f[11] + f[12] + f[13] + f[14] ))
  done
  echo "$total"
}

record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$DATA"; }

note_cmd() { # the command as run (shell-quoted), ports written PORT, paths shortened
  local c p
  c=$(printf '%q ' "$@"); c=${c% }
  for p in "${!PORT[@]}"; do c="${c//:${PORT[$p]}/:PORT}"; done
  c=${c//$WORK/\$WORK}; c=${c//$ROOT\//}
  echo "$c" >>"$CMDS"
}

# --- tools ---------------------------------------------------------------------------
install_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || missing+=(nginx)
  command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
  command -v slowhttptest >/dev/null || missing+=(slowhttptest)
  command -v cargo >/dev/null || { echo "rustc/cargo needed (rustup)" >&2; exit 1; }
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=180 update -qq
    apt-get -o DPkg::Lock::Timeout=180 install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c 'import gunicorn, waitress, eventlet' 2>/dev/null; then
    log "pip install gunicorn waitress eventlet"
    "$VENV/bin/pip" install -q gunicorn waitress eventlet
  fi
}

declare -A PEER_BIN=([hyper]=hyper_hello [astra]=astra_hello [tiny_http]=tiny_http_hello)
SLEEP_OK=0

build() {
  if [ -n "${SPINDLE_BIN:-}" ]; then
    SPINDLE=$SPINDLE_BIN
    note "spindle binary given by SPINDLE_BIN ($SPINDLE_BIN, $("$SPINDLE" -V)), not built from this tree."
  else
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release -q)
    SPINDLE="$ROOT/target/release/spindle"
  fi
  mkdir -p "$WORK/bin"
  local f s keep=()
  for f in echo_threads echo_load idle_conns; do
    rustc -O --edition 2021 "$PEERS/$f.rs" -o "$WORK/bin/$f"
  done
  # The Rust HTTP peers: a peer that does not build is left out (and said so), the
  # rest of the bench still runs.
  for s in "${SERVERS_HTTP[@]}"; do
    f=${PEER_BIN[$s]:-}
    if [ -n "$f" ]; then
      log "cargo build --release bench/peers/$f"
      if ! cargo build --release -q --manifest-path "$PEERS/$f/Cargo.toml" \
          --target-dir "$PEER_TARGET" 2>"$WORK/build-$f.log"; then
        cat "$WORK/build-$f.log" >&2
        note "$s (bench/peers/$f) did not build; left out of this run."
        continue
      fi
    fi
    keep+=("$s")
  done
  SERVERS_HTTP=("${keep[@]}")
  # Is the built-in `sleep` app in this build? `spindle check` rejects an unknown app.
  spindle_config "$WORK/sleep-probe.toml" "" '"/sleep" = "sleep"'
  if "$SPINDLE" check --config "$WORK/sleep-probe.toml" >/dev/null 2>"$WORK/sleep-probe.err"; then
    SLEEP_OK=1
  else
    note "this spindle build has no \`sleep\` app ($(tr -d '\n' <"$WORK/sleep-probe.err")): workload 7 has no spindle figures."
  fi
}

# --- servers -------------------------------------------------------------------------
declare -A PORT SPID

# spindle_config FILE [EXTRA_TOML [EXTRA_APPS]]: the embedded default config with only
# the listeners set (127.0.0.1, port 0: "/" = hello, plus EXTRA_APPS lines, and an echo
# listener) and the access lines off. EXTRA_TOML (sections such as [pool]) is the named
# exception of the one instance that uses it.
spindle_config() {
  {
    if [ -n "${2:-}" ]; then printf '%s\n' "$2"; fi
    cat <<EOF
[log]
# INFO for the listening/ready/stopped lines; the per-request access lines off, as every
# peer runs without an access log.
level = "info,spindle::access=off"
[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
[listener.apps]
"/" = "hello"
${3:-}
[[listener]]
name = "echo"
bind = "127.0.0.1:0"
protocol = "echo"
EOF
  } >"$1"
}

# Starts spindle on $1 (config), logging to $2; sets SP_PID, SP_HTTP, SP_ECHO.
start_spindle_raw() {
  "$SPINDLE" --config "$1" 2>"$2" &
  SP_PID=$!
  PIDS+=("$SP_PID")
  local i
  for i in $(seq 1 100); do
    grep -q ' ready' "$2" 2>/dev/null && break
    sleep 0.1
  done
  grep -q ' ready' "$2" || { echo "spindle did not get ready:" >&2; cat "$2" >&2; exit 1; }
  SP_HTTP=$(grep -o 'listener=http addr=127.0.0.1:[0-9]*' "$2" | head -1 | sed 's/.*://')
  SP_ECHO=$(grep -o 'listener=echo addr=127.0.0.1:[0-9]*' "$2" | head -1 | sed 's/.*://')
}

# start_spindle NAME EXTRA_TOML [EXTRA_APPS]: a spindle instance known as NAME.
start_spindle() {
  local name=$1
  spindle_config "$WORK/$name.toml" "$2" "${3:-}"
  # `spindle check` prints the config as it will be used: the results show it.
  "$SPINDLE" check --config "$WORK/$name.toml" >"$WORK/$name.effective.toml"
  start_spindle_raw "$WORK/$name.toml" "$WORK/$name.log"
  SPID[$name]=$SP_PID; PORT[$name]=$SP_HTTP; PORT[$name-echo]=$SP_ECHO
  note_cmd target/release/spindle --config "$WORK/$name.toml"
}

# effective NAME KEY: a setting of spindle instance NAME as used (its `spindle check`).
effective() { sed -n "s/^$2 = \"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$WORK/$1.effective.toml" | head -1; }

# start_peer NAME BINARY [ARGS…]: runs BINARY PORT ARGS…, output to $WORK/NAME.out.
start_peer() {
  local name=$1 bin=$2 p; shift 2
  p=$(free_port)
  "$bin" "$p" "$@" >"$WORK/$name.out" 2>&1 &
  SPID[$name]=$!; PIDS+=("$!"); PORT[$name]=$p
  echo "${bin#"$ROOT"/} PORT${*:+ $*}" >>"$CMDS"
}

# GET / must answer "Hello, World!" before anything is measured: up to 3 tries of 5 s.
# Returns 1 (and prints what came back) if it never does.
check_hello() {
  local body i
  for i in 1 2 3; do
    body=$(exec 3<>"/dev/tcp/127.0.0.1/${PORT[$1]}"; \
      printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3; timeout 5 cat <&3) || true
    case "$body" in
      *"Hello, World!"*) return 0 ;;
    esac
  done
  echo "$1 did not answer hello: $body" >&2
  return 1
}

start_servers() {
  local p d s
  # spindle: the default config; listeners (with /sleep when the build has it) only.
  start_spindle spindle "" "$( [ "$SLEEP_OK" = 1 ] && echo '"/sleep" = "sleep"' || true)"
  SP_MAX_THREADS=$(effective spindle max_threads)
  SP_MIN_THREADS=$(effective spindle min_threads)
  start_spindle spindle-4 "[pool]
min_threads = $FIXED_POOL
max_threads = $FIXED_POOL"
  start_spindle spindle-slow "[pool]
max_threads = $SLOW_MAX_THREADS" '"/echo" = "echo"'

  # nginx: one worker, its own prefix, pid, temp paths; a non-daemon child.
  d="$WORK/nginx"; mkdir -p "$d/logs" "$d/tmp"
  p=$(free_port)
  cat >"$d/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:$p;
    location / { default_type text/plain; return 200 "Hello, World!\n"; }
  }
}
EOF
  nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" -g 'daemon off;' 2>"$d/stderr.log" &
  SPID[nginx]=$!; PIDS+=("$!"); PORT[nginx]=$p
  note_cmd nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" -g 'daemon off;'

  # The Rust peers (each takes its port as argv[1] and binds 127.0.0.1).
  for s in "${SERVERS_HTTP[@]}"; do
    case $s in
      hyper) start_peer hyper "$PEER_TARGET/release/hyper_hello" ;;   # 2 tokio workers
      astra) start_peer astra "$PEER_TARGET/release/astra_hello" ;;   # astra's default pool
      tiny_http) start_peer tiny_http "$PEER_TARGET/release/tiny_http_hello" "$TINY_THREADS" ;;
    esac
  done

  # gunicorn gthread, one worker, PY_THREADS threads.
  p=$(free_port)
  "$VENV/bin/gunicorn" --chdir "$PEERS" -b "127.0.0.1:$p" --worker-class gthread \
    --workers 1 --threads "$PY_THREADS" --log-level warning hello_wsgi:app \
    2>"$WORK/gunicorn.log" &
  SPID[gunicorn]=$!; PIDS+=("$!"); PORT[gunicorn]=$p
  note_cmd gunicorn --chdir bench/peers -b "127.0.0.1:$p" --worker-class gthread \
    --workers 1 --threads "$PY_THREADS" --log-level warning hello_wsgi:app

  # waitress: PY_THREADS threads; connection_limit raised from its default 100 so c256
  # measures the server, not a cap that parks 156 of wrk's sockets in the backlog.
  p=$(free_port)
  (cd "$PEERS" && exec "$VENV/bin/waitress-serve" --listen="127.0.0.1:$p" \
    --threads="$PY_THREADS" --connection-limit=1000 hello_wsgi:app) 2>"$WORK/waitress.log" &
  SPID[waitress]=$!; PIDS+=("$!"); PORT[waitress]=$p
  note_cmd waitress-serve --listen="127.0.0.1:$p" --threads="$PY_THREADS" \
    --connection-limit=1000 hello_wsgi:app

  # eventlet.wsgi.server on a GreenPool.
  p=$(free_port)
  (cd "$PEERS" && exec "$VENV/bin/python" eventlet_server.py "$p") \
    >/dev/null 2>"$WORK/eventlet.log" &
  SPID[eventlet]=$!; PIDS+=("$!"); PORT[eventlet]=$p
  echo "python bench/peers/eventlet_server.py PORT" >>"$CMDS"

  # thread-per-connection echo baseline.
  "$WORK/bin/echo_threads" 127.0.0.1:0 >"$WORK/echo_threads.out" 2>&1 &
  SPID[threads]=$!; PIDS+=("$!")
  echo "rustc -O --edition 2021 bench/peers/echo_threads.rs -o echo_threads  # also echo_load.rs, idle_conns.rs" >>"$CMDS"
  echo "echo_threads 127.0.0.1:0" >>"$CMDS"
  local i
  for i in $(seq 1 50); do grep -q listening "$WORK/echo_threads.out" && break; sleep 0.1; done
  PORT[threads-echo]=$(sed -n 's/^listening 127.0.0.1://p' "$WORK/echo_threads.out")

  for s in "${SERVERS_HTTP[@]}"; do wait_port "${PORT[$s]}"; done
  wait_port "${PORT[threads-echo]}"
  # Every HTTP server must answer the same body before anything is measured.
  # spindle and nginx are the point of the bench: one that fails ends the run; a peer
  # that fails is left out, and said so.
  for s in spindle spindle-4 spindle-slow nginx; do check_hello "$s" || exit 1; done
  local keep=()
  for s in "${SERVERS_HTTP[@]}"; do
    case $s in spindle|nginx) keep+=("$s"); continue ;; esac
    if check_hello "$s"; then keep+=("$s"); else note "$s did not answer GET / at start; left out of this run."; fi
  done
  SERVERS_HTTP=("${keep[@]}")
  log "servers up: $(for s in "${!PORT[@]}"; do printf '%s=%s ' "$s" "${PORT[$s]}"; done)"
}

# --- load ----------------------------------------------------------------------------
# run_wrk WORKLOAD SERVER PARAM ROUND CONNS [extra wrk args…]: records rps, requests,
# p50, p99 (ms), errors, the server's CPU time over the run (cpu_s, cores = cpu_s / wall
# time, rpcpu = requests per CPU-second), RSS and threads after the run. The URL's path
# is $WRK_PATH (default /).
run_wrk() {
  local w=$1 s=$2 param=$3 r=$4 c=$5; shift 5
  local url="http://127.0.0.1:${PORT[$s]}${WRK_PATH:-/}" out="$WORK/wrk.out"
  local cmd=(wrk -t1 "-c$c" "-d${DUR}s" --latency "$@" "$url")
  local pid=${SPID[$s]} cpu0 cpu1 t0 t1 parsed requests
  [ "$r" = 1 ] && note_cmd "${cmd[@]}"
  cpu0=$(cpu_ticks "$pid"); t0=$(date +%s%N)
  if ! timeout -k 2 $(( DUR + 15 )) "${cmd[@]}" >"$out" 2>&1; then
    echo "# wrk failed: $w $s $param r$r" >>"$RAW"
  fi
  t1=$(date +%s%N); cpu1=$(cpu_ticks "$pid")
  { echo "### $w $s $param round $r: ${cmd[*]}"; cat "$out";
    echo "# server CPU: $(( cpu1 - cpu0 )) ticks of 1/$CLK_TCK s over $(( (t1 - t0) / 1000000 )) ms"; } >>"$RAW"
  parsed=$("$VENV/bin/python" "$BENCH/report.py" parse-wrk "$out")
  while read -r k v; do record "$w" "$s" "$param" "$r" "$k" "$v"; done <<<"$parsed"
  requests=$(awk '$1 == "requests" {print $2}' <<<"$parsed")
  # A run in which not one request was answered is a failed run (report.py leaves it
  # out of the medians and counts it), and the results say so.
  [ "$requests" = NA ] && note "$s: $w ${param} round $r: wrk failed (see the .raw file)."
  [ "$requests" = 0 ] && note "$s: $w ${param} round $r: not one request answered in ${DUR}s (wrk: 0 requests); a failed run."
  awk -v a="$cpu0" -v b="$cpu1" -v hz="$CLK_TCK" -v ns=$(( t1 - t0 )) -v n="$requests" 'BEGIN {
    cpu = (b - a) / hz
    printf "cpu_s %.2f\ncores %.3f\n", cpu, cpu / (ns / 1e9)
    if (n ~ /^[0-9]+$/ && cpu > 0) printf "rpcpu %.0f\n", n / cpu; else print "rpcpu NA"
  }' | while read -r k v; do record "$w" "$s" "$param" "$r" "$k" "$v"; done
  record "$w" "$s" "$param" "$r" rss_kb "$(rss_kb "$pid")"
  record "$w" "$s" "$param" "$r" threads "$(threads_of "$pid")"
}

w1_keepalive() {
  local r c s extra
  for r in $(seq 1 "$ROUNDS"); do
    for c in "${CONNS_W1[@]}"; do
      extra=(); [ "$c" = 50 ] && extra=(spindle-4)
      for s in "${SERVERS_HTTP[@]}" "${extra[@]}"; do
        log "w1 hello keep-alive round $r c$c $s"
        run_wrk w1 "$s" "$c" "$r" "$c"
      done
    done
  done
}

w2_close() {
  local r s
  for r in $(seq 1 "$ROUNDS"); do
    for s in "${SERVERS_HTTP[@]}"; do
      log "w2 Connection: close round $r $s"
      run_wrk w2 "$s" 50 "$r" 50 -H 'Connection: close'
    done
  done
}

# 10,000 idle keep-alive connections + wrk -c50, on spindle-idle (default pool; limits
# raised to hold them: the default max_connections is 10,000 and keepalive_timeout 15 s)
# and nginx.
w3_idle() {
  local r s hold line out="$WORK/idle.out" pid rss0 i
  start_spindle spindle-idle "[limits]
max_connections = $(( IDLE_N + 1000 ))
keepalive_timeout = \"120s\""
  check_hello spindle-idle || exit 1
  hold=$(( DUR + 20 ))
  for r in $(seq 1 "$ROUNDS"); do
    for s in spindle-idle nginx; do
      log "w3 $IDLE_N idle + wrk c50 round $r $s"
      : >"$out"
      [ "$r" = 1 ] && note_cmd idle_conns "127.0.0.1:${PORT[$s]}" "$IDLE_N" "$hold"
      "$WORK/bin/idle_conns" "127.0.0.1:${PORT[$s]}" "$IDLE_N" "$hold" >"$out" 2>&1 &
      pid=$!; PIDS+=("$pid")
      for i in $(seq 1 $(( hold * 10 ))); do grep -q held= "$out" && break; sleep 0.1; done
      line=$(cat "$out")
      echo "### w3 $s round $r idle: $line" >>"$RAW"
      record w3 "$s" "$IDLE_N" "$r" held "$(sed -n 's/.*held=\([0-9]*\).*/\1/p' <<<"$line")"
      record w3 "$s" "$IDLE_N" "$r" failed "$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$line")"
      rss0=$(rss_kb "${SPID[$s]}")
      record w3 "$s" "$IDLE_N" "$r" rss_idle_kb "$rss0"
      run_wrk w3 "$s" "$IDLE_N" "$r" 50
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      forget "$pid"
      sleep 0.5   # let the server reap 10k closes before the next one starts
    done
  done
  kill -TERM "${SPID[spindle-idle]}" 2>/dev/null || true
  wait "${SPID[spindle-idle]}" 2>/dev/null || true
  forget "${SPID[spindle-idle]}"
}

w4_echo_tput() {
  local r c s port line
  for r in $(seq 1 "$ROUNDS"); do
    for c in 1 50; do
      for s in spindle threads; do
        port=${PORT[$s-echo]}
        log "w4 echo throughput round $r c$c $s"
        [ "$r" = 1 ] && note_cmd echo_load tput "127.0.0.1:$port" "$c" "$DUR"
        line=$(timeout -k 2 $(( DUR + 15 )) "$WORK/bin/echo_load" tput "127.0.0.1:$port" "$c" "$DUR" || echo "mbps=NA errors=timeout")
        echo "### w4 $s c$c round $r: $line" >>"$RAW"
        record w4 "$s" "$c" "$r" mbps "$(sed -n 's/.*mbps=\([0-9.NA]*\).*/\1/p' <<<"$line")"
        record w4 "$s" "$c" "$r" errors "$(sed -n 's/.*errors=\([0-9a-z]*\).*/\1/p' <<<"$line")"
        record w4 "$s" "$c" "$r" rss_kb "$(rss_kb "${SPID[$s]}")"
      done
    done
  done
}

w5_echo_lat() {
  local r s port line
  for r in $(seq 1 "$ROUNDS"); do
    for s in spindle threads; do
      port=${PORT[$s-echo]}
      log "w5 echo 64-byte round trip round $r $s"
      [ "$r" = 1 ] && note_cmd echo_load lat "127.0.0.1:$port" "$DUR"
      line=$(timeout -k 2 $(( DUR + 15 )) "$WORK/bin/echo_load" lat "127.0.0.1:$port" "$DUR" || echo "p50_us=NA p99_us=NA")
      echo "### w5 $s round $r: $line" >>"$RAW"
      record w5 "$s" 1 "$r" p50_us "$(sed -n 's/.*p50_us=\([0-9.NA]*\).*/\1/p' <<<"$line")"
      record w5 "$s" 1 "$r" p99_us "$(sed -n 's/.*p99_us=\([0-9.NA]*\).*/\1/p' <<<"$line")"
    done
  done
}

# SIGTERM → exit, on a spindle of its own: idle, and with wrk -c100 hammering it.
w6_stop() {
  local r mode t0 t1 rc wpid cfg="$WORK/spindle-stop.toml" lg="$WORK/spindle-stop.log"
  spindle_config "$cfg" '[server]
graceful_timeout = "10s"'
  for r in $(seq 1 "$ROUNDS"); do
    for mode in idle busy; do
      log "w6 SIGTERM→exit round $r $mode"
      start_spindle_raw "$cfg" "$lg"
      wpid=""
      if [ "$mode" = busy ]; then
        [ "$r" = 1 ] && echo "wrk -t1 -c100 -d10s http://127.0.0.1:PORT/ & sleep 2; kill -TERM \$SPINDLE_PID; wait \$SPINDLE_PID  # timed" >>"$CMDS"
        timeout -k 2 20 wrk -t1 -c100 -d10s "http://127.0.0.1:$SP_HTTP/" >"$WORK/wrk6.out" 2>&1 &
        wpid=$!; PIDS+=("$wpid")
        sleep 2
      else
        [ "$r" = 1 ] && echo "kill -TERM \$SPINDLE_PID; wait \$SPINDLE_PID  # idle, timed" >>"$CMDS"
        sleep 0.3
      fi
      t0=$(date +%s%N)
      kill -TERM "$SP_PID"
      rc=0; wait "$SP_PID" || rc=$?
      t1=$(date +%s%N)
      forget "$SP_PID"
      [ -n "$wpid" ] && { kill -TERM "$wpid" 2>/dev/null || true; wait "$wpid" 2>/dev/null || true; forget "$wpid"; }
      echo "### w6 $mode round $r: exit=$rc $(grep -o 'stopped drained=.*' "$lg" || true)" >>"$RAW"
      record w6 spindle "$mode" "$r" stop_ms "$(( (t1 - t0) / 1000000 ))"
      record w6 spindle "$mode" "$r" exit "$rc"
    done
  done
}

# Blocking app: GET /sleep?ms=20 over 200 keep-alive connections. The ideal is
# min(200, max threads) requests per 20 ms; report.py divides by it.
w7_sleep() {
  local r s mt
  for r in $(seq 1 "$ROUNDS"); do
    for s in "${SERVERS_SLEEP[@]}"; do
      if [ "$s" = spindle ]; then mt=$SP_MAX_THREADS; else mt=$PY_THREADS; fi
      record w7 "$s" "$SLEEP_CONNS" "$r" max_threads "$mt"
      record w7 "$s" "$SLEEP_CONNS" "$r" ideal \
        "$(( (mt < SLEEP_CONNS ? mt : SLEEP_CONNS) * 1000 / SLEEP_MS ))"
      if [ "$s" = spindle ] && [ "$SLEEP_OK" != 1 ]; then
        # Without the app "/sleep" would fall through to "/" = hello: nothing to measure.
        record w7 "$s" "$SLEEP_CONNS" "$r" rps NA
        continue
      fi
      log "w7 /sleep?ms=$SLEEP_MS c$SLEEP_CONNS round $r $s"
      WRK_PATH="/sleep?ms=$SLEEP_MS" run_wrk w7 "$s" "$SLEEP_CONNS" "$r" "$SLEEP_CONNS" --timeout 5s
    done
  done
}

# Slow clients: slowhttptest -H (slow headers), -B (slow body), -X (slow read) with
# SLOW_CONNS connections for SLOW_LEN seconds against spindle-slow (max_threads 8) and
# nginx, one at a time; 3 s in (the attack's connections are open by then: -r 500), the
# normal client sends its 200 GET /, one every 50 ms, 2 s each to be answered.
# -B posts to /echo: spindle's echo app reads the body (hello at / would answer without
# reading it, and the attack would measure nothing); nginx answers /echo like any path
# with its `return 200`, reading and discarding the body.
w8_slow() {
  local r mode s port pre pid line cpu0 cpu1 rss thr k v
  for r in $(seq 1 "$SLOW_ROUNDS"); do
    for mode in H B X; do
      for s in "${SERVERS_SLOW[@]}"; do
        port=${PORT[$s]}
        pre="$WORK/slow-$s-$mode-$r"
        log "w8 slowhttptest -$mode c$SLOW_CONNS ${SLOW_LEN}s round $r $s"
        local path=/; [ "$mode" = B ] && path=/echo
        local cmd=(slowhttptest "-$mode" -c "$SLOW_CONNS" -r 500 -i 5 -l "$SLOW_LEN" -p 3
                   -g -o "$pre" -u "http://127.0.0.1:$port$path")
        # Slow read: the request pipelined 10 times (slowhttptest's maximum) on each
        # connection, a 512–1024 byte receive window, 32 bytes read every 5 s.
        [ "$mode" = X ] && cmd+=(-k 10 -w 512 -y 1024 -n 5 -z 32)
        [ "$r" = 1 ] && note_cmd "${cmd[@]}"
        cpu0=$(cpu_ticks "${SPID[$s]}")
        timeout -k 5 $(( SLOW_LEN + 20 )) "${cmd[@]}" >"$pre.out" 2>&1 </dev/null &
        pid=$!; PIDS+=("$pid")
        sleep 3
        [ "$r" = 1 ] && [ "$mode" = H ] && [ "$s" = nginx ] && note_cmd python3 \
          bench/peers/normal_client.py "127.0.0.1:$port" "$NORMAL_N" "$NORMAL_GAP_MS" "$NORMAL_TIMEOUT"
        line=$(timeout -k 2 $(( NORMAL_N * NORMAL_GAP_MS / 1000 + NORMAL_TIMEOUT + 10 )) \
          "$VENV/bin/python" "$PEERS/normal_client.py" "127.0.0.1:$port" "$NORMAL_N" \
          "$NORMAL_GAP_MS" "$NORMAL_TIMEOUT" || echo "answered=NA")
        rss=$(rss_kb "${SPID[$s]}"); thr=$(threads_of "${SPID[$s]}")  # under attack
        wait "$pid" 2>/dev/null || true
        forget "$pid"
        cpu1=$(cpu_ticks "${SPID[$s]}")
        { echo "### w8 $s -$mode round $r: ${cmd[*]}"; sed 's/\x1b\[[0-9;]*m//g' "$pre.out" | tail -12
          echo "normal client: $line"; } >>"$RAW"
        for k in answered p50_ms p99_ms max_ms refused timeout bad bad_kinds; do
          v=$(sed -n "s/.*\b$k=\([^ ]*\).*/\1/p" <<<"$line")
          record w8 "$s" "$mode" "$r" "$k" "${v:-NA}"
        done
        "$VENV/bin/python" "$BENCH/report.py" parse-slow "$pre.csv" "$pre.out" |
          while read -r k v; do record w8 "$s" "$mode" "$r" "$k" "$v"; done
        record w8 "$s" "$mode" "$r" rss_kb "$rss"
        record w8 "$s" "$mode" "$r" threads "$thr"
        record w8 "$s" "$mode" "$r" cpu_s "$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / hz}')"
        # The attack's sockets are closed now; the server must answer again before the
        # next one starts (bounded: wait_port gives up after 10 s).
        sleep 1
        wait_port "$port" || note "$s did not accept connections after slowhttptest -$mode"
      done
    done
  done
}

versions() { # NAME CRATE: the crate's version in bench/peers/NAME/Cargo.lock
  awk -v c="$2" '$0 == "name = \"" c "\"" {getline; gsub(/version = |"/, ""); print; exit}' \
    "$PEERS/$1/Cargo.lock" 2>/dev/null || echo '?'
}

machine_header() {
  local cpu
  cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
  cat <<EOF
# spindle benchmark — $DATE

Produced by \`bench/run.sh$( [ "$QUICK" = 1 ] && echo " --quick")\` (mode: $( [ "$QUICK" = 1 ] && echo "quick" || echo "full"): $ROUNDS rounds × ${DUR}s runs; slow clients $SLOW_ROUNDS round(s) × ${SLOW_LEN}s per mode).
Every figure is the **median of the rounds**; servers run alternately (A B A B …)
within each round. The machine is shared and noisy: read ratios, not absolutes.

| | |
|---|---|
| nproc | $(nproc) |
| CPU | ${cpu:-unknown} |
| kernel | $(uname -sr) |
| spindle | $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)'), **default config** (pool ${SP_MIN_THREADS}..${SP_MAX_THREADS} threads, from \`spindle check\`); \`spindle-4\`: pool fixed ${FIXED_POOL}..${FIXED_POOL}; \`spindle-slow\`: max_threads $SLOW_MAX_THREADS |
| nginx | $(nginx -v 2>&1 | sed 's/.*version: //'), 1 worker |
| hyper | hyper $(versions hyper_hello hyper), tokio $(versions hyper_hello tokio), multi_thread runtime, 2 worker threads (bench/peers/hyper_hello) |
| astra | astra $(versions astra_hello astra), its default pool: 15 threads per core, max $(( 15 * $(nproc) )) here (bench/peers/astra_hello) |
| tiny_http | tiny_http $(versions tiny_http_hello tiny_http), $TINY_THREADS threads (bench/peers/tiny_http_hello) |
| gunicorn | $("$VENV/bin/python" -c 'import gunicorn; print(gunicorn.__version__)'), gthread, 1 worker × $PY_THREADS threads |
| waitress | $("$VENV/bin/python" -c 'import waitress, importlib.metadata as m; print(m.version("waitress"))'), $PY_THREADS threads, connection_limit 1000 |
| eventlet | $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("eventlet"))'), wsgi.server on GreenPool(20000) |
| echo baseline | bench/peers/echo_threads.rs (thread per connection, blocking) |
| load | $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'); slowhttptest $(dpkg-query -W -f='${Version}' slowhttptest 2>/dev/null || echo '?'); bench/peers/echo_load.rs, idle_conns.rs, normal_client.py |
| python | $("$VENV/bin/python" -V 2>&1) |
| rustc | $(rustc -V) |

EOF
  if [ -s "$NOTES" ]; then
    echo "**Not as planned in this run:**"; echo
    sed 's/^/* /' "$NOTES"; echo
  fi
}

main() {
  ulimit -n "$(ulimit -Hn)"
  mkdir -p "$BENCH/results" "$ROOT/docs"
  : >"$DATA"; : >"$CMDS"; : >"$NOTES"
  install_tools
  build
  local nofile; nofile=$(ulimit -n)
  if [ "$nofile" -lt $(( IDLE_N + 1000 )) ]; then
    IDLE_N=$(( nofile - 1000 ))
    note "ulimit -n is $nofile: workload 3 reduced to $IDLE_N idle connections"
  fi
  echo "# raw output of bench/run.sh, $(date -Is)" >"$RAW"
  start_servers
  w1_keepalive
  w2_close
  w7_sleep
  w3_idle
  w4_echo_tput
  w5_echo_lat
  w6_stop
  w8_slow
  w9_wsgi
  w10_slow
  local elapsed=$(( $(date +%s) - T_START ))
  "$VENV/bin/python" "$BENCH/report.py" plotdata "$DATA" >"$WORK/hello.dat"
  plot "$WORK/hello.dat"
  local n
  {
    machine_header
    "$VENV/bin/python" "$BENCH/report.py" markdown "$DATA" "$CMDS" "$IDLE_N" "$elapsed"
    echo "## Configs used (\$WORK is the run's temporary directory)"
    echo
    echo "Each spindle config sets the listeners and the log filter; anything else in it is"
    echo "the named exception of that instance. Below each, the config as spindle uses it"
    echo "(\`spindle check --config\`), every key not set being the embedded default."
    for n in spindle spindle-4 spindle-slow spindle-idle; do
      echo; echo "\`\$WORK/$n.toml\`:"
      echo; echo '```toml'; cat "$WORK/$n.toml"; echo '```'
      echo; echo "<details><summary>as used (<code>spindle check</code>)</summary>"
      echo; echo '```toml'; cat "$WORK/$n.effective.toml"; echo '```'; echo; echo "</details>"
    done
    echo; echo 'Workload 6 uses the first with `[server] graceful_timeout = "10s"` added.'
    echo; echo "Workload 9 (WSGI: one Flask app on spindle-wsgi, gunicorn, waitress, granian and"
    echo "eventlet) is in [\`${WSGI_MD:-(not written)}\`](${WSGI_MD:-}), written by \`bench/wsgi.sh\`."
    echo; echo "Workload 10 (issue 16: slow readers of streamed and file responses, stalled uploads"
    echo "against the buffer budgets, sendfile against nginx) is in [\`${SLOW_MD:-(not written)}\`](${SLOW_MD:-}),"
    echo "written by \`bench/slow.sh$( [ "$QUICK" = 1 ] && echo " --quick")\`."

    echo; echo '`$WORK/nginx/nginx.conf`:'
    echo; echo '```nginx'; sed "s#$WORK#\$WORK#g; s/127.0.0.1:[0-9]*/127.0.0.1:PORT/" "$WORK/nginx/nginx.conf"; echo '```'
  } >"$OUT_MD"
  log "done in ${elapsed}s: $OUT_MD, $PLOT (raw: $RAW)"
}

# Workload 9: the WSGI benchmark (issue 10), its own script and results file, at this
# run's duration and rounds. Its servers are started and stopped by bench/wsgi_bench.py.
w9_wsgi() {
  log "workload 9: WSGI (bench/wsgi.sh --duration $DUR --rounds $ROUNDS)"
  if ! "$BENCH/wsgi.sh" --duration "$DUR" --rounds "$ROUNDS" >"$WORK/wsgi.out" 2>&1; then
    note "workload 9 (bench/wsgi.sh) failed; its output ends: $(tail -n 3 "$WORK/wsgi.out" | tr '\n' ' ')"
  fi
  # The file it wrote (its own date, and -runN when the day has one already).
  WSGI_MD=$(sed -n 's#^\[wsgi-bench\] wrote bench/results/##p' "$WORK/wsgi.out" | tail -n 1)
}

# Workload 10: slow readers, buffer budgets and sendfile (issue 16), bench/slow.sh with
# its own servers (each started and stopped by it) and results file; --quick when this
# run is. SPINDLE_BIN, when given to this script, reaches it through the environment.
w10_slow() {
  local args=()
  [ "$QUICK" = 1 ] && args=(--quick)
  log "workload 10: slow readers, budgets, sendfile (bench/slow.sh${args[*]:+ ${args[*]}})"
  if ! "$BENCH/slow.sh" "${args[@]}" >"$WORK/slow.out" 2>&1; then
    note "workload 10 (bench/slow.sh) failed; its output ends: $(tail -n 3 "$WORK/slow.out" | tr '\n' ' ')"
  fi
  # The file it wrote (its own date, and -runN when the day has one already).
  SLOW_MD=$(sed -n 's#^\[slow\] wrote bench/results/##p' "$WORK/slow.out" | tail -n 1)
}

plot() {
  local term="pngcairo size 800,500 font ',10'"
  gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1 </dev/null || term="png size 800,500"
  gnuplot <<EOF
set terminal $term
set termoption noenhanced
set output '$PLOT'
set title "hello keep-alive: wrk -t1 -d${DUR}s, median of $ROUNDS rounds ($(nproc) cores, loopback)"
set xlabel "connections"
set ylabel "requests/s"
set logscale x
set xrange [0.7:400]
set xtics ("1" 1, "50" 50, "256" 256)
set key outside right
set grid
set yrange [0:*]
plot for [i=2:$(( ${#SERVERS_HTTP[@]} + 1 ))] '$1' using 1:i with linespoints lw 2 pt 7 title columnheader(i)
EOF
}

main
