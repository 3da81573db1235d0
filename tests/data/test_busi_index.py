"""Indexing a BUSI folder, and every kind of bad input reported by name, skipped and counted."""

import shutil

import cv2
import numpy as np
import pytest

from edge_bus.data.busi import index_busi, load_sample
from edge_bus.data.preprocess import read_image, resize_gray, resize_mask, to_gray
from edge_bus.data.synthetic import write_busi_phantoms
from edge_bus.errors import DataError

COUNTS = {"benign": 4, "malignant": 3, "normal": 2}


@pytest.fixture
def busi(tmp_path):
    return write_busi_phantoms(tmp_path / "busi", counts=COUNTS, size=(48, 56), seed=0, multi_mask_rate=0.0)


def test_index_counts_ids_and_sizes(busi):
    index = index_busi(busi)
    assert index.counts() == COUNTS
    assert index.problems == []
    ids = [s.id for s in index.samples]
    assert ids[:4] == [f"benign/benign ({i})" for i in range(1, 5)]
    sample = index.by_id()["malignant/malignant (2)"]
    assert sample.label == "malignant" and sample.label_index == 1
    assert (sample.width, sample.height) == (56, 48)
    assert sample.masks == [busi / "malignant" / "malignant (2)_mask.png"]


def test_natural_order_puts_2_before_10(tmp_path):
    root = write_busi_phantoms(tmp_path / "b", counts={"benign": 11}, size=(32, 32), seed=0, multi_mask_rate=0.0)
    ids = [s.id for s in index_busi(root).samples]
    assert ids.index("benign/benign (2)") < ids.index("benign/benign (10)")


def test_load_sample_unions_all_masks(busi):
    folder = busi / "benign"
    first = read_image(folder / "benign (1)_mask.png")
    extra = np.zeros_like(first)
    extra[2:10, 3:12] = 255
    cv2.imwrite(str(folder / "benign (1)_mask_1.png"), extra)
    index = index_busi(busi)
    sample = index.by_id()["benign/benign (1)"]
    assert [p.name for p in sample.masks] == ["benign (1)_mask.png", "benign (1)_mask_1.png"]
    assert [s.id for s in index.multi_mask()] == ["benign/benign (1)"]

    image, mask = load_sample(sample, size=32)
    expected = resize_mask(((first > 0) | (extra > 0)).astype(np.uint8), 32)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(image, resize_gray(to_gray(read_image(sample.image)), 32))
    assert image.dtype == mask.dtype == np.uint8 and image.shape == (32, 32)


def _problem_for(index, name):
    found = [p for p in index.problems if p.path.name == name]
    assert found, f"no problem reported for {name}: {index.problems}"
    return found[0].reason


def test_bad_files_are_reported_skipped_and_counted(busi):
    (busi / "benign" / "benign (1).png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    truncated = busi / "benign" / "benign (2).png"
    truncated.write_bytes(truncated.read_bytes()[:200])
    (busi / "benign" / "benign (3)_mask.png").unlink()
    mask = read_image(busi / "malignant" / "malignant (1)_mask.png")
    cv2.imwrite(str(busi / "malignant" / "malignant (1)_mask.png"), cv2.resize(mask, (30, 20)))
    (busi / "normal" / "notes.txt").write_text("scan notes")
    (busi / "normal" / "normal (9)_mask.png").write_bytes((busi / "normal" / "normal (1)_mask.png").read_bytes())

    index = index_busi(busi)

    assert "not a readable image" in _problem_for(index, "benign (1).png")
    assert "not a readable image" in _problem_for(index, "benign (2).png")
    assert "without a mask" in _problem_for(index, "benign (3).png")
    reason = _problem_for(index, "malignant (1)_mask.png")
    assert "30x20" in reason and "56x48" in reason
    assert "not an image file" in _problem_for(index, "notes.txt")
    assert "without its image" in _problem_for(index, "normal (9)_mask.png")
    assert len(index.problems) == 6
    # The rest is indexed.
    assert index.counts() == {"benign": 1, "malignant": 2, "normal": 2}
    assert "benign/benign (4)" in index.by_id()


def test_two_images_with_one_name_keep_the_png_and_report_the_other(busi):
    png = busi / "benign" / "benign (1).png"
    cv2.imwrite(str(busi / "benign" / "benign (1).jpg"), read_image(png))
    index = index_busi(busi)
    assert index.by_id()["benign/benign (1)"].image == png
    reason = _problem_for(index, "benign (1).jpg")
    assert "same name" in reason and "benign (1).png" in reason
    assert len(index.problems) == 1 and index.counts() == COUNTS


def test_not_a_busi_layout_says_what_is_expected(tmp_path, busi):
    with pytest.raises(DataError, match="expected a BUSI layout"):
        index_busi(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="benign.*expected a BUSI layout"):
        index_busi(empty)
    with pytest.raises(DataError, match="not a folder"):
        index_busi(busi / "benign" / "benign (1).png")
    # Pointing at the parent of a BUSI folder names the right one.
    with pytest.raises(DataError, match="pass that folder"):
        index_busi(tmp_path)


def test_class_folders_without_usable_pairs_raise(tmp_path):
    root = tmp_path / "busi"
    (root / "benign").mkdir(parents=True)
    (root / "benign" / "readme.md").write_text("x")
    with pytest.raises(DataError, match="no usable image/mask pair"):
        index_busi(root)


def test_missing_class_folder_is_a_problem_not_a_crash(busi):
    shutil.rmtree(busi / "normal")
    index = index_busi(busi)
    assert index.counts()["normal"] == 0
    assert "class folder missing" in _problem_for(index, "normal")
