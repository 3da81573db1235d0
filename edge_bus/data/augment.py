"""Training-only augmentation: one random affine (rotation, scale, flips) applied identically to
an image and its mask. Linear interpolation for the image, nearest for the mask, so the mask
stays binary; pixels brought in from outside the frame are black (0) in both, like the dark
border of an ultrasound sector.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_bus.errors import DataError


@dataclass(frozen=True)
class Augmenter:
    rotation_deg: float = 15.0  # angle drawn uniformly in [-rotation_deg, rotation_deg]
    scale: tuple[float, float] = (0.9, 1.1)  # zoom factor drawn uniformly in this range
    hflip: float = 0.5  # probability of a left-right flip
    vflip: float = 0.0  # probability of an up-down flip (off: depth has a direction in ultrasound)

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not (0 < lo <= hi):
            raise DataError(f"augmentation scale {self.scale}: need 0 < low <= high")
        for name in ("hflip", "vflip"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise DataError(f"augmentation {name}={p}: a probability must lie in [0, 1]")
        if self.rotation_deg < 0:
            raise DataError(f"augmentation rotation_deg={self.rotation_deg}: use a non-negative angle")

    def matrix(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """The 2x3 affine of one draw for an image of `shape` (H, W)."""
        h, w = shape
        angle = rng.uniform(-self.rotation_deg, self.rotation_deg) if self.rotation_deg else 0.0
        zoom = rng.uniform(*self.scale) if self.scale[0] != self.scale[1] else self.scale[0]
        flip_x = rng.random() < self.hflip
        flip_y = rng.random() < self.vflip
        center = ((w - 1) / 2.0, (h - 1) / 2.0)
        m = np.vstack([cv2.getRotationMatrix2D(center, angle, zoom), [0.0, 0.0, 1.0]])
        flip = np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0])
        flip[0, 2] = (w - 1) if flip_x else 0.0
        flip[1, 2] = (h - 1) if flip_y else 0.0
        return (m @ flip)[:2]

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        if image.shape[:2] != mask.shape[:2]:
            raise DataError(f"augmentation: image {image.shape} and mask {mask.shape} differ in size")
        h, w = image.shape[:2]
        m = self.matrix((h, w), rng)
        out_image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out_mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out_image, out_mask
