"""Model outputs -> results in full-frame pixels (see bundle.py for the output semantics).

classification: softmax over the logits, in the manifest's class order.
segmentation:   lesion where logit > log(t / (1 - t)) (the same as sigmoid(logit) > t, without the
                exp); the largest connected component is the lesion; its box, area and contour are
                given in pixels of the original frame (scaled from the model's S x S to the ROI,
                then offset by the ROI's origin). Masks are scaled to the frame by interpolating the
                logits bilinearly and thresholding there: the outline follows the model's sub-pixel
                boundary instead of the staircase of an S x S mask blown up nearest-neighbour (a
                128 px mask on a 600 px ROI has 5 px steps). Accuracy metrics stay at model
                resolution (`binary_mask`).

Public, stable functions (the runtime and edge_bus.benchmarking share them; no torch):
    softmax(logits)                                   -> probabilities over the last axis, float32
    classify(logits, classes)                         -> Classification(label, probs) of one frame
    classify_batch(logits (N, C))                     -> (class indices (N,), probabilities (N, C))
    binary_mask(logits, threshold)                    -> uint8 {0,1} at model resolution ((N,1,S,S) -> (N,S,S))
    frame_mask(logits, threshold, frame_shape, roi)   -> uint8 {0,1} (H, W): every pixel above threshold
    segment(logits, threshold, region)                -> Lesion (largest component: box, area_px, contour) | None
    segment_frame(logits, threshold, frame_shape, roi)-> the same with the region taken from frame and ROI
    full_frame_mask(lesion, frame_shape)              -> uint8 0/255 (H, W) of the lesion
    region_of(roi, frame_shape)                       -> (x, y, w, h) the model saw
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_bus.runtime.roi import Roi


def logit_threshold(threshold: float) -> float:
    return math.log(threshold / (1.0 - threshold))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis (any leading shape), float32; computed in float64."""
    x = np.asarray(logits, dtype=np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def classify_batch(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) logits -> (class index (N,) int64, probabilities (N, C) float32), manifest class order."""
    x = np.asarray(logits)
    if x.ndim != 2:
        raise ValueError(f"classify_batch expects (N, C) logits, got shape {x.shape}")
    p = softmax(x)
    return p.argmax(axis=1).astype(np.int64), p


def binary_mask(logits: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 {0,1} where sigmoid(logit) > threshold, at model resolution.

    (N, 1, S, S) -> (N, S, S); (1, S, S) or (S, S) -> (S, S).
    """
    x = np.asarray(logits)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"binary_mask expects one channel (N, 1, S, S), got shape {x.shape}")
        x = x[:, 0]
    elif x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    elif x.ndim != 2:
        raise ValueError(f"binary_mask expects (N, 1, S, S), (1, S, S) or (S, S) logits, got shape {x.shape}")
    return (x > logit_threshold(threshold)).astype(np.uint8)


def _one_map(logits: np.ndarray, caller: str) -> np.ndarray:
    x = np.asarray(logits)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"{caller} takes one frame's (1, S, S) or (S, S) logits, got shape {np.asarray(logits).shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _scaled_mask(logit_map: np.ndarray, threshold: float, size: tuple[int, int]) -> np.ndarray:
    """uint8 {0,1} of `size` (w, h): the logits interpolated bilinearly, then thresholded."""
    scaled = cv2.resize(logit_map, size, interpolation=cv2.INTER_LINEAR)
    return (scaled > logit_threshold(threshold)).astype(np.uint8)


def frame_mask(logits: np.ndarray, threshold: float, frame_shape: tuple[int, ...], roi: Roi | None = None) -> np.ndarray:
    """uint8 {0,1} (H, W) of the frame: every pixel above threshold, the logits scaled into the ROI
    (the whole frame when roi is None); 0 outside the ROI. One frame's (1, S, S) or (S, S) logits."""
    logit_map = _one_map(logits, "frame_mask")
    x, y, w, h = region_of(roi, frame_shape)
    out = np.zeros(tuple(int(v) for v in frame_shape[:2]), dtype=np.uint8)
    out[y : y + h, x : x + w] = _scaled_mask(logit_map, threshold, (w, h))
    return out


@dataclass
class Classification:
    label: str
    probs: dict[str, float]


def classify(logits: np.ndarray, classes: list[str]) -> Classification:
    p = softmax(np.asarray(logits).reshape(-1))
    return Classification(label=classes[int(p.argmax())], probs={c: round(float(v), 6) for c, v in zip(classes, p)})


@dataclass
class Lesion:
    box: tuple[int, int, int, int]  # x, y, w, h in full-frame pixels
    area_px: int  # pixels of the original frame
    contour: np.ndarray  # (K, 1, 2) int32, full-frame coordinates
    mask_roi: np.ndarray  # uint8 {0,1} of the ROI's size (h, w)
    offset: tuple[int, int]  # (x, y) of the ROI in the frame


def segment(logits: np.ndarray, threshold: float, region: tuple[int, int, int, int]) -> Lesion | None:
    """Largest lesion of one (1, S, S) or (S, S) logit map, in frame pixels; None when there is none.

    `region` is (x, y, w, h) of the model input in the frame: the ROI, or (0, 0, W, H).
    """
    logit_map = _one_map(np.asarray(logits).reshape(np.shape(logits)[-2], np.shape(logits)[-1]), "segment")
    binary = binary_mask(logit_map, threshold)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if n > 2:  # push the other components below threshold; none touches the largest (8-connectivity)
        logit_map = logit_map.copy()
        logit_map[(binary == 1) & (labels != largest)] = logit_threshold(threshold) - 1.0
    x, y, w, h = region
    mask_roi = _scaled_mask(logit_map, threshold, (w, h))
    contours, _ = cv2.findContours(mask_roi, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:  # a component that vanished when scaled down
        return None
    contour = max(contours, key=cv2.contourArea) + np.array([x, y], dtype=np.int32)
    bx, by, bw, bh = cv2.boundingRect(contour)
    return Lesion(box=(bx, by, bw, bh), area_px=int(cv2.countNonZero(mask_roi)), contour=contour,
                  mask_roi=mask_roi, offset=(x, y))


def segment_frame(logits: np.ndarray, threshold: float, frame_shape: tuple[int, ...], roi: Roi | None = None) -> Lesion | None:
    """`segment` with the region taken from the frame's shape and the ROI (None = the whole frame)."""
    return segment(logits, threshold, region_of(roi, frame_shape))


def full_frame_mask(lesion: Lesion | None, frame_shape: tuple[int, ...]) -> np.ndarray:
    """uint8 mask (H, W) of the frame: 255 on the lesion, 0 elsewhere."""
    mask = np.zeros(frame_shape[:2], dtype=np.uint8)
    if lesion is not None:
        x, y = lesion.offset
        h, w = lesion.mask_roi.shape
        mask[y : y + h, x : x + w] = lesion.mask_roi * np.uint8(255)
    return mask


def region_of(roi: Roi | None, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if roi is None:
        return (0, 0, int(frame_shape[1]), int(frame_shape[0]))
    return (roi.x, roi.y, roi.w, roi.h)
