#!/usr/bin/env bash
# A/B a change: nginx (the reference) and one or more spindle binaries, alternating,
# ROUNDS rounds of wrk -t1 -cC -dD on hello keep-alive; prints each binary's req/s per
# round, the median and the ratio to nginx. This is the command behind the before/after
# numbers in the perf commit messages.
#
#   cargo build --release && cp target/release/spindle /tmp/spindle-before
#   ... change ...
#   cargo build --release && bench/ab.sh /tmp/spindle-before target/release/spindle
#
# Env: ROUNDS (3), C (50), D (4, seconds), THREADS (unset: spindle's default pool;
# a number pins it, min = max).
# Needs wrk and nginx (bench/run.sh installs them). Loopback only; stops what it starts.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 SPINDLE_BIN [SPINDLE_BIN...]" >&2; exit 2; }
ROUNDS=${ROUNDS:-3} C=${C:-50} D=${D:-4} THREADS=${THREADS:-}
for tool in wrk nginx ss; do command -v "$tool" >/dev/null || { echo "$0: $tool is missing (bench/run.sh installs it)" >&2; exit 2; }; done

work=$(mktemp -d /tmp/spindle-ab.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
owner_is() { ss -ltnp | grep ":$1 " | grep -q "pid=$2,"; }

ngx_port=$(free_port)
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$ngx_port; location / { return 200 "Hello, World!\n"; } }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

sp_port=$(free_port)
cat >"$work/spindle.toml" <<EOF
$( [ -n "$THREADS" ] && printf '[pool]\nmin_threads = %s\nmax_threads = %s\n' "$THREADS" "$THREADS" )
[limits]
keepalive_timeout = "120s"
max_requests_per_connection = 1000000
[log]
level = "warn"
[[listener]]
name = "http"
bind = "127.0.0.1:$sp_port"
protocol = "http"
[listener.apps]
"/" = "hello"
EOF

rps() { wrk -t1 "-c$C" "-d${D}s" "http://127.0.0.1:$1/" | awk '/Requests\/sec/ { print int($2) }'; }

declare -A results
names=(nginx "$@")
for _ in $(seq "$ROUNDS"); do
  for name in "${names[@]}"; do
    if [ "$name" = nginx ]; then
      results[$name]+="$(rps "$ngx_port") "
      continue
    fi
    "$name" --config "$work/spindle.toml" 2>"$work/spindle.log" &
    sp=$!
    for _ in $(seq 50); do owner_is "$sp_port" "$sp" && break; sleep 0.1; done
    owner_is "$sp_port" "$sp" || { echo "$0: $name did not bind 127.0.0.1:$sp_port" >&2; cat "$work/spindle.log" >&2; exit 1; }
    results[$name]+="$(rps "$sp_port") "
    kill -TERM "$sp"
    wait "$sp"
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ref=$(echo "${results[nginx]}" | median)
for name in "${names[@]}"; do
  m=$(echo "${results[$name]}" | median)
  printf '%-40s %s median %s  ratio to nginx %.2f\n' "$name" "${results[$name]}" "$m" "$(echo "$m / $ref" | bc -l)"
done
