"""Augmentation: one affine, applied identically to image and mask; the mask stays binary."""

import numpy as np
import pytest

from edge_bus.data.augment import Augmenter
from edge_bus.errors import DataError


def _blob_pair(size=64):
    yy, xx = np.mgrid[0:size, 0:size]
    mask = (((yy - 20) / 9.0) ** 2 + ((xx - 40) / 14.0) ** 2 <= 1).astype(np.uint8)
    mask[40:55, 8:20] = 1  # a second, off-centre blob makes rotations and flips visible
    return (mask * 200 + 20).astype(np.uint8), mask


@pytest.mark.parametrize("seed", range(6))
def test_image_and_mask_move_together(seed):
    image, mask = _blob_pair()
    augment = Augmenter(rotation_deg=30.0, scale=(0.8, 1.2), hflip=0.5, vflip=0.5)
    out_image, out_mask = augment(image, mask, np.random.default_rng(seed))
    assert out_image.dtype == np.uint8 and out_mask.dtype == np.uint8
    assert set(np.unique(out_mask)) <= {0, 1}
    # The bright region of the warped image is the warped mask, up to interpolation at the edge.
    agree = ((out_image > 110) == (out_mask == 1)).mean()
    assert agree > 0.97
    assert not np.array_equal(out_mask, mask)


def test_pure_flips_are_exact():
    image, mask = _blob_pair()
    rng = np.random.default_rng(0)
    out_image, out_mask = Augmenter(rotation_deg=0, scale=(1, 1), hflip=1.0)(image, mask, rng)
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    np.testing.assert_array_equal(out_mask, mask[:, ::-1])
    out_image, out_mask = Augmenter(rotation_deg=0, scale=(1, 1), hflip=0.0, vflip=1.0)(image, mask, rng)
    np.testing.assert_array_equal(out_image, image[::-1])
    np.testing.assert_array_equal(out_mask, mask[::-1])


def test_identity_settings_change_nothing_and_seeds_repeat():
    image, mask = _blob_pair()
    same = Augmenter(rotation_deg=0, scale=(1, 1), hflip=0.0)(image, mask, np.random.default_rng(1))
    np.testing.assert_array_equal(same[0], image)
    np.testing.assert_array_equal(same[1], mask)
    augment = Augmenter()
    a = augment(image, mask, np.random.default_rng(7))
    b = augment(image, mask, np.random.default_rng(7))
    c = augment(image, mask, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_scaling_changes_lesion_area_as_expected():
    image, mask = _blob_pair()
    _, bigger = Augmenter(rotation_deg=0, scale=(1.2, 1.2), hflip=0)(image, mask, np.random.default_rng(0))
    assert bigger.sum() / mask.sum() == pytest.approx(1.44, rel=0.1)


def test_bad_settings_and_mismatched_inputs_raise():
    with pytest.raises(DataError, match="scale"):
        Augmenter(scale=(1.2, 0.9))
    with pytest.raises(DataError, match="probability"):
        Augmenter(hflip=1.5)
    with pytest.raises(DataError, match="differ in size"):
        Augmenter()(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8), np.random.default_rng(0))
