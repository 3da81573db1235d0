"""Accuracy of an artifact on the test split, with edge_bus.metrics (never our own arithmetic).

Classification: weighted F1 (and accuracy) over the three classes. Segmentation: mean IoU and Dice
over all test images (empty-mask rule of edge_bus.metrics) and over lesion images only.
Images and masks are compared at the bundle's own input size (manifest preprocessing.size; THE
preprocessing; masks nearest), whatever that size is. Each artifact is also compared with the FP32
PyTorch model image by image (`versus_reference`): a paired bootstrap interval of the difference says
whether an INT8 or FP16 artifact's lower figure is a loss or noise of the test images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge_bus.data.preprocess import PreprocessSpec, normalize
from edge_bus.errors import DataError


@dataclass
class TestSet:
    images: np.ndarray  # uint8 (N, S, S), resize_gray(to_gray(image))
    masks: np.ndarray  # uint8 (N, S, S) in {0, 1}
    labels: np.ndarray  # int64 (N,), index into CLASSES
    ids: list[str]
    split_hash: str
    source: str  # how the split was obtained

    def __len__(self) -> int:
        return len(self.ids)


def load_test_set(root: Path, split_path: Path | None, size: int, limit: int | None = None) -> TestSet:
    """The test split of a BUSI folder: from a split manifest, or a seed-0 split made here."""
    from edge_bus.data.busi import Sample, index_busi, load_sample  # noqa: PLC0415
    from edge_bus.data.split import load_split, make_split  # noqa: PLC0415

    if split_path is not None:
        manifest = load_split(split_path)
        how = f"split manifest {split_path}"
    else:
        manifest = make_split(index_busi(root), seed=0)
        how = "seed-0 split made from --data (pass --split MANIFEST to use the training split)"
    items = manifest.items("test")
    if limit is not None:
        items = items[:limit]
    if not items:
        raise DataError(f"{split_path or root}: the test split is empty; nothing to measure accuracy on")
    images, masks, labels, ids = [], [], [], []
    for item in items:
        sample = Sample(item.id, item.label, root / item.image, [root / m for m in item.masks], 0, 0)
        image, mask = load_sample(sample, size)
        images.append(image)
        masks.append(mask)
        labels.append(item.label_index)
        ids.append(item.id)
    return TestSet(np.stack(images), np.stack(masks), np.asarray(labels, np.int64), ids, manifest.hash, how)


def predict(infer: Callable[[np.ndarray], np.ndarray], test: TestSet, spec: PreprocessSpec, batch: int) -> np.ndarray:
    """Logits of every test image, run in chunks of `batch`."""
    outs = []
    for i in range(0, len(test), batch):
        outs.append(np.asarray(infer(np.ascontiguousarray(normalize(test.images[i : i + batch], spec)))))
    return np.concatenate(outs)


@dataclass
class Scored:
    figures: dict  # headline numbers plus `n`, as the benchmark report records them
    per_image: np.ndarray  # per test image: the predicted class (bundle order), or the IoU
    truth: np.ndarray | None = None  # classification: the true class per image (bundle order)


def score(task: str, logits: np.ndarray, test: TestSet, classes: list[str], threshold: float) -> Scored:
    """The task's metrics (edge_bus.metrics): headline numbers plus `n`, and what each image scored.

    Predictions come from the runtime's postprocessing (edge_bus.runtime.postprocess): the argmax
    of the softmax in the bundle's class order, or every pixel whose sigmoid exceeds the bundle's
    threshold at the model's resolution (the test masks are at that size too).
    """
    from edge_bus import metrics  # noqa: PLC0415
    from edge_bus.data.busi import CLASSES  # noqa: PLC0415
    from edge_bus.runtime.postprocess import binary_mask, classify_batch  # noqa: PLC0415

    if task == "classification":
        if sorted(classes) != sorted(CLASSES):
            raise DataError(f"the classifier's classes {classes} are not the data's classes {list(CLASSES)}; "
                            "accuracy cannot be scored on this data set")
        y_true = np.asarray([classes.index(CLASSES[i]) for i in test.labels], np.int64)  # data order -> bundle order
        y_pred, _ = classify_batch(logits)
        report = metrics.classification_report(y_true, y_pred, list(classes))
        figures = {"n": report["n"], "weighted_f1": report["weighted_f1"], "accuracy": report["accuracy"]}
        return Scored(figures, np.asarray(y_pred, np.int64), y_true)
    preds = binary_mask(logits, threshold)
    report = metrics.segmentation_report(preds, test.masks)
    figures = {
        "n": len(test),
        "iou": report["all_images"]["iou"],
        "dice": report["all_images"]["dice"],
        "iou_lesion_only": report["lesion_only"]["iou"],
        "dice_lesion_only": report["lesion_only"]["dice"],
    }
    return Scored(figures, np.asarray(report["per_image"]["iou"], np.float64))


def versus_reference(scored: Scored, reference: Scored, n_classes: int) -> dict:
    """`scored` minus `reference` (the FP32 PyTorch model) on the same test images: the headline
    figure (weighted F1, or mean IoU over all images), the difference, its paired 95 % interval and
    the share of resamples in which `scored` is ahead (edge_bus.intervals.paired)."""
    from edge_bus import intervals  # noqa: PLC0415

    n = len(scored.per_image)
    if len(reference.per_image) != n:
        raise ValueError(f"{n} scored images against {len(reference.per_image)} reference images")
    if scored.truth is not None:
        a = intervals.weighted_f1_of(scored.truth, scored.per_image, n_classes)
        b = intervals.weighted_f1_of(reference.truth, reference.per_image, n_classes)
        return {"figure": "weighted_f1", **intervals.paired(a, b, n)}
    return {"figure": "iou", **intervals.paired(intervals.mean_of(scored.per_image), intervals.mean_of(reference.per_image), n)}
