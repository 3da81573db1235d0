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


def _colour_image(h=70, w=90):
    """A BGR image whose three channels differ everywhere (so gray conversions can disagree)."""
    rng = np.random.default_rng(3)
    b = rng.integers(0, 256, (h, w), dtype=np.uint8)
    g = rng.integers(0, 256, (h, w), dtype=np.uint8)
    r = rng.integers(0, 256, (h, w), dtype=np.uint8)
    return np.dstack([b, g, r])


def test_colour_file_and_the_same_bgr_frame_give_the_same_tensor(tmp_path):
    import cv2

    from edge_bus.data.preprocess import read_image

    bgr = _colour_image()
    path = tmp_path / "colour.png"
    assert cv2.imwrite(str(path), bgr)
    spec = PreprocessSpec(size=32)
    from_file = normalize(resize_gray(read_image(path), spec.size), spec)
    live = preprocess(cv2.imread(str(path), cv2.IMREAD_COLOR), spec)
    np.testing.assert_array_equal(from_file, live)
    np.testing.assert_array_equal(read_image(path), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    # The old decode (IMREAD_GRAYSCALE) differs on such a file: this test would catch a regression.
    assert not np.array_equal(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), read_image(path))
    # An alpha channel is ignored, as by IMREAD_COLOR.
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "alpha.png"), bgra)
    np.testing.assert_array_equal(read_image(tmp_path / "alpha.png"), read_image(path))


def test_16_bit_file_reads_like_the_16_bit_frame(tmp_path):
    import cv2

    from edge_bus.data.preprocess import read_image

    rng = np.random.default_rng(4)
    deep = rng.integers(0, 65536, (40, 50), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    image = read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, to_gray(deep))


def test_masks_any_nonzero_channel_or_depth_is_lesion(tmp_path):
    import cv2

    from edge_bus.data.preprocess import read_mask
    from edge_bus.errors import DataError

    expected = np.zeros((30, 40), np.uint8)
    expected[5:15, 10:30] = 1
    gray = expected * 255
    colour = np.zeros((30, 40, 3), np.uint8)
    colour[5:15, 10:30, 0] = 1  # faint blue: BGR2GRAY would round it to 0
    deep = expected.astype(np.uint16)  # 16-bit value 1: IMREAD_GRAYSCALE would shift it to 0
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: alpha must not count as lesion
    rgba[5:15, 10:30, 2] = 200
    for name, array in {"gray": gray, "colour": colour, "deep": deep, "rgba": rgba}.items():
        cv2.imwrite(str(tmp_path / f"{name}.png"), array)
        mask = read_mask(tmp_path / f"{name}.png")
        assert mask.dtype == np.uint8, name
        np.testing.assert_array_equal(mask, expected, err_msg=name)
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="bad.png"):
        read_mask(tmp_path / "bad.png")
