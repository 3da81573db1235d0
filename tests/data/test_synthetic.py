"""Phantoms: BUSI layout, masks that fit their images, classes told apart by their lesions."""

import cv2
import numpy as np
import pytest

from edge_bus.data.busi import CLASSES
from edge_bus.data.synthetic import phantom_frame, write_busi_phantoms
from edge_bus.errors import DataError


def _read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_writes_busi_layout_with_matching_masks(tmp_path):
    counts = {"benign": 5, "malignant": 4, "normal": 3}
    root = write_busi_phantoms(tmp_path / "busi", counts=counts, size=(64, 72), seed=3, multi_mask_rate=0.5)
    for label in CLASSES:
        images = sorted(p for p in (root / label).glob("*.png") if "_mask" not in p.name)
        assert len(images) == counts[label]
        for image_path in images:
            image = _read(image_path)
            assert image.shape == (64, 72, 3) and image.dtype == np.uint8
            masks = sorted((root / label).glob(f"{image_path.stem}_mask*.png"))
            assert masks and masks[0].name == f"{image_path.stem}_mask.png"
            for m in masks:
                mask = _read(m)
                assert mask.shape == (64, 72)
                assert set(np.unique(mask)) <= {0, 255}
                assert (mask.any()) == (label != "normal")
    # multi_mask_rate=0.5 over 9 lesion images: at least one image has a second mask.
    assert list(root.glob("*/*_mask_1.png"))


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = write_busi_phantoms(tmp_path / "a", counts={"benign": 2}, size=(40, 40), seed=1)
    b = write_busi_phantoms(tmp_path / "b", counts={"benign": 2}, size=(40, 40), seed=1)
    c = write_busi_phantoms(tmp_path / "c", counts={"benign": 2}, size=(40, 40), seed=2)
    name = "benign/benign (2).png"
    assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / name).read_bytes() != (c / name).read_bytes()


def _solidity(mask):
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    return cv2.contourArea(contour) / cv2.contourArea(cv2.convexHull(contour))


def test_lesions_are_dark_and_malignant_ones_irregular():
    rng = np.random.default_rng(0)
    solidity = {"benign": [], "malignant": []}
    for kind in solidity:
        for _ in range(10):
            image, mask = phantom_frame(rng, (128, 128), lesion=kind)
            assert set(np.unique(mask)) == {0, 1}
            inside, ring = image[mask == 1].mean(), image[cv2.dilate(mask, np.ones((9, 9))) - mask == 1].mean()
            assert inside < 0.6 * ring  # hypoechoic
            solidity[kind].append(_solidity(mask))
    # Spiculated outlines fill much less of their convex hull than smooth ovals.
    assert max(solidity["malignant"]) < min(solidity["benign"])


def test_phantom_frame_without_lesion_and_bad_arguments():
    rng = np.random.default_rng(1)
    image, mask = phantom_frame(rng, (50, 60), lesion=False)
    assert image.shape == (50, 60) and image.dtype == np.uint8 and not mask.any()
    assert image.std() > 5  # textured, not flat
    with pytest.raises(DataError, match="lesion"):
        phantom_frame(rng, (50, 60), lesion="cyst")
    with pytest.raises(DataError, match="too small"):
        phantom_frame(rng, (8, 8))
    with pytest.raises(DataError, match="unknown classes"):
        write_busi_phantoms("/nonexistent-never-written", counts={"cancer": 1})
