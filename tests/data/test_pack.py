"""The packed cache: the preprocessed split, exactly, and refusals of changed or foreign files."""

import json

import cv2
import numpy as np
import pytest

from edge_bus.data.busi import CLASSES, index_busi
from edge_bus.data.pack import load_pack, pack_split
from edge_bus.data.preprocess import read_image, resize_gray, resize_mask, to_gray
from edge_bus.data.split import SPLITS, make_split
from edge_bus.errors import DataError


@pytest.fixture(scope="module")
def packed(synthetic_busi, tmp_path_factory):
    manifest = make_split(index_busi(synthetic_busi), seed=0)
    path = pack_split(manifest, synthetic_busi, tmp_path_factory.mktemp("pack") / "cache.npz", size=40)
    return manifest, path


def test_pack_holds_the_preprocessed_split(packed, synthetic_busi):
    manifest, path = packed
    pack = load_pack(path)
    assert pack.classes == list(CLASSES)
    assert pack.split_hash == manifest.hash and pack.dataset_sha256 == manifest.dataset_sha256
    assert pack.spec.size == 40
    for split in SPLITS:
        part = pack.split(split)
        items = manifest.items(split)
        assert list(part.ids) == [it.id for it in items]
        assert part.images.shape == part.masks.shape == (len(items), 40, 40)
        assert part.images.dtype == part.masks.dtype == np.uint8 and part.labels.dtype == np.int64
        np.testing.assert_array_equal(part.labels, [CLASSES.index(it.label) for it in items])
        assert set(np.unique(part.masks)) <= {0, 1}
    item = manifest.items("train")[0]
    image = read_image(synthetic_busi / item.image)
    union = np.zeros(image.shape, np.uint8)
    for m in item.masks:
        union |= read_image(synthetic_busi / m) > 0
    train = pack.split("train")
    np.testing.assert_array_equal(train.images[0], resize_gray(to_gray(image), 40))
    np.testing.assert_array_equal(train.masks[0], resize_mask(union, 40))
    normal = train.labels == CLASSES.index("normal")
    assert not train.masks[normal].any() and train.masks[~normal].reshape((~normal).sum(), -1).any(axis=1).all()
    with pytest.raises(DataError, match="no split"):
        pack.split("holdout")


def test_pack_refuses_changed_data(packed, synthetic_busi, tmp_path):
    import shutil

    manifest, _ = packed
    copy = tmp_path / "busi"
    shutil.copytree(synthetic_busi, copy)
    target = copy / manifest.items("val")[0].image
    image = cv2.imread(str(target))
    cv2.imwrite(str(target), 255 - image)
    with pytest.raises(DataError, match="changed"):
        pack_split(manifest, copy, tmp_path / "c.npz", size=32)
    assert not (tmp_path / "c.npz").exists()


def test_load_pack_rejects_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_pack(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable"):
        load_pack(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", meta=np.array(json.dumps({"format": "something-else"})))
    with pytest.raises(DataError, match="not an edge-bus pack"):
        load_pack(tmp_path / "other.npz")


def test_pack_is_written_atomically(synthetic_busi, tmp_path):
    manifest = make_split(index_busi(synthetic_busi))
    out = tmp_path / "p" / "cache.npz"
    pack_split(manifest, synthetic_busi, out, size=16)
    assert [p.name for p in out.parent.iterdir()] == ["cache.npz"]
    assert load_pack(out).split_hash == manifest.hash


def test_wrong_suffix_is_refused_before_any_image_is_read(synthetic_busi, tmp_path, monkeypatch):
    from edge_bus.data import pack as pack_module

    def no_reading(*args, **kwargs):
        raise AssertionError("images were read before the output name was checked")

    monkeypatch.setattr(pack_module, "_map", no_reading)
    monkeypatch.setattr(pack_module, "verify_split", no_reading)
    manifest = make_split(index_busi(synthetic_busi), seed=0)
    with pytest.raises(DataError, match=r"cache.zip: the cache file name must end in \.npz"):
        pack_split(manifest, synthetic_busi, tmp_path / "cache.zip", size=32)


def test_one_out_file_check_serves_the_pack_and_the_cli(synthetic_busi, tmp_path):
    from edge_bus.errors import ConfigError
    from edge_bus.fileio import check_out_file, file_above

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert file_above(blocker / "sub" / "c.npz") == blocker and file_above(tmp_path / "new" / "c.npz") is None
    for error in (DataError, ConfigError):
        with pytest.raises(error, match="is a folder; give the file to write, e.g. .*pack.npz"):
            check_out_file(tmp_path, error, example="pack.npz")
        with pytest.raises(error, match="^--out .*afile is a file, not a folder"):
            check_out_file(blocker / "s.json", error, example="split.json", label="--out")
    check_out_file(tmp_path / "new" / "c.npz", DataError, example="pack.npz")
    manifest = make_split(index_busi(synthetic_busi), seed=0)
    with pytest.raises(DataError, match="afile is a file, not a folder"):
        pack_split(manifest, synthetic_busi, blocker / "c.npz", size=32)
    folder = tmp_path / "d.npz"
    folder.mkdir()
    with pytest.raises(DataError, match="is a folder; give the file to write"):
        pack_split(manifest, synthetic_busi, folder, size=32)


def test_content_fingerprint_follows_the_pixels_not_the_file(packed, synthetic_busi, tmp_path):
    manifest, path = packed
    pack = load_pack(path)
    again = load_pack(pack_split(manifest, synthetic_busi, tmp_path / "again.npz", size=40))
    assert again.content_sha256() == pack.content_sha256()
    changed = load_pack(path)
    changed.splits["test"].images[0, 0, 0] ^= 1
    assert changed.content_sha256() != pack.content_sha256()
    relabelled = load_pack(path)
    relabelled.splits["val"].labels[0] = (relabelled.splits["val"].labels[0] + 1) % 3
    assert relabelled.content_sha256() != pack.content_sha256()
