"""The parity gate: every exported artifact against the FP32 PyTorch model, by task metrics.

NumPy only (no torch): the reference outputs are computed once at export and stored in the
bundle (parity_reference.npz), so `edge-bus export build-engine` can gate a TensorRT engine on a
cart that has no PyTorch.

classification: top-1 agreement with the reference (>= 99%) and the largest probability difference.
segmentation:   mean mask IoU against the reference masks (>= 0.98) and the change of mean IoU
                against ground truth (<= 0.005 for fp32/fp16, <= 0.01 for int8).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_bus.errors import BundleError
from edge_bus.fileio import read_json, write_json_atomic

REFERENCE_NAME = "parity_reference.npz"
MIN_TOP1_AGREEMENT = 0.99
MIN_MEAN_IOU_VS_REFERENCE = 0.98
MAX_IOU_CHANGE = {"fp32": 0.005, "fp16": 0.005, "int8": 0.01}


@dataclass
class Reference:
    task: str
    threshold: float
    images: np.ndarray  # uint8 (N, S, S): the inputs, before normalize
    masks: np.ndarray  # uint8 (N, S, S) ground truth (segmentation), may be all zero otherwise
    labels: np.ndarray  # int64 (N,), -1 when unknown
    output: np.ndarray  # classification: probabilities (N, C); segmentation: uint8 masks (N, S, S)
    source: str

    def __len__(self) -> int:
        return len(self.images)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def masks_from_logits(logits: np.ndarray, threshold: float) -> np.ndarray:
    """(N,1,S,S) or (N,S,S) logits -> uint8 masks where sigmoid(logit) > threshold."""
    cut = math.log(threshold / (1.0 - threshold))
    arr = logits[:, 0] if logits.ndim == 4 else logits
    return (arr > cut).astype(np.uint8)


def make_reference(task: str, logits: np.ndarray, images, masks, labels, threshold: float, source: str) -> Reference:
    out = softmax(logits.astype(np.float64)).astype(np.float32) if task == "classification" else masks_from_logits(logits, threshold)
    return Reference(task, float(threshold), images, masks, np.asarray(labels, np.int64), out, source)


def save_reference(ref: Reference, path: str | Path) -> Path:
    path = Path(path)
    np.savez_compressed(
        path, images=ref.images, masks=ref.masks, labels=ref.labels, output=ref.output,
        meta=np.array(json.dumps({"task": ref.task, "threshold": ref.threshold, "source": ref.source})),
    )
    return path


def load_reference(path: str | Path) -> Reference:
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return Reference(meta["task"], float(meta["threshold"]), z["images"], z["masks"], z["labels"],
                             z["output"], meta["source"])
    except FileNotFoundError:
        raise BundleError(f"{p}: parity reference missing; re-export the bundle with `edge-bus export CHECKPOINT`") from None
    except Exception as exc:
        raise BundleError(f"{p}: unreadable parity reference ({type(exc).__name__}); re-export the bundle") from None


def _mean_iou(preds: np.ndarray, gts: np.ndarray) -> float:
    from edge_bus.metrics import iou_per_image  # noqa: PLC0415  (the project's IoU, empty-mask rule included)

    return float(np.mean(iou_per_image(preds, gts))) if len(preds) else float("nan")


def compare_classification(ref: Reference, logits: np.ndarray) -> dict[str, Any]:
    probs = softmax(logits.astype(np.float64))
    agree = float(np.mean(probs.argmax(1) == ref.output.argmax(1)))
    result = {
        "top1_agreement": agree,
        "max_prob_diff": float(np.abs(probs - ref.output).max()),
        "thresholds": {"min_top1_agreement": MIN_TOP1_AGREEMENT},
        "passed": agree >= MIN_TOP1_AGREEMENT,
    }
    known = ref.labels >= 0
    if known.any():
        result["accuracy_reference"] = float(np.mean(ref.output.argmax(1)[known] == ref.labels[known]))
        result["accuracy_artifact"] = float(np.mean(probs.argmax(1)[known] == ref.labels[known]))
    return result


def compare_segmentation(ref: Reference, logits: np.ndarray, precision: str) -> dict[str, Any]:
    masks = masks_from_logits(logits, ref.threshold)
    vs_ref = _mean_iou(masks, ref.output)
    iou_ref = _mean_iou(ref.output, ref.masks)
    iou_art = _mean_iou(masks, ref.masks)
    change = iou_art - iou_ref
    tol = MAX_IOU_CHANGE.get(precision, MAX_IOU_CHANGE["fp32"])
    return {
        "mean_iou_vs_reference": vs_ref,
        "iou_vs_ground_truth_reference": iou_ref,
        "iou_vs_ground_truth_artifact": iou_art,
        "iou_change": change,
        "thresholds": {"min_mean_iou_vs_reference": MIN_MEAN_IOU_VS_REFERENCE, "max_abs_iou_change": tol},
        "passed": bool(vs_ref >= MIN_MEAN_IOU_VS_REFERENCE and abs(change) <= tol),
    }


def compare(ref: Reference, logits: np.ndarray, *, artifact: str, precision: str = "fp32") -> dict[str, Any]:
    """One artifact's parity record (artifact e.g. "onnx", "tensorrt:fp16")."""
    if len(logits) != len(ref):
        raise BundleError(f"parity: {artifact} returned {len(logits)} outputs for {len(ref)} images")
    if not np.isfinite(logits).all():
        return {"artifact": artifact, "precision": precision, "images": len(ref), "passed": False,
                "reason": "non-finite outputs (NaN or infinity)"}
    body = compare_classification(ref, logits) if ref.task == "classification" else compare_segmentation(ref, logits, precision)
    return {"artifact": artifact, "precision": precision, "images": len(ref), **body}


def numeric_check(reference_logits: np.ndarray, logits: np.ndarray, *, artifact: str, rtol: float = 1e-3) -> dict[str, Any]:
    """Tensor-level agreement (used for latency-only bundles of untrained models)."""
    diff = float(np.abs(reference_logits - logits).max())
    scale = float(max(1.0, np.abs(reference_logits).max()))
    return {"artifact": artifact, "max_abs_diff": diff, "tolerance": rtol * scale, "passed": diff <= rtol * scale}


def gate_metric(record: dict[str, Any]) -> tuple[str, str]:
    """(what was compared, the figures) of one gate record, for tables and messages."""
    if "top1_agreement" in record:
        return "top-1 agreement", f"{record['top1_agreement']:.4f} (max dp {record.get('max_prob_diff', float('nan')):.2e})"
    if "mean_iou_vs_reference" in record:
        return "IoU vs ref / dIoU(gt)", f"{record['mean_iou_vs_reference']:.4f} / {record['iou_change']:+.4f}"
    if "max_abs_diff" in record:
        return "max |diff|", f"{record['max_abs_diff']:.2e}"
    return "reason", str(record.get("reason", "see the gate record"))


def summarize(records: list[dict[str, Any]], *, latency_only: bool, source: str) -> dict[str, Any]:
    passed = gate_passed(records)
    return {
        "gate": "numeric (latency-only bundle)" if latency_only else "task metrics vs FP32 PyTorch",
        "images_source": source,
        "passed": passed,
        "artifacts": records,
    }


def write_parity(report: dict[str, Any], path: str | Path) -> Path:
    return write_json_atomic(path, report)


def read_parity(path: str | Path) -> dict[str, Any]:
    """The recorded gate outcome; BundleError naming the file when it is missing or malformed
    (a bundle without its parity.json has no known outcome, so it never counts as passed)."""
    p = Path(path)
    fix = "re-export the bundle with `edge-bus export CHECKPOINT`"
    data = read_json(p, BundleError, what="parity outcome", fix=fix, missing=f"the bundle's gate is unknown; {fix}")
    if not isinstance(data, dict) or not isinstance(data.get("passed"), bool) or not isinstance(data.get("artifacts"), list):
        raise BundleError(f"{p}: parity outcome needs 'passed' (true/false) and 'artifacts' (a list); {fix}")
    if not all(isinstance(r, dict) for r in data["artifacts"]):
        raise BundleError(f"{p}: parity field 'artifacts' must list objects; {fix}")
    return data


def gate_passed(records: list[dict[str, Any]]) -> bool:
    """True when every record that is gated (not informative only) passed."""
    return all(r.get("passed", False) for r in records if not r.get("informative_only"))
