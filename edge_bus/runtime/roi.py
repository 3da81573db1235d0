"""Region of interest: the ultrasound image inside a scanner's video output.

A scanner's video output carries text, logos, depth scales and calipers around the image. The model
must see only the image: `roi="x,y,w,h"` crops a fixed box, `roi="auto"` finds it once from the first
frames and keeps it fixed. Results are reported in full-frame coordinates (see `Roi.offset`).

Auto ROI: over a few frames, a pixel belongs to the image when its mean intensity is above the
black background or it changes over time (speckle, probe motion). A morphological opening removes
thin overlays (text strokes, ticks, calipers, lines); a closing fills dark anatomy (cysts, vessels)
inside the image; the largest connected component, together with any component in the same columns
and at least a tenth of its size (an image split by a dark band), gives the bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from edge_bus.data.preprocess import to_gray
from edge_bus.errors import ConfigError, SourceError


@dataclass(frozen=True)
class Roi:
    x: int
    y: int
    w: int
    h: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The ROI of `image` (a view, no copy); clipped to the image."""
        return image[self.y : self.y + self.h, self.x : self.x + self.w]

    def fits(self, shape: Sequence[int]) -> bool:
        return self.x + self.w <= shape[1] and self.y + self.h <= shape[0]

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


def parse_roi(text: str | None) -> Roi | str | None:
    """'none'/None -> None, 'auto' -> 'auto', 'x,y,w,h' -> Roi (ConfigError otherwise; one parser, config.py's)."""
    from edge_bus.runtime.config import parse_roi as parse

    if text is None:
        return None
    value = parse(str(text), "roi")
    if value == "none":
        return None
    if value == "auto":
        return "auto"
    return Roi(*value)


def check_roi(roi: Roi, shape: Sequence[int], where: str = "frame") -> None:
    if not roi.fits(shape):
        raise ConfigError(
            f"roi {','.join(map(str, roi.as_list()))} does not fit inside {where} of {shape[1]}x{shape[0]} pixels; "
            "use --roi auto or a box inside the frame"
        )


def find_roi(frames: Sequence[np.ndarray], *, intensity: float = 12.0, motion: float = 4.0,
             min_fraction: float = 0.04) -> Roi:
    """Find the ultrasound image in frames of a scanner's video output (see the module docstring)."""
    grays = [to_gray(f, what="roi frame") for f in frames if isinstance(f, np.ndarray) and f.size]
    if not grays:
        raise SourceError("auto roi: no usable frame to look at; pass --roi x,y,w,h")
    h, w = grays[0].shape
    grays = [g for g in grays if g.shape == (h, w)]
    stack = np.stack(grays).astype(np.float32)
    mean = stack.mean(axis=0)
    signal = mean > intensity
    if len(grays) > 1:
        signal |= stack.std(axis=0) > motion
    mask = signal.astype(np.uint8)
    short = min(h, w)
    k_open = max(3, int(round(short * 0.02)) | 1)
    k_close = max(5, int(round(short * 0.06)) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (k_open, k_open)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k_close, k_close)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        raise SourceError("auto roi: found no ultrasound image (frames are dark or static); pass --roi x,y,w,h")
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = int(areas.max())
    if largest < min_fraction * h * w:
        raise SourceError(
            f"auto roi: the largest bright region covers only {100 * largest / (h * w):.1f}% of the frame; "
            "pass --roi x,y,w,h"
        )
    big = 1 + int(np.argmax(areas))
    bx0, bx1 = int(stats[big, cv2.CC_STAT_LEFT]), int(stats[big, cv2.CC_STAT_LEFT] + stats[big, cv2.CC_STAT_WIDTH])

    def same_column(i: int) -> bool:  # a part of the image split off by a dark band, not a side panel
        x0, x1 = int(stats[i, cv2.CC_STAT_LEFT]), int(stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH])
        return min(x1, bx1) - max(x0, bx0) >= 0.5 * (x1 - x0)

    keep = [i for i in range(1, n) if i == big or (stats[i, cv2.CC_STAT_AREA] >= 0.1 * largest and same_column(i))]
    x0 = min(int(stats[i, cv2.CC_STAT_LEFT]) for i in keep)
    y0 = min(int(stats[i, cv2.CC_STAT_TOP]) for i in keep)
    x1 = max(int(stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH]) for i in keep)
    y1 = max(int(stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT]) for i in keep)
    return Roi(x0, y0, x1 - x0, y1 - y0)
