#!/usr/bin/env bash
# lisa-tiny from nothing, on a CPU, in resumable stages (re-running resumes), six recipes:
# - v10 (the shipped lisa-tiny is its seed-0 last stage, docs/lisa-tiny.md; section 24 of
#   docs/lisa-tiny-experiments.md, L and N): v9
#   (below, the same seed), then its stage 4 for 2000 more steps with the VLM's vision tower and
#   projector trained too (recipe lisa_vision: 4-vision-1.yaml, then 4-vision-2.yaml, 1000 steps
#   each; about 25-50 min each on one thread), then v9's fitted head put on that model and its
#   threshold set on the calibration world. SEED=N trains v9 seed N and then the two runs on it.
# - v9 (shipped until v10): v6 (below, seed 0),
#   then v6's stage 4 for 2000 more steps in two runs of 1000 (4-more-1.yaml, then 4-more-2.yaml
#   at half the learning rate; about 25-40 min each on one thread), then the presence head fitted
#   on v6's frozen model (as v8's) put on that model (attach_presence_head.py) and its threshold set
#   on the calibration world (fit_presence_head.py --calibrate). SEED=N trains only the two runs
#   with seed N (on seed 0's v6 and fitted head).
# - v8 (shipped until v9): v6 (below, seed 0), then
#   a presence head fitted on v6's frozen model (fit_presence_head.py, about 35 min), then stage 4
#   continued 1000 steps with that head trained with the model (4-presence.yaml: absent objects
#   as "Sure, [SEG]." with an empty target, presence_weight 1; about 26 min on one thread), then
#   the head's threshold set on a calibration world of its own (fit_presence_head.py --calibrate).
#   SEED=N trains only that last stage with seed N (on seed 0's v6 and fitted head).
# - v6 (the shipped lisa-tiny is its seed-0 stage 4, docs/lisa-tiny.md): v3 (below, same seed),
#   then 5a-5b: v3's stage-4 model's vision tower trained 15 000 more steps on the cells
#   (train_vision_cells.py, 6000 steps on 8000 scenes, then 9000 on 16 000; about 70 min), then
#   v3's stage 4 again on it (4-reason-v6.yaml, about 35 min). SEED=N trains v3 seed N first (its
#   zero-shot and baseline rows) and then only v6's stage 4 with seed N, on seed 0's 5a-5b.
# - v3 (default; shipped from 2026-12-06 until v6): v2's stages 1-2,
#   then 2a (the vision tower learns each cell's kind, colour and place: train_vision_cells.py),
#   2b (VQA, facts and "Where is ...?" questions: locate.jsonl), and stages 3a-4 with a seg head
#   that reads the image tokens, its map also SAM's dense prompt; about 5.5 h of stage time on 2
#   cores. Its no-LLM baseline has no VLM, so it is v2's (same SAM, same data), seed for seed.
# - v2 (shipped until 2026-12-06): the v1 recipe (train.sh) plus a longer, validated stage 1, a
#   finer SAM grid (1c), and in stage 3 the [SEG] warm-up, the few-objects curriculum (3a) and the
#   absent-object queries; about 4.5 h.
#   bash configs/tiny-shapes/train-v2.sh
#   THREADS=1 bash configs/tiny-shapes/train-v2.sh    # beside other work: 1 torch thread per stage
#   SEED=1 THREADS=1 bash configs/tiny-shapes/train-v2.sh  # stages 3a-4 and the baseline again with
#     seed 1, on seed 0's stages 1-2b, into runs/lisa-tiny-v3-seed1: the spread
#   RECIPE=v2 bash configs/tiny-shapes/train-v2.sh    # v2, into runs/lisa-tiny-v2 (-seedN)
#   RECIPE=v6 bash configs/tiny-shapes/train-v2.sh    # v6, into runs/lisa-tiny-v6 (-seedN)
#   RECIPE=v8 bash configs/tiny-shapes/train-v2.sh    # v8, into runs/lisa-tiny-v8 (-seedN)
#   RECIPE=v9 bash configs/tiny-shapes/train-v2.sh    # v9, into runs/lisa-tiny-v9 (-seedN)
#   RECIPE=v10 bash configs/tiny-shapes/train-v2.sh  # into runs/lisa-tiny-v10 (-seedN)
# Then: bash configs/tiny-shapes/evaluate.sh runs/lisa-tiny-v6 data/shapes-fresh (a fresh world:
#   lisa shapes generate --out data/shapes-fresh --split test --seed 20261205).
set -euo pipefail
cd "$(dirname "$0")/../.."
run() { echo "+ [$(date -u +%H:%M:%S)] $*" >&2; "$@"; }
resume_flag() { [ -d "$1/checkpoints" ] && ls "$1/checkpoints" | grep -q step- && echo --resume || true; }
threads=(${THREADS:+--threads "$THREADS"})  # overrides the configs' threads
C=configs/tiny-shapes
SEED=${SEED:-0}
RECIPE=${RECIPE:-v3}

sam_stage() {  # folder name config
  [ -f "$1/$2/sam/model.safetensors" ] || run lisa train --config "$C/$3" "${threads[@]}" $(resume_flag "$1/$2"); }
lisa_stage() {  # folder name config
  [ -f "$1/$2/model/lisa_config.json" ] || {
    run lisa train --config "$C/$3" "${threads[@]}" $(resume_flag "$1/$2")
    run lisa export --run "$1/$2" --out "$1/$2/model"; }; }
link_v3_rows() {  # run folder, its recipe's seed-0 folder: evaluate.sh's other rows are v3's zero-shot
  local v3=runs/lisa-tiny-v3${1#"$2"} stage  # stage 3 and no-LLM baseline of the same seed, linked
  mkdir -p "$1"
  for stage in 3-lisa baseline; do
    [ -e "$1/$stage" ] || ln -s "../$(basename "$v3")/$stage" "$1/$stage"
  done; }
cells_stage() {  # base out steps scenes: the vision tower trained on the cell heads (stage 2a's script)
  [ -f "$2/lisa_config.json" ] || run python $C/train_vision_cells.py --model "$1" --out "$2" \
    --steps "$3" --train-scenes "$4" --threads "${THREADS:-2}"; }

if [ "$RECIPE" = v8 ] || [ "$RECIPE" = v9 ] || [ "$RECIPE" = v10 ]; then  # v6 of seed 0 (the base) and v3 of this seed (evaluate.sh's other rows) first
  SEED=0 RECIPE=v6 bash "$0"
  [ "$SEED" = 0 ] || RECIPE=v3 bash "$0"
  [ "$RECIPE" != v10 ] || RECIPE=v9 bash "$0"  # v9 of this seed: v10 goes on from its stage 4, with its fitted head
  R0=runs/lisa-tiny-$RECIPE R=runs/lisa-tiny-$RECIPE
  fitted=$R0/4-fitted/model; [ "$RECIPE" != v10 ] || fitted=runs/lisa-tiny-v9/4-fitted/model
  # The presence head's calibration world: its own seed, never trained on.
  [ -d data/shapes-calib/train ] ||
    run lisa shapes generate --out data/shapes-calib --split train --seed 20261207 --n 400
  # 4-fitted: the head fitted on v6's frozen seed-0 model (every seed's last stages use it).
  [ -f $fitted/lisa_config.json ] || run python $C/fit_presence_head.py \
    --model runs/lisa-tiny-v6/4-reason/model --out $fitted --features ${fitted%/model}/features.pt
  case "$RECIPE" in
    v8) stages=(4-presence) ;;
    v9) stages=(4-more-1 4-more-2) ;;
    v10) stages=(4-vision-1 4-vision-2) ;;
  esac
  if [ "$SEED" != 0 ]; then  # only the last stages are seeded, each on this seed's stage before it
    R=$R-seed$SEED
    mkdir -p "$R/configs"
    moves=()  # every path to a stage this seed trains again (run_dir, a later stage's base) moves to $R
    for stage in "${stages[@]}"; do moves+=(-e "s#$R0/$stage\b#$R/$stage#g"); done
    # v10 starts from this seed's v9
    [ "$RECIPE" != v10 ] || moves+=(-e "s#runs/lisa-tiny-v9/4-more-2\b#runs/lisa-tiny-v9-seed$SEED/4-more-2#g")
    for stage in "${stages[@]}"; do
      sed -e "s/^seed: 0\b/seed: $SEED/" "${moves[@]}" "$C/$stage.yaml" > "$R/configs/$stage.yaml"
    done
    C=$R/configs
  fi
  for stage in "${stages[@]}"; do lisa_stage "$R" "$stage" "$stage.yaml"; done
  trained=$R/${stages[-1]}/model
  if [ "$RECIPE" != v8 ]; then  # 4-headed: the fitted head put on the trained model
    [ -f "$R/4-headed/model/lisa_config.json" ] || run python configs/tiny-shapes/attach_presence_head.py \
      --head-from "$fitted" --model "$trained" --out "$R/4-headed/model"
    trained=$R/4-headed/model
  fi
  # 4-reason: the same model with the head's threshold set on the calibration world.
  [ -f "$R/4-reason/model/lisa_config.json" ] || run python configs/tiny-shapes/fit_presence_head.py --calibrate \
    --model "$trained" --data-dir data/shapes-calib --out "$R/4-reason/model"
  link_v3_rows "$R" "$R0"
  echo "[$(date -u +%H:%M:%S)] lisa-tiny $RECIPE: $R/4-reason/model (evaluate before shipping: docs/lisa-tiny-experiments.md)"
  exit 0
fi

if [ "$RECIPE" = v6 ]; then  # v3 of the same seed first (resumes, or skips what is done)
  RECIPE=v3 bash "$0"
  R=runs/lisa-tiny-v6
  if [ "$SEED" = 0 ]; then
    cells_stage runs/lisa-tiny-v3/4-reason/model $R/5a-vision-cells/model 6000 8000
    cells_stage $R/5a-vision-cells/model $R/5b-vision-cells/model 9000 16000
  else  # only stage 4 is seeded: 5a-5b are seed 0's
    [ -f "$R/5b-vision-cells/model/lisa_config.json" ] || {
      echo "SEED=$SEED trains on seed 0's stages 5a-5b: run RECIPE=v6 without SEED first" >&2; exit 1; }
    R=$R-seed$SEED
    mkdir -p "$R/configs"
    # only run_dir changes: the base stays seed 0's 5b
    sed -e "s/^seed: 0\b/seed: $SEED/" -e "s#^run_dir: runs/lisa-tiny-v6/#run_dir: $R/#" \
      "$C/4-reason-v6.yaml" > "$R/configs/4-reason-v6.yaml"
    C=$R/configs
  fi
  lisa_stage "$R" 4-reason 4-reason-v6.yaml
  link_v3_rows "$R" runs/lisa-tiny-v6
  echo "[$(date -u +%H:%M:%S)] lisa-tiny v6: $R/4-reason/model (evaluate before shipping: docs/lisa-tiny-experiments.md)"
  exit 0
fi

case "$RECIPE" in
  v2) shared_stages=(1-sam 1b-sam-dense 1c-sam-fine 2-vlm); own=(3a-lisa-few 3-lisa 4-reason baseline) ;;
  v3) shared_stages=(1-sam 1b-sam-dense 1c-sam-fine 2-vlm 2a-vision-cells 2b-vlm-locate); own=(3a-lisa-few 3-lisa 4-reason) ;;
  *) echo "RECIPE must be v2, v3, v6, v8, v9 or v10, got $RECIPE" >&2; exit 1 ;;
esac
V2=runs/lisa-tiny-v2
R=runs/lisa-tiny-$RECIPE  # the recipe's seed-0 folder: every later stage's base is in it

for split in train val test; do
  [ -d "data/shapes/$split" ] || run lisa shapes generate --out data/shapes --split "$split"
done
[ -d data/shapes-reason239/train ] || run lisa shapes generate --out data/shapes-reason239 --split train --n 239
# The curriculum's easy world: 1-3 objects per scene, its own seed (other scenes than data/shapes).
[ -d data/shapes-few/train ] || run lisa shapes generate --out data/shapes-few --split train --max-objects 3 --seed 1
if [ "$RECIPE" = v3 ]; then  # worlds written before the locate / present families: the same bytes again, plus those
  for split in train val test; do
    [ -f "data/shapes/$split/locate.jsonl" ] && [ -f "data/shapes/$split/present.jsonl" ] ||
      run lisa shapes generate --out data/shapes --split "$split" --overwrite
  done
  [ -f data/shapes-few/train/locate.jsonl ] ||
    run lisa shapes generate --out data/shapes-few --split train --max-objects 3 --seed 1 --overwrite
fi


if [ "$SEED" = 0 ]; then  # stages 1-2 (v2's, also v3's) and v3's 2b: trained once, shared by every seed
  sam_stage $V2 1-sam 1-sam-v2.yaml
  sam_stage $V2 1b-sam-dense 1b-sam-dense-v2.yaml
  sam_stage $V2 1c-sam-fine 1c-sam-fine-v2.yaml
  lisa_stage $V2 2-vlm 2-vlm-v2.yaml
  if [ "$RECIPE" = v3 ]; then
    cells_stage $V2/2-vlm/model "$R/2a-vision-cells/model" 1500 2000
    lisa_stage "$R" 2b-vlm-locate 2b-vlm-locate-v3.yaml
  fi
else
  for stage in "${shared_stages[@]}"; do
    [ -f "$V2/$stage/model/lisa_config.json" ] || [ -f "$V2/$stage/sam/model.safetensors" ] ||
      [ -f "$R/$stage/model/lisa_config.json" ] || {
      echo "SEED=$SEED trains on seed 0's stages ${shared_stages[*]}: run without SEED first" >&2; exit 1; }
  done
  shared=$R
  R=$R-seed$SEED
  mkdir -p "$R/configs"
  for stage in "${shared_stages[@]}"; do
    source_dir=$shared/$stage; [ -e "$source_dir" ] || source_dir=$V2/$stage
    [ -e "$R/$stage" ] || ln -s "../$(basename "$(dirname "$source_dir")")/$stage" "$R/$stage"
  done
  for name in "${own[@]}"; do  # same recipe: only the seed and the folders differ
    sed -e "s/^seed: 0\b/seed: $SEED/" -e "s#$shared/#$R/#g" "$C/$name-$RECIPE.yaml" > "$R/configs/$name-$RECIPE.yaml"
  done
  C=$R/configs
fi

lisa_stage "$R" 3a-lisa-few "3a-lisa-few-$RECIPE.yaml"
lisa_stage "$R" 3-lisa "3-lisa-$RECIPE.yaml"
lisa_stage "$R" 4-reason "4-reason-$RECIPE.yaml"
# The no-LLM baseline. v3's is v2's of the same seed (it has no VLM): linked when that exists,
# otherwise trained into v3's folder from v2's config with the folder and seed rewritten.
v2_baseline=$V2${R#runs/lisa-tiny-$RECIPE}/baseline
baseline_config=$C/baseline-v2.yaml
if [ "$RECIPE" = v3 ] && [ -d "$v2_baseline/model" ]; then
  [ -e "$R/baseline" ] || ln -s "../$(basename "$(dirname "$v2_baseline")")/baseline" "$R/baseline"
elif [ ! -d "$R/baseline/model" ]; then
  if [ "$RECIPE" = v3 ]; then
    baseline_config=$R/configs/baseline-v3.yaml
    mkdir -p "$R/configs"
    sed -e "s#^run_dir: .*#run_dir: $R/baseline#" -e "s/^seed: 0\b/seed: $SEED/" \
      configs/tiny-shapes/baseline-v2.yaml > "$baseline_config"
  fi
  run lisa baseline train --config "$baseline_config" "${threads[@]}" $(resume_flag "$R/baseline")
fi

echo "[$(date -u +%H:%M:%S)] lisa-tiny $RECIPE: $R/4-reason/model (evaluate before shipping: docs/lisa-tiny-experiments.md)"
