#!/usr/bin/env bash
# The README's demo command: set up .venv if needed, then run `avatex demo` on its built-in defaults.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$AVATEX_ROOT"
exec avatex demo "$@"
