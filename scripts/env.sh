#!/usr/bin/env bash
# Create or update the project-local environment in .venv (sourced by demo.sh and test.sh).
#
# Idempotent: the install runs only when pyproject.toml or this file changed since the last
# successful run (a hash stamp in .venv), so a second run costs well under a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AVATEX_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# Pins that must be resolved together (docs/architecture.md): the local CPU torch wheel, and the bpy 4.5 LTS
# wheel whose numpy<2 requirement makes pip choose colour-science 0.4.6 and numpy 1.26.
TORCH_PIN="torch==2.13.0"
ANNY_PIN="anny==0.6.2"

stamp_of() {
  cat "$ROOT/pyproject.toml" "$ROOT/scripts/env.sh" | sha256sum | cut -d' ' -f1
}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[avatex] creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi

want="$(stamp_of)"
have="$(cat "$VENV/.avatex-stamp" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
  echo "[avatex] installing dependencies into $VENV (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$VENV/bin/python" -m pip install -q -e "$ROOT[blender,synth,dev,masks]" "$TORCH_PIN" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  "$VENV/bin/python" -m pip install -q --no-deps "$ANNY_PIN" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$VENV/bin/python" - <<'PY'
import importlib, sys
missing = [m for m in ("torch", "numpy", "bpy", "colour", "trimesh", "zmq", "scipy", "skimage",
                       "safetensors", "anny", "pytest", "cv2", "mediapipe") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"[avatex] install incomplete, missing: {', '.join(missing)}")
PY
  echo "$want" > "$VENV/.avatex-stamp"
fi

export PATH="$VENV/bin:$PATH"
export AVATEX_ROOT="$ROOT"
# anny writes a ~1 GB model cache on first use; keep it with the project, not in $HOME.
export ANNY_CACHE_DIR="${ANNY_CACHE_DIR:-$ROOT/.cache/anny}"
