"""Exact and near-duplicate images, grouped with union-find.

exact  the decoded gray pixels are identical (a re-saved copy of a file still matches).
near   perceptual hashes of the gray images are close (Hamming distance):
       pHash: 32x32 area-resized image -> 2-D DCT -> the 8x8 lowest frequencies without DC,
              each bit = coefficient above the median (63 bits; distances come out even);
       dHash: 9x8 area-resized image -> each bit = pixel brighter than its right neighbour (64 bits).
       A pair is near when pHash <= 10, or when pHash <= 14 and dHash <= 14 (dHash confirms a
       looser pHash match). Chosen by looking at BUSI pairs: up to pHash 8 they are the same frame
       (re-exported, annotated or not, sometimes filed under two classes); pHash 10-14 with a close
       dHash are neighbouring frames of one exam (grouped too, since they would leak across
       splits); beyond, matches are unrelated scans. dHash alone is not trusted: ultrasound
       frames share a layout (bright skin line, darker depth), so unrelated scans reach dHash 8.

Implemented with NumPy/OpenCV only (cv2.img_hash is missing from the headless wheels).
Every sample gets a group number; groups with more than one member are duplicate groups, and a
group whose members carry different class labels is `cross_class` (a labelling conflict).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_bus.data.busi import BusiIndex, Sample, _map
from edge_bus.data.preprocess import read_image
from edge_bus.errors import DataError

PHASH_THRESHOLD = 10  # near on pHash alone
PHASH_CONFIRMED_THRESHOLD = 14  # near when dHash confirms it
DHASH_THRESHOLD = 14


@dataclass(frozen=True)
class Fingerprint:
    pixels_sha256: str
    phash: int
    dhash: int


@dataclass
class DuplicateGroup:
    group: int
    ids: list[str]
    kind: str  # "exact" when every member is a pixel-identical copy, else "near"
    cross_class: bool
    labels: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"group": self.group, "ids": self.ids, "kind": self.kind, "cross_class": self.cross_class}


@dataclass
class DuplicateReport:
    group_of: dict[str, int]  # sample id -> group number (every sample)
    groups: list[DuplicateGroup]  # groups with two or more members
    pairs: list[tuple[str, str, str, int, int]]  # (id_a, id_b, kind, phash distance, dhash distance)
    thresholds: dict[str, int]

    @property
    def cross_class(self) -> list[DuplicateGroup]:
        return [g for g in self.groups if g.cross_class]


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8).ravel()).tobytes(), "big")


def phash(gray: np.ndarray) -> int:
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()[1:]  # drop the DC term (overall brightness)
    return _bits_to_int(low > np.median(low))


def dhash(gray: np.ndarray) -> int:
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return _bits_to_int(small[:, 1:] > small[:, :-1])


def fingerprint(gray: np.ndarray) -> Fingerprint:
    gray = np.ascontiguousarray(gray)
    digest = hashlib.sha256(f"{gray.shape}".encode() + gray.tobytes()).hexdigest()
    return Fingerprint(digest, phash(gray), dhash(gray))


def _fingerprint_sample(sample: Sample) -> Fingerprint:
    return fingerprint(read_image(sample.image))  # uint8 gray via to_gray


# Set bits of every byte value: popcount through a uint8 view works on NumPy 1.x (no bitwise_count).
_POPCOUNT8 = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


def _hamming_matrix(hashes: list[int]) -> np.ndarray:
    """All pairwise Hamming distances of 64-bit hashes, (N, N) uint8."""
    values = np.array(hashes, dtype=np.uint64)
    n = values.shape[0]
    xor = np.ascontiguousarray(values[:, None] ^ values[None, :])  # (N, N) uint64
    # 8 bytes per distance, summed in uint8 (at most 64): about 10 ms for 780 images.
    return _POPCOUNT8[xor.view(np.uint8)].reshape(n, n, 8).sum(axis=2, dtype=np.uint8)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the root is the earliest sample


def group_duplicates(
    ids: list[str],
    labels: list[str],
    prints: list[Fingerprint],
    *,
    phash_threshold: int = PHASH_THRESHOLD,
    phash_confirmed_threshold: int = PHASH_CONFIRMED_THRESHOLD,
    dhash_threshold: int = DHASH_THRESHOLD,
) -> DuplicateReport:
    """Group samples (given in a fixed order) by exact and near-duplicate fingerprints."""
    if not (len(ids) == len(labels) == len(prints)):
        raise DataError("group_duplicates: ids, labels and fingerprints differ in length")
    n = len(ids)
    uf = _UnionFind(n)
    pairs: list[tuple[str, str, str, int, int]] = []
    if n:
        dp = _hamming_matrix([p.phash for p in prints])
        dd = _hamming_matrix([p.dhash for p in prints])
        near = (dp <= phash_threshold) | ((dp <= phash_confirmed_threshold) & (dd <= dhash_threshold))
        for a, b in zip(*np.nonzero(np.triu(near, k=1))):
            kind = "exact" if prints[a].pixels_sha256 == prints[b].pixels_sha256 else "near"
            pairs.append((ids[a], ids[b], kind, int(dp[a, b]), int(dd[a, b])))
            uf.union(int(a), int(b))
        # Pixel-identical copies always match, whatever the thresholds.
        first_of: dict[str, int] = {}
        for i, p in enumerate(prints):
            j = first_of.setdefault(p.pixels_sha256, i)
            if j != i and uf.find(i) != uf.find(j):
                pairs.append((ids[j], ids[i], "exact", int(dp[j, i]), int(dd[j, i])))
                uf.union(i, j)

    # Group numbers in order of each group's first sample.
    number: dict[int, int] = {}
    group_of: dict[str, int] = {}
    members: dict[int, list[int]] = {}
    for i in range(n):
        g = number.setdefault(uf.find(i), len(number))
        group_of[ids[i]] = g
        members.setdefault(g, []).append(i)
    groups = []
    for g, idx in members.items():
        if len(idx) < 2:
            continue
        exact = len({prints[i].pixels_sha256 for i in idx}) == 1
        member_labels = [labels[i] for i in idx]
        groups.append(
            DuplicateGroup(
                group=g,
                ids=[ids[i] for i in idx],
                kind="exact" if exact else "near",
                cross_class=len(set(member_labels)) > 1,
                labels=member_labels,
            )
        )
    return DuplicateReport(
        group_of=group_of,
        groups=groups,
        pairs=pairs,
        thresholds={
            "phash": phash_threshold,
            "phash_confirmed": phash_confirmed_threshold,
            "dhash": dhash_threshold,
        },
    )


def find_duplicates(
    index: BusiIndex,
    *,
    phash_threshold: int = PHASH_THRESHOLD,
    phash_confirmed_threshold: int = PHASH_CONFIRMED_THRESHOLD,
    dhash_threshold: int = DHASH_THRESHOLD,
    progress: bool = False,
) -> DuplicateReport:
    """Fingerprint every sample of `index` and group the duplicates."""
    prints = _map(_fingerprint_sample, index.samples, progress, "hashing images")
    return group_duplicates(
        [s.id for s in index.samples],
        [s.label for s in index.samples],
        prints,
        phash_threshold=phash_threshold,
        phash_confirmed_threshold=phash_confirmed_threshold,
        dhash_threshold=dhash_threshold,
    )
