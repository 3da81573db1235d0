"""Exact and near duplicates, union-find groups, cross-class groups."""

import shutil

import cv2
import numpy as np
import pytest

from edge_bus.data.busi import index_busi
from edge_bus.data.dedup import Fingerprint, dhash, find_duplicates, fingerprint, group_duplicates, phash
from edge_bus.data.preprocess import read_image
from edge_bus.data.synthetic import write_busi_phantoms


@pytest.fixture
def busi(tmp_path):
    return write_busi_phantoms(
        tmp_path / "busi", counts={"benign": 6, "malignant": 5, "normal": 4}, size=(96, 112), seed=0, multi_mask_rate=0.0
    )


def _copy_pair(src_dir, src_stem, dst_dir, dst_stem, transform=None):
    image = read_image(src_dir / f"{src_stem}.png")
    if transform is not None:
        image = transform(image)
    cv2.imwrite(str(dst_dir / f"{dst_stem}.png"), image)
    shutil.copy(src_dir / f"{src_stem}_mask.png", dst_dir / f"{dst_stem}_mask.png")


def _groups(report):
    return {frozenset(g.ids): g for g in report.groups}


def test_hashes_are_64_bit_and_robust_to_small_changes():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (120, 140), dtype=np.uint8), (0, 0), 6)
    other = cv2.GaussianBlur(rng.integers(0, 256, (120, 140), dtype=np.uint8), (0, 0), 6)
    brighter = np.clip(image.astype(np.int16) + 6, 0, 255).astype(np.uint8)
    for h in (phash, dhash):
        assert 0 <= h(image) < 2**64
        assert bin(h(image) ^ h(brighter)).count("1") <= 4
        assert bin(h(image) ^ h(other)).count("1") > 14
    assert fingerprint(image).pixels_sha256 == fingerprint(image.copy()).pixels_sha256
    assert fingerprint(image).pixels_sha256 != fingerprint(brighter).pixels_sha256


def test_exact_near_and_cross_class_duplicates_are_grouped(busi):
    baseline = find_duplicates(index_busi(busi))
    ben, mal = busi / "benign", busi / "malignant"
    _copy_pair(ben, "benign (1)", ben, "benign (7)")  # exact copy under a new name

    def annotate(image):  # a caliper mark and a brightness change: a near duplicate
        out = cv2.convertScaleAbs(image, alpha=1.05, beta=4)
        cv2.putText(out, "+", (20, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1)
        return out

    _copy_pair(ben, "benign (2)", ben, "benign (8)", annotate)
    _copy_pair(ben, "benign (3)", mal, "malignant (6)")  # the same image filed under two classes

    report = find_duplicates(index_busi(busi))
    groups = _groups(report)
    exact = groups[frozenset({"benign/benign (1)", "benign/benign (7)"})]
    near = groups[frozenset({"benign/benign (2)", "benign/benign (8)"})]
    cross = groups[frozenset({"benign/benign (3)", "malignant/malignant (6)"})]
    assert exact.kind == "exact" and not exact.cross_class
    assert near.kind == "near" and not near.cross_class
    assert cross.cross_class and cross.kind == "exact"
    assert report.cross_class == [cross]
    assert len(report.groups) == len(baseline.groups) + 3
    assert report.group_of["benign/benign (1)"] == report.group_of["benign/benign (7)"]
    assert report.group_of["benign/benign (1)"] != report.group_of["benign/benign (2)"]


def _fp(name, p, d):
    return Fingerprint(pixels_sha256=name, phash=p, dhash=d)


def test_union_find_joins_chains_and_thresholds_decide():
    far = (1 << 40) - 1  # 40 bits set: far from 0
    ids = ["a", "b", "c", "d", "e"]
    labels = ["benign", "benign", "malignant", "normal", "normal"]
    prints = [
        _fp("a", 0b0, 0),
        _fp("b", 0b1111, (1 << 10) - 1),  # pHash 4 from a
        _fp("c", 0b11111111, (1 << 20) - 1),  # pHash 4 from b; pHash 8 and dHash 20 from a
        _fp("d", far, far),
        _fp("e", far ^ 0b111111111111, far),  # pHash 12 from d: near only when dHash confirms
    ]
    report = group_duplicates(ids, labels, prints, phash_threshold=4)
    groups = _groups(report)
    linked = {frozenset(p[:2]) for p in report.pairs}
    assert frozenset({"a", "c"}) not in linked and frozenset({"a", "b"}) in linked
    chain = groups[frozenset({"a", "b", "c"})]  # a~b, b~c, so a, b, c in one group
    assert chain.cross_class and chain.kind == "near"
    assert frozenset({"d", "e"}) in groups  # pHash 12 <= 14 and dHash 0 <= 14
    strict = group_duplicates(ids, labels, prints, phash_threshold=4, phash_confirmed_threshold=10)
    assert frozenset({"d", "e"}) not in _groups(strict)
    assert strict.group_of["d"] != strict.group_of["e"]
    # Group numbers follow the order of each group's first sample.
    assert [report.group_of[i] for i in ids] == [0, 0, 0, 1, 1]


def test_identical_pixels_always_group_even_with_zero_thresholds():
    prints = [_fp("same", 0, 0), _fp("same", 1 << 63, 1 << 63)]
    report = group_duplicates(["x", "y"], ["normal", "normal"], prints, phash_threshold=-1, phash_confirmed_threshold=-1)
    assert [g.kind for g in report.groups] == ["exact"]


def test_hamming_matrix_needs_no_bitwise_count(monkeypatch):
    """NumPy 1.x (the Jetson pin) has no np.bitwise_count: distances must not depend on it."""
    from edge_bus.data import dedup

    monkeypatch.delattr(np, "bitwise_count", raising=False)
    rng = np.random.default_rng(1)
    hashes = [int(v) for v in rng.integers(0, 2**63, 40, dtype=np.int64)] + [2**64 - 1, 0, 1 << 63]
    d = dedup._hamming_matrix(hashes)
    expected = np.array([[bin(a ^ b).count("1") for b in hashes] for a in hashes])
    assert d.dtype == np.uint8 and d.shape == (43, 43)
    np.testing.assert_array_equal(d, expected)
    assert d[-3, -2] == 64 and d[-2, -1] == 1
    assert dedup._hamming_matrix([]).shape == (0, 0)
