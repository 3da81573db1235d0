"""The classical baseline: thresholding and morphology, no network (NumPy/OpenCV only).

Lesions in breast ultrasound are hypoechoic (darker than the tissue around them), so:

    blur -> pixels at or below the `percentile`-th intensity -> opening then closing with an
    elliptical kernel -> connected components; drop those touching the image border (shadows
    and the dark outside of the scan fan), smaller than `min_area` (fraction of the image) or not
    dark enough (mean intensity / image mean > `max_ratio`) -> keep the largest one, or none.

`fit_classical` picks the parameters by an exhaustive search on the training split, maximizing
mean IoU over all images (edge_bus.metrics, empty-mask rule included, so "no lesion" on normal
images is rewarded). Kernel and blur sizes are given for a 256-pixel image and scaled to the
actual size.

File format (`save_classical` / `load_classical`), JSON:
    {"format": "edge-bus-classical", "version": 1, "model": "classical", "task": "segmentation",
     "params": {...}, "preprocessing": {spec dict}, "classes": [...], "split_hash": "...",
     "dataset_sha256": "...", "metrics": {"train": {...}, "val": {...}}, "train": {...}}
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.errors import CheckpointError
from edge_bus.metrics import iou_per_image

FORMAT = "edge-bus-classical"
VERSION = 1
REFERENCE_SIZE = 256

DEFAULT_GRID: dict[str, tuple] = {
    "percentile": (5.0, 10.0, 15.0, 25.0),
    "kernel": (5, 9, 15),
    "min_area": (0.002, 0.01, 0.03),
    "max_ratio": (1.0, 0.6, 0.45),
}


@dataclass(frozen=True)
class ClassicalParams:
    percentile: float = 10.0  # intensity percentile below which a pixel is a candidate
    kernel: int = 9  # morphology kernel diameter at 256 px
    min_area: float = 0.01  # smallest kept component, fraction of the image
    max_ratio: float = 1.0  # component mean / image mean must not exceed this (1.0: no check)
    blur: float = 2.0  # Gaussian sigma at 256 px


def _scaled(value: float, size: int, odd: bool = False) -> int:
    n = max(1, int(round(value * size / REFERENCE_SIZE)))
    return n + 1 if odd and n % 2 == 0 else n


@dataclass
class _Candidates:
    """Connected components of one image for one (percentile, kernel): what selection needs."""

    labels: np.ndarray
    areas: np.ndarray  # per component (index 0 = background excluded below)
    ratios: np.ndarray
    touches_border: np.ndarray


def _candidates(image: np.ndarray, blurred: np.ndarray, percentile: float, kernel: int) -> _Candidates:
    size = image.shape[0]
    dark = (blurred <= np.percentile(blurred, percentile)).astype(np.uint8)
    k = _scaled(kernel, size, odd=True)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, element)
    dark = cv2.morphologyEx(dark, cv2.MORPH_CLOSE, element)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    sums = np.bincount(labels.ravel(), weights=blurred.ravel().astype(np.float64), minlength=n)
    ratios = sums / np.maximum(areas, 1) / max(float(blurred.mean()), 1e-6)
    x, y, w, h = (stats[:, i] for i in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    border = (x == 0) | (y == 0) | (x + w >= labels.shape[1]) | (y + h >= labels.shape[0])
    border[0] = True  # background is never a lesion
    return _Candidates(labels, areas, ratios, border)


def _select(c: _Candidates, min_area: float, max_ratio: float) -> np.ndarray:
    total = c.labels.size
    ok = ~c.touches_border & (c.areas >= min_area * total) & (c.ratios <= max_ratio)
    if not ok.any():
        return np.zeros(c.labels.shape, np.uint8)
    best = int(np.argmax(np.where(ok, c.areas, -1)))
    return (c.labels == best).astype(np.uint8)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma * image.shape[0] / REFERENCE_SIZE)


class ClassicalSegmenter:
    """Predicts a uint8 {0, 1} lesion mask from a uint8 (S, S) image (the output of resize_gray)."""

    task = "segmentation"

    def __init__(self, params: ClassicalParams = ClassicalParams()):
        self.params = params

    def predict(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        blurred = _blur(image, p.blur)
        return _select(_candidates(image, blurred, p.percentile, p.kernel), p.min_area, p.max_ratio)

    def predict_batch(self, images: Iterable[np.ndarray]) -> np.ndarray:
        return np.stack([self.predict(im) for im in images])


def fit_classical(
    images: np.ndarray,
    masks: np.ndarray,
    grid: dict[str, Sequence] | None = None,
    *,
    blur: float = 2.0,
    progress: bool = False,
) -> tuple[ClassicalSegmenter, list[dict[str, Any]]]:
    """Search `grid` on (N, S, S) uint8 images and {0,1} masks; return the best segmenter and the
    ranked search results (params and mean IoU over all images)."""
    grid = {**DEFAULT_GRID, **(grid or {})}
    if len(images) == 0:
        raise ValueError("fit_classical needs at least one training image")
    gts = np.asarray(masks) != 0
    blurred = [_blur(im, blur) for im in images]
    scores: dict[tuple, np.ndarray] = {}
    pk = list(itertools.product(grid["percentile"], grid["kernel"]))
    selections = list(itertools.product(grid["min_area"], grid["max_ratio"]))
    iterator: Iterable = pk
    if progress:
        from rich.progress import track

        iterator = track(pk, description="classical search")
    for percentile, kernel in iterator:
        cands = [_candidates(im, b, percentile, kernel) for im, b in zip(images, blurred)]
        for min_area, max_ratio in selections:
            preds = np.stack([_select(c, min_area, max_ratio) for c in cands])
            scores[(percentile, kernel, min_area, max_ratio)] = iou_per_image(preds, gts)
    ranked = sorted(scores.items(), key=lambda kv: -float(kv[1].mean()))
    results = [
        {"params": asdict(ClassicalParams(*key, blur=blur)), "iou_all_images": float(v.mean())} for key, v in ranked
    ]
    best = ClassicalParams(*ranked[0][0], blur=blur)
    return ClassicalSegmenter(best), results


@dataclass
class ClassicalModel:
    """A fitted baseline as stored on disk, with its provenance."""

    path: Path | None
    segmenter: ClassicalSegmenter
    preprocessing: PreprocessSpec
    classes: list[str]
    split_hash: str = ""
    dataset_sha256: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    model: str = "classical"
    task: str = "segmentation"
    threshold: float = 0.5


def save_classical(path: str | Path, model: ClassicalModel) -> Path:
    data = {
        "format": FORMAT,
        "version": VERSION,
        "model": "classical",
        "task": "segmentation",
        "params": asdict(model.segmenter.params),
        "preprocessing": model.preprocessing.to_dict(),
        "classes": list(model.classes),
        "split_hash": model.split_hash,
        "dataset_sha256": model.dataset_sha256,
        "metrics": model.metrics,
        "train": model.train,
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return p


def load_classical(path: str | Path, data: dict | None = None) -> ClassicalModel:
    p = Path(path)
    if data is None:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{p}: not a readable classical-baseline file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise CheckpointError(f"{p}: not an {FORMAT} v{VERSION} file (write one with `edge-bus train classical`)")
    try:
        params = ClassicalParams(**data["params"])
        spec = PreprocessSpec.from_dict(data["preprocessing"])
    except Exception as exc:
        raise CheckpointError(f"{p}: invalid classical-baseline file: {exc}") from None
    return ClassicalModel(
        path=p,
        segmenter=ClassicalSegmenter(params),
        preprocessing=spec,
        classes=list(data.get("classes", [])),
        split_hash=data.get("split_hash", ""),
        dataset_sha256=data.get("dataset_sha256", ""),
        metrics=data.get("metrics", {}),
        train=data.get("train", {}),
    )
