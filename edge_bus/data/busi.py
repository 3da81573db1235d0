"""Index and validate a BUSI-layout folder.

Expected layout (the public BUSI release, "Dataset_BUSI_with_GT"):

    ROOT/benign/benign (1).png          the image; the class is the folder name
    ROOT/benign/benign (1)_mask.png     its mask (nonzero = lesion)
    ROOT/benign/benign (1)_mask_1.png   further masks of the same image (the lesion is their union)
    ROOT/malignant/...   ROOT/normal/... (normal images have empty masks)

Every image and mask is decoded once, so a corrupt file, an image without a mask, a mask whose size
differs from its image's, a mask without its image or a stray non-image file becomes a `Problem`
(path and reason) instead of an exception; the sample is skipped and the rest is indexed.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from edge_bus.data.preprocess import read_image, read_mask, resize_gray, resize_mask
from edge_bus.errors import DataError

CLASSES = ("benign", "malignant", "normal")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_MASK_STEM = re.compile(r"^(?P<stem>.+?)_mask(?:_(?P<n>\d+))?$")
LAYOUT_HELP = (
    "expected a BUSI layout: ROOT/benign, ROOT/malignant, ROOT/normal, each holding "
    "'<name>.png' images and '<name>_mask.png' masks (plus '<name>_mask_1.png' for extra masks)"
)


@dataclass(frozen=True)
class Sample:
    id: str  # "benign/benign (1)": class folder / image stem
    label: str
    image: Path
    masks: list[Path]
    width: int
    height: int

    @property
    def label_index(self) -> int:
        return CLASSES.index(self.label)


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class BusiIndex:
    root: Path
    samples: list[Sample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of usable samples per class, in CLASSES order."""
        out = {c: 0 for c in CLASSES}
        for s in self.samples:
            out[s.label] += 1
        return out

    def multi_mask(self) -> list[Sample]:
        return [s for s in self.samples if len(s.masks) > 1]

    def by_id(self) -> dict[str, Sample]:
        return {s.id: s for s in self.samples}


def natural_key(text: str) -> list:
    """Sort "benign (2)" before "benign (10)"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _check_layout(root: Path) -> list[str]:
    if not root.exists():
        raise DataError(f"{root}: no such folder; {LAYOUT_HELP}")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; {LAYOUT_HELP}")
    present = [c for c in CLASSES if (root / c).is_dir()]
    if not present:
        nested = [p.parent for p in root.glob("*/benign") if p.is_dir()]
        hint = f" (found one in {nested[0]}: pass that folder)" if nested else ""
        raise DataError(f"{root}: no class folder {list(CLASSES)} found{hint}; {LAYOUT_HELP}")
    return present


def _scan_folder(folder: Path, label: str, problems: list[Problem]):
    """Group the files of one class folder into (stem -> image path, stem -> mask paths)."""
    images: dict[str, Path] = {}
    masks: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if path.is_dir():
            problems.append(Problem(path, "unexpected subfolder inside a class folder; ignored"))
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(Problem(path, f"not an image file (expected {', '.join(IMAGE_SUFFIXES)}); ignored"))
            continue
        match = _MASK_STEM.match(path.stem)
        if match:
            order = int(match["n"]) if match["n"] else 0
            masks.setdefault(match["stem"], []).append((order, path))
        else:
            _add_image(images, path, problems)
    for stem, paths in masks.items():
        if stem not in images:
            for _, p in paths:
                problems.append(Problem(p, f"mask without its image '{stem}.png'; ignored"))
    return images, {stem: [p for _, p in sorted(paths)] for stem, paths in masks.items()}


def _add_image(images: dict[str, Path], path: Path, problems: list[Problem]) -> None:
    """Add `path` under its stem; of two images with one stem ('x.png', 'x.jpg') keep the one whose
    suffix comes first in IMAGE_SUFFIXES and report the other, since both would claim 'x_mask'."""
    other = images.get(path.stem)
    if other is None:
        images[path.stem] = path
        return
    keep, drop = sorted((other, path), key=_suffix_rank)
    images[path.stem] = keep
    problems.append(Problem(drop, f"another image has the same name, '{keep.name}', and is used; this one is ignored (rename or remove one)"))


def _suffix_rank(path: Path) -> tuple[int, str]:
    return IMAGE_SUFFIXES.index(path.suffix.lower()), path.suffix


def _check_sample(label: str, stem: str, image: Path, masks: list[Path]) -> Sample | Problem:
    """Decode the image and its masks; return the Sample, or the Problem that rules it out."""
    if not masks:
        return Problem(image, f"image without a mask (expected '{stem}_mask.png' next to it); skipped")
    try:
        gray = read_image(image)
    except DataError as exc:
        return Problem(image, f"{_reason(exc)}; skipped")
    h, w = gray.shape[:2]
    for m in masks:
        try:
            mask = read_mask(m)
        except DataError as exc:
            return Problem(m, f"{_reason(exc)}; its image '{image.name}' is skipped")
        if mask.shape[:2] != (h, w):
            return Problem(
                m,
                f"mask is {mask.shape[1]}x{mask.shape[0]} but its image '{image.name}' is {w}x{h}; "
                "image skipped (fix or remove the mask)",
            )
    return Sample(id=f"{label}/{stem}", label=label, image=image, masks=masks, width=w, height=h)


def _reason(exc: DataError) -> str:
    """A DataError message without the leading '<path>: ' (the Problem carries the path)."""
    text = str(exc)
    head, sep, tail = text.partition(": ")
    return tail if sep else text


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def index_busi(root: str | Path, *, progress: bool = False) -> BusiIndex:
    """Index a BUSI-layout folder. Raises DataError when `root` is not one or holds no usable sample."""
    root = Path(root).expanduser().resolve()
    present = _check_layout(root)
    index = BusiIndex(root=root)
    for label in CLASSES:
        if label not in present:
            index.problems.append(Problem(root / label, "class folder missing; no samples of this class"))
    jobs: list[tuple[str, str, Path, list[Path]]] = []
    for label in present:
        images, masks = _scan_folder(root / label, label, index.problems)
        for stem, image in images.items():
            jobs.append((label, stem, image, masks.get(stem, [])))

    results = _map(lambda job: _check_sample(*job), jobs, progress, f"indexing {root.name}")
    for result in results:
        (index.samples if isinstance(result, Sample) else index.problems).append(result)
    index.samples.sort(key=lambda s: (CLASSES.index(s.label), natural_key(s.id)))
    if not index.samples:
        raise DataError(f"{root}: no usable image/mask pair found ({len(index.problems)} problems); {LAYOUT_HELP}")
    return index


def _map(func, items: list, progress: bool, description: str) -> list:
    """`func` over `items` on a thread pool (OpenCV decoding releases the GIL), in order, with a bar."""
    import sys

    from rich.progress import track

    progress = progress and sys.stdout.isatty()  # no bar (nor its blank lines) in logs and pipes
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        results: Iterable = pool.map(func, items)
        return list(track(results, total=len(items), description=description, disable=not progress, transient=True))


def load_sample(sample: Sample, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Image and union of masks, both uint8 (size, size): image via THE preprocessing, mask in {0, 1}."""
    gray = read_image(sample.image)  # uint8 gray through to_gray, as for live frames
    union = np.zeros(gray.shape, np.uint8)
    for path in sample.masks:
        mask = read_mask(path)
        if mask.shape != gray.shape:
            raise DataError(
                f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{gray.shape[1]}x{gray.shape[0]}; fix or remove the mask"
            )
        union |= mask
    return resize_gray(gray, size), resize_mask(union, size)
