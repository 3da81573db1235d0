#!/usr/bin/env bash
# What a 2-core CPU allows: the roster at 128 px with per-model epoch budgets, on the shared split.
# Each row this produces is labelled with its epochs, resolution and device in the report.
#
# Usage (repository root, edge-bus[train] installed, real BUSI present):
#   DATA=../shared/data/busi OUT=runs/cpu128 bash benchmarks/training/train_roster_cpu.sh
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

: "${DATA:?set DATA to the BUSI folder}"
OUT="${OUT:-runs/cpu128}"
RES="${RES:-128}"
SPLIT="${SPLIT:-splits/busi-seed0.json}"
EDGE_BUS="${EDGE_BUS:-edge-bus}"
SEED="${SEED:-0}"  # another seed, into another OUT, measures how far a row moves between runs
# model:epochs:extra train options, comma-separated, so no option may hold a comma (epoch budgets of
# 4 to about 80 minutes each on 2 cores).
# VGG-19 runs all 15 epochs: with patience 10 its one-cycle run was once stopped before it annealed.
PLAN="${PLAN:-unet:40:--width=16 vgg19:15:--model-arg=batch_norm=true,--patience=15 deeplabv3_resnet101:15: unet_vgg19:8: resnet50:15: efficientnet_b0:15:}"

mkdir -p "$OUT"
PACK="$OUT/pack.npz"
[[ -f "$PACK" ]] || "$EDGE_BUS" data pack "$SPLIT" --data "$DATA" --out "$PACK" --size "$RES"

for entry in $PLAN; do
  IFS=: read -r model epochs extra <<<"$entry"
  extra="${extra//,/ }"
  mkdir -p "$OUT/$model"
  if [[ ! -f "$OUT/$model/test/report.json" ]]; then
    start=$(date +%s)
    # shellcheck disable=SC2086  # $extra holds zero or more options, split on purpose
    "$EDGE_BUS" train "$model" --pack "$PACK" --out "$OUT/$model" --epochs "$epochs" --batch-size 8 \
      --lr 1e-3 --device cpu --seed "$SEED" $extra > "$OUT/$model/train.log" 2>&1 || echo "$model: training failed, see $OUT/$model/train.log"
    echo "$model train_seconds $(( $(date +%s) - start )) epochs_budget $epochs res $RES device cpu" >> "$OUT/timings.txt"
    if [[ -f "$OUT/$model/best.pt" ]]; then
      "$EDGE_BUS" evaluate "$OUT/$model/best.pt" --pack "$PACK" --split test --out "$OUT/$model/test" > "$OUT/$model/eval.log" 2>&1 \
        || echo "$model: evaluation failed, see $OUT/$model/eval.log"
    fi
  fi
done

if [[ ! -f "$OUT/classical/test/report.json" ]]; then
  { "$EDGE_BUS" train classical --pack "$PACK" --out "$OUT/classical" > "$OUT/classical.log" 2>&1 \
    && "$EDGE_BUS" evaluate "$OUT/classical/classical.json" --pack "$PACK" --split test --out "$OUT/classical/test" >> "$OUT/classical.log" 2>&1; } \
    || echo "classical: failed, see $OUT/classical.log"
fi

members=()
for model in unet unet_vgg19 deeplabv3_resnet101; do
  if [[ -f "$OUT/$model/best.pt" ]]; then members+=(--member "$OUT/$model/best.pt"); fi
done
if (( ${#members[@]} >= 4 )); then  # at least two members ("--member PATH" each)
  # val-weighted, and the plain mean of the same members
  for mode in weighted mean; do
    dir="$OUT/ensemble"
    if [[ "$mode" == mean ]]; then dir="$OUT/ensemble_mean"; fi
    { "$EDGE_BUS" train ensemble --mode "$mode" --pack "$PACK" --out "$dir" --device cpu "${members[@]}" >> "$OUT/ensemble.log" 2>&1 \
      && "$EDGE_BUS" evaluate "$dir/ensemble.json" --pack "$PACK" --split test --out "$dir/test" >> "$OUT/ensemble.log" 2>&1; } \
      || echo "ensemble ($mode): failed, see $OUT/ensemble.log"
  done
fi
"${PYTHON:-python3}" "$SCRIPT_DIR/summarize_roster.py" "$OUT" || echo "summary failed"
echo "done: $OUT"
