#!/usr/bin/env bash
# Run benchmarks/gpu_check.py with the project's Python: $PYTHON if set, else .venv/bin/python when the
# checkout has one, else python3 (a GPU machine's own CUDA build of torch). Arguments pass through:
#
#   bash benchmarks/gpu_check.sh --out /tmp/gpu_check.json [--data DATASET] [--only tests,reconstruct]
#
# It exits 2 with one line when a prerequisite or the GPU is missing (docs/api.md, "GPU check").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
cd "$ROOT"
exec "$PY" "$ROOT/benchmarks/gpu_check.py" "$@"
