#!/usr/bin/env bash
# Train and evaluate the whole roster on one GPU; everything lands under $OUT.
#
# Usage (repository root, on a GPU machine with edge-bus[train] installed):
#   OUT=/path/to/results PACK=benchmarks/training/busi256.npz bash benchmarks/training/train_roster_gpu.sh
# or, where the BUSI folder is present, let it build split and pack:
#   OUT=... DATA=/path/to/busi bash benchmarks/training/train_roster_gpu.sh
#
# Knobs (environment): EPOCHS (60), BATCH (16), RES (256), SEED (0), WEIGHTS ("" or imagenet,
# only where the torch hub cache holds the files), MODELS (the networks to train).
set -euo pipefail

: "${OUT:?set OUT to the results folder}"
EPOCHS="${EPOCHS:-60}"
BATCH="${BATCH:-16}"
RES="${RES:-256}"
SEED="${SEED:-0}"
WEIGHTS="${WEIGHTS:-}"
MODELS="${MODELS:-vgg19 resnet50 efficientnet_b0 unet unet_vgg19 deeplabv3_resnet101}"
EDGE_BUS="${EDGE_BUS:-edge-bus}"

mkdir -p "$OUT"
if [[ -z "${PACK:-}" ]]; then
  : "${DATA:?set PACK to a packed cache, or DATA to the BUSI folder}"
  "$EDGE_BUS" data split "$DATA" --out "$OUT/split.json" --seed "$SEED"
  "$EDGE_BUS" data pack "$OUT/split.json" --data "$DATA" --out "$OUT/pack.npz" --size "$RES"
  PACK="$OUT/pack.npz"
fi

"$EDGE_BUS" info > "$OUT/machine.txt" 2>&1 || nvidia-smi > "$OUT/machine.txt" 2>&1 || true

weights_args=()
if [[ -n "$WEIGHTS" ]]; then weights_args=(--weights "$WEIGHTS"); fi

for model in $MODELS; do
  extra=()
  # The plain U-Net has no ImageNet weights; the others load theirs (encoder/backbone) when asked.
  if [[ "$model" != "unet" ]]; then extra=("${weights_args[@]}"); fi
  mkdir -p "$OUT/$model"
  start=$(date +%s)
  "$EDGE_BUS" train "$model" --pack "$PACK" --out "$OUT/$model" --epochs "$EPOCHS" --batch-size "$BATCH" \
    --device cuda --seed "$SEED" --workers 4 "${extra[@]}" 2>&1 | tee "$OUT/$model/train.log" || true
  echo "$model train_seconds $(( $(date +%s) - start ))" >> "$OUT/timings.txt"
  if [[ -f "$OUT/$model/best.pt" ]]; then
    "$EDGE_BUS" evaluate "$OUT/$model/best.pt" --pack "$PACK" --split test --device cuda --out "$OUT/$model/test"
  fi
done

"$EDGE_BUS" train classical --pack "$PACK" --out "$OUT/classical"
"$EDGE_BUS" evaluate "$OUT/classical/classical.json" --pack "$PACK" --split test --out "$OUT/classical/test"

members=()
for model in unet unet_vgg19 deeplabv3_resnet101; do
  [[ -f "$OUT/$model/best.pt" ]] && members+=(--member "$OUT/$model/best.pt")
done
if (( ${#members[@]} >= 4 )); then
  "$EDGE_BUS" train ensemble --pack "$PACK" --out "$OUT/ensemble" --device cuda "${members[@]}"
  "$EDGE_BUS" evaluate "$OUT/ensemble/ensemble.json" --pack "$PACK" --split test --device cuda --out "$OUT/ensemble/test"
fi

# One summary table of the test reports.
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = ["| model | test metric | value | lesion-only IoU |", "|---|---|---|---|"]
for report in sorted(out.glob("*/test/report.json")):
    r = json.loads(report.read_text())
    if "classification" in r:
        rows.append(f"| {r['model']} | weighted F1 | {r['classification']['weighted_f1']:.4f} | |")
    else:
        s = r["segmentation"]
        rows.append(f"| {r['model']} | mean IoU (all images) | {s['all_images']['iou']:.4f} | {s['lesion_only']['iou']:.4f} |")
(out / "summary.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
