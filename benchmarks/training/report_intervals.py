"""95 % intervals over test images for reports written before `edge-bus evaluate` put them in.

Usage: python benchmarks/training/report_intervals.py PACK REPORT.json [REPORT.json ...]

A classifier's weighted F1 and accuracy depend only on its (truth, prediction) pairs, which the
confusion matrix holds, so they are resampled from it: the same bootstrap distribution as the
report's per-image pairs, though the seeded draws land on other images (the bounds differ from what
`evaluate` writes by a few thousandths, e.g. [0.448, 0.627] against [0.452, 0.625]). A segmenter's per-image IoU and
Dice are in its report; which images have a lesion is read from the pack's test masks by image id
(older reports do not say). The same `edge_bus.intervals` code as the reports use.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edge_bus.data.pack import load_pack
from edge_bus.intervals import classification_intervals, segmentation_intervals, text


def lesion_flags(pack_path: Path, split: str) -> dict[str, bool]:
    part = load_pack(pack_path).split(split)
    return {str(i): bool(m.any()) for i, m in zip(part.ids, part.masks)}


def row(path: Path, flags: dict[str, bool]) -> str:
    r = json.loads(path.read_text())
    if "classification" in r:
        matrix = np.asarray(r["classification"]["confusion_matrix"])
        truth = np.repeat(np.arange(matrix.size) // len(matrix), matrix.ravel())
        pred = np.repeat(np.arange(matrix.size) % len(matrix), matrix.ravel())
        ci = classification_intervals(truth, pred, len(matrix))
        value = r["classification"]["weighted_f1"]
        return f"| {path.parent} | {r['model']} | weighted F1 | {value:.4f} |{text(ci['weighted_f1'])} | |"
    rows = r["segmentation"]["per_image"]
    lesion = [row["lesion"] if "lesion" in row else flags[row["id"]] for row in rows]
    ci = segmentation_intervals([x["iou"] for x in rows], [x["dice"] for x in rows], lesion)
    seg = r["segmentation"]
    return (f"| {path.parent} | {r['model']} | mean IoU | {seg['all_images']['iou']:.4f} |{text(ci['all_images']['iou'])} | "
            f"{seg['lesion_only']['iou']:.4f}{text(ci['lesion_only']['iou'])} |")


def main(pack: Path, reports: list[Path]) -> str:
    flags = lesion_flags(pack, "test")
    lines = ["| report | model | metric | value | 95% interval | lesion only [interval] |", "|---|---|---|---|---|---|"]
    return "\n".join(lines + [row(p, flags) for p in reports]) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: report_intervals.py PACK REPORT.json [REPORT.json ...]")
    print(main(Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]]), end="")
