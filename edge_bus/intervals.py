"""How sure a test-split figure is: percentile-bootstrap intervals over images, NumPy only.

A test split of about a hundred images gives a weighted F1 or a mean IoU that another draw of
images would move by several hundredths. `interval` resamples the images with replacement and
reads the 2.5th and 97.5th percentiles of the statistic (the percentile bootstrap); `paired`
resamples the same images for two models, so what they have in common (the hard images) cancels,
and says how often the first one comes out ahead.

These are intervals over the choice of test images only: they say nothing of how far another
training run (another seed, machine or library version) would move the figure.

The resampling is seeded, so a report is the same every time it is written.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from edge_bus.metrics import weighted_f1

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0
METHOD = "percentile bootstrap over the split's images"

Statistic = Callable[[np.ndarray], float]  # indices of a resample (with repeats) -> the figure


def _resamples(n: int, resamples: int, seed: int) -> np.ndarray:
    if n < 1:
        raise ValueError("a bootstrap interval needs at least one image")
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _bounds(values: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def interval(statistic: Statistic, n: int, *, resamples: int = RESAMPLES, level: float = LEVEL,
             seed: int = SEED) -> tuple[float, float]:
    """The `level` interval of `statistic` over `n` images."""
    draws = _resamples(n, resamples, seed)
    return _bounds(np.array([statistic(idx) for idx in draws]), level)


def paired(statistic_a: Statistic, statistic_b: Statistic, n: int, *, resamples: int = RESAMPLES,
           level: float = LEVEL, seed: int = SEED) -> dict[str, Any]:
    """A minus B on the same `n` images: the difference, its interval, and the share of resamples in
    which A is ahead (ties count half)."""
    everything = np.arange(n)
    draws = _resamples(n, resamples, seed)
    diffs = np.array([statistic_a(idx) - statistic_b(idx) for idx in draws])
    low, high = _bounds(diffs, level)
    return {
        "difference": float(statistic_a(everything) - statistic_b(everything)),
        "interval": [low, high],
        "a_ahead": float(((diffs > 0).sum() + 0.5 * (diffs == 0).sum()) / len(diffs)),
        **settings(resamples, level, seed),
    }


def settings(resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED) -> dict[str, Any]:
    return {"method": METHOD, "level": level, "resamples": resamples, "seed": seed}


def text(bounds: Sequence[float] | None) -> str:
    """" [low, high]" to three decimals, to follow the figure; "" when there is no interval."""
    return "" if not bounds else f" [{bounds[0]:.3f}, {bounds[1]:.3f}]"


def mean_of(values: Sequence[float]) -> Statistic:
    """The mean of per-image values (IoU, Dice) over a resample."""
    v = np.asarray(values, dtype=np.float64)
    return lambda idx: float(v[idx].mean())


def weighted_f1_of(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> Statistic:
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return lambda idx: weighted_f1(t[idx], p[idx], n_classes)


def accuracy_of(y_true: Sequence[int], y_pred: Sequence[int]) -> Statistic:
    hit = np.asarray(y_true) == np.asarray(y_pred)
    return lambda idx: float(hit[idx].mean())


def classification_intervals(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int, **kw: Any) -> dict[str, Any]:
    """Intervals of weighted F1 and accuracy, with the settings that made them."""
    n = len(y_true)
    return {
        "weighted_f1": list(interval(weighted_f1_of(y_true, y_pred, n_classes), n, **kw)),
        "accuracy": list(interval(accuracy_of(y_true, y_pred), n, **kw)),
        **settings(**kw),
    }


def segmentation_intervals(ious: Sequence[float], dices: Sequence[float], has_lesion: Sequence[bool],
                           **kw: Any) -> dict[str, Any]:
    """Intervals of mean IoU and Dice over all images and over lesion images (resampled among
    themselves, as their mean is taken among themselves); None where a group is empty."""
    iou_v, dice_v = np.asarray(ious, dtype=np.float64), np.asarray(dices, dtype=np.float64)
    lesion = np.asarray(has_lesion, dtype=bool)
    out: dict[str, Any] = {}
    for group, sel in (("all_images", np.ones(len(iou_v), dtype=bool)), ("lesion_only", lesion)):
        n = int(sel.sum())
        out[group] = {
            name: list(interval(mean_of(v[sel]), n, **kw)) if n else None for name, v in (("iou", iou_v), ("dice", dice_v))
        }
    return {**out, **settings(**kw)}
