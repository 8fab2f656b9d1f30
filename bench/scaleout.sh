#!/usr/bin/env bash
# bench/scaleout.sh — spindle beyond one process, under load, on 127.0.0.1 only.
#
# Owns the operational proof of issue 11: several instances behind HAProxy
# (docs/haproxy.cfg, run as it is), restarted one after the other while wrk drives
# load through HAProxy; two instances sharing a port with reuse_port, one stopped
# under load, in the default network namespace and in a fresh one with
# net.ipv4.tcp_migrate_req=1; a SIGUSR2 binary upgrade under load; and HAProxy's
# PROXY header (send-proxy and send-proxy-v2) reaching /environ as REMOTE_ADDR.
# Every scenario prints one line, "PASS name: counts" or "FAIL name: counts (why)",
# and the script exits 1 if any failed.
#
# Scenarios:
#   a  rolling restart through HAProxy: SIGTERM A, wait for its exit, start it again,
#      wait until HAProxy sees it UP; then the same for B. wrk -t2 -c50 for DUR s.
#      Target: 0 non-2xx responses, 0 socket errors.
#   b  reuse_port pair: two instances on one port, wrk straight at it; each instance
#      in turn stopped (SIGTERM) and started again. Keep-alive and one connection
#      per request ("Connection: close"), each in the default network namespace
#      (Linux resets connections still queued on the closing listener: counted,
#      not a failure) and in `unshare -n` with net.ipv4.tcp_migrate_req=1 (target 0).
#   c  SIGUSR2 upgrade: spindle started from a copy of the binary, the copy replaced
#      under load, SIGUSR2 to the old PID; the new PID (from the ready file) must
#      differ and serve; target 0 / 0.
#   d  PROXY through HAProxy: curl bound to 127.0.0.2 via HAProxy (which connects
#      from 127.0.0.1) to /environ, with send-proxy (v1) and send-proxy-v2;
#      REMOTE_ADDR must be 127.0.0.2. Also: a connection without the header is closed
#      without a response.
#   e  restart with the socket held: bench/scaleout-holder.py keeps the listening
#      socket and starts spindle again when it exits (a systemd .socket unit with
#      `systemctl restart`); SIGTERM under load, keep-alive and Connection: close;
#      target 0 / 0, and wrk's max latency shows the gap.
#
# Usage: [SPINDLE_BIN=path] bench/scaleout.sh [--quick] [--only a,b,c,d,e]
#   --quick  a and d only, wrk for 10 s, the debug build (what `cargo test` built):
#            under a minute once built. This is the CI line.
#   default  a to e, wrk for 25 s through HAProxy (20 s per run of b, c, e), the
#            release build; the output is also written to
#            bench/results/<date>-scaleout.md (about 4 minutes once built).
#   --only   run just these scenarios (with either mode).
#   SPINDLE_BIN  use this binary instead of building one.
# Needs root only for scenario b's namespace (unshare -n, sysctl); without it that
# half is reported as SKIP.
#
# Stops: everything it starts is killed by saved PID on EXIT (trap); each wrk run is
# bounded by its duration and by `timeout`; every wait has a deadline.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
LUA="$BENCH/scaleout-count.lua"
HAPROXY_CFG="$ROOT/docs/haproxy.cfg"

QUICK=0
ONLY=""
INNER=""  # set when the script re-runs itself inside `unshare -n` (scenario b)
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) ONLY="${2:?--only needs a list such as a,d}"; shift ;;
    --netns-inner) INNER="${2:?}"; shift ;;
    *) echo "usage: $0 [--quick] [--only a,b,c,d,e]" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  DUR=10; PAIR_DUR=10; SCENARIOS="${ONLY:-a,d}"
else
  DUR=25; PAIR_DUR=20; SCENARIOS="${ONLY:-a,b,c,d,e}"
fi
DRAIN_DELAY=2s     # > HAProxy's inter 500ms x fall 2 (docs/haproxy.cfg)
PAIR_DRAIN=1s      # scenario b: no balancer to tell, the delay only lets keep-alive
                   # clients move off before the listener closes

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spindle-scaleout.XXXXXX")"
SUMMARY="$WORK/summary.txt"  # PASS/FAIL lines, in order
DETAIL="$WORK/detail.txt"    # wrk outputs and commands, for the results file
PIDS=()                      # everything started here, killed on exit ...
declare -A STARTED=()        # ... if still the same process: PID -> its start time
FAILED=0

log() { printf '%s %s\n' "$(date -u +%T)" "$*" >&2; }
note() { printf '%s\n' "$@" >>"$DETAIL"; }
result() {  # result PASS|FAIL|SKIP "name: counts"
  printf '%s %s\n' "$1" "$2" | tee -a "$SUMMARY"
  [ "$1" != FAIL ] || FAILED=1
}

# PIDs wrap quickly here (pid_max 32768 and parallel builds), so a PID is only
# signalled while /proc shows the process that was recorded under it (alive below).
cleanup() {
  local p
  for p in "${PIDS[@]}"; do if alive "$p"; then kill -TERM "$p" 2>/dev/null || true; fi; done
  # Whatever is still running 5 s later (a drain) is killed.
  for _ in $(seq 50); do
    local any=0
    for p in "${PIDS[@]}"; do if alive "$p"; then any=1; fi; done
    [ "$any" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi; done
  wait 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

# ---- tools and binary -------------------------------------------------------------

install_tools() {
  local missing=()
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  command -v unshare >/dev/null || missing+=(util-linux)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v sysctl >/dev/null || missing+=(procps)
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=180 update -qq
    apt-get -o DPkg::Lock::Timeout=180 install -y -qq "${missing[@]}" >/dev/null
  fi
  # Debian's package starts its own haproxy.service where systemd runs; it listens on
  # nothing by default and is left alone: this script runs its own haproxy -db.
}

build_spindle() {
  if [ -n "${SPINDLE_BIN:-}" ]; then
    BIN="$(realpath "$SPINDLE_BIN")"
  elif [ "$QUICK" = 1 ]; then
    log "cargo build (debug, as cargo test builds it)"
    (cd "$ROOT" && cargo build --quiet)
    BIN="$ROOT/target/debug/spindle"
  else
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
    BIN="$ROOT/target/release/spindle"
  fi
  [ -x "$BIN" ] || { echo "$0: no spindle binary at $BIN" >&2; exit 2; }
}

# Does this spindle know proxy_protocol? (`check --no-bind` refuses an unknown key.)
detect_proxy() {
  cat >"$WORK/probe.toml" <<EOF
[[listener]]
name = "http"
bind = "127.0.0.1:1"
protocol = "http"
proxy_protocol = "v2"
proxy_trusted = ["127.0.0.1/32"]
EOF
  if "$BIN" check --no-bind --quiet --config "$WORK/probe.toml" >/dev/null 2>&1; then
    HAVE_PROXY=1
  else
    HAVE_PROXY=0
  fi
}

# ---- spindle instances ------------------------------------------------------------

# write_config FILE PORT DRAIN [REUSE_PORT] [PROXY]: one HTTP listener with the apps
# the scenarios use; PROXY is "", "v1", "v2" or "any" (then only 127.0.0.1 may send it).
write_config() {
  local file=$1 port=$2 drain=$3 reuse=${4:-false} proxy=${5:-}
  {
    printf '[server]\ndrain_delay = "%s"\ngraceful_timeout = "10s"\n' "$drain"
    # Per-request access lines off: they would cost more than the requests.
    printf '[log]\nlevel = "warn"\n'
    printf '[limits]\nkeepalive_timeout = "60s"\nmax_requests_per_connection = 1000000\n'
    printf '[[listener]]\nname = "http"\nbind = "127.0.0.1:%s"\nprotocol = "http"\n' "$port"
    printf 'reuse_port = %s\n' "$reuse"
    if [ -n "$proxy" ]; then
      printf 'proxy_protocol = "%s"\nproxy_trusted = ["127.0.0.1/32"]\n' "$proxy"
    fi
    printf '[listener.apps]\n"/" = "hello"\n"/environ" = "environ"\n"/readyz" = "readyz"\n'
  } >"$file"
}

# start NAME CONFIG [BINARY]: starts spindle, sets PID_<NAME>, waits until ready.
start() {
  local name=$1 config=$2 bin=${3:-$BIN} ready="$WORK/$1.ready" pid
  "$bin" --config "$config" --ready-file "$ready" >>"$WORK/$name.log" 2>&1 &
  pid=$!
  track "$pid"
  printf -v "PID_$name" '%s' "$pid"
  wait_ready "$name" "$pid" 15
}

# wait_ready NAME PID SECONDS: the ready file names PID (it is written by rename, so
# a line read is a whole line).
wait_ready() {
  local name=$1 pid=$2 deadline=$(( $(date +%s) + $3 )) ready="$WORK/$1.ready"
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ -f "$ready" ] && head -n1 "$ready" 2>/dev/null | grep -qx "pid $pid"; then
      return 0
    fi
    alive "$pid" || { log "$name (pid $pid) exited before ready:"; tail -5 "$WORK/$name.log" >&2; return 1; }
    sleep 0.02
  done
  log "$name (pid $pid) not ready within $3 s"; return 1
}

# stat PID: "STATE STARTTIME" from /proc/PID/stat (fields 3 and 22; the command
# name in parentheses is cut off first, so a space in it cannot shift the fields).
proc_stat() {
  local line
  line=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  line=${line##*) }
  awk '{ print $1, $20 }' <<<"$line"
}

# track PID: started by this run (or by a process it started); cleaned up on exit.
track() {
  local st
  PIDS+=("$1")
  st=$(proc_stat "$1") && STARTED[$1]=${st#* }
  return 0
}

# alive PID: still running, and still the process tracked under that PID. A child of
# this shell is reaped by bash as it exits; the successor of a SIGUSR2 upgrade is not
# ours (its parent was the old process) and whoever reaps it may be slow: a zombie
# counts as gone.
alive() {
  local st
  st=$(proc_stat "$1") || return 1
  [ "${st%% *}" != Z ] || return 1
  [ -z "${STARTED[$1]:-}" ] || [ "${st#* }" = "${STARTED[$1]}" ]
}

# wait_exit PID SECONDS
wait_exit() {
  local pid=$1 deadline=$(( $(date +%s) + $2 ))
  while alive "$pid"; do
    [ "$(date +%s)" -lt "$deadline" ] || { log "pid $pid still running after $2 s"; return 1; }
    sleep 0.02
  done
}

# stop NAME: SIGTERM, wait for the exit (drain_delay + in-flight work).
stop() {
  local name=$1 pidvar="PID_$1"
  alive "${!pidvar}" || return 0
  kill -TERM "${!pidvar}"
  wait_exit "${!pidvar}" 20
}

# ---- HAProxy ----------------------------------------------------------------------

# start_haproxy SEND_PROXY: docs/haproxy.cfg as it is, on this run's ports.
start_haproxy() {
  SPINDLE_FRONT="127.0.0.1:$FRONT" SPINDLE_A="127.0.0.1:$PORT_A" SPINDLE_B="127.0.0.1:$PORT_B" \
    SPINDLE_STATS="127.0.0.1:$STATS" SPINDLE_SEND_PROXY="$1" \
    haproxy -db -f "$HAPROXY_CFG" >>"$WORK/haproxy.log" 2>&1 &
  HAPROXY_PID=$!
  track "$HAPROXY_PID"
  wait_haproxy a UP 15 && wait_haproxy b UP 15
}

stop_haproxy() {
  alive "$HAPROXY_PID" || return 0
  kill -TERM "$HAPROXY_PID"
  wait_exit "$HAPROXY_PID" 10
}

# HAProxy's view of a server: column 18 of the stats CSV (UP, DOWN, "UP 1/2", ...).
haproxy_status() {
  curl -s --max-time 1 "http://127.0.0.1:$STATS/stats;csv" 2>/dev/null |
    awk -F, -v s="$1" '$1 == "spindle" && $2 == s { print $18 }'
}

# wait_haproxy SERVER STATE SECONDS
wait_haproxy() {
  local deadline=$(( $(date +%s) + $3 )) st=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    st=$(haproxy_status "$1")
    [ "$st" = "$2" ] && return 0
    sleep 0.05
  done
  log "haproxy: server $1 is '$st', not $2, after $3 s"; return 1
}

# ---- wrk --------------------------------------------------------------------------

# wrk_start NAME URL SECONDS [close]: in the background; wrk_finish NAME parses it.
wrk_start() {
  local name=$1 url=$2 secs=$3 close=${4:-}
  note "\$ ${close:+SCALEOUT_CLOSE=1 }wrk -t2 -c50 -d${secs}s --timeout 5s -s bench/scaleout-count.lua $url"
  SCALEOUT_CLOSE=${close:+1} timeout $(( secs + 20 )) \
    wrk -t2 -c50 -d"${secs}s" --timeout 5s -s "$LUA" "$url" >"$WORK/wrk-$name.out" 2>&1 &
  WRK_PID=$!
  track "$WRK_PID"
  WRK_T0=$(date +%s)
}

# Sets REQ NON2XX ERRS (connect+read+write+timeout) and ERRTXT.
wrk_finish() {
  local name=$1 line
  wait "$WRK_PID" || true
  cat "$WORK/wrk-$name.out" >>"$DETAIL"
  line=$(grep '^SCALEOUT ' "$WORK/wrk-$name.out" || true)
  if [ -z "$line" ]; then
    REQ=0 NON2XX=0 ERRS=-1 ERRTXT="wrk printed no counts" LAT_MAX="?"
    return
  fi
  local kv
  for kv in ${line#SCALEOUT }; do printf -v "W_${kv%%=*}" '%s' "${kv#*=}"; done
  REQ=$W_requests NON2XX=$W_non2xx
  LAT_MAX=$(awk '$1 == "Latency" { print $4 }' "$WORK/wrk-$name.out")
  ERRS=$(( W_connect + W_read + W_write + W_timeout ))
  ERRTXT="connect $W_connect, read $W_read, write $W_write, timeout $W_timeout"
}

# Sleeps until SECONDS after wrk started (the schedule of a scenario).
at() { while [ $(( $(date +%s) - WRK_T0 )) -lt "$1" ]; do sleep 0.05; done; }

counts() { printf 'requests %s, non-2xx %s, socket errors %s (%s)' "$REQ" "$NON2XX" "$ERRS" "$ERRTXT"; }

# ---- scenario a: rolling restart through HAProxy -----------------------------------

scenario_a() {
  rolling_run keepalive
  # Clients opening a connection per request: HAProxy keeps its own pooled server
  # connections, so this mostly loads HAProxy; not in --quick.
  [ "$QUICK" = 1 ] || rolling_run close
}

# rolling_run keepalive|close
rolling_run() {
  local mode=$1 close="" proxy="" send=no-send-proxy-v2
  [ "$mode" = close ] && close=1
  if [ "$HAVE_PROXY" = 1 ]; then proxy=v2; send="send-proxy-v2"; fi
  PORT_A=$(free_port) PORT_B=$(free_port) FRONT=$(free_port) STATS=$(free_port)
  write_config "$WORK/a.toml" "$PORT_A" "$DRAIN_DELAY" false "$proxy"
  write_config "$WORK/b.toml" "$PORT_B" "$DRAIN_DELAY" false "$proxy"
  start a "$WORK/a.toml" && start b "$WORK/b.toml" && start_haproxy "$send" || {
    result FAIL "a rolling restart, $mode: setup failed"; return; }
  note "" "## a: rolling restart through HAProxy, $mode ($send, drain_delay $DRAIN_DELAY)"
  wrk_start "rolling-$mode" "http://127.0.0.1:$FRONT/" "$DUR" "$close"
  local ok=1 name t0 down_ms up_ms timeline=""
  # Load before, between and after the two restarts (each takes about 3 s).
  for name in a b; do
    if [ "$name" = a ]; then at 2; else at $(( DUR / 2 )); fi
    t0=$(now_ms)
    kill -TERM "$(eval echo "\$PID_$name")"
    # Informational: when HAProxy took it out (must be before drain_delay ends).
    wait_haproxy "$name" DOWN 10 || ok=0
    down_ms=$(( $(now_ms) - t0 ))
    wait_exit "$(eval echo "\$PID_$name")" 20 || ok=0
    start "$name" "$WORK/$name.toml" || ok=0
    wait_haproxy "$name" UP 10 || ok=0
    up_ms=$(( $(now_ms) - t0 ))
    timeline+="$name: DOWN in HAProxy after ${down_ms} ms, back UP after ${up_ms} ms; "
    log "restarted $name: DOWN in HAProxy after ${down_ms} ms, back UP after ${up_ms} ms"
  done
  local finished_in=$(( $(date +%s) - WRK_T0 ))
  wrk_finish "rolling-$mode"
  note "timeline: ${timeline}restarts done ${finished_in}s into the ${DUR}s run"
  local msg="a rolling restart through HAProxy, $mode ($send, wrk ${DUR}s): $(counts); ${timeline% }"
  if [ "$ok" = 1 ] && [ "$finished_in" -lt "$DUR" ] && [ "$REQ" -gt 0 ] && [ "$NON2XX" = 0 ] && [ "$ERRS" = 0 ]; then
    result PASS "$msg"
  else
    [ "$finished_in" -lt "$DUR" ] || msg+=" (restarts outlasted the load run)"
    [ "$ok" = 1 ] || msg+=" (a restart step failed, see log)"
    result FAIL "$msg"
    grep -v '^\[NOTICE\]' "$WORK/haproxy.log" | tail -5 >&2 || true
  fi
  stop_haproxy || true; stop a || true; stop b || true
}

# ---- scenario b: reuse_port pair ---------------------------------------------------

# One run: two instances on one port, each stopped and started again under wrk.
# Prints the counts; the caller judges them.
pair_run() {
  local label=$1 close=${2:-} port
  port=$(free_port)
  write_config "$WORK/p.toml" "$port" "$PAIR_DRAIN" true
  start p1 "$WORK/p.toml" && start p2 "$WORK/p.toml" || { echo "setup failed"; return 1; }
  wrk_start "pair-$label" "http://127.0.0.1:$port/" "$PAIR_DUR" "$close"
  local name third=$(( PAIR_DUR / 3 ))
  at 2
  stop p1 && start p1 "$WORK/p.toml"
  at $(( 2 + third ))
  stop p2 && start p2 "$WORK/p.toml"
  local finished_in=$(( $(date +%s) - WRK_T0 ))
  wrk_finish "pair-$label"
  stop p1 || true; stop p2 || true
  [ "$finished_in" -lt "$PAIR_DUR" ] || ERRTXT+="; restarts outlasted the run"
  PAIR_MSG="$(counts)"
}

scenario_b() {
  local mode close migrate
  migrate=$(cat /proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null || echo missing)
  for mode in keepalive close; do
    close=""; [ "$mode" = close ] && close=1
    note "" "## b: reuse_port pair, $mode, default namespace (tcp_migrate_req=$migrate)"
    pair_run "default-$mode" "$close"
    # Without tcp_migrate_req the kernel resets what is queued on the closing
    # listener: the count is the finding, not a failure of spindle.
    if [ "$migrate" = 1 ]; then
      if [ "$NON2XX" = 0 ] && [ "$ERRS" = 0 ] && [ "$REQ" -gt 0 ]; then
        result PASS "b reuse_port pair, $mode, default netns (tcp_migrate_req=1): $PAIR_MSG"
      else
        result FAIL "b reuse_port pair, $mode, default netns (tcp_migrate_req=1): $PAIR_MSG"
      fi
    else
      result INFO "b reuse_port pair, $mode, default netns (tcp_migrate_req=$migrate, failures expected): $PAIR_MSG"
    fi
  done
  if [ "$(id -u)" != 0 ] || ! unshare -n true 2>/dev/null; then
    result SKIP "b reuse_port pair in a new netns with tcp_migrate_req=1: unshare -n not permitted here"
    return
  fi
  for mode in keepalive close; do
    note "" "## b: reuse_port pair, $mode, unshare -n with net.ipv4.tcp_migrate_req=1"
    # The inner run prints its counts as "PAIR <msg>" and its wrk output to stderr.
    local out
    out=$(SPINDLE_BIN="$BIN" KEEP_WORK='' timeout $(( PAIR_DUR + 90 )) \
      unshare -n -- "$BENCH/scaleout.sh" --netns-inner "$mode:1" 2>>"$DETAIL") || true
    out=$(printf '%s\n' "$out" | sed -n 's/^PAIR //p')
    if printf '%s' "$out" | grep -q '^ok '; then
      result PASS "b reuse_port pair, $mode, unshare -n + tcp_migrate_req=1: ${out#ok }"
    else
      out=${out#bad }
      result FAIL "b reuse_port pair, $mode, unshare -n + tcp_migrate_req=1: ${out:-inner run printed nothing}"
    fi
  done
}

# Inside `unshare -n`: loopback up, tcp_migrate_req on, one pair run.
netns_inner() {
  local mode=${1%%:*} migrate=${1#*:}
  ip link set lo up
  sysctl -q -w net.ipv4.tcp_migrate_req="$migrate"
  local close=""; [ "$mode" = close ] && close=1
  nstat -n  # the namespace's own TCP counters, from zero
  pair_run "netns-$mode" "$close" || true
  # What the kernel did with connections on the closing listeners: migrated to the
  # other one, or reset (AbortOnClose: closed with unread data, the client's request).
  note "kernel counters: $(nstat -z TcpExtTCPMigrateReqSuccess TcpExtTCPMigrateReqFailure TcpExtTCPAbortOnClose TcpExtListenDrops TcpExtListenOverflows TcpEstabResets TcpOutRsts 2>/dev/null | awk 'NR > 1 { printf "%s %s, ", $1, $2 }')"
  cat "$DETAIL" >&2
  if [ "$NON2XX" = 0 ] && [ "$ERRS" = 0 ] && [ "$REQ" -gt 0 ]; then
    echo "PAIR ok $PAIR_MSG"
  else
    echo "PAIR bad $PAIR_MSG"
  fi
}

# ---- scenario c: SIGUSR2 binary upgrade --------------------------------------------

scenario_c() {
  upgrade_run keepalive
  upgrade_run close
}

# upgrade_run keepalive|close: one upgrade under wrk, judged on its own.
upgrade_run() {
  local mode=$1 close="" port bin="$WORK/bin/spindle" old new
  [ "$mode" = close ] && close=1
  mkdir -p "$WORK/bin"
  cp "$BIN" "$bin"
  port=$(free_port)
  write_config "$WORK/u.toml" "$port" 1s
  start u "$WORK/u.toml" "$bin" || { result FAIL "c SIGUSR2 upgrade, $mode: setup failed"; return; }
  old=$PID_u
  note "" "## c: SIGUSR2 upgrade under load, $mode (the binary file replaced, then kill -USR2 OLDPID)"
  wrk_start "upgrade-$mode" "http://127.0.0.1:$port/" "$PAIR_DUR" "$close"
  at 3
  # Replace the file the way a package manager does: a new inode renamed over the
  # path (writing into a running executable fails with ETXTBSY).
  cp "$BIN" "$bin.new" && mv -f "$bin.new" "$bin"
  local t0 ok=1 up_ms
  t0=$(now_ms)
  kill -USR2 "$old"
  # The successor writes the same ready file with its own PID.
  new=$(ready_pid u "$old" 15) || { ok=0; new=none; }
  up_ms=$(( $(now_ms) - t0 ))
  [ "$new" = none ] || track "$new"
  wait_exit "$old" 20 || ok=0
  local gone_ms=$(( $(now_ms) - t0 ))
  # The successor runs the file now at the path (the old process ran the inode that
  # was replaced, "... (deleted)" in /proc).
  local exe_new=no
  if [ "$new" != none ]; then
    alive "$new" || ok=0
    [ "$(readlink "/proc/$new/exe" 2>/dev/null)" = "$bin" ] && exe_new=yes
  fi
  [ "$exe_new" = yes ] || ok=0
  local finished_in=$(( $(date +%s) - WRK_T0 ))
  [ "$finished_in" -lt "$PAIR_DUR" ] || ok=0
  wrk_finish "upgrade-$mode"
  local serving=0
  curl -sf --max-time 2 "http://127.0.0.1:$port/" >/dev/null && serving=1
  local msg
  msg="c SIGUSR2 upgrade under load, $mode (wrk ${PAIR_DUR}s): $(counts), latency max $LAT_MAX; pid $old -> $new (new ready after ${up_ms} ms, old gone after ${gone_ms} ms), new pid runs the replaced file: $exe_new, serving afterwards: $serving"
  note "$msg"
  if [ "$ok" = 1 ] && [ "$serving" = 1 ] && [ "$REQ" -gt 0 ] && [ "$NON2XX" = 0 ] && [ "$ERRS" = 0 ]; then
    result PASS "$msg"
  else
    result FAIL "$msg"
    tail -5 "$WORK/u.log" >&2
  fi
  if [ "$new" != none ] && alive "$new"; then kill -TERM "$new"; wait_exit "$new" 20 || true; fi
  if alive "$old"; then kill -TERM "$old"; wait_exit "$old" 20 || true; fi
}

# ---- scenario e: restart with the socket held (socket activation) -----------------

scenario_e() {
  restart_run keepalive
  restart_run close
}

# restart_run keepalive|close: bench/scaleout-holder.py holds the port as a systemd
# socket unit does and starts spindle again whenever it exits; SIGTERM to spindle
# under load is then `systemctl restart spindle` of a socket-activated service.
restart_run() {
  local mode=$1 close="" port old new
  [ "$mode" = close ] && close=1
  port=$(free_port)
  write_config "$WORK/s.toml" "$port" 1s
  python3 "$BENCH/scaleout-holder.py" "$port" http \
    "$BIN" --config "$WORK/s.toml" --ready-file "$WORK/s.ready" >>"$WORK/s.log" 2>&1 &
  local holder=$!
  track "$holder"
  old=$(ready_pid s "" 15) || { result FAIL "e restart with the socket held, $mode: setup failed"; return; }
  track "$old"
  note "" "## e: restart with the socket held (as a systemd .socket unit), $mode: kill -TERM SPINDLEPID, started again by the holder"
  wrk_start "restart-$mode" "http://127.0.0.1:$port/" "$PAIR_DUR" "$close"
  at 3
  local t0 ok=1 up_ms
  t0=$(now_ms)
  kill -TERM "$old"
  new=$(ready_pid s "$old" 20) || { ok=0; new=none; }
  up_ms=$(( $(now_ms) - t0 ))
  [ "$new" = none ] || track "$new"
  local finished_in=$(( $(date +%s) - WRK_T0 ))
  [ "$finished_in" -lt "$PAIR_DUR" ] || ok=0
  wrk_finish "restart-$mode"
  local msg
  msg="e restart with the socket held (systemctl restart + .socket), $mode (wrk ${PAIR_DUR}s): $(counts), latency max $LAT_MAX; pid $old -> $new (new ready ${up_ms} ms after the SIGTERM, drain_delay 1s)"
  note "$msg"
  if [ "$ok" = 1 ] && [ "$REQ" -gt 0 ] && [ "$NON2XX" = 0 ] && [ "$ERRS" = 0 ]; then
    result PASS "$msg"
  else
    result FAIL "$msg"
    tail -5 "$WORK/s.log" >&2
  fi
  if alive "$holder"; then kill -TERM "$holder"; fi
  wait_exit "$holder" 20 || true
}

# ready_pid NAME NOT SECONDS: prints the PID in NAME's ready file once it is there
# and is not NOT (for a process this shell did not start).
ready_pid() {
  local deadline=$(( $(date +%s) + $3 )) pid
  while [ "$(date +%s)" -lt "$deadline" ]; do
    pid=$(sed -n 's/^pid //p' "$WORK/$1.ready" 2>/dev/null | head -n1)
    if [ -n "$pid" ] && [ "$pid" != "$2" ]; then echo "$pid"; return 0; fi
    sleep 0.02
  done
  log "$1: no new ready file within $3 s"; return 1
}

# ---- scenario d: PROXY through HAProxy ---------------------------------------------

scenario_d() {
  if [ "$HAVE_PROXY" = 0 ]; then
    result SKIP "d PROXY through HAProxy: this spindle has no proxy_protocol key"
    return
  fi
  # The client's address must differ from HAProxy's own (127.0.0.1): bind curl to
  # 127.0.0.2, which Linux's loopback answers for the whole 127/8.
  local rc=0
  curl -s --max-time 2 --interface 127.0.0.2 -o /dev/null "http://127.0.0.1:$(free_port)/" || rc=$?
  if [ "$rc" = 45 ]; then  # 45: could not bind the local address; 7 (refused) is fine
    result FAIL "d PROXY through HAProxy: cannot bind a client to 127.0.0.2"
    return
  fi
  local version send addr reject
  for version in v1 v2; do
    send="send-proxy"; [ "$version" = v2 ] && send="send-proxy-v2"
    PORT_A=$(free_port) PORT_B=$(free_port) FRONT=$(free_port) STATS=$(free_port)
    write_config "$WORK/a.toml" "$PORT_A" 0s false "$version"
    write_config "$WORK/b.toml" "$PORT_B" 0s false "$version"
    if ! { start a "$WORK/a.toml" && start b "$WORK/b.toml" && start_haproxy "$send"; }; then
      result FAIL "d PROXY $version ($send): setup failed (did HAProxy's checks pass?)"
      continue
    fi
    # Two requests: round robin, so both instances answer one. Each carries a
    # spoofed X-Forwarded-For, which must not be believed (no forwarded_trusted).
    addr=""
    for _ in 1 2; do
      addr+="$(curl -s --max-time 2 --interface 127.0.0.2 -H 'X-Forwarded-For: 203.0.113.66' \
        "http://127.0.0.1:$FRONT/environ" | sed -n 's/^REMOTE_ADDR=//p' | tr -d '\r') "
    done
    # Straight to spindle: from a trusted address without the header, and from an
    # untrusted one (127.0.0.2 is not in proxy_trusted). Both must be closed at once
    # without a response: curl's exit 52 (empty reply) or 56 (reset), not 28 (timed
    # out waiting, as it would be if spindle waited for header_timeout).
    reject=""
    local src rc
    for src in 127.0.0.1 127.0.0.2; do
      rc=0
      curl -s --max-time 2 --interface "$src" -o /dev/null "http://127.0.0.1:$PORT_A/" || rc=$?
      reject+="$rc "
    done
    reject=${reject% }
    note "" "## d: PROXY $version: curl --interface 127.0.0.2 -H 'X-Forwarded-For: 203.0.113.66' http://127.0.0.1:FRONT/environ -> REMOTE_ADDR $addr; straight to spindle without a header from 127.0.0.1 and 127.0.0.2 -> curl exit $reject"
    local msg="d PROXY $version (HAProxy $send): REMOTE_ADDR via HAProxy (spoofed X-Forwarded-For sent) = ${addr% }; straight to spindle without a header, from 127.0.0.1 / 127.0.0.2 (untrusted): curl exit $reject (52 = closed unanswered)"
    if [ "${addr% }" = "127.0.0.2 127.0.0.2" ] && [[ "$reject" =~ ^(52|56)\ (52|56)$ ]]; then
      result PASS "$msg"
    else
      result FAIL "$msg (want 127.0.0.2 twice and 000, no response)"
    fi
    stop_haproxy || true; stop a || true; stop b || true
  done
}

# ---- main -------------------------------------------------------------------------

if [ -n "$INNER" ]; then
  BIN="$SPINDLE_BIN"
  netns_inner "$INNER"
  exit 0
fi

T_START=$(date +%s)
install_tools
build_spindle
detect_proxy
log "spindle $BIN (proxy_protocol: $([ "$HAVE_PROXY" = 1 ] && echo yes || echo no)); scenarios $SCENARIOS"
{
  echo "spindle: $("$BIN" --version 2>/dev/null) ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "haproxy: $(haproxy -v | head -n1)"
  echo "wrk: $(wrk -v 2>&1 | head -n1)"
  echo "kernel: $(uname -r), $(nproc) CPUs; tcp_migrate_req in the default netns: $(cat /proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null || echo missing)"
} >>"$DETAIL"

for s in ${SCENARIOS//,/ }; do
  case "$s" in
    a) scenario_a ;;
    b) scenario_b ;;
    c) scenario_c ;;
    d) scenario_d ;;
    e) scenario_e ;;
    *) echo "$0: unknown scenario $s" >&2; exit 2 ;;
  esac
done
log "done in $(( $(date +%s) - T_START )) s"

if [ "$QUICK" = 0 ] && [ -z "$ONLY" ]; then
  out="$ROOT/bench/results/$(date +%F)-scaleout.md"
  {
    echo "# bench/scaleout.sh — $(date -u '+%F %H:%M UTC')"
    echo
    echo "Command: \`bench/scaleout.sh\` (all scenarios, wrk ${DUR} s through HAProxy, ${PAIR_DUR} s per reuse_port and upgrade run)."
    echo
    echo '```'
    cat "$SUMMARY"
    echo '```'
    echo
    echo "## Detail"
    echo
    echo '```'
    cat "$DETAIL"
    echo '```'
  } >"$out"
  log "wrote $out"
fi
exit "$FAILED"
