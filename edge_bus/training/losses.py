"""Losses: weighted cross-entropy for classifiers, BCE + soft Dice for segmenters."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BCEDiceLoss(nn.Module):
    """BCE-with-logits plus (1 - soft Dice) over the batch; the Dice term keeps small lesions from
    being drowned by the background pixels, the BCE term keeps gradients on empty (normal) masks."""

    def __init__(self, dice_weight: float = 1.0, smooth: float = 1.0):
        super().__init__()
        self.dice_weight = dice_weight
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        prob = torch.sigmoid(logits)
        inter = (prob * target).sum()
        dice = (2 * inter + self.smooth) / (prob.sum() + target.sum() + self.smooth)
        return bce + self.dice_weight * (1 - dice)


def make_loss(task: str, class_weights: torch.Tensor | None = None) -> nn.Module:
    if task == "classification":
        return nn.CrossEntropyLoss(weight=class_weights)
    return BCEDiceLoss()
