"""Training data from the packed cache: uint8 arrays -> (augment, train only) -> normalize.

`--resolution` below the pack's size resizes the cached uint8 images with the same
`resize_gray` (and masks with `resize_mask`) the runtime uses, so a 128-pixel CPU run still sees
exactly the arithmetic of the bundle it exports to (whose spec then says size 128). A resolution
above the pack's is refused: upsampled cache images are not what the runtime sees at that size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from edge_bus.data.augment import Augmenter
from edge_bus.data.pack import Pack
from edge_bus.data.preprocess import PreprocessSpec, normalize, resize_gray, resize_mask
from edge_bus.errors import ConfigError


@dataclass
class SplitArrays:
    images: np.ndarray  # uint8 (N, S, S)
    masks: np.ndarray  # uint8 (N, S, S) in {0, 1}
    labels: np.ndarray  # int64 (N,)
    ids: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def spec_at(pack: Pack, resolution: int | None) -> PreprocessSpec:
    """The pack's preprocessing spec at `resolution` (None: the pack's own size)."""
    spec = pack.spec
    if resolution is None or resolution == spec.size:
        return spec
    if resolution <= 0:
        raise ConfigError(f"--resolution {resolution}: use a positive size")
    if resolution > spec.size:
        raise ConfigError(
            f"--resolution {resolution} is above the {spec.size} px of {pack.path}; upsampling it is not what the runtime "
            f"sees: build a pack at that size (`edge-bus data pack MANIFEST --size {resolution}`) or drop --resolution"
        )
    return replace(spec, size=int(resolution))


def split_arrays(pack: Pack, split: str, size: int) -> SplitArrays:
    """One split of the pack at `size` pixels."""
    part = pack.split(split)
    images, masks = part.images, part.masks
    if images.shape[-1] != size:
        images = np.stack([resize_gray(im, size) for im in images]) if len(images) else np.zeros((0, size, size), np.uint8)
        masks = np.stack([resize_mask(m, size) for m in masks]) if len(masks) else np.zeros((0, size, size), np.uint8)
    return SplitArrays(images, masks, np.asarray(part.labels, dtype=np.int64), [str(i) for i in part.ids])


class PackDataset(Dataset):
    """(image float32 (1,S,S), mask float32 (1,S,S), label int64) per sample.

    With an augmenter, draw i of epoch e uses the generator seeded by (seed, epoch, i), so runs are
    reproducible whatever the number of workers or ranks.
    """

    def __init__(self, arrays: SplitArrays, spec: PreprocessSpec, augmenter: Augmenter | None = None, seed: int = 0):
        self.arrays = arrays
        self.spec = spec
        self.augmenter = augmenter
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int):
        image, mask = self.arrays.images[i], self.arrays.masks[i]
        if self.augmenter is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            image, mask = self.augmenter(image, mask, rng)
        x = torch.from_numpy(normalize(np.ascontiguousarray(image), self.spec))
        y = torch.from_numpy(mask[None].astype(np.float32))
        return x, y, torch.tensor(int(self.arrays.labels[i]))


def class_weights(labels: np.ndarray, n: int) -> torch.Tensor:
    """Inverse-frequency class weights, normalized to mean 1 over the classes present."""
    counts = np.bincount(labels, minlength=n).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return torch.tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)
