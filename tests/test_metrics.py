"""Metrics against scikit-learn on random inputs, and the empty-mask rule."""

import numpy as np
import pytest

from edge_bus import metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(5))
def test_classification_report_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 5))
    y_true = rng.integers(0, n_classes, 200)
    # Correlated predictions, and one class never predicted (zero-division path).
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, n_classes, 200))
    y_pred[y_pred == n_classes - 1] = 0
    classes = [f"c{i}" for i in range(n_classes)]

    report = metrics.classification_report(y_true, y_pred, classes)

    labels = list(range(n_classes))
    np.testing.assert_array_equal(
        report["confusion_matrix"], sklearn_metrics.confusion_matrix(y_true, y_pred, labels=labels)
    )
    assert report["weighted_f1"] == pytest.approx(
        sklearn_metrics.f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
    )
    assert report["macro_f1"] == pytest.approx(
        sklearn_metrics.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    )
    assert report["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, name in enumerate(classes):
        got = report["per_class"][name]
        assert got["precision"] == pytest.approx(p[i])
        assert got["recall"] == pytest.approx(r[i])
        assert got["f1"] == pytest.approx(f[i])
        assert got["support"] == s[i]


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="labels"):
        metrics.confusion_matrix([0, 1], [0], 3)


@pytest.mark.parametrize("seed", range(5))
def test_iou_and_dice_match_sklearn_jaccard_and_f1(seed):
    rng = np.random.default_rng(seed)
    gt = rng.random((32, 40)) < rng.uniform(0.1, 0.5)
    pred = rng.random((32, 40)) < rng.uniform(0.1, 0.5)
    assert metrics.iou(pred, gt) == pytest.approx(sklearn_metrics.jaccard_score(gt.ravel(), pred.ravel()))
    assert metrics.dice(pred, gt) == pytest.approx(sklearn_metrics.f1_score(gt.ravel(), pred.ravel()))
    # {0, 255} masks and booleans score the same.
    assert metrics.iou(pred.astype(np.uint8) * 255, gt) == pytest.approx(metrics.iou(pred, gt))


def test_empty_mask_rule():
    empty = np.zeros((8, 8), np.uint8)
    lesion = empty.copy()
    lesion[2:5, 2:5] = 1
    assert metrics.iou(empty, empty) == 1.0 and metrics.dice(empty, empty) == 1.0
    assert metrics.iou(lesion, empty) == 0.0 and metrics.dice(lesion, empty) == 0.0
    assert metrics.iou(empty, lesion) == 0.0 and metrics.dice(empty, lesion) == 0.0


def test_segmentation_report_separates_lesion_and_all_images():
    gts = np.zeros((6, 16, 16), np.uint8)
    gts[:4, 4:10, 4:10] = 1  # four lesion images, two normal
    preds = gts.copy()
    preds[0] = 0  # missed lesion -> 0
    preds[1, 4:10, 4:7] = 0  # half found
    preds[5, 0:2, 0:2] = 1  # false lesion on a normal image -> 0
    report = metrics.segmentation_report(preds, gts, labels=[0, 0, 1, 1, 2, 2], classes=["b", "m", "n"])

    ious = [metrics.iou(p, g) for p, g in zip(preds, gts)]
    assert report["per_image"]["iou"] == pytest.approx(ious)
    assert report["per_image"]["lesion"] == [True] * 4 + [False] * 2
    assert report["all_images"]["iou"] == pytest.approx(np.mean(ious))
    assert report["lesion_only"]["n"] == 4
    assert report["lesion_only"]["iou"] == pytest.approx(np.mean(ious[:4]))
    assert report["lesion_only"]["dice"] == pytest.approx(np.mean([metrics.dice(p, g) for p, g in zip(preds[:4], gts[:4])]))
    assert report["empty_only"]["iou"] == pytest.approx(0.5)
    assert report["per_class"]["n"]["iou"] == pytest.approx(0.5)
    assert report["per_class"]["m"]["iou"] == pytest.approx(1.0)
    # Per-image vector form agrees with the scalar one.
    np.testing.assert_allclose(metrics.dice_per_image(preds, gts), report["per_image"]["dice"])


def test_segmentation_report_accepts_masks_of_different_sizes():
    gts = [np.ones((4, 5), np.uint8), np.zeros((7, 3), np.uint8)]
    preds = [np.ones((4, 5), np.uint8), np.zeros((7, 3), np.uint8)]
    report = metrics.segmentation_report(preds, gts)
    assert report["all_images"] == {"n": 2, "iou": 1.0, "dice": 1.0}
    with pytest.raises(ValueError, match="shape"):
        metrics.iou(np.zeros((3, 3)), np.zeros((3, 4)))


def test_metrics_module_does_not_import_sklearn():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(metrics))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert "sklearn" not in imported
