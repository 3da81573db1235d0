"""The real BUSI set (skipped where it is absent): counts, multi-mask images, duplicate-aware split."""

import pytest

from edge_bus.data.busi import index_busi
from edge_bus.data.dedup import find_duplicates
from edge_bus.data.split import make_split

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def real(busi_dir):
    index = index_busi(busi_dir)
    return index, find_duplicates(index)


def test_real_busi_counts_and_multi_mask_images(real):
    index, _ = real
    assert index.problems == []
    assert index.counts() == {"benign": 437, "malignant": 210, "normal": 133}
    multi = index.multi_mask()
    assert len(multi) == 17
    assert max(len(s.masks) for s in multi) == 3  # benign (195) has _mask, _mask_1 and _mask_2


def test_real_busi_duplicates_include_a_known_cross_class_copy(real):
    _, duplicates = real
    # BUSI files the same scan as benign (433) and malignant (145) (pixel-identical).
    group = duplicates.group_of["benign/benign (433)"]
    assert duplicates.group_of["malignant/malignant (145)"] == group
    assert any(g.group == group and g.cross_class for g in duplicates.groups)
    assert all(len(g.ids) >= 2 for g in duplicates.groups)


@pytest.mark.parametrize("seed", [0, 1])
def test_real_split_keeps_every_duplicate_group_in_one_split(real, seed):
    index, duplicates = real
    manifest = make_split(index, seed=seed, duplicates=duplicates)
    assert manifest.groups_across_splits() == []
    split_of = {e.id: e.split for e in manifest.items()}
    for g in duplicates.groups:
        assert len({split_of[i] for i in g.ids}) == 1, g.ids
    counts = manifest.counts()
    for label, total in index.counts().items():
        for split, ratio in manifest.ratios.items():
            assert abs(counts[split][label] - ratio * total) <= 0.03 * total + 7, (split, label, counts)
