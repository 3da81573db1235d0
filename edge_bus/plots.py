"""PNG plots for reports. Matplotlib with the Agg backend, imported inside the functions so that
importing edge_bus never loads matplotlib (the cart runtime does not need it)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray, classes: Sequence[str], path: str | Path, title: str | None = None
) -> Path:
    """Counts with row-normalized shading (true classes in rows, predictions in columns)."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.int64)
    n = len(classes)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {counts.shape} does not fit {n} classes")
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 2))
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for t in range(n):
        for p in range(n):
            ax.text(p, t, f"{counts[t, p]}\n{share[t, p]:.0%}", ha="center", va="center",
                    color="white" if share[t, p] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(n), classes, rotation=30, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    return _save(fig, path)


def plot_class_distribution(
    counts: Mapping[str, int] | Mapping[str, Mapping[str, int]], path: str | Path, title: str | None = None
) -> Path:
    """Bars of images per class; with {group: {class: n}} (e.g. per split) grouped bars."""
    plt = _pyplot()
    if counts and all(isinstance(v, Mapping) for v in counts.values()):
        groups = {str(g): dict(v) for g, v in counts.items()}  # type: ignore[arg-type]
    else:
        groups = {"images": dict(counts)}  # type: ignore[arg-type]
    classes = list(dict.fromkeys(c for v in groups.values() for c in v))
    x = np.arange(len(classes))
    width = 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(classes) + 2), 3.5))
    for k, (name, values) in enumerate(groups.items()):
        heights = [int(values.get(c, 0)) for c in classes]
        bars = ax.bar(x + (k - (len(groups) - 1) / 2) * width, heights, width, label=name)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, classes)
    ax.set_ylabel("images")
    ax.set_title(title or "class distribution")
    if len(groups) > 1:
        ax.legend()
    return _save(fig, path)
