#!/usr/bin/env bash
# spindle under a real systemd: a minimal Debian root made with debootstrap,
# booted with `systemd-nspawn -b` (systemd as the container's PID 1, its own
# network namespace with only loopback), spindle installed the way README.md
# says (its install block and its socket-activation block are read out of the
# README and run line by line), then the behaviour an operator relies on:
#
#   notify start (READY=1), STATUS=, reload with a good and a broken file,
#   stop (Result=success, the drained summary), socket activation (both
#   sockets, the first connection to each starts the service, a restart under a
#   curl and an nc loop loses nothing, one socket alone), the binary upgrade
#   (SIGUSR2: MAINPID= handed over, no restart, nothing lost, still supervised),
#   the watchdog (SIGSTOP -> abort -> restart), and no SIGSYS/EPERM in the journal.
#
# One "PASS: ..." / "FAIL: ..." line per check, a summary line last; exit 1 if
# any check failed. Where the machine cannot do this at all (not root, no apt
# sources to take a mirror from, debootstrap or nspawn failing), one
# "SKIP: <why>" line and exit 0.
#
# How we talk to the container: --register=no means no machinectl, so commands
# run in the container's namespaces with `nsenter -t <its PID 1> -a` (systemctl,
# journalctl), and clients run from the host's tools in its network namespace
# only (`nsenter -n`).
#
# The debootstrap root is cached as a directory under $SPINDLE_CI_CACHE (default
# /var/cache/spindle-ci), keyed by suite, architecture and package list; each
# run boots it with --volatile=overlay (writes go to a tmpfs), so runs never see
# each other's state and the cache stays as debootstrap made it. First run:
# 1-2 min for debootstrap; then ~25 s, 10 of them waiting on the watchdog.
# SPINDLE_CI_HOLD=<seconds> keeps the container up at the end, for debugging;
# SPINDLE_CI_RESTARTS=<n> repeats the restart under the client loops n times.
set -eEuo pipefail
# set -e must never end a run without a word: name the command that stopped it.
err_rc=0
# (Only in the script's own shell: -E hands the trap to subshells too, such as a
# $(...) whose failure is expected and whose output is read.)
trap 'err_rc=$?; [ "$BASHPID" != "$$" ] || echo "FAIL: .ci/systemd.sh stopped at line $LINENO: $BASH_COMMAND (exit $err_rc)"' ERR
cd "$(dirname "$0")/.."

# --- bookkeeping -------------------------------------------------------------
passed=0
failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }
check() { # description, then a command whose status decides
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
skip_all() {
  echo "SKIP: systemd checks not run: $*"
  exit 0
}
note() { echo "   $*"; }
section() { echo "== $* [${SECONDS}s]"; } # seconds since the start: where the time goes

suite=${SPINDLE_CI_SUITE:-}
# How many restarts under the client loops (a race that loses one connection in
# ten restarts needs more than one to show).
restarts=${SPINDLE_CI_RESTARTS:-1}
cache=${SPINDLE_CI_CACHE:-/var/cache/spindle-ci}
# dbus: logind needs it (else the container boots "degraded"); procps: /bin/kill
# for ExecReload=. Clients (curl, nc) are the host's, run in the container's
# network namespace, so the root needs none.
packages=systemd,systemd-sysv,dbus,procps

[ "$(id -u)" = 0 ] || skip_all "needs root (debootstrap, systemd-nspawn, nsenter); running as uid $(id -u)"

work=$(mktemp -d /var/tmp/spindle-systemd.XXXXXX)
nspawn_pid=
cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    # SIGTERM makes nspawn ask the container's systemd to power off.
    kill -TERM "$nspawn_pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$nspawn_pid" 2>/dev/null; then
      echo "   container did not power off in 15s: SIGKILL to nspawn $nspawn_pid"
      kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
    wait "$nspawn_pid" 2>/dev/null || true
    echo "   container powered off [${SECONDS}s]"
  fi
  # --one-file-system: never follow a mount that is somehow still there.
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v nc >/dev/null 2>&1 || need+=(netcat-openbsd)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! { timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq "${need[@]}"; } >"$work/apt.log" 2>&1; then
    tail -n 5 "$work/apt.log"
    skip_all "apt-get install ${need[*]} failed (see above)"
  fi
fi

# --- the root file system ----------------------------------------------------
# The suite of this machine (so the root's glibc runs the binary built here) and
# a mirror from this machine's apt sources: deb822 *.sources first, then
# one-line *.list. Prints "URI KEYRING" (KEYRING may be empty).
if [ -z "$suite" ]; then
  suite=$( (. /etc/os-release && echo "${VERSION_CODENAME:-}") 2>/dev/null || true)
fi
[ -n "$suite" ] || skip_all "cannot tell this machine's release (no VERSION_CODENAME in /etc/os-release); set SPINDLE_CI_SUITE"
arch=$(dpkg --print-architecture 2>/dev/null || true)
[ -n "$arch" ] || skip_all "no dpkg here: not a Debian-like machine"

apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    # Paragraphs are separated by blank lines; fields may be in any order.
    awk -v suite="$1" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && enabled != "no" && uri != "")
          { print uri, keyring; found = 1; exit }
        types = suites = uri = keyring = enabled = ""
      }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      tolower($1) == "types:"     { $1 = ""; types = substr($0, 2) }
      tolower($1) == "suites:"    { $1 = ""; suites = substr($0, 2) }
      tolower($1) == "uris:"      { uri = $2 }
      tolower($1) == "signed-by:" { keyring = ($2 ~ /^\//) ? $2 : "" }
      tolower($1) == "enabled:"   { enabled = tolower($2) }
      END { if (!found) flush() }
    ' "$f" | grep -E '^(https?|file)://' | head -n 1 && return 0
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    # deb [options] URI suite components...
    awk -v suite="$1" '
      $1 == "deb" {
        i = 2; keyring = ""
        if ($2 ~ /^\[/) {
          for (; i <= NF; i++) {
            if ($i ~ /^\[?signed-by=/) { k = $i; sub(/^\[?signed-by=/, "", k); sub(/\]$/, "", k); keyring = k }
            if ($i ~ /\]$/) { i++; break }
          }
        }
        if ($(i + 1) == suite) { print $i, keyring; exit }
      }' "$f" | grep -E '^(https?|file)://' | head -n 1 && return 0
  done
  return 1
}

key=$(printf '%s' "$packages" | sha256sum | cut -c1-8)
cached="$cache/debian-$suite-$arch-$key"
if [ -d "$cached/etc" ]; then
  echo "== root: cached $cached"
else
  read -r mirror keyring < <(apt_mirror "$suite") ||
    skip_all "no 'deb' line for suite $suite in /etc/apt/sources.list{,.d/*.list,.d/*.sources} to take a mirror from"
  echo "== root: debootstrap --variant=minbase $suite from $mirror (once; cached in $cached)"
  mkdir -p "$cache"
  opts=(--variant=minbase --include="$packages")
  [ -n "${keyring:-}" ] && [ -r "$keyring" ] && opts+=(--keyring="$keyring")
  partial="$cached.partial-$$"
  if ! timeout 900 debootstrap "${opts[@]}" "$suite" "$partial" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 15 "$work/debootstrap.log"
    rm -rf --one-file-system "$partial"
    skip_all "debootstrap $suite from $mirror failed (log tail above)"
  fi
  # An empty machine-id: each boot gets a transient one, as a fresh image should.
  : >"$partial/etc/machine-id"
  # Built aside then renamed, so an interrupted run never leaves half a cache.
  mv -T "$partial" "$cached"
fi
# The container never writes to the cache: --volatile=overlay puts a tmpfs over it
# (nothing to unpack before a run, nothing to delete after). Without overlayfs,
# a copy of it.
root=$cached
volatile=(--volatile=overlay)
if ! grep -qw overlay /proc/filesystems && ! modprobe overlay 2>/dev/null; then
  echo "   no overlayfs here: booting a copy of the root"
  root=$work/root
  cp -a "$cached" "$root"
  volatile=()
fi

# --- what the README's install steps need, at the paths it names --------------
# The release binary is built here (the root has no toolchain) and copied in with
# the files the README's commands install, into /src, their working directory.
section "cargo build --release"
timeout 1200 cargo build --release --quiet
target_dir=${CARGO_TARGET_DIR:-target}
src=$work/src # bound read-only at /src
mkdir -p "$src/target/release"
cp "$target_dir/release/spindle" "$src/target/release/spindle"
cp -r config systemd README.md "$src/"

# The README's first ```sh block after a heading or marker line, one command a
# line: comments and `sudo ` dropped (we are root), and `cargo build` left out
# (done above, outside). A line continued with a backslash is not supported.
readme_block() { # marker (an awk regex matching the line before the block)
  awk -v marker="$1" '
    !started && $0 ~ marker { armed = 1; next }
    armed && /^```sh$/ { started = 1; armed = 0; next }
    started && /^```$/ { exit }
    started { print }' README.md |
    sed -e 's/[[:space:]]#.*$//' -e 's/^sudo //' -e 's/[[:space:]]*$//' |
    grep -v -e '^$' -e '^cargo build'
}
readme_block '^## Install as a systemd service' >"$work/install.sh"
readme_block '^\*\*Socket activation\*\*' >"$work/sockets.sh"
for f in install sockets; do
  [ -s "$work/$f.sh" ] || { fail "README: found no \`\`\`sh block for the $f steps"; exit 1; }
done

# --- boot -------------------------------------------------------------------
machine="spindle-ci-$$"
section "boot: systemd-nspawn -b --register=no --keep-unit --private-network ($machine)"
# setsid: nspawn gets its own session, so our timeouts and Ctrl-C reach it only
# through cleanup(), which powers the container off.
setsid systemd-nspawn --quiet -D "$root" -M "$machine" -b --register=no --keep-unit \
  --private-network "${volatile[@]}" --bind-ro="$src:/src" </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!
leader=
for _ in $(seq 300); do
  kill -0 "$nspawn_pid" 2>/dev/null || break
  for c in $(pgrep -P "$nspawn_pid" 2>/dev/null); do
    [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && leader=$c
  done
  [ -n "$leader" ] && break
  sleep 0.1
done
if [ -z "$leader" ]; then
  tail -n 20 "$work/console.log"
  skip_all "systemd-nspawn could not boot the root here (console tail above)"
fi

ct_env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0)
ct() { # a command inside the container (all its namespaces), bounded to 60s
  timeout -k 5 60 nsenter -t "$leader" -a "${ct_env[@]}" "$@"
}
ctsh() { ct bash -c "$1"; }
net() { # a host command in the container's network namespace only, bounded to 60s
  timeout -k 5 60 nsenter -t "$leader" -n "$@"
}
show() { ct systemctl show -p "$2" --value "$1"; } # unit, property
journal() { ct journalctl --no-pager -o cat "$@"; }

state=
for _ in $(seq 60); do
  state=$(timeout 5 nsenter -t "$leader" -a "${ct_env[@]}" systemctl is-system-running --wait 2>/dev/null || true)
  case $state in running | degraded) break ;; esac
  kill -0 "$nspawn_pid" 2>/dev/null || break
  sleep 0.5
done
case $state in
  running | degraded) echo "   booted: $state; systemd $(ct systemctl --version | head -n 1 | cut -d' ' -f2)" ;;
  *)
    tail -n 20 "$work/console.log"
    skip_all "the container's systemd did not finish booting within 30s (state '${state:-none}')"
    ;;
esac
[ "$state" = degraded ] && ct systemctl --failed --no-legend | sed 's/^/   failed unit (not ours): /'

# --- helpers for the checks -------------------------------------------------
wait_for() { # seconds, then a command: poll every 0.2s until it succeeds
  local n=$(($1 * 5))
  shift
  for _ in $(seq "$n"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}
# (No `grep -q` after a pipe: with pipefail its early exit can fail the writer.)
has() { grep -E -- "$1" >/dev/null; }      # stdin has a line matching the regex
lacks() { ! grep -i -E -- "$1" >/dev/null; } # stdin has none (case-insensitive)
state_is() { test "$(show "$1" ActiveState)" = "$2"; }
http_ok() { test "$(net curl -fsS -m 5 http://127.0.0.1:8080/ 2>/dev/null)" = 'Hello, World!'; }
echo_ok() { test "$(printf 'ping\n' | net nc -N -w 5 127.0.0.1 7007 2>/dev/null)" = ping; }
both_ok() { http_ok && echo_ok; }
status_has() { show spindle.service StatusText | has "$1"; }
# The journal of our units since a cursor (so a check sees only its own lines).
cursor() { ct journalctl --no-pager -n 0 --show-cursor | sed -n 's/^-- cursor: //p'; }
since() { journal -u spindle.service -u spindle-echo.socket -u spindle-http.socket --after-cursor="$1"; }
# Show the journal lines a check is about (none is fine: the check says so).
quote() { grep -E -- "$1" "$2" | sed 's/^/   journal: /' || true; }
conf=/etc/spindle/spindle.toml

# --- install as the README says ---------------------------------------------
section "install: the README's steps (\"Install as a systemd service\"), in /src"
run_steps() { # file of README lines: each in the container, in /src; fails if one does
  local line ok=0
  while IFS= read -r line; do
    echo "   # $line"
    ctsh "cd /src && $line" >"$work/step.log" 2>&1 || ok=1
    sed 's/^/   /' "$work/step.log"
  done <"$1"
  return "$ok"
}
check "the README's install steps run without error" run_steps "$work/install.sh"

section "start (Type=notify)"
# A notify service turns "active" only on READY=1; until then it is "activating".
check "spindle.service is Type=notify" test "$(show spindle.service Type)" = notify
wait_for 10 state_is spindle.service active || true
check "ActiveState=active SubState=running: READY=1 arrived" \
  test "$(show spindle.service ActiveState)/$(show spindle.service SubState)" = active/running
started_logged() { journal -u spindle.service | has '^Started spindle.service'; }
check "the journal says \"Started spindle.service\"" started_logged
check "GET / on 127.0.0.1:8080 and echo on 127.0.0.1:7007 are served" both_ok
status=$(show spindle.service StatusText)
note "StatusText=$status"
check "STATUS= text in systemctl show -p StatusText" has 'connections .*threads busy, queue [0-9]+/[0-9]+' <<<"$status"

section "reload"
pid=$(show spindle.service MainPID)
ctsh "sed -i 's/^queue_capacity = .*/queue_capacity = 777/' $conf"
check "a good file: systemctl reload exits 0" ct systemctl reload spindle.service
check "the new config is in effect (STATUS= shows queue .../777)" wait_for 10 status_has 'queue [0-9]+/777'
check "the same process (MainPID $pid)" test "$(show spindle.service MainPID)" = "$pid"
c=$(cursor)
ctsh "sed -i 's/^queue_capacity = .*/queue_capacity = \"lots\"/' $conf"
rc=0
ct systemctl reload spindle.service >"$work/reload.log" 2>&1 || rc=$?
sed 's/^/   /' "$work/reload.log"
check "a broken file: systemctl reload exits non-zero (rc $rc)" test "$rc" -ne 0
since "$c" >"$work/j"
sed -n '/queue_capacity/s/^/   journal: /p' "$work/j"
check "the journal names the file, line and key" has "$conf:[0-9]+.*queue_capacity" <"$work/j"
check "still active, the same process (MainPID $pid)" \
  test "$(show spindle.service ActiveState)/$(show spindle.service MainPID)" = "active/$pid"
old_config_serving() { status_has 'queue [0-9]+/777' && http_ok; }
check "still on the old config (queue .../777) and serving" old_config_serving
# Put a valid file back for what follows (a restart re-reads it).
ctsh "sed -i 's/^queue_capacity = .*/queue_capacity = 777/' $conf"

section "watchdog"
before=$(show spindle.service NRestarts)
c=$(cursor)
note "SIGSTOP to MainPID $pid (WatchdogSec=$(show spindle.service WatchdogUSec)); NRestarts=$before"
ct kill -STOP "$pid"
restarted() {
  [ "$(show spindle.service NRestarts)" -gt "$before" ] && state_is spindle.service active &&
    [ "$(show spindle.service MainPID)" != "$pid" ]
}
check "systemd restarted it: NRestarts rose, active again, a new MainPID" wait_for 40 restarted
since "$c" >"$work/j"
quote 'Watchdog timeout|SIGABRT|code=dumped|Scheduled restart' "$work/j"
check "the journal shows the watchdog timeout" has 'Watchdog timeout' <"$work/j"
note "NRestarts=$(show spindle.service NRestarts) MainPID=$(show spindle.service MainPID)"
check "serving again" wait_for 10 both_ok

section "stop"
c=$(cursor)
check "systemctl stop exits 0" ct systemctl stop spindle.service
check "Result=success, exit status 0" \
  test "$(show spindle.service Result)/$(show spindle.service ExecMainStatus)" = success/0
since "$c" >"$work/j"
quote 'stopped' "$work/j"
check "the journal has the drained summary line" has 'stopped drained=[0-9]+ cut=[0-9]+' <"$work/j"

section "socket activation: the README's steps"
# From here on the service is socket-activated; put it back in the running state
# the README's socket steps start from (installed, enabled, running).
ct systemctl start spindle.service
c=$(cursor)
check "the README's socket-activation steps run without error (spindle.service was running)" \
  run_steps "$work/sockets.sh"
for s in spindle-echo.socket spindle-http.socket; do
  check "$s enabled and active" \
    test "$(show $s UnitFileState)/$(show $s ActiveState)" = enabled/active
done
wait_for 10 state_is spindle.service active || true
since "$c" >"$work/j"
check "spindle.service active" state_is spindle.service active
# What systemd handed the process, and what the daemon said it did with it.
fdnames=$(ctsh "tr '\\0' '\\n' </proc/$(show spindle.service MainPID)/environ | sed -n 's/^LISTEN_FDNAMES=//p'" || true)
check "systemd passed both sockets (LISTEN_FDNAMES=$fdnames)" \
  test "$(tr ':' '\n' <<<"$fdnames" | sort | tr '\n' ' ')" = "echo http "
quote 'adopting the listening sockets' "$work/j"
check "the daemon adopted them (the journal: \"adopting the listening sockets\")" \
  has 'adopting the listening sockets' <"$work/j"
check "no listener bound by the daemon itself" lacks 'passed no socket' <"$work/j"
check "both served" both_ok

section "socket activation: the first connection starts the service"
for kind in echo http; do
  ct systemctl stop spindle.service 2>/dev/null
  check "$kind: service stopped, spindle-$kind.socket still listening" \
    test "$(show spindle.service ActiveState)/$(show spindle-$kind.socket SubState)" = inactive/listening
  check "$kind: the first connection is served" "${kind}_ok"
  check "$kind: spindle.service was started by it (active)" state_is spindle.service active
done

section "socket activation: systemctl restart under a client loop"
client_loop() { # kind, counts file, stop file: one connection per request
  local ok=0 bad=0 got rc want
  while [ ! -e "$3" ]; do
    rc=0
    if [ "$1" = http ]; then
      want='Hello, World!'
      got=$(curl -fsS -m 5 http://127.0.0.1:8080/ 2>&1) || rc=$?
    else
      want=ping
      got=$(printf 'ping\n' | nc -N -w 5 127.0.0.1 7007 2>&1) || rc=$?
    fi
    if [ "$got" = "$want" ]; then
      ok=$((ok + 1))
    else
      bad=$((bad + 1))
      echo "$(date -u +%T.%N) $1 request $((ok + bad)): exit $rc, got '$got'" >>"$2.failures"
    fi
    echo "$ok $bad" >"$2.tmp" && mv "$2.tmp" "$2"
  done
}
okcount() { [ -s "$1" ] && cut -d' ' -f1 "$1" || echo 0; }
grew() { [ "$(okcount "$work/$1.count")" -ge "$2" ]; }
loops_start() { # a curl loop and an nc loop, each with 20 requests served
  loop_pids=()
  local kind
  for kind in http echo; do
    rm -f "$work/$kind.stop" "$work/$kind.count.failures"
    echo "0 0" >"$work/$kind.count"
    timeout -k 5 $((120 + 10 * restarts)) nsenter -t "$leader" -n bash -c \
      "$(declare -f client_loop); client_loop $kind '$work/$kind.count' '$work/$kind.stop'" &
    loop_pids+=($!)
  done
  wait_for 20 grew http 20 || true
  wait_for 20 grew echo 20 || true
}
loops_mark() { # after the event: record the counts; loops_stop wants 20 more of each
  h=$(okcount "$work/http.count")
  e=$(okcount "$work/echo.count")
  wait_for 20 grew http $((h + 20)) || true
  wait_for 20 grew echo $((e + 20)) || true
}
loops_stop() { # what: one PASS/FAIL line per loop
  local p f hok hbad eok ebad
  touch "$work/http.stop" "$work/echo.stop"
  for p in "${loop_pids[@]}"; do wait "$p" || true; done
  for f in "$work"/*.count.failures; do
    if [ -e "$f" ]; then
      head -n 5 "$f" | sed "s/^/   failed: /"
      [ "$(wc -l <"$f")" -le 5 ] || echo "   failed: ... $(($(wc -l <"$f") - 5)) more"
    fi
  done
  read -r hok hbad <"$work/http.count"
  read -r eok ebad <"$work/echo.count"
  check "curl loop: $hok served, $hbad failed (0 failed, served after the $1 too)" \
    test "$hbad" -eq 0 -a "$hok" -ge $((h + 20))
  check "nc loop: $eok served, $ebad failed (0 failed, served after the $1 too)" \
    test "$ebad" -eq 0 -a "$eok" -ge $((e + 20))
}
new_main() { state_is spindle.service active && [ "$(show spindle.service MainPID)" != "$pid" ]; }

loops_start
for i in $(seq "$restarts"); do
  # systemd refuses a sixth start within 10 s (StartLimitBurst=5), and the steps
  # above started it three times: clear the count (reset-failed does).
  ct systemctl reset-failed spindle.service
  pid=$(show spindle.service MainPID)
  check "systemctl restart spindle.service (clients running; restart $i of $restarts)" ct systemctl restart spindle.service
  check "active, a new MainPID" new_main
  loops_mark # served after the restart too, by the new process
done
loops_stop restart

section "binary upgrade (SIGUSR2) under a client loop"
# README, Signals: the daemon starts the binary at its path on the same sockets and
# hands systemd the new MAINPID=; the service must stay active without a restart.
loops_start
pid=$(show spindle.service MainPID)
before=$(show spindle.service NRestarts)
c=$(cursor)
ct kill -USR2 "$pid"
check "MainPID moved from $pid to the new process, still active" wait_for 40 new_main
loops_mark
since "$c" >"$work/j"
note "MainPID=$(show spindle.service MainPID) NRestarts=$(show spindle.service NRestarts) SubState=$(show spindle.service SubState)"
check "no restart by systemd (NRestarts $before)" test "$(show spindle.service NRestarts)" = "$before"
old_gone() { ! ct kill -0 "$pid" 2>/dev/null; }
check "the old process ($pid) drained and exited" wait_for 30 old_gone
# NotifyAccess=main: systemd now takes WATCHDOG=1 only from the new PID. A fresh
# ping after the old one is gone proves it does (else a kill in WatchdogSec=10s).
wd=$(show spindle.service WatchdogTimestampMonotonic)
wd_moved() { [ "$(show spindle.service WatchdogTimestampMonotonic)" != "$wd" ]; }
check "the new process pings the watchdog (WatchdogTimestamp moves within 8 s)" wait_for 8 wd_moved
loops_stop upgrade
# When MAINPID= arrives while the old process still lives, the new one is its
# child, not systemd's, and systemd 252 says "Supervising process N which is not
# our child" (a race: about one run in three). Once the old one exits, the new
# one is reparented to PID 1 (systemd): a kill must still be noticed.
quote 'not our child|refusing|does not belong' "$work/j"
check "systemd did not refuse the new main PID" lacks 'refusing|does not belong' <"$work/j"
before=$(show spindle.service NRestarts)
pid=$(show spindle.service MainPID)
ct kill -KILL "$pid"
check "systemd still supervises it: SIGKILL to $pid -> restarted (Restart=on-failure)" wait_for 15 restarted

section "socket activation: one socket only (spindle-http.socket)"
ct systemctl stop spindle.service 2>/dev/null
ct systemctl disable --now spindle-echo.socket >/dev/null 2>&1
ct systemctl reset-failed spindle.service # the start limit, as above
c=$(cursor)
check "http: the first connection is served" http_ok
check "spindle.service was started by it (active)" state_is spindle.service active
check "echo (no socket passed: bound by the daemon) is served" wait_for 10 echo_ok
since "$c" >"$work/j"
quote 'passed no socket' "$work/j"
check "the journal says the daemon bound echo itself" has 'passed no socket.*echo' <"$work/j"
check "spindle-http.socket not failed (no start loop), NRestarts=$(show spindle.service NRestarts)" \
  test "$(show spindle-http.socket ActiveState)" = active

section "the journal"
journal -u spindle.service -u spindle-echo.socket -u spindle-http.socket >"$work/journal"
grep -n -i -E 'SIGSYS|EPERM|Operation not permitted|seccomp' "$work/journal" | sed 's/^/   /' || true
check "no SIGSYS, EPERM, \"Operation not permitted\" or seccomp in $(wc -l <"$work/journal") journal lines" \
  lacks '(SIGSYS|EPERM|Operation not permitted|seccomp)' <"$work/journal"

if [ "$failed" -ne 0 ]; then
  echo "== the journal's last 40 lines (a check failed)"
  tail -n 40 "$work/journal" | sed 's/^/   /'
fi
if [ -n "${SPINDLE_CI_HOLD:-}" ]; then
  # For debugging: keep the container up; enter it with the command below.
  echo "== holding the container for ${SPINDLE_CI_HOLD}s: nsenter -t $leader -a bash"
  sleep "$SPINDLE_CI_HOLD" || true
fi
echo "systemd: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then exit 1; fi
