"""Image sets for the parity gate and INT8 calibration: a pack, a BUSI folder, or phantoms.

A trained model is gated and calibrated on real images only: --pack, --data, or the pack recorded
in its checkpoint (see `training_pack`). Phantoms serve latency-only bundles of untrained models.
With --data the split manifest the model was trained on says which images are which: parity on its
val items, calibration on its train items (`data_split`: --split, or the committed
splits/busi-seed0.json when its hash is the checkpoint's). Only a model that records no split gets
seeded disjoint halves of the folder.
Every set is uint8 (N, S, S) images (= resize_gray(to_gray(img))), uint8 {0,1} masks and labels
(-1 when unknown), so that `normalize` (THE preprocessing) turns them into model inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_bus.data.busi import CLASSES
from edge_bus.data.preprocess import PreprocessSpec, normalize
from edge_bus.errors import ConfigError, DataError

# The shared split (docs/CONTRACTS.md), present in a source checkout.
COMMITTED_SPLIT = Path(__file__).resolve().parents[2] / "splits" / "busi-seed0.json"


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 (N, S, S)
    masks: np.ndarray  # uint8 (N, S, S) in {0, 1}
    labels: np.ndarray  # int64 (N,), -1 when unknown
    source: str  # e.g. "pack:/x/busi.npz[val]", "phantoms(seed=1)"

    def inputs(self, spec: PreprocessSpec) -> np.ndarray:
        return normalize(self.images, spec)

    def __len__(self) -> int:
        return len(self.images)

    def describe(self) -> dict:
        return {"source": self.source, "images": len(self)}


def _resize_set(images, masks, size):
    from edge_bus.data.preprocess import resize_gray, resize_mask  # noqa: PLC0415

    if images.shape[-1] == size:
        return images, masks
    return (np.stack([resize_gray(i, size) for i in images]), np.stack([resize_mask(m, size) for m in masks]))


def _pick(n_total: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_total)[: min(n, n_total)])


def from_pack(path: str | Path, split: str, n: int, size: int, seed: int = 0) -> ImageSet:
    from edge_bus.data.pack import load_pack  # noqa: PLC0415

    part = load_pack(path).split(split)
    if len(part.images) == 0:
        raise DataError(f"{path}: split '{split}' of this pack is empty; pass another --pack or omit it")
    idx = _pick(len(part.images), n, seed)
    images, masks = _resize_set(part.images[idx], part.masks[idx], size)
    return ImageSet(images, masks, np.asarray(part.labels)[idx].astype(np.int64), f"pack:{path}[{split}]")


def from_busi(root: str | Path, split: str, n: int, size: int, seed: int = 0) -> ImageSet:
    """From a BUSI folder without a split manifest: a seeded pick; 'train' and 'val' picks are disjoint."""
    from edge_bus.data.busi import index_busi, load_sample  # noqa: PLC0415

    samples = sorted(index_busi(root).samples, key=lambda s: s.id)
    if not samples:
        raise DataError(f"{root}: no BUSI images found; pass a BUSI-layout folder to --data")
    order = np.random.default_rng(seed).permutation(len(samples))
    half = len(samples) // 2
    chosen = order[:half] if split == "train" else order[half:]
    chosen = np.sort(chosen[:n])
    images, masks, labels = [], [], []
    for i in chosen:
        img, mask = load_sample(samples[i], size)
        images.append(img)
        masks.append(mask)
        labels.append(CLASSES.index(samples[i].label) if samples[i].label in CLASSES else -1)
    return ImageSet(np.stack(images), np.stack(masks), np.asarray(labels, np.int64), f"busi:{root}[{split}-half]")


def data_split(split: str | Path | None, split_hash: str, where: str):
    """The split manifest that divides a --data folder for a model trained on split `split_hash`.

    `split` (--split) must have that hash; without it the committed split is used when its hash
    matches; ConfigError otherwise. None when the model records no split (seeded halves then)."""
    from edge_bus.data.split import load_split  # noqa: PLC0415

    if split:
        manifest = load_split(split)
        if split_hash and manifest.hash != split_hash:
            raise ConfigError(
                f"--split {split}: this is split {manifest.hash[:12]}, but {where} was trained on split "
                f"{split_hash[:12]}; pass the split manifest it was trained with"
            )
        return manifest
    if not split_hash:
        return None
    committed = load_split(COMMITTED_SPLIT) if COMMITTED_SPLIT.is_file() else None
    if committed is not None and committed.hash == split_hash:
        return committed
    raise ConfigError(
        f"{where}: was trained on split {split_hash[:12]}; with --data also pass that split's manifest "
        "(--split MANIFEST.json), so that parity runs on its val images and calibration on its train images"
    )


def from_split(root: str | Path, manifest, split: str, n: int, size: int, seed: int = 0) -> ImageSet:
    """`n` seeded items of `split` ('val' for parity, 'train' for calibration) of a split manifest,
    read from the BUSI folder `root` (the chosen items' files checked against the manifest's SHA-256)."""
    from dataclasses import replace  # noqa: PLC0415

    from edge_bus.data.pack import _load_item  # noqa: PLC0415  (the pack's loader: the same pixels as training)
    from edge_bus.data.split import verify_split  # noqa: PLC0415

    root = Path(root)
    items = manifest.items(split)
    if not items:
        raise DataError(f"split {manifest.hash[:12]} has no '{split}' items; pass the split the model was trained on")
    chosen = [items[i] for i in _pick(len(items), n, seed)]
    verify_split(replace(manifest, entries=chosen), root)  # only the files read here
    loaded = [_load_item((item, root, size)) for item in chosen]
    labels = np.asarray([item.label_index for item in chosen], np.int64)
    return ImageSet(np.stack([im for im, _ in loaded]), np.stack([m for _, m in loaded]), labels,
                    f"busi:{root}[{split} of split {manifest.hash[:12]}]")


def from_phantoms(n: int, size: int, seed: int = 0) -> ImageSet:
    from edge_bus.data.synthetic import phantom_frame  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    images, masks, labels = [], [], []
    for i in range(n):
        label = CLASSES[i % len(CLASSES)]
        img, mask = phantom_frame(rng, size=(size, size), lesion=False if label == "normal" else label)
        images.append(img)
        masks.append((np.asarray(mask) > 0).astype(np.uint8))
        labels.append(CLASSES.index(label))
    labels = np.asarray(labels, dtype=np.int64)
    return ImageSet(np.stack(images), np.stack(masks), labels, f"phantoms(seed={seed})")


def training_pack(recorded: str | None, split_hash: str, where: str) -> str | None:
    """The pack a model was trained from, when it still exists and holds the model's split.

    None when nothing is recorded or the file is gone; ConfigError when it now holds another split
    (it was rebuilt), since gating on it could gate on training images."""
    if not recorded or not Path(recorded).is_file():
        return None
    from edge_bus.data.pack import load_pack  # noqa: PLC0415

    try:
        found = load_pack(recorded).split_hash
    except DataError:
        return None
    if split_hash and found != split_hash:
        raise ConfigError(
            f"{where}: its training pack {recorded} now holds split {found[:12]}, the model was trained on "
            f"{split_hash[:12]}; pass --pack with the pack of the training split (or --data)"
        )
    return str(recorded)


def image_set(
    *, pack: str | Path | None, data: str | Path | None, split: str, n: int, size: int, seed: int = 0,
    phantoms: bool = False, purpose: str = "the parity gate", split_manifest=None,
) -> ImageSet:
    """Parity uses split='val', INT8 calibration split='train'. `split_manifest` (see data_split)
    divides a --data folder. Phantoms only when `phantoms` (untrained, latency-only exports);
    otherwise ConfigError asking for --pack or --data."""
    if pack:
        return from_pack(pack, split, n, size, seed)
    if data and split_manifest is not None:
        return from_split(data, split_manifest, split, n, size, seed)
    if data:
        return from_busi(data, split, n, size, seed)
    if not phantoms:
        raise ConfigError(
            f"{purpose} of a trained model needs real images: pass --pack PACK.npz (the pack it was trained "
            "from) or --data BUSI_FOLDER"
        )
    return from_phantoms(n, size, seed=seed + (1000 if split == "train" else 0))
