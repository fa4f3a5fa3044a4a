#!/usr/bin/env bash
# Reproduce lisa-tiny from nothing, on a CPU (1 h 50 min on 2 cores in one timed run, 48 min of
# it stage 3). Every stage checkpoints: re-running this script resumes an interrupted stage
# instead of starting over.
#   bash configs/tiny-shapes/train.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
run() { echo "+ [$(date -u +%H:%M:%S)] $*" >&2; "$@"; }  # timestamps: how long each stage took
resume_flag() { [ -d "$1/checkpoints" ] && ls "$1/checkpoints" | grep -q step- && echo --resume || true; }

# The synthetic world (deterministic: same seed, same bytes).
for split in train val test; do
  [ -d "data/shapes/$split" ] || run lisa shapes generate --out data/shapes --split "$split"
done
[ -d data/shapes-reason239/train ] || run lisa shapes generate --out data/shapes-reason239 --split train --n 239

# Stage 1: SAM as a promptable segmenter.
[ -f runs/lisa-tiny/1-sam/sam/model.safetensors ] || \
  run lisa train --config configs/tiny-shapes/1-sam.yaml $(resume_flag runs/lisa-tiny/1-sam)
# Stage 1b: the same SAM, trained on with dense heads so that its embedding keeps colour and kind.
[ -f runs/lisa-tiny/1b-sam-dense/sam/model.safetensors ] || \
  run lisa train --config configs/tiny-shapes/1b-sam-dense.yaml $(resume_flag runs/lisa-tiny/1b-sam-dense)
# Stage 2: align the VLM on VQA + facts.
[ -f runs/lisa-tiny/2-vlm/model/lisa_config.json ] || {
  run lisa train --config configs/tiny-shapes/2-vlm.yaml $(resume_flag runs/lisa-tiny/2-vlm)
  run lisa export --run runs/lisa-tiny/2-vlm --out runs/lisa-tiny/2-vlm/model; }
# Stage 3: the LISA recipe, no reasoning samples (the zero-shot model).
[ -f runs/lisa-tiny/3-lisa/model/lisa_config.json ] || {
  run lisa train --config configs/tiny-shapes/3-lisa.yaml $(resume_flag runs/lisa-tiny/3-lisa)
  run lisa export --run runs/lisa-tiny/3-lisa --out runs/lisa-tiny/3-lisa/model; }
# Stage 4: + 239 reasoning samples (the shipped model).
[ -f runs/lisa-tiny/4-reason/model/lisa_config.json ] || {
  run lisa train --config configs/tiny-shapes/4-reason.yaml $(resume_flag runs/lisa-tiny/4-reason)
  run lisa export --run runs/lisa-tiny/4-reason --out runs/lisa-tiny/4-reason/model; }
# The no-LLM baseline of the results table.
[ -d runs/lisa-tiny/baseline/model ] || \
  run lisa baseline train --config configs/tiny-shapes/baseline.yaml $(resume_flag runs/lisa-tiny/baseline)

echo "[$(date -u +%H:%M:%S)] lisa-tiny: runs/lisa-tiny/4-reason/model (copy to src/lisa/checkpoints/lisa-tiny to ship it)"
