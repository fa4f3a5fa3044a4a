#!/usr/bin/env bash
# lisa-tiny v2 from nothing, on a CPU: the v1 recipe (train.sh) plus a longer, validated stage 1,
# a finer SAM grid (1c), and in stage 3 the [SEG] warm-up, the few-objects curriculum (3a) and
# the absent-object queries. The shipped lisa-tiny is this recipe's seed-0 stage 4: about 4.5 h
# of stage time on 2 cores (docs/lisa-tiny.md). Every stage checkpoints: re-running resumes.
# Then: bash configs/tiny-shapes/evaluate.sh runs/lisa-tiny-v2 data/shapes-fresh (a fresh world:
#   lisa shapes generate --out data/shapes-fresh --split test --seed 20261205).
#   bash configs/tiny-shapes/train-v2.sh
#   THREADS=1 bash configs/tiny-shapes/train-v2.sh    # beside other work: 1 torch thread per stage
#   SEED=1 THREADS=1 bash configs/tiny-shapes/train-v2.sh  # stages 3a-4 and the baseline again with
#     seed 1, on seed 0's SAM and VLM (stages 1-2), into runs/lisa-tiny-v2-seed1: the spread
set -euo pipefail
cd "$(dirname "$0")/../.."
run() { echo "+ [$(date -u +%H:%M:%S)] $*" >&2; "$@"; }
resume_flag() { [ -d "$1/checkpoints" ] && ls "$1/checkpoints" | grep -q step- && echo --resume || true; }
R=runs/lisa-tiny-v2
threads=(${THREADS:+--threads "$THREADS"})  # overrides the configs' threads
C=configs/tiny-shapes
SEED=${SEED:-0}
if [ "$SEED" != 0 ]; then
  shared=$R
  [ -f "$shared/2-vlm/model/lisa_config.json" ] && [ -f "$shared/1c-sam-fine/sam/model.safetensors" ] || {
    echo "SEED=$SEED trains on the seed-0 SAM and VLM: run without SEED first (stages 1-2)" >&2; exit 1; }
  R=$R-seed$SEED
  mkdir -p "$R/configs"
  for stage in 1-sam 1b-sam-dense 1c-sam-fine 2-vlm; do [ -e "$R/$stage" ] || ln -s "../$(basename "$shared")/$stage" "$R/$stage"; done
  for name in 3a-lisa-few-v2 3-lisa-v2 4-reason-v2 baseline-v2; do  # same recipe: only the seed and the folders differ
    sed -e "s/^seed: 0\b/seed: $SEED/" -e "s#$shared/#$R/#g" "$C/$name.yaml" > "$R/configs/$name.yaml"
  done
  C=$R/configs
fi

for split in train val test; do
  [ -d "data/shapes/$split" ] || run lisa shapes generate --out data/shapes --split "$split"
done
[ -d data/shapes-reason239/train ] || run lisa shapes generate --out data/shapes-reason239 --split train --n 239
# The curriculum's easy world: 1-3 objects per scene, its own seed (other scenes than data/shapes).
[ -d data/shapes-few/train ] || run lisa shapes generate --out data/shapes-few --split train --max-objects 3 --seed 1

sam_stage() {  # name config
  [ -f "$R/$1/sam/model.safetensors" ] || run lisa train --config "$C/$2" "${threads[@]}" $(resume_flag "$R/$1"); }
lisa_stage() {  # name config
  [ -f "$R/$1/model/lisa_config.json" ] || {
    run lisa train --config "$C/$2" "${threads[@]}" $(resume_flag "$R/$1")
    run lisa export --run "$R/$1" --out "$R/$1/model"; }; }

sam_stage 1-sam 1-sam-v2.yaml
sam_stage 1b-sam-dense 1b-sam-dense-v2.yaml
sam_stage 1c-sam-fine 1c-sam-fine-v2.yaml
lisa_stage 2-vlm 2-vlm-v2.yaml
lisa_stage 3a-lisa-few 3a-lisa-few-v2.yaml
lisa_stage 3-lisa 3-lisa-v2.yaml
lisa_stage 4-reason 4-reason-v2.yaml
[ -d "$R/baseline/model" ] || run lisa baseline train --config "$C/baseline-v2.yaml" "${threads[@]}" $(resume_flag "$R/baseline")

echo "[$(date -u +%H:%M:%S)] lisa-tiny v2: $R/4-reason/model (evaluate before shipping: docs/lisa-tiny-experiments.md)"
