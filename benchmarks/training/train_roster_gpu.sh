#!/usr/bin/env bash
# Train and evaluate the whole roster on one GPU; everything lands under $OUT.
#
# Usage (repository root, on a GPU machine with edge-bus[train] installed):
#   OUT=/path/to/results PACK=benchmarks/training/busi256.npz bash benchmarks/training/train_roster_gpu.sh
# or, where the BUSI folder is present, pack the shared split from it (never a new split: the
# split hash covers the data root, so a regenerated split would not be the shared one):
#   OUT=... DATA=/path/to/busi bash benchmarks/training/train_roster_gpu.sh
#
# Knobs (environment): EPOCHS (60), BATCH (16), RES (256), SEED (0, the training seed),
# SPLIT (splits/busi-seed0.json), MAX_MINUTES (per-model time budget: stop after the epoch that
# ends past it; empty for none), WEIGHTS ("" or imagenet, only where the torch hub cache holds the
# files), MODELS (the networks to train), EDGE_BUS (the edge-bus command) and PYTHON (any python3:
# the summary reads only JSON, so it need not be the one edge-bus is installed in).
# A failed step is logged to $OUT/failures.txt and the roster goes on.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

: "${OUT:?set OUT to the results folder}"
EPOCHS="${EPOCHS:-60}"
BATCH="${BATCH:-16}"
RES="${RES:-256}"
SEED="${SEED:-0}"
SPLIT="${SPLIT:-splits/busi-seed0.json}"
MAX_MINUTES="${MAX_MINUTES:-}"
WEIGHTS="${WEIGHTS:-}"
MODELS="${MODELS:-vgg19 resnet50 efficientnet_b0 unet unet_vgg19 deeplabv3_resnet101}"
EDGE_BUS="${EDGE_BUS:-edge-bus}"
PYTHON="${PYTHON:-python3}"

mkdir -p "$OUT"
if [[ -z "${PACK:-}" ]]; then
  : "${DATA:?set PACK to a packed cache, or DATA to the BUSI folder}"
  PACK="$OUT/pack.npz"
  "$EDGE_BUS" data pack "$SPLIT" --data "$DATA" --out "$PACK" --size "$RES"
fi

# Run one step; a failure is logged and the roster goes on.
step() {
  local what="$1"
  shift
  "$@" || echo "$what failed (exit $?)" | tee -a "$OUT/failures.txt"
}

# Run a command with its output shown and kept in the log file $1.
logged() {
  local log="$1"
  shift
  "$@" 2>&1 | tee "$log"
}

"$EDGE_BUS" info > "$OUT/machine.txt" 2>&1 || nvidia-smi > "$OUT/machine.txt" 2>&1 || true

weights_args=()
if [[ -n "$WEIGHTS" ]]; then weights_args=(--weights "$WEIGHTS"); fi
budget_args=()
if [[ -n "$MAX_MINUTES" ]]; then budget_args=(--max-minutes "$MAX_MINUTES"); fi

for model in $MODELS; do
  extra=()
  # The plain U-Net has no ImageNet weights; the others load theirs (encoder/backbone) when asked.
  if [[ "$model" != "unet" ]]; then extra=("${weights_args[@]}"); fi
  mkdir -p "$OUT/$model"
  start=$(date +%s)
  step "$model training" logged "$OUT/$model/train.log" \
    "$EDGE_BUS" train "$model" --pack "$PACK" --out "$OUT/$model" --epochs "$EPOCHS" --batch-size "$BATCH" \
    --device cuda --seed "$SEED" --workers 4 "${extra[@]}" "${budget_args[@]}"
  echo "$model train_seconds $(( $(date +%s) - start ))" >> "$OUT/timings.txt"
  if [[ -f "$OUT/$model/best.pt" ]]; then
    step "$model evaluation" "$EDGE_BUS" evaluate "$OUT/$model/best.pt" --pack "$PACK" --split test --device cuda --out "$OUT/$model/test"
  fi
done

step "classical fitting" "$EDGE_BUS" train classical --pack "$PACK" --out "$OUT/classical"
if [[ -f "$OUT/classical/classical.json" ]]; then
  step "classical evaluation" "$EDGE_BUS" evaluate "$OUT/classical/classical.json" --pack "$PACK" --split test --out "$OUT/classical/test"
fi

members=()
for model in unet unet_vgg19 deeplabv3_resnet101; do
  if [[ -f "$OUT/$model/best.pt" ]]; then members+=(--member "$OUT/$model/best.pt"); fi
done
if (( ${#members[@]} >= 4 )); then  # at least two members ("--member PATH" each)
  for mode in weighted mean; do
    dir="$OUT/ensemble"
    if [[ "$mode" == mean ]]; then dir="$OUT/ensemble_mean"; fi
    step "ensemble ($mode) fitting" "$EDGE_BUS" train ensemble --mode "$mode" --pack "$PACK" --out "$dir" --device cuda "${members[@]}"
    if [[ -f "$dir/ensemble.json" ]]; then
      step "ensemble ($mode) evaluation" "$EDGE_BUS" evaluate "$dir/ensemble.json" --pack "$PACK" --split test --device cuda --out "$dir/test"
    fi
  done
fi

# One summary table of the test reports (benchmarks/training/summarize_roster.py reads only JSON, so
# any python3 will do); a failure here is logged like any other step and never costs the results above.
step "summary" "$PYTHON" "$SCRIPT_DIR/summarize_roster.py" "$OUT"
