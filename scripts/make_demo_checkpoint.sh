#!/usr/bin/env bash
# Rebuild backend/assets/pifu_clothed.pt, the demo's checkpoint (backend/assets/README.md says why this
# recipe). Needs the 60-avatar clothed library (default ../shared/data/valid); about 25 min on 2 CPU cores.
#
#   bash scripts/make_demo_checkpoint.sh [LIBRARY] [WORK] [COLUMN]
#
# COLUMN is the protocol column whose colour loss netC is trained with (l1, ssim_seed, ssim_local, l1_ssim;
# default l1_ssim): the recipe a protocol run chose on validation (RUN/results/validation.json, "best").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# Paths given are relative to where the script is called from; the defaults to the repository.
LIBRARY="$(realpath "${1:-$AVATEX_ROOT/../shared/data/valid}")"
WORK="$(realpath -m "${2:-$AVATEX_ROOT/runs/demo_checkpoint}")"
cd "$AVATEX_ROOT"
COLUMN="${3:-l1_ssim}"
# The column's loss and SSIM statistics, from the protocol's own table (one source of truth).
SPEC="$(python - "$COLUMN" <<'PY'
import sys
from backend.experiment.protocol_budgets import COLUMN_TRAINING
column = sys.argv[1]
if column not in COLUMN_TRAINING or column == "control":
    sys.exit(f"make_demo_checkpoint: unknown column {column!r} (one of l1, ssim_seed, ssim_local, l1_ssim)")
spec = COLUMN_TRAINING[column]
print(spec["loss"], spec.get("ssim_variant", "local"))
PY
)"  # an unknown column stops the script here (set -e), before any rendering
read -r LOSS VARIANT <<< "$SPEC"
mkdir -p "$WORK"

# B's training split by person (split seed 0, the protocol's): the held-out persons never appear here.
python - "$LIBRARY" "$WORK/train_meshes.txt" <<'PY'
import sys
from backend.experiment.population import read_population, split_population
avatars = read_population(sys.argv[1])
split = split_population(avatars, seed=0)
mesh = {a.name: a.mesh for a in avatars}
open(sys.argv[2], "w").write("\n".join(str(mesh[n]) for n in split["train"]) + "\n")
PY

mapfile -t MESHES < "$WORK/train_meshes.txt"
avatex render --meshes "${MESHES[@]}" --out "$WORK/data" --views 6 --step 60 \
    --levels wild,intermediate,clear --resolution 256 --samples 16 --test-fraction 0
# 1. netG adapts to clothed bodies (garments, hair), starting from the anny-trained pifu_small.pt.
avatex train --data "$WORK/data" --out "$WORK/geometry" --init backend/assets/pifu_small.pt \
    --stage geometry --steps 400 --lr 2e-4 --batch 2 --seed 0 --workers 1 --no-progress-bar \
    --set val_subjects=0 --set checkpoint_every=100
# 2. netC with the protocol's validation choice (COLUMN), on every lighting level.
avatex train --data "$WORK/data" --out "$WORK/color" --init "$(ls "$WORK"/geometry/checkpoints/*.pt | tail -1)" \
    --stage color --loss "$LOSS" --set ssim_variant="$VARIANT" --steps 600 --lr 1e-4 --batch 2 --seed 0 \
    --workers 1 --no-progress-bar --set val_subjects=0 --set checkpoint_every=100
python - "$WORK" "$LIBRARY" "$COLUMN" "$LOSS" "$VARIANT" <<'PY'
import sys
from pathlib import Path
from backend.experiment.population import group_of, person_of, read_population, split_population
from backend.experiment.stages import export_checkpoint
work = Path(sys.argv[1])
trained = [Path(p).stem for p in (work / "train_meshes.txt").read_text().split()]
split = split_population(read_population(sys.argv[2]), seed=0)
assert sorted(split["train"]) == sorted(trained), "the library's split changed since the renders"
held = sorted({group_of(person_of(n)) for s in ("val", "test") for n in split[s]})
final = sorted((work / "color" / "checkpoints").glob("*.pt"))[-1]
export_checkpoint(final, Path("backend/assets/pifu_clothed.pt"), {
    "label": "demo checkpoint: pifu_small.pt fine-tuned on clothed avatars (B's training split)",
    "recipe": f"netG 400 steps lr 2e-4, then netC {sys.argv[4]} ({sys.argv[5]} SSIM statistics) 600 steps "
              f"lr 1e-4, all levels: the protocol column {sys.argv[3]}",
    "trained_on": trained, "held_out_groups": held, "split_seed": 0,
    "command": f"bash scripts/make_demo_checkpoint.sh LIBRARY WORK {sys.argv[3]}"})
print("wrote backend/assets/pifu_clothed.pt")
PY
