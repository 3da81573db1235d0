"""The classical baseline: smoothing, dark-region thresholds and morphology, no network
(NumPy/OpenCV only).

Lesions in breast ultrasound are hypoechoic (darker than the tissue around them). Two methods:

"scored" (the default):
    median filter (speckle) -> Gaussian blur -> for each intensity percentile in `percentiles`,
    pixels at or below it -> opening then closing with an elliptical kernel -> the outer contours,
    filled (holes closed), of at least `min_area` of the image, pooled over all percentiles ->
    each candidate gets a linear score of
        contrast     (mean of a ring around it - its mean) / image std   (weight 1)
        darkness     (image mean - its mean) / image std                 (w_darkness)
        log area     log of its area fraction                             (w_area)
        centre       distance of its centroid to the image centre, 0..1  (-w_centre)
        border       1 when it touches the image border                   (-w_border)
        circularity  4 pi area / perimeter^2                              (w_circularity)
        solidity     area / convex-hull area                              (w_solidity)
    -> the ONE best candidate is the prediction, or nothing when its score is at most
    `min_score` (so normal images can be predicted empty).

"largest" (the first version; files without a "method" field):
    blur -> pixels at or below the `percentile`-th intensity -> opening then closing -> keep the
    largest component not touching the border, of at least `min_area`, with mean / image mean at
    most `max_ratio`.

`fit_classical` picks the parameters on the training split, maximizing mean IoU over all images
(edge_bus.metrics, empty-mask rule included, so "no lesion" on normal images is rewarded). For
"scored", the candidates of every image are computed once per smoothing/morphology setting
together with their IoU against the ground truth, so the score weights and `min_score` are searched
exhaustively at the cost of a matrix product each. Kernel, median and blur sizes are given for a
256-pixel image and scaled to the actual size.

File format (`save_classical` / `load_classical`), JSON:
    {"format": "edge-bus-classical", "version": 1, "model": "classical", "task": "segmentation",
     "params": {...}, "preprocessing": {spec dict}, "classes": [...], "split_hash": "...",
     "dataset_sha256": "...", "metrics": {"train": {...}, "val": {...}}, "train": {...}}
`params` holds the ClassicalParams fields; missing fields take their defaults, except that a file
without "method" is a first-version file and keeps method "largest".
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.errors import CheckpointError
from edge_bus.fileio import read_json, write_json_atomic
from edge_bus.metrics import iou_per_image

FORMAT = "edge-bus-classical"
VERSION = 1
REFERENCE_SIZE = 256
METHODS = ("scored", "largest")

# "largest": exhaustive grid (first version).
DEFAULT_GRID: dict[str, tuple] = {
    "percentile": (5.0, 10.0, 15.0, 25.0),
    "kernel": (5, 9, 15),
    "min_area": (0.002, 0.01, 0.03),
    "max_ratio": (1.0, 0.6, 0.45),
}

# "scored": candidate generation (each setting recomputes the candidates) ...
SCORED_GEN_GRID: dict[str, tuple] = {
    "blur": (2.0, 4.0),
    "kernel": (5, 9),
}
# ... and selection (searched on precomputed candidate features; cheap).
SCORED_SELECT_GRID: dict[str, tuple] = {
    "w_darkness": (0.0, 0.25),
    "w_area": (0.0, 0.125, 0.25),
    "w_centre": (0.0, 0.5, 1.0, 2.0),
    "w_border": (0.0, 0.5, 1.5, 3.0),
    "w_circularity": (0.0, 0.5, 1.0, 2.0),
    "w_solidity": (0.0, 1.0),
}
# min_score is searched among these quantiles of the per-image best scores.
MIN_SCORE_QUANTILES = tuple(np.linspace(0.0, 0.5, 21))
_DEFAULT_PERCENTILES = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0)


@dataclass(frozen=True)
class ClassicalParams:
    percentile: float = 10.0  # largest: intensity percentile below which a pixel is a candidate
    kernel: int = 5  # morphology kernel diameter at 256 px
    min_area: float = 0.002  # smallest kept component, fraction of the image
    max_ratio: float = 1.0  # largest: component mean / image mean must not exceed this (1.0: no check)
    blur: float = 2.0  # Gaussian sigma at 256 px
    method: str = "scored"
    median: int = 9  # scored: median filter diameter at 256 px before the blur (0: none)
    percentiles: tuple[float, ...] = _DEFAULT_PERCENTILES  # scored: thresholds pooled into candidates
    ring: float = 1 / 16  # scored: width of the surrounding ring, fraction of the image side
    w_darkness: float = 0.0
    w_area: float = 0.25
    w_centre: float = 1.0
    w_border: float = 1.5
    w_circularity: float = 1.0
    w_solidity: float = 0.0
    min_score: float = -0.05  # scored: predict empty when the best score is at most this

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        object.__setattr__(self, "percentiles", tuple(float(q) for q in self.percentiles))

    def weights(self) -> np.ndarray:
        """Score weights in the order of the candidate features (see _FEATURES)."""
        return np.array([1.0, self.w_darkness, self.w_area, -self.w_centre, -self.w_border, self.w_circularity,
                         self.w_solidity])


_FEATURES = ("contrast", "darkness", "log_area", "centre_distance", "border", "circularity", "solidity")


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


def _smooth(image: np.ndarray, p: ClassicalParams) -> np.ndarray:
    """Speckle reduction: median filter, then Gaussian blur (sizes scaled from 256 px)."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if p.median > 0:
        img = cv2.medianBlur(img, _scaled(p.median, img.shape[0], odd=True))
    return _blur(img, p.blur)


@dataclass
class _Scored:
    """The pooled candidates of one image: features (M, len(_FEATURES)) and filled masks."""

    features: np.ndarray
    masks: list[np.ndarray]


def _scored_candidates(image: np.ndarray, p: ClassicalParams) -> _Scored:
    size_y, size_x = image.shape
    smooth = _smooth(image, p).astype(np.float32)
    mean, std = float(smooth.mean()), float(smooth.std()) + 1e-6
    k = _scaled(p.kernel, size_y, odd=True)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    r = max(3, int(round(p.ring * size_y)) | 1)
    ring_element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (r, r))
    min_pixels = p.min_area * size_y * size_x
    feats: list[list[float]] = []
    masks: list[np.ndarray] = []
    thresholds = np.percentile(smooth, p.percentiles)
    for threshold in thresholds:
        dark = (smooth <= threshold).astype(np.uint8)
        dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, element)
        dark = cv2.morphologyEx(dark, cv2.MORPH_CLOSE, element)
        contours, _ = cv2.findContours(dark, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            mask = np.zeros((size_y, size_x), np.uint8)
            cv2.drawContours(mask, [contour], -1, 1, thickness=-1)  # filled: holes closed
            inside = mask > 0
            area = float(inside.sum())
            if area < max(min_pixels, 1.0):
                continue
            ring = (cv2.dilate(mask, ring_element) > 0) & ~inside
            m_in = float(smooth[inside].mean())
            m_out = float(smooth[ring].mean()) if ring.any() else m_in
            x, y, w, h = cv2.boundingRect(contour)
            ys, xs = np.nonzero(inside)
            cx, cy = xs.mean() / size_x, ys.mean() / size_y
            perimeter = max(cv2.arcLength(contour, True), 1e-6)
            hull = max(cv2.contourArea(cv2.convexHull(contour)), 1.0)
            feats.append([
                (m_out - m_in) / std,
                (mean - m_in) / std,
                float(np.log(area / (size_y * size_x))),
                float(np.hypot(cx - 0.5, cy - 0.5) / np.sqrt(0.5)),
                float(x <= 0 or y <= 0 or x + w >= size_x or y + h >= size_y),
                float(min(4 * np.pi * area / perimeter**2, 1.0)),
                float(min(area / hull, 1.0)),
            ])
            masks.append(inside)
    return _Scored(np.asarray(feats, dtype=np.float64).reshape(-1, len(_FEATURES)), masks)


class ClassicalSegmenter:
    """Predicts a uint8 {0, 1} lesion mask from a uint8 (S, S) image (the output of resize_gray)."""

    task = "segmentation"

    def __init__(self, params: ClassicalParams = ClassicalParams()):
        self.params = params

    def predict(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        if p.method == "largest":
            blurred = _blur(image, p.blur)
            return _select(_candidates(image, blurred, p.percentile, p.kernel), p.min_area, p.max_ratio)
        cands = _scored_candidates(image, p)
        if not len(cands.masks):
            return np.zeros(image.shape, np.uint8)
        scores = cands.features @ p.weights()
        best = int(np.argmax(scores))
        if scores[best] <= p.min_score:
            return np.zeros(image.shape, np.uint8)
        return cands.masks[best].astype(np.uint8)

    def predict_batch(self, images: Iterable[np.ndarray]) -> np.ndarray:
        return np.stack([self.predict(im) for im in images])


def fit_classical(
    images: np.ndarray,
    masks: np.ndarray,
    grid: dict[str, Sequence] | None = None,
    *,
    blur: float = 2.0,
    progress: bool = False,
    method: str = "scored",
    base: ClassicalParams | None = None,
) -> tuple[ClassicalSegmenter, list[dict[str, Any]]]:
    """Search on (N, S, S) uint8 images and {0,1} masks; return the best segmenter and the ranked
    search results (params and mean IoU over all images, best first).

    method "scored": `grid` overrides entries of SCORED_GEN_GRID / SCORED_SELECT_GRID (any
    ClassicalParams field may be given; generation fields recompute candidates); `base` gives the
    fields not searched. method "largest": `grid` overrides DEFAULT_GRID (first version)."""
    if len(images) == 0:
        raise ValueError("fit_classical needs at least one training image")
    if method == "largest":
        return _fit_largest(images, masks, grid, blur=blur, progress=progress)
    if method != "scored":
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return _fit_scored(images, masks, grid or {}, base or ClassicalParams(), progress=progress)


def _fit_largest(images, masks, grid, *, blur: float, progress: bool):
    from edge_bus.training.progress import iterate

    grid = {**DEFAULT_GRID, **(grid or {})}
    gts = np.asarray(masks) != 0
    blurred = [_blur(im, blur) for im in images]
    scores: dict[tuple, np.ndarray] = {}
    pk = list(itertools.product(grid["percentile"], grid["kernel"]))
    selections = list(itertools.product(grid["min_area"], grid["max_ratio"]))
    for percentile, kernel in iterate(pk, "classical search", enabled=progress):
        cands = [_candidates(im, b, percentile, kernel) for im, b in zip(images, blurred)]
        for min_area, max_ratio in selections:
            preds = np.stack([_select(c, min_area, max_ratio) for c in cands])
            scores[(percentile, kernel, min_area, max_ratio)] = iou_per_image(preds, gts)
    ranked = sorted(scores.items(), key=lambda kv: -float(kv[1].mean()))

    def params(key: tuple) -> ClassicalParams:
        percentile, kernel, min_area, max_ratio = key
        return ClassicalParams(percentile=percentile, kernel=kernel, min_area=min_area, max_ratio=max_ratio, blur=blur,
                               method="largest")

    results = [{"params": asdict(params(key)), "iou_all_images": float(v.mean())} for key, v in ranked]
    return ClassicalSegmenter(params(ranked[0][0])), results


def _candidate_table(images: np.ndarray, gts: np.ndarray, p: ClassicalParams):
    """All candidates of all images: features (M, F), IoU with the ground truth (M,), image index
    (M,), and the IoU of an empty prediction per image (N,)."""
    feats, ious, owner = [], [], []
    for i, (image, gt) in enumerate(zip(images, gts)):
        c = _scored_candidates(image, p)
        g_area = float(gt.sum())
        for f, m in zip(c.features, c.masks):
            inter = float(np.logical_and(m, gt).sum())
            union = float(m.sum()) + g_area - inter
            feats.append(f)
            ious.append(inter / union if union else 1.0)
            owner.append(i)
    empty = np.where(gts.reshape(len(gts), -1).any(axis=1), 0.0, 1.0)
    table = np.asarray(feats, dtype=np.float64).reshape(-1, len(_FEATURES))
    return table, np.asarray(ious, dtype=np.float64), np.asarray(owner, dtype=np.int64), empty


def _best_per_image(scores: np.ndarray, owner: np.ndarray, ious: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the highest candidate score (-inf without candidates) and that candidate's IoU."""
    top = np.full(n, -np.inf)
    np.maximum.at(top, owner, scores)
    iou_top = np.zeros(n)
    is_top = scores >= top[owner]
    iou_top[owner[is_top]] = ious[is_top]
    return top, iou_top


def _fit_scored(images, masks, grid: dict[str, Sequence], base: ClassicalParams, *, progress: bool):
    from edge_bus.training.progress import iterate

    names = {f.name for f in fields(ClassicalParams)}
    unknown = sorted(set(grid) - names)
    if unknown:
        raise ValueError(f"unknown classical parameters {unknown}; known: {sorted(names)}")
    gen_grid = {**SCORED_GEN_GRID, **{k: v for k, v in grid.items() if k not in SCORED_SELECT_GRID and k != "min_score"}}
    sel_grid = {**SCORED_SELECT_GRID, **{k: v for k, v in grid.items() if k in SCORED_SELECT_GRID}}
    gts = np.asarray(masks) != 0
    n = len(images)
    results: list[dict[str, Any]] = []
    gen_keys, sel_keys = list(gen_grid), list(sel_grid)
    gen_settings = list(itertools.product(*gen_grid.values()))
    for gen_values in iterate(gen_settings, "classical search", enabled=progress):
        gen = replace(base, method="scored", **dict(zip(gen_keys, gen_values)))
        table, ious, owner, empty = _candidate_table(images, gts, gen)
        best_here: tuple[float, ClassicalParams] | None = None
        for sel_values in itertools.product(*sel_grid.values()):
            trial = replace(gen, **dict(zip(sel_keys, sel_values)))
            top, iou_top = _best_per_image(table @ trial.weights(), owner, ious, n)
            finite = top[np.isfinite(top)]
            if "min_score" in grid:
                levels = np.asarray(grid["min_score"], dtype=np.float64)
            elif finite.size:
                # just below each quantile: the candidate at the quantile itself is kept
                levels = np.unique(np.quantile(finite, MIN_SCORE_QUANTILES)) - 1e-9
            else:
                levels = np.array([0.0])
            kept = top[None, :] > levels[:, None]
            per_level = np.where(kept, iou_top[None, :], empty[None, :]).mean(axis=1)
            j = int(np.argmax(per_level))
            score = float(per_level[j])
            if best_here is None or score > best_here[0]:
                best_here = (score, replace(trial, min_score=float(levels[j])))
            results.append({"params": asdict(replace(trial, min_score=float(levels[j]))), "iou_all_images": score})
    results.sort(key=lambda r: -r["iou_all_images"])
    best = ClassicalParams(**results[0]["params"])
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
    return write_json_atomic(path, data)


def load_classical(path: str | Path, data: dict | None = None) -> ClassicalModel:
    p = Path(path)
    if data is None:
        data = read_json(p, CheckpointError, what="classical-baseline file", fix="write one with `edge-bus train classical`")
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise CheckpointError(f"{p}: not an {FORMAT} v{VERSION} file (write one with `edge-bus train classical`)")
    try:
        raw = dict(data["params"])
        raw.setdefault("method", "largest")  # first-version files: the method they were fitted with
        params = ClassicalParams(**raw)
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
