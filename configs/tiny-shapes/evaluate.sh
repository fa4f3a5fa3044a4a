#!/usr/bin/env bash
# The results table of the README: every row scored on the shapes world's test split (real
# generation, as users run the model), then printed as a markdown table.
#   bash configs/tiny-shapes/evaluate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=runs/lisa-tiny/eval
mkdir -p "$out"
run() { echo "+ $*" >&2; "$@"; }

for name in 3-lisa 4-reason; do
  model=runs/lisa-tiny/$name/model
  run lisa eval --model "$model" --dataset reasonseg --data-dir data/shapes --split test --batch-size 16 --no-progress --out "$out/$name-reasonseg.json"
  run lisa eval --model "$model" --dataset jsonl --names referring --data-dir data/shapes --split test --batch-size 16 --no-progress --out "$out/$name-referring.json"
  run lisa eval --model "$model" --dataset jsonl --names vqa --data-dir data/shapes --split test --batch-size 16 --no-progress --out "$out/$name-vqa.json"
  run lisa eval --model "$model" --dataset jsonl --names absent --data-dir data/shapes --split test --batch-size 16 --no-progress --out "$out/$name-absent.json"
done
run lisa baseline eval --model runs/lisa-tiny/baseline/model --dataset reasonseg --data-dir data/shapes --split test --no-progress --out "$out/baseline-reasonseg.json"
run lisa baseline eval --model runs/lisa-tiny/baseline/model --dataset jsonl --names referring --data-dir data/shapes --split test --no-progress --out "$out/baseline-referring.json"
run lisa baseline eval --model runs/lisa-tiny/baseline/model --dataset jsonl --names absent --data-dir data/shapes --split test --no-progress --out "$out/baseline-absent.json"
run python configs/tiny-shapes/results_table.py "$out"
