#!/usr/bin/env bash
# bench/engine.sh — the connection engine's overload and upload figures, on 127.0.0.1.
#
# 1. Overload, 3 runs: spindle with pool 4..4 and queue_capacity 16 serving
#    /sleep?ms=50 (capacity 80 req/s) is offered 800 new connections a second for 5 s
#    (10x), open loop (bench/peers/overload.py); then every waiting client hangs up (as
#    wrk does at the end of a run) and a probe every 5 ms measures recovery: the time
#    from the end of the load to the first 200.
# 2. Uploads, 1 run: 200 concurrent 8 MiB POSTs to /echo on the default config, each
#    read back and compared (bench/peers/uploads.py), with the server's peak RSS.
# Writes bench/results/<date>-engine.md. Stops what it starts (by PID, on EXIT).
#
# Usage: [SPINDLE_BIN=path] bench/engine.sh
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
OUT="$BENCH/results/$(date +%F)-engine.md"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/spindle-engine.XXXXXX")"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

if [ -z "${SPINDLE_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
  SPINDLE_BIN="$ROOT/target/release/spindle"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# start_spindle NAME EXTRA_TOML APPS_TOML: sets SP_PID and SP_PORT.
start_spindle() {
  SP_PORT=$(free_port)
  cat >"$WORK/$1.toml" <<TOML
$2
[log]
level = "info,spindle::access=off"
[[listener]]
name = "http"
bind = "127.0.0.1:$SP_PORT"
protocol = "http"
[listener.apps]
$3
TOML
  "$SPINDLE_BIN" --config "$WORK/$1.toml" 2>"$WORK/$1.log" &
  SP_PID=$!
  PIDS+=("$SP_PID")
  wait_port "$SP_PORT"
}
stop_spindle() { kill -TERM "$SP_PID"; wait "$SP_PID" || true; }

{
  echo "# spindle engine figures — $(date +%F)"
  echo
  echo "Produced by \`bench/engine.sh\` on $(nproc) cores, $(uname -sr), spindle $(cd "$ROOT" && git rev-parse --short HEAD)."
  echo
  echo "## Overload: 10x the capacity of a 50 ms app"
  echo
  echo 'spindle: `[pool] min_threads = 4, max_threads = 4, queue_capacity = 16`, app `/sleep?ms=50`'
  echo '(capacity 4 / 50 ms = 80 req/s). Load: `python3 bench/peers/overload.py PORT /sleep?ms=50 800 5`'
  echo '(800 new connections a second for 5 s, open loop; at the end every waiting client hangs'
  echo 'up). `recovery` is from the end of the load to the first 200 of a new request (which'
  echo 'itself takes 50 ms).'
  echo
  echo "| run | offered | 200 | 503 | cut at stop | other | 503 p50 ms | 503 p99 ms | 200 p50 ms | 200 p99 ms | recovery ms |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
} >"$OUT"
for r in 1 2 3; do
  start_spindle overload $'[pool]\nmin_threads = 4\nmax_threads = 4\nqueue_capacity = 16' '"/sleep" = "sleep"'
  line=$(timeout 60 python3 "$BENCH/peers/overload.py" "$SP_PORT" "/sleep?ms=50" 800 5)
  stop_spindle
  echo "overload run $r: $line" >&2
  get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$line"; }
  echo "| $r | $(get offered) | $(get ok) | $(get shed) | $(get cut_at_stop) | $(get other) | $(get shed_p50_ms) | $(get shed_p99_ms) | $(get ok_p50_ms) | $(get ok_p99_ms) | $(get recovery_ms) |" >>"$OUT"
done

start_spindle uploads "" $'"/echo" = "echo"'
line=$(timeout 300 python3 "$BENCH/peers/uploads.py" "$SP_PORT" "$SP_PID" 200 $((8 << 20)))
threads=$(ls "/proc/$SP_PID/task" | wc -l)
stop_spindle
echo "uploads: $line" >&2
get() { sed -n "s/.*$1 \([^ ]*\).*/\1/p" <<<"$line"; }
{
  echo
  echo "## 200 concurrent 8 MiB uploads to /echo (default config)"
  echo
  echo 'Load: `python3 bench/peers/uploads.py PORT PID 200 8388608` (each body read back and'
  echo 'compared by sha256). Bodies over `body_buffer_bytes` (64 KiB) are spilled to unnamed'
  echo 'temporary files; peak RSS is the server'"'"'s VmHWM.'
  echo
  echo "| intact | failed | seconds | RSS before KiB | peak RSS KiB | peak spilled bodies open | threads after |"
  echo "|---|---|---|---|---|---|---|"
  echo "| $(get ok) | $(get failed) | $(get seconds) | $(get rss_before_kib) | $(get peak_rss_kib) | $(get peak_spilled_bodies) | $threads |"
} >>"$OUT"
echo "wrote $OUT" >&2
