"""The split: stratified, seeded, duplicate groups whole, hashed, verified against the data."""

import json

import cv2
import numpy as np
import pytest

from edge_bus.data.busi import CLASSES, index_busi
from edge_bus.data.dedup import DuplicateReport
from edge_bus.data.split import (
    SPLITS,
    load_split,
    make_split,
    parse_ratios,
    verify_split,
    write_split,
)
from edge_bus.data.synthetic import write_busi_phantoms
from edge_bus.errors import DataError

COUNTS = {"benign": 40, "malignant": 20, "normal": 20}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = write_busi_phantoms(tmp_path_factory.mktemp("split") / "busi", counts=COUNTS, size=(32, 32), seed=0)
    return index_busi(root)


def _random_groups(index, seed):
    """A duplicate report with many random groups of 2-4 images, some spanning classes."""
    rng = np.random.default_rng(seed)
    ids = [s.id for s in index.samples]
    order = rng.permutation(len(ids))
    group_of, k, g = {}, 0, 0
    while k < len(ids):
        size = int(rng.choice([1, 1, 2, 3, 4]))
        for i in order[k : k + size]:
            group_of[ids[i]] = g
        k, g = k + size, g + 1
    return DuplicateReport(group_of=group_of, groups=[], pairs=[], thresholds={})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_never_cross_splits_and_classes_follow_ratios(index, seed):
    manifest = make_split(index, seed=seed, duplicates=_random_groups(index, seed))
    assert manifest.groups_across_splits() == []
    counts = manifest.counts()
    for label, total in COUNTS.items():
        assert sum(counts[s][label] for s in SPLITS) == total
        for split, ratio in manifest.ratios.items():
            # Groups of up to 4 images make exact ratios impossible; stay within one group's size.
            assert abs(counts[split][label] - ratio * total) <= 4, (split, label, counts)
    assert sorted(manifest.ids()) == sorted(s.id for s in index.samples)


def test_same_seed_same_split_other_seed_differs(index):
    a = make_split(index, seed=5)
    b = make_split(index, seed=5)
    c = make_split(index, seed=6)
    assert a.hash == b.hash and a.ids("test") == b.ids("test")
    assert a.ids("test") != c.ids("test")
    assert a.dataset_sha256 == c.dataset_sha256


def test_manifest_round_trip_and_schema(index, tmp_path):
    manifest = make_split(index, seed=0, ratios="0.6,0.2,0.2")
    path = write_split(manifest, tmp_path / "split.json")
    data = json.loads(path.read_text())
    assert data["format"] == "edge-bus-split" and data["version"] == 1
    assert data["classes"] == list(CLASSES) and data["ratios"] == {"train": 0.6, "val": 0.2, "test": 0.2}
    item = data["items"][0]
    assert set(item) == {"id", "label", "image", "masks", "sha256", "group", "split"}
    assert set(item["sha256"]) == {item["image"], *item["masks"]}
    loaded = load_split(path)
    assert loaded.hash == manifest.hash == data["hash"]
    assert loaded.ids("val") == manifest.ids("val")
    assert loaded.items("train")[0].label_index == CLASSES.index(loaded.items("train")[0].label)


def test_edited_manifest_is_rejected(index, tmp_path):
    path = write_split(make_split(index), tmp_path / "split.json")
    data = json.loads(path.read_text())
    data["items"][0]["split"] = "test" if data["items"][0]["split"] != "test" else "train"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="hash does not match"):
        load_split(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="split manifest is not valid JSON"):
        load_split(path)
    with pytest.raises(DataError, match="not found"):
        load_split(tmp_path / "nope.json")


def test_verify_names_changed_and_missing_files(tmp_path):
    root = write_busi_phantoms(tmp_path / "busi", counts={"benign": 3, "normal": 2}, size=(32, 32), seed=0)
    manifest = make_split(index_busi(root))
    verify_split(manifest, root)  # untouched: passes
    image = cv2.imread(str(root / "benign" / "benign (2).png"))
    image[0, 0] ^= 1
    cv2.imwrite(str(root / "benign" / "benign (2).png"), image)
    (root / "normal" / "normal (1)_mask.png").unlink()
    with pytest.raises(DataError, match=r"1 changed: benign/benign \(2\)\.png.*1 missing: normal/normal \(1\)_mask\.png"):
        verify_split(manifest, root)
    assert make_split(index_busi(root)).dataset_sha256 != manifest.dataset_sha256


@pytest.mark.parametrize("bad", ["0.7,0.3", "0.5,0.5,0.5", "a,b,c", "0,0.5,0.5", "-0.1,0.6,0.5"])
def test_bad_ratios_are_rejected(bad):
    with pytest.raises(DataError, match="ratios"):
        parse_ratios(bad)


def test_zero_ratio_leaves_a_split_empty(index):
    manifest = make_split(index, ratios=(0.8, 0.2, 0.0))
    assert manifest.ids("test") == [] and len(manifest.ids("val")) > 0


def test_hash_covers_data_root_and_the_difference_is_recognised(tmp_path):
    import shutil

    from edge_bus.data.split import same_split_except_root, sha256_file  # sha256_file: old import path
    from edge_bus.fileio import sha256_file as shared_sha256

    assert sha256_file is shared_sha256
    root = write_busi_phantoms(tmp_path / "a", counts={"benign": 4, "malignant": 3, "normal": 2}, size=(32, 32), seed=0)
    moved = tmp_path / "b"
    shutil.copytree(root, moved)
    here, there = make_split(index_busi(root)), make_split(index_busi(moved))
    assert here.hash != there.hash  # the hash includes data_root (kept for existing checkpoints)
    assert same_split_except_root(here, there)
    assert not same_split_except_root(here, make_split(index_busi(root), seed=1))

    path = write_split(here, tmp_path / "s" / "split.json")
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # atomic: no temporary left
    data = json.loads(path.read_text())
    data["data_root"] = str(moved)  # "moving" the data by editing the manifest
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="hash does not match.*also covers data_root"):
        load_split(path)
