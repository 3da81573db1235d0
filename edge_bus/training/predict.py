"""Batched inference over uint8 arrays with THE preprocessing: the one path used by validation,
evaluation and ensemble fitting."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edge_bus.data.preprocess import PreprocessSpec, normalize


@torch.no_grad()
def predict_arrays(
    model: nn.Module, images: np.ndarray, spec: PreprocessSpec, device: torch.device | str = "cpu", batch_size: int = 16
) -> np.ndarray:
    """uint8 (N, S, S) -> the model's outputs as float32: logits (N, C) for classifiers, lesion
    probabilities (N, S, S) for segmenters (sigmoid of the (N, 1, S, S) logits)."""
    was_training = model.training
    model.eval()
    outputs = []
    device = torch.device(device)
    try:
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(normalize(np.ascontiguousarray(images[start : start + batch_size]), spec)).to(device)
            y = model(x).float()
            if y.dim() == 4:
                y = torch.sigmoid(y[:, 0])
            outputs.append(y.cpu().numpy())
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0,), np.float32)
    return np.concatenate(outputs)


def task_metrics(task: str, outputs: np.ndarray, arrays, classes: list[str], threshold: float = 0.5) -> dict:
    """Validation/evaluation metrics through edge_bus.metrics; `score` is the early-stopping metric
    (weighted F1 for classifiers, mean IoU over all images for segmenters)."""
    from edge_bus.metrics import classification_report, segmentation_report

    if task == "classification":
        report = classification_report(arrays.labels, outputs.argmax(axis=1), classes)
        return {"score": report["weighted_f1"], "weighted_f1": report["weighted_f1"], "accuracy": report["accuracy"]}
    report = segmentation_report(outputs > threshold, arrays.masks, arrays.labels, classes)
    return {
        "score": report["all_images"]["iou"],
        "iou_all_images": report["all_images"]["iou"],
        "dice_all_images": report["all_images"]["dice"],
        "iou_lesion_only": report["lesion_only"]["iou"],
        "dice_lesion_only": report["lesion_only"]["dice"],
    }
