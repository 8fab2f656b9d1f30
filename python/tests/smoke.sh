#!/usr/bin/env bash
# Builds and installs the spindle-wsgi package into a fresh venv the way a user
# would (`pip install ./python`: pip fetches maturin as the build backend), then runs
# the smoke test against the installed command. Needs python3 with venv and a Rust
# toolchain; nothing else.
#   bash python/tests/smoke.sh            # venv in a temporary directory
#   VENV=/path bash python/tests/smoke.sh # reuse (and keep) a venv
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$(mktemp -d)/venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$root/python"
PATH="$venv/bin:$PATH" "$venv/bin/python" "$root/python/tests/test_smoke.py"
