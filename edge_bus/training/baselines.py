"""Fitting the roster members that are not trained by gradient descent: the classical baseline
(parameter search on the train split) and the ensemble (weights chosen on the val split)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from edge_bus.data.pack import load_pack
from edge_bus.errors import CheckpointError
from edge_bus.models.classical import ClassicalModel, fit_classical, save_classical
from edge_bus.models.ensemble import (
    ENSEMBLE_MODES,
    EnsembleModel,
    check_ensemble_options,
    choose_weights,
    combined_iou,
    mean_weights,
    save_ensemble,
)
from edge_bus.training.checkpoint import load_checkpoint
from edge_bus.training.data import spec_at, split_arrays
from edge_bus.training.predict import predict_arrays, task_metrics
from edge_bus.training.provenance import check_trained_on_split

CLASSICAL_NAME = "classical.json"
ENSEMBLE_NAME = "ensemble.json"


def fit_classical_pack(pack_path: Path, out: Path, resolution: int | None = None, progress: bool = True) -> Path:
    """Search the classical baseline's parameters on the train split; report val; write out/classical.json."""
    pack = load_pack(pack_path)
    spec = spec_at(pack, resolution)
    train = split_arrays(pack, "train", spec.size)
    val = split_arrays(pack, "val", spec.size)
    segmenter, search = fit_classical(train.images, train.masks, progress=progress)
    metrics = {"train": task_metrics("segmentation", segmenter.predict_batch(train.images), train, pack.classes)}
    if len(val):
        metrics["val"] = task_metrics("segmentation", segmenter.predict_batch(val.images), val, pack.classes)
    model = ClassicalModel(
        path=None, segmenter=segmenter, preprocessing=spec, classes=pack.classes, split_hash=pack.split_hash,
        dataset_sha256=pack.dataset_sha256, metrics=metrics,
        train={"search": f"{segmenter.params.method}: grid on train, mean IoU all images", "resolution": spec.size, "top": search[:5], "pack": str(pack_path)},
    )
    return save_classical(Path(out) / CLASSICAL_NAME, model)


def check_same_split(ckpts: Sequence, split_hash: str, pack_path: Path) -> None:
    """Every member must have been trained on the split of the pack whose val split chooses the
    weights (ConfigError naming the member otherwise)."""
    for c in ckpts:
        check_trained_on_split(
            c.path, c.split_hash, split_hash, pack_path, role="member",
            risk="choosing ensemble weights on this val split would use images the member may have trained on",
        )


def fit_ensemble(
    members: Sequence[Path], pack_path: Path, out: Path, *, device: str = "cpu", step: float = 0.1, batch_size: int = 8,
    mode: str = ENSEMBLE_MODES[0],
) -> Path:
    """Combine the members and write out/ensemble.json: mode "weighted" chooses member weights on
    the val split, mode "mean" keeps equal weights (both report the val IoU of the plain mean)."""
    check_ensemble_options(members, mode)
    ckpts = [load_checkpoint(m) for m in members]
    spec = _common_spec(ckpts)
    pack = load_pack(pack_path)
    check_same_split(ckpts, pack.split_hash, pack_path)
    val = split_arrays(pack, "val", spec.size)
    dev = torch.device(device)
    probs = np.stack([predict_arrays(c.build_model().to(dev), val.images, spec, dev, batch_size) for c in ckpts])
    if mode == "weighted":
        choice = choose_weights(probs, val.masks, step=step)
        weights = choice["weights"]
        metrics = {"iou_all_images_weighted": choice["iou_weighted"], "iou_all_images_mean": choice["iou_mean"]}
    else:
        weights = mean_weights(len(ckpts))
        metrics = {"iou_all_images_mean": combined_iou(probs, val.masks, weights)}
    model = EnsembleModel(
        path=None, members=[c.path for c in ckpts], weights=weights, mode=mode, preprocessing=spec,
        classes=ckpts[0].classes, split_hash=pack.split_hash, dataset_sha256=pack.dataset_sha256,
        metrics={"val": metrics}, member_weights_sha256=[c.weights_sha256 for c in ckpts],
    )
    return save_ensemble(Path(out) / ENSEMBLE_NAME, model)


def _common_spec(ckpts: Sequence):
    """The members' shared preprocessing; CheckpointError when one is not a segmenter or differs."""
    for c in ckpts:
        if c.task != "segmentation":
            raise CheckpointError(f"{c.path}: ensemble members must be segmenters, this is a {c.task} model")
    spec = ckpts[0].preprocessing
    for c in ckpts[1:]:
        if c.preprocessing != spec:
            raise CheckpointError(f"{c.path}: trained at {c.preprocessing.size} px, {ckpts[0].path} at {spec.size}; members must match")
    return spec
