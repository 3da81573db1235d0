"""Synthetic breast-ultrasound phantoms in the BUSI layout, for tests and demos.

Each frame is a layered tissue echogenicity map (skin, fat, glandular tissue, muscle) multiplied by
spatially correlated Rayleigh speckle and depth attenuation. Lesions are dark (hypoechoic):

    benign     smooth oval, wider than tall, sharp smooth margin, posterior acoustic enhancement
    malignant  irregular, spiculated, taller than wide, darker, posterior acoustic shadowing
    normal     no lesion; the mask is empty

These are the textbook sonographic cues, exaggerated enough that a short training run separates
the classes. Nothing here resembles a real patient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from edge_bus.data.busi import CLASSES
from edge_bus.errors import DataError

LESION_KINDS = ("benign", "malignant")


def _polar_grid(size: tuple[int, int], center: tuple[float, float], angle: float):
    """Radius and angle of every pixel around `center`, in a frame rotated by `angle`."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - center[1], yy - center[0]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return u, v


def _lesion_mask(rng: np.random.Generator, size: tuple[int, int], kind: str, scale: float = 1.0):
    """A filled lesion outline and its center/extent: (mask bool (H, W), (cy, cx), (ry, rx))."""
    h, w = size
    short = min(h, w)
    if kind == "benign":
        rx = short * rng.uniform(0.14, 0.22) * scale
        ry = rx * rng.uniform(0.5, 0.75)  # wider than tall
        angle = rng.uniform(-0.25, 0.25)
    else:
        ry = short * rng.uniform(0.12, 0.18) * scale
        rx = ry * rng.uniform(0.7, 0.95)  # taller than wide
        angle = rng.uniform(-0.4, 0.4)
    cy = rng.uniform(0.35, 0.6) * h
    cx = rng.uniform(0.3, 0.7) * w
    u, v = _polar_grid(size, (cy, cx), angle)
    rho = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
    theta = np.arctan2(v / ry, u / rx)
    if kind == "benign":
        # A gently lobulated smooth oval.
        boundary = 1.0 + 0.04 * np.cos(2 * theta + rng.uniform(0, 2 * np.pi))
    else:
        boundary = np.ones_like(theta)
        for k in (2, 3, 5):  # irregular, angular outline
            boundary += rng.uniform(0.06, 0.14) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        spikes = int(rng.integers(9, 16))  # spiculations: narrow radial spikes
        boundary += rng.uniform(0.35, 0.6) * np.abs(np.cos(spikes / 2 * theta + rng.uniform(0, np.pi))) ** 12
    return rho <= boundary, (cy, cx), (ry, rx)


def _tissue(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Echogenicity map (float32, about 0..1) of skin, fat, glandular tissue and muscle layers.

    Layer depths, tilt, waviness and levels vary per frame, so phantoms are not near-duplicates
    of one another (see dedup.py).
    """
    h, w = size
    depth = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    tilt = rng.uniform(-0.15, 0.15) * (x - 0.5)
    wave = rng.uniform(0.02, 0.07) * np.sin(2 * np.pi * (x * rng.uniform(0.5, 2.5) + rng.uniform(0, 1)))
    skin = depth < 0.04 + 0.2 * wave
    fat = depth < rng.uniform(0.12, 0.3) + wave + tilt
    gland = depth < rng.uniform(0.6, 0.85) + wave - tilt
    levels = rng.uniform([0.8, 0.25, 0.5, 0.3], [1.0, 0.45, 0.75, 0.55])
    tissue = np.where(skin, levels[0], np.where(fat, levels[1], np.where(gland, levels[2], levels[3])))
    tissue = tissue.astype(np.float32)
    # Low-frequency heterogeneity of the tissue (fat lobules, ducts).
    cells = int(rng.integers(4, 10))
    blobs = rng.normal(0, 1, (cells, cells)).astype(np.float32)
    blobs = cv2.resize(blobs, (w, h), interpolation=cv2.INTER_CUBIC)
    tissue *= 1.0 + rng.uniform(0.12, 0.25) * blobs
    return np.clip(tissue, 0.05, None)


def _speckle(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Fully developed speckle: Rayleigh amplitude, blurred laterally more than axially."""
    h, w = size
    amp = rng.rayleigh(1.0, (h, w)).astype(np.float32)
    k = max(1, min(h, w) // 64)
    amp = cv2.GaussianBlur(amp, (0, 0), sigmaX=0.6 + k, sigmaY=0.4 + 0.5 * k)
    return amp / amp.mean()


def _render(
    rng: np.random.Generator, size: tuple[int, int], kind: str | None, n_lesions: int = 1
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One phantom: uint8 (H, W) image and one uint8 {0, 255} mask per lesion (none for normal)."""
    h, w = size
    if h < 16 or w < 16:
        raise DataError(f"phantom size {h}x{w} is too small; use at least 16x16 pixels")
    echo = _tissue(rng, size)
    masks: list[np.ndarray] = []
    if kind is not None:
        for i in range(n_lesions):
            mask, (cy, cx), (ry, rx) = _lesion_mask(rng, size, kind, scale=1.0 if i == 0 else 0.6)
            soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.8 if kind == "benign" else 1.6)
            level = rng.uniform(0.12, 0.22) if kind == "benign" else rng.uniform(0.03, 0.1)
            echo = echo * (1 - soft) + level * soft
            # Posterior acoustic enhancement (benign) or shadowing (malignant) below the lesion.
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            column = np.exp(-(((xx - cx) / (0.8 * rx)) ** 4)) * (yy > cy + 0.6 * ry)
            column = cv2.GaussianBlur(column.astype(np.float32), (0, 0), 2.0)
            factor = 1.35 if kind == "benign" else 0.4
            echo = echo * (1 + (factor - 1) * column * (1 - soft))
            masks.append(mask.astype(np.uint8) * 255)
    # Depth attenuation and a lateral gain drift (probe contact), different in every frame.
    attenuation = np.exp(-rng.uniform(0.6, 1.8) * np.linspace(0, 1, h, dtype=np.float32))[:, None]
    attenuation = attenuation * (1 + rng.uniform(-0.25, 0.25) * np.linspace(-1, 1, w, dtype=np.float32))[None, :]
    image = echo * attenuation * _speckle(rng, size)
    image = 255.0 * np.log1p(4.0 * np.clip(image, 0, None)) / np.log1p(4.0 * 1.6)  # log compression
    return np.clip(image, 0, 255).astype(np.uint8), masks


def phantom_frame(
    rng: np.random.Generator, size: tuple[int, int] = (256, 256), lesion: bool | str = True
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom frame for streaming sources: (image uint8 (H, W), mask uint8 (H, W) in {0, 1}).

    `lesion` is True (a benign or malignant lesion at random), False (normal tissue), or the kind
    "benign" / "malignant".
    """
    if lesion is True:
        kind: str | None = LESION_KINDS[int(rng.integers(0, 2))]
    elif lesion is False or lesion is None:
        kind = None
    elif lesion in LESION_KINDS:
        kind = str(lesion)
    else:
        raise DataError(f"phantom lesion={lesion!r} is not one of True, False, 'benign', 'malignant'")
    image, masks = _render(rng, tuple(size), kind)
    mask = np.zeros(image.shape, np.uint8)
    for m in masks:
        mask |= (m > 0).astype(np.uint8)
    return image, mask


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise DataError(f"{path}: could not encode the PNG")
    buf.tofile(str(path))


def write_busi_phantoms(
    root: str | Path,
    counts: Mapping[str, int] | None = None,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    multi_mask_rate: float = 0.1,
) -> Path:
    """Write a BUSI-layout folder of phantoms under `root` and return it.

    `counts` maps class name to the number of images (default 20 each). Files are named as in
    BUSI: `benign/benign (1).png`, `benign/benign (1)_mask.png`, and `..._mask_1.png` for a second
    lesion (a fraction `multi_mask_rate` of the lesion images). Images are written as 3-channel
    gray PNGs like BUSI's. The same seed always gives the same files.
    """
    counts = dict(counts) if counts is not None else {c: 20 for c in CLASSES}
    unknown = sorted(set(counts) - set(CLASSES))
    if unknown:
        raise DataError(f"phantom counts name unknown classes {unknown}; classes are {list(CLASSES)}")
    root = Path(root)
    for label in CLASSES:
        n = int(counts.get(label, 0))
        if n < 0:
            raise DataError(f"phantom count for {label} is {n}; use 0 or more")
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            rng = np.random.default_rng([seed, CLASSES.index(label), i])
            kind = None if label == "normal" else label
            n_lesions = 2 if kind is not None and rng.random() < multi_mask_rate else 1
            image, masks = _render(rng, tuple(size), kind, n_lesions)
            stem = f"{label} ({i})"
            _write_png(folder / f"{stem}.png", cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
            if not masks:
                masks = [np.zeros(image.shape, np.uint8)]
            for j, mask in enumerate(masks):
                suffix = "_mask" if j == 0 else f"_mask_{j}"
                _write_png(folder / f"{stem}{suffix}.png", mask)
    return root
