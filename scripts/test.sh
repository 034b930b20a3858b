#!/usr/bin/env bash
# The README's test command: set up .venv if needed, then run the test suite.
#
#   bash scripts/test.sh            the whole suite (what .ci/run runs)
#   bash scripts/test.sh --fast     the everyday set: every test not marked `slow` (under 3 minutes on
#                                   2 cores; still real Blender, real sockets and real models)
# Any other arguments go to pytest, e.g. `bash scripts/test.sh --fast tests/test_client.py`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$AVATEX_ROOT"
args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then
    args+=(-m "not slow")
  else
    args+=("$arg")
  fi
done
exec python -m pytest ${args[@]+"${args[@]}"}
