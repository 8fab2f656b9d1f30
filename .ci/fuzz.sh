#!/usr/bin/env bash
# CI: fuzzes spindle's parsers in-process with cargo-fuzz (libFuzzer) for a short
# time each. Installs a nightly toolchain and cargo-fuzz only when missing (so a CI
# cache of ~/.rustup and ~/.cargo/bin makes the next run skip both), builds every
# target in fuzz/, runs each for FUZZ_SECONDS (default 30), and fails on the first
# crash, printing the crashing input (escaped and base64) and the command that
# replays it. One "ok - <target>" line per target with libFuzzer's final figures.
#
# Seeds come from fuzz/corpus/<target>/ (committed); what libFuzzer finds goes to
# fuzz/target/corpus/<target>/ (ignored by git, worth caching) and crash inputs to
# fuzz/artifacts/<target>/.
#   FUZZ_SECONDS=600 bash .ci/fuzz.sh          # the 10-minute run of fuzz/README.md
#   FUZZ_TARGETS="head chunked" bash .ci/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "== installing the nightly toolchain (cargo-fuzz needs -Zsanitizer)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# libfuzzer-sys compiles libFuzzer itself: a C++ compiler is needed.
if ! command -v c++ >/dev/null 2>&1; then
  echo "== installing g++"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq g++ >/dev/null
fi

# --fuzz-dir: never guess the project from the working directory.
fuzz=(cargo +nightly fuzz)
dir_flag=(--fuzz-dir fuzz)
targets=${FUZZ_TARGETS:-$("${fuzz[@]}" list "${dir_flag[@]}")}

echo "== cargo fuzz build (release, debug assertions, AddressSanitizer)"
"${fuzz[@]}" build "${dir_flag[@]}"

failed=0
for target in $targets; do
  work=fuzz/target/corpus/$target
  artifacts=fuzz/artifacts/$target
  mkdir -p "$work" "$artifacts" "fuzz/corpus/$target"
  log=$(mktemp)
  started=$(mktemp)
  echo "== fuzz $target for ${seconds}s"
  # The first corpus directory is where libFuzzer writes what it finds; the seeds
  # are read only.
  if "${fuzz[@]}" run "${dir_flag[@]}" "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    stats=$(grep -E '^#[0-9]+.*(DONE|pulse)' "$log" | tail -1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "ok - $target: $execs execs, $rate exec/s; final: $stats"
  else
    failed=1
    echo "not ok - $target: crash or failure; the end of libFuzzer's output:"
    tail -60 "$log"
    # Only what this run wrote: a cached directory may hold older ones.
    find "$artifacts" -type f -newer "$started" | while read -r crash; do
      echo "-- crash input $crash ($(wc -c <"$crash") bytes), escaped:"
      python3 -c 'import sys; print(repr(open(sys.argv[1], "rb").read()))' "$crash" 2>/dev/null \
        || od -c "$crash" | head -40
      echo "-- base64:"
      base64 "$crash"
      echo "-- replay: cargo +nightly fuzz run --fuzz-dir fuzz $target $crash"
    done
  fi
  rm -f "$log" "$started"
done
exit "$failed"
