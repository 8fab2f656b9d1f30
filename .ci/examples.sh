#!/usr/bin/env bash
# The README's examples, run for real: starts target/debug/spindle (built by
# `cargo test` before this runs; built here only if missing) with an echo listener
# and an HTTP listener on 127.0.0.1:0, reads the bound ports from its log, drives
# it with curl and netcat, checks every output, then stops it with SIGTERM and
# expects exit status 0. One "ok - ..." line per check; the last line counts them.
# Every client call carries its own timeout, so a hang fails instead of blocking.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/spindle
[ -x "$bin" ] || cargo build --quiet

dir=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    echo "daemon log:" >&2
    cat "$dir/log" >&2 || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

cat >"$dir/spindle.toml" <<'EOF'
[server]
graceful_timeout = "10s"
[pool]
min_threads = 2
max_threads = 4
[log]
level = "info"

[[listener]]
name = "echo"
bind = "127.0.0.1:0"
protocol = "echo"

[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
[listener.apps]
"/" = "hello"
"/echo" = "echo"
"/environ" = "environ"
"/healthz" = "healthz"
"/readyz" = "readyz"
"/metrics" = "metrics"
"/status" = "status"
EOF

env -u RUST_LOG "$bin" --config "$dir/spindle.toml" </dev/null >/dev/null 2>"$dir/log" &
pid=$!

# Readiness: the daemon logs " ready" once every listener is bound and the pool runs.
for _ in $(seq 100); do
  grep -q ' ready' "$dir/log" && break
  kill -0 "$pid" 2>/dev/null || { echo "spindle exited before ready" >&2; exit 1; }
  sleep 0.1
done
grep -q ' ready' "$dir/log" || { echo "spindle not ready after 10s" >&2; exit 1; }

port_of() { # listener name -> port, from "listening listener=NAME addr=IP:PORT"
  sed -n "s/.*listening listener=\"\\{0,1\\}$1\"\\{0,1\\} addr=\"\\{0,1\\}127\\.0\\.0\\.1:\\([0-9]*\\).*/\\1/p" "$dir/log" | head -n 1
}
P=$(port_of http)
ECHO=$(port_of echo)
[ -n "$P" ] && [ -n "$ECHO" ] || { echo "no listening lines in the log" >&2; exit 1; }
base="http://127.0.0.1:$P"

passed=0
failed=0
check() { # description, then a command whose status decides
  local what=$1
  shift
  if "$@"; then
    echo "ok - $what"
    passed=$((passed + 1))
  else
    echo "not ok - $what"
    failed=$((failed + 1))
  fi
}
same() { # what, want, got
  [ "$2" = "$3" ] && return 0
  printf '  %s: want %q, got %q\n' "$1" "$2" "$3" >&2
  return 1
}

hello() { same "GET /" "Hello, World!" "$(curl -s -m 5 "$base/")"; }
head_request() {
  local got
  got=$(curl -sI -m 5 "$base/" | tr -d '\r')
  grep -q '^HTTP/1.1 200' <<<"$got" && grep -qi '^content-length: 14$' <<<"$got" && return 0
  printf '  HEAD /: %s\n' "$got" >&2
  return 1
}
chunked_upload() { same "PUT /echo (chunked)" "some data" "$(printf 'some data' | curl -s -m 5 -T - "$base/echo")"; }
http10() { same "GET / over HTTP/1.0" "Hello, World!" "$(curl -s -m 5 --http1.0 "$base/")"; }
reuse() {
  local got
  got=$(curl -sv -m 5 "$base/" "$base/healthz" 2>&1)
  grep -qi 're-using\|reusing' <<<"$got" && return 0
  printf '  curl -v:\n%s\n' "$got" >&2
  return 1
}
raw_http() {
  local got
  got=$(printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | timeout 5 nc -N 127.0.0.1 "$P" | tr -d '\r')
  grep -q '^HTTP/1.1 200' <<<"$got" && grep -qx 'Hello, World!' <<<"$got" && return 0
  printf '  nc (http): %q\n' "$got" >&2
  return 1
}
raw_echo() { same "nc (echo)" "hello" "$(printf 'hello\n' | timeout 5 nc -N 127.0.0.1 "$ECHO")"; }

check "curl / says Hello, World!" hello
check "curl -I / is 200 with Content-Length: 14" head_request
check "a chunked upload (curl -T -) to /echo comes back" chunked_upload
check "curl --http1.0 / works" http10
check "curl re-uses the connection for / then /healthz" reuse
check "a raw HTTP/1.1 request over nc gets 200" raw_http
check "nc to the echo listener gets hello back" raw_echo

stopped() {
  kill -TERM "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "  still running 10s after SIGTERM" >&2
    return 1
  fi
  local status=0
  wait "$pid" || status=$?
  same "exit status after SIGTERM" 0 "$status"
}
check "SIGTERM stops the daemon with exit status 0" stopped

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
