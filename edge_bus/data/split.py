"""The split manifest: a seeded, stratified train/val/test split that keeps duplicate groups whole.

Every model and every benchmark reads the same manifest. It records the SHA-256 of every file
used, so `verify_split` detects a changed data set, and a `hash` over its own canonical JSON, so a
checkpoint or bundle can name the exact split it was trained and measured on.

Assignment: groups (a lone image is a group of one) are taken largest first, ties in seeded
random order, and each goes to the split whose per-class counts are furthest below their targets
(ratio x class total), measured over the classes in the group. So every duplicate group sits in
one split and class proportions follow the ratios within a group's size.

Note: the `hash` covers `data_root` (the absolute data folder when the split was made), so the same
split regenerated from a copy of the data in another folder gets another hash, and checkpoints name
the old one. Use `same_split_except_root(a, b)` to tell that case from a real difference. (The hash
is kept this way on purpose: existing checkpoints record it.)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from edge_bus.data.busi import CLASSES, BusiIndex
from edge_bus.data.dedup import DuplicateReport, find_duplicates
from edge_bus.errors import DataError
from edge_bus.fileio import read_json, sha256_file, write_json_atomic  # sha256_file re-exported for old imports

FORMAT = "edge-bus-split"
VERSION = 1
SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}


@dataclass(frozen=True)
class SplitItem:
    id: str
    label: str
    image: str  # relative to the data root, "/" separators
    masks: list[str]
    sha256: dict[str, str]  # relpath -> hex digest, image and masks
    group: int
    split: str

    @property
    def label_index(self) -> int:
        return CLASSES.index(self.label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "image": self.image,
            "masks": list(self.masks),
            "sha256": dict(self.sha256),
            "group": self.group,
            "split": self.split,
        }


@dataclass
class SplitManifest:
    seed: int
    ratios: dict[str, float]
    classes: list[str]
    data_root: str
    dataset_sha256: str
    entries: list[SplitItem]
    duplicate_groups: list[dict[str, Any]] = field(default_factory=list)
    hash: str = ""

    def items(self, split: str | None = None) -> list[SplitItem]:
        if split is not None and split not in SPLITS:
            raise DataError(f"unknown split {split!r}; use one of {list(SPLITS)}")
        return [e for e in self.entries if split is None or e.split == split]

    def ids(self, split: str | None = None) -> list[str]:
        return [e.id for e in self.items(split)]

    def counts(self) -> dict[str, dict[str, int]]:
        """split -> class -> number of images."""
        out = {s: {c: 0 for c in self.classes} for s in SPLITS}
        for e in self.entries:
            out[e.split][e.label] += 1
        return out

    def groups_across_splits(self) -> list[int]:
        """Group numbers whose members are in more than one split (empty for a sound manifest)."""
        seen: dict[int, set[str]] = {}
        for e in self.entries:
            seen.setdefault(e.group, set()).add(e.split)
        return sorted(g for g, s in seen.items() if len(s) > 1)

    def body(self) -> dict[str, Any]:
        """Everything the hash covers, in the JSON layout of the file."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "seed": self.seed,
            "ratios": dict(self.ratios),
            "classes": list(self.classes),
            "data_root": self.data_root,
            "dataset_sha256": self.dataset_sha256,
            "items": [e.to_dict() for e in self.entries],
            "duplicate_groups": list(self.duplicate_groups),
        }

    def compute_hash(self) -> str:
        return _sha256_bytes(_canonical(self.body()))

    def hash_without_root(self) -> str:
        """Hash of the body with data_root blanked: equal for the same split made in two folders."""
        return _sha256_bytes(_canonical({**self.body(), "data_root": ""}))


def same_split_except_root(a: SplitManifest, b: SplitManifest) -> bool:
    """True when two manifests differ (if at all) only in data_root, i.e. name the same split and files."""
    return a.hash_without_root() == b.hash_without_root()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()



def dataset_digest(file_hashes: Mapping[str, str]) -> str:
    """SHA-256 over the sorted (relpath, sha256) pairs of every file used."""
    lines = "".join(f"{path}\t{digest}\n" for path, digest in sorted(file_hashes.items()))
    return _sha256_bytes(lines.encode("utf-8"))


def parse_ratios(text: str | Iterable[float] | Mapping[str, float]) -> dict[str, float]:
    """'0.7,0.15,0.15' (or a sequence / mapping) -> {"train": .., "val": .., "test": ..}, checked."""
    if isinstance(text, Mapping):
        values = [text.get(s, 0.0) for s in SPLITS]
    elif isinstance(text, str):
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise DataError(f"--ratios {text!r}: expected three numbers like 0.7,0.15,0.15") from None
    else:
        values = [float(v) for v in text]
    if len(values) != 3 or any(v < 0 for v in values) or not np.isclose(sum(values), 1.0, atol=1e-6):
        raise DataError(f"ratios {values}: need three non-negative numbers (train, val, test) that sum to 1")
    if values[0] == 0:
        raise DataError(f"ratios {values}: the train ratio must be above 0")
    return dict(zip(SPLITS, values))


def _assign(
    group_members: list[list[int]], labels: list[str], ratios: dict[str, float], seed: int
) -> dict[int, str]:
    """Group index -> split (see the module docstring)."""
    rng = np.random.default_rng(seed)
    totals = {c: labels.count(c) for c in set(labels)}
    target = {s: {c: ratios[s] * n for c, n in totals.items()} for s in SPLITS}
    have = {s: {c: 0 for c in totals} for s in SPLITS}
    tiebreak = rng.permutation(len(group_members))
    order = sorted(range(len(group_members)), key=lambda g: (-len(group_members[g]), tiebreak[g]))
    out: dict[int, str] = {}
    for g in order:
        classes = [labels[i] for i in group_members[g]]

        def deficit(s: str) -> float:
            return sum((target[s][c] - have[s][c]) / max(totals[c], 1) for c in classes)

        best = max((s for s in SPLITS if ratios[s] > 0), key=lambda s: (deficit(s), ratios[s]))
        out[g] = best
        for c in classes:
            have[best][c] += 1
    return out


def make_split(
    index: BusiIndex,
    seed: int = 0,
    ratios: str | Iterable[float] | Mapping[str, float] = DEFAULT_RATIOS,
    *,
    duplicates: DuplicateReport | None = None,
    progress: bool = False,
) -> SplitManifest:
    """Split `index` (duplicates found unless given) and return the manifest, hash filled in."""
    ratios = parse_ratios(ratios)
    if duplicates is None:
        duplicates = find_duplicates(index, progress=progress)
    samples = index.samples
    missing = [s.id for s in samples if s.id not in duplicates.group_of]
    if missing:
        raise DataError(f"duplicate report does not cover {len(missing)} samples (e.g. {missing[0]}); recompute it")
    group_ids = sorted({duplicates.group_of[s.id] for s in samples})
    position = {g: k for k, g in enumerate(group_ids)}
    members: list[list[int]] = [[] for _ in group_ids]
    for i, s in enumerate(samples):
        members[position[duplicates.group_of[s.id]]].append(i)
    split_of_group = _assign(members, [s.label for s in samples], ratios, seed)

    root = index.root
    entries: list[SplitItem] = []
    all_hashes: dict[str, str] = {}
    for i, s in enumerate(samples):
        paths = [s.image, *s.masks]
        rel = [p.relative_to(root).as_posix() for p in paths]
        hashes = {r: sha256_file(p) for r, p in zip(rel, paths)}
        all_hashes.update(hashes)
        g = duplicates.group_of[s.id]
        entries.append(
            SplitItem(
                id=s.id,
                label=s.label,
                image=rel[0],
                masks=rel[1:],
                sha256=hashes,
                group=g,
                split=split_of_group[position[g]],
            )
        )
    manifest = SplitManifest(
        seed=int(seed),
        ratios=ratios,
        classes=list(CLASSES),
        data_root=str(root),
        dataset_sha256=dataset_digest(all_hashes),
        entries=entries,
        duplicate_groups=[g.to_dict() for g in duplicates.groups],
    )
    manifest.hash = manifest.compute_hash()
    return manifest


def write_split(manifest: SplitManifest, path: str | Path) -> Path:
    manifest.hash = manifest.compute_hash()
    return write_json_atomic(path, {**manifest.body(), "hash": manifest.hash})


def load_split(path: str | Path) -> SplitManifest:
    """Read a manifest; DataError when it is missing, malformed or its hash does not match."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: split manifest not found; create one with `edge-bus data split DATA_DIR --out {path}`")
    data = read_json(path, DataError, what="split manifest", fix="recreate it with `edge-bus data split`")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path}: not an edge-bus split manifest (format is not {FORMAT!r})")
    if data.get("version") != VERSION:
        raise DataError(f"{path}: split manifest version {data.get('version')} is not supported (expected {VERSION})")
    try:
        manifest = SplitManifest(
            seed=int(data["seed"]),
            ratios={k: float(v) for k, v in data["ratios"].items()},
            classes=list(data["classes"]),
            data_root=str(data["data_root"]),
            dataset_sha256=str(data["dataset_sha256"]),
            entries=[
                SplitItem(
                    id=e["id"],
                    label=e["label"],
                    image=e["image"],
                    masks=list(e["masks"]),
                    sha256=dict(e["sha256"]),
                    group=int(e["group"]),
                    split=e["split"],
                )
                for e in data["items"]
            ],
            duplicate_groups=list(data.get("duplicate_groups", [])),
            hash=str(data["hash"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: split manifest is missing or has a malformed field ({exc!r}); recreate it") from None
    if manifest.compute_hash() != manifest.hash:
        raise DataError(
            f"{path}: split manifest hash does not match its content (edited by hand? the hash also covers "
            f"data_root, now {manifest.data_root!r}, so moving the data means making the split anew or "
            "passing the new folder with --data rather than editing the file); recreate it with `edge-bus data split`"
        )
    bad = sorted({e.split for e in manifest.entries} - set(SPLITS)) + sorted(
        {e.label for e in manifest.entries} - set(manifest.classes)
    )
    if bad:
        raise DataError(f"{path}: unknown split or class names {bad}")
    return manifest


def verify_split(manifest: SplitManifest, root: str | Path | None = None) -> None:
    """Check every file of the manifest against its recorded SHA-256; DataError naming those that differ."""
    root = Path(root if root is not None else manifest.data_root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found (the split manifest was written for {manifest.data_root})")
    missing: list[str] = []
    changed: list[str] = []
    for e in manifest.entries:
        for rel, digest in e.sha256.items():
            p = root / rel
            if not p.is_file():
                missing.append(rel)
            elif sha256_file(p) != digest:
                changed.append(rel)
    if missing or changed:
        parts = []
        if changed:
            parts.append(f"{len(changed)} changed: {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}")
        if missing:
            parts.append(f"{len(missing)} missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        raise DataError(
            f"{root} differs from the split manifest ({'; '.join(parts)}); restore the data or "
            "make a new split with `edge-bus data split` (results on the old split are not comparable)"
        )
