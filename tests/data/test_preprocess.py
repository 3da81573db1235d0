import numpy as np
import pytest

from edge_bus.data.preprocess import (
    PreprocessSpec,
    normalize,
    preprocess,
    preprocess_batch,
    resize_gray,
    resize_mask,
    to_gray,
)
from edge_bus.errors import PreprocessError


def test_gray_from_every_layout_agrees():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    bgr = np.repeat(gray[:, :, None], 3, axis=2)
    bgra = np.concatenate([bgr, np.full((40, 50, 1), 255, np.uint8)], axis=2)
    for frame in (gray, gray[:, :, None], bgr, bgra):
        np.testing.assert_array_equal(to_gray(frame), gray)
    np.testing.assert_array_equal(to_gray(gray.astype(np.uint16) << 8), gray)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 0), np.uint8), "empty"),
        (np.zeros((8, 8, 2), np.uint8), "unsupported shape"),
        (np.zeros((8, 8), np.int32), "unsupported dtype"),
        (np.full((8, 8), np.nan, np.float32), "NaN"),
        ("not an array", "NumPy array"),
    ],
)
def test_bad_frames_are_named(bad, message):
    with pytest.raises(PreprocessError, match=message):
        to_gray(bad, what="frame 7")
    with pytest.raises(PreprocessError, match="frame 7"):
        to_gray(bad, what="frame 7")


def test_preprocess_shape_and_values():
    spec = PreprocessSpec(size=32, mean=0.5, std=0.25)
    out = preprocess(np.full((64, 48), 255, np.uint8), spec)
    assert out.shape == (1, 32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, (1.0 - 0.5) / 0.25, rtol=1e-6)


def test_cached_uint8_path_equals_live_path():
    """Training normalizes the packed uint8 cache; the runtime preprocesses raw frames: same tensor."""
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (300, 280, 3), dtype=np.uint8) for _ in range(3)]
    spec = PreprocessSpec()
    cached = np.stack([resize_gray(to_gray(f), spec.size) for f in frames])
    np.testing.assert_array_equal(normalize(cached, spec), preprocess_batch(frames, spec))


def test_batch_reuses_buffer_and_rejects_small_one():
    spec = PreprocessSpec(size=16)
    buf = np.empty((4, 1, 16, 16), np.float32)
    out = preprocess_batch([np.zeros((20, 20), np.uint8)] * 2, spec, out=buf)
    assert out.shape == (2, 1, 16, 16) and np.shares_memory(out, buf)
    with pytest.raises(PreprocessError):
        preprocess_batch([np.zeros((20, 20), np.uint8)] * 5, spec, out=buf)


def test_mask_resize_keeps_binary():
    mask = np.zeros((100, 100), np.uint8)
    mask[20:60, 30:70] = 255
    small = resize_mask(mask, 50)
    assert set(np.unique(small)) == {0, 1}
    assert small[20, 25] == 1 and small[5, 5] == 0


def test_spec_round_trip_and_validation():
    spec = PreprocessSpec(size=128)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(PreprocessError, match="unknown keys"):
        PreprocessSpec.from_dict({**spec.to_dict(), "bogus": 1})
    with pytest.raises(PreprocessError):
        PreprocessSpec.from_dict({**spec.to_dict(), "color": "rgb"})
