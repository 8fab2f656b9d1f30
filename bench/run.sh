#!/usr/bin/env bash
# bench/run.sh — spindle against its peers, on 127.0.0.1 only.
#
# Owns: installing the bench's tools (apt: wrk, nginx, gnuplot-nox; pip into bench/.venv:
# gunicorn, waitress, eventlet), building spindle and the no-crate Rust peers, starting
# every server on a free loopback port, running the workloads round-robin (A B A B …),
# and writing bench/results/<date>.md plus docs/bench-hello.png.
# Stops: everything it started is killed by saved PID on EXIT (trap); every load run is
# bounded by its own duration and by `timeout`.
#
# Usage: bench/run.sh [--quick]
#   --quick  2 rounds, 2 s runs (so the whole run stays under 3 minutes); default is
#            3 rounds, 10 s runs. The results file says which was used.
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
DATE="$(date +%F)"
OUT_MD="$BENCH/results/$DATE.md"
RAW="$BENCH/results/$DATE.raw"
PLOT="$ROOT/docs/bench-hello.png"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/spindle-bench.XXXXXX")"
DATA="$WORK/data.tsv"        # workload server param round metric value
CMDS="$WORK/commands.txt"    # every load command, with ports written as PORT

THREADS=4                    # spindle pool size == gunicorn/waitress threads
if [ "$QUICK" = 1 ]; then
  ROUNDS=2; DUR=2            # seconds per load run
  IDLE_N=10000               # workload 3 idle connections
else
  ROUNDS=3; DUR=10
  IDLE_N=10000
fi
CONNS_W1=(1 50 256)
SERVERS_HTTP=(spindle nginx gunicorn waitress eventlet)
T_START=$(date +%s)

log() { printf '[bench %3ss] %s\n' "$(( $(date +%s) - T_START ))" "$*" >&2; }

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

# Sum of VmRSS (KiB) of a process and its direct children (nginx/gunicorn workers).
rss_kb() {
  local pid=$1 total=0 p v
  for p in "$pid" $(pgrep -P "$pid" 2>/dev/null || true); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$(( total + ${v:-0} ))
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
  command -v rustc >/dev/null || { echo "rustc/cargo needed (rustup)" >&2; exit 1; }
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

build() {
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release -q)
  SPINDLE="$ROOT/target/release/spindle"
  mkdir -p "$WORK/bin"
  local f
  for f in echo_threads echo_load idle_conns; do
    rustc -O --edition 2021 "$PEERS/$f.rs" -o "$WORK/bin/$f"
  done
}

# --- servers -------------------------------------------------------------------------
declare -A PORT SPID

spindle_config() { # $1 = file, $2 = graceful_timeout
  cat >"$1" <<EOF
[server]
graceful_timeout = "${2:-30s}"
[pool]
min_threads = $THREADS
max_threads = $THREADS
queue_capacity = 1024
[limits]
max_connections = 20000
keepalive_timeout = "120s"
max_requests_per_connection = 1000000
[log]
# INFO for the listening/ready/stopped lines; the per-response access lines off.
level = "info,spindle::access=off"
[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
[listener.apps]
"/" = "hello"
[[listener]]
name = "echo"
bind = "127.0.0.1:0"
protocol = "echo"
EOF
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

start_servers() {
  local p d
  # spindle
  spindle_config "$WORK/spindle.toml"
  start_spindle_raw "$WORK/spindle.toml" "$WORK/spindle.log"
  SPID[spindle]=$SP_PID; PORT[spindle]=$SP_HTTP; PORT[spindle-echo]=$SP_ECHO
  note_cmd target/release/spindle --config "$WORK/spindle.toml"

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
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$p;
    location / { default_type text/plain; return 200 "Hello, World!\n"; }
  }
}
EOF
  nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" -g 'daemon off;' 2>"$d/stderr.log" &
  SPID[nginx]=$!; PIDS+=("$!"); PORT[nginx]=$p
  note_cmd nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" -g 'daemon off;'

  # gunicorn gthread, one worker, THREADS threads.
  p=$(free_port)
  "$VENV/bin/gunicorn" --chdir "$PEERS" -b "127.0.0.1:$p" --worker-class gthread \
    --workers 1 --threads "$THREADS" --log-level warning hello_wsgi:app \
    2>"$WORK/gunicorn.log" &
  SPID[gunicorn]=$!; PIDS+=("$!"); PORT[gunicorn]=$p
  note_cmd gunicorn --chdir bench/peers -b "127.0.0.1:$p" --worker-class gthread \
    --workers 1 --threads "$THREADS" --log-level warning hello_wsgi:app

  # waitress: THREADS threads; connection_limit raised from its default 100 so c256
  # measures the server, not a cap that parks 156 of wrk's sockets in the backlog.
  p=$(free_port)
  (cd "$PEERS" && exec "$VENV/bin/waitress-serve" --listen="127.0.0.1:$p" \
    --threads="$THREADS" --connection-limit=1000 hello_wsgi:app) 2>"$WORK/waitress.log" &
  SPID[waitress]=$!; PIDS+=("$!"); PORT[waitress]=$p
  note_cmd waitress-serve --listen="127.0.0.1:$p" --threads="$THREADS" \
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

  for p in nginx gunicorn waitress eventlet; do wait_port "${PORT[$p]}"; done
  wait_port "${PORT[threads-echo]}"
  # Every HTTP peer must answer the same body before anything is measured.
  for p in "${SERVERS_HTTP[@]}"; do
    local body
    body=$(exec 3<>"/dev/tcp/127.0.0.1/${PORT[$p]}"; \
      printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3; timeout 5 cat <&3)
    case "$body" in
      *"Hello, World!"*) ;;
      *) echo "$p did not answer hello: $body" >&2; exit 1 ;;
    esac
  done
  log "servers up: $(for s in "${!PORT[@]}"; do printf '%s=%s ' "$s" "${PORT[$s]}"; done)"
}

# --- load ----------------------------------------------------------------------------
# run_wrk WORKLOAD SERVER PARAM ROUND CONNS [extra wrk args…]: records rps, p50, p99
# (ms), errors, RSS after the run.
run_wrk() {
  local w=$1 s=$2 param=$3 r=$4 c=$5; shift 5
  local url="http://127.0.0.1:${PORT[$s]}/" out="$WORK/wrk.out"
  local cmd=(wrk -t1 "-c$c" "-d${DUR}s" --latency "$@" "$url")
  [ "$r" = 1 ] && note_cmd "${cmd[@]}"
  if ! timeout -k 2 $(( DUR + 15 )) "${cmd[@]}" >"$out" 2>&1; then
    echo "# wrk failed: $w $s $param r$r" >>"$RAW"
  fi
  { echo "### $w $s $param round $r: ${cmd[*]}"; cat "$out"; } >>"$RAW"
  "$VENV/bin/python" "$BENCH/report.py" parse-wrk "$out" | while read -r k v; do
    record "$w" "$s" "$param" "$r" "$k" "$v"
  done
  record "$w" "$s" "$param" "$r" rss_kb "$(rss_kb "${SPID[$s]}")"
}

w1_keepalive() {
  local r c s
  for r in $(seq 1 "$ROUNDS"); do
    for c in "${CONNS_W1[@]}"; do
      for s in "${SERVERS_HTTP[@]}"; do
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

w3_idle() {
  local r s hold line out="$WORK/idle.out" pid rss0 rss1
  hold=$(( DUR + 20 ))
  for r in $(seq 1 "$ROUNDS"); do
    for s in spindle nginx; do
      log "w3 $IDLE_N idle + wrk c50 round $r $s"
      : >"$out"
      [ "$r" = 1 ] && note_cmd idle_conns "127.0.0.1:${PORT[$s]}" "$IDLE_N" "$hold"
      "$WORK/bin/idle_conns" "127.0.0.1:${PORT[$s]}" "$IDLE_N" "$hold" >"$out" 2>&1 &
      pid=$!; PIDS+=("$pid")
      local i
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
      sleep 0.5   # let the server reap 10k closes before the next one starts
    done
  done
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
  spindle_config "$cfg" 10s
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
      [ -n "$wpid" ] && { kill -TERM "$wpid" 2>/dev/null || true; wait "$wpid" 2>/dev/null || true; }
      echo "### w6 $mode round $r: exit=$rc $(grep -o 'stopped:.*' "$lg" || true)" >>"$RAW"
      record w6 spindle "$mode" "$r" stop_ms "$(( (t1 - t0) / 1000000 ))"
      record w6 spindle "$mode" "$r" exit "$rc"
    done
  done
}

machine_header() {
  local cpu
  cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
  cat <<EOF
# spindle benchmark — $DATE

Produced by \`bench/run.sh$( [ "$QUICK" = 1 ] && echo " --quick")\` (mode: $( [ "$QUICK" = 1 ] && echo "quick: $ROUNDS rounds × ${DUR}s runs" || echo "full: $ROUNDS rounds × ${DUR}s runs")).
Every figure is the **median of $ROUNDS rounds**; servers run alternately (A B A B …)
within each round. The machine is shared and noisy: read ratios, not absolutes.

| | |
|---|---|
| nproc | $(nproc) |
| CPU | ${cpu:-unknown} |
| kernel | $(uname -sr) |
| spindle | $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)'), pool $THREADS..$THREADS threads |
| nginx | $(nginx -v 2>&1 | sed 's/.*version: //'), 1 worker |
| gunicorn | $("$VENV/bin/python" -c 'import gunicorn; print(gunicorn.__version__)'), gthread, 1 worker × $THREADS threads |
| waitress | $("$VENV/bin/python" -c 'import waitress, importlib.metadata as m; print(m.version("waitress"))'), $THREADS threads, connection_limit 1000 |
| eventlet | $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("eventlet"))'), wsgi.server on GreenPool(20000) |
| echo baseline | bench/peers/echo_threads.rs (thread per connection, blocking) |
| load | $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'); bench/peers/echo_load.rs; bench/peers/idle_conns.rs |
| python | $("$VENV/bin/python" -V 2>&1) |
| rustc | $(rustc -V) |

EOF
}

main() {
  ulimit -n "$(ulimit -Hn)"
  mkdir -p "$BENCH/results" "$ROOT/docs"
  : >"$DATA"; : >"$CMDS"
  install_tools
  build
  local nofile; nofile=$(ulimit -n)
  if [ "$nofile" -lt $(( IDLE_N + 1000 )) ]; then
    IDLE_N=$(( nofile - 1000 ))
    log "ulimit -n is $nofile: workload 3 reduced to $IDLE_N idle connections"
  fi
  echo "# raw output of bench/run.sh, $(date -Is)" >"$RAW"
  start_servers
  w1_keepalive
  w2_close
  w3_idle
  w4_echo_tput
  w5_echo_lat
  w6_stop
  local elapsed=$(( $(date +%s) - T_START ))
  "$VENV/bin/python" "$BENCH/report.py" plotdata "$DATA" >"$WORK/hello.dat"
  plot "$WORK/hello.dat"
  {
    machine_header
    "$VENV/bin/python" "$BENCH/report.py" markdown "$DATA" "$CMDS" "$IDLE_N" "$elapsed"
    echo "## Configs used (\$WORK is the run's temporary directory)"
    echo; echo '`$WORK/spindle.toml` (workload 6 uses the same with `graceful_timeout = "10s"`):'
    echo; echo '```toml'; cat "$WORK/spindle.toml"; echo '```'
    echo; echo '`$WORK/nginx/nginx.conf`:'
    echo; echo '```nginx'; sed "s#$WORK#\$WORK#g; s/127.0.0.1:[0-9]*/127.0.0.1:PORT/" "$WORK/nginx/nginx.conf"; echo '```'
  } >"$OUT_MD"
  log "done in ${elapsed}s: $OUT_MD, $PLOT (raw: $RAW)"
}

plot() {
  local term="pngcairo size 800,500 font ',10'"
  gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1 </dev/null || term="png size 800,500"
  gnuplot <<EOF
set terminal $term
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
