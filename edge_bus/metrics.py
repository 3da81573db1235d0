"""Classification and segmentation metrics, NumPy only.

Classification: the confusion matrix has true classes in rows and predictions in columns.
Precision, recall or F1 of a class whose denominator is zero is 0 (as scikit-learn's
zero_division=0). Weighted F1 averages per-class F1 weighted by the true count (support).

Segmentation masks are binary: any nonzero pixel is lesion (threshold probabilities first).

Empty-mask rule (normal images have an empty ground truth), the one place it is written down:
    ground truth empty and prediction empty   -> IoU = Dice = 1 (correctly found no lesion)
    exactly one of them empty                 -> IoU = Dice = 0
    both non-empty                            -> the usual |P∩G| / |P∪G| and 2|P∩G| / (|P| + |G|)
`segmentation_report` gives the per-image mean over all images (`all_images`, normal ones score
1 or 0 by the rule above) and over the images with a lesion in the ground truth (`lesion_only`,
the figure comparable to papers that drop normal images). Report both.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n: int) -> np.ndarray:
    """(n, n) int64 counts; entry [t, p] = samples of true class t predicted as p."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise ValueError(f"{name} holds labels outside 0..{n - 1}")
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _per_class_f1(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per class of a confusion matrix."""
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = _safe_divide(tp, matrix.sum(axis=0))
    recall = _safe_divide(tp, support)
    return precision, recall, _safe_divide(2 * precision * recall, precision + recall), support


def _weighted_f1(f1: np.ndarray, support: np.ndarray) -> float:
    total = int(support.sum())
    return float((f1 * support).sum() / total) if total else 0.0


def weighted_f1(y_true: Sequence[int], y_pred: Sequence[int], n: int) -> float:
    """Per-class F1 averaged with the true counts as weights; 0 for no samples."""
    _, _, f1, support = _per_class_f1(confusion_matrix(y_true, y_pred, n))
    return _weighted_f1(f1, support)


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, weighted and macro F1, per-class precision/recall/F1/support and the matrix.

    Labels are class indices into `classes`. Returns plain Python types (JSON-ready).
    """
    classes = list(classes)
    matrix = confusion_matrix(y_true, y_pred, len(classes))
    precision, recall, f1, support = _per_class_f1(matrix)
    total = int(matrix.sum())
    return {
        "n": total,
        "accuracy": float(np.trace(matrix) / total) if total else 0.0,
        "weighted_f1": _weighted_f1(f1, support),
        "macro_f1": float(f1.mean()) if len(classes) else 0.0,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "classes": classes,
        "confusion_matrix": matrix.tolist(),
    }


def _as_masks(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred) != 0
    g = np.asarray(gt) != 0
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground truth shape {g.shape}")
    return p, g


def _overlap(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection, |P| and |G| per image over the last two axes."""
    p, g = _as_masks(pred, gt)
    axes = (-2, -1)
    return (p & g).sum(axis=axes), p.sum(axis=axes), g.sum(axis=axes)


def iou_per_image(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of each image of (N, H, W) stacks (or one (H, W) pair), with the empty-mask rule."""
    inter, p, g = _overlap(preds, gts)
    union = p + g - inter
    return np.where(union == 0, 1.0, _safe_divide(inter, union))


def dice_per_image(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """Dice of each image of (N, H, W) stacks (or one (H, W) pair), with the empty-mask rule."""
    inter, p, g = _overlap(preds, gts)
    total = p + g
    return np.where(total == 0, 1.0, _safe_divide(2 * inter, total))


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of one (H, W) prediction against its ground truth."""
    return float(iou_per_image(pred, gt))


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of one (H, W) prediction against its ground truth."""
    return float(dice_per_image(pred, gt))


def _summary(iou_values: np.ndarray, dice_values: np.ndarray) -> dict[str, Any]:
    n = int(iou_values.size)
    return {
        "n": n,
        "iou": float(iou_values.mean()) if n else None,
        "dice": float(dice_values.mean()) if n else None,
    }


def segmentation_report(
    preds: np.ndarray | Sequence[np.ndarray],
    gts: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[int | str] | None = None,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Mean IoU and Dice over `all_images` and over `lesion_only` (ground truth non-empty).

    `preds` and `gts` are (N, H, W) stacks or lists of (H, W) masks (sizes may differ between
    images). With `labels` (class indices into `classes`, or class names) the report also has
    `per_class` means. `per_image` holds the IoU and Dice lists and the lesion flags (ground truth
    non-empty) in input order.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground-truth masks")
    ious = np.array([iou(p, g) for p, g in zip(preds, gts)], dtype=np.float64)
    dices = np.array([dice(p, g) for p, g in zip(preds, gts)], dtype=np.float64)
    has_lesion = np.array([bool(np.any(np.asarray(g) != 0)) for g in gts], dtype=bool)
    report: dict[str, Any] = {
        "all_images": _summary(ious, dices),
        "lesion_only": _summary(ious[has_lesion], dices[has_lesion]),
        "empty_only": _summary(ious[~has_lesion], dices[~has_lesion]),
        "empty_mask_rule": "both empty -> 1; exactly one empty -> 0",
        "per_image": {"iou": ious.tolist(), "dice": dices.tolist(), "lesion": has_lesion.tolist()},
    }
    if labels is not None:
        if len(labels) != len(gts):
            raise ValueError(f"{len(labels)} labels but {len(gts)} ground-truth masks")
        names = [classes[int(x)] if classes is not None and not isinstance(x, str) else str(x) for x in labels]
        report["per_class"] = {
            name: _summary(ious[sel], dices[sel])
            for name in dict.fromkeys(classes or sorted(set(names)))
            for sel in [np.array([n == name for n in names], dtype=bool)]
        }
    return report
