"""The packed cache: a split preprocessed once into one compressed uint8 `.npz`.

Arrays per split s in train/val/test: `{s}_images` uint8 (N, S, S) = resize_gray(to_gray(image)),
`{s}_masks` uint8 (N, S, S) in {0, 1} (union of the masks), `{s}_labels` int64 (N,), `{s}_ids`
unicode (N,); and `meta`, a JSON string with classes, preprocessing spec, split hash and dataset
hash. Training feeds `normalize(images)` to the model, the same arithmetic as the runtime. The file
holds no pickled objects, so it loads with allow_pickle=False and can be carried to any machine.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_bus.data.busi import Sample, _map, load_sample
from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.data.split import SPLITS, SplitItem, SplitManifest, verify_split
from edge_bus.errors import DataError
from edge_bus.fileio import check_out_file
from edge_bus.fingerprint import array_sha256

PACK_FORMAT = "edge-bus-pack"
PACK_VERSION = 1


@dataclass
class PackedSplit:
    images: np.ndarray  # uint8 (N, S, S)
    masks: np.ndarray  # uint8 (N, S, S) in {0, 1}
    labels: np.ndarray  # int64 (N,)
    ids: np.ndarray  # str (N,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Pack:
    path: Path
    meta: dict[str, Any]
    splits: dict[str, PackedSplit]

    def split(self, name: str) -> PackedSplit:
        if name not in self.splits:
            raise DataError(f"{self.path}: no split {name!r} in the pack; it has {list(self.splits)}")
        return self.splits[name]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.meta["preprocessing"])

    @property
    def split_hash(self) -> str:
        return str(self.meta["split_hash"])

    @property
    def dataset_sha256(self) -> str:
        return str(self.meta["dataset_sha256"])

    def content_sha256(self) -> str:
        """SHA-256 of the packed pixels, masks, labels and ids of every split: two packs of one
        split manifest at one size differ here only when something changed the pixels (such as
        another image decoding or resizing library)."""
        return array_sha256(
            (f"{name}_{field}", getattr(part, field))
            for name, part in sorted(self.splits.items())
            for field in ("images", "masks", "labels", "ids")
        )


def _load_item(args: tuple[SplitItem, Path, int]) -> tuple[np.ndarray, np.ndarray]:
    item, root, size = args
    sample = Sample(
        id=item.id,
        label=item.label,
        image=root / item.image,
        masks=[root / m for m in item.masks],
        width=0,
        height=0,
    )
    return load_sample(sample, size)


def pack_split(
    manifest: SplitManifest,
    root: str | Path,
    out_path: str | Path,
    size: int = 256,
    *,
    verify: bool = True,
    progress: bool = False,
) -> Path:
    """Preprocess every item of `manifest` from `root` and write the cache to `out_path`.

    With `verify` (default) the files are first checked against the manifest's hashes, so a cache
    is never built from a changed data set.
    """
    if size < 8:
        raise DataError(f"--size {size}: use at least 8 pixels")
    out_path = Path(out_path)
    _check_out_path(out_path)  # before the minutes of preprocessing, not after
    root = Path(root)
    if verify:
        verify_split(manifest, root)
    spec = PreprocessSpec(size=size)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        items = manifest.items(split)
        loaded = _map(_load_item, [(it, root, size) for it in items], progress, f"packing {split} ({len(items)})")
        arrays[f"{split}_images"] = (
            np.stack([im for im, _ in loaded]) if loaded else np.zeros((0, size, size), np.uint8)
        )
        arrays[f"{split}_masks"] = np.stack([m for _, m in loaded]) if loaded else np.zeros((0, size, size), np.uint8)
        arrays[f"{split}_labels"] = np.array([manifest.classes.index(it.label) for it in items], dtype=np.int64)
        arrays[f"{split}_ids"] = np.array([it.id for it in items], dtype=np.str_)
    meta = {
        "format": PACK_FORMAT,
        "version": PACK_VERSION,
        "classes": list(manifest.classes),
        "preprocessing": spec.to_dict(),
        "split_hash": manifest.hash,
        "dataset_sha256": manifest.dataset_sha256,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary name in the same folder, then os.replace: readers never see half a cache.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.stem}.", suffix=".tmp.npz", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        np.savez_compressed(tmp, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def _check_out_path(out_path: Path) -> None:
    if out_path.suffix != ".npz":
        raise DataError(f"{out_path}: the cache file name must end in .npz")
    check_out_file(out_path, DataError, example="pack.npz")


def load_pack(path: str | Path) -> Pack:
    """Read a cache written by `pack_split`; DataError when it is missing, corrupt or foreign."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: packed cache not found; build it with `edge-bus data pack MANIFEST --data DIR --out {path}`")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz cache ({exc}); rebuild it with `edge-bus data pack`") from None
    try:
        meta = json.loads(str(data["meta"]))
    except (KeyError, json.JSONDecodeError):
        raise DataError(f"{path}: cache has no valid 'meta' entry; rebuild it with `edge-bus data pack`") from None
    if meta.get("format") != PACK_FORMAT or meta.get("version") != PACK_VERSION:
        raise DataError(f"{path}: not an edge-bus pack of version {PACK_VERSION}; rebuild it with `edge-bus data pack`")
    splits: dict[str, PackedSplit] = {}
    for s in SPLITS:
        try:
            part = PackedSplit(data[f"{s}_images"], data[f"{s}_masks"], data[f"{s}_labels"], data[f"{s}_ids"])
        except KeyError as exc:
            raise DataError(f"{path}: cache lacks array {exc}; rebuild it with `edge-bus data pack`") from None
        n = len(part)
        if not (part.images.shape[0] == part.masks.shape[0] == part.ids.shape[0] == n):
            raise DataError(f"{path}: arrays of split {s!r} differ in length; rebuild the cache")
        if part.images.dtype != np.uint8 or part.masks.dtype != np.uint8:
            raise DataError(f"{path}: images and masks of split {s!r} are not uint8; rebuild the cache")
        splits[s] = part
    return Pack(path=path, meta=meta, splits=splits)
