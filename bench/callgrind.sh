#!/usr/bin/env bash
# Instructions per request, exactly (valgrind's callgrind counts instructions, not
# seconds: the same for the same binary and inputs whatever else the machine does).
# Runs each binary twice under callgrind, serving N1 and then N2 keep-alive hello
# requests on one connection from a Python client, and prints
# (Ir(N2) - Ir(N1)) / (N2 - N1): the server's instructions per request, start-up and
# shutdown cancelled out.
#
#   bench/callgrind.sh /tmp/spindle-before target/release/spindle
#
# Env: N1 (2000), N2 (12000), TARGET ("/", a path of the default config).
# Needs valgrind (apt-get install valgrind). Loopback only; stops what it starts.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 SPINDLE_BIN [SPINDLE_BIN...]" >&2; exit 2; }
N1=${N1:-2000} N2=${N2:-12000} TARGET=${TARGET:-/}
command -v valgrind >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq valgrind >/dev/null; }
work=$(mktemp -d /tmp/spindle-cg.XXXXXX)
trap 'rm -rf "$work"' EXIT

cat >"$work/spindle.toml" <<CONF
[pool]
min_threads = 1
max_threads = 1
[limits]
max_requests_per_connection = 1000000
[log]
level = "warn"
[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
CONF

cat >"$work/client.py" <<'PY'
import socket, sys, time
addr, n, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host, port = addr.rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=30)
req = f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
buf = b""
for _ in range(n):
    s.sendall(req)
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1")
            length = next(int(l.split(":", 1)[1]) for l in head.split("\r\n") if l.lower().startswith("content-length:"))
            if len(buf) >= end + 4 + length:
                buf = buf[end + 4 + length:]
                break
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("server closed")
        buf += chunk
s.close()
PY

run() { # bin n -> total Ir
  local bin=$1 n=$2 out="$work/cg.$RANDOM" ready="$work/ready.$RANDOM"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --config "$work/spindle.toml" --ready-file "$ready" run \
    >"$work/log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do [ -s "$ready" ] && break; sleep 0.1; done
  [ -s "$ready" ] || { cat "$work/log" >&2; kill -KILL $pid; exit 1; }
  local addr; addr=$(awk '$1=="listener"{print $3; exit}' "$ready")
  python3 "$work/client.py" "$addr" "$n" "$TARGET"
  kill -TERM $pid; wait $pid || true
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",","",$1); print $1; done=1}'
}

for bin in "$@"; do
  a=$(run "$bin" "$N1"); b=$(run "$bin" "$N2")
  echo "$bin: $(( (b - a) / (N2 - N1) )) instructions per request (Ir $a at $N1, $b at $N2)"
done
