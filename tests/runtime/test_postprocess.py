"""The public postprocessing functions shared by the runtime and the benchmark."""

import math

import cv2
import numpy as np
import pytest

from edge_bus.runtime.postprocess import (
    binary_mask,
    classify,
    classify_batch,
    frame_mask,
    full_frame_mask,
    segment,
    segment_frame,
    softmax,
)
from edge_bus.runtime.roi import Roi


def test_softmax_and_classify_batch():
    logits = np.array([[0.0, 3.0, 0.0], [1000.0, 0.0, -1000.0]], np.float32)  # large values: no overflow
    p = softmax(logits)
    assert p.dtype == np.float32 and p.shape == (2, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert math.isclose(float(p[0, 1]), math.exp(3) / (math.exp(3) + 2), rel_tol=1e-6) and p[1, 0] == 1.0
    idx, probs = classify_batch(logits)
    assert idx.tolist() == [1, 0] and np.array_equal(probs, p)
    assert classify(logits[0], ["benign", "malignant", "normal"]).label == "malignant"
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        classify_batch(logits[0])


def test_binary_mask_uses_the_sigmoid_threshold():
    logits = np.array([[[[-0.1, 0.1], [0.9, 0.8]]]], np.float32)  # sigmoid: 0.475, 0.525, 0.711, 0.690
    assert binary_mask(logits, 0.5).tolist() == [[[0, 1], [1, 1]]]
    assert binary_mask(logits, 0.7).tolist() == [[[0, 0], [1, 0]]]
    assert binary_mask(logits[0], 0.5).shape == (2, 2) and binary_mask(logits[0, 0], 0.5).dtype == np.uint8
    with pytest.raises(ValueError, match="one channel"):
        binary_mask(np.zeros((1, 2, 4, 4)), 0.5)


def test_frame_mask_and_segment_agree_in_frame_pixels():
    logits = np.full((1, 16, 16), -3.0, np.float32)
    logits[0, 2:6, 3:9] = 3.0  # 6 x 4 lesion
    logits[0, 12, 12] = 3.0  # a second, smaller component: in frame_mask, not in segment
    roi = Roi(100, 50, 32, 64)  # scale 2 x 4
    mask = frame_mask(logits, 0.5, (200, 300, 3), roi)
    assert mask.shape == (200, 300) and set(np.unique(mask)) == {0, 1}
    assert mask[:50].sum() == 0 and mask[:, :100].sum() == 0
    small = mask[50 + 4 * 11 : 50 + 4 * 14, 100 + 2 * 11 : 100 + 2 * 14]  # around model pixel (12, 12)
    assert 0 < int(small.sum()) <= 2 * 4
    lesion = segment_frame(logits, 0.5, (200, 300, 3), roi)
    # edges where the model's are (6 x 4 model pixels -> 12 x 16); bilinear scaling rounds the corners
    assert lesion.box == (106, 58, 12, 16) and 0.95 * 12 * 16 <= lesion.area_px <= 12 * 16
    assert segment(logits, 0.5, (100, 50, 32, 64)).box == lesion.box
    full = full_frame_mask(lesion, (200, 300))
    assert int((full > 0).sum()) == lesion.area_px and np.all(mask[full > 0] == 1)
    assert int(mask.sum()) == lesion.area_px + int(small.sum())
    whole = frame_mask(logits, 0.5, (32, 32))  # no ROI: the whole frame, scale 2
    assert whole.shape == (32, 32) and cv2.boundingRect(whole[:16]) == (6, 4, 12, 8)


def test_masks_are_scaled_from_the_logits_not_blown_up_pixel_by_pixel():
    """A round lesion at 16 px shown on a 128 px ROI: the outline follows the model's sub-pixel
    boundary (nearest-neighbour scaling of the 16 px mask would leave 8 px steps, IoU about 0.91)."""
    yy, xx = np.mgrid[0:16, 0:16]
    logits = (5.0 - np.hypot(yy - 7.3, xx - 8.1)).astype(np.float32)[None]  # lesion: radius 5 model px
    logits[0, 0, 15] = 2.0  # a one-pixel second component, kept out of the lesion
    fy, fx = np.mgrid[0:128, 0:128]
    disk = np.hypot((fy + 0.5) / 8 - 0.5 - 7.3, (fx + 0.5) / 8 - 0.5 - 8.1) < 5
    lesion = segment(logits, 0.5, (0, 0, 128, 128))
    mask = lesion.mask_roi > 0
    assert (mask & disk).sum() / (mask | disk).sum() > 0.98
    assert not mask[:8, 112:].any()
    everything = frame_mask(logits, 0.5, (128, 128)) > 0
    assert everything[:8, 112:].any() and np.array_equal(everything[16:], mask[16:])
