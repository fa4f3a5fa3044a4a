#!/usr/bin/env bash
# The results table of the README: every row scored on the shapes world's test split (real
# generation, as users run the model), then printed as a markdown table.
#   bash configs/tiny-shapes/evaluate.sh [RUN_ROOT [DATA_DIR]]
# RUN_ROOT: the recipe's run folder (default runs/lisa-tiny; train-v2.sh writes runs/lisa-tiny-v3, or -v2).
# DATA_DIR: a shapes world whose test split is scored (default data/shapes; a fresh one:
#   lisa shapes generate --out data/shapes-fresh --split test --seed 12345).
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${1:-runs/lisa-tiny}
data=${2:-data/shapes}
out=$R/eval-$(basename "$data")
mkdir -p "$out"
if [ ! -f "$data/test/present.jsonl" ]; then  # a world written before the present family
  again=$(python -c 'import json, sys; m = json.load(open(sys.argv[1] + "/meta/test.json"))
print("lisa shapes generate --out %s --split test --n %d --seed %d --size %d --overwrite"
      % (sys.argv[1], m["scenes"], m["seed"], m["size"]))' "$data")
  echo "error: $data/test/present.jsonl is missing (written before that family existed). Run: $again" >&2
  echo "(the same seed writes every earlier file byte for byte again, plus the new ones)" >&2
  exit 1
fi
run() { echo "+ $*" >&2; "$@"; }

for name in 3-lisa 4-reason; do
  model=$R/$name/model
  run lisa eval --model "$model" --dataset reasonseg --data-dir "$data" --split test --batch-size 16 --no-progress --out "$out/$name-reasonseg.json"
  run lisa eval --model "$model" --dataset jsonl --names referring --data-dir "$data" --split test --batch-size 16 --no-progress --out "$out/$name-referring.json"
  run lisa eval --model "$model" --dataset jsonl --names vqa --data-dir "$data" --split test --batch-size 16 --no-progress --out "$out/$name-vqa.json"
  run lisa eval --model "$model" --dataset jsonl --names absent --data-dir "$data" --split test --batch-size 16 --no-progress --out "$out/$name-absent.json"
  run lisa eval --model "$model" --dataset jsonl --names present --data-dir "$data" --split test --batch-size 16 --no-progress --out "$out/$name-present.json"
done
run lisa baseline eval --model "$R/baseline/model" --dataset reasonseg --data-dir "$data" --split test --no-progress --out "$out/baseline-reasonseg.json"
run lisa baseline eval --model "$R/baseline/model" --dataset jsonl --names referring --data-dir "$data" --split test --no-progress --out "$out/baseline-referring.json"
run lisa baseline eval --model "$R/baseline/model" --dataset jsonl --names absent --data-dir "$data" --split test --no-progress --out "$out/baseline-absent.json"
run lisa baseline eval --model "$R/baseline/model" --dataset jsonl --names present --data-dir "$data" --split test --no-progress --out "$out/baseline-present.json"
run python configs/tiny-shapes/results_table.py "$out"
