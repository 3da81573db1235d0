"""Ensembles of segmenters: the mean of their lesion probabilities, or a weighted combination
whose weights are chosen on the validation split (the study's "combined" approach, done properly:
weights are fitted on val, reported on test).

`EnsembleSegmenter` is an nn.Module returning logits like any segmenter (logit of the combined
probability), so it exports and runs like one network.

File format (`save_ensemble` / `load_ensemble`), JSON next to (or pointing at) the members:
    {"format": "edge-bus-ensemble", "version": 1, "model": "ensemble", "task": "segmentation",
     "mode": "weighted" | "mean", "members": ["unet/best.pt", ...],   # relative to this file
     "weights": [0.5, 0.3, 0.2], "threshold": 0.5, "preprocessing": {spec dict},
     "classes": [...], "split_hash": "...", "metrics": {"val": {"mean": .., "weighted": ..}},
     "member_weights_sha256": ["...", ...]}   # each member's weights fingerprint when the weights were chosen

A member file retrained in place (same path, same split) would silently get weights chosen for the
old one: loading compares each member's fingerprint with the recorded one and asks for a refit.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.errors import CheckpointError, ConfigError
from edge_bus.fileio import read_json, write_json_atomic
from edge_bus.metrics import iou_per_image

FORMAT = "edge-bus-ensemble"
VERSION = 1
_EPS = 1e-6
ENSEMBLE_MODES = ("weighted", "mean")  # the first is the default


def check_ensemble_options(members: Sequence[str | os.PathLike], mode: str) -> None:
    """ConfigError unless `mode` is one of ENSEMBLE_MODES and there are at least two existing
    member files (what `edge-bus train ensemble` checks before packing, and fit_ensemble again)."""
    if mode not in ENSEMBLE_MODES:
        raise ConfigError(f"--mode {mode!r}: use {' or '.join(ENSEMBLE_MODES)}")
    if len(members) < 2:
        raise ConfigError(f"an ensemble needs at least 2 --member checkpoints, got {len(members)}")
    for path in members:
        if not Path(path).is_file():
            raise ConfigError(f"--member {path}: no such checkpoint file (a best.pt written by `edge-bus train`)")


class EnsembleSegmenter(nn.Module):
    """sum_i w_i * sigmoid(member_i(x)), returned as a logit (N, 1, H, W).

    Members whose weight is 0 are left out of the module: they would change nothing but cost their
    whole inference in every exported artifact.
    """

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        w = torch.full((len(members),), 1.0 / len(members)) if weights is None else torch.tensor(list(weights), dtype=torch.float32)
        if w.numel() != len(members) or (w < 0).any() or float(w.sum()) <= 0:
            raise ValueError(f"ensemble weights must be {len(members)} non-negative numbers with a positive sum, got {list(weights or [])}")
        kept = [i for i in range(len(members)) if float(w[i]) > 0]
        self.members = nn.ModuleList([members[i] for i in kept])
        self.register_buffer("weights", w[kept] / w[kept].sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob = sum(w * torch.sigmoid(m(x)) for w, m in zip(self.weights, self.members))
        return torch.logit(prob.clamp(_EPS, 1 - _EPS))


def _simplex(n: int, step: float) -> list[tuple[float, ...]]:
    ticks = int(round(1 / step))
    return [
        tuple(c / ticks for c in combo)
        for combo in itertools.product(range(ticks + 1), repeat=n)
        if sum(combo) == ticks
    ]


def combined_iou(member_probs: np.ndarray, gts: np.ndarray, weights: Sequence[float], *, threshold: float = 0.5) -> float:
    """Mean IoU over all images of the weighted combination of (M, N, H, W) member probabilities."""
    combined = np.tensordot(np.asarray(weights, dtype=np.float32), np.asarray(member_probs, dtype=np.float32), axes=1)
    return float(iou_per_image(combined > threshold, np.asarray(gts) != 0).mean())


def mean_weights(m: int) -> list[float]:
    return [1.0 / m] * m


def choose_weights(
    member_probs: np.ndarray, gts: np.ndarray, *, threshold: float = 0.5, step: float = 0.1
) -> dict[str, Any]:
    """Pick member weights on validation data by mean IoU over all images.

    `member_probs`: (M, N, H, W) probabilities; `gts`: (N, H, W) masks. The plain mean is always a
    candidate, so the chosen weights score at least as well as it on this data.
    Returns {"weights", "iou_weighted", "iou_mean"}.
    """
    probs = np.asarray(member_probs, dtype=np.float32)
    m = probs.shape[0]
    if m < 2:
        raise ValueError(f"choose_weights needs at least 2 members, got {m}")

    def score(w: Sequence[float]) -> float:
        return combined_iou(probs, gts, w, threshold=threshold)

    best_w, best = tuple(mean_weights(m)), score(mean_weights(m))
    mean_score = best
    for w in _simplex(m, step):
        s = score(w)
        if s > best + 1e-12:
            best_w, best = w, s
    return {"weights": [float(x) for x in best_w], "iou_weighted": best, "iou_mean": mean_score}


@dataclass
class EnsembleModel:
    path: Path | None
    members: list[Path]
    weights: list[float]
    mode: str
    preprocessing: PreprocessSpec
    classes: list[str]
    threshold: float = 0.5
    split_hash: str = ""
    dataset_sha256: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    # Each member's weights fingerprint when the weights were chosen, checked by build_model. Files
    # written before fingerprints have none: build_model then fills in those of the members it loaded.
    member_weights_sha256: list[str] = field(default_factory=list)
    model: str = "ensemble"
    task: str = "segmentation"

    def build_model(self) -> EnsembleSegmenter:
        """Load every member checkpoint and combine them (eval mode, CPU)."""
        from edge_bus.training.checkpoint import load_checkpoint

        nets, loaded = [], []
        recorded = self.member_weights_sha256 or [""] * len(self.members)
        for member, fingerprint in zip(self.members, recorded):
            ckpt = load_checkpoint(member)
            loaded.append(ckpt.weights_sha256)
            if fingerprint and ckpt.weights_sha256 != fingerprint:
                raise CheckpointError(
                    f"{member}: its weights ({ckpt.weights_sha256[:12]}) are not the ones the ensemble's "
                    f"weights were chosen with ({fingerprint[:12]}); the member was retrained or replaced: refit the ensemble "
                    "(`edge-bus train ensemble`)"
                )
            if ckpt.task != "segmentation":
                raise CheckpointError(f"{member}: ensemble members must be segmenters, this is a {ckpt.task} model")
            if ckpt.preprocessing != self.preprocessing:
                raise CheckpointError(
                    f"{member}: preprocessing {ckpt.preprocessing.to_dict()} differs from the ensemble's "
                    f"{self.preprocessing.to_dict()}; members must be trained at the same resolution"
                )
            if self.split_hash and ckpt.split_hash != self.split_hash:
                raise CheckpointError(
                    f"{member}: trained on split {ckpt.split_hash[:12] or '(none)'}, but the ensemble's weights were "
                    f"chosen on split {self.split_hash[:12]}; the member file was replaced: refit the ensemble"
                )
            nets.append(ckpt.build_model())
        self.member_weights_sha256 = loaded
        weights = self.weights if self.mode == "weighted" else None
        return EnsembleSegmenter(nets, weights).eval()


def save_ensemble(path: str | Path, model: EnsembleModel) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    members = [os.path.relpath(Path(m).resolve(), p.parent.resolve()) for m in model.members]
    data = {
        "format": FORMAT,
        "version": VERSION,
        "model": "ensemble",
        "task": "segmentation",
        "mode": model.mode,
        "members": members,
        "weights": list(model.weights),
        "threshold": model.threshold,
        "preprocessing": model.preprocessing.to_dict(),
        "classes": list(model.classes),
        "split_hash": model.split_hash,
        "dataset_sha256": model.dataset_sha256,
        "metrics": model.metrics,
        "member_weights_sha256": list(model.member_weights_sha256),
    }
    return write_json_atomic(p, data)


def _member_fingerprints(value: Any, n_members: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"member_weights_sha256 must be a list of strings, got {value!r}")
    if value and len(value) != n_members:
        raise ValueError(f"member_weights_sha256 has {len(value)} entries for {n_members} members")
    return list(value)


def load_ensemble(path: str | Path, data: dict | None = None) -> EnsembleModel:
    p = Path(path)
    if data is None:
        data = read_json(p, CheckpointError, what="ensemble file", fix="write one with `edge-bus train ensemble`")
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise CheckpointError(f"{p}: not an {FORMAT} v{VERSION} file (write one with `edge-bus train ensemble`)")
    try:
        members = [p.parent / m for m in data["members"]]
        mode = data["mode"]
        if mode not in ENSEMBLE_MODES:
            raise ValueError(f"mode must be one of {ENSEMBLE_MODES}, got {mode!r}")
        return EnsembleModel(
            path=p,
            members=members,
            weights=[float(w) for w in data["weights"]],
            mode=mode,
            preprocessing=PreprocessSpec.from_dict(data["preprocessing"]),
            classes=list(data.get("classes", [])),
            threshold=float(data.get("threshold", 0.5)),
            split_hash=data.get("split_hash", ""),
            dataset_sha256=data.get("dataset_sha256", ""),
            metrics=data.get("metrics", {}),
            member_weights_sha256=_member_fingerprints(data.get("member_weights_sha256", []), len(members)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{p}: invalid ensemble file: {exc}") from None
